ALTER TABLE messages DROP COLUMN error_detail;
