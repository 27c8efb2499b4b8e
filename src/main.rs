//! The `sesame` binary: parses the command line, sets up logging, and hands over to [`sesame::cli`].

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The binary's allocator: mimalloc, whose per-thread free lists serve a request's many small, short-lived
/// allocations without the lock contention of the system allocator's arenas (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = sesame::cli::Cli::parse();
    let default_level = match cli.command {
        sesame::cli::Command::Serve(_) | sesame::cli::Command::K8s(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("SESAME_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(sesame::cli::run(cli))
}
