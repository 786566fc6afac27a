-- Drop the UNIQUE constraint on ledger.hash. Its index is keyed by a random SHA-256 digest and
-- dominated the cost of bulk imports, while nothing looks events up by hash and the chain
-- makes every hash unique by construction (each one covers its seq).
--
-- SQLite cannot drop a constraint, so ledger is rebuilt (create, copy, drop, rename), and
-- ledger_evidence with it: its foreign key keeps the old ledger from being dropped while it
-- exists. This runs in one transaction with foreign_keys on, hence the order: the new evidence
-- table references ledger_new (renamed along with it), the old evidence table goes first, and
-- DROP TABLE fires no triggers. Index and triggers are recreated exactly as in 0001.
CREATE TABLE ledger_new (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    identity  TEXT,
    purpose   TEXT,
    source    TEXT NOT NULL,
    actor     TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

CREATE TABLE ledger_evidence_new (
    seq      INTEGER PRIMARY KEY REFERENCES ledger_new (seq),
    evidence TEXT NOT NULL
);

INSERT INTO ledger_new (seq, at, kind, identity, purpose, source, actor, detail, prev_hash, hash)
SELECT seq, at, kind, identity, purpose, source, actor, detail, prev_hash, hash
FROM ledger ORDER BY seq;

INSERT INTO ledger_evidence_new (seq, evidence)
SELECT seq, evidence FROM ledger_evidence ORDER BY seq;

-- AUTOINCREMENT never reuses a number: keep the old table's high-water mark (the copy set
-- ledger_new's to the highest copied seq, the same value unless rows had gone missing).
DELETE FROM sqlite_sequence WHERE name = 'ledger_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'ledger_new', seq FROM sqlite_sequence WHERE name = 'ledger';

DROP TABLE ledger_evidence;
DROP TABLE ledger;

-- Renaming also rewrites ledger_evidence_new's REFERENCES ledger_new into "ledger" and
-- moves the sqlite_sequence row.
ALTER TABLE ledger_new RENAME TO ledger;
ALTER TABLE ledger_evidence_new RENAME TO ledger_evidence;

CREATE INDEX ledger_identity ON ledger (identity, seq);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;

CREATE TRIGGER ledger_evidence_no_update BEFORE UPDATE ON ledger_evidence
BEGIN
    SELECT RAISE(ABORT, 'ledger evidence can only be erased');
END;
