DROP INDEX files_indexing;
ALTER TABLE files DROP COLUMN passages;
ALTER TABLE files DROP COLUMN index_error;
ALTER TABLE files DROP COLUMN index_status;
ALTER TABLE projects DROP COLUMN vector_store_id;
ALTER TABLE projects DROP COLUMN vector_store_provider;
