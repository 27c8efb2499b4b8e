//! Request-body extraction that answers every failure in ESC's error shape and never echoes the body back.
//!
//! The body reaching these extractors is already gunzipped (when sent with `Content-Encoding: gzip`) and bounded
//! by the router's body limit, which therefore bounds the *decompressed* size: a gzip bomb stops at the limit.
//! serde's messages can quote the offending input — possibly a secret sent in the wrong field — so only the
//! position and the kind of error are reported.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        if crate::core::text::json_has_nul(&bytes) {
            return Err(ApiError::bad_request(
                "request body must not contain NUL characters (\\u0000)",
            ));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| json_error(&e))
    }
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("request body is too large")
    } else {
        ApiError::bad_request("request body could not be read (is its Content-Encoding valid?)")
    }
}

/// A message about a JSON error that names where and what kind, never the input itself.
fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "request body is not valid JSON",
        Category::Data => "request body does not have the expected fields and types",
    };
    ApiError::bad_request(format!("{what} (line {}, column {})", e.line(), e.column()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_quote_the_input() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Want {
            n: u32,
        }
        let err = serde_json::from_slice::<Want>(br#"{"n": "hunter2-secret"}"#).unwrap_err();
        let api = json_error(&err);
        assert!(!format!("{api:?}").contains("hunter2"));
    }
}
