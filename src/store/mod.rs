//! Persistence: one [`Store`] trait over the domain's records, implemented on SQLite (the embedded default) and
//! PostgreSQL (production).
//!
//! The store holds only what is safe at rest: wrapped DEKs, token hashes, and content sealed under DEKs (the secrets
//! in environment revisions, open sessions, the audit signing key). It never sees a plaintext key or token. Queries are written once in [`sql`] against sqlx's `Any` driver with `$N`
//! placeholders, which both dialects accept; what differs per dialect — connection set-up and the migrations in
//! `migrations/sqlite` and `migrations/postgres` — lives in [`sqlite`] and [`postgres`]. The backend is chosen from
//! the URL scheme by [`connect`].

pub mod envs;
pub mod identity;
pub mod oidc;
mod postgres;
pub mod schedules;
mod sql;
mod sqlite;
pub mod transit;
pub mod trust;

use std::sync::Arc;

pub use crate::core::audit::{AuditEvent, AuditRecord, Checkpoint};

pub use envs::EnvStore;
pub use identity::IdentityStore;
pub use oidc::OidcKeyStore;
pub use schedules::ScheduleStore;
pub use sql::SqlStore;
pub use transit::TransitStore;
pub use trust::TrustStore;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL names no backend we support.
    #[error("unsupported database URL scheme {scheme:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl {
        /// The scheme found.
        scheme: String,
    },
    /// The database could not be reached or opened.
    #[error("could not connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("could not apply database migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A row read back from the database did not hold what the schema promises.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong (never a secret: ids and column names only).
        detail: String,
    },
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The failure of a query whose answer concurrent lookups shared, said again to each of them.
    #[error("{0}")]
    Shared(String),
}

impl StoreError {
    /// The error a shared lookup failed with: itself for the last holder, its message for the others.
    pub fn unshare(e: std::sync::Arc<StoreError>) -> StoreError {
        std::sync::Arc::try_unwrap(e).unwrap_or_else(|e| StoreError::Shared(e.to_string()))
    }
}

/// The audit record of a write whose detail depends on what the write did (the revision it made, the tokens it
/// revoked): called inside the write's transaction once the write took effect, and appended there.
pub type AuditWith<'a, T> = &'a (dyn Fn(&T) -> AuditEvent + Send + Sync);

/// Result alias of the store layer.
pub type StoreResult<T> = Result<T, StoreError>;

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRecord {
    /// Immutable id (UUID text).
    pub id: String,
    /// The name used in URLs.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Immutable id (UUID text).
    pub id: String,
    /// Login name.
    pub login: String,
    /// Name shown to people.
    pub display_name: String,
    /// Whether the user administers the whole instance (creates orgs).
    pub instance_admin: bool,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

pub use crate::core::tokens::TokenKind;

/// An access token as stored: only the SHA-256 of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Immutable id (UUID text); safe to show and log.
    pub id: String,
    /// SHA-256 of the token text.
    pub token_hash: [u8; 32],
    /// What the token acts as.
    pub kind: TokenKind,
    /// The user a personal token acts as.
    pub user_id: Option<String>,
    /// The org an organization or team token belongs to.
    pub org_id: Option<String>,
    /// The team a team token acts as.
    pub team_id: Option<String>,
    /// A note from whoever made it.
    pub description: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Expiry, Unix milliseconds; `None` never expires.
    pub expires_ms: Option<i64>,
    /// Revocation time, Unix milliseconds.
    pub revoked_ms: Option<i64>,
    /// The token that made this one (revoking it revokes this one); `None` for a root token: the administrator's
    /// first token, a new user's first token, and tokens made before lineage was recorded.
    pub parent_id: Option<String>,
    /// The one org this token acts in, whatever else its user belongs to (tokens minted by exchange, and tokens
    /// they make); `None`: not confined.
    pub confined_org_id: Option<String>,
    /// The highest role this token may exercise (`None`: no cap beyond what it acts as).
    pub role_cap: Option<crate::core::authz::Role>,
}

/// The lifecycle state of a KEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KekState {
    /// Wraps new DEKs (if default) and unwraps.
    Active,
    /// Unwraps only; never chosen for new DEKs.
    Disabled,
}

/// `as_str` (the stored text) and `parse` (its inverse) for a state enum, from one table of variants and texts.
macro_rules! stored_text {
    ($vis:vis $ty:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            /// The stored text.
            $vis fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text,)*
                }
            }

            fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

stored_text!(KekState { Active = "active", Disabled = "disabled" });

