//! Tests of the log service through its public interface: rotation under the cap, filters,
//! followers (history, live, lag), restart, removal, dropped appends. Speeds are printed,
//! never asserted.

use std::time::{Duration, Instant, SystemTime};

use paas_api::{LogEvent, LogLine, LogSource};

use super::*;

/// Fails a test that hangs instead of hanging the suite; not a speed check.
const HANG: Duration = Duration::from_secs(30);

fn logs(dir: &Path, cfg: LogConfig) -> Logs {
    Logs::new(dir, cfg).expect("logs")
}

fn app_line(process: &str, release: Option<u32>, text: &str) -> LogLine {
    LogLine {
        ts: now(),
        source: LogSource::App,
        process: process.into(),
        release,
        line: text.into(),
    }
}

fn texts(lines: &[LogLine]) -> Vec<&str> {
    lines.iter().map(|l| l.line.as_str()).collect()
}

fn disk_bytes(dir: &Path) -> u64 {
    store::list_segments(dir)
        .expect("list")
        .iter()
        .map(|s| s.1)
        .sum()
}

async fn next(f: &mut Follower) -> Option<LogEvent> {
    tokio::time::timeout(HANG, f.next())
        .await
        .expect("follower hung")
}

fn filter(tail: usize) -> LogFilter {
    LogFilter {
        tail,
        ..LogFilter::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_an_app_printing_100k_lines_under_the_cap() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = LogConfig {
        max_bytes_per_app: 2 << 20,
        segment_bytes: 256 << 10,
        // Room for the whole burst: this test is about rotation, not drops.
        queue_lines: 200_000,
        ..LogConfig::default()
    };
    let l = logs(tmp.path(), cfg);
    let stream = tmp.path().join("big").join(store::STREAM_DIR);
    let n = 100_000;
    let mut written = 0u64;
    let lines: Vec<LogLine> = (0..n)
        .map(|i| {
            let line = app_line(
                "web.1",
                Some(7),
                &format!("request {i:06} handled; padding to look like a real log line"),
            );
            written += serde_json::to_vec(&line).expect("json").len() as u64 + 1;
            line
        })
        .collect();
    let started = Instant::now();
    for (i, line) in lines.into_iter().enumerate() {
        l.append("big", line);
        if i % 10_000 == 0 {
            // Checked while lines are still arriving, not only at the end.
            assert!(disk_bytes(&stream) <= cfg.max_bytes_per_app);
        }
    }
    let appended = started.elapsed();
    tokio::time::timeout(HANG, l.flush()).await.expect("flush");
    let stored = started.elapsed();
    let on_disk = disk_bytes(&stream);
    let segments = store::list_segments(&stream).expect("list").len();
    println!(
        "100k lines: append {:.0} lines/s (caller side), written {:.0} lines/s; \
         {written} bytes produced, {on_disk} bytes on disk in {segments} segments, cap {}",
        n as f64 / appended.as_secs_f64(),
        n as f64 / stored.as_secs_f64(),
        cfg.max_bytes_per_app
    );
    assert!(written > 4 * cfg.max_bytes_per_app, "the test must rotate");
    assert!(
        on_disk <= cfg.max_bytes_per_app,
        "{on_disk} bytes on disk, cap {}",
        cfg.max_bytes_per_app
    );
    assert!(
        on_disk > cfg.max_bytes_per_app / 2,
        "rotation keeps most of the cap: {on_disk}"
    );
    let last = l.query("big", &filter(3)).await.expect("query");
    assert_eq!(
        texts(&last),
        [
            "request 099997 handled; padding to look like a real log line",
            "request 099998 handled; padding to look like a real log line",
            "request 099999 handled; padding to look like a real log line",
        ]
    );
    // The oldest lines are gone, the kept ones are contiguous up to the newest.
    let t = Instant::now();
    let all = l
        .query("big", &filter(query::MAX_TAIL))
        .await
        .expect("query");
    println!("query of all {} kept lines: {:?}", all.len(), t.elapsed());
    assert!(all.len() < n && all.len() > 1000, "{}", all.len());
    let first: usize = all[0].line[8..14].parse().expect("number");
    for (k, line) in all.iter().enumerate() {
        assert_eq!(
            line.line,
            format!(
                "request {:06} handled; padding to look like a real log line",
                first + k
            )
        );
    }
}

#[tokio::test]
async fn filters_pick_lines_by_process_source_release_and_time() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = logs(tmp.path(), LogConfig::default());
    let old = timestamp(SystemTime::now() - Duration::from_secs(3 * 3600));
    l.append(
        "shop",
        LogLine {
            ts: old,
            ..app_line("web.1", Some(11), "old web line")
        },
    );
    l.append("shop", app_line("web.1", Some(12), "web one"));
    l.append("shop", app_line("web.2", Some(12), "web two"));
    l.append("shop", app_line("worker.1", Some(12), "worker"));
    l.append(
        "shop",
        LogLine {
            source: LogSource::Router,
            process: ROUTER_PROCESS.into(),
            ..app_line("", Some(12), "GET /")
        },
    );
    l.platform("shop", Some(12), "Scaled to web=2 worker=1");
    l.append(
        "shop",
        LogLine {
            source: LogSource::Build,
            process: BUILD_PROCESS.into(),
            ..app_line("", None, "-----> Building")
        },
    );
    l.append("other", app_line("web.1", Some(1), "another app"));

    let q = |f: LogFilter| {
        let l = l.clone();
        async move {
            let lines = l.query("shop", &f).await.expect("query");
            lines.iter().map(|x| x.line.clone()).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        q(LogFilter::default()).await,
        [
            "old web line",
            "web one",
            "web two",
            "worker",
            "GET /",
            "Scaled to web=2 worker=1",
            "-----> Building"
        ]
    );
    assert_eq!(
        q(filter(2)).await,
        ["Scaled to web=2 worker=1", "-----> Building"]
    );
    assert_eq!(
        q(LogFilter {
            ps: Some("web".into()),
            ..LogFilter::default()
        })
        .await,
        ["old web line", "web one", "web two"]
    );
    assert_eq!(
        q(LogFilter {
            ps: Some("web.2".into()),
            ..LogFilter::default()
        })
        .await,
        ["web two"]
    );
    assert_eq!(
        q(LogFilter {
            source: Some(LogSource::Router),
            ..LogFilter::default()
        })
        .await,
        ["GET /"]
    );
    assert_eq!(
        q(LogFilter {
            source: Some(LogSource::Platform),
            ..LogFilter::default()
        })
        .await,
        ["Scaled to web=2 worker=1"]
    );
    assert_eq!(
        q(LogFilter {
            release: Some(11),
            ..LogFilter::default()
        })
        .await,
        ["old web line"]
    );
    let since = query::parse_since("2h", SystemTime::now()).expect("since");
    assert_eq!(
        q(LogFilter {
            since: Some(since),
            ps: Some("web".into()),
            ..LogFilter::default()
        })
        .await,
        ["web one", "web two"]
    );
    assert_eq!(
        q(LogFilter {
            tail: 1,
            ps: Some("web".into()),
            release: Some(12),
            ..LogFilter::default()
        })
        .await,
        ["web two"]
    );
    assert!(q(filter(0)).await.is_empty());
    assert!(l
        .query("nobody", &LogFilter::default())
        .await
        .expect("query")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_follower_is_told_what_it_missed_and_blocks_nobody() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = LogConfig {
        follow_buffer: 2048,
        ..LogConfig::default()
    };
    let l = logs(tmp.path(), cfg);
    let mut slow = l.follow("api", filter(0));
    let mut fast = l.follow("api", filter(0));
    // Both subscribed before the first line.
    l.flush().await;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(ev) = next(&mut fast).await {
            match ev {
                LogEvent::Line(line) => {
                    lines.push(line.line);
                    let _ = seen_tx.send(lines.len());
                }
                LogEvent::Dropped { count } => panic!("the fast follower lost {count} lines"),
            }
        }
        lines
    });
    let total = 5000;
    for chunk in 0..5 {
        for i in 0..1000 {
            l.append(
                "api",
                app_line("web.1", None, &format!("line {}", chunk * 1000 + i)),
            );
        }
        // The fast follower keeps up chunk by chunk; the slow one reads nothing.
        loop {
            let n = tokio::time::timeout(HANG, seen_rx.recv())
                .await
                .expect("fast follower stalled")
                .expect("reader alive");
            if n == (chunk + 1) * 1000 {
                break;
            }
        }
    }
    // The writer was never held up by the slow follower: it flushes and queries normally.
    tokio::time::timeout(HANG, l.flush()).await.expect("flush");
    assert_eq!(
        l.query("api", &filter(total)).await.expect("query").len(),
        total
    );

    let mut dropped = 0;
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("line 4999") {
        match next(&mut slow).await.expect("slow follower ended early") {
            LogEvent::Dropped { count } => dropped += count,
            LogEvent::Line(line) => got.push(line.line),
        }
    }
    assert_eq!(dropped, (total - 2048) as u64, "dropped count");
    assert_eq!(got.len(), 2048);
    assert_eq!(got[0], format!("line {}", total - 2048));

    l.remove_app("api").await;
    assert_eq!(next(&mut slow).await, None, "removal ends followers");
    let lines = tokio::time::timeout(HANG, reader)
        .await
        .expect("reader ended")
        .expect("reader");
    assert_eq!(lines.len(), total);
    assert!(!tmp.path().join("api").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_gets_history_then_new_lines_once_each_and_quickly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = logs(tmp.path(), LogConfig::default());
    for i in 1..=5 {
        l.append("web", app_line("web.1", Some(2), &format!("old {i}")));
    }
    let mut f = l.follow(
        "web",
        LogFilter {
            tail: 3,
            ps: Some("web".into()),
            ..LogFilter::default()
        },
    );
    l.append(
        "web",
        app_line("worker.1", Some(2), "not for this follower"),
    );
    l.append("web", app_line("web.2", Some(2), "new 1"));
    let mut got = Vec::new();
    for _ in 0..4 {
        match next(&mut f).await {
            Some(LogEvent::Line(line)) => got.push(line.line),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, ["old 3", "old 4", "old 5", "new 1"]);

    // Latency: from append to the follower, measured (printed, not asserted).
    let mut samples = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        l.append("web", app_line("web.1", Some(2), &format!("ping {i}")));
        match next(&mut f).await {
            Some(LogEvent::Line(line)) => assert_eq!(line.line, format!("ping {i}")),
            other => panic!("unexpected {other:?}"),
        }
        samples.push(t.elapsed());
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    samples.sort();
    println!(
        "follow latency over {} lines: median {:?}, p99 {:?}, max {:?}",
        samples.len(),
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
        samples[samples.len() - 1]
    );

    l.close_followers();
    assert_eq!(next(&mut f).await, None, "stopping ends followers");
    let mut late = l.follow("web", filter(1));
    assert_eq!(
        next(&mut late).await,
        None,
        "no new followers once stopping"
    );
}

#[tokio::test]
async fn a_new_logs_on_the_same_dir_finds_the_old_lines() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = logs(tmp.path(), LogConfig::default());
    l.platform("keep", Some(1), "Release v1 created");
    l.append("keep", app_line("web.1", Some(1), "before restart"));
    l.flush().await;
    drop(l);
    // Build logs next to the stream are left alone.
    std::fs::write(tmp.path().join("keep").join("deploy-1.log"), "build\n").expect("write");

    let l = logs(tmp.path(), LogConfig::default());
    l.append("keep", app_line("web.1", Some(2), "after restart"));
    let lines = l.query("keep", &LogFilter::default()).await.expect("query");
    assert_eq!(
        texts(&lines),
        ["Release v1 created", "before restart", "after restart"]
    );
    assert_eq!(lines[0].source, LogSource::Platform);
    assert_eq!(lines[0].process, "paasd");
    assert_eq!(lines[0].release, Some(1));
    assert!(tmp.path().join("keep").join("deploy-1.log").exists());
    for set in store::Set::ALL {
        let segments = store::list_segments(&tmp.path().join("keep").join(set.dir_name()));
        assert_eq!(
            segments.expect("list").len(),
            1,
            "{set:?}: the segment is continued"
        );
    }
}

#[tokio::test]
async fn appends_beyond_a_full_queue_are_counted_and_reported() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = LogConfig {
        queue_lines: 10,
        ..LogConfig::default()
    };
    let l = logs(tmp.path(), cfg);
    let (release, paused) = std::sync::mpsc::channel::<()>();
    l.inner
        .tx
        .send(writer::Cmd::Pause(paused))
        .expect("pause the writer");
    let t = Instant::now();
    for i in 0..25 {
        l.append("busy", app_line("web.1", None, &format!("line {i}")));
    }
    println!("25 appends against a stuck writer took {:?}", t.elapsed());
    // Stuck for longer than a batch may last (as on a loaded machine): the lines and the
    // flush then arrive in a later batch than the pause, and the drop note must still be in.
    std::thread::sleep(writer::BATCH_TIME + Duration::from_millis(30));
    drop(release);
    l.flush().await;
    let lines = l.query("busy", &LogFilter::default()).await.expect("query");
    let shown = texts(&lines);
    assert_eq!(shown.len(), 11, "{shown:?}");
    assert_eq!(
        shown[..10],
        (0..10).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        shown[10],
        "15 log lines were dropped: they came faster than they could be written"
    );
    assert_eq!(lines[10].source, LogSource::Platform);
}

