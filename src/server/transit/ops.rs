//! The cryptographic paths: `encrypt` (with upsert), `decrypt`, `rewrap`, `datakey/:kind`, `hmac`, `sign`, `verify`
//! and `random`, each for one item in the body or a `batch_input` answered item by item.
//!
//! Roles: opener decrypts and verifies; editor also encrypts, rewraps, makes data keys, HMACs and signs; an
//! encryption to a missing key makes it only for an admin (Vault's `create` capability), else `permission denied`.
//! Every call on a key is tallied in the audit log with its item count and outcome, never its data: answered calls
//! here, refused ones (bad input, a missing key) by the router ([`super::handle`]); refusals of access are audited as
//! `access.denied` where they happen.

use axum::response::Response;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::caller::Call;
use super::keys::{self, LoadedKey};
use super::{Body, reply_secret, reply_secret_status};
use crate::core::audit::{AuditAction, Outcome};
use crate::core::authz::Role;
use crate::core::transit::batch::{self, Fields};
use crate::core::transit::crypto::{self, NONCE_LEN};
use crate::core::transit::{Refusal, RefusalKind, ciphertext, decode_b64, encode_b64};
use crate::server::error::{VaultError, batch_status};
use crate::wire::SecretText;
use crate::wire::transit::{BatchResults, HashSum, ItemResult, RandomBytes};

/// The items' answers.
struct Outcomes {
    results: Vec<ItemResult>,
    first_error: Option<Refusal>,
    successes: bool,
    user_error: bool,
    internal_error: bool,
}

/// Answers each item with `f`; a failed item carries its error (and, for decryptions, an empty plaintext).
fn run(
    items: &[&Map<String, Value>],
    batch: bool,
    empty_plaintext_on_error: bool,
    mut f: impl FnMut(Fields<'_>) -> Result<ItemResult, Refusal>,
) -> Outcomes {
    let mut out = Outcomes {
        results: Vec::with_capacity(items.len()),
        first_error: None,
        successes: false,
        user_error: false,
        internal_error: false,
    };
    for item in items {
        let fields = Fields(item);
        let reference = batch.then(|| fields.string("reference").ok().flatten().unwrap_or_default());
        match f(fields) {
            Ok(mut r) => {
                r.reference = reference;
                out.successes = true;
                out.results.push(r);
            }
            Err(e) => {
                if e.kind == RefusalKind::Internal {
                    out.internal_error = true;
                } else {
                    out.user_error = true;
                }
                out.results.push(ItemResult {
                    plaintext: empty_plaintext_on_error.then(SecretText::default),
                    error: Some(e.message.clone()),
                    reference,
                    ..Default::default()
                });
                out.first_error.get_or_insert(e);
            }
        }
    }
    out
}

/// Tallies the call and answers: one item as itself (its error as the request's), a batch as `batch_results` with
/// Vault's status.
fn finish(
    call: &Call,
    action: AuditAction,
    target: &str,
    out: Outcomes,
    batch: bool,
    partial_code: Option<i64>,
) -> Result<Response, VaultError> {
    let outcome = if out.internal_error {
        Outcome::Error
    } else if out.user_error {
        Outcome::Failed
    } else {
        Outcome::Ok
    };
    if !batch {
        // A refused single item is tallied with the other refusals, by the router.
        if let Some(e) = out.first_error {
            return Err(VaultError::refused(e));
        }
        call.tally(action, target, 1, outcome);
        let Some(result) = out.results.into_iter().next() else {
            return Err(VaultError::refused(Refusal::internal("no result")));
        };
        return Ok(reply_secret(result));
    }
    call.tally(action, target, out.results.len(), outcome);
    let status = batch::status(out.successes, out.user_error, out.internal_error, partial_code);
    Ok(reply_secret_status(
        batch_status(status),
        BatchResults {
            batch_results: out.results,
        },
    ))
}

fn decode_field(f: &Fields<'_>, name: &str) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    match f.string(name)? {
        Some(text) => decode_b64(&text),
        None => Ok(Zeroizing::new(Vec::new())),
    }
}

