//! The HTTP client the CLI commands share. The server URL comes from `--url`, else `SESAME_URL`, else the
//! credentials file `sesame login` wrote, else `http://127.0.0.1:8080`; the token from `--token`/`SESAME_TOKEN`,
//! else `--token-file`, else the credentials file, but only when the URL is the one it was saved for (a token is
//! never sent to a server it was not given for). Plain HTTP goes only to loopback unless `--insecure`, and the
//! server's ESC-shaped errors become [`ServerRefused`].

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::core::tokens::AccessToken;

/// The server URL when neither a flag, `SESAME_URL` nor the credentials file names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Connection flags shared by every client command. `Debug` redacts the token.
#[derive(Clone, clap::Args)]
pub struct ClientArgs {
    /// Server URL [default: the one `sesame login` saved, else http://127.0.0.1:8080].
    #[arg(long, env = "SESAME_URL")]
    pub url: Option<String>,
    /// Access token (default: the one `sesame login` saved). Prefer SESAME_TOKEN, --token-file or `sesame login`: a
    /// flag is visible to other users in the process list.
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

/// One diagnostic of an ESC error answer (`{"diagnostics": [{"range": …, "summary": …}]}`): the server's own type.
pub use crate::wire::esc::EnvironmentDiagnostic as ApiDiagnostic;

/// The server answered with an error status.
#[derive(Debug, thiserror::Error)]
#[error("the server refused the request ({status}): {message}")]
pub struct ServerRefused {
    /// HTTP status.
    pub status: u16,
    /// The server's message.
    pub message: String,
    /// The diagnostics of an ESC answer that carries them (a definition with errors), else empty.
    pub diagnostics: Vec<ApiDiagnostic>,
}

/// A successful answer: the headers the environment commands need, and the body as text.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `ETag` header, if any.
    pub etag: Option<String>,
    /// The `Pulumi-ESC-Revision` header, if any.
    pub revision: Option<u64>,
    /// The body.
    pub body: String,
}

/// A configured client.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: AccessToken,
}

