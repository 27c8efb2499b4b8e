-- Audit log: one hash chain per organization (chain = org id) plus 'instance'. Append-only: triggers refuse
-- UPDATE and DELETE. audit_heads holds each chain's last record, so appends serialise on it.

CREATE TABLE audit_heads (
    chain  TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL,
    hash   TEXT NOT NULL
);

CREATE TABLE audit_events (
    chain      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    time_ms    INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    source     TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
