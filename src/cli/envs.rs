//! `sesame env init|ls|get|edit|set|rm|open|run|version|diff`: environments on a server, through its
//! Pulumi-ESC-compatible API under `/api/esc/environments` (the contract in `conformance/esc-api/swagger.yaml`).
//!
//! This module owns environment names (`[org/]project/env[@version]`), the conversation with the server (ETags on
//! writes, diagnostics on refusals, open sessions), and turning open results into plain JSON, dotenv or shell lines,
//! or a child process's environment. Edits of the definition's text live in [`definition`]; the server is the only
//! judge of whether a definition is valid. Secrets reach stdout only where the user asked for them (`get
//! --show-secrets`, `open`, `run`), never an error message or a log line.

mod definition;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::Value as Json;

pub use definition::{PropertyPath, Seg};

use super::client::{Answer, ApiDiagnostic, Client, ClientArgs, ServerRefused};
use crate::core::env::project;
use crate::core::env::value::{Repr, Value};
use crate::core::keys::Name;
use crate::wire::esc;

/// Writes to standard output. A closed pipe (`sesame env ls | head`) ends the process quietly with 141, as a process
/// killed by SIGPIPE would; any other write error ends it with 1.
fn emit(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`emit`].
macro_rules! say {
    ($($t:tt)*) => {
        emit(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` through [`emit`].
macro_rules! say_raw {
    ($($t:tt)*) => {
        emit(format_args!($($t)*))
    };
}

/// The org of names without one, when neither `--org`, `SESAME_ORG` nor the credentials file names one.
pub const DEFAULT_ORG: &str = "default";
pub use crate::core::env::env_ref::{DEFAULT_PROJECT, EnvRef};

// ---------------------------------------------------------------------------------------------------------------
// Names

/// Parses a name on the command line, `[[org/]project/]env[@version]` ([`EnvRef::parse`]); a missing org is
/// `default_org`. The version must be a name too (the server looks up any text, the CLI refuses a typo early).
pub fn parse_name(text: &str, default_org: &str) -> anyhow::Result<EnvRef> {
    let env = EnvRef::parse(text, default_org)?;
    if let Some(v) = &env.version {
        v.parse::<Name>()
            .with_context(|| format!("{text:?}: invalid version {v:?} (a revision number or a tag)"))?;
    }
    Ok(env)
}

/// Refuses `@version` for a command that works on the latest definition.
fn no_version(env: &EnvRef, command: &str) -> anyhow::Result<()> {
    match &env.version {
        Some(v) => bail!("`env {command}` works on the latest definition; drop @{v} from {env}"),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Flags

/// Flags every remote `env` command shares: the org of short names, and the server connection.
#[derive(Clone, Debug, Args)]
pub struct Remote {
    /// The org of names written PROJECT/ENV [default: SESAME_ORG, else the org `sesame login` saved, else
    /// `default`].
    #[arg(long, env = "SESAME_ORG")]
    pub org: Option<String>,
    /// Server connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

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

/// `env edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The environment: [ORG/]PROJECT/ENV.
    pub env: String,
    /// Edit static secrets in plaintext (they are sealed again when saved).
    #[arg(long)]
    pub show_secrets: bool,
    #[command(flatten)]
    pub remote: Remote,
}

/// `env set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The environment: [ORG/]PROJECT/ENV.
    pub env: String,
    /// The path under `values`: `a.b`, `list[0]`, `["key.with.dots"]`.
    pub path: String,
    /// The value, read as YAML (`8080` is a number, `[a, b]` a list) unless --string or --secret.
    pub value: String,
    /// Store the value as a secret (`fn::secret`), sealed by the server.
    #[arg(long)]
    pub secret: bool,
    /// Take the value as a string, without reading it as YAML.
    #[arg(long)]
    pub string: bool,
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

/// Formats of an opened environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OpenFormat {
    /// Plain JSON.
    Json,
    /// YAML.
    Yaml,
    /// The `environmentVariables` as dotenv lines.
    Dotenv,
    /// The `environmentVariables` as POSIX shell `export` lines.
    Shell,
    /// The value as text, without quotes (a string as is; lists and objects as ESC's fn::toString writes them).
    String,
}

/// `env open`.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The environment: [ORG/]PROJECT/ENV[@VERSION].
    pub env: String,
    /// Print only this property (e.g. `environmentVariables.DB_HOST`).
    pub path: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OpenFormat::Json)]
    pub format: OpenFormat,
    /// How long the server keeps the session open (e.g. 30m, 2h) [default: the server's, 1h].
    #[arg(long)]
    pub duration: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

