//! The Pulumi ESC environments API under `/api/esc/environments` (conformance/esc-api/swagger.yaml), served so that
//! the official clients work unchanged.
//!
//! Every handler resolves the org and the caller's access first and makes one `authorize` call for what it does;
//! environments the caller may not see answer 404 exactly like missing ones. Definitions are stored with their
//! `fn::secret` plaintexts sealed under the environment's DEK (associated data: org id and environment id), spliced
//! in by byte range so comments and formatting survive. Open results are sealed under the same DEK (associated data
//! naming the session) and kept in the database until they expire, so any replica answers reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value as JsonValue;

use super::answer::{secret_body, wipe_json};
use super::auth::{Auth, Principal};
use super::body::JsonBody;
use super::error::{self, ApiError, Success};
use super::esc_eval::{self, Caller, env_scope, resolve_version, revision_yaml};
use super::{AppState, ClientAddr};
use crate::core::audit::{AuditAction, AuditEvent};
use crate::core::authz::{Access, Action};
use crate::core::env::{Mode, PropertyPath};
use crate::core::keys::{Name, open_session_aad};
use crate::core::text::{self, MAX_ENV_TAG_NAME};
use crate::core::timefmt::{parse_go_duration, rfc3339};
use crate::store::envs::{EnvRecord, EnvTagRecord, Retraction, RevisionTagRecord, SessionRecord, Viewer, Written};
use crate::store::{Inserted, OrgRecord, TokenKind};
use crate::wire::esc;

/// The longest an open session may last.
pub const MAX_OPEN_DURATION: Duration = Duration::from_secs(24 * 3600);
/// How long an open session lasts when the request names no duration (swagger's default).
pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(3600);
/// Page size of listings.
const PAGE: i64 = 500;
/// The id under which anonymous documents (`yaml/open`) seal their sessions: one DEK per org for them.
const ANONYMOUS_ENV: &str = "anonymous";

const YAML: &str = "application/x-yaml";

fn yaml_response(text: String, headers: &[(axum::http::HeaderName, String)]) -> Response {
    let mut resp = Success::Ok.with(text).into_response();
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(YAML));
    with_headers(resp, headers)
}

fn with_headers(mut resp: Response, headers: &[(axum::http::HeaderName, String)]) -> Response {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(name.clone(), v);
        }
    }
    resp
}

fn internal(e: impl std::error::Error) -> ApiError {
    ApiError::internal(&e)
}

/// Who did it, as ESC's `*Login` fields show it.
fn login_of(p: &Principal) -> String {
    p.user_login.clone().unwrap_or_else(|| format!("token:{}", p.token_id))
}

fn parse_name(what: &str, s: &str) -> Result<(), ApiError> {
    s.parse::<Name>()
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("invalid {what} name '{s}': {e}")))
}

/// Environment names that would shadow a route under `/api/esc/environments/{org}/…`: refused by every way of
/// naming an environment (create, rename, clone).
const RESERVED_ENV_NAMES: &[&str] = &["yaml", "open"];

fn refuse_reserved(name: &str) -> Result<(), ApiError> {
    if RESERVED_ENV_NAMES.contains(&name) {
        return Err(ApiError::bad_request(format!(
            "'{name}' is a reserved environment name"
        )));
    }
    Ok(())
}

/// The ETag of a revision: the revision number and a digest binding it to the environment's id.
pub fn etag(env_id: &str, revision: i64) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{env_id}:{revision}").as_bytes());
    let hex: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{revision}-{hex}\"")
}

/// The revision an ETag names, if it is one of this environment's.
fn etag_revision(env_id: &str, tag: &str) -> Option<i64> {
    let t = tag.trim().trim_start_matches("W/");
    let rev: i64 = t.trim_matches('"').split_once('-')?.0.parse().ok()?;
    (etag(env_id, rev) == format!("\"{}\"", t.trim_matches('"'))).then_some(rev)
}

/// Everything a handler on one environment needs.
struct Target {
    org: Arc<OrgRecord>,
    access: Arc<Access>,
    env: EnvRecord,
}

