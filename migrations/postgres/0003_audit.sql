-- Audit log: one hash chain per organization (chain = org id) plus 'instance'. Append-only: a trigger refuses
-- UPDATE and DELETE. audit_heads holds each chain's last record; appends lock it, so they serialise per chain.

CREATE TABLE audit_heads (
    chain  TEXT PRIMARY KEY,
    seq    BIGINT NOT NULL,
    hash   TEXT NOT NULL
);

CREATE TABLE audit_events (
    chain      TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    time_ms    BIGINT NOT NULL,
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

CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
