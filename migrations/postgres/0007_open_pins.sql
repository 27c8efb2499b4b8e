-- Open sessions carry what they were evaluated from in their (sealed) id; what the evaluation read — each document's
-- environment id and revision, an unsaved document's text — is stored once per distinct set, sealed, keyed by its
-- digest, until the last session that may name it expires.
CREATE TABLE open_pins (
    org_id      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    env_id      TEXT NOT NULL,
    sealed      BYTEA NOT NULL,
    expires_ms  BIGINT NOT NULL,
    PRIMARY KEY (org_id, digest)
);

CREATE INDEX open_pins_by_expiry ON open_pins (expires_ms);
CREATE INDEX open_pins_by_env ON open_pins (env_id);