fn nonce() -> Result<[u8; NONCE_LEN], Refusal> {
    let mut n = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut n).map_err(|_| Refusal::internal("random generator failed"))?;
    Ok(n)
}

/// Encrypts `plaintext` under `key` at the requested version: the ciphertext's text and its version.
fn encrypt_value(
    key: &LoadedKey,
    plaintext: &[u8],
    context: &[u8],
    aad: &[u8],
    requested: i64,
) -> Result<(String, u32), Refusal> {
    let t = key.policy.key_type;
    if !t.supports_encryption() {
        return Err(Refusal::invalid(format!(
            "message encryption not supported for key type {}",
            t.as_str()
        )));
    }
    let ver = key.policy.encryption_version(requested, key.latest)?;
    let lv = key.version(ver)?;
    let op_key = crypto::operation_key(&lv.material.key, key.policy.derived, context)?;
    let sealed = crypto::seal(t, &op_key, nonce()?, aad, plaintext)?;
    Ok((ciphertext::format(ver, &sealed), ver))
}

/// Decrypts a ciphertext's text under `key`.
fn decrypt_value(key: &LoadedKey, text: &str, context: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    let t = key.policy.key_type;
    if !t.supports_encryption() {
        return Err(Refusal::invalid(format!(
            "message decryption not supported for key type {}",
            t.as_str()
        )));
    }
    let (ver, body) = ciphertext::parse(text, key.latest, key.policy.min_decryption_version)?;
    let lv = key.version(ver)?;
    let op_key = crypto::operation_key(&lv.material.key, key.policy.derived, context)?;
    crypto::open(t, &op_key, aad, &body)
}

/// `key`, or — when an item names a version newer than this replica's copy knows (another replica rotated within
/// the cache's lifetime) — the key read again from the store.
async fn fresh_for(
    call: &Call,
    mount: &str,
    key: std::sync::Arc<LoadedKey>,
    items: &[&Map<String, Value>],
    field: &str,
) -> Result<std::sync::Arc<LoadedKey>, VaultError> {
    let newer = items.iter().any(|item| {
        Fields(item)
            .str_ref(field)
            .ok()
            .flatten()
            .and_then(|t| ciphertext::split(&t).ok().map(|(v, _)| v > key.latest))
            .unwrap_or(false)
    });
    if !newer {
        return Ok(key);
    }
    keys::forget(&call.app, &call.org.id, mount, &key.name).await;
    keys::load_existing(&call.app, &call.org.id, mount, &key.name).await
}

fn partial_code(body: &Body) -> Result<Option<i64>, VaultError> {
    Ok(body.fields().int("partial_failure_response_code")?)
}

/// The key for an operation, rotated first when its `auto_rotate_period` has passed.
async fn key_for_use(call: &Call, mount: &str, name: &str) -> Result<Option<std::sync::Arc<LoadedKey>>, VaultError> {
    let Some(key) = keys::load(&call.app, &call.org.id, mount, name).await? else {
        return Ok(None);
    };
    super::budget::rotate_if_due(&call.app, &call.org, mount, &key).await?;
    if super::budget::is_due(&call.app, &key) {
        return keys::load(&call.app, &call.org.id, mount, name).await;
    }
    Ok(Some(key))
}

