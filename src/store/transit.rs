//! Vault-Transit keys, their versions and the org's transit mounts. A version's material is stored only sealed
//! (the keyring seals it under the org's `transit:<org>` scope before it gets here); a signing key's public half is
//! kept in the clear.
//!
//! Rule: every change of a key (made, rotated, configured, deleted) and of a mount appends its audit record in the
//! same transaction; a rotation is conditional on the latest version it was based on, so two replicas rotating at
//! once make one version. The per-version encryption counts (the nonce budget) are added up here from every
//! replica; nothing here decides when to rotate.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{SqlStore, audit_in, commit_if};
use super::{AuditEvent, Inserted, StoreResult};

/// A transit key's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitKeyRecord {
    /// Immutable id (UUID text): what the sealed versions' associated data names.
    pub id: String,
    /// The org.
    pub org_id: String,
    /// The mount path (`transit`).
    pub mount: String,
    /// The key's name.
    pub name: String,
    /// The policy as JSON text (`core::transit::policy::KeyPolicy`).
    pub policy: String,
    /// The newest version.
    pub latest_version: i64,
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
    /// Its last change, Unix milliseconds.
    pub modified_ms: i64,
}

/// One version of a key.
#[derive(Clone, PartialEq, Eq)]
pub struct TransitVersionRecord {
    /// The key's id.
    pub key_id: String,
    /// The version, from 1.
    pub version: i64,
    /// The material, sealed (associated data: org, key id, version).
    pub sealed: Vec<u8>,
    /// A signing key's public key (base64 for Ed25519, PEM for ECDSA).
    pub public_key: Option<String>,
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
    /// Values encrypted under it so far, from every replica.
    pub encryptions: i64,
}

impl std::fmt::Debug for TransitVersionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitVersionRecord")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .field("created_ms", &self.created_ms)
            .field("encryptions", &self.encryptions)
            .finish_non_exhaustive()
    }
}

/// A key with its versions, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitKey {
    /// The key's row.
    pub key: TransitKeyRecord,
    /// Its versions.
    pub versions: Vec<TransitVersionRecord>,
}

/// Transit keys and mounts.
#[async_trait::async_trait]
pub trait TransitStore: Send + Sync {
    /// The transit mounts an org enabled (besides `transit`, which every org has), by path.
    async fn transit_mounts(&self, org_id: &str) -> StoreResult<Vec<String>>;

