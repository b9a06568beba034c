-- A project's vector store at its provider (Responses API file_search), made when project
-- knowledge is turned on and the provider has a Files API.
ALTER TABLE projects ADD COLUMN vector_store_provider text;
ALTER TABLE projects ADD COLUMN vector_store_id text;
-- How a file stands in its project's vector store: null (not in one), indexing, indexed,
-- index_failed (with the provider's reason in index_error).
ALTER TABLE files ADD COLUMN index_status text;
ALTER TABLE files ADD COLUMN index_error text;
-- How many passages confab's own search has of the file (0: no text it can read, or too big).
ALTER TABLE files ADD COLUMN passages integer NOT NULL DEFAULT 0;
UPDATE files f SET passages = (SELECT count(*) FROM file_chunks c WHERE c.file_id = f.id);
-- The poller reads the files being indexed.
CREATE INDEX files_indexing ON files (project_id) WHERE index_status = 'indexing';
