//! The edge of the ESC evaluator: resolves imports from the store (same org, `project/env`, a bare `env` meaning
//! `default/env`, `@revision` / `@tag` pins, each checked against the caller's role), opens ciphertexts with the
//! keyring (through [`super::seal`]), runs providers ([`super::providers`]: each call audited, cut at its deadline,
//! its error a diagnostic at the call without any secret input in it), and runs the pure evaluator round after
//! round until nothing is pending. A session read instead answers every provider call from the session's stored
//! outputs ([`Resolved::replay`]): no provider runs again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::providers::{self, OpenCtx, Output};
use super::rotators;
use super::seal::decrypt_one;
use crate::core::audit::{AuditAction, Outcome};
use crate::core::authz::{Access, Action, Decision};
use crate::core::env::env_ref::EnvRef;
use crate::core::env::eval::{
    Answer, CallKind, DecryptError, DecryptRequest, EffectError, Effects, Mode, Need, Options, ProviderCall,
    ProviderSchema, RotatorSchema,
};
use crate::core::env::session::{Pin, Pins};
use crate::core::env::value::Repr;
use crate::core::env::{Evaluated, Value, evaluate, load};
use crate::server::AppState;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::store::OrgRecord;
use crate::store::envs::EnvRecord;

/// Most evaluation rounds (each resolves what the previous one found pending).
const MAX_ROUNDS: usize = 64;
/// Most provider calls one evaluation makes; calls past it are errors at their `fn::open`.
pub const MAX_PROVIDER_CALLS: usize = 32;
/// Most rounds of provider calls one evaluation makes (one provider's output feeding another's input takes one
/// round per link): with each call's deadline, this bounds how long providers hold an open.
pub const MAX_PROVIDER_ROUNDS: usize = 8;

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
            .await?
            .ok_or_else(|| unknown(v))?
            .revision),
    }
}

/// A stored revision's text with what prefetching needs from it (its imports and ciphertexts), parsed once.
pub struct DocInfo {
    pub src: Arc<str>,
    imports: Vec<String>,
    ciphertexts: Vec<String>,
}

impl DocInfo {
    fn new(name: &str, src: Arc<str>) -> DocInfo {
        let loaded = load(name, &src);
        DocInfo::of(&loaded, src)
    }

    fn of(loaded: &crate::core::env::Loaded, src: Arc<str>) -> DocInfo {
        let (imports, ciphertexts) = match &loaded.decl {
            Some(d) => (
                d.imports.iter().map(|i| i.name.clone()).collect(),
                d.ciphertexts().into_iter().map(str::to_owned).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        DocInfo {
            src,
            imports,
            ciphertexts,
        }
    }
}

/// The text of a revision, following a retraction to its replacement. Revisions are immutable, so the text is
/// cached per (environment id, revision); a retraction on this replica clears the cache, and entries expire after
/// [`crate::server::DOC_CACHE_TTL`], which bounds how long another replica may serve a revision retracted elsewhere.
pub async fn revision_doc(app: &AppState, env: &EnvRecord, revision: i64) -> Result<Arc<DocInfo>, ApiError> {
    let key = (env.id.clone(), revision);
    if let Some(d) = app.doc_cache.get(&key).await {
        return Ok(d);
    }
    let mut rev = revision;
    let mut hops = 0;
    let yaml = loop {
        let row = app
            .store
            .revision(&env.id, rev)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("revision {rev} not found")))?;
        match row.retracted {
            Some(r) if r.replacement != rev && hops < 64 => {
                rev = r.replacement;
                hops += 1;
            }
            _ => break row.yaml,
        }
    };
    let info = Arc::new(DocInfo::new(&format!("{}/{}", env.project, env.name), Arc::from(yaml)));
    app.doc_cache.insert(key, info.clone()).await;
    Ok(info)
}

