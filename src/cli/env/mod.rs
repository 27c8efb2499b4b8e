//! `sesame env`: environments. This module holds the clap command ([`EnvArgs`], [`EnvCommand`]) and sends each
//! subcommand to the file that runs it; it does no work of its own.
//!
//! - against a server, through its Pulumi-ESC-compatible API: `init`, `ls`, `get`, `rm` in `remote.rs`; `edit` and
//!   `set` in `edit.rs` (the text edits of `set` and `rm ENV PATH` in `definition/`); `open` and `run` in `run.rs`;
//!   `version` and `diff` in `versions.rs`; `rotate` in `rotate.rs`; `schedule` (rotation schedules) in `schedule.rs`. They share `names.rs` (environment names, `--org`), `session.rs` (the
//!   HTTP conversation, diagnostics) and `output.rs` (stdout, tables, dotenv/shell lines); `values.rs` reads opened
//!   values;
//! - offline: `eval` in `offline.rs`, over local files.
//!
//! Secrets reach stdout only where the user asked for them (`get --show-secrets`, `open`, `run`), never an error
//! message or a log line.

mod definition;
mod edit;
mod names;
mod offline;
mod output;
mod remote;
mod rotate;
mod run;
mod schedule;
mod session;
pub(crate) mod values;
mod versions;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use edit::{EditArgs, SetArgs};
use offline::EvalArgs;
use remote::{GetArgs, InitArgs, LsArgs, RmArgs};
use rotate::RotateArgs;
use run::{OpenArgs, RunArgs};
use schedule::ScheduleArgs;
use versions::{DiffArgs, VersionArgs};

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
    Init(InitArgs),
    /// List the environments of an org.
    Ls(LsArgs),
    /// Print an environment's definition (the YAML as stored; secrets sealed unless --show-secrets).
    #[command(
        long_about = "Print an environment's definition: the YAML as stored, with comments. Secrets show as \
`fn::secret: {ciphertext: …}` unless --show-secrets (which needs the editor role, and is audited). \
ENV@REVISION or ENV@TAG prints an earlier version. --value PATH prints one value's definition (under `values`); \
for evaluated values use `sesame env open`."
    )]
    Get(GetArgs),
    /// Edit an environment's definition in $EDITOR and save it as a new revision.
    #[command(
        long_about = "Edit an environment's definition in $EDITOR (default vi; run through sh, so \
EDITOR=\"code --wait\" works) and save it as a new revision.\n\nThe file is private (mode 0600) and removed \
afterwards. Saving is conditional: when someone else saved in between, nothing is written, and your text is kept \
in a file whose name is printed. When the server finds errors, they are printed as FILE:LINE:COLUMN: message and \
the editor opens again on your text; leaving it unchanged gives up. Closing the editor without changes saves \
nothing."
    )]
    Edit(EditArgs),
    /// Set one value of an environment's definition (optionally as a secret), keeping the rest of its text.
    #[command(
        long_about = "Set one value under `values` in an environment's definition and save it as a new \
revision. The rest of the YAML (comments, order, quoting) is kept; only the value's own lines change.\n\nPATH is \
dotted, with [N] for list items and [\"…\"] for keys with dots: `db.host`, `hosts[0]`, `[\"a.b\"].c`. Missing \
objects along it are created. VALUE is read as YAML (8080 is a number, true a boolean, [a, b] a list) unless \
--string. --secret stores it as `fn::secret`, which the server seals before storing.\n\nExample:\n  sesame env set \
web/prod db.password --secret \"$DB_PASSWORD\""
    )]
    Set(SetArgs),
    /// Delete an environment (asks, or --yes), or remove one value from its definition.
    Rm(RmArgs),
    /// Open an environment (evaluate it with its secrets and providers) and print its values.
    #[command(
        long_about = "Open an environment on the server and print its values, secrets in plaintext (needs \
the opener role; audited). PATH prints one property, e.g. `environmentVariables.DB_HOST`. --format dotenv and \
shell print the `environmentVariables` as lines to load (`eval \"$(sesame env open web/prod --format shell)\"`)."
    )]
    Open(OpenArgs),
    /// Run a command with an environment's variables and files.
    #[command(
        long_about = "Open an environment and run COMMAND with its `environmentVariables` added to the \
environment. Each entry of `files` is written to a private temporary file (mode 0600) and its variable is set to \
that file's path; the files are removed when the command exits. The exit code is the command's (128+N when a \
signal N ended it; 127 when it cannot be found). SIGTERM and SIGHUP are passed on to the command.\n\nExample:\n  \
sesame env run web/prod -- ./server --port 8080"
    )]
    Run(RunArgs),
    /// Revisions: list them, tag one, roll back to one.
    Version(VersionArgs),
    /// Show how two definitions differ (unified diff).
    #[command(
        long_about = "Show how two definitions differ, as a unified diff.\n\n`diff ENV` shows what the \
latest revision changed; `diff ENV@3` compares revision 3 with the latest; `diff ENV@3 @5` two revisions; \
`diff A B` two environments (each may carry @VERSION). Secrets are compared sealed."
    )]
    Diff(DiffArgs),
    /// Rotate an environment's `fn::rotate` secrets now (all, or those at PATHs) into a new revision.
    #[command(
        long_about = "Rotate an environment's `fn::rotate` calls now (all of them, or those at the PATHs given \
under `values`, e.g. `db.password`) and save their new states as a new revision (needs the editor role; \
audited). After a rotation each value is `{current, previous}`, previous being the former current. Only the \
rotated states change in the stored definition (comments and layout are kept); the new secrets are sealed and \
not printed: read them with `sesame env open`. A process that dies mid-rotation writes nothing: the former \
current stays. To rotate on a timetable, see `sesame env schedule`.\n\nExample:\n  sesame env rotate web/prod db.password"
    )]
    Rotate(RotateArgs),
    /// Rotation schedules the server runs: ls, new, get, edit, rm, history.
    #[command(
        long_about = "Rotation schedules the server runs (Pulumi's `esc env schedule`): each rotates the \
environment's `fn::rotate` calls (all, or one --path) on a five-field cron expression in UTC (--cron \"0 3 * * *\") or \
once at an RFC 3339 instant (--once 2030-01-31T12:00:00Z). A run acts as the token that made the schedule, with the \
rights it has then (needs the editor role); each run is audited and listed by `history`. A bad cron expression or \
instant is refused with the reason.\n\nExamples:\n  sesame env schedule new web/prod --cron \"0 3 * * 1\" --path \
db.password\n  sesame env schedule ls web/prod\n  sesame env schedule history web/prod ID"
    )]
    Schedule(ScheduleArgs),
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

pub async fn run(args: EnvArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        EnvCommand::Eval(a) => offline::eval_file(a),
        EnvCommand::Init(a) => remote::init(a).await,
        EnvCommand::Ls(a) => remote::ls(a).await,
        EnvCommand::Get(a) => remote::get(a).await,
        EnvCommand::Edit(a) => edit::edit(a).await,
        EnvCommand::Set(a) => edit::set(a).await,
        EnvCommand::Rm(a) => remote::rm(a).await,
        EnvCommand::Open(a) => run::open(a).await,
        EnvCommand::Run(a) => run::run(a).await,
        EnvCommand::Version(a) => versions::version(a).await,
        EnvCommand::Diff(a) => versions::diff(a).await,
        EnvCommand::Rotate(a) => rotate::rotate(a).await,
        EnvCommand::Schedule(a) => schedule::schedule(a).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        crate::cli::Cli::command().debug_assert();
    }
}
