ALTER TABLE messages DROP COLUMN html, DROP COLUMN html_renderer;
