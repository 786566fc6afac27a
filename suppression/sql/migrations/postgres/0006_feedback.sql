-- As sqlite/0006_feedback.sql: the feedback loop's history and the short ids its return-path
-- references name. Independent of 0005 (see migrations/__init__.py).
CREATE TABLE feedback_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    report_key     text NOT NULL UNIQUE,
    identity       text NOT NULL,
    at             timestamptz NOT NULL,
    source         text NOT NULL CHECK (source IN ('relay', 'dsn', 'fbl', 'mailbox')),
    kind           text NOT NULL CHECK (kind IN ('bounce', 'complaint')),
    feedback_class text NOT NULL,
    reason         text NOT NULL,
    status         text,
    mta            text,
    suppression_id bigint
);
CREATE INDEX feedback_events_identity ON feedback_events (identity, at);

CREATE TABLE feedback_refs (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identity text NOT NULL UNIQUE
);
