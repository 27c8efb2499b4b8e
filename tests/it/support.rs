//! Test support: outside parts found through environment variables (skipped with a reason, or failing under
//! `CI=true`), a fresh PostgreSQL database per test, and an in-process server on 127.0.0.1:0 with the requests,
//! set-up and scenario runners (`on_both!`) the test files share. Rule: a helper two test files need lives here.

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
        egress_allow: Default::default(),
        gcp: Default::default(),
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
        oidc: Default::default(),
        transit: Default::default(),
        schedules: Default::default(),
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

    /// Starts a fresh server on SQLite in `data_dir`.
    pub async fn sqlite(data_dir: &Path) -> TestServer {
        TestServer::start(config(data_dir, None), None).await.unwrap()
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

    /// A request to `path` carrying the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("token {}", self.token))
    }

    /// GETs `path` with the admin token; returns status and text body.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self.admin(reqwest::Method::GET, path).send().await.expect("request");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// GETs `path` with the admin token; returns status and JSON body (`null` when not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.admin(reqwest::Method::GET, path).send().await.expect("request");
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// The text of an admin GET that must answer 200 (an audit export, say).
    pub async fn export(&self, path: &str) -> String {
        let (status, text) = self.get_text(path).await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// Adds `login` to `org` with `role` as the instance administrator; returns status and JSON body.
    pub async fn add_member(&self, org: &str, login: &str, role: &str) -> (u16, serde_json::Value) {
        let path = format!("/api/sesame/v1/orgs/{org}/members");
        self.post(&path, &serde_json::json!({"login": login, "role": role}))
            .await
    }

    /// Encrypts one small value in each of `count` stacks `acme/{project}/s{i}`, each call answering 200.
    pub async fn encrypt_in_stacks(&self, project: &str, count: usize) {
        for i in 0..count {
            let path = format!("/api/stacks/acme/{project}/s{i}/encrypt");
            let (status, _) = self.post(&path, &serde_json::json!({"plaintext": "eA=="})).await;
            assert_eq!(status, 200);
        }
    }

    /// Encrypts `v{i}` in each of `count` stacks `acme/{project}/s{i}` (each call answering 200); returns each
    /// stack's path, its ciphertext and `i`.
    pub async fn seal_in_stacks(&self, project: &str, count: usize) -> Vec<(String, String, usize)> {
        use base64::Engine;
        let mut sealed = Vec::new();
        for i in 0..count {
            let path = format!("/api/stacks/acme/{project}/s{i}");
            let plaintext = base64::engine::general_purpose::STANDARD.encode(format!("v{i}"));
            let (status, v) = self
                .post(&format!("{path}/encrypt"), &serde_json::json!({"plaintext": plaintext}))
                .await;
            assert_eq!(status, 200, "{v}");
            sealed.push((path, v["ciphertext"].as_str().unwrap().to_owned(), i));
        }
        sealed
    }

    /// Every stack secret of [`TestServer::seal_in_stacks`] decrypts to its `v{i}`.
    pub async fn assert_unseals(&self, sealed: &[(String, String, usize)]) {
        use base64::Engine;
        for (path, ct, i) in sealed {
            let (status, v) = self
                .post(&format!("{path}/decrypt"), &serde_json::json!({"ciphertext": ct}))
                .await;
            let want = base64::engine::general_purpose::STANDARD.encode(format!("v{i}"));
            assert_eq!((status, v["plaintext"].as_str()), (200, Some(want.as_str())));
        }
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

/// Runs `scenario` against a fresh server on SQLite, then stops the server.
pub async fn on_sqlite(scenario: impl AsyncFnOnce(&TestServer)) {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    scenario(&srv).await;
    srv.stop().await;
}

/// Runs `scenario` against a fresh server on a new PostgreSQL database, then stops the server and drops the
/// database; skips when `SESAME_TEST_DATABASE_URL` is unset.
pub async fn on_postgres(scenario: impl AsyncFnOnce(&TestServer)) {
    let Some(db) = PgDb::create().await else { return };
    let dir = temp_dir();
    let srv = TestServer::start(config(dir.path(), Some(&db.url)), None)
        .await
        .unwrap();
    scenario(&srv).await;
    srv.stop().await;
    db.drop_db().await;
}

/// Runs `scenario(database_url)` on a new PostgreSQL database and drops it; skips when there is none.
pub async fn with_postgres_url(scenario: impl AsyncFnOnce(Option<&str>)) {
    let Some(db) = PgDb::create().await else { return };
    scenario(Some(&db.url)).await;
    db.drop_db().await;
}

/// A scenario `async fn(&TestServer)` as two tests: on SQLite, and on a fresh PostgreSQL database (skipped when
/// there is none).
macro_rules! on_both {
    ($scenario:path, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $crate::support::on_sqlite($scenario).await;
        }

        #[tokio::test]
        async fn $postgres() {
            $crate::support::on_postgres($scenario).await;
        }
    };
}
pub(crate) use on_both;

/// An audit event written by a test straight to the store (instance org, sequence 1, actor `test`).
pub fn test_event(action: sesame::core::audit::AuditAction) -> sesame::core::audit::AuditEvent {
    sesame::core::audit::AuditEvent::new("instance", 1, "test", "internal", action, "test")
}

/// Runs the `sesame` binary against `srv` with `token`; returns the exit code, stdout and stderr.
pub async fn run_cli<S: AsRef<std::ffi::OsStr>>(
    srv: &TestServer,
    token: &str,
    args: impl IntoIterator<Item = S>,
) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args(args)
        .env("SESAME_URL", &srv.base)
        .env("SESAME_TOKEN", token)
        .env_remove("SESAME_ORG")
        .output()
        .await
        .expect("run sesame");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The YAML of every environment revision in the store at `url`, read straight from the database.
pub async fn revision_yamls(url: &str) -> Vec<String> {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT yaml FROM env_revisions")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.into_iter().map(|(y,)| y).collect()
}

/// A self-signed certificate for `localhost`, written to `dir` and set as `config`'s TLS files.
pub struct SelfSigned {
    /// The certificate in PEM.
    pub pem: String,
}

impl SelfSigned {
    /// Makes the certificate and its key, writes both to `dir` and points `config.tls` at them.
    pub fn install(dir: &Path, config: &mut ServeConfig) -> SelfSigned {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        config.tls = Some(sesame::server::TlsFiles {
            cert: cert_path,
            key: key_path,
        });
        SelfSigned { pem: cert.cert.pem() }
    }

    /// An HTTPS client that trusts only this certificate and finds `localhost` at `addr`.
    pub fn client(&self, addr: std::net::SocketAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.pem.as_bytes()).unwrap())
            .resolve("localhost", addr)
            .build()
            .unwrap()
    }
}

/// The string `field` of every object in the JSON array `list`.
pub fn each_str<'a>(list: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    let items = list.as_array().unwrap_or_else(|| panic!("not an array: {list}"));
    items.iter().map(|i| i[field].as_str().unwrap()).collect()
}

/// A temporary folder for one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The path of the local system key file in a data folder.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("kek-default.key")
}

/// Every file of the SQLite store in `dir`, concatenated (database, WAL).
pub fn store_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".db") || name.contains("sqlite") {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
