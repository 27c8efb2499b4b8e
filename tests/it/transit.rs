//! The Vault-Transit-compatible API (`/v1/…`, issue 16): keys, encryption and the rest on both databases, roles,
//! bad input answered with Vault's status and text and changing nothing, the Pulumi CLI's exact request, hvac
//! driving every endpoint, and a differential run against a real OpenBao dev server.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::{self, TestServer, on_both};

/// A Vault client of either server: base URL, token and optional namespace.
#[derive(Clone)]
struct Vault {
    base: String,
    token: Option<String>,
    namespace: Option<String>,
    http: reqwest::Client,
}

impl Vault {
    fn sesame(srv: &TestServer, token: &str) -> Vault {
        Vault {
            base: srv.base.clone(),
            token: Some(token.to_owned()),
            namespace: None,
            http: srv.http.clone(),
        }
    }

    fn bao(bao: &crate::bao::Bao) -> Vault {
        Vault {
            base: bao.addr.clone(),
            token: Some(bao.root.clone()),
            namespace: None,
            http: bao.http.clone(),
        }
    }

    fn ns(&self, namespace: &str) -> Vault {
        Vault {
            namespace: Some(namespace.to_owned()),
            ..self.clone()
        }
    }

    fn with_token(&self, token: Option<&str>) -> Vault {
        Vault {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}/v1/{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("vault request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    /// POSTs and requires 200; returns `data`.
    async fn ok(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.post(path, body.clone()).await;
        assert_eq!(status, 200, "{path} {body} → {v}");
        v["data"].clone()
    }

    async fn encrypt(&self, key: &str, plaintext: &[u8]) -> String {
        let d = self
            .ok(&format!("transit/encrypt/{key}"), json!({"plaintext": b64(plaintext)}))
            .await;
        d["ciphertext"].as_str().unwrap().to_owned()
    }

    async fn decrypt(&self, key: &str, ciphertext: &str) -> Vec<u8> {
        let d = self
            .ok(&format!("transit/decrypt/{key}"), json!({"ciphertext": ciphertext}))
            .await;
        STANDARD.decode(d["plaintext"].as_str().unwrap()).unwrap()
    }
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The one error message of a Vault error body.
fn error(v: &Value) -> &str {
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("not an error body: {v}"));
    assert_eq!(errors.len(), 1, "{v}");
    errors[0].as_str().unwrap()
}

/// Vault's envelope fields.
fn assert_envelope(v: &Value) {
    for field in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(v.get(field).is_some(), "{field} missing from {v}");
    }
}

async fn transit_keys_and_aes_gcm(srv: &TestServer) {
    let v = Vault::sesame(srv, &srv.token);
    // Create: Vault's key read shape.
    let (status, made) = v.post("transit/keys/k", json!({})).await;
    assert_eq!(status, 200, "{made}");
    assert_envelope(&made);
    let d = &made["data"];
    assert_eq!(d["type"], "aes256-gcm96");
    assert_eq!(d["latest_version"], 1);
    assert_eq!(d["min_decryption_version"], 1);
    assert_eq!(d["supports_encryption"], true);
    assert_eq!(d["deletion_allowed"], false);
    assert!(d["keys"]["1"].as_i64().unwrap() > 1_700_000_000, "{d}");
    // Creating again answers the key unchanged.
    let (status, again) = v.post("transit/keys/k", json!({"type": "chacha20-poly1305"})).await;
    assert_eq!((status, &again["data"]["type"]), (200, &json!("aes256-gcm96")));

    // Encrypt/decrypt, bit-compatible layout: vault:v1: + base64(nonce 12 ‖ ct ‖ tag 16).
    let ct = v.encrypt("k", b"hello").await;
    assert!(ct.starts_with("vault:v1:"), "{ct}");
    assert_eq!(STANDARD.decode(&ct["vault:v1:".len()..]).unwrap().len(), 12 + 5 + 16);
    assert_eq!(v.decrypt("k", &ct).await, b"hello");
    assert_ne!(v.encrypt("k", b"hello").await, ct, "random nonces");
    assert_eq!(v.decrypt("k", &v.encrypt("k", b"").await).await, b"");

    // Associated data binds.
    let d = v
        .ok(
            "transit/encrypt/k",
            json!({"plaintext": b64(b"x"), "associated_data": b64(b"ctx")}),
        )
        .await;
    let with_ad = d["ciphertext"].as_str().unwrap();
    let (status, e) = v.post("transit/decrypt/k", json!({"ciphertext": with_ad})).await;
    assert_eq!((status, error(&e)), (400, "cipher: message authentication failed"));
    let d = v
        .ok(
            "transit/decrypt/k",
            json!({"ciphertext": with_ad, "associated_data": b64(b"ctx")}),
        )
        .await;
    assert_eq!(d["plaintext"], b64(b"x"));

    // Batches: references echoed, per-item errors, Vault's status rule.
    let batch = json!({"batch_input": [
        {"plaintext": b64(b"a"), "reference": "one"},
        {"plaintext": "!!", "reference": "two"},
        {"plaintext": b64(b"c")},
    ]});
    let (status, r) = v.post("transit/encrypt/k", batch.clone()).await;
    assert_eq!(status, 400, "{r}");
    let results = r["data"]["batch_results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["reference"], "one");
    assert_eq!(results[1]["error"], "illegal base64 data at input byte 0");
    assert_eq!(results[1]["reference"], "two");
    assert_eq!(results[2]["reference"], "");
    let mut with_code = batch.clone();
    with_code["partial_failure_response_code"] = json!(207);
    let (status, _) = v.post("transit/encrypt/k", with_code).await;
    assert_eq!(status, 207);
    let cts: Vec<&str> = [0, 2]
        .iter()
        .map(|i| results[*i]["ciphertext"].as_str().unwrap())
        .collect();
    let (status, r) = v
        .post(
            "transit/decrypt/k",
            json!({"batch_input": [
                {"ciphertext": cts[0], "reference": "a"},
                {"ciphertext": "nope", "reference": "b"},
                {"ciphertext": cts[1]},
            ]}),
        )
        .await;
    assert_eq!(status, 400, "{r}");
    let results = r["data"]["batch_results"].as_array().unwrap();
    assert_eq!(results[0]["plaintext"], b64(b"a"));
    assert_eq!(results[1]["error"], "invalid ciphertext: no prefix");
    assert_eq!(results[1]["plaintext"], "");
    assert_eq!(results[2]["plaintext"], b64(b"c"));

    // Rotation: old ciphertexts still open, rewrap moves them, key_version picks a version.
    let d = v.ok("transit/keys/k/rotate", json!({})).await;
    assert_eq!(d["latest_version"], 2);
    assert_eq!(v.decrypt("k", &ct).await, b"hello");
    let ct2 = v.encrypt("k", b"two").await;
    assert!(ct2.starts_with("vault:v2:"));
    let d = v.ok("transit/rewrap/k", json!({"ciphertext": ct})).await;
    let rewrapped = d["ciphertext"].as_str().unwrap().to_owned();
    assert!(rewrapped.starts_with("vault:v2:") && d["key_version"] == 2, "{d}");
    assert_eq!(v.decrypt("k", &rewrapped).await, b"hello");
    let d = v
        .ok("transit/encrypt/k", json!({"plaintext": b64(b"old"), "key_version": 1}))
        .await;
    assert!(d["ciphertext"].as_str().unwrap().starts_with("vault:v1:"));

    // min_decryption_version: v1 is refused and hidden from the read.
    let d = v
        .ok("transit/keys/k/config", json!({"min_decryption_version": 2}))
        .await;
    assert_eq!(d["min_decryption_version"], 2);
    assert!(d["keys"].get("1").is_none() && d["keys"].get("2").is_some(), "{d}");
    let (status, e) = v.post("transit/decrypt/k", json!({"ciphertext": ct})).await;
    assert_eq!(
        (status, error(&e)),
        (400, "ciphertext or signature version is disallowed by policy (too old)")
    );
    assert_eq!(v.decrypt("k", &rewrapped).await, b"hello");

    // Data keys.
    let d = v.ok("transit/datakey/plaintext/k", json!({})).await;
    let plain = STANDARD.decode(d["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(plain.len(), 32);
    assert_eq!(v.decrypt("k", d["ciphertext"].as_str().unwrap()).await, plain);
    let d = v.ok("transit/datakey/wrapped/k", json!({"bits": 512})).await;
    assert!(d.get("plaintext").is_none(), "{d}");
    assert_eq!(v.decrypt("k", d["ciphertext"].as_str().unwrap()).await.len(), 64);

    // Derived keys need a context, and a ciphertext opens only with its context.
    let d = v.ok("transit/keys/d", json!({"derived": true})).await;
    assert_eq!(
        (d["derived"].clone(), d["kdf"].clone()),
        (json!(true), json!("hkdf_sha256"))
    );
    let (status, e) = v.post("transit/encrypt/d", json!({"plaintext": b64(b"x")})).await;
    assert_eq!(status, 400);
    assert!(error(&e).starts_with("missing 'context' for key derivation"), "{e}");
    let d = v
        .ok(
            "transit/encrypt/d",
            json!({"plaintext": b64(b"x"), "context": b64(b"alice")}),
        )
        .await;
    let dct = d["ciphertext"].as_str().unwrap();
    let (status, e) = v
        .post("transit/decrypt/d", json!({"ciphertext": dct, "context": b64(b"bob")}))
        .await;
    assert_eq!((status, error(&e)), (400, "cipher: message authentication failed"));
    let d = v
        .ok(
            "transit/decrypt/d",
            json!({"ciphertext": dct, "context": b64(b"alice")}),
        )
        .await;
    assert_eq!(d["plaintext"], b64(b"x"));

    // ChaCha20-Poly1305.
    v.ok("transit/keys/c", json!({"type": "chacha20-poly1305"})).await;
    let cct = v.encrypt("c", b"cha").await;
    assert_eq!(v.decrypt("c", &cct).await, b"cha");

    // HMAC and its verification.
    let d = v.ok("transit/hmac/k", json!({"input": b64(b"msg")})).await;
    let mac = d["hmac"].as_str().unwrap().to_owned();
    assert!(mac.starts_with("vault:v2:"));
    assert_eq!(STANDARD.decode(&mac["vault:v2:".len()..]).unwrap().len(), 32);
    let d = v.ok("transit/hmac/k/sha2-512", json!({"input": b64(b"msg")})).await;
    assert_eq!(
        STANDARD
            .decode(&d["hmac"].as_str().unwrap()["vault:v2:".len()..])
            .unwrap()
            .len(),
        64
    );
    let d = v
        .ok("transit/verify/k", json!({"input": b64(b"msg"), "hmac": mac}))
        .await;
    assert_eq!(d["valid"], true);
    let d = v
        .ok("transit/verify/k", json!({"input": b64(b"other"), "hmac": mac}))
        .await;
    assert_eq!(d["valid"], false);

    // Random bytes.
    let d = v.ok("transit/random/16", json!({})).await;
    assert_eq!(STANDARD.decode(d["random_bytes"].as_str().unwrap()).unwrap().len(), 16);
    let d = v.ok("transit/random", json!({"bytes": 8, "format": "hex"})).await;
    assert_eq!(d["random_bytes"].as_str().unwrap().len(), 16);

    // Signing keys.
    for t in ["ed25519", "ecdsa-p256"] {
        let name = format!("s-{t}");
        let d = v.ok(&format!("transit/keys/{name}"), json!({"type": t})).await;
        assert_eq!(d["supports_signing"], true);
        assert!(
            d["keys"]["1"]["public_key"].as_str().is_some_and(|k| !k.is_empty()),
            "{d}"
        );
        let d = v
            .ok(&format!("transit/sign/{name}"), json!({"input": b64(b"doc")}))
            .await;
        let sig = d["signature"].as_str().unwrap().to_owned();
        assert!(sig.starts_with("vault:v1:"), "{sig}");
        let d = v
            .ok(
                &format!("transit/verify/{name}"),
                json!({"input": b64(b"doc"), "signature": sig}),
            )
            .await;
        assert_eq!(d["valid"], true, "{t}");
        let d = v
            .ok(
                &format!("transit/verify/{name}"),
                json!({"input": b64(b"dog"), "signature": sig}),
            )
            .await;
        assert_eq!(d["valid"], false, "{t}");
        let (status, e) = v
            .post(&format!("transit/encrypt/{name}"), json!({"plaintext": "aGk="}))
            .await;
        assert_eq!(
            (status, error(&e)),
            (
                400,
                format!("message encryption not supported for key type {t}").as_str()
            )
        );
    }

    // Upsert: encrypting to a missing key makes it (the admin may create keys).
    let up = v.encrypt("made-by-encrypt", b"u").await;
    assert_eq!(v.decrypt("made-by-encrypt", &up).await, b"u");

    // Listing, by LIST and by ?list=true.
    let (status, l) = v.call("LIST", "transit/keys", None).await;
    assert_eq!(status, 200, "{l}");
    let names: Vec<&str> = l["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "d", "k", "made-by-encrypt", "s-ecdsa-p256", "s-ed25519"]);
    let (status, l2) = v.get("transit/keys?list=true").await;
    assert_eq!((status, &l2["data"]), (200, &l["data"]));

    // Export only when exportable; deletion only when allowed.
    let (status, e) = v.get("transit/export/encryption-key/k").await;
    assert_eq!((status, error(&e)), (400, "private key material is not exportable"));
    v.ok("transit/keys/x", json!({"exportable": true})).await;
    let (status, ex) = v.get("transit/export/encryption-key/x").await;
    assert_eq!(status, 200, "{ex}");
    assert_eq!(
        STANDARD
            .decode(ex["data"]["keys"]["1"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let (status, e) = v.call("DELETE", "transit/keys/k", None).await;
    assert_eq!(
        (status, error(&e)),
        (400, "error deleting policy k: deletion is not allowed for this key")
    );
    v.ok("transit/keys/k/config", json!({"deletion_allowed": true})).await;
    let (status, _) = v.call("DELETE", "transit/keys/k", None).await;
    assert_eq!(status, 204);
    let (status, e) = v.get("transit/keys/k").await;
    assert_eq!((status, e), (404, json!({"errors": []})));

    // Other mounts: enabled per org.
    let (status, e) = v.post("other/keys/k", json!({})).await;
    assert_eq!(status, 404, "{e}");
    let (status, _) = v.post("sys/mounts/other", json!({"type": "transit"})).await;
    assert_eq!(status, 204);
    let (status, e) = v.post("sys/mounts/other", json!({"type": "transit"})).await;
    assert_eq!((status, error(&e)), (400, "path is already in use at other/"));
    v.ok("other/keys/k", json!({})).await;
    let (status, m) = v.get("sys/mounts").await;
    assert_eq!(status, 200);
    assert_eq!(m["data"]["other/"]["type"], "transit");
    assert_eq!(m["data"]["transit/"]["type"], "transit");

    // The rest clients call.
    let (status, h) = v.with_token(None).get("sys/health").await;
    assert_eq!(
        (status, &h["initialized"], &h["sealed"]),
        (200, &json!(true), &json!(false))
    );
    let (status, me) = v.get("auth/token/lookup-self").await;
    assert_eq!(status, 200);
    assert_eq!(me["data"]["policies"], json!(["sesame-admin"]));
    assert!(!me.to_string().contains(&srv.token), "the token itself is never shown");

    // Audited, tallied, without data.
    assert!(srv.server.state.stack_calls.flush_all().await);
    let audit = srv.export("/api/sesame/v1/orgs/acme/audit").await;
    for action in [
        "transit.encrypt",
        "transit.decrypt",
        "transit.rewrap",
        "transit.key.create",
        "transit.key.rotate",
    ] {
        assert!(audit.contains(action), "{action} missing from the audit log");
    }
    assert!(audit.contains("acme/transit/k"));
    for secret in [b64(b"hello"), ct.clone(), mac.clone()] {
        assert!(!audit.contains(&secret), "the audit log holds data");
    }
}
on_both!(transit_keys_and_aes_gcm, transit_keys_sqlite, transit_keys_postgres);

/// What a key looks like, and how many keys there are: what bad input must leave unchanged.
async fn snapshot(v: &Vault) -> (Value, Value) {
    let (_, key) = v.get("transit/keys/k").await;
    let (_, list) = v.call("LIST", "transit/keys", None).await;
    (key["data"].clone(), list["data"].clone())
}

async fn bad_input_gets_vaults_answers_and_changes_nothing(srv: &TestServer) {
    // The instance administrator sees every org: with a second org it names one.
    let v = Vault::sesame(srv, &srv.token).ns("acme");
    v.ok("transit/keys/k", json!({})).await;
    v.ok("transit/keys/k/rotate", json!({})).await;
    v.ok("transit/keys/k/config", json!({"min_decryption_version": 2}))
        .await;
    let good = v.encrypt("k", b"secret").await;
    let body = STANDARD.decode(&good["vault:v2:".len()..]).unwrap();
    let truncated = format!("vault:v2:{}", b64(&body[..8]));
    let cut_tag = format!("vault:v2:{}", b64(&body[..body.len() - 4]));
    // A ciphertext of another key, and of the same key name in another org.
    v.ok("transit/keys/k2", json!({})).await;
    let other_key = v.encrypt("k2", b"secret").await.replace("vault:v1:", "vault:v2:");
    let (status, org) = srv.post("/api/sesame/v1/orgs", &json!({"name": "other"})).await;
    assert!(status == 200 || status == 201, "{org}");
    let other = v.ns("other");
    other.ok("transit/keys/k", json!({})).await;
    other.ok("transit/keys/k/rotate", json!({})).await;
    let other_org = other.encrypt("k", b"secret").await;
    assert!(other_org.starts_with("vault:v2:"));
    let big: Vec<Value> = (0..1001).map(|_| json!({"plaintext": "aGk="})).collect();

    let before = snapshot(&v).await;
    let cases: Vec<(&str, Value, u16, String)> = vec![
        (
            "transit/encrypt/k",
            json!({"plaintext": "!!"}),
            400,
            "illegal base64 data at input byte 0".into(),
        ),
        (
            "transit/encrypt/k",
            json!({"plaintext": "aGk"}),
            400,
            "illegal base64 data at input byte 0".into(),
        ),
        (
            "transit/encrypt/k",
            json!({}),
            400,
            "missing plaintext to encrypt".into(),
        ),
        (
            "transit/encrypt/k",
            json!({"plaintext": "aGk=", "key_version": 9}),
            400,
            "requested version for encryption is higher than the latest key version".into(),
        ),
        (
            "transit/decrypt/k",
            json!({"ciphertext": "nope"}),
            400,
            "invalid ciphertext: no prefix".into(),
        ),
        (
            "transit/decrypt/k",
            json!({"ciphertext": good.replace("vault:v2:", "vault:v99:")}),
            400,
            "invalid ciphertext: version is too new".into(),
        ),
        (
            "transit/decrypt/k",
            json!({"ciphertext": good.replace("vault:v2:", "vault:v1:")}),
            400,
            "ciphertext or signature version is disallowed by policy (too old)".into(),
        ),
        (
            "transit/decrypt/k",
            json!({"ciphertext": "vault:v2:!!!"}),
            400,
            "invalid ciphertext: could not decode base64".into(),
        ),
        (
            "transit/decrypt/k",
            json!({"ciphertext": truncated}),
            400,
            "invalid ciphertext length".into(),
        ),
        (
            "transit/decrypt/k",
            json!({"ciphertext": cut_tag}),
            400,
            "cipher: message authentication failed".into(),
        ),
        (
            "transit/decrypt/k",
            json!({"ciphertext": other_key}),
            400,
            "cipher: message authentication failed".into(),
        ),
        (
            "transit/decrypt/k",
            json!({"ciphertext": other_org}),
            400,
            "cipher: message authentication failed".into(),
        ),
        (
            "transit/decrypt/k",
            json!({}),
            400,
            "missing ciphertext to decrypt".into(),
        ),
        (
            "transit/decrypt/nokey",
            json!({"ciphertext": good}),
            400,
            "encryption key not found".into(),
        ),
        (
            "transit/encrypt/k",
            json!({"batch_input": big}),
            400,
            "batch_input holds 1001 items, more than the limit of 1000".into(),
        ),
        (
            "transit/encrypt/k",
            json!({"batch_input": []}),
            400,
            "missing batch input to process".into(),
        ),
        (
            "transit/keys/new",
            json!({"type": "foo"}),
            400,
            "unknown key type foo".into(),
        ),
        (
            "transit/keys/k",
            json!({"type": "rsa-9"}),
            400,
            "unknown key type rsa-9".into(),
        ),
        (
            "transit/keys/k/config",
            json!({"min_decryption_version": 5}),
            400,
            "cannot set min decryption version of 5, latest key version is 2".into(),
        ),
        (
            "transit/keys/k/config",
            json!({"min_encryption_version": 1}),
            400,
            "cannot set min encryption/decryption values; min encryption version of 1 must be greater than or \
             equal to min decryption version of 2"
                .into(),
        ),
        ("transit/keys/nokey/rotate", json!({}), 400, "key not found".into()),
        (
            "transit/keys/nokey/config",
            json!({"deletion_allowed": true}),
            400,
            "no existing key named nokey could be found".into(),
        ),
        (
            "transit/datakey/foo/k",
            json!({}),
            400,
            "Invalid path, must be 'plaintext' or 'wrapped'".into(),
        ),
        (
            "transit/datakey/wrapped/k",
            json!({"bits": 100}),
            400,
            "invalid bit length".into(),
        ),
        (
            "transit/random/0",
            json!({}),
            400,
            "'bytes' cannot be less than 1".into(),
        ),
        (
            "transit/random/999999",
            json!({}),
            400,
            "'bytes' should be less than 131072".into(),
        ),
        (
            "transit/encrypt/k",
            json!({"plaintext": "aGk=", "key_version": "abc"}),
            400,
            "error converting input for field \"key_version\": '' cannot parse value as 'int': strconv.ParseInt: \
             invalid syntax"
                .into(),
        ),
        (
            "transit/encrypt/k",
            json!({"plaintext": {"a": 1}}),
            400,
            "error converting input for field \"plaintext\": '' expected type 'string'".into(),
        ),
    ];
    for (path, body, status, message) in &cases {
        let (got, e) = v.post(path, body.clone()).await;
        assert_eq!((got, error(&e)), (*status, message.as_str()), "{path} {body}");
    }
    // Not JSON, a JSON array, NUL, unicode names, unknown paths and methods.
    let resp = v
        .http
        .post(format!("{}/v1/transit/encrypt/k", v.base))
        .header("X-Vault-Token", &srv.token)
        .header("X-Vault-Namespace", "acme")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert!(error(&e).starts_with("failed to parse JSON input"), "{e}");
    let (status, e) = v.call("POST", "transit/encrypt/k", Some(json!(["x"]))).await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = v
        .post("transit/encrypt/k", json!({"plaintext": "aGk=", "context": "a\u{0}"}))
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = v.post("transit/keys/ключ", json!({})).await;
    assert_eq!(
        (status, error(&e)),
        (404, "1 error occurred:\n\t* unsupported path\n\n")
    );
    let (status, e) = v.get("transit/nothing").await;
    assert_eq!(
        (status, error(&e)),
        (404, "1 error occurred:\n\t* unsupported path\n\n")
    );
    let (status, e) = v.get("transit/keys").await;
    assert_eq!(
        (status, error(&e)),
        (405, "1 error occurred:\n\t* unsupported operation\n\n")
    );
    let (status, e) = v.get("transit/keys/nokey").await;
    assert_eq!((status, e), (404, json!({"errors": []})));
    assert_eq!(snapshot(&v).await, before, "bad input changed a key");
    // A body over the limit (1 MiB in tests) and an undecodable gzip body: Vault's error shape too.
    let resp = v
        .http
        .post(format!("{}/v1/transit/encrypt/k", v.base))
        .header("X-Vault-Token", &srv.token)
        .header("X-Vault-Namespace", "acme")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(error(&e), "request body is too large");
    let resp = v
        .http
        .post(format!("{}/v1/transit/encrypt/k", v.base))
        .header("X-Vault-Token", &srv.token)
        .header("X-Vault-Namespace", "acme")
        .header("Content-Encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
    let e: Value = resp.json().await.unwrap();
    assert!(e["errors"].is_array(), "{e}");
    // Refused calls are in the audit tally as failed, without their input.
    assert!(srv.server.state.stack_calls.flush_all().await);
    let audit = srv.export("/api/sesame/v1/orgs/acme/audit").await;
    let failed_decrypts = audit
        .lines()
        .filter(|l| l.contains("transit.decrypt") && l.contains("failed"))
        .count();
    assert!(failed_decrypts >= 1, "refusals not tallied");
    assert!(
        !audit.contains("nope") && !audit.contains(&good),
        "the audit log holds input"
    );
    assert_eq!(v.decrypt("k", &good).await, b"secret");
    // The other org's key was not touched either.
    assert_eq!(other.decrypt("k", &other_org).await, b"secret");
}
on_both!(
    bad_input_gets_vaults_answers_and_changes_nothing,
    bad_input_sqlite,
    bad_input_postgres
);

async fn roles_map_to_vault_capabilities(srv: &TestServer) {
    let admin = Vault::sesame(srv, &srv.token).ns("acme");
    admin.ok("transit/keys/k", json!({})).await;
    let ct = admin.encrypt("k", b"p").await;
    let mut tokens = std::collections::BTreeMap::new();
    for role in ["reader", "opener", "editor", "admin"] {
        let (status, body) = srv.add_member("acme", &format!("u-{role}"), role).await;
        assert!(status == 200 || status == 201, "{body}");
        tokens.insert(role, body["token"].as_str().unwrap().to_owned());
    }
    let denied = json!({"errors": ["permission denied"]});
    // (path, method, body, the least role allowed)
    let calls: Vec<(&str, &str, Value, &str)> = vec![
        ("transit/keys/k", "GET", Value::Null, "reader"),
        ("transit/keys", "LIST", Value::Null, "reader"),
        ("transit/decrypt/k", "POST", json!({"ciphertext": ct}), "opener"),
        ("transit/encrypt/k", "POST", json!({"plaintext": "aGk="}), "editor"),
        ("transit/rewrap/k", "POST", json!({"ciphertext": ct}), "editor"),
        ("transit/datakey/wrapped/k", "POST", json!({}), "editor"),
        ("transit/hmac/k", "POST", json!({"input": "aGk="}), "editor"),
        ("transit/keys/k/rotate", "POST", json!({}), "admin"),
        (
            "transit/keys/k/config",
            "POST",
            json!({"deletion_allowed": false}),
            "admin",
        ),
        ("transit/keys/new-one", "POST", json!({}), "admin"),
        (
            "transit/encrypt/upserted",
            "POST",
            json!({"plaintext": "aGk="}),
            "admin",
        ),
    ];
    let order = ["reader", "opener", "editor", "admin"];
    for (path, method, body, least) in &calls {
        for role in order {
            let v = admin.with_token(Some(&tokens[role]));
            let body = (!body.is_null()).then(|| body.clone());
            let (status, answer) = v.call(method, path, body).await;
            let allowed = order.iter().position(|r| r == &role) >= order.iter().position(|r| r == least);
            if allowed {
                assert!(
                    status == 200 || status == 204,
                    "{role} {method} {path}: {status} {answer}"
                );
            } else {
                assert_eq!((status, &answer), (403, &denied), "{role} {method} {path}");
            }
        }
    }
    // No token, a wrong one, a member of no org, an org the caller is not in: the same answer.
    for v in [
        admin.with_token(None),
        admin.with_token(Some("sesame_0000000000000000000000000000000000000000000")),
        admin.with_token(Some("not-a-token")),
        admin.with_token(Some(&tokens["admin"])).ns("no-such-org"),
    ] {
        let (status, answer) = v.post("transit/encrypt/k", json!({"plaintext": "aGk="})).await;
        assert_eq!((status, answer), (403, denied.clone()));
    }
    // Bearer works like X-Vault-Token.
    let resp = srv
        .http
        .post(format!("{}/v1/transit/encrypt/k", srv.base))
        .bearer_auth(&tokens["editor"])
        .json(&json!({"plaintext": "aGk="}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A user in two orgs must name one.
    let (status, _) = srv.post("/api/sesame/v1/orgs", &json!({"name": "second"})).await;
    assert!(status == 200 || status == 201);
    let (status, _) = srv.add_member("second", "u-editor", "editor").await;
    assert!(status < 300 || status == 409, "{status}");
    let two = Vault {
        namespace: None,
        ..admin.with_token(Some(&tokens["editor"]))
    };
    let (status, e) = two.post("transit/encrypt/k", json!({"plaintext": "aGk="})).await;
    if status == 400 {
        assert!(error(&e).contains("X-Vault-Namespace"), "{e}");
        let (status, _) = two
            .ns("acme")
            .post("transit/encrypt/k", json!({"plaintext": "aGk="}))
            .await;
        assert_eq!(status, 200);
    } else {
        // An org admin's add is an invitation: the user is still in one org only.
        assert_eq!(status, 200, "{e}");
    }
    // Refusals are audited on the org's chain.
    let audit = srv.export("/api/sesame/v1/orgs/acme/audit").await;
    assert!(
        audit.contains("vault api: ") && audit.contains("access.denied"),
        "refusals not audited"
    );
}
on_both!(roles_map_to_vault_capabilities, roles_sqlite, roles_postgres);

/// Sends `request` as raw bytes and reads one HTTP/1.1 answer: status and body.
async fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the answer was complete");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        if buf.len() >= end + 4 + length {
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            let body = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap();
            return (status, body);
        }
    }
}

/// The Pulumi CLI's `hashivault://KEY` secrets provider (gocloud.dev/secrets/hashivault over Vault's Go client)
/// sends exactly these requests to wrap and unwrap a stack's data key: PUT, `X-Vault-Request: true`,
/// `X-Vault-Token`, the engine path from `?engine=` (default `transit`), and a JSON body ending in a newline.
async fn the_pulumi_cli_request_replayed_byte_for_byte(srv: &TestServer) {
    let addr = srv.server.local_addr();
    let data_key = b64(&[7u8; 32]);
    for (engine, namespace) in [("transit", None), ("pulumi", Some("acme"))] {
        if engine != "transit" {
            let (status, _) = Vault::sesame(srv, &srv.token)
                .post("sys/mounts/pulumi", json!({"type": "transit"}))
                .await;
            assert_eq!(status, 204);
        }
        let ns_header = namespace
            .map(|n| format!("X-Vault-Namespace: {n}\r\n"))
            .unwrap_or_default();
        let body = format!("{{\"plaintext\":\"{data_key}\"}}\n");
        let request = format!(
            "PUT /v1/{engine}/encrypt/stack-key HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\n\
             Content-Length: {}\r\n{ns_header}X-Vault-Request: true\r\nX-Vault-Token: {}\r\nAccept-Encoding: gzip\r\n\r\n{body}",
            body.len(),
            srv.token
        );
        let (status, answer) = raw_http(addr, request.as_bytes()).await;
        assert_eq!(status, 200, "{answer}");
        let ct = answer["data"]["ciphertext"].as_str().unwrap().to_owned();
        assert!(ct.starts_with("vault:v1:"), "{answer}");
        let body = format!("{{\"ciphertext\":\"{ct}\"}}\n");
        let request = format!(
            "PUT /v1/{engine}/decrypt/stack-key HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\n\
             Content-Length: {}\r\n{ns_header}X-Vault-Request: true\r\nX-Vault-Token: {}\r\nAccept-Encoding: gzip\r\n\r\n{body}",
            body.len(),
            srv.token
        );
        let (status, answer) = raw_http(addr, request.as_bytes()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"]["plaintext"], data_key.as_str());
    }
}
on_both!(
    the_pulumi_cli_request_replayed_byte_for_byte,
    pulumi_request_sqlite,
    pulumi_request_postgres
);

/// `SESAME_TEST_HVAC_PYTHON`: a Python with hvac.
fn hvac_python() -> Option<String> {
    support::require_env("SESAME_TEST_HVAC_PYTHON", "a Python with hvac (pip install hvac)")
}

async fn hvac_drives_every_endpoint(srv: &TestServer) {
    let Some(python) = hvac_python() else { return };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transit/hvac_drive.py");
    let out = tokio::process::Command::new(&python)
        .args([script, &srv.base, &srv.token, "acme"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("\ndone"), "{text}");
    assert!(text.lines().filter(|l| l.starts_with("ok ")).count() >= 25, "{text}");
}
on_both!(hvac_drives_every_endpoint, hvac_sqlite, hvac_postgres);

/// Fields whose values differ between any two servers (times, ids) or that only OpenBao has.
fn comparable(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("request_id");
        if let Some(d) = o.get_mut("data").and_then(Value::as_object_mut) {
            for field in [
                "ciphertext",
                "plaintext",
                "hmac",
                "signature",
                "random_bytes",
                "public_key",
            ] {
                if let Some(x) = d.get_mut(field)
                    && x.is_string()
                {
                    // Keep the shape (prefix), not the random bytes.
                    let s = x.as_str().unwrap();
                    *x = if s.starts_with("vault:") {
                        json!(s.split(':').take(2).collect::<Vec<_>>().join(":"))
                    } else {
                        json!("data")
                    };
                }
            }
            if let Some(keys) = d.get_mut("keys").and_then(Value::as_object_mut) {
                for k in keys.values_mut() {
                    *k = json!("version");
                }
            }
            if let Some(results) = d.get_mut("batch_results").and_then(Value::as_array_mut) {
                for r in results.iter_mut().filter_map(Value::as_object_mut) {
                    for field in ["ciphertext", "plaintext"] {
                        if let Some(x) = r.get_mut(field) {
                            let s = x.as_str().unwrap_or_default();
                            *x = json!(if s.starts_with("vault:") {
                                &s[..9]
                            } else if s.is_empty() {
                                ""
                            } else {
                                "data"
                            });
                        }
                    }
                }
            }
        }
    }
    v
}

/// The same request sequence to OpenBao and to Sesame: statuses, fields and error texts compared. Deliberate
/// differences are listed in the README ("Differences from Vault").
async fn differential_against_openbao(srv: &TestServer) {
    let Some(bin) = crate::bao::bao() else { return };
    let bao = crate::bao::Bao::start(&bin).await;
    let ours = Vault::sesame(srv, &srv.token);
    let theirs = Vault::bao(&bao);
    // OpenBao's dev server has no transit mount; Sesame's orgs have one. Both get a second one the same way.
    let (status, _) = theirs.post("sys/mounts/transit", json!({"type": "transit"})).await;
    assert_eq!(status, 204);
    for v in [&ours, &theirs] {
        let (status, e) = v.post("sys/mounts/t2", json!({"type": "transit"})).await;
        assert_eq!(status, 204, "{e}");
    }
    // Ciphertexts made on each side, used on the same side.
    let steps: Vec<(&str, &str, Value)> = vec![
        ("LIST", "t2/keys", Value::Null),
        ("POST", "transit/keys/k", json!({})),
        ("GET", "transit/keys/k", Value::Null),
        ("POST", "transit/keys/k", json!({"type": "chacha20-poly1305"})),
        ("POST", "transit/keys/bad", json!({"type": "foo"})),
        ("GET", "transit/keys/missing", Value::Null),
        ("GET", "transit/keys", Value::Null),
        ("LIST", "transit/keys", Value::Null),
        ("GET", "transit/keys?list=true", Value::Null),
        ("POST", "transit/encrypt/k", json!({"plaintext": "aGVsbG8="})),
        ("POST", "transit/encrypt/k", json!({"plaintext": ""})),
        ("POST", "transit/encrypt/k", json!({"plaintext": "!!"})),
        ("POST", "transit/encrypt/k", json!({"plaintext": "aGVsbG8"})),
        ("POST", "transit/encrypt/k", json!({})),
        (
            "POST",
            "transit/encrypt/k",
            json!({"plaintext": "aGk=", "key_version": 5}),
        ),
        ("POST", "transit/encrypt/k", json!({"batch_input": []})),
        (
            "POST",
            "transit/encrypt/k",
            json!({"batch_input": [{"plaintext": "aGk=", "reference": "a"}, {"plaintext": "!!", "reference": "b"}]}),
        ),
        (
            "POST",
            "transit/encrypt/k",
            json!({"batch_input": [{"plaintext": "aGk="}, {"plaintext": "!!"}], "partial_failure_response_code": 207}),
        ),
        ("POST", "transit/decrypt/k", json!({"ciphertext": "nope"})),
        (
            "POST",
            "transit/decrypt/k",
            json!({"ciphertext": "vault:v99:AAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        ),
        ("POST", "transit/decrypt/k", json!({"ciphertext": "vault:vx:AAAA"})),
        ("POST", "transit/decrypt/k", json!({"ciphertext": "vault:v1:!!!"})),
        ("POST", "transit/decrypt/k", json!({"ciphertext": "vault:v1:AAAAAAAA"})),
        (
            "POST",
            "transit/decrypt/k",
            json!({"ciphertext": "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        ),
        ("POST", "transit/decrypt/k", json!({})),
        (
            "POST",
            "transit/decrypt/missing",
            json!({"ciphertext": "vault:v1:AAAA"}),
        ),
        (
            "POST",
            "transit/decrypt/k",
            json!({"batch_input": [{"ciphertext": "nope", "reference": "r1"}, {"ciphertext": "vault:v1:xx"}]}),
        ),
        ("POST", "transit/keys/k/rotate", json!({})),
        ("POST", "transit/rewrap/k", json!({})),
        ("POST", "transit/rewrap/k", json!({"ciphertext": "nope"})),
        ("POST", "transit/rewrap/missing", json!({"ciphertext": "vault:v1:AAAA"})),
        (
            "POST",
            "transit/verify/k",
            json!({"input": "aGk=", "hmac": "vault:v9:AAAA"}),
        ),
        (
            "POST",
            "transit/verify/k",
            json!({"input": "aGk=", "hmac": "vault:v1:AAAA"}),
        ),
        ("GET", "transit/wrapping_key", Value::Null),
        ("POST", "transit/keys/missing/rotate", json!({})),
        ("POST", "transit/keys/missing/config", json!({"deletion_allowed": true})),
        ("POST", "transit/keys/k/config", json!({"min_decryption_version": 5})),
        ("POST", "transit/keys/k/config", json!({"min_encryption_version": 3})),
        ("POST", "transit/keys/k/config", json!({"min_decryption_version": 2})),
        ("POST", "transit/keys/k/config", json!({"min_encryption_version": 1})),
        ("POST", "transit/keys/k/config", json!({"exportable": "maybe"})),
        ("POST", "transit/datakey/plaintext/k", json!({})),
        ("POST", "transit/datakey/wrapped/k", json!({"bits": 512})),
        ("POST", "transit/datakey/foo/k", json!({})),
        ("POST", "transit/datakey/wrapped/k", json!({"bits": 100})),
        ("POST", "transit/datakey/plaintext/missing", json!({})),
        ("POST", "transit/hmac/k", json!({"input": "aGk="})),
        ("POST", "transit/hmac/k/sha2-512", json!({"input": "aGk="})),
        ("POST", "transit/hmac/k", json!({})),
        ("POST", "transit/hmac/missing", json!({"input": "aGk="})),
        ("POST", "transit/random/16", json!({})),
        ("POST", "transit/random", json!({"bytes": 8, "format": "hex"})),
        ("POST", "transit/random/0", json!({})),
        ("POST", "transit/hash", json!({"input": "aGk="})),
        (
            "POST",
            "transit/hash/sha2-512",
            json!({"input": "aGk=", "format": "base64"}),
        ),
        (
            "POST",
            "transit/hash",
            json!({"input": "aGVsbG8=", "algorithm": "sha2-384"}),
        ),
        ("POST", "transit/hash/sha2-224", json!({"input": ""})),
        ("POST", "transit/hash/md5", json!({"input": "aGk="})),
        ("POST", "transit/hash", json!({"input": "aGk=", "format": "foo"})),
        ("POST", "transit/hash", json!({"input": "!!"})),
        ("POST", "transit/hash", json!({})),
        ("POST", "transit/random/999999", json!({})),
        ("POST", "transit/random", json!({"format": "foo"})),
        ("POST", "transit/keys/d", json!({"derived": true})),
        ("POST", "transit/encrypt/d", json!({"plaintext": "aGk="})),
        (
            "POST",
            "transit/encrypt/d",
            json!({"plaintext": "aGk=", "context": "Y3R4"}),
        ),
        ("POST", "transit/keys/e", json!({"type": "ed25519"})),
        ("POST", "transit/sign/e", json!({"input": "aGk="})),
        ("POST", "transit/encrypt/e", json!({"plaintext": "aGk="})),
        ("POST", "transit/sign/e", json!({})),
        ("POST", "transit/sign/k", json!({"input": "aGk="})),
        ("POST", "transit/sign/missing", json!({"input": "aGk="})),
        (
            "POST",
            "transit/verify/e",
            json!({"input": "aGk=", "signature": "nope"}),
        ),
        (
            "POST",
            "transit/verify/e",
            json!({"input": "aGk=", "signature": "vault:v9:AAAA"}),
        ),
        (
            "POST",
            "transit/verify/e",
            json!({"input": "aGk=", "signature": "vault:v1:AAAA"}),
        ),
        ("POST", "transit/verify/e", json!({"input": "aGk="})),
        ("POST", "transit/verify/k", json!({"input": "aGk=", "hmac": "nope"})),
        (
            "POST",
            "transit/verify/missing",
            json!({"input": "aGk=", "hmac": "nope"}),
        ),
        (
            "POST",
            "transit/encrypt/k",
            json!({"plaintext": "aGk=", "context": "!!"}),
        ),
        ("POST", "transit/keys/e/rotate", json!({})),
        ("GET", "transit/export/public-key/e", Value::Null),
        ("GET", "transit/export/signing-key/e", Value::Null),
        (
            "POST",
            "transit/keys/x",
            json!({"type": "chacha20-poly1305", "exportable": true}),
        ),
        ("GET", "transit/export/encryption-key/x", Value::Null),
        ("GET", "transit/export/encryption-key/x/9", Value::Null),
        ("GET", "transit/export/hmac-key/x", Value::Null),
        ("GET", "transit/export/encryption-key/k", Value::Null),
        ("GET", "transit/export/foo/x", Value::Null),
        ("GET", "transit/export/encryption-key/missing", Value::Null),
        ("DELETE", "transit/keys/x", Value::Null),
        ("DELETE", "transit/keys/missing", Value::Null),
        ("POST", "transit/keys/x/config", json!({"deletion_allowed": true})),
        ("DELETE", "transit/keys/x", Value::Null),
        ("GET", "transit/keys/x", Value::Null),
        ("GET", "transit/nothing", Value::Null),
        ("POST", "transit/keys/k/nothing", json!({})),
        ("POST", "sys/mounts/transit", json!({"type": "transit"})),
        ("GET", "t2/keys/none", Value::Null),
    ];
    let mut report = Vec::new();
    for (method, path, body) in &steps {
        let body = (!body.is_null()).then(|| body.clone());
        let (s1, a1) = theirs.call(method, path, body.clone()).await;
        let (s2, a2) = ours.call(method, path, body).await;
        let (a1, a2) = (comparable(a1), comparable(a2));
        if s1 != s2 || a1 != a2 {
            report.push(format!("{method} {path}\n  openbao {s1} {a1}\n  sesame  {s2} {a2}"));
        }
    }
    // Ciphertexts cross-checked: a valid ciphertext of one server fails on the other (different key) with the same
    // text; a token from nowhere is refused alike.
    let theirs_ct = theirs.encrypt("k", b"x").await;
    let ours_ct = ours.encrypt("k", b"x").await;
    let (s1, a1) = theirs.post("transit/decrypt/k", json!({"ciphertext": ours_ct})).await;
    let (s2, a2) = ours.post("transit/decrypt/k", json!({"ciphertext": theirs_ct})).await;
    assert_eq!((s1, a1), (s2, a2), "foreign ciphertexts");
    let (s1, a1) = theirs
        .with_token(None)
        .post("transit/encrypt/k", json!({"plaintext": "aGk="}))
        .await;
    let (s2, a2) = ours
        .with_token(None)
        .post("transit/encrypt/k", json!({"plaintext": "aGk="}))
        .await;
    assert_eq!((s1, a1), (s2, a2), "no token");
    assert!(report.is_empty(), "differences from OpenBao:\n{}", report.join("\n"));
}
on_both!(differential_against_openbao, differential_sqlite, differential_postgres);

/// Wraps `key` for an import into a server whose wrapping key is `pem`, as Vault's BYOK flow does: an ephemeral
/// AES-256 key encrypted with RSA-OAEP (SHA-256), then the key under it with AES key wrap with padding.
fn wrap_for_import(pem: &str, key: &[u8]) -> String {
    use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
    let der = STANDARD
        .decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
        .unwrap();
    let public = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&der).unwrap()).unwrap();
    let mut ephemeral = [0u8; 32];
    aws_lc_rs::rand::fill(&mut ephemeral).unwrap();
    let mut rsa_out = vec![0u8; public.ciphertext_size()];
    let rsa = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, &ephemeral, &mut rsa_out, None)
        .unwrap()
        .to_vec();
    let kek = AesKek::new(&AES_256, &ephemeral).unwrap();
    let mut out = vec![0u8; key.len() + 16];
    let wrapped = kek.wrap_with_padding(key, &mut out).unwrap().to_vec();
    b64(&[rsa, wrapped].concat())
}

/// Exports version 1 of an exportable key.
async fn export_v1(v: &Vault, name: &str) -> Vec<u8> {
    let (status, ex) = v.get(&format!("transit/export/encryption-key/{name}/1")).await;
    assert_eq!(status, 200, "{ex}");
    STANDARD.decode(ex["data"]["keys"]["1"].as_str().unwrap()).unwrap()
}

async fn import_into(v: &Vault, name: &str, key: &[u8], extra: Value) {
    let (status, w) = v.get("transit/wrapping_key").await;
    assert_eq!(status, 200, "{w}");
    let mut body = json!({"ciphertext": wrap_for_import(w["data"]["public_key"].as_str().unwrap(), key)});
    for (k, x) in extra.as_object().unwrap() {
        body[k] = x.clone();
    }
    let (status, answer) = v.post(&format!("transit/keys/{name}/import"), body).await;
    assert!(status == 204 || status == 200, "{name}: {status} {answer}");
}

/// The way off Vault and back: a key exported from one server and imported (Vault's BYOK flow) into the other
/// decrypts what the first encrypted, both ways, for plain and derived keys.
#[tokio::test]
async fn cross_decryption_with_openbao_through_export_and_import() {
    let Some(bin) = crate::bao::bao() else { return };
    let bao = crate::bao::Bao::start(&bin).await;
    let dir = support::temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let ours = Vault::sesame(&srv, &srv.token);
    let theirs = Vault::bao(&bao);
    let (status, _) = theirs.post("sys/mounts/transit", json!({"type": "transit"})).await;
    assert_eq!(status, 204);

    // Sesame → OpenBao.
    ours.ok("transit/keys/mine", json!({"exportable": true})).await;
    let ct = ours.encrypt("mine", b"made by sesame").await;
    import_into(&theirs, "mine", &export_v1(&ours, "mine").await, json!({})).await;
    assert_eq!(theirs.decrypt("mine", &ct).await, b"made by sesame");
    let back = theirs.encrypt("mine", b"made by openbao").await;
    assert_eq!(ours.decrypt("mine", &back).await, b"made by openbao");

    // OpenBao → Sesame, with associated data.
    theirs.ok("transit/keys/theirs", json!({"exportable": true})).await;
    let d = theirs
        .ok(
            "transit/encrypt/theirs",
            json!({"plaintext": b64(b"from vault"), "associated_data": b64(b"ad")}),
        )
        .await;
    let ct = d["ciphertext"].as_str().unwrap().to_owned();
    import_into(&ours, "theirs", &export_v1(&theirs, "theirs").await, json!({})).await;
    let d = ours
        .ok(
            "transit/decrypt/theirs",
            json!({"ciphertext": ct, "associated_data": b64(b"ad")}),
        )
        .await;
    assert_eq!(d["plaintext"], b64(b"from vault"));
    let (_, info) = ours.get("transit/keys/theirs").await;
    assert_eq!(info["data"]["imported_key"], true);

    // Derived keys: the same HKDF on both sides.
    theirs
        .ok("transit/keys/dk", json!({"exportable": true, "derived": true}))
        .await;
    let d = theirs
        .ok(
            "transit/encrypt/dk",
            json!({"plaintext": b64(b"per tenant"), "context": b64(b"tenant-7")}),
        )
        .await;
    let ct = d["ciphertext"].as_str().unwrap().to_owned();
    import_into(&ours, "dk", &export_v1(&theirs, "dk").await, json!({"derived": true})).await;
    let d = ours
        .ok(
            "transit/decrypt/dk",
            json!({"ciphertext": ct, "context": b64(b"tenant-7")}),
        )
        .await;
    assert_eq!(d["plaintext"], b64(b"per tenant"));
    let d = ours
        .ok(
            "transit/encrypt/dk",
            json!({"plaintext": b64(b"back"), "context": b64(b"tenant-7")}),
        )
        .await;
    let d = theirs
        .ok(
            "transit/decrypt/dk",
            json!({"ciphertext": d["ciphertext"], "context": b64(b"tenant-7")}),
        )
        .await;
    assert_eq!(d["plaintext"], b64(b"back"));

    // ChaCha20-Poly1305 too.
    theirs
        .ok(
            "transit/keys/ch",
            json!({"exportable": true, "type": "chacha20-poly1305"}),
        )
        .await;
    let ct = theirs.encrypt("ch", b"cha").await;
    import_into(
        &ours,
        "ch",
        &export_v1(&theirs, "ch").await,
        json!({"type": "chacha20-poly1305"}),
    )
    .await;
    assert_eq!(ours.decrypt("ch", &ct).await, b"cha");

    // A second version by import_version; an import over an existing key is refused.
    let (status, w) = ours.get("transit/wrapping_key").await;
    assert_eq!(status, 200);
    let pem = w["data"]["public_key"].as_str().unwrap();
    let (status, e) = ours
        .post(
            "transit/keys/theirs/import",
            json!({"ciphertext": wrap_for_import(pem, &[1u8; 32])}),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = ours
        .post(
            "transit/keys/theirs/import_version",
            json!({"ciphertext": wrap_for_import(pem, &[1u8; 32])}),
        )
        .await;
    assert_eq!(status, 204, "{e}");
    let (_, info) = ours.get("transit/keys/theirs").await;
    assert_eq!(info["data"]["latest_version"], 2);
    // Garbage and a wrong-size key change nothing.
    for body in [
        json!({"ciphertext": "!!"}),
        json!({"ciphertext": b64(&[0u8; 600])}),
        json!({"ciphertext": wrap_for_import(pem, &[1u8; 16])}),
    ] {
        let (status, e) = ours.post("transit/keys/bad/import", body).await;
        assert_eq!(status, 400, "{e}");
    }
    let (status, _) = ours.get("transit/keys/bad").await;
    assert_eq!(status, 404);
    srv.stop().await;
}

/// A version reaching the nonce budget is rotated (audited, by `system:transit`); so is a key whose latest version is
/// older than its `auto_rotate_period`.
#[tokio::test]
async fn the_nonce_budget_and_auto_rotate_period_rotate_keys() {
    let dir = support::temp_dir();
    let mut cfg = support::config(dir.path(), None);
    cfg.transit.rotate_after_encryptions = 5;
    let clock = support::manual_clock(&mut cfg);
    let srv = TestServer::start(cfg, None).await.unwrap();
    let v = Vault::sesame(&srv, &srv.token);
    v.ok("transit/keys/n", json!({})).await;
    let first = v.encrypt("n", b"1").await;
    for _ in 0..3 {
        v.encrypt("n", b"x").await;
    }
    sesame::server::transit::budget::flush(&srv.server.state).await;
    let (_, info) = v.get("transit/keys/n").await;
    assert_eq!(info["data"]["latest_version"], 1, "4 of 5: not yet");
    // A batch counts each item.
    v.ok(
        "transit/encrypt/n",
        json!({"batch_input": [{"plaintext": "aGk="}, {"plaintext": "aGk="}]}),
    )
    .await;
    sesame::server::transit::budget::flush(&srv.server.state).await;
    let (_, info) = v.get("transit/keys/n").await;
    assert_eq!(info["data"]["latest_version"], 2, "{info}");
    assert!(v.encrypt("n", b"y").await.starts_with("vault:v2:"));
    assert_eq!(v.decrypt("n", &first).await, b"1");

    v.ok("transit/keys/p", json!({"auto_rotate_period": "1h"})).await;
    let (status, e) = v.post("transit/keys/q", json!({"auto_rotate_period": "10m"})).await;
    assert_eq!(
        (status, error(&e)),
        (400, "auto rotate period must be 0 to disable or at least an hour")
    );
    assert!(v.encrypt("p", b"z").await.starts_with("vault:v1:"));
    clock.advance(std::time::Duration::from_secs(3601));
    assert!(v.encrypt("p", b"z").await.starts_with("vault:v2:"));
    assert!(srv.server.state.stack_calls.flush_all().await);
    let audit = srv.export("/api/sesame/v1/orgs/acme/audit").await;
    assert!(
        audit.contains("reason=nonce-budget") && audit.contains("reason=auto_rotate_period"),
        "{audit}"
    );
    assert!(audit.contains("system:transit"));
    srv.stop().await;
}

/// Key material is stored only sealed: an exported key's bytes appear nowhere in the SQLite files.
#[tokio::test]
async fn key_material_is_not_stored_in_plaintext() {
    let dir = support::temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let v = Vault::sesame(&srv, &srv.token);
    v.ok("transit/keys/x", json!({"exportable": true})).await;
    v.ok("transit/keys/x/rotate", json!({})).await;
    let (status, ex) = v.get("transit/export/encryption-key/x").await;
    assert_eq!(status, 200);
    let (status, hk) = v.get("transit/export/hmac-key/x").await;
    assert_eq!(status, 200);
    let mut secrets = Vec::new();
    for set in [&ex, &hk] {
        for k in set["data"]["keys"].as_object().unwrap().values() {
            secrets.push(STANDARD.decode(k.as_str().unwrap()).unwrap());
        }
    }
    assert_eq!(secrets.len(), 4);
    srv.stop().await;
    let bytes = support::store_bytes(dir.path());
    assert!(bytes.len() > 10_000);
    for s in &secrets {
        assert!(!support::contains(&bytes, s), "key material in the store");
    }
}

/// Two replicas on one PostgreSQL database: each decrypts what the other encrypts (the key is sealed once, in the
/// store), their encryption counts add up in the store, and the version that spends the budget is rotated once.
#[tokio::test]
async fn replicas_on_postgres_share_keys_and_the_nonce_budget() {
    let Some(db) = support::PgDb::create().await else {
        return;
    };
    let dir = support::temp_dir();
    let mut cfg = support::config(dir.path(), Some(&db.url));
    cfg.transit.rotate_after_encryptions = 6;
    let a = TestServer::start(cfg, None).await.unwrap();
    let replica_dir = support::temp_dir();
    std::fs::copy(support::key_file(dir.path()), support::key_file(replica_dir.path())).unwrap();
    let mut cfg = support::config(replica_dir.path(), Some(&db.url));
    cfg.transit.rotate_after_encryptions = 6;
    let b = TestServer::start(cfg, Some(a.token.clone())).await.unwrap();
    let (va, vb) = (Vault::sesame(&a, &a.token), Vault::sesame(&b, &a.token));
    va.ok("transit/keys/shared", json!({})).await;
    let from_a = va.encrypt("shared", b"a").await;
    let from_b = vb.encrypt("shared", b"b").await;
    assert_eq!(vb.decrypt("shared", &from_a).await, b"a");
    assert_eq!(va.decrypt("shared", &from_b).await, b"b");
    for _ in 0..2 {
        va.encrypt("shared", b"x").await;
        vb.encrypt("shared", b"x").await;
    }
    // 3 + 3 = 6 = the budget: flushed by both replicas at once, one new version.
    let (sa, sb) = (&a.server.state, &b.server.state);
    futures::join!(
        sesame::server::transit::budget::flush(sa),
        sesame::server::transit::budget::flush(sb)
    );
    // Read from the store: a replica's cached copy of the key is up to 5 s old.
    let key = sa
        .store
        .transit_key(
            &a.server.state.store.org_by_name("acme").await.unwrap().unwrap().id,
            "transit",
            "shared",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (key.key.latest_version, key.versions.len()),
        (2, 2),
        "one new version, not two"
    );
    assert_eq!(key.versions[0].encryptions, 6);
    // The replica that rotated forgot its copy; the other one is at most 5 s behind, and both decrypt either version.
    let v2 = match va.encrypt("shared", b"new").await {
        ct if ct.starts_with("vault:v2:") => ct,
        _ => vb.encrypt("shared", b"new").await,
    };
    assert!(v2.starts_with("vault:v2:"), "{v2}");
    assert_eq!(va.decrypt("shared", &v2).await, b"new");
    assert_eq!(vb.decrypt("shared", &v2).await, b"new");
    assert_eq!(vb.decrypt("shared", &from_a).await, b"a");
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

/// Transit keys live in the org's key hierarchy: after the org's DEKs move to the org's own KEK (and the old wraps
/// are retired), a restarted server still reads every version and decrypts what it encrypted before.
#[tokio::test]
async fn an_org_kek_migration_carries_transit_keys() {
    let dir = support::temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let v = Vault::sesame(&srv, &srv.token);
    v.ok("transit/keys/m", json!({})).await;
    v.ok("transit/keys/m/rotate", json!({})).await;
    let old = v
        .ok(
            "transit/encrypt/m",
            json!({"plaintext": b64(b"before"), "key_version": 1}),
        )
        .await["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, kek) = srv
        .post(
            "/api/sesame/v1/orgs/acme/keks",
            &json!({"uri": "local://acme-own", "default": true}),
        )
        .await;
    assert_eq!(status, 201, "{kek}");
    let (status, job) = srv
        .post(
            "/api/sesame/v1/orgs/acme/kek-migrations",
            &json!({"from": "local://default", "to": "local://acme-own"}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let mut done = false;
    for _ in 0..400 {
        let m = srv.server.state.store.migration(&id).await.unwrap().unwrap();
        if m.state == sesame::store::MigrationState::Done {
            // The org's one DEK so far is its transit DEK (no stack or environment was made).
            assert_eq!((m.total, m.migrated), (1, 1), "{m:?}");
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(done, "the migration did not finish");
    for step in ["verify", "retire"] {
        let (status, answer) = srv
            .post(
                &format!("/api/sesame/v1/orgs/acme/kek-migrations/{id}/{step}"),
                &json!({}),
            )
            .await;
        assert_eq!(status, 200, "{step}: {answer}");
    }
    let token = srv.token.clone();
    srv.stop().await;
    let srv = TestServer::start(support::config(dir.path(), None), Some(token))
        .await
        .unwrap();
    let v = Vault::sesame(&srv, &srv.token);
    assert_eq!(v.decrypt("m", &old).await, b"before");
    let (_, info) = v.get("transit/keys/m").await;
    assert_eq!(info["data"]["latest_version"], 2);
    srv.stop().await;
}
