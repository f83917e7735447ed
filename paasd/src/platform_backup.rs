//! Backup and restore of the whole platform (`paas backup create|restore`): one gzipped tar
//! with a consistent SQLite snapshot (the online backup API, while paasd serves), the key
//! file (the archive is as secret as the key: it opens every config var), the slugs of the
//! apps' current releases, their git repositories, their volumes' files and a fresh backup
//! of every add-on. A restore goes into a fresh install only: the archive is unpacked by
//! the defensive extractor, checked whole (manifest, database integrity and schema, the key
//! against sealed values) before anything changes, then applied: database and key
//! replaced live, files put in place, services, links and apps started. Owns the archive's
//! layout and the order of a restore; must not know how each part is made (the services
//! it calls do).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::addons::Addons;
use crate::apps::Apps;
use crate::certs::Certs;
use crate::git::Git;
use crate::secrets::SecretBox;
use crate::slugs::Slugs;
use crate::store::{self, Store};
use crate::supervisor::Supervisor;
use crate::tarball;
use crate::volumes::Volumes;

/// The archive layout's version: a restore refuses any other.
pub const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("a platform restore needs a fresh install; this one has {0}")]
    NotFresh(String),
    #[error("not a usable paas backup, nothing was changed: {0}")]
    Refused(String),
    #[error("the upload is larger than {limit_mb} MB")]
    TooBig { limit_mb: u64 },
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub created_at: String,
    pub paasd_version: String,
    pub apps: Vec<String>,
    /// Add-on name -> its backup's file under `addons/`.
    pub addons: Vec<(String, String)>,
    /// (app, volume) pairs whose files are under `volumes/APP/NAME/`.
    pub volumes: Vec<(String, String)>,
}

pub struct Services {
    pub store: Store,
    pub secrets: SecretBox,
    pub key_file: PathBuf,
    pub state_dir: PathBuf,
    pub apps: Apps,
    pub slugs: Slugs,
    pub git: Git,
    pub volumes: Volumes,
    pub addons: Addons,
    pub certs: Certs,
    pub supervisor: Supervisor,
    /// The largest archive a restore takes.
    pub max_upload: u64,
    /// Restored apps and add-ons must run as uids of this range.
    pub uids: crate::apps::UidRange,
}

#[derive(Clone)]
pub struct PlatformBackups {
    s: Arc<Services>,
    /// One restore at a time (a second one gets 409).
    restoring: Arc<tokio::sync::Mutex<()>>,
}

impl PlatformBackups {
    pub fn new(s: Services) -> PlatformBackups {
        PlatformBackups {
            s: Arc::new(s),
            restoring: Arc::default(),
        }
    }

