//! Vault's BYOK flow, the way off Vault and back: `wrapping_key` (an RSA-4096 public key per org, its private half
//! sealed like any key version and used through aws-lc-rs), `keys/:name/import` and `keys/:name/import_version`
//! (the target key wrapped with AES-KWP under an ephemeral AES-256 key, itself RSA-OAEP-SHA-256-encrypted to the
//! wrapping key). An imported AES key decrypts what Vault encrypted with it, and Vault decrypts ours.
//!
//! Rule: only admins import; the unwrapped key exists only in zeroizing buffers until it is sealed; an import is
//! audited in the transaction that stores it.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use axum::response::{IntoResponse, Response};
use zeroize::Zeroizing;

use super::caller::Call;
use super::keys::{self, LoadedKey};
use super::{Body, reply};
use crate::core::audit::AuditAction;
use crate::core::authz::Role;
use crate::core::transit::crypto::{KEY_LEN, Material};
use crate::core::transit::policy::{KeyPolicy, KeyType};
use crate::core::transit::{Refusal, decode_b64};
use crate::server::error::{Success, VaultError};
use crate::store::Inserted;
use crate::wire::transit::WrappingKey;

/// Where an org's wrapping key is stored: a key row under a mount path no caller can name.
const WRAPPING_MOUNT: &str = "sys/wrapping_key";
const WRAPPING_NAME: &str = "wrapping_key";

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

/// The org's wrapping key, made on first use (one replica's wins).
async fn wrapping_key(call: &Call) -> Result<Arc<LoadedKey>, VaultError> {
    if let Some(k) = keys::load(&call.app, &call.org.id, WRAPPING_MOUNT, WRAPPING_NAME).await? {
        return Ok(k);
    }
    let failed = || VaultError::refused(Refusal::internal("could not make the wrapping key"));
    let made = tokio::task::spawn_blocking(|| {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa4096).ok()?;
        let pkcs8 = Zeroizing::new(
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
                .ok()?
                .as_ref()
                .to_vec(),
        );
        let public = key.public_key().as_der().ok()?.as_ref().to_vec();
        Some((pkcs8, public))
    })
    .await
    .map_err(|_| failed())?
    .ok_or_else(failed)?;
    let (pkcs8, public) = made;
    let material = Material {
        hmac_key: keys::random(KEY_LEN)?,
        key: pkcs8,
    };
    let policy = KeyPolicy::new(KeyType::Rsa4096);
    let audit = call
        .event(AuditAction::TransitKeyCreate, "wrapping_key")
        .detail("type=rsa-4096 purpose=import wrapping");
    keys::create(
        &call.app,
        &call.org.id,
        WRAPPING_MOUNT,
        WRAPPING_NAME,
        &policy,
        vec![(material, Some(pem("PUBLIC KEY", &public)))],
        &audit,
    )
    .await?;
    keys::load_existing(&call.app, &call.org.id, WRAPPING_MOUNT, WRAPPING_NAME).await
}

/// `GET {mount}/wrapping_key`.
pub async fn get_wrapping_key(call: &Call, mount: &str) -> Result<Response, VaultError> {
    call.require(
        Role::Reader,
        "reading the wrapping key",
        &format!("{mount}/wrapping_key"),
    )
    .await?;
    let key = wrapping_key(call).await?;
    let public = key
        .versions
        .get(&1)
        .and_then(|v| v.public_key.clone())
        .ok_or_else(|| VaultError::refused(Refusal::internal("wrapping key has no public key")))?;
    Ok(reply(WrappingKey { public_key: public }, Vec::new()))
}

