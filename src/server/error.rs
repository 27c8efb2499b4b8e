//! The one HTTP error type. Every failure leaves the server as ESC's error body `{"code": <status>, "message": …}`;
//! status codes are chosen here and nowhere else: handlers and layers name an answer ([`ApiError`]'s constructors,
//! the `From` conversions of the layers' errors, [`Success`] for the success answers) and this module maps it to a
//! status. Causes that could say too much (store or KMS failures) are logged with the request and answered with a
//! plain message; a store failure is always a 500 whose message names nothing of the cause, so handlers pass
//! [`StoreError`]s on with `?`.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sesame_kms::KmsError;

use crate::keyring::KeyringError;
use crate::store::StoreError;
use crate::wire::ErrorBody;

/// An HTTP error with ESC's body shape.
#[derive(Clone, Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// ESC's `diagnostics` list, for invalid environment documents.
    diagnostics: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with this status and a message safe to show the caller (private: callers name the answer).
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
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

    /// 429: a rate limit is spent (the caller adds `Retry-After`).
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message)
    }

    /// 503: a service the server needs (the store, a key service) does not answer now; retrying may help.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500 for a failure the caller cannot fix; the cause goes to the log only.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }

    /// A KEK that could not be opened or did not round-trip when it was offered for registration: the adapter's
    /// classified error (its messages name the KEK and the failure, never key material or credentials) — 400 for
    /// what the caller can fix (URI, configuration, missing key, permissions, a disabled key), 503 otherwise.
    pub fn kek_refused(e: &KmsError) -> Self {
        let status = match e {
            KmsError::InvalidUri { .. } | KmsError::Unsupported { .. } | KmsError::Config { .. } => {
                StatusCode::BAD_REQUEST
            }
            KmsError::NotFound { .. } => StatusCode::BAD_REQUEST,
            KmsError::PermissionDenied { .. } | KmsError::Disabled { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }

    /// The error answer for a status some layer chose without ESC's body (an extractor, the body limit, the gzip
    /// layer, the router): the same status with a fixed message for it, never the layer's body (it could echo the
    /// request).
    pub fn for_status(status: StatusCode) -> Self {
        let message = match status {
            StatusCode::BAD_REQUEST => {
                "the request is malformed: its path, query string or body could not be read".into()
            }
            StatusCode::NOT_FOUND => "no such endpoint".into(),
            StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this endpoint".into(),
            StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "unsupported media type (bodies may be sent as is or with Content-Encoding: gzip)".into()
            }
            StatusCode::TOO_MANY_REQUESTS => "too many requests; retry later".into(),
            other => other.canonical_reason().unwrap_or("error").to_lowercase(),
        };
        Self::new(status, message)
    }

    /// The same answer with the message placed at a line of the caller's text (`line N: …`); diagnostics dropped.
    pub fn at_line(self, line: usize) -> Self {
        Self::new(self.status, format!("line {line}: {}", self.message))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether this is a 404 (something not found, or not visible to the caller).
    pub fn is_not_found(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }

    /// Whether this is a 4xx: the request, not the server, was at fault.
    pub fn is_client_error(&self) -> bool {
        self.status.is_client_error()
    }

    /// Whether this is a 401 (no valid credentials).
    pub fn is_unauthorized(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
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
                ApiError::unavailable("the key service is unavailable; retry later")
            }
            other => ApiError::internal(&other),
        }
    }
}

/// A request body that could not be read: 413 over the body limit, else 400 (a bad `Content-Encoding`, a broken
/// stream). The rejection's own text is not shown.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("request body is too large")
        } else {
            ApiError::bad_request("request body could not be read (is its Content-Encoding valid?)")
        }
    }
}

/// A store failure: always a 500 whose message says nothing of the cause (ids, SQL, connection details); the cause
/// goes to the log. Answers such as "not found" or "name taken" are the handler's, from what the store returned.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(&e)
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

