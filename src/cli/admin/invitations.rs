//! `sesame invitation ls|accept|decline`: the invitations addressed to you (an org administrator invites with
//! `sesame member add`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::{listing, seg, send};
use crate::cli::client::{Client, ClientArgs};
use crate::wire::admin::InvitationInfo;

/// `sesame invitation …`
#[derive(Debug, Args)]
pub struct InvitationArgs {
    #[command(subcommand)]
    pub command: InvitationCommand,
}

/// Invitation commands: an org administrator invites with `sesame member add`; you answer here.
#[derive(Debug, Subcommand)]
pub enum InvitationCommand {
    /// List the invitations addressed to you.
    Ls {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Accept an invitation: you join its organization with its role.
    Accept {
        /// The invitation's id (from `sesame invitation ls`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Decline an invitation: it is dropped and you do not join.
    Decline {
        /// The invitation's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs `sesame invitation …`.
pub async fn run_invitation(args: InvitationArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        InvitationCommand::Ls { json, client } => {
            let Some(invitations) =
                listing::<InvitationInfo>(&client, "api/sesame/v1/invitations", "invitations", json).await?
            else {
                return Ok(ExitCode::SUCCESS);
            };
            println!("{:<36}  {:<24}  {:<8}  INVITED BY", "ID", "ORG", "ROLE");
            for i in invitations {
                println!("{:<36}  {:<24}  {:<8}  {}", i.id, i.org, i.role, i.invited_by);
            }
        }
        InvitationCommand::Accept { id, client } => {
            let path = format!("api/sesame/v1/invitations/{}/accept", seg("invitation id", &id)?);
            let v: Value = Client::new(&client)?.post(&path, &json!({})).await?;
            let org = v.get("org").and_then(Value::as_str).unwrap_or_default();
            let role = v.get("role").and_then(Value::as_str).unwrap_or_default();
            println!("joined {org} as {role}");
        }
        InvitationCommand::Decline { id, client } => {
            let path = format!("api/sesame/v1/invitations/{}/decline", seg("invitation id", &id)?);
            send(&client, Method::POST, &path).await?;
            println!("declined invitation {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
