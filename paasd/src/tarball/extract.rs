//! Unpacking tarballs nobody vouches for (app sources, stack rootfs images) into a fresh
//! directory. Owns the rules of what an archive may contain and the limits on its size; it
//! never follows a symlink while writing, so nothing can land outside `dest`, whatever the
//! archive holds. Must not decide where `dest` is or what happens to the tree afterwards.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Bounds on what one archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sum of the sizes of all files, unpacked.
    pub max_bytes: u64,
    /// Entries of any kind.
    pub max_entries: u64,
    /// Bytes in one entry's path.
    pub max_path: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 1 << 30,
            max_entries: 100_000,
            max_path: 1024,
        }
    }
}

/// What kind of tree is being unpacked, which decides the rules for links and special files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An app's source: symlinks must stay inside the tree; device files and FIFOs are
    /// refused; everything belongs to `owner`.
    Source { owner: (u32, u32) },
    /// A root filesystem: symlinks may be absolute (they resolve inside the container, and
    /// are never followed here); device files are skipped (containers get their own /dev);
    /// ownership comes from the archive.
    Rootfs,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive holds something it may not; `entry` names it as the archive does.
    #[error("refused '{entry}': {reason}")]
    Refused { entry: String, reason: String },
    #[error("the archive unpacks to more than {limit} bytes (the limit)")]
    TooBig { limit: u64 },
    #[error("the archive has more than {limit} entries (the limit)")]
    TooManyEntries { limit: u64 },
    /// Not gzip, not tar, or cut short.
    #[error("the upload is not a readable gzipped tar archive: {0}")]
    Format(String),
    /// Our side failed (disk full, permissions): not the archive's fault.
    #[error("unpacking into {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// How much was unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub bytes: u64,
}

/// Unpacks a gzipped tar from `reader` into `dest` (an existing, empty directory).
pub fn extract_gz(
    reader: impl Read,
    dest: &Path,
    kind: Kind,
    limits: Limits,
) -> Result<Summary, ExtractError> {
    extract(flate2::read::GzDecoder::new(reader), dest, kind, limits)
}

/// Unpacks a plain tar stream; see [`extract_gz`].
pub fn extract(
    reader: impl Read,
    dest: &Path,
    kind: Kind,
    limits: Limits,
) -> Result<Summary, ExtractError> {
    // Metadata (long names, pax headers) is read into memory by the tar crate, so the
    // decompressed stream as a whole is bounded too, not only the file contents.
    let budget = limits
        .max_bytes
        .saturating_add(limits.max_entries.saturating_mul(2048))
        .saturating_add(16 << 20);
    let mut archive = tar::Archive::new(Budget {
        inner: reader,
        left: budget,
        limit: limits.max_bytes,
    });
    let mut x = Extractor {
        dest,
        kind,
        limits,
        summary: Summary::default(),
        entries: 0,
        symlinks: Vec::new(),
    };
    let entries = archive.entries().map_err(format_err)?;
    for entry in entries {
        let entry = entry.map_err(format_err)?;
        x.entry(entry)?;
    }
    if let Kind::Source { .. } = kind {
        x.check_symlinks()?;
    }
    Ok(x.summary)
}

