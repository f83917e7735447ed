//! One app's log segment sets on disk: `STATE/logs/APP/stream/` (app output, router, cron)
//! and `STATE/logs/APP/platform/` (platform events and build output, [`Set`]), each of
//! `<20-digit sequence>.ndjson` files, one `LogLine` as JSON per line plus its write
//! sequence ([`encode`]), oldest segment first by name. Owns file naming, appending, size-based rotation (a set's total never exceeds its
//! cap) and reading segments back. Must not know about filters, followers or threads: one
//! writer owns an [`AppStream`] per set, readers only read whole lines up to a position the
//! writer handed out.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Sub-directory of `STATE/logs/APP` that holds the stream (deploy logs sit next to it).
pub const STREAM_DIR: &str = "stream";
/// Sub-directory of `STATE/logs/APP` that holds platform and build lines.
pub const PLATFORM_DIR: &str = "platform";

/// The segment sets of an app, each with its own cap: what the app prints cannot rotate
/// away what the platform said about it. (Streams written before the split keep their
/// platform lines in `stream/`, where they age out as before; readers read both sets.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Set {
    /// App output, router access lines, cron output: `[logs] max_mb_per_app`.
    Stream,
    /// Platform events and build output: `[logs] platform_mb_per_app`.
    Platform,
}

impl Set {
    pub const ALL: [Set; 2] = [Set::Stream, Set::Platform];

    pub fn dir_name(self) -> &'static str {
        match self {
            Set::Stream => STREAM_DIR,
            Set::Platform => PLATFORM_DIR,
        }
    }
}

/// Where each set of an app ended when the writer last flushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ends {
    pub stream: Option<End>,
    pub platform: Option<End>,
}

impl Ends {
    pub fn get(&self, set: Set) -> Option<End> {
        match set {
            Set::Stream => self.stream,
            Set::Platform => self.platform,
        }
    }

    pub fn set(&mut self, set: Set, end: Option<End>) {
        match set {
            Set::Stream => self.stream = end,
            Set::Platform => self.platform = end,
        }
    }
}
const EXT: &str = ".ndjson";
const DIGITS: usize = 20;

/// Size limits of one app's stream, already made consistent (see `LogConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Everything on disk for the stream stays at or below this.
    pub max_bytes: u64,
    /// A segment is closed before it would grow past this.
    pub segment_bytes: u64,
}

/// The end of a stream as the writer last flushed it: readers read no further, so they never
/// see a half-written line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub seq: u64,
    pub len: u64,
}

/// The key [`encode`] adds after a `LogLine`'s own fields: the order the writer wrote the
/// line in, across an app's sets (nanoseconds since the epoch, made strictly increasing).
/// Timestamps cannot order lines of the two sets alone: they are milliseconds and come
/// from several clocks.
const SEQ_KEY: &[u8] = b",\"seq\":";

/// A stored line: the `LogLine` as JSON, with [`SEQ_KEY`] as its last key, and a newline.
pub fn encode(line: &paas_api::LogLine, seq: u64) -> serde_json::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(line)?;
    if bytes.pop() != Some(b'}') {
        return Err(serde::ser::Error::custom("a log line is not a JSON object"));
    }
    bytes.extend_from_slice(SEQ_KEY);
    bytes.extend_from_slice(seq.to_string().as_bytes());
    bytes.extend_from_slice(b"}\n");
    Ok(bytes)
}

/// A stored line back (without its newline), with its write sequence: 0 for lines written
/// before there was one (they are all older than any line that has one). `None` for a line
/// that does not parse (cut by a crash).
pub fn decode(raw: &[u8]) -> Option<(u64, paas_api::LogLine)> {
    let line = serde_json::from_slice(raw).ok()?;
    // The key is the object's last and cannot occur unescaped inside a JSON string, so the
    // last match is ours.
    let seq = raw
        .windows(SEQ_KEY.len())
        .rposition(|w| w == SEQ_KEY)
        .and_then(|at| {
            let digits = raw.get(at + SEQ_KEY.len()..raw.len().checked_sub(1)?)?;
            std::str::from_utf8(digits).ok()?.parse().ok()
        })
        .unwrap_or(0);
    Some((seq, line))
}