#[tokio::test]
async fn the_queue_s_drop_note_comes_at_most_every_10_s_unless_a_reader_asks() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = logs(
        tmp.path(),
        LogConfig {
            queue_lines: 10,
            ..LogConfig::default()
        },
    );
    let notes = || {
        let dir = tmp.path().join("busy").join(store::PLATFORM_DIR);
        store::list_segments(&dir)
            .expect("list")
            .iter()
            .map(|s| store::read_segment(&dir, s.0, None).expect("read"))
            .map(|b| String::from_utf8_lossy(&b).matches("were dropped").count())
            .sum::<usize>()
    };
    let overflow = |l: &Logs| {
        let (release, paused) = std::sync::mpsc::channel::<()>();
        l.inner
            .tx
            .send(writer::Cmd::Pause(paused))
            .expect("pause the writer");
        for i in 0..25 {
            l.append("busy", app_line("web.1", None, &format!("line {i}")));
        }
        drop(release);
    };
    overflow(&l);
    // The writer's own batches note the first overflow.
    let deadline = Instant::now() + HANG;
    while notes() == 0 {
        assert!(Instant::now() < deadline, "no note");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    overflow(&l);
    tokio::time::sleep(writer::BATCH_TIME * 4).await;
    assert_eq!(notes(), 1, "a second note within 10 s waits");
    // A reader gets it at once.
    let lines = l.query("busy", &filter(1000)).await.expect("query");
    let said: Vec<&str> = texts(&lines)
        .into_iter()
        .filter(|t| t.contains("dropped"))
        .collect();
    assert_eq!(
        said,
        [
            "15 log lines were dropped: they came faster than they could be written",
            "15 log lines were dropped: they came faster than they could be written"
        ]
    );
}

