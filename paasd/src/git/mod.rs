//! `git push` deploys: the SSH keys allowed to push (kept in SQLite, rendered into the git
//! user's authorized_keys with a forced command) and the bare repos the git shell hands to
//! `git-receive-pack`. Must not build or deploy: the repo's hook streams the pushed commit
//! to the deploy endpoint like any other client, so a push deploys exactly like
//! `paas deploy`.

pub mod keys;
pub mod repos;
mod safe_file;

use std::io;
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
    /// The largest pack a push may send (`receive.maxInputSize`).
    max_push_bytes: u64,
    /// The git user's uid, unless it is root (tests): the API limits that user to pushing.
    push_uid: Option<u32>,
}

impl Git {
    /// Checks the `[git]` settings that end up in shell commands and writes the repos' hook.
    pub fn new(
        store: Store,
        apps: Apps,
        cfg: GitConfig,
        state_dir: PathBuf,
        socket: &Path,
        max_push_bytes: u64,
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
        if !shell_path.exists() {
            tracing::warn!(path = %shell_path.display(), "paas-git-shell not found: git pushes will fail until it is installed there");
        }
        let hook = repos::hook(&shell, &socket, &cfg.branches);
        repos::write_hook(&state_dir, &hook)
            .map_err(io_err("writing the git hook under the state dir"))?;
        let push_uid = nix::unistd::User::from_name(&cfg.user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
            .filter(|uid| *uid != 0);
        Ok(Git {
            push_uid,
            store,
            apps,
            command: format!("{shell} --socket {socket}"),
            cfg,
            state_dir,
            max_push_bytes,
        })
    }

    /// The uid `git push` arrives as (none when that is root).
    pub fn push_uid(&self) -> Option<u32> {
        self.push_uid
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
    /// current socket and shell paths, and lines of keys this database does not know (an
    /// older install's) go. Nothing to do while there is no key and no file.
    pub async fn sync_keys(&self) -> Result<(), GitError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let all = store::keys::list(tx)?;
                let file_exists = this
                    .user()
                    .map(|u| this.authorized_keys_path(&u).exists())
                    .unwrap_or(false);
                if !all.is_empty() || file_exists {
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
                match self
                    .apps
                    .create(api::CreateApp {
                        name: app.clone(),
                        stack: None,
                        buildpack: None,
                    })
                    .await
                {
                    Ok(_) => {
                        tracing::info!(app = %app, key = %req.key, "app created by a git push");
                        created = true;
                    }
                    // A push racing this one created it first.
                    Err(AppError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(AppError::NotFound(_)) if req.service == api::GitService::ReceivePack => {
                return Err(GitError::NoApp(app))
            }
            Err(e) => return Err(e.into()),
        }
        let repo = repos::path(&self.state_dir, &app);
        let r = repo.clone();
        let hooks = repos::hooks_dir(&self.state_dir);
        let max_input_bytes = self.max_push_bytes;
        let this = self.clone();
        // The user lookup (NSS) and the repo's git commands block: not on an async worker.
        tokio::task::spawn_blocking(move || {
            let owner = this.owner()?;
            let settings = repos::Settings {
                hooks_dir: &hooks,
                max_input_bytes,
            };
            repos::ensure(&r, &settings, owner)
                .map_err(io_err(format!("preparing the git repo {}", r.display())))
        })
        .await
        .map_err(|e| GitError::Io {
            context: "preparing the git repo".into(),
            source: io::Error::other(e),
        })??;
        Ok(api::GitRepo {
            app,
            path: repo.to_string_lossy().into_owned(),
            branches: self.cfg.branches.clone(),
            created,
        })
    }

    /// A platform restore: every `APP.git` under `staged` whose app exists becomes this
    /// install's repo of that app (see [`repos::restore`]). Returns how many.
    pub async fn restore_repos(&self, staged: std::path::PathBuf) -> Result<usize, GitError> {
        let names: Vec<String> = self
            .apps
            .list()
            .await?
            .into_iter()
            .map(|a| a.name)
            .collect();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let found: Vec<String> = names
                .into_iter()
                .filter(|app| staged.join(format!("{app}.git")).is_dir())
                .collect();
            if found.is_empty() {
                return Ok(0);
            }
            // Without the git user the apps still run (their slugs came back); only their
            // pushes' history is left out, and said so.
            let owner = match this.owner() {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, repos = found.len(), "git repos not restored");
                    return Ok(0);
                }
            };
            let hooks = repos::hooks_dir(&this.state_dir);
            let settings = repos::Settings {
                hooks_dir: &hooks,
                max_input_bytes: this.max_push_bytes,
            };
            let mut n = 0;
            for app in found {
                let from = staged.join(format!("{app}.git"));
                let to = repos::path(&this.state_dir, &app);
                if let Some(p) = to.parent() {
                    fs_create(p)?;
                }
                repos::restore(&from, &to, &settings, owner)
                    .map_err(io_err(format!("restoring the git repo of {app}")))?;
                n += 1;
            }
            Ok(n)
        })
        .await
        .map_err(|e| GitError::Io {
            context: "restoring git repos".into(),
            source: io::Error::other(e),
        })?
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
    /// lines; owned by the git user, 0600 (sshd's StrictModes insists). The directory is the
    /// git user's, so nothing in it is followed (see `safe_file`); it must exist already
    /// (install.sh makes it): one made by root here would be unreadable to sshd's checks.
    fn write_authorized_keys(&self, all: &[KeyRow]) -> Result<(), GitError> {
        let user = self.user()?;
        let path = self.authorized_keys_path(&user);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Err(GitError::Config(format!(
                "[git] authorized_keys {} is not a file path",
                path.display()
            )));
        };
        if !dir.is_dir() {
            return Err(GitError::Config(format!(
                "{} does not exist; create it for the git user '{}' (mode 0700; install.sh does)",
                dir.display(),
                self.cfg.user
            )));
        }
        let existing = safe_file::read(dir, name)
            .map_err(io_err(format!("reading {}", path.display())))?
            .unwrap_or_default();
        let lines: Vec<keys::Line<'_>> = all
            .iter()
            .map(|k| keys::Line {
                name: &k.name,
                key_type: &k.key_type,
                blob: &k.blob,
            })
            .collect();
        let text = keys::render(&existing, &self.command, &lines);
        safe_file::replace(
            dir,
            name,
            text.as_bytes(),
            0o600,
            user.uid.as_raw(),
            user.gid.as_raw(),
        )
        .map_err(io_err(format!("replacing {}", path.display())))
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

fn fs_create(p: &std::path::Path) -> Result<(), GitError> {
    std::fs::create_dir_all(p).map_err(io_err(format!("creating {}", p.display())))
}
