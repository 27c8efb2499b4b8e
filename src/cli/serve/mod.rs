//! `sesame serve`: flags (each also a `SESAME_*` variable), the first-start banner, and signal handling for a
//! graceful shutdown; its abuse-limit flags are in [`limits`]. The one CLI module that imports `crate::server`, since
//! it starts the server (the tidy test allows `src/cli/serve/` and no other CLI file).

pub mod limits;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::instance::InstanceConfig;
use crate::keyring::KeyringConfig;
use crate::migrate::MigrateConfig;
use crate::server::{ServeConfig, TlsFiles};

/// Flags of `sesame serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "With no flags, Sesame listens on 127.0.0.1:8080, keeps its SQLite database and local key \
file in ./sesame-data, and on the very first start prints the administrator token once (also saved to \
./sesame-data/admin.token, mode 0600).\n\nBack up the data folder and the key file together: without the key, the \
database is unreadable."
)]
pub struct ServeArgs {
    /// Address to listen on. Off loopback, TLS (--tls-cert/--tls-key) or --insecure is required.
    #[arg(long, env = "SESAME_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Data folder: SQLite database, local key files, admin token. Created (mode 0700) if missing.
    #[arg(long, env = "SESAME_DATA_DIR", default_value = "./sesame-data")]
    pub data_dir: PathBuf,
    /// Store URL: postgres://user@host/db for PostgreSQL; default SQLite in the data folder.
    #[arg(long, env = "SESAME_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Name of the first organization, made on the first start only.
    #[arg(long, env = "SESAME_ORG", default_value = "default")]
    pub org: String,
    /// The system KEK: local://NAME (key file in the data folder), passphrase:// (Argon2id from SESAME_PASSPHRASE),
    /// or, in builds with the pkcs11 feature, pkcs11:token=…;object=…?module-path=… (PIN from SESAME_PKCS11_PIN).
    #[arg(long, env = "SESAME_SYSTEM_KEK", default_value = "local://default")]
    pub system_kek: String,
    /// A PKCS#11 module KEKs registered over the API may load (repeatable; exact path; the system KEK's is always
    /// allowed). A registered URI's module-path must equal one of these.
    #[arg(
        long = "pkcs11-module",
        value_name = "PATH",
        env = "SESAME_PKCS11_MODULES",
        value_delimiter = ':'
    )]
    pub pkcs11_modules: Vec<PathBuf>,
    /// A file KEKs registered over the API may read their PKCS#11 PIN from (pin-source=file:PATH; repeatable).
    #[arg(
        long = "pkcs11-pin-file",
        value_name = "PATH",
        env = "SESAME_PKCS11_PIN_FILES",
        value_delimiter = ':'
    )]
    pub pkcs11_pin_files: Vec<PathBuf>,
    /// A KMS endpoint (http(s) origin) KEKs registered over the API may send requests and credentials to: an
    /// endpoint= of awskms:// or gcpkms://, an azurekeyvault:// vault host (repeatable; comma-separated in the
    /// variable).
    #[arg(
        long = "kms-endpoint",
        value_name = "URL",
        env = "SESAME_KMS_ENDPOINTS",
        value_delimiter = ','
    )]
    pub kms_endpoints: Vec<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "SESAME_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SESAME_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (only behind a proxy that terminates TLS).
    #[arg(long, env = "SESAME_INSECURE")]
    pub insecure: bool,
    /// Largest request body accepted, in bytes, after gzip decompression.
    #[arg(long, env = "SESAME_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// KEK migrations: DEKs re-wrapped per transaction (the cursor moves once per batch).
    #[arg(long, env = "SESAME_MIGRATION_BATCH", default_value_t = MigrateConfig::default().batch,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub migration_batch: i64,
    /// KEK migrations: re-wraps in flight toward the KMS at once.
    #[arg(long, env = "SESAME_MIGRATION_CONCURRENCY", default_value_t = MigrateConfig::default().concurrency)]
    pub migration_concurrency: usize,
    /// KEK migrations: how long a replica's claim on a running job lasts, in milliseconds (renewed every batch).
    /// After a crash, the job is taken over once the dead owner's claim lapses.
    #[arg(long, env = "SESAME_MIGRATION_LEASE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub migration_lease_ms: u64,
    /// Abuse limits.
    #[command(flatten)]
    pub limits: limits::LimitArgs,
    /// A file holding a token that /metrics then requires as `Authorization: Bearer <token>` (Prometheus:
    /// `authorization: {credentials_file: …}`). Without it, /metrics answers anyone who can reach the port.
    #[arg(long, env = "SESAME_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// The server's external origin, as clients and relying parties reach it (e.g. https://sesame.example.com).
    /// Default: http:// (https:// with TLS) and the address it listens on.
    #[arg(long, env = "SESAME_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// The OIDC issuer URL: every token's `iss`; discovery at URL/.well-known/openid-configuration, keys at
    /// URL/.well-known/jwks. Default: <public URL>/oidc.
    #[arg(long, env = "SESAME_ISSUER_URL", value_name = "URL")]
    pub issuer_url: Option<String>,
    /// The OIDC issuer's signing algorithm for new keys: RS256 (2048-bit RSA; every relying party accepts it) or
    /// ES256 (P-256). Changing it rotates to a key of the new algorithm, published ahead of its use.
    #[arg(long, env = "SESAME_OIDC_ALG", default_value = "RS256", value_parser = parse_alg)]
    pub oidc_alg: crate::core::oidc::Alg,
    /// How long an OIDC signing key signs before the next one takes over (Go duration, at least 3h). The next key
    /// is published 1h before it signs; a retired key stays published 2h (the longest token lifetime plus 1h).
    #[arg(long, env = "SESAME_OIDC_ROTATION_PERIOD", default_value = "24h", value_parser = parse_rotation)]
    pub oidc_rotation_period: std::time::Duration,
    /// Non-public addresses (loopback, private, link-local…) that OIDC issuer discovery and key fetches may reach
    /// (CIDR, comma-separated; e.g. 10.0.0.0/8). Plain http:// is fetched only from these. Default: public
    /// addresses over https:// only.
    #[arg(
        long = "egress-allow",
        value_name = "CIDR[,CIDR…]",
        env = "SESAME_EGRESS_ALLOW",
        value_delimiter = ','
    )]
    pub egress_allow: Vec<String>,
    /// The most items one Vault-Transit `batch_input` may hold.
    #[arg(long, env = "SESAME_TRANSIT_MAX_BATCH", default_value_t = crate::server::transit::DEFAULT_MAX_BATCH)]
    pub transit_max_batch: usize,
    /// Encryptions per Vault-Transit key version before the key is rotated automatically (random 96-bit nonces
    /// are safe for about 2^32; the default is 2^30).
    #[arg(
        long,
        env = "SESAME_TRANSIT_NONCE_BUDGET",
        default_value_t = crate::server::transit::budget::DEFAULT_ROTATE_AFTER,
        value_parser = clap::value_parser!(i64).range(1..=(1i64 << 32))
    )]
    pub transit_nonce_budget: i64,
    /// A PEM file of CA certificates trusted, besides the system's, by OIDC issuer discovery and key fetches (e.g.
    /// a Kubernetes cluster's CA, to trust its API server as an issuer).
    #[arg(long = "egress-ca", value_name = "FILE", env = "SESAME_EGRESS_CA")]
    pub egress_ca: Option<PathBuf>,
    /// Rotation schedules: how often this replica looks for due schedules, in milliseconds.
    #[arg(long, env = "SESAME_SCHEDULE_TICK_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub schedule_tick_ms: u64,
    /// Rotation schedules: how long a replica's claim on a running schedule lasts, in milliseconds. Only the
    /// claim's holder runs the schedule; after a crash another replica (or this one, restarted) runs it once the
    /// claim lapses.
    #[arg(long, env = "SESAME_SCHEDULE_LEASE_MS", default_value_t = 120_000,
          value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub schedule_lease_ms: u64,
    /// Google's Security Token Service, where fn::open::gcp-login exchanges OIDC tokens (an http(s) origin, no
    /// path; calls go through the egress rules, so a non-public address must also be in --egress-allow).
    #[arg(
        long = "gcp-sts-url",
        value_name = "URL",
        env = "SESAME_GCP_STS_URL",
        default_value = "https://sts.googleapis.com"
    )]
    pub gcp_sts_url: String,
    /// Google's IAM Service Account Credentials API, where fn::open::gcp-login impersonates service accounts
    /// (generateAccessToken; an http(s) origin, no path).
    #[arg(
        long = "gcp-iam-credentials-url",
        value_name = "URL",
        env = "SESAME_GCP_IAM_CREDENTIALS_URL",
        default_value = "https://iamcredentials.googleapis.com"
    )]
    pub gcp_iam_credentials_url: String,
}

