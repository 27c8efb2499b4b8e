//! The OIDC issuer's edge: signing keys made with aws-lc-rs (RS256 over 2048-bit RSA by default, ES256 over P-256
//! as an option), sealed under the [`Scope::OidcSigning`] DEK like any protected content and shared by every replica
//! through the store; the JWKS and discovery documents; signing the claims `core::oidc` builds; and a verifier of
//! our own tokens against a published JWKS.
//!
//! Rule: when keys are made, used, retired and removed is decided by [`crate::core::oidc::plan`] only; this module
//! carries the plan out (a new key is published `cache_margin` before it signs, a retired one stays published for
//! the longest token lifetime plus `cache_margin`). Private keys live only in aws-lc-rs key objects (freed with
//! their memory cleared) and in zeroizing buffers while they are sealed or opened; they never reach a log, an error
//! or a `Debug` output. Minted tokens are returned as [`MintedToken`], whose `Debug` hides the token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::core::audit::{AuditAction, AuditEvent, INSTANCE_CHAIN};
use crate::core::keys::{Scope, oidc_signing_key_aad};
use crate::core::oidc::{Alg, Claims, KeyPlan, KeyTimes, MintContext, RequestError, RotationPolicy, TokenRequest};
use crate::keyring::{Keyring, KeyringError};
use crate::store::oidc::OidcKeyRecord;
use crate::store::{Inserted, Store, StoreError};

/// How long a replica reuses its view of the keys before reading the store again (it also rereads at every moment
/// the plan changes), so a key another replica made is seen within this time.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Who the audit log names for key rotation.
const ACTOR: &str = "system:oidc-issuer";

/// The issuer's settings (`sesame serve --oidc-alg`, `--oidc-rotation-period`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    /// The algorithm of new keys.
    pub alg: Alg,
    /// How long a key signs before the next one takes over.
    pub rotation_period: Duration,
    /// How long relying parties may cache the JWKS: a new key is published this long before it signs, and a retired
    /// key stays published this long after the last token it signed expired.
    pub cache_margin: Duration,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            alg: Alg::Rs256,
            rotation_period: Duration::from_secs(24 * 3600),
            cache_margin: Duration::from_secs(3600),
        }
    }
}

