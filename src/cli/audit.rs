//! `sesame audit`: export an audit chain from the server, and verify an exported chain offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::client::{Client, ClientArgs};
use crate::core::audit::{AuditRecord, verify};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print an audit chain as JSON lines, oldest first, ending with its head line (instance administrators).
    Export {
        /// The organization's chain; without it, the instance's (instance administration, failed logins).
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check an exported chain: every record links to the one before it and its hash matches its contents.
    #[command(
        long_about = "Check an exported chain offline: every record must follow the one before it and hash to \
the value it carries, and the chain must end at the head line of the export. With --head (a head you recorded \
earlier, e.g. from an older export), the chain must also reach that head: a truncated or rewritten log is caught. \
Exit code 0 when the chain holds, 1 when it does not."
    )]
    Verify {
        /// The export (JSON lines), or - for standard input.
        file: PathBuf,
        /// A head recorded earlier that the chain must contain (hex SHA-256).
        #[arg(long)]
        head: Option<String>,
    },
}

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Export { org, client } => {
            let client = Client::new(&client)?;
            let path = match org {
                Some(o) => format!("/api/sesame/v1/orgs/{o}/audit"),
                None => "/api/sesame/v1/audit".to_owned(),
            };
            print!("{}", client.get_text(&path).await?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { file, head } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let mut records = Vec::new();
            let mut export_head: Option<String> = None;
            for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v: serde_json::Value =
                    serde_json::from_str(line).with_context(|| format!("line {}: not JSON", n + 1))?;
                if v.get("head").is_some() && v.get("action").is_none() {
                    export_head = v["head"].as_str().map(str::to_owned);
                    continue;
                }
                let r: AuditRecord =
                    serde_json::from_value(v).with_context(|| format!("line {}: not an audit record", n + 1))?;
                records.push(r);
            }
            let Some(export_head) = export_head else {
                bail!("the export has no head line: it was cut short");
            };
            let result = verify(&records, Some(&export_head));
            let result = match (&result, &head) {
                (Ok(_), Some(h)) => {
                    // The recorded head must be the export's head or an earlier record of this chain.
                    if records.iter().any(|r| r.hash.eq_ignore_ascii_case(h)) || export_head.eq_ignore_ascii_case(h) {
                        result
                    } else {
                        Err(crate::core::audit::ChainError::HeadMismatch {
                            seq: records.last().map_or(0, |r| r.seq),
                            head: export_head.clone(),
                            expected: h.clone(),
                        })
                    }
                }
                _ => result,
            };
            match result {
                Ok(last) => {
                    println!(
                        "ok: {} records, chain intact up to record {last}, head {export_head}",
                        records.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("audit chain broken: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
