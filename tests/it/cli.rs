//! The `sesame` binary as a user runs it: `serve` in a real process (first-start banner, SIGTERM shutdown) and
//! `stack encrypt|decrypt` against it, with their exit codes.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::child::ChildGuard;
use crate::support::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_sesame");

struct Served {
    child: ChildGuard,
    url: String,
    token: Option<String>,
}

/// Starts `sesame serve` on port 0 and reads its banner up to the "listening" line. The child is stopped by
/// [`stop`], or by its guard if the test fails first.
fn serve(data_dir: &Path) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--org", "acme", "--data-dir"])
        .arg(data_dir)
        .env_remove("SESAME_DATABASE_URL")
        .env("SESAME_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = ChildGuard::spawn(cmd, "sesame serve").expect("spawn sesame serve");
    let mut lines = BufReader::new(child.child().stdout.take().unwrap()).lines();
    let mut token = None;
    loop {
        let line = lines.next().expect("serve exited before listening").unwrap();
        if let Some(t) = line.trim().strip_prefix("sesame_") {
            token = Some(format!("sesame_{t}"));
        }
        if let Some(rest) = line.strip_prefix("Sesame is listening on ") {
            let addr = rest.split_whitespace().next().unwrap();
            return Served {
                child,
                url: format!("http://{addr}"),
                token,
            };
        }
    }
}

/// SIGTERM, then the server must shut down gracefully (within the guard's grace period) and exit 0.
fn stop(served: Served) {
    let exit = served.child.stop();
    assert!(exit.success(), "graceful shutdown must exit 0, got {exit:?}");
}

