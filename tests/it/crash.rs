//! Crash test (issue 6): the real `sesame` binary on SQLite with 10,000 DEKs, a KEK migration, and 20 SIGKILLs at
//! pseudo-random instants while it runs. After each restart the job must resume by itself (running jobs resume on
//! start) or when `sesame kek migrate` is re-issued for the same pair; at the end every DEK is wrapped exactly once
//! under the target, none is lost, verification passes, the source's wraps can be retired, and every secret made
//! before still decrypts.
//!
//! Slow (about a minute in a debug build), so it runs only with `SESAME_CRASH_TEST=1`:
//!
//! ```sh
//! SESAME_CRASH_TEST=1 cargo test --locked -p sesame --test it crash -- --nocapture
//! ```
//!
//! `SESAME_CRASH_SEED=N` replays the kill instants of an earlier run (the seed is printed).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sesame::store::Store;

use crate::child::ChildGuard;

/// DEKs made before the migration: one stack each.
const DEKS: usize = 10_000;
/// Times the server is killed during the migration.
const KILLS: usize = 20;
/// Requests in flight while making and checking secrets.
const IN_FLIGHT: usize = 16;
/// DEKs per migration transaction: small, so that the migration lasts long enough for every kill to land in it.
const MIGRATION_BATCH: &str = "8";
/// The migration lease: a killed owner's lease must lapse before a restarted server takes the job over.
const LEASE_MS: u64 = 1_000;
/// Wait before the first kill is drawn from 0..=this (ms); later waits follow the measured speed of the job.
const FIRST_KILL_DELAY_MS: u64 = 300;
/// Longest wait before a kill.
const MAX_KILL_DELAY_MS: u64 = 5_000;

const SOURCE: &str = "local://default";
const TARGET: &str = "local://target";

/// A `sesame serve` child process, stopped by its guard when dropped (so a failing assertion leaves no server behind).
struct Server {
    child: ChildGuard,
    base: String,
}

