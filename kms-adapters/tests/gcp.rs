//! The Google Cloud KMS adapter against an in-repo **protocol fake** of the Cloud KMS REST API — not Google, and
//! no emulator of it. The fake follows the documented wire shapes of `POST /v1/{name}:encrypt` and
//! `POST /v1/{name}:decrypt` (camelCase JSON, bytes as base64, int64 CRC32C fields as decimal strings, errors as
//! `google.rpc.Status` in `{"error":{"code","message","status"}}`) and does real cryptography: AES-256-GCM per
//! CryptoKeyVersion with the caller's `additionalAuthenticatedData`, and CRC32C checks of what it receives. Its
//! ciphertext format and error messages are its own; what matters here is the protocol the client speaks.
//!
//! Each test starts its own fake on `127.0.0.1:0` and reaches it through the URI's `endpoint=http://…`, which the
//! adapter calls without credentials. Besides the shared conformance suite, the tests cover what a real service
//! does that the suite cannot provoke: disabled and destroyed versions, missing keys, denied permissions,
//! throttling, corruption in transit (CRC32C), and rotation to a new primary version.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde_json::{Map, Value, json};
use sesame_kms::gcp::{GcpKmsKek, GcpOptions};
use sesame_kms::{Argon2Params, Dek, Kek, KekUri, KmsError, OpenOptions, WrapContext, conformance, open_kek};

// ---------------------------------------------------------------------------------------------------------------
// The protocol fake.

