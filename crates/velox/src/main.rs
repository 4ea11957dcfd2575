//! The `velox` binary: command-line parsing and wiring only; the work lives in the library crates.

mod alloc;
mod cli;
mod run;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: fewer cycles per allocation than glibc's malloc on the request path, and
/// small per-allocation overhead, which matters for tens of thousands of idle connections.
#[global_allocator]
static ALLOCATOR: alloc::MiMalloc = alloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    run::raise_fd_limit();
    run::main(cli)
}