struct Extractor<'a> {
    dest: &'a Path,
    kind: Kind,
    limits: Limits,
    summary: Summary,
    entries: u64,
    /// Relative paths of the symlinks made, checked once the whole tree exists.
    symlinks: Vec<PathBuf>,
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ExtractError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: &str| ExtractError::Refused {
            entry: name.clone(),
            reason: reason.to_string(),
        };
        if raw.len() > self.limits.max_path {
            return Err(refuse(&format!(
                "the path is longer than {} bytes",
                self.limits.max_path
            )));
        }
        let rel = relative(&raw).map_err(|r| refuse(&r))?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(format_err)? & 0o1777;
        let owner = match self.kind {
            Kind::Source { owner } => owner,
            Kind::Rootfs => (
                u32::try_from(header.uid().map_err(format_err)?).map_err(|_| refuse("uid"))?,
                u32::try_from(header.gid().map_err(format_err)?).map_err(|_| refuse("gid"))?,
            ),
        };
        // The tree's root itself ("./"): nothing to make.
        if rel.as_os_str().is_empty() {
            return if kind.is_dir() {
                Ok(())
            } else {
                Err(refuse("only a directory can be the archive's root"))
            };
        }
        let path = self.dest.join(&rel);
        self.parents(&rel, owner).map_err(|e| match e {
            Parent::Io(p, source) => ExtractError::Io { path: p, source },
            Parent::NotDir(p) => refuse(&format!(
                "'{}' is not a directory (a file or link of the archive is in the way)",
                p.display()
            )),
        })?;
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(refuse("a directory would replace a file or link")),
                    Err(_) => fs::create_dir(&path).map_err(io(&path))?,
                }
                finish(&path, mode | 0o700, owner)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.make_room(&path, &refuse)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io(&path))?;
                let room = self.limits.max_bytes - self.summary.bytes;
                let n = io::copy(&mut (&mut entry).take(room + 1), &mut file).map_err(|e| {
                    if e.kind() == io::ErrorKind::Other && e.to_string().contains(TOO_BIG) {
                        ExtractError::TooBig {
                            limit: self.limits.max_bytes,
                        }
                    } else {
                        format_err(e)
                    }
                })?;
                if n > room {
                    return Err(ExtractError::TooBig {
                        limit: self.limits.max_bytes,
                    });
                }
                self.summary.bytes += n;
                self.summary.files += 1;
                drop(file);
                finish(&path, mode, owner)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("a symlink without a target"))?
                    .into_owned();
                if target.is_empty() || target.contains(&0) {
                    return Err(refuse("a symlink with an empty or invalid target"));
                }
                let target = PathBuf::from(std::ffi::OsString::from(
                    String::from_utf8_lossy(&target).into_owned(),
                ));
                if matches!(self.kind, Kind::Source { .. }) && target.is_absolute() {
                    return Err(refuse(&format!(
                        "the symlink points outside the source tree (to the absolute path {})",
                        target.display()
                    )));
                }
                self.make_room(&path, &refuse)?;
                symlink(&target, &path).map_err(io(&path))?;
                lchown(&path, Some(owner.0), Some(owner.1)).map_err(io(&path))?;
                self.symlinks.push(rel);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("a hard link without a target"))?
                    .into_owned();
                let target_rel = relative(&target)
                    .map_err(|r| refuse(&format!("the hard link's target: {r}")))?;
                let target_path = self.dest.join(&target_rel);
                // Parents of the target must be real directories too, or the link could
                // reach a host file through a symlinked directory.
                let real = self.parents_exist(&target_rel)
                    && fs::symlink_metadata(&target_path)
                        .map(|m| m.file_type().is_file())
                        .unwrap_or(false);
                if !real {
                    return Err(refuse(
                        "a hard link must point at a regular file earlier in the archive",
                    ));
                }
                self.make_room(&path, &refuse)?;
                fs::hard_link(&target_path, &path).map_err(io(&path))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                if let Kind::Rootfs = self.kind {
                    return Ok(());
                }
                return Err(refuse("device files and FIFOs are not allowed"));
            }
            tar::EntryType::XGlobalHeader => {}
            // A sparse entry can claim any size (a "10 GB" file in a few bytes); sources
            // never need one.
            tar::EntryType::GNUSparse => return Err(refuse("sparse files are not allowed")),
            other => {
                return Err(refuse(&format!(
                    "unsupported entry type {:?}",
                    other.as_byte() as char
                )))
            }
        }
        Ok(())
    }

    /// Makes (or checks) every parent of `rel` as a real directory, never a symlink.
    fn parents(&self, rel: &Path, owner: (u32, u32)) -> Result<(), Parent> {
        let mut here = self.dest.to_path_buf();
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        for c in parent.components() {
            here.push(c);
            match fs::symlink_metadata(&here) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Parent::NotDir(
                        here.strip_prefix(self.dest).unwrap_or(&here).to_path_buf(),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&here).map_err(|e| Parent::Io(here.clone(), e))?;
                    fs::set_permissions(&here, fs::Permissions::from_mode(0o755))
                        .map_err(|e| Parent::Io(here.clone(), e))?;
                    lchown(&here, Some(owner.0), Some(owner.1))
                        .map_err(|e| Parent::Io(here.clone(), e))?;
                }
                Err(e) => return Err(Parent::Io(here, e)),
            }
        }
        Ok(())
    }

    fn parents_exist(&self, rel: &Path) -> bool {
        let mut here = self.dest.to_path_buf();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            here.push(c);
            if !fs::symlink_metadata(&here)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                return false;
            }
        }
        true
    }

    /// A later entry of the same name replaces an earlier file or link (as tar does), never
    /// a directory.
    fn make_room(
        &self,
        path: &Path,
        refuse: &dyn Fn(&str) -> ExtractError,
    ) -> Result<(), ExtractError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Err(refuse("a file or link would replace a directory")),
            Ok(_) => fs::remove_file(path).map_err(io(path)),
            Err(_) => Ok(()),
        }
    }

    /// Resolves every symlink the way the kernel would, inside the tree, and refuses any
    /// that leaves it. Done once all entries exist, since a link's meaning depends on links
    /// that may come later in the archive.
    fn check_symlinks(&self) -> Result<(), ExtractError> {
        for rel in &self.symlinks {
            let mut stack: Vec<std::ffi::OsString> = rel
                .parent()
                .into_iter()
                .flat_map(Path::components)
                .map(|c| c.as_os_str().to_owned())
                .collect();
            let link = self.dest.join(rel);
            match self.resolve(&link, &mut stack, 0) {
                Ok(()) => {}
                Err(reason) => {
                    return Err(ExtractError::Refused {
                        entry: rel.display().to_string(),
                        reason,
                    })
                }
            }
        }
        Ok(())
    }

    /// Follows the symlink at `link` (whose directory is `stack`), component by component.
    fn resolve(
        &self,
        link: &Path,
        stack: &mut Vec<std::ffi::OsString>,
        depth: u32,
    ) -> Result<(), String> {
        if depth > 40 {
            return Err("too many levels of symlinks (a loop?)".into());
        }
        let target = fs::read_link(link).map_err(|e| format!("read link: {e}"))?;
        if target.is_absolute() {
            return Err(format!(
                "the symlink points outside the source tree (through {})",
                link.strip_prefix(self.dest).unwrap_or(link).display()
            ));
        }
        let comps: Vec<Component> = target.components().collect();
        for (i, c) in comps.iter().enumerate() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => {
                    if stack.pop().is_none() {
                        return Err("the symlink points outside the source tree".into());
                    }
                }
                Component::Normal(n) => {
                    stack.push(n.to_os_string());
                    let here: PathBuf = self.dest.join(stack.iter().collect::<PathBuf>());
                    match fs::symlink_metadata(&here) {
                        Ok(m) if m.file_type().is_symlink() => {
                            stack.pop();
                            self.resolve(&here, stack, depth + 1)?;
                        }
                        Ok(_) => {}
                        // Dangling from here on: what remains is only names, but `..` in
                        // it may still climb out.
                        Err(_) => return lexical(stack, &comps[i + 1..]),
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err("the symlink points outside the source tree".into())
                }
            }
        }
        Ok(())
    }
}

