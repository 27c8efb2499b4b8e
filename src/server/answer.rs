//! What every answer leaves the server with, whichever handler or layer produced it.
//!
//! Rule: every answer carries `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` (answers carrying
//! secrets, tokens or definitions must never be kept by a browser or proxy, and marking every answer means an
//! endpoint added later cannot forget); under TLS also `Strict-Transport-Security`. Every error answer on the
//! ESC, stack and `/api/sesame` APIs (all of `/api/…`) and on the operations endpoints has ESC's
//! `{"code", "message"}` JSON body — also the ones axum's extractors (bad query or path: plain text), the body
//! limit (413), the gzip layer (415), the router (405) or any other layer (429, …) make. Such a body is replaced,
//! never quoted (it could echo the request), by a fixed message for its status (`ApiError::for_status`); the
//! status and the other headers (`Allow`, `Retry-After`, …) are kept. JSON error bodies are left as they are (yaml/check's diagnostics), and so
//! are paths outside those prefixes, which belong to APIs with their own error shapes — except the Vault-compatible
//! API (`/v1/…`), whose non-JSON errors get Vault's `{"errors": [...]}` with the same fixed message.
//!
//! Answers holding plaintext go out through [`secret_body`], whose buffer is wiped once sent.

use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, STRICT_TRANSPORT_SECURITY};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The `Strict-Transport-Security` value sent under TLS: one year, this host only (subdomains are the operator's
/// business).
pub const HSTS: &str = "max-age=31536000";

const NOSNIFF: HeaderName = HeaderName::from_static("x-content-type-options");

/// Which error shape a path's answers take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// ESC's `{"code", "message"}`: every Pulumi/ESC-style API lives under `/api/`; the operations endpoints are
    /// Sesame's own.
    Esc,
    /// Vault's `{"errors": [...]}`: the Vault-compatible API under `/v1/`.
    Vault,
    /// The path's own (an API with its own error shape, or no API).
    Own,
}

impl Shape {
    /// The shape of `path`'s answers.
    pub fn of(path: &str) -> Shape {
        if path.starts_with("/api/") || matches!(path, "/healthz" | "/readyz" | "/metrics") {
            Shape::Esc
        } else if path.starts_with("/v1/") {
            Shape::Vault
        } else {
            Shape::Own
        }
    }
}

/// Whether a content type is JSON (`application/json`, `application/problem+json`, with or without parameters).
fn is_json(value: Option<&HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| {
            let essence = essence.trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false)
}

