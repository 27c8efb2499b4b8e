//! Transit keys at the edge: loading a key with its versions unsealed (cached briefly per replica), making keys and
//! versions (material from the system's generator, sealed by the keyring under `transit:<org>` with associated data
//! naming org, key id and version), and the key read's shape.
//!
//! Rule: key material exists in the clear only inside [`Material`] (zeroizing) in this process; the store sees it
//! sealed. A cached key is at most [`KEY_CACHE_TTL`] stale on other replicas (a rotation or a config change made
//! elsewhere applies here within that time); this replica forgets its entry on every change it makes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use zeroize::Zeroizing;

use super::super::AppState;
use super::super::error::VaultError;
use crate::core::audit::AuditEvent;
use crate::core::keys::{Scope, transit_key_aad};
use crate::core::transit::crypto::{KEY_LEN, Material};
use crate::core::transit::policy::{KeyPolicy, KeyType};
use crate::core::transit::{KEY_NOT_FOUND, Refusal};
use crate::store::Inserted;
use crate::store::transit::{TransitKeyRecord, TransitVersionRecord};
use crate::wire::transit::{AsymmetricVersion, KeyInfo, KeyVersion};

/// How long a loaded key is reused without reading the store.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// One version, unsealed.
pub struct LoadedVersion {
    /// Its secret material.
    pub material: Material,
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
    /// A signing key's public key as shown (base64 for Ed25519, PEM for ECDSA).
    pub public_key: Option<String>,
    /// A signing key's public key as verification reads it.
    pub public_raw: Option<Vec<u8>>,
}

/// A key with every version unsealed.
pub struct LoadedKey {
    /// The key's immutable id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its policy.
    pub policy: KeyPolicy,
    /// Its newest version.
    pub latest: u32,
    /// Its versions.
    pub versions: BTreeMap<u32, LoadedVersion>,
}

impl LoadedKey {
    /// Version `v`, or Vault's refusal.
    pub fn version(&self, v: u32) -> Result<&LoadedVersion, Refusal> {
        self.versions
            .get(&v)
            .ok_or_else(|| Refusal::invalid("invalid ciphertext: version is too new"))
    }
}

/// Vault's key-name rule (`\w(([\w-.@]+)?\w)?`), bounded to 128 characters.
pub fn valid_name(name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    name.len() <= 128 && word(first) && word(last) && name.chars().all(|c| word(c) || matches!(c, '-' | '.' | '@'))
}

fn cache_key(org_id: &str, mount: &str, name: &str) -> (String, String, String) {
    (org_id.to_owned(), mount.to_owned(), name.to_owned())
}

/// Forgets this replica's cached copy of a key (after a change).
pub async fn forget(app: &AppState, org_id: &str, mount: &str, name: &str) {
    app.transit.keys.invalidate(&cache_key(org_id, mount, name)).await;
}

/// The key `name` of `mount` in `org_id`, unsealed; `None` when it does not exist.
pub async fn load(app: &AppState, org_id: &str, mount: &str, name: &str) -> Result<Option<Arc<LoadedKey>>, VaultError> {
    let ck = cache_key(org_id, mount, name);
    if let Some(k) = app.transit.keys.get(&ck).await {
        return Ok(Some(k));
    }
    let Some(stored) = app.store.transit_key(org_id, mount, name).await? else {
        return Ok(None);
    };
    let policy: KeyPolicy = serde_json::from_str(&stored.key.policy)
        .map_err(|_| VaultError::refused(Refusal::internal("stored key policy is unreadable")))?;
    let scope = Scope::Transit {
        org_id: org_id.to_owned(),
    };
    let mut versions = BTreeMap::new();
    for v in &stored.versions {
        let n = u32::try_from(v.version).map_err(|_| VaultError::refused(Refusal::internal("bad version")))?;
        let aad = transit_key_aad(org_id, &stored.key.id, n);
        let plain = app.keyring.open(&scope, &aad, &v.sealed).await?;
        let material = Material::from_bytes(&plain)
            .ok_or_else(|| VaultError::refused(Refusal::internal("stored key material is unreadable")))?;
        let public_raw = public_raw(policy.key_type, &material.key);
        versions.insert(
            n,
            LoadedVersion {
                material,
                created_ms: v.created_ms,
                public_key: v.public_key.clone(),
                public_raw,
            },
        );
    }
    let key = Arc::new(LoadedKey {
        id: stored.key.id.clone(),
        name: stored.key.name.clone(),
        policy,
        latest: u32::try_from(stored.key.latest_version).unwrap_or(0),
        versions,
    });
    app.transit.keys.insert(ck, key.clone()).await;
    Ok(Some(key))
}

