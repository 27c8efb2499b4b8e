//! The one HTTP error type. Every failure leaves the server as ESC's error body `{"code": <status>, "message": …}`;
//! status codes are chosen here and nowhere else. Causes that could say too much (store or KMS failures) are logged
//! with the request and answered with a plain message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::keyring::KeyringError;
use crate::wire::ErrorBody;

/// An HTTP error with ESC's body shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// ESC's `diagnostics` list, for invalid environment documents.
    diagnostics: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with this status and a message safe to show the caller.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            diagnostics: None,
        }
    }

    /// 400 with ESC's diagnostics list (an invalid environment definition).
    pub fn with_diagnostics(message: impl Into<String>, diagnostics: serde_json::Value) -> Self {
        ApiError {
            diagnostics: Some(diagnostics),
            ..Self::bad_request(message)
        }
    }

    /// 403: the caller sees the target but its role does not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 409: a conflicting write (stale etag, name taken).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 404: not found — also the answer for things that exist but the caller may not see, so existence never
    /// leaks across orgs.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 413: the body is too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 500/503 for a failure the caller cannot fix; the cause goes to the log only.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message shown to the caller (never a secret).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<KeyringError> for ApiError {
    fn from(e: KeyringError) -> Self {
        match e {
            KeyringError::Undecryptable => ApiError::bad_request(
                "ciphertext could not be decrypted: it is malformed, was altered, or belongs to another stack",
            ),
            KeyringError::TooLarge => ApiError::too_large("plaintext is too large to encrypt"),
            KeyringError::Kms(ref kms) if kms.is_retryable() => {
                tracing::warn!(error = %kms, "key service unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the key service is unavailable; retry later",
                )
            }
            other => ApiError::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(diagnostics) = self.diagnostics {
            let body = serde_json::json!({
                "code": self.status.as_u16(),
                "message": self.message,
                "diagnostics": diagnostics,
            });
            return (self.status, Json(body)).into_response();
        }
        let body = ErrorBody {
            code: self.status.as_u16(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::core::text::TextError> for ApiError {
    fn from(e: crate::core::text::TextError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}
