//! Key management: `LIST keys`, `keys/:name` (create, read, delete), `keys/:name/rotate`, `keys/:name/config`,
//! `export/:type/:name[/:version]`. Reading and listing need the reader role; everything else the admin role.
//!
//! Rule: each change is one store write that appends its audit record in the same transaction; refused input
//! changes nothing.

use axum::response::{IntoResponse, Response};

use super::caller::Call;
use super::keys;
use super::{Body, reply, reply_secret};
use crate::core::audit::{AuditAction, Outcome};
use crate::core::authz::Role;
use crate::core::transit::Refusal;
use crate::core::transit::policy::{ConfigChange, KeyPolicy, KeyType};
use crate::server::error::{Success, VaultError};
use crate::store::Inserted;
use crate::wire::transit::{Export, KeyList};

/// `LIST {mount}/keys`: 404 with no message when there is none, as Vault answers.
pub async fn list(call: &Call, mount: &str) -> Result<Response, VaultError> {
    call.require(Role::Reader, "listing keys", mount).await?;
    let names = call.app.store.transit_key_names(&call.org.id, mount).await?;
    call.tally(AuditAction::TransitKeyRead, &format!("{mount}/"), 1, Outcome::Ok);
    if names.is_empty() {
        return Err(VaultError::not_found());
    }
    Ok(reply(KeyList { keys: names }, Vec::new()))
}

/// `GET {mount}/keys/:name`.
pub async fn read(call: &Call, mount: &str, name: &str) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Reader, "reading a key", &target).await?;
    let key = keys::load(&call.app, &call.org.id, mount, name).await?;
    call.tally(AuditAction::TransitKeyRead, &target, 1, Outcome::Ok);
    let key = key.ok_or_else(VaultError::not_found)?;
    Ok(reply(keys::info(&key), Vec::new()))
}

/// Vault validates a write's fields before it runs (keys and their config): its message says so.
fn field_validation(r: Refusal) -> VaultError {
    VaultError::invalid(format!("Field validation failed: {}", r.message))
}

/// The policy a create request asks for, or Vault's refusal.
pub fn requested_policy(body: &Body, default_type: &str) -> Result<KeyPolicy, VaultError> {
    let f = body.fields();
    for name in [
        "derived",
        "exportable",
        "convergent_encryption",
        "allow_plaintext_backup",
    ] {
        f.bool(name).map_err(field_validation)?;
    }
    let t = KeyType::parse(f.string("type")?.as_deref().unwrap_or(default_type))?;
    let mut policy = KeyPolicy::new(t);
    policy.derived = f.bool("derived")?.unwrap_or(false);
    policy.exportable = f.bool("exportable")?.unwrap_or(false);
    if f.bool("convergent_encryption")?.unwrap_or(false) {
        return Err(VaultError::invalid(
            "convergent encryption is not supported by this server (Sesame)",
        ));
    }
    if f.bool("allow_plaintext_backup")?.unwrap_or(false) {
        return Err(VaultError::invalid(
            "plaintext backups are not supported by this server (Sesame)",
        ));
    }
    if policy.derived && !t.supports_derivation() {
        return Err(VaultError::invalid(format!(
            "key derivation and convergent encryption not supported for keys of type {}",
            t.as_str()
        )));
    }
    if let Some(s) = f.duration_s("auto_rotate_period")? {
        let (p, _) = ConfigChange {
            auto_rotate_period_s: Some(s),
            ..Default::default()
        }
        .apply(&policy, 1)?;
        policy = p;
    }
    Ok(policy)
}

/// `POST {mount}/keys/:name`: makes the key, or answers the existing one unchanged (as Vault does).
pub async fn create(call: &Call, mount: &str, name: &str, body: &Body) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Admin, "creating a key", &target).await?;
    let policy = requested_policy(body, "aes256-gcm96")?;
    if let Some(key) = keys::load(&call.app, &call.org.id, mount, name).await? {
        return Ok(reply(keys::info(&key), Vec::new()));
    }
    make(call, mount, name, &policy).await?;
    let key = keys::load_existing(&call.app, &call.org.id, mount, name).await?;
    Ok(reply(keys::info(&key), Vec::new()))
}

