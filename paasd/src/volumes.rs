//! Apps' persistent volumes (`paas volumes`): a sparse ext4 image per volume
//! (`STATE/volumes/APP/NAME.img`, its size the quota), mounted on the host at
//! `STATE/volumes/APP/NAME` from creation (or paasd's start) until removal, root dir owned
//! by the app's uid; every instance and one-off of the app binds it read-write at its path
//! (`apps::volume_binds`). Kept across releases, restarts and paasd restarts. Owns the rules
//! for names and paths, the images and their mounts; must not start containers (a change
//! reaches running instances at the next restart, which the API asks the supervisor for).

use std::path::{Path, PathBuf};

use crate::apps::{validate, volume_mount, AppError};
use crate::disk_image;
use crate::store::{self, Store, StoreError};

pub const DEFAULT_SIZE_MB: u64 = 1024;
const SIZE_MB: std::ops::RangeInclusive<u64> = 16..=1_048_576;
/// Where a volume may be mounted: dirs no slug or stack provides, so nothing an app ships
/// (a symlink planted in its slug) decides where the bind lands.
pub const PREFIXES: [&str; 4] = ["/data", "/mnt", "/srv", "/storage"];

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Invalid(String),
    #[error("'{app}' already has a volume named '{name}'")]
    Exists { app: String, name: String },
    #[error("'{app}' already has a volume at {path}")]
    PathTaken { app: String, path: String },
    #[error("'{app}' has no volume named '{name}'")]
    NotFound { app: String, name: String },
    #[error("volume {name} of {app} has no backup '{backup}' (`paas volumes backups {app} {name}` lists them)")]
    BackupNotFound {
        app: String,
        name: String,
        backup: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("mkfs.ext4 is missing on this host (install e2fsprogs): volumes need it")]
    NoMkfs,
    #[error("'{app}' has volumes ({names}); destroying it deletes their data: repeat with --delete-volumes")]
    HasVolumes { app: String, names: String },
    #[error("the volume's disk: {0}")]
    Disk(#[from] disk_image::DiskError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct Volumes {
    store: Store,
    dir: PathBuf,
    /// `STATE/backups/volumes`: `APP/NAME/STAMP.tar.gz`.
    backups: PathBuf,
}

/// A volume path's problem, for the user; `None` when it is fine.
pub fn path_problem(path: &str) -> Option<String> {
    let allowed = PREFIXES.join(", ");
    let bad = |why: &str| {
        Some(format!(
            "volume path '{path}': {why} (allowed under {allowed})"
        ))
    };
    if !path.starts_with('/') {
        return bad("must be absolute");
    }
    if path.len() > 200 {
        return bad("is longer than 200 bytes");
    }
    let parts: Vec<&str> = path[1..].split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return bad("must be normalized (no empty, '.' or '..' parts, no trailing '/')");
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
    {
        return bad("may hold only letters, digits, '/', '.', '_' and '-'");
    }
    let under = PREFIXES
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if !under {
        return bad("is outside the allowed places");
    }
    None
}

impl Volumes {
    pub fn new(store: Store, dir: PathBuf, backups: PathBuf) -> Volumes {
        Volumes {
            store,
            dir,
            backups,
        }
    }

    fn image(&self, app: &str, name: &str) -> PathBuf {
        self.dir.join(app).join(format!("{name}.img"))
    }

