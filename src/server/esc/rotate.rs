//! `POST …/{org}/{project}/{env}/rotate`: rotates the environment's `fn::rotate` calls (all, or those at the
//! request's paths) and stores their new states as a new revision, each rotated secret sealed under the
//! environment's DEK as `fn::secret: {ciphertext: …}` — the stored text never holds a rotated plaintext.
//!
//! Rule: editors only (`Write`), one audit record per rotation (revision and paths, never a value); a rotation
//! whose evaluation has errors, or a path that names no `fn::rotate`, is refused with diagnostics and writes
//! nothing. Only the rotated states' text changes in the stored definition ([`crate::core::env::splice`]): comments,
//! layout and every other byte the user wrote are kept. Between the rotators' draw and the revision write sits the
//! `rotate-before-write` failpoint ([`super::failpoint`]): a process that dies there has written nothing, and the
//! environment keeps its former `current`.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use zeroize::Zeroizing;

use super::eval::{self, Evaluator, revision_yaml};
use super::{env_event, login_of, target};
use crate::core::audit::AuditAction;
use crate::core::authz::Action;
use crate::core::env::Mode;
use crate::core::env::eval::{Patch, values_doc_path};
use crate::core::env::path::{PropertyPath, Seg};
use crate::core::env::splice::{self, NewState, splice_states};
use crate::core::env::value::{Repr, Value};
use crate::core::timefmt::rfc3339;
use crate::server::auth::Caller;
use crate::server::body::JsonBody;
use crate::server::error::ApiError;
use crate::store::envs::Written;
use crate::wire::esc;

/// `POST …/{org}/{project}/{env}/rotate` with `{"paths": [..]}` (optional).
pub async fn rotate(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<esc::RotateRequest>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Write).await?;
    let done = rotate_target(&app, &p, &source, &t, body.paths.as_deref(), None).await?;
    Ok(axum::Json(done).into_response())
}