fn parse_alg(s: &str) -> Result<crate::core::oidc::Alg, String> {
    crate::core::oidc::Alg::parse(s).ok_or_else(|| "use RS256 or ES256".to_owned())
}

fn parse_rotation(s: &str) -> Result<std::time::Duration, String> {
    match crate::core::timefmt::parse_go_duration(s) {
        Some(d) if d >= std::time::Duration::from_secs(3 * 3600) => Ok(d),
        Some(_) => Err("the rotation period must be at least 3h".into()),
        None => Err("not a Go duration (e.g. 24h, 168h)".into()),
    }
}

fn resolve_listen(listen: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = listen.parse() {
        return Ok(addr);
    }
    listen
        .to_socket_addrs()
        .with_context(|| format!("invalid --listen address {listen:?}"))?
        .next()
        .with_context(|| format!("--listen {listen:?} resolves to no address"))
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServeConfig> {
        Ok(ServeConfig {
            listen: resolve_listen(&self.listen)?,
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            },
            insecure: self.insecure,
            max_body_bytes: self.max_body_bytes,
            metrics_token_file: self.metrics_token_file,
            egress_allow: {
                let policy = crate::egress::EgressPolicy::parse(&self.egress_allow)
                    .map_err(|e| anyhow::anyhow!("--egress-allow: {e}"))?;
                match &self.egress_ca {
                    None => policy,
                    Some(path) => {
                        let pem = std::fs::read(path)
                            .with_context(|| format!("--egress-ca: cannot read {}", path.display()))?;
                        policy
                            .with_ca_pem(&pem)
                            .map_err(|e| anyhow::anyhow!("--egress-ca {}: {e}", path.display()))?
                    }
                }
            },
            gcp: crate::server::esc::providers::gcp::GcpEndpoints::parse(
                &self.gcp_sts_url,
                &self.gcp_iam_credentials_url,
            )
            .map_err(|e| anyhow::anyhow!("--gcp-sts-url/--gcp-iam-credentials-url: {e}"))?,
            migration: MigrateConfig {
                batch: self.migration_batch,
                concurrency: self.migration_concurrency.max(1),
                lease: std::time::Duration::from_millis(self.migration_lease_ms),
            },
            limits: self.limits.limits(),
            transit: crate::server::TransitConfig {
                max_batch: self.transit_max_batch,
                rotate_after_encryptions: self.transit_nonce_budget,
            },
            schedules: crate::server::esc::schedules::ScheduleConfig {
                tick: std::time::Duration::from_millis(self.schedule_tick_ms),
                lease: std::time::Duration::from_millis(self.schedule_lease_ms),
            },
            oidc: crate::server::oidc_issuer::OidcServeConfig {
                public_url: self.public_url,
                issuer_url: self.issuer_url,
                keys: crate::oidc_issuer::OidcConfig {
                    alg: self.oidc_alg,
                    rotation_period: self.oidc_rotation_period,
                    ..Default::default()
                },
            },
            instance: InstanceConfig {
                data_dir: self.data_dir,
                database_url: self.database_url,
                first_org: self.org,
                system_kek: self.system_kek,
                passphrase: std::env::var("SESAME_PASSPHRASE").ok().map(zeroize::Zeroizing::new),
                argon2: Default::default(),
                pkcs11_pin: std::env::var("SESAME_PKCS11_PIN").ok().map(zeroize::Zeroizing::new),
                keyring: KeyringConfig::default(),
                kek_allow: crate::kek_reach::KekAllowList {
                    pkcs11_modules: self.pkcs11_modules,
                    pkcs11_pin_files: self.pkcs11_pin_files,
                    endpoints: self.kms_endpoints,
                },
                // The binary always runs on the system clock: no flag or variable selects another.
                clock: crate::clock::Clock::system(),
            },
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs `sesame serve` until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.into_config()?;
    let data_dir = config.instance.data_dir.clone();
    let server = crate::server::start(config).await?;
    if let Some(token) = &server.new_admin_token {
        println!(
            "Sesame initialised a new instance in {}.\n\nAdministrator token (shown this once; also saved to {}, mode \
             0600):\n\n    {}\n\nUse it with: export SESAME_TOKEN=$(cat {})",
            data_dir.display(),
            server.admin_token_path.display(),
            token.expose(),
            server.admin_token_path.display(),
        );
    }
    let scheme = if server.state.store.backend() == "sqlite" {
        "sqlite"
    } else {
        "postgres"
    };
    println!(
        "Sesame is listening on {} (store: {scheme}). Stop with Ctrl-C.",
        server.local_addr()
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await.context("server ended with an error")?;
    Ok(ExitCode::SUCCESS)
}
