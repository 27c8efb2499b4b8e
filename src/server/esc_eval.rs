//! The edge of the ESC evaluator: resolves imports from the store (same org, `project/env`, a bare `env` meaning
//! `default/env`, `@revision` / `@tag` pins, each checked against the caller's role), opens ciphertexts with the
//! keyring, and runs the pure evaluator round after round until nothing is pending. Also seals and opens the
//! `fn::secret` values of stored definitions, splicing by byte range so the user's text survives.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use crate::core::authz::{Access, Action, Decision};
use crate::core::env::crypt::{self, CryptError};
use crate::core::env::eval::{
    Answer, DecryptError, DecryptRequest, Effects, Mode, Need, Options, ProviderCall, ProviderSchema, RotatorSchema,
};
use crate::core::env::{Evaluated, Value, evaluate, load};
use crate::core::keys::{Scope, env_secret_aad};
use crate::keyring::KeyringError;
use crate::store::OrgRecord;
use crate::store::envs::EnvRecord;

/// Most evaluation rounds (each resolves what the previous one found pending).
const MAX_ROUNDS: usize = 64;

/// The project a bare import name lives in (ESC's convention).
pub const DEFAULT_PROJECT: &str = "default";

/// The DEK scope of an environment.
pub fn env_scope(org_id: &str, env_id: &str) -> Scope {
    Scope::Environment {
        org_id: org_id.to_owned(),
        env_id: env_id.to_owned(),
    }
}

/// An import reference: `project/env`, or a bare `env` (in `default`), with an optional `@version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRef {
    pub project: String,
    pub name: String,
    pub version: Option<String>,
}

impl EnvRef {
    pub fn parse(text: &str) -> Option<EnvRef> {
        let (path, version) = match text.split_once('@') {
            Some((p, v)) if !v.is_empty() => (p, Some(v.to_owned())),
            Some(_) => return None,
            None => (text, None),
        };
        let (project, name) = match path.split_once('/') {
            Some((p, n)) => (p, n),
            None => (DEFAULT_PROJECT, path),
        };
        let ok = |s: &str| s.parse::<crate::core::keys::Name>().is_ok();
        (ok(project) && ok(name)).then(|| EnvRef {
            project: project.to_owned(),
            name: name.to_owned(),
            version,
        })
    }
}

/// Resolves a version string (`latest`, a revision number, or a revision tag) against an environment.
pub async fn resolve_version(app: &AppState, env: &EnvRecord, version: Option<&str>) -> Result<i64, ApiError> {
    let unknown = |v: &str| ApiError::not_found(format!("revision or tag '{v}' not found"));
    match version {
        None | Some("latest") => Ok(env.head),
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => {
            let n: i64 = v.parse().map_err(|_| unknown(v))?;
            if n < 1 || n > env.head {
                return Err(unknown(v));
            }
            Ok(n)
        }
        Some(v) => Ok(app
            .store
            .revision_tag(&env.id, v)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .ok_or_else(|| unknown(v))?
            .revision),
    }
}

/// The YAML of a revision, following a retraction to its replacement.
pub async fn revision_yaml(app: &AppState, env: &EnvRecord, revision: i64) -> Result<String, ApiError> {
    let rev = app
        .store
        .revision(&env.id, revision)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found(format!("revision {revision} not found")))?;
    match rev.retracted {
        Some(r) if r.replacement != revision => Box::pin(revision_yaml(app, env, r.replacement)).await,
        _ => Ok(rev.yaml),
    }
}

/// Who is evaluating, and what imports need.
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub access: &'a Access,
    pub org: &'a OrgRecord,
    /// `Open` when values are revealed (open), `Read` when only checked.
    pub import_action: Action,
}

/// A loaded document: its text and, for a stored environment, its ids (to open its ciphertexts).
#[derive(Clone)]
struct Doc {
    src: Arc<str>,
    env_id: Option<String>,
}

#[derive(Default)]
struct Answers {
    docs: HashMap<String, Result<Doc, String>>,
    plain: HashMap<DecryptRequest, Result<String, DecryptError>>,
}

impl Effects for Answers {
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, String>> {
        match self.docs.get(name) {
            Some(r) => Answer::Ready(r.as_ref().map(|d| d.src.clone()).map_err(Clone::clone)),
            None => Answer::Pending,
        }
    }
    fn decrypt(&self, req: &DecryptRequest) -> Answer<Result<String, DecryptError>> {
        match self.plain.get(req) {
            Some(r) => Answer::Ready(r.clone()),
            None => Answer::Pending,
        }
    }
    fn provider(&self, _name: &str) -> Option<ProviderSchema> {
        None
    }
    fn rotator(&self, _name: &str) -> Option<RotatorSchema> {
        None
    }
    fn call(&self, _call: &ProviderCall) -> Answer<Result<Value, String>> {
        Answer::Ready(Err("providers are not available on this server yet".into()))
    }
}