fn env_not_found(project: &str, env: &str) -> ApiError {
    ApiError::not_found(format!("environment '{project}/{env}' not found"))
}

async fn target(
    app: &AppState,
    p: &Principal,
    source: &str,
    (org, project, env): (&str, &str, &str),
    action: Action,
) -> Result<Target, ApiError> {
    parse_name("project", project)?;
    parse_name("environment", env)?;
    let (org, access) = app.org_access(p, source, org).await?;
    app.authorize(p, source, (&org, &access), (Some(project), Some(env)), action, || {
        env_not_found(project, env)
    })
    .await?;
    let env_rec = app
        .store
        .env_by_name(&org.id, project, env)
        .await?
        .ok_or_else(|| env_not_found(project, env))?;
    Ok(Target {
        org,
        access,
        env: env_rec,
    })
}

fn target_name(t: &Target) -> String {
    format!("{}/{}/{}", t.org.name, t.env.project, t.env.name)
}

/// The audit event of `action` on the environment `t`, in its org's chain.
fn env_event(app: &AppState, p: &Principal, source: &str, t: &Target, action: AuditAction) -> AuditEvent {
    app.event(Some(p), source, Some(&t.org.id), action, &target_name(t))
}

// ---------------------------------------------------------------------------------------------------------------
// Listing and creating

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
        .list_envs(viewer(p), only.as_ref().map(|(o, _)| o.id.as_str()), after, PAGE)
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
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<esc::OrgEnvironments>, ApiError> {
    list(&app, &p, &source, None, q.continuation_token.as_deref()).await
}

/// `GET /api/esc/environments/{org}`
pub async fn list_org(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path(org): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<esc::OrgEnvironments>, ApiError> {
    list(&app, &p, &source, Some(&org), q.continuation_token.as_deref()).await
}

#[derive(Deserialize)]
pub struct CreateBody {
    project: String,
    name: String,
}

/// `POST /api/esc/environments/{org}` with `{"project", "name"}`.
pub async fn create(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    parse_name("project", &body.project)?;
    parse_name("environment", &body.name)?;
    refuse_reserved(&body.name)?;
    let (org, access) = app.org_access(&p, &source, &org).await?;
    app.authorize(
        &p,
        &source,
        (&org, &access),
        (Some(&body.project), Some(&body.name)),
        Action::Write,
        || env_not_found(&body.project, &body.name),
    )
    .await?;
    let now = app.clock.now_ms();
    let env = EnvRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org.id.clone(),
        project: body.project.clone(),
        name: body.name.clone(),
        head: 1,
        created_ms: now,
        modified_ms: now,
    };
    let target = format!("{}/{}/{}", org.name, body.project, body.name);
    let event = app.event(Some(&p), &source, Some(&org.id), AuditAction::EnvCreate, &target);
    match app.store.create_env(&env, "", &login_of(&p), &event).await? {
        Inserted::New => {}
        Inserted::AlreadyExists => {
            return Err(ApiError::conflict(format!(
                "environment '{}/{}' already exists",
                body.project, body.name
            )));
        }
    }
    // 200 with a JSON body: the TypeScript SDK's wrapper accepts only 200 here (the swagger says 204).
    Ok(axum::Json(esc::Empty {}).into_response())
}

// ---------------------------------------------------------------------------------------------------------------
// Definitions

fn revision_headers(env: &EnvRecord, revision: i64) -> Vec<(axum::http::HeaderName, String)> {
    vec![
        (ETAG, etag(&env.id, revision)),
        (
            axum::http::HeaderName::from_static("pulumi-esc-revision"),
            revision.to_string(),
        ),
    ]
}

/// `GET …/{org}/{project}/{env}`: the latest definition (secrets sealed), with `ETag` and `Pulumi-ESC-Revision`.
pub async fn get_definition(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let yaml = revision_yaml(&app, &t.env, t.env.head).await?;
    Ok(yaml_response(yaml, &revision_headers(&t.env, t.env.head)))
}

/// `HEAD …/{org}/{project}/{env}`: the headers only.
pub async fn head_definition(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    Ok(yaml_response(String::new(), &revision_headers(&t.env, t.env.head)))
}