impl Client {
    /// Builds a client from the flags, falling back to the credentials file, and refusing plain HTTP off loopback
    /// unless `--insecure`.
    pub fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        // The credentials file is read only when a flag is missing, so a broken or unreadable one (or no HOME)
        // does not stand in the way of explicit flags.
        let needs_saved = args.url.is_none() || (args.token.is_none() && args.token_file.is_none());
        let saved = if needs_saved { super::login::load()? } else { None };
        let url = match (&args.url, &saved) {
            (Some(u), _) => u.clone(),
            (None, Some(c)) => c.url.clone(),
            (None, None) => DEFAULT_URL.to_owned(),
        };
        let token = match (&args.token, &args.token_file) {
            (Some(t), _) => AccessToken::from_presented(t),
            (None, Some(path)) => {
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(path).with_context(|| format!("reading token file {}", path.display()))?,
                );
                AccessToken::from_presented(&text)
            }
            (None, None) => match &saved {
                Some(c) if same_server(&c.url, &url) => c.token.clone(),
                Some(c) => bail!(
                    "no access token for {url}: `sesame login` saved one for {} only; set SESAME_TOKEN, pass \
                     --token-file PATH, or run `sesame login {url}`",
                    c.url
                ),
                None => bail!("no access token: run `sesame login`, set SESAME_TOKEN, or pass --token-file PATH"),
            },
        };
        Client::with_token(&url, token, args.insecure)
    }

    /// Builds a client for `url` with `token` (as `sesame login` does before anything is saved).
    pub fn with_token(url: &str, token: AccessToken, insecure: bool) -> anyhow::Result<Client> {
        crate::tls::install_crypto_provider();
        let base = Url::parse(url).with_context(|| format!("invalid server URL {url:?}"))?;
        match base.scheme() {
            "https" => {}
            "http" => {
                let loopback = match base.host() {
                    Some(url::Host::Domain(d)) => d == "localhost",
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                if !loopback && !insecure {
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
        let http = reqwest::Client::builder()
            .user_agent(concat!("sesame-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Client { http, base, token })
    }

    /// The server URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `segments` under the server URL, each segment percent-encoded as needed, plus `query`.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the server URL {} cannot have a path", self.base))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Starts a request to `url` (authorization is added when it is sent).
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends a request and reads the whole answer as text, with its `ETag` and `Pulumi-ESC-Revision` headers. An
    /// error status becomes [`ServerRefused`].
    pub async fn execute(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let response = self.send_raw(request).await?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header("etag");
        let revision = header("pulumi-esc-revision").and_then(|r| r.trim().parse().ok());
        let body = response.text().await.context("reading the server's answer")?;
        Ok(Answer {
            status,
            etag,
            revision,
            body,
        })
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
            let text = response.text().await.unwrap_or_default();
            return Err(refusal(status, &text).into());
        }
        Ok(response)
    }

    /// Sends `method` to `path` (relative to the server URL, query included) with an optional JSON body, and reads
    /// JSON back; an empty answer (204) reads as JSON `null`, so `()` or `serde_json::Value` fit it.
    pub async fn send_json<Req: Serialize, Resp: DeserializeOwned>(
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

/// Whether two server URLs name the same server (scheme, host, port and path, ignoring a trailing slash).
fn same_server(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        Url::parse(u).ok().map(|u| {
            (
                u.scheme().to_owned(),
                u.host_str().map(str::to_ascii_lowercase),
                u.port_or_known_default(),
                u.path().trim_end_matches('/').to_owned(),
            )
        })
    };
    matches!((norm(a), norm(b)), (Some(x), Some(y)) if x == y)
}

/// The error of an answer with status `status` and body `text`: ESC's `{"code", "message"}`, possibly with
/// `diagnostics`; otherwise the status's reason.
fn refusal(status: reqwest::StatusCode, text: &str) -> ServerRefused {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        diagnostics: Option<Vec<ApiDiagnostic>>,
    }
    let parsed = serde_json::from_str::<ErrorBody>(text).ok();
    let diagnostics = parsed.as_ref().and_then(|b| b.diagnostics.clone()).unwrap_or_default();
    let message = parsed
        .and_then(|b| b.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| match (diagnostics.len(), status.canonical_reason()) {
            (0, reason) => reason.unwrap_or("error").to_owned(),
            (1, _) => "the definition has an error".to_owned(),
            (n, _) => format!("the definition has {n} errors"),
        });
    ServerRefused {
        status: status.as_u16(),
        message,
        diagnostics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_compare_without_trailing_slashes_or_default_ports() {
        assert!(same_server("http://127.0.0.1:8080", "http://127.0.0.1:8080/"));
        assert!(same_server("https://Sesame.example", "https://sesame.example:443/"));
        assert!(!same_server("http://127.0.0.1:8080", "http://127.0.0.1:8081"));
        assert!(!same_server("https://a.example", "http://a.example"));
    }

    #[test]
    fn error_bodies_become_messages_and_diagnostics() {
        let e = refusal(
            reqwest::StatusCode::NOT_FOUND,
            r#"{"code":404,"message":"environment not found"}"#,
        );
        assert_eq!((e.status, e.message.as_str()), (404, "environment not found"));
        let e = refusal(
            reqwest::StatusCode::BAD_REQUEST,
            r#"{"diagnostics":[{"range":{"environment":"","begin":{"line":2,"column":3,"byte":9},
               "end":{"line":2,"column":4,"byte":10}},"summary":"unknown property"}]}"#,
        );
        assert_eq!(e.message, "the definition has an error");
        assert_eq!(e.diagnostics[0].summary, "unknown property");
        assert_eq!(e.diagnostics[0].range.as_ref().unwrap().begin.line, 2);
        let e = refusal(reqwest::StatusCode::BAD_GATEWAY, "<html>");
        assert_eq!(e.message, "Bad Gateway");
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let c = Client::with_token("http://127.0.0.1:1/prefix/", AccessToken::from_presented("t"), false).unwrap();
        let u = c
            .url(&["api", "esc", "a b", "x"], &[("continuationToken", "p&q")])
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:1/prefix/api/esc/a%20b/x?continuationToken=p%26q"
        );
    }
}