/// The YAML of a revision, following a retraction to its replacement.
pub async fn revision_yaml(app: &AppState, env: &EnvRecord, revision: i64) -> Result<String, ApiError> {
    Ok(revision_doc(app, env, revision).await?.src.to_string())
}

/// Who is evaluating, and what imports need.
pub struct Evaluator<'a> {
    pub principal: &'a Principal,
    pub access: &'a Access,
    pub org: &'a OrgRecord,
    /// `Open` when values are revealed (open), `Read` when only checked.
    pub import_action: Action,
    /// Where the request came from, for the audit records of provider calls.
    pub source: &'a str,
}

/// A loaded document: its text and, for a stored environment, its ids (to open its ciphertexts).
#[derive(Clone)]
struct Doc {
    info: Arc<DocInfo>,
    /// The environment and revision, for a stored document.
    env_id: Option<String>,
    revision: i64,
}

/// Where a provider call is made: the provider, the document and the path in it. Each call site is evaluated
/// once per evaluation, so it names the call.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct CallSite {
    pub provider: String,
    pub env: String,
    pub path: String,
}

impl CallSite {
    fn of(call: &ProviderCall) -> CallSite {
        CallSite {
            provider: call.provider.clone(),
            env: call.env.clone(),
            path: call.path.clone(),
        }
    }
}

/// One provider call's output, as a session stores it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StoredOutput {
    pub site: CallSite,
    pub output: Output,
}

#[derive(Default)]
struct Answers {
    docs: HashMap<String, Result<Doc, EffectError>>,
    /// Opened secrets, wiped when the answers go.
    plain: HashMap<DecryptRequest, Result<String, DecryptError>>,
    /// Provider calls answered, by call site (outputs are wiped when they go).
    calls: BTreeMap<CallSite, Result<Output, EffectError>>,
    /// Replaying a session: the stored outputs answer every call and nothing is called.
    replay: bool,
    /// New rotator states drawn in this evaluation (at the edge, like provider outputs), by call site (wiped when
    /// they go), or why the rotation failed.
    rotated: std::sync::Mutex<BTreeMap<CallSite, Result<serde_json::Value, String>>>,
}

impl Drop for Answers {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for text in self.plain.values_mut().flatten() {
            text.zeroize();
        }
        let rotated = self
            .rotated
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, v) in std::mem::take(rotated) {
            if let Ok(v) = v {
                crate::server::answer::wipe_json(v);
            }
        }
    }
}

impl Effects for Answers {
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, EffectError>> {
        match self.docs.get(name) {
            Some(r) => Answer::Ready(r.as_ref().map(|d| d.info.src.clone()).map_err(Clone::clone)),
            None => Answer::Pending,
        }
    }
    fn decrypt(&self, req: &DecryptRequest) -> Answer<Result<String, DecryptError>> {
        match self.plain.get(req) {
            Some(r) => Answer::Ready(r.clone()),
            None => Answer::Pending,
        }
    }
    fn provider(&self, name: &str) -> Option<ProviderSchema> {
        providers::find(name).map(|p| ProviderSchema {
            inputs: p.inputs().clone(),
            outputs: p.outputs().clone(),
        })
    }
    fn rotator(&self, name: &str) -> Option<RotatorSchema> {
        rotators::find(name).map(|r| RotatorSchema {
            inputs: r.inputs().clone(),
            state: r.state().clone(),
            outputs: r.outputs().clone(),
        })
    }
    fn call(&self, call: &ProviderCall) -> Answer<Result<Value, EffectError>> {
        if call.kind != CallKind::Open {
            return self.rotator_call(call);
        }
        match self.calls.get(&CallSite::of(call)) {
            Some(Ok(o)) => Answer::Ready(Ok(match providers::find(&call.provider) {
                // Secret as a whole, or where the provider's output schema says so.
                Some(p) if !o.secret => Value::from_json_marked(&o.value, p.outputs()),
                _ => Value::from_json(&o.value).deep_secret(),
            })),
            Some(Err(e)) => Answer::Ready(Err(e.clone())),
            None if self.replay => Answer::Ready(Err(EffectError::Failed(
                "this session holds no output for this call".into(),
            ))),
            None => Answer::Pending,
        }
    }
}