/// `GET …/versions/{version}`: a definition at a revision number or tag.
pub async fn get_version(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env, version)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let rev = resolve_version(&app, &t.env, Some(&version)).await?;
    let yaml = revision_yaml(&app, &t.env, rev).await?;
    Ok(yaml_response(yaml, &revision_headers(&t.env, rev)))
}

/// `GET …/decrypt`: the latest definition with its secrets in plaintext (editors only).
pub async fn decrypt(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Decrypt).await?;
    let yaml = revision_yaml(&app, &t.env, t.env.head).await?;
    let mut plain = esc_eval::open_secrets(&app, &t.org.id, &t.env.id, &yaml).await?;
    app.record(env_event(&app, &p, &source, &t, AuditAction::EnvDecrypt).detail(format!("revision {}", t.env.head)))
        .await?;
    let mut resp = secret_body(zeroize::Zeroizing::new(std::mem::take(&mut *plain).into_bytes())).into_response();
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(YAML));
    Ok(with_headers(resp, &revision_headers(&t.env, t.env.head)))
}

/// Checks a definition the way a write does: it must load and evaluate (symbolically) without errors. Secrets
/// already sealed must open under this environment.
async fn check_for_write(app: &AppState, t: &Target, p: &Principal, text: &str) -> Result<(), ApiError> {
    let caller = Caller {
        principal: p,
        access: &t.access,
        org: &t.org,
        import_action: Action::Read,
    };
    let name = format!("{}/{}", t.env.project, t.env.name);
    let out = esc_eval::run(
        app,
        &caller,
        &name,
        text,
        Some((&t.env, t.env.head)),
        Mode::Check { show_secrets: false },
    )
    .await?;
    if out.has_errors() {
        let errors: Vec<_> = out.diags.iter().filter(|d| d.is_error()).cloned().collect();
        return Err(ApiError::with_diagnostics(
            "the environment definition has errors",
            esc::diagnostics(&errors),
        ));
    }
    Ok(())
}

fn body_text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the definition is not UTF-8 text"))
}

/// `PATCH …/{org}/{project}/{env}` with a YAML body (whatever the Content-Type says). With an `ETag` or `If-Match`
/// header the write applies only if that is still the latest revision (409 otherwise).
pub async fn update(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    let text = body_text(&body)?;
    let expected =
        match headers.get(IF_MATCH).or_else(|| headers.get(ETAG)) {
            Some(v) => {
                let v = v.to_str().map_err(|_| ApiError::bad_request("malformed ETag header"))?;
                Some(etag_revision(&t.env.id, v).ok_or_else(|| {
                    ApiError::conflict("the environment has changed since it was read (unknown etag)")
                })?)
            }
            None => None,
        };
    if let Some(rev) = expected
        && rev != t.env.head
    {
        return Err(ApiError::conflict(
            "the environment has changed since it was read; read it again and retry",
        ));
    }
    check_for_write(&app, &t, &p, text).await?;
    let sealed = esc_eval::seal_secrets(&app, &t.org.id, &t.env.id, text).await?;
    let event = env_event(&app, &p, &source, &t, AuditAction::EnvUpdate);
    let audit = |rev: &i64| event.clone().detail(format!("revision {rev}"));
    let written = app
        .store
        .write_revision(
            &t.env.id,
            expected,
            &sealed,
            &login_of(&p),
            app.clock.now_ms(),
            Some(&audit),
        )
        .await?;
    let Written::Revision(rev) = written else {
        return Err(ApiError::conflict(
            "the environment has changed since it was read; read it again and retry",
        ));
    };
    Ok(with_headers(
        axum::Json(esc::UpdateResponse::default()).into_response(),
        &revision_headers(&t.env, rev),
    ))
}

/// `DELETE …/{org}/{project}/{env}` (admins).
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Delete).await?;
    let event = env_event(&app, &p, &source, &t, AuditAction::EnvDelete);
    if !app.store.delete_env(&t.env.id, &event).await? {
        return Err(env_not_found(&project, &env));
    }
    // 200 with a JSON body: the TypeScript SDK's wrapper accepts only 200 here (the swagger says 204).
    Ok(axum::Json(esc::Empty {}).into_response())
}

