//! Streaming a [`Source`] as a request body: a blocking thread packs the directory (or reads
//! the tarball) into bounded chunks, the body hands them to hyper as it asks for them, so
//! memory stays at a few chunks whatever the source's size. Owns the upload progress display;
//! must not know the endpoint or read the answer.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use paas_api::client::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::source::{self, Source};

/// Bytes per chunk handed to hyper.
const CHUNK: usize = 64 * 1024;
/// Chunks that may wait between the packer and the socket.
const CHANNEL_DEPTH: usize = 8;

/// A running upload: the body to send and the thread producing it.
pub struct Upload {
    pub body: UploadBody,
    pub producer: JoinHandle<io::Result<()>>,
    pub progress: ProgressBar,
}

/// The request body: chunks from the producer, counted on the progress bar as hyper takes them.
pub struct UploadBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    exact: Option<u64>,
    progress: ProgressBar,
}

impl Upload {
    /// Starts producing `source`. `attended` shows a progress bar on stderr (a bar for a
    /// tarball, whose size is known; a spinner with the byte count for a directory).
    pub fn start(source: Source, attended: bool) -> Upload {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let exact = match &source {
            Source::Tarball { size, .. } => Some(*size),
            Source::Dir { .. } => None,
        };
        let progress = progress_bar(exact, attended);
        let producer = tokio::task::spawn_blocking(move || {
            let mut out = ChunkWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let result = produce(&source, &mut out).and_then(|()| out.flush());
            if let Err(e) = &result {
                // Make the body fail rather than end cleanly: a truncated tarball must not look
                // like a whole one to the daemon. (Ignored when the request is already gone.)
                let _ = out
                    .tx
                    .blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
            }
            result
        });
        Upload {
            body: UploadBody {
                rx,
                exact,
                progress: progress.clone(),
            },
            producer,
            progress,
        }
    }
}

fn produce(source: &Source, out: &mut ChunkWriter) -> io::Result<()> {
    match source {
        Source::Dir { root, entries } => source::pack(root, entries, out).map(drop),
        Source::Tarball { path, size } => {
            let file = std::fs::File::open(path)?;
            // Exactly the announced length: a growing file must not break Content-Length.
            let copied = io::copy(&mut file.take(*size), out)?;
            if copied != *size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while being uploaded", path.display()),
                ));
            }
            Ok(())
        }
    }
}

fn progress_bar(total: Option<u64>, attended: bool) -> ProgressBar {
    if !attended {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "       [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("       {spinner} {bytes} {binary_bytes_per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

impl Body for UploadBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.progress.inc(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                self.progress.set_message("uploaded, paasd is unpacking");
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        // A known size goes out with Content-Length (the daemon can refuse a too-large upload
        // at once); a packed directory goes out chunked.
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Collects writes into [`CHUNK`]-sized pieces and sends them, waiting while the channel is
/// full. A dropped receiver (the request ended) turns into `BrokenPipe`, which stops the packer.
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload was cut off"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn body_carries_exactly_what_pack_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Incompressible content (xorshift), so the archive spans several chunks.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20 {
            let data: Vec<u8> = (0..20_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            std::fs::write(dir.path().join(format!("f{i}")), data).expect("write");
        }
        let entries = source::walk(dir.path(), &mut |w| panic!("{w}")).expect("walk");
        let expected = source::pack(dir.path(), &entries, Vec::new()).expect("pack");
        assert!(expected.len() > 3 * CHUNK);
        let upload = Upload::start(
            Source::Dir {
                root: dir.path().to_owned(),
                entries,
            },
            false,
        );
        assert_eq!(upload.body.size_hint().exact(), None);
        let got = upload.body.collect().await.expect("body").to_bytes();
        assert_eq!(got.as_ref(), expected.as_slice());
        upload.producer.await.expect("join").expect("produced");
    }

    #[tokio::test]
    async fn tarball_has_an_exact_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.tgz");
        std::fs::write(&path, [0x1f, 0x8b, 1, 2, 3]).expect("write");
        let upload = Upload::start(Source::Tarball { path, size: 5 }, false);
        assert_eq!(upload.body.size_hint().exact(), Some(5));
        let got = upload.body.collect().await.expect("body").to_bytes();
        assert_eq!(got.as_ref(), [0x1f, 0x8b, 1, 2, 3]);
    }

    #[tokio::test]
    async fn a_failing_source_fails_the_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entries = vec![source::Entry {
            path: "gone".into(),
            kind: source::Kind::File,
        }];
        let upload = Upload::start(
            Source::Dir {
                root: dir.path().to_owned(),
                entries,
            },
            false,
        );
        assert!(upload.body.collect().await.is_err());
        let err = upload.producer.await.expect("join").expect_err("fails");
        assert!(err.to_string().contains("gone"), "{err}");
    }

    #[tokio::test]
    async fn a_dropped_body_stops_the_producer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = vec![7u8; 4 * 1024 * 1024];
        std::fs::write(dir.path().join("big"), &data).expect("write");
        let path = dir.path().join("big");
        let upload = Upload::start(
            Source::Tarball {
                path,
                size: data.len() as u64,
            },
            false,
        );
        drop(upload.body);
        let err = upload.producer.await.expect("join").expect_err("cut off");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
