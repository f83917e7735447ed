//! Stacks as the API sees them: the list, and importing a root filesystem tarball as a named
//! stack under `STATE/stacks/NAME` (unpacked by our own extractor, then handed to the runtime).
//! Owns the import's naming and atomicity rules; must not mount anything.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::apps::validate;
use crate::build::{extract, upload};
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
    max_mb: u64,
}

/// Stacks imported by an earlier paasd (every dir under `STATE/stacks` but the host
/// skeleton); half-finished imports are removed.
pub fn imported(state_dir: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    let dir = state_dir.join("stacks");
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".import-") {
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
        max_mb: u64,
    ) -> Stacks {
        Stacks {
            runtime,
            dir: state_dir.join("stacks"),
            names,
            max_mb,
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
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let scratch = self.dir.join(format!(".import-{name}-{nanos}"));
        let target = self.dir.join(&name);
        let limit = self.max_mb.saturating_mul(1 << 20);
        let (s, t) = (scratch.clone(), target.clone());
        let unpacked = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&s).map_err(|e| StackError::Internal(e.to_string()))?;
            // The stack's `/` is this dir: world-readable like any root.
            std::fs::set_permissions(&s, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(|e| StackError::Internal(e.to_string()))?;
            let mut reader = upload::ChannelReader::new(upload, limit);
            let r = extract::extract_gz(
                &mut reader,
                &s,
                extract::Kind::Rootfs,
                extract::Limits {
                    max_bytes: limit.saturating_mul(4),
                    max_entries: 2_000_000,
                    max_path: 4096,
                },
            );
            if reader.over_limit {
                return Err(StackError::TooBig {
                    limit_mb: limit >> 20,
                });
            }
            let summary = r.map_err(StackError::Source)?;
            if t.exists() {
                return Err(StackError::Exists(t.display().to_string()));
            }
            std::fs::rename(&s, &t).map_err(|e| StackError::Internal(e.to_string()))?;
            Ok(summary)
        })
        .await
        .map_err(|e| StackError::Internal(e.to_string()))?;
        let summary = match unpacked {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
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