/// A fault the fake injects into the next request it serves.
#[derive(Clone, Debug)]
enum Fault {
    /// Answer with this HTTP status and `google.rpc.Status` code name.
    Status(u16, &'static str),
    /// Flip a bit of the returned ciphertext after computing `ciphertextCrc32c` (corruption in transit).
    CorruptCiphertext,
    /// Flip a bit of the returned plaintext after computing `plaintextCrc32c`.
    CorruptPlaintext,
    /// Answer as if `plaintextCrc32c` had not arrived (`verifiedPlaintextCrc32c: false`).
    DropVerifiedPlaintext,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum VersionState {
    Enabled,
    Disabled,
    Destroyed,
}

struct Version {
    state: VersionState,
    key: [u8; 32],
}

struct CryptoKey {
    /// Version N is `versions[N - 1]`.
    versions: Vec<Version>,
    primary: usize,
}

#[derive(Default)]
struct FakeState {
    keys: HashMap<String, CryptoKey>,
    denied: HashSet<String>,
    faults: VecDeque<Fault>,
    requests: usize,
    last_body: Option<Value>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
    endpoint: String,
}

const PROJECT: &str = "projects/sesame-test/locations/global/keyRings/ring";

fn key_name(id: &str) -> String {
    format!("{PROJECT}/cryptoKeys/{id}")
}

impl Fake {
    async fn start() -> Fake {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(serve).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { state, endpoint }
    }

    fn uri(&self, name: &str) -> KekUri {
        format!("gcpkms://{name}?endpoint={}", self.endpoint).parse().unwrap()
    }

    /// Creates a CryptoKey with version 1 primary; returns its name.
    fn create_key(&self, id: &str) -> String {
        let name = key_name(id);
        let key = CryptoKey {
            versions: vec![new_version()],
            primary: 1,
        };
        self.state.lock().unwrap().keys.insert(name.clone(), key);
        name
    }

    /// Adds a version and makes it primary (what `gcloud kms keys versions create --primary` does); returns its name.
    fn rotate(&self, name: &str) -> String {
        let mut st = self.state.lock().unwrap();
        let key = st.keys.get_mut(name).unwrap();
        key.versions.push(new_version());
        key.primary = key.versions.len();
        format!("{name}/cryptoKeyVersions/{}", key.primary)
    }

    fn set_state(&self, name: &str, version: usize, state: VersionState) {
        self.state.lock().unwrap().keys.get_mut(name).unwrap().versions[version - 1].state = state;
    }

    fn deny(&self, name: &str) {
        self.state.lock().unwrap().denied.insert(name.to_owned());
    }

    fn inject(&self, fault: Fault, times: usize) {
        let mut st = self.state.lock().unwrap();
        st.faults.extend(std::iter::repeat_n(fault, times));
    }

    fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    fn last_body(&self) -> Value {
        self.state.lock().unwrap().last_body.clone().unwrap()
    }
}

fn new_version() -> Version {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    Version {
        state: VersionState::Enabled,
        key,
    }
}

/// A `google.rpc.Status` error answer as the Google API front end sends it: `code` is the HTTP status, `status` the
/// canonical code name.
fn status(http: u16, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": http, "message": message.into(), "status": code}});
    (
        StatusCode::from_u16(http).unwrap(),
        [("content-type", "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn crc(bytes: &[u8]) -> String {
    crc32c::crc32c(bytes).to_string()
}

/// An `int64` field in proto3 JSON: a decimal string (numbers are accepted too).
fn int64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn bytes_field(body: &Map<String, Value>, field: &str) -> Result<Vec<u8>, Box<Response>> {
    match body.get(field) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => B64.decode(s).map_err(|_| {
            Box::new(status(
                400,
                "INVALID_ARGUMENT",
                format!("Invalid value at '{field}' (TYPE_BYTES), Base64 decoding failed"),
            ))
        }),
        Some(_) => Err(Box::new(status(
            400,
            "INVALID_ARGUMENT",
            format!("Invalid value at '{field}' (TYPE_BYTES)"),
        ))),
    }
}

/// Checks an optional `*Crc32c` field against its data; `Ok(true)` when it was present and matched.
fn check_crc(body: &Map<String, Value>, field: &str, data: &[u8], data_field: &str) -> Result<bool, Box<Response>> {
    let Some(v) = body.get(field) else { return Ok(false) };
    let Some(n) = int64(v) else {
        return Err(Box::new(status(
            400,
            "INVALID_ARGUMENT",
            format!("Invalid value at '{field}' (TYPE_INT64)"),
        )));
    };
    if n != i64::from(crc32c::crc32c(data)) {
        return Err(Box::new(status(
            400,
            "INVALID_ARGUMENT",
            format!("The checksum in field {field} did not match the data in field {data_field}."),
        )));
    }
    Ok(true)
}

fn inner_aad(key_name: &str, version: u32, aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(key_name.len() as u32).to_be_bytes());
    out.extend_from_slice(key_name.as_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(aad);
    out
}

async fn serve(State(state): State<Arc<Mutex<FakeState>>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let mut st = state.lock().unwrap();
    st.requests += 1;
    let Some((name, verb)) = uri.path().strip_prefix("/v1/").and_then(|p| p.rsplit_once(':')) else {
        return status(
            404,
            "NOT_FOUND",
            format!("The requested URL {} was not found.", uri.path()),
        );
    };
    if method != Method::POST || !matches!(verb, "encrypt" | "decrypt") {
        return status(
            404,
            "NOT_FOUND",
            format!("The requested URL {} was not found.", uri.path()),
        );
    }
    let ints_as_enums = uri.query().is_some_and(|q| q.contains("enum-encoding"));
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    st.last_body = Some(Value::Object(body.clone()));
    let fault = st.faults.pop_front();
    if let Some(Fault::Status(http, code)) = fault {
        let message = match code {
            "RESOURCE_EXHAUSTED" => "Quota exceeded for quota metric 'Cryptographic requests' and limit \
                                     'Cryptographic requests per minute' of service 'cloudkms.googleapis.com'."
                .to_owned(),
            "UNAUTHENTICATED" => "Request had invalid authentication credentials.".to_owned(),
            _ => format!("injected {code}"),
        };
        return status(http, code, message);
    }
    let result = match verb {
        "encrypt" => encrypt(&mut st, name, &body, fault.as_ref(), ints_as_enums),
        _ => decrypt(&mut st, name, &body, fault.as_ref(), ints_as_enums),
    };
    result.unwrap_or_else(|r| *r)
}

fn known_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), Box<Response>> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Box::new(status(
            400,
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."),
        ))),
        None => Ok(()),
    }
}

/// Splits `…/cryptoKeys/K[/cryptoKeyVersions/N]`.
fn split_name(name: &str) -> (String, Option<usize>) {
    match name.split_once("/cryptoKeyVersions/") {
        Some((key, n)) => (key.to_owned(), Some(n.parse().unwrap_or(usize::MAX))),
        None => (name.to_owned(), None),
    }
}

