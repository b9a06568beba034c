-- Files attached to a user's message: which ones (for the page and the API), and their text as it
-- went upstream with the message (so later turns send the same context without reading files).
ALTER TABLE messages
    ADD COLUMN attachments jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN context text NOT NULL DEFAULT '';
