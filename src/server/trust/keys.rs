//! Registered issuers' verification keys: an inline `jwks` is used as registered (nothing fetched or resolved);
//! otherwise `{issuer}/.well-known/openid-configuration` names the `jwks_uri`, both fetched through
//! [`crate::egress`] (allowed addresses only, 1 MiB, 5 s, same-origin redirects). When the issuer was registered with
//! TLS `thumbprints`, both fetches must be over HTTPS from a server whose certificate matches one of them.
//!
//! Keys are cached per issuer (and per version of its registration, so a change takes effect at once) for
//! [`KEYS_TTL`]. A token whose `kid` the cached set lacks makes one refetch (the issuer may have rotated its keys),
//! at most once per [`REFETCH_INTERVAL_MS`] per issuer whatever the outcome: a flood of tokens with made-up `kid`s or
//! an issuer that hangs costs at most one fetch per interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;

use crate::clock::Clock;
use crate::core::jwt::{KeySet, same_issuer};
use crate::egress::EgressPolicy;
use crate::store::trust::IssuerRecord;

/// How long fetched keys are reused.
pub const KEYS_TTL: Duration = Duration::from_secs(60 * 60);
/// The least time between two fetches for one issuer, milliseconds.
pub const REFETCH_INTERVAL_MS: i64 = 30_000;

/// Why an issuer's keys are not at hand. The text is for the audit log and the server log (it can name addresses);
/// callers of the token endpoints are told only that the keys could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeysUnavailable(pub String);

/// The cache.
pub struct IssuerKeys {
    keys: Cache<String, Arc<KeySet>>,
    /// Issuer id → when its keys were last fetched (or tried).
    attempts: Mutex<HashMap<String, i64>>,
}

impl Default for IssuerKeys {
    fn default() -> Self {
        IssuerKeys {
            keys: Cache::builder().max_capacity(10_000).time_to_live(KEYS_TTL).build(),
            attempts: Mutex::new(HashMap::new()),
        }
    }
}

impl IssuerKeys {
    /// The keys to verify a token with `kid` from `issuer`: cached ones if they have `kid`, else fresh ones when the
    /// refetch budget allows, else the cached ones (verification then says the key is unknown).
    pub async fn for_token(
        &self,
        issuer: &IssuerRecord,
        kid: Option<&str>,
        egress: &EgressPolicy,
        clock: &Clock,
    ) -> Result<Arc<KeySet>, KeysUnavailable> {
        let key = format!("{}\n{}", issuer.id, issuer.modified_ms);
        let cached = self.keys.get(&key).await;
        if let Some(keys) = &cached
            && (keys.has_key(kid) || issuer.jwks.is_some())
        {
            return Ok(keys.clone());
        }
        if let Some(jwks) = &issuer.jwks {
            let keys = Arc::new(
                KeySet::from_slice(jwks.as_bytes()).map_err(|e| KeysUnavailable(format!("inline jwks: {e}")))?,
            );
            self.keys.insert(key, keys.clone()).await;
            return Ok(keys);
        }
        let now = clock.now_ms();
        {
            let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(last) = attempts.get(&issuer.id)
                && now - last < REFETCH_INTERVAL_MS
                && now >= *last
            {
                return cached.ok_or_else(|| {
                    KeysUnavailable("the issuer's keys were fetched (or tried) moments ago; retry later".into())
                });
            }
            if attempts.len() > 10_000 {
                attempts.clear();
            }
            attempts.insert(issuer.id.clone(), now);
        }
        let keys = Arc::new(fetch(issuer, egress).await?);
        self.keys.insert(key, keys.clone()).await;
        Ok(keys)
    }
}

/// Fetches discovery, then the JWKS it names.
async fn fetch(issuer: &IssuerRecord, egress: &EgressPolicy) -> Result<KeySet, KeysUnavailable> {
    let base = issuer.url.trim_end_matches('/');
    let thumbprints: Vec<String> = serde_json::from_str(&issuer.thumbprints).unwrap_or_default();
    let discovery_url = format!("{base}/.well-known/openid-configuration");
    let body = crate::egress::get_pinned(egress, &discovery_url, &thumbprints)
        .await
        .map_err(|e| KeysUnavailable(format!("discovery: {e}")))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| KeysUnavailable("discovery: the document is not JSON".into()))?;
    match doc.get("issuer").and_then(|v| v.as_str()) {
        Some(i) if same_issuer(i, &issuer.url) => {}
        _ => {
            return Err(KeysUnavailable(
                "discovery: the document's issuer is not the registered issuer URL".into(),
            ));
        }
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| KeysUnavailable("discovery: the document has no jwks_uri".into()))?;
    let body = crate::egress::get_pinned(egress, jwks_uri, &thumbprints)
        .await
        .map_err(|e| KeysUnavailable(format!("jwks: {e}")))?;
    KeySet::from_slice(&body).map_err(|e| KeysUnavailable(format!("jwks: {e}")))
}
