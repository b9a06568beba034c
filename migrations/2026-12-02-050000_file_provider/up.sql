-- Which provider holds provider_file_id (its Files API deletes it).
ALTER TABLE files ADD COLUMN provider text;
