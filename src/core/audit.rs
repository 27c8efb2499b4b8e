//! The audit log's pure part: what an event holds, the hash chain that links each chain's events (one chain per
//! organization, plus `instance` for what belongs to no organization), and the check of an exported chain against a
//! head recorded earlier. Any edited, removed, reordered or truncated row breaks the chain. What can be recorded is
//! closed: an [`AuditAction`] and an [`Outcome`], each with the text it is stored as.
//!
//! An unkeyed chain only proves consistency: whoever can write the database can rewrite a record and recompute
//! every hash after it. Signed checkpoints close that gap: the server signs each chain's head (Ed25519, with a key
//! sealed in the key hierarchy) at least every [`CHECKPOINT_EVERY_RECORDS`] records or [`CHECKPOINT_EVERY_MS`];
//! [`verify_checkpoints`] checks an export against them, so an edit of any record up to the last checkpoint is
//! caught with nothing but the public key. Records after the last checkpoint are covered by no signature.

use aws_lc_rs::{digest, signature};

/// The chain for events that belong to no organization (instance administration, unauthenticated failures).
pub const INSTANCE_CHAIN: &str = "instance";

/// Declares [`AuditAction`] with the text each action is stored as, once.
macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// What an audit record says happened. [`AuditAction::as_str`] is the text stored in the record (and hashed
        /// into the chain), so it never changes for an existing action: records written before read the same.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
        }

        impl AuditAction {
            /// Every action.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The stored text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $text,)*
                }
            }
        }
    };
}

