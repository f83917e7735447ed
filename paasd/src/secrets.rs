//! Encryption at rest for config vars: XChaCha20-Poly1305 with a 32-byte key file created
//! 0600 on first start. Owns the key file and the sealed-blob format
//! (`version byte || 24-byte nonce || ciphertext+tag`); must not know about SQL or apps.
//! The associated data binds a blob to where it is stored, so a value copied to another
//! app or key does not decrypt.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("key file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {} must hold exactly 32 bytes, found {len}", .path.display())]
    BadKeyLength { path: PathBuf, len: usize },
    #[error("key file {} is readable by others (mode {mode:o}); chmod 600 it", .path.display())]
    KeyTooOpen { path: PathBuf, mode: u32 },
    #[error("a stored secret could not be decrypted (wrong key file or corrupted database)")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

/// 32 bytes from the OS's random source as 64 lowercase hex characters (app.json's
/// `"generator": "secret"`).
pub fn random_hex() -> String {
    XChaCha20Poly1305::generate_key(&mut OsRng)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The loaded key. Clones share it: a platform restore replaces it for every holder at once
/// ([`SecretBox::replace`]).
#[derive(Clone)]
pub struct SecretBox {
    cipher: std::sync::Arc<std::sync::RwLock<XChaCha20Poly1305>>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Loads the key file, creating it (0600, random) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                f.write_all(key.as_slice()).map_err(io)?;
                f.sync_all().map_err(io)?;
                tracing::info!(path = %path.display(), "created config-var encryption key");
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let mut f = fs::File::open(path).map_err(io)?;
        let mode = f.metadata().map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::KeyTooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut bytes = Vec::with_capacity(KEY_LEN);
        Read::by_ref(&mut f)
            .take(KEY_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() != KEY_LEN {
            return Err(SecretError::BadKeyLength {
                path: path.to_path_buf(),
                len: bytes.len(),
            });
        }
        Ok(SecretBox::from_key(&bytes))
    }

    fn from_key(bytes: &[u8]) -> SecretBox {
        SecretBox {
            cipher: std::sync::Arc::new(std::sync::RwLock::new(XChaCha20Poly1305::new(
                Key::from_slice(bytes),
            ))),
        }
    }

    /// A box for a key given as bytes (a backup's), refused unless it is a key's length.
    pub fn from_bytes(bytes: &[u8]) -> Result<SecretBox, SecretError> {
        if bytes.len() != KEY_LEN {
            return Err(SecretError::BadKeyLength {
                path: PathBuf::from("(backup)"),
                len: bytes.len(),
            });
        }
        Ok(SecretBox::from_key(bytes))
    }

    /// Makes `other`'s key this box's (and every clone's), and writes it to `path` (0600,
    /// replaced atomically).
    pub fn replace(&self, other: &SecretBox, bytes: &[u8], path: &Path) -> Result<(), SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("restoring");
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, path).map_err(io)?;
        let new = other
            .cipher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        *self.cipher.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// Seals `plain`, bound to `context` (e.g. `config:<app id>:<KEY>`).
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, SecretError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a blob made by [`SecretBox::seal`] with the same `context`.
    pub fn open(&self, context: &str, blob: &[u8]) -> Result<Vec<u8>, SecretError> {
        if blob.len() < 1 + NONCE_LEN || blob[0] != FORMAT_V1 {
            return Err(SecretError::Decrypt);
        }
        let nonce = XNonce::from_slice(&blob[1..1 + NONCE_LEN]);
        self.cipher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .decrypt(
                nonce,
                Payload {
                    msg: &blob[1 + NONCE_LEN..],
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let b = SecretBox::from_key(&[7u8; 32]);
        let blob = b.seal("config:1:DB", b"hunter2").expect("seal");
        assert!(!blob.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(b.open("config:1:DB", &blob).expect("open"), b"hunter2");
        assert!(b.open("config:2:DB", &blob).is_err());
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(b.open("config:1:DB", &tampered).is_err());
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k/secret.key");
        let a = SecretBox::load_or_create(&path).expect("create");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let blob = a.seal("x", b"v").expect("seal");
        let b = SecretBox::load_or_create(&path).expect("reload");
        assert_eq!(b.open("x", &blob).expect("open"), b"v");
    }

    #[test]
    fn open_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        fs::write(&path, [1u8; 32]).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            SecretBox::load_or_create(&path),
            Err(SecretError::KeyTooOpen { .. })
        ));
    }
}
