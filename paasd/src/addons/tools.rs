//! The host's client programs run against a service (`pg_isready`, `psql`, `pg_dump`,
//! `pg_restore`, `redis-cli`): as the service's uid, with a clean environment (the password
//! in it, never in argv), a deadline and bounded output. Owns running them; must not decide
//! what to run (`kind.rs`) or when (`service.rs`, `backups.rs`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Output kept per stream; the rest is counted, not kept.
pub const MAX_OUTPUT: usize = 1 << 20;

#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{program} is not installed on this host (install the Debian package {package})")]
    Missing { program: String, package: String },
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {secs} s")]
    Timeout { program: String, secs: u64 },
}

pub struct Tool<'a> {
    pub program: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
    pub uid: u32,
    pub timeout: Duration,
    /// For the "not installed" message.
    pub package: &'a str,
    /// Where stdin comes from (a backup being restored) instead of nothing.
    pub stdin: Option<std::fs::File>,
    /// Where stdout goes (a backup being made) instead of [`Ran::stdout`].
    pub stdout: Option<std::fs::File>,
}

impl Tool<'_> {
    pub async fn run(self) -> Result<Ran, ToolError> {
        let program = self.program.display().to_string();
        if !self.program.is_file() {
            return Err(ToolError::Missing {
                program,
                package: self.package.to_string(),
            });
        }
        let mut cmd = tokio::process::Command::new(self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("LC_ALL", "C.UTF-8")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .uid(self.uid)
            .gid(self.uid)
            .current_dir("/")
            .stdin(self.stdin.map_or_else(Stdio::null, Stdio::from))
            .stdout(self.stdout.map_or_else(Stdio::piped, Stdio::from))
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| ToolError::Spawn {
            program: program.clone(),
            source,
        })?;
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let secs = self.timeout.as_secs();
        let finished = tokio::time::timeout(self.timeout, async {
            let (o, e) = tokio::join!(bounded(out.as_mut()), bounded(err.as_mut()));
            let status = child.wait().await;
            (o, e, status)
        })
        .await;
        let Ok((stdout, stderr, status)) = finished else {
            return Err(ToolError::Timeout { program, secs });
        };
        let status = status.map_err(|source| ToolError::Spawn {
            program: program.clone(),
            source,
        })?;
        Ok(Ran {
            code: status.code(),
            stdout,
            stderr,
        })
    }
}

/// Reads a pipe to its end, keeping the first [`MAX_OUTPUT`] bytes.
async fn bounded<R: tokio::io::AsyncRead + Unpin>(r: Option<&mut R>) -> String {
    let Some(r) = r else { return String::new() };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut dropped = 0usize;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                dropped += n - room;
            }
        }
    }
    let mut s = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        s.push_str(&format!("\n[{dropped} more bytes not shown]\n"));
    }
    s
}