audit_actions! {
    /// A caller without the role an action needs (or without any role in the org).
    AccessDenied = "access.denied",
    /// A caller refused an instance-administration endpoint.
    AdminDenied = "admin.denied",
    /// Records of a chain deleted through a signed checkpoint.
    AuditPrune = "audit.prune",
    /// Failed authentications of one source in one window (tallied).
    AuthFailed = "auth.failed",
    EnvCreate = "env.create",
    EnvClone = "env.clone",
    EnvDecrypt = "env.decrypt",
    EnvDelete = "env.delete",
    EnvOpen = "env.open",
    EnvRename = "env.rename",
    EnvUpdate = "env.update",
    /// Plaintext secrets an earlier version stored, sealed in place at start-up.
    EnvRevisionReseal = "env.revision.reseal",
    EnvRevisionRetract = "env.revision.retract",
    EnvRevisionTagCreate = "env.revision_tag.create",
    EnvRevisionTagUpdate = "env.revision_tag.update",
    EnvRevisionTagDelete = "env.revision_tag.delete",
    EnvTagCreate = "env.tag.create",
    EnvTagUpdate = "env.tag.update",
    EnvTagDelete = "env.tag.delete",
    KekAdd = "kek.add",
    KekDefault = "kek.default",
    KekDisable = "kek.disable",
    /// An operator asked for a migration (the migration's own steps follow as `kek.migration.*`).
    KekMigrationRequested = "kek.migration.requested",
    KekMigrationPauseRequested = "kek.migration.pause-requested",
    KekMigrationResumeRequested = "kek.migration.resume-requested",
    KekMigrationVerifyRequested = "kek.migration.verify-requested",
    KekMigrationRetireRequested = "kek.migration.retire-requested",
    KekMigrationStart = "kek.migration.start",
    KekMigrationResume = "kek.migration.resume",
    KekMigrationBatch = "kek.migration.batch",
    KekMigrationVerified = "kek.migration.verified",
    KekMigrationRetire = "kek.migration.retire",
    /// A migration's state set to `running` (and so on below): `kek.migration.<state>`.
    KekMigrationRunning = "kek.migration.running",
    KekMigrationPaused = "kek.migration.paused",
    KekMigrationDone = "kek.migration.done",
    KekMigrationFailed = "kek.migration.failed",
    KekMigrationRetired = "kek.migration.retired",
    MemberAdd = "member.add",
    MemberRole = "member.role",
    MemberRemove = "member.remove",
    MemberInvite = "member.invite",
    MemberInviteWithdraw = "member.invite.withdraw",
    MemberJoin = "member.join",
    MemberDecline = "member.decline",
    OrgCreate = "org.create",
    RoleGrant = "role.grant",
    RoleRevoke = "role.revoke",
    /// Stack encryptions of one principal, source, stack and outcome in one window (tallied).
    StackEncrypt = "stack.encrypt",
    StackDecrypt = "stack.decrypt",
    TeamCreate = "team.create",
    TeamDelete = "team.delete",
    TeamMemberAdd = "team.member.add",
    TeamMemberRemove = "team.member.remove",
    TokenCreate = "token.create",
    TokenRevoke = "token.revoke",
    /// An OIDC token minted about an environment (sub, aud, lifetime and key id in the detail; never the token).
    OidcMint = "oidc.mint",
    /// The claims of an OIDC token previewed (nothing signed).
    OidcPreview = "oidc.preview",
    /// An OIDC signing key made (published ahead of its use).
    OidcKeyCreate = "oidc.key.create",
    /// Retired OIDC signing keys removed from the JWKS after their retention.
    OidcKeyRemove = "oidc.key.remove",
    /// A trusted OIDC issuer registered in an org (token exchange).
    OidcIssuerCreate = "oidc.issuer.create",
    OidcIssuerUpdate = "oidc.issuer.update",
    OidcIssuerDelete = "oidc.issuer.delete",
    /// An issuer's trust policy list replaced.
    OidcPolicyUpdate = "oidc.policy.update",
    /// An OIDC token exchanged for a Sesame token, or refused (the outcome says which; never the token).
    TokenExchange = "token.exchange",
    /// Vault-Transit calls of one principal, source, key, operation and outcome in one window (tallied; item counts,
    /// never data).
    TransitEncrypt = "transit.encrypt",
    TransitDecrypt = "transit.decrypt",
    TransitRewrap = "transit.rewrap",
    TransitDatakey = "transit.datakey",
    TransitHmac = "transit.hmac",
    TransitSign = "transit.sign",
    TransitVerify = "transit.verify",
    TransitRandom = "transit.random",
    /// A transit key's metadata read or the keys listed (tallied).
    TransitKeyRead = "transit.key.read",
    /// A transit key made (explicitly, by an encryption's upsert, or imported).
    TransitKeyCreate = "transit.key.create",
    TransitKeyConfig = "transit.key.config",
    /// A new version of a transit key (asked for, automatic on `auto_rotate_period`, or for the nonce budget).
    TransitKeyRotate = "transit.key.rotate",
    TransitKeyDelete = "transit.key.delete",
    TransitKeyImport = "transit.key.import",
    /// A transit key's material exported (never the material itself).
    TransitKeyExport = "transit.key.export",
    /// A transit mount enabled in an org.
    TransitMountCreate = "transit.mount.create",
    /// Transit hashes (no key; tallied).
    TransitHash = "transit.hash",
    /// A provider called by an evaluation (`fn::open::<name>`): the provider, the call site and the outcome in
    /// the detail; never an input or an output.
    ProviderOpen = "provider.open",
    /// An environment's `fn::rotate` calls rotated into a new revision: the revision and the paths in the detail;
    /// never a secret.
    EnvRotate = "env.rotate",
    /// A rotation schedule made on an environment: its id and timing in the detail.
    EnvScheduleCreate = "env.schedule.create",
    /// A rotation schedule changed (timing, path or pause).
    EnvScheduleUpdate = "env.schedule.update",
    /// A rotation schedule deleted.
    EnvScheduleDelete = "env.schedule.delete",
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How what an audit record describes ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It happened.
    Ok,
    /// It was refused (no right to it, no credentials).
    Denied,
    /// It was tried and did not succeed (refused input, an undecryptable value, a failed migration).
    Failed,
    /// The server failed.
    Error,
}

impl Outcome {
    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
            Outcome::Error => "error",
        }
    }
}

/// Actions and outcomes order as their stored text does (so records made from sorted keys keep their order).
macro_rules! ordered_as_text {
    ($($t:ty),*) => {$(
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $t {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }
    )*};
}

