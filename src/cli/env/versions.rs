//! `env version ls|tag|rollback` and `env diff`: an environment's revisions and their tags, restoring an earlier
//! definition as a new revision (history is kept), and unified diffs between two definitions (secrets compared
//! sealed).

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::names::{Remote, no_version, parse_name};
use super::output::{print_table, say, say_raw};
use super::session::{Session, about, status_of};
use crate::core::keys::Name;

/// `env version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(subcommand)]
    pub command: VersionCommand,
}

/// Revision commands.
#[derive(Debug, Subcommand)]
pub enum VersionCommand {
    /// List an environment's revisions, newest first, with their tags.
    Ls {
        /// The environment: [ORG/]PROJECT/ENV.
        env: String,
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Point a revision tag at a revision (creating the tag, or moving it).
    #[command(
        after_help = "REVISION is a number or another tag; without it, the latest revision.\n\nExample:\n  sesame env \
version tag web/prod stable 12"
    )]
    Tag {
        /// The environment: [ORG/]PROJECT/ENV.
        env: String,
        /// The tag (e.g. stable).
        tag: String,
        /// The revision it names [default: the latest].
        revision: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make an earlier revision's definition the latest again (as a new revision; history is kept).
    Rollback {
        /// The environment: [ORG/]PROJECT/ENV.
        env: String,
        /// The revision (number or tag) to restore.
        revision: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `env diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The environment, perhaps at a version: [ORG/]PROJECT/ENV[@VERSION].
    pub env: String,
    /// What to compare with: another [ORG/]PROJECT/ENV[@VERSION], or just @VERSION of the same environment.
    pub other: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

/// Runs `env version …`.
pub(super) async fn version(args: VersionArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        VersionCommand::Ls { env, json, remote } => {
            let s = Session::new(&remote)?;
            let env = s.env(&env)?;
            no_version(&env, "version ls")?;
            let revisions = s.revisions(&env).await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&revisions)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = revisions
                .iter()
                .map(|r| {
                    let creator = match (r.creator_login.clone(), r.creator_name.clone()) {
                        (l, n) if n.is_empty() || n == l => l,
                        (l, n) if l.is_empty() => n,
                        (l, n) => format!("{l} ({n})"),
                    };
                    vec![r.number.to_string(), r.created.clone(), creator, r.tags.join(", ")]
                })
                .collect();
            print_table(&["REVISION", "CREATED", "CREATOR", "TAGS"], &rows);
        }
        VersionCommand::Tag {
            env,
            tag,
            revision,
            remote,
        } => {
            let s = Session::new(&remote)?;
            let env = s.env(&env)?;
            no_version(&env, "version tag")?;
            tag.parse::<Name>()
                .with_context(|| format!("invalid tag name {tag:?}"))?;
            if tag.parse::<u64>().is_ok() {
                bail!("a tag cannot be a number ({tag}): numbers name revisions");
            }
            let number = match &revision {
                Some(r) => s.resolve_revision(&env, r).await?,
                None => s.latest_revision(&env).await?,
            };
            let url = s.url(&env, &["versions", "tags"], &[])?;
            let body = serde_json::json!({"name": tag, "revision": number});
            let created = s.client.execute(s.client.request(Method::POST, url).json(&body)).await;
            match created {
                Ok(_) => say!("Tagged revision {number} of {env} as {tag}."),
                Err(e) if status_of(&e) == Some(409) => {
                    let url = s.url(&env, &["versions", "tags", &tag], &[])?;
                    let body = serde_json::json!({"revision": number});
                    s.client
                        .execute(s.client.request(Method::PATCH, url).json(&body))
                        .await
                        .map_err(|e| about(e, &env))
                        .with_context(|| format!("moving the tag {tag}"))?;
                    say!("Moved the tag {tag} of {env} to revision {number}.");
                }
                Err(e) => return Err(about(e, &env).context(format!("creating the tag {tag}"))),
            }
        }
        VersionCommand::Rollback { env, revision, remote } => {
            let s = Session::new(&remote)?;
            let env = s.env(&env)?;
            no_version(&env, "version rollback")?;
            revision
                .parse::<Name>()
                .with_context(|| format!("{revision:?} is neither a revision number nor a tag"))?;
            let old = s.definition(&env.at(Some(revision.clone()))).await?;
            let current = s.definition(&env).await?;
            if old.yaml == current.yaml {
                say!("The latest definition of {env} is already that of {revision}; nothing to do.");
                return Ok(ExitCode::SUCCESS);
            }
            let answer = s
                .patch(&env, &old.yaml, current.etag.as_deref())
                .await
                .with_context(|| format!("restoring revision {revision}"))?;
            match answer.revision {
                Some(r) => say!("Restored revision {revision} of {env} as revision {r}."),
                None => say!("Restored revision {revision} of {env}."),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `env diff`.
pub(super) async fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let a = s.env(&args.env)?;
    let (a, b) = match args.other.as_deref() {
        Some(other) if other.starts_with('@') => {
            let b = parse_name(&format!("{}/{}/{}{other}", a.org, a.project, a.name), &s.default_org)?;
            (Some(a), b)
        }
        Some(other) => {
            let b = s.env(other)?;
            (Some(a), b)
        }
        None if a.version.is_some() => {
            let b = a.at(None);
            (Some(a), b)
        }
        None => {
            // The change the latest revision made (from nothing, for the first one).
            let latest = s.latest_revision(&a).await?;
            let before = (latest > 1).then(|| a.at(Some((latest - 1).to_string())));
            (before, a.at(Some(latest.to_string())))
        }
    };
    let (left, left_label) = match &a {
        Some(a) => (s.definition(a).await?.yaml, a.to_string()),
        None => (String::new(), "/dev/null".to_owned()),
    };
    let right = s.definition(&b).await?.yaml;
    say_raw!("{}", unified_diff(&left, &right, &left_label, &b.to_string()));
    Ok(ExitCode::SUCCESS)
}

/// A unified diff of two texts (empty when they are equal).
pub(super) fn unified_diff(left: &str, right: &str, left_label: &str, right_label: &str) -> String {
    if left == right {
        return String::new();
    }
    similar::TextDiff::from_lines(left, right)
        .unified_diff()
        .context_radius(3)
        .header(left_label, right_label)
        .missing_newline_hint(true)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_are_unified_and_empty_when_equal() {
        assert_eq!(unified_diff("a\n", "a\n", "x", "y"), "");
        let d = unified_diff("values:\n  a: 1\n", "values:\n  a: 2\n", "e@1", "e@2");
        assert!(d.starts_with("--- e@1\n+++ e@2\n"), "{d}");
        assert!(d.contains("-  a: 1\n+  a: 2\n"), "{d}");
    }
}