#[tokio::test]
async fn lines_are_cut_and_timestamps_made_canonical() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = logs(tmp.path(), LogConfig::default());
    l.append(
        "odd",
        LogLine {
            ts: "2026-11-23T10:00:00Z".into(),
            line: "é".repeat(MAX_LINE_BYTES),
            ..app_line("web.1", None, "")
        },
    );
    l.append(
        "odd",
        LogLine {
            ts: "not a time".into(),
            ..app_line("web.1", None, "x")
        },
    );
    // Not an app name: ignored, nothing written outside the logs dir.
    l.append("../escape", app_line("web.1", None, "no"));
    let lines = l.query("odd", &LogFilter::default()).await.expect("query");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].ts, "2026-11-23T10:00:00.000Z");
    assert!(lines[0].line.len() < MAX_LINE_BYTES + 64);
    assert!(lines[0].line.ends_with(&format!(
        " [line cut: {} more bytes]",
        2 * MAX_LINE_BYTES - MAX_LINE_BYTES
    )));
    assert!(is_canonical(&lines[1].ts), "{}", lines[1].ts);
    assert!(!tmp.path().parent().expect("parent").join("escape").exists());
}

#[test]
fn access_lines_read_like_heroku_router_lines() {
    let line = access_line(&Access {
        method: "GET",
        path: "/a\"b\n",
        status: 200,
        bytes: 512,
        duration: Duration::from_micros(3_240),
        instance: Some("web.1"),
    });
    assert_eq!(
        line,
        "method=GET path=\"/a%22b%0A\" status=200 bytes=512 duration=3.2ms instance=web.1"
    );
    let line = access_line(&Access {
        method: "POST",
        path: "/",
        status: 503,
        bytes: 0,
        duration: Duration::from_millis(1500),
        instance: None,
    });
    assert!(line.ends_with("duration=1500ms instance=none"), "{line}");
}

