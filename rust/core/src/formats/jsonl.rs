//! JSON lines to documents, keeping malformed, non-UTF-8 and over-long lines as error records.

use std::io::BufRead;

use serde_json::Value;

use super::{json_too_costly, lone_surrogates, parse_json_lenient, Format, RecordContext, RecordDecoder, ID_KEYS};
use crate::doc::Document;
use crate::error::{ErrorKind, RecordError};

/// Default limit on one JSON line; longer lines become `line_too_long` error records.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 << 20;

/// Reads JSON lines into documents. Blank lines are skipped; a malformed line, invalid UTF-8
/// or an over-long line becomes a document of its own with the error and the raw line kept in
/// its metadata under `"__raw__"`.
pub struct JsonlReader<R> {
    inner: R,
    records: RecordDecoder,
    line_no: u64,
    max_line_bytes: usize,
    done: bool,
}

impl<R: BufRead> JsonlReader<R> {
    pub fn new(inner: R, format: Option<Format>, ctx: RecordContext) -> Self {
        JsonlReader { inner, records: RecordDecoder::new(format, ctx), line_no: 0, max_line_bytes: DEFAULT_MAX_LINE_BYTES, done: false }
    }

    pub fn with_max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n;
        self
    }

    /// Reads one line, keeping at most `max_line_bytes` of it. Returns (bytes, full length).
    fn read_line(&mut self) -> std::io::Result<Option<(Vec<u8>, usize)>> {
        let mut line = Vec::new();
        let mut total = 0usize;
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(if total == 0 { None } else { Some((line, total)) });
            }
            let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            let room = self.max_line_bytes.saturating_sub(line.len());
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            total += chunk.len();
            let used = found.unwrap_or(buf.len());
            self.inner.consume(used);
            if found.is_some() {
                return Ok(Some((line, total)));
            }
        }
    }
}

/// Ids that are numbers too large for an f64 to hold exactly (`10**30` and `10**30 + 1` both
/// parse to `1e30`) keep their exact JSON text, so distinct records keep distinct ids.
fn exact_ids(value: &mut Value, text: &str) {
    let Some(o) = value.as_object_mut() else { return };
    let inexact = |v: &Value| v.as_number().is_some_and(|n| n.is_f64());
    if !ID_KEYS.iter().any(|k| o.get(*k).is_some_and(inexact)) {
        return;
    }
    let Ok(raw) = serde_json::from_str::<std::collections::HashMap<String, &serde_json::value::RawValue>>(text) else { return };
    for k in ID_KEYS {
        if let (Some(v), Some(r)) = (o.get_mut(*k), raw.get(*k)) {
            if inexact(v) {
                *v = Value::String(r.get().to_string());
            }
        }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Document;

    fn next(&mut self) -> Option<Document> {
        while !self.done {
            let line = match self.read_line() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    let kind = if crate::input::is_truncation(&e) { ErrorKind::TruncatedFile } else { ErrorKind::Io };
                    let n = self.line_no + 1;
                    return Some(self.records.error_document(n, RecordError::new(kind, format!("reading line {n}: {e}")), None));
                }
            };
            self.line_no += 1;
            let n = self.line_no;
            let (mut bytes, total) = line;
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            if n == 1 && bytes.starts_with(b"\xef\xbb\xbf") {
                // A UTF-8 byte-order mark (Windows editors write one) is not part of the record.
                bytes.drain(..3);
            }
            if bytes.iter().all(u8::is_ascii_whitespace) && total <= self.max_line_bytes {
                continue;
            }
            if total > self.max_line_bytes {
                let msg = format!("line {n} has {total} bytes, over the limit of {}; its first bytes are kept", self.max_line_bytes);
                let raw = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned();
                return Some(self.records.error_document(n, RecordError::new(ErrorKind::LineTooLong, msg), Some(raw)));
            }
            if let Some(why) = json_too_costly(&bytes) {
                let msg = format!("line {n} has {why}: too many to parse in bounded memory; its first bytes are kept");
                let raw = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned();
                return Some(self.records.error_document(n, RecordError::new(ErrorKind::LineTooLong, msg), Some(raw)));
            }
            let (mut text, utf8_err) = match String::from_utf8(bytes) {
                Ok(s) => (s, None),
                Err(e) => {
                    let msg = format!("line {n}: {}; invalid bytes replaced by U+FFFD", e.utf8_error());
                    (String::from_utf8_lossy(e.as_bytes()).into_owned(), Some(RecordError::new(ErrorKind::InvalidUtf8, msg)))
                }
            };
            let (mut value, surrogates) = match parse_json_lenient(&mut text) {
                Ok(v) => v,
                Err(e) => return Some(self.records.error_document(n, RecordError::new(ErrorKind::MalformedJson, format!("line {n}: {e}")), Some(text))),
            };
            exact_ids(&mut value, &text);
            let mut doc = self.records.decode(value, n, Vec::new());
            // Invalid UTF-8 is the line's damage: it comes first, before what it caused (a key
            // that no longer matches reads as a missing field).
            if let Some(e) = utf8_err.or_else(|| (surrogates > 0).then(|| lone_surrogates(&format!("line {n}"), surrogates))) {
                doc.error = Some(e);
            }
            return Some(doc);
        }
        None
    }
}
