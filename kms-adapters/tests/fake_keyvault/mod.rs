//! A protocol fake of Azure Key Vault's key operations — **not Azure**: a small HTTPS server that answers the REST
//! calls the `azure_security_keyvault_keys` client makes, in the shapes the Key Vault REST reference documents, with
//! real cryptography behind them. What it models:
//!
//! - the bearer challenge: a request without a token gets `401` with
//!   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/TENANT", resource="https://vault.azure.net"`
//!   (the client sends its first request without a body or token to provoke it); a token it does not know gets `401`,
//!   and [`FORBIDDEN_TOKEN`] is a known caller without key permissions (`403`, `innererror` `ForbiddenByRbac`);
//! - `api-version` required on every request;
//! - `GET /keys/{name}/{version}` (an empty version, `/keys/{name}/`, means the current one) returning a key bundle;
//! - `POST /keys/{name}/{version}/wrapkey` and `…/unwrapkey` with `{"alg","value"}`, where the version may be empty
//!   (`/keys/{name}//wrapkey`) for the current one; values are base64url without padding; the answer carries the
//!   `kid` with the exact version used. `RSA-OAEP-256` (SHA-256, MGF1-SHA-256, via the `rsa` crate) for RSA keys and
//!   `A256KW` (RFC 3394, via aws-lc-rs) for `oct-HSM` keys as a Managed HSM has them;
//! - errors as `{"error":{"code","message"[,"innererror":{"code"}]}}`: `KeyNotFound` (404), a disabled key
//!   (403, `KeyDisabled`), `BadParameter` (400) for undecryptable input, `Throttled` (429, `Retry-After`).
//!
//! Keys and versions are created, rotated, disabled and throttled through methods here, not over HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey};
use serde_json::{Value, json};

/// The token the fake accepts with full key permissions.
pub const GOOD_TOKEN: &str = "fake-entra-token-with-key-permissions";
/// A token the fake knows, for a caller with no key permissions.
pub const FORBIDDEN_TOKEN: &str = "fake-entra-token-without-key-permissions";
/// The API version the client is expected to send.
pub const API_VERSION: &str = "2025-07-01";

enum Material {
    Rsa(Box<RsaPrivateKey>),
    Aes([u8; 32]),
}

struct Version {
    id: String,
    material: Material,
    enabled: bool,
}

struct StoredKey {
    /// The name as created (lookups ignore case, as Key Vault's do).
    name: String,
    versions: Vec<Version>,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, StoredKey>,
    /// Per key name (lowercased): how many of the next requests get `429`.
    throttle: HashMap<String, u32>,
    /// Every request, as `METHOD path?query auth=yes|no`.
    log: Vec<String>,
}

/// The running fake. Cheap to share; the server runs on its own thread for the life of the test binary.
pub struct FakeKeyVault {
    /// The loopback address it listens on.
    pub addr: SocketAddr,
    /// The PEM of its self-signed certificate (for `*.vault.azure.net` and `*.managedhsm.azure.net`), the only root
    /// a test client should trust.
    pub ca_pem: String,
    state: Arc<Mutex<State>>,
}