/// `POST {mount}/encrypt/:name`.
pub async fn encrypt(call: &Call, mount: &str, name: &str, body: &Body) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Editor, "encrypting", &target).await?;
    let (items, is_batch) = batch::items(&body.0, call.app.transit.max_batch)?;
    let key = match key_for_use(call, mount, name).await? {
        Some(k) => k,
        None => {
            // Vault's upsert: a missing key is made when the caller may create keys.
            call.require(Role::Admin, "creating a key by encrypting", &target)
                .await?;
            let mut policy = super::manage::requested_policy(body, "aes256-gcm96")?;
            let first_context = Fields(items[0]).string("context")?.is_some_and(|c| !c.is_empty());
            policy.derived = policy.derived || first_context;
            super::manage::make(call, mount, name, &policy).await?;
            keys::load_existing(&call.app, &call.org.id, mount, name).await?
        }
    };
    let mut used: std::collections::BTreeMap<u32, u64> = Default::default();
    let out = run(&items, is_batch, false, |f| {
        let text = f
            .str_ref("plaintext")?
            .ok_or_else(|| Refusal::invalid("missing plaintext to encrypt"))?;
        let plaintext = decode_b64(&text)?;
        let context = decode_field(&f, "context")?;
        let aad = decode_field(&f, "associated_data")?;
        let (ct, ver) = encrypt_value(&key, &plaintext, &context, &aad, f.int("key_version")?.unwrap_or(0))?;
        *used.entry(ver).or_default() += 1;
        Ok(ItemResult {
            ciphertext: Some(ct),
            key_version: Some(ver),
            ..Default::default()
        })
    });
    for (ver, n) in used {
        call.app.transit.budget.add(&call.org.id, mount, name, &key.id, ver, n);
    }
    finish(
        call,
        AuditAction::TransitEncrypt,
        &target,
        out,
        is_batch,
        partial_code(body)?,
    )
}

/// `POST {mount}/decrypt/:name`.
pub async fn decrypt(call: &Call, mount: &str, name: &str, body: &Body) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Opener, "decrypting", &target).await?;
    let (items, is_batch) = batch::items(&body.0, call.app.transit.max_batch)?;
    let key = keys::load_existing(&call.app, &call.org.id, mount, name).await?;
    let key = fresh_for(call, mount, key, &items, "ciphertext").await?;
    let out = run(&items, is_batch, true, |f| {
        let text = f
            .str_ref("ciphertext")?
            .ok_or_else(|| Refusal::invalid("missing ciphertext to decrypt"))?;
        let context = decode_field(&f, "context")?;
        let aad = decode_field(&f, "associated_data")?;
        let plaintext = decrypt_value(&key, &text, &context, &aad)?;
        Ok(ItemResult {
            plaintext: Some(SecretText::new(encode_b64(&plaintext))),
            ..Default::default()
        })
    });
    finish(
        call,
        AuditAction::TransitDecrypt,
        &target,
        out,
        is_batch,
        partial_code(body)?,
    )
}

/// `POST {mount}/rewrap/:name`: decrypts and encrypts again under the latest (or the requested) version.
pub async fn rewrap(call: &Call, mount: &str, name: &str, body: &Body) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Editor, "rewrapping", &target).await?;
    let (items, is_batch) = batch::items(&body.0, call.app.transit.max_batch)?;
    let key = match key_for_use(call, mount, name).await? {
        Some(k) => k,
        None => return Err(VaultError::invalid(crate::core::transit::KEY_NOT_FOUND)),
    };
    let key = fresh_for(call, mount, key, &items, "ciphertext").await?;
    let mut used: std::collections::BTreeMap<u32, u64> = Default::default();
    let out = run(&items, is_batch, false, |f| {
        let text = f
            .str_ref("ciphertext")?
            .ok_or_else(|| Refusal::invalid("missing ciphertext to decrypt"))?;
        let context = decode_field(&f, "context")?;
        let aad = decode_field(&f, "associated_data")?;
        let plaintext = decrypt_value(&key, &text, &context, &aad)?;
        let (ct, ver) = encrypt_value(&key, &plaintext, &context, &aad, f.int("key_version")?.unwrap_or(0))?;
        *used.entry(ver).or_default() += 1;
        Ok(ItemResult {
            ciphertext: Some(ct),
            key_version: Some(ver),
            ..Default::default()
        })
    });
    for (ver, n) in used {
        call.app.transit.budget.add(&call.org.id, mount, name, &key.id, ver, n);
    }
    finish(
        call,
        AuditAction::TransitRewrap,
        &target,
        out,
        is_batch,
        partial_code(body)?,
    )
}

