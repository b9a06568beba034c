ALTER TABLE messages DROP COLUMN attachments, DROP COLUMN context;
