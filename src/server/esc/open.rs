//! Opening environments: `…/open` (latest), `…/versions/{version}/open` and the anonymous `yaml/open` evaluate
//! with every import checked for the opener role and answer an id that carries the session — the digest of what the
//! evaluation read and the expiry, sealed under the environment's DEK for the opening token
//! ([`crate::core::env::session`]); what it read is stored once per distinct set. `…/open/{id}` reads a session
//! back, whole or one property, from the evaluated-result cache or re-derived from the pinned revisions, until it
//! expires; sessions stored whole by earlier versions are read from the store. An open whose evaluation called
//! providers is never cached: it stores the providers' outputs (sealed) in a row its id names, and a read replays
//! them instead of calling the providers again.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value as JsonValue;

use super::eval::{self, Evaluator, StoredOutput, resolve_version, revision_yaml};
use super::{body_text, env_scope, internal, rendered_properties, target};
use crate::core::audit::AuditAction;
use crate::core::audit::hex;
use crate::core::authz::{Access, Action};
use crate::core::env::session::{self, Claims, Pins};
use crate::core::env::{Mode, PropertyPath};
use crate::core::keys::{open_outputs_aad, open_pins_aad, open_session_aad, session_id_aad};
use crate::core::timefmt::parse_go_duration;
use crate::server::AppState;
use crate::server::answer::{json_answer, secret_body, secret_json, wipe_json};
use crate::server::auth::Caller;
use crate::server::auth::Principal;
use crate::server::error::ApiError;
use crate::store::OrgRecord;
use crate::store::envs::{EnvRecord, PinsRecord, SessionRecord};
use crate::wire::esc;
use sesame_envelope::Plaintext;

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

/// An evaluated environment as sessions serve it: the rendered answer (`{"properties": …}`, plaintext secrets
/// included, wiped when the entry goes), what it was evaluated from, and, once a property was asked for, the answer
/// parsed (wiped likewise).
pub struct Opened {
    body: zeroize::Zeroizing<Vec<u8>>,
    pins: Pins,
    digest: [u8; 32],
    parsed: OnceLock<JsonValue>,
}

impl Opened {
    /// What the entry weighs in the cache, in bytes (the parsed form is counted as twice the text).
    pub fn weight(&self) -> usize {
        self.body.len() * 3 + self.pins.docs.len() * 64
    }

    fn parsed(&self) -> Result<&JsonValue, ApiError> {
        if let Some(v) = self.parsed.get() {
            return Ok(v);
        }
        let mut fresh = Some(serde_json::from_slice::<JsonValue>(&self.body).map_err(internal)?);
        let parsed = self.parsed.get_or_init(|| fresh.take().unwrap_or_default());
        // Another read parsed it first: this copy goes, wiped.
        if let Some(v) = fresh {
            wipe_json(v);
        }
        Ok(parsed)
    }
}

/// A cached answer as a response body, without a copy.
struct SharedBody(Arc<Opened>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0.body
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(v) = self.parsed.take() {
            wipe_json(v);
        }
    }
}

/// How much longer than the longest session a stored pin set is kept, so that opens of a known set write nothing
/// for this long.
const PINS_SLACK: Duration = Duration::from_secs(3600);

/// Evaluates `resolved` and renders the answer, with what providers returned; an evaluation with errors is refused
/// with its diagnostics.
async fn evaluate_opened(
    app: &AppState,
    caller: &Evaluator<'_>,
    resolved: &mut eval::Resolved,
) -> Result<(Opened, Vec<StoredOutput>), ApiError> {
    let out = eval::evaluate_resolved(app, caller, resolved, Mode::Eval).await?;
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
    // The pins are taken after evaluation: they include what later rounds loaded.
    let pins = resolved.pins();
    let digest = pins.digest("open");
    let opened = Opened {
        body: zeroize::Zeroizing::new(text),
        pins,
        digest,
        parsed: OnceLock::new(),
    };
    Ok((opened, resolved.provider_outputs()))
}

