//! `sesame audit`: export an audit chain from the server, and verify an exported chain offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::client::{Client, ClientArgs};
use crate::core::audit::{
    AuditRecord, ChainError, Checkpoint, hex, key_fingerprint, unhex, unhex_any, verify, verify_checkpoints,
    verify_from, verify_signature,
};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print an audit chain as JSON lines, oldest first, with its signed checkpoints, ending with its head line (the
    /// instance's chain: instance administrators; an org's chain: its admins too).
    Export {
        /// The organization's chain; without it, the instance's (instance administration, failed logins).
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a chain's records through a signed checkpoint (instance administrators). Export and archive first.
    #[command(
        long_about = "Delete a chain's records up to and including record --through, which must carry a signed \
checkpoint (see the checkpoint lines of an export). The server checks the checkpoint's signature and that the records \
still hash to the head it signed, then deletes them in one transaction; the checkpoint becomes the chain's anchor, \
exports start with it, and `audit verify` checks the rest of the chain from it. Archive an export of the chain \
(verified with --key) before pruning: the deleted records are gone for good."
    )]
    Prune {
        /// The organization's chain; without it, the instance's.
        #[arg(long)]
        org: Option<String>,
        /// The last record to delete: one with a signed checkpoint.
        #[arg(long)]
        through: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check an exported chain: every record links to the one before it and its hash matches its contents.
    #[command(
        long_about = "Check an exported chain offline: every record must follow the one before it and hash to \
the value it carries, and the chain must end at the head line of the export. With --head (a head you recorded \
earlier, e.g. from an older export), the chain must also reach that head: a truncated or rewritten log is caught. \
With --key (the server's public key file from GET /api/sesame/v1/audit/key, or its fingerprint sha256:…), every \
signed checkpoint in the export must carry a valid signature and match the chain: a record rewritten before the \
last checkpoint is caught even if every hash was recomputed. Records after the last checkpoint are covered by no \
signature. Exit code 0 when the chain holds, 1 when it does not."
    )]
    Verify {
        /// The export (JSON lines), or - for standard input.
        file: PathBuf,
        /// A head recorded earlier that the chain must contain (hex SHA-256).
        #[arg(long)]
        head: Option<String>,
        /// The audit signing key: a file holding it (as served by /api/sesame/v1/audit/key, or its base64 or hex),
        /// or its fingerprint (sha256:<64 hex>), which the key embedded in the export must match.
        #[arg(long)]
        key: Option<String>,
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
        AuditCommand::Prune { org, through, client } => {
            let client = Client::new(&client)?;
            let answer: serde_json::Value = client
                .post(
                    "/api/sesame/v1/audit/prune",
                    &serde_json::json!({ "org": org, "through": through }),
                )
                .await?;
            println!(
                "pruned {} records; the chain is now anchored on the checkpoint of record {through}",
                answer["pruned"]
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { file, head, key } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let mut records = Vec::new();
            let mut checkpoints: Vec<Checkpoint> = Vec::new();
            let mut export_head: Option<String> = None;
            let mut export_key: Option<String> = None;
            let mut anchor: Option<Checkpoint> = None;
            for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v: serde_json::Value =
                    serde_json::from_str(line).with_context(|| format!("line {}: not JSON", n + 1))?;
                if let Some(a) = v.get("anchor") {
                    anchor = Some(
                        serde_json::from_value(a.clone()).with_context(|| format!("line {}: not an anchor", n + 1))?,
                    );
                    continue;
                }
                if let Some(c) = v.get("checkpoint") {
                    checkpoints.push(
                        serde_json::from_value(c.clone())
                            .with_context(|| format!("line {}: not a checkpoint", n + 1))?,
                    );
                    continue;
                }
                if v.get("head").is_some() && v.get("action").is_none() {
                    export_head = v["head"].as_str().map(str::to_owned);
                    export_key = v["signing_key"]["public_key"].as_str().map(str::to_owned);
                    continue;
                }
                let r: AuditRecord =
                    serde_json::from_value(v).with_context(|| format!("line {}: not an audit record", n + 1))?;
                records.push(r);
            }
            let Some(export_head) = export_head else {
                bail!("the export has no head line: it was cut short");
            };
            let result = match &anchor {
                None => verify(&records, Some(&export_head)),
                Some(a) => verify_anchored(a, &records, &export_head),
            };
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
            let public_key = match &key {
                Some(k) => Some(resolve_key(k, export_key.as_deref())?),
                None => None,
            };
            match result {
                Ok(last) => {
                    let Some(public_key) = public_key else {
                        println!(
                            "ok: {} records, chain intact up to record {last}, head {export_head}",
                            records.len()
                        );
                        if let Some(a) = &anchor {
                            println!(
                                "note: records up to {} were pruned; without --key the anchor they were cut at is \
                                 taken on trust",
                                a.seq
                            );
                        }
                        if !checkpoints.is_empty() {
                            println!(
                                "note: the export's {} signed checkpoints were not checked; give --key to check \
                                 them (without them, a rewrite that recomputed every hash goes unnoticed)",
                                checkpoints.len()
                            );
                        }
                        return Ok(ExitCode::SUCCESS);
                    };
                    if let Some(a) = &anchor
                        && let Err(e) = verify_signature(a, &public_key)
                    {
                        eprintln!("the chain's anchor is not vouched for by the key: {e}");
                        return Ok(ExitCode::FAILURE);
                    }
                    match verify_checkpoints(&records, &checkpoints, &public_key) {
                        Ok(c) => {
                            println!(
                                "ok: {} records, chain intact up to record {last}, head {export_head}; {} signed \
                                 checkpoints by {} vouch for records {} to {}",
                                records.len(),
                                c.checkpoints,
                                key_fingerprint(&public_key),
                                anchor.as_ref().map_or(1, |a| a.seq + 1),
                                c.signed_through
                            );
                            if c.last > c.signed_through {
                                println!(
                                    "note: records {} to {} come after the last checkpoint and are covered by no \
                                     signature",
                                    c.signed_through + 1,
                                    c.last
                                );
                            }
                            Ok(ExitCode::SUCCESS)
                        }
                        Err(e) => {
                            eprintln!("audit chain not vouched for by the key: {e}");
                            Ok(ExitCode::FAILURE)
                        }
                    }
                }
                Err(e) => {
                    eprintln!("audit chain broken: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// The raw Ed25519 public key that `--key` names: a file (the JSON `/api/sesame/v1/audit/key` serves, or the key in
/// base64 or hex), or a fingerprint that the key embedded in the export (`export_key`, base64) must match.
fn resolve_key(arg: &str, export_key: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let path = std::path::Path::new(arg);
    let raw = if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let text = text.trim();
        let encoded = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if v.is_object() => v["public_key"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{}: no \"public_key\" field", path.display()))?,
            _ => text.to_owned(),
        };
        unhex_any(&encoded)
            .filter(|k| k.len() == 32)
            .or_else(|| STANDARD.decode(&encoded).ok())
            .with_context(|| format!("{}: not a public key (base64 or hex)", path.display()))?
    } else {
        let wanted = arg.strip_prefix("sha256:").unwrap_or(arg);
        if wanted.len() != 64 || unhex_any(wanted).is_none() {
            bail!("--key {arg:?} is neither a file nor a key fingerprint (sha256:<64 hex digits>)");
        }
        let embedded = export_key
            .and_then(|k| STANDARD.decode(k).ok())
            .context("the export carries no signing key to compare with the fingerprint: give the key file")?;
        let found = key_fingerprint(&embedded);
        if !found.eq_ignore_ascii_case(&format!("sha256:{wanted}")) {
            bail!("the export's signing key is {found}, not the key {arg} you trust");
        }
        embedded
    };
    if raw.len() != 32 {
        bail!("the key is not an Ed25519 public key (32 bytes)");
    }
    Ok(raw)
}

/// Checks `records` of a pruned chain: they must follow the anchor's signed head and end at `export_head`.
fn verify_anchored(anchor: &Checkpoint, records: &[AuditRecord], export_head: &str) -> Result<i64, ChainError> {
    let start = unhex(&anchor.head).ok_or_else(|| ChainError::BadHead(anchor.head.clone()))?;
    if let Some(first) = records.first()
        && first.event.chain != anchor.chain
    {
        return Err(ChainError::MixedChains(anchor.chain.clone(), first.event.chain.clone()));
    }
    let (last, head) = verify_from(anchor.seq, start, records)?;
    if !hex(&head).eq_ignore_ascii_case(export_head) {
        return Err(ChainError::HeadMismatch {
            seq: last,
            head: hex(&head),
            expected: export_head.to_owned(),
        });
    }
    Ok(last)
}