#[test]
fn config_limits_are_made_consistent() {
    let l = LogConfig::default().limits();
    assert_eq!(
        (l.stream.max_bytes, l.stream.segment_bytes),
        (32 << 20, 4 << 20)
    );
    assert_eq!(
        (l.platform.max_bytes, l.platform.segment_bytes),
        (8 << 20, 2 << 20)
    );
    let tiny = LogConfig {
        max_bytes_per_app: 1,
        platform_bytes_per_app: 1,
        segment_bytes: 1,
        ..LogConfig::default()
    }
    .limits();
    for l in [tiny.stream, tiny.platform] {
        assert_eq!((l.max_bytes, l.segment_bytes), (1 << 20, 256 << 10));
    }
    let big_segment = LogConfig {
        max_bytes_per_app: 8 << 20,
        segment_bytes: 64 << 20,
        ..LogConfig::default()
    }
    .limits();
    assert_eq!(big_segment.stream.segment_bytes, 2 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_flood_never_rotates_platform_and_build_lines_away() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = LogConfig {
        max_bytes_per_app: 1 << 20,
        platform_bytes_per_app: 1 << 20,
        segment_bytes: 256 << 10,
        queue_lines: 100_000,
        ..LogConfig::default()
    };
    let l = logs(tmp.path(), cfg);
    let before = timestamp(SystemTime::now() - Duration::from_secs(7200));
    let platform = |text: &str| LogLine {
        ts: before.clone(),
        source: LogSource::Platform,
        process: PLATFORM_PROCESS.into(),
        ..app_line("", None, text)
    };
    l.append("loud", platform("Deploy 1 started by root"));
    l.append(
        "loud",
        LogLine {
            source: LogSource::Build,
            process: BUILD_PROCESS.into(),
            ..platform("-----> Procfile app detected")
        },
    );
    l.append("loud", platform("Release v2 created by root (deploy 1)"));
    // 4 MiB of app output through a 1 MiB stream, and a platform line among the last of it.
    let text = "x".repeat(100);
    for i in 0..30_000 {
        l.append(
            "loud",
            app_line("web.1", Some(2), &format!("{i:05} {text}")),
        );
        if i == 29_000 {
            l.platform("loud", Some(2), "web.1 crashed in the middle");
        }
    }
    l.flush().await;
    let stream = tmp.path().join("loud").join(store::STREAM_DIR);
    assert!(disk_bytes(&stream) <= 1 << 20);
    let all = l
        .query("loud", &filter(query::MAX_TAIL))
        .await
        .expect("query");
    let shown = texts(&all);
    assert!(!shown.iter().any(|t| t.starts_with("00000 ")), "rotated");
    assert_eq!(
        shown[..3],
        [
            "Deploy 1 started by root",
            "-----> Procfile app detected",
            "Release v2 created by root (deploy 1)"
        ]
    );
    // In the order they were written, though most share their millisecond: the crash line
    // sits between the app lines appended before and after it.
    let crash = shown
        .iter()
        .position(|t| *t == "web.1 crashed in the middle")
        .expect("the crash line");
    assert!(
        shown[crash - 1].starts_with("29000 "),
        "{}",
        shown[crash - 1]
    );
    assert!(
        shown[crash + 1].starts_with("29001 "),
        "{}",
        shown[crash + 1]
    );
    // A tail of 2 is the newest 2 of both sets together.
    let last = l.query("loud", &filter(2)).await.expect("query");
    assert!(texts(&last)[1].starts_with("29999 "), "{last:?}");
    // A source filter reads only what it needs, and finds the platform lines.
    let platform = l
        .query(
            "loud",
            &LogFilter {
                source: Some(LogSource::Platform),
                ..LogFilter::default()
            },
        )
        .await
        .expect("query");
    assert_eq!(platform.len(), 3, "{platform:?}");
    // A follower's history merges the same way.
    let mut f = l.follow("loud", filter(3));
    let mut got = Vec::new();
    for _ in 0..3 {
        match next(&mut f).await {
            Some(LogEvent::Line(line)) => got.push(line.line),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got[2].starts_with("29999 "), "{got:?}");
}
