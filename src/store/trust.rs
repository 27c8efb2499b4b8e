//! Trusted OIDC issuers and their policy lists, per org (token exchange). An issuer and its policy are made and
//! deleted together; a policy list is stored as the JSON text the API received (already checked by the edge) and
//! replaced whole, its `version` counting replacements.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{SqlStore, commit_if};
use super::{AuditEvent, Inserted, StoreResult};

/// A registered issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRecord {
    /// Immutable id (UUID text).
    pub id: String,
    /// The org that trusts it.
    pub org_id: String,
    /// A name for people, unique in the org.
    pub name: String,
    /// The issuer URL: the `iss` its tokens carry, unique in the org.
    pub url: String,
    /// TLS certificate thumbprints (JSON list text).
    pub thumbprints: String,
    /// An inline JWKS (JSON text): nothing is fetched for this issuer.
    pub jwks: Option<String>,
    /// The longest lifetime of a token minted from this issuer's tokens, seconds.
    pub max_expiration_s: i64,
    /// Whether exchanges with its tokens are refused.
    pub disabled: bool,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Last change, Unix milliseconds.
    pub modified_ms: i64,
}

/// An issuer's policy list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    /// Immutable id (UUID text).
    pub id: String,
    /// The org.
    pub org_id: String,
    /// The issuer it belongs to.
    pub issuer_id: String,
    /// Replacements so far (1 when made).
    pub version: i64,
    /// The list, as JSON text.
    pub policies: String,
    /// Last change, Unix milliseconds.
    pub modified_ms: i64,
}

/// Issuers and policies.
#[async_trait::async_trait]
pub trait TrustStore {
    /// Registers `issuer` with `policy` (its empty list), appending `audit`; [`Inserted::AlreadyExists`] when the org
    /// has an issuer of that name or URL (nothing written).
    async fn insert_issuer(
        &self,
        issuer: &IssuerRecord,
        policy: &PolicyRecord,
        audit: &AuditEvent,
    ) -> StoreResult<Inserted>;

    /// An org's issuers, by name.
    async fn issuers_of_org(&self, org_id: &str) -> StoreResult<Vec<IssuerRecord>>;

    /// An issuer of `org_id` by id.
    async fn issuer(&self, org_id: &str, id: &str) -> StoreResult<Option<IssuerRecord>>;

    /// An issuer of `org_id` by URL (a trailing `/` ignored).
    async fn issuer_by_url(&self, org_id: &str, url: &str) -> StoreResult<Option<IssuerRecord>>;

    /// Replaces an issuer's mutable fields (name, thumbprints, jwks, max expiration, disabled) with `issuer`'s;
    /// `false` when there is no such issuer or the new name is taken (nothing written).
    async fn update_issuer(&self, issuer: &IssuerRecord, audit: &AuditEvent) -> StoreResult<bool>;

    /// Deletes an issuer and its policy; `false` when there is none.
    async fn delete_issuer(&self, org_id: &str, id: &str, audit: &AuditEvent) -> StoreResult<bool>;

    /// The policy of an issuer.
    async fn policy_of_issuer(&self, org_id: &str, issuer_id: &str) -> StoreResult<Option<PolicyRecord>>;

    /// A policy by id.
    async fn policy(&self, org_id: &str, id: &str) -> StoreResult<Option<PolicyRecord>>;

    /// Replaces a policy's list and bumps its version; the new record, or `None` when there is no such policy.
    async fn replace_policy(
        &self,
        org_id: &str,
        id: &str,
        policies: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<Option<PolicyRecord>>;
}

const ISSUER_COLUMNS: &str =
    "id, org_id, name, url, thumbprints, jwks, max_expiration_s, disabled, created_ms, modified_ms";
const POLICY_COLUMNS: &str = "id, org_id, issuer_id, version, policies, modified_ms";

fn issuer_from_row(row: &AnyRow) -> StoreResult<IssuerRecord> {
    Ok(IssuerRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        thumbprints: row.try_get("thumbprints")?,
        jwks: row.try_get("jwks")?,
        max_expiration_s: row.try_get("max_expiration_s")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_ms: row.try_get("created_ms")?,
        modified_ms: row.try_get("modified_ms")?,
    })
}

fn policy_from_row(row: &AnyRow) -> StoreResult<PolicyRecord> {
    Ok(PolicyRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        issuer_id: row.try_get("issuer_id")?,
        version: row.try_get("version")?,
        policies: row.try_get("policies")?,
        modified_ms: row.try_get("modified_ms")?,
    })
}