    pub async fn add(
        &self,
        app: String,
        req: paas_api::AddVolume,
    ) -> Result<paas_api::Volume, VolumeError> {
        validate::app_name(&app).map_err(AppError::InvalidName)?;
        validate::app_name(&req.name).map_err(|m| {
            VolumeError::Invalid(format!("volume name: {}", m.replace("app name", "name")))
        })?;
        if let Some(why) = path_problem(&req.path) {
            return Err(VolumeError::Invalid(why));
        }
        let size_mb = req.size_mb.unwrap_or(DEFAULT_SIZE_MB);
        if !SIZE_MB.contains(&size_mb) {
            return Err(VolumeError::Invalid(format!(
                "volume size must be between {} and {} MB, got {size_mb}",
                SIZE_MB.start(),
                SIZE_MB.end()
            )));
        }
        let (a, r) = (app.clone(), req.clone());
        let uid = self
            .store
            .tx(move |tx| {
                let row = crate::apps::find(tx, &a)?;
                let uid = row.uid.ok_or_else(|| AppError::NoUid(a.clone()))?;
                let existing = store::volumes::of_app(tx, row.id)?;
                if existing.iter().any(|v| v.name == r.name) {
                    return Err(VolumeError::Exists {
                        app: a,
                        name: r.name,
                    });
                }
                if existing.iter().any(|v| v.path == r.path) {
                    return Err(VolumeError::PathTaken {
                        app: a,
                        path: r.path,
                    });
                }
                // One inside another would be bound through a dir the app controls.
                let nested = |outer: &str, inner: &str| inner.starts_with(&format!("{outer}/"));
                if let Some(v) = existing
                    .iter()
                    .find(|v| nested(&v.path, &r.path) || nested(&r.path, &v.path))
                {
                    return Err(VolumeError::Invalid(format!(
                        "volume path {}: volume {} is at {}; volumes may not nest",
                        r.path, v.name, v.path
                    )));
                }
                store::volumes::insert(tx, row.id, &r.name, &r.path, size_mb, store::now())?;
                Ok(uid)
            })
            .await?;
        let mounted = self.mount(&app, &req.name, size_mb, uid).await;
        if let Err(e) = mounted {
            let (a, n) = (app.clone(), req.name.clone());
            let _ = self
                .store
                .tx(move |tx| {
                    if let Some(row) = store::apps::find(tx, &a)? {
                        store::volumes::delete(tx, row.id, &n)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await;
            self.remove_files(&app, &req.name).await;
            return Err(e);
        }
        tracing::info!(%app, volume = %req.name, path = %req.path, size_mb, "volume added");
        Ok(self.view(store::volumes::VolumeRow {
            app,
            name: req.name,
            path: req.path,
            size_mb,
            created_at: store::now(),
        }))
    }

    async fn mount(
        &self,
        app: &str,
        name: &str,
        size_mb: u64,
        uid: u32,
    ) -> Result<(), VolumeError> {
        let (image, mount) = (self.image(app, name), volume_mount(&self.dir, app, name));
        let app_dir = self.dir.join(app);
        tokio::task::spawn_blocking(move || {
            for d in [app_dir.parent().unwrap_or(&app_dir), &app_dir, &mount] {
                std::fs::create_dir_all(d).map_err(|source| VolumeError::Io {
                    what: format!("creating {}", d.display()),
                    source,
                })?;
            }
            // The mount point (and, before mounting, the image) root's alone.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&app_dir, std::fs::Permissions::from_mode(0o711));
            if !disk_image::mount_kept(&image, &mount, size_mb * 1024 * 1024, uid)? {
                return Err(VolumeError::NoMkfs);
            }
            std::os::unix::fs::chown(&mount, Some(uid), Some(uid)).map_err(|source| {
                VolumeError::Io {
                    what: format!("chown {}", mount.display()),
                    source,
                }
            })
        })
        .await
        .map_err(|e| VolumeError::Invalid(format!("mounting the volume: {e}")))?
    }

    pub async fn list(&self, app: String) -> Result<Vec<paas_api::Volume>, VolumeError> {
        validate::app_name(&app).map_err(AppError::InvalidName)?;
        let rows = self
            .store
            .tx(move |tx| {
                let row = store::apps::find(tx, &app)?.ok_or(AppError::NotFound(app))?;
                Ok::<_, VolumeError>(store::volumes::of_app(tx, row.id)?)
            })
            .await?;
        Ok(rows.into_iter().map(|r| self.view(r)).collect())
    }

    /// Removes the volume and deletes its data. Instances still running keep the old mount
    /// until they are replaced (the API restarts the app).
    pub async fn remove(&self, app: String, name: String) -> Result<(), VolumeError> {
        validate::app_name(&app).map_err(AppError::InvalidName)?;
        let (a, n) = (app.clone(), name.clone());
        self.store
            .tx(move |tx| {
                let row = crate::apps::find(tx, &a)?;
                if !store::volumes::delete(tx, row.id, &n)? {
                    return Err(VolumeError::NotFound { app: a, name: n });
                }
                Ok(())
            })
            .await?;
        self.remove_files(&app, &name).await;
        tracing::info!(%app, volume = %name, "volume removed");
        Ok(())
    }

    /// Before an app is destroyed: refused while it has volumes, unless their deletion was
    /// asked for.
    pub async fn check_destroy(
        &self,
        app: String,
        delete_volumes: bool,
    ) -> Result<(), VolumeError> {
        let vols = self.list(app.clone()).await;
        match vols {
            Ok(v) if !v.is_empty() && !delete_volumes => Err(VolumeError::HasVolumes {
                app,
                names: v
                    .iter()
                    .map(|v| v.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            // A missing app is the destroy's own error to report.
            _ => Ok(()),
        }
    }

    /// After an app is destroyed (its rows went with it): its volumes' files.
    pub async fn app_destroyed(&self, app: &str) {
        let dir = self.dir.join(app);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if disk_image::is_mounted(&p) {
                disk_image::unmount_path(&p);
            }
        }
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
    }

    /// At start: every volume on record is mounted (those an earlier paasd mounted still are).
    pub async fn mount_all(&self) {
        let rows = self
            .store
            .tx(|tx| {
                let vols = store::volumes::list(tx)?;
                let mut out = Vec::new();
                for v in vols {
                    let uid = store::apps::find(tx, &v.app)?.and_then(|a| a.uid);
                    out.push((v, uid));
                }
                Ok::<_, StoreError>(out)
            })
            .await;
        for (v, uid) in rows.unwrap_or_default() {
            let Some(uid) = uid else { continue };
            if let Err(e) = self.mount(&v.app, &v.name, v.size_mb, uid).await {
                tracing::error!(app = %v.app, volume = %v.name, error = %e, "could not mount a volume; the app's instances will not start");
            }
        }
    }

    /// paasd stops for good (not a restart): nothing runs that uses the volumes.
    pub async fn unmount_all(&self) {
        let rows = self
            .store
            .tx(store::volumes::list)
            .await
            .unwrap_or_default();
        for v in rows {
            let m = volume_mount(&self.dir, &v.app, &v.name);
            if disk_image::is_mounted(&m) {
                disk_image::unmount_path(&m);
            }
        }
    }

    async fn remove_files(&self, app: &str, name: &str) {
        let (image, mount) = (self.image(app, name), volume_mount(&self.dir, app, name));
        let _ = tokio::task::spawn_blocking(move || {
            if disk_image::is_mounted(&mount) {
                disk_image::unmount_path(&mount);
            }
            let _ = std::fs::remove_dir(&mount);
            let _ = std::fs::remove_file(&image);
        })
        .await;
    }

    fn view(&self, r: store::volumes::VolumeRow) -> paas_api::Volume {
        let mount = volume_mount(&self.dir, &r.app, &r.name);
        let used = disk_image::usage(&mount)
            .filter(|_| disk_image::is_mounted(&mount))
            .map(|(u, _)| u / (1024 * 1024));
        paas_api::Volume {
            app: r.app,
            name: r.name,
            path: r.path,
            size_mb: r.size_mb,
            used_mb: used,
            created_at: crate::apps::rfc3339(r.created_at),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The volume's row, or NotFound.
    async fn find(&self, app: &str, name: &str) -> Result<store::volumes::VolumeRow, VolumeError> {
        validate::app_name(app).map_err(AppError::InvalidName)?;
        let (a, n) = (app.to_string(), name.to_string());
        self.store
            .tx(move |tx| {
                let row = crate::apps::find(tx, &a)?;
                store::volumes::of_app(tx, row.id)?
                    .into_iter()
                    .find(|v| v.name == n)
                    .ok_or(VolumeError::NotFound { app: a, name: n })
            })
            .await
    }

    /// Volume `name` of `app` as a gzipped tar at `dest` (a platform backup's part).
    pub async fn export(&self, app: &str, name: &str, dest: PathBuf) -> Result<(), VolumeError> {
        let uid = self.uid_of(app, name).await?;
        let mount = volume_mount(&self.dir, app, name);
        let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        let stamp = format!("{app}-{name}");
        tokio::task::spawn_blocking(move || write_tarball(&mount, uid, &dir, &stamp, &dest))
            .await
            .map_err(|e| VolumeError::Invalid(format!("export task: {e}")))?
    }

    /// The files of the gzipped tar `file` become volume `name`'s (a platform restore).
    pub async fn import(&self, app: &str, name: &str, file: PathBuf) -> Result<(), VolumeError> {
        let uid = self.uid_of(app, name).await?;
        let mount = volume_mount(&self.dir, app, name);
        tokio::task::spawn_blocking(move || unpack_tarball(&file, &mount, uid))
            .await
            .map_err(|e| VolumeError::Invalid(format!("import task: {e}")))?
    }

    /// The uid of the app that owns volume `name` (which must exist).
    async fn uid_of(&self, app: &str, name: &str) -> Result<u32, VolumeError> {
        let (a, n) = (app.to_string(), name.to_string());
        self.store
            .tx(move |tx| {
                store::apps::find(tx, &a)?
                    .and_then(|r| r.uid)
                    .ok_or(VolumeError::NotFound { app: a, name: n })
            })
            .await
    }

    fn backup_dir(&self, app: &str, name: &str) -> PathBuf {
        self.backups.join(app).join(name)
    }

    /// A gzipped tar of the volume's files (symlinks as links) in `backups/volumes/APP/NAME/`.
    pub async fn backup(
        &self,
        app: String,
        name: String,
    ) -> Result<paas_api::VolumeBackup, VolumeError> {
        self.find(&app, &name).await?;
        let dir = self.backup_dir(&app, &name);
        let src = volume_mount(&self.dir, &app, &name);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
        let file = dir.join(format!("{stamp}.tar.gz"));
        let uid = self.uid_of(&app, &name).await?;
        let f2 = file.clone();
        tokio::task::spawn_blocking(move || write_tarball(&src, uid, &dir, &stamp, &f2))
            .await
            .map_err(|e| VolumeError::Invalid(format!("backup task: {e}")))??;
        tracing::info!(%app, volume = %name, file = %file.display(), "volume backed up");
        self.backups(app, name.clone())
            .await?
            .into_iter()
            .last()
            .ok_or_else(|| VolumeError::Invalid("the backup vanished".into()))
    }

    pub async fn backups(
        &self,
        app: String,
        name: String,
    ) -> Result<Vec<paas_api::VolumeBackup>, VolumeError> {
        self.find(&app, &name).await?;
        let mut out: Vec<paas_api::VolumeBackup> = std::fs::read_dir(self.backup_dir(&app, &name))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_str()?.to_string();
                let stamp = file.strip_suffix(".tar.gz")?.to_string();
                let created =
                    chrono::NaiveDateTime::parse_from_str(&stamp, "%Y%m%dT%H%M%S%.3fZ").ok()?;
                let meta = e.metadata().ok().filter(|m| m.is_file())?;
                Some(paas_api::VolumeBackup {
                    name: stamp,
                    app: app.clone(),
                    volume: name.clone(),
                    bytes: meta.len(),
                    created_at: created
                        .and_utc()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Replaces the volume's files with a backup's: unpacked by the defensive extractor into
    /// a scratch dir on the volume itself (a backup too big for it fails there, and the
    /// files stay as they were), then swapped in, owned by the app's uid.
    pub async fn restore(
        &self,
        app: String,
        name: String,
        backup: String,
    ) -> Result<(), VolumeError> {
        self.find(&app, &name).await?;
        let known = self.backups(app.clone(), name.clone()).await?;
        let Some(b) = known
            .into_iter()
            .find(|b| b.name == backup.trim_end_matches(".tar.gz"))
        else {
            return Err(VolumeError::BackupNotFound { app, name, backup });
        };
        let uid = self.uid_of(&app, &name).await?;
        let file = self
            .backup_dir(&app, &name)
            .join(format!("{}.tar.gz", b.name));
        let mount = volume_mount(&self.dir, &app, &name);
        tokio::task::spawn_blocking(move || unpack_tarball(&file, &mount, uid))
            .await
            .map_err(|e| VolumeError::Invalid(format!("restore task: {e}")))??;
        tracing::info!(%app, volume = %name, backup = %b.name, "volume restored");
        Ok(())
    }
}

/// Runs `script` with `sh` as the app's uid: whatever a volume holds is the app's, so
/// nothing here may act on it as root (a symlink the app swaps in mid-walk would send root's
/// reads and writes anywhere on the host). The volume's dir is reached through an open fd
/// (`/proc/self/fd/N`): the state dir above it is root's alone. Returns the exit code and
/// what it printed on stderr.
fn as_app(
    uid: u32,
    script: &str,
    stdin: std::fs::File,
    stdout: std::fs::File,
) -> std::io::Result<(Option<i32>, String)> {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .uid(uid)
        .gid(uid)
        .current_dir("/")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

fn open_dir(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(p)
}

/// A gzipped tar of the volume (`mount`) written by `tar` as the app's uid into
/// `dir/.STAMP.partial`, synced, then renamed to `file`.
fn write_tarball(
    mount: &Path,
    uid: u32,
    dir: &Path,
    stamp: &str,
    file: &Path,
) -> Result<(), VolumeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_err = |what: &str| {
        let what = what.to_string();
        move |source| VolumeError::Io { what, source }
    };
    std::fs::create_dir_all(dir).map_err(io_err("creating the backups dir"))?;
    let partial = dir.join(format!(".{stamp}.partial"));
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(io_err("creating the backup file"))?;
    let keep = out.try_clone().map_err(io_err("the backup file"))?;
    let ran = open_dir(mount).and_then(|d| {
        as_app(
            uid,
            "cd /proc/self/fd/0 && exec tar --sparse --exclude=./lost+found -czf - .",
            d,
            out,
        )
    });
    let done = match ran {
        Ok((Some(0), _)) => keep.sync_all().map_err(io_err("syncing the backup")),
        Ok((_, err)) => Err(VolumeError::Invalid(format!("the backup failed: {err}"))),
        Err(e) => Err(VolumeError::Io {
            what: "running tar".into(),
            source: e,
        }),
    };
    if let Err(e) = done {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, file).map_err(io_err("naming the backup"))
}

/// Unpacks `file` into the volume as the app's uid: into a scratch dir on the volume (a
/// corrupt backup, or one too big for the volume, fails there and changes nothing), then the
/// old files go and the new ones take their place. tar as a plain user cannot write outside
/// what that user may write, and makes an archive's symlinks only after every file.
fn unpack_tarball(file: &Path, mount: &Path, uid: u32) -> Result<(), VolumeError> {
    const SCRIPT: &str = r#"cd /proc/self/fd/1 || exit 1
exec 1>&2
rm -rf .paas-restoring && mkdir .paas-restoring || exit 1
if ! tar -xzf - -C .paas-restoring --no-same-owner; then rm -rf .paas-restoring; exit 3; fi
find . -mindepth 1 -maxdepth 1 ! -name .paas-restoring ! -name lost+found -exec rm -rf -- {} + || exit 1
find .paas-restoring -mindepth 1 -maxdepth 1 -exec mv -t . -- {} + || exit 1
rmdir .paas-restoring"#;
    let input = std::fs::File::open(file).map_err(|source| VolumeError::Io {
        what: "opening the backup".into(),
        source,
    })?;
    let dir = open_dir(mount).map_err(|source| VolumeError::Io {
        what: "opening the volume".into(),
        source,
    })?;
    match as_app(uid, SCRIPT, input, dir) {
        Ok((Some(0), _)) => Ok(()),
        Ok((Some(3), err)) => Err(VolumeError::Refused(format!(
            "the backup could not be restored, nothing was changed: {err}"
        ))),
        Ok((_, err)) => Err(VolumeError::Invalid(format!(
            "restoring the files failed: {err}"
        ))),
        Err(source) => Err(VolumeError::Io {
            what: "running tar".into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_paths_stay_where_no_slug_reaches() {
        for ok in [
            "/data",
            "/data/uploads",
            "/mnt/x_1",
            "/srv/a.b",
            "/storage/db",
        ] {
            assert_eq!(path_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("data", "must be absolute"),
            ("/etc", "outside the allowed places"),
            ("/app/uploads", "outside the allowed places"),
            ("/database", "outside the allowed places"),
            ("/data/../etc", "normalized"),
            ("/data/", "normalized"),
            ("/data//x", "normalized"),
            ("/data/a b", "may hold only"),
        ] {
            let p = path_problem(bad).unwrap_or_default();
            assert!(p.contains(why), "{bad}: {p}");
        }
    }
}
