//! `sesame kek add|ls|default|disable|migrate|status|pause|resume|verify|retire`: the KEK registry (bring your own
//! key) and KEK migrations through the admin API.
//!
//! With `--org ORG` a command goes to the org's own routes (`/api/sesame/v1/orgs/ORG/keks…`,
//! `…/kek-migrations…`), which the org's admins may use; without it (or with `--org system` for listing), to the
//! instance administrator's routes, which reach every KEK and every migration.

use std::process::ExitCode;

use crate::wire::keks::{
    AddKekRequest, KekInfo, KekList, MigrationInfo, MigrationList, StartMigrationRequest, VerifyResponse,
};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};

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
(SESAME_PASSPHRASE on the server), awskms://KEY?region=R, azurekeyvault://VAULT.vault.azure.net/keys/KEY, \
gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K, pkcs11:token=T;object=K?module-path=M (PIN from \
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
        /// Only this org's KEKs (`system` for the instance's; an org's admins see only their org's).
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
    /// Re-wrap every DEK under KEK A with KEK B (ids or URIs), online; re-running resumes an unfinished job.
    #[command(
        after_help = "The job runs on the server, survives restarts (any replica resumes it), and never \
touches content: envelopes name DEKs, not KEKs. After it is done: `sesame kek verify ID`, then `sesame kek retire ID` \
deletes A's wraps (an org's admins add `--org ORG` to each).\n\nExample:\n  sesame kek migrate --from local://default \
--to local://acme-own --org acme --wait"
    )]
    Migrate {
        /// Source KEK (id or URI).
        #[arg(long)]
        from: String,
        /// Target KEK (id or URI).
        #[arg(long)]
        to: String,
        /// Only this org's DEKs (moving an org off the system KEK onto its own); an org's admins must name it.
        #[arg(long)]
        org: Option<String>,
        /// Wait for the job, showing a progress bar.
        #[arg(long)]
        wait: bool,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show migration jobs (one with a progress bar, or all).
    Status {
        /// Job id; all jobs when omitted.
        id: Option<String>,
        /// The org whose job it is (an org's admins must name it; the instance administrator need not).
        #[arg(long)]
        org: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pause a running migration.
    Pause {
        /// Job id.
        id: String,
        /// The org whose job it is (an org's admins must name it; the instance administrator need not).
        #[arg(long)]
        org: Option<String>,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume a paused or failed migration.
    Resume {
        /// Job id.
        id: String,
        /// The org whose job it is (an org's admins must name it; the instance administrator need not).
        #[arg(long)]
        org: Option<String>,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Unwrap every DEK of a migration under its target KEK.
    Verify {
        /// Job id.
        id: String,
        /// The org whose job it is (an org's admins must name it; the instance administrator need not).
        #[arg(long)]
        org: Option<String>,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete the source KEK's wraps of a done and verified migration.
    Retire {
        /// Job id.
        id: String,
        /// The org whose job it is (an org's admins must name it; the instance administrator need not).
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

fn print_migration(m: &MigrationInfo) {
    println!(
        "{}  {}  {}/{} DEKs{}{}",
        m.id,
        m.state,
        m.migrated,
        m.total,
        if m.verified { ", verified" } else { "" },
        if m.error.is_empty() {
            String::new()
        } else {
            format!(", error: {}", m.error)
        }
    );
}

/// Where the KEK and migration routes are: the org's own (`--org ORG`) or the instance administrator's (no `--org`,
/// or `--org system`).
fn base(org: Option<&str>) -> String {
    match org {
        Some(o) if o != "system" => format!("api/sesame/v1/orgs/{o}"),
        _ => "api/sesame/v1".into(),
    }
}

/// Polls a migration until it stops running, with a progress bar.
/// POSTs an action (`pause`, `resume`, `retire`, `verify`) to one KEK migration.
async fn migration_action<T: serde::de::DeserializeOwned>(
    client: &ClientArgs,
    org: Option<&str>,
    id: &str,
    action: &str,
) -> anyhow::Result<T> {
    Client::new(client)?
        .post(
            &format!("{}/kek-migrations/{id}/{action}", base(org)),
            &serde_json::json!({}),
        )
        .await
}

/// Resolves a KEK (id or URI) and POSTs an action (`default`, `disable`) to it.
async fn kek_action(client: &ClientArgs, kek: &str, org: Option<&str>, action: &str) -> anyhow::Result<KekInfo> {
    let client = Client::new(client)?;
    let id = resolve(&client, kek, org).await?;
    client
        .post(&format!("{}/keks/{id}/{action}", base(org)), &serde_json::json!({}))
        .await
}

async fn wait_for(client: &Client, org: Option<&str>, id: &str) -> anyhow::Result<MigrationInfo> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} DEKs re-wrapped ({per_sec}, eta {eta})")
            .context("progress bar template")?,
    );
    loop {
        let m: MigrationInfo = client.get(&format!("{}/kek-migrations/{id}", base(org))).await?;
        bar.set_length(u64::try_from(m.total).unwrap_or(0));
        bar.set_position(u64::try_from(m.migrated).unwrap_or(0));
        if m.state != "running" {
            bar.finish_and_clear();
            return Ok(m);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

fn list_path(org: Option<&str>) -> String {
    match org {
        Some("system") => "api/sesame/v1/keks?org=system".into(),
        _ => format!("{}/keks", base(org)),
    }
}

/// The id of a KEK given by id or URI.
async fn resolve(client: &Client, kek: &str, org: Option<&str>) -> anyhow::Result<String> {
    let list: KekList = client.get(&list_path(org)).await?;
    let matches: Vec<&KekInfo> = list.keks.iter().filter(|k| k.id == kek || k.uri == kek).collect();
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!(
            "no KEK {kek:?} is registered{}",
            org.map(|o| format!(" for org {o}")).unwrap_or_default()
        ),
        _ => bail!("{kek:?} names several KEKs; pass --org or use the id"),
    }
}

fn print_table(keks: &[KekInfo]) {
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
            let body = AddKekRequest {
                uri,
                org: None,
                default,
            };
            let kek: KekInfo = client.post(&format!("{}/keks", base(org.as_deref())), &body).await?;
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
        KekCommand::Migrate {
            from,
            to,
            org,
            wait,
            client,
        } => {
            let client = Client::new(&client)?;
            let body = StartMigrationRequest { from, to, org: None };
            let m: MigrationInfo = client
                .post(&format!("{}/kek-migrations", base(org.as_deref())), &body)
                .await?;
            let m = if wait {
                wait_for(&client, org.as_deref(), &m.id).await?
            } else {
                m
            };
            print_migration(&m);
            if m.state == "failed" {
                bail!("migration {} failed: {}", m.id, m.error);
            }
        }
        KekCommand::Status { id, org, json, client } => {
            let client = Client::new(&client)?;
            let jobs = format!("{}/kek-migrations", base(org.as_deref()));
            let all = match id {
                Some(id) => vec![client.get::<MigrationInfo>(&format!("{jobs}/{id}")).await?],
                None => client.get::<MigrationList>(&jobs).await?.migrations,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&all).context("printing JSON")?);
            } else {
                all.iter().for_each(print_migration);
            }
        }
        KekCommand::Pause { id, org, client } => {
            print_migration(&migration_action(&client, org.as_deref(), &id, "pause").await?);
        }
        KekCommand::Resume { id, org, client } => {
            print_migration(&migration_action(&client, org.as_deref(), &id, "resume").await?);
        }
        KekCommand::Retire { id, org, client } => {
            print_migration(&migration_action(&client, org.as_deref(), &id, "retire").await?);
        }
        KekCommand::Verify { id, org, client } => {
            let v: VerifyResponse = migration_action(&client, org.as_deref(), &id, "verify").await?;
            println!("{} DEKs checked under the target KEK, {} failed", v.checked, v.failed);
            if v.failed > 0 {
                bail!("verification failed for {} DEKs", v.failed);
            }
        }
        KekCommand::Default { kek, org, client } => {
            let kek = kek_action(&client, &kek, org.as_deref(), "default").await?;
            println!("KEK {} ({}) is now the default", kek.id, kek.uri);
        }
        KekCommand::Disable { kek, org, client } => {
            let kek = kek_action(&client, &kek, org.as_deref(), "disable").await?;
            println!(
                "KEK {} ({}) is disabled: it still unwraps, but wraps no new DEK",
                kek.id, kek.uri
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
