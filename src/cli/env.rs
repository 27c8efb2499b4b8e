//! `sesame env`: environments. The commands that talk to a server (`init`, `ls`, `get`, `edit`, `set`, `rm`, `open`,
//! `run`, `version`, `diff`) live in [`super::envs`]. `env eval` evaluates a local environment file offline, with
//! imports and `${environments.P.E}` references read from a folder — no server, no credentials.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value as Json;

use crate::core::env::eval::{
    self, Answer, DecryptError, DecryptRequest, EffectError, Effects, Mode, Options, ProviderCall, ProviderSchema,
    RotatorSchema,
};
use crate::core::env::{Diagnostic, Value, load, project};

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(subcommand)]
    pub command: EnvCommand,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment on the server (empty, or from a YAML file with --file).
    #[command(
        after_help = "Names are [ORG/]PROJECT/ENV: the org defaults to --org, SESAME_ORG, the org `sesame \
login` saved, or `default`; a bare ENV is in the project `default`.\n\nExample:\n  sesame env init web/prod -f prod.yaml"
    )]
    Init(super::envs::InitArgs),
    /// List the environments of an org.
    Ls(super::envs::LsArgs),
    /// Print an environment's definition (the YAML as stored; secrets sealed unless --show-secrets).
    #[command(
        long_about = "Print an environment's definition: the YAML as stored, with comments. Secrets show as \
`fn::secret: {ciphertext: …}` unless --show-secrets (which needs the editor role, and is audited). \
ENV@REVISION or ENV@TAG prints an earlier version. --value PATH prints one value's definition (under `values`); \
for evaluated values use `sesame env open`."
    )]
    Get(super::envs::GetArgs),
    /// Edit an environment's definition in $EDITOR and save it as a new revision.
    #[command(
        long_about = "Edit an environment's definition in $EDITOR (default vi; run through sh, so \
EDITOR=\"code --wait\" works) and save it as a new revision.\n\nThe file is private (mode 0600) and removed \
afterwards. Saving is conditional: when someone else saved in between, nothing is written, and your text is kept \
in a file whose name is printed. When the server finds errors, they are printed as FILE:LINE:COLUMN: message and \
the editor opens again on your text; leaving it unchanged gives up. Closing the editor without changes saves \
nothing."
    )]
    Edit(super::envs::EditArgs),
    /// Set one value of an environment's definition (optionally as a secret), keeping the rest of its text.
    #[command(
        long_about = "Set one value under `values` in an environment's definition and save it as a new \
revision. The rest of the YAML (comments, order, quoting) is kept; only the value's own lines change.\n\nPATH is \
dotted, with [N] for list items and [\"…\"] for keys with dots: `db.host`, `hosts[0]`, `[\"a.b\"].c`. Missing \
objects along it are created. VALUE is read as YAML (8080 is a number, true a boolean, [a, b] a list) unless \
--string. --secret stores it as `fn::secret`, which the server seals before storing.\n\nExample:\n  sesame env set \
web/prod db.password --secret \"$DB_PASSWORD\""
    )]
    Set(super::envs::SetArgs),
    /// Delete an environment (asks, or --yes), or remove one value from its definition.
    Rm(super::envs::RmArgs),
    /// Open an environment (evaluate it with its secrets and providers) and print its values.
    #[command(
        long_about = "Open an environment on the server and print its values, secrets in plaintext (needs \
the opener role; audited). PATH prints one property, e.g. `environmentVariables.DB_HOST`. --format dotenv and \
shell print the `environmentVariables` as lines to load (`eval \"$(sesame env open web/prod --format shell)\"`)."
    )]
    Open(super::envs::OpenArgs),
    /// Run a command with an environment's variables and files.
    #[command(
        long_about = "Open an environment and run COMMAND with its `environmentVariables` added to the \
environment. Each entry of `files` is written to a private temporary file (mode 0600) and its variable is set to \
that file's path; the files are removed when the command exits. The exit code is the command's (128+N when a \
signal N ended it; 127 when it cannot be found). SIGTERM and SIGHUP are passed on to the command.\n\nExample:\n  \
sesame env run web/prod -- ./server --port 8080"
    )]
    Run(super::envs::RunArgs),
    /// Revisions: list them, tag one, roll back to one.
    Version(super::envs::VersionArgs),
    /// Show how two definitions differ (unified diff).
    #[command(
        long_about = "Show how two definitions differ, as a unified diff.\n\n`diff ENV` shows what the \
latest revision changed; `diff ENV@3` compares revision 3 with the latest; `diff ENV@3 @5` two revisions; \
`diff A B` two environments (each may carry @VERSION). Secrets are compared sealed."
    )]
    Diff(super::envs::DiffArgs),
    /// Evaluate a local environment file offline and print its values.
    #[command(long_about = "Evaluate a local environment file offline and print its values.\n\n\
