//! `sesame token create|ls|revoke`: access tokens, personal or (org administrators) team and organization ones.
//! A token's text is printed once, when it is made.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::{field, listing, print_json, query, seg, send, when};
use crate::cli::client::{Client, ClientArgs};
use crate::core::tokens::TokenKind;
use crate::wire::admin::TokenInfo;

/// `sesame token …`
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `--kind` takes a token kind by its text form.
impl clap::ValueEnum for TokenKind {
    fn value_variants<'a>() -> &'a [Self] {
        &TokenKind::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an access token and print it once: a personal one for yourself, or (org administrators) a team or
    /// organization token.
    #[command(
        after_help = "Examples:\n  sesame token create --description laptop --expires-in-days 90\n  \
sesame token create --kind team --org acme --team ops --description ci\n  sesame token create --kind organization \
--org acme --json"
    )]
    Create {
        /// personal, team or organization.
        #[arg(long, default_value = "personal", value_enum)]
        kind: TokenKind,
        /// The org of a team or organization token.
        #[arg(long, env = "SESAME_ORG")]
        org: Option<String>,
        /// The team of a team token.
        #[arg(long)]
        team: Option<String>,
        /// A note, to recognise the token later.
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime in days (default: never expires).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Print JSON for scripts (includes the token).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List your personal tokens, or with --org an organization's team and organization tokens (never their text).
    Ls {
        /// List this organization's tokens.
        #[arg(long)]
        org: Option<String>,
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (from `sesame token ls`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn print_tokens(tokens: &[TokenInfo]) {
    println!(
        "{:<36}  {:<12}  {:<20}  {:<16}  {:<16}  {:<8}  DESCRIPTION",
        "ID", "KIND", "OWNER", "CREATED (UTC)", "EXPIRES (UTC)", "STATE"
    );
    for t in tokens {
        let owner = match (&t.user, &t.org, &t.team) {
            (Some(u), _, _) => u.clone(),
            (None, Some(o), Some(team)) => format!("{o}/{team}"),
            (None, Some(o), None) => o.clone(),
            _ => String::new(),
        };
        let now = crate::clock::Clock::system().now_ms();
        let state = match (t.revoked_ms, t.expires_ms) {
            (Some(_), _) => "revoked",
            (None, Some(exp)) if exp <= now => "expired",
            _ => "active",
        };
        println!(
            "{:<36}  {:<12}  {:<20}  {:<16}  {:<16}  {:<8}  {}",
            t.id,
            t.kind,
            owner,
            when(t.created_ms),
            t.expires_ms.map(when).unwrap_or_else(|| "never".into()),
            state,
            t.description
        );
    }
}

/// Runs `sesame token …`.
pub async fn run_token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TokenCommand::Create {
            kind,
            org,
            team,
            description,
            expires_in_days,
            json,
            client,
        } => {
            // A personal token names no org; SESAME_ORG set in the environment must not make it fail.
            let org = if kind == TokenKind::Personal { None } else { org };
            let body = json!({
                "kind": kind.as_str(),
                "org": org,
                "team": team,
                "description": description,
                "expiresInDays": expires_in_days,
            });
            let v: Value = Client::new(&client)?.post("api/sesame/v1/tokens", &body).await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            let id: String = field(&v, "id")?;
            let Some(token) = v.get("token").and_then(Value::as_str) else {
                bail!("the server's answer carried no token");
            };
            eprintln!("created {kind} token {id}; it is shown only now, store it safely:");
            println!("{token}");
        }
        TokenCommand::Ls { org, json, client } => {
            let path = match &org {
                Some(o) => format!("api/sesame/v1/tokens?{}", query(&[("org", o)])),
                None => "api/sesame/v1/tokens".to_owned(),
            };
            let Some(tokens) = listing::<TokenInfo>(&client, &path, "tokens", json).await? else {
                return Ok(ExitCode::SUCCESS);
            };
            print_tokens(&tokens);
        }
        TokenCommand::Revoke { id, client } => {
            let path = format!("api/sesame/v1/tokens/{}", seg("token id", &id)?);
            send(&client, Method::DELETE, &path).await?;
            println!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
