//! The Vault-compatible API's bodies (`/v1/…`): Vault's response envelope, its error body, and the `data` of each
//! Transit answer. Field names and shapes are Vault's (OpenBao 2.x), so Vault's clients read them unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SecretText;

/// Vault's envelope around every answer's `data`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub request_id: String,
    pub lease_id: String,
    pub renewable: bool,
    pub lease_duration: i64,
    pub data: T,
    pub wrap_info: Option<serde_json::Value>,
    pub warnings: Option<Vec<String>>,
    pub auth: Option<serde_json::Value>,
}

impl<T> Envelope<T> {
    /// `data` in an envelope with this request id and Vault's warnings (none: `null`).
    pub fn new(request_id: String, data: T, warnings: Vec<String>) -> Envelope<T> {
        Envelope {
            request_id,
            lease_id: String::new(),
            renewable: false,
            lease_duration: 0,
            data,
            wrap_info: None,
            warnings: (!warnings.is_empty()).then_some(warnings),
            auth: None,
        }
    }
}

/// Vault's error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Errors {
    pub errors: Vec<String>,
}

/// One version of a signing key as a key read shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AsymmetricVersion {
    pub certificate_chain: String,
    /// RFC 3339.
    pub creation_time: String,
    /// The key type's name (`ed25519`, `P-256`).
    pub name: String,
    pub public_key: String,
}

/// A version in a key read: Unix seconds of its creation (symmetric keys) or its public half.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyVersion {
    Created(i64),
    Asymmetric(AsymmetricVersion),
}

/// `GET transit/keys/:name` (and what create, rotate and config answer).
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyInfo {
    pub allow_plaintext_backup: bool,
    pub auto_rotate_period: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convergent_encryption: Option<bool>,
    pub deletion_allowed: bool,
    pub derived: bool,
    pub exportable: bool,
    pub imported_key: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdf: Option<String>,
    pub keys: BTreeMap<String, KeyVersion>,
    pub latest_version: u32,
    pub min_available_version: u32,
    pub min_decryption_version: u32,
    pub min_encryption_version: u32,
    pub name: String,
    pub soft_deleted: bool,
    pub supports_decryption: bool,
    pub supports_derivation: bool,
    pub supports_encryption: bool,
    pub supports_signing: bool,
    #[serde(rename = "type")]
    pub key_type: String,
}

/// A `LIST`.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<String>,
}

/// One answer of an operation, alone or as an entry of `batch_results`: only the fields the operation sets.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ItemResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<SecretText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publickey: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Echoed from the request's item (batches only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A batch's answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchResults {
    pub batch_results: Vec<ItemResult>,
}

/// `random`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RandomBytes {
    pub random_bytes: SecretText,
}

/// `hash[/:algorithm]`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HashSum {
    pub sum: String,
}

/// `export/:type/:name[/:version]`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Export {
    pub keys: BTreeMap<String, SecretText>,
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: String,
}

/// `wrapping_key`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WrappingKey {
    pub public_key: String,
}

/// `sys/health` (no envelope).
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub initialized: bool,
    pub sealed: bool,
    pub standby: bool,
    pub replication_performance_mode: String,
    pub replication_dr_mode: String,
    pub server_time_utc: i64,
    pub version: String,
    pub cluster_name: String,
    pub cluster_id: String,
}

/// A mount as `sys/mounts` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    pub accessor: String,
    pub config: MountConfig,
    pub description: String,
    pub external_entropy_access: bool,
    pub local: bool,
    pub options: BTreeMap<String, String>,
    pub plugin_version: String,
    pub running_plugin_version: String,
    pub running_sha256: String,
    pub seal_wrap: bool,
    #[serde(rename = "type")]
    pub mount_type: String,
    pub uuid: String,
}

/// A mount's lease settings (always zero here).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountConfig {
    pub default_lease_ttl: i64,
    pub force_no_cache: bool,
    pub max_lease_ttl: i64,
}

/// `auth/token/lookup-self`: what a Sesame token looks like to Vault's clients.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenLookup {
    /// The token's id (never the token).
    pub accessor: String,
    pub creation_ttl: i64,
    pub display_name: String,
    pub entity_id: String,
    /// RFC 3339, or `null` for a token that does not expire.
    pub expire_time: Option<String>,
    pub explicit_max_ttl: i64,
    /// The token's id (Vault shows the token itself; Sesame never does).
    pub id: String,
    pub meta: Option<BTreeMap<String, String>>,
    pub num_uses: i64,
    pub orphan: bool,
    pub path: String,
    /// `sesame-<role>` in the org the call resolved to.
    pub policies: Vec<String>,
    pub renewable: bool,
    pub ttl: i64,
    #[serde(rename = "type")]
    pub token_type: String,
    /// The org (Sesame's addition).
    pub namespace_path: String,
}
