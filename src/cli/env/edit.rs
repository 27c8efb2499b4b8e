//! `env edit` and `env set`: change a definition and save it as a new revision. `edit` runs $EDITOR on a private
//! temporary file (removed afterwards, kept only on a conflict) and opens it again on the server's errors; `set` (and
//! `rm ENV PATH`) splice one value into the text with [`super::definition`] and save conditionally, trying again when
//! someone else wrote in between. Saving is always conditional on the ETag read.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value as Json;

use super::definition::{self, PropertyPath, under_values, yaml_to_json};
use super::names::{Remote, no_version};
use super::output::say;
use super::session::{Session, diagnostics_of, print_diagnostics, print_write_diagnostics, saved_message, status_of};
use crate::cli::client::Answer;
use crate::core::env::env_ref::EnvRef;

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
pub(super) async fn edit(args: EditArgs) -> anyhow::Result<ExitCode> {
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
pub(super) async fn update<F>(s: &Session, env: &EnvRef, change: F) -> anyhow::Result<Answer>
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
pub(super) async fn set(args: SetArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    no_version(&env, "set")?;
    let path: PropertyPath = args.path.parse()?;
    let full = under_values(&path);
    let value = set_value(&args)?;
    let answer = update(&s, &env, |yaml| definition::set(yaml, &full, &value))
        .await
        .with_context(|| format!("setting {path}"))?;
    print_write_diagnostics(&env.to_string(), &env, &answer);
    say!("{}", saved_message(&env, &answer));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cli::client::ClientArgs;

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
