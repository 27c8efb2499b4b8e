//! The check every request's path and query pass before routing: no control character (NUL, line breaks, escape,
//! DEL, C1 controls), raw or percent-encoded. Path parameters name things (orgs, environments, tags, logins, ids),
//! none of which may hold one, and a database must never see one (PostgreSQL refuses NUL in text). Refused with
//! 400 in ESC's error shape, on every route at once.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::core::text::escaped_has_control;

/// Middleware: 400 for a control character in the path or query.
pub async fn refuse_control_characters(req: Request, next: Next) -> Response {
    let uri = req.uri();
    if escaped_has_control(uri.path()) {
        return ApiError::bad_request("the request path must not contain control characters (such as NUL)")
            .into_response();
    }
    if uri.query().is_some_and(escaped_has_control) {
        return ApiError::bad_request("the query string must not contain control characters (such as NUL)")
            .into_response();
    }
    next.run(req).await
}