/// `env run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The environment: [ORG/]PROJECT/ENV[@VERSION].
    pub env: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub remote: Remote,
}

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

// ---------------------------------------------------------------------------------------------------------------
// The server conversation

/// A definition as the server sent it.
struct Definition {
    yaml: String,
    etag: Option<String>,
    revision: Option<u64>,
}

/// A connected client plus the org of short names.
struct Session {
    client: Client,
    default_org: String,
}

impl Session {
    fn new(remote: &Remote) -> anyhow::Result<Session> {
        let default_org = match &remote.org {
            Some(o) if !o.is_empty() => o.clone(),
            _ => super::login::load()
                .ok()
                .flatten()
                .and_then(|c| c.org)
                .unwrap_or_else(|| DEFAULT_ORG.to_owned()),
        };
        let client = Client::new(&remote.client)?;
        Ok(Session { client, default_org })
    }

    fn env(&self, text: &str) -> anyhow::Result<EnvRef> {
        parse_name(text, &self.default_org)
    }

    /// The URL of `tail` under the environment (its version is not part of it).
    fn url(&self, env: &EnvRef, tail: &[&str], query: &[(&str, &str)]) -> anyhow::Result<url::Url> {
        let mut segments = vec!["api", "esc", "environments", &env.org, &env.project, &env.name];
        segments.extend_from_slice(tail);
        self.client.url(&segments, query)
    }

    async fn call(&self, method: Method, url: url::Url) -> anyhow::Result<Answer> {
        self.client.execute(self.client.request(method, url)).await
    }

    /// The definition (at the environment's version, if it names one).
    async fn definition(&self, env: &EnvRef) -> anyhow::Result<Definition> {
        let url = match &env.version {
            Some(v) => self.url(env, &["versions", v], &[])?,
            None => self.url(env, &[], &[])?,
        };
        let answer = self.call(Method::GET, url).await.map_err(|e| about(e, env))?;
        Ok(Definition {
            yaml: answer.body,
            etag: answer.etag,
            revision: answer.revision,
        })
    }

    /// The latest definition with static secrets in plaintext.
    async fn decrypted(&self, env: &EnvRef) -> anyhow::Result<String> {
        if let Some(v) = &env.version {
            bail!("secrets can be shown for the latest definition only; drop @{v} from {env}");
        }
        let url = self.url(env, &["decrypt"], &[])?;
        Ok(self.call(Method::GET, url).await.map_err(|e| about(e, env))?.body)
    }

    /// Writes a new definition. `etag` makes the write conditional (409 when someone else wrote first).
    async fn patch(&self, env: &EnvRef, yaml: &str, etag: Option<&str>) -> anyhow::Result<Answer> {
        let url = self.url(env, &[], &[])?;
        let mut request = self
            .client
            .request(Method::PATCH, url)
            .header("Content-Type", "application/x-yaml")
            .body(yaml.to_owned());
        if let Some(tag) = etag {
            request = request.header("ETag", tag);
        }
        self.client.execute(request).await.map_err(|e| about(e, env))
    }

