//! A streaming tar member reader that never holds more than one member in memory and turns
//! damage (truncation, bad checksums, oversized members) into values instead of failures.
//!
//! It reads what Python's `tarfile` reads: ustar, GNU long names (`L`) and PAX `path`/`size`
//! records; only regular files (`0`, NUL, `7`, and GNU sparse files, old `S` and PAX 0.0, 0.1
//! and 1.0, with their holes filled with zeros) are returned, like `tarfile.TarInfo.isreg()`.

use std::io::{self, BufRead, Read};

use crate::error::{ErrorKind, RecordError};
use crate::input::read_full;

const BLOCK: usize = 512;

/// One regular-file member, or the damage found while reading one.
#[derive(Debug)]
pub enum TarEvent {
    Member {
        name: String,
        data: Vec<u8>,
    },
    /// A member that could not be read whole (after a damaged header the reader stops).
    Damaged {
        name: Option<String>,
        error: RecordError,
    },
}

pub struct TarReader<R> {
    inner: R,
    offset: u64,
    done: bool,
    max_member_bytes: u64,
}

fn octal(field: &[u8]) -> Option<u64> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            // GNU base-256: big-endian, first byte's high bit is the marker.
            let mut v: u64 = (first & 0x7f) as u64;
            for &b in &field[1..] {
                v = v.checked_mul(256)?.checked_add(b as u64)?;
            }
            return Some(v);
        }
    }
    let s: Vec<u8> = field.iter().copied().take_while(|&b| b != 0).collect();
    let s = std::str::from_utf8(&s).ok()?.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    name_text(&field[..end])
}

/// A member name as text. Bytes that are not UTF-8 become `\xNN` escapes (Python's
/// `backslashreplace`), so two names that differ only in invalid bytes stay distinct, as they
/// do for webdataset (whose `tarfile` keeps them as surrogates).
pub fn name_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn checksum_ok(h: &[u8; BLOCK]) -> bool {
    let Some(stored) = octal(&h[148..156]) else { return false };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += (b as i8) as i64;
    }
    stored == unsigned || stored as i64 == signed
}

fn pax_records(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|&b| b == b' ') else { break };
        let Some(len) = std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) else { break };
        if len <= sp + 1 || len > rest.len() {
            break;
        }
        let rec = &rest[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        if let Some(eq) = rec.iter().position(|&b| b == b'=') {
            out.push((String::from_utf8_lossy(&rec[..eq]).into_owned(), name_text(&rec[eq + 1..])));
        }
        rest = &rest[len..];
    }
    out
}

/// The most regions a sparse member's map may list (far more than any real file has).
const MAX_SPARSE_REGIONS: usize = 1 << 16;

/// A sparse member's layout: its regions (offset in the file, bytes stored) and its real size.
#[derive(Default)]
struct Sparse {
    map: Vec<(u64, u64)>,
    realsize: Option<u64>,
    /// PAX 1.0: the map is a text block at the start of the member's data.
    map_in_data: bool,
}

impl Sparse {
    /// Whether the records seen make the member sparse (as tarfile decides: a map, a real
    /// size, or the 1.0 format); other `GNU.sparse.*` keys alone leave it a plain file.
    fn is_sparse(&self) -> bool {
        !self.map.is_empty() || self.realsize.is_some() || self.map_in_data
    }

    /// One `GNU.sparse.*` PAX record (the 0.0 format lists offset, numbytes, offset, ...).
    fn pax(&mut self, k: &str, v: &str, pending_offset: &mut Option<u64>) {
        match k {
            "GNU.sparse.realsize" | "GNU.sparse.size" => self.realsize = v.parse().ok(),
            "GNU.sparse.major" => self.map_in_data = v == "1",
            "GNU.sparse.map" => {
                let nums: Vec<u64> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                self.map = nums.chunks_exact(2).map(|c| (c[0], c[1])).collect();
            }
            "GNU.sparse.offset" => *pending_offset = v.parse().ok(),
            "GNU.sparse.numbytes" => {
                if let (Some(o), Ok(n)) = (pending_offset.take(), v.parse()) {
                    self.map.push((o, n));
                }
            }
            _ => {}
        }
    }

