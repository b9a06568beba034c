-- One default agent per project, enforced by the database. Races could leave several marked;
-- the oldest of them stays the default.
UPDATE agents AS a
SET is_default = false
WHERE a.is_default
  AND EXISTS (
    SELECT 1 FROM agents AS b
    WHERE b.project_id = a.project_id AND b.is_default AND b.id < a.id
  );

CREATE UNIQUE INDEX agents_one_default_per_project ON agents (project_id) WHERE is_default;
