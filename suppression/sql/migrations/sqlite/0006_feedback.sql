-- Bounces and complaints (issue 15): the history the feedback loop learns from, and the short
-- ids its return-path references name. Independent of 0005 (see migrations/__init__.py).
--
-- feedback_events: one row per (report, recipient). report_key is a SHA-256 over what makes
-- a report the same report for that recipient, so a replayed report inserts nothing (the
-- store's idempotency). Rows hold no address: the keyed identity, the times, where the report
-- came from, what it said (class and reason, the enhanced status, the reporting MTA) and the
-- suppression it added or extended, if any. Erasure keeps the pseudonymous skeleton and clears
-- status and mta (the evidence), as it clears consent evidence.
CREATE TABLE feedback_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    report_key     TEXT NOT NULL UNIQUE,
    identity       TEXT NOT NULL,
    at             INTEGER NOT NULL,
    source         TEXT NOT NULL
        CHECK (source = 'relay' OR source = 'dsn' OR source = 'fbl' OR source = 'mailbox'),
    kind           TEXT NOT NULL CHECK (kind = 'bounce' OR kind = 'complaint'),
    feedback_class TEXT NOT NULL,
    reason         TEXT NOT NULL,
    status         TEXT,
    mta            TEXT,
    suppression_id INTEGER
);
-- The access answer and the soft-bounce history: one identity's events by time.
CREATE INDEX feedback_events_identity ON feedback_events (identity, at);

-- feedback_refs: a short number per identity, which a return-path reference carries under its
-- MAC instead of the 64-character identity (an envelope local part has 64 octets).
CREATE TABLE feedback_refs (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL UNIQUE
);
