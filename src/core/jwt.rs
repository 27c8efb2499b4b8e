//! Verification of inbound OIDC tokens (JWTs from CI platforms and Kubernetes): pure — the key set, the expected
//! issuer and audience and the current time all come in as arguments; fetching keys is the edge's job.
//!
//! Rules: only RS256 and ES256 are accepted (`alg: none`, HMAC algorithms — among them HS256 signed with an issuer's
//! public key — and anything else are refused before any key is looked at); the header's `kid` picks the key, and a
//! key is used only with the algorithm of its type (RSA → RS256, EC P-256 → ES256); `exp` is required, `nbf` is
//! honoured, both with [`LEEWAY_S`] of clock skew; `iss` must equal the registered issuer and `aud` (a string or a
//! list) must contain the expected audience. Errors name what failed, never the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// The longest token accepted, in bytes (real ID tokens are a few kilobytes).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Clock skew tolerated on `exp` and `nbf`, seconds.
pub const LEEWAY_S: i64 = 30;

/// The most keys a key set may hold.
pub const MAX_KEYS: usize = 100;

/// A signature algorithm Sesame accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit keys or more).
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl Alg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }

    fn jose(self) -> Algorithm {
        match self {
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
        }
    }

    fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

/// Why a token or a key set was refused. The texts are safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// `alg` other than RS256 or ES256.
    #[error("token algorithm {0:?} is not accepted (only RS256 and ES256)")]
    Algorithm(String),
    /// No key in the issuer's key set has the token's `kid`.
    #[error("no key of the issuer has the token's key id (kid)")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` is missing.
    #[error("the token has no expiry (exp)")]
    NoExpiry,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is not the registered issuer.
    #[error("the token's issuer (iss) is not the registered issuer")]
    Issuer,
    /// `aud` does not contain the expected audience.
    #[error("the token's audience (aud) must be {0:?}")]
    Audience(String),
    /// A key set that is not a JWKS.
    #[error("invalid key set: {0}")]
    KeySet(String),
}

/// One verification key.
struct Key {
    kid: Option<String>,
    alg: Alg,
    key: DecodingKey,
}

