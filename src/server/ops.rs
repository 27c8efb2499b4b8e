//! Operations endpoints: liveness (`/healthz`), readiness (`/readyz`: the store answers) and Prometheus `/metrics`
//! (keyring counters; no label ever carries a secret or a name).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::AppState;
use super::error::ApiError;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store answers, so requests can be served.
pub async fn readyz(State(app): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    app.store.is_bootstrapped().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
    })?;
    Ok("ready")
}

/// `GET /metrics`: Prometheus text exposition of the keyring counters.
pub async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let m = app.keyring.metrics();
    let mut out = String::new();
    for (name, help, value) in [
        (
            "sesame_kms_unwrap_total",
            "KEK unwrap calls (KMS/HSM round trips on remote adapters).",
            &m.kms_unwraps,
        ),
        ("sesame_kms_wrap_total", "KEK wrap calls.", &m.kms_wraps),
        (
            "sesame_dek_cache_hits_total",
            "DEK lookups answered from the cache.",
            &m.cache_hits,
        ),
        (
            "sesame_dek_cache_misses_total",
            "DEK lookups that loaded and unwrapped.",
            &m.cache_misses,
        ),
        ("sesame_deks_created_total", "DEKs created.", &m.deks_created),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
