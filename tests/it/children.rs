//! The guard around a test's outside processes ([`crate::child::ChildGuard`]): whatever happens to the test — it
//! passes, it panics, its process dies — the child and what the child started stop.

use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::ChildGuard;

/// Whether `pid` is a live process named `comm`. A zombie is dead: its reaper may not be us (or may not reap at
/// all in a container), and the name check keeps a reused pid from passing for the old process.
fn alive(pid: u32, comm: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let name = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')'));
    match name {
        Some((name, rest)) => name == comm && !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')),
        None => false,
    }
}

/// Waits (polling, up to 10 s) until `pid` is a live `comm`.
fn started(pid: u32, comm: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !alive(pid, comm) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Waits (polling, up to 10 s) until `pid` is no longer a live `comm`.
fn gone(pid: u32, comm: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid, comm) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Spawns `sh -c SCRIPT` under a guard; the script's first line of output must be `SHELL_PID SLEEP_PID`.
fn shell(script: &str, grace: Duration) -> (ChildGuard, u32, u32) {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut guard = ChildGuard::spawn_with_grace(cmd, "sh", grace).expect("spawn sh");
    let mut line = String::new();
    BufReader::new(guard.child().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pids: Vec<u32> = line.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 2, "{line:?}");
    assert_eq!(pids[0], guard.id());
    // The background child has been forked when the line is printed, but may not have exec'd `sleep` yet.
    assert!(alive(pids[0], "sh") && started(pids[1], "sleep"), "{line:?}");
    (guard, pids[0], pids[1])
}

#[test]
fn a_panicking_test_leaves_no_process_behind_even_one_that_ignores_sigterm() {
    let mut pids = None;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // The shell and its background child both ignore SIGTERM: only the SIGKILL after the grace period stops them.
        let (_guard, sh, sleep) = shell(
            "trap '' TERM; sleep 600 & echo $$ $!; wait; wait",
            Duration::from_millis(200),
        );
        pids = Some((sh, sleep));
        panic!("the test fails while its child runs");
    }));
    assert!(result.is_err());
    let (sh, sleep) = pids.expect("the children started");
    assert!(
        !alive(sh, "sh"),
        "the guard reaps its child before the unwinding goes on"
    );
    assert!(gone(sleep, "sleep"), "the grandchild {sleep} outlived the test");
}

#[test]
fn stop_ends_the_child_and_its_children_with_sigterm_when_they_heed_it() {
    let (guard, _, sleep) = shell(
        "trap 'exit 0' TERM; sleep 600 & echo $$ $!; wait",
        Duration::from_secs(60),
    );
    let t0 = Instant::now();
    let status = guard.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "SIGTERM was heeded, no SIGKILL needed"
    );
    assert!(gone(sleep, "sleep"));
}

/// Used by the next test: holds a guarded `sleep`, writes its pid to the file named by `SESAME_TEST_ABORT_PIDFILE`,
/// then aborts the whole test process (no unwinding, no destructors).
#[test]
#[ignore = "run by a_test_process_that_dies_takes_its_children_along"]
fn abort_while_holding_a_child() {
    let Some(pidfile) = std::env::var_os("SESAME_TEST_ABORT_PIDFILE") else {
        return;
    };
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    let guard = ChildGuard::spawn(cmd, "sleep").unwrap();
    std::fs::write(&pidfile, guard.id().to_string()).unwrap();
    std::process::abort();
}

#[test]
fn a_test_process_that_dies_takes_its_children_along() {
    let dir = crate::support::temp_dir();
    let pidfile = dir.path().join("pid");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "children::abort_while_holding_a_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("SESAME_TEST_ABORT_PIDFILE", &pidfile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!out.success(), "the helper aborts");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("the helper started its child")
        .parse()
        .unwrap();
    assert!(gone(pid, "sleep"), "the child {pid} outlived its test process");
}
