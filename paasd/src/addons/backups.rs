//! Backup files of add-on services: `backups/addons/NAME/STAMP[-auto].EXT`, written to a
//! `.partial` name and renamed when complete, listed from the directory (a backup is a file,
//! not a row, so it outlives the service and travels with the state dir), pruned to a
//! schedule's `keep`. Owns names and files; must not run the dump tools (`mod.rs` does).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::kind::Kind;

pub const AUTO_SUFFIX: &str = "-auto";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    /// Without the extension: `20261206T093000Z` or `20261206T093000Z-auto`.
    pub name: String,
    pub kind: Kind,
    pub path: PathBuf,
    pub bytes: u64,
    pub created: DateTime<Utc>,
    pub scheduled: bool,
}

/// A fresh name in `dir` for a backup made at `now`.
pub fn new_name(dir: &Path, now: DateTime<Utc>, scheduled: bool, kind: Kind) -> String {
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let suffix = if scheduled { AUTO_SUFFIX } else { "" };
    let mut n = 1;
    loop {
        let name = if n == 1 {
            format!("{stamp}{suffix}")
        } else {
            format!("{stamp}.{n}{suffix}")
        };
        if !dir.join(format!("{name}.{}", kind.backup_ext())).exists() {
            return name;
        }
        n += 1;
    }
}

/// What a file name says: `(created, scheduled, kind)`, or `None` for anything else.
fn parse(file: &str) -> Option<(String, DateTime<Utc>, bool, Kind)> {
    let (name, ext) = file.rsplit_once('.')?;
    let kind = match ext {
        "dump" => Kind::Postgres,
        "rdb" => Kind::Redis,
        _ => return None,
    };
    let (base, scheduled) = match name.strip_suffix(AUTO_SUFFIX) {
        Some(b) => (b, true),
        None => (name, false),
    };
    let stamp = base.split('.').next()?;
    let created = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()?
        .and_utc();
    Some((name.to_string(), created, scheduled, kind))
}

/// Every backup in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<BackupFile> {
    let mut out: Vec<BackupFile> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_string();
            let (name, created, scheduled, kind) = parse(&file)?;
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            Some(BackupFile {
                name,
                kind,
                path: e.path(),
                bytes: meta.len(),
                created,
                scheduled,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    out
}

/// The backup called `name` (with or without its extension).
pub fn find(dir: &Path, name: &str) -> Option<BackupFile> {
    let bare = name
        .strip_suffix(".dump")
        .or_else(|| name.strip_suffix(".rdb"))
        .unwrap_or(name);
    list(dir).into_iter().find(|b| b.name == bare)
}

/// Scheduled backups beyond the newest `keep` (manual ones are never pruned).
pub fn beyond(all: &[BackupFile], keep: usize) -> Vec<BackupFile> {
    let auto: Vec<&BackupFile> = all.iter().filter(|b| b.scheduled).collect();
    let n = auto.len().saturating_sub(keep);
    auto.into_iter().take(n).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_sort_by_time_and_say_who_made_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Utc
            .with_ymd_and_hms(2026, 12, 6, 9, 30, 0)
            .single()
            .expect("time");
        let a = new_name(dir.path(), t, true, Kind::Postgres);
        assert_eq!(a, "20261206T093000Z-auto");
        std::fs::write(dir.path().join(format!("{a}.dump")), "x").expect("write");
        let b = new_name(dir.path(), t, true, Kind::Postgres);
        assert_eq!(b, "20261206T093000Z.2-auto");
        std::fs::write(dir.path().join(format!("{b}.dump")), "xy").expect("write");
        let m = new_name(dir.path(), t, false, Kind::Postgres);
        std::fs::write(dir.path().join(format!("{m}.dump")), "").expect("write");
        std::fs::write(dir.path().join("junk.txt"), "").expect("write");
        std::fs::write(dir.path().join("x.dump.partial"), "").expect("write");
        let all = list(dir.path());
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all
            .iter()
            .all(|b| b.created == t && b.kind == Kind::Postgres));
        let pruned: Vec<String> = beyond(&all, 1).into_iter().map(|b| b.name).collect();
        assert_eq!(
            pruned,
            ["20261206T093000Z-auto"],
            "the oldest scheduled one goes"
        );
        assert_eq!(
            find(dir.path(), "20261206T093000Z.2-auto.dump").map(|b| b.bytes),
            Some(2)
        );
        assert!(find(dir.path(), "nope").is_none());
    }
}