/// `POST {mount}/datakey/{plaintext|wrapped}/:name`: a new random key, encrypted (and in the clear for
/// `plaintext`).
pub async fn datakey(call: &Call, mount: &str, kind: &str, name: &str, body: &Body) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Editor, "making a data key", &target).await?;
    let with_plaintext = match kind {
        "plaintext" => true,
        "wrapped" => false,
        _ => return Err(VaultError::invalid("Invalid path, must be 'plaintext' or 'wrapped'")),
    };
    let f = body.fields();
    let bits = f.int("bits")?.unwrap_or(256);
    if !matches!(bits, 128 | 256 | 512) {
        return Err(VaultError::invalid("invalid bit length"));
    }
    let key = key_for_use(call, mount, name)
        .await?
        .ok_or_else(|| VaultError::invalid(crate::core::transit::KEY_NOT_FOUND))?;
    let result = (|| {
        let context = decode_field(&f, "context")?;
        let aad = decode_field(&f, "associated_data")?;
        let data_key = keys::random(usize::try_from(bits / 8).unwrap_or(32))
            .map_err(|_| Refusal::internal("random generator failed"))?;
        let (ct, ver) = encrypt_value(&key, &data_key, &context, &aad, f.int("key_version")?.unwrap_or(0))?;
        Ok::<_, Refusal>(ItemResult {
            ciphertext: Some(ct),
            key_version: Some(ver),
            plaintext: with_plaintext.then(|| SecretText::new(encode_b64(&data_key))),
            ..Default::default()
        })
    })();
    let result = result?;
    call.tally(AuditAction::TransitDatakey, &target, 1, Outcome::Ok);
    if let Some(v) = result.key_version {
        call.app.transit.budget.add(&call.org.id, mount, name, &key.id, v, 1);
    }
    Ok(reply_secret(result))
}

/// `POST {mount}/hmac/:name[/:algorithm]`.
pub async fn hmac(
    call: &Call,
    mount: &str,
    name: &str,
    alg: Option<&str>,
    body: &Body,
) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Editor, "computing an HMAC", &target).await?;
    let (items, is_batch) = batch::items(&body.0, call.app.transit.max_batch)?;
    let alg_name = match alg {
        Some(a) => a.to_owned(),
        None => body.fields().string("algorithm")?.unwrap_or_else(|| "sha2-256".into()),
    };
    let key = key_for_use(call, mount, name)
        .await?
        .ok_or_else(|| VaultError::invalid(crate::core::transit::KEY_NOT_FOUND))?;
    let algorithm = crypto::hmac_algorithm(&alg_name)?;
    let out = run(&items, is_batch, false, |f| {
        let input = f
            .str_ref("input")?
            .ok_or_else(|| Refusal::invalid("missing input for HMAC"))?;
        let input = decode_b64(&input)?;
        let ver = key
            .policy
            .encryption_version(f.int("key_version")?.unwrap_or(0), key.latest)?;
        let mac = crypto::hmac(algorithm, &key.version(ver)?.material.hmac_key, &input);
        Ok(ItemResult {
            hmac: Some(ciphertext::format(ver, &mac)),
            ..Default::default()
        })
    });
    finish(call, AuditAction::TransitHmac, &target, out, is_batch, None)
}

/// `POST {mount}/sign/:name[/:hash]`: Ed25519 or ECDSA P-256 (SHA-256, ASN.1) signatures of the input.
pub async fn sign(
    call: &Call,
    mount: &str,
    name: &str,
    hash: Option<&str>,
    body: &Body,
) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Editor, "signing", &target).await?;
    let (items, is_batch) = batch::items(&body.0, call.app.transit.max_batch)?;
    check_hash(hash, body)?;
    let key = key_for_use(call, mount, name)
        .await?
        .ok_or_else(|| VaultError::invalid("signing key not found"))?;
    let t = key.policy.key_type;
    if !t.supports_signing() {
        return Err(VaultError::invalid(format!(
            "key type {} does not support signing",
            t.as_str()
        )));
    }
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let out = run(&items, is_batch, false, |f| {
        let input = decode_field(&f, "input")?;
        let ver = key
            .policy
            .encryption_version(f.int("key_version")?.unwrap_or(0), key.latest)?;
        let sig = crypto::sign(t, &key.version(ver)?.material.key, &input, &rng)?;
        Ok(ItemResult {
            signature: Some(ciphertext::format(ver, &sig)),
            key_version: Some(ver),
            ..Default::default()
        })
    });
    finish(call, AuditAction::TransitSign, &target, out, is_batch, None)
}

