//! The one path an untrusted gzipped tarball takes onto disk (deploy uploads and stack
//! imports alike): the upload's byte limit, a scratch dir next to the destination, the
//! defensive extractor with its limits, the checksum of what arrived, and the rename into
//! place. Nothing of a refused or failed upload remains. Must not know what the tree is for
//! (builds and stacks decide that) nor speak HTTP (the API only feeds chunks in).

pub mod extract;
pub mod upload;

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

pub use extract::{ExtractError, Kind, Limits, Summary};
pub use upload::{Chunk, Received};

/// Why an upload did not make it into place.
#[derive(Debug, thiserror::Error)]
pub enum TarballError {
    /// More compressed bytes arrived than the caller allows.
    #[error("the upload is larger than {limit} bytes")]
    UploadTooLarge { limit: u64 },
    /// The archive itself is unacceptable (or our side failed while unpacking it).
    #[error(transparent)]
    Archive(#[from] ExtractError),
    /// The destination appeared meanwhile (two imports of one name).
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

/// What one upload is: where it goes and what it may be.
#[derive(Debug, Clone)]
pub struct Intake {
    /// The final directory; it must not exist yet. Its parent must.
    pub dest: PathBuf,
    /// Mode of `dest` itself (a rootfs is 0755 like any `/`).
    pub mode: u32,
    /// Owner of `dest` itself (sources belong to the app user), else root's.
    pub owner: Option<(u32, u32)>,
    pub kind: Kind,
    /// Compressed bytes the upload may have.
    pub max_upload: u64,
    pub limits: Limits,
}

/// What arrived and what it unpacked to, with when the last byte came in (the end of the
/// "receive" phase, for timings).
#[derive(Debug, Clone)]
pub struct Landed {
    pub received: Received,
    pub summary: Summary,
    pub ended_at: Option<std::time::Instant>,
}

/// Removes a scratch tree unless it was renamed into place.
struct Scratch(Option<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if let Err(e) = fs::remove_dir_all(&dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove an upload's scratch dir");
                }
            }
        }
    }
}

/// The prefix of scratch dirs, so a starting paasd can tell a half-received upload from a
/// finished tree (see [`is_scratch`]).
const SCRATCH_PREFIX: &str = ".receiving-";

/// True for a name [`receive`] uses while an upload is in flight; such a dir is garbage once
/// its paasd is gone.
pub fn is_scratch(name: &str) -> bool {
    name.starts_with(SCRATCH_PREFIX)
}

/// Receives the upload arriving on `upload` into `intake.dest`. Runs the blocking extractor
/// on a blocking thread; returns once the tree is in place or nothing of it remains.
pub async fn receive(
    upload: mpsc::Receiver<Chunk>,
    intake: Intake,
) -> Result<Landed, TarballError> {
    tokio::task::spawn_blocking(move || receive_blocking(upload, &intake))
        .await
        .map_err(|e| TarballError::Io {
            context: "the unpacking task".into(),
            source: io::Error::other(e.to_string()),
        })?
}

