//! What a config listing hides unless revealed: whole values of keys that look secret, and
//! the secret parts of URL-shaped values whatever their key (`DATABASE_URL=postgres://u:PASS@
//! host/db` shows as `postgres://u:[REDACTED]@host/db`). Pure: text in, text out. Must not
//! decide who may see what (the caller passes `reveal`) and must never hide less than it
//! did: a value it cannot read as a URL stays as it is only if it holds no `://` password.

use std::ops::Range;

use paas_api::REDACTED;

/// Words in a key that make its whole value a secret (`DB_PASSWORD`, `api_token`).
const SECRET_WORDS: [&str; 5] = ["PASSWORD", "SECRET", "KEY", "TOKEN", "CREDENTIAL"];

/// A key whose value is hidden in listings unless revealed.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| k.contains(w))
}

/// A URL query parameter whose value is a secret (`password=`, `sslpassword=`, `pwd=`,
/// `access_token=`, `X-Amz-Signature=`).
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    is_secret_key(&n) || ["PASS", "PWD", "SIGNATURE"].iter().any(|w| n.contains(w))
}

/// `value` with the secrets inside its URLs replaced by [`REDACTED`], or `None` when it
/// has none. After every `://` of the value (with or without a valid scheme before it): the password of the userinfo
/// (`user:PASS@`, `:PASS@`; the authority ends at the first `/`, `?`, `#` or space, and the
/// userinfo at its *last* `@`, so an unencoded `@` in a password is still covered and an
/// `@` in a path is not mistaken for one) and the values of secret-named query parameters.
/// A user name alone (`postgres://u@host`) is not a secret.
pub fn url_secrets(value: &str) -> Option<String> {
    let hide = secret_ranges(value);
    if hide.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(value.len());
    let mut at = 0;
    for r in hide {
        out.push_str(&value[at..r.start]);
        out.push_str(REDACTED);
        at = r.end;
    }
    out.push_str(&value[at..]);
    Some(out)
}