ordered_as_text!(AuditAction, Outcome);

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event, before it is placed in its chain: the stored record. Its action and outcome are kept as their
/// stored text (so a chain exported by a newer version still verifies here); new events are built with
/// [`AuditEvent::new`] from an [`AuditAction`], then [`AuditEvent::outcome`] and [`AuditEvent::detail`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// The organization id, or [`INSTANCE_CHAIN`].
    pub chain: String,
    pub time_ms: i64,
    /// Who: `user:NAME`, `token:ID`, `system:migration-runner`, `anonymous`.
    pub actor: String,
    /// Where from: the client address, or `internal`.
    pub source: String,
    /// What: an [`AuditAction`]'s text (`kek.add`, `kek.migration.batch`, `auth.failed`, …).
    pub action: String,
    /// On what: a KEK id, a migration id, a path.
    pub target: String,
    /// An [`Outcome`]'s text: `ok`, `denied`, `failed`, `error`.
    pub outcome: String,
    /// Extra facts (counts, error classes); never a secret.
    pub detail: String,
}

impl AuditEvent {
    /// An event of `action` on `target` by `actor` from `source` in `chain` at `time_ms`: outcome `ok`, no detail.
    pub fn new(
        chain: impl Into<String>,
        time_ms: i64,
        actor: impl Into<String>,
        source: impl Into<String>,
        action: AuditAction,
        target: impl Into<String>,
    ) -> AuditEvent {
        AuditEvent {
            chain: chain.into(),
            time_ms,
            actor: actor.into(),
            source: source.into(),
            action: action.as_str().to_owned(),
            target: target.into(),
            outcome: Outcome::Ok.as_str().to_owned(),
            detail: String::new(),
        }
    }

    /// The same event with `outcome`.
    #[must_use]
    pub fn outcome(mut self, outcome: Outcome) -> AuditEvent {
        self.outcome = outcome.as_str().to_owned();
        self
    }

    /// The same event with `detail` (extra facts: counts, error classes; never a secret).
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> AuditEvent {
        self.detail = detail.into();
        self
    }
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
    let (last, prev) = verify_from(0, GENESIS, records)?;
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

/// Checks that `records` link up and follow the record `(seq, hash)` (`(0, GENESIS)` for a whole chain). Returns the
/// last sequence number and hash.
pub fn verify_from(seq: i64, hash: [u8; 32], records: &[AuditRecord]) -> Result<(i64, [u8; 32]), ChainError> {
    let mut prev = hash;
    let mut last = seq;
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
    Ok((last, prev))
}

/// A checkpoint is due after this many records since the chain's last one…
pub const CHECKPOINT_EVERY_RECORDS: i64 = 1_000;
/// …or this long after it, when the chain has grown meanwhile.
pub const CHECKPOINT_EVERY_MS: i64 = 60_000;

/// A signed statement "record `seq` of `chain` has hash `head`", made by the server at `time_ms`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub chain: String,
    pub seq: i64,
    /// Hex SHA-256 of record `seq`.
    pub head: String,
    pub time_ms: i64,
    /// The signing key's fingerprint ([`key_fingerprint`]).
    pub key: String,
    /// Hex Ed25519 signature over [`checkpoint_message`].
    pub signature: String,
}

/// The bytes a checkpoint signs: a domain tag, then every field, length-prefixed.
pub fn checkpoint_message(chain: &str, seq: i64, head: &str, time_ms: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + chain.len() + head.len());
    m.extend_from_slice(b"sesame-audit-checkpoint-v1");
    for field in [chain.as_bytes(), head.as_bytes()] {
        m.extend_from_slice(&(field.len() as u64).to_be_bytes());
        m.extend_from_slice(field);
    }
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&time_ms.to_be_bytes());
    m
}

/// A public key's fingerprint: `sha256:` and the hex SHA-256 of the raw 32-byte Ed25519 public key.
pub fn key_fingerprint(public_key: &[u8]) -> String {
    format!("sha256:{}", hex(digest::digest(&digest::SHA256, public_key).as_ref()))
}

/// Whether a chain whose head is `head_seq` needs a checkpoint at `now_ms`, given its last one `(seq, time_ms)`.
pub fn checkpoint_due(last: Option<(i64, i64)>, head_seq: i64, now_ms: i64) -> bool {
    match last {
        None => head_seq > 0,
        Some((seq, time)) => {
            head_seq > seq
                && (head_seq - seq >= CHECKPOINT_EVERY_RECORDS || now_ms.saturating_sub(time) >= CHECKPOINT_EVERY_MS)
        }
    }
}

