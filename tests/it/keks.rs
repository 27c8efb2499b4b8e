//! Bring your own key: registering org KEKs through the admin API, new DEKs going to the org's default KEK, and
//! start-up refusing when a registered KEK cannot be opened.

use serde_json::{Value, json};

use crate::support::{TestServer, config, temp_dir};

async fn get(srv: &TestServer, path: &str) -> (u16, Value) {
    let resp = srv
        .http
        .get(format!("{}{path}", srv.base))
        .header("Authorization", format!("token {}", srv.token))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_org_kek_wraps_the_orgs_new_deks_and_must_be_present_at_start() {
    let dir = temp_dir();
    let srv = TestServer::start(config(dir.path(), None), None).await.unwrap();
    let (_, before) = srv
        .post("/api/stacks/acme/web/old/encrypt", &json!({"plaintext": "b2xk"}))
        .await;

    // Register an org KEK as the org's default: the key file is created, the KEK proven, then registered.
    let (status, kek) = srv
        .post(
            "/api/sesame/v1/keks",
            &json!({"uri": "local://acme-own", "org": "acme", "default": true}),
        )
        .await;
    assert_eq!(status, 201, "{kek}");
    assert_eq!(
        (kek["org"].as_str(), kek["default"].as_bool()),
        (Some("acme"), Some(true))
    );
    assert!(dir.path().join("kek-acme-own.key").exists());
    let kek_id = kek["id"].as_str().unwrap().to_owned();

    // Registering it twice, a malformed URI, a URI with a PIN, an unknown org: clear 4xx, nothing registered.
    for (body, want) in [
        (json!({"uri": "local://acme-own", "org": "acme"}), 409),
        (json!({"uri": "nope://x"}), 400),
        (json!({"uri": "pkcs11:token=t;object=k?pin-value=9876"}), 400),
        (json!({"uri": "local://x", "org": "nobody"}), 404),
    ] {
        let (status, v) = srv.post("/api/sesame/v1/keks", &body).await;
        assert_eq!(
            (status, v["code"].as_u64()),
            (want, Some(u64::from(want))),
            "{body} -> {v}"
        );
        assert!(!v.to_string().contains("9876"), "a PIN must never be echoed: {v}");
    }
    let (_, list) = get(&srv, "/api/sesame/v1/keks").await;
    assert_eq!(list["keks"].as_array().unwrap().len(), 2, "{list}");
    let (_, org_list) = get(&srv, "/api/sesame/v1/keks?org=acme").await;
    assert_eq!(org_list["keks"][0]["id"], json!(kek_id));

    // A new stack's DEK is wrapped by the org KEK; the older stack keeps its system-KEK DEK and still decrypts.
    let (status, _) = srv
        .post("/api/stacks/acme/web/new/encrypt", &json!({"plaintext": "bmV3"}))
        .await;
    assert_eq!(status, 200);
    let store = srv.server.state.store.clone();
    let org = store.org_by_name("acme").await.unwrap().unwrap();
    let new_dek = store
        .current_dek(&format!("stack:{}:web/new", org.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new_dek.wraps[0].kek_id, kek_id);
    let old_dek = store
        .current_dek(&format!("stack:{}:web/old", org.id))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(old_dek.wraps[0].kek_id, kek_id);
    let (status, v) = srv
        .post(
            "/api/stacks/acme/web/old/decrypt",
            &json!({"ciphertext": before["ciphertext"]}),
        )
        .await;
    assert_eq!((status, v["plaintext"].as_str()), (200, Some("b2xk")));

    // The default cannot be disabled; a non-default can, and then cannot become default.
    let (status, _) = srv
        .post(&format!("/api/sesame/v1/keks/{kek_id}/disable"), &json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, second) = srv
        .post(
            "/api/sesame/v1/keks",
            &json!({"uri": "local://acme-two", "org": "acme"}),
        )
        .await;
    assert_eq!(status, 201);
    let second_id = second["id"].as_str().unwrap().to_owned();
    let (status, v) = srv
        .post(&format!("/api/sesame/v1/keks/{second_id}/disable"), &json!({}))
        .await;
    assert_eq!((status, v["state"].as_str()), (200, Some("disabled")));
    let (status, _) = srv
        .post(&format!("/api/sesame/v1/keks/{second_id}/default"), &json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, _) = srv.post("/api/sesame/v1/keks/no-such-id/default", &json!({})).await;
    assert_eq!(status, 404);

    // Only authenticated callers get anywhere.
    let (status, _) = srv
        .post_as("/api/sesame/v1/keks", &json!({"uri": "local://z"}), None)
        .await;
    assert_eq!(status, 401);

    let token = srv.token.clone();
    srv.stop().await;

    // Restart: every registered KEK is opened again, and the org's secrets decrypt.
    let srv = TestServer::start(config(dir.path(), None), Some(token.clone()))
        .await
        .unwrap();
    let (status, _) = srv
        .post("/api/stacks/acme/web/new/encrypt", &json!({"plaintext": "eA=="}))
        .await;
    assert_eq!(status, 200);
    srv.stop().await;

    // Without the org's key file, the start is refused and names that KEK (no silent fallback).
    std::fs::remove_file(dir.path().join("kek-acme-own.key")).unwrap();
    let err = TestServer::start(config(dir.path(), None), Some(token))
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("local://acme-own"), "{err}");
    assert!(!dir.path().join("kek-acme-own.key").exists());
}

/// A TCP listener on loopback counting the connections it gets (closing each at once).
async fn counting_listener() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(sock);
        }
    });
    (origin, count)
}

