-- Consent that stands up in an audit: how each consent was collected, the notices people
-- agree to, and what a consent's lifetime counts from.
--
-- collections: each distinct way a consent was asked for and given (method, notice version,
-- the form's flags pre_ticked / bundled / conditional, a list provider and its contract:
-- suppression.criteria.Collection), once, as canonical JSON; append-only. A store holds few
-- (one per form and notice version), and consents name theirs by id: a consent row grows by
-- a small integer, not by the JSON (measured on a million contacts, the JSON in every row
-- made the SMTP path's lookup about 10 % slower), and the lookup resolves ids from memory.
-- consents.collection_id is NULL when nothing is on record: every existing consent (they
-- grade "weak"), except the preference page's own opt-ins, whose act is known: a button on a
-- page that bundles and conditions nothing (a scan of consents, about 1 s per million rows).
-- ADD COLUMN rewrites no row.
CREATE TABLE collections (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    spec TEXT NOT NULL UNIQUE
);
ALTER TABLE consents ADD COLUMN collection_id INTEGER REFERENCES collections (id);
INSERT INTO collections (spec)
SELECT '{"bundled":false,"conditional":false,"method":"preference-page"}'
WHERE EXISTS (SELECT 1 FROM consents WHERE source = 'preference-page' AND status = 'opted_in');
UPDATE consents SET collection_id = (SELECT id FROM collections WHERE spec =
    '{"bundled":false,"conditional":false,"method":"preference-page"}')
WHERE source = 'preference-page' AND status = 'opted_in';

-- The last contact that came from the person (where a consent's lifetime restarts) and the
-- end of a customer relationship (a former customer's soft opt-in lasts max_age from it).
ALTER TABLE contacts ADD COLUMN last_contact_at INTEGER;
ALTER TABLE contacts ADD COLUMN customer_until INTEGER;

-- The notice catalogue: each version of the wording people agree to. purposes is a JSON list;
-- sha256 is the text's (given with a url when the text is kept elsewhere). A version is
-- locked when a consent first names it, and from then on the database refuses to change or
-- delete it, as it refuses to change the ledger.
CREATE TABLE notices (
    id                TEXT NOT NULL,
    version           TEXT NOT NULL,
    language          TEXT NOT NULL,
    purposes          TEXT NOT NULL,
    controller        TEXT NOT NULL,
    right_to_withdraw INTEGER NOT NULL CHECK (right_to_withdraw = 0 OR right_to_withdraw = 1),
    sha256            TEXT NOT NULL,
    text              TEXT,
    url               TEXT,
    created_at        INTEGER NOT NULL,
    locked_at         INTEGER,
    PRIMARY KEY (id, version)
) WITHOUT ROWID;

CREATE TRIGGER notices_locked_no_update BEFORE UPDATE ON notices WHEN OLD.locked_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a notice version a consent refers to never changes');
END;

CREATE TRIGGER notices_locked_no_delete BEFORE DELETE ON notices WHEN OLD.locked_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a notice version a consent refers to never changes');
END;