fn lookup<'a>(st: &'a FakeState, key: &str, permission: &str) -> Result<&'a CryptoKey, Box<Response>> {
    if st.denied.contains(key) {
        return Err(Box::new(status(
            403,
            "PERMISSION_DENIED",
            format!("Permission '{permission}' denied on resource '{key}' (or it may not exist)."),
        )));
    }
    st.keys
        .get(key)
        .ok_or_else(|| Box::new(status(404, "NOT_FOUND", format!("{key} not found."))))
}

fn not_enabled(version_name: &str, state: VersionState) -> Option<Box<Response>> {
    let shown = match state {
        VersionState::Enabled => return None,
        VersionState::Disabled => "DISABLED",
        VersionState::Destroyed => "DESTROYED",
    };
    Some(Box::new(status(
        400,
        "FAILED_PRECONDITION",
        format!("{version_name} is not enabled, current state is: {shown}."),
    )))
}

fn protection_level(ints_as_enums: bool) -> Value {
    if ints_as_enums { json!(1) } else { json!("SOFTWARE") }
}

fn encrypt(
    st: &mut FakeState,
    name: &str,
    body: &Map<String, Value>,
    fault: Option<&Fault>,
    ints_as_enums: bool,
) -> Result<Response, Box<Response>> {
    known_fields(
        body,
        &[
            "plaintext",
            "additionalAuthenticatedData",
            "plaintextCrc32c",
            "additionalAuthenticatedDataCrc32c",
        ],
    )?;
    let (key_name, pinned) = split_name(name);
    let key = lookup(st, &key_name, "cloudkms.cryptoKeyVersions.useToEncrypt")?;
    let plaintext = bytes_field(body, "plaintext")?;
    let aad = bytes_field(body, "additionalAuthenticatedData")?;
    if plaintext.is_empty() {
        return Err(Box::new(status(400, "INVALID_ARGUMENT", "plaintext is required.")));
    }
    let verified_plaintext = check_crc(body, "plaintextCrc32c", &plaintext, "plaintext")?;
    let verified_aad = check_crc(
        body,
        "additionalAuthenticatedDataCrc32c",
        &aad,
        "additional_authenticated_data",
    )?;
    let n = pinned.unwrap_or(key.primary);
    let version_name = format!("{key_name}/cryptoKeyVersions/{n}");
    let Some(version) = key.versions.get(n.wrapping_sub(1)) else {
        return Err(Box::new(status(404, "NOT_FOUND", format!("{version_name} not found."))));
    };
    if let Some(e) = not_enabled(&version_name, version.state) {
        return Err(e);
    }
    // Ciphertext: version (u32 BE) || nonce || AES-256-GCM(plaintext) with the AAD bound to key and version.
    let n32 = u32::try_from(n).unwrap();
    let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &version.key).unwrap());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut sealed = plaintext.clone();
    sealing
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(inner_aad(&key_name, n32, &aad)),
            &mut sealed,
        )
        .unwrap();
    let mut ciphertext = n32.to_be_bytes().to_vec();
    ciphertext.extend_from_slice(&nonce);
    ciphertext.extend_from_slice(&sealed);
    let ciphertext_crc = crc(&ciphertext);
    if matches!(fault, Some(Fault::CorruptCiphertext)) {
        let last = ciphertext.len() - 1;
        ciphertext[last] ^= 0x01;
    }
    let verified_plaintext = verified_plaintext && !matches!(fault, Some(Fault::DropVerifiedPlaintext));
    Ok(ok(json!({
        "name": version_name,
        "ciphertext": B64.encode(&ciphertext),
        "ciphertextCrc32c": ciphertext_crc,
        "verifiedPlaintextCrc32c": verified_plaintext,
        "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad,
        "protectionLevel": protection_level(ints_as_enums),
    })))
}

