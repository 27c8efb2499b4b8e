//! `sesame oidc …`: OIDC between Sesame and other systems. `issuer` and `policy` manage the issuers an org trusts
//! for token exchange and their claim policies ([`super::oidc_trust`]); `sesame login --oidc-token` makes the
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
}

/// Runs `sesame oidc …`.
pub async fn run(args: OidcArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        OidcCommand::Issuer(a) => super::oidc_trust::run_issuer(a).await,
        OidcCommand::Policy(a) => super::oidc_trust::run_policy(a).await,
    }
}
