//! Abuse limits at the edge: the clocks and locks around the pure [`crate::core::throttle`] and
//! [`crate::core::tally`].
//!
//! - Each failed authentication (no token, a malformed, unknown, revoked or expired one) takes a token from its
//!   source address's bucket (IPv6 sources by /64); once the bucket is empty, failures answer 429 with
//!   `Retry-After` instead of 401. A valid token is never refused by this budget, whatever its address did.
//!   Defaults: a burst of [`DEFAULT_AUTH_BURST`], refilled at [`DEFAULT_AUTH_PER_MINUTE`] a minute.
//! - Per-token limits are off unless configured (`--token-rate-per-minute`): a valid token is never throttled by
//!   default, however many connections it uses.
//! - Failed authentications are audited as one `auth.failed` record per source address and window (default 60 s)
//!   carrying the count per reason and the first path, cut to 256 bytes. Windows are written when they close, when
//!   the audit log is exported, and at shutdown.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::audit::AuditLog;
use crate::core::audit::{AuditEvent, INSTANCE_CHAIN};
use crate::core::tally::{Tallies, Tally};
use crate::core::throttle::{Decision, Limiter, Rate};

/// Failed or unauthenticated requests a source may make at once.
pub const DEFAULT_AUTH_BURST: u32 = 30;
/// Failed or unauthenticated requests a source regains per minute.
pub const DEFAULT_AUTH_PER_MINUTE: u32 = 60;
/// How long a source's failures are gathered into one audit record.
pub const DEFAULT_AUDIT_WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked at once, by the limiter and by the failure tallies each.
pub const MAX_SOURCES: usize = 100_000;
/// Tokens tracked at once by a per-token limit.
const MAX_TOKENS: usize = 100_000;

/// Every abuse limit of `sesame serve`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Per-source budgets of unauthenticated callers, per-token limits, failure audit windows.
    pub auth: AuthLimits,
    /// Slow clients and connection count.
    pub connections: super::conn::ConnLimits,
}

/// Limits on unauthenticated callers, and optional per-token limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLimits {
    /// Failed or unauthenticated requests per source: burst and refill.
    pub per_source: Rate,
    /// How long a source's failures are gathered into one audit record.
    pub audit_window: Duration,
    /// Requests per token (any outcome); `None`: unlimited (the default).
    pub per_token: Option<Rate>,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            per_source: Rate {
                burst: DEFAULT_AUTH_BURST,
                per_minute: DEFAULT_AUTH_PER_MINUTE,
            },
            audit_window: DEFAULT_AUDIT_WINDOW,
            per_token: None,
        }
    }
}

/// 429 with `Retry-After` and ESC's error body.
#[derive(Debug)]
pub struct TooManyRequests {
    /// Seconds until a request may pass.
    pub retry_after_secs: u64,
    /// What is limited.
    pub what: &'static str,
}

impl IntoResponse for TooManyRequests {
    fn into_response(self) -> Response {
        let body = crate::wire::ErrorBody {
            code: StatusCode::TOO_MANY_REQUESTS.as_u16(),
            message: format!("{}; retry after {} s", self.what, self.retry_after_secs),
        };
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(self.retry_after_secs));
        response
    }
}

/// The limiter key of a source address: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64 (one host usually has a
/// whole /64).
pub fn source_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        None => IpAddr::from([0u8; 4]),
        Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
        },
    }
}

/// The abuse limits' state, shared by every request.
pub struct Throttle {
    epoch: Instant,
    per_source: Mutex<Limiter<IpAddr>>,
    per_token: Option<Mutex<Limiter<String>>>,
    failures: Mutex<Tallies<String>>,
    limits: AuthLimits,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").field("limits", &self.limits).finish()
    }
}

impl Throttle {
    /// Fresh state for `limits`.
    pub fn new(limits: AuthLimits) -> Throttle {
        let window_ms = i64::try_from(limits.audit_window.as_millis()).unwrap_or(i64::MAX);
        Throttle {
            epoch: Instant::now(),
            per_source: Mutex::new(Limiter::new(limits.per_source, MAX_SOURCES)),
            per_token: limits.per_token.map(|r| Mutex::new(Limiter::new(r, MAX_TOKENS))),
            failures: Mutex::new(Tallies::new(window_ms, MAX_SOURCES)),
            limits,
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> &AuthLimits {
        &self.limits
    }

    fn mono_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Takes a token from `source`'s bucket for a failed authentication.
    pub fn admit_unauthenticated(&self, source: IpAddr) -> Result<(), TooManyRequests> {
        let now = self.mono_ms();
        match lock(&self.per_source).take(&source, now) {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after_secs } => Err(TooManyRequests {
                retry_after_secs,
                what: "too many unauthenticated or failed requests from this address",
            }),
        }
    }

    /// Applies the per-token limit, when one is configured.
    pub fn admit_token(&self, token_id: &str) -> Result<(), TooManyRequests> {
        let Some(limiter) = &self.per_token else {
            return Ok(());
        };
        let now = self.mono_ms();
        match lock(limiter).take(&token_id.to_owned(), now) {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after_secs } => Err(TooManyRequests {
                retry_after_secs,
                what: "too many requests with this token",
            }),
        }
    }

    /// Counts one failed authentication from `source` on `path`; writes the windows that closed.
    pub async fn failed(&self, audit: &AuditLog, source: &str, path: &str, reason: &str) {
        let now = crate::keyring::now_ms();
        let closed = lock(&self.failures).record(&source.to_owned(), path, reason, now);
        write(audit, closed).await;
    }

    /// Writes the windows whose time is up (`all`: every open window) and waits for their commit.
    pub async fn flush(&self, audit: &AuditLog, all: bool) {
        let now = crate::keyring::now_ms();
        let closed = {
            let mut tallies = lock(&self.failures);
            if all {
                tallies.take_all(now)
            } else {
                tallies.take_closed(now)
            }
        };
        write(audit, closed).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The audit record of one closed window.
pub fn tally_event(t: &Tally<String>) -> AuditEvent {
    let detail = serde_json::json!({
        "count": t.count,
        "reasons": t.reasons,
        "windowStartMs": t.start_ms,
        "windowEndMs": t.end_ms,
        "firstPathBytes": t.target_bytes,
        "pathsCut": t.any_cut,
    });
    AuditEvent {
        chain: INSTANCE_CHAIN.to_owned(),
        time_ms: t.end_ms,
        actor: "anonymous".into(),
        source: t.key.clone(),
        action: "auth.failed".into(),
        target: t.target.clone(),
        outcome: "denied".into(),
        detail: detail.to_string(),
    }
}

async fn write(audit: &AuditLog, closed: Vec<Tally<String>>) {
    for t in closed {
        if let Err(e) = audit.record(tally_event(&t)).await {
            tracing::error!(error = %e, source = %t.key, count = t.count, "failed authentications not audited");
        }
    }
}

/// How often closed failure windows are looked for.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Writes closed failure windows periodically, for as long as the state lives.
pub fn spawn_flusher(state: &std::sync::Arc<super::AppState>) {
    let weak = std::sync::Arc::downgrade(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            state.throttle.flush(&state.audit, false).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_keyed_by_address_and_ipv6_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(Some(a)), source_key(Some(b)));
        assert_ne!(source_key(Some(a)), source_key(Some(c)));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(source_key(Some(mapped)), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_ne!(
            source_key(Some("10.1.2.3".parse().unwrap())),
            source_key(Some("10.1.2.4".parse().unwrap()))
        );
    }
}
