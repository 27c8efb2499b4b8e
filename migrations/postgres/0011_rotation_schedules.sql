-- Rotation schedules (issue 15): per environment, a cron expression or a one-time instant at which the server
-- rotates the environment's fn::rotate calls (all, or those under one path). Any replica may run a due schedule; a
-- lease (owner, until) decides which one does, as for KEK migrations. A run acts as the token that created the
-- schedule (creator_token_id), with the rights it has at run time.

CREATE TABLE rotation_schedules (
    id                TEXT PRIMARY KEY,
    org_id            TEXT NOT NULL REFERENCES orgs(id),
    env_id            TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    cron              TEXT NOT NULL DEFAULT '',    -- '' for a one-time schedule
    once_ms           BIGINT,                      -- the one-time instant; NULL for a cron schedule
    env_path          TEXT NOT NULL DEFAULT '',    -- '' = every fn::rotate of the environment
    paused            BIGINT NOT NULL DEFAULT 0,
    creator_token_id  TEXT NOT NULL,
    creator           TEXT NOT NULL,               -- who made it, as audit records name them
    next_ms           BIGINT,                      -- when it runs next; NULL: never again (a one-time schedule ran)
    last_ms           BIGINT,                      -- when it last ran
    last_result       TEXT NOT NULL DEFAULT '',    -- succeeded | failed: <why>
    attempts          BIGINT NOT NULL DEFAULT 0,  -- failed runs since the last success (retries back off)
    lease_owner       TEXT NOT NULL DEFAULT '',
    lease_until_ms    BIGINT NOT NULL DEFAULT 0,
    created_ms        BIGINT NOT NULL,
    modified_ms       BIGINT NOT NULL
);
CREATE INDEX rotation_schedules_by_env ON rotation_schedules (env_id, id);
CREATE INDEX rotation_schedules_due ON rotation_schedules (next_ms);

-- Each run of a schedule (Pulumi's schedule history).
CREATE TABLE rotation_schedule_runs (
    id           TEXT PRIMARY KEY,
    schedule_id  TEXT NOT NULL REFERENCES rotation_schedules(id) ON DELETE CASCADE,
    executed_ms  BIGINT NOT NULL,
    revision     BIGINT NOT NULL DEFAULT 0,        -- the revision the run wrote (0: none)
    result       TEXT NOT NULL
);
CREATE INDEX rotation_schedule_runs_by_schedule ON rotation_schedule_runs (schedule_id, executed_ms);
