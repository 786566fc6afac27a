-- Same schema as sqlite/0001_initial.sql; timestamps are timestamptz, JSON columns jsonb.
CREATE TABLE contacts (
    identity       text PRIMARY KEY,
    email          text,
    audience       text NOT NULL DEFAULT 'b2c' CHECK (audience IN ('b2c', 'b2b')),
    customer       boolean NOT NULL DEFAULT false,
    customer_since timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE consents (
    identity     text NOT NULL REFERENCES contacts (identity),
    purpose      text NOT NULL,
    status       text NOT NULL CHECK (status IN ('opted_in', 'opted_out')),
    basis        text NOT NULL,
    collected_at timestamptz NOT NULL,
    source       text NOT NULL,
    evidence     jsonb NOT NULL DEFAULT '{}',
    withdrawn_at timestamptz,
    PRIMARY KEY (identity, purpose)
);

CREATE TABLE suppressions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identity   text,
    domain     text,
    scope      text NOT NULL CHECK (scope IN ('all', 'marketing', 'purpose')),
    purpose    text,
    reason     text NOT NULL,
    source     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    CHECK ((identity IS NULL) <> (domain IS NULL)),
    CHECK ((scope = 'purpose') = (purpose IS NOT NULL))
);
CREATE UNIQUE INDEX suppressions_key ON suppressions (
    coalesce(identity, ''), coalesce(domain, ''), scope, coalesce(purpose, ''), reason
);
CREATE INDEX suppressions_identity ON suppressions (identity);
CREATE INDEX suppressions_domain ON suppressions (domain);

CREATE TABLE ledger (
    seq       bigint PRIMARY KEY,
    at        timestamptz NOT NULL,
    kind      text NOT NULL,
    identity  text,
    purpose   text,
    source    text NOT NULL,
    actor     text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}',
    prev_hash text NOT NULL,
    hash      text NOT NULL UNIQUE
);
CREATE INDEX ledger_identity ON ledger (identity, seq);

CREATE TABLE ledger_evidence (
    seq      bigint PRIMARY KEY REFERENCES ledger (seq),
    evidence jsonb NOT NULL
);

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER ledger_no_change BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_evidence_no_update BEFORE UPDATE ON ledger_evidence
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

CREATE TABLE deliveries (
    message_key text NOT NULL,
    identity    text NOT NULL,
    until       timestamptz NOT NULL,
    PRIMARY KEY (message_key, identity)
);
CREATE INDEX deliveries_until ON deliveries (until);