fn sesame(args: &[&str], url: &str, token: &str, stdin: Option<&[u8]>) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("SESAME_URL", url)
        .env("SESAME_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn serve_then_encrypt_and_decrypt_from_the_command_line() {
    let dir = temp_dir();
    let served = serve(dir.path());
    let token = served.token.clone().expect("the first start prints the admin token");
    let saved = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    assert_eq!(saved.trim(), token);

    let out = sesame(
        &["stack", "encrypt", "--stack", "acme/web/prod", "p@ss word"],
        &served.url,
        &token,
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ct = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!ct.contains("p@ss"));

    let out = sesame(
        &["stack", "decrypt", "--stack", "acme/web/prod", &ct],
        &served.url,
        &token,
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"p@ss word");

    // Values from stdin are taken exactly, binary included.
    let value = b"line one\nline two\n\x00\xff";
    let out = sesame(
        &["stack", "encrypt", "--stack", "acme/web/prod"],
        &served.url,
        &token,
        Some(value),
    );
    assert!(out.status.success());
    let ct2 = String::from_utf8(out.stdout).unwrap();
    let out = sesame(
        &["stack", "decrypt", "--stack", "acme/web/prod"],
        &served.url,
        &token,
        Some(ct2.as_bytes()),
    );
    assert_eq!(out.stdout, value);

    // Another stack refuses the ciphertext: the server refused (exit 3), and the message says why.
    let out = sesame(
        &["stack", "decrypt", "--stack", "acme/web/dev", &ct],
        &served.url,
        &token,
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not be decrypted"));

    // A wrong token: exit 3 with a clear message, and the token is not echoed.
    let bad = format!("sesame_{}", "x".repeat(43));
    let out = sesame(
        &["stack", "encrypt", "--stack", "acme/web/prod", "v"],
        &served.url,
        &bad,
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && !err.contains(&bad), "{err}");

    // Malformed --stack: a usage failure before any request.
    let out = sesame(
        &["stack", "encrypt", "--stack", "acme/web", "v"],
        &served.url,
        &token,
        None,
    );
    assert_eq!(out.status.code(), Some(1));

    stop(served);

    // The second start prints no token.
    let served = serve(dir.path());
    assert!(
        served.token.is_none(),
        "the admin token is printed on the first start only"
    );
    let out = sesame(
        &["stack", "decrypt", "--stack", "acme/web/prod", &ct],
        &served.url,
        &token,
        None,
    );
    assert_eq!(out.stdout, b"p@ss word");
    stop(served);
}

#[test]
fn the_client_refuses_plain_http_off_loopback() {
    // 192.0.2.1 is TEST-NET-1: the refusal happens before any connection is tried.
    let out = sesame(
        &["stack", "encrypt", "--stack", "a/b/c", "v"],
        "http://192.0.2.1:8080",
        &format!("sesame_{}", "a".repeat(43)),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

#[test]
fn help_explains_commands_and_exit_codes() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["serve", "stack", "Exit codes"] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
    let out = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--listen",
        "--data-dir",
        "--database-url",
        "--tls-cert",
        "--insecure",
        "admin.token",
    ] {
        assert!(text.contains(needle), "serve --help lacks {needle}");
    }
}

#[test]
fn a_killed_server_loses_nothing_it_acknowledged() {
    let dir = temp_dir();
    let served = serve(dir.path());
    let token = served.token.clone().unwrap();
    // Each encrypt to a new stack commits a new DEK before it answers.
    let mut sealed = Vec::new();
    for i in 0..5 {
        let stack = format!("acme/crash/s{i}");
        let out = sesame(
            &["stack", "encrypt", "--stack", &stack, &format!("v{i}")],
            &served.url,
            &token,
            None,
        );
        assert!(out.status.success());
        sealed.push((stack, String::from_utf8(out.stdout).unwrap().trim().to_owned()));
    }
    served.child.kill(); // SIGKILL: no shutdown path runs.

    let served = serve(dir.path());
    for (i, (stack, ct)) in sealed.iter().enumerate() {
        let out = sesame(&["stack", "decrypt", "--stack", stack, ct], &served.url, &token, None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, format!("v{i}").as_bytes());
    }
    stop(served);
}

#[test]
fn kek_commands_register_list_and_refuse_what_they_must() {
    let dir = temp_dir();
    let served = serve(dir.path());
    let token = served.token.clone().unwrap();
    let run = |args: &[&str]| sesame(args, &served.url, &token, None);

    let out = run(&["kek", "add", "local://cli-own", "--org", "acme", "--default"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("now the default"));
    let out = run(&["kek", "add", "local://cli-spare", "--org", "acme"]);
    assert!(out.status.success());

    let out = run(&["kek", "ls", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let out = run(&["kek", "ls", "--org", "acme"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("local://cli-own") && table.contains("yes") && !table.contains("local://default"),
        "{table}"
    );

    // The default cannot be disabled (the server refuses: exit 3); the spare can, by URI.
    let out = run(&["kek", "disable", "local://cli-own", "--org", "acme"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["kek", "disable", "local://cli-spare", "--org", "acme"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["kek", "default", "local://nothing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no KEK"));

    // The org's new stack secrets work under its own KEK.
    let out = run(&["stack", "encrypt", "--stack", "acme/p/s", "v"]);
    assert!(out.status.success());
    stop(served);
}

#[test]
fn kek_migrate_waits_verifies_and_retires_from_the_command_line() {
    let dir = temp_dir();
    let served = serve(dir.path());
    let token = served.token.clone().unwrap();
    let run = |args: &[&str]| sesame(args, &served.url, &token, None);
    let mut sealed = Vec::new();
    for i in 0..20 {
        let stack = format!("acme/m/s{i}");
        let out = run(&["stack", "encrypt", "--stack", &stack, &format!("v{i}")]);
        sealed.push((stack, String::from_utf8(out.stdout).unwrap().trim().to_owned()));
    }
    assert!(run(&["kek", "add", "local://target"]).status.success());

    let out = run(&[
        "kek",
        "migrate",
        "--from",
        "local://default",
        "--to",
        "local://target",
        "--wait",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("done") && text.contains("23/23"), "{text}");
    let id = text.split_whitespace().next().unwrap().to_owned();

    let out = run(&["kek", "status", "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs[0]["state"], "done");
    // Retire before verify is refused; pause of a finished job too.
    assert_eq!(run(&["kek", "retire", &id]).status.code(), Some(3));
    assert_eq!(run(&["kek", "pause", &id]).status.code(), Some(3));
    let out = run(&["kek", "verify", &id]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("23 DEKs checked"),
        "{out:?}"
    );
    let out = run(&["kek", "retire", &id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("retired"), "{out:?}");
    // Migrating to a KEK that does not exist names it.
    let out = run(&["kek", "migrate", "--from", "local://default", "--to", "local://nowhere"]);
    assert_eq!(out.status.code(), Some(3));
    stop(served);

    let served = serve(dir.path());
    for (i, (stack, ct)) in sealed.iter().enumerate() {
        let out = sesame(&["stack", "decrypt", "--stack", stack, ct], &served.url, &token, None);
        assert_eq!(
            out.stdout,
            format!("v{i}").as_bytes(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop(served);
}
