//! The `sesame` command line: one clap-derived enum of subcommands, one module per group.
//!
//! Exit codes (documented in `--help`): 0 success; 1 failure (start-up refused, network, I/O); 2 usage error (bad
//! flags, from clap); 3 the server refused the request (4xx: authentication, permission, bad input); 4 the server
//! failed (5xx).

pub mod admin;
pub mod agent;
pub mod audit;
pub mod client;
pub mod env;
pub mod k8s;
pub mod kek;
pub mod login;
pub mod oidc;
pub mod oidc_login;
pub mod oidc_token;
pub mod oidc_trust;
pub mod serve;
pub mod stack;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: the server refused the request (HTTP 4xx).
pub const EXIT_REFUSED: u8 = 3;
/// Exit code: the server failed (HTTP 5xx).
pub const EXIT_SERVER_FAILED: u8 = 4;

/// Sesame: self-hosted keys, secrets and configuration environments, in the style of Pulumi ESC.
#[derive(Debug, Parser)]
#[command(
    name = "sesame",
    version,
    about,
    long_about = "Sesame keeps configuration and secrets in environments, seals every secret under a per-scope data \
key (DEK) that is itself wrapped by a key-encryption key (KEK) you control, and serves them over an API that Pulumi \
ESC clients understand.\n\nStart a server with `sesame serve` (SQLite and a local key file in ./sesame-data, no \
other setup), then use the other commands against it.",
    after_help = "Exit codes: 0 success, 1 failure, 2 usage error, 3 the server refused the request (4xx), 4 the \
server failed (5xx).\nLogging: set SESAME_LOG (e.g. SESAME_LOG=debug); logs go to stderr."
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Sesame server.
    Serve(Box<serve::ServeArgs>),
    /// Check an access token with a server and save both for the other commands.
    #[command(
        long_about = "Check an access token with a server and save both for the other commands.\n\n\
The token comes from SESAME_TOKEN, else --token-file, else a prompt that does not echo (or one line of standard input \
when it is not a terminal). It is checked with GET /api/user, then saved with the URL in \
$SESAME_CONFIG_DIR/credentials.json (default ~/.sesame/credentials.json), a file only you can read (mode 0600). \
Later commands use that URL when neither --url nor SESAME_URL is given, and that token when none is given and the URL \
is the saved one. When you belong to exactly one org, it becomes the default org of environment names; with several \
there is no default (never the first by name): choose one with --org here, or --org / SESAME_ORG on each command."
    )]
    Login(login::LoginArgs),
    /// Forget the saved server and token (removes the credentials file).
    Logout(login::LogoutArgs),
    /// Encrypt and decrypt stack secrets (the Pulumi service secrets-manager API).
    Stack(stack::StackArgs),
    /// Manage key-encryption keys: register your own (bring your own key), list, make default, disable.
    Kek(kek::KekArgs),
    /// Environments on the server: create, list, read, edit, open, run a command with, version, diff; and
    /// evaluate a local definition offline (`env eval`).
    Env(env::EnvArgs),
    /// The audit log: export a chain, verify an export.
    Audit(audit::AuditArgs),
    /// Organizations: list the ones you can use; create one (instance administrator).
    Org(admin::OrgArgs),
    /// An organization's members and their org-wide roles.
    Member(admin::MemberArgs),
    /// An organization's teams and who is in them.
    Team(admin::TeamArgs),
    /// Role grants on an organization, its projects and environments.
    Role(admin::RoleArgs),
    /// Access tokens: personal, team and organization; create, list, revoke.
    Token(admin::TokenArgs),
    /// Invitations to join organizations: list yours, accept or decline them.
    Invitation(admin::InvitationArgs),
    /// OIDC: this server's issuer (mint or preview a token about an environment), and the issuers an org trusts
    /// for token exchange with their policies.
    Oidc(oidc::OidcArgs),
    /// Kubernetes: the injector's mutating admission webhook (`sesame k8s webhook`).
    K8s(k8s::K8sArgs),
    /// Write an environment's values as files (a pod's init container or sidecar, a VM, a CI runner), authenticated
    /// by a ServiceAccount token exchanged for a short-lived Sesame token, or by a Sesame token file.
    Agent(agent::AgentArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Login(args) => login::login(args).await,
        Command::Logout(args) => login::logout(args).await,
        Command::Stack(args) => stack::run(args).await,
        Command::Kek(args) => kek::run(args).await,
        Command::Env(args) => env::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Org(args) => admin::run_org(args).await,
        Command::Member(args) => admin::run_member(args).await,
        Command::Team(args) => admin::run_team(args).await,
        Command::Role(args) => admin::run_role(args).await,
        Command::Token(args) => admin::run_token(args).await,
        Command::Invitation(args) => admin::run_invitation(args).await,
        Command::Oidc(args) => oidc::run(args).await,
        Command::K8s(args) => k8s::run(args).await,
        Command::Agent(args) => agent::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<client::ServerRefused>() {
                Some(refused) if refused.status >= 500 => ExitCode::from(EXIT_SERVER_FAILED),
                Some(_) => ExitCode::from(EXIT_REFUSED),
                None => ExitCode::FAILURE,
            }
        }
    }
}
