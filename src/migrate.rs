//! The resumable KEK migration (DESIGN.md §3): re-wrap every DEK under a source KEK with a target KEK, online.
//!
//! The job lives in the `kek_migrations` table: cursor, counts, state and a lease. One replica at a time holds the
//! lease and walks DEKs that have a wrap under the source and none under the target, in id order, in batches. For
//! each DEK of a batch — with bounded concurrency toward the KMS — it unwraps with the source, wraps with the
//! target and unwraps again to prove the new wrap; then the whole batch's new wraps and the new cursor are written
//! in one transaction. Killing the process at any instant leaves every DEK with at least its old, working wrap and
//! the cursor at a batch boundary; resuming continues from there, and re-inserting a wrap that landed is a no-op.
//! A target that does not give back what it wrapped fails the job before anything of that batch is written.
//! Content is never touched: envelopes name DEKs, not KEKs. Leases and records are timed by the caller's [`Clock`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::clock::Clock;
use crate::keyring::{Keyring, KeyringError};
use crate::store::{MigrationRecord, MigrationState, Store, StoreError};

/// Knobs of a migration run.
#[derive(Debug, Clone)]
pub struct MigrateConfig {
    /// DEKs per transaction.
    pub batch: i64,
    /// DEKs re-wrapped at once (calls in flight toward the KMS).
    pub concurrency: usize,
    /// How long a lease lasts; it is renewed every batch.
    pub lease: Duration,
}

impl Default for MigrateConfig {
    fn default() -> Self {
        MigrateConfig {
            batch: 256,
            concurrency: 16,
            lease: Duration::from_secs(30),
        }
    }
}

/// Why a migration step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such migration.
    #[error("migration {0} not found")]
    NotFound(String),
    /// A DEK could not be re-wrapped or verified.
    #[error("DEK {dek_id}: {cause}")]
    Dek {
        /// The DEK.
        dek_id: String,
        /// The keyring's error (names KEKs, never key material).
        cause: KeyringError,
    },
    /// Retire was asked before a successful verification.
    #[error("migration {0} must be done and verified before the source wraps can be retired")]
    NotVerified(String),
}

/// Runs migration `id` until it is done, paused, failed, or leased by another owner; returns its final record.
/// Leases and records are timed by `clock`.
pub async fn run(
    store: &Arc<dyn Store>,
    keyring: &Keyring,
    id: &str,
    owner: &str,
    config: &MigrateConfig,
    clock: &Clock,
) -> Result<MigrationRecord, MigrateError> {
    let lease_ms = i64::try_from(config.lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        let now = clock.now_ms();
        if !store
            .lease_migration(id, owner, now, now.saturating_add(lease_ms))
            .await?
        {
            tracing::debug!(migration = %id, "another replica holds the migration lease");
            return current(store, id).await;
        }
        let m = current(store, id).await?;
        if m.state != MigrationState::Running {
            return Ok(m);
        }
        let batch = store.migration_batch(&m, &m.cursor, config.batch).await?;
        let Some(last) = batch.last().map(|d| d.dek.id.clone()) else {
            store
                .set_migration_state(id, MigrationState::Done, "", clock.now_ms())
                .await?;
            tracing::info!(migration = %id, migrated = m.migrated, "migration done");
            return current(store, id).await;
        };
        // The futures are collected first: a concrete Vec keeps the spawned future `Send` (a closure returning
        // borrowed futures inside the stream would not be, for every lifetime).
        let jobs: Vec<_> = batch
            .iter()
            .map(|dek| rewrap_one(keyring, dek, &m.from_kek, &m.to_kek))
            .collect();
        let results: Vec<_> = futures::stream::iter(jobs)
            .buffer_unordered(config.concurrency.max(1))
            .collect()
            .await;
        let mut wraps = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(w) => wraps.push(w),
                Err(e) => {
                    // Nothing of this batch is written: every DEK keeps its working source wrap.
                    store
                        .set_migration_state(id, MigrationState::Failed, &e.to_string(), clock.now_ms())
                        .await?;
                    tracing::warn!(migration = %id, error = %e, "migration failed");
                    return Err(e);
                }
            }
        }
        store.record_migration_batch(id, &wraps, &last, clock.now_ms()).await?;
    }
}

async fn rewrap_one(
    keyring: &Keyring,
    dek: &crate::store::DekWithWraps,
    from: &str,
    to: &str,
) -> Result<crate::store::WrapRecord, MigrateError> {
    keyring.rewrap(dek, from, to).await.map_err(|cause| MigrateError::Dek {
        dek_id: dek.dek.id.clone(),
        cause,
    })
}

async fn current(store: &Arc<dyn Store>, id: &str) -> Result<MigrationRecord, MigrateError> {
    store
        .migration(id)
        .await?
        .ok_or_else(|| MigrateError::NotFound(id.to_owned()))
}

/// Unwraps every DEK in the migration's scope under the target KEK; records the verification if all unwrap.
/// Returns (checked, failed).
pub async fn verify(
    store: &Arc<dyn Store>,
    keyring: &Keyring,
    id: &str,
    clock: &Clock,
) -> Result<(u64, u64), MigrateError> {
    let m = current(store, id).await?;
    let (mut checked, mut failed, mut after) = (0u64, 0u64, String::new());
    loop {
        let deks = store.deks_under(&m.to_kek, m.org_id.as_deref(), &after, 512).await?;
        let Some(last) = deks.last().map(|d| d.dek.id.clone()) else {
            break;
        };
        let jobs: Vec<_> = deks.iter().map(|d| keyring.unwrap_with(d, &m.to_kek)).collect();
        let results: Vec<_> = futures::stream::iter(jobs).buffer_unordered(16).collect().await;
        checked += results.len() as u64;
        failed += results.iter().filter(|r| r.is_err()).count() as u64;
        after = last;
    }
    // Every DEK still under the source must also be under the target, or the migration is not complete.
    let missing = store.migration_batch(&m, "", 1).await?.len() as u64;
    if failed == 0 && missing == 0 {
        store.mark_migration_verified(id, clock.now_ms()).await?;
    }
    Ok((checked, failed + missing))
}

/// Deletes the source KEK's wraps of the migrated DEKs, only after the migration is done and verified.
pub async fn retire(store: &Arc<dyn Store>, id: &str, clock: &Clock) -> Result<u64, MigrateError> {
    let m = current(store, id).await?;
    if m.state != MigrationState::Done || m.verified_ms.is_none() {
        return Err(MigrateError::NotVerified(id.to_owned()));
    }
    let n = store.retire_migration_source(&m, clock.now_ms()).await?;
    store
        .set_migration_state(id, MigrationState::Retired, "", clock.now_ms())
        .await?;
    Ok(n)
}