/// Like [`load`], with Vault's refusal for a missing key.
pub async fn load_existing(
    app: &AppState,
    org_id: &str,
    mount: &str,
    name: &str,
) -> Result<Arc<LoadedKey>, VaultError> {
    load(app, org_id, mount, name)
        .await?
        .ok_or_else(|| VaultError::invalid(KEY_NOT_FOUND))
}

fn public_raw(t: KeyType, pkcs8: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    match t {
        KeyType::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .ok()
            .map(|p| p.public_key().as_ref().to_vec()),
        KeyType::EcdsaP256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
            .ok()
            .map(|p| p.public_key().as_ref().to_vec()),
        _ => None,
    }
}

fn random_bytes(n: usize) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let mut out = Zeroizing::new(vec![0u8; n]);
    aws_lc_rs::rand::fill(&mut out).map_err(|_| VaultError::refused(Refusal::internal("random generator failed")))?;
    Ok(out)
}

/// Fresh random bytes from the system's generator.
pub fn random(n: usize) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    random_bytes(n)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = crate::core::transit::encode_b64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// New material for a version of a `t` key, with its public key as shown.
pub fn new_material(t: KeyType) -> Result<(Material, Option<String>), VaultError> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    let hmac_key = random_bytes(KEY_LEN)?;
    let failed = || VaultError::refused(Refusal::internal("key generation failed"));
    let (key, public) = match t {
        KeyType::Aes256Gcm96 | KeyType::Chacha20Poly1305 => (random_bytes(KEY_LEN)?, None),
        KeyType::Ed25519 => {
            let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).map_err(|_| failed())?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| failed())?;
            let public = crate::core::transit::encode_b64(pair.public_key().as_ref());
            (Zeroizing::new(doc.as_ref().to_vec()), Some(public))
        }
        KeyType::EcdsaP256 => {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(|_| failed())?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).map_err(|_| failed())?;
            let der = pair.public_key().as_der().map_err(|_| failed())?;
            (
                Zeroizing::new(doc.as_ref().to_vec()),
                Some(pem("PUBLIC KEY", der.as_ref())),
            )
        }
        KeyType::Rsa4096 => return Err(VaultError::invalid("unknown key type rsa-4096")),
    };
    Ok((Material { hmac_key, key }, public))
}

/// A version's row: `material` sealed for `key_id` at `version`.
pub async fn sealed_version(
    app: &AppState,
    org_id: &str,
    key_id: &str,
    version: u32,
    material: &Material,
    public_key: Option<String>,
    now_ms: i64,
) -> Result<TransitVersionRecord, VaultError> {
    let scope = Scope::Transit {
        org_id: org_id.to_owned(),
    };
    let sealed = app
        .keyring
        .seal(&scope, &transit_key_aad(org_id, key_id, version), &material.to_bytes())
        .await?;
    Ok(TransitVersionRecord {
        key_id: key_id.to_owned(),
        version: i64::from(version),
        sealed,
        public_key,
        created_ms: now_ms,
        encryptions: 0,
    })
}