fn decrypt(
    st: &mut FakeState,
    name: &str,
    body: &Map<String, Value>,
    fault: Option<&Fault>,
    ints_as_enums: bool,
) -> Result<Response, Box<Response>> {
    known_fields(
        body,
        &[
            "ciphertext",
            "additionalAuthenticatedData",
            "ciphertextCrc32c",
            "additionalAuthenticatedDataCrc32c",
        ],
    )?;
    let (key_name, version) = split_name(name);
    if version.is_some() {
        return Err(Box::new(status(
            400,
            "INVALID_ARGUMENT",
            "Decrypt takes a CryptoKey name, not a CryptoKeyVersion.",
        )));
    }
    let key = lookup(st, &key_name, "cloudkms.cryptoKeyVersions.useToDecrypt")?;
    let ciphertext = bytes_field(body, "ciphertext")?;
    let aad = bytes_field(body, "additionalAuthenticatedData")?;
    if ciphertext.is_empty() {
        return Err(Box::new(status(400, "INVALID_ARGUMENT", "ciphertext is required.")));
    }
    check_crc(body, "ciphertextCrc32c", &ciphertext, "ciphertext")?;
    check_crc(
        body,
        "additionalAuthenticatedDataCrc32c",
        &aad,
        "additional_authenticated_data",
    )?;
    let invalid = || {
        Box::new(status(
            400,
            "INVALID_ARGUMENT",
            "Decryption failed: verify that 'name' refers to the correct CryptoKey.",
        ))
    };
    if ciphertext.len() < 4 + NONCE_LEN + 16 {
        return Err(invalid());
    }
    let n32 = u32::from_be_bytes(ciphertext[..4].try_into().unwrap());
    let n = n32 as usize;
    let Some(version) = key.versions.get(n.wrapping_sub(1)) else {
        return Err(invalid());
    };
    if let Some(e) = not_enabled(&format!("{key_name}/cryptoKeyVersions/{n}"), version.state) {
        return Err(e);
    }
    let opening = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &version.key).unwrap());
    let nonce = Nonce::try_assume_unique_for_key(&ciphertext[4..4 + NONCE_LEN]).unwrap();
    let mut sealed = ciphertext[4 + NONCE_LEN..].to_vec();
    let Ok(plain) = opening.open_in_place(nonce, Aad::from(inner_aad(&key_name, n32, &aad)), &mut sealed) else {
        return Err(invalid());
    };
    let mut plaintext = plain.to_vec();
    let plaintext_crc = crc(&plaintext);
    if matches!(fault, Some(Fault::CorruptPlaintext)) {
        plaintext[0] ^= 0x01;
    }
    Ok(ok(json!({
        "plaintext": B64.encode(&plaintext),
        "plaintextCrc32c": plaintext_crc,
        "usedPrimary": n == key.primary,
        "protectionLevel": protection_level(ints_as_enums),
    })))
}

// ---------------------------------------------------------------------------------------------------------------
// The tests.

fn opts() -> OpenOptions {
    OpenOptions {
        data_dir: std::env::temp_dir(),
        create_if_missing: false,
        passphrase: None,
        argon2: Argon2Params::default(),
        pkcs11_pin: None,
    }
}

/// Short backoff so retry tests take milliseconds; the deadline stays generous.
fn fast() -> GcpOptions {
    GcpOptions {
        deadline: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
    }
}

async fn kek(fake: &Fake, name: &str) -> GcpKmsKek {
    GcpKmsKek::open_with(&fake.uri(name), &fast()).await.unwrap()
}

fn ctx(id: &str) -> WrapContext {
    WrapContext::new().with("dek", id).with("scope", "stack:org:p/s")
}

fn is_crc_failure(e: &KmsError) -> bool {
    matches!(e, KmsError::Unavailable { detail, .. } if detail.contains("CRC32C")) && e.is_retryable()
}

#[tokio::test]
async fn the_fake_passes_the_suite_through_open_kek() {
    let fake = Fake::start().await;
    let (a, b) = (fake.create_key("a"), fake.create_key("b"));
    // Through open_kek, as `sesame kek add gcpkms://…` does, with the production retry settings.
    let kek = open_kek(&fake.uri(&a), &opts()).await.unwrap();
    let other = open_kek(&fake.uri(&b), &opts()).await.unwrap();
    conformance::run_all(kek.as_ref(), other.as_ref()).await;
}

