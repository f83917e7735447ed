//! Stacks as the API sees them: the list, and importing a root filesystem tarball as a named
//! stack under `STATE/stacks/NAME` (unpacked by our own extractor, then handed to the runtime).
//! Owns the import's naming and atomicity rules; must not mount anything.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::apps::validate;
use crate::tarball::{self, extract, upload, TarballError};
use paas_runtime::{Runtime, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{0}")]
    InvalidName(String),
    #[error("stack '{0}' already exists; import under another name")]
    Exists(String),
    #[error(transparent)]
    Source(extract::ExtractError),
    #[error("the stack tarball is larger than {limit_mb} MB (max_stack_mb)")]
    TooBig { limit_mb: u64 },
    #[error("the tarball is not a root filesystem: {0}")]
    NotRootfs(String),
    #[error("importing the stack: {0}")]
    Internal(String),
}

#[derive(Clone)]
pub struct Stacks {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    /// Shared with the app service, which checks `paas create --stack` against it.
    names: Arc<RwLock<Vec<String>>>,
    /// Compressed bytes an imported tarball may have.
    max_upload: u64,
}

/// Stacks imported by an earlier paasd (every dir under `STATE/stacks` but the host
/// skeleton); half-finished imports are removed.
pub fn imported(state_dir: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    let dir = crate::config::StatePaths::new(state_dir).stacks();
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if tarball::is_scratch(&name) || name.starts_with(".import-") {
            let _ = std::fs::remove_dir_all(e.path());
        } else if name != "host" && validate::app_name(&name).is_ok() && e.path().is_dir() {
            out.insert(name, e.path());
        }
    }
    out
}

impl Stacks {
    pub fn new(
        runtime: Arc<Runtime>,
        state_dir: &Path,
        names: Arc<RwLock<Vec<String>>>,
        max_upload: u64,
    ) -> Stacks {
        Stacks {
            runtime,
            dir: crate::config::StatePaths::new(state_dir).stacks(),
            names,
            max_upload,
        }
    }

    pub fn list(&self) -> Vec<String> {
        self.runtime.stacks()
    }

    /// Unpacks the tarball arriving on `upload` into a fresh dir, checks it is a root
    /// filesystem and makes it stack `name`. Nothing of a failed import remains.
    pub async fn import(
        &self,
        name: String,
        upload: mpsc::Receiver<upload::Chunk>,
    ) -> Result<paas_api::StackImported, StackError> {
        validate::app_name(&name)
            .map_err(|m| StackError::InvalidName(m.replace("app name", "stack name")))?;
        if self.runtime.stacks().contains(&name) {
            return Err(StackError::Exists(name));
        }
        let target = self.dir.join(&name);
        let max_upload = self.max_upload;
        let landed = tarball::receive(
            upload,
            tarball::Intake {
                dest: target.clone(),
                // The stack's `/` is this dir: world-readable like any root.
                mode: 0o755,
                owner: None,
                kind: tarball::Kind::Rootfs,
                max_upload,
                limits: tarball::Limits {
                    max_bytes: max_upload.saturating_mul(4),
                    max_entries: 2_000_000,
                    max_path: 4096,
                },
            },
        )
        .await
        .map_err(|e| match e {
            TarballError::UploadTooLarge { limit } => StackError::TooBig {
                limit_mb: limit >> 20,
            },
            TarballError::Archive(a) => StackError::Source(a),
            TarballError::Exists(p) => StackError::Exists(p.display().to_string()),
            TarballError::Io { .. } => StackError::Internal(e.to_string()),
        })?;
        let summary = landed.summary;
        if let Err(e) = self.runtime.add_stack(&name, &target) {
            let _ = std::fs::remove_dir_all(&target);
            return Err(match e {
                RuntimeError::Setup { error, .. } => StackError::NotRootfs(error),
                other => StackError::Internal(other.to_string()),
            });
        }
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
        tracing::info!(stack = %name, files = summary.files, bytes = summary.bytes, "stack imported");
        Ok(paas_api::StackImported {
            name,
            files: summary.files,
            bytes: summary.bytes,
        })
    }
}