/// What the signatures of an export cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// The last record a valid checkpoint vouches for (and, through the chain, every record before it).
    pub signed_through: i64,
    /// The chain's last record; those after `signed_through` are covered by no signature.
    pub last: i64,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the export holds no signed checkpoint: nothing in it is vouched for by the key")]
    NoCheckpoint,
    #[error("checkpoint at record {seq} is signed by key {key}, not by the given key {expected}")]
    OtherKey { seq: i64, key: String, expected: String },
    #[error("checkpoint at record {seq}: the signature is not valid (forged or edited checkpoint)")]
    BadSignature { seq: i64 },
    #[error("checkpoint at record {seq} belongs to chain {chain}, not to this chain")]
    OtherChain { seq: i64, chain: String },
    #[error(
        "checkpoint at record {seq}: the signed head {signed} differs from the chain's record {seq} ({found}): a \
         record up to {seq} was rewritten"
    )]
    Mismatch { seq: i64, signed: String, found: String },
    #[error("checkpoint at record {seq}, but the chain ends at record {last}: records were removed")]
    BeyondEnd { seq: i64, last: i64 },
}

/// Checks `checkpoints` against `records` (one whole chain from its first record, already checked by [`verify`])
/// with the raw Ed25519 `public_key`: every checkpoint must be signed by that key and name the hash the chain has at
/// its sequence number, and there must be at least one when the chain is not empty.
pub fn verify_checkpoints(
    records: &[AuditRecord],
    checkpoints: &[Checkpoint],
    public_key: &[u8],
) -> Result<Coverage, CheckpointError> {
    let last = records.last().map_or(0, |r| r.seq);
    let first = records.first().map_or(1, |r| r.seq);
    let mut signed_through = 0;
    for c in checkpoints {
        verify_signature(c, public_key)?;
        if let Some(r) = records.first()
            && r.event.chain != c.chain
        {
            return Err(CheckpointError::OtherChain {
                seq: c.seq,
                chain: c.chain.clone(),
            });
        }
        if c.seq > last {
            return Err(CheckpointError::BeyondEnd { seq: c.seq, last });
        }
        let found = usize::try_from(c.seq - first)
            .ok()
            .and_then(|i| records.get(i))
            .filter(|r| r.seq == c.seq)
            .map(|r| r.hash.clone())
            .unwrap_or_default();
        if !found.eq_ignore_ascii_case(&c.head) {
            return Err(CheckpointError::Mismatch {
                seq: c.seq,
                signed: c.head.clone(),
                found,
            });
        }
        signed_through = signed_through.max(c.seq);
    }
    if checkpoints.is_empty() && !records.is_empty() {
        return Err(CheckpointError::NoCheckpoint);
    }
    Ok(Coverage {
        checkpoints: checkpoints.len(),
        signed_through,
        last,
    })
}

/// Checks that `c` is signed by the raw Ed25519 `public_key` (and names it).
pub fn verify_signature(c: &Checkpoint, public_key: &[u8]) -> Result<(), CheckpointError> {
    let fingerprint = key_fingerprint(public_key);
    if c.key != fingerprint {
        return Err(CheckpointError::OtherKey {
            seq: c.seq,
            key: c.key.clone(),
            expected: fingerprint,
        });
    }
    let sig = unhex_any(&c.signature).ok_or(CheckpointError::BadSignature { seq: c.seq })?;
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&checkpoint_message(&c.chain, c.seq, &c.head, c.time_ms), &sig)
        .map_err(|_| CheckpointError::BadSignature { seq: c.seq })
}