/// Evaluates a document named `root_name` (a stored environment when `root_env` is given; otherwise anonymous).
pub async fn run(
    app: &AppState,
    caller: &Caller<'_>,
    root_name: &str,
    src: &str,
    root_env: Option<&EnvRecord>,
    mode: Mode,
) -> Result<Evaluated, ApiError> {
    let loaded = load(root_name, src);
    let mut answers = Answers::default();
    answers.docs.insert(
        root_name.to_owned(),
        Ok(Doc {
            src: Arc::from(src),
            env_id: root_env.map(|e| e.id.clone()),
        }),
    );
    let validate_only = matches!(mode, Mode::Check { show_secrets: false });
    prefetch(app, caller, &mut answers, &loaded, validate_only).await?;
    let opts = Options {
        mode,
        context: Default::default(),
    };
    // With everything prefetched one round is the rule; more happen only for what prefetching cannot see (an
    // `${environments.P.E}` reference, say).
    for _ in 0..MAX_ROUNDS {
        let mut out = evaluate(&loaded, &answers, &opts);
        if out.pending.is_empty() {
            out.diags.extend(loaded.diags.iter().cloned());
            crate::core::env::diag::sort(&mut out.diags);
            out.diags.dedup();
            return Ok(out);
        }
        // Imports of one round are fetched concurrently; decrypts need the documents, so they follow.
        let mut loads = Vec::new();
        let mut decrypts = Vec::new();
        for need in out.pending {
            match need {
                Need::Load(name) => loads.push(name),
                Need::Decrypt(req) => decrypts.push(req),
                Need::Call(_) => {}
            }
        }
        let fetched = futures::future::join_all(loads.iter().map(|name| load_import(app, caller, name))).await;
        for (name, doc) in loads.into_iter().zip(fetched) {
            answers.docs.insert(name, doc?);
        }
        for req in decrypts {
            let env_id = answers
                .docs
                .get(&req.env)
                .and_then(|d| d.as_ref().ok())
                .and_then(|d| d.env_id.clone());
            let answer = decrypt_one(app, &caller.org.id, env_id.as_deref(), &req).await?;
            answers.plain.insert(req, answer);
        }
    }
    Err(ApiError::bad_request(
        "the environment needs too many evaluation rounds",
    ))
}

/// Fetches every import (transitively, each level concurrently) and opens every ciphertext before evaluation, so
/// the evaluator runs once instead of once per import level and secret.
async fn prefetch(
    app: &AppState,
    caller: &Caller<'_>,
    answers: &mut Answers,
    root: &crate::core::env::Loaded,
    validate_only: bool,
) -> Result<(), ApiError> {
    let mut level: Vec<crate::core::env::Loaded>;
    let mut this: Vec<&crate::core::env::Loaded> = vec![root];
    let mut depth = 0;
    while !this.is_empty() && depth < MAX_ROUNDS {
        depth += 1;
        let mut names: Vec<String> = Vec::new();
        for doc in &this {
            let Some(decl) = &doc.decl else { continue };
            let env_id = answers
                .docs
                .get(&*doc.name)
                .and_then(|d| d.as_ref().ok())
                .and_then(|d| d.env_id.clone());
            for ct in decl.ciphertexts() {
                let req = DecryptRequest {
                    env: doc.name.to_string(),
                    ciphertext: ct.to_owned(),
                    validate_only,
                };
                if !answers.plain.contains_key(&req) {
                    let answer = decrypt_one(app, &caller.org.id, env_id.as_deref(), &req).await?;
                    answers.plain.insert(req, answer);
                }
            }
            for import in &decl.imports {
                if !answers.docs.contains_key(&import.name) && !names.contains(&import.name) {
                    names.push(import.name.clone());
                }
            }
        }
        let fetched = futures::future::join_all(names.iter().map(|n| load_import(app, caller, n))).await;
        let mut next = Vec::new();
        for (name, doc) in names.into_iter().zip(fetched) {
            let doc = doc?;
            if let Ok(d) = &doc {
                next.push(crate::core::env::load(&name, &d.src));
            }
            answers.docs.insert(name, doc);
        }
        level = next;
        this = level.iter().collect();
    }
    Ok(())
}

async fn load_import(app: &AppState, caller: &Caller<'_>, name: &str) -> Result<Result<Doc, String>, ApiError> {
    let missing = || Ok(Err(format!("environment \"{name}\" not found")));
    let Some(r) = EnvRef::parse(name) else {
        return Ok(Err(format!("invalid environment name \"{name}\"")));
    };
    // An import the caller may not use is reported exactly like a missing one.
    if caller
        .access
        .decide(Some(&r.project), Some(&r.name), caller.import_action)
        != Decision::Allow
    {
        return missing();
    }
    let env = app
        .store
        .env_by_name(&caller.org.id, &r.project, &r.name)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let Some(env) = env else { return missing() };
    let revision = match resolve_version(app, &env, r.version.as_deref()).await {
        Ok(rev) => rev,
        Err(e) if e.status() == axum::http::StatusCode::NOT_FOUND => {
            return Ok(Err(format!("environment \"{name}\": {}", e.message())));
        }
        Err(e) => return Err(e),
    };
    let yaml = revision_yaml(app, &env, revision).await?;
    Ok(Ok(Doc {
        src: Arc::from(yaml),
        env_id: Some(env.id),
    }))
}