impl Answers {
    /// A rotator's `open`, answered at once; its `rotate`, answered from the new state the edge drew for the call
    /// site ([`run_calls`], once per evaluation, so every round sees the same new state) or pending until then.
    fn rotator_call(&self, call: &ProviderCall) -> Answer<Result<Value, EffectError>> {
        if call.kind == CallKind::Rotate {
            let drawn = self.rotated.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            return match drawn.get(&CallSite::of(call)) {
                Some(Ok(v)) => Answer::Ready(Ok(Value::from_json(v).deep_secret())),
                Some(Err(e)) => Answer::Ready(Err(EffectError::Failed(e.clone()))),
                None if self.replay => Answer::Ready(Err(EffectError::Failed("a session does not rotate".into()))),
                None => Answer::Pending,
            };
        }
        if rotators::find(&call.provider).is_none() {
            return Answer::Ready(Err(EffectError::Failed(format!("unknown rotator {:?}", call.provider))));
        }
        let state = call.state.as_ref().map(|s| s.to_json(false));
        let v = rotators::open(state.as_ref());
        if let Some(s) = state {
            crate::server::answer::wipe_json(s);
        }
        let out = Value::from_json(&v).deep_secret();
        crate::server::answer::wipe_json(v);
        Answer::Ready(Ok(out))
    }
}

/// Everything an evaluation reads, resolved: the root and every import (transitively), each with its text.
pub struct Resolved {
    root_name: String,
    /// The parsed root, when resolving needed it (a document not in the revision cache); parsed on evaluation
    /// otherwise.
    loaded: Option<crate::core::env::Loaded>,
    answers: Answers,
}

impl Resolved {
    /// What the evaluation reads, as pins: each document's environment id and revision, an unsaved document's
    /// text, or the error an import gave.
    pub fn pins(&self) -> Pins {
        Pins::new(
            self.root_name.clone(),
            self.answers.docs.iter().map(|(name, doc)| {
                let pin = match doc {
                    Ok(Doc {
                        env_id: Some(env),
                        revision,
                        ..
                    }) => Pin::Stored {
                        env: env.clone(),
                        revision: *revision,
                    },
                    Ok(d) => Pin::Text {
                        text: d.info.src.to_string(),
                    },
                    Err(e) => Pin::Failed { error: e.clone() },
                };
                (name.clone(), pin)
            }),
        )
    }

    /// A digest of everything the evaluation depends on ([`Pins::digest`]). Equal digests mean equal results for
    /// an evaluation without providers (whose outputs differ at each open).
    pub fn digest(&self, mode: &str) -> [u8; 32] {
        self.pins().digest(mode)
    }

    /// Whether a document read so far may call a provider (its text names `fn::open`): such an evaluation is run
    /// by each open on its own, never shared with concurrent opens.
    pub fn may_call_providers(&self) -> bool {
        self.answers
            .docs
            .values()
            .any(|d| d.as_ref().is_ok_and(|d| d.info.src.contains("fn::open")))
    }

    /// What the providers returned in this evaluation, by call site (errors left out: they are diagnostics).
    pub fn provider_outputs(&self) -> Vec<StoredOutput> {
        self.answers
            .calls
            .iter()
            .filter_map(|(site, r)| {
                r.as_ref().ok().map(|o| StoredOutput {
                    site: site.clone(),
                    output: o.clone(),
                })
            })
            .collect()
    }

    /// Makes `outputs` answer every provider call of the next evaluation, which then calls no provider.
    pub fn replay(&mut self, outputs: Vec<StoredOutput>) {
        self.answers.replay = true;
        for o in outputs {
            self.answers.calls.insert(o.site, Ok(o.output));
        }
    }
}