/// Makes a key `name` of `mount` with `policy` and its first version (or `materials`, imported, as versions 1..).
/// [`Inserted::AlreadyExists`] when it exists (nothing written).
pub async fn create(
    app: &AppState,
    org_id: &str,
    mount: &str,
    name: &str,
    policy: &KeyPolicy,
    materials: Vec<(Material, Option<String>)>,
    audit: &AuditEvent,
) -> Result<Inserted, VaultError> {
    let now = app.clock.now_ms();
    let id = uuid::Uuid::now_v7().to_string();
    let materials = if materials.is_empty() {
        vec![new_material(policy.key_type)?]
    } else {
        materials
    };
    let mut versions = Vec::with_capacity(materials.len());
    for (i, (m, public)) in materials.iter().enumerate() {
        let v = u32::try_from(i + 1).unwrap_or(u32::MAX);
        versions.push(sealed_version(app, org_id, &id, v, m, public.clone(), now).await?);
    }
    let record = TransitKeyRecord {
        id,
        org_id: org_id.to_owned(),
        mount: mount.to_owned(),
        name: name.to_owned(),
        policy: policy_text(policy)?,
        latest_version: i64::try_from(versions.len()).unwrap_or(1),
        created_ms: now,
        modified_ms: now,
    };
    let inserted = app.store.insert_transit_key(&record, &versions, audit).await?;
    forget(app, org_id, mount, name).await;
    Ok(inserted)
}

/// The policy's stored text.
pub fn policy_text(p: &KeyPolicy) -> Result<String, VaultError> {
    serde_json::to_string(p).map_err(|e| VaultError::from(super::super::error::ApiError::internal(&e)))
}

/// Adds a version to `key` (new material, or `material` imported) with `policy`; `false` when another replica or
/// request rotated it first (its latest version moved).
pub async fn rotate(
    app: &AppState,
    org_id: &str,
    mount: &str,
    key: &LoadedKey,
    policy: &KeyPolicy,
    material: Option<(Material, Option<String>)>,
    audit: &AuditEvent,
) -> Result<bool, VaultError> {
    let (material, public) = match material {
        Some(m) => m,
        None => new_material(key.policy.key_type)?,
    };
    let now = app.clock.now_ms();
    let next = key.latest + 1;
    let row = sealed_version(app, org_id, &key.id, next, &material, public, now).await?;
    let done = app
        .store
        .add_transit_version(i64::from(key.latest), &policy_text(policy)?, &row, audit)
        .await?;
    forget(app, org_id, mount, &key.name).await;
    Ok(done)
}

/// What a key read shows (versions below `min_decryption_version` are not listed, as Vault does).
pub fn info(key: &LoadedKey) -> KeyInfo {
    let p = &key.policy;
    let t = p.key_type;
    let keys = key
        .versions
        .iter()
        .filter(|(v, _)| **v >= p.min_decryption_version)
        .map(|(v, lv)| {
            let shown = if t.is_asymmetric() {
                KeyVersion::Asymmetric(AsymmetricVersion {
                    certificate_chain: String::new(),
                    creation_time: crate::core::timefmt::rfc3339(lv.created_ms),
                    name: match t {
                        KeyType::EcdsaP256 => "P-256".into(),
                        _ => t.as_str().into(),
                    },
                    public_key: lv.public_key.clone().unwrap_or_default(),
                })
            } else {
                KeyVersion::Created(lv.created_ms.div_euclid(1000))
            };
            (v.to_string(), shown)
        })
        .collect();
    KeyInfo {
        allow_plaintext_backup: false,
        auto_rotate_period: p.auto_rotate_period_s,
        convergent_encryption: p.derived.then_some(false),
        deletion_allowed: p.deletion_allowed,
        derived: p.derived,
        exportable: p.exportable,
        imported_key: p.imported,
        kdf: p.derived.then(|| "hkdf_sha256".to_owned()),
        keys,
        latest_version: key.latest,
        min_available_version: 0,
        min_decryption_version: p.min_decryption_version,
        min_encryption_version: p.min_encryption_version,
        name: key.name.clone(),
        soft_deleted: false,
        supports_decryption: t.supports_encryption(),
        supports_derivation: t.supports_derivation(),
        supports_encryption: t.supports_encryption(),
        supports_signing: t.supports_signing(),
        key_type: t.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_vaults_rule() {
        for ok in ["k", "my-key", "a.b@c_d", "K9"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-k", "k-", "a/b", "a b", "ü", &"k".repeat(129)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
