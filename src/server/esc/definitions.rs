//! An environment's definition and its life: create, read (latest, a version, decrypted), check, update (with
//! `If-Match`), delete, rename and clone. Every write is checked like an open (it must evaluate without errors)
//! and stored with its `fn::secret` values sealed; a clone re-seals every secret under the new environment.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::eval::{self, Evaluator, resolve_version, revision_yaml};
use super::{
    Target, YAML, body_text, env_event, env_not_found, etag, etag_revision, internal, login_of, parse_name,
    refuse_reserved, rendered_properties, seal, target, with_headers, yaml_response,
};
use crate::core::audit::AuditAction;
use crate::core::authz::{Access, Action};
use crate::core::env::Mode;
use crate::server::AppState;
use crate::server::answer::secret_body;
use crate::server::auth::Caller;
use crate::server::auth::Principal;
use crate::server::body::JsonBody;
use crate::server::error::{self, ApiError, Success};
use crate::store::envs::{EnvRecord, RevisionTagRecord, Written};
use crate::store::{Inserted, OrgRecord};
use crate::wire::esc;

/// `{"project", "name"}`: the environment a create or a rename makes.
#[derive(Deserialize)]
pub struct NameBody {
    project: String,
    name: String,
}

/// A name for a new environment (create, rename, clone): valid, and not one that would shadow a route.
fn check_new_name(project: &str, name: &str) -> Result<(), ApiError> {
    parse_name("project", project)?;
    parse_name("environment", name)?;
    refuse_reserved(name)
}

/// Whether `p` may `action` the environment `project/name` of `org` (one it may not see answers 404, like a
/// missing one).
async fn authorize_name(
    app: &AppState,
    p: &Principal,
    source: &str,
    (org, access): (&OrgRecord, &Access),
    (project, name): (&str, &str),
    action: Action,
) -> Result<(), ApiError> {
    app.authorize(p, source, (org, access), (Some(project), Some(name)), action, || {
        env_not_found(project, name)
    })
    .await
}

/// The environment a rename or a clone starts from, which `p` may `from`, after checking the new name `to_name`,
/// which `p` may `to`.
async fn from_to(
    app: &AppState,
    p: &Principal,
    source: &str,
    (org, project, env): (&str, &str, &str),
    to_name: (&str, &str),
    (from, to): (Action, Action),
) -> Result<Target, ApiError> {
    let t = target(app, p, source, (org, project, env), from).await?;
    check_new_name(to_name.0, to_name.1)?;
    authorize_name(app, p, source, (&t.org, &t.access), to_name, to).await?;
    Ok(t)
}

/// A new environment's record, at revision 1.
fn new_env(org_id: &str, project: &str, name: &str, now: i64) -> EnvRecord {
    EnvRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org_id.to_owned(),
        project: project.to_owned(),
        name: name.to_owned(),
        head: 1,
        created_ms: now,
        modified_ms: now,
    }
}

fn already_exists(project: &str, name: &str) -> ApiError {
    ApiError::conflict(format!("environment '{project}/{name}' already exists"))
}

/// `POST /api/esc/environments/{org}` with `{"project", "name"}`.
pub async fn create(
    Caller(app, p, source): Caller,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<NameBody>,
) -> Result<Response, ApiError> {
    check_new_name(&body.project, &body.name)?;
    let (org, access) = app.org_access(&p, &source, &org).await?;
    let new_name = (body.project.as_str(), body.name.as_str());
    authorize_name(&app, &p, &source, (&org, &access), new_name, Action::Write).await?;
    let env = new_env(&org.id, &body.project, &body.name, app.clock.now_ms());
    let target = format!("{}/{}/{}", org.name, body.project, body.name);
    let event = app.event(Some(&p), &source, Some(&org.id), AuditAction::EnvCreate, &target);
    match app.store.create_env(&env, "", &login_of(&p), &event).await? {
        Inserted::New => {}
        Inserted::AlreadyExists => return Err(already_exists(&body.project, &body.name)),
    }
    // 200 with a JSON body: the TypeScript SDK's wrapper accepts only 200 here (the swagger says 204).
    Ok(axum::Json(esc::Empty {}).into_response())
}

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
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let yaml = revision_yaml(&app, &t.env, t.env.head).await?;
    Ok(yaml_response(yaml, &revision_headers(&t.env, t.env.head)))
}

/// `HEAD …/{org}/{project}/{env}`: the headers only.
pub async fn head_definition(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    Ok(yaml_response(String::new(), &revision_headers(&t.env, t.env.head)))
}