/// Makes a key (audited); a key made meanwhile by someone else is fine.
pub async fn make(call: &Call, mount: &str, name: &str, policy: &KeyPolicy) -> Result<(), VaultError> {
    let target = format!("{mount}/{name}");
    let audit = call.event(AuditAction::TransitKeyCreate, &target).detail(format!(
        "type={} derived={} exportable={}",
        policy.key_type.as_str(),
        policy.derived,
        policy.exportable
    ));
    let inserted = keys::create(&call.app, &call.org.id, mount, name, policy, Vec::new(), &audit).await?;
    if inserted == Inserted::AlreadyExists {
        tracing::debug!(key = %target, "transit key made concurrently by another request");
    }
    Ok(())
}

/// `DELETE {mount}/keys/:name`: only when `deletion_allowed`.
pub async fn delete(call: &Call, mount: &str, name: &str) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Admin, "deleting a key", &target).await?;
    let Some(key) = keys::load(&call.app, &call.org.id, mount, name).await? else {
        return Err(VaultError::invalid(format!(
            "error deleting policy {name}: could not delete key; not found"
        )));
    };
    if !key.policy.deletion_allowed {
        return Err(VaultError::invalid(format!(
            "error deleting policy {name}: deletion is not allowed for this key"
        )));
    }
    let audit = call.event(AuditAction::TransitKeyDelete, &target);
    let deleted = call.app.store.delete_transit_key(&key.id, &audit).await?;
    keys::forget(&call.app, &call.org.id, mount, name).await;
    if !deleted {
        return Err(VaultError::invalid(format!(
            "error deleting policy {name}: could not delete key; not found"
        )));
    }
    Ok(Success::NoContent.into_response())
}

/// `POST {mount}/keys/:name/rotate`.
pub async fn rotate(call: &Call, mount: &str, name: &str) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Admin, "rotating a key", &target).await?;
    let key = keys::load(&call.app, &call.org.id, mount, name)
        .await?
        .ok_or_else(|| VaultError::invalid("key not found"))?;
    if key.policy.imported {
        return Err(VaultError::invalid(
            "imported keys do not support rotation; use import_version to add a version",
        ));
    }
    let audit = call
        .event(AuditAction::TransitKeyRotate, &target)
        .detail(format!("version={} reason=requested", key.latest + 1));
    if !keys::rotate(&call.app, &call.org.id, mount, &key, &key.policy, None, &audit).await? {
        return Err(VaultError::refused(Refusal::internal(
            "the key was rotated concurrently; retry",
        )));
    }
    let key = keys::load_existing(&call.app, &call.org.id, mount, name).await?;
    Ok(reply(keys::info(&key), Vec::new()))
}

/// `POST {mount}/keys/:name/config`.
pub async fn config(call: &Call, mount: &str, name: &str, body: &Body) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Admin, "configuring a key", &target).await?;
    let f = body.fields();
    let change = (|| {
        Ok::<_, Refusal>(ConfigChange {
            min_decryption_version: f.int("min_decryption_version")?,
            min_encryption_version: f.int("min_encryption_version")?,
            deletion_allowed: f.bool("deletion_allowed")?,
            exportable: f.bool("exportable")?,
            auto_rotate_period_s: f.duration_s("auto_rotate_period")?,
        })
    })()
    .map_err(field_validation)?;
    let key = keys::load(&call.app, &call.org.id, mount, name)
        .await?
        .ok_or_else(|| VaultError::invalid(format!("no existing key named {name} could be found")))?;
    let (policy, warnings) = change.apply(&key.policy, key.latest)?;
    if policy != key.policy {
        let audit = call.event(AuditAction::TransitKeyConfig, &target).detail(format!(
            "min_decryption_version={} min_encryption_version={} deletion_allowed={} exportable={} \
             auto_rotate_period={}",
            policy.min_decryption_version,
            policy.min_encryption_version,
            policy.deletion_allowed,
            policy.exportable,
            policy.auto_rotate_period_s
        ));
        let now = call.app.clock.now_ms();
        let text = keys::policy_text(&policy)?;
        let updated = call
            .app
            .store
            .update_transit_policy(&key.id, &text, now, &audit)
            .await?;
        keys::forget(&call.app, &call.org.id, mount, name).await;
        if !updated {
            return Err(VaultError::invalid(format!(
                "no existing key named {name} could be found"
            )));
        }
    }
    let key = keys::load_existing(&call.app, &call.org.id, mount, name).await?;
    Ok(reply(keys::info(&key), warnings))
}

