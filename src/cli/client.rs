//! The HTTP client the CLI commands share: server URL and token from flags or `SESAME_URL`/`SESAME_TOKEN`, plain
//! HTTP only to loopback unless `--insecure`, and the server's ESC-shaped errors turned into [`ServerRefused`].

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::core::tokens::AccessToken;

/// Connection flags shared by every client command. `Debug` redacts the token.
#[derive(Clone, clap::Args)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(long, env = "SESAME_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Access token. Prefer SESAME_TOKEN or --token-file: a flag is visible to other users in the process list.
    #[arg(long, env = "SESAME_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Read the access token from this file (for example ./sesame-data/admin.token).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Allow plain http:// to a host that is not loopback (tokens and secrets would cross the network unencrypted).
    #[arg(long)]
    pub insecure: bool,
}

impl std::fmt::Debug for ClientArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientArgs")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("token_file", &self.token_file)
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// The server answered with an error status.
#[derive(Debug, thiserror::Error)]
#[error("the server refused the request ({status}): {message}")]
pub struct ServerRefused {
    /// HTTP status.
    pub status: u16,
    /// The server's message.
    pub message: String,
}

/// A configured client.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: AccessToken,
}

impl Client {
    /// Builds a client from the flags, refusing plain HTTP off loopback unless `--insecure`.
    pub fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        crate::server::install_crypto_provider();
        let base = Url::parse(&args.url).with_context(|| format!("invalid server URL {:?}", args.url))?;
        match base.scheme() {
            "https" => {}
            "http" => {
                let loopback = match base.host() {
                    Some(url::Host::Domain(d)) => d == "localhost",
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                if !loopback && !args.insecure {
                    bail!(
                        "refusing plain http:// to {}, which is not loopback: use https:// or pass --insecure",
                        base.host_str().unwrap_or("")
                    );
                }
            }
            other => {
                bail!("unsupported URL scheme {other:?}: use https:// (or http:// for loopback)")
            }
        }
        let token = match (&args.token, &args.token_file) {
            (Some(t), _) => AccessToken::from_presented(t),
            (None, Some(path)) => {
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(path).with_context(|| format!("reading token file {}", path.display()))?,
                );
                AccessToken::from_presented(&text)
            }
            (None, None) => bail!("no access token: set SESAME_TOKEN, or pass --token-file PATH"),
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("sesame-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Client { http, base, token })
    }

    /// POSTs JSON to `path` (relative to the server URL) and reads JSON back.
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(&self, path: &str, body: &Req) -> anyhow::Result<Resp> {
        let url = self
            .base
            .join(path)
            .with_context(|| format!("building the URL for {path}"))?;
        self.send(self.http.post(url).json(body)).await
    }

    /// GETs `path` (relative to the server URL, query included) and reads JSON back.
    pub async fn get<Resp: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Resp> {
        let url = self
            .base
            .join(path)
            .with_context(|| format!("building the URL for {path}"))?;
        self.send(self.http.get(url)).await
    }

    /// GETs `path` and returns the body as text (for JSON-lines answers).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let url = self
            .base
            .join(path)
            .with_context(|| format!("building the URL for {path}"))?;
        self.send_raw(self.http.get(url))
            .await?
            .text()
            .await
            .context("reading the server's answer")
    }

    async fn send<Resp: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Resp> {
        self.send_raw(request)
            .await?
            .json()
            .await
            .context("the server's answer was not the expected JSON")
    }

    async fn send_raw(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request
            .header("Authorization", format!("token {}", self.token.expose()))
            .send()
            .await
            .with_context(|| format!("could not reach the server at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            #[derive(serde::Deserialize)]
            struct ErrorBody {
                message: String,
            }
            let message = response
                .json::<ErrorBody>()
                .await
                .map(|b| b.message)
                .unwrap_or_else(|_| status.canonical_reason().unwrap_or("error").to_owned());
            return Err(ServerRefused {
                status: status.as_u16(),
                message,
            }
            .into());
        }
        Ok(response)
    }

    /// Sends `method` to `path` (relative to the server URL, query included) with an optional JSON body, and reads
    /// JSON back; an empty answer (204) reads as JSON `null`, so `()` or `serde_json::Value` fit it.
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Req>,
    ) -> anyhow::Result<Resp> {
        let url = self
            .base
            .join(path)
            .with_context(|| format!("building the URL for {path}"))?;
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let bytes = self
            .send_raw(request)
            .await?
            .bytes()
            .await
            .context("reading the server's answer")?;
        let text: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(text).context("the server's answer was not the expected JSON")
    }
}
