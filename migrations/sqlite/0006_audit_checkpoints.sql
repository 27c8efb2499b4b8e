-- Signed audit checkpoints: the instance's Ed25519 signing key (its private half sealed under the audit-signing
-- DEK scope), and each chain's signed heads. Checkpoints are append-only like the chain they vouch for.

CREATE TABLE audit_signing_keys (
    name        TEXT PRIMARY KEY,
    public_key  BLOB NOT NULL,
    sealed      BLOB NOT NULL,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE audit_checkpoints (
    chain      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    head       TEXT NOT NULL,
    time_ms    INTEGER NOT NULL,
    key        TEXT NOT NULL,
    signature  TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

-- A pruned chain's anchor: the signed checkpoint through which its records were archived and deleted. Deleting is
-- allowed only at or below the anchor (checkpoints: below it, so the anchor's own checkpoint stays); the anchor only
-- moves forward.
CREATE TABLE audit_anchors (
    chain      TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    head       TEXT NOT NULL,
    time_ms    INTEGER NOT NULL,
    key        TEXT NOT NULL,
    signature  TEXT NOT NULL
);

DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.seq > COALESCE((SELECT a.seq FROM audit_anchors a WHERE a.chain = OLD.chain), 0)
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

DROP TRIGGER audit_checkpoints_no_delete;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
WHEN OLD.seq >= COALESCE((SELECT a.seq FROM audit_anchors a WHERE a.chain = OLD.chain), 0)
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

CREATE TRIGGER audit_anchors_forward_only BEFORE UPDATE ON audit_anchors
WHEN NEW.seq <= OLD.seq OR NEW.chain <> OLD.chain
BEGIN SELECT RAISE(ABORT, 'an audit anchor only moves forward'); END;
CREATE TRIGGER audit_anchors_no_delete BEFORE DELETE ON audit_anchors
BEGIN SELECT RAISE(ABORT, 'an audit anchor only moves forward'); END;
