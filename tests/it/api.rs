//! The HTTP API on a real listener: the stack secrets provider contract, authentication, bad input, restarts and
//! the start-up refusals that protect existing data.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::{PgDb, TestServer, config, key_file, temp_dir};

const STACK: &str = "/api/stacks/acme/web/prod";

fn b64(s: &[u8]) -> String {
    STANDARD.encode(s)
}

async fn encrypt(srv: &TestServer, stack: &str, plaintext: &[u8]) -> String {
    let (status, body) = srv
        .post(&format!("{stack}/encrypt"), &json!({ "plaintext": b64(plaintext) }))
        .await;
    assert_eq!(status, 200, "{body}");
    body["ciphertext"].as_str().expect("ciphertext").to_owned()
}

async fn decrypt(srv: &TestServer, stack: &str, ciphertext: &str) -> (u16, Value) {
    srv.post(&format!("{stack}/decrypt"), &json!({ "ciphertext": ciphertext }))
        .await
}

fn assert_esc_error(status: u16, body: &Value, want: u16) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"].as_u64(), Some(u64::from(want)), "ESC error shape: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// Encrypt/decrypt round trips on one server, including empty and binary values and the Bearer header.
async fn round_trips(srv: &TestServer) {
    for plaintext in [&b""[..], b"hunter2", &[0u8, 255, 1, 128], &vec![7u8; 64 * 1024]] {
        let ct = encrypt(srv, STACK, plaintext).await;
        let (status, body) = decrypt(srv, STACK, &ct).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["plaintext"], json!(b64(plaintext)));
    }
    let ct = encrypt(srv, STACK, b"bearer").await;
    let resp = srv
        .http
        .post(format!("{}{STACK}/decrypt", srv.base))
        .header("Authorization", format!("Bearer {}", srv.token))
        .json(&json!({ "ciphertext": ct }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn stack_secrets_round_trip_on_sqlite() {
    crate::support::on_sqlite(round_trips).await;
}

#[tokio::test]
async fn stack_secrets_round_trip_and_replicas_on_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = temp_dir();
    let srv = TestServer::start(config(dir.path(), Some(&db.url)), None)
        .await
        .unwrap();
    round_trips(&srv).await;
    let ct = encrypt(&srv, STACK, b"shared").await;

    // A second replica with the same key file (copied data folder) serves the same store.
    let replica_dir = temp_dir();
    std::fs::copy(key_file(dir.path()), key_file(replica_dir.path())).unwrap();
    let replica = TestServer::start(config(replica_dir.path(), Some(&db.url)), Some(srv.token.clone()))
        .await
        .unwrap();
    assert!(
        replica.server.new_admin_token.is_none(),
        "a replica must not bootstrap again"
    );
    let (status, body) = decrypt(&replica, STACK, &ct).await;
    assert_eq!((status, body["plaintext"].clone()), (200, json!(b64(b"shared"))));
    replica.stop().await;

    // A replica started with a fresh data folder has no key file: it must refuse, and create none.
    let fresh = temp_dir();
    let err = TestServer::start(config(fresh.path(), Some(&db.url)), None)
        .await
        .err()
        .expect("a fresh data folder over an existing store must be refused");
    let msg = err.to_string();
    assert!(msg.contains("never creates a new key"), "{msg}");
    assert!(
        !key_file(fresh.path()).exists(),
        "no key file may be created over an existing store"
    );

    srv.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn batch_encrypt_keeps_order_and_batch_decrypt_maps_each_ciphertext() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let values: Vec<String> = (0..50).map(|i| format!("value-{i}")).collect();
    let (status, body) = srv
        .post(
            &format!("{STACK}/batch-encrypt"),
            &json!({ "plaintexts": values.iter().map(|v| b64(v.as_bytes())).collect::<Vec<_>>() }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cts: Vec<String> = serde_json::from_value(body["ciphertexts"].clone()).unwrap();
    assert_eq!(cts.len(), values.len());
    // Each batch ciphertext decrypts singly to the value at the same index.
    for (ct, v) in cts.iter().zip(&values).step_by(7) {
        let (_, body) = decrypt(&srv, STACK, ct).await;
        assert_eq!(body["plaintext"], json!(b64(v.as_bytes())));
    }
    let (status, body) = srv
        .post(&format!("{STACK}/batch-decrypt"), &json!({ "ciphertexts": cts }))
        .await;
    assert_eq!(status, 200, "{body}");
    let map = body["plaintexts"].as_object().unwrap();
    assert_eq!(map.len(), values.len());
    for (ct, v) in cts.iter().zip(&values) {
        assert_eq!(map[ct], json!(b64(v.as_bytes())));
    }
    // One bad ciphertext fails the whole batch.
    let mut bad = cts.clone();
    bad.push(b64(b"not an envelope"));
    let (status, body) = srv
        .post(&format!("{STACK}/batch-decrypt"), &json!({ "ciphertexts": bad }))
        .await;
    assert_esc_error(status, &body, 400);
    srv.stop().await;
}

#[tokio::test]
async fn ciphertexts_are_bound_to_their_stack_and_resist_tampering() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let ct = encrypt(&srv, STACK, b"prod-only").await;
    // Another stack, another project: refused, even though the same server holds both DEKs.
    let other = "/api/stacks/acme/web/staging";
    encrypt(&srv, other, b"make the other DEK exist").await;
    for stack in [other, "/api/stacks/acme/api/prod"] {
        let (status, body) = decrypt(&srv, stack, &ct).await;
        assert_esc_error(status, &body, 400);
        assert!(!body.to_string().contains(&b64(b"prod-only")));
    }
    // Every single-byte change anywhere in the envelope is refused.
    let raw = STANDARD.decode(&ct).unwrap();
    for i in (0..raw.len()).step_by(3) {
        let mut t = raw.clone();
        t[i] ^= 0x01;
        let (status, body) = decrypt(&srv, STACK, &b64(&t)).await;
        assert_esc_error(status, &body, 400);
    }
    // Truncations too.
    for n in [0, 1, 17, raw.len() - 1] {
        let (status, body) = decrypt(&srv, STACK, &b64(&raw[..n])).await;
        assert_esc_error(status, &body, 400);
    }
    srv.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_esc_error_that_echoes_nothing() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let url = format!("{}{STACK}/encrypt", srv.base);
    let auth = format!("token {}", srv.token);

    // Malformed JSON, wrong fields, wrong types, bad base64.
    for (body, needle) in [
        ("{not json", "valid JSON"),
        (r#"{"plain": "aGk="}"#, "expected fields"),
        (r#"{"plaintext": 42}"#, "expected fields"),
        (r#"{"plaintext": "s3cr3t-in-the-wrong-place!!"}"#, "base64"),
    ] {
        let resp = srv
            .http
            .post(&url)
            .header("Authorization", &auth)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_esc_error(status, &v, 400);
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
        assert!(!v.to_string().contains("s3cr3t"), "error echoed input: {v}");
    }

    // Oversized body: 413.
    let big = json!({ "plaintext": "A".repeat(2 * 1024 * 1024) });
    let (status, body) = srv.post(&format!("{STACK}/encrypt"), &big).await;
    assert_esc_error(status, &body, 413);

    // Invalid names: 400; unknown org: 404.
    let (status, body) = srv
        .post("/api/stacks/acme/bad:name/prod/encrypt", &json!({"plaintext": ""}))
        .await;
    assert_esc_error(status, &body, 400);
    let (status, body) = srv
        .post("/api/stacks/nobody/web/prod/encrypt", &json!({"plaintext": ""}))
        .await;
    assert_esc_error(status, &body, 404);

    // Unknown route and wrong method keep the ESC shape.
    let (status, body) = srv.post("/api/nothing-here", &json!({})).await;
    assert_esc_error(status, &body, 404);
    let resp = srv.http.get(&url).send().await.unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_esc_error(status, &v, 405);
    srv.stop().await;
}

/// A JSON string with every character written as a `\uXXXX` escape.
fn all_escaped(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        out.push_str(&format!("\\u{:04x}", u32::from(c)));
    }
    out.push('"');
    out
}

/// Values are read in place from the body when their JSON string has no escapes, and unescaped otherwise: every
/// form of the same string is the same value, either way.
#[tokio::test]
async fn plaintexts_and_ciphertexts_read_the_same_in_every_json_string_form() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let auth = format!("token {}", srv.token);
    let send = |path: &'static str, body: Vec<u8>| {
        srv.http
            .post(format!("{}{STACK}/{path}", srv.base))
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    // `?>?` encodes to `Pz4/`: a `/` that JSON may write as `\/`.
    let plaintext = b"?>? a secret with a slash";
    let text = b64(plaintext);
    assert!(text.contains('/'));
    let forms = [
        format!("\"{text}\""),
        format!("\"{}\"", text.replace('/', "\\/")),
        all_escaped(&text),
    ];
    let mut ciphertexts = Vec::new();
    for form in &forms {
        let resp = send("encrypt", format!("{{\"plaintext\": {form}}}").into())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{form}");
        let v: Value = resp.json().await.unwrap();
        ciphertexts.push(v["ciphertext"].as_str().unwrap().to_owned());
    }
    for ct in &ciphertexts {
        for form in [
            format!("\"{ct}\""),
            format!("\"{}\"", ct.replace('/', "\\/")),
            all_escaped(ct),
        ] {
            let resp = send("decrypt", format!("{{\"ciphertext\": {form}}}").into())
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(STANDARD.decode(v["plaintext"].as_str().unwrap()).unwrap(), plaintext);
        }
    }
    // Not a string, an extra field, bytes that are not UTF-8 inside the string, an escaped lone surrogate, a raw
    // newline inside the string: 400 in either call, and nothing of the value is echoed.
    let mut not_utf8 = format!("{{\"plaintext\": \"{text}").into_bytes();
    not_utf8.extend_from_slice(b"\xff\xfe\"}");
    for (path, body) in [
        ("encrypt", format!("{{\"plaintext\": [\"{text}\"]}}").into_bytes()),
        (
            "decrypt",
            format!("{{\"ciphertext\": {{\"v\": \"{}\"}}}}", ciphertexts[0]).into_bytes(),
        ),
        (
            "encrypt",
            format!("{{\"plaintext\": \"{text}\", \"extra\": 1}}").into_bytes(),
        ),
        ("encrypt", not_utf8),
        ("encrypt", format!("{{\"plaintext\": \"{text}\\ud800\"}}").into_bytes()),
        (
            "decrypt",
            format!("{{\"ciphertext\": \"{}\n\"}}", ciphertexts[0]).into_bytes(),
        ),
    ] {
        let resp = send(path, body).await.unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_esc_error(status, &v, 400);
        assert!(!v.to_string().contains(&text), "{v}");
    }
    srv.stop().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_bounded() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let auth = format!("token {}", srv.token);
    let send = |path: String, body: Vec<u8>| {
        srv.http
            .post(format!("{}{path}", srv.base))
            .header("Authorization", auth.clone())
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body(body)
            .send()
    };
    let body = json!({ "plaintexts": [b64(b"one"), b64(b"two")] }).to_string();
    let resp = send(format!("{STACK}/batch-encrypt"), gzip(body.as_bytes()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let first = v["ciphertexts"][0].as_str().unwrap().to_owned();
    let (_, body) = decrypt(&srv, STACK, &first).await;
    assert_eq!(body["plaintext"], json!(b64(b"one")));

    // Not gzip at all, and a truncated stream: 400.
    for bad in [b"plain text".to_vec(), gzip(body.to_string().as_bytes())[..12].to_vec()] {
        let resp = send(format!("{STACK}/encrypt"), bad).await.unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_esc_error(status, &v, 400);
    }
    // A small gzip that inflates past the limit (a "bomb") is stopped at the limit: 413.
    let bomb = format!(r#"{{"plaintext": "{}"}}"#, "A".repeat(4 * 1024 * 1024));
    let compressed = gzip(bomb.as_bytes());
    assert!(compressed.len() < 64 * 1024);
    let resp = send(format!("{STACK}/encrypt"), compressed).await.unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_esc_error(status, &v, 413);
    srv.stop().await;
}

#[tokio::test]
async fn missing_malformed_and_wrong_tokens_are_refused() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let body = json!({ "plaintext": b64(b"x") });
    let path = format!("{STACK}/encrypt");
    let wrong = format!("sesame_{}", "A".repeat(43));
    for token in [None, Some("garbage"), Some(wrong.as_str())] {
        let (status, v) = srv.post_as(&path, &body, token).await;
        assert_esc_error(status, &v, 401);
    }
    let resp = srv
        .http
        .post(format!("{}{path}", srv.base))
        .header("Authorization", format!("Basic {}", srv.token))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    srv.stop().await;
}

#[tokio::test]
async fn restart_decrypts_old_ciphertexts_and_a_warm_cache_makes_no_kms_call() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    assert!(srv.server.new_admin_token.is_some());
    let token_file = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    assert_eq!(token_file.trim(), srv.token);
    assert!(srv.token.starts_with("sesame_") && srv.token.len() >= 39);
    assert!(srv.token["sesame_".len()..].bytes().all(|b| b.is_ascii_alphanumeric()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [dir.path().join("admin.token"), key_file(dir.path())] {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }
    let ct = encrypt(&srv, STACK, b"survives restarts").await;
    let token = srv.token.clone();
    srv.stop().await;

    let srv = TestServer::start(config(dir.path(), None), Some(token)).await.unwrap();
    assert!(
        srv.server.new_admin_token.is_none(),
        "the token is shown on the first start only"
    );
    let (status, body) = decrypt(&srv, STACK, &ct).await;
    assert_eq!(
        (status, body["plaintext"].clone()),
        (200, json!(b64(b"survives restarts")))
    );
    // The DEK is now cached: many more requests make no KMS unwrap.
    let before = srv.metric("sesame_kms_unwrap_total").await;
    for _ in 0..20 {
        let (status, _) = decrypt(&srv, STACK, &ct).await;
        assert_eq!(status, 200);
        encrypt(&srv, STACK, b"more").await;
    }
    assert_eq!(srv.metric("sesame_kms_unwrap_total").await, before);
    srv.stop().await;
}

#[tokio::test]
async fn a_replaced_or_missing_key_file_stops_the_start() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    encrypt(&srv, STACK, b"x").await;
    srv.stop().await;
    let key = key_file(dir.path());
    let original = std::fs::read(&key).unwrap();

    // Missing: refused, and no new key is made.
    std::fs::remove_file(&key).unwrap();
    let err = TestServer::start(config(dir.path(), None), None)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("never creates a new key"), "{err}");
    assert!(!key.exists());

    // Replaced by another key (from another instance): refused, naming the mismatch.
    let other = temp_dir();
    TestServer::start(config(other.path(), None), None)
        .await
        .unwrap()
        .stop()
        .await;
    std::fs::copy(key_file(other.path()), &key).unwrap();
    let err = TestServer::start(config(dir.path(), None), None)
        .await
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains("cannot unwrap"), "{msg}");
    assert!(
        !msg.contains(&STANDARD.encode(&original)),
        "error must not carry key material"
    );

    // The original key brings it back.
    std::fs::write(&key, &original).unwrap();
    TestServer::sqlite(dir.path()).await.stop().await;
}

#[tokio::test]
async fn concurrent_first_use_of_a_stack_makes_one_dek() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let stack = "/api/stacks/acme/race/new";
    // The start made the system and audit-signing DEKs; only the stack's DEK comes after.
    let before = srv.metric("sesame_deks_created_total").await;
    let cts = futures_join(&srv, stack).await;
    for (i, ct) in cts.iter().enumerate() {
        let (status, body) = decrypt(&srv, stack, ct).await;
        assert_eq!(
            (status, body["plaintext"].clone()),
            (200, json!(b64(format!("v{i}").as_bytes())))
        );
    }
    assert_eq!(srv.metric("sesame_deks_created_total").await - before, 1);
    srv.stop().await;
}

async fn futures_join(srv: &TestServer, stack: &str) -> Vec<String> {
    let mut tasks = Vec::new();
    for i in 0..32 {
        let http = srv.http.clone();
        let url = format!("{}{stack}/encrypt", srv.base);
        let auth = format!("token {}", srv.token);
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .header("Authorization", auth)
                .json(&json!({ "plaintext": b64(format!("v{i}").as_bytes()) }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            v["ciphertext"].as_str().unwrap().to_owned()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused_and_tls_serves() {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let err = sesame::server::start(cfg.clone())
        .await
        .err()
        .expect("plain HTTP off loopback must be refused");
    assert!(err.to_string().contains("--tls-cert"), "{err}");

    // With a certificate, the same address serves HTTPS.
    let cert = crate::support::SelfSigned::install(dir.path(), &mut cfg);
    let server = sesame::server::start(cfg).await.unwrap();
    let port = server.local_addr().port();
    let client = cert.client(([127, 0, 0, 1], port).into());
    let resp = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    // Plain HTTP to the TLS port does not get an answer as HTTP.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let resp = srv.http.get(format!("{}{path}", srv.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-request-id"));
        assert_eq!(resp.text().await.unwrap(), want);
    }
    srv.stop().await;
}

/// Every answer — routed, unrouted, refused by a layer, stack calls — carries a request id: the client's own when it
/// sent one, else a fresh random UUID (version 4, variant 1), never the same twice.
#[tokio::test]
async fn every_answer_carries_a_request_id_fresh_or_the_clients_own() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let auth = format!("token {}", srv.token);
    let mut seen = std::collections::HashSet::new();
    for (method, path, want) in [
        ("GET", "/healthz".to_owned(), 200),
        ("GET", "/api/nothing-here".to_owned(), 404),
        ("GET", "/api/esc/environments/acme%00".to_owned(), 400),
        ("PUT", format!("{STACK}/encrypt"), 405),
        ("POST", format!("{STACK}/encrypt"), 200),
    ] {
        for _ in 0..3 {
            let resp = srv
                .http
                .request(method.parse().unwrap(), format!("{}{path}", srv.base))
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .body(json!({ "plaintext": b64(b"hunter2") }).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), want, "{method} {path}");
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
            let uuid = uuid::Uuid::parse_str(&id).unwrap_or_else(|_| panic!("{method} {path}: {id} is no UUID"));
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(id, uuid.hyphenated().to_string(), "lower-case, hyphenated");
            assert!(seen.insert(id.clone()), "{id} was given twice");
        }
    }
    let resp = srv
        .http
        .get(format!("{}/api/nothing-here", srv.base))
        .header("X-Request-Id", "trace-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"], "trace-4711");
    srv.stop().await;
}

#[test]
fn server_configuration_debug_redacts_secrets() {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), Some("postgres://app:hunter2@db/sesame"));
    cfg.instance.passphrase = Some(zeroize::Zeroizing::new("correct horse battery".into()));
    cfg.instance.pkcs11_pin = Some(zeroize::Zeroizing::new("918273".into()));
    let shown = format!("{cfg:?}");
    for secret in ["hunter2", "correct horse", "918273"] {
        assert!(!shown.contains(secret), "{secret} leaked into Debug: {shown}");
    }
}

