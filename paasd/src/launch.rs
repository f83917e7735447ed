//! How an app process is launched, the same for instances, one-offs and release phases: its
//! environment (config vars over the platform's defaults) and its argv (`bash -c` with
//! `.profile.d` sourced, as Heroku does). Pure functions; must not start anything.

use std::collections::BTreeMap;

/// The environment every app process gets: config vars over the platform's defaults, with
/// `PORT`, `DYNO` and `PS` always the platform's (the router relies on `PORT`).
pub fn process_env(config: &BTreeMap<String, String>, dyno: &str) -> Vec<(String, String)> {
    let ps = dyno.split('.').next().unwrap_or(dyno);
    let mut env: BTreeMap<String, String> = [
        ("PATH", "/app/bin:/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/app"),
        ("LANG", "C.UTF-8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(config.clone());
    for (k, v) in [("PORT", "5000"), ("DYNO", dyno), ("PS", ps)] {
        env.insert(k.to_string(), v.to_string());
    }
    env.into_iter().collect()
}

/// `bash -c` of a Procfile-style command with the slug's `.profile.d/*.sh` sourced first,
/// as Heroku does.
/// Who an app's processes run as: its own uid, and the group of the same number.
/// One of an app's volumes as the runtime binds it: read-write, at its path.
pub fn volume_bind(host: std::path::PathBuf, path: String) -> paas_runtime::proto::Bind {
    paas_runtime::proto::Bind {
        source: host,
        dest: path,
        writable: true,
    }
}

pub fn user(uid: u32) -> paas_runtime::User {
    paas_runtime::User { uid, gid: uid }
}

pub fn launch_argv(command: &str) -> Vec<String> {
    vec![
        "bash".into(),
        "-c".into(),
        format!(
            "for f in /app/.profile.d/*.sh; do [ -f \"$f\" ] && . \"$f\"; done; unset f\n{command}"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_variables_win_over_config() {
        let config: BTreeMap<String, String> = [("PORT", "80"), ("HOME", "/x"), ("A", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env: BTreeMap<_, _> = process_env(&config, "web.2").into_iter().collect();
        assert_eq!(env["PORT"], "5000");
        assert_eq!(env["DYNO"], "web.2");
        assert_eq!(env["PS"], "web");
        assert_eq!(env["HOME"], "/x", "config may move HOME");
        assert_eq!(env["A"], "1");
    }

    #[test]
    fn the_command_runs_after_profile_d() {
        let argv = launch_argv("node server.js");
        assert_eq!(argv[..2], ["bash", "-c"]);
        assert!(argv[2].starts_with("for f in /app/.profile.d/*.sh"));
        assert!(argv[2].ends_with("\nnode server.js"));
    }
}
