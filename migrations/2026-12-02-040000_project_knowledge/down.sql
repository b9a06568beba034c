ALTER TABLE messages DROP COLUMN citations;
DROP TABLE file_chunks;
ALTER TABLE projects DROP COLUMN knowledge;
