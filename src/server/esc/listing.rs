//! Listing environments: `GET /api/esc/environments` (every org) and `…/{org}`, a page at a time. Which rows the
//! caller sees is decided by the store's query from the caller's grants ([`viewer`]), so a page and its
//! continuation token are built from visible rows only.

use axum::extract::{Path, Query};
use serde::Deserialize;

use crate::core::timefmt::rfc3339;
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::store::TokenKind;
use crate::store::envs::Viewer;
use crate::wire::esc;

/// Page size of listings.
const PAGE: i64 = 500;

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "continuationToken")]
    continuation_token: Option<String>,
}

/// The continuation token: the last listed `(org, project, name)`, base64url. It holds only names the caller was
/// just shown, and a crafted one only sets where a listing starts among the environments the caller may see, so
/// it reveals nothing.
fn decode_cursor(token: Option<&str>) -> Result<Option<(String, String, String)>, ApiError> {
    use base64::Engine;
    let Some(t) = token.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request("invalid continuationToken");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(o), Some(p), Some(n)) => Ok(Some((o.to_owned(), p.to_owned(), n.to_owned()))),
        _ => Err(bad()),
    }
}

fn encode_cursor(org: &str, project: &str, name: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{org}/{project}/{name}"))
}

/// Whose grants decide what `p` sees in a listing (the same rules as [`AppState::access`]).
fn viewer(p: &Principal) -> Viewer<'_> {
    if p.instance_admin {
        return Viewer::All;
    }
    match (p.kind, &p.user_id, &p.org_id, &p.team_id) {
        (TokenKind::Personal, Some(user), _, _) => Viewer::User(user),
        (TokenKind::Organization, _, Some(org), _) => Viewer::Org(org),
        (TokenKind::Team, _, Some(org_id), Some(team_id)) => Viewer::Team { org_id, team_id },
        _ => Viewer::Nobody,
    }
}

/// One page of the environments the caller may read. Visibility is decided by the store's query, so the page and
/// its `nextToken` are built from visible rows only.
async fn list(
    app: &AppState,
    p: &Principal,
    source: &str,
    org: Option<&str>,
    token: Option<&str>,
) -> Result<axum::Json<esc::OrgEnvironments>, ApiError> {
    let only = match org {
        Some(name) => Some(app.org_access(p, source, name).await?),
        None => None,
    };
    let cursor = decode_cursor(token)?;
    let after = cursor.as_ref().map(|(o, p, n)| (o.as_str(), p.as_str(), n.as_str()));
    let rows = app
        .store
        .list_envs(
            viewer(p),
            // A confined token (minted by exchange) lists its own org only.
            only.as_ref()
                .map(|(o, _)| o.id.as_str())
                .or(p.confined_org_id.as_deref()),
            after,
            PAGE,
        )
        .await?;
    let environments = rows
        .iter()
        .map(|(org_name, env)| esc::OrgEnvironment {
            created: rfc3339(env.created_ms),
            modified: rfc3339(env.modified_ms),
            name: env.name.clone(),
            organization: org_name.clone(),
            project: env.project.clone(),
        })
        .collect();
    let next_token = match rows.last() {
        Some((o, last)) if rows.len() as i64 == PAGE => Some(encode_cursor(o, &last.project, &last.name)),
        _ => None,
    };
    Ok(axum::Json(esc::OrgEnvironments {
        environments,
        next_token,
    }))
}

/// `GET /api/esc/environments`: every environment the caller can see, in every org.
pub async fn list_all(
    Caller(app, p, source): Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<esc::OrgEnvironments>, ApiError> {
    list(&app, &p, &source, None, q.continuation_token.as_deref()).await
}

/// `GET /api/esc/environments/{org}`
pub async fn list_org(
    Caller(app, p, source): Caller,
    Path(org): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<esc::OrgEnvironments>, ApiError> {
    list(&app, &p, &source, Some(&org), q.continuation_token.as_deref()).await
}
