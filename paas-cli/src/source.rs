//! What `paas deploy --source` points at, and packing a directory into a gzipped tarball.
//! Owns the walk (which files go in: `.gitignore`, `.paasignore`, never `.git/`) and the
//! normalized tar format (sorted, mtime 0, uid/gid 0, 0755/0644 modes), so the same tree packs
//! to the same bytes. Must not judge what the daemon judges (link targets, sizes, limits).

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use tar::{EntryType, Header};

use crate::args::UsageError;

/// Ignore files read in every directory of the tree, with `.gitignore` syntax. A
/// `.paasignore` pattern wins over a `.gitignore` one in the same directory, so `!dist/` in
/// `.paasignore` ships a directory git ignores.
pub const PAAS_IGNORE: &str = ".paasignore";

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A validated `--source`.
#[derive(Debug)]
pub enum Source {
    /// A directory, walked and packed while it is uploaded.
    Dir { root: PathBuf, entries: Vec<Entry> },
    /// A gzipped tarball, uploaded as it is.
    Tarball { path: PathBuf, size: u64 },
}

/// One thing to put into the tarball, by its path relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

impl Source {
    /// Looks at `path`: a directory is walked now (so its file count is known and walk errors
    /// surface before anything is sent), a file must be gzip. Everything wrong with the path
    /// itself is a [`UsageError`]; `warn` hears about entries left out (sockets, fifos, devices).
    pub fn open(path: &Path, warn: &mut dyn FnMut(String)) -> anyhow::Result<Source> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(UsageError(format!(
                    "source '{}' does not exist (pass a directory or a .tar.gz/.tgz file with --source)",
                    path.display()
                ))
                .into())
            }
            Err(e) => {
                return Err(UsageError(format!(
                    "cannot read source '{}': {e}",
                    path.display()
                ))
                .into())
            }
        };
        if meta.is_dir() {
            let entries = walk(path, warn)?;
            return Ok(Source::Dir {
                root: path.to_owned(),
                entries,
            });
        }
        if !meta.is_file() {
            return Err(UsageError(format!(
                "source '{}' is neither a directory nor a regular file",
                path.display()
            ))
            .into());
        }
        let mut magic = [0u8; 2];
        let read = File::open(path).and_then(|mut f| f.read_exact(&mut magic));
        match read {
            Ok(()) if magic == GZIP_MAGIC => Ok(Source::Tarball {
                path: path.to_owned(),
                size: meta.len(),
            }),
            Ok(()) => Err(not_gzip(path).into()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(not_gzip(path).into()),
            Err(e) => {
                Err(UsageError(format!("cannot read source '{}': {e}", path.display())).into())
            }
        }
    }

    /// Entries that are not directories (files and symlinks); `None` for a tarball.
    pub fn file_count(&self) -> Option<usize> {
        match self {
            Source::Dir { entries, .. } => {
                Some(entries.iter().filter(|e| e.kind != Kind::Dir).count())
            }
            Source::Tarball { .. } => None,
        }
    }
}

fn not_gzip(path: &Path) -> UsageError {
    UsageError(format!(
        "source '{}' is not a gzipped tarball; pass a directory, or a .tar.gz/.tgz file \
         (e.g. `tar czf app.tgz -C DIR .`)",
        path.display()
    ))
}

/// The entries of the tree under `root` in the order they are packed: depth first, siblings
/// sorted by name bytes. Honors `.gitignore` (also outside a git repository) and
/// [`PAAS_IGNORE`] files at every level of the tree, but not ignore files above `root`, the
/// user's global excludes or `.git/info/exclude`: only the tree decides what ships. Skips
/// `.git` everywhere; keeps other dotfiles. Symlinks are entries of their own, never followed.
pub fn walk(root: &Path, warn: &mut dyn FnMut(String)) -> anyhow::Result<Vec<Entry>> {
    let mut builder = ignore::WalkBuilder::new(root);
    builder
        .standard_filters(false)
        .git_ignore(true)
        .require_git(false)
        .add_custom_ignore_filename(PAAS_IGNORE)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.depth() == 0 || e.file_name() != OsStr::new(".git"));
    let mut entries = Vec::new();
    for result in builder.build() {
        let entry = match result {
            Ok(entry) => entry,
            Err(e) => {
                if e.io_error().is_some() {
                    anyhow::bail!("cannot pack {}: {e}", root.display());
                }
                // A pattern git would ignore too (e.g. a bad glob): say so and go on.
                warn(format!("warning: {e}"));
                continue;
            }
        };
        if entry.depth() == 0 {
            continue;
        }
        let path = entry
            .path()
            .strip_prefix(root)
            .map_err(|_| {
                anyhow::anyhow!("{} is outside {}", entry.path().display(), root.display())
            })?
            .to_owned();
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_symlink() {
            Kind::Symlink
        } else if file_type.is_file() {
            Kind::File
        } else {
            let what = if file_type.is_socket() {
                "socket"
            } else if file_type.is_fifo() {
                "fifo"
            } else {
                "device file"
            };
            warn(format!(
                "warning: skipping {} ({what}s cannot be deployed)",
                path.display()
            ));
            continue;
        };
        entries.push(Entry { path, kind });
    }
    Ok(entries)
}