/// Whether the caller may still use every environment `pins` imports (the root is checked by the handler).
pub fn pins_allowed(caller: &Evaluator<'_>, pins: &Pins) -> bool {
    pins.imports().all(|(name, _)| {
        EnvRef::import(name, &caller.org.name).is_some_and(|r| {
            caller
                .access
                .decide(Some(&r.project), Some(&r.name), caller.import_action)
                == Decision::Allow
        })
    })
}

/// Rebuilds what an evaluation read from its pins, each stored document at its pinned revision (following a
/// retraction to its replacement, as [`revision_doc`] does). `None` when it cannot be rebuilt for this caller: an
/// environment is gone, or the caller may no longer use an import.
pub async fn resolve_pinned(app: &AppState, caller: &Evaluator<'_>, pins: &Pins) -> Result<Option<Resolved>, ApiError> {
    if !pins_allowed(caller, pins) {
        return Ok(None);
    }
    let ids: Vec<&str> = pins
        .docs
        .iter()
        .filter_map(|d| match &d.pin {
            Pin::Stored { env, .. } => Some(env.as_str()),
            _ => None,
        })
        .collect();
    let found = if ids.is_empty() {
        Vec::new()
    } else {
        app.store.envs_by_ids(&caller.org.id, &ids).await?
    };
    let mut answers = Answers::default();
    for d in &pins.docs {
        let doc = match &d.pin {
            Pin::Stored { env, revision } => {
                let Some(rec) = found.iter().find(|e| &e.id == env) else {
                    return Ok(None);
                };
                if *revision < 1 || *revision > rec.head {
                    return Ok(None);
                }
                Ok(Doc {
                    info: revision_doc(app, rec, *revision).await?,
                    env_id: Some(env.clone()),
                    revision: *revision,
                })
            }
            Pin::Text { text } => Ok(Doc {
                info: Arc::new(DocInfo::new(&d.name, Arc::from(text.as_str()))),
                env_id: None,
                revision: 0,
            }),
            Pin::Failed { error } => Err(error.clone()),
        };
        answers.docs.insert(d.name.clone(), doc);
    }
    if !answers.docs.contains_key(&pins.root) {
        return Ok(None);
    }
    Ok(Some(Resolved {
        root_name: pins.root.clone(),
        loaded: None,
        answers,
    }))
}

/// Resolves a document named `root_name` (a stored environment when `root_env` is given; otherwise anonymous) and
/// all it imports, each level of imports fetched concurrently.
pub async fn resolve(
    app: &AppState,
    caller: &Evaluator<'_>,
    root_name: &str,
    src: &str,
    root_env: Option<(&EnvRecord, i64)>,
) -> Result<Resolved, ApiError> {
    // A stored revision's imports come from the revision cache (no parse on the hot path); other text is parsed.
    let cached = match root_env {
        Some((e, rev)) => app.doc_cache.get(&(e.id.clone(), rev)).await.filter(|d| &*d.src == src),
        None => None,
    };
    let (info, loaded) = match cached {
        Some(info) => (info, None),
        None => {
            let loaded = load(root_name, src);
            (Arc::new(DocInfo::of(&loaded, Arc::from(src))), Some(loaded))
        }
    };
    let mut answers = Answers::default();
    answers.docs.insert(
        root_name.to_owned(),
        Ok(Doc {
            info,
            env_id: root_env.map(|(e, _)| e.id.clone()),
            revision: root_env.map_or(0, |(_, r)| r),
        }),
    );
    let mut level = vec![root_name.to_owned()];
    let mut depth = 0;
    while !level.is_empty() && depth < MAX_ROUNDS {
        depth += 1;
        let mut names: Vec<String> = Vec::new();
        for name in &level {
            let Some(Ok(doc)) = answers.docs.get(name) else {
                continue;
            };
            for import in &doc.info.imports {
                if !answers.docs.contains_key(import) && !names.contains(import) {
                    names.push(import.clone());
                }
            }
        }
        // The evaluator refuses more than MAX_ENVIRONMENTS documents; fetching stops there too, so a document that
        // names thousands of imports costs bounded work.
        names.truncate(crate::core::env::eval::MAX_ENVIRONMENTS.saturating_sub(answers.docs.len()));
        let fetched = load_imports(app, caller, &names).await?;
        for (name, doc) in names.iter().zip(fetched) {
            answers.docs.insert(name.clone(), doc);
        }
        level = names;
    }
    Ok(Resolved {
        root_name: root_name.to_owned(),
        loaded,
        answers,
    })
}