/// Failures of the issuer. None carries key material or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    /// The store failed.
    #[error("OIDC signing keys: {0}")]
    Store(#[from] StoreError),
    /// Sealing or opening a key failed.
    #[error("OIDC signing keys: {0}")]
    Keyring(#[from] KeyringError),
    /// The request was refused (the message says why).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A stored key could not be used (unknown algorithm, a private key that does not match its id).
    #[error("OIDC signing key {kid}: {reason}")]
    BadKey {
        /// The key id.
        kid: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// Generating or signing failed inside aws-lc-rs.
    #[error("OIDC signing failed")]
    Crypto,
}

/// An unsealed private key.
enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl Signer {
    fn from_pkcs8(alg: Alg, pkcs8: &[u8]) -> Option<Signer> {
        match alg {
            Alg::Rs256 => RsaKeyPair::from_pkcs8(pkcs8).ok().map(Signer::Rsa),
            Alg::Es256 => EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .ok()
                .map(Signer::Ec),
        }
    }

    /// The public key as a JWK without `kid`, with its members in RFC 7638 order (the thumbprint's input).
    fn public_members(&self) -> Value {
        match self {
            Signer::Rsa(k) => json!({
                "e": B64.encode(k.public_key().exponent().big_endian_without_leading_zero()),
                "kty": "RSA",
                "n": B64.encode(k.public_key().modulus().big_endian_without_leading_zero()),
            }),
            Signer::Ec(k) => {
                let point = k.public_key().as_ref();
                json!({
                    "crv": "P-256",
                    "kty": "EC",
                    "x": B64.encode(&point[1..33]),
                    "y": B64.encode(&point[33..65]),
                })
            }
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, IssuerError> {
        let rng = SystemRandom::new();
        match self {
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| IssuerError::Crypto)?;
                Ok(sig)
            }
            Signer::Ec(k) => Ok(k.sign(&rng, msg).map_err(|_| IssuerError::Crypto)?.as_ref().to_vec()),
        }
    }
}

/// The RFC 7638 thumbprint of a public JWK's required members (`members` already in lexicographic order, as
/// [`Signer::public_members`] builds them).
fn thumbprint(members: &Value) -> String {
    let canonical = members.to_string();
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

/// A key just made.
struct NewKey {
    /// The PKCS#8 private key (zeroized when dropped).
    pkcs8: Zeroizing<Vec<u8>>,
    signer: Signer,
    kid: String,
    /// The public JWK.
    jwk: Value,
}

/// A new key of `alg`.
fn generate(alg: Alg) -> Result<NewKey, IssuerError> {
    let pkcs8 = match alg {
        Alg::Rs256 => {
            let k = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| IssuerError::Crypto)?;
            Zeroizing::new(k.as_der().map_err(|_| IssuerError::Crypto)?.as_ref().to_vec())
        }
        Alg::Es256 => {
            let k =
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| IssuerError::Crypto)?;
            Zeroizing::new(k.to_pkcs8v1().map_err(|_| IssuerError::Crypto)?.as_ref().to_vec())
        }
    };
    let signer = Signer::from_pkcs8(alg, &pkcs8).ok_or(IssuerError::Crypto)?;
    let members = signer.public_members();
    let kid = thumbprint(&members);
    let jwk = public_jwk(&members, &kid, alg);
    Ok(NewKey {
        pkcs8,
        signer,
        kid,
        jwk,
    })
}

/// The published JWK: the public members plus `kid`, `alg` and `use`.
fn public_jwk(members: &Value, kid: &str, alg: Alg) -> Value {
    let mut jwk = members.clone();
    if let Some(o) = jwk.as_object_mut() {
        o.insert("kid".into(), kid.into());
        o.insert("alg".into(), alg.as_str().into());
        o.insert("use".into(), "sig".into());
    }
    jwk
}

/// One moment's view of the keys: which signs, what the JWKS publishes, until when it holds.
struct View {
    /// Reread the store at or after this time (Unix ms).
    valid_until_ms: i64,
    /// The signing key's id and its unsealed key.
    signing: Option<(String, Arc<Signer>)>,
    /// The JWKS document, serialized once.
    jwks: Arc<Vec<u8>>,
    /// The algorithms of the published keys.
    algs: Vec<&'static str>,
    /// Ids of the published keys.
    published: Vec<String>,
}

/// The issuer: keys, rotation, signing.
pub struct Issuer {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Clock,
    config: OidcConfig,
    policy: RotationPolicy,
    view: RwLock<Option<Arc<View>>>,
    refreshing: tokio::sync::Mutex<()>,
    /// Unsealed private keys by id (a key is opened once per process).
    signers: RwLock<HashMap<String, Arc<Signer>>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A signed token with its claims. Its `Debug` shows the claims and key id, never the token.
pub struct MintedToken {
    /// The claims it carries.
    pub claims: Claims,
    /// The key that signed it.
    pub kid: String,
    token: Zeroizing<String>,
}

impl MintedToken {
    /// The compact JWS: a credential, to hand to its caller only.
    pub fn expose(&self) -> &str {
        &self.token
    }
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("claims", &self.claims)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn key_times(r: &OidcKeyRecord) -> Result<KeyTimes, IssuerError> {
    Ok(KeyTimes {
        kid: r.kid.clone(),
        alg: Alg::parse(&r.alg).ok_or_else(|| IssuerError::BadKey {
            kid: r.kid.clone(),
            reason: "unknown algorithm",
        })?,
        active_ms: r.active_ms,
    })
}

impl Issuer {
    /// An issuer over `store` (keys) and `keyring` (sealing them), dated by `clock`.
    pub fn new(store: Arc<dyn Store>, keyring: Arc<Keyring>, clock: Clock, config: OidcConfig) -> Issuer {
        Issuer {
            store,
            keyring,
            clock,
            policy: RotationPolicy::new(config.rotation_period, config.cache_margin),
            config,
            view: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            signers: RwLock::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    async fn view(&self) -> Result<Arc<View>, IssuerError> {
        let now = self.clock.now_ms();
        if let Some(v) = self.cached(now) {
            return Ok(v);
        }
        let _one = self.refreshing.lock().await;
        let now = self.clock.now_ms();
        if let Some(v) = self.cached(now) {
            return Ok(v);
        }
        let v = Arc::new(self.refresh(now).await?);
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
        Ok(v)
    }

    fn cached(&self, now: i64) -> Option<Arc<View>> {
        let guard = self.view.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|v| now < v.valid_until_ms).cloned()
    }

    /// Reads the keys, carries out the plan (removes expired keys, makes a due one) and builds the view.
    async fn refresh(&self, now: i64) -> Result<View, IssuerError> {
        let mut acted = 0;
        loop {
            let rows = self.store.oidc_keys().await?;
            let mut times = rows.iter().map(key_times).collect::<Result<Vec<_>, _>>()?;
            times.sort_by_key(|k| k.active_ms);
            let rows: Vec<&OidcKeyRecord> = times
                .iter()
                .filter_map(|t| rows.iter().find(|r| r.kid == t.kid))
                .collect();
            let plan = crate::core::oidc::plan(&times, now, &self.policy, self.config.alg);
            // At most a removal and a creation (each perhaps raced by another replica) before the view is built.
            if acted < 4 {
                if !plan.expired.is_empty() {
                    acted += 1;
                    self.remove(&times, &plan, now).await?;
                    continue;
                }
                if let Some(active_ms) = plan.create_active_ms {
                    acted += 1;
                    self.create(active_ms, now).await?;
                    continue;
                }
            }
            return self.build(&rows, &plan, now).await;
        }
    }

    async fn remove(&self, times: &[KeyTimes], plan: &KeyPlan, now: i64) -> Result<(), IssuerError> {
        let kids: Vec<String> = plan.expired.iter().map(|&i| times[i].kid.clone()).collect();
        let event = AuditEvent::new(
            INSTANCE_CHAIN,
            now,
            ACTOR,
            "internal",
            AuditAction::OidcKeyRemove,
            kids.join(","),
        )
        .detail(format!(
            "{} retired keys past their retention removed from the JWKS",
            kids.len()
        ));
        let n = self.store.delete_oidc_keys(&kids, &event).await?;
        if n > 0 {
            tracing::info!(keys = n, "retired OIDC signing keys removed from the JWKS");
        }
        let mut signers = self.signers.write().unwrap_or_else(|p| p.into_inner());
        for kid in &kids {
            signers.remove(kid);
        }
        Ok(())
    }

    async fn create(&self, active_ms: i64, now: i64) -> Result<(), IssuerError> {
        let alg = self.config.alg;
        let NewKey {
            pkcs8,
            signer,
            kid,
            jwk,
        } = generate(alg)?;
        let sealed = self
            .keyring
            .seal(&Scope::OidcSigning, &oidc_signing_key_aad(&kid, alg.as_str()), &pkcs8)
            .await?;
        drop(pkcs8);
        let record = OidcKeyRecord {
            kid: kid.clone(),
            alg: alg.as_str().to_owned(),
            public_jwk: jwk.to_string(),
            sealed,
            created_ms: now,
            active_ms,
        };
        let event =
            AuditEvent::new(INSTANCE_CHAIN, now, ACTOR, "internal", AuditAction::OidcKeyCreate, &kid).detail(format!(
                "{} key, published now, signs from {}",
                alg.as_str(),
                crate::core::timefmt::rfc3339(active_ms)
            ));
        if self.store.insert_oidc_key(&record, &event).await? == Inserted::New {
            tracing::info!(kid = %kid, alg = alg.as_str(), active_ms, "new OIDC signing key published");
            self.signers
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(kid, Arc::new(signer));
        }
        Ok(())
    }

    async fn build(&self, rows: &[&OidcKeyRecord], plan: &KeyPlan, now: i64) -> Result<View, IssuerError> {
        let mut keys = Vec::new();
        let mut algs = Vec::new();
        let mut published = Vec::new();
        for &i in &plan.published {
            let jwk: Value = serde_json::from_str(&rows[i].public_jwk).map_err(|_| IssuerError::BadKey {
                kid: rows[i].kid.clone(),
                reason: "stored public key is not JSON",
            })?;
            keys.push(jwk);
            published.push(rows[i].kid.clone());
            if let Some(alg) = Alg::parse(&rows[i].alg).map(Alg::as_str)
                && !algs.contains(&alg)
            {
                algs.push(alg);
            }
        }
        let signing = match plan.signing {
            Some(i) => Some((rows[i].kid.clone(), self.signer(rows[i]).await?)),
            None => None,
        };
        let valid_until_ms = plan
            .next_change_ms
            .unwrap_or(i64::MAX)
            .min(now + REFRESH.as_millis() as i64);
        let jwks = serde_json::to_vec(&json!({ "keys": keys })).map_err(|_| IssuerError::Crypto)?;
        Ok(View {
            valid_until_ms,
            signing,
            jwks: Arc::new(jwks),
            algs,
            published,
        })
    }

    /// The unsealed key of a stored row, opened once (and checked against its id).
    async fn signer(&self, row: &OidcKeyRecord) -> Result<Arc<Signer>, IssuerError> {
        if let Some(s) = self.signers.read().unwrap_or_else(|p| p.into_inner()).get(&row.kid) {
            return Ok(s.clone());
        }
        let bad = |reason| IssuerError::BadKey {
            kid: row.kid.clone(),
            reason,
        };
        let alg = Alg::parse(&row.alg).ok_or_else(|| bad("unknown algorithm"))?;
        let pkcs8 = self
            .keyring
            .open(
                &Scope::OidcSigning,
                &oidc_signing_key_aad(&row.kid, alg.as_str()),
                &row.sealed,
            )
            .await?;
        let signer = Signer::from_pkcs8(alg, &pkcs8).ok_or_else(|| bad("sealed private key is not valid"))?;
        drop(pkcs8);
        if thumbprint(&signer.public_members()) != row.kid {
            return Err(bad("private key does not match its id"));
        }
        let signer = Arc::new(signer);
        self.signers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(row.kid.clone(), signer.clone());
        Ok(signer)
    }

    /// Makes the first key when there is none, and carries out any due rotation now (start-up and the periodic
    /// tick call it, so that keys change on schedule even when nobody asks).
    pub async fn ensure_keys(&self) -> Result<(), IssuerError> {
        self.view().await.map(drop)
    }

    /// The JWKS document (`{"keys": [...]}`): the signing key, the next one and retired keys within retention.
    pub async fn jwks(&self) -> Result<Arc<Vec<u8>>, IssuerError> {
        Ok(self.view().await?.jwks.clone())
    }

    /// The ids of the published keys, and the id of the signing key.
    pub async fn key_ids(&self) -> Result<(Vec<String>, Option<String>), IssuerError> {
        let v = self.view().await?;
        Ok((v.published.clone(), v.signing.as_ref().map(|(k, _)| k.clone())))
    }

    /// The discovery document of the issuer `issuer` (its `issuer` is `issuer`, byte for byte).
    pub async fn discovery(&self, issuer: &str) -> Result<Value, IssuerError> {
        let v = self.view().await?;
        let mut algs = v.algs.clone();
        if !algs.contains(&self.config.alg.as_str()) {
            algs.push(self.config.alg.as_str());
        }
        Ok(json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "scopes_supported": ["openid"],
            "claims_supported": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"],
        }))
    }

    /// Signs `claims` with the current key: a compact JWS with header `{alg, kid, typ: JWT}`.
    pub async fn sign(&self, claims: Claims) -> Result<MintedToken, IssuerError> {
        let v = self.view().await?;
        let (kid, signer) = v.signing.clone().ok_or(IssuerError::Crypto)?;
        let alg = match signer.as_ref() {
            Signer::Rsa(_) => Alg::Rs256,
            Signer::Ec(_) => Alg::Es256,
        };
        let header = json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"});
        let payload = serde_json::to_vec(&claims).map_err(|_| IssuerError::Crypto)?;
        let mut token = String::with_capacity(1024);
        token.push_str(&B64.encode(header.to_string()));
        token.push('.');
        token.push_str(&B64.encode(payload));
        let sig = signer.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&B64.encode(sig));
        Ok(MintedToken {
            claims,
            kid,
            token: Zeroizing::new(token),
        })
    }

    /// The Rust API the providers call: the token `req` asks for about the environment `ctx` names, issued by
    /// `issuer`, signed now. The caller has checked the right to open the environment, and audits the mint.
    pub async fn mint(&self, issuer: &str, ctx: &MintContext, req: &TokenRequest) -> Result<MintedToken, IssuerError> {
        let now_s = self.clock.now_ms().div_euclid(1000);
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = crate::core::oidc::claims(issuer, ctx, req, Some((now_s, &jti)))?;
        self.sign(claims).await
    }
}

/// Why [`verify`] refused a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not one we sign with, or not the key's.
    #[error("unacceptable algorithm")]
    Algorithm,
    /// No published key has the header's `kid`.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `iss` or `aud` is not the expected one.
    #[error("wrong issuer or audience")]
    Claims,
    /// Expired, or not valid yet.
    #[error("token not valid at this time")]
    Time,
}

