//! Wire types of the KEK API (`/api/sesame/v1/keks`) and of KEK migrations (`/api/sesame/v1/kek-migrations`).
//! Rule: a KEK is shown by id, URI and state, never by anything it protects.

use serde::{Deserialize, Serialize};

/// `POST /api/sesame/v1/keks` request.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddKekRequest {
    /// The KEK URI.
    pub uri: String,
    /// The org it serves; absent for an instance (system) KEK.
    #[serde(default)]
    pub org: Option<String>,
    /// Whether new DEKs of its owner are wrapped by it.
    #[serde(default)]
    pub default: bool,
}

/// A registered KEK.
#[derive(Serialize, Deserialize)]
pub struct KekInfo {
    /// Its id.
    pub id: String,
    /// The org it serves, or null for the instance.
    pub org: Option<String>,
    /// Its URI.
    pub uri: String,
    /// `active` or `disabled`.
    pub state: String,
    /// Whether it wraps its owner's new DEKs.
    pub default: bool,
    /// Registration time, Unix milliseconds.
    #[serde(rename = "createdMs")]
    pub created_ms: i64,
}

/// `GET /api/sesame/v1/keks` response.
#[derive(Serialize, Deserialize)]
pub struct KekList {
    /// The KEKs.
    pub keks: Vec<KekInfo>,
}

/// `POST /api/sesame/v1/kek-migrations` request.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartMigrationRequest {
    /// Source KEK: id or URI.
    pub from: String,
    /// Target KEK: id or URI.
    pub to: String,
    /// Limit to this org's DEKs.
    #[serde(default)]
    pub org: Option<String>,
}

/// A migration job.
#[derive(Serialize, Deserialize)]
pub struct MigrationInfo {
    /// Job id.
    pub id: String,
    /// Source KEK id.
    pub from: String,
    /// Target KEK id.
    pub to: String,
    /// The org it is limited to.
    #[serde(rename = "orgId")]
    pub org_id: Option<String>,
    /// running, paused, done, failed, retired.
    pub state: String,
    /// DEKs to migrate when it started.
    pub total: i64,
    /// DEKs migrated.
    pub migrated: i64,
    /// Whether a verification succeeded.
    pub verified: bool,
    /// The last error.
    pub error: String,
}

/// `GET /api/sesame/v1/kek-migrations` response.
#[derive(Serialize, Deserialize)]
pub struct MigrationList {
    /// Jobs, newest first.
    pub migrations: Vec<MigrationInfo>,
}

/// `POST …/verify` response.
#[derive(Serialize, Deserialize)]
pub struct VerifyResponse {
    /// DEKs unwrapped under the target.
    pub checked: u64,
    /// DEKs that did not (or are not yet under the target).
    pub failed: u64,
    /// Whether everything verified.
    pub verified: bool,
}
