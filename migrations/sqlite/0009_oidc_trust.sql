-- Token exchange: trusted OIDC issuers per org, their claim policies, and the confinement of exchanged tokens.
-- Keep in step with migrations/postgres/0009_oidc_trust.sql.

-- An org's trusted issuer. `url` is the `iss` its tokens carry (unique per org); `jwks` (JSON text) is an inline
-- key set, in which case nothing is fetched for it; `thumbprints` is a JSON list of TLS certificate thumbprints.
CREATE TABLE oidc_issuers (
    id                TEXT PRIMARY KEY,
    org_id            TEXT NOT NULL REFERENCES orgs(id),
    name              TEXT NOT NULL,
    url               TEXT NOT NULL,
    thumbprints       TEXT NOT NULL DEFAULT '[]',
    jwks              TEXT,
    max_expiration_s  INTEGER NOT NULL,
    disabled          INTEGER NOT NULL DEFAULT 0,
    created_ms        INTEGER NOT NULL,
    modified_ms       INTEGER NOT NULL,
    UNIQUE (org_id, url),
    UNIQUE (org_id, name)
);

-- An issuer's policy list (JSON text, Pulumi's shape), replaced whole; `version` counts replacements. Created
-- empty (deny all) with its issuer and deleted with it.
CREATE TABLE oidc_policies (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    issuer_id   TEXT NOT NULL UNIQUE REFERENCES oidc_issuers(id),
    version     INTEGER NOT NULL,
    policies    TEXT NOT NULL,
    modified_ms INTEGER NOT NULL
);

-- A token that acts only in this org whatever its user belongs to (tokens minted by exchange), and the highest
-- role it may exercise there (NULL: no cap).
ALTER TABLE tokens ADD COLUMN confined_org_id TEXT;
ALTER TABLE tokens ADD COLUMN role_cap TEXT;
