//! Rotation schedules and crash-safe, layout-keeping rotations (issue 15), on SQLite and PostgreSQL:
//! - a rotation changes only the rotated states' bytes of the stored definition (comments, flow and block styles,
//!   other secrets kept), seals them, and a second rotation makes `previous` the former `current`;
//! - the schedule API in Pulumi's shapes (create, list, get, update, delete, history) and its refusals (bad cron or
//!   instant, unknown environment, readers);
//! - the server runs due schedules as their creator, audited, and fails (audited) when the creator lost the right;
//! - two servers on one PostgreSQL database never both run a due schedule (the lease);
//! - a real `sesame` process killed by the `rotate-before-write` failpoint loses nothing: after a restart the
//!   environment still opens with its former `current`, and the schedule is retried and succeeds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::ChildGuard;
use crate::esc::{Esc, plain};
use crate::support::{self, PgDb, TestServer, on_both};

const ENV: &str = "/acme/p/app";

const LAYOUT_DOC: &str = "# Top comment: keep me\nvalues:\n  # the database\n  db:\n    host: db.example.com   # trailing comment\n    password:\n      fn::rotate::password:\n        inputs:\n          length: 20     # twenty\n  api: {key: {fn::secret: \"s3cr3t-api\"}, url: \"https://x\"}   # flow with a secret\n  phrase: {fn::rotate::passphrase: {inputs: {}}}  # flow call\n  list:\n    - one\n    - 'two'\n  note: |\n    multi\n    line\n# end\n";

async fn rotate(c: &Esc<'_>, path: &str, body: &str) -> crate::esc::Resp {
    c.call(
        "POST",
        &format!("{path}/rotate"),
        Some(body),
        &[("Content-Type", "application/json")],
    )
    .await
}

