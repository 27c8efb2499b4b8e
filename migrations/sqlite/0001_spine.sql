-- Sesame schema, SQLite dialect. Timestamps are Unix milliseconds (INTEGER); booleans are 0/1 INTEGER; ids are
-- UUID text. Keep this file and migrations/postgres/0001_spine.sql in step: same tables, same columns.

-- One row once the instance is bootstrapped; inserting it is how concurrent first starts agree on one winner.
CREATE TABLE instance (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    created_ms  INTEGER NOT NULL
);

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    login           TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    instance_admin  INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL
);

-- Access tokens are stored only as the SHA-256 of the token text.
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    token_hash   BLOB NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    user_id      TEXT REFERENCES users(id),
    org_id       TEXT REFERENCES orgs(id),
    description  TEXT NOT NULL DEFAULT '',
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER,
    revoked_ms   INTEGER
);

-- Key-encryption keys, referenced by URI. org_id '' marks an instance (system) KEK.
CREATE TABLE keks (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL DEFAULT '',
    uri         TEXT NOT NULL,
    state       TEXT NOT NULL,
    is_default  INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    UNIQUE (org_id, uri)
);

-- Data-encryption keys: one row per scope and generation; the key itself lives only in dek_wraps, wrapped.
CREATE TABLE deks (
    id          TEXT PRIMARY KEY,
    scope       TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    state       TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (scope, generation)
);

CREATE TABLE dek_wraps (
    dek_id       TEXT NOT NULL REFERENCES deks(id),
    kek_id       TEXT NOT NULL REFERENCES keks(id),
    kek_version  TEXT NOT NULL,
    wrapped      BLOB NOT NULL,
    wrap_alg     TEXT NOT NULL,
    binding      BLOB,
    is_primary   INTEGER NOT NULL DEFAULT 0,
    created_ms   INTEGER NOT NULL,
    PRIMARY KEY (dek_id, kek_id)
);

CREATE INDEX dek_wraps_by_kek ON dek_wraps (kek_id, dek_id);
