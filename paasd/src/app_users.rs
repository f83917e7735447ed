//! The host uid range apps run as (`[users]`): one uid per app, handed out by the app
//! service and never reused. Owns the start-up check that no host account, group or
//! subordinate id range (`/etc/subuid`, `/etc/subgid`: other container runtimes' user
//! namespaces) overlaps the range, since a collision would let an app's processes act as
//! that user. Must not hand out uids itself (the store's counter does).

use std::ops::Range;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("[users] range {first}..{end} overlaps {what} in {file}: pick another first_uid in paasd.toml")]
    Overlap {
        first: u64,
        end: u64,
        what: String,
        file: String,
    },
    #[error("reading {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
}

/// Fails if an entry of the host's account files falls in `first..first + count`. Missing
/// files are fine (a minimal system may have no /etc/subuid).
pub fn check_range(etc: &Path, first: u32, count: u32) -> Result<(), UsersError> {
    let range = u64::from(first)..u64::from(first) + u64::from(count);
    for (name, kind) in [
        ("passwd", Kind::Account),
        ("group", Kind::Account),
        ("subuid", Kind::Subordinate),
        ("subgid", Kind::Subordinate),
    ] {
        let path = etc.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(UsersError::Read {
                    file: path.display().to_string(),
                    source,
                })
            }
        };
        if let Some(what) = overlap(&text, kind, &range) {
            return Err(UsersError::Overlap {
                first: range.start,
                end: range.end,
                what,
                file: path.display().to_string(),
            });
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    /// `name:x:ID:...`
    Account,
    /// `name:START:COUNT`
    Subordinate,
}

fn overlap(text: &str, kind: Kind, range: &Range<u64>) -> Option<String> {
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        let taken = match kind {
            Kind::Account => fields
                .get(2)
                .and_then(|id| id.parse::<u64>().ok())
                .map(|id| id..id + 1),
            Kind::Subordinate => {
                let start = fields.get(1).and_then(|s| s.parse::<u64>().ok());
                let n = fields.get(2).and_then(|s| s.parse::<u64>().ok());
                start.zip(n).map(|(s, n)| s..s + n)
            }
        };
        if let Some(t) = taken {
            if t.start < range.end && range.start < t.end {
                let name = fields.first().copied().unwrap_or("?");
                return Some(format!("'{name}' ({}..{})", t.start, t.end));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_accounts_and_subordinate_ranges_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            d.path().join("passwd"),
            "root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .expect("w");
        std::fs::write(d.path().join("subuid"), "bob:100000:65536\n").expect("w");
        assert!(check_range(d.path(), 1_900_000_000, 100_000).is_ok());
        let e = check_range(d.path(), 160_000, 10).expect_err("inside bob's subuids");
        assert!(e.to_string().contains("'bob' (100000..165536)"), "{e}");
        assert!(e.to_string().contains("subuid"), "{e}");
        std::fs::write(d.path().join("group"), "apps:x:1900000005:\n").expect("w");
        let e = check_range(d.path(), 1_900_000_000, 100_000).expect_err("a group");
        assert!(e.to_string().contains("'apps'"), "{e}");
        // A range that ends right before an account does not overlap it.
        assert!(check_range(d.path(), 1_899_999_000, 1000).is_ok());
    }
}
