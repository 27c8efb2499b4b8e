//! The queries of [`Store`], written once for both dialects on sqlx's `Any` driver.
//!
//! Both SQLite and PostgreSQL accept `$N` placeholders, `ON CONFLICT … DO NOTHING` and `RETURNING`, so one text per
//! query serves both; values cross the driver as `i64`, `String` and `Vec<u8>` only (timestamps are Unix
//! milliseconds, booleans 0/1), the types `Any` maps faithfully on both. A dialect difference, where one appears,
//! is a `match` on [`Dialect`] next to the query that needs it.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::core::audit::{AuditAction, Outcome};

use super::{
    AuditEvent, AuditRecord, Bootstrap, Checkpoint, DekRecord, DekState, DekWithWraps, Inserted, KekRecord, KekState,
    MigrationRecord, MigrationState, OrgRecord, Store, StoreError, StoreResult, TokenKind, TokenRecord, TokenWithUser,
    UserRecord, WrapRecord,
};

/// Which SQL dialect the pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The one [`Store`] implementation, over a pool of either dialect.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// Environment records by name (see [`EnvCache`]).
    pub(crate) envs: std::sync::Arc<EnvCache>,
}

/// Environment records by `(org id, project, name)`: every write of an environment through this process drops them
/// all ([`EnvCache::changed`], on every return path of the write) and moves the cache to a new generation, which is
/// part of every key: a lookup that raced a write keeps what it read under the old generation, where no later lookup
/// looks. The open path's lookups then cost no hop to SQLite's worker thread and no PostgreSQL round trip.
/// Entries expire after [`ENV_CACHE_TTL`] on SQLite (this process is the one writer of environments: one server per
/// database file) and after [`ENV_CACHE_TTL_SHARED`] on PostgreSQL, which replicas share: a write made through
/// another replica is seen within that time.
///
/// Concurrent lookups of what is not cached (the first, or all at once when entries expire together under load)
/// make one query and share its answer, whether of one name ([`EnvCache::one`]) or of an environment's imports
/// ([`EnvCache::many`]); a lookup that begins after a write never shares a query begun before it.
pub(crate) struct EnvCache {
    map: moka::future::Cache<(u64, String, String, String), super::envs::EnvRecord>,
    /// Several names looked up at once (an environment's imports), by the names asked for.
    sets: moka::future::Cache<SetKey, std::sync::Arc<Vec<super::envs::EnvRecord>>>,
    generation: std::sync::atomic::AtomicU64,
}

/// A lookup of several names: the cache's generation, the org id, and the `(project, name)` pairs.
type SetKey = (u64, String, Vec<(String, String)>);

/// How long a cached environment record lives at most on SQLite.
pub(crate) const ENV_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a cached environment record lives at most on PostgreSQL (written by other replicas too).
pub(crate) const ENV_CACHE_TTL_SHARED: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for EnvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvCache")
            .field("entries", &self.map.entry_count())
            .finish()
    }
}

/// Why a shared lookup has no record: none exists (not cached), or the query failed.
#[derive(Debug)]
enum Miss {
    Absent,
    Failed(super::StoreError),
}

