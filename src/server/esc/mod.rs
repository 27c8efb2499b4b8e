//! The Pulumi ESC environments API under `/api/esc/environments` (conformance/esc-api/swagger.yaml), served so that
//! the official clients work unchanged.
//!
//! Every handler resolves the org and the caller's access first and makes one `authorize` call for what it does;
//! environments the caller may not see answer 404 exactly like missing ones. Definitions are stored with their
//! `fn::secret` plaintexts sealed under the environment's DEK (associated data: org id and environment id), spliced
//! in by byte range so comments and formatting survive. Open results are sealed under the same DEK (associated data
//! naming the session) and kept in the database until they expire, so any replica answers reads.
//!
//! This module holds what every handler shares (the [`Target`] an environment route resolves to, names, ETags,
//! answers, the audit event of an environment); the handlers live one concern a file: [`listing`], [`definitions`],
//! [`open`], [`revisions`] (and retraction), [`tags`], [`schemas`] (providers', rotators' and the context's); the
//! evaluator's edge is [`eval`] with the [`providers`] it runs, secret sealing [`seal`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Success};
use crate::core::audit::{AuditAction, AuditEvent};
use crate::core::authz::{Access, Action};
use crate::core::keys::{Name, Scope};
use crate::store::OrgRecord;
use crate::store::envs::EnvRecord;
use crate::wire::esc;

mod definitions;
pub mod eval;
mod failpoint;
mod listing;
mod oidc_token;
mod open;
pub mod providers;
mod schemas;
pub use open::Opened;
mod revisions;
mod rotate;
pub mod rotators;
pub mod schedules;
pub mod seal;
mod tags;

pub use definitions::{
    check, clone, create, decrypt, delete, get_definition, get_version, head_definition, rename, update,
};
pub use listing::{list_all, list_org};
pub use oidc_token::{mint_token, preview_claims};
pub use open::{open, open_version, open_yaml, read_open, read_open_yaml};
pub use revisions::{list_revisions, retract};
pub use rotate::rotate;
pub use schedules::{
    create_schedule, delete_schedule, get_schedule, list_schedules, schedule_history, update_schedule,
};
pub use schemas::{context_schema, list_providers, list_rotators, provider_schema, rotator_schema};
pub use tags::{
    create_revision_tag, create_tag, delete_revision_tag, delete_tag, get_revision_tag, get_tag, list_revision_tags,
    list_tags, update_revision_tag, update_tag,
};

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

/// The DEK scope of an environment.
fn env_scope(org_id: &str, env_id: &str) -> Scope {
    Scope::Environment {
        org_id: org_id.to_owned(),
        env_id: env_id.to_owned(),
    }
}

fn body_text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the definition is not UTF-8 text"))
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
