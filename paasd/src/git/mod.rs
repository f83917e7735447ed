//! `git push` deploys: the SSH keys allowed to push (kept in SQLite, rendered into the git
//! user's authorized_keys with a forced command) and the bare repos the git shell hands to
//! `git-receive-pack`. Must not build or deploy: the repo's hook streams the pushed commit
//! to the deploy endpoint like any other client, so a push deploys exactly like
//! `paas deploy`.

pub mod keys;
pub mod repos;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use paas_api as api;

use crate::apps::{validate, AppError, Apps};
use crate::config::GitConfig;
use crate::store::{self, keys::KeyRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{0}")]
    InvalidKey(String),
    #[error("a key named '{0}' already exists; remove it first (`paas keys remove {0}`) or pick another name")]
    KeyExists(String),
    #[error("this key is already added as '{0}'")]
    DuplicateKey(String),
    #[error("no key named '{0}' (see `paas keys`)")]
    KeyNotFound(String),
    #[error("the git user '{0}' does not exist on this server; install.sh creates it, or set [git] user in paasd.toml")]
    NoUser(String),
    #[error("app '{0}' does not exist, and this server does not create apps on push ([git] create_on_push); run `paas create {0}` first")]
    NoApp(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> GitError {
    let context = context.into();
    move |source| GitError::Io { context, source }
}

/// The git-push service. Cheap to clone.
#[derive(Clone)]
pub struct Git {
    store: Store,
    apps: Apps,
    cfg: GitConfig,
    state_dir: PathBuf,
    /// The forced command without the key name, shell-quoted (`'/x/paas-git-shell' --socket '/s'`).
    command: String,
    /// Shell-quoted parts for the repo hooks.
    shell: String,
    socket: String,
}

impl Git {
    /// Checks the `[git]` settings that end up in shell commands.
    pub fn new(
        store: Store,
        apps: Apps,
        cfg: GitConfig,
        state_dir: PathBuf,
        socket: &Path,
    ) -> Result<Git, GitError> {
        let shell_path = match &cfg.shell {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(io_err("finding paasd's own binary"))?
                .with_file_name("paas-git-shell"),
        };
        let shell = keys::shell_quote(&shell_path.to_string_lossy()).map_err(GitError::Config)?;
        let socket = keys::shell_quote(&socket.to_string_lossy()).map_err(GitError::Config)?;
        for b in &cfg.branches {
            let ok = !b.is_empty()
                && !b.starts_with('-')
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/'));
            if !ok {
                return Err(GitError::Config(format!(
                    "[git] branches: '{}' is not a branch name paas accepts",
                    b.escape_debug()
                )));
            }
        }
        if cfg.branches.is_empty() {
            return Err(GitError::Config(
                "[git] branches is empty: no push could ever deploy".into(),
            ));
        }
        Ok(Git {
            store,
            apps,
            command: format!("{shell} --socket {socket}"),
            shell,
            socket,
            cfg,
            state_dir,
        })
    }

    pub async fn add_key(&self, req: api::AddKey) -> Result<api::SshKey, GitError> {
        keys::validate_name(&req.name).map_err(GitError::InvalidKey)?;
        let parsed = keys::parse(&req.public_key).map_err(GitError::InvalidKey)?;
        let this = self.clone();
        self.store
            .tx(move |tx| {
                if store::keys::by_name(tx, &req.name)?.is_some() {
                    return Err(GitError::KeyExists(req.name));
                }
                if let Some(other) = store::keys::by_blob(tx, &parsed.blob)? {
                    return Err(GitError::DuplicateKey(other.name));
                }
                let row = KeyRow {
                    name: req.name,
                    key_type: parsed.key_type,
                    blob: parsed.blob,
                    fingerprint: parsed.fingerprint,
                    created_at: store::now(),
                };
                store::keys::insert(tx, &row)?;
                // Written inside the transaction: a file that cannot be written undoes the row.
                this.write_authorized_keys(&store::keys::list(tx)?)?;
                tracing::info!(key = %row.name, fingerprint = %row.fingerprint, "ssh key added");
                Ok(view(&row))
            })
            .await
    }

    pub async fn keys(&self) -> Result<Vec<api::SshKey>, GitError> {
        self.store
            .tx(|tx| Ok(store::keys::list(tx)?.iter().map(view).collect()))
            .await
    }

    pub async fn remove_key(&self, name: String) -> Result<(), GitError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                if !store::keys::delete(tx, &name)? {
                    return Err(GitError::KeyNotFound(name));
                }
                this.write_authorized_keys(&store::keys::list(tx)?)?;
                tracing::info!(key = %name, "ssh key removed");
                Ok(())
            })
            .await
    }

    /// At start-up: rewrites authorized_keys so the forced commands carry this daemon's
    /// current socket and shell paths. Nothing to do while no key was ever added.
    pub async fn sync_keys(&self) -> Result<(), GitError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let all = store::keys::list(tx)?;
                if !all.is_empty() {
                    this.write_authorized_keys(&all)?;
                }
                Ok(())
            })
            .await
    }

    /// The git shell asks, for a key, for an app's repo: the app is created when a push
    /// names one that does not exist yet (unless configured otherwise); the repo is created
    /// or its hook refreshed.
    pub async fn access(&self, app: String, req: api::GitAccess) -> Result<api::GitRepo, GitError> {
        validate::app_name(&app).map_err(AppError::InvalidName)?;
        let key = req.key.clone();
        let known = self
            .store
            .tx(move |tx| Ok::<_, GitError>(store::keys::by_name(tx, &key)?.is_some()))
            .await?;
        if !known {
            return Err(GitError::KeyNotFound(req.key));
        }
        let mut created = false;
        match self.apps.info(app.clone()).await {
            Ok(_) => {}
            Err(AppError::NotFound(_))
                if req.service == api::GitService::ReceivePack && self.cfg.create_on_push =>
            {
                self.apps
                    .create(api::CreateApp {
                        name: app.clone(),
                        stack: None,
                        buildpack: None,
                    })
                    .await?;
                tracing::info!(app = %app, key = %req.key, "app created by a git push");
                created = true;
            }
            Err(AppError::NotFound(_)) if req.service == api::GitService::ReceivePack => {
                return Err(GitError::NoApp(app))
            }
            Err(e) => return Err(e.into()),
        }
        let repo = repos::path(&self.state_dir, &app);
        let hook = repos::hook(&self.shell, &self.socket, &app, &self.cfg.branches);
        let owner = self.owner()?;
        let r = repo.clone();
        tokio::task::spawn_blocking(move || repos::ensure(&r, &hook, owner))
            .await
            .map_err(|e| GitError::Io {
                context: "preparing the git repo".into(),
                source: io::Error::other(e),
            })?
            .map_err(io_err(format!("preparing the git repo {}", repo.display())))?;
        Ok(api::GitRepo {
            app,
            path: repo.to_string_lossy().into_owned(),
            branches: self.cfg.branches.clone(),
            created,
        })
    }

    fn owner(&self) -> Result<repos::Owner, GitError> {
        let user = self.user()?;
        Ok(repos::Owner {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    fn user(&self) -> Result<nix::unistd::User, GitError> {
        nix::unistd::User::from_name(&self.cfg.user)
            .ok()
            .flatten()
            .ok_or_else(|| GitError::NoUser(self.cfg.user.clone()))
    }

    fn authorized_keys_path(&self, user: &nix::unistd::User) -> PathBuf {
        self.cfg
            .authorized_keys
            .clone()
            .unwrap_or_else(|| user.dir.join(".ssh").join("authorized_keys"))
    }

    /// Replaces the file atomically (sshd never sees half of it), keeping the admin's own
    /// lines; owned by the git user, 0600 (sshd's StrictModes insists).
    fn write_authorized_keys(&self, all: &[KeyRow]) -> Result<(), GitError> {
        let user = self.user()?;
        let path = self.authorized_keys_path(&user);
        let dir = path
            .parent()
            .ok_or_else(|| GitError::Config(format!("{} has no directory", path.display())))?;
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("setting the mode of {}", dir.display())))?;
            std::os::unix::fs::chown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .map_err(io_err(format!("chown {}", dir.display())))?;
        }
        let existing = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        let lines: Vec<keys::Line<'_>> = all
            .iter()
            .map(|k| keys::Line {
                name: &k.name,
                key_type: &k.key_type,
                blob: &k.blob,
            })
            .collect();
        let text = keys::render(&existing, &self.command, &lines);
        let tmp = path.with_extension("paas-new");
        fs::write(&tmp, text).map_err(io_err(format!("writing {}", tmp.display())))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("setting the mode of {}", tmp.display())))?;
        std::os::unix::fs::chown(&tmp, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .map_err(io_err(format!("chown {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(io_err(format!("replacing {}", path.display())))?;
        Ok(())
    }
}

fn view(k: &KeyRow) -> api::SshKey {
    api::SshKey {
        name: k.name.clone(),
        key_type: k.key_type.clone(),
        fingerprint: k.fingerprint.clone(),
        created_at: crate::apps::rfc3339(k.created_at),
    }
}
