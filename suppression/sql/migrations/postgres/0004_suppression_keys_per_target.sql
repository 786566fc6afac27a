-- As sqlite/0004: one unique index per kind of target instead of one key over both plus
-- two lookup indexes.
--
-- A suppression targets an identity or a domain, never both (CHECK in 0001). The old key,
-- (coalesce(identity, ''), coalesce(domain, ''), scope, coalesce(purpose, ''), reason), and
-- the lookup indexes on identity and on domain cost three index entries for every row, one of
-- them a NULL. Two partial unique indexes hold the same uniqueness (each row is in exactly
-- one) and serve the same lookups (identity = ? / IN, domain = ? / IN), at one entry a row.
-- Existing rows satisfied the old key, so they satisfy these; nothing is rebuilt.
DROP INDEX suppressions_key;
DROP INDEX suppressions_identity;
DROP INDEX suppressions_domain;
CREATE UNIQUE INDEX suppressions_identity_key
    ON suppressions (identity, scope, coalesce(purpose, ''), reason)
    WHERE identity IS NOT NULL;
CREATE UNIQUE INDEX suppressions_domain_key
    ON suppressions (domain, scope, coalesce(purpose, ''), reason)
    WHERE domain IS NOT NULL;
