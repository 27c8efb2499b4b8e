//! Tags: revision tags (`…/versions/tags`, a name for a revision; `latest` is built in and always the head) and
//! environment tags (`…/tags`, key/value labels, updated only if unchanged since read). Reading needs the reader
//! role, changing the writer role; each change is audited on the org's chain.

use std::collections::BTreeMap;

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{env_event, login_of, parse_name, target};
use crate::core::audit::AuditAction;
use crate::core::authz::Action;
use crate::core::text::{self, MAX_ENV_TAG_NAME};
use crate::core::timefmt::rfc3339;
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::auth::Principal;
use crate::server::body::JsonBody;
use crate::server::error::{ApiError, Success};
use crate::store::envs::{EnvRecord, EnvTagRecord, RevisionTagRecord};
use crate::wire::esc;

fn rev_tag_json(t: &RevisionTagRecord) -> esc::RevisionTag {
    esc::RevisionTag {
        created: rfc3339(t.created_ms),
        editor_login: t.editor.clone(),
        editor_name: t.editor.clone(),
        modified: rfc3339(t.modified_ms),
        name: t.name.clone(),
        revision: t.revision,
    }
}

/// The built-in `latest` tag: always the head revision.
fn latest_tag_json(env: &EnvRecord) -> esc::RevisionTag {
    esc::RevisionTag {
        created: rfc3339(env.created_ms),
        editor_login: String::new(),
        editor_name: String::new(),
        modified: rfc3339(env.modified_ms),
        name: "latest".to_owned(),
        revision: env.head,
    }
}

/// `?after=&count=`: a page of tags (revision or environment tags), in name order.
#[derive(Deserialize)]
pub struct TagsQuery {
    after: Option<String>,
    count: Option<i64>,
}

impl TagsQuery {
    /// The name after which the page starts (`""`: from the first).
    fn after(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }

    /// How many tags a page holds: 1 to 500, 500 when not asked.
    fn count(&self) -> i64 {
        self.count.unwrap_or(500).clamp(1, 500)
    }

    /// The `nextToken` after a page whose last name is `last`: that name when the page is full, empty at the end.
    fn next_token(&self, len: usize, last: Option<&str>) -> String {
        if len as i64 == self.count() {
            last.unwrap_or_default().to_owned()
        } else {
            String::new()
        }
    }
}

fn tag_not_found(tag: &str) -> ApiError {
    ApiError::not_found(format!("tag '{tag}' not found"))
}

/// Which of an environment's two kinds of tags a handler works on.
#[derive(Clone, Copy)]
enum TagKind {
    /// `…/versions/tags/{tag}`: a name for a revision.
    Revision,
    /// `…/tags/{tag}`: a key/value label.
    Env,
}

/// `DELETE` of the tag `tag` of `kind` on the environment `path` (writers; audited).
async fn delete_tag_of(
    app: &AppState,
    p: &Principal,
    source: &str,
    (org, project, env, tag): (String, String, String, String),
    kind: TagKind,
) -> Result<Response, ApiError> {
    let t = target(app, p, source, (&org, &project, &env), Action::Write).await?;
    let action = match kind {
        TagKind::Revision => AuditAction::EnvRevisionTagDelete,
        TagKind::Env => AuditAction::EnvTagDelete,
    };
    let event = env_event(app, p, source, &t, action).detail(tag.clone());
    let deleted = match kind {
        TagKind::Revision => app.store.delete_revision_tag(&t.env.id, &tag, &event).await?,
        TagKind::Env => app.store.delete_env_tag(&t.env.id, &tag, &event).await?,
    };
    if !deleted {
        return Err(tag_not_found(&tag));
    }
    Ok(Success::NoContent.into_response())
}

/// `GET …/versions/tags`
pub async fn list_revision_tags(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    Query(q): Query<TagsQuery>,
) -> Result<axum::Json<esc::RevisionTags>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let tags = app.store.revision_tags(&t.env.id, q.after(), q.count()).await?;
    let mut out: Vec<esc::RevisionTag> = Vec::new();
    if q.after().is_empty() {
        out.push(latest_tag_json(&t.env));
    }
    out.extend(tags.iter().filter(|t| t.name != "latest").map(rev_tag_json));
    let next = q.next_token(tags.len(), tags.last().map(|t| t.name.as_str()));
    Ok(axum::Json(esc::RevisionTags {
        next_token: next,
        tags: out,
    }))
}