pub fn segment_name(seq: u64) -> String {
    format!("{seq:0width$}{EXT}", width = DIGITS)
}

pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXT)?;
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segments in `dir` with their sizes, oldest first. A missing dir is an empty stream;
/// files that are not segments are ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, u64)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry?;
        let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Rotated away while we looked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_file() {
            out.push((seq, meta.len()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads segment `seq` up to `limit` bytes (its whole length when `None`). A segment rotated
/// away in the meantime reads as empty.
pub fn read_segment(dir: &Path, seq: u64, limit: Option<u64>) -> io::Result<Vec<u8>> {
    let file = match File::open(dir.join(segment_name(seq))) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    match limit {
        Some(n) => file.take(n).read_to_end(&mut buf)?,
        None => (&file).read_to_end(&mut buf)?,
    };
    Ok(buf)
}

struct Active {
    seq: u64,
    file: BufWriter<File>,
    /// Bytes in the file plus bytes still buffered.
    len: u64,
}

/// The writer's handle on one app's stream.
pub struct AppStream {
    dir: PathBuf,
    limits: Limits,
    /// Closed segments, oldest first, with their sizes.
    closed: VecDeque<(u64, u64)>,
    closed_bytes: u64,
    active: Option<Active>,
    /// Sequence number of the newest segment ever seen (0: none).
    last_seq: u64,
    dirty: bool,
}

impl AppStream {
    /// Finds the segments a previous run left. Creates nothing: the dir appears with the first
    /// line. The newest segment is appended to again if it has room.
    pub fn open(dir: PathBuf, limits: Limits) -> io::Result<AppStream> {
        let mut segments: VecDeque<(u64, u64)> = list_segments(&dir)?.into();
        let last_seq = segments.back().map_or(0, |s| s.0);
        let mut active = None;
        if let Some(&(seq, len)) = segments.back() {
            if len < limits.segment_bytes {
                segments.pop_back();
                active = Some(reopen(&dir, seq, len)?);
            }
        }
        let mut stream = AppStream {
            closed_bytes: segments.iter().map(|s| s.1).sum(),
            closed: segments,
            dir,
            limits,
            active,
            last_seq,
            dirty: false,
        };
        // A smaller cap than last time applies at once.
        stream.trim(stream.active.as_ref().map_or(0, |a| a.len))?;
        Ok(stream)
    }

    /// Appends one complete line (ending in `\n`), rotating first when it would not fit.
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let size = line.len() as u64;
        let full = self
            .active
            .as_ref()
            .is_none_or(|a| a.len > 0 && a.len + size > self.limits.segment_bytes);
        if full {
            self.rotate()?;
        }
        let Some(active) = self.active.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        active.file.write_all(line)?;
        active.len += size;
        self.dirty = true;
        Ok(())
    }

    /// Writes buffered lines to the file (readers see them from then on).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.dirty {
            if let Some(a) = self.active.as_mut() {
                a.file.flush()?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// Flushes and asks the kernel to put the active segment on disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Some(a) = self.active.as_mut() {
            a.file.get_ref().sync_data()?;
        }
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Where the stream ends once flushed; `None` when it has no segment.
    pub fn end(&self) -> Option<End> {
        match &self.active {
            Some(a) => Some(End {
                seq: a.seq,
                len: a.len,
            }),
            None => self.closed.back().map(|&(seq, len)| End { seq, len }),
        }
    }

    /// Bytes the stream occupies (flushed or not).
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.closed_bytes + self.active.as_ref().map_or(0, |a| a.len)
    }

    /// Closes the active segment, deletes the oldest ones until a full new segment fits
    /// under the cap, and starts the next segment.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut a) = self.active.take() {
            a.file.flush()?;
            self.closed.push_back((a.seq, a.len));
            self.closed_bytes += a.len;
        }
        self.trim(self.limits.segment_bytes)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let seq = self.last_seq + 1;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(self.dir.join(segment_name(seq)))?;
        self.last_seq = seq;
        self.active = Some(Active {
            seq,
            file: BufWriter::with_capacity(64 * 1024, file),
            len: 0,
        });
        Ok(())
    }

    /// Deletes the oldest closed segments until `reserve` more bytes fit under the cap.
    fn trim(&mut self, reserve: u64) -> io::Result<()> {
        while self.closed_bytes + reserve > self.limits.max_bytes {
            let Some((seq, len)) = self.closed.pop_front() else {
                break;
            };
            match fs::remove_file(self.dir.join(segment_name(seq))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.closed.push_front((seq, len));
                    return Err(e);
                }
            }
            self.closed_bytes -= len;
        }
        Ok(())
    }
}