#[derive(Deserialize)]
pub struct RenameBody {
    project: String,
    name: String,
}

/// `POST …/rename` with `{"project", "name"}` (a Sesame addition; admins): the environment keeps its id, so its
/// sealed secrets, revisions, tags and open sessions keep working. Grants name environments by name, so the roles
/// that apply may change: that is why it needs the admin role on both names.
pub async fn rename(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<RenameBody>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Delete).await?;
    parse_name("project", &body.project)?;
    parse_name("environment", &body.name)?;
    refuse_reserved(&body.name)?;
    app.authorize(
        &p,
        &source,
        (&t.org, &t.access),
        (Some(&body.project), Some(&body.name)),
        Action::Delete,
        || env_not_found(&body.project, &body.name),
    )
    .await?;
    let event =
        env_event(&app, &p, &source, &t, AuditAction::EnvRename).detail(format!("to {}/{}", body.project, body.name));
    if !app
        .store
        .rename_env(&t.env.id, &body.project, &body.name, app.clock.now_ms(), &event)
        .await?
    {
        return Err(ApiError::conflict(format!(
            "environment '{}/{}' already exists",
            body.project, body.name
        )));
    }
    Ok(Success::NoContent.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloneBody {
    project: String,
    name: String,
    #[serde(default)]
    preserve_history: bool,
    #[serde(default)]
    preserve_environment_tags: bool,
    #[serde(default)]
    preserve_revision_tags: bool,
    #[serde(default)]
    preserve_access: bool,
}

/// `POST …/clone`: a new environment with the same definition, every secret re-sealed under the new environment.
pub async fn clone(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<CloneBody>,
) -> Result<Response, ApiError> {
    // Cloning reveals the secrets to the clone's editors, so it needs what decrypt needs.
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Decrypt).await?;
    parse_name("project", &body.project)?;
    parse_name("environment", &body.name)?;
    refuse_reserved(&body.name)?;
    app.authorize(
        &p,
        &source,
        (&t.org, &t.access),
        (Some(&body.project), Some(&body.name)),
        Action::Write,
        || env_not_found(&body.project, &body.name),
    )
    .await?;
    let now = app.clock.now_ms();
    let new = EnvRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: t.org.id.clone(),
        project: body.project.clone(),
        name: body.name.clone(),
        head: 1,
        created_ms: now,
        modified_ms: now,
    };
    let first = if body.preserve_history { 1 } else { t.env.head };
    let mut resealed = Vec::new();
    for rev in first..=t.env.head {
        let yaml = revision_yaml(&app, &t.env, rev).await?;
        let plain = esc_eval::open_secrets(&app, &t.org.id, &t.env.id, &yaml).await?;
        resealed.push((rev, esc_eval::seal_secrets(&app, &t.org.id, &new.id, &plain).await?));
    }
    let creator = login_of(&p);
    let (_, first_yaml) = &resealed[0];
    let detail = format!(
        "to {}/{}/{}{}",
        t.org.name,
        body.project,
        body.name,
        if body.preserve_access {
            " (access is not copied: grant roles on the clone)"
        } else {
            ""
        }
    );
    // The clone's record commits with the clone's creation; the revisions and tags copied next are part of it.
    let event = env_event(&app, &p, &source, &t, AuditAction::EnvClone).detail(detail);
    if app.store.create_env(&new, first_yaml, &creator, &event).await? == Inserted::AlreadyExists {
        return Err(ApiError::conflict(format!(
            "environment '{}/{}' already exists",
            body.project, body.name
        )));
    }
    // Revision numbers are kept when history is preserved (revision n of the clone is revision n of the source).
    let mut map = std::collections::HashMap::new();
    map.insert(resealed[0].0, 1);
    for (rev, yaml) in &resealed[1..] {
        if let Written::Revision(n) = app
            .store
            .write_revision(&new.id, None, yaml, &creator, now, None)
            .await?
        {
            map.insert(*rev, n);
        }
    }
    if body.preserve_revision_tags {
        for tag in app.store.revision_tags(&t.env.id, "", 10_000).await? {
            if let Some(&n) = map.get(&tag.revision) {
                let rec = RevisionTagRecord { revision: n, ..tag };
                app.store.put_revision_tag(&new.id, &rec, true, None).await?;
            }
        }
    }
    if body.preserve_environment_tags {
        for tag in app.store.env_tags(&t.env.id, "", 10_000).await? {
            app.store.create_env_tag(&new.id, &tag, None).await?;
        }
    }
    // 204, as the contract and the TypeScript SDK's wrapper expect.
    Ok(Success::NoContent.into_response())
}