    /// Enables a mount, appending `audit`; [`Inserted::AlreadyExists`] when the org has it.
    async fn insert_transit_mount(
        &self,
        org_id: &str,
        path: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<Inserted>;

    /// A key with its versions.
    async fn transit_key(&self, org_id: &str, mount: &str, name: &str) -> StoreResult<Option<TransitKey>>;

    /// The names of a mount's keys, sorted.
    async fn transit_key_names(&self, org_id: &str, mount: &str) -> StoreResult<Vec<String>>;

    /// Stores a new key with its first versions, appending `audit`; [`Inserted::AlreadyExists`] (nothing written)
    /// when the mount has a key of that name.
    async fn insert_transit_key(
        &self,
        key: &TransitKeyRecord,
        versions: &[TransitVersionRecord],
        audit: &AuditEvent,
    ) -> StoreResult<Inserted>;

    /// Adds `version` (which must be `expected_latest + 1`) and makes it the latest, with `policy` as the key's
    /// policy, appending `audit`; `false` (nothing written) when the key's latest version is no longer
    /// `expected_latest` or the key is gone.
    async fn add_transit_version(
        &self,
        expected_latest: i64,
        policy: &str,
        version: &TransitVersionRecord,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;

    /// Replaces a key's policy, appending `audit`; `false` when the key is gone.
    async fn update_transit_policy(
        &self,
        key_id: &str,
        policy: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;

    /// Deletes a key and its versions, appending `audit`; `false` when it is gone.
    async fn delete_transit_key(&self, key_id: &str, audit: &AuditEvent) -> StoreResult<bool>;

    /// Adds counts of encryptions per (key id, version); returns each version's total afterwards.
    async fn add_transit_encryptions(&self, counts: &[(String, i64, i64)]) -> StoreResult<Vec<(String, i64, i64)>>;
}

const KEY_COLUMNS: &str = "id, org_id, mount, name, policy, latest_version, created_ms, modified_ms";

fn key_from_row(row: &AnyRow) -> StoreResult<TransitKeyRecord> {
    Ok(TransitKeyRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        mount: row.try_get("mount")?,
        name: row.try_get("name")?,
        policy: row.try_get("policy")?,
        latest_version: row.try_get("latest_version")?,
        created_ms: row.try_get("created_ms")?,
        modified_ms: row.try_get("modified_ms")?,
    })
}

fn version_from_row(row: &AnyRow) -> StoreResult<TransitVersionRecord> {
    Ok(TransitVersionRecord {
        key_id: row.try_get("key_id")?,
        version: row.try_get("version")?,
        sealed: row.try_get("sealed")?,
        public_key: row.try_get("public_key")?,
        created_ms: row.try_get("created_ms")?,
        encryptions: row.try_get("encryptions")?,
    })
}

async fn insert_version(tx: &mut sqlx::Transaction<'_, sqlx::Any>, v: &TransitVersionRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO transit_key_versions (key_id, version, sealed, public_key, created_ms, encryptions) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&v.key_id)
    .bind(v.version)
    .bind(v.sealed.clone())
    .bind(v.public_key.clone())
    .bind(v.created_ms)
    .bind(v.encryptions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl TransitStore for SqlStore {
    async fn transit_mounts(&self, org_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT path FROM transit_mounts WHERE org_id = $1 ORDER BY path")
            .bind(org_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("path")?)).collect()
    }

    async fn insert_transit_mount(
        &self,
        org_id: &str,
        path: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<Inserted> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(
            "INSERT INTO transit_mounts (org_id, path, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(org_id)
        .bind(path)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if commit_if(tx, self.dialect(), n > 0, audit).await? {
            Ok(Inserted::New)
        } else {
            Ok(Inserted::AlreadyExists)
        }
    }

    async fn transit_key(&self, org_id: &str, mount: &str, name: &str) -> StoreResult<Option<TransitKey>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM transit_keys WHERE org_id = $1 AND mount = $2 AND name = $3"
        ))
        .bind(org_id)
        .bind(mount)
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key = key_from_row(&row)?;
        let rows = sqlx::query(
            "SELECT key_id, version, sealed, public_key, created_ms, encryptions FROM transit_key_versions \
             WHERE key_id = $1 ORDER BY version",
        )
        .bind(&key.id)
        .fetch_all(self.pool())
        .await?;
        let versions = rows.iter().map(version_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(TransitKey { key, versions }))
    }

    async fn transit_key_names(&self, org_id: &str, mount: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM transit_keys WHERE org_id = $1 AND mount = $2 ORDER BY name")
            .bind(org_id)
            .bind(mount)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("name")?)).collect()
    }

    async fn insert_transit_key(
        &self,
        key: &TransitKeyRecord,
        versions: &[TransitVersionRecord],
        audit: &AuditEvent,
    ) -> StoreResult<Inserted> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(&format!(
            "INSERT INTO transit_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
        ))
        .bind(&key.id)
        .bind(&key.org_id)
        .bind(&key.mount)
        .bind(&key.name)
        .bind(&key.policy)
        .bind(key.latest_version)
        .bind(key.created_ms)
        .bind(key.modified_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(Inserted::AlreadyExists);
        }
        for v in versions {
            insert_version(&mut tx, v).await?;
        }
        audit_in(&mut tx, self.dialect(), audit).await?;
        tx.commit().await?;
        Ok(Inserted::New)
    }

    async fn add_transit_version(
        &self,
        expected_latest: i64,
        policy: &str,
        version: &TransitVersionRecord,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(
            "UPDATE transit_keys SET latest_version = $1, policy = $2, modified_ms = $3 \
             WHERE id = $4 AND latest_version = $5",
        )
        .bind(version.version)
        .bind(policy)
        .bind(version.created_ms)
        .bind(&version.key_id)
        .bind(expected_latest)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            insert_version(&mut tx, version).await?;
        }
        commit_if(tx, self.dialect(), n == 1, audit).await
    }

    async fn update_transit_policy(
        &self,
        key_id: &str,
        policy: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query("UPDATE transit_keys SET policy = $1, modified_ms = $2 WHERE id = $3")
            .bind(policy)
            .bind(now_ms)
            .bind(key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit_if(tx, self.dialect(), n == 1, audit).await
    }

    async fn delete_transit_key(&self, key_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        sqlx::query("DELETE FROM transit_key_versions WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM transit_keys WHERE id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit_if(tx, self.dialect(), n == 1, audit).await
    }

    async fn add_transit_encryptions(&self, counts: &[(String, i64, i64)]) -> StoreResult<Vec<(String, i64, i64)>> {
        let mut tx = self.begin_tx().await?;
        let mut out = Vec::with_capacity(counts.len());
        for (key_id, version, n) in counts {
            let row = sqlx::query(
                "UPDATE transit_key_versions SET encryptions = encryptions + $1 WHERE key_id = $2 AND version = $3 \
                 RETURNING encryptions",
            )
            .bind(*n)
            .bind(key_id)
            .bind(*version)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                out.push((key_id.clone(), *version, row.try_get("encryptions")?));
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}