    /// At start: what a crashed paasd left of a backup or restore (copies of the key among
    /// them) goes.
    pub fn sweep(&self) {
        let Ok(rd) = std::fs::read_dir(self.work_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let gone = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match gone {
                Ok(()) => {
                    tracing::info!(path = %p.display(), "removed a platform backup's leftover")
                }
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove a platform backup's leftover")
                }
            }
        }
    }

    fn work_dir(&self) -> PathBuf {
        self.s.state_dir.join("backups").join("platform")
    }

    /// Writes the archive under `backups/platform/` and returns its path; the caller streams
    /// it out and removes it (a copy of the key must not stay behind).
    pub async fn create(&self) -> Result<PathBuf, BackupError> {
        let work = self.work_dir();
        std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
        set_mode(&work, 0o700);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
        let tmp = work.join(format!(".making-{stamp}"));
        std::fs::create_dir_all(&tmp).map_err(io("creating the backup's scratch dir"))?;
        let made = self.collect(&tmp, &stamp).await;
        let archive = work.join(format!("paas-backup-{stamp}.tar.gz"));
        let packed = match made {
            Ok(manifest) => {
                let (tmp2, archive2, s) = (tmp.clone(), archive.clone(), Arc::clone(&self.s));
                tokio::task::spawn_blocking(move || pack(&tmp2, &archive2, &manifest, &s))
                    .await
                    .map_err(|e| BackupError::Failed(format!("packing: {e}")))?
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&tmp);
        if let Err(e) = packed {
            let _ = std::fs::remove_file(&archive);
            return Err(e);
        }
        tracing::info!(archive = %archive.display(), "platform backup made");
        Ok(archive)
    }

    /// The parts made for this backup only: the database snapshot and the add-ons' dumps.
    async fn collect(&self, tmp: &Path, stamp: &str) -> Result<Manifest, BackupError> {
        self.s
            .store
            .snapshot(&tmp.join("paas.db"))
            .await
            .map_err(|e| BackupError::Failed(format!("database snapshot: {e}")))?;
        let apps: Vec<String> = self
            .s
            .apps
            .list()
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))?
            .into_iter()
            .map(|a| a.name)
            .collect();
        let addons_dir = tmp.join("addons");
        std::fs::create_dir_all(&addons_dir).map_err(io("creating addons/"))?;
        let mut addons = Vec::new();
        for a in self
            .s
            .addons
            .list(None)
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))?
        {
            let b = self
                .s
                .addons
                .backup(a.name.clone(), false)
                .await
                .map_err(|e| BackupError::Failed(format!("backing up add-on {}: {e}", a.name)))?;
            let ext = if a.kind == "redis" { "rdb" } else { "dump" };
            let from = self.s.addons.backup_path(&a.name, &b.name, ext);
            let file = format!("{}.{ext}", a.name);
            std::fs::copy(&from, addons_dir.join(&file))
                .map_err(io(format!("copying {}", from.display())))?;
            addons.push((a.name, file));
        }
        let mut volumes = Vec::new();
        std::fs::create_dir_all(tmp.join("volumes")).map_err(io("creating volumes/"))?;
        for app in &apps {
            for v in self
                .s
                .volumes
                .list(app.clone())
                .await
                .map_err(|e| BackupError::Failed(e.to_string()))?
            {
                // Read as the app's uid: a volume's files are the app's to shape.
                let dest = tmp.join("volumes").join(format!("{app}.{}.tar.gz", v.name));
                self.s
                    .volumes
                    .export(app, &v.name, dest)
                    .await
                    .map_err(|e| BackupError::Failed(format!("volume {app}/{}: {e}", v.name)))?;
                volumes.push((app.clone(), v.name));
            }
        }
        Ok(Manifest {
            format: FORMAT,
            created_at: stamp.to_string(),
            paasd_version: env!("CARGO_PKG_VERSION").into(),
            apps,
            addons,
            volumes,
        })
    }

    /// Restores `upload` (a gzipped tar from [`PlatformBackups::create`]) into this fresh
    /// install. Everything is checked before anything changes.
    pub async fn restore(
        &self,
        upload: tokio::sync::mpsc::Receiver<tarball::Chunk>,
    ) -> Result<paas_api::RestoredPlatform, BackupError> {
        let Ok(_one) = self.restoring.try_lock() else {
            return Err(BackupError::NotFresh("a restore under way".into()));
        };
        let apps = self
            .s
            .apps
            .list()
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))?;
        let addons = self
            .s
            .addons
            .list(None)
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))?;
        if !apps.is_empty() || !addons.is_empty() {
            return Err(BackupError::NotFresh(format!(
                "{} apps and {} add-ons",
                apps.len(),
                addons.len()
            )));
        }
        let work = self.work_dir();
        std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
        set_mode(&work, 0o700);
        let staged = work.join(".restoring");
        if staged.exists() {
            std::fs::remove_dir_all(&staged)
                .map_err(io("removing an earlier restore's leftovers"))?;
        }
        let landed = tarball::receive(
            upload,
            tarball::Intake {
                dest: staged.clone(),
                mode: 0o700,
                owner: None,
                // Slugs hold absolute symlinks (a venv's python); they are never followed here.
                kind: tarball::Kind::Rootfs,
                max_upload: self.s.max_upload,
                limits: tarball::Limits {
                    max_bytes: self.s.max_upload.saturating_mul(8),
                    max_entries: 5_000_000,
                    max_path: 4096,
                },
            },
        )
        .await;
        let _cleanup = RemoveOnDrop(staged.clone());
        match landed {
            Ok(_) => {}
            Err(tarball::TarballError::UploadTooLarge { limit }) => {
                return Err(BackupError::TooBig {
                    limit_mb: limit >> 20,
                })
            }
            Err(tarball::TarballError::Archive(a)) => {
                return Err(BackupError::Refused(a.to_string()))
            }
            Err(e) => return Err(BackupError::Refused(e.to_string())),
        }
        let (manifest, key) = check(&staged, self.s.uids)?;
        self.apply(&staged, &manifest, &key).await
    }

    async fn apply(
        &self,
        staged: &Path,
        manifest: &Manifest,
        key: &[u8],
    ) -> Result<paas_api::RestoredPlatform, BackupError> {
        let s = &self.s;
        let new_key =
            SecretBox::from_bytes(key).map_err(|e| BackupError::Refused(e.to_string()))?;
        s.store
            .restore_from(&staged.join("paas.db"))
            .await
            .map_err(|e| BackupError::Failed(format!("restoring the database: {e}")))?;
        s.secrets
            .replace(&new_key, key, &s.key_file)
            .map_err(|e| BackupError::Failed(format!("installing the key: {e}")))?;
        tracing::info!(
            apps = manifest.apps.len(),
            "platform restore: database and key in place"
        );
        let apps = s
            .apps
            .list()
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))?;
        // Slugs: the trees as they were, given to each app's uid.
        let slugs_from = staged.join("slugs");
        for a in &apps {
            let from = slugs_from.join(&a.name);
            if !from.is_dir() {
                continue;
            }
            let to = s.slugs.app_dir(&a.name);
            if let Some(p) = to.parent() {
                std::fs::create_dir_all(p).map_err(io("creating slugs/"))?;
            }
            if to.exists() {
                std::fs::remove_dir_all(&to).map_err(io(format!("clearing {}", to.display())))?;
            }
            std::fs::rename(&from, &to).map_err(io(format!("moving the slugs of {}", a.name)))?;
            if let Some(uid) = a.uid {
                s.slugs
                    .reown(&a.name, uid)
                    .map_err(io(format!("giving {}'s slugs to its uid", a.name)))?;
            }
        }
        let repos = s
            .git
            .restore_repos(staged.join("git"))
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))?;
        // Volumes: made and mounted empty, then filled with their files.
        s.volumes.mount_all().await;
        for (app, name) in &manifest.volumes {
            let from = staged.join("volumes").join(format!("{app}.{name}.tar.gz"));
            s.volumes
                .import(app, name, from)
                .await
                .map_err(|e| BackupError::Failed(format!("restoring volume {app}/{name}: {e}")))?;
        }
        // Add-ons: their backups where `paas addons backups` finds them, the services
        // started (on empty data, with their old passwords), then each restored.
        let mut restored_addons = 0;
        // Named like a manual backup made now (a fresh install has none to collide with).
        let backup = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        for (name, file) in &manifest.addons {
            let from = staged.join("addons").join(file);
            let ext = if file.ends_with(".rdb") {
                "rdb"
            } else {
                "dump"
            };
            let to = s.addons.backup_path(name, &backup, ext);
            if let Some(p) = to.parent() {
                std::fs::create_dir_all(p).map_err(io("creating the add-on backups dir"))?;
            }
            std::fs::copy(&from, &to).map_err(io(format!("placing the backup of {name}")))?;
        }
        s.addons.start(Vec::new()).await;
        for (name, _) in &manifest.addons {
            s.addons
                .restore(name.clone(), backup.clone())
                .await
                .map_err(|e| BackupError::Failed(format!("restoring add-on {name}: {e}")))?;
            restored_addons += 1;
        }
        if let Err(e) = s.git.sync_keys().await {
            tracing::warn!(error = %e, "could not rewrite authorized_keys after a restore");
        }
        s.certs
            .publish()
            .await
            .map_err(|e| BackupError::Failed(format!("certificates: {e}")))?;
        let supervisor = s.supervisor.clone();
        tokio::spawn(async move { supervisor.start_all().await });
        tracing::info!(
            apps = apps.len(),
            repos,
            addons = restored_addons,
            "platform restored"
        );
        Ok(paas_api::RestoredPlatform {
            apps: apps.into_iter().map(|a| a.name).collect(),
            addons: manifest.addons.iter().map(|(n, _)| n.clone()).collect(),
            volumes: manifest.volumes.len() as u32,
            repos: repos as u32,
        })
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
}

