//! Open sessions whose id carries them: an id altered in any byte, used by another token or at another environment,
//! expired, or read after the opener lost the right answers exactly like a missing one; a session re-derives its
//! values from its pinned revisions when the cache has dropped them, on this server or another sharing the
//! database; sessions stored whole by earlier versions still read; what is stored per session set is one sealed
//! row, swept when the last session that may name it expires.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::esc::{Esc, Resp};
use crate::support::{self, TestServer, on_both};

const BASE_YAML: &str = "values:\n  shared: from-base\n  token:\n    fn::secret: base-secret-1\n";
const APP_YAML: &str =
    "imports:\n  - svc/base\nvalues:\n  greeting: hello ${shared}\n  password:\n    fn::secret: app-secret-1\n";

async fn setup(c: &Esc<'_>) {
    for name in ["base", "app"] {
        assert_eq!(c.create("acme", "svc", name).await.status, 200);
    }
    for (name, yaml) in [("base", BASE_YAML), ("app", APP_YAML)] {
        let r = c.patch(&format!("/acme/svc/{name}"), yaml).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

async fn open_id(c: &Esc<'_>, path: &str) -> String {
    let r = c.call("POST", &format!("{path}/open?duration=1h"), None, &[]).await;
    assert_eq!(r.status, 200, "open {path}: {}", r.text);
    r.json()["id"].as_str().expect("session id").to_owned()
}

async fn read(c: &Esc<'_>, path: &str, id: &str) -> Resp {
    c.call("GET", &format!("{path}/open/{id}"), None, &[]).await
}

fn values(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    crate::esc::plain(&json!({"value": r.json()["properties"]}))
}

/// The answer to an id that names nothing, of the same length as a real one.
async fn missing(c: &Esc<'_>, path: &str, len: usize) -> Resp {
    let mut raw = vec![1u8];
    raw.extend((0..len - 1).map(|i| (i * 37 + 11) as u8));
    read(c, path, &URL_SAFE_NO_PAD.encode(raw)).await
}

fn same(a: &Resp, b: &Resp) -> bool {
    a.status == b.status && a.text == b.text
}

async fn refusals_look_like_a_missing_session(s: &TestServer) {
    let c = Esc::admin(s);
    setup(&c).await;
    let app = "/acme/svc/app";
    let id = open_id(&c, app).await;
    assert!(id.len() <= 256, "{} characters", id.len());
    assert!(
        id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{id}"
    );
    let want = json!({"greeting": "hello from-base", "password": "app-secret-1", "shared": "from-base", "token": "base-secret-1"});
    assert_eq!(values(&read(&c, app, &id).await), want);
    // The id reveals nothing of what it carries.
    assert!(!id.contains("svc") && !id.contains("app"), "{id}");

    let raw = URL_SAFE_NO_PAD.decode(&id).unwrap();
    let nothing = missing(&c, app, raw.len()).await;
    assert_eq!(nothing.status, 404, "{}", nothing.text);

    // Every byte altered.
    for i in 0..raw.len() {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        let r = read(&c, app, &URL_SAFE_NO_PAD.encode(&bad)).await;
        assert!(same(&r, &nothing), "byte {i} altered: {} {}", r.status, r.text);
    }
    // Other forms of the text: cut, lengthened, padded, another alphabet, too long, a stored session's form.
    // (A '/' would name another route: only '+' is kept of the standard alphabet's own characters.)
    let std_alphabet = base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(&raw)
        .replace('/', "+");
    for bad in [
        id[..id.len() - 1].to_owned(),
        format!("{id}A"),
        format!("{id}=="),
        std_alphabet,
        "A".repeat(300),
        "0123456789abcdef0123456789abcdef".to_owned(),
        "%C3%A9t%C3%A9".to_owned(),
    ] {
        if bad == id {
            continue;
        }
        let r = read(&c, app, &bad).await;
        assert!(same(&r, &nothing), "{bad}: {} {}", r.status, r.text);
    }

    // At another environment of the same org: no such session there.
    let r = read(&c, "/acme/svc/base", &id).await;
    assert!(same(&r, &nothing), "{} {}", r.status, r.text);

    // Another token, even an admin's: the id is bound to the token that opened it.
    let (status, body) = s.add_member("acme", "peer", "admin").await;
    assert!(status < 300, "{body}");
    let peer = Esc {
        s,
        token: body["token"].as_str().unwrap().to_owned(),
    };
    let r = read(&peer, app, &id).await;
    assert!(same(&r, &nothing), "another token: {} {}", r.status, r.text);
    // The peer's own session reads for the peer only.
    let peer_id = open_id(&peer, app).await;
    assert_eq!(values(&read(&peer, app, &peer_id).await), want);
    assert!(same(&read(&c, app, &peer_id).await, &nothing));
}
on_both!(
    refusals_look_like_a_missing_session,
    refusals_look_like_a_missing_session_on_sqlite,
    refusals_look_like_a_missing_session_on_postgres
);

/// Grants eve `role` on `svc/<env>`.
async fn grant_eve(admin: &Esc<'_>, env: &str, role: &str) {
    let grant = json!({"subject": "user:eve", "project": "svc", "environment": env, "role": role});
    let r = admin
        .call(
            "PUT",
            "/api/sesame/v1/orgs/acme/roles",
            Some(&grant.to_string()),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert!(r.status < 300, "grant {role} on {env}: {} {}", r.status, r.text);
}

async fn expiry_and_lost_rights(s: &TestServer, clock: &sesame::clock::ManualClock) {
    let c = Esc::admin(s);
    setup(&c).await;
    let app = "/acme/svc/app";
    let (status, body) = s.add_member("acme", "eve", "none").await;
    assert!(status < 300, "{body}");
    let eve = Esc {
        s,
        token: body["token"].as_str().unwrap().to_owned(),
    };
    for env in ["app", "base"] {
        grant_eve(&c, env, "opener").await;
    }
    let id = open_id(&eve, app).await;
    assert_eq!(read(&eve, app, &id).await.status, 200);
    let nothing = missing(&eve, app, URL_SAFE_NO_PAD.decode(&id).unwrap().len()).await;

    // Eve loses the right to open an import: the session stops answering, like a missing one.
    grant_eve(&c, "base", "none").await;
    let r = read(&eve, app, &id).await;
    assert!(same(&r, &nothing), "lost the import: {} {}", r.status, r.text);
    // And back.
    grant_eve(&c, "base", "opener").await;
    assert_eq!(read(&eve, app, &id).await.status, 200);

    // Eve loses every right on the environment itself: it is hidden from her, so 404.
    grant_eve(&c, "app", "none").await;
    let r = read(&eve, app, &id).await;
    assert_eq!(r.status, 404, "{}", r.text);
    grant_eve(&c, "app", "opener").await;
    assert_eq!(read(&eve, app, &id).await.status, 200);

    // Expiry: readable to its last millisecond, then like a missing one.
    let r = eve.call("POST", &format!("{app}/open?duration=500ms"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let short = r.json()["id"].as_str().unwrap().to_owned();
    clock.advance(Duration::from_millis(499));
    assert_eq!(read(&eve, app, &short).await.status, 200);
    clock.advance(Duration::from_millis(1));
    let r = read(&eve, app, &short).await;
    assert!(same(&r, &nothing), "expired: {} {}", r.status, r.text);
}

#[tokio::test]
async fn expired_sessions_and_lost_rights_are_refused_on_sqlite() {
    let dir = support::temp_dir();
    let mut cfg = support::config(dir.path(), None);
    let clock = support::manual_clock(&mut cfg);
    let s = TestServer::start(cfg, None).await.unwrap();
    expiry_and_lost_rights(&s, &clock).await;
    s.stop().await;
}

#[tokio::test]
async fn expired_sessions_and_lost_rights_are_refused_on_postgres() {
    support::with_postgres_url(async |url| {
        let dir = support::temp_dir();
        let mut cfg = support::config(dir.path(), url);
        let clock = support::manual_clock(&mut cfg);
        let s = TestServer::start(cfg, None).await.unwrap();
        expiry_and_lost_rights(&s, &clock).await;
        s.stop().await;
    })
    .await;
}

/// Drops everything this server has evaluated, as a restart or another replica would see it.
fn forget_evaluations(s: &TestServer) {
    s.server.state.eval_cache.invalidate_all();
    s.server.state.doc_cache.invalidate_all();
}

async fn cold_sessions_rederive_their_pinned_revisions(s: &TestServer) {
    let c = Esc::admin(s);
    setup(&c).await;
    let app = "/acme/svc/app";
    let id = open_id(&c, app).await;
    let before = values(&read(&c, app, &id).await);
    assert_eq!(before["token"], "base-secret-1");

    // New revisions of the root and of the import: the session keeps what it opened, warm or cold.
    let r = c
        .patch("/acme/svc/base", &BASE_YAML.replace("base-secret-1", "base-secret-2"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.patch(app, &APP_YAML.replace("app-secret-1", "app-secret-2")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(values(&read(&c, app, &id).await), before);
    forget_evaluations(s);
    let cold = read(&c, app, &id).await;
    assert_eq!(values(&cold), before);
    // Byte for byte the same answer (traces included) as when it was warm.
    forget_evaluations(s);
    let again = read(&c, app, &id).await;
    assert_eq!(cold.text, again.text);
    // A property, cold.
    forget_evaluations(s);
    let r = c
        .call("GET", &format!("{app}/open//{id}?property=token"), None, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["value"], "base-secret-1");

    // A new open sees the new revisions.
    let new_id = open_id(&c, app).await;
    let after = values(&read(&c, app, &new_id).await);
    assert_eq!(
        (after["token"].as_str(), after["password"].as_str()),
        (Some("base-secret-2"), Some("app-secret-2"))
    );

    // Retracting the import's pinned revision: this server stops serving it at once (the replacement answers).
    let r = c
        .post(
            "/acme/svc/base/versions/2/retract",
            r#"{"replacement": 3, "reason": "leaked"}"#,
        )
        .await;
    assert!(r.status < 300, "{} {}", r.status, r.text);
    let retracted = values(&read(&c, app, &id).await);
    assert_eq!(retracted["token"], "base-secret-2", "a retracted revision was served");

    // An import deleted: a cold session cannot be re-derived and answers like a missing one.
    let r = c.call("DELETE", "/acme/svc/base", None, &[]).await;
    assert!(r.status < 300, "{} {}", r.status, r.text);
    forget_evaluations(s);
    let nothing = missing(&c, app, URL_SAFE_NO_PAD.decode(&id).unwrap().len()).await;
    let r = read(&c, app, &id).await;
    assert!(same(&r, &nothing), "deleted import: {} {}", r.status, r.text);
}
on_both!(
    cold_sessions_rederive_their_pinned_revisions,
    cold_sessions_rederive_their_pinned_revisions_on_sqlite,
    cold_sessions_rederive_their_pinned_revisions_on_postgres
);

async fn pins_are_stored_once_and_swept(s: &TestServer) {
    let c = Esc::admin(s);
    setup(&c).await;
    let app = "/acme/svc/app";
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(open_id(&c, app).await);
    }
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "ids repeat");
    // An unsaved document: its text is stored (sealed) with its pins, once.
    let doc = "imports:\n  - svc/base\nvalues:\n  mine:\n    fn::secret: yaml-open-plaintext-7\n";
    let mut anon = Vec::new();
    for _ in 0..3 {
        let r = c.post("/acme/yaml/open?duration=2h", doc).await;
        assert_eq!(r.status, 200, "{}", r.text);
        anon.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    forget_evaluations(s);
    let r = c.call("GET", &format!("/acme/yaml/open/{}", anon[0]), None, &[]).await;
    assert_eq!(values(&r)["mine"], "yaml-open-plaintext-7");
    // The anonymous session is bound to its token too.
    let (status, body) = s.add_member("acme", "peer", "admin").await;
    assert!(status < 300, "{body}");
    let peer = Esc {
        s,
        token: body["token"].as_str().unwrap().to_owned(),
    };
    let r = peer
        .call("GET", &format!("/acme/yaml/open/{}", anon[0]), None, &[])
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Two pin sets in all (the environment's and the document's); nothing is left once every session expired.
    let store = &s.server.state.store;
    let now = s.server.state.clock.now_ms();
    assert_eq!(store.purge_sessions(now).await.unwrap(), 0, "a live pin set was purged");
    let later = now + Duration::from_secs(26 * 3600).as_millis() as i64;
    assert_eq!(store.purge_sessions(later).await.unwrap(), 2);
    forget_evaluations(s);
    let r = read(&c, app, &ids[0]).await;
    assert_eq!(r.status, 404, "{}", r.text);
}
on_both!(
    pins_are_stored_once_and_swept,
    pins_are_stored_once_and_swept_on_sqlite,
    pins_are_stored_once_and_swept_on_postgres
);

#[tokio::test]
async fn stored_pins_hold_no_plaintext() {
    let dir = support::temp_dir();
    let s = TestServer::sqlite(dir.path()).await;
    let c = Esc::admin(&s);
    setup(&c).await;
    let marker = "yaml-open-plaintext-marker-2941";
    let doc = format!("values:\n  mine:\n    fn::secret: {marker}\n  other: unsealed-value-{marker}\n");
    let r = c.post("/acme/yaml/open?duration=2h", &doc).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = open_id(&c, "/acme/svc/app").await;
    assert_eq!(read(&c, "/acme/svc/app", &id).await.status, 200);
    s.stop().await;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            for needle in [marker, "svc/base"] {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(format!("{}: {needle}", path.display()));
                }
            }
        }
    }
    // "svc/base" is in the revisions (plain text by design), so it must be found: the scan works.
    assert!(found.iter().any(|f| f.ends_with("svc/base")), "{found:?}");
    assert!(
        !found.iter().any(|f| f.ends_with(marker)),
        "plaintext stored: {found:?}"
    );
}

#[tokio::test]
async fn a_session_opened_on_one_server_reads_on_another_sharing_postgres() {
    let Some(db) = support::PgDb::create().await else {
        return;
    };
    let dir = support::temp_dir();
    let a = TestServer::start(support::config(dir.path(), Some(&db.url)), None)
        .await
        .unwrap();
    let c = Esc::admin(&a);
    setup(&c).await;
    let app = "/acme/svc/app";
    let id = open_id(&c, app).await;
    let want = values(&read(&c, app, &id).await);
    let anon = c.post("/acme/yaml/open", "imports:\n  - svc/base\n").await;
    assert_eq!(anon.status, 200, "{}", anon.text);
    let anon = anon.json()["id"].as_str().unwrap().to_owned();

    let replica_dir = support::temp_dir();
    std::fs::copy(support::key_file(dir.path()), support::key_file(replica_dir.path())).unwrap();
    let b = TestServer::start(
        support::config(replica_dir.path(), Some(&db.url)),
        Some(a.token.clone()),
    )
    .await
    .unwrap();
    let cb = Esc::admin(&b);
    let r = read(&cb, app, &id).await;
    assert_eq!(values(&r), want);
    assert_eq!(r.text, read(&c, app, &id).await.text, "the replicas answer differently");
    let r = cb.call("GET", &format!("/acme/yaml/open/{anon}"), None, &[]).await;
    assert_eq!(values(&r)["token"], "base-secret-1");
    // And the other way round.
    let id_b = open_id(&cb, app).await;
    assert_eq!(values(&read(&c, app, &id_b).await), want);
    b.stop().await;
    a.stop().await;
    db.drop_db().await;
}

async fn stored_sessions_still_read(s: &TestServer) {
    use sesame::core::keys::{Scope, open_session_aad};
    let c = Esc::admin(s);
    setup(&c).await;
    let app_state = &s.server.state;
    let org = app_state.org_by_name("acme").await.unwrap().unwrap();
    let env = app_state
        .store
        .env_by_name(&org.id, "svc", "app")
        .await
        .unwrap()
        .unwrap();
    // A session as earlier versions stored it: the rendered answer sealed under the environment's DEK.
    let body = br#"{"properties":{"old":{"value":"stored-whole","secret":false}}}"#;
    let id = "00112233445566778899aabbccddeeff";
    let sealed = app_state
        .keyring
        .seal(
            &Scope::Environment {
                org_id: org.id.clone(),
                env_id: env.id.clone(),
            },
            &open_session_aad(&org.id, &env.id, id),
            body,
        )
        .await
        .unwrap();
    let now = app_state.clock.now_ms();
    let event = app_state.event(
        None,
        "test",
        Some(&org.id),
        sesame::core::audit::AuditAction::EnvOpen,
        "acme/svc/app",
    );
    app_state
        .record_with_session(
            event,
            sesame::store::envs::SessionRecord {
                id: id.to_owned(),
                env_id: env.id.clone(),
                org_id: org.id.clone(),
                sealed,
                created_ms: now,
                expires_ms: now + 60_000,
            },
        )
        .await
        .unwrap();
    let r = read(&c, "/acme/svc/app", id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text.as_bytes(), body);
    let r = c
        .call("GET", &format!("/acme/svc/app/open//{id}?property=old"), None, &[])
        .await;
    assert_eq!(r.json()["value"], "stored-whole", "{}", r.text);
    // Only at its own environment.
    assert_eq!(read(&c, "/acme/svc/base", id).await.status, 404);
}
on_both!(
    stored_sessions_still_read,
    stored_sessions_still_read_on_sqlite,
    stored_sessions_still_read_on_postgres
);
