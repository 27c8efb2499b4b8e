-- Identity and access (members, teams, role grants, team tokens) and environments (revisions, tags, open
-- sessions). Keep in step with migrations/sqlite/0004_environments.sql.

ALTER TABLE tokens ADD COLUMN team_id TEXT;

-- Who belongs to an org. Their org-wide role is a row of role_grants.
CREATE TABLE org_members (
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE teams (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_ms   BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id     TEXT NOT NULL REFERENCES teams(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

-- A role granted to a subject ('user:<id>' or 'team:<id>') on the whole org (project = '', env = ''), one project
-- (env = '') or one environment. The most specific grant wins (core::authz).
CREATE TABLE role_grants (
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    subject     TEXT NOT NULL,
    project     TEXT NOT NULL DEFAULT '',
    env         TEXT NOT NULL DEFAULT '',
    role        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (org_id, subject, project, env)
);

-- An environment: its immutable id (the DEK scope and the secrets' associated data name it) and its head revision.
CREATE TABLE environments (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    project      TEXT NOT NULL,
    name         TEXT NOT NULL,
    head         BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL,
    modified_ms  BIGINT NOT NULL,
    UNIQUE (org_id, project, name)
);

-- Immutable revisions: the stored YAML holds only ciphertext for secrets.
CREATE TABLE env_revisions (
    env_id             TEXT NOT NULL REFERENCES environments(id),
    revision           BIGINT NOT NULL,
    yaml               TEXT NOT NULL,
    created_ms         BIGINT NOT NULL,
    creator            TEXT NOT NULL,
    retracted_ms       BIGINT,
    retracted_by       TEXT,
    retraction_reason  TEXT,
    replacement        BIGINT,
    PRIMARY KEY (env_id, revision)
);

CREATE TABLE env_revision_tags (
    env_id       TEXT NOT NULL REFERENCES environments(id),
    name         TEXT NOT NULL,
    revision     BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL,
    modified_ms  BIGINT NOT NULL,
    editor       TEXT NOT NULL,
    PRIMARY KEY (env_id, name)
);

CREATE TABLE env_tags (
    env_id       TEXT NOT NULL REFERENCES environments(id),
    name         TEXT NOT NULL,
    value        TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    modified_ms  BIGINT NOT NULL,
    editor       TEXT NOT NULL,
    PRIMARY KEY (env_id, name)
);

-- Open sessions: the evaluated environment sealed under the environment's DEK, readable by any replica until it
-- expires.
CREATE TABLE open_sessions (
    id          TEXT PRIMARY KEY,
    env_id      TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    sealed      BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

CREATE INDEX open_sessions_by_expiry ON open_sessions (expires_ms);
