//! Opening sources: plain, gzip or zstd, detected from the first bytes (not the extension),
//! with a shared counter of the raw bytes consumed so readers can report MB/s.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

const BUF_SIZE: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// `"none"`, `"gz"` or `"zst"` (the writer's names).
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "gz" => Ok(Compression::Gzip),
            "zst" => Ok(Compression::Zstd),
            other => Err(format!("compression must be none, gz or zst, not {other:?}")),
        }
    }

    /// The file name suffix after `.tar`: "", ".gz" or ".zst".
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }
}

/// Counts the bytes read through it into a shared counter.
pub struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub fn sniff_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Opens `path` for streaming, decompressing gzip or zstd transparently. `counter` receives
/// the number of raw (compressed) bytes read.
pub fn open(path: &str, counter: Arc<AtomicU64>) -> Result<Box<dyn BufRead + Send>> {
    let file = open_regular(path).map_err(|e| Error::io(path, e))?;
    let mut raw = BufReader::with_capacity(BUF_SIZE, CountingReader { inner: file, counter });
    let head = raw.fill_buf().map_err(|e| Error::io(path, e))?;
    Ok(match sniff_compression(head) {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(BufReader::with_capacity(BUF_SIZE, flate2::bufread::MultiGzDecoder::new(raw))),
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| Error::io(path, e))?;
            Box::new(BufReader::with_capacity(BUF_SIZE, dec))
        }
    })
}

/// Opens `path` for reading when it is a regular file (links followed). A FIFO, a device or a
/// directory is an error and never read: `O_NONBLOCK` keeps a FIFO from blocking the open, and
/// the type is checked on the opened file itself (no window between a check and the open).
pub fn open_regular(path: &str) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file (a FIFO, device or directory is never read)"));
    }
    Ok(file)
}

/// True when a read failed because a compressed stream ended early (gzip and zstd decoders
/// report a cut file as an unexpected end of file).
pub fn is_truncation(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
}

/// Reads exactly `buf.len()` bytes unless the stream ends first; returns how many were read.
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