fn check_tag_name(name: &str) -> Result<(), ApiError> {
    parse_name("tag", name)?;
    if name == "latest" {
        return Err(ApiError::bad_request(
            "'latest' is built in and always names the latest revision",
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            "a tag name may not be a number (it would read as a revision)",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct RevisionTagBody {
    name: Option<String>,
    revision: i64,
}

async fn put_revision_tag(
    app: &AppState,
    p: &Principal,
    source: &str,
    path: (String, String, String),
    name: String,
    revision: i64,
    create: bool,
) -> Result<Response, ApiError> {
    let t = target(app, p, source, (&path.0, &path.1, &path.2), Action::Write).await?;
    check_tag_name(&name)?;
    if revision < 1 || revision > t.env.head {
        return Err(ApiError::bad_request(format!("revision {revision} does not exist")));
    }
    let now = app.clock.now_ms();
    let rec = RevisionTagRecord {
        name: name.clone(),
        revision,
        created_ms: now,
        modified_ms: now,
        editor: login_of(p),
    };
    let action = if create {
        AuditAction::EnvRevisionTagCreate
    } else {
        AuditAction::EnvRevisionTagUpdate
    };
    let event = env_event(app, p, source, &t, action).detail(format!("{name} → {revision}"));
    if !app
        .store
        .put_revision_tag(&t.env.id, &rec, create, Some(&event))
        .await?
    {
        return Err(if create {
            ApiError::conflict(format!("tag '{name}' already exists"))
        } else {
            tag_not_found(&name)
        });
    }
    Ok(Success::NoContent.into_response())
}

/// `POST …/versions/tags` with `{"name", "revision"}`
pub async fn create_revision_tag(
    Caller(app, p, source): Caller,
    Path(path): Path<(String, String, String)>,
    JsonBody(body): JsonBody<RevisionTagBody>,
) -> Result<Response, ApiError> {
    let name = body.name.ok_or_else(|| ApiError::bad_request("name is required"))?;
    put_revision_tag(&app, &p, &source, path, name, body.revision, true).await
}

/// `PATCH …/versions/tags/{tag}` with `{"revision"}`
pub async fn update_revision_tag(
    Caller(app, p, source): Caller,
    Path((org, project, env, tag)): Path<(String, String, String, String)>,
    JsonBody(body): JsonBody<RevisionTagBody>,
) -> Result<Response, ApiError> {
    put_revision_tag(&app, &p, &source, (org, project, env), tag, body.revision, false).await
}

/// `GET …/versions/tags/{tag}`
pub async fn get_revision_tag(
    Caller(app, p, source): Caller,
    Path((org, project, env, tag)): Path<(String, String, String, String)>,
) -> Result<axum::Json<esc::RevisionTag>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    if tag == "latest" {
        return Ok(axum::Json(latest_tag_json(&t.env)));
    }
    let rec = app
        .store
        .revision_tag(&t.env.id, &tag)
        .await?
        .ok_or_else(|| tag_not_found(&tag))?;
    Ok(axum::Json(rev_tag_json(&rec)))
}

/// `DELETE …/versions/tags/{tag}`
pub async fn delete_revision_tag(
    Caller(app, p, source): Caller,
    Path(path): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    delete_tag_of(&app, &p, &source, path, TagKind::Revision).await
}

// ---------------------------------------------------------------------------------------------------------------
// Environment (key/value) tags

fn env_tag_json(t: &EnvTagRecord) -> esc::EnvironmentTag {
    esc::EnvironmentTag {
        created: rfc3339(t.created_ms),
        editor_login: t.editor.clone(),
        editor_name: t.editor.clone(),
        modified: rfc3339(t.modified_ms),
        name: t.name.clone(),
        value: t.value.clone(),
    }
}

/// `GET …/tags`: `{"tags": {name: tag}, "nextToken"}`
pub async fn list_tags(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    Query(q): Query<TagsQuery>,
) -> Result<axum::Json<esc::EnvironmentTags>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let tags = app.store.env_tags(&t.env.id, q.after(), q.count()).await?;
    let map: BTreeMap<String, esc::EnvironmentTag> = tags.iter().map(|t| (t.name.clone(), env_tag_json(t))).collect();
    let next = q.next_token(tags.len(), tags.last().map(|t| t.name.as_str()));
    Ok(axum::Json(esc::EnvironmentTags {
        next_token: next,
        tags: map,
    }))
}

#[derive(Deserialize)]
pub struct CreateTagBody {
    name: String,
    value: String,
}

/// An environment tag as written: a name of 1–100 printable characters on one line, a bounded value.
fn check_env_tag(tag: &CreateTagBody) -> Result<(), ApiError> {
    if tag.name.is_empty() {
        return Err(ApiError::bad_request("a tag name is 1–100 printable characters"));
    }
    text::check("tag name", &tag.name, MAX_ENV_TAG_NAME, text::Lines::Single)?;
    text::check("tag value", &tag.value, text::MAX_TAG_VALUE, text::Lines::Multi)?;
    Ok(())
}

/// `POST …/tags` with `{"name", "value"}`
pub async fn create_tag(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<CreateTagBody>,
) -> Result<axum::Json<esc::EnvironmentTag>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    check_env_tag(&body)?;
    let now = app.clock.now_ms();
    let rec = EnvTagRecord {
        name: body.name.clone(),
        value: body.value,
        created_ms: now,
        modified_ms: now,
        editor: login_of(&p),
    };
    let event = env_event(&app, &p, &source, &t, AuditAction::EnvTagCreate).detail(body.name.clone());
    if !app.store.create_env_tag(&t.env.id, &rec, Some(&event)).await? {
        return Err(ApiError::conflict(format!("tag '{}' already exists", body.name)));
    }
    Ok(axum::Json(env_tag_json(&rec)))
}

/// `GET …/tags/{tag}`
pub async fn get_tag(
    Caller(app, p, source): Caller,
    Path((org, project, env, tag)): Path<(String, String, String, String)>,
) -> Result<axum::Json<esc::EnvironmentTag>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let rec = app
        .store
        .env_tag(&t.env.id, &tag)
        .await?
        .ok_or_else(|| tag_not_found(&tag))?;
    Ok(axum::Json(env_tag_json(&rec)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTagBody {
    current_tag: CurrentTag,
    new_tag: CreateTagBody,
}

#[derive(Deserialize)]
pub struct CurrentTag {
    value: String,
}

/// `PATCH …/tags/{tag}` with `{"currentTag": {"value"}, "newTag": {"name", "value"}}`: applies only if the tag
/// still has `currentTag.value` (409 otherwise).
pub async fn update_tag(
    Caller(app, p, source): Caller,
    Path((org, project, env, tag)): Path<(String, String, String, String)>,
    JsonBody(body): JsonBody<UpdateTagBody>,
) -> Result<axum::Json<esc::EnvironmentTag>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    check_env_tag(&body.new_tag)?;
    let current = app
        .store
        .env_tag(&t.env.id, &tag)
        .await?
        .ok_or_else(|| tag_not_found(&tag))?;
    if current.value != body.current_tag.value {
        return Err(ApiError::conflict(format!("tag '{tag}' has changed since it was read")));
    }
    let rec = EnvTagRecord {
        name: body.new_tag.name,
        value: body.new_tag.value,
        created_ms: current.created_ms,
        modified_ms: app.clock.now_ms(),
        editor: login_of(&p),
    };
    let event = env_event(&app, &p, &source, &t, AuditAction::EnvTagUpdate).detail(format!("{tag} → {}", rec.name));
    if !app.store.update_env_tag(&t.env.id, &tag, &rec, &event).await? {
        return Err(ApiError::conflict(format!("tag '{}' already exists", rec.name)));
    }
    Ok(axum::Json(env_tag_json(&rec)))
}

/// `DELETE …/tags/{tag}`
pub async fn delete_tag(
    Caller(app, p, source): Caller,
    Path(path): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    delete_tag_of(&app, &p, &source, path, TagKind::Env).await
}
