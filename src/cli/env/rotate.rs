//! `env rotate ENV [PATH…]`: asks the server to rotate the environment's `fn::rotate` calls (all of them, or those
//! at the paths given) and prints the revision it wrote. No secret is printed: read the new values with `env open`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reqwest::Method;

use super::names::{Remote, no_version};
use super::output::say;
use super::session::{Session, about, diagnostics_of, print_diagnostics};
use crate::wire::esc;

/// `env rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The environment: [ORG/]PROJECT/ENV.
    pub env: String,
    /// Rotate only the `fn::rotate` calls at these paths under `values` (e.g. `db.password`); default: all.
    pub paths: Vec<String>,
    #[command(flatten)]
    pub remote: Remote,
}

/// Runs `env rotate`.
pub(super) async fn rotate(args: RotateArgs) -> anyhow::Result<ExitCode> {
    let s = Session::new(&args.remote)?;
    let env = s.env(&args.env)?;
    no_version(&env, "rotate")?;
    let url = s.url(&env, &["rotate"], &[])?;
    let body = esc::RotateRequest {
        paths: (!args.paths.is_empty()).then_some(args.paths),
    };
    let answer = match s.client.execute(s.client.request(Method::POST, url).json(&body)).await {
        Ok(a) => a,
        Err(e) => {
            if let Some(diags) = diagnostics_of(&e) {
                print_diagnostics(&format!("{env}"), &env, diags);
            }
            return Err(about(e, &env).context(format!("rotating {env}")));
        }
    };
    let resp: esc::RotateResponse =
        serde_json::from_str(&answer.body).context("the server's answer to rotate was not understood")?;
    let event = resp.secret_rotation_event;
    let paths: Vec<&str> = event.rotations.iter().map(|r| r.environment_path.as_str()).collect();
    match event.post_rotation_revision {
        Some(rev) => say!("Rotated {} in {env}: revision {rev}.", paths.join(", ")),
        None => say!("Rotated {} in {env}.", paths.join(", ")),
    }
    Ok(ExitCode::SUCCESS)
}
