//! Files an app controls (its Procfile, `app.json`), read one way: as root we never follow a
//! symlink the app planted (it could point at any host file), never block on a FIFO, accept
//! only a regular file, and read at most 256 KiB. Must not interpret the contents (the
//! `app_json` module does).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The most of one file we read.
pub const MAX_BYTES: u64 = 256 * 1024;

/// Reads `name` at the top of an app's tree; `None` when it is not there.
pub fn read(app_dir: &Path, name: &str) -> io::Result<Option<String>> {
    let f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(app_dir.join(name))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::other(format!(
                "{name} is a symlink; make it a regular file"
            )))
        }
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Err(io::Error::other(format!("{name} is not a regular file")));
    }
    let mut text = String::new();
    f.take(MAX_BYTES).read_to_string(&mut text)?;
    Ok(Some(text))
}

/// `app.json` at the top of an app's tree, if it is there, readable the one safe way, and
/// parses (`//` and `/* */` comments allowed, as the deploy allows them: `app_json`). The
/// deploy already refused a malformed one, so `None` here means there is none.
pub fn app_json(app_dir: &Path) -> Option<serde_json::Value> {
    let text = read(app_dir, "app.json").ok()??;
    serde_json::from_str(&crate::app_json::strip_comments(&text)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("Procfile"), "web: ./x\n").expect("write");
        assert_eq!(
            read(dir.path(), "Procfile").expect("read").as_deref(),
            Some("web: ./x\n")
        );
        assert_eq!(read(dir.path(), "nope").expect("read"), None);
    }

    #[test]
    fn symlinks_fifos_and_dirs_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/etc/shadow", dir.path().join("app.json")).expect("link");
        let e = read(dir.path(), "app.json").expect_err("link");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(app_json(dir.path()), None, "a linked app.json is not read");
        fs::create_dir(dir.path().join("Procfile")).expect("mkdir");
        assert!(read(dir.path(), "Procfile").is_err());
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("fifo"))
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let e = read(dir.path(), "fifo").expect_err("fifo");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn big_files_are_cut_and_app_json_must_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("big"), vec![b'a'; 1 << 20]).expect("write");
        let text = read(dir.path(), "big").expect("read").expect("there");
        assert_eq!(text.len() as u64, MAX_BYTES);
        fs::write(dir.path().join("app.json"), "{\"healthchecks\": {}}").expect("write");
        assert!(app_json(dir.path()).is_some());
        fs::write(dir.path().join("app.json"), "{ nope").expect("write");
        assert_eq!(app_json(dir.path()), None);
        fs::write(
            dir.path().join("app.json"),
            "{ // checks\n\"healthchecks\": {}}",
        )
        .expect("write");
        assert!(app_json(dir.path()).is_some(), "comments are allowed");
    }
}