/// The staged archive as a whole: a manifest of our format, a sound database of a schema we
/// know, a key that opens its sealed values. Returns the manifest and the key.
fn check(staged: &Path, uids: crate::apps::UidRange) -> Result<(Manifest, Vec<u8>), BackupError> {
    let refused = |m: String| BackupError::Refused(m);
    let text = std::fs::read_to_string(staged.join(MANIFEST))
        .map_err(|_| refused(format!("it has no {MANIFEST}")))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| refused(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(refused(format!(
            "archive format {} (this paasd reads format {FORMAT})",
            manifest.format
        )));
    }
    let info = store::check_snapshot(&staged.join("paas.db"))
        .map_err(|e| refused(format!("paas.db: {e}")))?;
    let key = std::fs::read(staged.join("secret.key"))
        .map_err(|_| refused("it has no secret.key".into()))?;
    let sb = SecretBox::from_bytes(&key).map_err(|e| refused(format!("secret.key: {e}")))?;
    for (app_id, k, blob) in &info.sealed {
        if sb
            .open(&crate::apps::var_context(*app_id, k), blob)
            .is_err()
        {
            return Err(refused(
                "secret.key does not open the config vars in paas.db".into(),
            ));
        }
    }
    // Every row a name, path or uid comes from is held to the rules the API holds input to:
    // they become paths on this host and uids things run as.
    let valid = |n: &str| crate::apps::validate::app_name(n).is_ok();
    let in_range =
        |uid: i64| u32::try_from(uid).is_ok_and(|u| u >= uids.first && u - uids.first < uids.count);
    for (app, uid) in &info.apps {
        if !valid(app) || !uid.is_some_and(|u| in_range(i64::from(u))) {
            return Err(refused(format!("app {app:?}: not a valid name or uid")));
        }
    }
    for (app, name, path, size) in &info.volumes {
        if !valid(name)
            || crate::volumes::path_problem(path).is_some()
            || !(16..=1_048_576).contains(size)
        {
            return Err(refused(format!(
                "volume {app}/{name:?}: invalid name, path or size"
            )));
        }
    }
    for (name, kind, version, uid) in &info.addons {
        let version_ok =
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !valid(name)
            || crate::addons::kind::Kind::parse(kind).is_none()
            || !(version_ok || version == "host")
            || !in_range(*uid)
        {
            return Err(refused(format!(
                "add-on {name:?}: invalid name, kind, version or uid"
            )));
        }
    }
    for (name, file) in &manifest.addons {
        if !info.addons.iter().any(|a| &a.0 == name)
            || file.contains('/')
            || !staged.join("addons").join(file).is_file()
        {
            return Err(refused(format!(
                "add-on {name}: not in paas.db, or its backup {file} is missing"
            )));
        }
    }
    for (app, name) in &manifest.volumes {
        if !info.volumes.iter().any(|v| &v.0 == app && &v.1 == name)
            || !staged
                .join("volumes")
                .join(format!("{app}.{name}.tar.gz"))
                .is_file()
        {
            return Err(refused(format!(
                "volume {app}/{name}: not in paas.db, or its files are missing"
            )));
        }
    }
    Ok((manifest, key))
}

