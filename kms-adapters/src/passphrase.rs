//! `passphrase://[NAME]`: a KEK derived with Argon2id from a passphrase the server reads from `SESAME_PASSPHRASE`.
//!
//! Each wrap records its Argon2id parameters and salt (so the cost can be raised later while old wraps still open)
//! and, as `kek_version`, a short key id: the first 8 bytes of `HMAC-SHA256(derived key, "sesame-kek-id")` in hex.
//! A wrong passphrase therefore shows up as [`KmsError::KeyMismatch`] ("wrapped by another key") before any
//! decryption; the id reveals nothing an attacker with the database could not test against the GCM tag anyway.
//!
//! One random salt is chosen per process for new wraps; derived keys are cached per (salt, parameters), so each is
//! derived at most once per process, on a blocking thread (Argon2id is deliberately slow).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use zeroize::Zeroizing;

use crate::Kek;
use crate::aead::{open_dek, seal_dek};
use crate::dek::{Dek, WrapContext, WrappedDek};
use crate::error::KmsError;
use crate::open::{Argon2Params, OpenOptions};
use crate::uri::KekUri;

const WRAP_VERSION: u8 = 0x01;
const WRAP_ALG: &str = "ARGON2ID-A256GCM";
const AAD_LABEL: &[u8] = b"sesame-kek/passphrase/v1";
const SALT_LEN: usize = 16;
const PARAMS_LEN: usize = 12;
/// Upper bounds on parameters read from a stored wrap, so a tampered row cannot make the server allocate gigabytes.
const MAX_M_COST_KIB: u32 = 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 64;

/// Derived keys by (salt, parameters).
type DerivedCache = Mutex<HashMap<([u8; SALT_LEN], Argon2Params), Arc<Derived>>>;

struct Derived {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

/// A passphrase-derived KEK.
pub struct PassphraseKek {
    uri: KekUri,
    passphrase: Arc<Zeroizing<String>>,
    params: Argon2Params,
    salt: [u8; SALT_LEN],
    cache: DerivedCache,
}

kek_debug!(PassphraseKek { "uri" = uri, "params" = params } redacted ["passphrase"]);

impl PassphraseKek {
    /// A passphrase KEK for `uri` with the passphrase and parameters of `opts`.
    pub fn new(uri: KekUri, opts: &OpenOptions) -> Result<PassphraseKek, KmsError> {
        let passphrase = opts
            .passphrase
            .clone()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| KmsError::Config {
                kek: uri.to_string(),
                reason: "no passphrase: set SESAME_PASSPHRASE".into(),
            })?;
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Ok(PassphraseKek {
            uri,
            passphrase: Arc::new(passphrase),
            params: opts.argon2.clone(),
            salt,
            cache: Mutex::new(HashMap::new()),
        })
    }

    async fn derived(&self, salt: [u8; SALT_LEN], params: &Argon2Params) -> Result<Arc<Derived>, KmsError> {
        let cache_key = (salt, params.clone());
        if let Some(d) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&cache_key) {
            return Ok(d.clone());
        }
        let (passphrase, p) = (self.passphrase.clone(), params.clone());
        let kek = self.uri.to_string();
        let derived = tokio::task::spawn_blocking(move || derive(&passphrase, &salt, &p))
            .await
            .map_err(|e| KmsError::Config {
                kek: kek.clone(),
                reason: format!("key derivation task failed: {e}"),
            })?
            .map_err(|reason| KmsError::Config { kek, reason })?;
        let derived = Arc::new(derived);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(cache_key, derived.clone());
        Ok(derived)
    }
}

fn derive(passphrase: &str, salt: &[u8; SALT_LEN], p: &Argon2Params) -> Result<Derived, String> {
    let params = argon2::Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| format!("invalid Argon2id parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut key[..])
        .map_err(|e| format!("Argon2id failed: {e}"))?;
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key[..]),
        b"sesame-kek-id",
    );
    let id = tag.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Derived { key, id })
}

#[async_trait::async_trait]
impl Kek for PassphraseKek {
    fn uri(&self) -> &KekUri {
        &self.uri
    }

    async fn wrap(&self, dek: &Dek, ctx: &WrapContext) -> Result<WrappedDek, KmsError> {
        let derived = self.derived(self.salt, &self.params).await?;
        let sealed = seal_dek(&derived.key, AAD_LABEL, dek, ctx).ok_or_else(|| KmsError::Unavailable {
            kek: self.uri.to_string(),
            detail: "the crypto backend failed to wrap".into(),
        })?;
        let mut ciphertext = Vec::with_capacity(1 + PARAMS_LEN + SALT_LEN + sealed.len());
        ciphertext.push(WRAP_VERSION);
        for v in [self.params.m_cost_kib, self.params.t_cost, self.params.p_cost] {
            ciphertext.extend_from_slice(&v.to_be_bytes());
        }
        ciphertext.extend_from_slice(&self.salt);
        ciphertext.extend_from_slice(&sealed);
        Ok(WrappedDek {
            ciphertext,
            wrap_alg: WRAP_ALG.into(),
            kek_version: derived.id.clone(),
            binding: None,
        })
    }

    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<Dek, KmsError> {
        let invalid = || KmsError::InvalidCiphertext {
            kek: self.uri.to_string(),
        };
        let blob = &wrapped.ciphertext;
        if wrapped.wrap_alg != WRAP_ALG || blob.len() < 1 + PARAMS_LEN + SALT_LEN || blob[0] != WRAP_VERSION {
            return Err(invalid());
        }
        let word = |i: usize| {
            let start = 1 + 4 * i;
            u32::from_be_bytes([blob[start], blob[start + 1], blob[start + 2], blob[start + 3]])
        };
        let params = Argon2Params {
            m_cost_kib: word(0),
            t_cost: word(1),
            p_cost: word(2),
        };
        if params.m_cost_kib > MAX_M_COST_KIB || params.t_cost > MAX_T_COST || params.p_cost > MAX_P_COST {
            return Err(invalid());
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&blob[1 + PARAMS_LEN..1 + PARAMS_LEN + SALT_LEN]);
        let derived = self.derived(salt, &params).await.map_err(|_| invalid())?;
        if derived.id != wrapped.kek_version {
            return Err(KmsError::KeyMismatch {
                kek: self.uri.to_string(),
                wrapped_by: wrapped.kek_version.clone(),
                configured: derived.id.clone(),
            });
        }
        open_dek(&derived.key, AAD_LABEL, &blob[1 + PARAMS_LEN + SALT_LEN..], ctx).ok_or_else(invalid)
    }
}
