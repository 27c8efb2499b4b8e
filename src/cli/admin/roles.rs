//! `sesame role ls|grant|revoke`: role grants for users and teams on an org, a project or one environment (the most
//! specific grant wins).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::{OrgClient, OrgList, query, send};
use crate::cli::client::Client;
use crate::wire::admin::GrantInfo;

/// `sesame role …`
#[derive(Debug, Args)]
pub struct RoleArgs {
    #[command(subcommand)]
    pub command: RoleCommand,
}

/// Role-grant commands (org administrators, except `ls`).
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List every role grant in an organization.
    Ls {
        #[command(flatten)]
        list: OrgList,
    },
    /// Grant a role to a user or team on the organization, a project, or one environment. The most specific grant
    /// wins; `none` takes away what a broader grant gives.
    #[command(
        after_help = "Subjects: user:LOGIN or team:NAME. Roles: none, reader, opener, editor, admin.\n\n\
Example:\n  sesame role grant team:ops opener --project app --env prod --org acme"
    )]
    Grant {
        /// `user:LOGIN` or `team:NAME`.
        subject: String,
        /// The role.
        role: String,
        /// Limit the grant to this project.
        #[arg(long)]
        project: Option<String>,
        /// Limit the grant to this environment of the project.
        #[arg(long, requires = "project")]
        env: Option<String>,
        #[command(flatten)]
        at: OrgClient,
    },
    /// Delete a grant (the subject falls back to its broader grants).
    Revoke {
        /// `user:LOGIN` or `team:NAME`.
        subject: String,
        /// The project of the grant.
        #[arg(long)]
        project: Option<String>,
        /// The environment of the grant.
        #[arg(long, requires = "project")]
        env: Option<String>,
        #[command(flatten)]
        at: OrgClient,
    },
}

/// Runs `sesame role …`.
pub async fn run_role(args: RoleArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RoleCommand::Ls { list } => {
            let Some(grants) = list.fetch::<GrantInfo>("roles").await? else {
                return Ok(ExitCode::SUCCESS);
            };
            println!("{:<30}  {:<20}  {:<20}  ROLE", "SUBJECT", "PROJECT", "ENVIRONMENT");
            for g in grants {
                let or_all = |s: &str| if s.is_empty() { "*".to_owned() } else { s.to_owned() };
                println!(
                    "{:<30}  {:<20}  {:<20}  {}",
                    g.subject,
                    or_all(&g.project),
                    if g.project.is_empty() {
                        String::new()
                    } else {
                        or_all(&g.environment)
                    },
                    g.role
                );
            }
        }
        RoleCommand::Grant {
            subject,
            role,
            project,
            env,
            at,
        } => {
            let path = at.org.path("roles")?;
            let body = json!({
                "subject": subject,
                "project": project.clone().unwrap_or_default(),
                "environment": env.clone().unwrap_or_default(),
                "role": role,
            });
            let g: GrantInfo = Client::new(&at.client)?
                .send_json(Method::PUT, &path, Some(&body))
                .await?;
            println!("{} is {} on {}", g.subject, g.role, level(&at.org.org, &project, &env));
        }
        RoleCommand::Revoke {
            subject,
            project,
            env,
            at,
        } => {
            let path = format!(
                "{}?{}",
                at.org.path("roles")?,
                query(&[
                    ("subject", &subject),
                    ("project", project.as_deref().unwrap_or("")),
                    ("environment", env.as_deref().unwrap_or("")),
                ])
            );
            send(&at.client, Method::DELETE, &path).await?;
            println!("revoked {subject}'s grant on {}", level(&at.org.org, &project, &env));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn level(org: &str, project: &Option<String>, env: &Option<String>) -> String {
    match (project, env) {
        (Some(p), Some(e)) => format!("{org}/{p}/{e}"),
        (Some(p), None) => format!("{org}/{p}"),
        _ => org.to_owned(),
    }
}