#[async_trait::async_trait]
impl TrustStore for SqlStore {
    async fn insert_issuer(
        &self,
        issuer: &IssuerRecord,
        policy: &PolicyRecord,
        audit: &AuditEvent,
    ) -> StoreResult<Inserted> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(&format!(
            "INSERT INTO oidc_issuers ({ISSUER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(&issuer.id)
        .bind(&issuer.org_id)
        .bind(&issuer.name)
        .bind(&issuer.url)
        .bind(&issuer.thumbprints)
        .bind(&issuer.jwks)
        .bind(issuer.max_expiration_s)
        .bind(i64::from(issuer.disabled))
        .bind(issuer.created_ms)
        .bind(issuer.modified_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            sqlx::query(&format!(
                "INSERT INTO oidc_policies ({POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            ))
            .bind(&policy.id)
            .bind(&policy.org_id)
            .bind(&policy.issuer_id)
            .bind(policy.version)
            .bind(&policy.policies)
            .bind(policy.modified_ms)
            .execute(&mut *tx)
            .await?;
        }
        let wrote = commit_if(tx, self.dialect(), n > 0, audit).await?;
        Ok(if wrote { Inserted::New } else { Inserted::AlreadyExists })
    }

    async fn issuers_of_org(&self, org_id: &str) -> StoreResult<Vec<IssuerRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ISSUER_COLUMNS} FROM oidc_issuers WHERE org_id = $1 ORDER BY name, id"
        ))
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(issuer_from_row).collect()
    }

    async fn issuer(&self, org_id: &str, id: &str) -> StoreResult<Option<IssuerRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {ISSUER_COLUMNS} FROM oidc_issuers WHERE org_id = $1 AND id = $2"
        ))
        .bind(org_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(issuer_from_row).transpose()
    }

    async fn issuer_by_url(&self, org_id: &str, url: &str) -> StoreResult<Option<IssuerRecord>> {
        let bare = url.strip_suffix('/').unwrap_or(url);
        let rows = sqlx::query(&format!(
            "SELECT {ISSUER_COLUMNS} FROM oidc_issuers WHERE org_id = $1 AND (url = $2 OR url = $3)"
        ))
        .bind(org_id)
        .bind(bare)
        .bind(format!("{bare}/"))
        .fetch_all(self.pool())
        .await?;
        rows.first().map(issuer_from_row).transpose()
    }

    async fn update_issuer(&self, issuer: &IssuerRecord, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        let taken = sqlx::query("SELECT id FROM oidc_issuers WHERE org_id = $1 AND name = $2 AND id <> $3")
            .bind(&issuer.org_id)
            .bind(&issuer.name)
            .bind(&issuer.id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let n = if taken {
            0
        } else {
            sqlx::query(
                "UPDATE oidc_issuers SET name = $1, thumbprints = $2, jwks = $3, max_expiration_s = $4, disabled = $5, \
                 modified_ms = $6 WHERE org_id = $7 AND id = $8",
            )
            .bind(&issuer.name)
            .bind(&issuer.thumbprints)
            .bind(&issuer.jwks)
            .bind(issuer.max_expiration_s)
            .bind(i64::from(issuer.disabled))
            .bind(issuer.modified_ms)
            .bind(&issuer.org_id)
            .bind(&issuer.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        };
        commit_if(tx, self.dialect(), n > 0, audit).await
    }

    async fn delete_issuer(&self, org_id: &str, id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.begin_tx().await?;
        sqlx::query("DELETE FROM oidc_policies WHERE org_id = $1 AND issuer_id = $2")
            .bind(org_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM oidc_issuers WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        commit_if(tx, self.dialect(), n > 0, audit).await
    }

    async fn policy_of_issuer(&self, org_id: &str, issuer_id: &str) -> StoreResult<Option<PolicyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {POLICY_COLUMNS} FROM oidc_policies WHERE org_id = $1 AND issuer_id = $2"
        ))
        .bind(org_id)
        .bind(issuer_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn policy(&self, org_id: &str, id: &str) -> StoreResult<Option<PolicyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {POLICY_COLUMNS} FROM oidc_policies WHERE org_id = $1 AND id = $2"
        ))
        .bind(org_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn replace_policy(
        &self,
        org_id: &str,
        id: &str,
        policies: &str,
        now_ms: i64,
        audit: &AuditEvent,
    ) -> StoreResult<Option<PolicyRecord>> {
        let mut tx = self.begin_tx().await?;
        let n = sqlx::query(
            "UPDATE oidc_policies SET policies = $1, version = version + 1, modified_ms = $2 WHERE org_id = $3 AND \
             id = $4",
        )
        .bind(policies)
        .bind(now_ms)
        .bind(org_id)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row = if n > 0 {
            sqlx::query(&format!(
                "SELECT {POLICY_COLUMNS} FROM oidc_policies WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        } else {
            None
        };
        let record = row.as_ref().map(policy_from_row).transpose()?;
        commit_if(tx, self.dialect(), n > 0, audit).await?;
        Ok(record)
    }
}