#[tokio::test]
async fn the_wire_carries_the_canonical_context_and_checksums() {
    let fake = Fake::start().await;
    let name = fake.create_key("wire");
    let kek = kek(&fake, &name).await;
    let (dek, c) = (Dek::generate(), ctx("d1"));
    let wrapped = kek.wrap(&dek, &c).await.unwrap();
    let sent = fake.last_body();
    let aad = c.encode();
    assert_eq!(sent["additionalAuthenticatedData"], json!(B64.encode(&aad)));
    assert_eq!(sent["additionalAuthenticatedDataCrc32c"], json!(crc(&aad)));
    assert_eq!(sent["plaintextCrc32c"], json!(crc(dek.as_bytes())));
    assert_eq!(wrapped.kek_version, format!("{name}/cryptoKeyVersions/1"));
    kek.unwrap(&wrapped, &c).await.unwrap();
    let sent = fake.last_body();
    assert_eq!(sent["ciphertextCrc32c"], json!(crc(&wrapped.ciphertext)));
    assert_eq!(sent["additionalAuthenticatedData"], json!(B64.encode(&aad)));
}

#[tokio::test]
async fn a_disabled_or_destroyed_version_is_reported_as_disabled() {
    let fake = Fake::start().await;
    let name = fake.create_key("disabled");
    let kek = kek(&fake, &name).await;
    let (dek, c) = (Dek::generate(), ctx("d1"));
    let wrapped = kek.wrap(&dek, &c).await.unwrap();
    for state in [VersionState::Disabled, VersionState::Destroyed] {
        fake.set_state(&name, 1, state);
        let err = kek.unwrap(&wrapped, &c).await.unwrap_err();
        assert!(matches!(err, KmsError::Disabled { .. }), "{state:?}: {err}");
        assert!(!err.is_retryable());
        let err = kek.wrap(&dek, &c).await.unwrap_err();
        assert!(matches!(err, KmsError::Disabled { .. }), "{state:?}: {err}");
    }
    fake.set_state(&name, 1, VersionState::Enabled);
    assert_eq!(kek.unwrap(&wrapped, &c).await.unwrap().as_bytes(), dek.as_bytes());
}

#[tokio::test]
async fn a_missing_key_is_not_found() {
    let fake = Fake::start().await;
    let name = key_name("never-created");
    // Opening makes no call (an encrypter/decrypter may not read key metadata); the first use finds out.
    let kek = open_kek(&fake.uri(&name), &opts()).await.unwrap();
    let err = kek.wrap(&Dek::generate(), &ctx("d1")).await.unwrap_err();
    assert!(matches!(err, KmsError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&name), "{err}");
}

