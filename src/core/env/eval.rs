//! The evaluator: imports, merging, property access, interpolation and builtins over loaded declarations, in
//! `check`, `eval` and `rotate` modes.
//!
//! It does no I/O. Everything outside it — imported documents, decrypting `fn::secret` ciphertexts, provider and
//! rotator calls — goes through [`Effects`]. An effect that is not available yet answers [`Answer::Pending`]; the
//! evaluator then treats that value as unknown, finishes, and lists what it needs in [`Evaluated::pending`]. The
//! edge performs those requests (concurrently, asynchronously, against real KMSs and clouds) and evaluates again
//! with the answers in hand, until nothing is pending. Evaluation is deterministic, so each round only adds answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value as Json, json};

use super::ast::{self, Accessor, Call, Decl, Expr, ExprKind, Loaded};
use super::diag::{Diagnostic, DocPath, Seg, Span};
use super::schema;
use super::value::{Def, Repr, Value};

/// How deep imports may nest.
pub const MAX_IMPORT_DEPTH: usize = 64;
/// How many distinct environments one evaluation may load.
pub const MAX_ENVIRONMENTS: usize = 1024;
/// The largest string or JSON text a builtin or interpolation may build.
pub const MAX_VALUE_BYTES: usize = 4 << 20;
/// The work one evaluation may do, counted in values: each value evaluated, each value of a list or object built,
/// each value walked to render, quote, merge, mark secret or check against a schema. Values are shared, not copied,
/// so a reference costs one; walking what a chain of references built costs its full size.
pub const MAX_VALUES: u64 = 1_000_000;
/// The bytes of text one evaluation may build (interpolations, `fn::toJSON`, `fn::toString`, `fn::join`, base64).
pub const MAX_TEXT_BYTES: u64 = 16 << 20;
/// The largest result of one evaluation, as the ESC API renders it (an answer, or what an open session stores),
/// estimated from the values' sizes at [`RENDERED_BYTES_PER_VALUE`] per value plus their text.
pub const MAX_RENDERED_BYTES: u64 = 16 << 20;
/// The rendering of one value without its text: `{"value":…,"trace":{"def":{"environment":…,"begin":{…},"end":{…}}}}`.
pub const RENDERED_BYTES_PER_VALUE: u64 = 192;
/// How deeply values may nest. A document nests at most 128 levels (`syntax::MAX_DEPTH`); references can nest values
/// further (`a1: [${a0}]`, `a2: [${a1}]`, …), up to this.
pub const MAX_VALUE_DEPTH: u32 = 256;
/// The longest chain of values evaluated one inside the other: a reference, a builtin's argument, a nested list or
/// object, an import each add a level. Evaluation recurses along such chains, so this bounds its stack: a level
/// takes up to about 20 KB in a debug build (much less optimised), so the longest chain takes about 20 MiB, under
/// a third of the [`EVAL_STACK_BYTES`] evaluation runs on (measured by `tests::the_chain_limit_fits_the_stack`).
pub const MAX_EVAL_DEPTH: usize = 1_000;
/// The stack of the thread each evaluation runs on, whatever the caller's own stack. It is address space, taken
/// up by the system only as far as evaluation actually goes.
pub const EVAL_STACK_BYTES: usize = 64 << 20;
/// The most diagnostics one evaluation reports; the rest are summarised in one more.
pub const MAX_DIAGNOSTICS: usize = 10_000;

/// What kind of evaluation to run.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Symbolic: providers are not called; ciphertexts are decrypted only with `show_secrets`.
    Check { show_secrets: bool },
    /// Full evaluation.
    Eval,
    /// Full evaluation that also rotates the root environment's `fn::rotate` calls at these document paths
    /// (`None`: all of them).
    Rotate { paths: Option<Vec<String>> },
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// The caller's context (for example `{"pulumi": {"user": {"id": …}}}`); `currentEnvironment` and
    /// `rootEnvironment` are added per environment and may not be supplied.
    pub context: BTreeMap<String, Value>,
}

/// The answer to an effect: ready, or not yet performed by the edge.
#[derive(Clone, Debug)]
pub enum Answer<T> {
    Ready(T),
    Pending,
}

#[derive(Clone, Debug)]
pub struct ProviderSchema {
    pub inputs: Json,
    pub outputs: Json,
}

#[derive(Clone, Debug)]
pub struct RotatorSchema {
    pub inputs: Json,
    pub state: Json,
    pub outputs: Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `fn::open`: a provider's `open(inputs)`.
    Open,
    /// A rotator's `open(inputs, state)`.
    RotatorOpen,
    /// A rotator's `rotate(inputs, state)`, returning the new state.
    Rotate,
}

/// A provider or rotator call for the edge to perform.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderCall {
    pub kind: CallKind,
    pub provider: String,
    /// The environment and document path of the call.
    pub env: String,
    pub path: String,
    pub inputs: Value,
    pub state: Option<Value>,
}

/// A ciphertext to decrypt (or, with `validate_only`, only to check), as written, with the environment it sits in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DecryptRequest {
    pub env: String,
    pub ciphertext: String,
    pub validate_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecryptError {
    /// Not a ciphertext at all (reported as `invalid ciphertext: …`).
    Invalid(String),
    /// A well-formed ciphertext that did not decrypt (reported as `decrypting: …`).
    Failed(String),
}

/// Why an import or a provider or rotator call was not answered. Its `Display` is the text of the diagnostic the
/// evaluator reports at the import or the call, so each edge's messages stay what they were.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EffectError {
    /// The import's name is not an environment name (as written, unescaped).
    #[error("invalid environment name \"{0}\"")]
    InvalidName(String),
    /// No environment of that name, or none the caller may read (the two answer alike).
    #[error("environment \"{0}\" not found")]
    NotFound(String),
    /// The environment exists, but not at the version or tag the import asks for.
    #[error("environment \"{name}\": {why}")]
    NoSuchVersion { name: String, why: String },
    /// Offline evaluation: the name is not a relative path inside the import directory.
    #[error("invalid environment name {0:?}")]
    NotAFileName(String),
    /// Offline evaluation: the environment's file could not be read.
    #[error("environment {name:?} ({path}): {error}")]
    Unreadable { name: String, path: String, error: String },
    /// The server does not run providers yet.
    #[error("providers are not available on this server yet")]
    NoProviders,
    /// Offline evaluation: the provider (named) needs the server.
    #[error("provider {0:?} cannot run offline")]
    Offline(String),
    /// The effect failed with this message, shown as is: a provider's or rotator's own error, or a test double's.
    #[error("{0}")]
    Failed(String),
}

/// What the evaluator needs from outside. Implementations must answer the same request the same way within one
/// evaluation.
///
/// Evaluation runs on a thread of its own (see [`evaluate`]), so effects are shared with it: `Sync`.
pub trait Effects: Sync {
    /// The source of environment `name` (an import or `${environments.P.E}`), or why there is none.
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, EffectError>>;
    fn decrypt(&self, req: &DecryptRequest) -> Answer<Result<String, DecryptError>>;
    fn provider(&self, name: &str) -> Option<ProviderSchema>;
    fn rotator(&self, name: &str) -> Option<RotatorSchema>;
    fn call(&self, call: &ProviderCall) -> Answer<Result<Value, EffectError>>;
}

/// A request the edge must perform before the next round.
#[derive(Clone, Debug, PartialEq)]
pub enum Need {
    Load(String),
    Decrypt(DecryptRequest),
    Call(Box<ProviderCall>),
}

/// A rotation's new state, to be written back into the document at `doc_path`.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    pub doc_path: String,
    pub replacement: Value,
}

#[derive(Clone, Debug, Default)]
pub struct Evaluated {
    /// The top-level values; `None` for an environment with no values and no imports.
    pub properties: Option<BTreeMap<String, Value>>,
    pub diags: Vec<Diagnostic>,
    pub patches: Vec<Patch>,
    /// Effects that were not available: perform them and evaluate again.
    pub pending: Vec<Need>,
    /// The work done, in values, and the text built, in bytes (at most [`MAX_VALUES`], [`MAX_TEXT_BYTES`]).
    pub work: u64,
    pub text: u64,
}

impl Evaluated {
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }
}