/// A refused OAuth 2.0 request (RFC 6749 §5.2: 400 with `{"error", "error_description"}`), or a server failure
/// in ESC's shape. The token endpoints answer with it.
#[derive(Debug)]
pub enum OAuthError {
    /// The request is refused; `code` is the RFC 6749 error code.
    Refused {
        /// `invalid_request`, `invalid_grant`, `unauthorized_client` or `unsupported_grant_type`.
        code: &'static str,
        /// For people; never the token.
        description: String,
    },
    /// The server failed.
    Server(ApiError),
}

impl OAuthError {
    /// `invalid_request`: missing, repeated or malformed parameters.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::refused("invalid_request", description)
    }

    /// `invalid_grant`: the subject token is invalid, expired, or from an issuer the org does not trust.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::refused("invalid_grant", description)
    }

    /// `unauthorized_client`: the token is valid but no policy lets it have what it asks for.
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::refused("unauthorized_client", description)
    }

    /// `unsupported_grant_type`.
    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::refused("unsupported_grant_type", description)
    }

    fn refused(code: &'static str, description: impl Into<String>) -> Self {
        OAuthError::Refused {
            code,
            description: description.into(),
        }
    }

    /// The error code (`server_error` for a failure of the server).
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::Refused { code, .. } => code,
            OAuthError::Server(_) => "server_error",
        }
    }

    /// The description.
    pub fn description(&self) -> &str {
        match self {
            OAuthError::Refused { description, .. } => description,
            OAuthError::Server(e) => e.message(),
        }
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        OAuthError::Server(e)
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        OAuthError::Server(e.into())
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        match self {
            OAuthError::Refused { code, description } => {
                let body = crate::wire::trust::OAuthErrorBody {
                    error: code.to_owned(),
                    error_description: description,
                };
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
            OAuthError::Server(e) => e.into_response(),
        }
    }
}

/// An error of the Vault-compatible API (`/v1/…`): Vault's status and its `{"errors": [...]}` body.
#[derive(Clone, Debug)]
pub struct VaultError {
    status: StatusCode,
    errors: Vec<String>,
}

impl VaultError {
    fn new(status: StatusCode, errors: Vec<String>) -> Self {
        VaultError { status, errors }
    }

    /// 403 `permission denied`: no token, an unknown or expired one, or a role that does not allow the call —
    /// Vault's one answer for all of them.
    pub fn permission_denied() -> Self {
        Self::new(StatusCode::FORBIDDEN, vec!["permission denied".into()])
    }

    /// 400 with Vault's message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, vec![message.into()])
    }

    /// 404 with no message: what Vault answers for a missing key and an empty list.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, Vec::new())
    }

    /// 404: no such endpoint.
    pub fn unsupported_path() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            vec!["1 error occurred:\n\t* unsupported path\n\n".into()],
        )
    }

    /// 405: the endpoint exists but not with this method.
    pub fn unsupported_operation() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            vec!["1 error occurred:\n\t* unsupported operation\n\n".into()],
        )
    }

    /// A Transit refusal with Vault's message.
    pub fn refused(r: crate::core::transit::Refusal) -> Self {
        use crate::core::transit::RefusalKind;
        let status = match r.kind {
            RefusalKind::Invalid => StatusCode::BAD_REQUEST,
            RefusalKind::NotFound => StatusCode::NOT_FOUND,
            RefusalKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, vec![r.message])
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether this is Vault's `permission denied` (a refusal already audited as such).
    pub fn is_permission_denied(&self) -> bool {
        self.status == StatusCode::FORBIDDEN
    }

    /// Whether the server, not the request, failed.
    pub fn is_server_error(&self) -> bool {
        self.status.is_server_error()
    }

    /// The messages.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }
}

