-- Vault-Transit keys (issue 16), per org and mount. A key's policy is JSON text (core::transit::policy::KeyPolicy);
-- latest_version is a column of its own so a rotation is one conditional update. Each version's material (HMAC key
-- and key) is sealed under the org's transit DEK scope, associated data naming org, key id and version; the public
-- key of a signing key is kept in the clear. `encryptions` counts the values encrypted under a version, summed
-- from every replica (the nonce budget).

CREATE TABLE transit_mounts (
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    path        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (org_id, path)
);

CREATE TABLE transit_keys (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES orgs(id),
    mount           TEXT NOT NULL,
    name            TEXT NOT NULL,
    policy          TEXT NOT NULL,
    latest_version  BIGINT NOT NULL,
    created_ms      BIGINT NOT NULL,
    modified_ms     BIGINT NOT NULL,
    UNIQUE (org_id, mount, name)
);

CREATE TABLE transit_key_versions (
    key_id       TEXT NOT NULL REFERENCES transit_keys(id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    sealed       BYTEA NOT NULL,
    public_key   TEXT,
    created_ms   BIGINT NOT NULL,
    encryptions  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, version)
);