impl FakeKeyVault {
    /// Starts the fake on `127.0.0.1:0` and returns once it accepts connections.
    pub fn start() -> FakeKeyVault {
        let cert = rcgen::generate_simple_self_signed(vec![
            "*.vault.azure.net".to_owned(),
            "*.managedhsm.azure.net".to_owned(),
        ])
        .unwrap();
        let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let pem = cert_pem.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem(pem.into_bytes(), key_pem.into_bytes())
                    .await
                    .unwrap();
                let app =
                    axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let state = shared.clone();
                        async move { handle(&state, method, uri, headers, body) }
                    });
                let server = axum_server::from_tcp_rustls(listener, tls);
                ready_tx.send(()).unwrap();
                server.serve(app.into_make_service()).await.unwrap();
            });
        });
        ready_rx.recv().unwrap();
        // The listener was bound before the server started, so connections queue until it accepts.
        FakeKeyVault {
            addr,
            ca_pem: cert_pem,
            state,
        }
    }

    fn add_version(&self, name: &str, material: Material) -> String {
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id).unwrap();
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut state = self.state.lock().unwrap();
        let key = state
            .keys
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| StoredKey {
                name: name.to_owned(),
                versions: Vec::new(),
            });
        key.versions.push(Version {
            id: id.clone(),
            material,
            enabled: true,
        });
        id
    }

    /// Creates an RSA-2048 key, or a new version of it (what `az keyvault key rotate` does); returns the version.
    pub fn create_rsa_key(&self, name: &str) -> String {
        // aws-lc-rs generates the key (fast even in debug builds); the rsa crate does the OAEP operations.
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        let key = RsaPrivateKey::from_pkcs8_der(der.as_ref()).unwrap();
        self.add_version(name, Material::Rsa(Box::new(key)))
    }

    /// Creates an AES-256 `oct-HSM` key as a Managed HSM holds it, or a new version of it.
    pub fn create_aes_key(&self, name: &str) -> String {
        let mut k = [0u8; 32];
        aws_lc_rs::rand::fill(&mut k).unwrap();
        self.add_version(name, Material::Aes(k))
    }

    /// Enables or disables one version (`None`: every version), as `az keyvault key set-attributes --enabled`.
    pub fn set_enabled(&self, name: &str, version: Option<&str>, enabled: bool) {
        let mut state = self.state.lock().unwrap();
        let key = state.keys.get_mut(&name.to_ascii_lowercase()).unwrap();
        for v in &mut key.versions {
            if version.is_none_or(|id| id == v.id) {
                v.enabled = enabled;
            }
        }
    }

    /// The next `n` requests naming key `name` are answered `429 Throttled`.
    pub fn throttle(&self, name: &str, n: u32) {
        self.state.lock().unwrap().throttle.insert(name.to_ascii_lowercase(), n);
    }

    /// The requests seen so far that name key `name`, as `METHOD path?query auth=yes|no`.
    pub fn requests_for(&self, name: &str) -> Vec<String> {
        let needle = format!("/keys/{}/", name.to_ascii_lowercase());
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.to_ascii_lowercase().contains(&needle))
            .cloned()
            .collect()
    }
}

fn error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    let mut body = json!({"error": {"code": code, "message": message}});
    if let Some(inner) = inner {
        body["error"]["innererror"] = json!({"code": inner});
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn challenge(host: &str, code_message: &str) -> Response {
    let resource = if host.contains(".managedhsm.") {
        "https://managedhsm.azure.net"
    } else {
        "https://vault.azure.net"
    };
    let mut rsp = error(StatusCode::UNAUTHORIZED, "Unauthorized", code_message, None);
    rsp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        format!(
            "Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47\", \
             resource=\"{resource}\""
        )
        .parse()
        .unwrap(),
    );
    rsp
}

