//! Opening environments: `…/open` (latest), `…/versions/{version}/open` and the anonymous `yaml/open` evaluate
//! with every import checked for the opener role, seal the result under the environment's DEK for one session
//! (an anonymous session also bound to the token that opened it) and store it; `…/open/{id}` reads a session back,
//! whole or one property, until it expires.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value as JsonValue;

use super::eval::{self, Evaluator, resolve_version, revision_yaml};
use super::{body_text, env_scope, internal, rendered_properties, target};
use crate::core::audit::AuditAction;
use crate::core::authz::{Access, Action};
use crate::core::env::{Mode, PropertyPath};
use crate::core::keys::open_session_aad;
use crate::core::timefmt::parse_go_duration;
use crate::server::AppState;
use crate::server::answer::{secret_body, wipe_json};
use crate::server::auth::Caller;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::store::OrgRecord;
use crate::store::envs::{EnvRecord, SessionRecord};
use crate::wire::esc;

/// The longest an open session may last.
pub const MAX_OPEN_DURATION: Duration = Duration::from_secs(24 * 3600);
/// How long an open session lasts when the request names no duration (swagger's default).
pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(3600);
/// The id under which anonymous documents (`yaml/open`) seal their sessions: one DEK per org for them.
const ANONYMOUS_ENV: &str = "anonymous";

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
    let caller = Evaluator {
        principal: p,
        access,
        org,
        import_action: Action::Open,
    };
    // Imports are resolved (and the caller's right to open each checked) on every open; only when nothing it reads
    // has changed is the evaluated result reused.
    let resolved = eval::resolve(app, &caller, name, yaml, env).await?;
    let key = resolved.digest("open");
    let body = match app.eval_cache.get(&key).await {
        Some(body) => body,
        None => {
            let out = eval::evaluate_resolved(app, &caller, resolved, Mode::Eval).await?;
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
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    Query(q): Query<OpenQuery>,
) -> Result<Response, ApiError> {
    open_stored(&app, &p, &source, (&org, &project, &env), None, &q).await
}

/// `POST …/versions/{version}/open?duration=`
pub async fn open_version(
    Caller(app, p, source): Caller,
    Path((org, project, env, version)): Path<(String, String, String, String)>,
    Query(q): Query<OpenQuery>,
) -> Result<Response, ApiError> {
    open_stored(&app, &p, &source, (&org, &project, &env), Some(&version), &q).await
}

/// Opens a stored environment at `version` (`None`: the latest revision).
async fn open_stored(
    app: &AppState,
    p: &Principal,
    source: &str,
    (org, project, env): (&str, &str, &str),
    version: Option<&str>,
    q: &OpenQuery,
) -> Result<Response, ApiError> {
    let duration = open_duration(q)?;
    let t = target(app, p, source, (org, project, env), Action::Open).await?;
    let rev = resolve_version(app, &t.env, version).await?;
    let yaml = revision_yaml(app, &t.env, rev).await?;
    let name = format!("{}/{}", t.env.project, t.env.name);
    open_and_store(
        app,
        p,
        source,
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
    Caller(app, p, source): Caller,
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
    Caller(app, p, source): Caller,
    Path((org, project, env, id)): Path<(String, String, String, String)>,
    Query(q): Query<PropertyQuery>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Open).await?;
    read_session(&app, &p, &t.org, &t.env.id, &id, q.property.as_deref()).await
}

/// `GET /api/esc/environments/{org}/yaml/open/{id}`
pub async fn read_open_yaml(
    Caller(app, p, source): Caller,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<PropertyQuery>,
) -> Result<Response, ApiError> {
    let (org, _) = app.org_access(&p, &source, &org).await?;
    read_session(&app, &p, &org, ANONYMOUS_ENV, &id, q.property.as_deref()).await
}
