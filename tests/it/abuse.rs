//! Abuse and resources, black-box: failed authentications are tallied (bounded audit records whose counts add up)
//! and rate-limited per source (429 with `Retry-After`) while a valid token is never limited; slow clients are
//! disconnected; connections are capped; stored strings have length limits and control characters are refused
//! with 400 on SQLite and PostgreSQL; the data folder's files are private whatever the folder's mode.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sesame::core::audit::AuditRecord;
use sesame::core::throttle::Rate;
use sesame::server::ServeConfig;

use crate::support::{TestServer, config, on_both, temp_dir};

const BAD_TOKEN: &str = "sesame_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The instance chain's `auth.failed` records, read through the export (which writes open tallies first).
async fn failed_logins(srv: &TestServer) -> (Vec<AuditRecord>, usize) {
    let (_, text) = srv.get_text("/api/sesame/v1/audit").await;
    let mut out = Vec::new();
    let mut bytes = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["action"] == "auth.failed" {
            bytes += line.len();
            out.push(serde_json::from_value(v).unwrap());
        }
    }
    (out, bytes)
}

fn count_of(r: &AuditRecord) -> u64 {
    let d: Value = serde_json::from_str(&r.event.detail).expect("tally detail is JSON");
    let count = d["count"].as_u64().expect("count");
    let by_reason: u64 = d["reasons"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(count, by_reason, "the counts per reason add up to the count: {d}");
    count
}

fn with_auth_limits(mut c: ServeConfig, burst: u32, per_minute: u32) -> ServeConfig {
    c.limits.auth.per_source = Rate { burst, per_minute };
    c
}

#[tokio::test]
async fn a_thousand_failed_logins_with_60_kb_paths_make_a_bounded_audit_whose_counts_add_up() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let path = format!("/api/esc/environments/{}", "a".repeat(60 * 1024));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (http, url) = (srv.http.clone(), format!("{}{path}", srv.base));
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..125 {
                let mut req = http.get(&url);
                // Every form of failure: a bad token, no header, another scheme.
                match (worker + i) % 3 {
                    0 => req = req.header("Authorization", format!("token {BAD_TOKEN}")),
                    1 => {}
                    _ => req = req.header("Authorization", "Basic eDp5"),
                }
                statuses.push(req.send().await.unwrap().status().as_u16());
            }
            statuses
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.extend(s.unwrap());
    }
    assert_eq!(statuses.len(), 1000);
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    let (records, bytes) = failed_logins(&srv).await;
    eprintln!(
        "1,000 failed logins with 60 KB paths: {} audit records, {bytes} bytes",
        records.len()
    );
    // One record per source and 60 s window (the run may straddle a window), not one per failure.
    assert!(!records.is_empty() && records.len() <= 3, "{} records", records.len());
    assert!(bytes < 4096, "the failures take {bytes} bytes of audit log");
    assert_eq!(
        records.iter().map(count_of).sum::<u64>(),
        1000,
        "every failure is counted once"
    );
    for r in &records {
        assert_eq!(
            (r.event.actor.as_str(), r.event.source.as_str()),
            ("anonymous", "127.0.0.1")
        );
        assert!(r.event.target.len() <= 256 + "…".len(), "{}", r.event.target.len());
        assert!(r.event.target.starts_with("/api/esc/environments/aaa") && r.event.target.ends_with('…'));
        let d: Value = serde_json::from_str(&r.event.detail).unwrap();
        assert_eq!(d["firstPathBytes"], json!(path.len()));
        assert_eq!(d["pathsCut"], json!(true));
    }
    srv.stop().await;
}

#[tokio::test]
async fn failures_in_an_open_window_are_written_at_shutdown() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let token = srv.token.clone();
    for _ in 0..3 {
        let (status, _) = srv.post_as("/api/sesame/v1/keks", &json!({}), Some(BAD_TOKEN)).await;
        assert_eq!(status, 401);
    }
    srv.stop().await;
    let srv = TestServer::start(config(dir.path(), None), Some(token)).await.unwrap();
    let (records, _) = failed_logins(&srv).await;
    assert_eq!(records.iter().map(count_of).sum::<u64>(), 3);
    srv.stop().await;
}

