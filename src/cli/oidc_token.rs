//! `sesame oidc token ORG/PROJECT/ENV`: mint an OIDC token about an environment (or preview its claims) through the
//! server's `…/oidc/token` and `…/oidc/claims` endpoints.
//!
//! Rule: the token goes to stdout alone (or inside `--json`), nowhere else; it is never logged.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::client::{Client, ClientArgs};
use crate::core::keys::Name;
use crate::wire::oidc_issuer::{OidcClaimsResponse, OidcTokenRequest, OidcTokenResponse};

/// `sesame oidc …`
#[derive(Debug, Args)]
pub struct OidcArgs {
    /// The OIDC command.
    #[command(subcommand)]
    pub command: OidcCommand,
}

/// OIDC commands.
#[derive(Debug, Subcommand)]
pub enum OidcCommand {
    /// Mint a short-lived OIDC token about an environment, signed by this server's issuer (needs the opener role on
    /// the environment); prints the token.
    #[command(after_help = "Two token families, as Pulumi ESC has:\n\n  \
--audience AUD            a custom-audience token (fn::open::oidc): sub = pulumi:org:<org-id>:env:<env-id>,\n                            \
aud = AUD, name claims under https://pulumi.com/.\n  \
--audience-prefix PREFIX  a login token (aws-login, gcp-login, …): aud = PREFIX:<org>, sub =\n                            \
pulumi:environments:org:<org>:env:<project>/<env>, or built from --subject-attribute\n                            \
(rootEnvironment.name, currentEnvironment.name, pulumi.user.login,\n                            \
pulumi.organization.login; in the order given).\n\n\
Relying parties trust the issuer printed in `iss`; its discovery document is at \
<iss>/.well-known/openid-configuration.\n\nExamples:\n  \
sesame oidc token acme/app/prod --audience https://registry.example.com --duration 15m\n  \
sesame oidc token acme/app/prod --audience-prefix aws --subject-attribute currentEnvironment.name --preview")]
    Token(TokenArgs),
}

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

/// Runs `sesame oidc …`.
pub async fn run(args: OidcArgs) -> anyhow::Result<ExitCode> {
    let OidcCommand::Token(a) = args.command;
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