/// The archive: manifest, database, key, add-on dumps (from `tmp`), then the slugs of the
/// apps' current releases, their git repos and their volumes' files (from the state dir).
/// Symlinks are stored as symlinks, never followed.
fn pack(tmp: &Path, archive: &Path, manifest: &Manifest, s: &Services) -> Result<(), BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(archive)
        .map_err(io(format!("creating {}", archive.display())))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let add_file = |tar: &mut tar::Builder<_>, name: &str, path: &Path| {
        tar.append_path_with_name(path, name)
            .map_err(io(format!("adding {name}")))
    };
    let manifest_json =
        serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Failed(e.to_string()))?;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(manifest_json.len() as u64);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, manifest_json.as_slice())
        .map_err(io("adding the manifest"))?;
    add_file(&mut tar, "paas.db", &tmp.join("paas.db"))?;
    add_file(&mut tar, "secret.key", &s.key_file)?;
    tar.append_dir_all("addons", tmp.join("addons"))
        .map_err(io("adding the add-on backups"))?;
    for app in &manifest.apps {
        let slugs = s.slugs.app_dir(app);
        if slugs.is_dir() {
            tar.append_dir_all(format!("slugs/{app}"), &slugs)
                .map_err(io(format!("adding the slugs of {app}")))?;
        }
        let repo = crate::git::repos::path(&s.state_dir, app);
        if repo.is_dir() {
            tar.append_dir_all(format!("git/{app}.git"), &repo)
                .map_err(io(format!("adding the git repo of {app}")))?;
        }
    }
    tar.append_dir_all("volumes", tmp.join("volumes"))
        .map_err(io("adding the volumes"))?;
    let gz = tar.into_inner().map_err(io("finishing the archive"))?;
    let file = gz.finish().map_err(io("compressing the archive"))?;
    file.sync_all().map_err(io("syncing the archive"))?;
    Ok(())
}