impl EnvCache {
    fn new(ttl: std::time::Duration) -> EnvCache {
        EnvCache {
            map: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            sets: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            generation: Default::default(),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The record named, from the cache or from `query` (run once for concurrent lookups of the same name).
    pub(crate) async fn one<F>(
        &self,
        org_id: &str,
        project: &str,
        name: &str,
        query: F,
    ) -> super::StoreResult<Option<super::envs::EnvRecord>>
    where
        F: std::future::Future<Output = super::StoreResult<Option<super::envs::EnvRecord>>>,
    {
        let key = (
            self.generation(),
            org_id.to_owned(),
            project.to_owned(),
            name.to_owned(),
        );
        let found = self
            .map
            .try_get_with(key, async {
                match query.await {
                    Ok(Some(env)) => Ok(env),
                    Ok(None) => Err(Miss::Absent),
                    Err(e) => Err(Miss::Failed(e)),
                }
            })
            .await;
        match found {
            Ok(env) => Ok(Some(env)),
            Err(miss) => match &*miss {
                Miss::Absent => Ok(None),
                Miss::Failed(e) => Err(super::StoreError::Shared(e.to_string())),
            },
        }
    }

    /// The records of `names` that exist, cached ones first; the others from `query`, given the names not cached
    /// (run once for concurrent lookups of the same names).
    pub(crate) async fn many<F, Fut>(
        &self,
        org_id: &str,
        names: &[(&str, &str)],
        query: F,
    ) -> super::StoreResult<Vec<super::envs::EnvRecord>>
    where
        F: FnOnce(Vec<(String, String)>) -> Fut,
        Fut: std::future::Future<Output = super::StoreResult<Vec<super::envs::EnvRecord>>>,
    {
        let generation = self.generation();
        let mut out = Vec::with_capacity(names.len());
        let mut missing: Vec<(String, String)> = Vec::new();
        for &(p, n) in names {
            let key = (generation, org_id.to_owned(), p.to_owned(), n.to_owned());
            match self.map.get(&key).await {
                Some(e) => out.push(e),
                None => missing.push((p.to_owned(), n.to_owned())),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let key = (generation, org_id.to_owned(), missing.clone());
        let found = self
            .sets
            .try_get_with(key, async { query(missing).await.map(std::sync::Arc::new) })
            .await
            .map_err(super::StoreError::unshare)?;
        for env in found.iter() {
            let key = (generation, env.org_id.clone(), env.project.clone(), env.name.clone());
            self.map.insert(key, env.clone()).await;
            out.push(env.clone());
        }
        Ok(out)
    }

    /// Forgets every record: an environment was (or may have been) written.
    pub(crate) fn changed(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.map.invalidate_all();
        self.sets.invalidate_all();
    }
}

/// Calls [`EnvCache::changed`] when dropped: held by each environment write for its whole length, so whatever way
/// it returns, what it may have changed is forgotten after its commit.
pub(crate) struct EnvWrite(std::sync::Arc<EnvCache>);

impl Drop for EnvWrite {
    fn drop(&mut self) {
        self.0.changed();
    }
}

impl SqlStore {
    /// Begins a transaction that reads before it writes. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred transaction that read first and then tries to write fails with "database is locked"
    /// when another writer committed meanwhile, where an immediate one waits its turn (busy timeout). Transactions
    /// that write first need not: their first statement takes the lock, waiting as it must.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
    }

    pub(crate) fn new(pool: AnyPool, dialect: Dialect) -> Self {
        let ttl = match dialect {
            Dialect::Sqlite => ENV_CACHE_TTL,
            Dialect::Postgres => ENV_CACHE_TTL_SHARED,
        };
        let envs = std::sync::Arc::new(EnvCache::new(ttl));
        SqlStore { pool, dialect, envs }
    }

    /// Held for the length of an environment write (see [`EnvWrite`]).
    pub(crate) fn env_write(&self) -> EnvWrite {
        EnvWrite(self.envs.clone())
    }

    /// The pool, for the repositories in sibling modules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The dialect, for sibling modules.
    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// [`SqlStore::begin_write`], for sibling modules.
    pub(crate) async fn begin_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        self.begin_write().await
    }
}

/// Takes or renews the lease of row `id` of `table` (columns `lease_owner`, `lease_until_ms`) for `owner` until
/// `until_ms`, in one conditional `UPDATE`: it lands only when `owner` holds the lease already or the holder's lease
/// lapsed before `now_ms` (and `also`, a further condition on the row that may use `$3` for `now_ms`, holds). Of
/// replicas racing for one row, exactly one sees `true`. KEK migrations and rotation schedules both lease this way.
pub(crate) async fn take_lease(
    pool: &AnyPool,
    table: &'static str,
    also: &'static str,
    (id, owner): (&str, &str),
    (now_ms, until_ms): (i64, i64),
) -> StoreResult<bool> {
    let also = if also.is_empty() {
        String::new()
    } else {
        format!(" AND {also}")
    };
    let n = sqlx::query(&format!(
        "UPDATE {table} SET lease_owner = $2, lease_until_ms = $4 \
         WHERE id = $1 AND (lease_owner = $2 OR lease_until_ms < $3){also}"
    ))
    .bind(id)
    .bind(owner)
    .bind(now_ms)
    .bind(until_ms)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

fn bool_int(b: bool) -> i64 {
    i64::from(b)
}

fn corrupt(table: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.into(),
    }
}

pub(crate) fn org_from_row(row: &AnyRow) -> StoreResult<OrgRecord> {
    Ok(OrgRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_ms: row.try_get("created_ms")?,
    })
}

pub(crate) fn user_from_row(row: &AnyRow, prefix: &str) -> StoreResult<UserRecord> {
    let col = |c: &str| format!("{prefix}{c}");
    Ok(UserRecord {
        id: row.try_get(col("id").as_str())?,
        login: row.try_get(col("login").as_str())?,
        display_name: row.try_get(col("display_name").as_str())?,
        instance_admin: row.try_get::<i64, _>(col("instance_admin").as_str())? != 0,
        created_ms: row.try_get(col("created_ms").as_str())?,
    })
}

pub(crate) fn token_from_row(row: &AnyRow) -> StoreResult<TokenRecord> {
    let id: String = row.try_get("id")?;
    let hash: Vec<u8> = row.try_get("token_hash")?;
    let token_hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| corrupt("tokens", format!("token {id} has a hash that is not 32 bytes")))?;
    let kind: String = row.try_get("kind")?;
    let kind =
        TokenKind::parse(&kind).ok_or_else(|| corrupt("tokens", format!("token {id} has unknown kind {kind:?}")))?;
    Ok(TokenRecord {
        token_hash,
        kind,
        user_id: row.try_get("user_id")?,
        org_id: row.try_get("org_id")?,
        team_id: row.try_get("team_id")?,
        description: row.try_get("description")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
        parent_id: row.try_get("parent_id")?,
        confined_org_id: row.try_get("confined_org_id")?,
        role_cap: match row.try_get::<Option<String>, _>("role_cap")? {
            None => None,
            Some(r) => Some(
                r.parse()
                    .map_err(|_| corrupt("tokens", format!("token {id} has unknown role cap {r:?}")))?,
            ),
        },
        id,
    })
}

