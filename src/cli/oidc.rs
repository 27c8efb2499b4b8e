//! `sesame oidc …`: OIDC between Sesame and other systems. `issuer` and `policy` manage the issuers an org trusts
//! for token exchange and their claim policies ([`super::oidc_trust`]); `token` mints (or previews) a token from
//! this server's own issuer ([`super::oidc_token`]); `sesame login --oidc-token` makes the
//! exchange ([`super::oidc_login`]). This file only holds the small command enum, so more groups can join it.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::oidc_trust::{IssuerArgs, PolicyArgs};

/// `sesame oidc …`
#[derive(Debug, Args)]
pub struct OidcArgs {
    #[command(subcommand)]
    pub command: OidcCommand,
}

/// OIDC commands.
#[derive(Debug, Subcommand)]
pub enum OidcCommand {
    /// The OIDC issuers an org trusts for token exchange (CI platforms, Kubernetes clusters): add, ls, rm.
    Issuer(IssuerArgs),
    /// An issuer's trust policies: which of its tokens get which Sesame token (show, set).
    Policy(PolicyArgs),
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
    Token(super::oidc_token::TokenArgs),
}

/// Runs `sesame oidc …`.
pub async fn run(args: OidcArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        OidcCommand::Issuer(a) => super::oidc_trust::run_issuer(a).await,
        OidcCommand::Policy(a) => super::oidc_trust::run_policy(a).await,
        OidcCommand::Token(a) => super::oidc_token::run_token(a).await,
    }
}
