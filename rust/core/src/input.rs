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
            let window = zstd_window(head);
            let mut dec = zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| Error::io(path, e))?;
            dec.window_log_max(ZSTD_MAX_WINDOW_LOG).map_err(|e| Error::io(path, e))?;
            Box::new(BufReader::with_capacity(BUF_SIZE, ZstdWindowError { inner: dec, window }))
        }
    })
}

/// The largest zstd window the decoder accepts, as a power of two: 2^27 bytes = 128 MiB,
/// zstd's own default limit (what `zstd -d` takes without `--long`). A frame compressed with a
/// larger window (`zstd --long=31`, or `--ultra -22` on a large input) needs that much memory
/// per open file to decode, so it is refused with [`window_too_large`]'s message.
pub const ZSTD_MAX_WINDOW_LOG: u32 = 27;

/// The window size a zstd frame header declares (RFC 8878 3.1.1.1), when `head` holds one:
/// from its window descriptor, or for a single-segment frame its content size.
fn zstd_window(head: &[u8]) -> Option<u64> {
    let fhd = *head.get(4)?;
    if fhd & 0x20 == 0 {
        let wd = *head.get(5)?;
        let base = 1u64 << (10 + (wd >> 3));
        return Some(base + base / 8 * u64::from(wd & 7));
    }
    // Single segment: no window descriptor; the content size (1, 2, 4 or 8 bytes) follows the
    // dictionary id.
    let dict_len = [0, 1, 2, 4][usize::from(fhd & 3)];
    let start = 5 + dict_len;
    match fhd >> 6 {
        0 => head.get(start).map(|&b| u64::from(b)),
        1 => head.get(start..start + 2).map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])) + 256),
        2 => head.get(start..start + 4).map(|b| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")))),
        _ => head.get(start..start + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))),
    }
}

/// Why a zstd stream was refused for its window (see [`ZSTD_MAX_WINDOW_LOG`]), with what to do.
pub fn window_too_large(window: Option<u64>) -> String {
    let limit = 1u64 << ZSTD_MAX_WINDOW_LOG;
    let needs = match window {
        Some(w) if w > limit => format!("needs a {} MiB window", w >> 20),
        _ => "has a frame that needs a larger window".to_string(),
    };
    format!(
        "the zstd stream {needs}, above the decoder's limit of {} MiB (window log {ZSTD_MAX_WINDOW_LOG}), which bounds the memory a read takes \
         (it was compressed with zstd --long or a large window); recompress it without --long \
         (zstd -d --long=31 -c FILE.tar.zst | zstd -o NEW.tar.zst), or decompress it (zstd -d --long=31 FILE.tar.zst) and read the .tar",
        limit >> 20
    )
}

/// A zstd decoder whose refusal of a too-large window says so (libzstd's own words, "Frame
/// requires too much memory for decoding", name neither the window nor the way out).
struct ZstdWindowError<R> {
    inner: R,
    window: Option<u64>,
}

impl<R: Read> Read for ZstdWindowError<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| if e.to_string().contains("requires too much memory") { io::Error::other(window_too_large(self.window)) } else { e })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A zstd frame (RFC 8878) holding `data` in one raw block, declaring a window of 2^`log`.
    fn frame(log: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, (log - 10) << 3];
        let header = 1 | ((data.len() as u32) << 3); // last block, raw
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(data);
        f
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.zst");
        std::fs::write(&path, bytes).unwrap();
        let mut out = Vec::new();
        open(path.to_str().unwrap(), Default::default()).unwrap().read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_zstd_window_above_the_limit_is_refused_with_the_way_out() {
        assert_eq!(read_all(&frame(27, b"hello")).unwrap(), b"hello");
        let e = read_all(&frame(31, b"hello")).unwrap_err().to_string();
        assert!(e.starts_with("the zstd stream needs a 2048 MiB window, above the decoder's limit of 128 MiB (window log 27)"), "{e}");
        assert!(e.contains("recompress it without --long"), "{e}");
        assert_eq!(zstd_window(&frame(28, b"")), Some(256 << 20));
        // zstd's own encoder, with a 256 MiB window (no content size: a streamed frame).
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        enc.window_log(28).unwrap();
        enc.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut enc, b"hello").unwrap();
        let real = enc.finish().unwrap();
        assert_eq!(zstd_window(&real), Some(256 << 20));
        assert!(read_all(&real).unwrap_err().to_string().contains("needs a 256 MiB window"));
    }
}
