//! The audit log's pure part: what an event holds, the hash chain that links each chain's events (one chain per
//! organization, plus `instance` for what belongs to no organization), and the check of an exported chain against a
//! head recorded earlier. Any edited, removed, reordered or truncated row breaks the chain.

use aws_lc_rs::digest;

/// The chain for events that belong to no organization (instance administration, unauthenticated failures).
pub const INSTANCE_CHAIN: &str = "instance";

/// One audit event, before it is placed in its chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// The organization id, or [`INSTANCE_CHAIN`].
    pub chain: String,
    pub time_ms: i64,
    /// Who: `user:NAME`, `token:ID`, `system:migration-runner`, `anonymous`.
    pub actor: String,
    /// Where from: the client address, or `internal`.
    pub source: String,
    /// What: `kek.add`, `kek.migration.batch`, `auth.failed`, …
    pub action: String,
    /// On what: a KEK id, a migration id, a path.
    pub target: String,
    /// `ok`, `denied`, `failed`.
    pub outcome: String,
    /// Extra facts (counts, error classes); never a secret.
    pub detail: String,
}

/// An event in its chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hex SHA-256 of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this record: see [`chain_hash`].
    pub hash: String,
}

/// The hash before the first record of a chain.
pub const GENESIS: [u8; 32] = [0; 32];

/// SHA-256 over the previous hash, the sequence number and every field, each length-prefixed.
pub fn chain_hash(prev: &[u8; 32], seq: i64, e: &AuditEvent) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"sesame-audit-v1");
    ctx.update(prev);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&e.time_ms.to_be_bytes());
    for field in [
        &e.chain, &e.actor, &e.source, &e.action, &e.target, &e.outcome, &e.detail,
    ] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Places `events` after a chain whose last record is `(seq, hash)`.
pub fn link(mut seq: i64, mut prev: [u8; 32], events: Vec<AuditEvent>) -> Vec<AuditRecord> {
    events
        .into_iter()
        .map(|event| {
            seq += 1;
            let hash = chain_hash(&prev, seq, &event);
            let rec = AuditRecord {
                seq,
                event,
                prev_hash: hex(&prev),
                hash: hex(&hash),
            };
            prev = hash;
            rec
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("record {seq}: its hash does not match its contents (edited)")]
    Edited { seq: i64 },
    #[error("record {seq}: it does not follow record {prev} (a record was removed or reordered)")]
    Gap { seq: i64, prev: i64 },
    #[error("the chain mixes organizations ({0} and {1})")]
    MixedChains(String, String),
    #[error("the chain ends at record {seq} with head {head}, not at the expected head {expected}")]
    HeadMismatch { seq: i64, head: String, expected: String },
    #[error("the expected head {0} is not a hex SHA-256")]
    BadHead(String),
}

/// Checks that `records` (one whole chain, from its first record) link up, and, when given, that the chain ends at
/// `expected_head` (a head exported earlier: a truncated chain ends elsewhere). Returns the last sequence number.
pub fn verify(records: &[AuditRecord], expected_head: Option<&str>) -> Result<i64, ChainError> {
    let mut prev = GENESIS;
    let mut last = 0;
    for r in records {
        if let Some(first) = records.first()
            && first.event.chain != r.event.chain
        {
            return Err(ChainError::MixedChains(
                first.event.chain.clone(),
                r.event.chain.clone(),
            ));
        }
        if r.seq != last + 1 || r.prev_hash != hex(&prev) {
            return Err(ChainError::Gap { seq: r.seq, prev: last });
        }
        let h = chain_hash(&prev, r.seq, &r.event);
        if hex(&h) != r.hash {
            return Err(ChainError::Edited { seq: r.seq });
        }
        prev = h;
        last = r.seq;
    }
    if let Some(expected) = expected_head {
        if unhex(expected).is_none() {
            return Err(ChainError::BadHead(expected.to_owned()));
        }
        if hex(&prev) != expected.to_ascii_lowercase() {
            return Err(ChainError::HeadMismatch {
                seq: last,
                head: hex(&prev),
                expected: expected.to_owned(),
            });
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str) -> AuditEvent {
        AuditEvent {
            chain: "org1".into(),
            time_ms: 7,
            actor: "user:admin".into(),
            source: "127.0.0.1".into(),
            action: action.into(),
            target: "kek-1".into(),
            outcome: "ok".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn the_chain_detects_edits_removals_and_truncation() {
        let recs = link(0, GENESIS, vec![ev("a"), ev("b"), ev("c")]);
        let head = recs[2].hash.clone();
        assert_eq!(verify(&recs, Some(&head)), Ok(3));
        let mut edited = recs.clone();
        edited[1].event.outcome = "denied".into();
        assert_eq!(verify(&edited, None), Err(ChainError::Edited { seq: 2 }));
        let removed = vec![recs[0].clone(), recs[2].clone()];
        assert!(matches!(verify(&removed, None), Err(ChainError::Gap { seq: 3, .. })));
        let truncated = recs[..2].to_vec();
        assert!(verify(&truncated, None).is_ok(), "a prefix is consistent on its own");
        assert!(matches!(
            verify(&truncated, Some(&head)),
            Err(ChainError::HeadMismatch { .. })
        ));
        // Appending continues the same chain.
        let more = link(3, unhex(&head).unwrap(), vec![ev("d")]);
        let all: Vec<_> = recs.into_iter().chain(more).collect();
        assert_eq!(verify(&all, None), Ok(4));
    }
}
