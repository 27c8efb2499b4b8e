//! `sesame env eval`: evaluate a local environment file offline, with imports and `${environments.P.E}` references
//! read from a folder — no server, no credentials. Ciphertexts, providers and rotators are refused (their values are
//! unknown); diagnostics go to stderr as file:line:column.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::Value as Json;

use super::output::variable_lines;
use crate::core::env::eval::{
    self, Answer, DecryptError, DecryptRequest, EffectError, Effects, Mode, Options, ProviderCall, ProviderSchema,
    RotatorSchema,
};
use crate::core::env::{Diagnostic, Value, load, project};

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

pub(super) fn eval_file(args: EvalArgs) -> anyhow::Result<ExitCode> {
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
            variable_lines(&properties, args.show_secrets, args.format == Format::Shell, |line| {
                println!("{line}")
            });
        }
    }
    Ok(if diags.iter().any(Diagnostic::is_error) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
