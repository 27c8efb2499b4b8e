//! An environment's revision history: listing it (newest first, with each revision's tags) and retracting a
//! revision. The rule of retraction: the latest revision cannot be retracted, a retracted one reads as its
//! replacement (by default the one before it), and caches that may hold it are cleared at once.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::eval::resolve_version;
use super::{env_event, login_of, target};
use crate::core::audit::AuditAction;
use crate::core::authz::Action;
use crate::core::text;
use crate::core::timefmt::rfc3339;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, Success};
use crate::store::envs::Retraction;
use crate::wire::esc;

#[derive(Deserialize)]
pub struct RevisionsQuery {
    before: Option<i64>,
    count: Option<i64>,
}

/// `GET …/versions?before=&count=`: newest first.
pub async fn list_revisions(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    Query(q): Query<RevisionsQuery>,
) -> Result<axum::Json<Vec<esc::EnvironmentRevision>>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    // `before` is exclusive (the Go client reads revision R with `before=R+1&count=1` and pages with the last
    // number it got); absent or 0 means from the newest.
    let before = match q.before {
        Some(b) if b > 0 => (b - 1).min(t.env.head),
        _ => t.env.head,
    };
    let count = q.count.unwrap_or(500).clamp(1, 500);
    let revs = app.store.revisions(&t.env.id, before, count).await?;
    let tags = app.store.revision_tags(&t.env.id, "", 10_000).await?;
    let out: Vec<esc::EnvironmentRevision> = revs
        .iter()
        .map(|r| {
            let mut names: Vec<&str> = tags
                .iter()
                .filter(|tag| tag.revision == r.revision)
                .map(|tag| tag.name.as_str())
                .collect();
            if r.revision == t.env.head {
                names.insert(0, "latest");
            }
            esc::EnvironmentRevision {
                created: rfc3339(r.created_ms),
                creator_login: r.creator.clone(),
                creator_name: r.creator.clone(),
                number: r.revision,
                retracted: r.retracted.as_ref().map(|x| esc::Retracted {
                    at: rfc3339(x.at_ms),
                    by_login: x.by.clone(),
                    reason: x.reason.clone(),
                    replacement: x.replacement,
                }),
                tags: names.into_iter().map(str::to_owned).collect(),
            }
        })
        .collect();
    Ok(axum::Json(out))
}

#[derive(Deserialize)]
pub struct RetractBody {
    replacement: Option<i64>,
    reason: Option<String>,
}

/// `POST …/versions/{version}/retract`: withdraws a revision; reads of it get `replacement` (default: the one
/// before it, or the latest for revision 1). The latest revision cannot be retracted (write a new one instead).
pub async fn retract(
    Caller(app, p, source): Caller,
    Path((org, project, env, version)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    let body: RetractBody = if body.is_empty() {
        RetractBody {
            replacement: None,
            reason: None,
        }
    } else {
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("invalid retract body"))?
    };
    if let Some(reason) = &body.reason {
        text::check("retraction reason", reason, text::MAX_REASON, text::Lines::Multi)?;
    }
    let rev = resolve_version(&app, &t.env, Some(&version)).await?;
    if rev == t.env.head {
        return Err(ApiError::bad_request(
            "the latest revision cannot be retracted; write a new revision",
        ));
    }
    let replacement = body.replacement.unwrap_or(if rev > 1 { rev - 1 } else { t.env.head });
    if replacement < 1 || replacement > t.env.head || replacement == rev {
        return Err(ApiError::bad_request(
            "the replacement must be another existing revision",
        ));
    }
    let r = Retraction {
        at_ms: app.clock.now_ms(),
        by: login_of(&p),
        reason: body.reason.unwrap_or_default(),
        replacement,
    };
    let event = env_event(&app, &p, &source, &t, AuditAction::EnvRevisionRetract)
        .detail(format!("revision {rev} → {replacement}"));
    if !app.store.retract_revision(&t.env.id, rev, &r, &event).await? {
        return Err(ApiError::conflict(format!("revision {rev} is already retracted")));
    }
    // Cached texts and results may hold the retracted revision: this replica forgets them at once (others within
    // DOC_CACHE_TTL / EVAL_CACHE_TTL).
    app.doc_cache.invalidate_all();
    app.eval_cache.invalidate_all();
    Ok(Success::NoContent.into_response())
}