/// Applies the rest of a dangling link's path by name alone.
fn lexical(stack: &mut Vec<std::ffi::OsString>, rest: &[Component]) -> Result<(), String> {
    for c in rest {
        match c {
            Component::ParentDir if stack.pop().is_none() => {
                return Err("the symlink points outside the source tree".into())
            }
            Component::Normal(n) => stack.push(n.to_os_string()),
            _ => {}
        }
    }
    Ok(())
}

enum Parent {
    Io(PathBuf, io::Error),
    NotDir(PathBuf),
}

/// An archive path as a relative path with only normal components; `./` prefixes are fine,
/// absolute paths and `..` are not.
fn relative(raw: &[u8]) -> Result<PathBuf, String> {
    if raw.contains(&0) {
        return Err("the path contains a NUL byte".into());
    }
    let s = String::from_utf8_lossy(raw);
    let p = Path::new(s.as_ref());
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => {
                if n.len() > 255 {
                    return Err("a path component is longer than 255 bytes".into());
                }
                out.push(n)
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("the path contains '..'".into()),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute".into()),
        }
    }
    Ok(out)
}

fn finish(path: &Path, mode: u32, owner: (u32, u32)) -> Result<(), ExtractError> {
    // Explicit, because paasd's umask (077) would otherwise decide the modes.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))?;
    lchown(path, Some(owner.0), Some(owner.1)).map_err(io(path))
}

fn io(path: &Path) -> impl Fn(io::Error) -> ExtractError + '_ {
    move |source| ExtractError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(e: io::Error) -> ExtractError {
    if e.to_string().contains(TOO_BIG) {
        // The budget reader's own error, surfacing through the tar or gzip layer.
        let limit = e
            .to_string()
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        return ExtractError::TooBig { limit };
    }
    ExtractError::Format(e.to_string())
}

const TOO_BIG: &str = "paas: archive over budget, limit";

