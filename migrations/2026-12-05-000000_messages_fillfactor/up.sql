-- An answer's row is written many times while it streams (its text every flush, then how it
-- ended). With the default fillfactor of 100 the page a new answer lands on is full, so each of
-- those writes put the row's new version on another page and added an entry to every index
-- (7.7 % of them were HOT in a burst of 1,000 answers). Room left on each page lets PostgreSQL
-- keep the new version beside the old one and skip the indexes (a HOT update) when no indexed
-- column changed, as a flush's text does not. Pages written from now on keep it; older ones are
-- full of finished answers, which are no longer written.
ALTER TABLE messages SET (fillfactor = 70);
