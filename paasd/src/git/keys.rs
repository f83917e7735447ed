//! SSH public keys for `git push`: parsing an OpenSSH `.pub` line, its fingerprint, and the
//! authorized_keys text that pins every key to the git shell. Pure functions; the service
//! in `mod.rs` does the storing and writing.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Key types OpenSSH accepts in authorized_keys (DSA is gone from OpenSSH 9.8).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An RSA-16384 key is about 2.1 KB of blob; anything far larger is not a key.
const MAX_BLOB_BYTES: usize = 8192;

/// Comment that marks the lines paasd writes (lines without it are the admin's and kept).
const MARK: &str = "paas-key:";

/// `restrict` turns off every forwarding, the pty and `~/.ssh/rc`, including kinds OpenSSH
/// adds later; the explicit `no-*` list says the same to anyone reading the file (and to an
/// sshd older than 7.2).
const OPTIONS: &str = "restrict,no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty";

pub const HEADER: &str =
    "# Lines ending in paas-key:NAME are managed by paasd (`paas keys`); other lines are kept.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: String,
    /// Base64, as in the `.pub` file.
    pub blob: String,
    pub fingerprint: String,
}

/// Key names go into the forced command, so they are kept to a shell- and quote-safe set.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid key name '{}': use 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit",
            name.escape_debug()
        ))
    }
}

/// Parses the text of an OpenSSH public key file (`ssh-ed25519 AAAA... comment`).
pub fn parse(text: &str) -> Result<PublicKey, String> {
    if text.contains("PRIVATE KEY") {
        return Err("that is a private key; give the public one (the .pub file) and keep the private key secret".into());
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let line = match lines.as_slice() {
        [one] => *one,
        [] => return Err("the public key is empty; give the contents of a .pub file (e.g. ~/.ssh/id_ed25519.pub)".into()),
        _ => return Err("give exactly one public key (the text has several lines)".into()),
    };
    let mut fields = line.split_whitespace();
    let key_type = fields.next().unwrap_or_default();
    if !KEY_TYPES.contains(&key_type) {
        return Err(format!(
            "'{}' is not an SSH public key type this server accepts ({}); give the line of a .pub file without options in front",
            truncate(key_type),
            KEY_TYPES.join(", ")
        ));
    }
    let blob = fields
        .next()
        .ok_or_else(|| "the key has a type but no key data".to_string())?;
    if blob.len() > MAX_BLOB_BYTES {
        return Err("the key data is too long to be a public key".into());
    }
    let raw = STANDARD
        .decode(blob)
        .map_err(|_| "the key data is not valid base64".to_string())?;
    // The blob starts with the type again, as an SSH string (u32 length, bytes).
    let inner = raw
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| raw.get(4..4 + n));
    if inner != Some(key_type.as_bytes()) {
        return Err(format!(
            "the key data does not match its type '{key_type}' (a damaged or edited key?)"
        ));
    }
    Ok(PublicKey {
        key_type: key_type.to_string(),
        blob: blob.to_string(),
        fingerprint: fingerprint(&raw),
    })
}

/// `SHA256:<base64 without padding>`, as `ssh-keygen -lf` prints it.
pub fn fingerprint(raw_blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(raw_blob))
    )
}

/// One key as paasd writes it: forced to the git shell, no forwarding, no terminal.
pub struct Line<'a> {
    pub name: &'a str,
    pub key_type: &'a str,
    pub blob: &'a str,
}

/// The new authorized_keys text: the admin's own lines of `existing` as they were, then
/// paasd's header and one line per key. `command` is the forced command without the key
/// name (already quoted for a shell, free of `"` and `\`).
pub fn render(existing: &str, command: &str, keys: &[Line<'_>]) -> String {
    let mut out = String::new();
    for l in existing.lines() {
        let ours = l == HEADER
            || l.split_whitespace()
                .last()
                .is_some_and(|c| c.starts_with(MARK));
        if !ours && !l.trim().is_empty() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str(HEADER);
    out.push('\n');
    for k in keys {
        out.push_str(&format!(
            "command=\"{command} {name}\",{OPTIONS} {ty} {blob} {MARK}{name}\n",
            name = k.name,
            ty = k.key_type,
            blob = k.blob,
        ));
    }
    out
}

/// Single-quotes `path` for the shell sshd runs the forced command with; refuses characters
/// that cannot appear inside the authorized_keys `command="..."` option.
pub fn shell_quote(path: &str) -> Result<String, String> {
    if path
        .chars()
        .any(|c| matches!(c, '"' | '\\' | '\'') || c.is_control())
    {
        return Err(format!(
            "path {} cannot go into a forced command (quotes, backslashes or control characters)",
            path.escape_debug()
        ));
    }
    Ok(format!("'{path}'"))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with `ssh-keygen -t ed25519`; its fingerprint from `ssh-keygen -lf`.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIWhMJ/WgwH++hx/nZfv955r74S4+JCYIGm8x07itlu alice@laptop";

    #[test]
    fn parses_a_pub_file_and_fingerprints_like_ssh_keygen() {
        let k = parse(&format!("{ED25519}\n")).expect("valid");
        assert_eq!(k.key_type, "ssh-ed25519");
        assert!(k.blob.starts_with("AAAAC3Nza"));
        assert_eq!(
            k.fingerprint,
            "SHA256:5J9Kw1QH/QVNyklxjEKcGfm8hsfp4ywWVDLZswZJkSA"
        );
    }

    #[test]
    fn refuses_what_is_not_one_public_key() {
        let cases = [
            ("", "empty"),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n",
                "private key",
            ),
            (
                "command=\"sh\" ssh-ed25519 AAAA",
                "not an SSH public key type",
            ),
            ("ssh-ed25519", "no key data"),
            ("ssh-ed25519 !!!notbase64", "not valid base64"),
            // A valid rsa blob labelled ed25519.
            (
                "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7",
                "does not match its type",
            ),
            ("ssh-dss AAAAB3NzaC1kc3M=", "not an SSH public key type"),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let two = format!("{ED25519}\n{ED25519}\n");
        assert!(parse(&two).expect_err("two").contains("exactly one"));
    }

    #[test]
    fn names_are_shell_safe() {
        for ok in ["alice", "alice@laptop", "ci-deploy_2", "a.b"] {
            validate_name(ok).expect(ok);
        }
        for bad in ["", "-x", "a b", "a\"b", "a;rm", "a'b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn render_keeps_foreign_lines_and_replaces_ours() {
        let admin = "ssh-ed25519 AAAAadmin root@box\n";
        let first = render(
            admin,
            "'/usr/bin/paas-git-shell' --socket '/run/paas.sock'",
            &[Line {
                name: "alice",
                key_type: "ssh-ed25519",
                blob: "AAAAx",
            }],
        );
        assert_eq!(
            first,
            format!(
                "{admin}{HEADER}\ncommand=\"'/usr/bin/paas-git-shell' --socket '/run/paas.sock' alice\",restrict,no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty ssh-ed25519 AAAAx paas-key:alice\n"
            )
        );
        // Removing the last key leaves the admin's line and the header only.
        assert_eq!(render(&first, "x", &[]), format!("{admin}{HEADER}\n"));
    }

    #[test]
    fn quoting_refuses_breakouts() {
        assert_eq!(shell_quote("/a b/c").expect("ok"), "'/a b/c'");
        for bad in ["/a\"b", "/a'b", "/a\\b", "/a\nb"] {
            assert!(shell_quote(bad).is_err(), "{bad:?}");
        }
    }
}