    /// The file: `stored` (the regions' bytes, in map order; after the map text for PAX 1.0)
    /// placed at their offsets in `realsize` zero bytes.
    fn fill(mut self, stored: &[u8], max: u64) -> Result<Vec<u8>, (ErrorKind, String)> {
        let corrupt = |m: &str| (ErrorKind::CorruptTar, format!("sparse member: {m}"));
        let mut data = stored;
        if self.map_in_data {
            // Decimal lines: the number of regions, then offset and size of each; the block
            // is padded to 512 bytes.
            let mut lines = Vec::new();
            let mut at = 0;
            while lines.is_empty() || lines.len() < 1 + 2 * lines[0] as usize {
                let end = data[at..].iter().position(|&b| b == b'\n').ok_or_else(|| corrupt("map ends early"))?;
                let v: u64 = std::str::from_utf8(&data[at..at + end]).ok().and_then(|t| t.parse().ok()).ok_or_else(|| corrupt("bad map number"))?;
                if lines.is_empty() && v as usize > MAX_SPARSE_REGIONS {
                    return Err(corrupt("too many regions"));
                }
                lines.push(v);
                at += end + 1;
            }
            self.map = lines[1..].chunks_exact(2).map(|c| (c[0], c[1])).collect();
            data = data.get(at.div_ceil(BLOCK) * BLOCK..).ok_or_else(|| corrupt("map ends early"))?;
        }
        if self.map.len() > MAX_SPARSE_REGIONS {
            return Err(corrupt("too many regions"));
        }
        let realsize = self.realsize.ok_or_else(|| corrupt("no real size"))?;
        if realsize > max {
            return Err((ErrorKind::MemberTooLarge, format!("sparse member of {realsize} bytes exceeds the limit of {max} bytes")));
        }
        let mut out = vec![0u8; realsize as usize];
        let mut cur = 0usize;
        for &(off, n) in &self.map {
            let (off, n) = (off as usize, n as usize);
            let src = data.get(cur..cur.saturating_add(n)).ok_or_else(|| corrupt("regions exceed the stored data"))?;
            out.get_mut(off..off.saturating_add(n)).ok_or_else(|| corrupt("a region lies past the real size"))?.copy_from_slice(src);
            cur += n;
        }
        Ok(out)
    }
}

impl<R: BufRead> TarReader<R> {
    pub fn new(inner: R, max_member_bytes: u64) -> Self {
        TarReader { inner, offset: 0, done: false, max_member_bytes }
    }

    fn fatal(&mut self, name: Option<String>, kind: ErrorKind, message: String) -> Option<TarEvent> {
        self.done = true;
        Some(TarEvent::Damaged { name, error: RecordError::new(kind, message) })
    }

    /// A read error: a compressed stream cut short is a truncated archive, anything else `io`.
    fn fatal_io(&mut self, name: Option<String>, e: &io::Error, what: String) -> Option<TarEvent> {
        let kind = if crate::input::is_truncation(e) { ErrorKind::TruncatedTar } else { ErrorKind::Io };
        self.fatal(name, kind, what)
    }

    fn read_block(&mut self, buf: &mut [u8; BLOCK]) -> io::Result<usize> {
        let n = read_full(&mut self.inner, buf)?;
        self.offset += n as u64;
        Ok(n)
    }

