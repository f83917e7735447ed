//! `paas run APP -- CMD`: starts a one-off container and relays its output live, stdout to
//! stdout and stderr to stderr; the CLI then exits with the command's status (128+N for a
//! signal, like a shell). Must not interpret the command: the daemon decides how it runs.

use std::io::Write;

use anyhow::Result;
use paas_api::{Method, OutputStream, RunEvent, RunRequest};

use super::{app_path, Ctx};
use crate::cli::RunArgs;

/// Carries the command's exit status to `main` without printing anything.
#[derive(Debug)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command exited with status {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<()> {
    let body = serde_json::to_vec(&RunRequest {
        command: args.command,
        memory_mb: args.memory,
        cpu_percent: args.cpu,
        pids: args.pids,
    })?;
    let mut lines = crate::ndjson::open(
        ctx,
        Method::POST,
        &app_path(&args.name, "/run")?,
        Some(body.into()),
    )
    .await?;
    let mut outcome: Option<u8> = None;
    while let Some(batch) = lines.next_batch().await? {
        for line in batch {
            if let Some(code) = handle(ctx, &line)? {
                outcome = Some(code);
            }
        }
    }
    match outcome {
        Some(0) => Ok(()),
        Some(code) => Err(ExitWith(code).into()),
        None => anyhow::bail!("the connection to paasd ended before the command finished"),
    }
}

/// Prints one event; returns the exit status once the command has ended.
fn handle(ctx: &Ctx, line: &[u8]) -> Result<Option<u8>> {
    if ctx.json {
        let mut out = std::io::stdout().lock();
        out.write_all(line)?;
        out.write_all(b"\n")?;
    }
    let event: RunEvent = serde_json::from_slice(line)?;
    match event {
        RunEvent::Started { .. } => Ok(None),
        RunEvent::Output { stream, line } => {
            if !ctx.json {
                match stream {
                    OutputStream::Stdout => writeln!(std::io::stdout().lock(), "{line}")?,
                    OutputStream::Stderr => writeln!(std::io::stderr().lock(), "{line}")?,
                }
            }
            Ok(None)
        }
        RunEvent::Exited { code, signal, oom } => {
            if oom {
                writeln!(
                    std::io::stderr().lock(),
                    "error: the command ran out of memory and was killed (raise --memory)"
                )?;
            }
            Ok(Some(match (code, signal) {
                (Some(c), _) => u8::try_from(c).unwrap_or(1),
                (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
                (None, None) => 1,
            }))
        }
        RunEvent::Error { message } => anyhow::bail!("{message}"),
    }
}