/// The key material a wrapped import carries, checked against `t`, with its public key as shown.
async fn unwrap_import(call: &Call, body: &Body, t: KeyType) -> Result<(Material, Option<String>), VaultError> {
    let f = body.fields();
    let hash = f.string("hash_function")?.unwrap_or_else(|| "SHA256".into());
    if hash != "SHA256" {
        return Err(VaultError::invalid(format!(
            "unsupported hash function {hash}: this server (Sesame) accepts SHA256"
        )));
    }
    let text = f
        .str_ref("ciphertext")?
        .ok_or_else(|| VaultError::invalid("missing ciphertext"))?;
    let blob = decode_b64(&text).map_err(|e| VaultError::invalid(format!("error decoding ciphertext: {e}")))?;
    let wrapping = wrapping_key(call).await?;
    let pkcs8 = &wrapping
        .versions
        .get(&1)
        .ok_or_else(|| VaultError::refused(Refusal::internal("no wrapping key")))?
        .material
        .key;
    let bad = || VaultError::invalid("error unwrapping the imported key: the ciphertext does not fit the wrapping key");
    let private = PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| bad())?;
    let oaep = OaepPrivateDecryptingKey::new(private).map_err(|_| bad())?;
    let rsa_len = oaep.key_size_bytes();
    if blob.len() <= rsa_len {
        return Err(bad());
    }
    let mut ephemeral = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
    let n = oaep
        .decrypt(&OAEP_SHA256_MGF1SHA256, &blob[..rsa_len], &mut ephemeral, None)
        .map_err(|_| bad())?
        .len();
    ephemeral.truncate(n);
    let key = crate::core::transit::crypto::unwrap_kwp(&ephemeral, &blob[rsa_len..])?;
    let public = match t {
        KeyType::Aes256Gcm96 | KeyType::Chacha20Poly1305 => {
            if key.len() != KEY_LEN {
                return Err(VaultError::invalid("invalid key size: the key must be 32 bytes"));
            }
            None
        }
        KeyType::Ed25519 => {
            use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&key)
                .map_err(|_| VaultError::invalid("error parsing the imported key: not an Ed25519 PKCS#8 key"))?;
            Some(crate::core::transit::encode_b64(pair.public_key().as_ref()))
        }
        KeyType::EcdsaP256 => {
            use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key)
                .map_err(|_| VaultError::invalid("error parsing the imported key: not a P-256 PKCS#8 key"))?;
            let der = pair
                .public_key()
                .as_der()
                .map_err(|_| VaultError::refused(Refusal::internal("public key unavailable")))?;
            Some(pem("PUBLIC KEY", der.as_ref()))
        }
        KeyType::Rsa4096 => return Err(VaultError::invalid("unknown key type rsa-4096")),
    };
    Ok((
        Material {
            hmac_key: keys::random(KEY_LEN)?,
            key,
        },
        public,
    ))
}

/// `POST {mount}/keys/:name/import`.
pub async fn import(call: &Call, mount: &str, name: &str, body: &Body) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Admin, "importing a key", &target).await?;
    let mut policy = super::manage::requested_policy(body, "aes256-gcm96")?;
    policy.imported = true;
    if keys::load(&call.app, &call.org.id, mount, name).await?.is_some() {
        return Err(VaultError::invalid(
            "the import path cannot be used with an existing key; use import-version to rotate an existing imported key",
        ));
    }
    let material = unwrap_import(call, body, policy.key_type).await?;
    let audit = call
        .event(AuditAction::TransitKeyImport, &target)
        .detail(format!("type={} version=1", policy.key_type.as_str()));
    let inserted = keys::create(&call.app, &call.org.id, mount, name, &policy, vec![material], &audit).await?;
    if inserted == Inserted::AlreadyExists {
        return Err(VaultError::invalid(
            "the import path cannot be used with an existing key; use import-version to rotate an existing imported key",
        ));
    }
    Ok(Success::NoContent.into_response())
}

/// `POST {mount}/keys/:name/import_version`: a new latest version from imported material.
pub async fn import_version(call: &Call, mount: &str, name: &str, body: &Body) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Admin, "importing a key version", &target).await?;
    let key = keys::load(&call.app, &call.org.id, mount, name).await?.ok_or_else(|| {
        VaultError::invalid(format!(
            "no key found with name {name}; to import a new key, use the import/ endpoint"
        ))
    })?;
    if !key.policy.imported {
        return Err(VaultError::invalid(
            "cannot import a key version into a key that was not imported",
        ));
    }
    let material = unwrap_import(call, body, key.policy.key_type).await?;
    let audit = call.event(AuditAction::TransitKeyImport, &target).detail(format!(
        "type={} version={}",
        key.policy.key_type.as_str(),
        key.latest + 1
    ));
    if !keys::rotate(
        &call.app,
        &call.org.id,
        mount,
        &key,
        &key.policy,
        Some(material),
        &audit,
    )
    .await?
    {
        return Err(VaultError::refused(Refusal::internal(
            "the key changed concurrently; retry",
        )));
    }
    Ok(Success::NoContent.into_response())
}
