//! `sesame org ls|create`: the organizations you can use; creating one (instance administrator).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{listing, when};
use crate::cli::client::{Client, ClientArgs};
use crate::wire::admin::OrgInfo;

/// `sesame org …`
#[derive(Debug, Args)]
pub struct OrgArgs {
    #[command(subcommand)]
    pub command: OrgCommand,
}

/// Org commands.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// List the organizations you can use (all of them for the instance administrator).
    Ls {
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create an organization (instance administrator only).
    Create {
        /// Its name: letters, digits, '.', '_' and '-'.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs `sesame org …`.
pub async fn run_org(args: OrgArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        OrgCommand::Ls { json, client } => {
            let Some(orgs) = listing::<OrgInfo>(&client, "api/sesame/v1/orgs", "orgs", json).await? else {
                return Ok(ExitCode::SUCCESS);
            };
            println!("{:<30}  CREATED (UTC)", "NAME");
            for o in orgs {
                println!("{:<30}  {}", o.name, when(o.created_ms));
            }
        }
        OrgCommand::Create { name, client } => {
            let _: Value = Client::new(&client)?
                .post("api/sesame/v1/orgs", &json!({ "name": name }))
                .await?;
            println!("created organization {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