fn kek_from_row(row: &AnyRow) -> StoreResult<KekRecord> {
    let id: String = row.try_get("id")?;
    let org_id: String = row.try_get("org_id")?;
    let state: String = row.try_get("state")?;
    let state =
        KekState::parse(&state).ok_or_else(|| corrupt("keks", format!("KEK {id} has unknown state {state:?}")))?;
    Ok(KekRecord {
        org_id: (!org_id.is_empty()).then_some(org_id),
        uri: row.try_get("uri")?,
        state,
        is_default: row.try_get::<i64, _>("is_default")? != 0,
        created_ms: row.try_get("created_ms")?,
        id,
    })
}

fn dek_from_row(row: &AnyRow) -> StoreResult<DekRecord> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let state =
        DekState::parse(&state).ok_or_else(|| corrupt("deks", format!("DEK {id} has unknown state {state:?}")))?;
    let org_id: String = row.try_get("org_id")?;
    Ok(DekRecord {
        org_id: (!org_id.is_empty()).then_some(org_id),
        scope: row.try_get("scope")?,
        generation: row.try_get("generation")?,
        state,
        created_ms: row.try_get("created_ms")?,
        id,
    })
}

fn migration_from_row(row: &AnyRow) -> StoreResult<MigrationRecord> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let state = MigrationState::parse(&state)
        .ok_or_else(|| corrupt("kek_migrations", format!("migration {id} has unknown state {state:?}")))?;
    let org_id: String = row.try_get("org_id")?;
    Ok(MigrationRecord {
        from_kek: row.try_get("from_kek")?,
        to_kek: row.try_get("to_kek")?,
        org_id: (!org_id.is_empty()).then_some(org_id),
        state,
        cursor: row.try_get("cursor_dek")?,
        total: row.try_get("total")?,
        migrated: row.try_get("migrated")?,
        verified_ms: row.try_get("verified_ms")?,
        error: row.try_get("error")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        id,
    })
}

const MIGRATION_COLUMNS: &str = "id, from_kek, to_kek, org_id, state, cursor_dek, total, migrated, verified_ms, \
     error, created_ms, updated_ms";

const CHECKPOINT_COLUMNS: &str = "chain, seq, head, time_ms, key, signature";

fn checkpoint_from_row(r: &AnyRow) -> StoreResult<Checkpoint> {
    Ok(Checkpoint {
        chain: r.try_get("chain")?,
        seq: r.try_get("seq")?,
        head: r.try_get("head")?,
        time_ms: r.try_get("time_ms")?,
        key: r.try_get("key")?,
        signature: r.try_get("signature")?,
    })
}

/// Audit records inserted by one statement (11 parameters each: well inside both dialects' limits).
const AUDIT_ROWS: usize = 256;

/// Appends `events` to their chains inside `tx`: each chain's head row is created if missing, locked, and moved.
pub(crate) async fn append_audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dialect: Dialect,
    events: &[AuditEvent],
) -> StoreResult<Vec<AuditRecord>> {
    use crate::core::audit::{GENESIS, hex, link, unhex};
    let mut out = Vec::with_capacity(events.len());
    let mut chains: Vec<&str> = Vec::new();
    for e in events {
        if !chains.contains(&e.chain.as_str()) {
            chains.push(&e.chain);
        }
    }
    let lock = match dialect {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    };
    for chain in chains {
        let select = format!("SELECT seq, hash FROM audit_heads WHERE chain = $1{lock}");
        // On PostgreSQL the head is locked first and made only for a chain's first record (one round trip less per
        // batch). On SQLite the transaction's first statement must write (a deferred transaction that reads first
        // may not write after another writer), so the head is made if missing, as a write, before it is read.
        let found = match dialect {
            Dialect::Postgres => sqlx::query(&select).bind(chain).fetch_optional(&mut **tx).await?,
            Dialect::Sqlite => None,
        };
        let head = match found {
            Some(head) => head,
            None => {
                sqlx::query("INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING")
                    .bind(chain)
                    .bind(hex(&GENESIS))
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(&select).bind(chain).fetch_one(&mut **tx).await?
            }
        };
        let seq: i64 = head.try_get("seq")?;
        let hash: String = head.try_get("hash")?;
        let prev = unhex(&hash).ok_or_else(|| StoreError::Corrupt {
            table: "audit_heads",
            detail: format!("the head of chain {chain} is not a hash"),
        })?;
        let mine: Vec<AuditEvent> = events.iter().filter(|e| e.chain == chain).cloned().collect();
        let records = link(seq, prev, mine);
        // One statement per AUDIT_ROWS records (a batch is one round trip, not one per record).
        for chunk in records.chunks(AUDIT_ROWS) {
            let mut sql = String::from(
                "INSERT INTO audit_events (chain, seq, time_ms, actor, source, action, target, outcome, detail, \
                 prev_hash, hash) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 11;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for k in 1..=11 {
                    if k > 1 {
                        sql.push_str(", ");
                    }
                    sql.push('$');
                    sql.push_str(&(b + k).to_string());
                }
                sql.push(')');
            }
            let mut q = sqlx::query(&sql);
            for r in chunk {
                let e = &r.event;
                q = q
                    .bind(&e.chain)
                    .bind(r.seq)
                    .bind(e.time_ms)
                    .bind(&e.actor)
                    .bind(&e.source)
                    .bind(&e.action)
                    .bind(&e.target)
                    .bind(&e.outcome)
                    .bind(&e.detail)
                    .bind(&r.prev_hash)
                    .bind(&r.hash);
            }
            q.execute(&mut **tx).await?;
        }
        if let Some(last) = records.last() {
            sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3 WHERE chain = $1")
                .bind(chain)
                .bind(last.seq)
                .bind(&last.hash)
                .execute(&mut **tx)
                .await?;
        }
        out.extend(records);
    }
    Ok(out)
}