/// Byte ranges of `value` to hide, sorted and disjoint. Every delimiter looked for is ASCII,
/// so each range starts and ends on a character boundary.
fn secret_ranges(value: &str) -> Vec<Range<usize>> {
    let b = value.as_bytes();
    let mut found: Vec<Range<usize>> = Vec::new();
    let mut search = 0;
    while let Some(pos) = value[search..].find("://") {
        // Whatever precedes it (a scheme, or something that is not quite one): hiding a
        // password too many is better than showing one. The search goes on right after
        // it, so a URL inside this one (`?next=https://u:p@h`) or right after it
        // (`redis://:a@h1,redis://:b@h2`, whose "://" starts inside this authority) is
        // looked at too.
        search += pos + 3;
        let ends_url = |c: &u8| c.is_ascii_whitespace();
        let auth = search
            ..b[search..]
                .iter()
                .position(|c| matches!(c, b'/' | b'?' | b'#') || ends_url(c))
                .map_or(b.len(), |i| search + i);
        if let Some(at) = b[auth.clone()].iter().rposition(|c| *c == b'@') {
            let userinfo = auth.start..auth.start + at;
            if let Some(colon) = b[userinfo.clone()].iter().position(|c| *c == b':') {
                let password = userinfo.start + colon + 1..userinfo.end;
                if !password.is_empty() {
                    found.push(password);
                }
            }
        }
        let url_end = b[auth.end..]
            .iter()
            .position(ends_url)
            .map_or(b.len(), |i| auth.end + i);
        if let Some(q) = b[auth.end..url_end].iter().position(|c| *c == b'?') {
            let query_start = auth.end + q + 1;
            let query_end = b[query_start..url_end]
                .iter()
                .position(|c| *c == b'#')
                .map_or(url_end, |i| query_start + i);
            let mut p = query_start;
            while p < query_end {
                let end = b[p..query_end]
                    .iter()
                    .position(|c| matches!(c, b'&' | b';'))
                    .map_or(query_end, |i| p + i);
                if let Some(eq) = b[p..end].iter().position(|c| *c == b'=') {
                    let secret = p + eq + 1..end;
                    if !secret.is_empty() && is_secret_param(&value[p..p + eq]) {
                        found.push(secret);
                    }
                }
                p = end + 1;
            }
        }
    }
    found.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(found.len());
    for r in found {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(value: &str) -> String {
        url_secrets(value).unwrap_or_else(|| value.to_string())
    }

    #[test]
    fn passwords_in_the_userinfo_are_hidden() {
        for (value, expect) in [
            (
                "postgres://u:PASS@host/db",
                "postgres://u:[REDACTED]@host/db",
            ),
            ("redis://:PASS@host", "redis://:[REDACTED]@host"),
            (
                "redis://:PASS@host:6379/0",
                "redis://:[REDACTED]@host:6379/0",
            ),
            (
                "amqp://user:pass@rabbit.internal:5672/vhost",
                "amqp://user:[REDACTED]@rabbit.internal:5672/vhost",
            ),
            (
                "postgresql+psycopg2://app:s3cr3t@db/app?sslmode=require",
                "postgresql+psycopg2://app:[REDACTED]@db/app?sslmode=require",
            ),
            (
                "https://x-access-token:ghs_abc@github.com/org/repo.git",
                "https://x-access-token:[REDACTED]@github.com/org/repo.git",
            ),
            ("HTTP://u:p@h#frag", "HTTP://u:[REDACTED]@h#frag"),
            // Only the authority counts: no path, query or fragment needed.
            ("mongodb://u:p@h", "mongodb://u:[REDACTED]@h"),
        ] {
            assert_eq!(shown(value), expect, "{value}");
        }
    }

    #[test]
    fn edge_cases() {
        for (value, expect) in [
            // No password: nothing to hide (a user name is not a secret).
            ("postgres://u@h/db?a=b", "postgres://u@h/db?a=b"),
            ("postgres://u:@host/db", "postgres://u:@host/db"),
            ("postgres://host/db", "postgres://host/db"),
            // '@' in the path, query or fragment is not a userinfo.
            (
                "https://example.com/users/@alice",
                "https://example.com/users/@alice",
            ),
            ("https://example.com/a:b@c", "https://example.com/a:b@c"),
            ("https://h?u=a:b@c", "https://h?u=a:b@c"),
            ("https://h#a:b@c", "https://h#a:b@c"),
            // An unencoded '@' in the password: the last '@' ends the userinfo.
            (
                "postgres://u:p@ss@host/db",
                "postgres://u:[REDACTED]@host/db",
            ),
            // IPv6 hosts, with and without a userinfo.
            (
                "postgres://u:pw@[::1]:5432/db",
                "postgres://u:[REDACTED]@[::1]:5432/db",
            ),
            (
                "postgres://[2001:db8::1]:5432/db",
                "postgres://[2001:db8::1]:5432/db",
            ),
            (
                "redis://:pw@[fe80::1%25eth0]:6379",
                "redis://:[REDACTED]@[fe80::1%25eth0]:6379",
            ),
            // Percent-encoded user and password.
            (
                "postgres://u%40corp:p%40ss%3Aw%2F@host/db",
                "postgres://u%40corp:[REDACTED]@host/db",
            ),
            // Not ASCII.
            ("postgres://u:pässwörd@h/db", "postgres://u:[REDACTED]@h/db"),
            ("postgres://ü:p@h/db", "postgres://ü:[REDACTED]@h/db"),
            // Several URLs in one value, and text around them.
            (
                "redis://:a@h1,redis://:b@h2",
                "redis://:[REDACTED]@h1,redis://:[REDACTED]@h2",
            ),
            (
                "primary postgres://u:a@h1/db replica postgres://u:b@h2/db",
                "primary postgres://u:[REDACTED]@h1/db replica postgres://u:[REDACTED]@h2/db",
            ),
            // Not URLs, or barely: a password-shaped userinfo after `://` is hidden anyway.
            ("user@example.com", "user@example.com"),
            ("mailto:u:p@h", "mailto:u:p@h"),
            ("://u:p@h", "://u:[REDACTED]@h"),
            ("1a://u:p@h", "1a://u:[REDACTED]@h"),
            ("a://", "a://"),
            ("hello world", "hello world"),
            ("", ""),
        ] {
            assert_eq!(shown(value), expect, "{value}");
        }
    }

    #[test]
    fn secret_query_parameters_are_hidden() {
        for (value, expect) in [
            (
                "jdbc:postgresql://db/app?user=u&password=secret&ssl=true",
                "jdbc:postgresql://db/app?user=u&password=[REDACTED]&ssl=true",
            ),
            (
                "mysql://db/app?sslpassword=x;pwd=y#pass=z",
                "mysql://db/app?sslpassword=[REDACTED];pwd=[REDACTED]#pass=z",
            ),
            (
                "https://s3/b/k?X-Amz-Signature=abc&X-Amz-Date=1",
                "https://s3/b/k?X-Amz-Signature=[REDACTED]&X-Amz-Date=1",
            ),
            (
                "https://api/x?access_token=t&page=2",
                "https://api/x?access_token=[REDACTED]&page=2",
            ),
            ("https://h/?password=", "https://h/?password="),
            ("https://h/?sslmode=require", "https://h/?sslmode=require"),
            // A URL in a parameter of another.
            (
                "https://h/login?next=https://u:p@i/x",
                "https://h/login?next=https://u:[REDACTED]@i/x",
            ),
            (
                "https://u:a@h/?token=https://v:b@i/",
                "https://u:[REDACTED]@h/?token=[REDACTED]",
            ),
        ] {
            assert_eq!(shown(value), expect, "{value}");
        }
        assert_eq!(url_secrets("https://h/?a=b"), None);
    }

    #[test]
    fn secret_keys() {
        for k in [
            "DB_PASSWORD",
            "api_key",
            "api_token",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS",
            "SECRET_KEY_BASE",
            "CREDENTIALS",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["DATABASE_URL", "PORT", "GREETING"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