/// The evaluated-result cache's key for a session with provider outputs: its pins' digest and its outputs row
/// (never a plain pins digest, so an open never finds it).
fn outputs_cache_key(digest: &[u8; 32], row: &[u8; 16]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"sesame/open-outputs-cache/v1");
    ctx.update(digest);
    ctx.update(row);
    ctx.finish().as_ref().try_into().unwrap_or([0; 32])
}

/// The name of the `open_sessions` row holding a session's provider outputs (never of the 32-hex-digit form of
/// the sessions earlier versions stored whole).
fn outputs_row_id(row: &[u8; 16]) -> String {
    format!("out-{}", hex(row))
}

/// Makes sure the pin set of `opened` is stored until at least `until_ms`: nothing to do when this replica knows it
/// is; otherwise one upsert (the set sealed under the environment's DEK), kept [`PINS_SLACK`] past the longest
/// session from now.
async fn keep_pins(app: &AppState, org_id: &str, env_id: &str, opened: &Opened, until_ms: i64) -> Result<(), ApiError> {
    let key = (org_id.to_owned(), opened.digest);
    if app.pins_stored.get(&key).await.is_some_and(|kept| kept >= until_ms) {
        return Ok(());
    }
    let keep = app.clock.now_ms() + (MAX_OPEN_DURATION + PINS_SLACK).as_millis() as i64;
    let digest = hex(&opened.digest);
    let text = zeroize::Zeroizing::new(serde_json::to_vec(&opened.pins).map_err(internal)?);
    let sealed = app
        .keyring
        .seal(
            &env_scope(org_id, env_id),
            &open_pins_aad(org_id, env_id, &digest),
            &text,
        )
        .await?;
    app.store
        .put_pins(&PinsRecord {
            org_id: org_id.to_owned(),
            digest,
            env_id: env_id.to_owned(),
            sealed,
            expires_ms: keep.max(until_ms),
        })
        .await?;
    app.pins_stored.insert(key, keep.max(until_ms)).await;
    Ok(())
}