    /// Opens the environment and reads all of its values.
    async fn open(&self, env: &EnvRef, duration: Option<&str>) -> anyhow::Result<BTreeMap<String, Value>> {
        let query: Vec<(&str, &str)> = duration.map(|d| ("duration", d)).into_iter().collect();
        let url = match &env.version {
            Some(v) => self.url(env, &["versions", v, "open"], &query)?,
            None => self.url(env, &["open"], &query)?,
        };
        let opened = self.call(Method::POST, url).await.map_err(|e| about(e, env))?;
        let opened: esc::OpenResponse =
            serde_json::from_str(&opened.body).context("the server's answer to open has no session id")?;
        let url = self.url(env, &["open", &opened.id], &[])?;
        let read = self.call(Method::GET, url).await.map_err(|e| about(e, env))?;
        let read: Json = serde_json::from_str(&read.body).context("the open environment was not JSON")?;
        Ok(properties(&read))
    }

    /// The number of the latest revision.
    async fn latest_revision(&self, env: &EnvRef) -> anyhow::Result<u64> {
        let head = self.definition(&env.at(None)).await?;
        if let Some(r) = head.revision {
            return Ok(r);
        }
        let revisions = self.revisions(env).await?;
        revisions
            .first()
            .and_then(|r| u64::try_from(r.number).ok())
            .with_context(|| format!("the server named no revision of {env}"))
    }