// ---------------------------------------------------------------------------------------------------------------
// Check and open

/// `POST /api/esc/environments/{org}/yaml/check`: evaluates an anonymous definition symbolically.
pub async fn check(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (org, access) = app.org_access(&p, &source, &org).await?;
    let text = body_text(&body)?;
    let caller = Caller {
        principal: &p,
        access: &access,
        org: &org,
        import_action: Action::Read,
    };
    let out = esc_eval::run(&app, &caller, "<yaml>", text, None, Mode::Check { show_secrets: false }).await?;
    let status = error::check_status(out.has_errors());
    let properties = rendered_properties(&out)?;
    let diagnostics = serde_json::to_vec(&esc::diagnostics(&out.diags)).map_err(internal)?;
    let mut body = Vec::with_capacity(properties.len() + diagnostics.len() + 36);
    body.extend_from_slice(b"{\"properties\":");
    body.extend_from_slice(&properties);
    body.extend_from_slice(b",\"diagnostics\":");
    body.extend_from_slice(&diagnostics);
    body.push(b'}');
    Ok((status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The evaluated `properties` as JSON text, at most `MAX_RENDERED_BYTES` long (the evaluator already replaced what
/// would render larger with unknowns; this is the exact check).
fn rendered_properties(out: &crate::core::env::Evaluated) -> Result<Vec<u8>, ApiError> {
    use crate::core::env::eval::MAX_RENDERED_BYTES;
    esc::properties_text(out.properties.as_ref(), MAX_RENDERED_BYTES as usize).ok_or_else(|| {
        ApiError::bad_request(format!(
            "the result renders to more than {MAX_RENDERED_BYTES} bytes (the limit for one answer or open session)"
        ))
    })
}

#[derive(Deserialize)]
pub struct OpenQuery {
    duration: Option<String>,
}

fn open_duration(q: &OpenQuery) -> Result<Duration, ApiError> {
    let Some(text) = q.duration.as_deref().filter(|d| !d.is_empty()) else {
        return Ok(DEFAULT_OPEN_DURATION);
    };
    let d = parse_go_duration(text)
        .ok_or_else(|| ApiError::bad_request(format!("invalid duration '{text}' (e.g. 2h0m0s, 30m)")))?;
    if d.is_zero() || d > MAX_OPEN_DURATION {
        return Err(ApiError::bad_request("duration must be more than 0 and at most 24h"));
    }
    Ok(d)
}

/// Evaluates, seals the result for the session and stores it; answers `{"id"}`.
async fn open_and_store(
    app: &AppState,
    p: &Principal,
    source: &str,
    (org, access): (&OrgRecord, &Access),
    env: Option<(&EnvRecord, i64)>,
    (name, yaml): (&str, &str),
    duration: Duration,
) -> Result<Response, ApiError> {
    let caller = Caller {
        principal: p,
        access,
        org,
        import_action: Action::Open,
    };
    // Imports are resolved (and the caller's right to open each checked) on every open; only when nothing it reads
    // has changed is the evaluated result reused.
    let resolved = esc_eval::resolve(app, &caller, name, yaml, env).await?;
    let key = resolved.digest("open");
    let body = match app.eval_cache.get(&key).await {
        Some(body) => body,
        None => {
            let out = esc_eval::evaluate_resolved(app, &caller, resolved, Mode::Eval).await?;
            if out.has_errors() {
                return Err(ApiError::with_diagnostics(
                    "the environment could not be opened",
                    esc::diagnostics(&out.diags),
                ));
            }
            let properties = zeroize::Zeroizing::new(rendered_properties(&out)?);
            let mut text = Vec::with_capacity(properties.len() + 16);
            text.extend_from_slice(b"{\"properties\":");
            text.extend_from_slice(&properties);
            text.push(b'}');
            let body = Arc::new(zeroize::Zeroizing::new(text));
            app.eval_cache.insert(key, body.clone()).await;
            body
        }
    };
    let env = env.map(|(e, _)| e);
    let env_id = env.map_or(ANONYMOUS_ENV, |e| e.id.as_str());
    let id = uuid::Uuid::new_v4().simple().to_string();
    let sealed = app
        .keyring
        .seal(
            &env_scope(&org.id, env_id),
            &open_session_aad(&org.id, env_id, &anonymous_binding(env.is_none(), &id, p)),
            body.as_slice(),
        )
        .await?;
    let now = app.clock.now_ms();
    let session = SessionRecord {
        id: id.clone(),
        env_id: env_id.to_owned(),
        org_id: org.id.clone(),
        sealed,
        created_ms: now,
        expires_ms: now + duration.as_millis() as i64,
    };
    let target = match env {
        Some(e) => format!("{}/{}/{}", org.name, e.project, e.name),
        None => format!("{}/<yaml>", org.name),
    };
    // The session row and the open's audit record land in one transaction of the audit writer's batch.
    let detail = format!("session {id}, {}s", duration.as_secs());
    let event = app
        .event(Some(p), source, Some(&org.id), AuditAction::EnvOpen, &target)
        .detail(detail);
    app.record_with_session(event, session).await?;
    Ok(axum::Json(esc::OpenResponse { id }).into_response())
}

/// `POST …/{org}/{project}/{env}/open?duration=`
pub async fn open(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
    Query(q): Query<OpenQuery>,
) -> Result<Response, ApiError> {
    let duration = open_duration(&q)?;
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Open).await?;
    let yaml = revision_yaml(&app, &t.env, t.env.head).await?;
    let name = format!("{}/{}", t.env.project, t.env.name);
    open_and_store(
        &app,
        &p,
        &source,
        (&t.org, &t.access),
        Some((&t.env, t.env.head)),
        (&name, &yaml),
        duration,
    )
    .await
}

/// `POST …/versions/{version}/open?duration=`
pub async fn open_version(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env, version)): Path<(String, String, String, String)>,
    Query(q): Query<OpenQuery>,
) -> Result<Response, ApiError> {
    let duration = open_duration(&q)?;
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Open).await?;
    let rev = resolve_version(&app, &t.env, Some(&version)).await?;
    let yaml = revision_yaml(&app, &t.env, rev).await?;
    let name = format!("{}/{}", t.env.project, t.env.name);
    open_and_store(
        &app,
        &p,
        &source,
        (&t.org, &t.access),
        Some((&t.env, rev)),
        (&name, &yaml),
        duration,
    )
    .await
}

