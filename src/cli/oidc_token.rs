//! `sesame oidc token ORG/PROJECT/ENV`: mint an OIDC token about an environment (or preview its claims) through the
//! server's `…/oidc/token` and `…/oidc/claims` endpoints.
//!
//! Rule: the token goes to stdout alone (or inside `--json`), nowhere else; it is never logged.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::client::{Client, ClientArgs};
use crate::core::keys::Name;
use crate::wire::oidc_issuer::{OidcClaimsResponse, OidcTokenRequest, OidcTokenResponse};

/// Flags of `oidc token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The environment, as ORG/PROJECT/ENV.
    #[arg(value_name = "ORG/PROJECT/ENV")]
    pub env: String,
    /// The audience of a custom-audience token (`aud`), e.g. https://registry.example.com.
    #[arg(
        long,
        conflicts_with = "audience_prefix",
        required_unless_present = "audience_prefix"
    )]
    pub audience: Option<String>,
    /// The target platform of a login token (aws, gcp, azure, vault, …): `aud` becomes PREFIX:<org>.
    #[arg(long)]
    pub audience_prefix: Option<String>,
    /// A subject attribute of a login token (repeatable, in order).
    #[arg(long = "subject-attribute", value_name = "ATTRIBUTE", requires = "audience_prefix")]
    pub subject_attributes: Vec<String>,
    /// Lifetime, a Go duration from 1m to 1h (default 1h for --audience, 10m for --audience-prefix).
    #[arg(long)]
    pub duration: Option<String>,
    /// Show the claims the token would carry, without signing one.
    #[arg(long)]
    pub preview: bool,
    /// Print the whole answer as JSON (token, key id, expiry and claims; or the preview's claims).
    #[arg(long)]
    pub json: bool,
    /// Server connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

fn env_path(env: &str, op: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = env.split('/').collect();
    let [org, project, name] = parts.as_slice() else {
        bail!("the environment must be ORG/PROJECT/ENV, got {env:?}");
    };
    for (what, part) in [("org", org), ("project", project), ("environment", name)] {
        part.parse::<Name>()
            .with_context(|| format!("invalid {what} name {part:?}"))?;
    }
    Ok(format!("api/esc/environments/{org}/{project}/{name}/oidc/{op}"))
}

/// Runs `sesame oidc token …`.
pub async fn run_token(a: TokenArgs) -> anyhow::Result<ExitCode> {
    let body = OidcTokenRequest {
        family: if a.audience.is_some() {
            "custom-audience"
        } else {
            "login"
        }
        .to_owned(),
        audience: a.audience.clone(),
        audience_prefix: a.audience_prefix.clone(),
        subject_attributes: (!a.subject_attributes.is_empty()).then(|| a.subject_attributes.clone()),
        duration: a.duration.clone(),
    };
    let client = Client::new(&a.client)?;
    if a.preview {
        let resp: OidcClaimsResponse = client.post(&env_path(&a.env, "claims")?, &body).await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&resp)?);
        } else {
            println!("{}", serde_json::to_string_pretty(&resp.claims)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let resp: OidcTokenResponse = client.post(&env_path(&a.env, "token")?, &body).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
    } else {
        println!("{}", resp.token.expose());
    }
    Ok(ExitCode::SUCCESS)
}