/// Evaluates the loaded root environment.
///
/// The evaluation runs on a thread of its own with a stack of [`EVAL_STACK_BYTES`], so that the longest chain
/// allowed ([`MAX_EVAL_DEPTH`]) fits whatever stack the caller has; the caller waits for it. If that thread cannot
/// be started, the result is a single error and nothing is evaluated.
pub fn evaluate(root: &Loaded, effects: &dyn Effects, opts: &Options) -> Evaluated {
    std::thread::scope(|scope| {
        let started = std::thread::Builder::new()
            .name("sesame-eval".into())
            .stack_size(EVAL_STACK_BYTES)
            .spawn_scoped(scope, || on_eval_stack(root, effects, opts));
        match started {
            Ok(handle) => match handle.join() {
                Ok(done) => {
                    #[cfg(test)]
                    tests::record_eval_stack(done.1);
                    done.0
                }
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => Evaluated {
                diags: vec![Diagnostic {
                    severity: super::diag::Severity::Error,
                    summary: format!("could not start evaluating: no thread for it ({e})"),
                    subject: None,
                    path: String::new(),
                }],
                ..Evaluated::default()
            },
        }
    })
}

/// Runs on the evaluation thread; in tests, also answers how much of its stack evaluation took.
#[cfg(test)]
fn on_eval_stack(root: &Loaded, effects: &dyn Effects, opts: &Options) -> (Evaluated, usize) {
    let top = tests::stack_top();
    let e = evaluate_here(root, effects, opts);
    (e, tests::stack_used_since(top))
}

#[cfg(not(test))]
fn on_eval_stack(root: &Loaded, effects: &dyn Effects, opts: &Options) -> (Evaluated, ()) {
    (evaluate_here(root, effects, opts), ())
}

fn evaluate_here(root: &Loaded, effects: &dyn Effects, opts: &Options) -> Evaluated {
    let mut run = Run {
        effects,
        opts,
        root_name: root.name.clone(),
        cache: HashMap::new(),
        stack: vec![root.name.to_string()],
        diags: Vec::new(),
        dropped: 0,
        pending: Vec::new(),
        patches: Vec::new(),
        values_left: MAX_VALUES,
        text_left: MAX_TEXT_BYTES,
        depth: 0,
        site: None,
    };
    let Some(decl) = &root.decl else {
        return Evaluated::default();
    };
    for reserved in ["currentEnvironment", "rootEnvironment"] {
        if opts.context.contains_key(reserved) {
            run.diags.push(Diagnostic {
                severity: super::diag::Severity::Error,
                summary: format!("the context key {reserved:?} is reserved"),
                subject: None,
                path: String::new(),
            });
            return Evaluated {
                diags: run.diags,
                ..Evaluated::default()
            };
        }
    }
    if decl.values.is_none() && decl.imports.is_empty() {
        return Evaluated::default();
    }
    let value = run.env(root.name.clone(), decl, true);
    let mut properties = match value.repr {
        Repr::Object(map) => map.into_map(),
        _ => BTreeMap::new(),
    };
    run.bound_rendering(&root.name, decl, &mut properties);
    if run.dropped > 0 {
        run.diags.push(Diagnostic {
            severity: super::diag::Severity::Error,
            summary: format!(
                "{} more diagnostics are not shown (at most {MAX_DIAGNOSTICS} are reported)",
                run.dropped
            ),
            subject: None,
            path: String::new(),
        });
    }
    // Provider calls are told apart by where they are made (each call site is evaluated once), not by comparing
    // their inputs, which may be large shared values.
    let mut pending: Vec<Need> = Vec::new();
    for n in run.pending {
        let dup = pending.iter().any(|p| match (p, &n) {
            (Need::Call(a), Need::Call(b)) => {
                (a.kind, &a.provider, &a.env, &a.path) == (b.kind, &b.provider, &b.env, &b.path)
            }
            (a, b) => a == b,
        });
        if !dup {
            pending.push(n);
        }
    }
    Evaluated {
        properties: Some(properties),
        diags: run.diags,
        patches: run.patches,
        pending,
        work: MAX_VALUES - run.values_left,
        text: MAX_TEXT_BYTES - run.text_left,
    }
}

/// A property path in the syntax of `rotatePaths` (`a.b[0]["c d"]`, relative to `values`) as a document path.
pub fn values_doc_path(property_path: &str) -> Option<String> {
    let text = format!("{property_path}}}");
    let env: Arc<str> = Arc::from("");
    let mut diags = Vec::new();
    let (_, accessors) = parse_access_for_paths(&text, &env, &mut diags);
    if !diags.is_empty() {
        return None;
    }
    let mut path = DocPath::default().key("values");
    for a in accessors {
        path = match a {
            Accessor::Key(k, _) => path.key(&k),
            Accessor::Index(i, _) => path.index(usize::try_from(i).ok()?),
        };
    }
    Some(path.to_string())
}

fn parse_access_for_paths(text: &str, env: &Arc<str>, diags: &mut Vec<Diagnostic>) -> (usize, Vec<Accessor>) {
    let (parts, d) = ast::parse_interpolation(&format!("${{{text}"), Span::default(), &DocPath::default(), env);
    diags.extend(d);
    let access = parts.into_iter().next().and_then(|p| p.access).unwrap_or_default();
    (0, access)
}

struct Run<'a> {
    effects: &'a dyn Effects,
    opts: &'a Options,
    root_name: Arc<str>,
    /// Evaluated imports by name (`None`: failed to load).
    cache: HashMap<String, Option<Value>>,
    /// The environments being evaluated, outermost first.
    stack: Vec<String>,
    diags: Vec<Diagnostic>,
    /// Diagnostics beyond [`MAX_DIAGNOSTICS`], counted.
    dropped: usize,
    pending: Vec<Need>,
    patches: Vec<Patch>,
    /// What is left of the budgets ([`MAX_VALUES`], [`MAX_TEXT_BYTES`]).
    values_left: u64,
    text_left: u64,
    /// How many values are being evaluated one inside the other ([`MAX_EVAL_DEPTH`]).
    depth: usize,
    /// Where a merge of imports is reported when it runs out of budget.
    site: Option<(Arc<str>, Span, DocPath)>,
}

enum State {
    Fresh,
    Busy,
    Done(Value),
}

enum Shape {
    Object(Vec<(String, usize)>),
    List(Vec<usize>),
    Leaf,
}

struct Node<'d> {
    expr: &'d Expr,
    base: Option<Value>,
    shape: Shape,
    state: State,
}

struct Env<'d> {
    name: Arc<str>,
    is_root: bool,
    nodes: Vec<Node<'d>>,
    ids: HashMap<DocPath, usize>,
    root: Option<usize>,
    base: Option<Value>,
    imports: BTreeMap<String, Value>,
    context: Value,
}

const JOIN_SCHEMA: &str =
    r#"{"type":"array","prefixItems":[{"type":"string"},{"type":"array","items":{"type":"string"}}]}"#;
const SPLIT_SCHEMA: &str = r#"{"type":"array","prefixItems":[{"type":"string"},{"type":"string"}]}"#;
const CONCAT_SCHEMA: &str = r#"{"type":"array","items":{"type":"array"}}"#;

static JOIN: LazyLock<Json> = LazyLock::new(|| fixed_schema(JOIN_SCHEMA));
static SPLIT: LazyLock<Json> = LazyLock::new(|| fixed_schema(SPLIT_SCHEMA));
static CONCAT: LazyLock<Json> = LazyLock::new(|| fixed_schema(CONCAT_SCHEMA));
static STRING: LazyLock<Json> = LazyLock::new(|| json!({"type": "string"}));

fn fixed_schema(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or(Json::Bool(true))
}

