//! `GET /apps/{app}/logs`: decodes the query string into a `LogFilter` (400 saying what to
//! type for a bad value) and answers NDJSON `LogEvent`s: the matching lines, or with
//! `follow` the last lines and then new ones until the client goes away (noticed at once, so
//! no follower outlives its client). Must not filter or read logs itself: `logs` does.

use std::time::SystemTime;

use hyper::Response;
use paas_api::LogEvent;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::routes::{ndjson, Body};
use super::State;
use crate::logs::{query, FilterError, LogFilter};

/// Events buffered between a follower and the connection. Beyond this the follower itself
/// falls behind and reports the lines it missed.
const BUFFER: usize = 256;

pub async fn get(
    state: &State,
    app: String,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (filter, follow) = params(query, SystemTime::now())?;
    // 404 for an app that does not exist (its stream would just be empty).
    state.apps.info(app.clone()).await?;
    let (tx, rx) = mpsc::channel::<LogEvent>(BUFFER);
    if follow {
        let mut follower = state.logs.follow(&app, filter);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => break,
                    ev = follower.next() => match ev {
                        Some(ev) => {
                            if tx.send(ev).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
    } else {
        let lines = state
            .logs
            .query(&app, &filter)
            .await
            .map_err(|e| ApiError::internal("reading an app's logs failed", &e))?;
        tokio::spawn(async move {
            for line in lines {
                if tx.send(LogEvent::Line(line)).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(ndjson(rx))
}

/// `tail`, `since`, `release`, `ps`, `source`, `follow`; anything else is refused.
fn params(query: Option<&str>, now: SystemTime) -> Result<(LogFilter, bool), ApiError> {
    let bad = |e: FilterError| ApiError::bad_request("invalid_log_filter", e.to_string());
    let mut filter = LogFilter::default();
    let mut follow = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_log_filter",
                format!("{key}: '{raw}' is not percent-encoded properly"),
            )
        })?;
        match key {
            "tail" => filter.tail = query::parse_tail(&value).map_err(bad)?,
            "since" => filter.since = Some(query::parse_since(&value, now).map_err(bad)?),
            "release" => filter.release = Some(query::parse_release(&value).map_err(bad)?),
            "ps" => filter.ps = Some(query::parse_ps(&value).map_err(bad)?),
            "source" => filter.source = Some(query::parse_source(&value).map_err(bad)?),
            "follow" => {
                follow = match value.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid_log_filter",
                            format!("follow: '{value}' is not true or false"),
                        ))
                    }
                }
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_log_filter",
                    format!(
                        "unknown parameter '{}': use tail, since, release, ps, source or follow",
                        other.escape_debug()
                    ),
                ))
            }
        }
    }
    Ok((filter, follow))
}

/// `%XX` escapes (a `+` stays a plus: RFC 3339 offsets have them).
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use paas_api::LogSource;

    fn message(q: &str) -> String {
        match params(Some(q), SystemTime::now()) {
            Ok(_) => panic!("{q} accepted"),
            Err(e) => {
                assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST, "{q}");
                e.message
            }
        }
    }

    #[test]
    fn every_parameter() {
        let now = humantime::parse_rfc3339("2026-11-23T12:00:00Z").expect("time");
        let (f, follow) = params(
            Some("tail=5&since=2h&release=v12&ps=web&source=router&follow=true"),
            now,
        )
        .expect("valid");
        assert!(follow);
        assert_eq!(
            f,
            LogFilter {
                tail: 5,
                since: Some(humantime::parse_rfc3339("2026-11-23T10:00:00Z").expect("time")),
                release: Some(12),
                ps: Some("web".into()),
                source: Some(LogSource::Router),
            }
        );
        let (f, follow) = params(None, now).expect("valid");
        assert_eq!((f, follow), (LogFilter::default(), false));
        let (f, follow) =
            params(Some("follow&since=2026-11-23T11%3A00%3A00%2B01%3A00"), now).expect("valid");
        assert!(follow);
        assert_eq!(
            f.since,
            Some(humantime::parse_rfc3339("2026-11-23T10:00:00Z").expect("time"))
        );
    }

    #[test]
    fn mistakes_say_what_to_type() {
        assert!(message("since=yesterday").contains("give a duration like 2h"));
        assert!(message("tail=lots").contains("whole number"));
        assert!(message("release=x").contains("like v12"));
        assert!(message("source=stdout").contains("app, router, build, platform or cron"));
        assert!(message("ps=a/b").contains("process type like web"));
        assert!(message("follow=maybe").contains("true or false"));
        assert!(message("lines=5").contains("unknown parameter 'lines'"));
        assert!(message("since=%zz").contains("percent-encoded"));
    }
}