fn check_hash(hash: Option<&str>, body: &Body) -> Result<(), VaultError> {
    let f = body.fields();
    let from_body = f.string("hash_algorithm")?;
    let hash = hash.map(str::to_owned).or(from_body);
    if let Some(h) = hash
        && !matches!(h.as_str(), "sha2-256" | "sha256" | "none")
    {
        return Err(VaultError::invalid(format!(
            "unsupported hash algorithm {h}: this server (Sesame) signs with sha2-256"
        )));
    }
    if f.bool("prehashed")?.unwrap_or(false) {
        return Err(VaultError::invalid(
            "prehashed input is not supported by this server (Sesame)",
        ));
    }
    Ok(())
}

/// `POST {mount}/verify/:name[/:algorithm]`: an HMAC (`hmac`) or a signature (`signature`) of the input.
pub async fn verify(
    call: &Call,
    mount: &str,
    name: &str,
    alg: Option<&str>,
    body: &Body,
) -> Result<Response, VaultError> {
    let target = format!("{mount}/{name}");
    call.require(Role::Opener, "verifying", &target).await?;
    let (items, is_batch) = batch::items(&body.0, call.app.transit.max_batch)?;
    let key = keys::load_existing(&call.app, &call.org.id, mount, name).await?;
    let key = fresh_for(call, mount, key, &items, "signature").await?;
    let key = fresh_for(call, mount, key, &items, "hmac").await?;
    let t = key.policy.key_type;
    let alg_name = match alg {
        Some(a) => a.to_owned(),
        None => body.fields().string("algorithm")?.unwrap_or_else(|| "sha2-256".into()),
    };
    let out = run(&items, is_batch, false, |f| {
        let input = decode_field(&f, "input")?;
        let valid = if let Some(mac) = f.string("hmac")? {
            let algorithm = crypto::hmac_algorithm(&alg_name)?;
            let as_hmac = |r: Refusal| Refusal {
                message: if r.message == "invalid ciphertext: no prefix" {
                    "invalid HMAC to verify: no prefix".to_owned()
                } else {
                    r.message.replace("invalid ciphertext:", "invalid HMAC:")
                },
                ..r
            };
            let (ver, body) = ciphertext::split(&mac).map_err(as_hmac)?;
            ciphertext::check_version(ver, key.latest, key.policy.min_decryption_version).map_err(as_hmac)?;
            let mac = decode_b64(body).map_err(|_| Refusal::invalid("invalid HMAC: could not decode base64"))?;
            crypto::hmac_verify(algorithm, &key.version(ver)?.material.hmac_key, &input, &mac)
        } else if let Some(sig) = f.string("signature")? {
            if !t.supports_signing() {
                return Err(Refusal::invalid(format!(
                    "key type {} does not support verification",
                    t.as_str()
                )));
            }
            let as_signature = |r: Refusal| Refusal {
                message: r.message.replace("invalid ciphertext:", "invalid signature:"),
                ..r
            };
            let (ver, body) = ciphertext::split(&sig).map_err(as_signature)?;
            ciphertext::check_version(ver, key.latest, key.policy.min_decryption_version).map_err(as_signature)?;
            let sig = decode_b64(body).map_err(|_| Refusal::invalid("invalid signature: could not decode base64"))?;
            let public = key
                .version(ver)?
                .public_raw
                .as_deref()
                .ok_or_else(|| Refusal::internal("public key unavailable"))?;
            crypto::verify(t, public, &input, &sig)?
        } else {
            return Err(Refusal::invalid(
                "neither a 'signature' nor an 'hmac' were given to verify",
            ));
        };
        Ok(ItemResult {
            valid: Some(valid),
            ..Default::default()
        })
    });
    finish(call, AuditAction::TransitVerify, &target, out, is_batch, None)
}

