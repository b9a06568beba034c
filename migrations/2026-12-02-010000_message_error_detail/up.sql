-- A failed answer says what happened in plain words (error) and keeps the provider's own words for
-- whoever needs them (error_detail): the API, the operator, a bug report.
ALTER TABLE messages ADD COLUMN error_detail text;
