//! The bridge from an upload arriving in chunks on the async side to the blocking reader the
//! extractor wants, hashing and counting the bytes as they pass. Owns the upload size limit;
//! must not interpret the bytes.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// A chunk of the upload, or the transport's failure.
pub type Chunk = Result<Bytes, io::Error>;

/// Reads chunks from a channel on a blocking thread (`blocking_recv`): never use it from async
/// code.
pub struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    hasher: Sha256,
    bytes: u64,
    limit: u64,
    /// When the last byte arrived (the end of the "receive" phase).
    pub ended_at: Option<std::time::Instant>,
    over_limit: bool,
}

/// What came through, once the upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub sha256: String,
    pub bytes: u64,
}

/// The error inside the `io::Error` a read returns once the upload passed its limit.
#[derive(Debug, thiserror::Error)]
#[error("the upload is larger than the limit of {limit} bytes")]
pub struct OverLimit {
    pub limit: u64,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Chunk>, limit: u64) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
            hasher: Sha256::new(),
            bytes: 0,
            limit,
            ended_at: None,
            over_limit: false,
        }
    }

    /// True once the upload passed its limit. Layers above the reader may reword its error
    /// (gzip does), so this, not the error, is what callers check.
    pub fn over_limit(&self) -> bool {
        self.over_limit
    }

    /// Reads what is left (trailing bytes after the archive still belong to the upload and
    /// its checksum) and returns the totals.
    pub fn finish(&mut self) -> io::Result<Received> {
        io::copy(self, &mut io::sink())?;
        Ok(Received {
            sha256: hex(&self.hasher.clone().finalize()),
            bytes: self.bytes,
        })
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.bytes += chunk.len() as u64;
                    if self.bytes > self.limit {
                        self.over_limit = true;
                        return Err(io::Error::other(OverLimit { limit: self.limit }));
                    }
                    self.hasher.update(&chunk);
                    self.current = chunk;
                }
                Some(Err(e)) => return Err(e),
                None => {
                    self.ended_at.get_or_insert_with(std::time::Instant::now);
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Lower-case hex, as checksums are shown and stored.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_counts_everything() {
        let (tx, rx) = mpsc::channel(4);
        let t = std::thread::spawn(move || {
            let mut r = ChannelReader::new(rx, 100);
            let mut first = [0u8; 3];
            r.read_exact(&mut first).expect("read");
            assert_eq!(&first, b"abc");
            r.finish().expect("finish")
        });
        tx.blocking_send(Ok(Bytes::from_static(b"ab")))
            .expect("send");
        tx.blocking_send(Ok(Bytes::from_static(b"cdef")))
            .expect("send");
        drop(tx);
        let got = t.join().expect("join");
        assert_eq!(got.bytes, 6);
        assert_eq!(got.sha256, hex(&Sha256::digest(b"abcdef")));
    }

    #[test]
    fn stops_at_the_limit() {
        let (tx, rx) = mpsc::channel(4);
        tx.blocking_send(Ok(Bytes::from(vec![0u8; 11])))
            .expect("send");
        drop(tx);
        let mut r = ChannelReader::new(rx, 10);
        let err = r.read(&mut [0u8; 4]).expect_err("over");
        assert!(r.over_limit());
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<OverLimit>());
        assert_eq!(inner.map(|o| o.limit), Some(10));
    }
}
