-- Same change as sqlite/0002_ledger_hash_not_unique.sql: drop the UNIQUE constraint on
-- ledger.hash (and with it its index, keyed by a random SHA-256 digest). Nothing looks events
-- up by hash and the chain makes every hash unique by construction (each one covers its seq).
-- ledger_hash_key is the name PostgreSQL gave the constraint 0001 declared inline.
ALTER TABLE ledger DROP CONSTRAINT ledger_hash_key;