/// Evaluates what [`resolve`] gathered: opens every ciphertext first, so the evaluator normally runs once.
pub async fn evaluate_resolved(
    app: &AppState,
    caller: &Evaluator<'_>,
    r: &mut Resolved,
    mode: Mode,
) -> Result<Evaluated, ApiError> {
    let validate_only = matches!(mode, Mode::Check { show_secrets: false });
    let mut wanted = Vec::new();
    for (name, doc) in &r.answers.docs {
        let Ok(doc) = doc else { continue };
        for ct in &doc.info.ciphertexts {
            wanted.push((
                DecryptRequest {
                    env: name.clone(),
                    ciphertext: ct.clone(),
                    validate_only,
                },
                doc.env_id.clone(),
            ));
        }
    }
    for (req, env_id) in wanted {
        if let std::collections::hash_map::Entry::Vacant(slot) = r.answers.plain.entry(req) {
            let answer = decrypt_one(app, &caller.org.id, env_id.as_deref(), slot.key()).await?;
            slot.insert(answer);
        }
    }
    let loaded = match r.loaded.take() {
        Some(l) => l,
        None => {
            let src = match r.answers.docs.get(&r.root_name) {
                Some(Ok(d)) => d.info.src.clone(),
                _ => Arc::from(""),
            };
            load(&r.root_name, &src)
        }
    };
    let opts = Options {
        mode,
        context: Default::default(),
    };
    // With everything prefetched one round is the rule; more happen only for what prefetching cannot see (an
    // `${environments.P.E}` reference, say).
    let mut provider_rounds = 0;
    for _ in 0..MAX_ROUNDS {
        let mut out = evaluate(&loaded, &r.answers, &opts);
        if out.pending.is_empty() {
            out.diags.extend(loaded.diags.iter().cloned());
            crate::core::env::diag::sort(&mut out.diags);
            out.diags.dedup();
            return Ok(out);
        }
        let mut loads = Vec::new();
        let mut decrypts = Vec::new();
        let mut calls = Vec::new();
        for need in out.pending {
            match need {
                Need::Load(name) => loads.push(name),
                Need::Decrypt(req) => decrypts.push(req),
                Need::Call(call) => calls.push(*call),
            }
        }
        if !calls.is_empty() {
            provider_rounds += 1;
            run_calls(app, caller, r, calls, provider_rounds).await?;
        }
        let fetched = futures::future::join_all(loads.iter().map(|name| load_import(app, caller, name))).await;
        for (name, doc) in loads.into_iter().zip(fetched) {
            r.answers.docs.insert(name, doc?);
        }
        for req in decrypts {
            let env_id = r
                .answers
                .docs
                .get(&req.env)
                .and_then(|d| d.as_ref().ok())
                .and_then(|d| d.env_id.clone());
            let answer = decrypt_one(app, &caller.org.id, env_id.as_deref(), &req).await?;
            r.answers.plain.insert(req, answer);
        }
    }
    Err(ApiError::bad_request(
        "the environment needs too many evaluation rounds",
    ))
}