/// What every answer leaves with (called by [`super::edge`] on each one, whoever made it): the security headers
/// (and `Strict-Transport-Security` when `tls`), and an error body in the shape of its path's API.
pub fn finish_answer(shape: Shape, tls: bool, mut response: Response) -> Response {
    let status = response.status();
    if shape != Shape::Own
        && (status.is_client_error() || status.is_server_error())
        && !is_json(response.headers().get(CONTENT_TYPE))
    {
        // The Vault-compatible API's errors take Vault's shape, `{"errors": [...]}`, with the same fixed message.
        let mut replaced = if shape == Shape::Vault {
            super::error::VaultError::from(ApiError::for_status(status)).into_response()
        } else {
            ApiError::for_status(status).into_response()
        };
        for (name, value) in response.headers() {
            if name != CONTENT_TYPE && name != CONTENT_LENGTH {
                replaced.headers_mut().entry(name).or_insert(value.clone());
            }
        }
        response = replaced;
    }
    let headers = response.headers_mut();
    headers.insert(NOSNIFF, HeaderValue::from_static("nosniff"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if tls {
        headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

/// A buffer that is wiped when the last reference to it goes.
struct Wiped(zeroize::Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// An answer body holding plaintext: its buffer is wiped once the transport has written it and let it go (copies
/// the transport makes, such as TLS records, are the transport's).
pub fn secret_body(bytes: zeroize::Zeroizing<Vec<u8>>) -> axum::body::Body {
    axum::body::Body::from(axum::body::Bytes::from_owner(Wiped(bytes)))
}

/// A JSON answer from bytes already serialized.
pub fn json_answer(body: axum::body::Body) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `{"<field>":"<base64 of bytes>"}`, in one buffer of exactly its size: the standard base64 alphabet (`A–Z a–z
/// 0–9 + / =`) needs no JSON escaping, so the text is written once, without the escape scan or the intermediate
/// `String` a serializer would make. `field` is a fixed ASCII name. The buffer is wiping: the caller decides whether
/// it leaves as a [`secret_body`] or is released as a plain one.
pub fn b64_field_json(field: &'static str, bytes: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
    debug_assert!(field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let too_large = || ApiError::internal(&std::io::Error::other("answer too large to encode"));
    let encoded = sesame_envelope::b64::encoded_len(bytes.len()).ok_or_else(too_large)?;
    let prefix = field.len() + 5; // {"field":"
    let total = encoded.checked_add(prefix + 2).ok_or_else(too_large)?;
    let mut out = zeroize::Zeroizing::new(vec![0u8; total]);
    out[..2].copy_from_slice(b"{\"");
    out[2..2 + field.len()].copy_from_slice(field.as_bytes());
    out[2 + field.len()..prefix].copy_from_slice(b"\":\"");
    // The slice is exactly the encoded length, so this cannot fail; if it did, the answer is an error, never a
    // truncated value.
    sesame_envelope::b64::encode_into(bytes, &mut out[prefix..prefix + encoded]).map_err(|e| ApiError::internal(&e))?;
    out[total - 2..].copy_from_slice(b"\"}");
    Ok(out)
}

/// Serializes `value` (an answer holding plaintext) as JSON into a buffer that never leaves plaintext behind: where
/// `serde_json::to_vec` grows its `Vec` by reallocation — freeing each smaller buffer with its bytes still in it —
/// this writer copies into a larger buffer and wipes the one it leaves.
pub fn secret_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<zeroize::Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut w = WipingWriter(zeroize::Zeroizing::new(Vec::with_capacity(1024)));
    serde_json::to_writer(&mut w, value)?;
    Ok(w.0)
}

/// A growing buffer that wipes what it outgrows (see [`secret_json`]).
struct WipingWriter(zeroize::Zeroizing<Vec<u8>>);

impl std::io::Write for WipingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let need = self.0.len().saturating_add(buf.len());
        if need > self.0.capacity() {
            let mut bigger = Vec::with_capacity(need.max(self.0.capacity().saturating_mul(2)));
            bigger.extend_from_slice(&self.0);
            // The old buffer is wiped (all of its capacity) as the `Zeroizing` it was in is dropped.
            self.0 = zeroize::Zeroizing::new(bigger);
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Wipes every string of a JSON value (secrets parsed from a decrypted body), without recursion, then drops it.
pub fn wipe_json(value: serde_json::Value) {
    use zeroize::Zeroize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(mut s) => s.zeroize(),
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(map) => {
                for (mut k, v) in map {
                    k.zeroize();
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn deeply_nested_json_is_wiped_without_recursion() {
        let mut v = serde_json::json!("hunter2");
        for _ in 0..100_000 {
            v = serde_json::Value::Array(vec![v]);
        }
        // Dropping this value normally would recurse 100,000 levels deep.
        wipe_json(v);
    }

    #[test]
    fn a_base64_field_is_the_json_a_serializer_writes() {
        for len in [0usize, 1, 2, 3, 4, 5, 1023, 1024, 1025, 4096] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let direct = b64_field_json("plaintext", &bytes).unwrap();
            use base64::Engine;
            let want = serde_json::to_vec(&serde_json::json!({
                "plaintext": base64::engine::general_purpose::STANDARD.encode(&bytes)
            }))
            .unwrap();
            assert_eq!(&direct[..], &want[..], "length {len}");
            assert_eq!(direct.len(), direct.capacity(), "exactly sized: nothing reallocated");
        }
    }

    #[test]
    fn secret_json_writes_what_to_vec_writes_at_every_size() {
        for n in [0usize, 1, 10, 1_000, 5_000, 100_000] {
            let v = serde_json::json!({"data": {"plaintext": "x".repeat(n), "n": n}});
            let ours = secret_json(&v).unwrap();
            assert_eq!(&ours[..], &serde_json::to_vec(&v).unwrap()[..], "size {n}");
        }
    }

    #[tokio::test]
    async fn a_secret_body_is_sent_whole() {
        let body = secret_body(zeroize::Zeroizing::new(b"hunter2".to_vec()));
        assert_eq!(&axum::body::to_bytes(body, 64).await.unwrap()[..], b"hunter2");
    }

    #[test]
    fn json_content_types_are_recognised() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/Problem+JSON",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(yes))), "{yes}");
        }
        for no in ["text/plain; charset=utf-8", "application/x-yaml", "text/json-ish", ""] {
            assert!(!is_json(Some(&HeaderValue::from_static(no))), "{no}");
        }
        assert!(!is_json(None));
    }

    /// A router whose handlers answer like layers do: plain text, empty, or JSON of another shape.
    fn app() -> axum::Router {
        use axum::routing::get;
        let too_many = || async {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, "3")],
                "slow down, client 10.0.0.7 with token hunter2",
            )
        };
        axum::Router::new()
            .route("/api/stacks/limited", get(too_many))
            .route("/v1/limited", get(too_many))
            .route("/other/limited", get(too_many))
            .route("/api/esc/empty", get(|| async { StatusCode::BAD_GATEWAY }))
            .route(
                "/api/esc/diagnostics",
                get(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        axum::Json(serde_json::json!({"diagnostics": []})),
                    )
                }),
            )
            .layer(axum::middleware::from_fn(
                |req: axum::extract::Request, next: axum::middleware::Next| async move {
                    let shape = Shape::of(req.uri().path());
                    finish_answer(shape, false, next.run(req).await)
                },
            ))
    }

    async fn call(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_plain_text_429_from_any_layer_gets_the_esc_shape_and_keeps_retry_after() {
        let (status, headers, body) = call("/api/stacks/limited").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers[axum::http::header::RETRY_AFTER], "3");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": 429, "message": "too many requests; retry later"})
        );
        assert!(!body.contains("hunter2"), "the original body is never quoted");
        assert_eq!(headers[NOSNIFF], "nosniff");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn empty_errors_are_shaped_json_errors_and_other_apis_are_left_alone() {
        let (status, headers, body) = call("/api/esc/empty").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(body, r#"{"code":502,"message":"bad gateway"}"#);
        // JSON errors of another shape (yaml/check's diagnostics) pass untouched.
        let (status, _, body) = call("/api/esc/diagnostics").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, r#"{"diagnostics":[]}"#);
        // A path outside the ESC-shaped APIs keeps its own body, but still gets the security headers.
        let (status, headers, body) = call("/other/limited").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(body.starts_with("slow down"));
        assert_eq!(headers[NOSNIFF], "nosniff");
        // The Vault-compatible API's layer errors take Vault's shape, never quoting the original body.
        let (status, headers, body) = call("/v1/limited").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[axum::http::header::RETRY_AFTER], "3");
        assert_eq!(body, r#"{"errors":["too many requests; retry later"]}"#);
        assert_eq!(headers[NOSNIFF], "nosniff");
    }

    #[test]
    fn only_sesame_api_paths_are_shaped() {
        for yes in [
            "/api/esc/environments",
            "/api/stacks/a/b/c/encrypt",
            "/api/sesame/v1/keks",
            "/api/user",
            "/metrics",
        ] {
            assert_eq!(Shape::of(yes), Shape::Esc, "{yes}");
        }
        for vault in ["/v1/secret/data/x", "/v1/transit/encrypt/k"] {
            assert_eq!(Shape::of(vault), Shape::Vault, "{vault}");
        }
        for no in ["/", "/apix", "/metricsx", "/v1x", "/.well-known/openid-configuration"] {
            assert_eq!(Shape::of(no), Shape::Own, "{no}");
        }
    }
}
