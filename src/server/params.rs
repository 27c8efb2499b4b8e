//! The check every request's path and query pass before routing: no control character (NUL, line breaks, escape,
//! DEL, C1 controls), raw or percent-encoded. Path parameters name things (orgs, environments, tags, logins, ids),
//! none of which may hold one, and a database must never see one (PostgreSQL refuses NUL in text). Refused with
//! 400 in ESC's error shape, on every route at once (by [`super::edge`], before routing).

use axum::http::Uri;

use super::error::ApiError;
use crate::core::text::escaped_has_control;

/// 400 for a control character in the path or query.
pub fn check_uri(uri: &Uri) -> Result<(), ApiError> {
    if escaped_has_control(uri.path()) {
        return Err(ApiError::bad_request(
            "the request path must not contain control characters (such as NUL)",
        ));
    }
    if uri.query().is_some_and(escaped_has_control) {
        return Err(ApiError::bad_request(
            "the query string must not contain control characters (such as NUL)",
        ));
    }
    Ok(())
}
