//! `sesame login --oidc-token FILE|- --org O`: what a CI step or a pod runs to trade its platform's OIDC token for a
//! short-lived Sesame token (RFC 8693 at `/api/oauth/token`, the request the Pulumi CLI sends), which `login` then
//! checks and saves like any other. The OIDC token is read from a file or standard input (never a flag: the process
//! list would show it) and is never printed or saved.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

use super::client::Client;
use crate::core::tokens::AccessToken;
use crate::wire::trust::{OAuthErrorBody, TokenExchangeResponse};

/// The minted token and what the server said of it.
pub struct Exchanged {
    /// The Sesame token.
    pub token: AccessToken,
    /// `urn:pulumi:token-type:access_token:<kind>`.
    pub issued_token_type: String,
    /// Lifetime, seconds.
    pub expires_in: i64,
}

fn read_oidc_token(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the OIDC token from standard input")?;
    } else {
        let read = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading the OIDC token file {}", path.display()))?,
        );
        text.push_str(&read);
    }
    let trimmed = Zeroizing::new(text.trim().to_owned());
    if trimmed.is_empty() {
        bail!("the OIDC token is empty");
    }
    Ok(trimmed)
}

/// Exchanges the OIDC token in `path` at the server `url` for a token of `org`.
pub async fn exchange(
    url: &str,
    path: &Path,
    org: &str,
    scope: Option<&str>,
    expiration: Option<i64>,
    insecure: bool,
) -> anyhow::Result<Exchanged> {
    let oidc = read_oidc_token(path)?;
    // The same URL rules as every command (https, or http to loopback, unless --insecure).
    let client = Client::with_token(url, AccessToken::from_presented(""), insecure)?;
    let endpoint = client
        .base()
        .join("api/oauth/token")
        .context("building the token URL")?;
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("audience", &format!("urn:pulumi:org:{org}"))
        .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
        .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:id_token")
        .append_pair("subject_token", &oidc)
        .append_pair("scope", scope.unwrap_or(""));
    if let Some(e) = expiration {
        form.append_pair("expiration", &e.to_string());
    }
    let body = Zeroizing::new(form.finish());
    let http = reqwest::Client::builder()
        .user_agent(concat!("sesame-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    let response = http
        .post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.as_bytes().to_vec())
        .send()
        .await
        .with_context(|| format!("could not reach the server at {}", client.base()))?;
    let status = response.status();
    let bytes = Zeroizing::new(response.bytes().await.context("reading the server's answer")?.to_vec());
    if !status.is_success() {
        let why = serde_json::from_slice::<OAuthErrorBody>(&bytes)
            .map(|e| format!("{}: {}", e.error, e.error_description))
            .unwrap_or_else(|_| status.to_string());
        return Err(super::client::ServerRefused {
            status: status.as_u16(),
            message: format!("token exchange refused ({why})"),
            diagnostics: Vec::new(),
        }
        .into());
    }
    let answer: TokenExchangeResponse =
        serde_json::from_slice(&bytes).context("the server's token exchange answer was not the expected JSON")?;
    Ok(Exchanged {
        token: AccessToken::from_presented(answer.access_token.expose()),
        issued_token_type: answer.issued_token_type,
        expires_in: answer.expires_in,
    })
}