/// Hex text of any even length as bytes.
pub fn unhex_any(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
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
    fn actions_keep_their_stored_text_and_no_two_share_one() {
        let texts: std::collections::BTreeSet<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(texts.len(), AuditAction::ALL.len());
        assert_eq!(AuditAction::EnvUpdate.as_str(), "env.update");
        assert_eq!(
            AuditAction::KekMigrationPauseRequested.as_str(),
            "kek.migration.pause-requested"
        );
        assert_eq!(AuditAction::MemberInviteWithdraw.as_str(), "member.invite.withdraw");
        let e = AuditEvent::new("org1", 7, "user:admin", "127.0.0.1", AuditAction::KekAdd, "kek-1")
            .outcome(Outcome::Denied)
            .detail("not allowed");
        assert_eq!(
            (e.action.as_str(), e.outcome.as_str(), e.detail.as_str()),
            ("kek.add", "denied", "not allowed")
        );
        assert_eq!(
            AuditEvent::new("c", 0, "a", "s", AuditAction::OrgCreate, "t").outcome,
            "ok"
        );
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

    fn sign(key: &signature::Ed25519KeyPair, chain: &str, rec: &AuditRecord) -> Checkpoint {
        let msg = checkpoint_message(chain, rec.seq, &rec.hash, 99);
        Checkpoint {
            chain: chain.into(),
            seq: rec.seq,
            head: rec.hash.clone(),
            time_ms: 99,
            key: key_fingerprint(signature::KeyPair::public_key(key).as_ref()),
            signature: hex(key.sign(&msg).as_ref()),
        }
    }

    #[test]
    fn checkpoints_catch_a_rewritten_and_rehashed_chain() {
        use signature::KeyPair;
        let key = signature::Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        let other = signature::Ed25519KeyPair::from_seed_unchecked(&[8; 32]).unwrap();
        let public = key.public_key().as_ref().to_vec();
        let recs = link(0, GENESIS, vec![ev("a"), ev("b"), ev("c"), ev("d")]);
        let cps = vec![sign(&key, "org1", &recs[1]), sign(&key, "org1", &recs[2])];
        assert_eq!(
            verify_checkpoints(&recs, &cps, &public),
            Ok(Coverage {
                checkpoints: 2,
                signed_through: 3,
                last: 4
            })
        );
        // Rewrite record 2 and recompute every hash: the chain alone still verifies, the checkpoints do not.
        let mut events: Vec<AuditEvent> = recs.iter().map(|r| r.event.clone()).collect();
        events[1].outcome = "denied".into();
        let forged = link(0, GENESIS, events.clone());
        assert!(verify(&forged, None).is_ok());
        assert!(matches!(
            verify_checkpoints(&forged, &cps, &public),
            Err(CheckpointError::Mismatch { seq: 2, .. })
        ));
        // An edit after the last checkpoint is not covered by any signature.
        let mut late = events.clone();
        late[1].outcome = "ok".into();
        late[3].outcome = "denied".into();
        let late = link(0, GENESIS, late);
        assert_eq!(verify_checkpoints(&late, &cps, &public).unwrap().signed_through, 3);
        // Truncation below a checkpoint, a checkpoint of another key, an edited checkpoint, none at all.
        assert!(matches!(
            verify_checkpoints(&recs[..2], &cps, &public),
            Err(CheckpointError::BeyondEnd { seq: 3, last: 2 })
        ));
        let foreign = vec![sign(&other, "org1", &recs[1])];
        assert!(matches!(
            verify_checkpoints(&recs, &foreign, &public),
            Err(CheckpointError::OtherKey { .. })
        ));
        let mut moved = cps.clone();
        moved[0].time_ms += 1;
        assert_eq!(
            verify_checkpoints(&recs, &moved, &public),
            Err(CheckpointError::BadSignature { seq: 2 })
        );
        let mut other_chain = cps.clone();
        other_chain[0] = sign(&key, "org2", &recs[1]);
        assert!(matches!(
            verify_checkpoints(&recs, &other_chain, &public),
            Err(CheckpointError::OtherChain { .. })
        ));
        assert_eq!(
            verify_checkpoints(&recs, &[], &public),
            Err(CheckpointError::NoCheckpoint)
        );
        assert!(verify_checkpoints(&[], &[], &public).is_ok());
    }

    #[test]
    fn checkpoints_are_due_every_thousand_records_or_every_minute() {
        assert!(!checkpoint_due(None, 0, 0));
        assert!(checkpoint_due(None, 1, 0));
        assert!(!checkpoint_due(Some((10, 0)), 10, 10 * CHECKPOINT_EVERY_MS));
        assert!(!checkpoint_due(Some((10, 0)), 1_009, CHECKPOINT_EVERY_MS - 1));
        assert!(checkpoint_due(Some((10, 0)), 1_010, 1));
        assert!(checkpoint_due(Some((10, 0)), 11, CHECKPOINT_EVERY_MS));
        assert_eq!(unhex_any("0aff"), Some(vec![10, 255]));
        assert_eq!(unhex_any("0af"), None);
        assert_eq!(unhex_any("zz"), None);
        assert_eq!(unhex_any("é0"), None);
    }
}
