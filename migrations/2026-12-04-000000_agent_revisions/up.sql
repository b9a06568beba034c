-- An agent's revision changes whenever anything a chat turn takes from it changes: the agent's
-- row, its prompts or its project's (their versions included), and its project's row (knowledge
-- on or off). A process that remembers what a turn needs from an agent stores the revision it
-- read, and the turn's INSERT stores nothing unless it is still current: a stale memory, in this
-- process or another, can never answer with an old system prompt.
ALTER TABLE agents ADD COLUMN revision bigint NOT NULL DEFAULT 0;
CREATE SEQUENCE agent_revisions;

CREATE FUNCTION agents_new_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('agent_revisions');
    RETURN NEW;
END $$;
CREATE TRIGGER agents_revised BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION agents_new_revision();

-- The UPDATEs below only touch the rows; the trigger above gives each its new revision.
CREATE FUNCTION prompts_revise_agents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agents SET revision = 0
    WHERE id IN (OLD.agent_id, NEW.agent_id) OR project_id IN (OLD.project_id, NEW.project_id);
    RETURN NULL;
END $$;
CREATE TRIGGER prompts_revise_agents AFTER INSERT OR UPDATE OR DELETE ON prompts
    FOR EACH ROW EXECUTE FUNCTION prompts_revise_agents();

CREATE FUNCTION prompt_versions_revise_agents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agents SET revision = 0
    WHERE id IN (SELECT p.agent_id FROM prompts p WHERE p.id IN (OLD.prompt_id, NEW.prompt_id))
       OR project_id IN (SELECT p.project_id FROM prompts p WHERE p.id IN (OLD.prompt_id, NEW.prompt_id));
    RETURN NULL;
END $$;
CREATE TRIGGER prompt_versions_revise_agents AFTER INSERT OR UPDATE OR DELETE ON prompt_versions
    FOR EACH ROW EXECUTE FUNCTION prompt_versions_revise_agents();

CREATE FUNCTION projects_revise_agents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agents SET revision = 0 WHERE project_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER projects_revise_agents AFTER UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION projects_revise_agents();