/// The most bytes `random` gives.
const MAX_RANDOM: i64 = 128 * 1024;

/// `POST {mount}/random[/:source][/:bytes]`.
pub async fn random(call: &Call, mount: &str, tail: &[&str], body: &Body) -> Result<Response, VaultError> {
    call.require(Role::Reader, "random bytes", mount).await?;
    let f = body.fields();
    let mut bytes = f.int("bytes")?.unwrap_or(32);
    for part in tail {
        match *part {
            "platform" | "seal" | "all" => {}
            n => {
                bytes = n.parse().map_err(|_| {
                    VaultError::invalid(format!(
                        "error parsing url-parameter: strconv.Atoi: parsing \"{n}\": invalid syntax"
                    ))
                })?
            }
        }
    }
    if bytes < 1 {
        return Err(VaultError::invalid("'bytes' cannot be less than 1"));
    }
    if bytes > MAX_RANDOM {
        return Err(VaultError::invalid(format!("'bytes' should be less than {MAX_RANDOM}")));
    }
    let format = f.string("format")?.unwrap_or_else(|| "base64".into());
    if !matches!(format.as_str(), "base64" | "hex") {
        return Err(VaultError::invalid(format!(
            "unsupported encoding format \"{format}\"; must be \"hex\" or \"base64\""
        )));
    }
    let data = keys::random(usize::try_from(bytes).unwrap_or(32))?;
    // (A refusal above is tallied by the router.)
    let text = if format == "hex" {
        data.iter().map(|b| format!("{b:02x}")).collect()
    } else {
        encode_b64(&data)
    };
    call.tally(AuditAction::TransitRandom, &format!("{mount}/random"), 1, Outcome::Ok);
    Ok(reply_secret(RandomBytes {
        random_bytes: SecretText::new(text),
    }))
}

/// `POST {mount}/hash[/:algorithm]`: a SHA-2 digest of the input (no key), hex or base64.
pub async fn hash(call: &Call, mount: &str, alg: Option<&str>, body: &Body) -> Result<Response, VaultError> {
    use aws_lc_rs::digest;
    call.require(Role::Reader, "hashing", mount).await?;
    let f = body.fields();
    let input = f
        .str_ref("input")?
        .ok_or_else(|| VaultError::invalid("input missing"))?;
    let input = decode_b64(&input)
        .map_err(|e| VaultError::invalid(format!("unable to decode input as base64: {}", e.message)))?;
    let format = f.string("format")?.unwrap_or_else(|| "hex".into());
    if !matches!(format.as_str(), "hex" | "base64") {
        return Err(VaultError::invalid(format!(
            "unsupported encoding format {format}; must be \"hex\" or \"base64\""
        )));
    }
    let alg = match alg {
        Some(a) => a.to_owned(),
        None => f.string("algorithm")?.unwrap_or_else(|| "sha2-256".into()),
    };
    let algorithm = match alg.as_str() {
        "sha2-224" => &digest::SHA224,
        "sha2-256" => &digest::SHA256,
        "sha2-384" => &digest::SHA384,
        "sha2-512" => &digest::SHA512,
        other => return Err(VaultError::invalid(format!("unsupported algorithm {other}"))),
    };
    let sum = digest::digest(algorithm, &input);
    let sum = if format == "hex" {
        sum.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    } else {
        encode_b64(sum.as_ref())
    };
    call.tally(AuditAction::TransitHash, &format!("{mount}/hash"), 1, Outcome::Ok);
    Ok(super::reply(HashSum { sum }, Vec::new()))
}