#[tokio::test]
async fn failed_logins_past_the_burst_get_429_with_retry_after_and_a_valid_token_still_passes() {
    let dir = temp_dir();
    let srv = TestServer::start(with_auth_limits(config(dir.path(), None), 5, 1), None)
        .await
        .unwrap();
    let url = format!("{}/api/user", srv.base);
    for i in 0..5 {
        let r = srv
            .http
            .get(&url)
            .header("Authorization", format!("token {BAD_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "failure {i} is within the burst");
    }
    for unauthenticated in [Some(format!("token {BAD_TOKEN}")), None, Some("Bearer x".into())] {
        let mut req = srv.http.get(&url);
        if let Some(h) = &unauthenticated {
            req = req.header("Authorization", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 429, "{unauthenticated:?}");
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        // One request a minute: the next one is about a minute away.
        assert!((1..=60).contains(&retry), "Retry-After: {retry}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], 429, "{body}");
        assert!(body["message"].as_str().unwrap().contains("retry after"), "{body}");
    }
    // The address is limited, but a valid token from it is not.
    let r = srv
        .http
        .get(&url)
        .header("Authorization", format!("token {}", srv.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (records, _) = failed_logins(&srv).await;
    assert_eq!(records.iter().map(count_of).sum::<u64>(), 8);
    let d: Value = serde_json::from_str(&records[0].event.detail).unwrap();
    assert_eq!(d["reasons"]["rate limited"], 3, "{d}");
    srv.stop().await;
}

#[tokio::test]
async fn a_limited_address_gets_its_budget_back_as_the_clock_moves() {
    let dir = temp_dir();
    let mut c = with_auth_limits(config(dir.path(), None), 2, 1);
    let clock = crate::support::manual_clock(&mut c);
    let srv = TestServer::start(c, None).await.unwrap();
    let status = || async {
        srv.http
            .get(format!("{}/api/user", srv.base))
            .header("Authorization", format!("token {BAD_TOKEN}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!([status().await, status().await, status().await], [401, 401, 429]);
    // One failure a minute: 59.9 s later the bucket is still empty, a minute later it holds one again.
    clock.advance(Duration::from_millis(59_900));
    assert_eq!(status().await, 429);
    clock.advance(Duration::from_millis(100));
    assert_eq!([status().await, status().await], [401, 429]);
    srv.stop().await;
}

#[tokio::test]
async fn one_valid_token_at_64_connections_never_sees_429_even_from_a_limited_address() {
    let dir = temp_dir();
    let srv = TestServer::start(with_auth_limits(config(dir.path(), None), 1, 1), None)
        .await
        .unwrap();
    // Spend the address's budget first.
    for _ in 0..3 {
        srv.post_as(
            "/api/stacks/acme/p/s/encrypt",
            &json!({"plaintext": "eA=="}),
            Some(BAD_TOKEN),
        )
        .await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        // One client each: 64 connections.
        let http = reqwest::Client::new();
        let (url, token) = (format!("{}/api/stacks/acme/p/s/encrypt", srv.base), srv.token.clone());
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..25 {
                let r = http
                    .post(&url)
                    .header("Authorization", format!("token {token}"))
                    .json(&json!({"plaintext": "eA=="}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        });
    }
    let mut all = Vec::new();
    while let Some(s) = tasks.join_next().await {
        all.extend(s.unwrap());
    }
    assert_eq!(all.len(), 64 * 25);
    assert_eq!(all.iter().filter(|s| **s == 429).count(), 0);
    assert!(all.iter().all(|s| *s == 200), "{all:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_configured_per_token_limit_answers_429() {
    let dir = temp_dir();
    let mut c = config(dir.path(), None);
    c.limits.auth.per_token = Some(Rate {
        burst: 3,
        per_minute: 1,
    });
    let srv = TestServer::start(c, None).await.unwrap();
    let url = format!("{}/api/user", srv.base);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = srv
            .http
            .get(&url)
            .header("Authorization", format!("token {}", srv.token))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            assert_eq!(r.json::<Value>().await.unwrap()["code"], 429);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    srv.stop().await;
}

/// Connects, sends `sent`, and returns how long the server took to close the connection (`None`: still open after
/// `wait`).
fn closed_after(addr: std::net::SocketAddr, sent: &[u8], wait: Duration) -> Option<Duration> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(sent).unwrap();
    closed_within(&mut s, wait)
}

/// How long, from now, until the server closes `s` (whatever it answers first, such as a 408, is read and
/// dropped), or `None` if it is still open after `wait`.
fn closed_within(s: &mut std::net::TcpStream, wait: Duration) -> Option<Duration> {
    s.set_read_timeout(Some(wait)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// A server whose connections may be silent for 1 s (and have 60 s for a request's headers).
async fn server_with_a_1s_idle_timeout() -> (tempfile::TempDir, TestServer) {
    let dir = temp_dir();
    let mut c = config(dir.path(), None);
    c.limits.connections.header_read_timeout = Duration::from_secs(60);
    c.limits.connections.idle_timeout = Duration::from_secs(1);
    let srv = TestServer::start(c, None).await.unwrap();
    (dir, srv)
}

const HALF_A_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";

#[tokio::test]
async fn a_client_sending_half_a_header_is_disconnected_after_the_header_timeout() {
    let dir = temp_dir();
    let mut c = config(dir.path(), None);
    c.limits.connections.header_read_timeout = Duration::from_secs(1);
    let srv = TestServer::start(c, None).await.unwrap();
    let addr = srv.server.local_addr();
    let took = tokio::task::spawn_blocking(move || closed_after(addr, HALF_A_HEADER, Duration::from_secs(10)))
        .await
        .unwrap();
    let took = took.expect("the slow client was never disconnected");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A silent connection goes the same way.
    let took = tokio::task::spawn_blocking(move || closed_after(addr, b"", Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(took.expect("a silent connection stays open") < Duration::from_secs(5));
    // Ordinary requests are unaffected.
    let r = srv.http.get(format!("{}/healthz", srv.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_disconnected_after_the_header_timeout() {
    let dir = temp_dir();
    let mut c = config(dir.path(), None);
    let cert = crate::support::SelfSigned::install(dir.path(), &mut c);
    c.limits.connections.header_read_timeout = Duration::from_secs(1);
    let server = sesame::server::start(c).await.unwrap();
    let addr = server.local_addr();
    // Nothing at all, then the first bytes of a ClientHello and no more.
    for sent in [&b""[..], b"\x16\x03\x01\x02\x00\x01"] {
        let took = tokio::task::spawn_blocking(move || closed_after(addr, sent, Duration::from_secs(10)))
            .await
            .unwrap();
        assert!(took.expect("a stalled TLS client stays connected") < Duration::from_secs(5));
    }
    let client = cert.client(addr);
    let r = client
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let (_dir, srv) = server_with_a_1s_idle_timeout().await;
    let addr = srv.server.local_addr();
    let took = tokio::task::spawn_blocking(move || closed_after(addr, HALF_A_HEADER, Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(took.expect("the idle connection stays open") < Duration::from_secs(5));
    // A request that is being handled is not idle; a kept-alive client keeps working.
    for _ in 0..3 {
        let r = srv.http.get(format!("{}/healthz", srv.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_connection_that_keeps_sending_outlives_the_idle_timeout_then_closes_once_silent() {
    let (_dir, srv) = server_with_a_1s_idle_timeout().await;
    let addr = srv.server.local_addr();
    let (answer, closed) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(HALF_A_HEADER).unwrap();
        // Three idle timeouts' worth of a header trickled a byte at a time: never silent for a whole timeout.
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(300));
            s.write_all(b"x").unwrap();
        }
        s.write_all(b"\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"ok")) {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        // Answered and kept alive; now silent, it is closed after about one timeout.
        let closed = closed_within(&mut s, Duration::from_secs(10));
        (String::from_utf8_lossy(&got).into_owned(), closed)
    })
    .await
    .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the trickling connection was cut: {answer:?}"
    );
    let closed = closed.expect("the silent connection stays open");
    assert!(
        closed >= Duration::from_millis(500) && closed < Duration::from_secs(5),
        "{closed:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let dir = temp_dir();
    let mut c = config(dir.path(), None);
    c.limits.connections.max_connections = 2;
    let srv = TestServer::start(c, None).await.unwrap();
    let addr = srv.server.local_addr();
    // Each held connection has been answered once (so the server has accepted it) and stays open, kept alive.
    let held = tokio::task::spawn_blocking(move || (0..2).map(|_| answered_connection(addr)).collect::<Vec<_>>())
        .await
        .unwrap();
    let third = tokio::task::spawn_blocking(move || closed_after(addr, b"", Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(third.expect("a third connection was kept") < Duration::from_secs(2));
    drop(held);
    // The server sees the closes when it next polls those connections: poll, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // A fresh client each time, so no refused connection is reused.
        match reqwest::Client::new().get(format!("{}/healthz", srv.base)).send().await {
            Ok(r) if r.status() == 200 => break,
            other => assert!(
                Instant::now() < deadline,
                "no slot freed when the held connections closed: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    srv.stop().await;
}

/// A connection to `addr` that has had one `GET /healthz` answered and is kept alive.
fn answered_connection(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // The answer's body is `ok`; the connection stays open after it.
    while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"ok")) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the connection was closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    s
}

#[test]
fn serve_refuses_a_connection_cap_below_4096() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args(["serve", "--max-connections", "100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("4096"));
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--auth-failure-burst",
        "--auth-failure-per-minute",
        "--token-rate-per-minute",
        "--header-read-timeout-secs",
        "--idle-timeout-secs",
        "--max-connections",
    ] {
        assert!(help.contains(flag), "{flag} missing from serve --help");
    }
}

/// Status and body of one call with the admin token.
async fn call(srv: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = srv
        .http
        .request(method.parse().unwrap(), format!("{}{path}", srv.base))
        .header("Authorization", format!("token {}", srv.token));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A 400 in ESC's shape whose message mentions `word`.
fn assert_refused(what: &str, (status, body): (u16, Value), word: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["code"], 400, "{what}: {body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(msg.contains(word), "{what}: {msg:?} does not mention {word:?}");
}

async fn limits_and_control_characters(srv: &TestServer) {
    let e = "/api/esc/environments";
    let v1 = "/api/sesame/v1";
    assert_eq!(
        call(
            srv,
            "POST",
            &format!("{e}/acme"),
            Some(json!({"project": "p", "name": "dev"}))
        )
        .await
        .0,
        200
    );
    let yaml = "values:\n  a: 1\n";
    for _ in 0..2 {
        let r = srv
            .admin(reqwest::Method::PATCH, &format!("{e}/acme/p/dev"))
            .body(yaml)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        call(
            srv,
            "POST",
            &format!("{e}/acme/p/dev/tags"),
            Some(json!({"name": "t", "value": "v"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            srv,
            "POST",
            &format!("{v1}/orgs/acme/teams"),
            Some(json!({"name": "ops"}))
        )
        .await
        .0,
        201
    );

    // Control characters in path parameters, percent-encoded (a raw one is not valid HTTP): every route, 400.
    for bad in ["%00", "%01", "%0A", "%0d", "%1B", "%7F", "%C2%85"] {
        for (method, path) in [
            ("GET", format!("{e}/ac{bad}me")),
            ("GET", format!("{e}/acme/p{bad}/dev")),
            ("GET", format!("{e}/acme/p/dev{bad}")),
            ("POST", format!("{e}/acme/p/dev{bad}/open")),
            ("GET", format!("{e}/acme/p/dev/tags/t{bad}")),
            ("DELETE", format!("{e}/acme/p/dev/tags/t{bad}")),
            ("GET", format!("{e}/acme/p/dev/versions/tags/x{bad}")),
            ("GET", format!("{e}/acme/p/dev/versions/1{bad}")),
            ("GET", format!("{e}/acme/p/dev?x=1{bad}")),
            ("GET", format!("{v1}/orgs/acme{bad}/members")),
            ("DELETE", format!("{v1}/orgs/acme/members/bob{bad}")),
            ("DELETE", format!("{v1}/orgs/acme/teams/ops{bad}")),
            ("PUT", format!("{v1}/orgs/acme/teams/ops/members/bob{bad}")),
            ("DELETE", format!("{v1}/tokens/x{bad}")),
            ("GET", format!("{v1}/kek-migrations/x{bad}")),
            ("GET", format!("{v1}/orgs/acme{bad}/audit")),
            ("POST", format!("/api/stacks/acme/p/s{bad}/encrypt")),
        ] {
            assert_refused(
                &format!("{method} {path}"),
                call(srv, method, &path, None).await,
                "control",
            );
        }
    }

    // NUL in any JSON string: refused before it reaches a lookup or the store.
    for (method, path, body) in [
        (
            "POST",
            format!("{v1}/tokens"),
            json!({"kind": "organization", "org": "ac\u{0}me"}),
        ),
        (
            "POST",
            format!("{v1}/tokens"),
            json!({"kind": "team", "org": "acme", "team": "o\u{0}ps"}),
        ),
        (
            "POST",
            format!("{v1}/orgs/acme/members"),
            json!({"login": "bob\u{0}", "role": "reader"}),
        ),
        (
            "PUT",
            format!("{v1}/orgs/acme/roles"),
            json!({"subject": "user:a\u{0}b", "role": "reader"}),
        ),
        (
            "POST",
            format!("{v1}/keks"),
            json!({"uri": "local://x", "org": "ac\u{0}me"}),
        ),
        ("POST", format!("{e}/acme"), json!({"project": "p", "name": "d\u{0}ev"})),
        (
            "POST",
            format!("{e}/acme/p/dev/versions/tags"),
            json!({"name": "x\u{0}", "revision": 1}),
        ),
        (
            "POST",
            format!("{e}/acme/p/dev/tags"),
            json!({"name": "n", "value": "a\u{0}b"}),
        ),
    ] {
        assert_refused(
            &format!("{method} {path} {body}"),
            call(srv, method, &path, Some(body.clone())).await,
            "NUL",
        );
    }

    // A definition holding NUL.
    let r = srv
        .http
        .patch(format!("{}{e}/acme/p/dev", srv.base))
        .header("Authorization", format!("token {}", srv.token))
        .body("values:\n  a: \"x\u{0}y\"\n")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 400, "{}", r.text().await.unwrap());

    // Over-long and control-character values of every stored string: 400 naming the field.
    let long = |n: usize| "é".repeat(n);
    for (method, path, body, word) in [
        ("POST", format!("{v1}/orgs"), json!({"name": "o".repeat(101)}), "100"),
        (
            "POST",
            format!("{e}/acme"),
            json!({"project": "p", "name": "e".repeat(101)}),
            "100",
        ),
        (
            "POST",
            format!("{e}/acme"),
            json!({"project": "p".repeat(101), "name": "e"}),
            "100",
        ),
        (
            "POST",
            format!("{e}/acme/p/dev/tags"),
            json!({"name": long(101), "value": "v"}),
            "tag name",
        ),
        (
            "POST",
            format!("{e}/acme/p/dev/tags"),
            json!({"name": "a\u{1}", "value": "v"}),
            "tag name",
        ),
        (
            "POST",
            format!("{e}/acme/p/dev/tags"),
            json!({"name": "n", "value": long(1025)}),
            "tag value",
        ),
        (
            "POST",
            format!("{e}/acme/p/dev/tags"),
            json!({"name": "n", "value": "\u{1b}[2J"}),
            "tag value",
        ),
        (
            "PATCH",
            format!("{e}/acme/p/dev/tags/t"),
            json!({"currentTag": {"value": "v"}, "newTag": {"name": "t", "value": long(1025)}}),
            "tag value",
        ),
        (
            "POST",
            format!("{e}/acme/p/dev/versions/tags"),
            json!({"name": "r".repeat(101), "revision": 1}),
            "100",
        ),
        (
            "POST",
            format!("{e}/acme/p/dev/versions/1/retract"),
            json!({"reason": long(1025)}),
            "retraction reason",
        ),
        (
            "POST",
            format!("{e}/acme/p/dev/versions/1/retract"),
            json!({"reason": "a\u{7}b"}),
            "retraction reason",
        ),
        (
            "POST",
            format!("{v1}/orgs/acme/teams"),
            json!({"name": "t".repeat(101)}),
            "100",
        ),
        (
            "POST",
            format!("{v1}/orgs/acme/teams"),
            json!({"name": "t2", "description": long(1025)}),
            "team description",
        ),
        (
            "POST",
            format!("{v1}/orgs/acme/teams"),
            json!({"name": "t2", "description": "\u{1}"}),
            "team description",
        ),
        (
            "POST",
            format!("{v1}/orgs/acme/members"),
            json!({"login": "l".repeat(101), "role": "reader"}),
            "100",
        ),
        (
            "POST",
            format!("{v1}/orgs/acme/members"),
            json!({"login": "bob", "name": long(257), "role": "reader"}),
            "display name",
        ),
        (
            "POST",
            format!("{v1}/orgs/acme/members"),
            json!({"login": "bob", "name": "Bob\nSmith", "role": "reader"}),
            "display name",
        ),
        (
            "POST",
            format!("{v1}/tokens"),
            json!({"kind": "personal", "description": long(1025)}),
            "token description",
        ),
        (
            "POST",
            format!("{v1}/tokens"),
            json!({"kind": "personal", "description": "\u{85}"}),
            "token description",
        ),
        (
            "POST",
            format!("{v1}/keks"),
            json!({"uri": format!("local://{}", "k".repeat(2100))}),
            "KEK URI",
        ),
    ] {
        assert_refused(
            &format!("{method} {path}"),
            call(srv, method, &path, Some(body)).await,
            word,
        );
    }

    // Nothing was changed by the refusals; the limits themselves are accepted.
    let (_, tags) = call(srv, "GET", &format!("{e}/acme/p/dev/tags"), None).await;
    assert_eq!(tags["tags"].as_object().map(|m| m.len()), Some(1), "{tags}");
    let (_, teams) = call(srv, "GET", &format!("{v1}/orgs/acme/teams"), None).await;
    assert_eq!(teams["teams"].as_array().unwrap().len(), 1, "{teams}");
    let (_, members) = call(srv, "GET", &format!("{v1}/orgs/acme/members"), None).await;
    assert!(!members.to_string().contains("bob"), "{members}");
    let (_, revs) = call(srv, "GET", &format!("{e}/acme/p/dev/versions"), None).await;
    assert!(!revs.to_string().contains("retracted\":{"), "{revs}");
    let ok = [
        (
            "POST",
            format!("{e}/acme/p/dev/tags"),
            json!({"name": long(100), "value": format!("{}\n\t", long(1022))}),
        ),
        (
            "POST",
            format!("{v1}/orgs/acme/teams"),
            json!({"name": "t2", "description": format!("line\n{}", long(1019))}),
        ),
        (
            "POST",
            format!("{v1}/orgs/acme/members"),
            json!({"login": "bob", "name": long(256), "role": "reader"}),
        ),
        (
            "POST",
            format!("{v1}/tokens"),
            json!({"kind": "personal", "description": long(1024)}),
        ),
        (
            "POST",
            format!("{e}/acme/p/dev/versions/1/retract"),
            json!({"reason": long(1024)}),
        ),
    ];
    for (method, path, body) in ok {
        let (status, resp) = call(srv, method, &path, Some(body)).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {resp}");
    }
}

on_both!(
    limits_and_control_characters,
    limits_and_control_characters_on_sqlite,
    limits_and_control_characters_on_postgres
);

#[cfg(unix)]
fn assert_private(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(mode & 0o077, 0, "{name} has mode {mode:o}");
        names.push(name);
    }
    names
}

#[cfg(unix)]
#[tokio::test]
async fn every_file_in_an_existing_world_readable_data_folder_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let srv = TestServer::sqlite(dir.path()).await;
    let token = srv.token.clone();
    let e = "/api/esc/environments";
    assert_eq!(
        call(
            &srv,
            "POST",
            &format!("{e}/acme"),
            Some(json!({"project": "p", "name": "dev"}))
        )
        .await
        .0,
        200
    );
    srv.encrypt_in_stacks("p", 5).await;
    // While running, after writes: the database, its WAL and shared memory, the key file and the token.
    let names = assert_private(dir.path());
    for want in [
        "sesame.db",
        "sesame.db-wal",
        "sesame.db-shm",
        "kek-default.key",
        "admin.token",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    srv.stop().await;
    assert_private(dir.path());
    // A store an earlier version left world-readable is narrowed at start.
    let db = dir.path().join("sesame.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let srv = TestServer::start(config(dir.path(), None), Some(token)).await.unwrap();
    assert_eq!(call(&srv, "GET", "/api/user", None).await.0, 200);
    assert_private(dir.path());
    srv.stop().await;
    // The folder's own mode is the operator's choice and is left alone.
    let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
}
