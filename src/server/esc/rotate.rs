//! `POST …/{org}/{project}/{env}/rotate`: rotates the environment's `fn::rotate` calls (all, or those at the
//! request's paths) and stores their new states as a new revision, each rotated secret sealed under the
//! environment's DEK as `fn::secret: {ciphertext: …}` — the stored text never holds a rotated plaintext.
//!
//! Rule: editors only (`Write`), one audit record per rotation (revision and paths, never a value); a rotation
//! whose evaluation has errors, or a path that names no `fn::rotate`, is refused with diagnostics and writes
//! nothing. The rewritten document is re-emitted from its YAML tree (comments and layout are not kept).

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};
use zeroize::Zeroizing;

use super::eval::{self, Evaluator, revision_yaml};
use super::{env_event, login_of, target};
use crate::core::audit::AuditAction;
use crate::core::authz::Action;
use crate::core::env::Mode;
use crate::core::env::eval::{Patch, values_doc_path};
use crate::core::env::path::{PropertyPath, Seg};
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
    let wanted: Option<Vec<(String, String)>> = match &body.paths {
        None => None,
        Some(ps) if ps.is_empty() => None,
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
    let text = revision_yaml(&app, &t.env, head).await?;
    let caller = Evaluator {
        principal: &p,
        access: &t.access,
        org: &t.org,
        import_action: Action::Open,
        source: &source,
    };
    let name = format!("{}/{}", t.env.project, t.env.name);
    let mode = Mode::Rotate {
        paths: wanted.as_ref().map(|w| w.iter().map(|(_, d)| d.clone()).collect()),
    };
    let out = eval::run(&app, &caller, &name, &text, Some((&t.env, head)), mode).await?;
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
    let rotated = apply_patches(&app, &t.org.id, &t.env.id, &text, &out.patches).await?;
    let paths: Vec<String> = out.patches.iter().map(|pa| call_path(&pa.doc_path)).collect();
    let event = env_event(&app, &p, &source, &t, AuditAction::EnvRotate);
    let audit = |rev: &i64| {
        event
            .clone()
            .detail(format!("revision {rev} paths {}", paths.join(",")))
    };
    let now = app.clock.now_ms();
    let written = app
        .store
        .write_revision(&t.env.id, Some(head), &rotated, &login_of(&p), now, Some(&audit))
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
    Ok(axum::Json(esc::RotateResponse {
        diagnostics: Vec::new(),
        secret_rotation_event: esc::SecretRotationEvent {
            id: uuid::Uuid::now_v7().to_string(),
            environment_id: t.env.id.clone(),
            created: rfc3339(now),
            pre_rotation_revision: head,
            post_rotation_revision: Some(rev),
            user_id: login_of(&p),
            completed: Some(rfc3339(now)),
            status: "succeeded".into(),
            rotations,
        },
    })
    .into_response())
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

/// The document `text` with each patch's state written in, its secret strings sealed.
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
    let mut docs = YamlLoader::load_from_str(text).map_err(|_| bad())?;
    if docs.len() != 1 {
        return Err(bad());
    }
    let mut doc = docs.pop().ok_or_else(bad)?;
    for pa in patches {
        let path = PropertyPath::parse(&pa.doc_path).map_err(|_| bad())?;
        let replacement = to_yaml(&pa.replacement, &mut cts).ok_or_else(bad)?;
        let segs = path.segs();
        let (last, parents) = segs.split_last().ok_or_else(bad)?;
        let mut node = &mut doc;
        for s in parents {
            node = match (s, node) {
                (Seg::Key(k), Yaml::Hash(h)) => h.get_mut(&Yaml::String(k.clone())).ok_or_else(bad)?,
                (Seg::Index(i), Yaml::Array(a)) => a.get_mut(*i).ok_or_else(bad)?,
                _ => return Err(bad()),
            };
        }
        match (last, node) {
            (Seg::Key(k), Yaml::Hash(h)) => {
                h.insert(Yaml::String(k.clone()), replacement);
            }
            _ => return Err(bad()),
        }
    }
    let mut out = String::new();
    YamlEmitter::new(&mut out).dump(&doc).map_err(|_| bad())?;
    out.push('\n');
    Ok(out)
}

fn secret_strings(v: &Value, out: &mut Vec<Zeroizing<String>>) {
    match &v.repr {
        Repr::String(s) if v.secret => out.push(Zeroizing::new(s.to_string())),
        Repr::Array(items) => items.iter().for_each(|i| secret_strings(i, out)),
        Repr::Object(map) => map.iter().for_each(|(_, i)| secret_strings(i, out)),
        _ => {}
    }
}

/// `v` as YAML, each secret string replaced by `fn::secret: {ciphertext: …}` (the next of `cts`, in the order
/// [`secret_strings`] walks).
fn to_yaml(v: &Value, cts: &mut impl Iterator<Item = String>) -> Option<Yaml> {
    Some(match &v.repr {
        Repr::String(_) if v.secret => {
            let mut inner = Hash::new();
            inner.insert(Yaml::String("ciphertext".into()), Yaml::String(cts.next()?));
            let mut outer = Hash::new();
            outer.insert(Yaml::String("fn::secret".into()), Yaml::Hash(inner));
            Yaml::Hash(outer)
        }
        Repr::String(s) => Yaml::String(s.to_string()),
        Repr::Null => Yaml::Null,
        Repr::Bool(b) => Yaml::Boolean(*b),
        Repr::Number(_) => match v.to_json(false) {
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Integer(i),
                None => Yaml::Real(n.to_string()),
            },
            _ => return None,
        },
        Repr::Array(items) => Yaml::Array(items.iter().map(|i| to_yaml(i, cts)).collect::<Option<_>>()?),
        Repr::Object(map) => {
            let mut h = Hash::new();
            for (k, i) in map.iter() {
                h.insert(Yaml::String(k.to_string()), to_yaml(i, cts)?);
            }
            Yaml::Hash(h)
        }
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