fn not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "KeyNotFound",
        &format!(
            "A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be \
             able to recover it using the correct recovery command. For help resolving this issue, please see \
             https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

fn bad_parameter(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BadParameter", message, None)
}

fn handle(state: &Mutex<State>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let auth = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let mut state = state.lock().unwrap();
    state.log.push(format!(
        "{method} {} auth={}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
        if auth.is_some() { "yes" } else { "no" }
    ));

    let api_version = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("api-version="));
    if api_version.is_none() {
        return bad_parameter("The 'api-version' query parameter is missing.");
    }
    match auth.and_then(|a| a.strip_prefix("Bearer ")) {
        None => return challenge(&host, "AKV10000: Request is missing a Bearer or PoP token."),
        Some(GOOD_TOKEN) => {}
        Some(FORBIDDEN_TOKEN) => {
            return error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Caller is not authorized to perform action on resource. If role assignments, deny assignments or \
                 role definitions were changed recently, please observe propagation time.",
                Some("ForbiddenByRbac"),
            );
        }
        Some(_) => return challenge(&host, "AKV10022: Invalid audience."),
    }

    // /keys/{name}/{version}[/{operation}]
    let segments: Vec<&str> = uri.path().split('/').collect();
    let (name, version, op) = match segments.as_slice() {
        ["", "keys", name] => (*name, "", None),
        ["", "keys", name, version] => (*name, *version, None),
        ["", "keys", name, version, op] => (*name, *version, Some(*op)),
        _ => return error(StatusCode::NOT_FOUND, "NotFound", "Not found", None),
    };
    let lower = name.to_ascii_lowercase();
    if let Some(n) = state.throttle.get_mut(&lower).filter(|n| **n > 0) {
        *n -= 1;
        let mut rsp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
            None,
        );
        rsp.headers_mut().insert(header::RETRY_AFTER, "1".parse().unwrap());
        return rsp;
    }
    let Some(key) = state.keys.get(&lower) else {
        return not_found(name);
    };
    let current = key.versions.last().unwrap();
    let v = if version.is_empty() {
        current
    } else {
        match key.versions.iter().find(|v| v.id == version) {
            Some(v) => v,
            None => return not_found(&format!("{name}/{version}")),
        }
    };
    let kid = format!("https://{host}/keys/{}/{}", key.name, v.id);
    let op_name = match (&method, op) {
        (&Method::GET, None) => "get",
        (&Method::POST, Some("wrapkey")) => "wrapKey",
        (&Method::POST, Some("unwrapkey")) => "unwrapKey",
        _ => return error(StatusCode::METHOD_NOT_ALLOWED, "BadRequest", "Method not allowed", None),
    };
    if !v.enabled {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("Operation {op_name} is not allowed on a disabled key."),
            Some("KeyDisabled"),
        );
    }
    if op_name == "get" {
        let mut jwk = json!({
            "kid": kid,
            "key_ops": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
        });
        match &v.material {
            Material::Rsa(k) => {
                jwk["kty"] = json!("RSA");
                jwk["n"] = json!(URL_SAFE_NO_PAD.encode(k.n().to_bytes_be()));
                jwk["e"] = json!(URL_SAFE_NO_PAD.encode(k.e().to_bytes_be()));
            }
            Material::Aes(_) => jwk["kty"] = json!("oct-HSM"),
        }
        return ok(json!({
            "key": jwk,
            "attributes": {
                "enabled": true,
                "created": 1_700_000_000,
                "updated": 1_700_000_000,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90
            }
        }));
    }

    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let Ok(params) = serde_json::from_slice::<Value>(&body) else {
        return bad_parameter("The request body is not valid JSON.");
    };
    if !is_json {
        return bad_parameter("The request content type must be application/json.");
    }
    let alg = params["alg"].as_str().unwrap_or_default();
    let Some(value) = params["value"].as_str().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()) else {
        return bad_parameter("Property 'value' is missing or is not base64url.");
    };
    let result = match (&v.material, alg, op_name) {
        (Material::Rsa(k), "RSA-OAEP-256", "wrapKey") => k
            .to_public_key()
            .encrypt(&mut rsa::rand_core::OsRng, Oaep::new::<rsa::sha2::Sha256>(), &value)
            .ok(),
        (Material::Rsa(k), "RSA-OAEP-256", "unwrapKey") => k.decrypt(Oaep::new::<rsa::sha2::Sha256>(), &value).ok(),
        (Material::Aes(k), "A256KW", "wrapKey") => aes_kw(k, &value, true),
        (Material::Aes(k), "A256KW", "unwrapKey") => aes_kw(k, &value, false),
        _ => return bad_parameter(&format!("Algorithm '{alg}' is not supported by this key.")),
    };
    match result {
        Some(out) => ok(json!({"kid": kid, "value": URL_SAFE_NO_PAD.encode(out)})),
        None => bad_parameter("The parameter is incorrect."),
    }
}

/// RFC 3394 AES key wrap with AES-256.
fn aes_kw(key: &[u8; 32], input: &[u8], wrap: bool) -> Option<Vec<u8>> {
    use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};
    let kek = AesKek::new(&AES_256, key).ok()?;
    let mut out = vec![0u8; input.len() + 8];
    let n = if wrap {
        kek.wrap(input, &mut out).ok()?.len()
    } else {
        kek.unwrap(input, &mut out).ok()?.len()
    };
    out.truncate(n);
    Some(out)
}
