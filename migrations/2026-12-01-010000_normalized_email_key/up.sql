-- One way to compare emails, done in Rust (Unicode case folding and NFC): PostgreSQL's lower()
-- and Rust's to_lowercase() disagree on some letters, so some accounts could register but
-- never sign in. The key starts as lower(email); confab recomputes it at start-up for every
-- address with non-ASCII characters (where the two can differ).
ALTER TABLE users ADD COLUMN email_key text;
UPDATE users SET email_key = lower(email);
ALTER TABLE users ALTER COLUMN email_key SET NOT NULL;
DROP INDEX users_email_lower_key;
CREATE UNIQUE INDEX users_email_key ON users (email_key);
