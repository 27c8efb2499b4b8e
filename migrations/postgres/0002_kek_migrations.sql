-- KEK migrations (issue 6): DEKs learn their org, so a migration can be limited to one org's DEKs, and each
-- migration job keeps its cursor, counts and lease in the database (any replica can resume it).

ALTER TABLE deks ADD COLUMN org_id TEXT NOT NULL DEFAULT '';
UPDATE deks SET org_id = split_part(scope, ':', 2) WHERE scope LIKE 'stack:%';
CREATE INDEX deks_by_org ON deks (org_id, id);

CREATE TABLE kek_migrations (
    id              TEXT PRIMARY KEY,
    from_kek        TEXT NOT NULL REFERENCES keks(id),
    to_kek          TEXT NOT NULL REFERENCES keks(id),
    org_id          TEXT NOT NULL DEFAULT '',   -- '' = every DEK under from_kek
    state           TEXT NOT NULL,              -- running | paused | done | failed | retired
    cursor_dek      TEXT NOT NULL DEFAULT '',   -- DEKs with id <= cursor are done
    total           BIGINT NOT NULL DEFAULT 0,
    migrated        BIGINT NOT NULL DEFAULT 0,
    verified_ms     BIGINT,
    error           TEXT NOT NULL DEFAULT '',
    lease_owner     TEXT NOT NULL DEFAULT '',
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL
);