/// `POST /api/esc/environments/{org}/yaml/open?duration=`: opens an anonymous definition (the `pulumi` CLI sends a
/// stack's `environment:` imports this way). Each import needs the opener role.
pub async fn open_yaml(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path(org): Path<String>,
    Query(q): Query<OpenQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let duration = open_duration(&q)?;
    let (org, access) = app.org_access(&p, &source, &org).await?;
    let text = body_text(&body)?;
    open_and_store(&app, &p, &source, (&org, &access), None, ("<yaml>", text), duration).await
}

#[derive(Deserialize)]
pub struct PropertyQuery {
    property: Option<String>,
}

fn session_not_found() -> ApiError {
    ApiError::not_found("open session not found or expired")
}

/// What a session's associated data names: the session id, and for an anonymous document (`yaml/open`), which
/// needs no role on any environment to read, also the token that opened it — so only that token can read it.
fn anonymous_binding(anonymous: bool, id: &str, p: &Principal) -> String {
    if anonymous {
        format!("{id}:{}", p.token_id)
    } else {
        id.to_owned()
    }
}

async fn read_session(
    app: &AppState,
    p: &Principal,
    org: &OrgRecord,
    env_id: &str,
    id: &str,
    property: Option<&str>,
) -> Result<Response, ApiError> {
    let binding = anonymous_binding(env_id == ANONYMOUS_ENV, id, p);
    let s = app.store.session(id).await?.ok_or_else(session_not_found)?;
    if s.org_id != org.id || s.env_id != env_id {
        return Err(session_not_found());
    }
    let now = app.clock.now_ms();
    if s.expires_ms <= now {
        app.store.purge_sessions(now).await?;
        return Err(session_not_found());
    }
    let plain = app
        .keyring
        .open(
            &env_scope(&org.id, env_id),
            &open_session_aad(&org.id, env_id, &binding),
            &s.sealed,
        )
        .await
        .map_err(|e| match e {
            crate::keyring::KeyringError::Undecryptable => session_not_found(),
            other => other.into(),
        })?;
    match property.filter(|p| !p.is_empty()) {
        // The sealed body is the answer, byte for byte: no need to parse it (nor to copy it: the answer's buffer is
        // the decrypted one, wiped when sent).
        None => {
            let mut resp = axum::body::Body::from(Bytes::from_owner(plain)).into_response();
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(resp)
        }
        Some(path) => {
            let env: JsonValue = serde_json::from_slice(plain.as_ref()).map_err(internal)?;
            drop(plain);
            let answer = PropertyPath::parse(path)
                .map_err(|e| ApiError::bad_request(e.to_string()))
                .and_then(|steps| {
                    esc::lookup(&env["properties"], &steps)
                        .ok_or_else(|| ApiError::not_found(format!("property '{path}' not found")))
                        .and_then(|v| serde_json::to_vec(v).map_err(internal))
                });
            wipe_json(env);
            let mut resp = secret_body(zeroize::Zeroizing::new(answer?)).into_response();
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(resp)
        }
    }
}