    /// All revisions, newest first, following `before` paging.
    async fn revisions(&self, env: &EnvRef) -> anyhow::Result<Vec<esc::EnvironmentRevision>> {
        let mut all: Vec<esc::EnvironmentRevision> = Vec::new();
        let mut before: Option<u64> = None;
        loop {
            let b = before.map(|b| b.to_string());
            let query: Vec<(&str, &str)> = b.as_deref().map(|b| ("before", b)).into_iter().collect();
            let url = self.url(env, &["versions"], &query)?;
            let answer = self.call(Method::GET, url).await.map_err(|e| about(e, &env.at(None)))?;
            let page: Vec<esc::EnvironmentRevision> =
                serde_json::from_str(&answer.body).context("the list of revisions was not a JSON array")?;
            let lowest = page.iter().filter_map(|r| u64::try_from(r.number).ok()).min();
            all.extend(page);
            match (lowest, before) {
                // Stop at the first revision, on an empty page, and when a page does not go further back.
                (Some(l), b) if l > 1 && b.is_none_or(|b| l < b) => before = Some(l),
                _ => break,
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        all.retain(|r| seen.insert(r.number));
        all.sort_by_key(|r| std::cmp::Reverse(r.number));
        Ok(all)
    }

    /// A revision number from a number or a tag.
    async fn resolve_revision(&self, env: &EnvRef, revision: &str) -> anyhow::Result<u64> {
        if let Ok(n) = revision.parse::<u64>() {
            return Ok(n);
        }
        revision
            .parse::<Name>()
            .with_context(|| format!("{revision:?} is neither a revision number nor a tag"))?;
        let url = self.url(env, &["versions", "tags", revision], &[])?;
        let answer = self
            .call(Method::GET, url)
            .await
            .with_context(|| format!("reading the tag {revision} of {env}"))?;
        let tag: esc::RevisionTag = serde_json::from_str(&answer.body)
            .with_context(|| format!("the tag {revision} of {env} names no revision"))?;
        u64::try_from(tag.revision).with_context(|| format!("the tag {revision} of {env} names no revision"))
    }
}

/// Adds which environment a refusal concerns, saying plainly when it does not exist.
fn about(e: anyhow::Error, env: &EnvRef) -> anyhow::Error {
    match e.downcast_ref::<ServerRefused>() {
        Some(r) if r.status == 404 => e.context(format!("environment {env} was not found")),
        Some(r) if r.status == 409 => e.context(format!("environment {env} was changed by someone else")),
        _ => e.context(format!("environment {env}")),
    }
}

/// The diagnostics of a refusal, if it has any.
fn diagnostics_of(e: &anyhow::Error) -> Option<&[ApiDiagnostic]> {
    e.downcast_ref::<ServerRefused>()
        .filter(|r| !r.diagnostics.is_empty())
        .map(|r| r.diagnostics.as_slice())
}

fn status_of(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<ServerRefused>().map(|r| r.status)
}

/// Prints diagnostics as `file:line:column: summary`, naming `file` for those in `env` itself.
fn print_diagnostics(file: &str, env: &EnvRef, diags: &[ApiDiagnostic]) {
    for d in diags {
        match &d.range {
            Some(r) => {
                let file = if env.is_named(&r.environment) {
                    file
                } else {
                    &r.environment
                };
                eprintln!("{file}:{}:{}: {}", r.begin.line, r.begin.column, d.summary);
            }
            None => match &d.path {
                Some(p) if !p.is_empty() => eprintln!("{file}: {p}: {}", d.summary),
                _ => eprintln!("{file}: {}", d.summary),
            },
        }
    }
}

/// Warnings a successful write may carry (`{"diagnostics": [...]}`).
fn print_write_diagnostics(file: &str, env: &EnvRef, answer: &Answer) {
    if let Ok(esc::UpdateResponse { diagnostics }) = serde_json::from_str(&answer.body) {
        print_diagnostics(file, env, &diagnostics);
    }
}

fn saved_message(env: &EnvRef, answer: &Answer) -> String {
    match answer.revision {
        Some(r) => format!("Saved {env} (revision {r})."),
        None => format!("Saved {env}."),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Open values

/// The properties of an open environment (`{"properties": {KEY: Value}}`) as evaluated values.
pub fn properties(open: &Json) -> BTreeMap<String, Value> {
    open.get("properties")
        .and_then(Json::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), from_wire(v))).collect())
        .unwrap_or_default()
}

/// One ESC wire `Value` (`{"value": …, "secret": bool?, "unknown": bool?, "trace": …}`, objects and lists holding
/// Values in turn) as an evaluated value. Anything that is not shaped like a wire Value is taken as plain JSON.
pub fn from_wire(v: &Json) -> Value {
    let Some(m) = v
        .as_object()
        .filter(|m| m.contains_key("value") || m.contains_key("unknown"))
    else {
        return Value::from_json(v);
    };
    let inner = m.get("value").unwrap_or(&Json::Null);
    let repr = match inner {
        Json::Object(o) => Repr::Object(o.iter().map(|(k, v)| (k.clone(), from_wire(v))).collect()),
        Json::Array(a) => Repr::Array(a.iter().map(from_wire).collect()),
        other => Value::from_json(other).repr,
    };
    let flag = |name: &str| m.get(name).and_then(Json::as_bool).unwrap_or(false);
    Value {
        secret: flag("secret"),
        unknown: flag("unknown"),
        ..Value::new(repr)
    }
}

/// The value at `path` among `properties`.
fn property<'v>(properties: &'v BTreeMap<String, Value>, path: &[Seg]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(k) = first else {
        return None;
    };
    rest.iter().try_fold(properties.get(k)?, |v, seg| match (seg, &v.repr) {
        (Seg::Key(k), Repr::Object(m)) => m.get(k),
        (Seg::Index(i), Repr::Array(a)) => a.get(*i),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// YAML to JSON (for `get --format json` and `--value`)

/// A definition as plain JSON (YAML 1.2 core types). Keys that are not strings are written as text.
pub fn yaml_to_json(text: &str) -> anyhow::Result<Json> {
    use yaml_rust2::{Yaml, YamlLoader};
    fn convert(y: &Yaml) -> Json {
        match y {
            Yaml::Real(r) => r
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Json::String(r.clone()), Json::Number),
            Yaml::Integer(i) => Json::from(*i),
            Yaml::String(s) => Json::String(s.clone()),
            Yaml::Boolean(b) => Json::Bool(*b),
            Yaml::Array(a) => Json::Array(a.iter().map(convert).collect()),
            Yaml::Hash(h) => Json::Object(
                h.iter()
                    .map(|(k, v)| {
                        let key = match convert(k) {
                            Json::String(s) => s,
                            other => other.to_string(),
                        };
                        (key, convert(v))
                    })
                    .collect(),
            ),
            Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Json::Null,
        }
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("the definition is not YAML: {e}"))?;
    Ok(docs.first().map(convert).unwrap_or(Json::Null))
}

// ---------------------------------------------------------------------------------------------------------------
// Commands

/// Runs `env init`.
pub async fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
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
pub async fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
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
pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
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
            let mut full = vec![Seg::Key("values".into())];
            full.extend(path.0.iter().cloned());
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

/// The command that opens an editor: `$EDITOR`, else `vi`. It is run by `sh`, so `EDITOR="code --wait"` works.
fn run_editor(path: &Path) -> anyhow::Result<()> {
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .with_context(|| format!("starting the editor {editor:?}"))?;
    if !status.success() {
        bail!("the editor {editor:?} failed ({status}); nothing was saved");
    }
    Ok(())
}

/// Asks on the terminal whether to edit again: Enter says yes; Ctrl-C or the end of input says no. The line is
/// read on a thread of its own, which is left behind if Ctrl-C comes first.
async fn again(sigint: &mut tokio::signal::unix::Signal) -> bool {
    use futures::FutureExt;
    // A Ctrl-C meant for the editor is not an answer.
    while sigint.recv().now_or_never().is_some() {}
    eprint!("The server refused the definition. Press Enter to edit it again (Ctrl-C gives up): ");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(std::io::stdin().lock().read_line(&mut line));
    });
    tokio::select! {
        _ = sigint.recv() => false,
        read = rx => matches!(read, Ok(Ok(n)) if n > 0),
    }
}