/// The strings marked secret in `v` (to blank them out of a provider's message).
fn secret_strings(v: &Value, out: &mut Vec<String>) {
    match &v.repr {
        Repr::String(s) if v.secret && s.len() >= 3 => out.push(s.to_string()),
        Repr::Array(items) => items.iter().for_each(|i| secret_strings(i, out)),
        Repr::Object(map) => map.iter().for_each(|(_, i)| secret_strings(i, out)),
        _ => {}
    }
}

/// A provider's message without any secret input in it, and at most 1000 bytes.
fn scrub(message: &str, secrets: &[String]) -> String {
    let mut m = message.to_owned();
    for s in secrets {
        if m.contains(s.as_str()) {
            m = m.replace(s.as_str(), "[secret]");
        }
    }
    if m.len() > 1000 {
        let mut cut = 1000;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push('…');
    }
    m
}

/// A provider's answer, or an error once `deadline` passed (the call is dropped, and with it its connections).
async fn within_deadline(
    provider: &str,
    deadline: std::time::Duration,
    call: impl std::future::Future<Output = Result<Output, String>>,
) -> Result<Output, String> {
    match tokio::time::timeout(deadline, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("the {provider} provider did not answer within {deadline:?}")),
    }
}

/// Runs one round of provider calls concurrently, each cut at its deadline, and records the answers (an error is
/// the diagnostic the evaluator reports at the call). Every call is audited: provider, environment, call site and
/// outcome.
async fn run_calls(
    app: &AppState,
    caller: &Evaluator<'_>,
    r: &mut Resolved,
    calls: Vec<ProviderCall>,
    round: usize,
) -> Result<(), ApiError> {
    let env_of = |name: &str| {
        r.answers
            .docs
            .get(name)
            .and_then(|d| d.as_ref().ok())
            .and_then(|d| d.env_id.clone())
    };
    let root_id = env_of(&r.root_name);
    let mut ids: Vec<String> = calls.iter().filter_map(|c| env_of(&c.env)).collect();
    ids.extend(root_id.clone());
    ids.sort();
    ids.dedup();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let records = if id_refs.is_empty() {
        Vec::new()
    } else {
        app.store.envs_by_ids(&caller.org.id, &id_refs).await?
    };
    let record = |id: Option<String>| id.and_then(|id| records.iter().find(|e| e.id == id));
    let root = record(root_id);
    let target = match root {
        Some(e) => format!("{}/{}/{}", caller.org.name, e.project, e.name),
        None => format!("{}/<yaml>", caller.org.name),
    };
    let made = r.answers.calls.len();
    let runs = calls.iter().enumerate().map(|(i, call)| {
        let current = record(env_of(&call.env));
        async move {
            let mut secrets = Vec::new();
            secret_strings(&call.inputs, &mut secrets);
            let result = if made + i >= MAX_PROVIDER_CALLS {
                Err(format!(
                    "too many provider calls in one evaluation (at most {MAX_PROVIDER_CALLS})"
                ))
            } else if round > MAX_PROVIDER_ROUNDS {
                Err(format!(
                    "too many rounds of provider calls, one feeding the next (at most {MAX_PROVIDER_ROUNDS})"
                ))
            } else if call.kind == CallKind::Rotate {
                rotate_one(app, caller, (current, root), call).await
            } else if let Some(p) = providers::find(&call.provider) {
                let ctx = OpenCtx {
                    app,
                    principal: caller.principal,
                    source: caller.source,
                    org: caller.org,
                    current,
                    root,
                };
                let inputs = call.inputs.to_json(false);
                let answer = within_deadline(p.name(), p.deadline(), p.open(&ctx, &inputs)).await;
                crate::server::answer::wipe_json(inputs);
                answer
            } else {
                Err(format!("unknown provider {:?}", call.provider))
            };
            result.map_err(|m| scrub(&m, &secrets))
        }
    });
    let event_of = |call: &ProviderCall, outcome: Outcome, what: &str| {
        app.event(
            Some(caller.principal),
            caller.source,
            Some(&caller.org.id),
            AuditAction::ProviderOpen,
            &target,
        )
        .outcome(outcome)
        .detail(format!(
            "{}={} env={} path={} {what}",
            if call.kind == CallKind::Rotate {
                "rotator"
            } else {
                "provider"
            },
            call.provider,
            call.env,
            call.path
        ))
    };
    // A request that ends while its calls run (the client went away) still leaves their records.
    let mut abandoned = Abandoned {
        audit: Some(app.audit.clone()),
        events: calls
            .iter()
            .map(|c| {
                event_of(
                    c,
                    Outcome::Error,
                    "abandoned: the request ended before the call's answer was used",
                )
            })
            .collect(),
    };
    let answers = futures::future::join_all(runs).await;
    abandoned.audit = None;
    for (call, answer) in calls.iter().zip(answers) {
        let (outcome, what) = match &answer {
            Ok(_) => (Outcome::Ok, "ok".to_owned()),
            Err(m) => (Outcome::Failed, format!("error: {m}")),
        };
        app.record(event_of(call, outcome, &what)).await?;
        if call.kind == CallKind::Rotate {
            let state = answer.map(|mut o| std::mem::take(&mut o.value));
            r.answers
                .rotated
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(CallSite::of(call), state);
            continue;
        }
        r.answers
            .calls
            .insert(CallSite::of(call), answer.map_err(EffectError::Failed));
    }
    Ok(())
}