/// KEK registration reaches only what the operator allowed at start-up: a PKCS#11 module, a PIN file or a KMS
/// endpoint outside the allow-lists is refused with 400, naming the flag, before anything is loaded, read or
/// contacted; and a KEK already registered that reaches outside them stops the next start.
#[tokio::test]
async fn kek_uris_reach_only_what_the_operator_allowed() {
    let dir = temp_dir();
    let secrets = temp_dir();
    let pin_file = secrets.path().join("pin");
    std::fs::write(&pin_file, "PIN-CONTENTS-4711\n").unwrap();
    let allowed_module = secrets.path().join("allowed-module.so");
    let (endpoint, connections) = counting_listener().await;
    let (allowed_endpoint, allowed_connections) = counting_listener().await;
    let mut cfg = config(dir.path(), None);
    cfg.instance.kek_allow.pkcs11_modules = vec![allowed_module.clone()];
    cfg.instance.kek_allow.pkcs11_pin_files = vec![pin_file.clone()];
    cfg.instance.kek_allow.endpoints = vec![format!("{allowed_endpoint}/")];
    let srv = TestServer::start(cfg, None).await.unwrap();
    let other_pin = secrets.path().join("other-pin");
    std::fs::write(&other_pin, "OTHER-PIN-0815\n").unwrap();
    let gcp = "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k";
    for (uri, flag) in [
        (
            "pkcs11:token=t;object=k?module-path=/tmp/sesame-no-such-module.so".to_owned(),
            "--pkcs11-module",
        ),
        (
            format!(
                "pkcs11:token=t;object=k?module-path={}/../allowed-module.so",
                secrets.path().join("x").display()
            ),
            "--pkcs11-module",
        ),
        (
            format!(
                "pkcs11:token=t;object=k?module-path={}&pin-source=file:{}",
                allowed_module.display(),
                other_pin.display()
            ),
            "--pkcs11-pin-file",
        ),
        (
            format!(
                "pkcs11:token=t;object=k?module-path={}&pin-source=file:/etc/shadow",
                allowed_module.display()
            ),
            "--pkcs11-pin-file",
        ),
        (
            format!("awskms://alias/k?region=eu-west-1&endpoint={endpoint}"),
            "--kms-endpoint",
        ),
        (format!("{gcp}?endpoint={endpoint}"), "--kms-endpoint"),
        (
            format!("{gcp}?endpoint=https://metadata.evil.example"),
            "--kms-endpoint",
        ),
        (
            "azurekeyvault://attacker.vault.azure.net/keys/k".to_owned(),
            "--kms-endpoint",
        ),
    ] {
        let (status, v) = srv.post("/api/sesame/v1/keks", &json!({ "uri": uri })).await;
        assert_eq!((status, v["code"].as_u64()), (400, Some(400)), "{uri} -> {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.contains(flag), "{uri} -> {v}");
        assert!(
            !message.contains("PIN-") && !message.contains("root:"),
            "file contents echoed: {v}"
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused endpoint was contacted"
    );
    let (_, list) = get(&srv, "/api/sesame/v1/keks").await;
    assert_eq!(list["keks"].as_array().unwrap().len(), 1, "nothing registered: {list}");

    // What is allowed gets through the check to the adapter: the allowed module is tried (it is no library here),
    // the allowed endpoint is contacted (it is no KMS).
    let uri = format!(
        "pkcs11:token=t;object=k?module-path={}&pin-source=file:{}",
        allowed_module.display(),
        pin_file.display()
    );
    let (status, v) = srv.post("/api/sesame/v1/keks", &json!({ "uri": uri })).await;
    let message = v["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        status >= 400 && !message.contains("not allowed") && !message.contains("PIN-CONTENTS"),
        "{status} {v}"
    );
    if cfg!(feature = "pkcs11") {
        assert!(message.contains("could not be loaded"), "{v}");
    }
    if cfg!(feature = "aws") {
        #[allow(unsafe_code)]
        // SAFETY (invariant): set before this test's first SDK client reads them; every test that reads them sets
        // the same values.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        }
        let uri = format!("awskms://alias/k?region=eu-west-1&endpoint={allowed_endpoint}");
        let (status, v) = srv.post("/api/sesame/v1/keks", &json!({ "uri": uri })).await;
        assert!(status >= 400 && !v.to_string().contains("not allowed"), "{status} {v}");
        assert!(allowed_connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
    }

    // A registered KEK reaching a module this start does not allow stops the start, before it is opened.
    let store = srv.server.state.store.clone();
    let inserted = store
        .insert_kek(&sesame::store::KekRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: None,
            uri: "pkcs11:token=t;object=old?module-path=/tmp/sesame-registered-earlier.so".into(),
            state: sesame::store::KekState::Active,
            is_default: false,
            created_ms: 1,
        })
        .await
        .unwrap();
    assert_eq!(inserted, sesame::store::Inserted::New);
    let token = srv.token.clone();
    srv.stop().await;
    let err = TestServer::start(config(dir.path(), None), Some(token))
        .await
        .err()
        .expect("must refuse");
    let err = err.to_string();
    assert!(
        err.contains("sesame-registered-earlier.so") && err.contains("--pkcs11-module"),
        "{err}"
    );
}
