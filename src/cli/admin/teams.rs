//! `sesame team ls|create|rm|add|remove`: an org's teams and who is in them.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::{OrgClient, OrgFlag, OrgList, seg, send};
use crate::cli::client::Client;
use crate::wire::admin::TeamInfo;

/// `sesame team …`
#[derive(Debug, Args)]
pub struct TeamArgs {
    #[command(subcommand)]
    pub command: TeamCommand,
}

/// Team commands (org administrators, except `ls`).
#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// List an organization's teams and their members.
    Ls {
        #[command(flatten)]
        list: OrgList,
    },
    /// Create a team.
    Create {
        /// The team's name.
        name: String,
        /// What the team is for.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        at: OrgClient,
    },
    /// Delete a team: its memberships and grants go, its team tokens are revoked.
    Rm {
        /// The team's name.
        name: String,
        #[command(flatten)]
        at: OrgClient,
    },
    /// Put a member of the organization in a team.
    Add {
        /// The team's name.
        team: String,
        /// The member's login.
        login: String,
        #[command(flatten)]
        at: OrgClient,
    },
    /// Take a user out of a team.
    Remove {
        /// The team's name.
        team: String,
        /// The member's login.
        login: String,
        #[command(flatten)]
        at: OrgClient,
    },
}

/// Runs `sesame team …`.
pub async fn run_team(args: TeamArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TeamCommand::Ls { list } => {
            let Some(teams) = list.fetch::<TeamInfo>("teams").await? else {
                return Ok(ExitCode::SUCCESS);
            };
            println!("{:<20}  {:<30}  MEMBERS", "NAME", "DESCRIPTION");
            for t in teams {
                println!("{:<20}  {:<30}  {}", t.name, t.description, t.members.join(", "));
            }
        }
        TeamCommand::Create { name, description, at } => {
            let path = at.org.path("teams")?;
            let _: Value = Client::new(&at.client)?
                .post(&path, &json!({ "name": name, "description": description }))
                .await?;
            println!("created team {name} in {}", at.org.org);
        }
        TeamCommand::Rm { name, at } => {
            let path = format!("{}/{}", at.org.path("teams")?, seg("team", &name)?);
            send(&at.client, Method::DELETE, &path).await?;
            println!("deleted team {name} from {}", at.org.org);
        }
        TeamCommand::Add { team, login, at } => {
            let path = team_member_path(&at.org, &team, &login)?;
            send(&at.client, Method::PUT, &path).await?;
            println!("{login} is in team {team} of {}", at.org.org);
        }
        TeamCommand::Remove { team, login, at } => {
            let path = team_member_path(&at.org, &team, &login)?;
            send(&at.client, Method::DELETE, &path).await?;
            println!("{login} left team {team} of {}", at.org.org);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn team_member_path(org: &OrgFlag, team: &str, login: &str) -> anyhow::Result<String> {
    Ok(format!(
        "{}/{}/members/{}",
        org.path("teams")?,
        seg("team", team)?,
        seg("login", login)?
    ))
}