/// A registered key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekRecord {
    /// Immutable id (UUID text).
    pub id: String,
    /// The owning org, or `None` for an instance (system) KEK.
    pub org_id: Option<String>,
    /// The KEK URI (never carries a secret: adapters refuse URIs that do).
    pub uri: String,
    /// Lifecycle state.
    pub state: KekState,
    /// Whether new DEKs of its owner are wrapped by it.
    pub is_default: bool,
    /// Registration time, Unix milliseconds.
    pub created_ms: i64,
}

/// The lifecycle state of a DEK generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DekState {
    /// Seals new content and opens old.
    Active,
    /// Opens old content only (a newer generation seals).
    Retired,
}

stored_text!(DekState { Active = "active", Retired = "retired" });

/// One DEK generation of a scope. The key itself is only in its wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DekRecord {
    /// Immutable id (UUID text); its 16 bytes are the key id in every envelope the DEK seals.
    pub id: String,
    /// The scope string ([`crate::core::keys::Scope`]'s text form).
    pub scope: String,
    /// The org whose KEKs wrap it, or `None` for instance scopes.
    pub org_id: Option<String>,
    /// Generation within the scope, from 1.
    pub generation: i64,
    /// Lifecycle state.
    pub state: DekState,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

/// A DEK wrapped by one KEK.
#[derive(Clone, PartialEq, Eq)]
pub struct WrapRecord {
    /// The DEK.
    pub dek_id: String,
    /// The KEK that made this wrap.
    pub kek_id: String,
    /// The exact key version or resolved key id the wrap used.
    pub kek_version: String,
    /// The wrapped key bytes.
    pub wrapped: Vec<u8>,
    /// The wrapping algorithm, as the adapter names it.
    pub wrap_alg: String,
    /// A binding tag where the KMS takes no associated data.
    pub binding: Option<Vec<u8>>,
    /// Whether this wrap is the one to try first.
    pub primary: bool,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

impl std::fmt::Debug for WrapRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrapRecord")
            .field("dek_id", &self.dek_id)
            .field("kek_id", &self.kek_id)
            .field("kek_version", &self.kek_version)
            .field("wrapped_len", &self.wrapped.len())
            .field("wrap_alg", &self.wrap_alg)
            .field("primary", &self.primary)
            .finish_non_exhaustive()
    }
}

/// A DEK with all its wraps, primary first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DekWithWraps {
    /// The DEK row.
    pub dek: DekRecord,
    /// Its wraps, primary first.
    pub wraps: Vec<WrapRecord>,
}

/// Whether an insert made a new row or found one already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The row is new.
    New,
    /// A row with the same unique key existed; nothing was written.
    AlreadyExists,
}

/// The state of a KEK migration job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationState {
    /// Walking DEKs (whichever replica holds the lease).
    Running,
    /// Stopped by an operator; resumes where it stopped.
    Paused,
    /// Every DEK has a verified wrap under the target KEK.
    Done,
    /// Stopped on an error (recorded); resuming retries.
    Failed,
    /// Done, verified, and the source KEK's wraps deleted.
    Retired,
}

stored_text!(pub MigrationState {
    Running = "running",
    Paused = "paused",
    Done = "done",
    Failed = "failed",
    Retired = "retired",
});

/// A KEK migration job: re-wrap every DEK under `from_kek` (of one org, or all) with `to_kek`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRecord {
    /// Job id.
    pub id: String,
    /// Source KEK id.
    pub from_kek: String,
    /// Target KEK id.
    pub to_kek: String,
    /// Limit to this org's DEKs; `None` for every DEK under the source.
    pub org_id: Option<String>,
    /// State.
    pub state: MigrationState,
    /// DEKs with ids up to this one are done.
    pub cursor: String,
    /// DEKs to migrate when the job started.
    pub total: i64,
    /// DEKs migrated so far.
    pub migrated: i64,
    /// When every DEK was last verified under the target, Unix milliseconds.
    pub verified_ms: Option<i64>,
    /// The last error, if the job failed.
    pub error: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Last progress, Unix milliseconds.
    pub updated_ms: i64,
}

impl MigrationRecord {
    /// A new running job (fresh id, nothing counted yet) moving `org_id`'s DEKs — or every DEK — from `from_kek`
    /// to `to_kek`, created at `now_ms`.
    pub fn new_job(from_kek: &str, to_kek: &str, org_id: Option<String>, now_ms: i64) -> MigrationRecord {
        MigrationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            from_kek: from_kek.to_owned(),
            to_kek: to_kek.to_owned(),
            org_id,
            state: MigrationState::Running,
            cursor: String::new(),
            total: 0,
            migrated: 0,
            verified_ms: None,
            error: String::new(),
            created_ms: now_ms,
            updated_ms: now_ms,
        }
    }
}