impl Server {
    /// Kills the process with SIGKILL and reaps it.
    fn kill(self) {
        self.child.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `Command` for the `sesame` binary without any `SESAME_*` setting inherited from the caller's environment.
fn sesame_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sesame"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SESAME_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Spawns `sesame serve` on the data folder and waits until `/healthz` answers; returns it and the time that took.
async fn start(http: &reqwest::Client, data: &Path, log: &Path) -> (Server, Duration) {
    let listen = format!("127.0.0.1:{}", free_port());
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("server log");
    let t0 = Instant::now();
    let mut cmd = sesame_command();
    cmd.args(["serve", "--listen", &listen, "--data-dir"])
        .arg(data)
        .env("SESAME_MIGRATION_BATCH", MIGRATION_BATCH)
        .env("SESAME_MIGRATION_LEASE_MS", LEASE_MS.to_string())
        .env("SESAME_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log handle"))
        .stderr(out);
    let child = ChildGuard::spawn(cmd, "sesame serve").expect("spawn sesame serve");
    let mut server = Server {
        child,
        base: format!("http://{listen}"),
    };
    loop {
        if let Some(status) = server.child.child().try_wait().expect("server status") {
            panic!("sesame serve exited with {status}:\n{}", log_tail(log));
        }
        if let Ok(r) = http.get(format!("{}/healthz", server.base)).send().await
            && r.status().is_success()
        {
            return (server, t0.elapsed());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "server not ready after 60 s:\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// POSTs JSON with the token; returns status and JSON body.
async fn post(http: &reqwest::Client, token: &str, url: String, body: &Value) -> (u16, Value) {
    let resp = http
        .post(url)
        .header("Authorization", format!("token {token}"))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The migration's record as the API shows it.
async fn migration(http: &reqwest::Client, token: &str, base: &str, id: &str) -> Value {
    let resp = http
        .get(format!("{base}/api/sesame/v1/kek-migrations/{id}"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("migration JSON")
}

fn migrated(m: &Value) -> i64 {
    m["migrated"].as_i64().expect("migrated")
}

fn state(m: &Value) -> &str {
    m["state"].as_str().expect("state")
}

/// Opens the instance's SQLite store beside the server (WAL: readers and the server's writer do not block).
async fn open_store(data: &Path) -> Arc<dyn Store> {
    sesame::store::connect(&format!("sqlite://{}", data.join("sesame.db").display()))
        .await
        .expect("open the SQLite store")
}

/// Every DEK with a wrap under `kek`, each with the number of wraps it has under `kek` and in all.
async fn deks_under(store: &Arc<dyn Store>, kek: &str) -> Vec<(String, usize, usize)> {
    store
        .deks_under(kek, None, "", 1_000_000)
        .await
        .expect("DEKs under a KEK")
        .into_iter()
        .map(|d| {
            let under = d.wraps.iter().filter(|w| w.kek_id == kek).count();
            (d.dek.id, under, d.wraps.len())
        })
        .collect()
}

fn plaintext(i: usize) -> String {
    STANDARD.encode(format!("crash-secret-{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_survives_twenty_sigkills() {
    if std::env::var("SESAME_CRASH_TEST").as_deref() != Ok("1") {
        eprintln!("skipping: set SESAME_CRASH_TEST=1 to run the crash test (10,000 DEKs, 20 SIGKILLs; slow)");
        return;
    }
    let seed: u64 = match std::env::var("SESAME_CRASH_SEED") {
        Ok(s) => s.parse().expect("SESAME_CRASH_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    };
    println!("crash test: seed {seed} (replay with SESAME_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let data: PathBuf = tmp.path().join("data");
    let log = tmp.path().join("sesame.log");
    File::create(&log).expect("server log");
    sesame::tls::install_crypto_provider();
    let http = reqwest::Client::new();

    let (mut server, ready) = start(&http, &data, &log).await;
    println!("first start (new instance): ready in {} ms", ready.as_millis());
    let token = std::fs::read_to_string(data.join("admin.token"))
        .expect("admin token file")
        .trim()
        .to_owned();

    // 1. One DEK per stack: 10,000 stacks, one secret each.
    let t = Instant::now();
    let base = server.base.clone();
    let mut sealed: Vec<(usize, String)> = futures::stream::iter(0..DEKS)
        .map(|i| {
            let (http, token, base) = (&http, &token, &base);
            async move {
                let (status, v) = post(
                    http,
                    token,
                    format!("{base}/api/stacks/default/crash/s{i}/encrypt"),
                    &json!({ "plaintext": plaintext(i) }),
                )
                .await;
                assert_eq!(status, 200, "encrypt s{i}: {v}");
                (i, v["ciphertext"].as_str().expect("ciphertext").to_owned())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    sealed.sort();
    let took = t.elapsed();
    println!(
        "made {DEKS} DEKs (one secret per stack) in {:.1} s, {:.0} DEKs/s",
        took.as_secs_f64(),
        DEKS as f64 / took.as_secs_f64()
    );

    let store = open_store(&data).await;
    let source_id = store
        .default_kek(None)
        .await
        .expect("default KEK")
        .expect("a system KEK")
        .id;
    let before = deks_under(&store, &source_id).await;
    assert!(
        before.len() > DEKS,
        "{DEKS} stack DEKs and the canary: {}",
        before.len()
    );
    assert!(
        before.iter().all(|&(_, under, all)| under == 1 && all == 1),
        "one wrap each before"
    );
    let before_ids: BTreeSet<String> = before.into_iter().map(|(id, _, _)| id).collect();
    let total = i64::try_from(before_ids.len()).expect("count");

    // 2. The target KEK and the migration.
    let (status, kek) = post(
        &http,
        &token,
        format!("{}/api/sesame/v1/keks", server.base),
        &json!({ "uri": TARGET }),
    )
    .await;
    assert_eq!(status, 201, "{kek}");
    let target_id = kek["id"].as_str().expect("KEK id").to_owned();
    let migration_started = Instant::now();
    let (status, job) = post(
        &http,
        &token,
        format!("{}/api/sesame/v1/kek-migrations", server.base),
        &json!({ "from": SOURCE, "to": TARGET }),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("migration id").to_owned();
    assert_eq!(job["total"].as_i64(), Some(total), "{job}");
    println!("migration {id} of {total} DEKs started (batches of {MIGRATION_BATCH}, lease {LEASE_MS} ms)");

    // 3. Twenty kills. Before each: the job must have made progress since the last restart (it resumed), then a
    // pseudo-random wait. The waits are drawn so that each round re-wraps, on average, an equal share of what is
    // left (from the speed measured so far), spreading the kills over the whole job on a slow or a fast machine.
    // Even rounds rely on the resume at start; odd rounds also re-issue `sesame kek migrate`.
    let mut rate_per_ms: Option<f64> = None;
    let mut landed_mid = 0;
    let mut last_committed = 0;
    let mut resume_times = Vec::new();
    for round in 0..KILLS {
        let t = Instant::now();
        loop {
            let m = migration(&http, &token, &server.base, &id).await;
            if migrated(&m) > last_committed || state(&m) != "running" {
                assert_ne!(state(&m), "failed", "{m}");
                break;
            }
            assert!(
                t.elapsed() < Duration::from_millis(3 * LEASE_MS) + Duration::from_secs(30),
                "round {round}: the migration did not resume after the restart: {m}\n{}",
                log_tail(&log)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let resumed_in = t.elapsed();
        if round > 0 {
            resume_times.push(resumed_in);
        }
        let at_resume = migration(&http, &token, &server.base, &id).await;
        let delay = match rate_per_ms {
            None => rng.random_range(0..=FIRST_KILL_DELAY_MS),
            Some(rate) => {
                let share = (total - migrated(&at_resume)) as f64 / (KILLS - round + 1) as f64;
                let mean_ms = (share / rate) as u64;
                rng.random_range(0..=(2 * mean_ms).min(MAX_KILL_DELAY_MS))
            }
        };
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let seen = migration(&http, &token, &server.base, &id).await;
        server.kill();
        let ran_ms = t.elapsed().as_secs_f64() * 1000.0;
        if state(&seen) == "running" && ran_ms >= 20.0 {
            let measured = (migrated(&seen) - migrated(&at_resume)) as f64 / ran_ms;
            if measured > 0.0 {
                rate_per_ms = Some(rate_per_ms.map_or(measured, |r| (r + measured) / 2.0));
            }
        }
        let mid = state(&seen) == "running" && migrated(&seen) < total;
        landed_mid += usize::from(mid);

        let (next, ready) = start(&http, &data, &log).await;
        server = next;
        let m = migration(&http, &token, &server.base, &id).await;
        let committed = migrated(&m);
        assert!(
            committed >= migrated(&seen) && committed <= total,
            "round {round}: progress went from {} before the kill to {committed} after it (of {total})",
            migrated(&seen)
        );
        last_committed = committed;
        let mut how = "resume at start";
        if round % 2 == 1 && state(&m) == "running" {
            let out = sesame_command()
                .args([
                    "kek",
                    "migrate",
                    "--from",
                    SOURCE,
                    "--to",
                    TARGET,
                    "--url",
                    &server.base,
                ])
                .arg("--token-file")
                .arg(data.join("admin.token"))
                .output()
                .expect("run sesame kek migrate");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "sesame kek migrate: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.starts_with(&id), "re-issuing resumes the same job: {stdout}");
            how = "re-issued `kek migrate`";
        }
        println!(
            "kill {:>2}: resumed in {:>5} ms, killed {delay:>3} ms later at {:>5}/{total} ({}), {:>5} committed; \
             restart ready in {:>4} ms; {how}",
            round + 1,
            resumed_in.as_millis(),
            migrated(&seen),
            if mid { "mid-migration" } else { state(&seen) },
            committed,
            ready.as_millis()
        );
    }

    // 4. The last run finishes.
    let t = Instant::now();
    let done = loop {
        let m = migration(&http, &token, &server.base, &id).await;
        if state(&m) != "running" {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the migration did not finish: {m}\n{}",
            log_tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let migration_took = migration_started.elapsed();
    println!(
        "migration {} after {:.1} s (20 kills included): {done}",
        state(&done),
        migration_took.as_secs_f64()
    );
    assert_eq!(state(&done), "done", "{done}");
    assert_eq!(migrated(&done), total, "each DEK counted exactly once: {done}");
    assert_eq!(done["error"], "", "{done}");
    assert!(
        landed_mid >= KILLS / 2,
        "only {landed_mid} of {KILLS} kills landed mid-migration: the migration is too fast for the kill timings"
    );

    // 5. Every DEK, none lost and none duplicated, has exactly one wrap under the target and still one under the
    // source (kept until retired).
    let under_target = deks_under(&store, &target_id).await;
    let target_ids: BTreeSet<String> = under_target.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(under_target.len(), target_ids.len(), "no DEK listed twice");
    assert_eq!(target_ids, before_ids, "the same DEKs, none lost, none added");
    assert!(
        under_target.iter().all(|&(_, under, all)| under == 1 && all == 2),
        "one wrap under the target and one under the source per DEK"
    );

    // 6. Verify: every DEK unwraps under the target.
    let t = Instant::now();
    let job_url = format!("{}/api/sesame/v1/kek-migrations/{id}", server.base);
    let (status, v) = post(&http, &token, format!("{job_url}/verify"), &json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["checked"].as_i64(), v["failed"].as_i64(), v["verified"].as_bool()),
        (Some(total), Some(0), Some(true)),
        "{v}"
    );
    println!(
        "verified {total} DEKs under the target in {} ms",
        t.elapsed().as_millis()
    );

    // 7. Retire the source's wraps: no DEK is left under the source, each has its one target wrap.
    let (status, v) = post(&http, &token, format!("{job_url}/retire"), &json!({})).await;
    assert_eq!((status, v["state"].as_str()), (200, Some("retired")), "{v}");
    assert!(
        deks_under(&store, &source_id).await.is_empty(),
        "no wrap left under the source"
    );
    let after = deks_under(&store, &target_id).await;
    assert_eq!(after.len(), before_ids.len());
    assert!(after.iter().all(|&(_, under, all)| under == 1 && all == 1));
    drop(store);

    // 8. One more crash, then every secret decrypts through the target KEK alone (cold DEK cache).
    server.kill();
    let t0 = Instant::now();
    let (server, ready) = start(&http, &data, &log).await;
    let first = &sealed[0];
    let url = |i: usize| format!("{}/api/stacks/default/crash/s{i}/decrypt", server.base);
    let (status, v) = post(&http, &token, url(first.0), &json!({ "ciphertext": first.1 })).await;
    assert_eq!(
        (status, v["plaintext"].as_str()),
        (200, Some(plaintext(first.0).as_str()))
    );
    println!(
        "restart after retire: ready in {} ms, first decrypt after {} ms from spawn",
        ready.as_millis(),
        t0.elapsed().as_millis()
    );
    let t = Instant::now();
    let checked: usize = futures::stream::iter(&sealed)
        .map(|(i, ct)| {
            let (http, token, url) = (&http, &token, url(*i));
            async move {
                let (status, v) = post(http, token, url, &json!({ "ciphertext": ct })).await;
                assert_eq!(
                    (status, v["plaintext"].as_str()),
                    (200, Some(plaintext(*i).as_str())),
                    "stack s{i}: {v}"
                );
                1
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(0, |n, one| async move { n + one })
        .await;
    assert_eq!(checked, DEKS);
    println!(
        "decrypted all {DEKS} secrets under the target in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 9. The audit chain survived the kills: every migration step was appended in its own transaction, so the
    // chain links up, and it records every batch that landed and the start, done, verify and retire.
    let text = http
        .get(format!("{}/api/sesame/v1/audit", server.base))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .expect("audit export")
        .text()
        .await
        .expect("audit body");
    let mut records = Vec::new();
    let mut head = String::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("audit line");
        // Signed checkpoints (and an anchor after a prune) ride along in exports; this check is of the chain.
        if v.get("checkpoint").is_some() || v.get("anchor").is_some() {
            continue;
        }
        if v.get("action").is_none() {
            head = v["head"].as_str().expect("head").to_owned();
        } else {
            records.push(serde_json::from_value::<sesame::core::audit::AuditRecord>(v).expect("audit record"));
        }
    }
    let n = sesame::core::audit::verify(&records, Some(&head)).expect("the audit chain links up");
    let count = |action: &str| {
        records
            .iter()
            .filter(|r| r.event.action == action && r.event.target == id)
            .count()
    };
    let batches = count("kek.migration.batch");
    let per_batch: usize = MIGRATION_BATCH.parse().expect("batch size");
    assert!(batches * per_batch >= DEKS, "{batches} batch records for {DEKS} DEKs");
    for action in [
        "kek.migration.start",
        "kek.migration.done",
        "kek.migration.verified",
        "kek.migration.retire",
    ] {
        assert_eq!(count(action), 1, "{action}");
    }
    println!("audit chain: {n} records intact, {batches} migration batches recorded");
    println!(
        "summary: {KILLS} kills, {landed_mid} mid-migration; resume after restart median {} ms, max {} ms; \
         migration {:.1} s; whole test {:.1} s",
        median_ms(&mut resume_times),
        resume_times.iter().max().map_or(0, Duration::as_millis),
        migration_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    server.kill();
}

fn median_ms(v: &mut [Duration]) -> u128 {
    v.sort();
    v.get(v.len() / 2).map_or(0, Duration::as_millis)
}
