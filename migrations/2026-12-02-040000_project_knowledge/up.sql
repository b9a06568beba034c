-- Project knowledge: when a project opts in, its agents answer from passages of its files, found
-- with PostgreSQL full-text search, and cite them.
ALTER TABLE projects ADD COLUMN knowledge boolean NOT NULL DEFAULT false;

CREATE TABLE file_chunks (
    id bigserial PRIMARY KEY,
    file_id uuid NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    position integer NOT NULL,
    text text NOT NULL,
    -- English stemming ("launches" finds "launch"); other languages match whole words only.
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX file_chunks_tsv_idx ON file_chunks USING gin (tsv);
CREATE INDEX file_chunks_project_idx ON file_chunks (project_id);
CREATE INDEX file_chunks_file_idx ON file_chunks (file_id);

-- The passages an answer was given, to show as its sources.
ALTER TABLE messages ADD COLUMN citations jsonb NOT NULL DEFAULT '[]';