async fn definition(c: &Esc<'_>, path: &str) -> String {
    let r = c.call("GET", path, None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
}

async fn opened(c: &Esc<'_>, path: &str) -> Value {
    let v = c.open(path).await;
    let props = v["properties"].as_object().expect("properties").clone();
    Value::Object(props.into_iter().map(|(k, v)| (k, plain(&v))).collect())
}

/// `after` is `before` with one stretch replaced: where it starts, that stretch of `before` and what replaced it.
fn one_change<'a>(before: &'a str, after: &'a str) -> (usize, &'a str, &'a str) {
    let prefix = before.bytes().zip(after.bytes()).take_while(|(a, b)| a == b).count();
    let max_suffix = before.len().min(after.len()) - prefix;
    let suffix = before
        .bytes()
        .rev()
        .zip(after.bytes().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    (
        prefix,
        &before[prefix..before.len() - suffix],
        &after[prefix..after.len() - suffix],
    )
}

async fn layout(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "p", "app").await.status, 200);
    let r = c.patch(ENV, LAYOUT_DOC).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s0 = definition(&c, ENV).await;
    assert!(
        s0.contains("# Top comment: keep me") && !s0.contains("s3cr3t-api"),
        "{s0}"
    );

    // First rotation of one path: a pure insertion of the state, sealed.
    let r = rotate(&c, ENV, r#"{"paths": ["db.password"]}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s1 = definition(&c, ENV).await;
    let (_, removed, added) = one_change(&s0, &s1);
    assert_eq!(removed, "", "only an insertion:\n{s0}\n---\n{s1}");
    assert!(
        added.contains("state:") && added.contains("fn::secret") && added.contains("ciphertext"),
        "{added}"
    );
    let v1 = opened(&c, ENV).await;
    let p1 = v1["db"]["password"]["current"].as_str().expect("current").to_owned();
    assert_eq!(p1.len(), 20);
    assert!(!s1.contains(&p1), "no plaintext stored");
    assert_eq!(v1["api"]["key"], json!("s3cr3t-api"), "{v1}");
    assert_eq!(v1["phrase"], json!({}), "{v1}");

    // The flow call: an insertion inside the flow mapping, which stays flow.
    let r = rotate(&c, ENV, r#"{"paths": ["phrase"]}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s2 = definition(&c, ENV).await;
    let (_, removed, added) = one_change(&s1, &s2);
    assert_eq!(removed, "", "{s1}\n---\n{s2}");
    assert!(
        added.starts_with(", state: {current: {fn::secret: {ciphertext: "),
        "{added}"
    );
    let ph1 = opened(&c, ENV).await["phrase"]["current"]
        .as_str()
        .expect("phrase")
        .to_owned();
    assert!(!s2.contains(&ph1));

    // A second rotation replaces only the state's text; previous is the former current.
    let r = rotate(&c, ENV, r#"{"paths": ["db.password"]}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s3 = definition(&c, ENV).await;
    let (at, removed, added) = one_change(&s2, &s3);
    let before_change = &s2[..at];
    let call = before_change
        .rfind("fn::rotate::password")
        .expect("the call comes first");
    assert!(
        before_change[call..].contains("state:"),
        "the change starts in the state: {before_change}"
    );
    assert!(!removed.contains("inputs") && !removed.contains('#'), "{removed}");
    assert!(added.contains("previous"), "{added}");
    let after_change = &s2[at + removed.len()..];
    assert!(after_change.starts_with(&s3[s3.len() - after_change.len()..]));
    assert!(
        after_change.contains("  api: {key: {fn::secret: {ciphertext: ") && after_change.ends_with("    line\n# end\n")
    );
    let v3 = opened(&c, ENV).await;
    assert_eq!(v3["db"]["password"]["previous"], json!(p1), "{v3}");
    let p2 = v3["db"]["password"]["current"].as_str().unwrap();
    assert_ne!(p2, p1);
    assert!(!s3.contains(p2) && !s3.contains(&p1));
    assert_eq!(v3["phrase"]["current"], json!(ph1));
    assert_eq!(v3["note"], json!("multi\nline\n"));
}

on_both!(layout, layout_sqlite, layout_postgres);

async fn schedules(c: &Esc<'_>) -> Vec<Value> {
    let r = c.call("GET", &format!("{ENV}/schedules"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["schedules"].as_array().expect("schedules").clone()
}

async fn create_schedule(c: &Esc<'_>, path: &str, body: &Value) -> crate::esc::Resp {
    c.call(
        "POST",
        &format!("{path}/schedules"),
        Some(&body.to_string()),
        &[("Content-Type", "application/json")],
    )
    .await
}

const DOC: &str =
    "values:\n  db:\n    password:\n      fn::rotate::password:\n        inputs: {length: 16}\n  user: admin\n";

fn rfc3339_in(d: Duration) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + d.as_millis() as i64;
    sesame::core::timefmt::rfc3339(ms)
}

async fn schedule_api(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "p", "app").await.status, 200);
    assert_eq!(c.patch(ENV, DOC).await.status, 200);

    let r = create_schedule(
        &c,
        ENV,
        &json!({"scheduleCron": "0 0 * * *", "secretRotationRequest": {"environmentPath": ""}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let made = r.json();
    assert_eq!(made["kind"], json!("environment_rotation"));
    assert_eq!(made["scheduleCron"], json!("0 0 * * *"));
    assert!(made.get("scheduleOnce").is_none(), "{made}");
    assert!(
        made["nextExecution"].as_str().unwrap().ends_with("T00:00:00.000Z"),
        "{made}"
    );
    assert_eq!(made["lastExecuted"], json!(""));
    assert_eq!(made["definition"], json!({"environmentPath": ""}));
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(schedules(&c).await, vec![made.clone()]);
    let got = c.call("GET", &format!("{ENV}/schedules/{id}"), None, &[]).await;
    assert_eq!(got.json(), made);

    // Update: a one-time instant replaces the cron; the path changes.
    let once = rfc3339_in(Duration::from_secs(3600));
    let r = c
        .call(
            "PATCH",
            &format!("{ENV}/schedules/{id}"),
            Some(
                &json!({"scheduleOnce": once, "secretRotationRequest": {"environmentPath": "db.password"}}).to_string(),
            ),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let upd = r.json();
    assert!(upd.get("scheduleCron").is_none(), "{upd}");
    assert_eq!(upd["scheduleOnce"], json!(once));
    assert_eq!(upd["nextExecution"], json!(once));
    assert_eq!(upd["definition"], json!({"environmentPath": "db.password"}));
    let h = c.call("GET", &format!("{ENV}/schedules/{id}/history"), None, &[]).await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.json(), json!({"scheduleHistoryEvents": []}));

    // Bad input: a 400 that says why, and nothing made or changed.
    for (body, says) in [
        (json!({"scheduleCron": "61 * * * *"}), "minute"),
        (json!({"scheduleCron": "* * *"}), "5 fields"),
        (json!({"scheduleCron": "0 0 30 2 *"}), "no time"),
        (json!({"scheduleCron": "@every 1m"}), "shorthand"),
        (json!({"scheduleCron": "0 0 * * *", "scheduleOnce": once}), "only one"),
        (json!({}), "exactly one"),
        (json!({"scheduleOnce": "2020-01-01T00:00:00Z"}), "future"),
        (json!({"scheduleOnce": "tomorrow"}), "RFC 3339"),
        (json!({"scheduleOnce": "2030-02-30T00:00:00Z"}), "RFC 3339"),
        (json!({"scheduleCron": 5}), ""),
        (json!({"scheduleCron": "0 0 * * *", "colour": "red"}), ""),
        (
            json!({"scheduleCron": "0 0 * * *", "secretRotationRequest": {"environmentPath": "db..x"}}),
            "environmentPath",
        ),
    ] {
        let r = create_schedule(&c, ENV, &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.text.contains(says), "{body}: {}", r.text);
        let r = c
            .call(
                "PATCH",
                &format!("{ENV}/schedules/{id}"),
                Some(&body.to_string()),
                &[("Content-Type", "application/json")],
            )
            .await;
        assert!(r.status == 400 || body == json!({}), "{body}: {}", r.text);
    }
    let all = schedules(&c).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["scheduleOnce"], json!(once));

    // Unknown environment and schedule.
    let r = create_schedule(&c, "/acme/p/nonesuch", &json!({"scheduleCron": "0 0 * * *"})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = c.call("GET", &format!("{ENV}/schedules/nonesuch"), None, &[]).await;
    assert_eq!(r.status, 404, "{}", r.text);

    // A reader sees schedules but may not make, change or delete one.
    let (status, body) = s.add_member("acme", "reader", "reader").await;
    assert!(status == 200 || status == 201, "{body}");
    let m = Esc {
        s,
        token: body["token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(schedules(&m).await.len(), 1);
    let r = create_schedule(&m, ENV, &json!({"scheduleCron": "0 0 * * *"})).await;
    assert!(r.status == 403 || r.status == 404, "{}: {}", r.status, r.text);
    let r = m.call("DELETE", &format!("{ENV}/schedules/{id}"), None, &[]).await;
    assert!(r.status == 403 || r.status == 404, "{}: {}", r.status, r.text);
    assert_eq!(schedules(&c).await.len(), 1);

    // Delete; then it is gone. Every change is audited.
    let r = c.call("DELETE", &format!("{ENV}/schedules/{id}"), None, &[]).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(schedules(&c).await.is_empty());
    let r = c.call("DELETE", &format!("{ENV}/schedules/{id}"), None, &[]).await;
    assert_eq!(r.status, 404);
    let audit = s.export("/api/sesame/v1/orgs/acme/audit").await;
    for action in ["env.schedule.create", "env.schedule.update", "env.schedule.delete"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }

    // Deleting the environment deletes its schedules: a new environment of that name has none.
    let r = create_schedule(&c, ENV, &json!({"scheduleCron": "@daily"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.call("DELETE", ENV, None, &[]).await;
    assert!(r.status < 300, "{}: {}", r.status, r.text);
    assert_eq!(c.create("acme", "p", "app").await.status, 200);
    assert!(schedules(&c).await.is_empty());
}

on_both!(schedule_api, schedule_api_sqlite, schedule_api_postgres);

/// A server whose schedule runner ticks every 50 ms.
fn fast_config(dir: &Path, db: Option<&str>) -> sesame::server::ServeConfig {
    let mut config = support::config(dir, db);
    config.schedules.tick = Duration::from_millis(50);
    config.schedules.lease = Duration::from_secs(5);
    config
}

async fn history(c: &Esc<'_>, env: &str, id: &str) -> Vec<Value> {
    let r = c.call("GET", &format!("{env}/schedules/{id}/history"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["scheduleHistoryEvents"].as_array().unwrap().clone()
}

async fn wait_for_runs(c: &Esc<'_>, env: &str, id: &str, n: usize) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let h = history(c, env, id).await;
        if h.len() >= n {
            return h;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no run of {id} after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scheduled_runs(db: Option<&str>) {
    let dir = support::temp_dir();
    let s = TestServer::start(fast_config(dir.path(), db), None).await.unwrap();
    let c = Esc::admin(&s);
    assert_eq!(c.create("acme", "p", "app").await.status, 200);
    assert_eq!(c.patch(ENV, DOC).await.status, 200);

    // A one-time schedule runs once, as its creator, and writes a revision.
    let r = create_schedule(
        &c,
        ENV,
        &json!({"scheduleOnce": rfc3339_in(Duration::from_millis(300))}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let h = wait_for_runs(&c, ENV, &id, 1).await;
    assert_eq!(h[0]["result"], json!("succeeded"), "{h:?}");
    let rev = h[0]["version"].as_i64().unwrap();
    assert!(rev >= 3, "{h:?}");
    let v = opened(&c, ENV).await;
    let first = v["db"]["password"]["current"].as_str().expect("rotated").to_owned();
    let got = c.call("GET", &format!("{ENV}/schedules/{id}"), None, &[]).await.json();
    assert_eq!(got["nextExecution"], json!(""), "{got}");
    assert!(!got["lastExecuted"].as_str().unwrap().is_empty(), "{got}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(history(&c, ENV, &id).await.len(), 1, "a one-time schedule runs once");

    // A schedule made by a member who then loses write: the run fails, audited, and writes nothing.
    let (status, body) = s.add_member("acme", "eddie", "editor").await;
    assert!(status == 200 || status == 201, "{body}");
    let m = Esc {
        s: &s,
        token: body["token"].as_str().unwrap().to_owned(),
    };
    let r = create_schedule(
        &m,
        ENV,
        &json!({"scheduleOnce": rfc3339_in(Duration::from_millis(600))}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id2 = r.json()["id"].as_str().unwrap().to_owned();
    let r = c
        .call(
            "PATCH",
            "/api/sesame/v1/orgs/acme/members/eddie",
            Some(r#"{"role": "reader"}"#),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert!(r.status < 300, "{}: {}", r.status, r.text);
    let h = wait_for_runs(&c, ENV, &id2, 1).await;
    assert!(h[0]["result"].as_str().unwrap().starts_with("failed: "), "{h:?}");
    assert_eq!(h[0]["version"], json!(0));
    let v = opened(&c, ENV).await;
    assert_eq!(v["db"]["password"]["current"], json!(first), "nothing written");
    let audit = s.export("/api/sesame/v1/orgs/acme/audit").await;
    let runs: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("env.rotate") && l.contains("schedule"))
        .collect();
    assert_eq!(runs.len(), 2, "{audit}");
    assert!(runs.iter().any(|l| l.contains(&id) && l.contains("\"ok\"")), "{runs:?}");
    assert!(
        runs.iter().any(|l| l.contains(&id2) && l.contains("\"failed\"")),
        "{runs:?}"
    );
    assert!(!audit.contains(&first));
    s.stop().await;
}

#[tokio::test]
async fn scheduled_runs_sqlite() {
    scheduled_runs(None).await;
}

#[tokio::test]
async fn scheduled_runs_postgres() {
    support::with_postgres_url(scheduled_runs).await;
}

/// Two servers on one PostgreSQL database, both polling every 50 ms: each of eight due schedules runs exactly once.
#[tokio::test]
async fn one_replica_runs_a_due_schedule() {
    let Some(db) = PgDb::create().await else { return };
    let (d1, d2) = (support::temp_dir(), support::temp_dir());
    let a = TestServer::start(fast_config(d1.path(), Some(&db.url)), None)
        .await
        .unwrap();
    std::fs::copy(support::key_file(d1.path()), support::key_file(d2.path())).expect("share the system KEK");
    let b = TestServer::start(fast_config(d2.path(), Some(&db.url)), Some(a.token.clone()))
        .await
        .unwrap();
    let c = Esc::admin(&a);
    let at = rfc3339_in(Duration::from_millis(1500));
    let mut ids = Vec::new();
    for i in 0..8 {
        let env = format!("/acme/p/e{i}");
        assert_eq!(c.create("acme", "p", &format!("e{i}")).await.status, 200);
        assert_eq!(c.patch(&env, DOC).await.status, 200);
        let r = create_schedule(&c, &env, &json!({"scheduleOnce": at})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        ids.push((env, r.json()["id"].as_str().unwrap().to_owned()));
    }
    for (env, id) in &ids {
        let h = wait_for_runs(&c, env, id, 1).await;
        assert_eq!(h[0]["result"], json!("succeeded"), "{h:?}");
    }
    // Give a second runner every chance to run one again, and let the replicas' cached environment records (1 s on
    // PostgreSQL) see the other's writes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cb = Esc::admin(&b);
    for (env, id) in &ids {
        assert_eq!(history(&cb, env, id).await.len(), 1, "{env}");
        let r = c.call("GET", &format!("{env}/versions"), None, &[]).await;
        let revs = r.json().as_array().unwrap().len();
        assert_eq!(revs, 3, "create, patch, one rotation: {}", r.text);
    }
    let audit = a.export("/api/sesame/v1/orgs/acme/audit").await;
    assert_eq!(audit.lines().filter(|l| l.contains("env.rotate")).count(), 8, "{audit}");
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `sesame serve` on `data`, with `SESAME_FAILPOINT` set to `failpoint` (if any); waits until it answers.
async fn serve(data: &Path, failpoint: Option<&str>) -> (ChildGuard, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sesame"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SESAME_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["serve", "--listen", &listen, "--org", "acme", "--data-dir"])
        .arg(data)
        .env("SESAME_SCHEDULE_TICK_MS", "50")
        .env("SESAME_SCHEDULE_LEASE_MS", "1000")
        .env("SESAME_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.join("stderr.log")).expect("log file"));
    if let Some(f) = failpoint {
        cmd.env("SESAME_FAILPOINT", f);
    }
    let mut child = ChildGuard::spawn(cmd, "sesame serve").expect("spawn sesame serve");
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.child().try_wait().expect("status") {
            panic!("sesame serve exited early: {status}");
        }
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return (child, base);
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "server not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client of a server run as a child process.
async fn call(base: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{base}/api/esc/environments{path}"))
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_revision_write_loses_nothing() {
    sesame::tls::install_crypto_provider();
    let dir = support::temp_dir();
    let data = dir.path();
    // 1. A first rotation (current = P1) and a schedule due in 2 s; stopped before it runs.
    let (server, base) = serve(data, None).await;
    let token = std::fs::read_to_string(data.join("admin.token"))
        .expect("admin token")
        .trim()
        .to_owned();
    let (st, v) = call(
        &base,
        &token,
        "POST",
        "/acme",
        Some(json!({"project": "p", "name": "app"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let r = reqwest::Client::new()
        .patch(format!("{base}/api/esc/environments{ENV}"))
        .header("Authorization", format!("token {token}"))
        .body(DOC)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (st, v) = call(&base, &token, "POST", &format!("{ENV}/rotate"), Some(json!({}))).await;
    assert_eq!(st, 200, "{v}");
    let open = async |base: &str| {
        let (st, v) = call(base, &token, "POST", &format!("{ENV}/open"), None).await;
        assert_eq!(st, 200, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (st, v) = call(base, &token, "GET", &format!("{ENV}/open/{id}"), None).await;
        assert_eq!(st, 200, "{v}");
        plain(&v["properties"]["db"])["password"].clone()
    };
    let p1 = open(&base).await["current"].as_str().unwrap().to_owned();
    let (_, defn_before) = call(&base, &token, "GET", ENV, None).await;
    let (st, v) = call(
        &base,
        &token,
        "POST",
        &format!("{ENV}/schedules"),
        Some(json!({"scheduleOnce": rfc3339_in(Duration::from_secs(2))})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    server.kill();

    // 2. Restarted with the failpoint armed: the schedule runs, the rotator draws, the process dies before writing.
    let (mut server, _) = serve(data, Some("rotate-before-write")).await;
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = server.child().try_wait().expect("status") {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the failpoint was not reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success(), "aborted: {status}");
    let log = std::fs::read_to_string(data.join("stderr.log")).unwrap();
    assert!(log.contains("failpoint rotate-before-write reached"), "{log}");

    // 3. Restarted without it: the former current still opens, nothing was half-written, and the schedule is
    //    retried (once the dead run's lease lapsed) and succeeds.
    let (server, base) = serve(data, None).await;
    let (_, defn_after) = call(&base, &token, "GET", ENV, None).await;
    assert_eq!(defn_after, defn_before, "the definition is as before the crash");
    let v = open(&base).await;
    let t0 = Instant::now();
    let h = loop {
        let (st, h) = call(&base, &token, "GET", &format!("{ENV}/schedules/{id}/history"), None).await;
        assert_eq!(st, 200, "{h}");
        let events = h["scheduleHistoryEvents"].as_array().unwrap().clone();
        if !events.is_empty() {
            break events;
        }
        // Until the retry lands, the environment keeps its former current.
        assert_eq!(v["current"], json!(p1));
        assert!(t0.elapsed() < Duration::from_secs(30), "the schedule was not retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["result"], json!("succeeded"), "{h:?}");
    let v = open(&base).await;
    assert_eq!(v["previous"], json!(p1), "{v}");
    assert_ne!(v["current"], json!(p1));
    server.kill();
}

async fn cli(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "p", "app").await.status, 200);
    assert_eq!(c.patch(ENV, DOC).await.status, 200);
    let run = async |args: &[&str]| support::run_cli(s, &s.token, args).await;
    let (code, out, err) = run(&[
        "env",
        "schedule",
        "new",
        "acme/p/app",
        "--cron",
        "0 3 * * 1",
        "--path",
        "db.password",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Created schedule"), "{out}");
    let id = schedules(&c).await[0]["id"].as_str().unwrap().to_owned();
    let (code, out, err) = run(&["env", "schedule", "ls", "acme/p/app"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&id) && out.contains("cron 0 3 * * 1") && out.contains("db.password"),
        "{out}"
    );
    let (code, out, err) = run(&["env", "schedule", "edit", "acme/p/app", &id, "--paused", "true"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("paused"), "{out}");
    let (code, _, err) = run(&["env", "schedule", "new", "acme/p/app", "--cron", "0 25 * * *"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("hour"), "{err}");
    let (code, _, err) = run(&["env", "schedule", "new", "acme/p/app"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("--cron") || err.contains("--once"), "{err}");
    let (code, out, err) = run(&["env", "schedule", "history", "acme/p/app", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("EXECUTED"), "{out}");
    let (code, out, err) = run(&["env", "schedule", "rm", "acme/p/app", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Deleted"), "{out}");
    assert!(schedules(&c).await.is_empty());
    let (code, out, _) = run(&["env", "rotate", "--help"]).await;
    assert_eq!(code, 0);
    let text = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains("sesame env schedule") && text.contains("comments and layout are kept"),
        "{out}"
    );
}

on_both!(cli, cli_sqlite, cli_postgres);
