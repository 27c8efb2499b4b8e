-- Signed audit checkpoints: the instance's Ed25519 signing key (its private half sealed under the audit-signing
-- DEK scope), and each chain's signed heads. Checkpoints are append-only like the chain they vouch for.

CREATE TABLE audit_signing_keys (
    name        TEXT PRIMARY KEY,
    public_key  BYTEA NOT NULL,
    sealed      BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE audit_checkpoints (
    chain      TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    head       TEXT NOT NULL,
    time_ms    BIGINT NOT NULL,
    key        TEXT NOT NULL,
    signature  TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);

-- A pruned chain's anchor: the signed checkpoint through which its records were archived and deleted. Deleting is
-- allowed only at or below the anchor (checkpoints: below it, so the anchor's own checkpoint stays); the anchor only
-- moves forward.
CREATE TABLE audit_anchors (
    chain      TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    head       TEXT NOT NULL,
    time_ms    BIGINT NOT NULL,
    key        TEXT NOT NULL,
    signature  TEXT NOT NULL
);

CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
DECLARE
    anchor BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT a.seq INTO anchor FROM audit_anchors a WHERE a.chain = OLD.chain;
        anchor := COALESCE(anchor, 0);
        IF (TG_TABLE_NAME = 'audit_events' AND OLD.seq <= anchor)
           OR (TG_TABLE_NAME = 'audit_checkpoints' AND OLD.seq < anchor) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE FUNCTION audit_anchors_forward_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.seq > OLD.seq AND NEW.chain = OLD.chain THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'an audit anchor only moves forward';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_anchors_forward_only BEFORE UPDATE OR DELETE ON audit_anchors
FOR EACH ROW EXECUTE FUNCTION audit_anchors_forward_only();
