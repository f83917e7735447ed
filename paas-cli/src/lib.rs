//! The `paas` command and the `paas-git-shell` forced command, as a library so both binaries
//! share the client code. Owns only the process shell here: argv rewrite, parsing, the
//! runtime, and mapping the outcome to an exit code. Must not contain command logic or output
//! formatting.

#![forbid(unsafe_code)]

pub mod args;
pub mod cli;
pub mod commands;
pub mod git_shell;
pub mod ndjson;
pub mod output;
pub mod sealed;
pub mod source;
pub mod submodules;
pub mod upload;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use paas_api::ClientError;

use crate::args::UsageError;
use crate::cli::Cli;

/// The daemon refused the request, or something else failed at run time.
pub const EXIT_FAILURE: u8 = 1;
/// Bad arguments; nothing was sent (clap uses the same code for its own errors).
const EXIT_USAGE: u8 = 2;
/// The daemon could not be reached. (`paas run` exits with the command's own status.)
const EXIT_UNREACHABLE: u8 = 3;

/// `paas`'s `main`.
pub fn main() -> ExitCode {
    let argv = match cli::rewrite(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(usage) => return report(&usage.into()),
    };
    let cli = Cli::parse_from(argv);
    match block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// Runs `work` on a single-threaded runtime (both binaries do one thing at a time).
pub fn block_on<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(work)
}

/// Prints the error to stderr and picks the exit code.
pub fn report(e: &anyhow::Error) -> ExitCode {
    if let Some(commands::run::ExitWith(code)) = e.downcast_ref() {
        return ExitCode::from(*code);
    }
    if let Some(usage) = e.downcast_ref::<UsageError>() {
        output::status(&format!("error: {usage}"));
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(client) = e.downcast_ref::<ClientError>() {
        // For `ClientError::Api` this is exactly the daemon's message.
        output::status(&format!("error: {client}"));
        return ExitCode::from(if client.is_unreachable() {
            EXIT_UNREACHABLE
        } else {
            EXIT_FAILURE
        });
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        if io.kind() == io::ErrorKind::BrokenPipe {
            // Whoever read our stdout stopped reading (`paas apps | head -1`): not an error.
            return ExitCode::SUCCESS;
        }
    }
    output::status(&format!("error: {e:#}"));
    ExitCode::from(EXIT_FAILURE)
}