/// Sesame's own errors (store, keyring, throttles, body limits) in Vault's shape, with the same status and message.
impl From<ApiError> for VaultError {
    fn from(e: ApiError) -> Self {
        VaultError::new(e.status, vec![e.message])
    }
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<KeyringError> for VaultError {
    fn from(e: KeyringError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<crate::core::transit::Refusal> for VaultError {
    fn from(r: crate::core::transit::Refusal) -> Self {
        VaultError::refused(r)
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        let body = crate::wire::transit::Errors { errors: self.errors };
        (self.status, Json(body)).into_response()
    }
}

/// The status of a Transit batch answer (Vault's rule, decided by `core::transit::batch::status`).
pub fn batch_status(s: crate::core::transit::batch::BatchStatus) -> StatusCode {
    use crate::core::transit::batch::BatchStatus;
    match s {
        BatchStatus::Ok => StatusCode::OK,
        BatchStatus::UserError => StatusCode::BAD_REQUEST,
        BatchStatus::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        BatchStatus::Override(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
    }
}

/// A success answer, named: handlers return these instead of choosing a status themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Success {
    /// 200: here is what was asked for.
    Ok,
    /// 201: the resource was made.
    Created,
    /// 202: accepted; the work continues (a migration started, an invitation waiting for its answer).
    Accepted,
    /// 204: done, nothing to say.
    NoContent,
}

impl Success {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Success::Ok => StatusCode::OK,
            Success::Created => StatusCode::CREATED,
            Success::Accepted => StatusCode::ACCEPTED,
            Success::NoContent => StatusCode::NO_CONTENT,
        }
    }

    /// This status with a body.
    pub fn with<B: IntoResponse>(self, body: B) -> (StatusCode, B) {
        (self.status(), body)
    }
}

impl IntoResponse for Success {
    fn into_response(self) -> Response {
        self.status().into_response()
    }
}

/// The status of `yaml/check`'s answer, whose body (properties and diagnostics) is sent either way: 400 when the
/// definition has errors, as ESC answers.
pub fn check_status(has_errors: bool) -> StatusCode {
    if has_errors {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every store failure is a 500 that names nothing of its cause.
    #[test]
    fn store_errors_are_plain_500s() {
        let secretish = "tokens.token_hash=deadbeef host=db.internal password=hunter2";
        let errors = [
            StoreError::UnsupportedUrl {
                scheme: secretish.to_owned(),
            },
            StoreError::Connect(sqlx::Error::Protocol(secretish.to_owned())),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(sqlx::Error::Protocol(
                secretish.to_owned(),
            ))),
            StoreError::Corrupt {
                table: "tokens",
                detail: secretish.to_owned(),
            },
            StoreError::Database(sqlx::Error::Protocol(secretish.to_owned())),
            StoreError::Database(sqlx::Error::PoolTimedOut),
            StoreError::Database(sqlx::Error::RowNotFound),
            StoreError::Shared(StoreError::Database(sqlx::Error::Protocol(secretish.to_owned())).to_string()),
        ];
        for e in errors {
            // A new variant must be added to this test.
            match &e {
                StoreError::UnsupportedUrl { .. }
                | StoreError::Connect(_)
                | StoreError::Migrate(_)
                | StoreError::Corrupt { .. }
                | StoreError::Database(_)
                | StoreError::Shared(_) => {}
            }
            let shown = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR, "{shown}");
            assert_eq!(api.message(), "internal server error", "{shown}");
            assert!(api.diagnostics.is_none());
            for word in ["hunter2", "deadbeef", "tokens", "db.internal", "pool", "no rows"] {
                assert!(!api.message().contains(word), "{word} leaked from {shown}");
            }
        }
    }

    /// `?` on a store call gives the same answer.
    #[test]
    fn question_mark_converts_store_errors() {
        fn handler() -> Result<(), ApiError> {
            Err(StoreError::Database(sqlx::Error::PoolClosed))?;
            Ok(())
        }
        let e = handler().unwrap_err();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message(), "internal server error");
    }

    #[test]
    fn success_answers_have_their_statuses() {
        assert_eq!(Success::Ok.status(), StatusCode::OK);
        assert_eq!(Success::Created.status(), StatusCode::CREATED);
        assert_eq!(Success::Accepted.status(), StatusCode::ACCEPTED);
        assert_eq!(Success::NoContent.into_response().status(), StatusCode::NO_CONTENT);
        assert_eq!(check_status(true), StatusCode::BAD_REQUEST);
        assert_eq!(check_status(false), StatusCode::OK);
    }
}