/// Evaluates (or finds the evaluation in the cache), makes sure its pins are stored, and answers `{"id"}` with an
/// id that carries the session (see [`crate::core::env::session`]).
async fn open_session(
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
        source,
    };
    // Imports are resolved (and the caller's right to open each checked) on every open; only when nothing it reads
    // has changed is the evaluated result reused.
    let mut resolved = eval::resolve(app, &caller, name, yaml, env).await?;
    let key = resolved.digest("open");
    // An evaluation that called providers is never cached (each open runs them anew), so its digest is never found.
    let (opened, outputs) = match app.eval_cache.get(&key).await {
        Some(o) => (o, Vec::new()),
        None if resolved.may_call_providers() => evaluate_once(app, &caller, &mut resolved, key).await?,
        None => {
            // Concurrent opens of what is not cached (the first open after a change, or all at once when the entry
            // expires under load) evaluate it once and share the result.
            let mut ran = false;
            let shared = app
                .eval_cache
                .try_get_with(key, async {
                    ran = true;
                    match evaluate_opened(app, &caller, &mut resolved).await {
                        Ok((o, outputs)) if outputs.is_empty() => Ok(Arc::new(o)),
                        Ok(called) => Err(Unshared::Called(std::sync::Mutex::new(Some(called)))),
                        Err(e) => Err(Unshared::Failed(e)),
                    }
                })
                .await;
            match shared {
                Ok(o) => {
                    if o.digest != key {
                        app.eval_cache.insert(o.digest, o.clone()).await;
                    }
                    (o, Vec::new())
                }
                Err(e) => match &*e {
                    Unshared::Failed(e) => return Err(e.clone()),
                    // Providers were called after all (a document names `fn::open` in a form the text test does not
                    // see, such as an escaped YAML key): their outputs belong to the open that ran the evaluation;
                    // the others, whose own evaluation never ran, call their own.
                    Unshared::Called(taken) if ran => {
                        let (o, outputs) = taken.lock().ok().and_then(|mut t| t.take()).ok_or_else(|| {
                            ApiError::internal(&std::io::Error::other("a shared evaluation lost its provider outputs"))
                        })?;
                        (Arc::new(o), outputs)
                    }
                    Unshared::Called(_) => evaluate_once(app, &caller, &mut resolved, key).await?,
                },
            }
        }
    };
    let env = env.map(|(e, _)| e);
    let env_id = env.map_or(ANONYMOUS_ENV, |e| e.id.as_str());
    let now = app.clock.now_ms();
    let expires_ms = now + duration.as_millis() as i64;
    keep_pins(app, &org.id, env_id, &opened, expires_ms).await?;
    // Provider outputs are not recomputable: they alone are stored with the session, sealed, in a row the id names.
    let stored = if outputs.is_empty() {
        None
    } else {
        let mut row = [0u8; 16];
        aws_lc_rs::rand::fill(&mut row).map_err(|e| ApiError::internal(&e))?;
        let row_id = outputs_row_id(&row);
        let text = secret_json(&outputs).map_err(internal)?;
        drop(outputs);
        let sealed = app
            .keyring
            .seal(
                &env_scope(&org.id, env_id),
                &open_outputs_aad(&org.id, env_id, &row_id, &hex(&opened.digest), &p.token_id),
                &text,
            )
            .await?;
        Some((
            row,
            SessionRecord {
                id: row_id,
                env_id: env_id.to_owned(),
                org_id: org.id.clone(),
                sealed,
                created_ms: now,
                expires_ms,
            },
        ))
    };
    let claims = Claims {
        expires_ms,
        digest: opened.digest,
        outputs: stored.as_ref().map(|(row, _)| *row),
    };
    let sealed = app
        .keyring
        .seal(
            &env_scope(&org.id, env_id),
            &session_id_aad(&org.id, env_id, &p.token_id),
            &claims.encode(),
        )
        .await?;
    let id = session::encode_id(&sealed);
    let target = match env {
        Some(e) => format!("{}/{}/{}", org.name, e.project, e.name),
        None => format!("{}/<yaml>", org.name),
    };
    // The id is not logged (it is useless without the opener's token, but long): the record names the digest of
    // what was opened.
    let mut detail = format!("session of {}, {}s", &hex(&opened.digest)[..16], duration.as_secs());
    let event = app.event(Some(p), source, Some(&org.id), AuditAction::EnvOpen, &target);
    match stored {
        None => app.record(event.detail(detail)).await?,
        Some((_, row)) => {
            detail.push_str(", with provider outputs");
            app.record_with_session(event.detail(detail), row).await?
        }
    }
    Ok(axum::Json(esc::OpenResponse { id }).into_response())
}

/// Why an evaluation shared by concurrent opens gave no result to cache.
enum Unshared {
    Failed(ApiError),
    /// It called providers: the result and the outputs, for the open that ran it.
    Called(std::sync::Mutex<Option<(Opened, Vec<StoredOutput>)>>),
}