#[tokio::test]
async fn denied_and_unauthenticated_calls_are_permission_errors() {
    let fake = Fake::start().await;
    let name = fake.create_key("denied");
    let kek = kek(&fake, &name).await;
    let (dek, c) = (Dek::generate(), ctx("d1"));
    let wrapped = kek.wrap(&dek, &c).await.unwrap();

    fake.inject(Fault::Status(401, "UNAUTHENTICATED"), 1);
    let err = kek.wrap(&dek, &c).await.unwrap_err();
    assert!(matches!(err, KmsError::PermissionDenied { .. }), "{err}");

    fake.deny(&name);
    let before = fake.requests();
    let err = kek.unwrap(&wrapped, &c).await.unwrap_err();
    assert!(matches!(err, KmsError::PermissionDenied { .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(fake.requests(), before + 1, "a permission error is not retried");
    let err = kek.wrap(&dek, &c).await.unwrap_err();
    assert!(matches!(err, KmsError::PermissionDenied { .. }), "{err}");
}

#[tokio::test]
async fn throttling_and_unavailability_are_retried_with_backoff() {
    let fake = Fake::start().await;
    let name = fake.create_key("busy");
    let (dek, c) = (Dek::generate(), ctx("d1"));

    // With the production settings (open_kek): two 429s, then success.
    let kek = open_kek(&fake.uri(&name), &opts()).await.unwrap();
    fake.inject(Fault::Status(429, "RESOURCE_EXHAUSTED"), 2);
    let before = fake.requests();
    let wrapped = kek.wrap(&dek, &c).await.unwrap();
    assert_eq!(fake.requests(), before + 3);

    // A 503 on Decrypt, then success.
    fake.inject(Fault::Status(503, "UNAVAILABLE"), 1);
    assert_eq!(kek.unwrap(&wrapped, &c).await.unwrap().as_bytes(), dek.as_bytes());

    // Throttled past the deadline: a retryable error in about the deadline — Throttled when the last answer was a
    // 429, Unavailable when the deadline cut an attempt short (which of the two depends on timing).
    let short = GcpOptions {
        deadline: Duration::from_millis(500),
        ..fast()
    };
    let kek = GcpKmsKek::open_with(&fake.uri(&name), &short).await.unwrap();
    fake.inject(Fault::Status(429, "RESOURCE_EXHAUSTED"), 10_000);
    let started = Instant::now();
    let err = kek.wrap(&dek, &c).await.unwrap_err();
    assert!(
        matches!(err, KmsError::Throttled { .. } | KmsError::Unavailable { .. }) && err.is_retryable(),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(fake.requests() > before + 5, "the adapter retried");
}

#[tokio::test]
async fn crc32c_mismatches_are_detected() {
    let fake = Fake::start().await;
    let name = fake.create_key("crc");
    let kek = kek(&fake, &name).await;
    let (dek, c) = (Dek::generate(), ctx("d1"));

    fake.inject(Fault::CorruptCiphertext, 1);
    let err = kek.wrap(&dek, &c).await.unwrap_err();
    assert!(is_crc_failure(&err), "{err}");

    fake.inject(Fault::DropVerifiedPlaintext, 1);
    let err = kek.wrap(&dek, &c).await.unwrap_err();
    assert!(is_crc_failure(&err), "{err}");

    let wrapped = kek.wrap(&dek, &c).await.unwrap();
    fake.inject(Fault::CorruptPlaintext, 1);
    let err = kek.unwrap(&wrapped, &c).await.unwrap_err();
    assert!(is_crc_failure(&err), "{err}");
    assert!(!format!("{err:?}").contains(&B64.encode(dek.as_bytes())));

    // Without a fault, the same wrap unwraps.
    assert_eq!(kek.unwrap(&wrapped, &c).await.unwrap().as_bytes(), dek.as_bytes());
}

#[tokio::test]
async fn old_wraps_unwrap_after_rotation_and_record_their_version() {
    let fake = Fake::start().await;
    let name = fake.create_key("rotating");
    let kek = kek(&fake, &name).await;
    let (dek, c) = (Dek::generate(), ctx("d1"));
    let old = kek.wrap(&dek, &c).await.unwrap();
    assert_eq!(old.kek_version, format!("{name}/cryptoKeyVersions/1"));

    let v2 = fake.rotate(&name);
    let new = kek.wrap(&dek, &c).await.unwrap();
    assert_eq!(new.kek_version, v2);
    for w in [&old, &new] {
        assert_eq!(kek.unwrap(w, &c).await.unwrap().as_bytes(), dek.as_bytes());
    }

    // A URI naming a version pins new wraps to it, and still unwraps the key's other versions.
    let pinned = GcpKmsKek::open_with(&fake.uri(&format!("{name}/cryptoKeyVersions/1")), &fast())
        .await
        .unwrap();
    let w = pinned.wrap(&dek, &c).await.unwrap();
    assert_eq!(w.kek_version, old.kek_version);
    assert_eq!(pinned.unwrap(&new, &c).await.unwrap().as_bytes(), dek.as_bytes());

    // Disabling the old version leaves new wraps working and old ones refused as disabled.
    fake.set_state(&name, 1, VersionState::Disabled);
    assert!(matches!(kek.unwrap(&old, &c).await, Err(KmsError::Disabled { .. })));
    assert_eq!(kek.unwrap(&new, &c).await.unwrap().as_bytes(), dek.as_bytes());

    // A wrap recorded under another key is refused before any call.
    let mut foreign = new.clone();
    foreign.kek_version = format!("{}/cryptoKeyVersions/2", key_name("other"));
    let before = fake.requests();
    assert!(matches!(
        kek.unwrap(&foreign, &c).await,
        Err(KmsError::KeyMismatch { .. })
    ));
    assert_eq!(fake.requests(), before);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    // A port that was free a moment ago: connection refused, retried until the deadline, then Unavailable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let u: KekUri = format!("gcpkms://{}?endpoint=http://127.0.0.1:{port}", key_name("k"))
        .parse()
        .unwrap();
    let short = GcpOptions {
        deadline: Duration::from_millis(300),
        ..fast()
    };
    let kek = GcpKmsKek::open_with(&u, &short).await.unwrap();
    let err = kek.wrap(&Dek::generate(), &ctx("d")).await.unwrap_err();
    assert!(
        matches!(err, KmsError::Unavailable { .. }) && err.is_retryable(),
        "{err}"
    );
    assert!(format!("{kek:?}").contains("GcpKmsKek"));
}