async fn decrypt_one(
    app: &AppState,
    org_id: &str,
    env_id: Option<&str>,
    req: &DecryptRequest,
) -> Result<Result<String, DecryptError>, ApiError> {
    let Ok(bytes) = STANDARD.decode(req.ciphertext.trim()) else {
        return Ok(Err(DecryptError::Invalid("not base64".into())));
    };
    let Some(env_id) = env_id else {
        return Ok(Err(DecryptError::Failed(
            "ciphertexts can only be opened in the environment that sealed them".into(),
        )));
    };
    match app
        .keyring
        .open(&env_scope(org_id, env_id), &env_secret_aad(org_id, env_id), &bytes)
        .await
    {
        Ok(plain) => {
            if req.validate_only {
                return Ok(Ok(String::new()));
            }
            match std::str::from_utf8(plain.as_ref()) {
                Ok(s) => Ok(Ok(s.to_owned())),
                Err(_) => Ok(Err(DecryptError::Failed("the secret is not UTF-8 text".into()))),
            }
        }
        Err(KeyringError::Undecryptable) => Ok(Err(DecryptError::Failed(
            "the ciphertext was altered or belongs to another environment".into(),
        ))),
        Err(e) => Err(e.into()),
    }
}

fn crypt_error(e: CryptError<ApiError>) -> ApiError {
    match e {
        CryptError::Syntax(s) => ApiError::bad_request(format!("invalid YAML: {}", s.message)),
        CryptError::Crypto { line, error } => {
            ApiError::new(error.status(), format!("line {line}: {}", error.message()))
        }
    }
}

/// Seals every plaintext `fn::secret` of `yaml` under the environment's DEK; the rest of the text is untouched.
pub async fn seal_secrets(app: &AppState, org_id: &str, env_id: &str, yaml: &str) -> Result<String, ApiError> {
    // First pass: collect the plaintexts in document order; then seal them under one DEK lookup; then splice.
    let mut plaintexts: Vec<zeroize::Zeroizing<String>> = Vec::new();
    crypt::seal_plaintexts::<ApiError>(yaml, &mut |p| {
        plaintexts.push(zeroize::Zeroizing::new(p.to_owned()));
        Ok(String::new())
    })
    .map_err(crypt_error)?;
    if plaintexts.is_empty() {
        return Ok(yaml.to_owned());
    }
    let sealed = app
        .keyring
        .seal_many(
            &env_scope(org_id, env_id),
            &env_secret_aad(org_id, env_id),
            plaintexts.iter().map(|p| p.as_bytes()),
        )
        .await?;
    let mut next = sealed.into_iter();
    crypt::seal_plaintexts::<ApiError>(yaml, &mut |_| {
        next.next()
            .map(|ct| STANDARD.encode(ct))
            .ok_or_else(|| ApiError::bad_request("the document changed while it was sealed"))
    })
    .map_err(crypt_error)
}

/// Opens every sealed `fn::secret` under `values` back to plaintext (for `decrypt` and clones).
pub async fn open_secrets(app: &AppState, org_id: &str, env_id: &str, yaml: &str) -> Result<String, ApiError> {
    let mut ciphertexts = Vec::new();
    crypt::open_ciphertexts::<ApiError>(yaml, &mut |ct| {
        ciphertexts.push(ct.to_owned());
        Ok(String::new())
    })
    .map_err(crypt_error)?;
    if ciphertexts.is_empty() {
        return Ok(yaml.to_owned());
    }
    let mut plain = Vec::with_capacity(ciphertexts.len());
    for ct in &ciphertexts {
        let req = DecryptRequest {
            env: String::new(),
            ciphertext: ct.clone(),
            validate_only: false,
        };
        let text = match decrypt_one(app, org_id, Some(env_id), &req).await? {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(DecryptError::Invalid(why) | DecryptError::Failed(why)) => {
                return Err(ApiError::bad_request(format!(
                    "a stored secret could not be opened: {why}"
                )));
            }
        };
        plain.push(text);
    }
    let mut next = plain.iter();
    crypt::open_ciphertexts::<ApiError>(yaml, &mut |_| {
        next.next()
            .map(|p| p.as_str().to_owned())
            .ok_or_else(|| ApiError::bad_request("the document changed while it was opened"))
    })
    .map_err(crypt_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_names_resolve_like_esc() {
        let r = EnvRef::parse("base").unwrap();
        assert_eq!(
            (r.project.as_str(), r.name.as_str(), r.version),
            ("default", "base", None)
        );
        let r = EnvRef::parse("app/prod@stable").unwrap();
        assert_eq!((r.project.as_str(), r.name.as_str()), ("app", "prod"));
        assert_eq!(r.version.as_deref(), Some("stable"));
        assert_eq!(EnvRef::parse("app/prod@3").unwrap().version.as_deref(), Some("3"));
        for bad in ["", "a/b/c", "a@", "../x", "a/"] {
            assert!(EnvRef::parse(bad).is_none(), "{bad}");
        }
    }
}
