//! Request-body extraction that answers every failure in ESC's error shape and never echoes the body back.
//!
//! The body reaching these extractors is already gunzipped (when sent with `Content-Encoding: gzip`) and bounded
//! by the body limit the edge (`super::edge`) sets, which therefore bounds the *decompressed* size: a gzip bomb
//! stops at the limit. serde's messages can quote the offending input — possibly a secret sent in the wrong
//! field — so only the position and the kind of error are reported. Once parsed, the body's buffer is zeroed when
//! nothing else holds it.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::Deserialize;
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
        JsonBytes::from_request(req, state).await?.parse().map(JsonBody)
    }
}

/// A JSON request body kept as its bytes, so that what is parsed from it can borrow its strings in place (a
/// plaintext is then never copied out of the body). Checked for NUL characters when extracted; wiped when dropped,
/// as [`JsonBody`]'s buffer is.
pub struct JsonBytes(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = JsonBytes(Bytes::from_request(req, state).await?);
        if crate::core::text::json_has_nul(&bytes.0) {
            return Err(ApiError::bad_request(
                "request body must not contain NUL characters (\\u0000)",
            ));
        }
        Ok(bytes)
    }
}

impl JsonBytes {
    /// The body as a `T`, which may borrow from it; errors as [`JsonBody`]'s.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.0).map_err(|e| json_error(&e))
    }
}

impl Drop for JsonBytes {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.0));
    }
}

/// Zeroes a request body once it is parsed (it may hold plaintexts), when this is the only reference to its
/// buffer; a buffer still shared with the connection's read buffer is the transport's to reuse.
pub(super) fn wipe(bytes: Bytes) {
    use zeroize::Zeroize;
    if let Ok(mut owned) = bytes.try_into_mut() {
        owned.as_mut().zeroize();
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

    #[test]
    fn an_unshared_body_is_zeroed_after_parsing() {
        let body = Bytes::from(br#"{"plaintext":"aHVudGVyMg=="}"#.to_vec());
        let ptr = body.as_ptr();
        let len = body.len();
        // What `wipe` does, on a clone of the handle so the buffer can be checked afterwards.
        let mut owned = body.try_into_mut().expect("unique");
        assert_eq!(owned.as_ptr(), ptr, "try_into_mut keeps the buffer");
        zeroize::Zeroize::zeroize(owned.as_mut());
        assert_eq!(&owned[..], &vec![0u8; len][..]);
        // A shared buffer is left alone (and wipe does not panic on it).
        let shared = Bytes::from(b"abc".to_vec());
        let keep = shared.clone();
        wipe(shared);
        assert_eq!(&keep[..], b"abc");
    }
}
