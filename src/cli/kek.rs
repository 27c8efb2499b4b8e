//! `sesame kek add|ls|default|disable`: the KEK registry (bring your own key) through the admin API.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;

use super::client::{Client, ClientArgs};

/// `sesame kek …`
#[derive(Debug, Args)]
pub struct KekArgs {
    /// The KEK command.
    #[command(subcommand)]
    pub command: KekCommand,
}

/// KEK commands.
#[derive(Debug, Subcommand)]
pub enum KekCommand {
    /// Register a KEK for an org (or the instance), creating the key where the backend can, after proving that it
    /// wraps and unwraps.
    #[command(
        after_help = "URIs: local://NAME (key file in the server's data folder), passphrase:// \
(SESAME_PASSPHRASE on the server), awskms://KEY?region=R, pkcs11:token=T;object=K?module-path=M (PIN from \
SESAME_PKCS11_PIN on the server or pin-source=file:PATH). Secrets never go in the URI.\n\nExample:\n  sesame kek add \
local://acme-own --org acme --default"
    )]
    Add {
        /// The KEK URI.
        uri: String,
        /// The org it serves (default: the instance's own, system KEKs).
        #[arg(long)]
        org: Option<String>,
        /// Wrap the org's new DEKs with it.
        #[arg(long)]
        default: bool,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List registered KEKs.
    Ls {
        /// Only this org's KEKs (`system` for the instance's).
        #[arg(long)]
        org: Option<String>,
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a KEK (id or URI) the default of its owner.
    Default {
        /// KEK id or URI.
        kek: String,
        /// The org whose KEK it is (to resolve a URI).
        #[arg(long)]
        org: Option<String>,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a KEK (id or URI): it still unwraps, but wraps no new DEK.
    Disable {
        /// KEK id or URI.
        kek: String,
        /// The org whose KEK it is (to resolve a URI).
        #[arg(long)]
        org: Option<String>,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct Kek {
    id: String,
    org: Option<String>,
    uri: String,
    state: String,
    default: bool,
}

#[derive(Debug, Deserialize)]
struct KekList {
    keks: Vec<Kek>,
}

fn list_path(org: Option<&str>) -> String {
    match org {
        Some(o) => format!("api/sesame/v1/keks?org={o}"),
        None => "api/sesame/v1/keks".into(),
    }
}

/// The id of a KEK given by id or URI.
async fn resolve(client: &Client, kek: &str, org: Option<&str>) -> anyhow::Result<String> {
    let list: KekList = client.get(&list_path(org)).await?;
    let matches: Vec<&Kek> = list.keks.iter().filter(|k| k.id == kek || k.uri == kek).collect();
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!(
            "no KEK {kek:?} is registered{}",
            org.map(|o| format!(" for org {o}")).unwrap_or_default()
        ),
        _ => bail!("{kek:?} names several KEKs; pass --org or use the id"),
    }
}

fn print_table(keks: &[Kek]) {
    println!("{:<36}  {:<12}  {:<8}  {:<7}  URI", "ID", "ORG", "STATE", "DEFAULT");
    for k in keks {
        println!(
            "{:<36}  {:<12}  {:<8}  {:<7}  {}",
            k.id,
            k.org.as_deref().unwrap_or("(system)"),
            k.state,
            if k.default { "yes" } else { "" },
            k.uri
        );
    }
}

/// Runs `sesame kek …`.
pub async fn run(args: KekArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KekCommand::Add {
            uri,
            org,
            default,
            client,
        } => {
            let client = Client::new(&client)?;
            let body = serde_json::json!({ "uri": uri, "org": org, "default": default });
            let kek: Kek = client.post("api/sesame/v1/keks", &body).await?;
            println!(
                "registered KEK {} ({}){}",
                kek.id,
                kek.uri,
                if kek.default { ", now the default" } else { "" }
            );
        }
        KekCommand::Ls { org, json, client } => {
            let client = Client::new(&client)?;
            let list: KekList = client.get(&list_path(org.as_deref())).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list.keks).context("printing JSON")?);
            } else {
                print_table(&list.keks);
            }
        }
        KekCommand::Default { kek, org, client } => {
            let client = Client::new(&client)?;
            let id = resolve(&client, &kek, org.as_deref()).await?;
            let kek: Kek = client
                .post(&format!("api/sesame/v1/keks/{id}/default"), &serde_json::json!({}))
                .await?;
            println!("KEK {} ({}) is now the default", kek.id, kek.uri);
        }
        KekCommand::Disable { kek, org, client } => {
            let client = Client::new(&client)?;
            let id = resolve(&client, &kek, org.as_deref()).await?;
            let kek: Kek = client
                .post(&format!("api/sesame/v1/keks/{id}/disable"), &serde_json::json!({}))
                .await?;
            println!(
                "KEK {} ({}) is disabled: it still unwraps, but wraps no new DEK",
                kek.id, kek.uri
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
