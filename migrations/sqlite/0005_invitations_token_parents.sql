-- Consent and token lineage. Keep in step with migrations/postgres/0005_invitations_token_parents.sql.

-- The token that made this one (NULL for the administrator's first token, a new user's first token, and tokens
-- made before this migration). Revoking a token revokes every token it made, transitively.
ALTER TABLE tokens ADD COLUMN parent_id TEXT;
CREATE INDEX tokens_by_parent ON tokens (parent_id);

-- Listings gather a caller's grants in every org by subject.
CREATE INDEX role_grants_by_subject ON role_grants (subject);

-- An org admin's invitation of a login to the org, with the org-wide role it would get. The user it names joins
-- only by accepting it; the login need not exist (the inviter is answered the same either way).
CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    login       TEXT NOT NULL,
    role        TEXT NOT NULL,
    invited_by  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (org_id, login)
);
CREATE INDEX invitations_by_login ON invitations (login);