/// Runs `env edit`.
pub async fn edit(args: EditArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    no_version(&env, "edit")?;
    let current = s.definition(&env).await?;
    let original = if args.show_secrets {
        zeroize::Zeroizing::new(s.decrypted(&env).await?)
    } else {
        zeroize::Zeroizing::new(current.yaml)
    };
    // A private file (0600) that is removed when this function returns, unless kept on a conflict.
    let file = tempfile::Builder::new()
        .prefix(&format!("sesame-{}-", env.name))
        .suffix(".yaml")
        .tempfile()
        .context("creating a temporary file to edit")?;
    let path = file.path().to_owned();
    let shown = path.display().to_string();
    // Ctrl-C belongs to the editor while it runs: this process stays alive through it, so the file (which may hold
    // secrets in plaintext) is always removed.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("setting up the interrupt handler")?;
    let mut given = original.clone();
    let mut refused: Option<anyhow::Error> = None;
    loop {
        std::fs::write(&path, given.as_bytes()).with_context(|| format!("writing {shown}"))?;
        run_editor(&path)?;
        let edited =
            zeroize::Zeroizing::new(std::fs::read_to_string(&path).with_context(|| format!("reading {shown}"))?);
        if *edited == *given {
            if *given == *original {
                say!("No changes; {env} was left as it was.");
                return Ok(ExitCode::SUCCESS);
            }
            return Err(match refused.take() {
                Some(e) => e.context("the definition still has the errors above; nothing was saved"),
                None => anyhow::anyhow!("the definition still has the errors above; nothing was saved"),
            });
        }
        match s.patch(&env, &edited, current.etag.as_deref()).await {
            Ok(answer) => {
                print_write_diagnostics(&shown, &env, &answer);
                say!("{}", saved_message(&env, &answer));
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) if status_of(&e) == Some(400) => {
                match diagnostics_of(&e) {
                    Some(diags) => print_diagnostics(&shown, &env, diags),
                    None => eprintln!("error: {e:#}"),
                }
                if std::io::stdin().is_terminal() && !again(&mut sigint).await {
                    eprintln!();
                    return Err(e.context("given up; nothing was saved"));
                }
                given = edited;
                refused = Some(e);
            }
            Err(e) if status_of(&e) == Some(409) => {
                let (_, kept) = file.keep().context("keeping the edited file")?;
                return Err(e.context(format!(
                    "nothing was saved; your text is in {} (delete it when done)",
                    kept.display()
                )));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The value `env set` writes.
fn set_value(args: &SetArgs) -> anyhow::Result<Json> {
    if args.secret {
        return Ok(serde_json::json!({ "fn::secret": args.value }));
    }
    if args.string {
        return Ok(Json::String(args.value.clone()));
    }
    if args.value.trim().is_empty() {
        return Ok(Json::String(args.value.clone()));
    }
    // The error of a YAML parse may quote the text; it is the user's own argument, but a would-be secret typed
    // without --secret should not be echoed either, so the message does not include it.
    yaml_to_json(&args.value)
        .map_err(|_| anyhow::anyhow!("the value is not valid YAML; pass --string to take it as text"))
}

/// Reads, changes and writes back a definition, trying again when someone else wrote in between.
async fn update<F>(s: &Session, env: &EnvRef, change: F) -> anyhow::Result<Answer>
where
    F: Fn(&str) -> anyhow::Result<String>,
{
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let current = s.definition(env).await?;
        let new = change(&current.yaml)?;
        match s.patch(env, &new, current.etag.as_deref()).await {
            Err(e) if status_of(&e) == Some(409) && attempt < ATTEMPTS => attempt += 1,
            Err(e) => {
                if let Some(diags) = diagnostics_of(&e) {
                    print_diagnostics(&env.to_string(), env, diags);
                }
                return Err(e);
            }
            Ok(answer) => return Ok(answer),
        }
    }
}

/// Runs `env set`.
pub async fn set(args: SetArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    no_version(&env, "set")?;
    let path: PropertyPath = args.path.parse()?;
    let mut full = vec![Seg::Key("values".into())];
    full.extend(path.0.iter().cloned());
    let value = set_value(&args)?;
    let answer = update(&s, &env, |yaml| definition::set(yaml, &full, &value))
        .await
        .with_context(|| format!("setting {path}"))?;
    print_write_diagnostics(&env.to_string(), &env, &answer);
    say!("{}", saved_message(&env, &answer));
    Ok(ExitCode::SUCCESS)
}

/// Runs `env rm`.
pub async fn rm(args: RmArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    no_version(&env, "rm")?;
    if let Some(path) = &args.path {
        let path: PropertyPath = path.parse()?;
        let mut full = vec![Seg::Key("values".into())];
        full.extend(path.0.iter().cloned());
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

/// Runs `env open`.
pub async fn open(args: OpenArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    let path: Option<PropertyPath> = args.path.as_deref().map(str::parse).transpose()?;
    if path.is_some() && matches!(args.format, OpenFormat::Dotenv | OpenFormat::Shell) {
        bail!("--format dotenv and shell print the environmentVariables; they take no PATH");
    }
    let props = s.open(&env, args.duration.as_deref()).await.inspect_err(|e| {
        if let Some(diags) = diagnostics_of(e) {
            print_diagnostics(&env.to_string(), &env, diags);
        }
    })?;
    let whole;
    let value = match &path {
        Some(p) => property(&props, &p.0).with_context(|| format!("{env} has no value at {p}"))?,
        None => {
            whole = Value::object(props.clone());
            &whole
        }
    };
    match args.format {
        OpenFormat::Json => say!("{}", serde_json::to_string_pretty(&value.to_json(false))?),
        OpenFormat::Yaml => say_raw!("{}", project::to_yaml(&value.to_json(false))),
        OpenFormat::String => say!("{}", value.to_text()),
        OpenFormat::Dotenv | OpenFormat::Shell => {
            let (vars, bad) = project::environment_variables(&props, true);
            for b in bad {
                eprintln!("warning: environmentVariables.{b}: not a valid variable name; skipped");
            }
            for v in vars {
                match (&v.value, args.format) {
                    (Some(val), OpenFormat::Shell) => say!("export {}={}", v.name, project::shell_quote(val)),
                    (Some(val), _) => say!("{}={}", v.name, project::dotenv_quote(val)),
                    (None, _) => eprintln!("note: {} withheld: {}", v.name, v.why_withheld.unwrap_or("withheld")),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The child's environment from an open environment: its `environmentVariables`, and each of its `files` written
/// to a private temporary file whose path becomes the variable. The files are removed when the result is dropped.
struct ChildEnv {
    vars: Vec<(String, zeroize::Zeroizing<String>)>,
    files: Vec<tempfile::TempPath>,
}

fn child_env(props: &BTreeMap<String, Value>) -> anyhow::Result<ChildEnv> {
    let mut out = ChildEnv {
        vars: Vec::new(),
        files: Vec::new(),
    };
    let (vars, bad) = project::environment_variables(props, true);
    for b in bad {
        eprintln!("warning: environmentVariables.{b}: not a valid variable name; skipped");
    }
    for v in vars {
        match v.value {
            Some(val) => out.vars.push((v.name, zeroize::Zeroizing::new(val))),
            None => eprintln!("warning: {} is unknown; not set", v.name),
        }
    }
    if let Some(Value {
        repr: Repr::Object(files),
        ..
    }) = props.get("files")
    {
        for (name, v) in files {
            if !project::valid_var_name(name) {
                eprintln!("warning: files.{name}: not a valid variable name; skipped");
                continue;
            }
            if v.contains_unknowns() {
                eprintln!("warning: files.{name} is unknown; not written");
                continue;
            }
            let mut file = tempfile::Builder::new()
                .prefix("sesame-file-")
                .tempfile()
                .context("creating a temporary file")?;
            let content = zeroize::Zeroizing::new(v.to_text());
            file.write_all(content.as_bytes())
                .and_then(|()| file.flush())
                .context("writing a temporary file")?;
            let path = file.into_temp_path();
            out.vars
                .push((name.clone(), zeroize::Zeroizing::new(path.display().to_string())));
            out.files.push(path);
        }
    }
    Ok(out)
}

/// Runs `env run`.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::ExitStatusExt;
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    let props = s.open(&env, None).await?;
    let child_env = child_env(&props)?;
    let (program, rest) = args.command.split_first().context("no command given after --")?;
    let mut command = tokio::process::Command::new(program);
    command.args(rest);
    for (k, v) in &child_env.vars {
        command.env(k, v.as_str());
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: could not run {program:?}: {e}");
            drop(child_env);
            return Ok(ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            }));
        }
    };
    let status = wait_forwarding_signals(&mut child).await;
    // The files go before this process ends, whatever the child did.
    for f in child_env.files {
        if let Err(e) = f.close() {
            eprintln!("warning: could not remove a temporary file: {e}");
        }
    }
    let status = status.with_context(|| format!("waiting for {program:?}"))?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from((128 + sig) & 0xff).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    })
}

/// Waits for the child while this process stays alive through SIGINT, SIGTERM and SIGHUP, passing SIGTERM and
/// SIGHUP on (and SIGINT when there is no terminal, which would have sent it to the child itself), so the
/// temporary files are removed after the child exits.
async fn wait_forwarding_signals(child: &mut tokio::process::Child) -> std::io::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let tty = std::io::stdin().is_terminal();
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    let forward = |sig: rustix::process::Signal| {
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, sig);
        }
    };
    loop {
        tokio::select! {
            status = child.wait() => return status,
            _ = int.recv() => if !tty { forward(rustix::process::Signal::INT) },
            _ = term.recv() => forward(rustix::process::Signal::TERM),
            _ = hup.recv() => forward(rustix::process::Signal::HUP),
        }
    }
}

/// Runs `env version …`.
pub async fn version(args: VersionArgs) -> anyhow::Result<ExitCode> {
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
pub async fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
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
pub fn unified_diff(left: &str, right: &str, left_label: &str, right_label: &str) -> String {
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

/// Prints rows under a header, columns padded to their widest cell.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (n, cell) in cells.iter().enumerate() {
            if n == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[n]));
            }
        }
        say!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        crate::cli::Cli::command().debug_assert();
    }

    #[test]
    fn names_take_defaults_and_versions() {
        let e = parse_name("web/prod", "acme").unwrap();
        assert_eq!(
            (e.org.as_str(), e.project.as_str(), e.name.as_str()),
            ("acme", "web", "prod")
        );
        assert_eq!(e.version, None);
        let e = parse_name("other/web/prod@stable", "acme").unwrap();
        assert_eq!(e.to_string(), "other/web/prod@stable");
        let e = parse_name("prod@3", "acme").unwrap();
        assert_eq!(e.to_string(), "acme/default/prod@3");
        for bad in [
            "", "a/b/c/d", "a//b", "a/b@", "a/b c", "a/b@x/y", "../x", "a/b?x", "a/%2e",
        ] {
            assert!(parse_name(bad, "acme").is_err(), "{bad:?}");
        }
        assert!(e.is_named("prod") && e.is_named("default/prod") && e.is_named("") && !e.is_named("x/prod"));
    }

    #[test]
    fn wire_values_unwrap_to_plain_json_with_flags() {
        let open = json!({"properties": {
            "db": {"value": {
                "host": {"value": "h", "trace": {}},
                "password": {"value": "pw", "secret": true, "trace": {}},
                "ports": {"value": [{"value": 1, "trace": {}}, {"value": null, "trace": {}}], "trace": {}}
            }, "trace": {}},
            "later": {"value": null, "unknown": true, "trace": {}},
            "environmentVariables": {"value": {"TOKEN": {"value": "t0k", "secret": true, "trace": {}}}, "trace": {}}
        }});
        let props = properties(&open);
        let all = Value::object(props.clone()).to_json(false);
        assert_eq!(
            all,
            json!({
                "db": {"host": "h", "password": "pw", "ports": [1, null]},
                "later": "[unknown]",
                "environmentVariables": {"TOKEN": "t0k"}
            })
        );
        assert!(props["db"].contains_secrets() && !props["db"].secret);
        assert!(props["later"].unknown);
        assert_eq!(
            Value::object(props.clone()).to_json(true)["db"]["password"],
            json!("[secret]")
        );
        let path: PropertyPath = "db.ports[0]".parse().unwrap();
        assert_eq!(property(&props, &path.0).unwrap().to_json(false), json!(1));
        // Debug never shows a secret.
        assert!(!format!("{:?}", props["db"]).contains("pw"));
        // The projection sees secrets when asked to.
        let (vars, _) = project::environment_variables(&props, true);
        assert_eq!(vars[0].value.as_deref(), Some("t0k"));
    }

    #[test]
    fn definitions_convert_to_json() {
        let j = yaml_to_json("imports: [base]\nvalues:\n  n: 1\n  f: 1.5\n  b: true\n  s: '1'\n  z: ~\n").unwrap();
        assert_eq!(
            j,
            json!({"imports": ["base"], "values": {"n": 1, "f": 1.5, "b": true, "s": "1", "z": null}})
        );
        assert_eq!(yaml_to_json("").unwrap(), Json::Null);
    }

    #[test]
    fn diffs_are_unified_and_empty_when_equal() {
        assert_eq!(unified_diff("a\n", "a\n", "x", "y"), "");
        let d = unified_diff("values:\n  a: 1\n", "values:\n  a: 2\n", "e@1", "e@2");
        assert!(d.starts_with("--- e@1\n+++ e@2\n"), "{d}");
        assert!(d.contains("-  a: 1\n+  a: 2\n"), "{d}");
    }

    #[test]
    fn set_values_read_as_yaml_unless_told_otherwise() {
        let args = |value: &str, secret, string| SetArgs {
            env: "p/e".into(),
            path: "a".into(),
            value: value.into(),
            secret,
            string,
            remote: Remote {
                org: None,
                client: ClientArgs {
                    url: None,
                    token: None,
                    token_file: None,
                    insecure: false,
                },
            },
        };
        assert_eq!(set_value(&args("8080", false, false)).unwrap(), json!(8080));
        assert_eq!(set_value(&args("[a, b]", false, false)).unwrap(), json!(["a", "b"]));
        assert_eq!(set_value(&args("8080", false, true)).unwrap(), json!("8080"));
        assert_eq!(
            set_value(&args("p: w", true, false)).unwrap(),
            json!({"fn::secret": "p: w"})
        );
        let err = set_value(&args("{oops: sekrit", false, false)).unwrap_err().to_string();
        assert!(!err.contains("sekrit"), "{err}");
    }
}