An import `NAME` (and a reference `${environments.P.E…}`, which names `P/E`) is read from `DIR/NAME.yaml`, where DIR \
is --import-dir (default: the file's own folder). The root environment is named after the file without `.yaml`. \
Secrets print as [secret] unless --show-secrets. Diagnostics go to stderr as file:line:column; the exit code is 1 \
when there are errors (values are still printed, with [unknown] where evaluation failed) and 0 with warnings only.\n\n\
Offline evaluation cannot open `fn::secret: {ciphertext: …}` values (they are sealed under keys only the server \
holds) nor call `fn::open` providers or `fn::rotate` rotators: those are reported as errors and their values are \
unknown.")]
    Eval(EvalArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The values as YAML.
    Yaml,
    /// The values as plain JSON (secrets as "[secret]", failed values as "[unknown]").
    Json,
    /// The `environmentVariables` as dotenv lines.
    Dotenv,
    /// The `environmentVariables` as POSIX shell `export` lines.
    Shell,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The environment definition (YAML).
    pub file: PathBuf,
    /// Where imports are read from: NAME is DIR/NAME.yaml. Default: the file's folder.
    #[arg(long, value_name = "DIR")]
    pub import_dir: Option<PathBuf>,
    /// Print secret values instead of [secret].
    #[arg(long)]
    pub show_secrets: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
}

pub async fn run(args: EnvArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        EnvCommand::Eval(a) => eval_file(a),
        EnvCommand::Init(a) => super::envs::init(a).await,
        EnvCommand::Ls(a) => super::envs::ls(a).await,
        EnvCommand::Get(a) => super::envs::get(a).await,
        EnvCommand::Edit(a) => super::envs::edit(a).await,
        EnvCommand::Set(a) => super::envs::set(a).await,
        EnvCommand::Rm(a) => super::envs::rm(a).await,
        EnvCommand::Open(a) => super::envs::open(a).await,
        EnvCommand::Run(a) => super::envs::run(a).await,
        EnvCommand::Version(a) => super::envs::version(a).await,
        EnvCommand::Diff(a) => super::envs::diff(a).await,
    }
}

/// Reads imports from a folder; providers, rotators and ciphertexts are refused offline.
struct LocalFiles {
    dir: PathBuf,
}

impl LocalFiles {
    fn path_of(&self, name: &str) -> Option<PathBuf> {
        let rel = Path::new(name);
        let safe = !name.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        safe.then(|| self.dir.join(format!("{name}.yaml")))
    }
}

impl Effects for LocalFiles {
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, EffectError>> {
        let Some(path) = self.path_of(name) else {
            return Answer::Ready(Err(EffectError::NotAFileName(name.to_owned())));
        };
        Answer::Ready(
            std::fs::read_to_string(&path)
                .map(Arc::from)
                .map_err(|e| EffectError::Unreadable {
                    name: name.to_owned(),
                    path: path.display().to_string(),
                    error: e.to_string(),
                }),
        )
    }

    fn decrypt(&self, _req: &DecryptRequest) -> Answer<Result<String, DecryptError>> {
        Answer::Ready(Err(DecryptError::Failed(
            "ciphertexts are sealed under the server's keys and cannot be opened offline".into(),
        )))
    }

    fn provider(&self, _name: &str) -> Option<ProviderSchema> {
        None
    }

    fn rotator(&self, _name: &str) -> Option<RotatorSchema> {
        None
    }

    fn call(&self, call: &ProviderCall) -> Answer<Result<Value, EffectError>> {
        Answer::Ready(Err(EffectError::Offline(call.provider.clone())))
    }
}

fn eval_file(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let src = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let Some(stem) = args.file.file_name().and_then(|n| n.to_str()) else {
        bail!("{}: not a file name", args.file.display());
    };
    let name = stem
        .strip_suffix(".yaml")
        .or_else(|| stem.strip_suffix(".yml"))
        .unwrap_or(stem)
        .to_owned();
    let dir = match &args.import_dir {
        Some(d) => d.clone(),
        None => args.file.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let effects = LocalFiles { dir: dir.clone() };
    let loaded = load(&name, &src);
    let mut diags: Vec<Diagnostic> = loaded.diags.clone();
    let mut properties = BTreeMap::new();
    if loaded.decl.is_some() {
        let opts = Options {
            mode: Mode::Eval,
            context: BTreeMap::new(),
        };
        let evaluated = eval::evaluate(&loaded, &effects, &opts);
        diags.extend(evaluated.diags);
        properties = evaluated.properties.unwrap_or_default();
    }
    crate::core::env::diag::sort(&mut diags);
    for d in &diags {
        let file = match &d.subject {
            Some((env, _)) if **env == *name => args.file.display().to_string(),
            Some((env, _)) => effects
                .path_of(env)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| env.to_string()),
            None => args.file.display().to_string(),
        };
        match &d.subject {
            Some((_, span)) => eprintln!(
                "{file}:{}:{}: {}: {}",
                span.begin.line,
                span.begin.column,
                if d.is_error() { "error" } else { "warning" },
                d.summary
            ),
            None => eprintln!("{file}: error: {}", d.summary),
        }
    }
    let redact = !args.show_secrets;
    let plain = Json::Object(properties.iter().map(|(k, v)| (k.clone(), v.to_json(redact))).collect());
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&plain)?),
        Format::Yaml => print!("{}", project::to_yaml(&plain)),
        Format::Dotenv | Format::Shell => {
            let (vars, bad) = project::environment_variables(&properties, args.show_secrets);
            for b in bad {
                eprintln!("warning: environmentVariables.{b}: not a valid variable name; skipped");
            }
            for v in vars {
                match (&v.value, args.format) {
                    (Some(val), Format::Shell) => println!("export {}={}", v.name, project::shell_quote(val)),
                    (Some(val), _) => println!("{}={}", v.name, project::dotenv_quote(val)),
                    (None, _) => {
                        eprintln!("note: {} withheld: {}", v.name, v.why_withheld.unwrap_or("withheld"))
                    }
                }
            }
        }
    }
    Ok(if diags.iter().any(Diagnostic::is_error) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