/// Our own check of a token against a published JWKS: signature by the key `kid` names (RS256 or ES256 only, the
/// key's own algorithm), `iss` equal to `issuer`, `aud` equal to `audience`, `nbf <= now_s < exp`. Returns the
/// claims.
pub fn verify(jwks: &Value, token: &str, issuer: &str, audience: &str, now_s: i64) -> Result<Value, VerifyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(VerifyError::Malformed);
    };
    let decode = |part: &str| B64.decode(part).map_err(|_| VerifyError::Malformed);
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| VerifyError::Malformed)?;
    let alg = header["alg"]
        .as_str()
        .and_then(Alg::parse)
        .ok_or(VerifyError::Algorithm)?;
    if header["alg"].as_str() != Some(alg.as_str()) {
        return Err(VerifyError::Algorithm);
    }
    let kid = header["kid"].as_str().ok_or(VerifyError::UnknownKey)?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"].as_str() == Some(kid)))
        .ok_or(VerifyError::UnknownKey)?;
    if jwk["alg"].as_str() != Some(alg.as_str()) {
        return Err(VerifyError::Algorithm);
    }
    let field = |name: &str| {
        jwk[name]
            .as_str()
            .and_then(|v| B64.decode(v).ok())
            .ok_or(VerifyError::UnknownKey)
    };
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let sig = decode(s)?;
    let ok = match alg {
        Alg::Rs256 => signature::RsaPublicKeyComponents {
            n: field("n")?,
            e: field("e")?,
        }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
        .is_ok(),
        Alg::Es256 => {
            let mut point = vec![4u8];
            point.extend(field("x")?);
            point.extend(field("y")?);
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, &sig)
                .is_ok()
        }
    };
    if !ok {
        return Err(VerifyError::Signature);
    }
    let claims: Value = serde_json::from_slice(&decode(p)?).map_err(|_| VerifyError::Malformed)?;
    if claims["iss"].as_str() != Some(issuer) || claims["aud"].as_str() != Some(audience) {
        return Err(VerifyError::Claims);
    }
    let (Some(nbf), Some(exp)) = (claims["nbf"].as_i64(), claims["exp"].as_i64()) else {
        return Err(VerifyError::Time);
    };
    if now_s < nbf || now_s >= exp {
        return Err(VerifyError::Time);
    }
    Ok(claims)
}

