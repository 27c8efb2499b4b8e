//! The official Pulumi ESC clients against a live server (SQLite, 127.0.0.1:0): `tests/sdk/esc_python.py` drives
//! every operation of the Python SDK (`pulumi-esc-sdk` 0.14.0) and `tests/sdk/esc_node.mjs` every operation of the
//! TypeScript SDK (`@pulumi/esc-sdk` 0.12.4, its generated `EscRawApi` and its `EscApi` wrapper). Each script prints
//! `PASS`/`FAIL` per named check and ends with `<client> sdk: N of M operations passed`; a test fails unless its
//! script exits 0 with N = M, and then shows the script's whole output.
//!
//! The clients are outside parts: `SESAME_TEST_ESC_PYTHON` names a Python that can import `pulumi_esc_sdk`, and
//! `SESAME_TEST_ESC_NODE_DIR` the folder `tests/sdk/node` after `npm ci` (with `node` on the PATH). `.ci/run` sets
//! both.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::{TestServer, config, require_env, temp_dir};

/// The organization the scripts work in: the one a fresh instance makes.
const ORG: &str = "default";

/// Both suites run in well under a minute; this only stops a hung client from hanging the test run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(name)
}

/// Starts a server, runs `program args…` against it and asserts a clean `N of N` summary for `client`.
async fn drive(client: &str, program: &str, args: &[PathBuf], extra_env: &[(&str, &str)]) {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    cfg.instance.first_org = ORG.into();
    let srv = TestServer::start(cfg, None).await.expect("start server");

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("SESAME_URL", &srv.base)
        .env("SESAME_TOKEN", &srv.token)
        .env("SESAME_ORG", ORG)
        .env_remove("PULUMI_BACKEND_URL")
        .env_remove("PULUMI_ACCESS_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let output = match tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("{client} sdk: cannot run {program}: {e}"),
        Err(_) => panic!("{client} sdk: {program} did not finish within {SCRIPT_TIMEOUT:?}"),
    };
    srv.stop().await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let transcript = format!("--- stdout\n{stdout}--- stderr\n{stderr}--- exit: {}", output.status);
    let prefix = format!("{client} sdk: ");
    let summary = stdout.lines().rev().find_map(|l| l.strip_prefix(&prefix));
    let Some(summary) = summary else {
        panic!("{client} sdk: no summary line `{prefix}N of M operations passed`\n{transcript}");
    };
    let counts = summary
        .strip_suffix(" operations passed")
        .and_then(|s| s.split_once(" of "))
        .and_then(|(n, m)| Some((n.parse::<usize>().ok()?, m.parse::<usize>().ok()?)));
    let Some((passed, total)) = counts else {
        panic!("{client} sdk: unreadable summary `{summary}`\n{transcript}");
    };
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(
        output.status.success() && total > 0 && passed == total && failures.is_empty(),
        "{client} sdk: {passed} of {total} operations passed ({} FAIL lines)\n{transcript}",
        failures.len()
    );
    println!("{client} sdk: {passed} of {total} operations passed");
}

#[tokio::test]
async fn python_sdk_drives_every_operation() {
    let what = "a Python with pulumi-esc-sdk==0.14.0 (the Python ESC SDK)";
    let Some(python) = require_env("SESAME_TEST_ESC_PYTHON", what) else {
        return;
    };
    drive("python", &python, &[script("esc_python.py")], &[]).await;
}

#[tokio::test]
async fn node_sdk_drives_every_operation() {
    let what = "tests/sdk/node after `npm ci` (the TypeScript ESC SDK)";
    let Some(node_dir) = require_env("SESAME_TEST_ESC_NODE_DIR", what) else {
        return;
    };
    drive(
        "node",
        "node",
        &[script("esc_node.mjs")],
        &[("SESAME_TEST_ESC_NODE_DIR", &node_dir)],
    )
    .await;
}
