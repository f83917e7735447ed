//! `paas run APP -- CMD`: starts a one-off container and relays its output live, stdout to
//! stdout and stderr to stderr; the CLI then exits with the command's status (128+N for a
//! signal, like a shell). Must not interpret the command: the daemon decides how it runs.

use std::io::Write;

use anyhow::Result;
use http_body_util::BodyExt;
use paas_api::{client, Method, OutputStream, RunEvent, RunRequest};

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
    let resp = ctx
        .client
        .send(
            Method::POST,
            &app_path(&args.name, "/run")?,
            Some(body.into()),
            "application/json",
        )
        .await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        return Err(client::api_error(status, &bytes).into());
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut outcome: Option<u8> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            if let Some(code) = handle(ctx, &line[..line.len() - 1])? {
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
