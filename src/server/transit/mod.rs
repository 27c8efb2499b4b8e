//! The Vault-compatible API under `/v1/`: Vault's Transit secrets engine (`transit/…` and any transit mount an org
//! enables), and the few other paths its clients call (`sys/health`, `sys/mounts`, `auth/token/lookup-self`). A
//! Sesame token is the Vault token; the org is the `X-Vault-Namespace` header, else the token's org.
//!
//! One catch-all route reads Vault's methods (`LIST` included) and paths here ([`handle`]); [`caller`] resolves who
//! calls and in which org, [`keys`] loads, caches, makes and rotates keys (material sealed by the keyring under the
//! org's `transit` scope), [`manage`] serves the key-management paths, [`import`] Vault's BYOK import, [`ops`] the
//! cryptographic ones, [`sys`] the rest, and [`budget`] counts encryptions per key version (the nonce budget)
//! across replicas.
//!
//! Rule: answers are Vault's — its envelope, its `{"errors": [...]}` bodies and statuses (through
//! [`super::error::VaultError`]), its messages; a caller without the role, without a valid token or outside the org
//! gets the one `permission denied`. Every call that reaches a key is audited (tallied per second, like stack calls);
//! every change of a key is audited in its own transaction. Plaintexts live in wiping buffers and leave through
//! [`super::answer::secret_body`].

pub mod budget;
pub mod caller;
pub mod import;
pub mod keys;
pub mod manage;
pub mod ops;
pub mod sys;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::AppState;
use super::error::{Success, VaultError};
use crate::core::audit::{AuditAction, Outcome};
use crate::core::transit::batch::Fields;

/// The default largest `batch_input` (`--transit-max-batch` raises it).
pub const DEFAULT_MAX_BATCH: usize = 1_000;

/// The mount every org has without enabling it.
pub const DEFAULT_MOUNT: &str = "transit";

/// What a Vault method means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `GET`, `HEAD`.
    Read,
    /// `POST`, `PUT` (Vault's create and update).
    Write,
    /// `DELETE`.
    Delete,
    /// `LIST`, or `GET` with `?list=true`.
    List,
}

/// A request body read as JSON (an empty body is `{}`), wiped when dropped (it may hold plaintexts).
pub struct Body(pub Map<String, Value>);

impl Body {
    /// Its fields.
    pub fn fields(&self) -> Fields<'_> {
        Fields(&self.0)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        super::answer::wipe_json(Value::Object(std::mem::take(&mut self.0)));
    }
}

/// A 200 answer: `data` in Vault's envelope.
pub fn reply<T: serde::Serialize>(data: T, warnings: Vec<String>) -> Response {
    let env = crate::wire::transit::Envelope::new(request_id(), data, warnings);
    Success::Ok.with(axum::Json(env)).into_response()
}

/// A 200 answer holding plaintext or key material: the serialized body is wiped once sent.
pub fn reply_secret<T: serde::Serialize>(data: T) -> Response {
    reply_secret_status(Success::Ok.status(), data)
}

/// Like [`reply_secret`] with a status chosen in `error.rs` (a batch's).
pub fn reply_secret_status<T: serde::Serialize>(status: axum::http::StatusCode, data: T) -> Response {
    let env = crate::wire::transit::Envelope::new(request_id(), data, Vec::new());
    match super::answer::secret_json(&env) {
        Ok(bytes) => {
            let body = super::answer::secret_body(bytes);
            let mut r = (status, body).into_response();
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => VaultError::from(super::error::ApiError::internal(&e)).into_response(),
    }
}

/// A Vault request id (a UUID, as Vault's).
pub fn request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string()
}

fn op_of(method: &Method, query: Option<&str>) -> Option<Op> {
    let list = query.is_some_and(|q| q.split('&').any(|p| p == "list=true" || p == "list=1"));
    match method.as_str() {
        "GET" | "HEAD" if list => Some(Op::List),
        "GET" | "HEAD" => Some(Op::Read),
        "POST" | "PUT" => Some(Op::Write),
        "DELETE" => Some(Op::Delete),
        "LIST" => Some(Op::List),
        _ => None,
    }
}

