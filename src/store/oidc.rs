//! The OIDC issuer's signing keys: one row per key, its private half sealed (the store never sees it in the
//! clear), its public half as a JWK. Every replica reads the same rows, so all of them publish and sign alike.
//!
//! Rule: making and removing keys are audited in the write's own transaction; nothing here decides when (that is
//! `core::oidc::plan`).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{SqlStore, audit_in};
use super::{AuditEvent, Inserted, StoreResult};

/// A signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcKeyRecord {
    /// The key id: the RFC 7638 thumbprint of its public key.
    pub kid: String,
    /// `RS256` or `ES256`.
    pub alg: String,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    /// The PKCS#8 private key, sealed under the `oidc-signing` scope (associated data: kid and alg).
    pub sealed: Vec<u8>,
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
    /// When it starts signing, Unix milliseconds (published from `created_ms`).
    pub active_ms: i64,
}

impl std::fmt::Debug for OidcKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_ms", &self.created_ms)
            .field("active_ms", &self.active_ms)
            .finish_non_exhaustive()
    }
}

/// The signing keys' rows.
#[async_trait::async_trait]
pub trait OidcKeyStore: Send + Sync {
    /// Every stored key, by `active_ms`, oldest first.
    async fn oidc_keys(&self) -> StoreResult<Vec<OidcKeyRecord>>;

    /// Stores a key and appends `audit` in the same transaction. [`Inserted::AlreadyExists`] (nothing written) when
    /// a key with the same id or the same `active_ms` exists: another replica made the same rotation first.
    async fn insert_oidc_key(&self, key: &OidcKeyRecord, audit: &AuditEvent) -> StoreResult<Inserted>;

    /// Deletes the keys `kids` and appends `audit` in the same transaction when any was deleted; returns how many.
    async fn delete_oidc_keys(&self, kids: &[String], audit: &AuditEvent) -> StoreResult<u64>;
}

fn key_from_row(row: &AnyRow) -> StoreResult<OidcKeyRecord> {
    Ok(OidcKeyRecord {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        public_jwk: row.try_get("public_jwk")?,
        sealed: row.try_get("sealed")?,
        created_ms: row.try_get("created_ms")?,
        active_ms: row.try_get("active_ms")?,
    })
}

#[async_trait::async_trait]
impl OidcKeyStore for SqlStore {
    async fn oidc_keys(&self) -> StoreResult<Vec<OidcKeyRecord>> {
        let rows = sqlx::query(
            "SELECT kid, alg, public_jwk, sealed, created_ms, active_ms FROM oidc_signing_keys ORDER BY active_ms, kid",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn insert_oidc_key(&self, key: &OidcKeyRecord, audit: &AuditEvent) -> StoreResult<Inserted> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(
            "INSERT INTO oidc_signing_keys (kid, alg, public_jwk, sealed, created_ms, active_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.public_jwk)
        .bind(key.sealed.clone())
        .bind(key.created_ms)
        .bind(key.active_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(Inserted::AlreadyExists);
        }
        audit_in(&mut tx, self.dialect(), audit).await?;
        tx.commit().await?;
        Ok(Inserted::New)
    }

    async fn delete_oidc_keys(&self, kids: &[String], audit: &AuditEvent) -> StoreResult<u64> {
        let mut tx = self.begin_tx().await?;
        let mut n = 0;
        for kid in kids {
            n += sqlx::query("DELETE FROM oidc_signing_keys WHERE kid = $1")
                .bind(kid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if n == 0 {
            tx.rollback().await?;
            return Ok(0);
        }
        audit_in(&mut tx, self.dialect(), audit).await?;
        tx.commit().await?;
        Ok(n)
    }
}
