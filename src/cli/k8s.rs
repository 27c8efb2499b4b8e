//! `sesame k8s webhook`: the injector's mutating admission webhook (AdmissionReview v1 over TLS at `/mutate`). The
//! flags become a [`WebhookConfig`]; serving is [`crate::k8s_webhook`]'s, the decision [`crate::core::k8s`]'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::core::k8s::InjectorConfig;
use crate::k8s_webhook::{self, WebhookConfig};

/// The agent image injected when `--agent-image` is not given.
pub const DEFAULT_AGENT_IMAGE: &str = concat!("ghcr.io/sesame-kms/sesame:", env!("CARGO_PKG_VERSION"));
/// The Sesame URL given to the agent when `--server-url` is not given: the Service of `deploy/kubernetes/`.
pub const DEFAULT_SERVER_URL: &str = "https://sesame.sesame.svc";

/// `sesame k8s`.
#[derive(Debug, Args)]
pub struct K8sArgs {
    /// The Kubernetes command.
    #[command(subcommand)]
    pub command: K8sCommand,
}

/// Kubernetes commands.
#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Serve the injector: a mutating admission webhook that adds `sesame agent` to pods annotated
    /// `sesame.dev/inject: "true"`.
    #[command(
        long_about = "Serve the injector: a mutating admission webhook (AdmissionReview v1 over TLS at \
POST /mutate) that adds `sesame agent` to pods annotated sesame.dev/inject: \"true\".\n\nAnnotations: \
sesame.dev/env: ORG/PROJECT/ENV (required); sesame.dev/mode: init (default: files written once before the app \
starts) or sidecar (and refreshed while it runs); sesame.dev/inject-file-NAME: PATH (one value into the file NAME). \
The files land in /sesame (in-memory) of every app container: /sesame/.env (dotenv), one file per `files` entry. \
The agent authenticates with a projected ServiceAccount token whose audience is --audience. Pods in kube-system \
and kube-public are never changed; an injected pod is annotated sesame.dev/inject-status: injected and never \
injected twice. The certificate and key are reloaded when their files change."
    )]
    Webhook(WebhookArgs),
}

/// `sesame k8s webhook`.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Address to listen on.
    #[arg(long, env = "SESAME_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain (reloaded when it changes).
    #[arg(long, env = "SESAME_WEBHOOK_TLS_CERT", value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// PEM private key (reloaded when it changes).
    #[arg(long, env = "SESAME_WEBHOOK_TLS_KEY", value_name = "FILE")]
    pub tls_key: PathBuf,
    /// The image that runs `sesame agent` in injected pods.
    #[arg(long, env = "SESAME_AGENT_IMAGE", default_value = DEFAULT_AGENT_IMAGE)]
    pub agent_image: String,
    /// The Sesame URL the agent talks to.
    #[arg(long, env = "SESAME_WEBHOOK_SERVER_URL", default_value = DEFAULT_SERVER_URL)]
    pub server_url: String,
    /// Audience of the projected ServiceAccount token: Sesame's public URL (the server's --public-url) [default:
    /// --server-url].
    #[arg(long, env = "SESAME_WEBHOOK_AUDIENCE")]
    pub audience: Option<String>,
    /// Lifetime of the projected token, seconds (600 at least; the kubelet renews it at 80%).
    #[arg(long, default_value_t = 3600)]
    pub token_expiration: i64,
    /// Seconds between checks of the certificate and key files.
    #[arg(long, default_value_t = 10)]
    pub reload_interval: u64,
    /// PEM certificates (a private CA) the injected agent trusts for Sesame's TLS besides the system roots; passed
    /// in the agent's SESAME_CA_PEM variable.
    #[arg(long, env = "SESAME_WEBHOOK_AGENT_CA_FILE", value_name = "FILE")]
    pub agent_ca_file: Option<PathBuf>,
}

/// Runs `sesame k8s …`.
pub async fn run(args: K8sArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        K8sCommand::Webhook(w) => webhook(w).await,
    }
}

/// The injector settings of the flags, checked.
pub fn injector_config(args: &WebhookArgs) -> anyhow::Result<InjectorConfig> {
    let server = url::Url::parse(&args.server_url).with_context(|| format!("--server-url {:?}", args.server_url))?;
    if !matches!(server.scheme(), "https" | "http") {
        bail!("--server-url must be an https:// URL");
    }
    if !(600..=i64::from(u32::MAX)).contains(&args.token_expiration) {
        bail!("--token-expiration must be at least 600 seconds");
    }
    if args.agent_image.trim().is_empty() {
        bail!("--agent-image must not be empty");
    }
    let ca_pem = match &args.agent_ca_file {
        Some(path) => {
            let pem =
                std::fs::read_to_string(path).with_context(|| format!("reading --agent-ca-file {}", path.display()))?;
            if reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_or(true, |c| c.is_empty()) {
                bail!("--agent-ca-file {} holds no PEM certificate", path.display());
            }
            Some(pem)
        }
        None => None,
    };
    Ok(InjectorConfig {
        agent_image: args.agent_image.clone(),
        server_url: args.server_url.trim_end_matches('/').to_owned(),
        audience: args
            .audience
            .clone()
            .unwrap_or_else(|| args.server_url.trim_end_matches('/').to_owned()),
        token_expiration_s: args.token_expiration,
        ca_pem,
    })
}

async fn webhook(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let config = WebhookConfig {
        listen: args.listen,
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        reload_every: Duration::from_secs(args.reload_interval.max(1)),
        injector: injector_config(&args)?,
    };
    let mut running = k8s_webhook::start(config).await?;
    eprintln!(
        "sesame k8s webhook: listening on https://{}/mutate",
        running.local_addr()
    );
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("installing SIGTERM")?;
    tokio::select! {
        r = running.wait() => {
            r.context("the webhook stopped")?;
            return Ok(ExitCode::FAILURE);
        }
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    running.shutdown().await.context("stopping the webhook")?;
    Ok(ExitCode::SUCCESS)
}
