//! `sesame member ls|add|set-role|rm`: an org's members and their org-wide roles. An org administrator's `add`
//! invites; the instance administrator's adds directly, printing a new user's first token once.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::{OrgClient, OrgFlag, OrgList, field, print_json, seg, send};
use crate::cli::client::{Client, ClientArgs};
use crate::wire::admin::{InvitationInfo, MemberInfo};

/// `sesame member …`
#[derive(Debug, Args)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
}

/// Member commands (org administrators, except `ls`).
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List an organization's members and their org-wide roles.
    Ls {
        #[command(flatten)]
        list: OrgList,
    },
    /// Invite a user to an organization with an org-wide role; they join when they accept (`sesame invitation
    /// accept`). The instance administrator adds users directly instead: a user new to the instance is created, and
    /// its first personal token is printed once.
    #[command(
        after_help = "Roles: none, reader, opener, editor, admin.\n\nExample:\n  sesame member add alice \
--role editor --org acme"
    )]
    Add {
        /// The user's login.
        login: String,
        /// The org-wide role.
        #[arg(long)]
        role: String,
        /// Name shown to people, for a new user.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        org: OrgFlag,
        /// Print JSON for scripts (includes the new user's token).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a member's org-wide role.
    SetRole {
        /// The member's login.
        login: String,
        /// The new role.
        role: String,
        #[command(flatten)]
        at: OrgClient,
    },
    /// Remove a member from an organization (and from its teams there, with every grant the member holds).
    Rm {
        /// The member's login.
        login: String,
        #[command(flatten)]
        at: OrgClient,
    },
}

/// Runs `sesame member …`.
pub async fn run_member(args: MemberArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MemberCommand::Ls { list } => {
            let Some(members) = list.fetch::<MemberInfo>("members").await? else {
                return Ok(ExitCode::SUCCESS);
            };
            println!("{:<24}  {:<8}  NAME", "LOGIN", "ROLE");
            for m in members {
                println!("{:<24}  {:<8}  {}", m.login, m.role, m.name);
            }
        }
        MemberCommand::Add {
            login,
            role,
            name,
            org,
            json,
            client,
        } => {
            let path = org.path("members")?;
            let v: Value = Client::new(&client)?
                .post(&path, &json!({ "login": login, "name": name, "role": role }))
                .await?;
            if json {
                return print_json(&v).map(|_| ExitCode::SUCCESS);
            }
            if let Some(inv) = v.get("invitation") {
                let inv: InvitationInfo = serde_json::from_value(inv.clone())?;
                println!(
                    "invited {} to {} as {} (invitation {}); they join once they run `sesame invitation accept {}`",
                    inv.login, inv.org, inv.role, inv.id, inv.id
                );
                return Ok(ExitCode::SUCCESS);
            }
            let member: MemberInfo = field(&v, "member")?;
            println!("added {} to {} as {}", member.login, org.org, member.role);
            if let Some(token) = v.get("token").and_then(Value::as_str) {
                eprintln!(
                    "{} is new here; their first personal token follows. It is shown only now: hand it to them \
                     over a safe channel.",
                    member.login
                );
                println!("{token}");
            }
        }
        MemberCommand::SetRole { login, role, at } => {
            let path = format!("{}/{}", at.org.path("members")?, seg("login", &login)?);
            let member: MemberInfo = Client::new(&at.client)?
                .send_json(Method::PATCH, &path, Some(&json!({ "role": role })))
                .await?;
            println!("{} is now {} in {}", member.login, member.role, at.org.org);
        }
        MemberCommand::Rm { login, at } => {
            let path = format!("{}/{}", at.org.path("members")?, seg("login", &login)?);
            send(&at.client, Method::DELETE, &path).await?;
            println!("removed {login} from {}", at.org.org);
        }
    }
    Ok(ExitCode::SUCCESS)
}