/// Reads the body as a JSON object; empty is `{}`.
fn parse_body(bytes: &[u8]) -> Result<Body, VaultError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body(Map::new()));
    }
    if crate::core::text::json_has_nul(bytes) {
        return Err(VaultError::invalid(
            "failed to parse JSON input: the body must not contain NUL characters",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(Body(m)),
        Ok(other) => {
            super::answer::wipe_json(other);
            Err(VaultError::invalid(
                "failed to parse JSON input: the body must be a JSON object",
            ))
        }
        Err(e) => Err(VaultError::invalid(format!(
            "failed to parse JSON input: invalid JSON at line {}, column {}",
            e.line(),
            e.column()
        ))),
    }
}

/// `ANY /v1/{*path}`.
pub async fn handle(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path().strip_prefix("/v1/").unwrap_or("").to_owned();
    let segments: Vec<String> = path.trim_end_matches('/').split('/').map(str::to_owned).collect();
    let Some(op) = op_of(req.method(), req.uri().query()) else {
        return VaultError::unsupported_operation().into_response();
    };
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    if seg == ["sys", "health"] {
        return sys::health(&app);
    }
    let (mut parts, body) = req.into_parts();
    let principal = match crate::server::auth::vault_principal(&parts, &app).await {
        Ok(p) => p,
        Err(Some(limited)) => return limited,
        Err(None) => return VaultError::permission_denied().into_response(),
    };
    let call = match caller::Call::resolve(&app, principal, &mut parts).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    // Read through axum's extractor, so the body limit the edge sets applies.
    let bytes = match Bytes::from_request(Request::from_parts(parts, body), &()).await {
        Ok(b) => b,
        Err(rejection) => return VaultError::from(super::error::ApiError::from(rejection)).into_response(),
    };
    let parsed = parse_body(&bytes);
    super::body::wipe(bytes);
    let body = match parsed {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    route(&call, op, &seg, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn route(call: &caller::Call, op: Op, seg: &[&str], body: Body) -> Result<Response, VaultError> {
    match seg {
        ["sys", "mounts"] => sys::mounts(call, op).await,
        ["sys", "mounts", path] => sys::mount(call, op, path, &body).await,
        ["auth", "token", "lookup-self"] => sys::lookup_self(call, op).await,
        [mount, rest @ ..] => {
            if !call.has_mount(mount).await? {
                return Err(VaultError::unsupported_path());
            }
            transit(call, op, mount, rest, body).await
        }
        [] => Err(VaultError::unsupported_path()),
    }
}

/// The audit action of a cryptographic path, whose refusals the router tallies.
fn op_action(rest: &[&str]) -> Option<AuditAction> {
    Some(match *rest.first()? {
        "encrypt" => AuditAction::TransitEncrypt,
        "decrypt" => AuditAction::TransitDecrypt,
        "rewrap" => AuditAction::TransitRewrap,
        "datakey" => AuditAction::TransitDatakey,
        "hmac" => AuditAction::TransitHmac,
        "sign" => AuditAction::TransitSign,
        "verify" => AuditAction::TransitVerify,
        "random" => AuditAction::TransitRandom,
        "hash" => AuditAction::TransitHash,
        _ => return None,
    })
}

/// Serves a transit path; a refused cryptographic call (bad input, a missing key) is tallied as `failed` (`error`
/// when the server failed), a refusal of access having been audited already.
async fn transit(call: &caller::Call, op: Op, mount: &str, rest: &[&str], body: Body) -> Result<Response, VaultError> {
    let result = transit_path(call, op, mount, rest, body).await;
    if let (Err(e), Some(action)) = (&result, op_action(rest))
        && !e.is_permission_denied()
    {
        let target = match rest {
            ["random", ..] => format!("{mount}/random"),
            ["hash", ..] => format!("{mount}/hash"),
            ["datakey", _, name, ..] | [_, name, ..] => format!("{mount}/{name}"),
            _ => mount.to_owned(),
        };
        let outcome = if e.is_server_error() {
            Outcome::Error
        } else {
            Outcome::Failed
        };
        call.tally(action, &target, 1, outcome);
    }
    result
}

async fn transit_path(
    call: &caller::Call,
    op: Op,
    mount: &str,
    rest: &[&str],
    body: Body,
) -> Result<Response, VaultError> {
    use Op::*;
    let name = |n: &str| {
        keys::valid_name(n)
            .then_some(())
            .ok_or_else(VaultError::unsupported_path)
    };
    match (op, rest) {
        (List, ["keys"]) => manage::list(call, mount).await,
        (Read, ["keys"]) => Err(VaultError::unsupported_operation()),
        (_, ["keys", n]) => {
            name(n)?;
            match op {
                Write => manage::create(call, mount, n, &body).await,
                Read => manage::read(call, mount, n).await,
                Delete => manage::delete(call, mount, n).await,
                List => Err(VaultError::unsupported_operation()),
            }
        }
        (Write, ["keys", n, "rotate"]) => {
            name(n)?;
            manage::rotate(call, mount, n).await
        }
        (Write, ["keys", n, "config"]) => {
            name(n)?;
            manage::config(call, mount, n, &body).await
        }
        (Write, ["keys", n, "import"]) => {
            name(n)?;
            import::import(call, mount, n, &body).await
        }
        (Write, ["keys", n, "import_version"]) => {
            name(n)?;
            import::import_version(call, mount, n, &body).await
        }
        (Read, ["wrapping_key"]) => import::get_wrapping_key(call, mount).await,
        (Read, ["export", kind, n]) => {
            name(n)?;
            manage::export(call, mount, kind, n, None).await
        }
        (Read, ["export", kind, n, v]) => {
            name(n)?;
            manage::export(call, mount, kind, n, Some(v)).await
        }
        (Write, ["encrypt", n]) => {
            name(n)?;
            ops::encrypt(call, mount, n, &body).await
        }
        (Write, ["decrypt", n]) => {
            name(n)?;
            ops::decrypt(call, mount, n, &body).await
        }
        (Write, ["rewrap", n]) => {
            name(n)?;
            ops::rewrap(call, mount, n, &body).await
        }
        (Write, ["datakey", kind, n]) => {
            name(n)?;
            ops::datakey(call, mount, kind, n, &body).await
        }
        (Write, ["hmac", n]) => {
            name(n)?;
            ops::hmac(call, mount, n, None, &body).await
        }
        (Write, ["hmac", n, alg]) => {
            name(n)?;
            ops::hmac(call, mount, n, Some(alg), &body).await
        }
        (Write, ["sign", n]) | (Write, ["sign", n, _]) => {
            name(n)?;
            ops::sign(call, mount, n, rest.get(2).copied(), &body).await
        }
        (Write, ["verify", n]) | (Write, ["verify", n, _]) => {
            name(n)?;
            ops::verify(call, mount, n, rest.get(2).copied(), &body).await
        }
        (Write, ["random", tail @ ..]) if tail.len() <= 2 => ops::random(call, mount, tail, &body).await,
        (Write, ["hash"]) => ops::hash(call, mount, None, &body).await,
        (Write, ["hash", alg]) => ops::hash(call, mount, Some(alg), &body).await,
        (
            _,
            ["keys", _, "rotate" | "config" | "import" | "import_version"]
            | ["wrapping_key"]
            | ["encrypt" | "decrypt" | "rewrap" | "hmac" | "sign" | "verify", ..]
            | ["datakey", _, _]
            | ["random", ..]
            | ["hash", ..]
            | ["export", ..],
        ) => Err(VaultError::unsupported_operation()),
        _ => Err(VaultError::unsupported_path()),
    }
}

/// Per-replica state of the Transit API.
pub struct TransitState {
    /// (org id, mount, name) → the key with its versions unsealed, for [`keys::KEY_CACHE_TTL`].
    pub keys: moka::future::Cache<(String, String, String), Arc<keys::LoadedKey>>,
    /// Org id → the transit mounts it enabled, for [`keys::KEY_CACHE_TTL`].
    pub mounts: moka::future::Cache<String, Arc<Vec<String>>>,
    /// Token id → the org its calls act in when no namespace is named (personal tokens of one-org users).
    pub token_orgs: moka::future::Cache<String, Arc<crate::store::OrgRecord>>,
    /// The largest `batch_input`.
    pub max_batch: usize,
    /// Encryptions per key version not yet added to the store.
    pub budget: budget::Budget,
}

impl Default for TransitState {
    fn default() -> Self {
        TransitState {
            keys: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(keys::KEY_CACHE_TTL)
                .build(),
            mounts: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(keys::KEY_CACHE_TTL)
                .build(),
            token_orgs: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(super::auth::TOKEN_CACHE_TTL)
                .build(),
            max_batch: DEFAULT_MAX_BATCH,
            budget: budget::Budget::default(),
        }
    }
}
