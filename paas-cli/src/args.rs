//! Parsing of free-form command arguments (`K=V`, `TYPE=N`) and the local usage error
//! they raise. Owns only the syntax of those arguments; must not judge what the server
//! judges (key names, process types, whether a count is allowed): that is the server's call
//! and its message must reach the user unchanged.

use std::collections::BTreeMap;
use std::fmt;

/// A mistake in how the command was invoked, found before anything was sent. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Splits `K=V` at the first `=`; the value may itself contain `=` and may be empty.
pub fn parse_key_value(arg: &str) -> Result<(String, String), UsageError> {
    match arg.split_once('=') {
        Some(("", _)) => Err(UsageError(format!(
            "invalid argument '{arg}': the name before '=' is empty (expected KEY=VALUE)"
        ))),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(UsageError(format!(
            "invalid argument '{arg}': expected KEY=VALUE"
        ))),
    }
}

/// Parses every `K=V`; a key given twice is refused rather than silently dropping one value.
pub fn parse_key_values(args: &[String]) -> Result<BTreeMap<String, String>, UsageError> {
    let mut out = BTreeMap::new();
    for arg in args {
        let (key, value) = parse_key_value(arg)?;
        if out.insert(key.clone(), value).is_some() {
            return Err(UsageError(format!("{key} is given more than once")));
        }
    }
    Ok(out)
}

/// Splits `TYPE=N`. `N` is parsed as an `i64` only so it can travel as a JSON number;
/// negative values are kept (the server says why they are wrong).
pub fn parse_type_count(arg: &str) -> Result<(String, i64), UsageError> {
    let (kind, count) = match arg.split_once('=') {
        Some(("", _)) => {
            return Err(UsageError(format!(
                "invalid argument '{arg}': the process type before '=' is empty (expected TYPE=N, e.g. web=2)"
            )))
        }
        Some(pair) => pair,
        None => {
            return Err(UsageError(format!(
                "invalid argument '{arg}': expected TYPE=N, e.g. web=2"
            )))
        }
    };
    let count = count.trim().parse::<i64>().map_err(|_| {
        UsageError(format!(
            "invalid argument '{arg}': '{count}' is not a whole number (expected TYPE=N, e.g. web=2)"
        ))
    })?;
    Ok((kind.to_owned(), count))
}

/// Parses every `TYPE=N`; a type given twice is refused.
pub fn parse_type_counts(args: &[String]) -> Result<BTreeMap<String, i64>, UsageError> {
    let mut out = BTreeMap::new();
    for arg in args {
        let (kind, count) = parse_type_count(arg)?;
        if out.insert(kind.clone(), count).is_some() {
            return Err(UsageError(format!("{kind} is given more than once")));
        }
    }
    Ok(out)
}

/// A release version as users write it: `v3`, `V3` or `3`.
pub fn parse_version(arg: &str) -> Result<u32, UsageError> {
    let digits = arg
        .strip_prefix('v')
        .or_else(|| arg.strip_prefix('V'))
        .unwrap_or(arg);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsageError(format!(
            "invalid release '{arg}': expected a version like v3 or 3"
        )));
    }
    digits
        .parse::<u32>()
        .map_err(|_| UsageError(format!("invalid release '{arg}': the number is too large")))
}

/// A limit as `paas resources` takes it: a whole number, or `default` (`None`: back to the
/// default). The number is kept signed so the server's message about its range reaches the
/// user.
pub fn parse_limit(flag: &str, arg: &str) -> Result<Option<i64>, UsageError> {
    if arg.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    arg.trim().parse::<i64>().map(Some).map_err(|_| {
        UsageError(format!(
            "invalid --{flag} '{arg}': expected a whole number or 'default'"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn key_value_splits_at_first_equals() {
        assert_eq!(parse_key_value("A=b"), Ok(kv("A", "b")));
        assert_eq!(
            parse_key_value("DATABASE_URL=postgres://u:p@h/db?x=1&y=2"),
            Ok(kv("DATABASE_URL", "postgres://u:p@h/db?x=1&y=2"))
        );
        assert_eq!(parse_key_value("A==b="), Ok(kv("A", "=b=")));
    }

    #[test]
    fn key_value_allows_empty_value() {
        assert_eq!(parse_key_value("A="), Ok(kv("A", "")));
    }

    #[test]
    fn key_value_rejects_empty_key_and_missing_equals() {
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("=").is_err());
        assert!(parse_key_value("AB").is_err());
        assert!(parse_key_value("").is_err());
    }

    #[test]
    fn key_value_does_not_judge_key_syntax() {
        // The server validates names; its message must reach the user.
        assert_eq!(parse_key_value("1bad-key=x"), Ok(kv("1bad-key", "x")));
        assert_eq!(parse_key_value("lower case=x"), Ok(kv("lower case", "x")));
    }

    #[test]
    fn key_values_refuse_duplicates() {
        let args = vec!["A=1".to_owned(), "B=2".to_owned()];
        let map = parse_key_values(&args).expect("valid");
        assert_eq!(map.len(), 2);
        let dup = vec!["A=1".to_owned(), "A=2".to_owned()];
        assert!(parse_key_values(&dup).is_err());
    }

    #[test]
    fn type_count_parses_numbers() {
        assert_eq!(parse_type_count("web=3"), Ok(("web".to_owned(), 3)));
        assert_eq!(parse_type_count("worker=0"), Ok(("worker".to_owned(), 0)));
    }

    #[test]
    fn type_count_keeps_negative_numbers() {
        assert_eq!(parse_type_count("web=-1"), Ok(("web".to_owned(), -1)));
    }

    #[test]
    fn type_count_rejects_non_numbers() {
        assert!(parse_type_count("web=abc").is_err());
        assert!(parse_type_count("web=").is_err());
        assert!(parse_type_count("web=1.5").is_err());
        assert!(parse_type_count("web").is_err());
        assert!(parse_type_count("=3").is_err());
        assert!(parse_type_count("web=99999999999999999999").is_err());
    }

    #[test]
    fn versions_with_or_without_v() {
        assert_eq!(parse_version("v3"), Ok(3));
        assert_eq!(parse_version("V12"), Ok(12));
        assert_eq!(parse_version("3"), Ok(3));
        assert_eq!(parse_version("007"), Ok(7));
        for bad in [
            "",
            "v",
            "vv3",
            "v-1",
            "-1",
            "+3",
            "3.0",
            "v 3",
            "three",
            "v99999999999",
        ] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_numbers_or_default() {
        assert_eq!(parse_limit("memory", "64"), Ok(Some(64)));
        assert_eq!(parse_limit("memory", "-1"), Ok(Some(-1)));
        assert_eq!(parse_limit("memory", "default"), Ok(None));
        assert_eq!(parse_limit("memory", "Default"), Ok(None));
        for bad in ["", "64MB", "1.5", "lots"] {
            let e = parse_limit("memory", bad).expect_err("refused");
            assert!(e.0.contains("--memory"), "{e}");
        }
    }

    #[test]
    fn type_counts_refuse_duplicates() {
        let dup = vec!["web=1".to_owned(), "web=2".to_owned()];
        assert!(parse_type_counts(&dup).is_err());
        let ok = vec!["web=1".to_owned(), "worker=2".to_owned()];
        assert_eq!(parse_type_counts(&ok).expect("valid").len(), 2);
    }
}
