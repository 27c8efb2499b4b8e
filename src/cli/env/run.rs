//! `env open` and `env run`: open an environment on the server (secrets in plaintext; needs the opener role, and is
//! audited) and print its values, or run a command with its `environmentVariables` and its `files` (written to private
//! temporary files, removed when the command exits), staying alive to pass SIGTERM and SIGHUP on.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::definition::PropertyPath;
use super::names::Remote;
use super::output::{say, say_raw, variable_lines};
use super::session::{Session, diagnostics_of, print_diagnostics};
use super::values::property;
use crate::core::env::project;
use crate::core::env::value::{Repr, Value};

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

/// Runs `env open`.
pub(super) async fn open(args: OpenArgs) -> anyhow::Result<ExitCode> {
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
            variable_lines(&props, true, args.format == OpenFormat::Shell, |line| say!("{line}"));
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
pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
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