/// Opens an existing segment for appending; a last line cut short by a crash is ended so the
/// next line starts on its own (readers skip the broken one).
fn reopen(dir: &Path, seq: u64, len: u64) -> io::Result<Active> {
    let mut file = OpenOptions::new()
        .append(true)
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(segment_name(seq)))?;
    let mut len = len;
    if len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            file.seek(SeekFrom::End(0))?;
            file.write_all(b"\n")?;
            len += 1;
        }
    }
    Ok(Active {
        seq,
        file: BufWriter::with_capacity(64 * 1024, file),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_their_write_sequence() {
        let line = paas_api::LogLine {
            ts: "2026-11-23T10:00:00.000Z".into(),
            source: paas_api::LogSource::App,
            process: "web.1".into(),
            release: Some(3),
            line: "a \"seq\":7} ,\"seq\":8} looks like ours".into(),
        };
        let bytes = encode(&line, 1_764_000_000_123_456_789).expect("encode");
        assert!(bytes.ends_with(b",\"seq\":1764000000123456789}\n"));
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Some((1_764_000_000_123_456_789, line.clone()))
        );
        // A line from before the sequence existed.
        let old = serde_json::to_vec(&line).expect("json");
        assert_eq!(decode(&old), Some((0, line)));
        assert_eq!(decode(b"{\"half"), None);
    }

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(segment_name(7), "00000000000000000007.ndjson");
        assert_eq!(parse_segment_name(&segment_name(123_456)), Some(123_456));
        for bad in [
            "7.ndjson",
            "0000000000000000000x.ndjson",
            "deploy-3.log",
            "",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn rotation_never_exceeds_the_cap_and_keeps_the_newest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("stream");
        let limits = Limits {
            max_bytes: 10_000,
            segment_bytes: 2_500,
        };
        let mut s = AppStream::open(dir.clone(), limits).expect("open");
        assert_eq!(s.end(), None);
        assert!(!dir.exists(), "nothing is created before the first line");
        for i in 0..2_000 {
            s.append(format!("line {i:05} padding padding\n").as_bytes())
                .expect("append");
            let on_disk: u64 = list_segments(&dir).expect("list").iter().map(|s| s.1).sum();
            assert!(s.bytes() <= limits.max_bytes, "{} at {i}", s.bytes());
            assert!(on_disk <= limits.max_bytes, "{on_disk} at {i}");
        }
        s.flush().expect("flush");
        let segs = list_segments(&dir).expect("list");
        assert!(segs.len() >= 3, "{segs:?}");
        let newest = read_segment(&dir, segs.last().expect("seg").0, None).expect("read");
        assert!(String::from_utf8_lossy(&newest).ends_with("line 01999 padding padding\n"));
        let oldest = read_segment(&dir, segs[0].0, None).expect("read");
        assert!(!String::from_utf8_lossy(&oldest).contains("line 00000 "));
    }

    #[test]
    fn reopening_continues_the_newest_segment_and_ends_a_cut_line() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("stream");
        let limits = Limits {
            max_bytes: 1 << 20,
            segment_bytes: 1 << 18,
        };
        let mut s = AppStream::open(dir.clone(), limits).expect("open");
        s.append(b"one\n").expect("append");
        s.flush().expect("flush");
        drop(s);
        // A crash in the middle of a line.
        let seg = dir.join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
        f.write_all(b"{\"half").expect("write");
        drop(f);
        let mut s = AppStream::open(dir.clone(), limits).expect("reopen");
        s.append(b"two\n").expect("append");
        s.flush().expect("flush");
        assert_eq!(
            fs::read_to_string(&seg).expect("read"),
            "one\n{\"half\ntwo\n"
        );
        assert_eq!(s.end(), Some(End { seq: 1, len: 15 }));
        assert_eq!(list_segments(&dir).expect("list").len(), 1);
    }
}
