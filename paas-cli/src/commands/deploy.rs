//! `paas deploy APP [--source DIR|TARBALL]`: streams the source to `POST /apps/{app}/deploy`
//! and follows the NDJSON answer: build output and phase timings to stderr as they come, the
//! release (and the app's URLs) to stdout at the end. Must not build anything itself or judge
//! the source beyond what `source` checks; the daemon's verdict reaches the user unchanged.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};
use bytes::Buf;
use http_body_util::BodyExt;
use paas_api::client::{self, Body};
use paas_api::{App, ClientError, DeployEvent, Method, Release};

use super::{app_path, typed, Ctx};
use crate::cli::DeployArgs;
use crate::output;
use crate::source::Source;
use crate::upload::Upload;

/// Indent of build output that is not a `----->` heading (Heroku's convention).
const INDENT: &str = "       ";

pub async fn deploy(ctx: &Ctx, args: DeployArgs) -> Result<()> {
    let source = Source::open(&args.source, &mut |w| output::status(&w))?;
    output::status(&announce(&args.source, &source));
    deploy_source(ctx, &args.name, source, None).await
}

/// Uploads `source`, follows the build and prints the release. `who` names the pusher in
/// the deployment record (`X-Paas-User`), e.g. the git key.
pub async fn deploy_source(ctx: &Ctx, name: &str, source: Source, who: Option<&str>) -> Result<()> {
    let path = app_path(name, "/deploy")?;
    let upload = Upload::start(source, std::io::stderr().is_terminal());
    let progress = upload.progress.clone();
    let mut headers = crate::upload::gzip_headers();
    if let Some(who) = who {
        use paas_api::client::header::HeaderValue;
        if let Ok(v) = HeaderValue::from_str(who) {
            headers.insert("x-paas-user", v);
        }
    }
    let sent = ctx
        .client
        .send_upload(Method::POST, &path, headers, upload.body)
        .await;
    let uploaded = progress.position();
    progress.finish_and_clear();
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => return Err(upload_failed(e, upload.producer).await),
    };
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        return Err(client::api_error(status, &bytes).into());
    }
    output::status(&format!("{INDENT}{} uploaded", output::bytes(uploaded)));
    let release = follow(ctx, name, &mut body)
        .await
        .map_err(|e| super::with_logs_hint(name, e))?;
    if ctx.json {
        return Ok(());
    }
    output::line(&format!("Released v{} of {}", release.version, name))?;
    // The URLs are a courtesy: the deploy has succeeded whether or not they can be read.
    if let Ok(app) = ctx.get(&app_path(name, "")?).await.and_then(typed::<App>) {
        for url in &app.urls {
            output::line(url)?;
        }
    }
    Ok(())
}

/// The one line that says what is being sent.
fn announce(given: &Path, source: &Source) -> String {
    match source {
        Source::Dir { root, .. } => {
            let shown = std::fs::canonicalize(root).unwrap_or_else(|_| given.to_owned());
            let files = source.file_count().unwrap_or(0);
            format!(
                "-----> Uploading source from {} ({files} file{})",
                shown.display(),
                if files == 1 { "" } else { "s" }
            )
        }
        Source::Tarball { path, size } => format!(
            "-----> Uploading {} ({})",
            path.display(),
            output::bytes(*size)
        ),
    }
}

/// Why the request failed: a source that could not be read says so itself; otherwise it is
/// the transport's or the daemon's failure.
async fn upload_failed(
    e: ClientError,
    producer: tokio::task::JoinHandle<std::io::Result<()>>,
) -> anyhow::Error {
    if e.is_unreachable() {
        return e.into();
    }
    // The request (and with it the body's receiver) is gone, so the producer ends promptly.
    match tokio::time::timeout(Duration::from_secs(5), producer).await {
        Ok(Ok(Err(io))) if io.kind() != std::io::ErrorKind::BrokenPipe => {
            anyhow!("cannot pack the source: {io}")
        }
        _ => e.into(),
    }
}

/// paasd's closing build line, `-----> Released v3 of APP`.
fn is_release_line(line: &str, app: &str) -> bool {
    line.strip_prefix("-----> Released v")
        .and_then(|rest| rest.strip_suffix(app))
        .and_then(|rest| rest.strip_suffix(" of "))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What the stream ended with.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Released(Box<Release>),
    Failed(String),
}

/// Reads NDJSON events until `done` or `error`. A stream that ends (or breaks) before either
/// leaves the deploy's fate unknown.
async fn follow<B>(ctx: &Ctx, app: &str, body: &mut B) -> Result<Release>
where
    B: Body + Unpin,
    B::Data: Buf,
    B::Error: std::fmt::Display,
{
    let mut lines = crate::ndjson::Lines::new(body);
    let mut outcome = None;
    // A broken stream ends it like a closed one: the deploy's fate is then unknown.
    'stream: while let Ok(Some(batch)) = lines.next_batch().await {
        for line in batch {
            outcome = handle(ctx, app, &line)?;
            if outcome.is_some() {
                break 'stream;
            }
        }
    }
    match outcome {
        Some(Outcome::Released(release)) => Ok(*release),
        Some(Outcome::Failed(message)) => Err(anyhow!(message)),
        None => Err(anyhow!(
            "connection to paasd lost during the deploy; the deploy may still finish: \
             see `paas releases {app}`"
        )),
    }
}

/// Shows one event; returns the outcome once the stream says how the deploy ended.
fn handle(ctx: &Ctx, app: &str, line: &[u8]) -> Result<Option<Outcome>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if ctx.json {
        let mut out = std::io::stdout().lock();
        out.write_all(line)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| anyhow!("paasd sent a deploy event this client does not understand: {e}"))?;
    // An event type this client does not know (a newer paasd) is skipped, not fatal.
    let Ok(event) = serde_json::from_value::<DeployEvent>(value) else {
        return Ok(None);
    };
    let human = !ctx.json;
    Ok(match event {
        DeployEvent::Started { .. } => None,
        DeployEvent::Phase { phase, ms } => {
            if human {
                output::status(&format!("{INDENT}{phase}: {}", output::duration_ms(ms)));
            }
            None
        }
        DeployEvent::Output { line } => {
            // paasd's own `-----> Released vN of APP` (kept in the build log) would say it a
            // second time: this client prints the release on stdout once the stream ends.
            if human && !is_release_line(&line, app) {
                output::status(&line);
            }
            None
        }
        DeployEvent::Done { release } => Some(Outcome::Released(release)),
        DeployEvent::Error { message, .. } => Some(Outcome::Failed(message)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paasd_release_line_is_recognised() {
        assert!(is_release_line("-----> Released v3 of web", "web"));
        assert!(is_release_line("-----> Released v12 of my-app", "my-app"));
        for other in [
            "-----> Released v3 of other",
            "-----> Released v of web",
            "-----> Released vx of web",
            "       Released v3 of web",
            "-----> Released v3 of web!",
        ] {
            assert!(!is_release_line(other, "web"), "{other}");
        }
    }
}