/// Asserts the headers every answer carries; `what` names the answer in failures.
fn assert_safe_headers(headers: &reqwest::header::HeaderMap, what: &str) {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}: {headers:?}");
    assert_eq!(get("cache-control"), "no-store", "{what}: {headers:?}");
    assert!(
        !headers.contains_key("strict-transport-security"),
        "{what}: no HSTS over plain HTTP"
    );
}

#[tokio::test]
async fn every_answer_says_nosniff_and_no_store_including_secrets_and_errors() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let auth = format!("token {}", srv.token);
    let send = |method: &str, path: &str, body: Option<String>| {
        let mut req = srv
            .http
            .request(method.parse().unwrap(), format!("{}{path}", srv.base))
            .header("Authorization", auth.clone());
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        req.send()
    };
    // Plain 200s.
    for path in ["/healthz", "/readyz", "/metrics", "/api/esc/environments", "/api/user"] {
        let resp = send("GET", path, None).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_safe_headers(resp.headers(), path);
    }
    // Secret-bearing answers: stack decrypt and batch-decrypt, environment decrypt, an open session, a new token.
    let ct = encrypt(&srv, STACK, b"hunter2").await;
    let resp = send(
        "POST",
        &format!("{STACK}/decrypt"),
        Some(json!({ "ciphertext": ct }).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_safe_headers(resp.headers(), "stack decrypt");
    let resp = send(
        "POST",
        &format!("{STACK}/batch-decrypt"),
        Some(json!({ "ciphertexts": [ct] }).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_safe_headers(resp.headers(), "stack batch-decrypt");
    let envs = "/api/esc/environments/acme";
    let resp = send(
        "POST",
        envs,
        Some(json!({"project": "app", "name": "prod"}).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = send(
        "PATCH",
        &format!("{envs}/app/prod"),
        Some("values:\n  pw:\n    fn::secret: hunter2\n".into()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = send("GET", &format!("{envs}/app/prod/decrypt"), None).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_safe_headers(resp.headers(), "environment decrypt");
    assert!(resp.text().await.unwrap().contains("hunter2"));
    let resp = send("GET", &format!("{envs}/app/prod"), None).await.unwrap();
    assert_safe_headers(resp.headers(), "definition");
    let resp = send("POST", &format!("{envs}/app/prod/open?duration=1h"), None)
        .await
        .unwrap();
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for query in ["", "?property=pw"] {
        let resp = send("GET", &format!("{envs}/app/prod/open/{id}{query}"), None)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{query}");
        assert_safe_headers(resp.headers(), "open session read");
        assert!(resp.text().await.unwrap().contains("hunter2"));
    }
    let resp = send(
        "POST",
        "/api/sesame/v1/tokens",
        Some(json!({"kind": "personal", "description": "t"}).to_string()),
    )
    .await
    .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_safe_headers(resp.headers(), "token creation");
    // Errors: from a handler, from the auth extractor, from the router.
    for (method, path, want) in [
        ("GET", "/api/esc/environments/acme/app/nope", 404),
        ("GET", "/api/nothing-here", 404),
        ("DELETE", "/healthz", 405),
    ] {
        let resp = send(method, path, None).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path}");
        assert_safe_headers(resp.headers(), path);
    }
    let resp = srv.http.get(format!("{}/api/user", srv.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_safe_headers(resp.headers(), "401");
    srv.stop().await;
}

/// Status, content type and JSON body of an answer.
async fn answer(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ct, body)
}

#[tokio::test]
async fn errors_made_outside_handlers_keep_the_esc_shape() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let auth = format!("token {}", srv.token);
    let envs = "/api/esc/environments/acme";
    let (status, body) = srv.post(envs, &json!({"project": "app", "name": "prod"})).await;
    assert_eq!(status, 200, "{body}");
    let url = |path: &str| format!("{}{path}", srv.base);
    let secret = "s3cr3t-in-the-query";
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        // Larger than the 1 MiB limit, to a handler reading raw bytes (PATCH) and to a JSON one.
        (
            "oversized PATCH",
            srv.http
                .patch(url(&format!("{envs}/app/prod")))
                .body(format!("values:\n  a: {}\n", "x".repeat(2 << 20))),
            413,
        ),
        (
            "oversized yaml/check",
            srv.http
                .post(url(&format!("{envs}/yaml/check")))
                .body("x".repeat(2 << 20)),
            413,
        ),
        // A content encoding the server does not speak.
        (
            "unsupported Content-Encoding",
            srv.http
                .post(url(&format!("{STACK}/encrypt")))
                .header("Content-Encoding", "br")
                .header("Content-Type", "application/json")
                .body(r#"{"plaintext": ""}"#),
            415,
        ),
        (
            "malformed JSON",
            srv.http
                .post(url(&format!("{STACK}/encrypt")))
                .header("Content-Type", "application/json")
                .body("{nope"),
            400,
        ),
        (
            "bad query",
            srv.http.get(url(&format!("{envs}/app/prod/versions?before={secret}"))),
            400,
        ),
        (
            "bad path (not UTF-8)",
            srv.http
                .post(url("/api/stacks/acme/%FF%FE/prod/encrypt"))
                .json(&json!({"plaintext": ""})),
            400,
        ),
        (
            "unknown route",
            srv.http.get(url("/api/esc/nothing/here/at/all/x/y")),
            404,
        ),
        ("wrong method", srv.http.put(url(&format!("{STACK}/encrypt"))), 405),
        ("wrong method on ops", srv.http.post(url("/readyz")), 405),
    ];
    for (what, req, want) in cases {
        let (status, ct, body) = answer(req.header("Authorization", &auth).send().await.unwrap()).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            ct.starts_with("application/json"),
            "{what}: content-type {ct:?}, body {body}"
        );
        assert_esc_error(status, &body, want);
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(2),
            "{what}: only code and message: {body}"
        );
        assert!(
            !body.to_string().contains(secret),
            "{what}: the error echoes the request: {body}"
        );
    }
    // The wrong method keeps its Allow header.
    let resp = srv
        .http
        .put(url(&format!("{STACK}/encrypt")))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("allow").is_some(), "{:?}", resp.headers());
    // Nothing was written by the refused PATCH.
    let resp = srv
        .http
        .get(url(&format!("{envs}/app/prod")))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["pulumi-esc-revision"], "1");
    srv.stop().await;
}

#[tokio::test]
async fn hsts_is_sent_under_tls_only() {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    let cert = crate::support::SelfSigned::install(dir.path(), &mut cfg);
    let server = sesame::server::start(cfg).await.unwrap();
    let port = server.local_addr().port();
    let client = cert.client(([127, 0, 0, 1], port).into());
    for path in ["/healthz", "/api/user", "/api/nothing-here"] {
        let resp = client
            .get(format!("https://localhost:{port}{path}"))
            .send()
            .await
            .unwrap();
        let hsts = resp
            .headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(hsts.as_deref(), Some("max-age=31536000"), "{path}");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let dir = temp_dir();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "prom-scrape-7f3a\n").unwrap();
    let mut cfg = config(dir.path(), None);
    cfg.metrics_token_file = Some(token_file);
    let srv = TestServer::start(cfg, None).await.unwrap();
    let url = format!("{}/metrics", srv.base);
    // Without a token, with a wrong one, and with a valid API token (which is not the metrics token): 401.
    let api_token = format!("Bearer {}", srv.token);
    for auth in [
        None,
        Some("Bearer prom-scrape-7f3b"),
        Some("Basic prom-scrape-7f3a"),
        Some(api_token.as_str()),
    ] {
        let mut req = srv.http.get(&url);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let (status, ct, body) = answer(resp).await;
        assert!(ct.starts_with("application/json"), "{ct}");
        assert_esc_error(status, &body, 401);
        assert!(
            !body.to_string().contains("sesame_"),
            "{auth:?}: counters leaked: {body}"
        );
    }
    let resp = srv
        .http
        .get(&url)
        .header("Authorization", "Bearer prom-scrape-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("sesame_kms_unwrap_total"));
    srv.stop().await;

    // An empty token file stops the start with a clear error.
    let empty = dir.path().join("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    let other = temp_dir();
    let mut cfg = config(other.path(), None);
    cfg.metrics_token_file = Some(empty);
    let err = sesame::server::start(cfg)
        .await
        .err()
        .expect("an empty token file is refused");
    assert!(err.to_string().contains("--metrics-token-file"), "{err}");
}

/// Stack ciphertexts are the envelope spec's base64 form (§7.1): standard padded base64 of a version-1 envelope.
/// The prefixed `sesame1:` form (§7.2) and other spellings are refused with a 400 in ESC's shape.
#[tokio::test]
async fn stack_ciphertexts_are_the_envelope_specs_base64_form() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let ct = encrypt(&srv, STACK, b"hunter2").await;
    let envelope = sesame_envelope::from_base64(&ct).expect("canonical base64");
    assert_eq!(sesame_envelope::to_base64(&envelope), ct);
    assert_eq!(STANDARD.decode(&ct).unwrap(), envelope);
    let header = sesame_envelope::parse_header(&envelope).unwrap();
    assert_eq!(header.version, sesame_envelope::VERSION_1);
    assert_eq!(envelope.len(), b"hunter2".len() + sesame_envelope::OVERHEAD);
    let unpadded = ct.trim_end_matches('=').to_owned();
    let url_safe = ct.replace('+', "-").replace('/', "_");
    for other in [
        sesame_envelope::to_text(&envelope),
        unpadded,
        url_safe,
        format!("{ct}\n"),
    ] {
        if other == ct {
            continue;
        }
        let (status, body) = decrypt(&srv, STACK, &other).await;
        assert_esc_error(status, &body, 400);
    }
    let (status, body) = decrypt(&srv, STACK, &ct).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plaintext"], json!(b64(b"hunter2")));
    srv.stop().await;
}
