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
