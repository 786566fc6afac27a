-- As sqlite/0005_consent_evidence.sql: each distinct way of collecting consent once
-- (collections, canonical JSON kept as text so that equal values compare as written),
-- consents naming theirs by id, the notice catalogue, and what a consent's lifetime counts
-- from. ADD COLUMN without a default rewrites no row; the UPDATE touches only the preference
-- page's own opt-ins.
CREATE TABLE collections (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    spec text NOT NULL UNIQUE
);
ALTER TABLE consents ADD COLUMN collection_id bigint REFERENCES collections (id);
INSERT INTO collections (spec)
SELECT '{"bundled":false,"conditional":false,"method":"preference-page"}'
WHERE EXISTS (SELECT 1 FROM consents WHERE source = 'preference-page' AND status = 'opted_in');
UPDATE consents SET collection_id = (SELECT id FROM collections WHERE spec =
    '{"bundled":false,"conditional":false,"method":"preference-page"}')
WHERE source = 'preference-page' AND status = 'opted_in';

ALTER TABLE contacts ADD COLUMN last_contact_at timestamptz;
ALTER TABLE contacts ADD COLUMN customer_until timestamptz;

CREATE TABLE notices (
    id                text NOT NULL,
    version           text NOT NULL,
    language          text NOT NULL,
    purposes          text NOT NULL,
    controller        text NOT NULL,
    right_to_withdraw boolean NOT NULL,
    sha256            text NOT NULL,
    text              text,
    url               text,
    created_at        timestamptz NOT NULL,
    locked_at         timestamptz,
    PRIMARY KEY (id, version)
);

CREATE FUNCTION notices_locked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a notice version a consent refers to never changes';
END;
$$;

CREATE TRIGGER notices_locked_no_change BEFORE UPDATE OR DELETE ON notices
    FOR EACH ROW WHEN (OLD.locked_at IS NOT NULL) EXECUTE FUNCTION notices_locked();