/// Keeps the issuer's keys on schedule for as long as `issuer` lives: a pass every `every` (wall time; each pass
/// reads the issuer's clock).
pub fn spawn_rotation(issuer: &Arc<Issuer>, every: Duration) {
    let weak = Arc::downgrade(issuer);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(issuer) = weak.upgrade() else { return };
            if let Err(e) = issuer.ensure_keys().await {
                tracing::warn!(error = %e, "OIDC signing keys: rotation pass failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_token_or_a_key() {
        let t = MintedToken {
            claims: crate::core::oidc::Claims {
                iss: "i".into(),
                sub: "s".into(),
                aud: "a".into(),
                iat: None,
                nbf: None,
                exp: None,
                jti: None,
                extra: Default::default(),
            },
            kid: "kid-1".into(),
            token: Zeroizing::new("header.payload.signature-secret".into()),
        };
        let shown = format!("{t:?}");
        assert!(
            shown.contains("kid-1") && !shown.contains("signature-secret"),
            "{shown}"
        );
        let r = OidcKeyRecord {
            kid: "k".into(),
            alg: "RS256".into(),
            public_jwk: "{}".into(),
            sealed: b"sealed-bytes".to_vec(),
            created_ms: 0,
            active_ms: 0,
        };
        assert!(!format!("{r:?}").contains("115, 101, 97"), "sealed bytes in Debug");
    }

    #[test]
    fn keys_sign_and_verify_for_both_algorithms() {
        for alg in [Alg::Rs256, Alg::Es256] {
            let NewKey { signer, kid, jwk, .. } = generate(alg).unwrap();
            let claims = json!({"iss": "i", "aud": "a", "nbf": 10, "exp": 20});
            let header = json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"});
            let mut t = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
            let sig = signer.sign(t.as_bytes()).unwrap();
            t = format!("{t}.{}", B64.encode(sig));
            let jwks = json!({"keys": [jwk]});
            assert!(verify(&jwks, &t, "i", "a", 10).is_ok());
            assert_eq!(verify(&jwks, &t, "i", "a", 20), Err(VerifyError::Time));
            assert_eq!(verify(&jwks, &t, "i", "b", 10), Err(VerifyError::Claims));
            assert_eq!(
                verify(&json!({"keys": []}), &t, "i", "a", 10),
                Err(VerifyError::UnknownKey)
            );
            let mut tampered = t.clone().into_bytes();
            let n = tampered.len();
            tampered[n - 5] = if tampered[n - 5] == b'A' { b'B' } else { b'A' };
            assert_eq!(
                verify(&jwks, std::str::from_utf8(&tampered).unwrap(), "i", "a", 10),
                Err(VerifyError::Signature)
            );
        }
    }
}