/// Appends one event inside `tx` (see [`append_audit_in`]): how a write records itself in its own transaction.
pub(crate) async fn audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dialect: Dialect,
    event: &AuditEvent,
) -> StoreResult<()> {
    append_audit_in(tx, dialect, std::slice::from_ref(event))
        .await
        .map(drop)
}

/// Ends a write's transaction: when the write took effect (`wrote`), appends `audit` and commits, else rolls back
/// (nothing written, nothing appended). Returns `wrote`.
pub(crate) async fn commit_if(
    tx: sqlx::Transaction<'_, sqlx::Any>,
    dialect: Dialect,
    wrote: bool,
    audit: &AuditEvent,
) -> StoreResult<bool> {
    commit_if_maybe(tx, dialect, wrote, Some(audit)).await
}

/// [`commit_if`] for a write whose record, if any, was appended elsewhere (`audit` is `None`).
pub(crate) async fn commit_if_maybe(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    dialect: Dialect,
    wrote: bool,
    audit: Option<&AuditEvent>,
) -> StoreResult<bool> {
    if !wrote {
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(audit) = audit {
        audit_in(&mut tx, dialect, audit).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Migration `id` as `tx` sees it.
async fn migration_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &str) -> StoreResult<Option<MigrationRecord>> {
    let row = sqlx::query(&format!("SELECT {MIGRATION_COLUMNS} FROM kek_migrations WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(migration_from_row).transpose()
}

/// The audit event of a migration step taken by the migration machinery itself.
fn migration_event(m: &MigrationRecord, action: AuditAction, detail: String, now_ms: i64) -> AuditEvent {
    let chain = m
        .org_id
        .clone()
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| crate::core::audit::INSTANCE_CHAIN.to_owned());
    AuditEvent::new(chain, now_ms, "system:kek-migration", "internal", action, m.id.clone()).detail(detail)
}

/// The action recording that a migration entered `state`: `kek.migration.<state>`.
fn migration_state_action(state: MigrationState) -> AuditAction {
    match state {
        MigrationState::Running => AuditAction::KekMigrationRunning,
        MigrationState::Paused => AuditAction::KekMigrationPaused,
        MigrationState::Done => AuditAction::KekMigrationDone,
        MigrationState::Failed => AuditAction::KekMigrationFailed,
        MigrationState::Retired => AuditAction::KekMigrationRetired,
    }
}

async fn insert_wrap(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    w: &WrapRecord,
    on_conflict_ignore: bool,
) -> StoreResult<u64> {
    let sql = if on_conflict_ignore {
        "INSERT INTO dek_wraps (dek_id, kek_id, kek_version, wrapped, wrap_alg, binding, is_primary, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
    } else {
        "INSERT INTO dek_wraps (dek_id, kek_id, kek_version, wrapped, wrap_alg, binding, is_primary, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    };
    let n = sqlx::query(sql)
        .bind(&w.dek_id)
        .bind(&w.kek_id)
        .bind(&w.kek_version)
        .bind(&w.wrapped)
        .bind(&w.wrap_alg)
        .bind(&w.binding)
        .bind(bool_int(w.primary))
        .bind(w.created_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(n)
}

fn wrap_from_row(row: &AnyRow) -> StoreResult<WrapRecord> {
    Ok(WrapRecord {
        dek_id: row.try_get("dek_id")?,
        kek_id: row.try_get("kek_id")?,
        kek_version: row.try_get("kek_version")?,
        wrapped: row.try_get("wrapped")?,
        wrap_alg: row.try_get("wrap_alg")?,
        binding: row.try_get("binding")?,
        primary: row.try_get::<i64, _>("is_primary")? != 0,
        created_ms: row.try_get("wrap_created_ms")?,
    })
}

/// Folds rows of `deks JOIN dek_wraps` (one row per wrap, DEKs contiguous) into DEKs with their wraps.
fn deks_from_joined(rows: &[AnyRow]) -> StoreResult<Vec<DekWithWraps>> {
    let mut out: Vec<DekWithWraps> = Vec::new();
    for row in rows {
        let dek = dek_from_row(row)?;
        let wrap = wrap_from_row(row)?;
        match out.last_mut() {
            Some(last) if last.dek.id == dek.id => last.wraps.push(wrap),
            _ => out.push(DekWithWraps { dek, wraps: vec![wrap] }),
        }
    }
    Ok(out)
}

/// The columns of a `deks d JOIN dek_wraps w` query, in the names the row readers expect.
const DEK_WRAP_COLUMNS: &str = "d.id, d.scope, d.org_id, d.generation, d.state, d.created_ms, \
     w.dek_id, w.kek_id, w.kek_version, w.wrapped, w.wrap_alg, w.binding, w.is_primary, \
     w.created_ms AS wrap_created_ms";

async fn insert_dek_rows(tx: &mut sqlx::Transaction<'_, sqlx::Any>, dek: &DekWithWraps) -> StoreResult<Inserted> {
    let d = &dek.dek;
    let inserted = sqlx::query(
        "INSERT INTO deks (id, scope, org_id, generation, state, created_ms) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&d.id)
    .bind(&d.scope)
    .bind(d.org_id.as_deref().unwrap_or(""))
    .bind(d.generation)
    .bind(d.state.as_str())
    .bind(d.created_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Inserted::AlreadyExists);
    }
    for w in &dek.wraps {
        insert_wrap(tx, w, false).await?;
    }
    Ok(Inserted::New)
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    async fn is_bootstrapped(&self) -> StoreResult<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM instance")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    async fn bootstrap(&self, boot: &Bootstrap) -> StoreResult<Inserted> {
        let mut tx = self.pool.begin().await?;
        // The instance row is the bootstrap marker: a second process that races us blocks on its unique key until
        // we commit, then finds it and backs off without writing anything.
        let marked = sqlx::query("INSERT INTO instance (id, created_ms) VALUES (1, $1) ON CONFLICT DO NOTHING")
            .bind(boot.org.created_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if marked == 0 {
            tx.rollback().await?;
            return Ok(Inserted::AlreadyExists);
        }
        let k = &boot.system_kek;
        sqlx::query(
            "INSERT INTO keks (id, org_id, uri, state, is_default, created_ms) VALUES ($1, '', $2, $3, $4, $5)",
        )
        .bind(&k.id)
        .bind(&k.uri)
        .bind(k.state.as_str())
        .bind(bool_int(k.is_default))
        .bind(k.created_ms)
        .execute(&mut *tx)
        .await?;
        insert_dek_rows(&mut tx, &boot.canary).await?;
        let o = &boot.org;
        sqlx::query("INSERT INTO orgs (id, name, created_ms) VALUES ($1, $2, $3)")
            .bind(&o.id)
            .bind(&o.name)
            .bind(o.created_ms)
            .execute(&mut *tx)
            .await?;
        let u = &boot.admin;
        sqlx::query(
            "INSERT INTO users (id, login, display_name, instance_admin, created_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&u.id)
        .bind(&u.login)
        .bind(&u.display_name)
        .bind(bool_int(u.instance_admin))
        .bind(u.created_ms)
        .execute(&mut *tx)
        .await?;
        super::identity::insert_token_in(&mut tx, &boot.admin_token).await?;
        tx.commit().await?;
        Ok(Inserted::New)
    }

    async fn org_by_name(&self, name: &str) -> StoreResult<Option<OrgRecord>> {
        let row = sqlx::query("SELECT id, name, created_ms FROM orgs WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    async fn orgs(&self) -> StoreResult<Vec<OrgRecord>> {
        let rows = sqlx::query("SELECT id, name, created_ms FROM orgs ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(org_from_row).collect()
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<TokenWithUser>> {
        let row = sqlx::query(
            "SELECT t.id, t.token_hash, t.kind, t.user_id, t.org_id, t.team_id, t.description, t.created_ms, \
             t.expires_ms, t.revoked_ms, t.parent_id, t.confined_org_id, t.role_cap, u.id AS u_id, u.login AS u_login, u.display_name AS u_display_name, \
             u.instance_admin AS u_instance_admin, u.created_ms AS u_created_ms \
             FROM tokens t LEFT JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(hash.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let token = token_from_row(&row)?;
        let user = match row.try_get::<Option<String>, _>("u_id")? {
            Some(_) => Some(user_from_row(&row, "u_")?),
            None => None,
        };
        Ok(Some(TokenWithUser { token, user }))
    }

    async fn keks(&self) -> StoreResult<Vec<KekRecord>> {
        let rows = sqlx::query(
            "SELECT id, org_id, uri, state, is_default, created_ms FROM keks ORDER BY org_id, created_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(kek_from_row).collect()
    }

    async fn default_kek(&self, org_id: Option<&str>) -> StoreResult<Option<KekRecord>> {
        // The org's own default wins over the system default: order by "is this the org's row" first.
        let row = sqlx::query(
            "SELECT id, org_id, uri, state, is_default, created_ms FROM keks \
             WHERE is_default = 1 AND state = 'active' AND (org_id = $1 OR org_id = '') \
             ORDER BY CASE WHEN org_id = '' THEN 1 ELSE 0 END, created_ms LIMIT 1",
        )
        .bind(org_id.unwrap_or(""))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(kek_from_row).transpose()
    }

    async fn current_dek(&self, scope: &str) -> StoreResult<Option<DekWithWraps>> {
        let sql = format!(
            "SELECT {DEK_WRAP_COLUMNS} FROM deks d JOIN dek_wraps w ON w.dek_id = d.id \
             WHERE d.id = (SELECT id FROM deks WHERE scope = $1 AND state = 'active' \
                           ORDER BY generation DESC LIMIT 1) \
             ORDER BY w.is_primary DESC, w.created_ms"
        );
        let rows = sqlx::query(&sql).bind(scope).fetch_all(&self.pool).await?;
        Ok(deks_from_joined(&rows)?.pop())
    }

    async fn dek(&self, id: &str) -> StoreResult<Option<DekWithWraps>> {
        let sql = format!(
            "SELECT {DEK_WRAP_COLUMNS} FROM deks d JOIN dek_wraps w ON w.dek_id = d.id WHERE d.id = $1 \
             ORDER BY w.is_primary DESC, w.created_ms"
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.pool).await?;
        Ok(deks_from_joined(&rows)?.pop())
    }

    async fn insert_dek(&self, dek: &DekWithWraps) -> StoreResult<Inserted> {
        let mut tx = self.pool.begin().await?;
        let outcome = insert_dek_rows(&mut tx, dek).await?;
        match outcome {
            Inserted::New => tx.commit().await?,
            Inserted::AlreadyExists => tx.rollback().await?,
        }
        Ok(outcome)
    }

    async fn sample_wrap(&self, kek_id: &str) -> StoreResult<Option<DekWithWraps>> {
        let sql = format!(
            "SELECT {DEK_WRAP_COLUMNS} FROM deks d JOIN dek_wraps w ON w.dek_id = d.id \
             WHERE w.kek_id = $1 ORDER BY d.created_ms, d.id LIMIT 1"
        );
        let rows = sqlx::query(&sql).bind(kek_id).fetch_all(&self.pool).await?;
        Ok(deks_from_joined(&rows)?.pop())
    }

    async fn org_by_id(&self, id: &str) -> StoreResult<Option<OrgRecord>> {
        let row = sqlx::query("SELECT id, name, created_ms FROM orgs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    async fn insert_kek(&self, k: &KekRecord, audit: &AuditEvent) -> StoreResult<Inserted> {
        let mut tx = self.pool.begin().await?;
        let owner = k.org_id.as_deref().unwrap_or("");
        if k.is_default {
            sqlx::query("UPDATE keks SET is_default = 0 WHERE org_id = $1")
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        let n = sqlx::query(
            "INSERT INTO keks (id, org_id, uri, state, is_default, created_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&k.id)
        .bind(owner)
        .bind(&k.uri)
        .bind(k.state.as_str())
        .bind(bool_int(k.is_default))
        .bind(k.created_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Ok(if commit_if(tx, self.dialect, n > 0, audit).await? {
            Inserted::New
        } else {
            Inserted::AlreadyExists
        })
    }

    async fn set_default_kek(&self, kek_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let owner = sqlx::query("SELECT org_id FROM keks WHERE id = $1 AND state = 'active'")
            .bind(kek_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(owner) = owner else {
            tx.rollback().await?;
            return Ok(false);
        };
        let owner: String = owner.try_get("org_id")?;
        sqlx::query("UPDATE keks SET is_default = CASE WHEN id = $1 THEN 1 ELSE 0 END WHERE org_id = $2")
            .bind(kek_id)
            .bind(&owner)
            .execute(&mut *tx)
            .await?;
        commit_if(tx, self.dialect, true, audit).await
    }

    async fn disable_kek(&self, kek_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE keks SET state = 'disabled', is_default = 0 WHERE id = $1")
            .bind(kek_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit_if(tx, self.dialect, n > 0, audit).await
    }

    async fn start_or_resume_migration(&self, new: &MigrationRecord) -> StoreResult<MigrationRecord> {
        let mut tx = self.begin_write().await?;
        let org = new.org_id.as_deref().unwrap_or("");
        let existing = sqlx::query(&format!(
            "SELECT {MIGRATION_COLUMNS} FROM kek_migrations WHERE from_kek = $1 AND to_kek = $2 AND org_id = $3 \
             AND state IN ('running', 'paused', 'failed') ORDER BY created_ms DESC LIMIT 1"
        ))
        .bind(&new.from_kek)
        .bind(&new.to_kek)
        .bind(org)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let mut m = migration_from_row(&row)?;
            sqlx::query("UPDATE kek_migrations SET state = 'running', error = '', updated_ms = $2 WHERE id = $1")
                .bind(&m.id)
                .bind(new.created_ms)
                .execute(&mut *tx)
                .await?;
            let detail = format!("resumed from {}; {} of {} done", m.state.as_str(), m.migrated, m.total);
            append_audit_in(
                &mut tx,
                self.dialect,
                &[migration_event(
                    &m,
                    AuditAction::KekMigrationResume,
                    detail,
                    new.created_ms,
                )],
            )
            .await?;
            tx.commit().await?;
            m.state = MigrationState::Running;
            m.error.clear();
            return Ok(m);
        }
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM deks d JOIN dek_wraps w ON w.dek_id = d.id \
             WHERE w.kek_id = $1 AND ($2 = '' OR d.org_id = $2) \
             AND NOT EXISTS (SELECT 1 FROM dek_wraps t WHERE t.dek_id = d.id AND t.kek_id = $3)",
        )
        .bind(&new.from_kek)
        .bind(org)
        .bind(&new.to_kek)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        sqlx::query(
            "INSERT INTO kek_migrations (id, from_kek, to_kek, org_id, state, total, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6, $6)",
        )
        .bind(&new.id)
        .bind(&new.from_kek)
        .bind(&new.to_kek)
        .bind(org)
        .bind(total)
        .bind(new.created_ms)
        .execute(&mut *tx)
        .await?;
        let detail = format!("{} -> {}; {total} DEKs", new.from_kek, new.to_kek);
        append_audit_in(
            &mut tx,
            self.dialect,
            &[migration_event(
                new,
                AuditAction::KekMigrationStart,
                detail,
                new.created_ms,
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(MigrationRecord {
            total,
            state: MigrationState::Running,
            ..new.clone()
        })
    }

    async fn migration(&self, id: &str) -> StoreResult<Option<MigrationRecord>> {
        let row = sqlx::query(&format!("SELECT {MIGRATION_COLUMNS} FROM kek_migrations WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(migration_from_row).transpose()
    }

    async fn migrations(&self) -> StoreResult<Vec<MigrationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {MIGRATION_COLUMNS} FROM kek_migrations ORDER BY created_ms DESC, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(migration_from_row).collect()
    }

    async fn lease_migration(&self, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
        take_lease(&self.pool, "kek_migrations", "", (id, owner), (now_ms, until_ms)).await
    }

    async fn migration_batch(&self, m: &MigrationRecord, after: &str, limit: i64) -> StoreResult<Vec<DekWithWraps>> {
        let sql = format!(
            "SELECT {DEK_WRAP_COLUMNS} FROM deks d JOIN dek_wraps w ON w.dek_id = d.id \
             WHERE d.id IN (SELECT d2.id FROM deks d2 JOIN dek_wraps s ON s.dek_id = d2.id \
                            WHERE s.kek_id = $1 AND d2.id > $2 AND ($3 = '' OR d2.org_id = $3) \
                            AND NOT EXISTS (SELECT 1 FROM dek_wraps t WHERE t.dek_id = d2.id AND t.kek_id = $4) \
                            ORDER BY d2.id LIMIT $5) \
             ORDER BY d.id, w.is_primary DESC, w.created_ms"
        );
        let rows = sqlx::query(&sql)
            .bind(&m.from_kek)
            .bind(after)
            .bind(m.org_id.as_deref().unwrap_or(""))
            .bind(&m.to_kek)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        deks_from_joined(&rows)
    }

    async fn record_migration_batch(
        &self,
        id: &str,
        wraps: &[WrapRecord],
        cursor: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Only the wraps that land count: a wrap another run wrote already (a replica whose lease lapsed mid-batch)
        // is kept, and counting it again would push `migrated` past `total`.
        let mut inserted = 0u64;
        for w in wraps {
            inserted += insert_wrap(&mut tx, w, true).await?;
        }
        sqlx::query(
            "UPDATE kek_migrations SET cursor_dek = $2, migrated = migrated + $3, updated_ms = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(cursor)
        .bind(i64::try_from(inserted).unwrap_or(i64::MAX))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(m) = migration_in(&mut tx, id).await? {
            let detail = format!(
                "re-wrapped {inserted} of {} DEKs in this batch; {} of {} done; cursor {cursor}",
                wraps.len(),
                m.migrated,
                m.total
            );
            append_audit_in(
                &mut tx,
                self.dialect,
                &[migration_event(&m, AuditAction::KekMigrationBatch, detail, now_ms)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_migration_state(&self, id: &str, state: MigrationState, error: &str, now_ms: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let Some(m) = migration_in(&mut tx, id).await? else {
            tx.rollback().await?;
            return Ok(());
        };
        if state == MigrationState::Done {
            // The target's wraps become the ones tried first; the source's stay until retired.
            for (kek, primary) in [(&m.from_kek, 0i64), (&m.to_kek, 1i64)] {
                sqlx::query(
                    "UPDATE dek_wraps SET is_primary = $2 WHERE kek_id = $1 AND dek_id IN \
                     (SELECT t.dek_id FROM dek_wraps t JOIN deks d ON d.id = t.dek_id \
                      WHERE t.kek_id = $3 AND ($4 = '' OR d.org_id = $4))",
                )
                .bind(kek)
                .bind(primary)
                .bind(&m.to_kek)
                .bind(m.org_id.as_deref().unwrap_or(""))
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("UPDATE kek_migrations SET state = $2, error = $3, updated_ms = $4 WHERE id = $1")
            .bind(id)
            .bind(state.as_str())
            .bind(error)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let mut event = migration_event(
            &m,
            migration_state_action(state),
            format!(
                "{} -> {}; {} of {} done",
                m.state.as_str(),
                state.as_str(),
                m.migrated,
                m.total
            ),
            now_ms,
        );
        if state == MigrationState::Failed {
            let detail = format!("{}; {error}", event.detail);
            event = event.outcome(Outcome::Failed).detail(detail);
        }
        append_audit_in(&mut tx, self.dialect, &[event]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_migration_verified(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE kek_migrations SET verified_ms = $2, updated_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        if let Some(m) = migration_in(&mut tx, id).await? {
            let detail = format!("every one of {} DEKs unwrapped under {}", m.total, m.to_kek);
            append_audit_in(
                &mut tx,
                self.dialect,
                &[migration_event(&m, AuditAction::KekMigrationVerified, detail, now_ms)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<Vec<AuditRecord>> {
        self.append_audit_with_sessions(events, &[]).await
    }

    async fn append_audit_with_sessions(
        &self,
        events: &[AuditEvent],
        sessions: &[super::envs::SessionRecord],
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut tx = self.pool.begin().await?;
        for s in sessions {
            super::envs::insert_session_in(&mut tx, s).await?;
        }
        let out = append_audit_in(&mut tx, self.dialect, events).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn audit_records(&self, chain: &str, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT chain, seq, time_ms, actor, source, action, target, outcome, detail, prev_hash, hash \
             FROM audit_events WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(chain)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    seq: r.try_get("seq")?,
                    event: AuditEvent {
                        chain: r.try_get("chain")?,
                        time_ms: r.try_get("time_ms")?,
                        actor: r.try_get("actor")?,
                        source: r.try_get("source")?,
                        action: r.try_get("action")?,
                        target: r.try_get("target")?,
                        outcome: r.try_get("outcome")?,
                        detail: r.try_get("detail")?,
                    },
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }

    async fn audit_heads(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT chain, seq FROM audit_heads ORDER BY chain")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("chain")?, r.try_get("seq")?)))
            .collect()
    }

    async fn audit_checkpoints(&self, chain: &str) -> StoreResult<Vec<Checkpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE chain = $1 ORDER BY seq"
        ))
        .bind(chain)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn last_audit_checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints c WHERE seq = \
             (SELECT MAX(seq) FROM audit_checkpoints l WHERE l.chain = c.chain)"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn insert_audit_checkpoint(&self, c: &Checkpoint) -> StoreResult<Inserted> {
        let n = sqlx::query(
            "INSERT INTO audit_checkpoints (chain, seq, head, time_ms, key, signature) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&c.chain)
        .bind(c.seq)
        .bind(&c.head)
        .bind(c.time_ms)
        .bind(&c.key)
        .bind(&c.signature)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if n == 1 { Inserted::New } else { Inserted::AlreadyExists })
    }

    async fn audit_anchor(&self, chain: &str) -> StoreResult<Option<Checkpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_anchors WHERE chain = $1"
        ))
        .bind(chain)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    async fn prune_audit(&self, a: &Checkpoint, event: &AuditEvent) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "INSERT INTO audit_anchors (chain, seq, head, time_ms, key, signature) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, head = excluded.head, time_ms = excluded.time_ms, \
             key = excluded.key, signature = excluded.signature WHERE excluded.seq > audit_anchors.seq",
        )
        .bind(&a.chain)
        .bind(a.seq)
        .bind(&a.head)
        .bind(a.time_ms)
        .bind(&a.key)
        .bind(&a.signature)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(StoreError::Corrupt {
                table: "audit_anchors",
                detail: format!("chain {} is already pruned through record {} or later", a.chain, a.seq),
            });
        }
        let n = sqlx::query("DELETE FROM audit_events WHERE chain = $1 AND seq <= $2")
            .bind(&a.chain)
            .bind(a.seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM audit_checkpoints WHERE chain = $1 AND seq < $2")
            .bind(&a.chain)
            .bind(a.seq)
            .execute(&mut *tx)
            .await?;
        append_audit_in(&mut tx, self.dialect, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn audit_signing_key(&self) -> StoreResult<Option<(Vec<u8>, Vec<u8>)>> {
        let row = sqlx::query("SELECT public_key, sealed FROM audit_signing_keys WHERE name = 'current'")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("public_key")?, r.try_get("sealed")?)))
            .transpose()
    }

    async fn insert_audit_signing_key(&self, public_key: &[u8], sealed: &[u8], now_ms: i64) -> StoreResult<Inserted> {
        let n = sqlx::query(
            "INSERT INTO audit_signing_keys (name, public_key, sealed, created_ms) VALUES ('current', $1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(public_key.to_vec())
        .bind(sealed.to_vec())
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if n == 1 { Inserted::New } else { Inserted::AlreadyExists })
    }

    async fn retire_migration_source(&self, m: &MigrationRecord, now_ms: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "DELETE FROM dek_wraps WHERE kek_id = $1 AND dek_id IN \
             (SELECT t.dek_id FROM dek_wraps t JOIN deks d ON d.id = t.dek_id \
              WHERE t.kek_id = $2 AND ($3 = '' OR d.org_id = $3))",
        )
        .bind(&m.from_kek)
        .bind(&m.to_kek)
        .bind(m.org_id.as_deref().unwrap_or(""))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let detail = format!("removed {n} wraps under {}", m.from_kek);
        append_audit_in(
            &mut tx,
            self.dialect,
            &[migration_event(m, AuditAction::KekMigrationRetire, detail, now_ms)],
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn deks_under(
        &self,
        kek_id: &str,
        org_id: Option<&str>,
        after: &str,
        limit: i64,
    ) -> StoreResult<Vec<DekWithWraps>> {
        let sql = format!(
            "SELECT {DEK_WRAP_COLUMNS} FROM deks d JOIN dek_wraps w ON w.dek_id = d.id \
             WHERE d.id IN (SELECT d2.id FROM deks d2 JOIN dek_wraps s ON s.dek_id = d2.id \
                            WHERE s.kek_id = $1 AND d2.id > $2 AND ($3 = '' OR d2.org_id = $3) \
                            ORDER BY d2.id LIMIT $4) \
             ORDER BY d.id, w.is_primary DESC, w.created_ms"
        );
        let rows = sqlx::query(&sql)
            .bind(kek_id)
            .bind(after)
            .bind(org_id.unwrap_or(""))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        deks_from_joined(&rows)
    }
}