/// Rotates the environment `t` (whose `Write` the caller was granted) as `p`: the `fn::rotate` calls at `paths`
/// (all when `None` or empty), written as a new revision on top of the head it read. `schedule` names the schedule
/// that runs it, for the audit record.
pub(super) async fn rotate_target(
    app: &crate::server::AppState,
    p: &crate::server::auth::Principal,
    source: &str,
    t: &super::Target,
    paths: Option<&[String]>,
    schedule: Option<&str>,
) -> Result<esc::RotateResponse, ApiError> {
    let wanted: Option<Vec<(String, String)>> = match paths {
        None => None,
        Some([]) => None,
        Some(ps) => Some(
            ps.iter()
                .map(|p| {
                    values_doc_path(p)
                        .map(|d| (p.clone(), d))
                        .ok_or_else(|| ApiError::bad_request(format!("invalid property path {p:?}")))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let head = t.env.head;
    let text = revision_yaml(app, &t.env, head).await?;
    let caller = Evaluator {
        principal: p,
        access: &t.access,
        org: &t.org,
        import_action: Action::Open,
        source,
    };
    let name = format!("{}/{}", t.env.project, t.env.name);
    let mode = Mode::Rotate {
        paths: wanted.as_ref().map(|w| w.iter().map(|(_, d)| d.clone()).collect()),
    };
    let out = eval::run(app, &caller, &name, &text, Some((&t.env, head)), mode).await?;
    if out.has_errors() {
        let errors: Vec<_> = out.diags.iter().filter(|d| d.is_error()).cloned().collect();
        return Err(ApiError::with_diagnostics(
            "the environment cannot be rotated",
            esc::diagnostics(&errors),
        ));
    }
    if let Some(w) = &wanted
        && let Some((p, _)) = w
            .iter()
            .find(|(_, d)| !out.patches.iter().any(|pa| pa.doc_path.starts_with(&format!("{d}["))))
    {
        return Err(ApiError::bad_request(format!("no fn::rotate at path {p:?}")));
    }
    if out.patches.is_empty() {
        return Err(ApiError::bad_request("the environment has no fn::rotate to rotate"));
    }
    let rotated = apply_patches(app, &t.org.id, &t.env.id, &text, &out.patches).await?;
    // The new secrets exist (drawn, sealed) but nothing is written yet: a crash here must lose nothing.
    super::failpoint::hit(super::failpoint::ROTATE_BEFORE_WRITE);
    let paths: Vec<String> = out.patches.iter().map(|pa| call_path(&pa.doc_path)).collect();
    let event = env_event(app, p, source, t, AuditAction::EnvRotate);
    let by = schedule.map(|s| format!(" schedule {s}")).unwrap_or_default();
    let audit = |rev: &i64| {
        event
            .clone()
            .detail(format!("revision {rev} paths {}{by}", paths.join(",")))
    };
    let now = app.clock.now_ms();
    let written = app
        .store
        .write_revision(&t.env.id, Some(head), &rotated, &login_of(p), now, Some(&audit))
        .await?;
    let Written::Revision(rev) = written else {
        return Err(ApiError::conflict(
            "the environment changed during the rotation; rotate again",
        ));
    };
    let rotations = paths
        .iter()
        .map(|path| esc::SecretRotation {
            id: uuid::Uuid::now_v7().to_string(),
            environment_path: path.clone(),
            status: "succeeded".into(),
        })
        .collect();
    Ok(esc::RotateResponse {
        diagnostics: Vec::new(),
        secret_rotation_event: esc::SecretRotationEvent {
            id: uuid::Uuid::now_v7().to_string(),
            environment_id: t.env.id.clone(),
            created: rfc3339(now),
            pre_rotation_revision: head,
            post_rotation_revision: Some(rev),
            user_id: login_of(p),
            completed: Some(rfc3339(now)),
            status: "succeeded".into(),
            rotations,
        },
    })
}

/// The property path (relative to `values`) of the call a patch's document path (`values.…["fn::rotate…"].state`)
/// belongs to.
fn call_path(doc_path: &str) -> String {
    let Ok(p) = PropertyPath::parse(doc_path) else {
        return doc_path.to_owned();
    };
    let segs = p.segs();
    let inner = segs.get(1..segs.len().saturating_sub(2)).unwrap_or_default();
    let mut out = PropertyPath::default();
    for s in inner {
        out = match s {
            Seg::Key(k) => out.key(k),
            Seg::Index(i) => out.index(*i),
        };
    }
    out.to_string()
}

/// The document `text` with each patch's state spliced in by byte range, its secret strings sealed.
async fn apply_patches(
    app: &crate::server::AppState,
    org_id: &str,
    env_id: &str,
    text: &str,
    patches: &[Patch],
) -> Result<String, ApiError> {
    let mut plaintexts: Vec<Zeroizing<String>> = Vec::new();
    for pa in patches {
        secret_strings(&pa.replacement, &mut plaintexts);
    }
    let mut cts = super::seal::seal_env_plaintexts(app, org_id, env_id, &plaintexts)
        .await?
        .into_iter();
    let bad = || ApiError::bad_request("the environment's document cannot be rewritten for the rotation");
    let mut states = Vec::with_capacity(patches.len());
    for pa in patches {
        let Repr::Object(map) = &pa.replacement.repr else {
            return Err(bad());
        };
        let entries = map
            .iter()
            .map(|(k, v)| Some((k.to_string(), flow_text(v, &mut cts)?)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        states.push(NewState {
            doc_path: pa.doc_path.clone(),
            entries,
        });
    }
    splice_states(text, &states).map_err(|e| {
        ApiError::bad_request(format!(
            "the environment's document cannot be rewritten for the rotation: {e}"
        ))
    })
}

fn secret_strings(v: &Value, out: &mut Vec<Zeroizing<String>>) {
    match &v.repr {
        Repr::String(s) if v.secret => out.push(Zeroizing::new(s.to_string())),
        Repr::Array(items) => items.iter().for_each(|i| secret_strings(i, out)),
        Repr::Object(map) => map.iter().for_each(|(_, i)| secret_strings(i, out)),
        _ => {}
    }
}

/// `v` as flow YAML text, each secret string replaced by `{fn::secret: {ciphertext: …}}` (the next of `cts`, in the
/// order [`secret_strings`] walks).
fn flow_text(v: &Value, cts: &mut impl Iterator<Item = String>) -> Option<String> {
    Some(match &v.repr {
        Repr::String(_) if v.secret => format!("{{fn::secret: {{ciphertext: {}}}}}", cts.next()?),
        Repr::String(s) => splice::yaml_text(s),
        Repr::Null | Repr::Bool(_) | Repr::Number(_) => v.to_json(false).to_string(),
        Repr::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| flow_text(i, cts))
                .collect::<Option<Vec<_>>>()?
                .join(", ")
        ),
        Repr::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, i)| Some(format!("{}: {}", splice::yaml_text(k), flow_text(i, cts)?)))
                .collect::<Option<Vec<_>>>()?
                .join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_names_its_call() {
        assert_eq!(
            call_path(r#"values.db.password["fn::rotate::password"].state"#),
            "db.password"
        );
        assert_eq!(call_path(r#"values.l[2]["a b"]["fn::rotate"].state"#), r#"l[2]["a b"]"#);
    }
}