/// `GET …/{org}/{project}/{env}/open/{id}` and `…/open//{id}?property=`
pub async fn read_open(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env, id)): Path<(String, String, String, String)>,
    Query(q): Query<PropertyQuery>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Open).await?;
    read_session(&app, &p, &t.org, &t.env.id, &id, q.property.as_deref()).await
}

/// `GET /api/esc/environments/{org}/yaml/open/{id}`
pub async fn read_open_yaml(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<PropertyQuery>,
) -> Result<Response, ApiError> {
    let (org, _) = app.org_access(&p, &source, &org).await?;
    read_session(&app, &p, &org, ANONYMOUS_ENV, &id, q.property.as_deref()).await
}

// ---------------------------------------------------------------------------------------------------------------
// Revisions and revision tags

#[derive(Deserialize)]
pub struct RevisionsQuery {
    before: Option<i64>,
    count: Option<i64>,
}

/// `GET …/versions?before=&count=`: newest first.
pub async fn list_revisions(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
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
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
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

#[derive(Deserialize)]
pub struct TagsQuery {
    after: Option<String>,
    count: Option<i64>,
}

/// `GET …/versions/tags`
pub async fn list_revision_tags(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
    Query(q): Query<TagsQuery>,
) -> Result<axum::Json<esc::RevisionTags>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let count = q.count.unwrap_or(500).clamp(1, 500);
    let tags = app
        .store
        .revision_tags(&t.env.id, q.after.as_deref().unwrap_or(""), count)
        .await?;
    let mut out: Vec<esc::RevisionTag> = Vec::new();
    if q.after.as_deref().unwrap_or("").is_empty() {
        out.push(latest_tag_json(&t.env));
    }
    out.extend(tags.iter().filter(|t| t.name != "latest").map(rev_tag_json));
    let next = if tags.len() as i64 == count {
        tags.last().map(|t| t.name.clone()).unwrap_or_default()
    } else {
        String::new()
    };
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
            ApiError::not_found(format!("tag '{name}' not found"))
        });
    }
    Ok(Success::NoContent.into_response())
}