/// Fails reads once more than `left` bytes came through.
struct Budget<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| io::Error::other(format!("{TOO_BIG} {}", self.limit)))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: (u32, u32) = (0, 0);
    const SOURCE: Kind = Kind::Source { owner: OWNER };

    /// A tar built entry by entry with raw headers, so hostile names survive (the tar
    /// crate's safe builder API refuses them).
    struct Raw(Vec<u8>);

    impl Raw {
        fn new() -> Raw {
            Raw(Vec::new())
        }
        fn entry(mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Raw {
            let mut h = tar::Header::new_gnu();
            {
                let b = h.as_old_mut();
                b.name[..name.len()].copy_from_slice(name.as_bytes());
                b.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            self.0.extend_from_slice(h.as_bytes());
            self.0.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            self.0.extend(std::iter::repeat_n(0u8, pad));
            self
        }
        fn file(self, name: &str, data: &[u8]) -> Raw {
            self.entry(name, tar::EntryType::Regular, "", data)
        }
        fn dir(self, name: &str) -> Raw {
            self.entry(name, tar::EntryType::Directory, "", b"")
        }
        fn symlink(self, name: &str, to: &str) -> Raw {
            self.entry(name, tar::EntryType::Symlink, to, b"")
        }
        fn hardlink(self, name: &str, to: &str) -> Raw {
            self.entry(name, tar::EntryType::Link, to, b"")
        }
        fn bytes(mut self) -> Vec<u8> {
            self.0.extend(std::iter::repeat_n(0u8, 1024));
            self.0
        }
    }

    fn unpack(
        tar: Vec<u8>,
        kind: Kind,
        limits: Limits,
    ) -> (tempfile::TempDir, Result<Summary, ExtractError>) {
        let outer = tempfile::tempdir().expect("tempdir");
        let dest = outer.path().join("dest");
        fs::create_dir(&dest).expect("mkdir");
        let r = extract(&tar[..], &dest, kind, limits);
        (outer, r)
    }

    fn refused(r: Result<Summary, ExtractError>, entry: &str) -> String {
        match r {
            Err(ExtractError::Refused { entry: e, reason }) => {
                assert_eq!(e, entry, "wrong entry named ({reason})");
                reason
            }
            other => panic!("expected {entry} refused, got {other:?}"),
        }
    }

    /// Nothing but `dest` exists beside it: hostile entries wrote nothing outside.
    fn only_dest(outer: &Path) {
        let names: Vec<_> = fs::read_dir(outer)
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("dest")]);
    }

    #[test]
    fn plain_tree_unpacks_with_modes() {
        let tar = Raw::new()
            .dir("./")
            .dir("./src/")
            .file("./src/main.js", b"hello")
            .file("Procfile", b"web: node src/main.js\n")
            .symlink("link", "src/main.js")
            .hardlink("hard", "Procfile")
            .bytes();
        let (outer, r) = unpack(tar, SOURCE, Limits::default());
        let s = r.expect("unpacks");
        assert_eq!(
            s,
            Summary {
                files: 2,
                bytes: 27
            }
        );
        let d = outer.path().join("dest");
        assert_eq!(fs::read(d.join("link")).expect("via link"), b"hello");
        assert_eq!(
            fs::read(d.join("hard")).expect("hard"),
            b"web: node src/main.js\n"
        );
        let mode = fs::metadata(d.join("Procfile"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644);
    }

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        for name in ["../evil", "a/../../evil", "/etc/evil", "./../evil"] {
            let (outer, r) = unpack(
                Raw::new().file(name, b"x").bytes(),
                SOURCE,
                Limits::default(),
            );
            let reason = refused(r, name);
            assert!(
                reason.contains("..") || reason.contains("absolute"),
                "{reason}"
            );
            only_dest(outer.path());
        }
    }

    #[test]
    fn escaping_symlinks_are_refused() {
        let cases = [
            Raw::new().symlink("l", "/etc/passwd"),
            Raw::new().symlink("l", "../outside"),
            Raw::new().dir("a").symlink("a/l", "../../x"),
            // Each link alone looks harmless; together they climb out.
            Raw::new()
                .dir("d")
                .symlink("d/up", "..")
                .symlink("d/l", "up/../.."),
        ];
        for (i, raw) in cases.into_iter().enumerate() {
            let (_outer, r) = unpack(raw.bytes(), SOURCE, Limits::default());
            assert!(
                matches!(r, Err(ExtractError::Refused { ref reason, .. }) if reason.contains("outside")),
                "case {i}: {r:?}"
            );
        }
        // Inside the tree is fine, dangling or not.
        let ok = Raw::new()
            .dir("d")
            .symlink("d/up", "..")
            .symlink("d/l", "up/x")
            .bytes();
        unpack(ok, SOURCE, Limits::default())
            .1
            .expect("in-tree links");
    }

    #[test]
    fn writing_through_a_symlinked_directory_is_refused() {
        let outer = tempfile::tempdir().expect("tempdir");
        let victim = outer.path().join("victim");
        fs::create_dir(&victim).expect("victim");
        let dest = outer.path().join("dest");
        fs::create_dir(&dest).expect("dest");
        // `sub` is an in-tree link to `.`: harmless as a link, but `sub/x` must not be written
        // through it either; and a link into a sibling dir outside must never be a parent.
        let abs = format!("{}", victim.display());
        let tar = Raw::new()
            .symlink("sub", &abs)
            .file("sub/x", b"pwned")
            .bytes();
        let r = extract(&tar[..], &dest, Kind::Rootfs, Limits::default());
        assert!(
            matches!(r, Err(ExtractError::Refused { ref entry, .. }) if entry == "sub/x"),
            "{r:?}"
        );
        assert!(fs::read_dir(&victim).expect("victim").next().is_none());
    }

    #[test]
    fn hard_links_outside_or_to_links_are_refused() {
        for (raw, entry) in [
            (Raw::new().hardlink("h", "/etc/shadow"), "h"),
            (Raw::new().hardlink("h", "../x"), "h"),
            (Raw::new().hardlink("h", "missing"), "h"),
            (
                Raw::new().dir("d").symlink("s", "d").hardlink("h", "s"),
                "h",
            ),
        ] {
            let (_o, r) = unpack(raw.bytes(), SOURCE, Limits::default());
            refused(r, entry);
        }
    }

    #[test]
    fn devices_and_fifos_are_refused_in_sources_and_skipped_in_rootfs() {
        for kind in [
            tar::EntryType::Char,
            tar::EntryType::Block,
            tar::EntryType::Fifo,
        ] {
            let tar = Raw::new().entry("dev", kind, "", b"").bytes();
            let (_o, r) = unpack(tar.clone(), SOURCE, Limits::default());
            refused(r, "dev");
            let (o, r) = unpack(tar, Kind::Rootfs, Limits::default());
            r.expect("skipped");
            assert!(!o.path().join("dest/dev").exists());
        }
    }

    #[test]
    fn limits_hold() {
        let small = Limits {
            max_bytes: 10,
            max_entries: 3,
            max_path: 20,
        };
        let (_o, r) = unpack(Raw::new().file("a", &[1; 11]).bytes(), SOURCE, small);
        assert!(
            matches!(r, Err(ExtractError::TooBig { limit: 10 })),
            "{r:?}"
        );
        let (_o, r) = unpack(
            Raw::new()
                .file("a", b"1")
                .file("b", b"2")
                .file("c", b"3")
                .file("d", b"4")
                .bytes(),
            SOURCE,
            small,
        );
        assert!(
            matches!(r, Err(ExtractError::TooManyEntries { limit: 3 })),
            "{r:?}"
        );
        let long = "x".repeat(21);
        let (_o, r) = unpack(Raw::new().file(&long, b"").bytes(), SOURCE, small);
        refused(r, &long);
    }

    #[test]
    fn gzip_bomb_stops_at_the_budget() {
        // 64 MiB of zeros in one file compresses to ~64 KiB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        {
            let mut b = tar::Builder::new(&mut gz);
            let mut h = tar::Header::new_gnu();
            h.set_size(64 << 20);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "zeros", io::repeat(0).take(64 << 20))
                .expect("append");
            b.finish().expect("finish");
        }
        let bytes = gz.finish().expect("gz");
        assert!(bytes.len() < 1 << 20);
        let outer = tempfile::tempdir().expect("tempdir");
        let r = extract_gz(
            &bytes[..],
            outer.path(),
            SOURCE,
            Limits {
                max_bytes: 1 << 20,
                ..Limits::default()
            },
        );
        assert!(matches!(r, Err(ExtractError::TooBig { .. })), "{r:?}");
    }

    #[test]
    fn garbage_is_a_format_error() {
        let outer = tempfile::tempdir().expect("tempdir");
        let r = extract_gz(
            &b"not gzip at all"[..],
            outer.path(),
            SOURCE,
            Limits::default(),
        );
        assert!(matches!(r, Err(ExtractError::Format(_))), "{r:?}");
    }

    #[test]
    fn a_file_cannot_replace_a_directory_but_can_replace_a_file() {
        let (_o, r) = unpack(
            Raw::new().dir("a").file("a", b"x").bytes(),
            SOURCE,
            Limits::default(),
        );
        refused(r, "a");
        let (o, r) = unpack(
            Raw::new().file("a", b"1").file("a", b"2").bytes(),
            SOURCE,
            Limits::default(),
        );
        r.expect("replace");
        assert_eq!(fs::read(o.path().join("dest/a")).expect("a"), b"2");
    }
}
