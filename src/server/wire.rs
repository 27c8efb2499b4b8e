//! Wire types: the JSON bodies the API reads and writes. These are the only types that derive `Serialize` for the
//! API; domain types convert to them by hand in the handlers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// ESC's error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// The HTTP status as an integer.
    pub code: u16,
    /// What went wrong, safe to show.
    pub message: String,
}

/// `POST …/encrypt` request: base64 (standard, padded) plaintext.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptRequest {
    /// The plaintext, base64.
    pub plaintext: String,
}

/// `POST …/encrypt` response.
#[derive(Serialize)]
pub struct EncryptResponse {
    /// The ciphertext, base64.
    pub ciphertext: String,
}

/// `POST …/decrypt` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptRequest {
    /// The ciphertext, base64.
    pub ciphertext: String,
}

/// `POST …/decrypt` response.
#[derive(Serialize)]
pub struct DecryptResponse {
    /// The plaintext, base64.
    pub plaintext: String,
}

/// `POST …/batch-encrypt` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEncryptRequest {
    /// Plaintexts, base64.
    pub plaintexts: Vec<String>,
}

/// `POST …/batch-encrypt` response: ciphertexts in request order.
#[derive(Serialize)]
pub struct BatchEncryptResponse {
    /// Ciphertexts, base64, in the order of the request.
    pub ciphertexts: Vec<String>,
}

/// `POST …/batch-decrypt` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchDecryptRequest {
    /// Ciphertexts, base64.
    pub ciphertexts: Vec<String>,
}

/// `POST …/batch-decrypt` response: each ciphertext (as sent) mapped to its plaintext.
#[derive(Serialize)]
pub struct BatchDecryptResponse {
    /// Base64 ciphertext → base64 plaintext.
    pub plaintexts: BTreeMap<String, String>,
}

/// `POST /api/sesame/v1/keks` request.
#[derive(Deserialize)]
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
#[derive(Serialize)]
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
#[derive(Serialize)]
pub struct KekList {
    /// The KEKs.
    pub keks: Vec<KekInfo>,
}

/// `POST /api/sesame/v1/kek-migrations` request.
#[derive(Deserialize)]
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
#[derive(Serialize)]
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
#[derive(Serialize)]
pub struct MigrationList {
    /// Jobs, newest first.
    pub migrations: Vec<MigrationInfo>,
}

/// `POST …/verify` response.
#[derive(Serialize)]
pub struct VerifyResponse {
    /// DEKs unwrapped under the target.
    pub checked: u64,
    /// DEKs that did not (or are not yet under the target).
    pub failed: u64,
    /// Whether everything verified.
    pub verified: bool,
}