/// An issuer's verification keys (a JWKS), RSA and EC P-256 signing keys only; other keys are skipped.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| (k.kid.as_deref(), k.alg.as_str())).collect();
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`). Keys of other types, curves or uses are skipped; a set with no
    /// usable key is refused.
    pub fn parse(jwks: &Value) -> Result<KeySet, JwtError> {
        let bad = |why: &str| JwtError::KeySet(why.to_owned());
        let list = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("it has no \"keys\" list"))?;
        if list.len() > MAX_KEYS {
            return Err(bad(&format!("it has more than {MAX_KEYS} keys")));
        }
        let mut keys = Vec::new();
        for jwk in list {
            let s = |name: &str| jwk.get(name).and_then(Value::as_str);
            if s("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let kid = s("kid").map(str::to_owned);
            let parsed = match (s("kty"), s("alg")) {
                (Some("RSA"), None | Some("RS256")) => match (s("n"), s("e")) {
                    (Some(n), Some(e)) => DecodingKey::from_rsa_components(n, e).ok().map(|k| (Alg::Rs256, k)),
                    _ => None,
                },
                (Some("EC"), None | Some("ES256")) if s("crv") == Some("P-256") => match (s("x"), s("y")) {
                    (Some(x), Some(y)) => ec_key(x, y).map(|k| (Alg::Es256, k)),
                    _ => None,
                },
                _ => None,
            };
            if let Some((alg, key)) = parsed {
                keys.push(Key { kid, alg, key });
            }
        }
        if keys.is_empty() {
            return Err(bad("it has no RSA or P-256 signing key"));
        }
        Ok(KeySet { keys })
    }

    /// Parses a JWKS document from its bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<KeySet, JwtError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|_| JwtError::KeySet("it is not JSON".into()))?;
        KeySet::parse(&v)
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key (never true for a parsed set).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token's `kid` (a token without `kid` matches only a set of one key).
    fn find(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    /// Whether the set has a key for `kid` (see [`KeySet::find`]).
    pub fn has_key(&self, kid: Option<&str>) -> bool {
        self.find(kid).is_some()
    }
}

/// A P-256 key from its coordinates (checked to be 32 bytes each).
fn ec_key(x: &str, y: &str) -> Option<DecodingKey> {
    let (bx, by) = (URL_SAFE_NO_PAD.decode(x).ok()?, URL_SAFE_NO_PAD.decode(y).ok()?);
    if bx.len() != 32 || by.len() != 32 {
        return None;
    }
    DecodingKey::from_ec_components(x, y).ok()
}

/// What a token says about itself before verification: enough to find its issuer and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The header's algorithm (already checked to be accepted).
    pub alg: Alg,
    /// The header's key id.
    pub kid: Option<String>,
    /// The payload's `iss` (unverified: only for finding the registered issuer).
    pub iss: String,
}

fn part_json(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Malformed),
    }
}

fn parts(token: &str) -> Result<[&str; 3], JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok([h, p, s]),
        _ => Err(JwtError::Malformed),
    }
}

/// Reads a token's header and issuer without verifying anything else; refuses unaccepted algorithms at once.
pub fn peek(token: &str) -> Result<Unverified, JwtError> {
    let [h, p, _] = parts(token)?;
    let header = part_json(h)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::parse(a).ok_or_else(|| JwtError::Algorithm(a.chars().take(16).collect()))?,
        _ => return Err(JwtError::Malformed),
    };
    if header.get("crit").is_some() {
        // No critical extension is understood, so a token that declares one is refused (RFC 7515 §4.1.11).
        return Err(JwtError::Malformed);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    let payload = part_json(p)?;
    let iss = match payload.get("iss") {
        Some(Value::String(i)) => i.clone(),
        _ => return Err(JwtError::Issuer),
    };
    Ok(Unverified { alg, kid, iss })
}

/// What a verified token must show.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The registered issuer URL (`iss` must equal it; a trailing `/` on either side is ignored).
    pub issuer: &'a str,
    /// An audience `aud` must contain.
    pub audience: &'a str,
    /// Now, Unix seconds.
    pub now_s: i64,
}

/// Whether two issuer URLs name the same issuer (exact, but for one trailing `/`).
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.strip_suffix('/').unwrap_or(a) == b.strip_suffix('/').unwrap_or(b)
}

fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(JwtError::Malformed),
        Some(_) => Err(JwtError::Malformed),
    }
}

/// Verifies `token` against `keys` and `expect`; returns its claims.
pub fn verify(token: &str, keys: &KeySet, expect: &Expect<'_>) -> Result<Map<String, Value>, JwtError> {
    let seen = peek(token)?;
    let key = keys.find(seen.kid.as_deref()).ok_or(JwtError::UnknownKey)?;
    if key.alg != seen.alg {
        // An RSA key is never used for ES256 and the reverse.
        return Err(JwtError::Signature);
    }
    let mut validation = Validation::new(seen.alg.jose());
    // Times, issuer and audience are checked below against the injected clock and with clear errors.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
                JwtError::Signature
            }
            ErrorKind::InvalidAlgorithm => JwtError::Algorithm(seen.alg.as_str().into()),
            _ => JwtError::Malformed,
        }
    })?;
    let claims = data.claims;
    let exp = number(&claims, "exp")?.ok_or(JwtError::NoExpiry)?;
    if exp.saturating_add(LEEWAY_S) <= expect.now_s {
        return Err(JwtError::Expired);
    }
    if number(&claims, "nbf")?.is_some_and(|nbf| nbf > expect.now_s.saturating_add(LEEWAY_S)) {
        return Err(JwtError::NotYetValid);
    }
    match claims.get("iss") {
        Some(Value::String(iss)) if same_issuer(iss, expect.issuer) => {}
        _ => return Err(JwtError::Issuer),
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == expect.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expect.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(JwtError::Audience(expect.audience.to_owned()));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn unaccepted_algorithms_are_refused_before_any_key() {
        for alg in ["none", "HS256", "RS384", "PS256", "EdDSA", "ES384", "rs256"] {
            let t = format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": alg})),
                b64(&serde_json::json!({"iss": "x"}))
            );
            assert_eq!(peek(&t), Err(JwtError::Algorithm(alg.into())), "{alg}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let h = b64(&serde_json::json!({"alg": "RS256"}));
        for t in [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{h}..sig"),
            format!("{h}.!!!.sig"),
            format!("{h}.{}.sig", b64(&serde_json::json!([1]))),
            format!(
                "{}.{}.sig",
                b64(&serde_json::json!({"alg": 1})),
                b64(&serde_json::json!({}))
            ),
        ] {
            assert!(peek(&t).is_err(), "{t}");
        }
        assert_eq!(peek(&"a".repeat(MAX_TOKEN_BYTES + 1)), Err(JwtError::TooLarge));
    }

    #[test]
    fn key_sets_skip_unusable_keys_and_refuse_empty_ones() {
        assert!(KeySet::parse(&serde_json::json!({"keys": []})).is_err());
        assert!(KeySet::parse(&serde_json::json!({"nokeys": 1})).is_err());
        let only_oct = serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(KeySet::parse(&only_oct).is_err());
        let bad_ec = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]});
        assert!(KeySet::parse(&bad_ec).is_err());
    }

    /// What `fuzz/fuzz_targets/jwt_verify.rs` checks, on a few thousand random inputs shaped like tokens: no panic,
    /// nothing verifies without a private key.
    #[test]
    fn random_token_shaped_inputs_never_verify() {
        use rand::Rng;
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec-1",
            "x": "TRrN3O8-zhCZGxPZ3-6dQdED5QMYksm8YY1Ur9s71Oc", "y": "pvEwJyZV8AhlEE57FsTnPh-_6MuxJV-MWx4ENnxxDjM"}]});
        let keys = KeySet::parse(&jwks).unwrap();
        let expect = Expect {
            issuer: "https://i.example",
            audience: "a",
            now_s: 1_700_000_000,
        };
        let header = b64(&serde_json::json!({"alg": "ES256", "kid": "ec-1"}));
        let payload = b64(&serde_json::json!({"iss": "https://i.example", "aud": "a", "exp": 1_800_000_000}));
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
        let mut rng = rand::rng();
        for i in 0..3000 {
            let len = rng.random_range(0..200);
            let noise: String = (0..len)
                .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
                .collect();
            let token = match i % 3 {
                0 => noise,
                1 => format!("{header}.{payload}.{noise}"),
                _ => format!("{header}.{noise}"),
            };
            assert!(verify(&token, &keys, &expect).is_err(), "{token}");
        }
    }

    #[test]
    fn issuers_compare_exactly_but_for_a_trailing_slash() {
        assert!(same_issuer("https://a.example", "https://a.example/"));
        assert!(!same_issuer("https://a.example", "https://a.example.evil"));
        assert!(!same_issuer("https://A.example", "https://a.example"));
    }
}