/// Writes `entries` of `root` as a gzipped tar to `out` and returns `out`. Headers are
/// normalized (mtime 0, uid/gid 0, no owner names, files 0755 when executable else 0644,
/// directories 0755, symlinks 0777), gzip has no name and mtime 0: the same tree gives the
/// same bytes, whatever the clock, the umask or who packs it.
pub fn pack<W: Write>(root: &Path, entries: &[Entry], out: W) -> io::Result<W> {
    let gz = GzBuilder::new().mtime(0).write(out, Compression::default());
    let mut tar = tar::Builder::new(gz);
    for entry in entries {
        let full = root.join(&entry.path);
        match entry.kind {
            Kind::Dir => {
                let mut h = header(EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, &entry.path, io::empty())
                    .map_err(|e| context(e, &full))?;
            }
            Kind::Symlink => {
                let target = fs::read_link(&full).map_err(|e| context(e, &full))?;
                let mut h = header(EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, &entry.path, &target)
                    .map_err(|e| context(e, &full))?;
            }
            Kind::File => {
                // O_NOFOLLOW: a file swapped for a symlink since the walk is not followed.
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .map_err(|e| context(e, &full))?;
                let meta = file.metadata().map_err(|e| context(e, &full))?;
                if !meta.is_file() {
                    return Err(io::Error::other(format!(
                        "{} changed while being packed (no longer a regular file)",
                        full.display()
                    )));
                }
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                let mut h = header(EntryType::Regular, mode, meta.len());
                let data = Exact {
                    inner: file,
                    left: meta.len(),
                    path: &full,
                };
                tar.append_data(&mut h, &entry.path, data)
                    .map_err(|e| context(e, &full))?;
            }
        }
    }
    tar.into_inner()?.finish()
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// Names the file in an I/O error, unless the error already does or is about the consumer
/// (a closed upload).
fn context(e: io::Error, path: &Path) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe || e.to_string().contains(&*path.to_string_lossy()) {
        return e;
    }
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Reads exactly `left` bytes (the size already written into the tar header); a file that
/// shrank meanwhile is an error instead of a corrupt archive.
struct Exact<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being packed", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, rel: &str, data: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, data).expect("write");
    }

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.path.to_string_lossy().into_owned())
            .collect()
    }

    fn walk_ok(root: &Path) -> Vec<Entry> {
        let mut warnings = Vec::new();
        let entries = walk(root, &mut |w| warnings.push(w)).expect("walk");
        assert!(warnings.is_empty(), "{warnings:?}");
        entries
    }

    /// (path, type, mode, uid, gid, mtime, link target, contents) of every tar entry.
    type Row = (
        String,
        EntryType,
        u32,
        u64,
        u64,
        u64,
        Option<String>,
        Vec<u8>,
    );

    fn unpack(bytes: &[u8]) -> Vec<Row> {
        let mut archive = tar::Archive::new(GzDecoder::new(bytes));
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let h = entry.header().clone();
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let link = entry
                .link_name()
                .expect("link")
                .map(|l| l.to_string_lossy().into_owned());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            assert!(h.username().expect("utf8").unwrap_or("").is_empty());
            assert!(h.groupname().expect("utf8").unwrap_or("").is_empty());
            out.push((
                path,
                h.entry_type(),
                h.mode().expect("mode"),
                h.uid().expect("uid"),
                h.gid().expect("gid"),
                h.mtime().expect("mtime"),
                link,
                data,
            ));
        }
        out
    }

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "Procfile", "web: ./server\n");
        write(root, "server", "#!/bin/sh\n");
        fs::set_permissions(root.join("server"), fs::Permissions::from_mode(0o4775))
            .expect("chmod");
        write(root, ".env.example", "A=1\n");
        write(root, "src/main.rs", "fn main() {}\n");
        write(root, "b/z.txt", "z");
        write(root, "a/y.txt", "y");
        fs::create_dir(root.join("empty")).expect("mkdir");
        symlink("src/main.rs", root.join("link")).expect("symlink");
        dir
    }

    #[test]
    fn walk_is_sorted_depth_first_and_keeps_dotfiles() {
        let dir = sample_tree();
        assert_eq!(
            names(&walk_ok(dir.path())),
            [
                ".env.example",
                "Procfile",
                "a",
                "a/y.txt",
                "b",
                "b/z.txt",
                "empty",
                "link",
                "server",
                "src",
                "src/main.rs"
            ]
        );
    }

    #[test]
    fn gitignore_and_paasignore_are_honored_at_every_level_outside_git() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, ".gitignore", "node_modules/\n*.log\n/dist\n");
        write(root, ".paasignore", "secrets.txt\n!keep.log\n");
        write(root, "index.js", "");
        write(root, "debug.log", "");
        write(root, "keep.log", "");
        write(root, "secrets.txt", "");
        write(root, "node_modules/x/index.js", "");
        write(root, "dist/bundle.js", "");
        write(root, "sub/dist/kept.js", "");
        write(root, "sub/.gitignore", "generated.*\n");
        write(root, "sub/generated.rs", "");
        write(root, "sub/hand.rs", "");
        write(root, "sub/deeper/.paasignore", "*.tmp\n");
        write(root, "sub/deeper/a.tmp", "");
        write(root, "sub/deeper/a.rs", "");
        write(root, "sub/deeper/secrets.txt", "");
        write(root, "other/a.tmp", "");
        assert!(!root.join(".git").exists());
        assert_eq!(
            names(&walk_ok(root)),
            [
                ".gitignore",
                ".paasignore",
                "index.js",
                "keep.log",
                "other",
                "other/a.tmp",
                "sub",
                "sub/.gitignore",
                "sub/deeper",
                "sub/deeper/.paasignore",
                "sub/deeper/a.rs",
                "sub/dist",
                "sub/dist/kept.js",
                "sub/hand.rs",
            ]
        );
    }

    #[test]
    fn git_directories_are_skipped_everywhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, ".git/HEAD", "ref: refs/heads/main\n");
        write(root, ".git/objects/ab/cdef", "");
        write(root, ".gitignore", "");
        write(root, "vendor/lib/.git", "gitdir: ../../.git/modules/lib\n");
        write(root, "vendor/lib/lib.go", "");
        assert_eq!(
            names(&walk_ok(root)),
            [".gitignore", "vendor", "vendor/lib", "vendor/lib/lib.go"]
        );
    }

    #[test]
    fn ignore_files_above_the_root_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".gitignore", "*.txt\n");
        write(dir.path(), "app/a.txt", "");
        assert_eq!(names(&walk_ok(&dir.path().join("app"))), ["a.txt"]);
    }

    #[test]
    fn symlinks_are_kept_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        write(outside.path(), "secret/key", "do not ship");
        let root = dir.path();
        symlink(outside.path().join("secret"), root.join("dirlink")).expect("symlink");
        symlink("../../etc/passwd", root.join("escape")).expect("symlink");
        symlink("missing", root.join("dangling")).expect("symlink");
        let entries = walk_ok(root);
        assert_eq!(names(&entries), ["dangling", "dirlink", "escape"]);
        assert!(entries.iter().all(|e| e.kind == Kind::Symlink));
        let rows = unpack(&pack(root, &entries, Vec::new()).expect("pack"));
        let links: Vec<(String, EntryType, Option<String>, usize)> = rows
            .into_iter()
            .map(|r| (r.0, r.1, r.6, r.7.len()))
            .collect();
        assert_eq!(
            links,
            [
                (
                    "dangling".into(),
                    EntryType::Symlink,
                    Some("missing".into()),
                    0
                ),
                (
                    "dirlink".into(),
                    EntryType::Symlink,
                    Some(outside.path().join("secret").to_string_lossy().into_owned()),
                    0
                ),
                (
                    "escape".into(),
                    EntryType::Symlink,
                    Some("../../etc/passwd".into()),
                    0
                ),
            ]
        );
    }

    #[test]
    fn sockets_and_fifos_are_skipped_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "a.txt", "a");
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .expect("run mkfifo");
        assert!(made.success());
        let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).expect("bind");
        let mut warnings = Vec::new();
        let entries = walk(root, &mut |w| warnings.push(w)).expect("walk");
        assert_eq!(names(&entries), ["a.txt"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("pipe") && warnings[0].contains("fifo"));
        assert!(warnings[1].contains("sock") && warnings[1].contains("socket"));
    }

    #[test]
    fn headers_are_normalized() {
        let dir = sample_tree();
        let root = dir.path();
        let rows = unpack(&pack(root, &walk_ok(root), Vec::new()).expect("pack"));
        let summary: Vec<(&str, EntryType, u32)> =
            rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
        assert_eq!(
            summary,
            [
                (".env.example", EntryType::Regular, 0o644),
                ("Procfile", EntryType::Regular, 0o644),
                ("a", EntryType::Directory, 0o755),
                ("a/y.txt", EntryType::Regular, 0o644),
                ("b", EntryType::Directory, 0o755),
                ("b/z.txt", EntryType::Regular, 0o644),
                ("empty", EntryType::Directory, 0o755),
                ("link", EntryType::Symlink, 0o777),
                // setuid dropped, executable kept
                ("server", EntryType::Regular, 0o755),
                ("src", EntryType::Directory, 0o755),
                ("src/main.rs", EntryType::Regular, 0o644),
            ]
        );
        for row in &rows {
            assert!(
                !row.0.starts_with('/') && !row.0.starts_with("./"),
                "{}",
                row.0
            );
            assert_eq!((row.3, row.4, row.5), (0, 0, 0), "{}", row.0);
        }
        let procfile = rows.iter().find(|r| r.0 == "Procfile").expect("Procfile");
        assert_eq!(procfile.7, b"web: ./server\n");
    }

    #[test]
    fn packing_is_byte_for_byte_deterministic() {
        let dir = sample_tree();
        let root = dir.path();
        let first = pack(root, &walk_ok(root), Vec::new()).expect("pack");
        // New mtimes, another umask-style mode on a plain file, same content: same bytes.
        let past = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(root.join("src/main.rs"))
            .expect("open")
            .set_modified(past)
            .expect("mtime");
        fs::set_permissions(root.join("Procfile"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let second = pack(root, &walk_ok(root), Vec::new()).expect("pack");
        assert_eq!(first, second);
        // The gzip header carries no name and no time.
        assert_eq!(&first[..2], GZIP_MAGIC);
        assert_eq!(&first[4..8], [0, 0, 0, 0]);
        // A changed byte changes the archive.
        write(root, "b/z.txt", "Z");
        assert_ne!(first, pack(root, &walk_ok(root), Vec::new()).expect("pack"));
    }

    #[test]
    fn long_paths_and_link_targets_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let long = format!("{}/{}.txt", "d".repeat(80), "f".repeat(90));
        write(root, &long, "deep");
        let target = "t".repeat(150);
        symlink(&target, root.join("l")).expect("symlink");
        let rows = unpack(&pack(root, &walk_ok(root), Vec::new()).expect("pack"));
        assert_eq!(rows[1].0, long);
        assert_eq!(rows[1].7, b"deep");
        assert_eq!(rows[2].6.as_deref(), Some(target.as_str()));
    }

    #[test]
    fn open_checks_the_source() {
        let dir = sample_tree();
        let mut warn = |w: String| panic!("unexpected warning {w}");
        let usage = |r: anyhow::Result<Source>| {
            r.expect_err("refused")
                .downcast::<UsageError>()
                .expect("usage error")
                .0
        };
        let missing = usage(Source::open(&dir.path().join("nope"), &mut warn));
        assert!(missing.contains("does not exist"), "{missing}");
        let not_gzip = usage(Source::open(&dir.path().join("Procfile"), &mut warn));
        assert!(not_gzip.contains("not a gzipped tarball"), "{not_gzip}");
        write(dir.path(), "tiny.tgz", "x");
        let tiny = usage(Source::open(&dir.path().join("tiny.tgz"), &mut warn));
        assert!(tiny.contains("not a gzipped tarball"), "{tiny}");

        let bytes = pack(dir.path(), &walk_ok(dir.path()), Vec::new()).expect("pack");
        let tgz = dir.path().join("app.tgz");
        fs::write(&tgz, &bytes).expect("write");
        match Source::open(&tgz, &mut warn).expect("tarball") {
            Source::Tarball { size, .. } => assert_eq!(size, bytes.len() as u64),
            other => panic!("unexpected {other:?}"),
        }
        let source = Source::open(dir.path(), &mut warn).expect("dir");
        // Procfile, server, .env.example, src/main.rs, b/z.txt, a/y.txt, link, tiny.tgz, app.tgz
        assert_eq!(source.file_count(), Some(9));
    }
}
