//! The environment git runs with when paas fetches from a remote nobody vouches for (a
//! buildpack URL in paasd, a submodule URL in the push hook): a fixed PATH, no prompts for
//! credentials, batch-mode ssh and only the usual transports. Shared by both sides so the
//! policy cannot drift; callers clear the environment first and add what is theirs (HOME,
//! GIT_DIR). No process is started here.

/// `(name, value)` pairs to set on a git command after `env_clear()`.
pub const UNTRUSTED_REMOTE: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("LANG", "C"),
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_ASKPASS", "/bin/true"),
    ("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
    ("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh"),
];

#[cfg(test)]
mod tests {
    #[test]
    fn no_prompt_and_only_the_usual_transports() {
        let get = |k: &str| {
            super::UNTRUSTED_REMOTE
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| *v)
        };
        assert_eq!(get("GIT_TERMINAL_PROMPT"), Some("0"));
        assert_eq!(get("GIT_ALLOW_PROTOCOL"), Some("file:git:http:https:ssh"));
        assert!(get("GIT_SSH_COMMAND").is_some_and(|v| v.contains("BatchMode=yes")));
    }
}
