//! The two small text formats that name an app's process types: the app's `Procfile` and the
//! YAML a buildpack's `bin/release` prints. Pure parsing; must not read files or run anything.

use std::collections::BTreeMap;

use crate::apps::validate;

/// Process type -> command.
pub type ProcessTypes = BTreeMap<String, String>;

/// Parses a Procfile (`name: command` per line; blank lines and `#` comments skipped).
/// Errors name the line, since the user has to fix it.
pub fn parse_procfile(text: &str) -> Result<ProcessTypes, String> {
    let mut out = ProcessTypes::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, command)) = line.split_once(':') else {
            return Err(format!(
                "Procfile line {n}: expected 'name: command', got '{line}'"
            ));
        };
        let (name, command) = (name.trim(), command.trim());
        validate::process_type(name).map_err(|e| format!("Procfile line {n}: {e}"))?;
        if command.is_empty() {
            return Err(format!(
                "Procfile line {n}: process type '{name}' has no command"
            ));
        }
        if out.insert(name.to_string(), command.to_string()).is_some() {
            return Err(format!(
                "Procfile line {n}: process type '{name}' is defined twice"
            ));
        }
    }
    Ok(out)
}

/// Reads `default_process_types` from `bin/release` output. Only the shape buildpacks print
/// is understood: a `default_process_types:` key with `name: command` lines indented under
/// it (or `default_process_types: {}`); other top-level keys (`addons`, `config_vars`) are
/// skipped. Commands may be quoted.
pub fn parse_release_yaml(text: &str) -> Result<ProcessTypes, String> {
    let mut out = ProcessTypes::new();
    let mut inside = false;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') || line.trim() == "---" {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if !indented {
            let key = line.split(':').next().unwrap_or("").trim();
            inside = key == "default_process_types";
            continue;
        }
        if !inside {
            continue;
        }
        let Some((name, command)) = line.trim().split_once(':') else {
            return Err(format!(
                "bin/release: expected 'name: command' under default_process_types, got '{}'",
                line.trim()
            ));
        };
        let name = name.trim();
        validate::process_type(name).map_err(|e| format!("bin/release: {e}"))?;
        out.insert(name.to_string(), unquote(command.trim()));
    }
    Ok(out)
}

fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        let inner = &s[1..s.len() - 1];
        if b[0] == b'"' {
            return inner.replace("\\\"", "\"").replace("\\\\", "\\");
        }
        return inner.replace("''", "'");
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfile_lines() {
        let p = parse_procfile(
            "# comment\nweb: node server.js --port $PORT\n\nworker:  bash -c 'a: b'\nrelease: ./migrate\n",
        )
        .expect("parses");
        assert_eq!(p["web"], "node server.js --port $PORT");
        assert_eq!(p["worker"], "bash -c 'a: b'");
        assert_eq!(p["release"], "./migrate");
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn procfile_errors_name_the_line() {
        assert!(parse_procfile("web node\n")
            .expect_err("must fail")
            .contains("line 1"));
        assert!(parse_procfile("web: a\nweb: b\n")
            .expect_err("must fail")
            .contains("line 2"));
        assert!(parse_procfile("bad name: x\n")
            .expect_err("must fail")
            .contains("line 1"));
        assert!(parse_procfile("web:\n")
            .expect_err("must fail")
            .contains("no command"));
    }

    #[test]
    fn release_yaml() {
        let y = "---\naddons: []\ndefault_process_types:\n  web: npm start\n  worker: \"node w.js\"\nconfig_vars:\n  X: y\n";
        let p = parse_release_yaml(y).expect("parses");
        assert_eq!(p.len(), 2);
        assert_eq!(p["web"], "npm start");
        assert_eq!(p["worker"], "node w.js");
        assert!(parse_release_yaml("--- {}\n").expect("empty").is_empty());
        assert!(parse_release_yaml("default_process_types: {}\n")
            .expect("empty")
            .is_empty());
        assert!(parse_release_yaml("").expect("nothing").is_empty());
    }
}
