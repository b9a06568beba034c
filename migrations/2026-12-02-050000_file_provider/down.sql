ALTER TABLE files DROP COLUMN provider;