/// Everything the first start of an instance writes, in one transaction.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The system KEK (`local://default` on the embedded default).
    pub system_kek: KekRecord,
    /// The canary DEK: wrapped by the system KEK so that every later start can prove the KEK still unwraps.
    pub canary: DekWithWraps,
    /// The first org.
    pub org: OrgRecord,
    /// The instance administrator.
    pub admin: UserRecord,
    /// The administrator's first token.
    pub admin_token: TokenRecord,
}

/// A token together with the user it acts as, looked up in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenWithUser {
    /// The token row.
    pub token: TokenRecord,
    /// Its user, for personal tokens.
    pub user: Option<UserRecord>,
}

/// The persistence interface. Every method is one transaction at most; a method that writes either fully lands or
/// leaves nothing behind. A write the API makes takes its audit event (`audit`) and appends it to its chain in the
/// same transaction, under the chain head's row lock, only when the write takes effect: the change and its record
/// commit together.
#[async_trait::async_trait]
pub trait Store:
    EnvStore + IdentityStore + OidcKeyStore + TrustStore + TransitStore + ScheduleStore + Send + Sync + 'static
{
    /// The backend's name, for logs (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;

    /// Whether the instance has been bootstrapped (a system KEK exists).
    async fn is_bootstrapped(&self) -> StoreResult<bool>;

    /// Writes the first-start state. Returns [`Inserted::AlreadyExists`] and writes nothing if another process
    /// bootstrapped the store first.
    async fn bootstrap(&self, boot: &Bootstrap) -> StoreResult<Inserted>;

    /// An org by its URL name.
    async fn org_by_name(&self, name: &str) -> StoreResult<Option<OrgRecord>>;

    /// Every org, by name.
    async fn orgs(&self) -> StoreResult<Vec<OrgRecord>>;

    /// A token by the SHA-256 of its text, with its user.
    async fn token_by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<TokenWithUser>>;

    /// Every registered KEK.
    async fn keks(&self) -> StoreResult<Vec<KekRecord>>;

    /// The KEK that wraps new DEKs of `org_id`: the org's default KEK if it has one, else the system default.
    async fn default_kek(&self, org_id: Option<&str>) -> StoreResult<Option<KekRecord>>;

    /// The newest active generation of a scope, with its wraps.
    async fn current_dek(&self, scope: &str) -> StoreResult<Option<DekWithWraps>>;

    /// A DEK by id, with its wraps.
    async fn dek(&self, id: &str) -> StoreResult<Option<DekWithWraps>>;

    /// Inserts a DEK and its wraps in one transaction. If the scope already has this generation, nothing is
    /// written and [`Inserted::AlreadyExists`] is returned (another replica made it first).
    async fn insert_dek(&self, dek: &DekWithWraps) -> StoreResult<Inserted>;

    /// One DEK wrapped by `kek_id`, oldest first: what a start-up check unwraps to prove the KEK still works.
    async fn sample_wrap(&self, kek_id: &str) -> StoreResult<Option<DekWithWraps>>;

    /// An org by id.
    async fn org_by_id(&self, id: &str) -> StoreResult<Option<OrgRecord>>;

    /// Registers a KEK. If it is the owner's default, the owner's previous default stops being one, in the same
    /// transaction. [`Inserted::AlreadyExists`] when the owner has this URI registered already. Like the two below,
    /// appends `audit` in the same transaction when it writes, and nothing when it does not.
    async fn insert_kek(&self, kek: &KekRecord, audit: &AuditEvent) -> StoreResult<Inserted>;

    /// Makes `kek_id` the default of its owner (and no other of the owner's KEKs). `false` if no active KEK has
    /// that id.
    async fn set_default_kek(&self, kek_id: &str, audit: &AuditEvent) -> StoreResult<bool>;

    /// Disables a KEK: it keeps unwrapping, but wraps no new DEK and stops being a default. `false` if no such KEK.
    async fn disable_kek(&self, kek_id: &str, audit: &AuditEvent) -> StoreResult<bool>;

    /// The unfinished (not done, not retired) migration for this pair and scope, or a new one counting the DEKs to
    /// move. Re-running a migration after a crash therefore resumes it.
    async fn start_or_resume_migration(&self, new: &MigrationRecord) -> StoreResult<MigrationRecord>;

    /// A migration by id.
    async fn migration(&self, id: &str) -> StoreResult<Option<MigrationRecord>>;

    /// Every migration, newest first.
    async fn migrations(&self) -> StoreResult<Vec<MigrationRecord>>;

    /// Takes or renews the lease of a migration for `owner` until `until_ms`; `false` while another owner's lease
    /// has not expired. Exactly one replica runs a migration at a time.
    async fn lease_migration(&self, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool>;

    /// Up to `limit` DEKs after `cursor` (in id order) that have a wrap under `from_kek` and none under `to_kek`,
    /// limited to `org_id` when given, with all their wraps.
    async fn migration_batch(&self, m: &MigrationRecord, after: &str, limit: i64) -> StoreResult<Vec<DekWithWraps>>;

    /// In one transaction: inserts the new wraps (a wrap that exists already is kept: idempotent), advances the
    /// cursor and adds the wraps actually inserted to the count. Nothing of a batch lands unless all of it does.
    async fn record_migration_batch(
        &self,
        id: &str,
        wraps: &[WrapRecord],
        cursor: &str,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// Sets a migration's state (and error text); `done` also makes the target's wraps primary.
    async fn set_migration_state(&self, id: &str, state: MigrationState, error: &str, now_ms: i64) -> StoreResult<()>;

    /// Records a successful verification.
    async fn mark_migration_verified(&self, id: &str, now_ms: i64) -> StoreResult<()>;

    /// Deletes the source KEK's wraps of the migrated DEKs that also have a wrap under the target, auditing it at
    /// `now_ms`; returns how many.
    async fn retire_migration_source(&self, m: &MigrationRecord, now_ms: i64) -> StoreResult<u64>;

    /// Every DEK in the migration's scope that has a wrap under `kek_id`, in id order, after `after`.
    /// Appends events to their chains, in order, in one transaction; returns them as stored.
    async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<Vec<AuditRecord>>;

    /// Appends audit events and inserts open sessions in one transaction (the audit writer's group commit: an open
    /// session exists exactly when its open is audited).
    async fn append_audit_with_sessions(
        &self,
        events: &[AuditEvent],
        sessions: &[envs::SessionRecord],
    ) -> StoreResult<Vec<AuditRecord>>;

    /// The records of one chain with `seq > after`, in order, at most `limit`.
    async fn audit_records(&self, chain: &str, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>>;

    /// Every chain's head: `(chain, seq)` of its last record.
    async fn audit_heads(&self) -> StoreResult<Vec<(String, i64)>>;

    /// The signed checkpoints of one chain, in order.
    async fn audit_checkpoints(&self, chain: &str) -> StoreResult<Vec<Checkpoint>>;

    /// The last signed checkpoint of every chain that has one.
    async fn last_audit_checkpoints(&self) -> StoreResult<Vec<Checkpoint>>;

    /// Stores a checkpoint; one at the same `(chain, seq)` (another replica's) is kept.
    async fn insert_audit_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<Inserted>;

    /// The anchor of a pruned chain: the checkpoint through which its records were deleted.
    async fn audit_anchor(&self, chain: &str) -> StoreResult<Option<Checkpoint>>;

    /// In one transaction: makes `anchor` its chain's anchor, deletes the chain's records up to and including
    /// `anchor.seq` and its checkpoints before it, and appends `event` (the prune's own record). Returns how many
    /// records were deleted. The caller has checked the anchor's signature and the chain up to it.
    async fn prune_audit(&self, anchor: &Checkpoint, event: &AuditEvent) -> StoreResult<u64>;

    /// The audit signing key: its raw public key and its sealed PKCS#8 private key.
    async fn audit_signing_key(&self) -> StoreResult<Option<(Vec<u8>, Vec<u8>)>>;

    /// Stores the audit signing key unless one exists (another replica made it first: [`Inserted::AlreadyExists`]).
    async fn insert_audit_signing_key(&self, public_key: &[u8], sealed: &[u8], now_ms: i64) -> StoreResult<Inserted>;

    async fn deks_under(
        &self,
        kek_id: &str,
        org_id: Option<&str>,
        after: &str,
        limit: i64,
    ) -> StoreResult<Vec<DekWithWraps>>;
}

/// Opens the store a URL names — `sqlite://PATH` (created if missing) or `postgres://…` — and applies its
/// migrations.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
    let store = match scheme {
        "sqlite" => sqlite::open(url).await?,
        "postgres" | "postgresql" => postgres::open(url).await?,
        other => {
            return Err(StoreError::UnsupportedUrl {
                scheme: other.to_owned(),
            });
        }
    };
    Ok(Arc::new(store))
}