fn receive_blocking(
    upload: mpsc::Receiver<Chunk>,
    intake: &Intake,
) -> Result<Landed, TarballError> {
    let io_err = |context: &str| {
        let context = context.to_string();
        move |source| TarballError::Io { context, source }
    };
    let parent = intake.dest.parent().ok_or_else(|| TarballError::Io {
        context: format!("{} has no parent", intake.dest.display()),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let leaf = intake
        .dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let scratch_path = parent.join(format!("{SCRATCH_PREFIX}{leaf}-{nanos}"));
    fs::create_dir(&scratch_path).map_err(io_err("creating the scratch dir"))?;
    let mut scratch = Scratch(Some(scratch_path.clone()));
    fs::set_permissions(&scratch_path, fs::Permissions::from_mode(intake.mode))
        .map_err(io_err("setting the scratch dir's mode"))?;
    if let Some((uid, gid)) = intake.owner {
        lchown(&scratch_path, Some(uid), Some(gid)).map_err(io_err("owning the scratch dir"))?;
    }

    let mut reader = upload::ChannelReader::new(upload, intake.max_upload);
    let unpacked = extract::extract_gz(&mut reader, &scratch_path, intake.kind, intake.limits);
    // The reader knows for certain whether the limit was passed; the gzip layer above it may
    // have turned that into any kind of read error.
    if reader.over_limit() {
        return Err(TarballError::UploadTooLarge {
            limit: intake.max_upload,
        });
    }
    let summary = unpacked?;
    let received = reader
        .finish()
        .map_err(|e| ExtractError::Format(e.to_string()))?;
    if reader.over_limit() {
        return Err(TarballError::UploadTooLarge {
            limit: intake.max_upload,
        });
    }
    if intake.dest.exists() {
        return Err(TarballError::Exists(intake.dest.clone()));
    }
    fs::rename(&scratch_path, &intake.dest).map_err(io_err("moving the upload into place"))?;
    scratch.0 = None;
    Ok(Landed {
        received,
        summary,
        ended_at: reader.ended_at,
    })
}

/// Removes scratch dirs of uploads a previous paasd left in `dir`.
pub fn remove_leftovers(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if is_scratch(&e.file_name().to_string_lossy()) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn targz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("tar").finish().expect("gz")
    }

    fn intake(dest: PathBuf, max_upload: u64) -> Intake {
        Intake {
            dest,
            mode: 0o755,
            owner: None,
            kind: Kind::Rootfs,
            max_upload,
            limits: Limits::default(),
        }
    }

    async fn send(bytes: Vec<u8>) -> mpsc::Receiver<Chunk> {
        let (tx, rx) = mpsc::channel(bytes.len() / 1024 + 2);
        for c in bytes.chunks(1024) {
            tx.send(Ok(Bytes::copy_from_slice(c))).await.expect("send");
        }
        rx
    }

    #[tokio::test]
    async fn lands_in_place_with_its_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gz = targz(&[("a.txt", b"hello")]);
        let dest = dir.path().join("tree");
        let landed = receive(send(gz.clone()).await, intake(dest.clone(), 1 << 20))
            .await
            .expect("receive");
        assert_eq!(fs::read(dest.join("a.txt")).expect("read"), b"hello");
        assert_eq!(landed.received.bytes, gz.len() as u64);
        assert_eq!(landed.summary.files, 1);
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no scratch left"
        );
    }

    #[tokio::test]
    async fn over_the_upload_limit_is_a_typed_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Incompressible bytes (a small LCG), so the gzip is as large as the data.
        let mut x = 1u32;
        let big: Vec<u8> = (0..200_000)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let gz = targz(&[("big.bin", &big)]);
        let err = receive(send(gz).await, intake(dir.path().join("tree"), 10_000))
            .await
            .expect_err("too large");
        assert!(
            matches!(err, TarballError::UploadTooLarge { limit: 10_000 }),
            "{err:?}"
        );
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[tokio::test]
    async fn a_refused_archive_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut raw = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        // `append_data` refuses `..`, so write the path into the header by hand.
        h.as_old_mut().name[..7].copy_from_slice(b"../evil");
        h.set_cksum();
        raw.append(&h, &b"x"[..]).expect("append");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &raw.into_inner().expect("tar")).expect("gz");
        let err = receive(
            send(gz.finish().expect("gz")).await,
            intake(dir.path().join("tree"), 1 << 20),
        )
        .await
        .expect_err("refused");
        assert!(
            matches!(err, TarballError::Archive(ExtractError::Refused { .. })),
            "{err:?}"
        );
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[tokio::test]
    async fn an_existing_destination_is_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("tree");
        fs::create_dir(&dest).expect("mkdir");
        fs::write(dest.join("keep"), "x").expect("write");
        let err = receive(
            send(targz(&[("a", b"a")])).await,
            intake(dest.clone(), 1 << 20),
        )
        .await
        .expect_err("exists");
        assert!(matches!(err, TarballError::Exists(_)), "{err:?}");
        assert!(dest.join("keep").exists());
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn leftovers_are_recognised_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join(".receiving-x-1")).expect("mkdir");
        fs::create_dir(dir.path().join("keep")).expect("mkdir");
        remove_leftovers(dir.path());
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["keep"]);
    }
}
