//! Rendering and writing: tables, aligned `key: value` blocks, JSON, timestamps, and the
//! split between stdout (data) and stderr (progress, confirmations). Must not know any
//! endpoint or decide what a command prints; commands hand it strings and values.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::SystemTime;

use anyhow::Result;
use serde_json::Value;

/// Columns are separated by this many spaces.
const GAP: usize = 3;

/// Renders a left-aligned table with a header row. The last column is not padded, so no
/// line ends in spaces. Widths count characters, not bytes.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            line.push_str(cell);
            if i + 1 < columns {
                let pad = width - cell.chars().count() + GAP;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders `key: value` lines with the values aligned. The further lines of a multi-line
/// value are indented to the value column.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let pad = width - key.chars().count() + 1;
        out.push_str(key);
        out.push(':');
        out.push_str(&" ".repeat(pad));
        let mut lines = value.split('\n');
        out.push_str(lines.next().unwrap_or(""));
        for more in lines {
            out.push('\n');
            out.push_str(&" ".repeat(width + 2));
            out.push_str(more);
        }
        out.push('\n');
    }
    out
}

/// A duration for people: `850ms`, `12.3s`, `2m05s`, `1h02m`.
pub fn duration_ms(ms: u64) -> String {
    const MIN: u64 = 60;
    const HOUR: u64 = 60 * MIN;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = (ms + 500) / 1000;
    if secs < HOUR {
        format!("{}m{:02}s", secs / MIN, secs % MIN)
    } else {
        let mins = (secs + 30) / MIN;
        format!("{}h{:02}m", mins / 60, mins % 60)
    }
}

/// A byte count for people, in binary units: `512 B`, `4.50 MiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// The first 8 hex digits of a checksum, the way git abbreviates; `-` when there is none.
pub fn short_sha(sha: Option<&str>) -> String {
    match sha {
        Some(s) if !s.is_empty() => s.chars().take(8).collect(),
        _ => "-".to_owned(),
    }
}

/// `web=2 worker=1`, or an empty string for an empty formation.
pub fn formation(formation: &BTreeMap<String, u32>) -> String {
    formation
        .iter()
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `v3`, or `-` when there is no release.
pub fn version(release: Option<u32>) -> String {
    release.map_or_else(|| "-".to_owned(), |v| format!("v{v}"))
}

/// How long ago an RFC 3339 UTC timestamp was, coarsely (`5m ago`); the raw text when it
/// cannot be read.
pub fn ago(timestamp: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339(timestamp) else {
        return timestamp.to_owned();
    };
    match SystemTime::now().duration_since(then) {
        Ok(elapsed) => format!("{} ago", coarse(elapsed.as_secs())),
        // A clock slightly ahead of ours.
        Err(_) => "just now".to_owned(),
    }
}

fn coarse(secs: u64) -> String {
    const MIN: u64 = 60;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    match secs {
        s if s < MIN => format!("{s}s"),
        s if s < HOUR => format!("{}m", s / MIN),
        s if s < DAY => format!("{}h", s / HOUR),
        s => format!("{}d", s / DAY),
    }
}

/// Writes data to stdout. Errors (e.g. a closed pipe) are returned, not panicked on.
pub fn out(text: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Writes one line of data to stdout.
pub fn line(text: &str) -> Result<()> {
    out(&format!("{text}\n"))
}

/// Writes a value as pretty JSON to stdout.
pub fn json(value: &Value) -> Result<()> {
    line(&serde_json::to_string_pretty(value)?)
}

/// Writes a progress or confirmation line to stderr. A failing stderr is ignored: there is
/// nowhere left to report it.
pub fn status(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn table_aligns_columns() {
        let rendered = table(
            &["NAME", "STATUS", "RELEASE"],
            &[
                s(&["api", "deployed", "v12"]),
                s(&["a-much-longer-name", "created", "-"]),
            ],
        );
        let expected = "\
NAME                 STATUS     RELEASE
api                  deployed   v12
a-much-longer-name   created    -
";
        assert_eq!(rendered, expected);
    }

    #[test]
    fn table_has_no_trailing_spaces_and_counts_chars() {
        let rendered = table(&["A", "B"], &[s(&["é", ""]), s(&["xyz", "1"])]);
        assert_eq!(rendered, "A     B\né\nxyz   1\n");
        for l in rendered.lines() {
            assert_eq!(l, l.trim_end());
        }
    }

    #[test]
    fn table_with_no_rows_is_just_the_header() {
        assert_eq!(table(&["NAME", "STATUS"], &[]), "NAME   STATUS\n");
    }

    #[test]
    fn key_values_align_values() {
        let rendered = key_values(&[("name", "x".to_owned()), ("buildpack", "-".to_owned())]);
        assert_eq!(rendered, "name:      x\nbuildpack: -\n");
    }

    #[test]
    fn key_values_indent_continuation_lines() {
        let rendered = key_values(&[
            ("process types", "web: ./server\nworker: ./work".to_owned()),
            ("size", "1 KiB".to_owned()),
        ]);
        assert_eq!(
            rendered,
            "process types: web: ./server\n               worker: ./work\nsize:          1 KiB\n"
        );
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(duration_ms(0), "0ms");
        assert_eq!(duration_ms(999), "999ms");
        assert_eq!(duration_ms(1000), "1.0s");
        assert_eq!(duration_ms(12_345), "12.3s");
        assert_eq!(duration_ms(12_350), "12.4s");
        assert_eq!(duration_ms(59_949), "59.9s");
        assert_eq!(duration_ms(59_950), "1m00s");
        assert_eq!(duration_ms(125_000), "2m05s");
        assert_eq!(duration_ms(3_599_499), "59m59s");
        assert_eq!(duration_ms(3_600_000), "1h00m");
        assert_eq!(duration_ms(3_720_000), "1h02m");
        assert_eq!(duration_ms(90_000_000), "25h00m");
    }

    #[test]
    fn bytes_and_checksums() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(4 * 1024 * 1024 + 512 * 1024), "4.50 MiB");
        assert_eq!(short_sha(Some("0123456789abcdef")), "01234567");
        assert_eq!(short_sha(Some("abc")), "abc");
        assert_eq!(short_sha(Some("")), "-");
        assert_eq!(short_sha(None), "-");
    }

    #[test]
    fn formation_and_version() {
        let mut f = BTreeMap::new();
        assert_eq!(formation(&f), "");
        f.insert("worker".to_owned(), 1);
        f.insert("web".to_owned(), 2);
        assert_eq!(formation(&f), "web=2 worker=1");
        assert_eq!(version(Some(3)), "v3");
        assert_eq!(version(None), "-");
    }

    #[test]
    fn coarse_durations() {
        assert_eq!(coarse(5), "5s");
        assert_eq!(coarse(125), "2m");
        assert_eq!(coarse(7200), "2h");
        assert_eq!(coarse(3 * 86400 + 5), "3d");
        assert_eq!(ago("not a time"), "not a time");
    }
}
