//! `paas logs APP [--num N] [--since 2h] [--release v12] [--follow] [--ps web] [--source S]`:
//! reads `GET /apps/{app}/logs` as NDJSON and prints each line Heroku-style (or the events
//! as they are with `--json`) as it arrives; skipped lines are noted on stderr. Must not
//! judge the filters: paasd does, and its message reaches the user unchanged.

use std::io::Write;

use anyhow::Result;
use paas_api::client::segment;
use paas_api::{LogEvent, LogLine, LogSource, Method};

use super::{app_path, Ctx};
use crate::cli::LogsArgs;
use crate::output;

pub async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let path = format!("{}{}", app_path(&args.name, "/logs")?, query(&args));
    let mut lines = crate::ndjson::open(ctx, Method::GET, &path, None).await?;
    while let Some(batch) = lines.next_batch().await? {
        // Everything complete in this chunk goes out in one write.
        print_events(ctx.json, &batch)?;
    }
    if args.follow {
        output::status("(the log stream ended: paasd stopped or the app was destroyed)");
    }
    Ok(())
}

/// `?tail=..&since=..`, values percent-encoded; empty when no filter is given.
fn query(args: &LogsArgs) -> String {
    let mut pairs: Vec<String> = Vec::new();
    let mut add = |key: &str, value: Option<&str>| {
        if let Some(v) = value {
            pairs.push(format!("{key}={}", segment(v)));
        }
    };
    add("tail", args.num.map(|n| n.to_string()).as_deref());
    add("since", args.since.as_deref());
    add("release", args.release.as_deref());
    add("ps", args.ps.as_deref());
    add("source", args.source.as_deref());
    if args.follow {
        pairs.push("follow=true".into());
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Prints NDJSON lines: data to stdout, skipped-line notes to stderr.
fn print_events(json: bool, lines: &[Vec<u8>]) -> Result<()> {
    let mut out = String::new();
    for raw in lines.iter().filter(|l| !l.is_empty()) {
        let event: LogEvent = serde_json::from_slice(raw).map_err(|e| {
            anyhow::anyhow!("paasd sent a log event this client does not understand: {e}")
        })?;
        if json {
            out.push_str(&String::from_utf8_lossy(raw));
            out.push('\n');
        } else if let LogEvent::Line(line) = &event {
            out.push_str(&human(line));
            out.push('\n');
        }
        if let LogEvent::Dropped { count } = event {
            // Keep the order: what came before the gap is printed before the note.
            flush(&mut out)?;
            output::status(&format!(
                "({count} line{} dropped: reading too slowly)",
                if count == 1 { "" } else { "s" }
            ));
        }
    }
    flush(&mut out)
}

fn flush(out: &mut String) -> Result<()> {
    if !out.is_empty() {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
        out.clear();
    }
    Ok(())
}

/// `2026-11-23T10:00:00.123Z app[web.1] v12: text`; other sources show their process
/// (`router`, `build`, `paasd`), or `paasd[web.1]` for a platform line about an instance.
fn human(l: &LogLine) -> String {
    let who = match (l.source, l.process.as_str()) {
        (LogSource::App, p) => format!("app[{p}]"),
        (LogSource::Router, "router") => "router".to_owned(),
        (LogSource::Build, "build") => "build".to_owned(),
        (LogSource::Platform, "paasd") => "paasd".to_owned(),
        (LogSource::Router, p) => format!("router[{p}]"),
        (LogSource::Build, p) => format!("build[{p}]"),
        (LogSource::Platform, p) => format!("paasd[{p}]"),
        (LogSource::Cron, p) => format!("cron[{p}]"),
    };
    let release = l.release.map(|v| format!(" v{v}")).unwrap_or_default();
    // A line must stay one line on a terminal.
    let text: String = l
        .line
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("{} {who}{release}: {text}", l.ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(source: LogSource, process: &str, release: Option<u32>, text: &str) -> LogLine {
        LogLine {
            ts: "2026-11-23T10:00:00.123Z".into(),
            source,
            process: process.into(),
            release,
            line: text.into(),
        }
    }

    #[test]
    fn lines_read_like_heroku() {
        assert_eq!(
            human(&line(LogSource::App, "web.1", Some(12), "listening")),
            "2026-11-23T10:00:00.123Z app[web.1] v12: listening"
        );
        assert_eq!(
            human(&line(LogSource::Build, "build", None, "-----> Building")),
            "2026-11-23T10:00:00.123Z build: -----> Building"
        );
        assert_eq!(
            human(&line(LogSource::Router, "router", Some(3), "method=GET")),
            "2026-11-23T10:00:00.123Z router v3: method=GET"
        );
        assert_eq!(
            human(&line(
                LogSource::Platform,
                "web.2",
                Some(3),
                "crashed\nagain"
            )),
            "2026-11-23T10:00:00.123Z paasd[web.2] v3: crashed again"
        );
    }

    #[test]
    fn filters_become_an_encoded_query() {
        let mut a = LogsArgs {
            name: "x".into(),
            num: None,
            since: None,
            release: None,
            follow: false,
            ps: None,
            source: None,
        };
        assert_eq!(query(&a), "");
        a.num = Some(5);
        a.since = Some("2026-11-23T11:00:00+01:00".into());
        a.ps = Some("web".into());
        a.follow = true;
        assert_eq!(
            query(&a),
            "?tail=5&since=2026-11-23T11%3A00%3A00%2B01%3A00&ps=web&follow=true"
        );
    }
}
