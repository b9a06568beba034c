-- The chat home lists a person's most recent conversations across all their agents.
CREATE INDEX conversations_user_recent_idx ON conversations (user_id, updated_at DESC);
