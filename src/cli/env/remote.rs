//! `env init`, `env ls`, `env get` and `env rm`: create, list, print and delete environments on the server. `rm ENV
//! PATH` removes one value, through the conditional update `env set` uses ([`super::edit::update`]).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use reqwest::Method;

use super::definition::{self, PropertyPath, under_values, yaml_to_json};
use super::edit::update;
use super::names::{Remote, no_version};
use super::output::{print_table, say, say_raw};
use super::session::{
    Session, about, diagnostics_of, print_diagnostics, print_write_diagnostics, saved_message, status_of,
};
use crate::core::env::project;
use crate::core::keys::Name;
use crate::wire::esc;

/// `env init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The new environment: [ORG/]PROJECT/ENV.
    pub env: String,
    /// Its first definition, from this YAML file (`-` for standard input).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

/// `env ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only this project's environments.
    #[arg(long)]
    pub project: Option<String>,
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: Remote,
}

/// Formats of a definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DefinitionFormat {
    /// The YAML text as stored (comments and layout kept).
    Yaml,
    /// The definition converted to JSON.
    Json,
}

/// `env get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The environment: [ORG/]PROJECT/ENV[@VERSION].
    pub env: String,
    /// Show static secrets in plaintext (`fn::secret` values; needs the editor role).
    #[arg(long)]
    pub show_secrets: bool,
    /// Print only the definition of this path under `values` (e.g. `db.host`, `hosts[0]`).
    #[arg(long, value_name = "PATH")]
    pub value: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DefinitionFormat::Yaml)]
    pub format: DefinitionFormat,
    #[command(flatten)]
    pub remote: Remote,
}

/// `env rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The environment: [ORG/]PROJECT/ENV.
    pub env: String,
    /// Remove only this path under `values` instead of the whole environment.
    pub path: Option<String>,
    /// Delete the environment without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub remote: Remote,
}

/// Runs `env init`.
pub(super) async fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    no_version(&env, "init")?;
    let initial = match args.file.as_deref() {
        None => None,
        Some("-") => Some(std::io::read_to_string(std::io::stdin()).context("reading standard input")?),
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?),
    };
    let url = s.client.url(&["api", "esc", "environments", &env.org], &[])?;
    let body = serde_json::json!({"project": env.project, "name": env.name});
    s.client
        .execute(s.client.request(Method::POST, url).json(&body))
        .await
        .map_err(|e| match status_of(&e) {
            Some(409) => e.context(format!("environment {env} exists already")),
            _ => e.context(format!("creating environment {env}")),
        })?;
    say!("Created {env}.");
    if let Some(yaml) = initial {
        let file = args.file.as_deref().unwrap_or("-");
        match s.patch(&env, &yaml, None).await {
            Ok(answer) => {
                print_write_diagnostics(file, &env, &answer);
                say!("{}", saved_message(&env, &answer));
            }
            Err(e) => {
                if let Some(diags) = diagnostics_of(&e) {
                    print_diagnostics(file, &env, diags);
                }
                return Err(e.context(format!("{env} was created, but its definition from {file} was refused")));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `env ls`.
pub(super) async fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let org = s.default_org.clone();
    org.parse::<Name>()
        .with_context(|| format!("invalid org name {org:?}"))?;
    let mut all: Vec<esc::OrgEnvironment> = Vec::new();
    let mut token: Option<String> = None;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let query: Vec<(&str, &str)> = token.as_deref().map(|t| ("continuationToken", t)).into_iter().collect();
        let url = s.client.url(&["api", "esc", "environments", &org], &query)?;
        let answer = s
            .client
            .execute(s.client.request(Method::GET, url))
            .await
            .with_context(|| format!("listing the environments of {org}"))?;
        let page: esc::OrgEnvironments =
            serde_json::from_str(&answer.body).context("the list of environments was not JSON")?;
        all.extend(page.environments);
        match page.next_token {
            // A token seen before would loop forever: stop there.
            Some(next) if !next.is_empty() && seen.insert(next.clone()) => token = Some(next),
            _ => break,
        }
    }
    if let Some(p) = &args.project {
        all.retain(|e| e.project == *p);
    }
    if args.json {
        say!("{}", serde_json::to_string_pretty(&all).context("printing JSON")?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        say!("No environments in {org}.");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|e| {
            let o = if e.organization.is_empty() {
                &org
            } else {
                &e.organization
            };
            vec![
                format!("{o}/{}/{}", e.project, e.name),
                e.created.clone(),
                e.modified.clone(),
            ]
        })
        .collect();
    print_table(&["NAME", "CREATED", "MODIFIED"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// Runs `env get`.
pub(super) async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    let yaml = if args.show_secrets {
        s.decrypted(&env).await?
    } else {
        s.definition(&env).await?.yaml
    };
    match (&args.value, args.format) {
        (None, DefinitionFormat::Yaml) => {
            say_raw!("{yaml}");
            if !yaml.is_empty() && !yaml.ends_with('\n') {
                say_raw!("\n");
            }
        }
        (None, DefinitionFormat::Json) => say!("{}", serde_json::to_string_pretty(&yaml_to_json(&yaml)?)?),
        (Some(path), format) => {
            let path: PropertyPath = path.parse()?;
            let full = under_values(&path);
            let json = yaml_to_json(&yaml)?;
            let Some(value) = definition::lookup(&json, &full) else {
                bail!("{env} defines no value at {path}");
            };
            match format {
                DefinitionFormat::Json => say!("{}", serde_json::to_string_pretty(value)?),
                DefinitionFormat::Yaml => say_raw!("{}", project::to_yaml(value)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `env rm`.
pub(super) async fn rm(args: RmArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    no_version(&env, "rm")?;
    if let Some(path) = &args.path {
        let path: PropertyPath = path.parse()?;
        let full = under_values(&path);
        let answer = update(&s, &env, |yaml| definition::remove(yaml, &full))
            .await
            .with_context(|| format!("removing {path}"))?;
        say!("{}", saved_message(&env, &answer));
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("deleting {env} needs --yes (standard input is not a terminal to ask on)");
        }
        eprint!(
            "Delete {env} and all its revisions? Type its name ({}) to confirm: ",
            env.name
        );
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the terminal")?;
        if line.trim() != env.name && line.trim() != env.to_string() {
            bail!("not confirmed; {env} was not deleted");
        }
    }
    let url = s.url(&env, &[], &[])?;
    s.call(Method::DELETE, url).await.map_err(|e| about(e, &env))?;
    say!("Deleted {env}.");
    Ok(ExitCode::SUCCESS)
}