/// The closest of the first 1,000 candidates (a bound on the work a misspelt key costs in a large object).
fn suggest<'k>(key: &str, candidates: impl Iterator<Item = &'k String>) -> Option<&'k String> {
    candidates
        .take(1000)
        .map(|c| (levenshtein(key, c), c))
        .filter(|(d, c)| *d <= 2 && *d < key.len().max(1) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn values_exceeded() -> String {
    format!("evaluating this value takes more than {MAX_VALUES} values of work (the limit for one evaluation)")
}

/// The property path of a node inside `values` (`a.p`), as cycle messages name it.
fn property_path(path: &DocPath) -> String {
    super::path::PropertyPath(path.0.iter().skip(1).cloned().collect()).to_string()
}

impl<'a> Run<'a> {
    fn check(&self) -> bool {
        matches!(self.opts.mode, Mode::Check { .. })
    }

    /// Records a diagnostic, up to [`MAX_DIAGNOSTICS`].
    fn push(&mut self, d: Diagnostic) {
        if self.diags.len() < MAX_DIAGNOSTICS {
            self.diags.push(d);
        } else {
            self.dropped += 1;
        }
    }

    fn error(&mut self, env: &Arc<str>, span: Span, path: &DocPath, msg: impl Into<String>) {
        if self.diags.len() >= MAX_DIAGNOSTICS {
            self.dropped += 1;
            return;
        }
        self.push(Diagnostic::error(env, span, path, msg));
    }

    /// Takes `n` values of work from the budget; `false` (and nothing taken) when not that much is left.
    fn charge(&mut self, n: u64) -> bool {
        match self.values_left.checked_sub(n) {
            Some(left) => {
                self.values_left = left;
                true
            }
            None => false,
        }
    }

    /// Takes `n` bytes of built text from the budget; `false` (and nothing taken) when not that much is left.
    fn charge_text(&mut self, n: usize) -> bool {
        match self.text_left.checked_sub(n as u64) {
            Some(left) => {
                self.text_left = left;
                true
            }
            None => false,
        }
    }

    /// Reports that `expr` would take more work than is left, and gives its value as unknown.
    fn over_values(&mut self, env: &Arc<str>, expr: &Expr) -> Value {
        self.error(&env.clone(), expr.span, &expr.path, values_exceeded());
        Value::unknown(None)
    }

    /// Reports that `expr` would build more text than is left, and gives its value as unknown.
    fn over_text(&mut self, env: &Arc<str>, expr: &Expr) -> Value {
        self.error(
            &env.clone(),
            expr.span,
            &expr.path,
            format!(
                "evaluating this value builds more than {MAX_TEXT_BYTES} bytes of text (the limit for one evaluation)"
            ),
        );
        Value::unknown(None)
    }

    /// Takes the work of walking `v` (every value of the tree it stands for) from the budget, reporting at `expr`
    /// when it is more than is left.
    fn charge_walk(&mut self, env: &Arc<str>, expr: &Expr, v: &Value) -> bool {
        if self.charge(v.facts().nodes) {
            return true;
        }
        self.over_values(env, expr);
        false
    }

    /// `v` with everything inside it defined at `def`, when the budget allows the walk.
    fn def_deep(&mut self, v: Value, def: &Def, env: &Arc<str>, expr: &Expr) -> Value {
        if matches!(v.repr, Repr::Array(_) | Repr::Object(_)) && !self.charge_walk(env, expr, &v) {
            return Value::unknown(None);
        }
        v.with_def_deep(def)
    }

    /// `v` marked secret throughout, when the budget allows the walk (an unknown, still secret, otherwise).
    fn secret_deep(&mut self, v: Value, env: &Arc<str>, expr: &Expr) -> Value {
        if matches!(v.repr, Repr::Array(_) | Repr::Object(_)) && !self.charge_walk(env, expr, &v) {
            return Value::unknown(None).deep_secret();
        }
        v.deep_secret()
    }

    /// Replaces the top-level values that would make the result render larger than [`MAX_RENDERED_BYTES`] with
    /// unknowns, each with a diagnostic.
    fn bound_rendering(&mut self, root: &Arc<str>, decl: &Decl, props: &mut BTreeMap<String, Value>) {
        // What each key costs at the least (its value replaced by an unknown): room is kept for the keys still to
        // come, so that what is kept and what is replaced together stay within the limit.
        let least = |k: &String| RENDERED_BYTES_PER_VALUE.saturating_add(k.len() as u64);
        let mut rest: u64 = props.keys().map(least).fold(0, u64::saturating_add);
        let mut total: u64 = 0;
        for (k, v) in props.iter_mut() {
            rest = rest.saturating_sub(least(k));
            let f = v.facts();
            let size = f
                .nodes
                .saturating_mul(RENDERED_BYTES_PER_VALUE)
                .saturating_add(f.bytes)
                .saturating_add(k.len() as u64);
            if total.saturating_add(size).saturating_add(rest) <= MAX_RENDERED_BYTES {
                total += size;
                continue;
            }
            let (env, span) = match &v.def {
                Some(d) => (d.env.clone(), d.span),
                None => (root.clone(), decl.values_span),
            };
            let path = DocPath::default().key("values").key(k);
            self.error(
                &env,
                span,
                &path,
                format!(
                    "this value is too large to return: it renders to about {size} bytes, and the result of an \
                     evaluation may render to at most {MAX_RENDERED_BYTES} bytes"
                ),
            );
            *v = Value {
                secret: f.secret,
                def: v.def.clone(),
                ..Value::unknown(None)
            };
            total = total.saturating_add(least(k));
        }
    }

    /// Reports a merge that ran out of budget, at `at` or else where the imports being merged are named.
    fn merge_over_budget(&mut self, at: Option<(&Arc<str>, Span, &DocPath)>) {
        let site = at
            .map(|(e, s, p)| (e.clone(), s, p.clone()))
            .or_else(|| self.site.clone());
        match site {
            Some((env, span, path)) => self.error(&env, span, &path, values_exceeded()),
            None => self.push(Diagnostic {
                severity: super::diag::Severity::Error,
                summary: values_exceeded(),
                subject: None,
                path: String::new(),
            }),
        }
    }

    /// Evaluates one environment to its value (an object).
    fn env(&mut self, name: Arc<str>, decl: &Decl, is_root: bool) -> Value {
        let mut base: Option<Value> = None;
        let mut imports = BTreeMap::new();
        // A list longer than an evaluation may load is refused once, first, so that the reason is not lost among the
        // diagnostics of the imports that fit (which are still evaluated, as before).
        if let Some(over) = decl.imports.get(MAX_ENVIRONMENTS) {
            self.error(
                &name,
                over.span,
                &over.path,
                format!("more than {MAX_ENVIRONMENTS} environments are imported"),
            );
        }
        for imp in decl.imports.iter().take(MAX_ENVIRONMENTS) {
            if self.stack.contains(&imp.name) {
                self.error(&name, imp.span, &imp.path, format!("cyclic import of {}", imp.name));
                continue;
            }
            if let Some(v) = self.import(&imp.name, &name, imp.span, &imp.path) {
                if imp.merge {
                    self.site = Some((name.clone(), imp.span, imp.path.clone()));
                    base = Some(match base {
                        None => v.clone(),
                        Some(b) => self.merge(v.clone(), Some(&b), None),
                    });
                    self.site = None;
                }
                imports.insert(imp.name.clone(), v);
            }
        }
        let root_name = if &*self.root_name == "<yaml>" {
            name.clone()
        } else {
            self.root_name.clone()
        };
        let mut context = self.opts.context.clone();
        context.insert(
            "currentEnvironment".into(),
            Value::object(BTreeMap::from([("name".to_string(), Value::string(&*name))])),
        );
        context.insert(
            "rootEnvironment".into(),
            Value::object(BTreeMap::from([("name".to_string(), Value::string(&*root_name))])),
        );
        let mut env = Env {
            name,
            is_root,
            nodes: Vec::new(),
            ids: HashMap::new(),
            root: None,
            base: base.clone(),
            imports,
            context: Value::object(context),
        };
        if let Some(values) = &decl.values {
            env.root = Some(self.declare(&mut env, values, base.clone(), true));
        }
        match env.root {
            Some(root) => self.node(&mut env, root),
            None => base.unwrap_or_else(|| Value::object(BTreeMap::new())),
        }
    }

    fn import(&mut self, name: &str, from: &Arc<str>, span: Span, path: &DocPath) -> Option<Value> {
        if let Some(v) = self.cache.get(name) {
            return v.clone();
        }
        if self.stack.len() > MAX_IMPORT_DEPTH {
            self.error(
                from,
                span,
                path,
                format!("imports nest deeper than {MAX_IMPORT_DEPTH} environments"),
            );
            return None;
        }
        if self.cache.len() >= MAX_ENVIRONMENTS {
            self.error(
                from,
                span,
                path,
                format!("more than {MAX_ENVIRONMENTS} environments are imported"),
            );
            return None;
        }
        let src = match self.effects.load(name) {
            Answer::Pending => {
                self.pending.push(Need::Load(name.to_owned()));
                return None;
            }
            Answer::Ready(Err(e)) => {
                self.error(from, span, path, e.to_string());
                self.cache.insert(name.to_owned(), None);
                return None;
            }
            Answer::Ready(Ok(src)) => src,
        };
        let loaded = ast::load(name, &src);
        for d in &loaded.diags {
            self.push(d.clone());
        }
        let value = loaded.decl.as_ref().map(|decl| {
            self.stack.push(name.to_owned());
            self.depth += 1;
            let v = self.env(loaded.name.clone(), decl, false);
            self.depth -= 1;
            self.stack.pop();
            v
        });
        self.cache.insert(name.to_owned(), value.clone());
        value
    }

    fn declare<'d>(&mut self, env: &mut Env<'d>, expr: &'d Expr, base: Option<Value>, top: bool) -> usize {
        let shape = match &expr.kind {
            ExprKind::Object(fields) => {
                let mut children = Vec::with_capacity(fields.len());
                let mut seen = std::collections::HashSet::with_capacity(fields.len());
                for (k, span, child) in fields {
                    let kpath = expr.path.key(k);
                    if !seen.insert(k.as_str()) {
                        self.error(&env.name, *span, &kpath, format!("duplicate key {k:?}"));
                        continue;
                    }
                    if top && (k == "imports" || k == "context") {
                        self.error(&env.name, *span, &kpath, format!("{k:?} is a reserved key"));
                        continue;
                    }
                    let child_base = match &base {
                        Some(Value {
                            repr: Repr::Object(m),
                            unknown: false,
                            ..
                        }) => m.get(k).cloned(),
                        _ => None,
                    };
                    let id = self.declare(env, child, child_base, false);
                    children.push((k.clone(), id));
                }
                Shape::Object(children)
            }
            ExprKind::List(items) => Shape::List(items.iter().map(|i| self.declare(env, i, None, false)).collect()),
            ExprKind::Builtin(b) => {
                self.declare(env, &b.arg, None, false);
                Shape::Leaf
            }
            _ => Shape::Leaf,
        };
        let id = env.nodes.len();
        env.nodes.push(Node {
            expr,
            base,
            shape,
            state: State::Fresh,
        });
        env.ids.insert(expr.path.clone(), id);
        id
    }

    /// Merges `v` over `base`: objects merge key by key, anything else replaces; a final base value wins with a
    /// warning at `at`.
    fn merge(&mut self, v: Value, base: Option<&Value>, at: Option<(&Arc<str>, Span, &DocPath)>) -> Value {
        let Some(b) = base else { return v };
        if b.is_final {
            if let Some((env, span, path)) = at {
                self.diags
                    .push(Diagnostic::warning(env, span, path, "cannot override final value"));
            }
            return b.clone();
        }
        if v.unknown || v.partial {
            return v;
        }
        if b.unknown {
            return Value { partial: true, ..v };
        }
        match (v.repr, &b.repr) {
            (Repr::Object(top), Repr::Object(under)) => {
                if !self.charge(1 + top.len() as u64 + under.len() as u64) {
                    // A merge that runs out ends the evaluation's budget: the rest of this merge (and every other
                    // walk) stops at once, reported here once.
                    if self.values_left > 0 {
                        self.values_left = 0;
                        self.merge_over_budget(at);
                    }
                    return Value::unknown(None);
                }
                let mut top = top.into_map();
                let mut inherited = v.inherited;
                for (k, bv) in under.iter() {
                    let merged = match top.remove(k) {
                        Some(tv) => self.merge(tv, Some(bv), at),
                        None => {
                            inherited.push(k.clone());
                            bv.clone()
                        }
                    };
                    top.insert(k.clone(), merged);
                }
                Value {
                    repr: Repr::object(top),
                    inherited,
                    ..v
                }
            }
            (repr, _) => Value { repr, ..v },
        }
    }

    fn node(&mut self, env: &mut Env<'_>, id: usize) -> Value {
        match &env.nodes[id].state {
            State::Done(v) => return v.clone(),
            State::Busy => {
                let expr = env.nodes[id].expr;
                let msg = format!("cyclic reference to {}", property_path(&expr.path));
                self.error(&env.name, expr.span, &expr.path, msg);
                return Value::unknown(None);
            }
            State::Fresh => {}
        }
        #[cfg(test)]
        tests::probe_stack();
        let expr = env.nodes[id].expr;
        let value = if self.depth >= MAX_EVAL_DEPTH {
            let msg = format!(
                "this value depends on a chain of more than {MAX_EVAL_DEPTH} references, calls and nested values"
            );
            self.error(&env.name.clone(), expr.span, &expr.path, msg);
            Value::unknown(None)
        } else if !self.charge(1) {
            self.over_values(&env.name.clone(), expr)
        } else {
            env.nodes[id].state = State::Busy;
            self.depth += 1;
            let v = self.eval_node(env, id);
            self.depth -= 1;
            v
        };
        let value = if value.facts().depth > MAX_VALUE_DEPTH {
            let msg = format!("values nest deeper than {MAX_VALUE_DEPTH} levels");
            self.error(&env.name.clone(), expr.span, &expr.path, msg);
            Value::unknown(None)
        } else {
            value
        };
        env.nodes[id].state = State::Done(value.clone());
        value
    }

    /// Evaluates node `id` (by the caller, [`Run::node`], which memoises and bounds it).
    fn eval_node(&mut self, env: &mut Env<'_>, id: usize) -> Value {
        let expr = env.nodes[id].expr;
        let base = env.nodes[id].base.clone();
        let at = (env.name.clone(), expr.span, expr.path.clone());
        let value = match &env.nodes[id].shape {
            Shape::Object(children) => {
                let children = children.clone();
                if let Some(b) = base.as_ref().filter(|b| b.is_final) {
                    self.diags
                        .push(Diagnostic::warning(&at.0, at.1, &at.2, "cannot override final value"));
                    b.clone()
                } else {
                    let mut map = BTreeMap::new();
                    for (k, cid) in children {
                        let v = self.node(env, cid);
                        map.insert(k, v);
                    }
                    let (mut inherited, mut partial) = (Vec::new(), false);
                    match &base {
                        Some(b) if b.unknown => partial = true,
                        Some(Value {
                            repr: Repr::Object(under),
                            ..
                        }) => {
                            if !self.charge(under.len() as u64) {
                                return self.over_values(&at.0, expr);
                            }
                            for (k, bv) in under.iter() {
                                if !map.contains_key(k) {
                                    map.insert(k.clone(), bv.clone());
                                    inherited.push(k.clone());
                                }
                            }
                        }
                        _ => {}
                    }
                    Value {
                        inherited,
                        partial,
                        ..Value::object(map)
                    }
                }
            }
            Shape::List(children) => {
                let children = children.clone();
                let items = children.into_iter().map(|c| self.node(env, c)).collect();
                let v = Value::array(items);
                self.merge(v, base.as_ref(), Some((&at.0, at.1, &at.2)))
            }
            Shape::Leaf => {
                let mut v = self.leaf(env, id, expr);
                let def = Def {
                    env: env.name.clone(),
                    span: expr.span,
                };
                match &expr.kind {
                    ExprKind::Builtin(b) => match &b.call {
                        // A plaintext secret is defined by its text; `fn::final` keeps what its argument defined.
                        Call::Plaintext(_) if matches!(b.arg.kind, ExprKind::String(_)) => {
                            let at = Def {
                                env: env.name.clone(),
                                span: b.arg.span,
                            };
                            v = self.def_deep(v, &at, &env.name, expr)
                        }
                        Call::Plaintext(_) => v.def = None,
                        // These keep what their arguments defined inside.
                        Call::Final(_) | Call::Concat(_) => v.def = Some(def),
                        _ => v = self.def_deep(v, &def, &env.name.clone(), expr),
                    },
                    _ => v.def = Some(def),
                }
                self.merge(v, base.as_ref(), Some((&at.0, at.1, &at.2)))
            }
        };
        let mut value = value;
        if !matches!(env.nodes[id].shape, Shape::Leaf) && !value.is_final {
            value.def = Some(Def {
                env: env.name.clone(),
                span: expr.span,
            });
        }
        value
    }

    fn sub(&mut self, env: &mut Env<'_>, expr: &Expr) -> Value {
        match env.ids.get(&expr.path) {
            Some(&id) => self.node(env, id),
            None => Value::unknown(None),
        }
    }

    fn leaf(&mut self, env: &mut Env<'_>, id: usize, expr: &Expr) -> Value {
        match &expr.kind {
            ExprKind::Null => Value::null(),
            ExprKind::Bool(b) => Value::new(Repr::Bool(*b)),
            ExprKind::Number(n) => Value::new(Repr::Number(n.clone())),
            ExprKind::String(s) => Value::string(s.clone()),
            ExprKind::Symbol(accessors) => {
                let mut v = self.access(env, id, accessors);
                v.is_final = false;
                v
            }
            ExprKind::Interpolate(parts) => {
                let mut out = String::new();
                let (mut unknown, mut secret) = (false, false);
                for part in parts {
                    out.push_str(&part.text);
                    if let Some(acc) = &part.access {
                        let v = self.access(env, id, acc);
                        secret |= v.contains_secrets();
                        if v.unknown {
                            unknown = true;
                        } else {
                            if !self.charge_walk(&env.name.clone(), expr, &v) {
                                return Value::unknown(None);
                            }
                            match v.to_text_within(MAX_VALUE_BYTES.saturating_sub(out.len())) {
                                Some(text) => out.push_str(&text),
                                None => return self.too_large(env, expr),
                            }
                        }
                    }
                    if out.len() > MAX_VALUE_BYTES {
                        return self.too_large(env, expr);
                    }
                }
                if !self.charge_text(out.len()) {
                    return self.over_text(&env.name.clone(), expr);
                }
                let mut v = if unknown {
                    Value::unknown(None)
                } else {
                    Value::string(out)
                };
                v.secret = secret;
                v
            }
            ExprKind::Builtin(b) => self.builtin(env, expr, b),
            ExprKind::List(_) | ExprKind::Object(_) => Value::unknown(None),
        }
    }

    fn too_large(&mut self, env: &Env<'_>, expr: &Expr) -> Value {
        self.error(
            &env.name,
            expr.span,
            &expr.path,
            format!("the value is larger than {MAX_VALUE_BYTES} bytes"),
        );
        Value::unknown(None)
    }

    /// Follows a property access from the root of `env`'s values (or `imports`, `context`, `environments`).
    fn access(&mut self, env: &mut Env<'_>, at: usize, accessors: &[Accessor]) -> Value {
        enum Cur {
            Node(usize),
            Val(Value),
        }
        let at_path = env.nodes[at].expr.path.clone();
        let name = env.name.clone();
        let mut rest = accessors;
        let mut cur = match accessors.first() {
            Some(Accessor::Key(k, _)) if k == "imports" => match accessors.get(1) {
                // `${imports.NAME…}`: straight to that import, without copying the others.
                Some(Accessor::Key(name, span)) => match env.imports.get(name) {
                    Some(v) => {
                        rest = &accessors[2..];
                        Cur::Val(v.clone())
                    }
                    None => {
                        self.error(&env.name.clone(), *span, &at_path, format!("unknown property {name:?}"));
                        return Value::unknown(None);
                    }
                },
                _ => {
                    rest = &accessors[1..];
                    Cur::Val(Value::object(env.imports.clone()))
                }
            },
            Some(Accessor::Key(k, _)) if k == "context" => {
                rest = &accessors[1..];
                Cur::Val(env.context.clone())
            }
            Some(Accessor::Key(k, span)) if k == "environments" => {
                let (Some(Accessor::Key(p, _)), Some(Accessor::Key(e, _))) = (accessors.get(1), accessors.get(2))
                else {
                    return Value::unknown(None);
                };
                let target = format!("{p}/{e}");
                if self.stack.contains(&target) {
                    let _ = span;
                    self.error(
                        &name,
                        env.nodes[at].expr.span,
                        &at_path,
                        format!("cyclic import of {target}"),
                    );
                    return Value::unknown(None);
                }
                match self.import(&target, &name, env.nodes[at].expr.span, &at_path) {
                    Some(v) => {
                        rest = &accessors[3..];
                        Cur::Val(v)
                    }
                    None => return Value::unknown(None),
                }
            }
            _ => match env.root {
                Some(root) => Cur::Node(root),
                None => Cur::Val(env.base.clone().unwrap_or_else(|| Value::object(BTreeMap::new()))),
            },
        };
        let mut secret = false;
        for acc in rest {
            if let Cur::Node(id) = cur {
                match (&env.nodes[id].shape, acc) {
                    (Shape::Object(children), Accessor::Key(k, span)) => {
                        // A child's path is its object's path and its key: found by index, not by a scan of what
                        // may be thousands of keys.
                        if let Some(&cid) = env.ids.get(&env.nodes[id].expr.path.key(k)) {
                            cur = Cur::Node(cid);
                            continue;
                        }
                        match &env.nodes[id].base {
                            Some(b) if b.unknown => return Value::unknown(None),
                            Some(Value {
                                repr: Repr::Object(m), ..
                            }) if m.contains_key(k) => {
                                cur = Cur::Val(m[k].clone());
                                continue;
                            }
                            _ => {}
                        }
                        let mut keys: Vec<&String> = children.iter().map(|(c, _)| c).collect();
                        if let Some(Value {
                            repr: Repr::Object(m), ..
                        }) = &env.nodes[id].base
                        {
                            keys.extend(m.keys());
                        }
                        let msg = match suggest(k, keys.into_iter()) {
                            Some(s) => format!("unknown property {k:?}; did you mean {s:?}?"),
                            None => format!("unknown property {k:?}"),
                        };
                        self.error(&name, *span, &at_path, msg);
                        return Value::unknown(None);
                    }
                    (Shape::Object(_), Accessor::Index(_, span)) => {
                        self.error(
                            &name,
                            *span,
                            &at_path,
                            "cannot access an object property using an integer index",
                        );
                        return Value::unknown(None);
                    }
                    (Shape::List(items), Accessor::Index(i, span)) => {
                        match self.index(*i, items.len(), &name, *span, &at_path) {
                            Some(i) => cur = Cur::Node(items[i]),
                            None => return Value::unknown(None),
                        }
                        continue;
                    }
                    (Shape::List(_), Accessor::Key(_, span)) => {
                        self.error(
                            &name,
                            *span,
                            &at_path,
                            "cannot access an array element using a property name",
                        );
                        return Value::unknown(None);
                    }
                    (Shape::Leaf, _) => cur = Cur::Val(self.node(env, id)),
                }
            }
            let Cur::Val(v) = cur else { unreachable!() };
            secret |= v.secret;
            if v.unknown {
                // What is inside an unknown value is unknown too, shaped by its schema.
                let own = v.schema.as_deref().cloned().unwrap_or(Json::Bool(true));
                let ty = schema::type_of(&own, &own).map(str::to_owned);
                let (span, next) = match acc {
                    Accessor::Key(k, span) => (*span, schema::property(&own, &own, k)),
                    Accessor::Index(i, span) => (*span, schema::item(&own, &own, usize::try_from(*i).unwrap_or(0))),
                };
                let problem = match (ty.as_deref(), acc) {
                    (Some("object"), Accessor::Index(..)) => {
                        Some("cannot access an object property using an integer index")
                    }
                    (Some("array"), Accessor::Key(..)) => Some("cannot access an array element using a property name"),
                    (Some("object" | "array"), _) | (None, _) => None,
                    (Some(_), _) => Some("receiver must be an array or an object"),
                };
                if let Some(p) = problem {
                    self.error(&name, span, &at_path, p);
                    return Value::unknown(None);
                }
                let mut u = Value::unknown(Some(Arc::new(next)));
                u.secret = secret;
                cur = Cur::Val(u);
                continue;
            }
            cur = match (&v.repr, acc) {
                (Repr::Object(m), Accessor::Key(k, span)) => match m.get(k) {
                    Some(c) => Cur::Val(c.clone()),
                    None => {
                        let msg = match suggest(k, m.keys()) {
                            Some(s) => format!("unknown property {k:?}; did you mean {s:?}?"),
                            None => format!("unknown property {k:?}"),
                        };
                        self.error(&name, *span, &at_path, msg);
                        return Value::unknown(None);
                    }
                },
                (Repr::Object(_), Accessor::Index(_, span)) => {
                    self.error(
                        &name,
                        *span,
                        &at_path,
                        "cannot access an object property using an integer index",
                    );
                    return Value::unknown(None);
                }
                (Repr::Array(items), Accessor::Index(i, span)) => {
                    match self.index(*i, items.len(), &name, *span, &at_path) {
                        Some(i) => Cur::Val(items[i].clone()),
                        None => return Value::unknown(None),
                    }
                }
                (Repr::Array(_), Accessor::Key(_, span)) => {
                    self.error(
                        &name,
                        *span,
                        &at_path,
                        "cannot access an array element using a property name",
                    );
                    return Value::unknown(None);
                }
                (_, acc) => {
                    self.error(&name, acc.span(), &at_path, "receiver must be an array or an object");
                    return Value::unknown(None);
                }
            };
        }
        let mut v = match cur {
            Cur::Node(id) => self.node(env, id),
            Cur::Val(v) => v,
        };
        if secret {
            v = self.secret_deep(v, &name, env.nodes[at].expr);
        }
        v
    }

    fn index(&mut self, i: i64, len: usize, env: &Arc<str>, span: Span, path: &DocPath) -> Option<usize> {
        if i < 0 {
            self.error(env, span, path, "array indices must not be negative");
            return None;
        }
        let i = usize::try_from(i).unwrap_or(usize::MAX);
        if i >= len {
            self.error(
                env,
                span,
                path,
                format!("array index {i} out-of-bounds for array of length {len}"),
            );
            return None;
        }
        Some(i)
    }

    /// Validates `value` (produced by `expr`) against `schema`, reporting each violation at the sub-expression that
    /// produced the offending part. Returns whether it passed.
    fn validate(&mut self, env: &Env<'_>, expr: &Expr, value: &Value, schema: &Json) -> bool {
        let mut steps = self.values_left;
        let checked = schema::validate_within(value, schema, &mut steps);
        self.values_left = steps;
        let Some(violations) = checked else {
            self.over_values(&env.name, expr);
            return false;
        };
        for v in &violations {
            let mut at = expr;
            for seg in &v.at {
                let next = match (&at.kind, seg) {
                    (ExprKind::List(items), Seg::Index(i)) => items.get(*i),
                    (ExprKind::Object(fields), Seg::Key(k)) => {
                        fields.iter().find(|(f, _, _)| f == k).map(|(_, _, e)| e)
                    }
                    _ => None,
                };
                match next {
                    Some(n) => at = n,
                    None => break,
                }
            }
            self.error(&env.name, at.span, &at.path, v.message.clone());
        }
        violations.is_empty()
    }

    fn builtin(&mut self, env: &mut Env<'_>, expr: &Expr, b: &ast::Builtin) -> Value {
        let name = env.name.clone();
        match &b.call {
            Call::Plaintext(s) => Value::string(s.clone()).deep_secret(),
            Call::Ciphertext(ct) => {
                let validate_only = matches!(self.opts.mode, Mode::Check { show_secrets: false });
                let req = DecryptRequest {
                    env: name.to_string(),
                    ciphertext: ct.clone(),
                    validate_only,
                };
                let mut out = Value::unknown(None);
                out.secret = true;
                match self.effects.decrypt(&req) {
                    Answer::Pending => self.pending.push(Need::Decrypt(req)),
                    Answer::Ready(Err(DecryptError::Invalid(m))) => {
                        self.error(&name, expr.span, &expr.path, format!("invalid ciphertext: {m}"))
                    }
                    Answer::Ready(Err(DecryptError::Failed(m))) => {
                        self.error(&name, expr.span, &expr.path, format!("decrypting: {m}"))
                    }
                    Answer::Ready(Ok(_)) if validate_only => {}
                    Answer::Ready(Ok(pt)) => out = Value::string(pt).deep_secret(),
                }
                out
            }
            Call::Open { provider, inputs } => {
                let (Some(provider), Some(inputs)) = (provider, inputs) else {
                    return Value::unknown(None);
                };
                let Some(ps) = self.effects.provider(provider) else {
                    self.error(&name, b.name_span, &expr.path, format!("unknown provider {provider:?}"));
                    return Value::unknown(None);
                };
                let iv = self.sub(env, inputs);
                let outputs = Some(Arc::new(ps.outputs.clone()));
                if !self.validate(env, inputs, &iv, &ps.inputs) || iv.contains_unknowns() || self.check() {
                    return Value::unknown(outputs);
                }
                let call = ProviderCall {
                    kind: CallKind::Open,
                    provider: provider.clone(),
                    env: name.to_string(),
                    path: expr.path.to_string(),
                    inputs: iv,
                    state: None,
                };
                self.perform(&name, expr, call, outputs)
            }
            Call::Rotate {
                provider,
                inputs,
                state,
            } => {
                let (Some(provider), Some(inputs)) = (provider, inputs) else {
                    return Value::unknown(None);
                };
                let Some(rs) = self.effects.rotator(provider) else {
                    self.error(&name, b.name_span, &expr.path, format!("unknown rotator {provider:?}"));
                    return Value::unknown(None);
                };
                let outputs = Some(Arc::new(rs.outputs.clone()));
                let rotating = env.is_root
                    && match &self.opts.mode {
                        Mode::Rotate { paths: None } => true,
                        Mode::Rotate { paths: Some(p) } => p.contains(&expr.path.to_string()),
                        _ => false,
                    };
                let rotate_only: Vec<String> = rs
                    .inputs
                    .get("rotateOnly")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
                // Rotate-only inputs are evaluated when rotating, and in check of the root environment (so that a
                // reference the user cannot reach is reported), but not when opening.
                let evaluate_rotate_only = rotating || (self.check() && env.is_root);
                let iv = match (&inputs.kind, env.ids.get(&inputs.path).map(|&i| &env.nodes[i].shape)) {
                    (ExprKind::Object(_), Some(Shape::Object(children))) if !evaluate_rotate_only => {
                        let children = children.clone();
                        let mut map = BTreeMap::new();
                        for (k, cid) in children {
                            let v = if rotate_only.contains(&k) {
                                Value::unknown(None)
                            } else {
                                self.node(env, cid)
                            };
                            map.insert(k, v);
                        }
                        Value::object(map)
                    }
                    _ => self.sub(env, inputs),
                };
                let (sv, state_expr) = match state {
                    Some(s) => (self.sub(env, s), s),
                    None => (Value::null(), expr),
                };
                let state_schema = json!({"oneOf": [rs.state.clone(), {"type": "null"}]});
                let inputs_ok = self.validate(env, inputs, &iv, &rs.inputs);
                let state_ok = self.validate(env, state_expr, &sv, &state_schema);
                if !inputs_ok || !state_ok || self.check() || (rotating && iv.contains_unknowns()) {
                    return Value::unknown(outputs);
                }
                let state_value = (!matches!(sv.repr, Repr::Null) || sv.unknown).then_some(sv);
                let mut open_state = state_value.clone();
                if rotating {
                    let call = ProviderCall {
                        kind: CallKind::Rotate,
                        provider: provider.clone(),
                        env: name.to_string(),
                        path: expr.path.to_string(),
                        inputs: iv.clone(),
                        state: state_value,
                    };
                    let new_state = self.perform(&name, expr, call, None);
                    if new_state.unknown {
                        return Value::unknown(outputs);
                    }
                    self.patches.push(Patch {
                        doc_path: expr.path.key(&b.name).key("state").to_string(),
                        replacement: new_state.clone(),
                    });
                    open_state = Some(new_state);
                }
                let call = ProviderCall {
                    kind: CallKind::RotatorOpen,
                    provider: provider.clone(),
                    env: name.to_string(),
                    path: expr.path.to_string(),
                    inputs: iv,
                    state: open_state,
                };
                self.perform(&name, expr, call, outputs)
            }
            Call::Join(pair) | Call::Split(pair) => {
                let Some((a, l)) = pair else {
                    return Value::unknown(None);
                };
                let is_join = matches!(b.call, Call::Join(_));
                let av = self.sub(env, a);
                let lv = self.sub(env, l);
                let arg = Value::array(vec![av.clone(), lv.clone()]);
                let ok = self.validate(env, &b.arg, &arg, if is_join { &JOIN } else { &SPLIT });
                let secret = arg.contains_secrets();
                if !ok || arg.contains_unknowns() {
                    return Value {
                        secret,
                        ..Value::unknown(None)
                    };
                }
                let (Repr::String(sep), second) = (&av.repr, &lv.repr) else {
                    return Value::unknown(None);
                };
                let mut out = if is_join {
                    let Repr::Array(items) = second else {
                        return Value::unknown(None);
                    };
                    if !self.charge_walk(&name, expr, &lv) {
                        return Value::unknown(None);
                    }
                    // The text of each item, then the separators, counted before anything is joined.
                    let mut room = MAX_VALUE_BYTES;
                    let mut parts = Vec::with_capacity(items.len());
                    for item in items.iter() {
                        match item.to_text_within(room) {
                            Some(t) => {
                                room -= t.len();
                                parts.push(t);
                            }
                            None => return self.too_large(env, expr),
                        }
                    }
                    let seps = sep.len().saturating_mul(parts.len().saturating_sub(1));
                    if seps > room {
                        return self.too_large(env, expr);
                    }
                    let joined = parts.join(&**sep);
                    if !self.charge_text(joined.len()) {
                        return self.over_text(&name, expr);
                    }
                    Value::string(joined)
                } else {
                    let Repr::String(s) = second else {
                        return Value::unknown(None);
                    };
                    let count = if sep.is_empty() {
                        s.chars().count()
                    } else {
                        s.matches(&**sep).count() + 1
                    };
                    if !self.charge(count as u64) {
                        return self.over_values(&name, expr);
                    }
                    let pieces: Vec<Value> = if sep.is_empty() {
                        s.chars().map(|c| Value::string(c.to_string())).collect()
                    } else {
                        s.split(&**sep).map(Value::string).collect()
                    };
                    Value::array(pieces)
                };
                if secret {
                    out = out.deep_secret();
                }
                out
            }
            Call::Concat(arg) => {
                let av = self.sub(env, arg);
                let ok = self.validate(env, arg, &av, &CONCAT);
                if !ok || av.contains_unknowns() {
                    return Value {
                        secret: av.contains_secrets(),
                        ..Value::unknown(None)
                    };
                }
                let Repr::Array(lists) = &av.repr else {
                    return Value::unknown(None);
                };
                // Each item is a reference; secret lists are walked to mark what they hold.
                let work: u64 = lists
                    .iter()
                    .map(|l| match &l.repr {
                        Repr::Array(_) if l.secret => l.facts().nodes,
                        Repr::Array(inner) => inner.len() as u64,
                        _ => 0,
                    })
                    .fold(0, u64::saturating_add);
                if !self.charge(work) {
                    return self.over_values(&name, expr);
                }
                let mut items = Vec::new();
                for l in lists.iter() {
                    if let Repr::Array(inner) = &l.repr {
                        items.extend(
                            inner
                                .iter()
                                .map(|v| if l.secret { v.clone().deep_secret() } else { v.clone() }),
                        );
                    }
                }
                Value {
                    secret: av.secret,
                    ..Value::array(items)
                }
            }
            Call::ToJson(arg) | Call::ToString(arg) => {
                let v = self.sub(env, arg);
                let secret = v.contains_secrets();
                if v.contains_unknowns() {
                    return Value {
                        secret,
                        ..Value::unknown(None)
                    };
                }
                if !self.charge_walk(&name, expr, &v) {
                    return Value::unknown(None);
                }
                let text = if matches!(b.call, Call::ToJson(_)) {
                    v.to_json_text_within(MAX_VALUE_BYTES)
                } else {
                    v.to_text_within(MAX_VALUE_BYTES)
                };
                let Some(text) = text else {
                    return self.too_large(env, expr);
                };
                if !self.charge_text(text.len()) {
                    return self.over_text(&name, expr);
                }
                Value {
                    secret,
                    ..Value::string(text)
                }
            }
            Call::FromJson(arg) | Call::ToBase64(arg) | Call::FromBase64(arg) => {
                let v = self.sub(env, arg);
                let ok = self.validate(env, arg, &v, &STRING);
                let secret = v.contains_secrets();
                if !ok || v.unknown {
                    return Value {
                        secret,
                        ..Value::unknown(None)
                    };
                }
                let Repr::String(s) = &v.repr else {
                    return Value::unknown(None);
                };
                let out = match &b.call {
                    Call::FromJson(_) => match serde_json::from_str::<Json>(s) {
                        Ok(j) => {
                            let v = Value::from_json(&j);
                            drop(j);
                            if !self.charge_walk(&name, expr, &v) {
                                return Value::unknown(None);
                            }
                            v
                        }
                        Err(e) => {
                            self.error(&name, arg.span, &arg.path, format!("decoding JSON string: {e}"));
                            return Value::unknown(None);
                        }
                    },
                    Call::ToBase64(_) => Value::string(STANDARD.encode(s.as_bytes())),
                    _ => match STANDARD.decode(s.as_bytes()).map(String::from_utf8) {
                        Ok(Ok(text)) => Value::string(text),
                        Ok(Err(_)) => {
                            self.error(
                                &name,
                                arg.span,
                                &arg.path,
                                "decoding base64 string: not valid UTF-8 text",
                            );
                            return Value::unknown(None);
                        }
                        Err(e) => {
                            // The decoder names the offending byte: not shown when the input is a secret.
                            let why = if secret {
                                "not valid base64".to_owned()
                            } else {
                                e.to_string()
                            };
                            self.error(&name, arg.span, &arg.path, format!("decoding base64 string: {why}"));
                            return Value::unknown(None);
                        }
                    },
                };
                if let Repr::String(text) = &out.repr
                    && !self.charge_text(text.len())
                {
                    return self.over_text(&name, expr);
                }
                if secret { out.deep_secret() } else { out }
            }
            Call::Final(arg) => {
                let mut v = self.sub(env, arg);
                v.is_final = true;
                v
            }
            Call::Validate { schema, value } => {
                let (Some(s), Some(vexpr)) = (schema, value) else {
                    return Value::unknown(None);
                };
                let sv = self.sub(env, s);
                let v = self.sub(env, vexpr);
                if sv.contains_unknowns() {
                    return Value::unknown(None);
                }
                if !self.charge_walk(&name, s, &sv) {
                    return Value::unknown(None);
                }
                let sj = sv.to_json(false);
                if !matches!(sj, Json::Bool(_) | Json::Object(_)) {
                    self.error(&name, s.span, &s.path, "a schema must be a boolean or an object");
                    return Value::unknown(None);
                }
                if self.validate(env, vexpr, &v, &sj) {
                    v
                } else {
                    Value::unknown(None)
                }
            }
        }
    }

    fn perform(&mut self, env: &Arc<str>, expr: &Expr, call: ProviderCall, outputs: Option<Arc<Json>>) -> Value {
        match self.effects.call(&call) {
            Answer::Pending => {
                self.pending.push(Need::Call(Box::new(call)));
                Value::unknown(outputs)
            }
            Answer::Ready(Err(e)) => {
                self.error(env, expr.span, &expr.path, e.to_string());
                Value::unknown(outputs)
            }
            Answer::Ready(Ok(v)) => {
                if v.secret {
                    self.secret_deep(v, env, expr)
                } else {
                    v
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::env::ast::load;

    /// Documents by name, no providers, ciphertexts refused.
    struct Docs(BTreeMap<String, String>);

    impl Effects for Docs {
        fn load(&self, name: &str) -> Answer<Result<Arc<str>, EffectError>> {
            Answer::Ready(
                self.0
                    .get(name)
                    .map(|s| Arc::from(s.as_str()))
                    .ok_or_else(|| EffectError::NotFound(name.to_owned())),
            )
        }
        fn decrypt(&self, _: &DecryptRequest) -> Answer<Result<String, DecryptError>> {
            Answer::Ready(Err(DecryptError::Failed("no keys".into())))
        }
        fn provider(&self, _: &str) -> Option<ProviderSchema> {
            None
        }
        fn rotator(&self, _: &str) -> Option<RotatorSchema> {
            None
        }
        fn call(&self, _: &ProviderCall) -> Answer<Result<Value, EffectError>> {
            Answer::Ready(Err(EffectError::NoProviders))
        }
    }

    fn run(src: &str, docs: &[(&str, String)]) -> Evaluated {
        let docs = Docs(docs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
        let opts = Options {
            mode: Mode::Eval,
            context: BTreeMap::new(),
        };
        evaluate(&load("root", src), &docs, &opts)
    }

    /// The diagnostics' texts are those the edges wrote by hand before the errors were typed.
    #[test]
    fn effect_errors_read_as_the_edges_messages() {
        let name = "p/e";
        let cases = [
            (
                EffectError::InvalidName("a b".into()),
                "invalid environment name \"a b\"".to_owned(),
            ),
            (
                EffectError::NotFound(name.into()),
                format!("environment \"{name}\" not found"),
            ),
            (
                EffectError::NoSuchVersion {
                    name: name.into(),
                    why: "tag \"x\" not found".into(),
                },
                format!("environment \"{name}\": tag \"x\" not found"),
            ),
            (
                EffectError::NotAFileName("../a\"b".into()),
                format!("invalid environment name {:?}", "../a\"b"),
            ),
            (
                EffectError::Unreadable {
                    name: name.into(),
                    path: "/d/p/e.yaml".into(),
                    error: "No such file or directory (os error 2)".into(),
                },
                format!("environment {name:?} (/d/p/e.yaml): No such file or directory (os error 2)"),
            ),
            (
                EffectError::NoProviders,
                "providers are not available on this server yet".to_owned(),
            ),
            (
                EffectError::Offline("aws-login".into()),
                format!("provider {:?} cannot run offline", "aws-login"),
            ),
            (EffectError::Failed("boom: \"why\"".into()), "boom: \"why\"".to_owned()),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }

    /// A failed import is reported with the error's text at the import.
    #[test]
    fn a_failed_load_is_reported_with_its_text() {
        let e = run("imports:\n  - p/missing\nvalues:\n  a: 1\n", &[]);
        assert!(
            summaries(&e).contains(&"environment \"p/missing\" not found".to_owned()),
            "{:?}",
            summaries(&e)
        );
    }

    fn summaries(e: &Evaluated) -> Vec<String> {
        e.diags.iter().map(|d| d.summary.clone()).collect()
    }

    #[test]
    fn validate_passes_good_values_and_reports_bad_ones() {
        let e = run(
            "values:\n  ok:\n    fn::validate:\n      schema: {type: number, minimum: 1}\n      value: 3\n  bad:\n    \
             fn::validate:\n      schema: {type: string}\n      value: [1]\n",
            &[],
        );
        let p = e.properties.as_ref().unwrap();
        assert_eq!(p["ok"].to_json(false), serde_json::json!(3));
        assert!(p["bad"].unknown);
        assert_eq!(summaries(&e), ["expected string, got array"]);
        assert_eq!(e.diags[0].path, "values.bad[\"fn::validate\"].value");
    }

    #[test]
    fn a_bad_base64_secret_is_not_quoted_in_diagnostics() {
        let e = run(
            "values:\n  s:\n    fn::secret: \"ab~d\"\n  d:\n    fn::fromBase64: ${s}\n",
            &[],
        );
        assert_eq!(summaries(&e), ["decoding base64 string: not valid base64"]);
        let e = run("values:\n  d:\n    fn::fromBase64: \"ab~d\"\n", &[]);
        assert!(
            summaries(&e)[0].starts_with("decoding base64 string: Invalid"),
            "{:?}",
            summaries(&e)
        );
    }

    #[test]
    fn exponential_strings_are_bounded() {
        let mut src = String::from("values:\n  l0: 0123456789abcdef0123456789abcdef\n");
        for i in 1..40 {
            src.push_str(&format!("  l{i}: ${{l{}}}${{l{}}}\n", i - 1, i - 1));
        }
        let e = run(&src, &[]);
        assert!(
            summaries(&e).iter().any(|s| s.contains("larger than")),
            "{:?}",
            summaries(&e)
        );
        assert!(e.properties.unwrap()["l39"].unknown);
    }

    #[test]
    fn import_chains_are_bounded() {
        let docs: Vec<(&str, String)> = (0..200)
            .map(|i| {
                (
                    Box::leak(format!("e{i}").into_boxed_str()) as &str,
                    format!("imports: [e{}]\nvalues:\n  v{i}: {i}\n", i + 1),
                )
            })
            .collect();
        let e = run("imports: [e0]\n", &docs);
        assert!(
            summaries(&e).iter().any(|s| s.contains("nest deeper")),
            "{:?}",
            summaries(&e)
        );
    }

    thread_local! {
        /// The lowest stack address evaluation reached on this thread.
        static STACK_LOW: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
        /// The stack the last evaluation called from this thread took on its own thread, in bytes.
        static LAST_EVAL_STACK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Records how deep into the stack evaluation went.
    pub(super) fn probe_stack() {
        let here = 0u8;
        let at = std::ptr::addr_of!(here) as usize;
        STACK_LOW.with(|low| low.set(low.get().min(at)));
    }

    /// Where this thread's stack is now; measuring starts afresh from here.
    pub(super) fn stack_top() -> usize {
        let here = 0u8;
        STACK_LOW.with(|low| low.set(usize::MAX));
        std::ptr::addr_of!(here) as usize
    }

    /// How far below `top` evaluation went on this thread.
    pub(super) fn stack_used_since(top: usize) -> usize {
        top.saturating_sub(STACK_LOW.with(|l| l.get()).min(top))
    }

    /// Keeps, on the calling thread, what the evaluation it waited for took of its own stack.
    pub(super) fn record_eval_stack(bytes: usize) {
        LAST_EVAL_STACK.with(|l| l.set(bytes));
    }

    fn last_eval_stack() -> usize {
        LAST_EVAL_STACK.with(|l| l.get())
    }

    /// The stack the longest chain allowed takes, for each kind of link, measured on the evaluation's own thread:
    /// it must fit in half of [`EVAL_STACK_BYTES`], leaving room for what runs at its end (rendering, schema checks,
    /// merging) and for a build that takes more stack per level.
    #[test]
    fn the_chain_limit_fits_the_stack() {
        let links = [
            "${a%}",
            r#"{fn::final: "${a%}"}"#,
            r#"{fn::fromJSON: {fn::toJSON: "${a%}"}}"#,
            r#"{fn::validate: {schema: true, value: "${a%}"}}"#,
            r#"{fn::join: [',', ["${a%}"]]}"#,
            r#"{fn::concat: [["${a%}"]]}"#,
            r#"["${a%}"]"#,
            r#"{k: "${a%}"}"#,
            r#"x${a%}"#,
        ];
        const LINKS: usize = MAX_EVAL_DEPTH + 100;
        let mut worst = 0;
        for link in links {
            let mut src = String::from("values:\n");
            for i in 0..LINKS {
                src.push_str(&format!("  a{i}: {}\n", link.replace('%', &(i + 1).to_string())));
            }
            src.push_str(&format!("  a{LINKS}: end\n"));
            let used = on_small_stack(move || {
                let e = run(&src, &[]);
                assert!(summaries(&e).iter().any(|m| m.contains("chain of more than")));
                last_eval_stack()
            });
            eprintln!(
                "stack used by the longest chain of {link}: {used} bytes, {} per level",
                used / MAX_EVAL_DEPTH
            );
            worst = worst.max(used);
        }
        assert!(worst > 0);
        assert!(worst * 2 <= EVAL_STACK_BYTES, "{worst} bytes");
    }

    /// Runs `f` on a thread with a 2 MiB stack, the smallest a server or test thread has.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    fn chain(links: usize) -> String {
        let mut src = String::from("values:\n");
        for i in 0..links {
            src.push_str(&format!("  a{i}: ${{a{}}}\n", i + 1));
        }
        src.push_str(&format!("  a{links}: end\n"));
        src
    }

    #[test]
    fn reference_chains_are_bounded_on_a_small_stack() {
        // The longest chain allowed evaluates fully, called from a 2 MiB thread: evaluation has a stack of its own.
        let src = chain(MAX_EVAL_DEPTH - 4);
        let short = on_small_stack(move || run(&src, &[]));
        assert!(short.diags.is_empty(), "{:?}", summaries(&short));
        assert_eq!(short.properties.unwrap()["a0"].to_json(false), serde_json::json!("end"));
        // 5,000 links is past the limit: a diagnostic, not a crash.
        let src = chain(5_000);
        let e = on_small_stack(move || {
            let mut outs = Vec::new();
            for mode in [Mode::Check { show_secrets: false }, Mode::Eval] {
                let opts = Options {
                    mode,
                    context: BTreeMap::new(),
                };
                outs.push(evaluate(&load("root", &src), &Docs(BTreeMap::new()), &opts));
            }
            outs
        });
        for e in e {
            let s = summaries(&e);
            assert!(s.iter().any(|m| m.contains("chain of more than")), "{s:?}");
            let p = e.properties.as_ref().unwrap();
            assert!(p["a0"].unknown);
            assert_eq!(p["a5000"].to_json(false), serde_json::json!("end"));
        }
    }

    #[test]
    fn a_document_nested_as_deep_as_the_parser_allows_evaluates_fully() {
        // The root, `values` and 126 maps: 128 levels, `syntax::MAX_DEPTH`, the deepest a document may nest.
        fn nested(maps: usize) -> String {
            let mut src = String::from("values:\n");
            for i in 0..maps {
                src.push_str(&format!("{}k{i}:\n", "  ".repeat(i + 1)));
            }
            src.push_str(&format!("{}leaf: 1\n", "  ".repeat(maps + 1)));
            src
        }
        let maps = super::super::syntax::MAX_DEPTH - 2;
        let too_deep = load("root", &nested(maps + 1));
        assert!(
            too_deep.diags.iter().any(|d| d.summary.contains("nests deeper")),
            "{:?}",
            too_deep.diags
        );
        let src = nested(maps);
        let e = on_small_stack(move || run(&src, &[]));
        assert!(e.diags.is_empty(), "{:?}", summaries(&e));
        let mut v = e.properties.unwrap()["k0"].to_json(false);
        for i in 1..maps {
            v = v[format!("k{i}")].take();
        }
        assert_eq!(v, serde_json::json!({"leaf": 1}));
    }

    #[test]
    fn chains_through_every_kind_of_link_are_bounded() {
        // Calls, nested lists and objects, interpolations and secrets as links, 3,000 deep each.
        let links = [
            r#"{fn::final: "${a%}"}"#,
            r#"{fn::toJSON: "${a%}"}"#,
            r#"{fn::toString: "${a%}"}"#,
            r#"{fn::validate: {schema: true, value: "${a%}"}}"#,
            r#"["${a%}"]"#,
            r#"{k: "${a%}"}"#,
            r#"x${a%}"#,
            r#"{fn::concat: [["${a%}"]]}"#,
            r#"{fn::join: [',', ["${a%}"]]}"#,
            r#"{fn::fromJSON: {fn::toJSON: "${a%}"}}"#,
        ];
        for link in links {
            let mut src = String::from("values:\n");
            for i in 0..3_000 {
                src.push_str(&format!("  a{i}: {}\n", link.replace('%', &(i + 1).to_string())));
            }
            src.push_str("  a3000: {fn::secret: s}\n");
            let e = on_small_stack(move || run(&src, &[]));
            let s = summaries(&e);
            assert!(
                s.iter().any(|m| m.contains("chain of more than")),
                "{link}: {:?}",
                &s[..s.len().min(3)]
            );
        }
    }

    fn doubling(levels: usize, item: &str) -> String {
        let mut src = format!("values:\n  l0: {}\n", "x".repeat(64));
        for i in 1..=levels {
            src.push_str(&format!("  l{i}: {}\n", item.replace('%', &(i - 1).to_string())));
        }
        src
    }

    #[test]
    fn doubling_references_are_shared_and_bounded() {
        let e = run(&doubling(30, "[\"${l%}\", \"${l%}\"]"), &[]);
        let s = summaries(&e);
        assert!(s.iter().any(|m| m.contains("too large to return")), "{s:?}");
        let p = e.properties.as_ref().unwrap();
        assert_eq!(p["l2"].to_json(false)[1][0], serde_json::json!("x".repeat(64)));
        assert!(p["l30"].unknown);
        // What is kept renders within the limit.
        let kept: u64 = p
            .values()
            .map(|v| v.facts().nodes * RENDERED_BYTES_PER_VALUE + v.facts().bytes)
            .sum();
        assert!(kept <= MAX_RENDERED_BYTES, "{kept}");
        // Shared, not copied: thirty levels of doubling cost a few values of work each.
        assert!(e.work < 10_000, "{}", e.work);
    }

    /// Found by fuzzing: values replaced by unknowns cost something too (their key and an unknown), so many of them
    /// after the kept ones must not push the result past the limit.
    #[test]
    fn kept_and_replaced_values_together_render_within_the_limit() {
        let mut src = doubling(14, "[\"${l%}\", \"${l%}\"]");
        for i in 0..20_000 {
            src.push_str(&format!("  x{i}: ${{l14}}\n"));
        }
        let e = run(&src, &[]);
        let p = e.properties.as_ref().unwrap();
        assert!(p.values().filter(|v| v.unknown).count() > 19_000);
        let rendered: u64 = p
            .iter()
            .map(|(k, v)| v.facts().nodes * RENDERED_BYTES_PER_VALUE + v.facts().bytes + k.len() as u64)
            .sum();
        assert!(rendered <= MAX_RENDERED_BYTES, "{rendered}");
    }

    #[test]
    fn walking_a_doubled_value_is_charged_to_the_budget() {
        let cases = [
            (r#"{fn::toJSON: "${l30}"}"#, "values of work"),
            (r#"{fn::toString: "${l30}"}"#, "values of work"),
            (r#""x${l30}""#, "values of work"),
            (r#"{fn::join: [',', "${l30}"]}"#, "expected string"),
            (r#"{fn::join: [',', "${l30[0]}"]}"#, "expected string"),
            (
                r#"{fn::validate: {schema: {type: array, items: {type: array}}, value: "${l30}"}}"#,
                "values of work",
            ),
            (r#"{fn::validate: {schema: "${l30}", value: 1}}"#, "values of work"),
            (
                r#"{fn::validate: {schema: {const: 1}, value: "${l30}"}}"#,
                "values of work",
            ),
            (r#"{fn::concat: ["${l30}", "${l30}"]}"#, "too large to return"),
        ];
        for (expr, want) in cases {
            let src = doubling(30, "[\"${l%}\", \"${l%}\"]") + &format!("  w: {expr}\n");
            let e = run(&src, &[]);
            let s = summaries(&e);
            assert!(s.iter().any(|m| m.contains(want)), "{expr}: {s:?}");
            assert!(e.work <= MAX_VALUES, "{}", e.work);
        }
    }

    #[test]
    fn merging_doubled_objects_is_charged_to_the_budget() {
        let shape = r#"{a: "${l%}", b: "${l%}"}"#;
        let base = doubling(40, shape);
        let e = run(&format!("imports: [base]\n{}", doubling(40, shape)), &[("base", base)]);
        let s = summaries(&e);
        assert!(
            s.iter().any(|m| m.contains("values of work")),
            "{:?}",
            &s[..s.len().min(3)]
        );
        assert!(e.work <= MAX_VALUES, "{}", e.work);
    }

    #[test]
    fn values_nested_by_reference_are_bounded() {
        let mut src = String::from("values:\n  a0: 1\n");
        for i in 1..5_000 {
            src.push_str(&format!("  a{i}: [\"${{a{}}}\"]\n", i - 1));
        }
        let e = on_small_stack(move || {
            let e = run(&src, &[]);
            let again = run(&src, &[]);
            let p = e.properties.as_ref().unwrap();
            // Comparing (two evaluations share nothing), rendering and dropping stay within the stack.
            assert!(p == again.properties.as_ref().unwrap());
            drop(again);
            for v in p.values() {
                let _ = v.to_json(false);
                let _ = v.to_text_within(MAX_VALUE_BYTES);
                let _ = v.to_json_text_within(MAX_VALUE_BYTES);
                assert!(v.facts().depth <= MAX_VALUE_DEPTH + 2);
            }
            e
        });
        let s = summaries(&e);
        assert!(s.iter().any(|m| m.contains("nest deeper than")), "{s:?}");
    }

    #[test]
    fn quoting_nested_lists_is_bounded() {
        // Each level of a list quotes its items' text again, doubling the backslashes.
        let deep = format!("{}\"\\\"\"{}", "[".repeat(50), "]".repeat(50));
        let e = run(
            &format!("values:\n  a: {{fn::toString: {deep}}}\n  b: \"${{a}}\"\n"),
            &[],
        );
        let s = summaries(&e);
        assert!(s.iter().any(|m| m.contains("larger than")), "{s:?}");
    }

    #[test]
    fn wide_fan_out_is_bounded_by_the_text_budget() {
        let mut src = format!("values:\n  s: {}\n", "y".repeat(100_000));
        for i in 0..1_000 {
            src.push_str(&format!("  x{i}: \"${{s}}${{s}}\"\n"));
        }
        // And many references to one large value are cheap: they share it.
        for i in 0..10_000 {
            src.push_str(&format!("  r{i}: ${{s}}\n"));
        }
        let e = run(&src, &[]);
        let s = summaries(&e);
        assert!(
            s.iter().any(|m| m.contains("bytes of text")),
            "{:?}",
            &s[..s.len().min(3)]
        );
        assert!(
            s.iter().any(|m| m.contains("too large to return")),
            "{:?}",
            &s[..s.len().min(3)]
        );
        assert!(e.diags.len() <= MAX_DIAGNOSTICS + 1);
        assert!(e.work <= MAX_VALUES, "{}", e.work);
    }

    #[test]
    fn references_across_a_long_import_chain_are_bounded() {
        // Each environment imports the next and refers to it, by merge and by `environments.…`, doubling.
        let docs: Vec<(&str, String)> = (0..80)
            .map(|i| {
                (
                    Box::leak(format!("default/e{i}").into_boxed_str()) as &str,
                    format!(
                        "imports: [default/e{n}]\nvalues:\n  v{i}: [\"${{v{n}}}\", \"${{environments.default.e{n}.v{n}}}\"]\n",
                        n = i + 1
                    ),
                )
            })
            .collect();
        let e = on_small_stack(move || run("imports: [default/e0]\nvalues:\n  top: ${v0}\n", &docs));
        let s = summaries(&e);
        assert!(
            s.iter()
                .any(|m| m.contains("imports nest deeper") || m.contains("chain of more than")),
            "{:?}",
            &s[..s.len().min(5)]
        );
        // References alone (no imports) nest one evaluation inside the other, environment after environment.
        let docs: Vec<(&str, String)> = (0..80)
            .map(|i| {
                (
                    Box::leak(format!("default/x{i}").into_boxed_str()) as &str,
                    format!("values:\n  x: [\"${{environments.default.x{}.x}}\"]\n", i + 1),
                )
            })
            .collect();
        let e = on_small_stack(move || run("values:\n  top: ${environments.default.x0.x}\n", &docs));
        let s = summaries(&e);
        assert!(
            s.iter()
                .any(|m| m.contains("imports nest deeper") || m.contains("chain of more than")),
            "{:?}",
            &s[..s.len().min(5)]
        );
    }

    #[test]
    fn deep_documents_and_garbage_give_diagnostics() {
        let deep = format!("values:\n  a: {}1{}\n", "[".repeat(500), "]".repeat(500));
        let loaded = load("deep", &deep);
        assert!(loaded.decl.is_none());
        assert_eq!(loaded.diags.len(), 1);
        for junk in [
            "\u{0}\u{1}",
            "values: {a: [",
            "- 1\n- 2\n",
            "values: 3\n",
            "imports: 7\n",
            "values:\n  a: ${b[\"\n",
        ] {
            let loaded = load("junk", junk);
            assert!(loaded.diags.iter().any(Diagnostic::is_error), "{junk:?}");
            let _ = run(junk, &[]);
        }
    }
}
