//! Pure validation of user-supplied names: app names, config var keys and values, domains,
//! process types, stacks. Each check returns the message a person sees; no I/O here.

const MAX_ENV_VALUE: usize = 32 * 1024;

/// `[a-z][a-z0-9-]{0,29}`, not ending in a dash: a DNS label, so `<app>.<base-domain>` works.
pub fn app_name(name: &str) -> Result<(), String> {
    let ok = (1..=30).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid app name '{}': use 1 to 30 lowercase letters, digits and dashes, \
             starting with a letter and not ending with a dash (e.g. 'my-app')",
            printable(name)
        ))
    }
}

/// POSIX-style environment names: `[A-Za-z_][A-Za-z0-9_]*`, at most 255 bytes.
pub fn env_key(key: &str) -> Result<(), String> {
    let ok = (1..=255).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid config var name '{}': use letters, digits and underscores, \
             not starting with a digit (e.g. DATABASE_URL)",
            printable(key)
        ))
    }
}

pub fn env_value(key: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!("config var {key}: values cannot contain NUL bytes"));
    }
    if value.len() > MAX_ENV_VALUE {
        return Err(format!(
            "config var {key}: value is {} bytes, the limit is {MAX_ENV_VALUE}",
            value.len()
        ));
    }
    Ok(())
}

/// A fully-qualified host name, or a wildcard one label deep (`*.example.com`: every
/// subdomain without a route of its own); returns it normalised (lowercase, no trailing dot).
pub fn domain(input: &str) -> Result<String, String> {
    if let Some(parent) = input.strip_prefix("*.") {
        return host_name(parent)
            .map(|p| format!("*.{p}"))
            .map_err(|e| e.replace(parent, input));
    }
    host_name(input)
}

fn host_name(input: &str) -> Result<String, String> {
    let err = |why: &str| {
        Err(format!(
            "invalid domain '{}': {why} (e.g. www.example.com)",
            printable(input)
        ))
    };
    if input.chars().any(char::is_whitespace) {
        return err("it contains a space");
    }
    let d = input
        .strip_suffix('.')
        .unwrap_or(input)
        .to_ascii_lowercase();
    if d.is_empty() || d.len() > 253 {
        return err("a domain has 1 to 253 characters");
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return err("it needs at least two labels");
    }
    for l in &labels {
        let ok = (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return err("each label is 1 to 63 letters, digits or dashes, not starting or ending with a dash");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return err("IP addresses are not domains");
    }
    Ok(d)
}

/// Procfile process type names: `[A-Za-z0-9_-]{1,30}`.
pub fn process_type(name: &str) -> Result<(), String> {
    let ok = (1..=30).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid process type '{}': use 1 to 30 letters, digits, dashes or underscores (e.g. web, worker)",
            printable(name)
        ))
    }
}

/// `name` must be one of `known` (the built-in `host` plus the configured ones).
pub fn stack(name: &str, known: &[String]) -> Result<(), String> {
    if known.iter().any(|k| k == name) {
        Ok(())
    } else {
        Err(format!(
            "unknown stack '{}' (available: {})",
            printable(name),
            known.join(", ")
        ))
    }
}

/// A buildpack reference: a built-in name, a path or a git URL. Its existence is checked at build time.
pub fn buildpack(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 1024 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "invalid buildpack '{}': give a built-in name, a directory or a git URL without spaces",
            printable(s)
        ));
    }
    Ok(())
}

/// Echoing user input in messages: cap the length and escape control characters.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_default).collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for ok in ["a", "my-app", "app1", "a-b-c", &"a".repeat(30)] {
            assert!(app_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "MyApp",
            "1app",
            "-app",
            "app-",
            "..",
            "a.b",
            "a_b",
            "a b",
            &"a".repeat(31),
            &"a".repeat(64),
            "ünï",
        ] {
            assert!(app_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_keys() {
        for ok in ["A", "_X", "DATABASE_URL", "a1"] {
            assert!(env_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1ABC", "A=B", "A-B", "A B", "É"] {
            assert!(env_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains() {
        assert_eq!(domain("WWW.Example.com.").as_deref(), Ok("www.example.com"));
        assert_eq!(domain("*.Example.com").as_deref(), Ok("*.example.com"));
        assert!(domain("*.com").is_err(), "a wildcard over a TLD");
        assert!(domain("a.*.com").is_err());
        assert!(domain("**.a.com").is_err());
        assert!(domain("a.b").is_ok());
        for bad in [
            "",
            "localhost",
            "-a.com",
            "a-.com",
            "a..com",
            "a b.com",
            "a_b.com",
            "1.2.3.4",
            "http://a.com",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_space_is_named_as_such() {
        for bad in ["my domain", "exa mple.com", "a.com ", "a\tb.com"] {
            let m = domain(bad).expect_err(bad);
            assert!(m.contains("contains a space"), "{bad}: {m}");
        }
    }

    #[test]
    fn messages_escape_input() {
        let m = app_name("a\nb").expect_err("invalid");
        assert!(m.contains("a\\nb"), "{m}");
    }
}
