//! `env schedule ls|new|get|edit|rm|history ENV …`: the environment's rotation schedules, as Pulumi's
//! `esc env schedule` manages them (`…/{env}/schedules`). The server runs them; this only shows and changes them.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;

use super::names::{Remote, no_version};
use super::output::{print_table, say};
use super::session::{Session, about};
use crate::wire::schedules as wire;

/// `env schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List the environment's schedules.
    Ls(OneEnv),
    /// Make a schedule: exactly one of --cron and --once.
    New(Timing),
    /// Show one schedule.
    Get(OneSchedule),
    /// Change a schedule's timing, path or pause.
    Edit(EditArgs),
    /// Delete a schedule.
    Rm(OneSchedule),
    /// Show a schedule's past runs.
    History(OneSchedule),
}

#[derive(Debug, Args)]
pub struct OneEnv {
    /// The environment: [ORG/]PROJECT/ENV.
    pub env: String,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct OneSchedule {
    /// The environment: [ORG/]PROJECT/ENV.
    pub env: String,
    /// The schedule's id.
    pub id: String,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct Timing {
    /// The environment: [ORG/]PROJECT/ENV.
    pub env: String,
    /// A five-field cron expression in UTC (minute hour day-of-month month day-of-week), e.g. "0 3 * * *".
    #[arg(long, conflicts_with = "once", required_unless_present = "once")]
    pub cron: Option<String>,
    /// One rotation at this RFC 3339 instant, e.g. 2030-01-31T12:00:00Z.
    #[arg(long)]
    pub once: Option<String>,
    /// Rotate only the `fn::rotate` at this path under `values` (default: all of them).
    #[arg(long)]
    pub path: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// The environment: [ORG/]PROJECT/ENV.
    pub env: String,
    /// The schedule's id.
    pub id: String,
    /// A new cron expression (replaces a one-time instant).
    #[arg(long, conflicts_with = "once")]
    pub cron: Option<String>,
    /// A new one-time instant (replaces a cron expression).
    #[arg(long)]
    pub once: Option<String>,
    /// A new path ("" for all of the environment's `fn::rotate`).
    #[arg(long)]
    pub path: Option<String>,
    /// Pause (true) or resume (false).
    #[arg(long)]
    pub paused: Option<bool>,
    #[command(flatten)]
    pub remote: Remote,
}

fn row(s: &wire::ScheduledAction) -> Vec<String> {
    let when = if s.schedule_cron.is_empty() {
        format!("once {}", s.schedule_once)
    } else {
        format!("cron {}", s.schedule_cron)
    };
    let path = s
        .definition
        .as_ref()
        .and_then(|d| d["environmentPath"].as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("(all)")
        .to_owned();
    let next = if s.paused {
        "paused".to_owned()
    } else {
        s.next_execution.clone()
    };
    vec![s.id.clone(), when, path, next, s.last_executed.clone()]
}

const HEADER: [&str; 5] = ["ID", "SCHEDULE", "PATH", "NEXT", "LAST"];

/// Runs `env schedule …`.
pub(super) async fn schedule(args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ScheduleCommand::Ls(a) => {
            let (s, env) = open(&a.env, &a.remote)?;
            let answer = s.call(Method::GET, s.url(&env, &["schedules"], &[])?).await;
            let answer = answer.map_err(|e| about(e, &env))?;
            let list: wire::ListScheduledActions = serde_json::from_str(&answer.body).context("the server's answer")?;
            print_table(&HEADER, &list.schedules.iter().map(row).collect::<Vec<_>>());
        }
        ScheduleCommand::New(a) => {
            let (s, env) = open(&a.env, &a.remote)?;
            let body = wire::ScheduleRequest {
                schedule_cron: a.cron,
                schedule_once: a.once,
                secret_rotation_request: Some(wire::SecretRotationRequest {
                    environment_path: a.path.unwrap_or_default(),
                }),
                paused: None,
            };
            let url = s.url(&env, &["schedules"], &[])?;
            let answer = s.client.execute(s.client.request(Method::POST, url).json(&body)).await;
            let made: wire::ScheduledAction =
                serde_json::from_str(&answer.map_err(|e| about(e, &env))?.body).context("the server's answer")?;
            say!(
                "Created schedule {} for {env}; next run {}.",
                made.id,
                made.next_execution
            );
        }
        ScheduleCommand::Get(a) => {
            let (s, env) = open(&a.env, &a.remote)?;
            let answer = s.call(Method::GET, s.url(&env, &["schedules", &a.id], &[])?).await;
            let one: wire::ScheduledAction =
                serde_json::from_str(&answer.map_err(|e| about(e, &env))?.body).context("the server's answer")?;
            print_table(&HEADER, &[row(&one)]);
        }
        ScheduleCommand::Edit(a) => {
            let (s, env) = open(&a.env, &a.remote)?;
            let body = wire::ScheduleRequest {
                schedule_cron: a.cron,
                schedule_once: a.once,
                secret_rotation_request: a.path.map(|p| wire::SecretRotationRequest { environment_path: p }),
                paused: a.paused,
            };
            let url = s.url(&env, &["schedules", &a.id], &[])?;
            let answer = s.client.execute(s.client.request(Method::PATCH, url).json(&body)).await;
            let one: wire::ScheduledAction =
                serde_json::from_str(&answer.map_err(|e| about(e, &env))?.body).context("the server's answer")?;
            print_table(&HEADER, &[row(&one)]);
        }
        ScheduleCommand::Rm(a) => {
            let (s, env) = open(&a.env, &a.remote)?;
            s.call(Method::DELETE, s.url(&env, &["schedules", &a.id], &[])?)
                .await
                .map_err(|e| about(e, &env))?;
            say!("Deleted schedule {} of {env}.", a.id);
        }
        ScheduleCommand::History(a) => {
            let (s, env) = open(&a.env, &a.remote)?;
            let answer = s
                .call(Method::GET, s.url(&env, &["schedules", &a.id, "history"], &[])?)
                .await;
            let h: wire::ListScheduleHistory =
                serde_json::from_str(&answer.map_err(|e| about(e, &env))?.body).context("the server's answer")?;
            let rows: Vec<Vec<String>> = h
                .schedule_history_events
                .iter()
                .map(|e| vec![e.executed.clone(), e.version.to_string(), e.result.clone()])
                .collect();
            print_table(&["EXECUTED", "REVISION", "RESULT"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open(name: &str, remote: &Remote) -> anyhow::Result<(Session, crate::core::env::env_ref::EnvRef)> {
    let s = Session::new(remote)?;
    let env = s.env(name)?;
    no_version(&env, "schedule")?;
    Ok((s, env))
}