/// Evaluates for this open alone, caching the result unless providers were called.
async fn evaluate_once(
    app: &AppState,
    caller: &Evaluator<'_>,
    resolved: &mut eval::Resolved,
    key: [u8; 32],
) -> Result<(Arc<Opened>, Vec<StoredOutput>), ApiError> {
    let (o, outputs) = evaluate_opened(app, caller, resolved).await?;
    let o = Arc::new(o);
    if outputs.is_empty() {
        app.eval_cache.insert(key, o.clone()).await;
        if o.digest != key {
            app.eval_cache.insert(o.digest, o.clone()).await;
        }
    }
    Ok((o, outputs))
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
    open_session(
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
    open_session(&app, &p, &source, (&org, &access), None, ("<yaml>", text), duration).await
}

#[derive(Deserialize)]
pub struct PropertyQuery {
    property: Option<String>,
}

fn session_not_found() -> ApiError {
    ApiError::not_found("open session not found or expired")
}

/// What a stored session's associated data names: the session id, and for an anonymous document (`yaml/open`),
/// also the token that opened it.
fn stored_binding(anonymous: bool, id: &str, p: &Principal) -> String {
    if anonymous {
        format!("{id}:{}", p.token_id)
    } else {
        id.to_owned()
    }
}

/// A session stored whole by an earlier version (its id is 32 hex digits): read from the store until it expires.
async fn read_stored_session(
    app: &AppState,
    p: &Principal,
    org: &OrgRecord,
    env_id: &str,
    id: &str,
) -> Result<Plaintext, ApiError> {
    let binding = stored_binding(env_id == ANONYMOUS_ENV, id, p);
    let s = app.store.session(id).await?.ok_or_else(session_not_found)?;
    if s.org_id != org.id || s.env_id != env_id {
        return Err(session_not_found());
    }
    let now = app.clock.now_ms();
    if s.expires_ms <= now {
        app.store.purge_sessions(now).await?;
        return Err(session_not_found());
    }
    app.keyring
        .open(
            &env_scope(&org.id, env_id),
            &open_session_aad(&org.id, env_id, &binding),
            &s.sealed,
        )
        .await
        .map_err(undecryptable_is_missing)
}

fn undecryptable_is_missing(e: crate::keyring::KeyringError) -> ApiError {
    match e {
        crate::keyring::KeyringError::Undecryptable => session_not_found(),
        other => other.into(),
    }
}

/// The session an id names, for this caller: the id unsealed with associated data naming the org, the
/// environment and the caller's token (so an id altered in any byte, of another environment or opened by another
/// token fails alike), unexpired, and every import still open to the caller; its values from the cache, else
/// re-derived from its stored pins.
async fn session_of(app: &AppState, caller: &Evaluator<'_>, env_id: &str, id: &str) -> Result<Arc<Opened>, ApiError> {
    let org = caller.org;
    let sealed = session::decode_id(id).ok_or_else(session_not_found)?;
    let scope = env_scope(&org.id, env_id);
    let payload = app
        .keyring
        .open(
            &scope,
            &session_id_aad(&org.id, env_id, &caller.principal.token_id),
            &sealed,
        )
        .await
        .map_err(undecryptable_is_missing)?;
    let claims = Claims::decode(&payload).ok_or_else(session_not_found)?;
    if claims.expires_ms <= app.clock.now_ms() {
        return Err(session_not_found());
    }
    // A session with provider outputs is cached under its own key: its values are its outputs', not any open's.
    let key = match &claims.outputs {
        Some(row) => outputs_cache_key(&claims.digest, row),
        None => claims.digest,
    };
    let opened = match app.eval_cache.get(&key).await {
        Some(o) => o,
        None => {
            // Concurrent reads of one cold session re-derive it once.
            app.eval_cache
                .try_get_with(key, rederive(app, caller, env_id, &claims))
                .await
                .map_err(Arc::unwrap_or_clone)?
        }
    };
    if !eval::pins_allowed(caller, &opened.pins) {
        return Err(session_not_found());
    }
    Ok(opened)
}

/// A session's stored provider outputs: its row, of this org and environment, unexpired, unsealed for the token
/// that opened it.
async fn stored_outputs(
    app: &AppState,
    caller: &Evaluator<'_>,
    env_id: &str,
    claims: &Claims,
    row: &[u8; 16],
) -> Result<Vec<StoredOutput>, ApiError> {
    let org = caller.org;
    let row_id = outputs_row_id(row);
    let s = app.store.session(&row_id).await?.ok_or_else(session_not_found)?;
    if s.org_id != org.id || s.env_id != env_id || s.expires_ms <= app.clock.now_ms() {
        return Err(session_not_found());
    }
    let text = app
        .keyring
        .open(
            &env_scope(&org.id, env_id),
            &open_outputs_aad(
                &org.id,
                env_id,
                &row_id,
                &hex(&claims.digest),
                &caller.principal.token_id,
            ),
            &s.sealed,
        )
        .await
        .map_err(undecryptable_is_missing)?;
    serde_json::from_slice(&text).map_err(internal)
}

/// Re-evaluates a session from its stored pins (after the cache dropped it, or on another replica), its provider
/// calls answered by its stored outputs (no provider is called again).
async fn rederive(
    app: &AppState,
    caller: &Evaluator<'_>,
    env_id: &str,
    claims: &Claims,
) -> Result<Arc<Opened>, ApiError> {
    let digest = claims.digest;
    let org = caller.org;
    let digest_hex = hex(&digest);
    let row = app
        .store
        .pins(&org.id, &digest_hex)
        .await?
        .filter(|r| r.env_id == env_id)
        .ok_or_else(session_not_found)?;
    let text = app
        .keyring
        .open(
            &env_scope(&org.id, env_id),
            &open_pins_aad(&org.id, env_id, &digest_hex),
            &row.sealed,
        )
        .await
        .map_err(undecryptable_is_missing)?;
    let pins: Pins = serde_json::from_slice(&text).map_err(internal)?;
    drop(text);
    if pins.digest("open") != digest {
        return Err(session_not_found());
    }
    let mut resolved = eval::resolve_pinned(app, caller, &pins)
        .await?
        .ok_or_else(session_not_found)?;
    // Always replayed: a session without outputs has no provider call to answer.
    let outputs = match &claims.outputs {
        Some(row) => stored_outputs(app, caller, env_id, claims, row).await?,
        None => Vec::new(),
    };
    resolved.replay(outputs);
    let (mut opened, _) = evaluate_opened(app, caller, &mut resolved)
        .await
        .map_err(|e| if e.is_client_error() { session_not_found() } else { e })?;
    opened.digest = digest;
    opened.pins = pins;
    Ok(Arc::new(opened))
}

async fn read_session(
    app: &AppState,
    caller: &Evaluator<'_>,
    env_id: &str,
    id: &str,
    property: Option<&str>,
) -> Result<Response, ApiError> {
    let opened = if session::is_stored_id(id) {
        let plain = read_stored_session(app, caller.principal, caller.org, env_id, id).await?;
        return answer_plain(plain, property);
    } else {
        session_of(app, caller, env_id, id).await?
    };
    match property.filter(|p| !p.is_empty()) {
        None => {
            // The cached answer itself is sent, not a copy: the entry (wiped when it goes) outlives the send.
            Ok(json_answer(axum::body::Body::from(Bytes::from_owner(SharedBody(
                opened,
            )))))
        }
        Some(path) => property_answer(opened.parsed()?, path),
    }
}

/// One property of an answer `{"properties": …}`, by its path.
fn property_answer(env: &JsonValue, path: &str) -> Result<Response, ApiError> {
    let steps = PropertyPath::parse(path).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let v = esc::lookup(&env["properties"], &steps)
        .ok_or_else(|| ApiError::not_found(format!("property '{path}' not found")))?;
    Ok(json_answer(secret_body(secret_json(v).map_err(internal)?)))
}

/// A stored session's decrypted answer, whole or one property.
fn answer_plain(plain: Plaintext, property: Option<&str>) -> Result<Response, ApiError> {
    match property.filter(|p| !p.is_empty()) {
        // The sealed body is the answer, byte for byte: no need to parse it (nor to copy it: the answer's buffer is
        // the decrypted one, wiped when sent).
        None => Ok(json_answer(axum::body::Body::from(Bytes::from_owner(plain)))),
        Some(path) => {
            let env: JsonValue = serde_json::from_slice(plain.as_ref()).map_err(internal)?;
            drop(plain);
            let answer = property_answer(&env, path);
            wipe_json(env);
            answer
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
    let caller = Evaluator {
        principal: &p,
        access: &t.access,
        org: &t.org,
        import_action: Action::Open,
        source: &source,
    };
    read_session(&app, &caller, &t.env.id, &id, q.property.as_deref()).await
}

/// `GET /api/esc/environments/{org}/yaml/open/{id}`
pub async fn read_open_yaml(
    Caller(app, p, source): Caller,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<PropertyQuery>,
) -> Result<Response, ApiError> {
    let (org, access) = app.org_access(&p, &source, &org).await?;
    let caller = Evaluator {
        principal: &p,
        access: &access,
        org: &org,
        import_action: Action::Open,
        source: &source,
    };
    read_session(&app, &caller, ANONYMOUS_ENV, &id, q.property.as_deref()).await
}
