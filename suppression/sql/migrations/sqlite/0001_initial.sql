-- Timestamps are INTEGER microseconds since 1970-01-01 UTC. JSON columns hold TEXT.
CREATE TABLE contacts (
    identity       TEXT PRIMARY KEY,
    email          TEXT,
    audience       TEXT NOT NULL DEFAULT 'b2c' CHECK (audience IN ('b2c', 'b2b')),
    customer       INTEGER NOT NULL DEFAULT 0 CHECK (customer IN (0, 1)),
    customer_since INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE consents (
    identity     TEXT NOT NULL REFERENCES contacts (identity),
    purpose      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('opted_in', 'opted_out')),
    basis        TEXT NOT NULL,
    collected_at INTEGER NOT NULL,
    source       TEXT NOT NULL,
    evidence     TEXT NOT NULL DEFAULT '{}',
    withdrawn_at INTEGER,
    PRIMARY KEY (identity, purpose)
) WITHOUT ROWID;

CREATE TABLE suppressions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    identity   TEXT,
    domain     TEXT,
    scope      TEXT NOT NULL CHECK (scope IN ('all', 'marketing', 'purpose')),
    purpose    TEXT,
    reason     TEXT NOT NULL,
    source     TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    CHECK ((identity IS NULL) <> (domain IS NULL)),
    CHECK ((scope = 'purpose') = (purpose IS NOT NULL))
);
-- Idempotent add_suppression: one row per target, scope, purpose and reason.
CREATE UNIQUE INDEX suppressions_key ON suppressions (
    coalesce(identity, ''), coalesce(domain, ''), scope, coalesce(purpose, ''), reason
);
CREATE INDEX suppressions_identity ON suppressions (identity);
CREATE INDEX suppressions_domain ON suppressions (domain);

-- Append-only consent ledger. Rows hold only pseudonymous fields (the identity, never the
-- address); the hash chain covers them. Personal evidence lives in ledger_evidence, which
-- erasure may delete without breaking the chain.
CREATE TABLE ledger (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    identity  TEXT,
    purpose   TEXT,
    source    TEXT NOT NULL,
    actor     TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL UNIQUE
);
CREATE INDEX ledger_identity ON ledger (identity, seq);

CREATE TABLE ledger_evidence (
    seq      INTEGER PRIMARY KEY REFERENCES ledger (seq),
    evidence TEXT NOT NULL
);

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

-- Duplicate-free retry: which identities already received a message, until when.
CREATE TABLE deliveries (
    message_key TEXT NOT NULL,
    identity    TEXT NOT NULL,
    until       INTEGER NOT NULL,
    PRIMARY KEY (message_key, identity)
) WITHOUT ROWID;
CREATE INDEX deliveries_until ON deliveries (until);