/// `GET {mount}/export/:type/:name[/:version]`: `encryption-key` (symmetric keys), `signing-key`, `public-key`,
/// `hmac-key`; only for keys made `exportable` (public keys always).
pub async fn export(
    call: &Call,
    mount: &str,
    kind: &str,
    name: &str,
    version: Option<&str>,
) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    let public = kind == "public-key";
    call.require(
        if public { Role::Reader } else { Role::Admin },
        "exporting a key",
        &target,
    )
    .await?;
    if !matches!(kind, "encryption-key" | "signing-key" | "hmac-key" | "public-key") {
        return Err(VaultError::invalid(format!("invalid export type: {kind}")));
    }
    let key = keys::load(&call.app, &call.org.id, mount, name)
        .await?
        .ok_or_else(VaultError::not_found)?;
    let t = key.policy.key_type;
    if !public && !key.policy.exportable {
        return Err(VaultError::invalid("private key material is not exportable"));
    }
    match kind {
        "encryption-key" if !t.supports_encryption() => {
            return Err(VaultError::invalid("encryption not supported for the key"));
        }
        "public-key" if !t.supports_signing() => {
            return Err(VaultError::invalid(format!(
                "unknown key type {} for export type public-key",
                t.as_str()
            )));
        }
        "signing-key" if !t.supports_signing() => {
            return Err(VaultError::invalid("signing not supported for the key"));
        }
        _ => {}
    }
    let versions: Vec<u32> = match version {
        None => key
            .versions
            .keys()
            .copied()
            .filter(|v| *v >= key.policy.min_decryption_version)
            .collect(),
        Some(v) => {
            let n = if v == "latest" {
                key.latest
            } else {
                v.parse::<u32>()
                    .map_err(|_| VaultError::invalid("could not parse version"))?
            };
            if !key.versions.contains_key(&n) || n < key.policy.min_decryption_version {
                return Err(VaultError::invalid("version does not exist or cannot be found"));
            }
            vec![n]
        }
    };
    let mut out = std::collections::BTreeMap::new();
    for v in versions {
        let lv = &key.versions[&v];
        let text = match kind {
            "hmac-key" => crate::core::transit::encode_b64(&lv.material.hmac_key),
            "encryption-key" => crate::core::transit::encode_b64(&lv.material.key),
            "public-key" => lv.public_key.clone().unwrap_or_default(),
            _ => export_signing_key(t, &lv.material.key, lv.public_raw.as_deref())?,
        };
        out.insert(v.to_string(), crate::wire::SecretText::new(text));
    }
    if !public {
        let event = call
            .event(AuditAction::TransitKeyExport, &target)
            .detail(format!("type={kind} versions={}", out.len()));
        call.app.record(event).await?;
    }
    Ok(reply_secret(Export {
        keys: out,
        name: name.to_owned(),
        key_type: t.as_str().to_owned(),
    }))
}

/// A signing key as Vault exports it: Ed25519 as base64 of seed ‖ public key; ECDSA as a PEM `EC PRIVATE KEY`
/// is not produced here — its PKCS#8 document is given as PEM `PRIVATE KEY`.
fn export_signing_key(t: KeyType, pkcs8: &[u8], public: Option<&[u8]>) -> Result<String, VaultError> {
    match t {
        KeyType::Ed25519 => {
            // PKCS#8 v1/v2 of Ed25519 ends its private key as OCTET STRING(OCTET STRING(seed)); the seed is the
            // 32 bytes after the inner 0x04 0x20 header.
            let at = pkcs8
                .windows(4)
                .position(|w| w == [0x04, 0x22, 0x04, 0x20])
                .ok_or_else(|| VaultError::refused(Refusal::internal("unreadable signing key")))?;
            let seed = pkcs8
                .get(at + 4..at + 36)
                .ok_or_else(|| VaultError::refused(Refusal::internal("unreadable signing key")))?;
            let mut both = zeroize::Zeroizing::new(seed.to_vec());
            both.extend_from_slice(public.unwrap_or_default());
            Ok(crate::core::transit::encode_b64(&both))
        }
        _ => {
            let b64 = zeroize::Zeroizing::new(crate::core::transit::encode_b64(pkcs8));
            let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
            for chunk in b64.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                out.push('\n');
            }
            out.push_str("-----END PRIVATE KEY-----\n");
            Ok(out)
        }
    }
}