    /// Reads `size` bytes of member data plus padding. Returns the data, or the number of
    /// bytes that were available when the stream ended early.
    fn read_data(&mut self, size: u64, keep: bool) -> io::Result<Result<Vec<u8>, u64>> {
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if keep {
            // The buffer grows as data arrives (never sized from the header: a header can claim
            // 2^62 bytes); an allocation that fails is an io error, not an abort.
            let mut data = Vec::new();
            let got = (&mut self.inner).take(size).read_to_end(&mut data)? as u64;
            self.offset += got;
            if got < size {
                return Ok(Err(got));
            }
            let pad = padded - size;
            let skipped = io::copy(&mut (&mut self.inner).take(pad), &mut io::sink())?;
            self.offset += skipped;
            if skipped < pad {
                return Ok(Err(size + skipped));
            }
            Ok(Ok(data))
        } else {
            let skipped = io::copy(&mut (&mut self.inner).take(padded), &mut io::sink())?;
            self.offset += skipped;
            if skipped < padded {
                return Ok(Err(skipped.min(size)));
            }
            Ok(Ok(Vec::new()))
        }
    }

    fn next_event(&mut self) -> Option<TarEvent> {
        let mut long_name: Option<String> = None;
        let mut pax_size: Option<u64> = None;
        let mut sparse: Option<Sparse> = None;
        let mut sparse_name: Option<String> = None;
        loop {
            let header_offset = self.offset;
            let mut h = [0u8; BLOCK];
            let n = match self.read_block(&mut h) {
                Ok(n) => n,
                Err(e) => return self.fatal_io(long_name, &e, format!("reading header at byte {header_offset}: {e}")),
            };
            if n == 0 {
                self.done = true;
                if long_name.is_some() {
                    return self.fatal(long_name, ErrorKind::TruncatedTar, format!("archive ends after an extended header at byte {header_offset}"));
                }
                return None;
            }
            if n < BLOCK {
                return self.fatal(long_name, ErrorKind::TruncatedTar, format!("archive ends inside a header at byte {header_offset} ({n} of 512 bytes)"));
            }
            if h.iter().all(|&b| b == 0) {
                self.done = true;
                return None;
            }
            if !checksum_ok(&h) {
                return self.fatal(long_name, ErrorKind::CorruptTar, format!("invalid header checksum at byte {header_offset}; rest of the archive skipped"));
            }
            let typeflag = h[156];
            let Some(mut size) = octal(&h[124..136]) else {
                return self.fatal(long_name, ErrorKind::CorruptTar, format!("invalid size field at byte {header_offset}"));
            };
            if let Some(s) = pax_size.take() {
                size = s;
            }
            let mut name = cstr(&h[0..100]);
            if &h[257..263] == b"ustar\0" {
                let prefix = cstr(&h[345..500]);
                if !prefix.is_empty() {
                    name = format!("{prefix}/{name}");
                }
            }
            if let Some(l) = long_name.take() {
                name = l;
            }
            if let Some(l) = sparse_name.take() {
                name = l;
            }
            match typeflag {
                b'L' | b'x' | b'g' | b'K' => {
                    if size > 1 << 24 {
                        return self.fatal(Some(name), ErrorKind::CorruptTar, format!("extended header of {size} bytes at byte {header_offset}"));
                    }
                    let data = match self.read_data(size, true) {
                        Ok(Ok(d)) => d,
                        Ok(Err(_)) => {
                            return self.fatal(None, ErrorKind::TruncatedTar, format!("archive ends inside an extended header at byte {header_offset}"))
                        }
                        Err(e) => return self.fatal_io(None, &e, e.to_string()),
                    };
                    match typeflag {
                        b'L' => long_name = Some(cstr(&data)),
                        b'x' => {
                            let mut pending_offset = None;
                            for (k, v) in pax_records(&data) {
                                match k.as_str() {
                                    "path" => long_name = Some(v),
                                    "size" => pax_size = v.parse().ok(),
                                    "GNU.sparse.name" => sparse_name = Some(v),
                                    k if k.starts_with("GNU.sparse.") => sparse.get_or_insert_with(Sparse::default).pax(k, &v, &mut pending_offset),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                b'S' => {
                    // Old GNU sparse: four map entries in the header, more in extension blocks.
                    let mut sp = Sparse { realsize: octal(&h[483..495]), ..Default::default() };
                    let entries = |block: &[u8], n: usize, sp: &mut Sparse| {
                        for e in block[..n * 24].chunks_exact(24) {
                            if let (Some(o), Some(len)) = (octal(&e[..12]), octal(&e[12..])) {
                                if o != 0 || len != 0 {
                                    sp.map.push((o, len));
                                }
                            }
                        }
                    };
                    entries(&h[386..482], 4, &mut sp);
                    let mut more = h[482] != 0;
                    while more {
                        let mut ext = [0u8; BLOCK];
                        match self.read_block(&mut ext) {
                            Ok(BLOCK) => {}
                            Ok(_) => return self.fatal(Some(name), ErrorKind::TruncatedTar, "archive ends inside a sparse map".into()),
                            Err(e) => return self.fatal_io(Some(name), &e, e.to_string()),
                        }
                        entries(&ext, 21, &mut sp);
                        if sp.map.len() > MAX_SPARSE_REGIONS {
                            return self.fatal(Some(name), ErrorKind::CorruptTar, format!("sparse member with over {MAX_SPARSE_REGIONS} regions"));
                        }
                        more = ext[504] != 0;
                    }
                    return self.sparse_member(name, size, sp);
                }
                b'0' | b'\0' | b'7' if sparse.as_ref().is_some_and(Sparse::is_sparse) => {
                    let sp = sparse.take().expect("sparse");
                    return self.sparse_member(name, size, sp);
                }
                b'0' | b'\0' | b'7' => {
                    let too_large = size > self.max_member_bytes;
                    return match self.read_data(size, !too_large) {
                        Ok(Ok(data)) if !too_large => Some(TarEvent::Member { name, data }),
                        Ok(Ok(_)) => Some(TarEvent::Damaged {
                            name: Some(name),
                            error: RecordError::new(
                                ErrorKind::MemberTooLarge,
                                format!("member of {size} bytes exceeds the limit of {} bytes", self.max_member_bytes),
                            ),
                        }),
                        Ok(Err(got)) => self.fatal(Some(name), ErrorKind::TruncatedTar, format!("archive ends inside member data ({got} of {size} bytes)")),
                        Err(e) => self.fatal_io(Some(name), &e, format!("reading member data: {e}")),
                    };
                }
                _ => {
                    // Directories, links, devices: skipped like webdataset does (with the
                    // extended header that described them).
                    sparse = None;
                    match self.read_data(size, false) {
                        Ok(Ok(_)) => continue,
                        Ok(Err(_)) => {
                            return self.fatal(None, ErrorKind::TruncatedTar, format!("archive ends inside a non-file member at byte {header_offset}"))
                        }
                        Err(e) => return self.fatal_io(None, &e, e.to_string()),
                    }
                }
            }
        }
    }
}

impl<R: BufRead> TarReader<R> {
    /// A sparse member whose `size` stored bytes follow: read (within the member limit, on
    /// both what is stored and the real size) and filled out to its real size.
    fn sparse_member(&mut self, name: String, size: u64, sp: Sparse) -> Option<TarEvent> {
        let max = self.max_member_bytes;
        let too_large = size > max || sp.realsize.is_some_and(|r| r > max);
        let stored = match self.read_data(size, !too_large) {
            Ok(Ok(d)) => d,
            Ok(Err(got)) => return self.fatal(Some(name), ErrorKind::TruncatedTar, format!("archive ends inside member data ({got} of {size} bytes)")),
            Err(e) => return self.fatal_io(Some(name), &e, format!("reading member data: {e}")),
        };
        let result = if too_large {
            let real = sp.realsize.unwrap_or(size).max(size);
            Err((ErrorKind::MemberTooLarge, format!("sparse member of {real} bytes exceeds the limit of {max} bytes")))
        } else {
            sp.fill(&stored, max)
        };
        Some(match result {
            Ok(data) => TarEvent::Member { name, data },
            Err((kind, message)) => TarEvent::Damaged { name: Some(name), error: RecordError::new(kind, message) },
        })
    }
}

impl<R: BufRead> Iterator for TarReader<R> {
    type Item = TarEvent;

    fn next(&mut self) -> Option<TarEvent> {
        if self.done {
            return None;
        }
        self.next_event()
    }
}