/// The records of a round's calls, written by a task of their own if the round is dropped before its answers are
/// (the request's future ended with its connection); disarmed by taking `audit`.
struct Abandoned {
    audit: Option<crate::audit::AuditLog>,
    events: Vec<crate::core::audit::AuditEvent>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(audit) = self.audit.take() {
            let events = std::mem::take(&mut self.events);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err((_, e)) = audit.record_many(events).await {
                        tracing::error!(error = %e, "the records of abandoned provider calls were not written");
                    }
                });
            }
        }
    }
}

/// A rotator's new state for `call` (a rotation), cut at the rotator's deadline; secret as a whole.
async fn rotate_one(
    app: &AppState,
    caller: &Evaluator<'_>,
    (current, root): (Option<&EnvRecord>, Option<&EnvRecord>),
    call: &ProviderCall,
) -> Result<Output, String> {
    let r = rotators::find(&call.provider).ok_or_else(|| format!("unknown rotator {:?}", call.provider))?;
    let ctx = OpenCtx {
        app,
        principal: caller.principal,
        source: caller.source,
        org: caller.org,
        current,
        root,
    };
    let inputs = call.inputs.to_json(false);
    let state = call.state.as_ref().map(|s| s.to_json(false));
    let rotation = async {
        r.rotate(&ctx, &inputs, state.as_ref())
            .await
            .map(|value| Output { value, secret: true })
    };
    let answer = within_deadline(r.name(), r.deadline(), rotation).await;
    crate::server::answer::wipe_json(inputs);
    if let Some(s) = state {
        crate::server::answer::wipe_json(s);
    }
    answer
}

/// Resolves and evaluates in one call.
pub async fn run(
    app: &AppState,
    caller: &Evaluator<'_>,
    root_name: &str,
    src: &str,
    root_env: Option<(&EnvRecord, i64)>,
    mode: Mode,
) -> Result<Evaluated, ApiError> {
    let mut r = resolve(app, caller, root_name, src, root_env).await?;
    evaluate_resolved(app, caller, &mut r, mode).await
}

