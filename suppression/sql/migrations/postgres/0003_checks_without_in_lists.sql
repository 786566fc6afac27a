-- sqlite/0003_checks_without_in_lists.sql rewrites SQLite's CHECK constraints without IN lists,
-- which SQLite re-evaluates through an ephemeral table on every INSERT. PostgreSQL evaluates
-- them as plain comparisons: its schema is unchanged, and this version only keeps the two
-- dialects' numbering in step.
SELECT 1;
