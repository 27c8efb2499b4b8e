//! Test support: outside parts found through environment variables (skipped with a reason, or failing under
//! `CI=true`), a fresh PostgreSQL database per test, and an in-process server on 127.0.0.1:0.

use std::path::{Path, PathBuf};

use sesame::instance::InstanceConfig;
use sesame::keyring::KeyringConfig;
use sesame::server::{RunningServer, ServeConfig, ServeError};
use sqlx::Connection;

/// The value of `var`, or `None` after printing why the test skips. Under `CI=true` a missing part fails.
pub fn require_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{var} is not set: {what} is required under CI=true");
            }
            eprintln!("skipping: {var} is not set, so {what} is not available");
            None
        }
    }
}

/// A fresh PostgreSQL database, dropped by [`PgDb::drop_db`].
pub struct PgDb {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl PgDb {
    /// Makes a new database next to the one `SESAME_TEST_DATABASE_URL` names; `None` (skip) when it is unset.
    pub async fn create() -> Option<PgDb> {
        let admin_url = require_env("SESAME_TEST_DATABASE_URL", "PostgreSQL")?;
        let name = format!("sesame_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to SESAME_TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin_url).expect("SESAME_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Some(PgDb {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    /// Drops the database (closing any connections still open to it).
    pub async fn drop_db(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.expect("connect");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .expect("drop test database");
    }
}

/// Small Argon2 parameters so passphrase tests stay fast.
pub fn fast_argon2() -> sesame_kms::Argon2Params {
    sesame_kms::Argon2Params {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

/// A server configuration for tests: loopback port 0, the given data folder and store.
pub fn config(data_dir: &Path, database_url: Option<&str>) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        tls: None,
        insecure: false,
        max_body_bytes: 1024 * 1024,
        metrics_token_file: None,
        migration: sesame::migrate::MigrateConfig::default(),
        limits: Default::default(),
        instance: InstanceConfig {
            data_dir: data_dir.to_owned(),
            database_url: database_url.map(str::to_owned),
            first_org: "acme".into(),
            system_kek: "local://default".into(),
            passphrase: None,
            argon2: fast_argon2(),
            pkcs11_pin: None,
            keyring: KeyringConfig::default(),
            kek_allow: Default::default(),
            clock: sesame::clock::Clock::system(),
        },
    }
}

/// Puts `config`'s instance on a manual clock showing the current time; returns the handle that moves it (tests
/// advance it instead of sleeping).
pub fn manual_clock(config: &mut ServeConfig) -> sesame::clock::ManualClock {
    let manual = sesame::clock::ManualClock::starting_now();
    config.instance.clock = manual.clock();
    manual
}

/// A running test server with an HTTP client and its admin token.
pub struct TestServer {
    pub server: RunningServer,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl TestServer {
    /// Starts a server; `token` is the one from a previous start when the instance exists already.
    pub async fn start(config: ServeConfig, token: Option<String>) -> Result<TestServer, ServeError> {
        let server = sesame::server::start(config).await?;
        let token = match (&server.new_admin_token, token) {
            (Some(t), _) => t.expose().to_owned(),
            (None, Some(t)) => t,
            (None, None) => std::fs::read_to_string(&server.admin_token_path)
                .expect("admin token file")
                .trim()
                .to_owned(),
        };
        let base = format!("http://{}", server.local_addr());
        Ok(TestServer {
            server,
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    /// POSTs JSON with the admin token; returns status and JSON body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.post_as(path, body, Some(&self.token)).await
    }

    /// POSTs JSON with the given token (or none).
    pub async fn post_as(&self, path: &str, body: &serde_json::Value, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            req = req.header("Authorization", format!("token {t}"));
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// The value of one counter on `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
    }

    /// Stops the server gracefully.
    pub async fn stop(self) {
        self.server.shutdown().await.expect("graceful shutdown");
    }
}

/// A temporary folder for one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The path of the local system key file in a data folder.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("kek-default.key")
}
