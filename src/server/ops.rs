//! Operations endpoints: liveness (`/healthz`), readiness (`/readyz`: the store answers) and Prometheus `/metrics`
//! (keyring counters; no label ever carries a secret or a name). With `--metrics-token-file`, `/metrics` answers
//! only a request carrying that file's token as `Authorization: Bearer …` (compared in constant time, by digest).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};

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
        ApiError::unavailable("store unavailable")
    })?;
    Ok("ready")
}

/// Longest metrics token file read (a token is a line; anything longer is not one).
const MAX_METRICS_TOKEN_FILE: u64 = 4096;

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The digest of the token in `path` (its contents without surrounding whitespace), or why it cannot be used.
/// The reason never quotes the file.
pub fn read_metrics_token(path: &std::path::Path) -> Result<[u8; 32], String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = zeroize::Zeroizing::new(String::new());
    file.take(MAX_METRICS_TOKEN_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_METRICS_TOKEN_FILE {
        return Err(format!("the file is longer than {MAX_METRICS_TOKEN_FILE} bytes"));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err("the file holds no token".into());
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err("the token must be one word of printable characters".into());
    }
    Ok(sha256(token.as_bytes()))
}

/// Whether `headers` carry the metrics token whose digest is `want`.
fn metrics_token_ok(headers: &HeaderMap, want: &[u8; 32]) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(token.trim().as_bytes()), want).is_ok()
}

/// `GET /metrics`: Prometheus text exposition of the keyring counters.
pub async fn metrics(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(want) = &app.metrics_token
        && !metrics_token_ok(&headers, want)
    {
        let mut refused = ApiError::unauthorized("/metrics needs the metrics token as 'Authorization: Bearer <token>'")
            .into_response();
        refused
            .headers_mut()
            .insert(WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        return refused;
    }
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
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn the_metrics_token_is_read_trimmed_and_checked_as_a_bearer_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.token");
        std::fs::write(&path, "  scrape-me-0123\n").unwrap();
        let want = read_metrics_token(&path).unwrap();
        assert!(metrics_token_ok(&with_auth("Bearer scrape-me-0123"), &want));
        assert!(metrics_token_ok(&with_auth("bearer scrape-me-0123"), &want));
        for wrong in [
            "Bearer scrape-me-012",
            "Bearer scrape-me-01234",
            "Basic scrape-me-0123",
            "scrape-me-0123",
            "",
        ] {
            assert!(!metrics_token_ok(&with_auth(wrong), &want), "{wrong}");
        }
        assert!(!metrics_token_ok(&HeaderMap::new(), &want));
    }

    #[test]
    fn unusable_metrics_token_files_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in [
            ("empty", "".to_owned()),
            ("blank", " \n\t".to_owned()),
            ("two-words", "hunter2 hunter3".to_owned()),
            ("huge", "h".repeat(5000)),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &contents).unwrap();
            let err = read_metrics_token(&path).unwrap_err();
            assert!(!err.contains("hunter") && !err.contains("hhhh"), "{name}: {err}");
        }
        assert!(read_metrics_token(&dir.path().join("missing")).is_err());
    }
}