/// `GET …/versions/{version}`: a definition at a revision number or tag.
pub async fn get_version(
    Caller(app, p, source): Caller,
    Path((org, project, env, version)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Read).await?;
    let rev = resolve_version(&app, &t.env, Some(&version)).await?;
    let yaml = revision_yaml(&app, &t.env, rev).await?;
    Ok(yaml_response(yaml, &revision_headers(&t.env, rev)))
}

/// `GET …/decrypt`: the latest definition with its secrets in plaintext (editors only).
pub async fn decrypt(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Decrypt).await?;
    let yaml = revision_yaml(&app, &t.env, t.env.head).await?;
    let mut plain = seal::open_secrets(&app, &t.org.id, &t.env.id, &yaml).await?;
    app.record(env_event(&app, &p, &source, &t, AuditAction::EnvDecrypt).detail(format!("revision {}", t.env.head)))
        .await?;
    let mut resp = secret_body(zeroize::Zeroizing::new(std::mem::take(&mut *plain).into_bytes())).into_response();
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(YAML));
    Ok(with_headers(resp, &revision_headers(&t.env, t.env.head)))
}

/// Checks a definition the way a write does: it must load and evaluate (symbolically) without errors. Secrets
/// already sealed must open under this environment.
async fn check_for_write(app: &AppState, t: &Target, p: &Principal, text: &str) -> Result<(), ApiError> {
    let caller = Evaluator {
        principal: p,
        access: &t.access,
        org: &t.org,
        import_action: Action::Read,
        // Check mode calls no provider, so nothing is audited under it.
        source: "",
    };
    let name = format!("{}/{}", t.env.project, t.env.name);
    let out = eval::run(
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

/// `PATCH …/{org}/{project}/{env}` with a YAML body (whatever the Content-Type says). With an `ETag` or `If-Match`
/// header the write applies only if that is still the latest revision (409 otherwise).
pub async fn update(
    Caller(app, p, source): Caller,
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
    let sealed = seal::seal_secrets(&app, &t.org.id, &t.env.id, text).await?;
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
    Caller(app, p, source): Caller,
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

/// `POST …/rename` with `{"project", "name"}` (a Sesame addition; admins): the environment keeps its id, so its
/// sealed secrets, revisions, tags and open sessions keep working. Grants name environments by name, so the roles
/// that apply may change: that is why it needs the admin role on both names.
pub async fn rename(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<NameBody>,
) -> Result<Response, ApiError> {
    let new_name = (body.project.as_str(), body.name.as_str());
    let actions = (Action::Delete, Action::Delete);
    let t = from_to(&app, &p, &source, (&org, &project, &env), new_name, actions).await?;
    let event =
        env_event(&app, &p, &source, &t, AuditAction::EnvRename).detail(format!("to {}/{}", body.project, body.name));
    if !app
        .store
        .rename_env(&t.env.id, &body.project, &body.name, app.clock.now_ms(), &event)
        .await?
    {
        return Err(already_exists(&body.project, &body.name));
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
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<CloneBody>,
) -> Result<Response, ApiError> {
    // Cloning reveals the secrets to the clone's editors, so it needs what decrypt needs.
    let new_name = (body.project.as_str(), body.name.as_str());
    let actions = (Action::Decrypt, Action::Write);
    let t = from_to(&app, &p, &source, (&org, &project, &env), new_name, actions).await?;
    let now = app.clock.now_ms();
    let new = new_env(&t.org.id, &body.project, &body.name, now);
    let first = if body.preserve_history { 1 } else { t.env.head };
    let mut resealed = Vec::new();
    for rev in first..=t.env.head {
        let yaml = revision_yaml(&app, &t.env, rev).await?;
        let plain = seal::open_secrets(&app, &t.org.id, &t.env.id, &yaml).await?;
        resealed.push((rev, seal::seal_secrets(&app, &t.org.id, &new.id, &plain).await?));
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
        return Err(already_exists(&body.project, &body.name));
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

/// `POST /api/esc/environments/{org}/yaml/check`: evaluates an anonymous definition symbolically.
pub async fn check(Caller(app, p, source): Caller, Path(org): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let (org, access) = app.org_access(&p, &source, &org).await?;
    let text = body_text(&body)?;
    let caller = Evaluator {
        principal: &p,
        access: &access,
        org: &org,
        import_action: Action::Read,
        source: &source,
    };
    let out = eval::run(&app, &caller, "<yaml>", text, None, Mode::Check { show_secrets: false }).await?;
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
