//! Platform backups sealed with a passphrase (`paas backup create --passphrase-file`): the
//! archive paasd streams out is encrypted on its way into the file, so neither the file nor
//! paasd ever holds the passphrase. Format: `PAASBAK1` magic, argon2id salt and costs, a
//! 19-byte nonce prefix, then XChaCha20-Poly1305 STREAM (big-endian 32-bit counter) chunks of
//! 64 KiB plaintext, the last one marked as last (a truncated file fails to open instead of
//! restoring less). Owns that format; must not read the archive inside.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, OsRng};
use chacha20poly1305::XChaCha20Poly1305;

const MAGIC: &[u8; 8] = b"PAASBAK1";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const SALT: usize = 16;
const NONCE: usize = 19;
/// argon2id costs: 64 MiB, 3 passes, one lane (OWASP's first recommendation). The archive
/// records them, so tests may use cheaper ones (unoptimized argon2 takes seconds).
#[cfg(not(test))]
const M_COST_KIB: u32 = 64 * 1024;
#[cfg(test)]
const M_COST_KIB: u32 = 1024;
#[cfg(not(test))]
const T_COST: u32 = 3;
#[cfg(test)]
const T_COST: u32 = 1;
const P_COST: u32 = 1;

/// The passphrase from `file` (its first line), else `$PAAS_BACKUP_PASSPHRASE`; never from
/// an argument, which every user on the machine could read in /proc.
pub fn passphrase(file: Option<&Path>) -> Result<Option<String>> {
    let text = match file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the passphrase file {}", f.display()))?,
        None => match std::env::var("PAAS_BACKUP_PASSPHRASE") {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
    };
    let p = text.lines().next().unwrap_or_default().to_string();
    if p.chars().count() < 8 {
        bail!("the passphrase must have at least 8 characters");
    }
    Ok(Some(p))
}

/// Whether the file at `path` is a sealed archive.
pub fn is_sealed(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path)?;
    match f.read_exact(&mut head) {
        Ok(()) => Ok(&head == MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn derive(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<XChaCha20Poly1305> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| anyhow::anyhow!("deriving the key: {e}"))?;
    Ok(XChaCha20Poly1305::new(GenericArray::from_slice(&key)))
}

/// Encrypts what is written into `out`; [`Sealer::finish`] writes the last chunk.
pub struct Sealer<W: Write> {
    out: W,
    enc: Option<EncryptorBE32<XChaCha20Poly1305>>,
    buf: Vec<u8>,
}

impl<W: Write> Sealer<W> {
    pub fn new(mut out: W, passphrase: &str) -> Result<Sealer<W>> {
        let mut salt = [0u8; SALT];
        let mut nonce = [0u8; NONCE];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let aead = derive(passphrase, &salt, M_COST_KIB, T_COST, P_COST)?;
        out.write_all(MAGIC)?;
        out.write_all(&salt)?;
        for v in [M_COST_KIB, T_COST, P_COST] {
            out.write_all(&v.to_le_bytes())?;
        }
        out.write_all(&nonce)?;
        Ok(Sealer {
            out,
            enc: Some(EncryptorBE32::from_aead(
                aead,
                GenericArray::from_slice(&nonce),
            )),
            buf: Vec::with_capacity(CHUNK),
        })
    }

    pub fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            // A full chunk waits until more comes: only then is it known not to be the last.
            if self.buf.len() == CHUNK {
                self.flush_chunk()?;
            }
            let n = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<()> {
        let enc = self.enc.as_mut().context("the sealer is finished")?;
        let ct = enc
            .encrypt_next(self.buf.as_slice())
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        self.out.write_all(&ct)?;
        self.buf.clear();
        Ok(())
    }

    /// Writes the last chunk and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        let enc = self.enc.take().context("the sealer is finished")?;
        let ct = enc
            .encrypt_last(self.buf.as_slice())
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        self.out.write_all(&ct)?;
        Ok(self.out)
    }
}

/// Decrypts the sealed archive `input` into `out`. A wrong passphrase, a changed byte or a
/// truncated file fails before the last chunk is written out as complete.
pub fn open(mut input: impl Read, mut out: impl Write, passphrase: &str) -> Result<()> {
    let mut head = [0u8; 8 + SALT + 12 + NONCE];
    input
        .read_exact(&mut head)
        .context("not a sealed paas backup (too short)")?;
    if &head[..8] != MAGIC {
        bail!("not a sealed paas backup");
    }
    let salt = &head[8..8 + SALT];
    let num = |i: usize| {
        let o = 8 + SALT + 4 * i;
        u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]])
    };
    let (m, t, p) = (num(0), num(1), num(2));
    if m > 1024 * 1024 || t > 16 || p > 16 {
        bail!("the archive asks for argon2 costs this client refuses");
    }
    let aead = derive(passphrase, salt, m, t, p)?;
    let nonce = &head[8 + SALT + 12..];
    let mut dec = DecryptorBE32::from_aead(aead, GenericArray::from_slice(nonce));
    let wrong =
        || anyhow::anyhow!("the passphrase is wrong, or the archive was changed or cut short");
    let mut cur = read_chunk(&mut input)?;
    loop {
        let next = read_chunk(&mut input)?;
        if next.is_empty() {
            let plain = dec.decrypt_last(cur.as_slice()).map_err(|_| wrong())?;
            out.write_all(&plain)?;
            out.flush()?;
            return Ok(());
        }
        let plain = dec.decrypt_next(cur.as_slice()).map_err(|_| wrong())?;
        out.write_all(&plain)?;
        cur = next;
    }
}

/// Up to one ciphertext chunk; empty at the end.
fn read_chunk(input: &mut impl Read) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; CHUNK + TAG];
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(data: &[u8], pass: &str) -> Vec<u8> {
        let mut s = Sealer::new(Vec::new(), pass).expect("sealer");
        // Odd pieces, so chunk edges fall anywhere.
        for piece in data.chunks(7_777) {
            s.write_all(piece).expect("write");
        }
        s.finish().expect("finish")
    }

    #[test]
    fn a_sealed_archive_opens_with_its_passphrase_only_and_whole_only() {
        for len in [0, 10, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 123] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let sealed = seal(&data, "correct horse");
            assert_eq!(&sealed[..8], MAGIC);
            let mut out = Vec::new();
            open(sealed.as_slice(), &mut out, "correct horse").expect("open");
            assert_eq!(out, data, "len {len}");
            let err = open(sealed.as_slice(), Vec::new(), "wrong horse!").expect_err("wrong");
            assert!(err.to_string().contains("passphrase is wrong"), "{err}");
            if len > CHUNK {
                // Cut at a chunk boundary: every chunk left decrypts, but none is the last.
                let header = 8 + SALT + 12 + NONCE;
                let cut = &sealed[..header + CHUNK + TAG];
                assert!(open(cut, Vec::new(), "correct horse").is_err(), "len {len}");
            }
            let mut flipped = sealed.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(open(flipped.as_slice(), Vec::new(), "correct horse").is_err());
        }
    }

    #[test]
    fn short_passphrases_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("p");
        std::fs::write(&f, "short\nignored").expect("write");
        assert!(passphrase(Some(&f)).is_err());
        std::fs::write(&f, "long enough\nsecond line ignored").expect("write");
        assert_eq!(
            passphrase(Some(&f)).expect("ok").as_deref(),
            Some("long enough")
        );
    }
}