/// Loads one level of imports: their environments in one query, then each one's revision (cached) concurrently.
async fn load_imports(
    app: &AppState,
    caller: &Evaluator<'_>,
    names: &[String],
) -> Result<Vec<Result<Doc, EffectError>>, ApiError> {
    let refs: Vec<Option<EnvRef>> = names.iter().map(|n| EnvRef::import(n, &caller.org.name)).collect();
    // Only what the caller may use is looked up; the rest answers like a missing environment.
    let allowed = |r: &EnvRef| {
        caller
            .access
            .decide(Some(&r.project), Some(&r.name), caller.import_action)
            == Decision::Allow
    };
    let wanted: Vec<(&str, &str)> = refs
        .iter()
        .flatten()
        .filter(|r| allowed(r))
        .map(|r| (r.project.as_str(), r.name.as_str()))
        .collect();
    let found = app.store.envs_by_names(&caller.org.id, &wanted).await?;
    let docs = names.iter().zip(&refs).map(|(name, r)| {
        let env = r.as_ref().filter(|r| allowed(r)).and_then(|r| {
            found
                .iter()
                .find(|e| e.project == r.project && e.name == r.name)
                .map(|e| (e, r.version.as_deref()))
        });
        async move {
            if r.is_none() {
                return Ok(Err(EffectError::InvalidName(name.clone())));
            }
            let Some((env, version)) = env else {
                return Ok(Err(EffectError::NotFound(name.clone())));
            };
            doc_at(app, name, env, version).await
        }
    });
    futures::future::join_all(docs).await.into_iter().collect()
}

/// An environment's document at a version (`None`: latest), or the error to report for the import `name`.
async fn doc_at(
    app: &AppState,
    name: &str,
    env: &EnvRecord,
    version: Option<&str>,
) -> Result<Result<Doc, EffectError>, ApiError> {
    let revision = match resolve_version(app, env, version).await {
        Ok(rev) => rev,
        Err(e) if e.is_not_found() => {
            return Ok(Err(EffectError::NoSuchVersion {
                name: name.to_owned(),
                why: e.message().to_owned(),
            }));
        }
        Err(e) => return Err(e),
    };
    let info = revision_doc(app, env, revision).await?;
    Ok(Ok(Doc {
        info,
        env_id: Some(env.id.clone()),
        revision,
    }))
}

async fn load_import(app: &AppState, caller: &Evaluator<'_>, name: &str) -> Result<Result<Doc, EffectError>, ApiError> {
    let mut docs = load_imports(app, caller, std::slice::from_ref(&name.to_owned())).await?;
    Ok(docs
        .pop()
        .unwrap_or_else(|| Err(EffectError::NotFound(name.to_owned()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_provider_that_hangs_is_cut_at_its_deadline() {
        let hang = futures::future::pending::<Result<Output, String>>();
        let e = within_deadline("slow", std::time::Duration::from_millis(50), hang)
            .await
            .unwrap_err();
        assert_eq!(e, "the slow provider did not answer within 50ms");
        let quick = async {
            Ok(Output {
                value: serde_json::json!("v"),
                secret: true,
            })
        };
        let o = within_deadline("quick", std::time::Duration::from_secs(10), quick)
            .await
            .unwrap();
        assert_eq!(o.value, serde_json::json!("v"));
    }

    #[test]
    fn messages_lose_secret_inputs() {
        let mut inputs = BTreeMap::new();
        inputs.insert("key".to_owned(), Value::string("hunter22").deep_secret());
        inputs.insert("name".to_owned(), Value::string("visible"));
        inputs.insert(
            "nested".to_owned(),
            Value::array(vec![Value::string("deep-secret").deep_secret()]),
        );
        let mut secrets = Vec::new();
        secret_strings(&Value::object(inputs), &mut secrets);
        secrets.sort();
        assert_eq!(secrets, vec!["deep-secret".to_owned(), "hunter22".to_owned()]);
        let m = scrub("login hunter22 failed for visible (deep-secret)", &secrets);
        assert_eq!(m, "login [secret] failed for visible ([secret])");
        let long = scrub(&"é".repeat(800), &[]);
        assert!(long.len() <= 1003 && long.ends_with('…'), "{}", long.len());
    }
}
