-- Feedback from the relay provider's signed event webhooks (issue 19): feedback_events takes
-- four more sources, 'ses', 'sendgrid', 'mailgun' and 'postmark', beside 0006's 'relay',
-- 'dsn', 'fbl' and 'mailbox' (suppression.model.FeedbackSource). Nothing else changes.
--
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt (create, copy, drop, rename;
-- the procedure of 0003), with its AUTOINCREMENT high-water mark and its index as in 0006.
CREATE TABLE feedback_events_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    report_key     TEXT NOT NULL UNIQUE,
    identity       TEXT NOT NULL,
    at             INTEGER NOT NULL,
    source         TEXT NOT NULL
        CHECK (source = 'relay' OR source = 'dsn' OR source = 'fbl' OR source = 'mailbox'
               OR source = 'ses' OR source = 'sendgrid' OR source = 'mailgun'
               OR source = 'postmark'),
    kind           TEXT NOT NULL CHECK (kind = 'bounce' OR kind = 'complaint'),
    feedback_class TEXT NOT NULL,
    reason         TEXT NOT NULL,
    status         TEXT,
    mta            TEXT,
    suppression_id INTEGER
);

INSERT INTO feedback_events_new (id, report_key, identity, at, source, kind, feedback_class,
                                 reason, status, mta, suppression_id)
SELECT id, report_key, identity, at, source, kind, feedback_class, reason, status, mta,
       suppression_id
FROM feedback_events ORDER BY id;

DELETE FROM sqlite_sequence WHERE name = 'feedback_events_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'feedback_events_new', seq FROM sqlite_sequence WHERE name = 'feedback_events';

DROP TABLE feedback_events;
ALTER TABLE feedback_events_new RENAME TO feedback_events;
CREATE INDEX feedback_events_identity ON feedback_events (identity, at);