/// `POST …/versions/tags` with `{"name", "revision"}`
pub async fn create_revision_tag(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path(path): Path<(String, String, String)>,
    JsonBody(body): JsonBody<RevisionTagBody>,
) -> Result<Response, ApiError> {
    let name = body.name.ok_or_else(|| ApiError::bad_request("name is required"))?;
    put_revision_tag(&app, &p, &source, path, name, body.revision, true).await
}

/// `PATCH …/versions/tags/{tag}` with `{"revision"}`
pub async fn update_revision_tag(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env, tag)): Path<(String, String, String, String)>,
    JsonBody(body): JsonBody<RevisionTagBody>,
) -> Result<Response, ApiError> {
    put_revision_tag(&app, &p, &source, (org, project, env), tag, body.revision, false).await
}

/// `GET …/versions/tags/{tag}`
pub async fn get_revision_tag(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
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
        .ok_or_else(|| ApiError::not_found(format!("tag '{tag}' not found")))?;
    Ok(axum::Json(rev_tag_json(&rec)))
}

/// `DELETE …/versions/tags/{tag}`
pub async fn delete_revision_tag(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env, tag)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    let event = env_event(&app, &p, &source, &t, AuditAction::EnvRevisionTagDelete).detail(tag.clone());
    if !app.store.delete_revision_tag(&t.env.id, &tag, &event).await? {
        return Err(ApiError::not_found(format!("tag '{tag}' not found")));
    }
    Ok(Success::NoContent.into_response())
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
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
    Query(q): Query<TagsQuery>,
) -> Result<axum::Json<esc::EnvironmentTags>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let count = q.count.unwrap_or(500).clamp(1, 500);
    let tags = app
        .store
        .env_tags(&t.env.id, q.after.as_deref().unwrap_or(""), count)
        .await?;
    let map: BTreeMap<String, esc::EnvironmentTag> = tags.iter().map(|t| (t.name.clone(), env_tag_json(t))).collect();
    let next = if tags.len() as i64 == count {
        tags.last().map(|t| t.name.clone()).unwrap_or_default()
    } else {
        String::new()
    };
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

fn check_env_tag_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::bad_request("a tag name is 1–100 printable characters"));
    }
    text::check("tag name", name, MAX_ENV_TAG_NAME, text::Lines::Single)?;
    Ok(())
}

/// `POST …/tags` with `{"name", "value"}`
pub async fn create_tag(
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<CreateTagBody>,
) -> Result<axum::Json<esc::EnvironmentTag>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    check_env_tag_name(&body.name)?;
    text::check("tag value", &body.value, text::MAX_TAG_VALUE, text::Lines::Multi)?;
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
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env, tag)): Path<(String, String, String, String)>,
) -> Result<axum::Json<esc::EnvironmentTag>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let rec = app
        .store
        .env_tag(&t.env.id, &tag)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tag '{tag}' not found")))?;
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
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env, tag)): Path<(String, String, String, String)>,
    JsonBody(body): JsonBody<UpdateTagBody>,
) -> Result<axum::Json<esc::EnvironmentTag>, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    check_env_tag_name(&body.new_tag.name)?;
    text::check(
        "tag value",
        &body.new_tag.value,
        text::MAX_TAG_VALUE,
        text::Lines::Multi,
    )?;
    let current = app
        .store
        .env_tag(&t.env.id, &tag)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tag '{tag}' not found")))?;
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
    State(app): State<Arc<AppState>>,
    Auth(p): Auth,
    ClientAddr(source): ClientAddr,
    Path((org, project, env, tag)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    let event = env_event(&app, &p, &source, &t, AuditAction::EnvTagDelete).detail(tag.clone());
    if !app.store.delete_env_tag(&t.env.id, &tag, &event).await? {
        return Err(ApiError::not_found(format!("tag '{tag}' not found")));
    }
    Ok(Success::NoContent.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_name_their_revision_and_environment() {
        let e = etag("env-1", 7);
        assert_eq!(etag_revision("env-1", &e), Some(7));
        assert_eq!(etag_revision("env-2", &e), None);
        assert_eq!(etag_revision("env-1", "\"7-0000000000000000\""), None);
        assert_eq!(etag_revision("env-1", "garbage"), None);
    }
}
