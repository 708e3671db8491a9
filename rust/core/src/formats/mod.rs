//! JSON records to documents: image-text pairs, MMC4, OBELICS, CoMM, LLaVA and our own node
//! schema, plus a streaming JSON-lines reader that keeps malformed lines as error records.
//!
//! Images in records are resolved the same way everywhere ([`resolve_image`]): a `data:` URI
//! or a `{"bytes": base64}` object is decoded; a URL (`scheme://...`) stays an `image_ref` and
//! is never fetched; a local path is read relative to the image root (the record file's
//! directory unless set) when loading is on, and a missing file is a `missing_image` error.
//!
//! Records that come from columnar data (parquet) keep their binary values out of line: the
//! cell is `{"$blob": k}` ([`BLOB_KEY`]) and the bytes travel beside the record
//! ([`RecordDecoder::decode`]'s `blobs`), so image bytes are never re-encoded on the way.
//!
//! One file per record layout ([`pairs`], [`mmc4`], [`obelics`], [`comm`], [`llava`], and our own
//! [`nodes`] schema, which WebDataset json members share); [`jsonl`] streams JSON lines.

mod comm;
mod jsonl;
mod llava;
mod mmc4;
pub mod nodes;
mod obelics;
mod pairs;
pub mod parquet;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::doc::{Document, Node, NodeKind};
use crate::error::{ErrorKind, RecordError};

pub use jsonl::{JsonlReader, DEFAULT_MAX_LINE_BYTES};
pub use nodes::{document_to_json, error_json, node_json};

type ImageValue<'a> = dyn Fn(&Node) -> Value + 'a;
pub(crate) use pairs::{PAIR_IMAGE_KEYS, PAIR_TEXT_KEYS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pairs,
    Mmc4,
    Obelics,
    Comm,
    Llava,
    /// interleaf's own schema: `{"doc_id", "meta", "nodes": [...]}`.
    Nodes,
}

impl Format {
    pub const ALL: [Format; 6] = [Format::Pairs, Format::Mmc4, Format::Obelics, Format::Comm, Format::Llava, Format::Nodes];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pairs => "pairs",
            Format::Mmc4 => "mmc4",
            Format::Obelics => "obelics",
            Format::Comm => "comm",
            Format::Llava => "llava",
            Format::Nodes => "nodes",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Guesses a record's format from its keys; `None` when nothing fits.
    pub fn detect(v: &Value) -> Option<Format> {
        let o = v.as_object()?;
        let has = |k: &str| o.contains_key(k);
        if has("nodes") && o["nodes"].is_array() {
            Some(Format::Nodes)
        } else if has("text_list") {
            Some(Format::Mmc4)
        } else if has("texts") && has("images") {
            Some(Format::Obelics)
        } else if has("step_info") || has("steps") {
            Some(Format::Comm)
        } else if has("conversations") {
            Some(Format::Llava)
        } else if PAIR_TEXT_KEYS.iter().any(|k| has(k)) || PAIR_IMAGE_KEYS.iter().any(|k| has(k)) {
            Some(Format::Pairs)
        } else {
            None
        }
    }
}

const ID_KEYS: &[&str] = &["doc_id", "id", "key", "uid", "sample_id", "data_id"];

/// Where record images are looked for and how much is read.
#[derive(Clone, Debug)]
pub struct RecordContext {
    pub source: String,
    /// Relative image paths are joined to this; defaults to the record file's directory.
    pub image_root: PathBuf,
    /// True when the user named the image root (MMC4 `image_name`s are only loaded then).
    pub image_root_explicit: bool,
    pub load_images: bool,
    pub max_image_bytes: u64,
    /// Read image paths that resolve outside the image root (off by default: a record must not
    /// be able to read `../secret` or `/etc/passwd` into the output).
    pub allow_outside_root: bool,
    /// The image root with symlinks resolved, when it exists.
    canonical_root: Option<PathBuf>,
    /// The canonical root, opened once: relative image paths are opened beneath it by the
    /// kernel (see [`read_beneath`]).
    #[cfg(target_os = "linux")]
    root_dir: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// The out-of-line binary values of the record being converted (see the module docs).
    blobs: RefCell<Vec<Option<Vec<u8>>>>,
    /// Bytes of image files read for the record being converted (see [`load_file`]).
    loaded: std::cell::Cell<u64>,
    /// When set, every local image file a record names is noted here with its size and mtime
    /// as they were before it was read (see [`ImageFileLog`]).
    pub file_log: Option<ImageFileLog>,
}

/// The local image files records named, each once: `(path, size, mtime_ns)`, the path as it
/// was looked up, made absolute (the image root joined to the record's relative path, or the
/// record's absolute path; symlinks not resolved), with [`file_stat`]'s numbers as the read
/// found them before reading (so a file changed while it is read shows a newer stat on the
/// next look, never an older one). What a run keeps to tell, on a rerun, whether a shard's
/// images changed.
pub type ImageFileLog = std::sync::Arc<std::sync::Mutex<ImageFiles>>;

/// See [`ImageFileLog`].
#[derive(Default, Debug)]
pub struct ImageFiles {
    /// xxh3 of every path noted (a file named again and again is held once).
    seen: std::collections::HashSet<u64>,
    files: Vec<(String, i64, i64)>,
}

impl ImageFiles {
    /// Notes `name` with `stat` (the read's own, when it had one; else looked up now).
    fn note(&mut self, name: String, stat: Option<(i64, i64)>) {
        if self.seen.insert(xxhash_rust::xxh3::xxh3_64(name.as_bytes())) {
            let (size, mtime) = stat.unwrap_or_else(|| file_stat(&name));
            self.files.push((name, size, mtime));
        }
    }

    /// Notes files taken from another log, in their order, each with its own stat (a file
    /// noted already is not noted again).
    pub fn merge(&mut self, files: Vec<(String, i64, i64)>) {
        for (name, size, mtime) in files {
            self.note(name, Some((size, mtime)));
        }
    }

    /// The files noted since the last call, in the order they were first named.
    pub fn take(&mut self) -> Vec<(String, i64, i64)> {
        std::mem::take(&mut self.files)
    }
}

/// `(size, mtime_ns)` of a regular file, the same numbers as Python's `os.stat`; `(-2, -2)`
/// for anything else that exists (a folder's mtime moves whenever a file is added to it, and
/// reading one fails the same way whatever it holds).
fn stat_numbers(m: &std::fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    if m.is_file() {
        (m.size() as i64, m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()))
    } else {
        (-2, -2)
    }
}

/// [`stat_numbers`] of `path` (symlinks followed); `(-1, -1)` when it cannot be looked up.
pub fn file_stat(path: &str) -> (i64, i64) {
    std::fs::metadata(path).map_or((-1, -1), |m| stat_numbers(&m))
}

/// The key of an out-of-line binary value: `{"$blob": k}` is the k-th blob of its record.
pub const BLOB_KEY: &str = "$blob";

impl RecordContext {
    pub fn for_source(source: &str, image_root: Option<&str>, load_images: bool) -> Self {
        let (root, explicit) = match image_root {
            Some(r) => (PathBuf::from(r), true),
            None => (Path::new(source).parent().map(Path::to_path_buf).unwrap_or_default(), false),
        };
        let root = if root.as_os_str().is_empty() { PathBuf::from(".") } else { root };
        let canonical_root = std::fs::canonicalize(&root).ok();
        #[cfg(target_os = "linux")]
        let root_dir = canonical_root.as_ref().and_then(|r| {
            use rustix::fs::{Mode, OFlags, ResolveFlags};
            let dir = rustix::fs::open(r, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
            // Where openat2 is missing or filtered (an old kernel, a seccomp profile), every
            // image would try it first and fail: find out once.
            rustix::fs::openat2(&dir, ".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::BENEATH).ok()?;
            Some(std::sync::Arc::new(dir))
        });
        RecordContext {
            source: source.to_string(),
            canonical_root,
            #[cfg(target_os = "linux")]
            root_dir,
            image_root: root,
            image_root_explicit: explicit,
            load_images,
            max_image_bytes: crate::shard::DEFAULT_MAX_MEMBER_BYTES,
            allow_outside_root: false,
            blobs: RefCell::new(Vec::new()),
            loaded: std::cell::Cell::new(0),
            file_log: None,
        }
    }

    /// The bytes a `{"$blob": k}` cell stands for (each blob can be taken once).
    fn take_blob(&self, cell: &Map<String, Value>) -> Result<Vec<u8>, String> {
        let k = cell.get(BLOB_KEY).and_then(Value::as_u64).ok_or_else(|| format!("{BLOB_KEY} must be a blob number"))?;
        self.blobs.borrow_mut().get_mut(k as usize).and_then(Option::take).ok_or_else(|| format!("the record has no binary value {k}"))
    }
}

/// JSON text of `v` cut after 200 bytes: an error message names a bad value without carrying
/// a whole hostile one.
pub fn short_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    json_prefix(v, 200)
}

/// JSON text of `v` cut after `max` bytes (serialisation stops at the cut), `...` marking a cut.
pub fn json_prefix<T: serde::Serialize + ?Sized>(v: &T, max: usize) -> String {
    struct Capped(Vec<u8>, usize);
    impl std::io::Write for Capped {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let room = self.1 - self.0.len();
            self.0.extend_from_slice(&b[..b.len().min(room)]);
            if b.len() > room {
                return Err(std::io::Error::other("cut"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Capped(Vec::new(), max);
    let cut = serde_json::to_writer(&mut w, v).is_err();
    let mut s = String::from_utf8_lossy(&w.0).into_owned();
    if cut {
        s.push_str("...");
    }
    s
}

/// The most list items a record may hold in its top three levels (where every layout keeps the
/// lists that become nodes): a parquet row of 10 million texts (1.2 KB on disk) became 5.6 GB
/// of nodes. No real document comes near it.
pub const MAX_RECORD_ITEMS: usize = 1 << 20;

/// The list items of `v` down to `depth` levels, counted up to just past [`MAX_RECORD_ITEMS`].
fn list_items(v: &Value, depth: usize) -> usize {
    let inner = |items: &mut dyn Iterator<Item = &Value>| -> usize {
        let mut n = 0;
        for x in items {
            n += list_items(x, depth - 1);
            if n > MAX_RECORD_ITEMS {
                break;
            }
        }
        n
    };
    match v {
        _ if depth == 0 => 0,
        Value::Array(a) => a.len() + if a.len() > MAX_RECORD_ITEMS { 0 } else { inner(&mut a.iter()) },
        Value::Object(o) => inner(&mut o.values()),
        _ => 0,
    }
}

/// The most values (counted by their commas) a JSON line or member may hold: parsed JSON takes
/// about 32 bytes per value, so a line of small values (`[0,0,0,...]`) would take ~16 times its
/// size.
pub const MAX_JSON_VALUES: usize = 8 << 20;

/// The most arrays and objects (counted by their `[` and `{`) a JSON line or member may hold:
/// each takes ~160 bytes parsed, so nested single-element arrays (which have no commas) would
/// take ~80 times their size.
pub const MAX_JSON_CONTAINERS: usize = 1 << 20;

/// Why JSON text would take too much memory to parse (see [`MAX_JSON_VALUES`],
/// [`MAX_JSON_CONTAINERS`]), before parsing it; None when it would not. Brackets and commas
/// inside strings count too: no real record comes near either bound.
pub fn json_too_costly(bytes: &[u8]) -> Option<String> {
    if memchr::memchr_iter(b',', bytes).nth(MAX_JSON_VALUES).is_some() {
        return Some(format!("over {MAX_JSON_VALUES} values (commas)"));
    }
    if memchr::memchr2_iter(b'[', b'{', bytes).nth(MAX_JSON_CONTAINERS).is_some() {
        return Some(format!("over {MAX_JSON_CONTAINERS} arrays and objects"));
    }
    None
}

/// Parses JSON text as Python's `json` reads it on the two points where serde_json is stricter:
/// - a `\uXXXX` escape of a lone UTF-16 surrogate (JavaScript writes them when it cuts a string
///   inside a pair) becomes `\ufffd` instead of failing the whole record (the text is rewritten
///   in place, same length);
/// - the bare tokens `NaN`, `Infinity` and `-Infinity` outside strings (Python's `json.dumps`
///   writes them for non-finite floats by default) are read as non-finite numbers: a
///   serde_json value cannot hold one, so each becomes its marker string (see
///   [`nonfinite_token`]), which [`json_text`] writes back as the bare token. The text is
///   rewritten with the markers only if the record then parses.
///
/// Nothing is rewritten unless the first parse fails. Returns the value and how many surrogate
/// escapes were replaced, so the caller can flag the record (non-finite numbers are not
/// damage: Python reads them without complaint).
pub fn parse_json_lenient(text: &mut String) -> Result<(Value, usize), serde_json::Error> {
    match serde_json::from_str(text) {
        Ok(v) => Ok((v, 0)),
        Err(e) => {
            let n = replace_lone_surrogates(text);
            if let Some(marked) = mark_nonfinite(text) {
                if let Ok(v) = serde_json::from_str(&marked) {
                    *text = marked;
                    return Ok((v, n));
                }
            }
            match n {
                0 => Err(e),
                n => serde_json::from_str(text).map(|v| (v, n)),
            }
        }
    }
}

/// Parses stored JSON text of ours (a document's `meta`), which may hold the non-finite
/// numbers [`json_text`] writes; None when it does not parse.
pub fn parse_stored_json(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().or_else(|| serde_json::from_str(&mark_nonfinite(text)?).ok())
}

/// The first character of the string a non-finite number is held as inside a serde_json value
/// (U+FDD0, a noncharacter: no text holds it): `"\u{FDD0}NaN"`, `"\u{FDD0}Infinity"`,
/// `"\u{FDD0}-Infinity"`.
const NONFINITE_MARK: char = '\u{FDD0}';
const NONFINITE_TOKENS: [&str; 3] = ["NaN", "Infinity", "-Infinity"];

/// The JSON token (`NaN`, `Infinity`, `-Infinity`) a string of a parsed value stands for, when
/// it is the marker of a non-finite number read by [`parse_json_lenient`].
pub fn nonfinite_token(s: &str) -> Option<&'static str> {
    let t = s.strip_prefix(NONFINITE_MARK)?;
    NONFINITE_TOKENS.into_iter().find(|k| *k == t)
}

/// The marker string of a non-finite float (see [`nonfinite_token`]); None for a finite one.
pub fn nonfinite_value(f: f64) -> Option<Value> {
    let token = match f {
        _ if f.is_nan() => "NaN",
        f if f == f64::INFINITY => "Infinity",
        f if f == f64::NEG_INFINITY => "-Infinity",
        _ => return None,
    };
    Some(Value::String(format!("{NONFINITE_MARK}{token}")))
}

/// `text` with every bare `NaN` / `Infinity` / `-Infinity` outside strings replaced by its
/// marker string; None when it has none.
fn mark_nonfinite(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let (mut out, mut copied, mut i, mut in_str) = (String::new(), 0, 0, false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 2,
            b'"' => {
                in_str = !in_str;
                i += 1;
            }
            b'N' | b'I' | b'-' if !in_str => match NONFINITE_TOKENS.into_iter().find(|t| b[i..].starts_with(t.as_bytes())) {
                Some(t) => {
                    out.push_str(&text[copied..i]);
                    out.push('"');
                    out.push(NONFINITE_MARK);
                    out.push_str(t);
                    out.push('"');
                    i += t.len();
                    copied = i;
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    (copied > 0).then(|| {
        out.push_str(&text[copied..]);
        out
    })
}

/// `v` as JSON text, as Python's `json.dumps` writes it: a non-finite number read by
/// [`parse_json_lenient`] is written back as its bare token (`NaN`, `Infinity`, `-Infinity`),
/// so `json.loads` gives the float again. Everything else as serde_json writes it.
pub fn json_text(v: &Value) -> String {
    let s = v.to_string();
    if !s.contains(NONFINITE_MARK) {
        return s;
    }
    // In compact serde_json output a string value's opening quote follows `[`, `{`, `,`, `:`
    // or starts the text (a quote inside a string is escaped), so `"<mark>NaN"` there is a
    // whole string equal to the marker.
    let b = s.as_bytes();
    let mark_len = NONFINITE_MARK.len_utf8();
    let (mut out, mut copied) = (String::with_capacity(s.len()), 0);
    for (i, _) in s.match_indices(NONFINITE_MARK) {
        let opens = i >= 1 && b[i - 1] == b'"' && (i == 1 || matches!(b[i - 2], b'[' | b'{' | b',' | b':'));
        let token = NONFINITE_TOKENS.into_iter().find(|t| s[i + mark_len..].starts_with(t) && b.get(i + mark_len + t.len()) == Some(&b'"'));
        if let (true, Some(t)) = (opens, token) {
            out.push_str(&s[copied..i - 1]);
            out.push_str(t);
            copied = i + mark_len + t.len() + 1;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// The error of a record whose JSON held lone surrogate escapes (see [`parse_json_lenient`]).
pub fn lone_surrogates(what: &str, n: usize) -> RecordError {
    RecordError::new(ErrorKind::InvalidUtf8, format!("{what}: {n} lone UTF-16 surrogate escape(s) (\\uD800-\\uDFFF) replaced by U+FFFD"))
}

/// Replaces each `\uXXXX` escape of a surrogate that is not half of a high-low pair by
/// `\ufffd`; returns how many. ASCII replaces ASCII, so the text stays valid UTF-8.
fn replace_lone_surrogates(text: &mut String) -> usize {
    fn escape(s: &[u8]) -> Option<u16> {
        let h = s.get(..6).filter(|h| h.starts_with(b"\\u") && h[2..].iter().all(u8::is_ascii_hexdigit))?;
        u16::from_str_radix(std::str::from_utf8(&h[2..]).ok()?, 16).ok()
    }
    let mut b = std::mem::take(text).into_bytes();
    let (mut i, mut n) = (0, 0);
    while let Some(off) = memchr::memchr(b'\\', &b[i..]) {
        i += off;
        match escape(&b[i..]) {
            Some(0xD800..=0xDBFF) if matches!(escape(&b[i + 6..]), Some(0xDC00..=0xDFFF)) => i += 12,
            Some(0xD800..=0xDFFF) => {
                b[i + 2..i + 6].copy_from_slice(b"fffd");
                n += 1;
                i += 6;
            }
            Some(_) => i += 6,
            None => i = (i + 2).min(b.len()), // another escape (\\, \", \n...), skipped whole
        }
    }
    *text = String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    n
}

/// Bytes given inline: `{"$blob": k}` (a parquet binary cell), a `data:` URI, or
/// (`plain_base64`) a bare base64 string; None when `v` is none of these. They are held to the
/// per-image limit (`max_image_bytes`) as an image file or a tar member is: a blob by its
/// length, base64 by its length before it is decoded (a string that must decode to more is
/// never decoded), then by what it decoded to. Errors: `member_too_large` over the limit,
/// `bad_record` for bad base64 or a missing blob; their messages start with `what` (a field
/// name, or nothing when empty).
fn inline_bytes(v: &Value, ctx: &RecordContext, plain_base64: bool, what: &str) -> Option<Result<Vec<u8>, RecordError>> {
    let max = ctx.max_image_bytes;
    let named = |m: String| if what.is_empty() { m } else { format!("{what}: {m}") };
    let too_large = |m: String| RecordError::new(ErrorKind::MemberTooLarge, named(format!("{m}, over the limit of {max} bytes (max_member_bytes)")));
    let bad = |m: String| RecordError::new(ErrorKind::BadRecord, named(m));
    let decode = |payload: &str, bad_msg: &str| -> Result<Vec<u8>, RecordError> {
        let payload = payload.trim();
        // Base64 gives 3 bytes per 4 characters, less at most 2 of padding.
        let at_least = (payload.len() as u64 / 4 * 3).saturating_sub(2);
        if at_least > max {
            return Err(too_large(format!("inline image of {} base64 characters (at least {at_least} bytes) not decoded", payload.len())));
        }
        let bytes = b64().decode(payload).map_err(|e| bad(format!("{bad_msg}: {e}")))?;
        if bytes.len() as u64 > max {
            return Err(too_large(format!("inline image of {} bytes", bytes.len())));
        }
        Ok(bytes)
    };
    match v {
        Value::Object(o) if o.contains_key(BLOB_KEY) => Some(ctx.take_blob(o).map_err(bad).and_then(|b| {
            if b.len() as u64 > max {
                Err(too_large(format!("binary image value of {} bytes", b.len())))
            } else {
                Ok(b)
            }
        })),
        Value::String(s) => match s.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
            Some((_, payload)) => Some(decode(payload, "bad base64 in data URI")),
            None => plain_base64.then(|| decode(s, "bad base64 image bytes")),
        },
        _ => None,
    }
}

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

fn is_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
}

/// Reads a local image file named by a record; errors become values. The path (relative to
/// the image root, or absolute) must resolve, symlinks followed, to a regular file inside the
/// image root (`path_outside_root` otherwise, unless `allow_outside_root`); devices, FIFOs and
/// directories are refused before they are opened (`not_a_file`), and at most
/// `max_image_bytes` are read from any file, whatever its metadata says.
fn load_file(path: &str, ctx: &RecordContext) -> Result<Vec<u8>, RecordError> {
    // One record may name files over and over (a 110 KB line named a 1 MB file 3,000 times):
    // its files together are held to 8 times the per-file limit, as a WebDataset sample is.
    let cap = ctx.max_image_bytes.saturating_mul(8);
    if ctx.loaded.get() >= cap {
        return Err(RecordError::new(
            ErrorKind::MemberTooLarge,
            format!("{path}: not read: the record's image files together are over {cap} bytes (8 times the per-file limit)"),
        ));
    }
    let data = read_image_file(path, ctx)?;
    ctx.loaded.set(ctx.loaded.get() + data.len() as u64);
    Ok(data)
}

/// [`load_file`]'s read of one file, noted in the context's [`ImageFileLog`] when it has one.
fn read_image_file(path: &str, ctx: &RecordContext) -> Result<Vec<u8>, RecordError> {
    let p = Path::new(path);
    let full = if p.is_absolute() { p.to_path_buf() } else { ctx.image_root.join(p) };
    let mut stat = None;
    let got = read_file_at(path, &full, ctx, &mut stat);
    if let Some(log) = &ctx.file_log {
        log.lock().expect("image file log").note(std::path::absolute(&full).unwrap_or(full).to_string_lossy().into_owned(), stat);
    }
    got
}

/// [`read_image_file`] of `path` (`full`: joined to the root); `stat`: the file's numbers
/// when the read looked them up.
fn read_file_at(path: &str, full: &Path, ctx: &RecordContext, stat: &mut Option<(i64, i64)>) -> Result<Vec<u8>, RecordError> {
    use std::io::Read;
    let p = Path::new(path);
    #[cfg(target_os = "linux")]
    if !ctx.allow_outside_root && !p.is_absolute() {
        if let Some((data, meta)) = ctx.root_dir.as_deref().and_then(|dir| read_beneath(dir, p, ctx.max_image_bytes)) {
            *stat = Some(stat_numbers(&meta));
            return Ok(data);
        }
    }
    let missing = |e: std::io::Error| RecordError::new(ErrorKind::MissingImage, format!("{}: {e}", full.display()));
    let resolved = std::fs::canonicalize(full).map_err(missing)?;
    if !ctx.allow_outside_root && !ctx.canonical_root.as_ref().is_some_and(|root| resolved.starts_with(root)) {
        let msg =
            format!("{path:?} resolves to {}, outside the image root {} (pass allow_outside_root to read it)", resolved.display(), ctx.image_root.display());
        return Err(RecordError::new(ErrorKind::PathOutsideRoot, msg));
    }
    let meta = std::fs::metadata(&resolved).map_err(missing)?;
    *stat = Some(stat_numbers(&meta));
    if !meta.is_file() {
        return Err(RecordError::new(ErrorKind::NotAFile, format!("{} is not a regular file", resolved.display())));
    }
    let too_large = |n: u64| RecordError::new(ErrorKind::MemberTooLarge, format!("{}: {n} bytes exceeds the limit of {}", full.display(), ctx.max_image_bytes));
    if meta.len() > ctx.max_image_bytes {
        return Err(too_large(meta.len()));
    }
    let mut data = Vec::with_capacity(meta.len() as usize + 1);
    std::fs::File::open(&resolved).and_then(|f| f.take(ctx.max_image_bytes.saturating_add(1)).read_to_end(&mut data)).map_err(missing)?;
    if data.len() as u64 > ctx.max_image_bytes {
        return Err(too_large(data.len() as u64));
    }
    Ok(data)
}

/// The common case of [`load_file`] in a few system calls: `openat2` with `RESOLVE_BENEATH`
/// opens `rel` only if every step of its resolution (`..` and symlinks included) stays inside
/// the root, so the path need not be resolved in user space (a `readlink` per component);
/// `O_NONBLOCK` keeps a FIFO from blocking the open. `None` for anything else (an error, not a
/// regular file, over the limit, an absolute symlink, a kernel without `openat2`): the caller
/// then takes the general path, which decides and words the error.
#[cfg(target_os = "linux")]
fn read_beneath(dir: &std::os::fd::OwnedFd, rel: &Path, max: u64) -> Option<(Vec<u8>, std::fs::Metadata)> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::io::Read;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = rustix::fs::openat2(dir, rel, flags, Mode::empty(), ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS).ok()?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut data = Vec::with_capacity(meta.len() as usize + 1);
    file.take(max.saturating_add(1)).read_to_end(&mut data).ok()?;
    (data.len() as u64 <= max).then_some((data, meta))
}

/// Turns an image field (string or object) into an image node.
pub fn resolve_image(v: &Value, ctx: &RecordContext) -> Node {
    let mut node = Node::image(None, None);
    if let Some(bytes) = inline_bytes(v, ctx, false, "") {
        match bytes {
            Ok(b) => node.image = Some(b),
            Err(e) => node.error = Some(e),
        }
        return node;
    }
    let from_path = |s: &str, node: &mut Node| {
        node.image_ref = Some(s.to_string());
        if ctx.load_images && !is_url(s) {
            match load_file(s, ctx) {
                Ok(b) => node.image = Some(b),
                Err(e) => node.error = Some(e),
            }
        }
    };
    match v {
        Value::String(s) => from_path(s, &mut node),
        Value::Object(o) => {
            if let Some(bytes) = o.get("bytes").and_then(|b| inline_bytes(b, ctx, true, "")) {
                match bytes {
                    Ok(b) => node.image = Some(b),
                    Err(e) => node.error = Some(e),
                }
                node.image_ref = ["path", "url"].iter().find_map(|k| o.get(*k).and_then(Value::as_str)).map(String::from);
            } else if let Some(inner) = ["image_path", "path", "url", "src", "image_url", "image"].iter().find_map(|k| o.get(*k).filter(|v| !v.is_null())) {
                match inner {
                    Value::String(s) => from_path(s, &mut node),
                    other => return resolve_image(other, ctx),
                }
            } else {
                node.error = Some(RecordError::new(ErrorKind::BadRecord, format!("image field without bytes, path or url: {v}")));
            }
        }
        other => node.error = Some(RecordError::new(ErrorKind::BadRecord, format!("image field is neither a string nor an object: {other}"))),
    }
    node
}

fn take_string(o: &mut Map<String, Value>, keys: &[&str]) -> Option<(String, Value)> {
    // A record's few fields compared by name, not each key hashed (SipHash): an eighth of the
    // time a parquet caption row took to convert.
    let k = if o.len() <= 16 {
        keys.iter().find(|k| o.iter().any(|(name, v)| name == **k && !v.is_null()))?
    } else {
        keys.iter().find(|k| o.get(**k).is_some_and(|v| !v.is_null()))?
    };
    o.shift_remove(*k).map(|v| (k.to_string(), v))
}

/// The JSON type of `v`, for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A record's id as text: a string as is, a binary value (`{"$blob": k}`: a parquet binary
/// column) as UTF-8 (invalid bytes replaced, with the record's `invalid_utf8` error), anything
/// else as its JSON text.
fn id_text(v: &Value, ctx: &RecordContext) -> (String, Option<RecordError>) {
    match v {
        Value::String(s) => (nonfinite_token(s).map_or_else(|| s.clone(), String::from), None),
        Value::Object(m) if m.contains_key(BLOB_KEY) => match ctx.take_blob(m) {
            Ok(b) => match String::from_utf8(b) {
                Ok(t) => (t, None),
                Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), Some(not_utf8("id", &e))),
            },
            Err(_) => (v.to_string(), None),
        },
        other => (other.to_string(), None),
    }
}

/// The `invalid_utf8` error of field `what` whose bytes did not decode.
fn not_utf8(what: &str, e: &std::string::FromUtf8Error) -> RecordError {
    RecordError::new(ErrorKind::InvalidUtf8, format!("{what}: not valid UTF-8 (byte {}); invalid bytes replaced by U+FFFD", e.utf8_error().valid_up_to()))
}

/// A text node from a record's text value `v` (`what()` names the field in errors, built only then): a string as
/// is; a binary value (`{"$blob": k}`: a parquet binary column) as UTF-8, with an
/// `invalid_utf8` error (and U+FFFD for the bad bytes) when it is not; a number or boolean as
/// its JSON text. A missing value, null, a list or an object gives a text node without text and
/// a `bad_record` error, so the record shows what was wrong instead of JSON in its text.
fn text_node(v: Option<&Value>, what: impl FnOnce() -> String, ctx: &RecordContext) -> Node {
    let failed = |kind: ErrorKind, msg: String| Node { kind: Some(NodeKind::Text), error: Some(RecordError::new(kind, msg)), ..Default::default() };
    match v {
        // A non-finite number (see parse_json_lenient) as its JSON text, as a finite one.
        Some(Value::String(s)) => Node::text(nonfinite_token(s).map_or_else(|| s.clone(), String::from)),
        Some(n @ (Value::Number(_) | Value::Bool(_))) => Node::text(n.to_string()),
        Some(Value::Object(m)) if m.contains_key(BLOB_KEY) => match ctx.take_blob(m) {
            Ok(b) => match String::from_utf8(b) {
                Ok(t) => Node::text(t),
                Err(e) => {
                    let mut node = Node::text(String::from_utf8_lossy(e.as_bytes()).into_owned());
                    node.error = Some(not_utf8(&what(), &e));
                    node
                }
            },
            Err(m) => failed(ErrorKind::BadRecord, format!("{}: {m}", what())),
        },
        None | Some(Value::Null) => failed(ErrorKind::BadRecord, format!("{} is missing", what())),
        Some(other) => failed(ErrorKind::BadRecord, format!("{} must be text, not {}", what(), json_type(other))),
    }
}

fn finish(mut doc: Document, mut meta: Map<String, Value>, ctx: &RecordContext) -> Document {
    inline_blobs(&mut meta, ctx);
    if !meta.is_empty() {
        doc.meta = Some(json_text(&Value::Object(meta)));
    }
    doc
}

/// Converts one JSON record to a document. `fallback_id` is used when the record has no id.
pub fn record_to_document(v: Value, format: Format, fallback_id: String, ctx: &RecordContext) -> Document {
    let mut doc = Document::new(fallback_id, Some(ctx.source.clone()));
    let Value::Object(mut o) = v else {
        doc.set_error(RecordError::new(ErrorKind::BadRecord, format!("a {} record must be a JSON object, not {}", format.as_str(), json_type(&v))));
        // The value is kept, as a malformed line's text is (in meta.__raw__, its first 4 KiB).
        doc.meta = Some(json!({ "__raw__": json_prefix(&v, 4096) }).to_string());
        return doc;
    };
    if format != Format::Nodes {
        if let Some((_, id)) = take_string(&mut o, ID_KEYS) {
            let (id, error) = id_text(&id, ctx);
            doc.doc_id = id;
            if let Some(e) = error {
                doc.set_error(e);
            }
        }
    }
    match format {
        Format::Pairs => pairs::read(&mut doc, &mut o, ctx),
        Format::Mmc4 => mmc4::read(&mut doc, &mut o, ctx),
        Format::Obelics => obelics::read(&mut doc, &mut o, ctx),
        Format::Comm => comm::read(&mut doc, &mut o, ctx),
        Format::Llava => llava::read(&mut doc, &mut o, ctx),
        Format::Nodes => return nodes::read(doc, o, ctx),
    }
    finish(doc, o, ctx)
}

/// The binary values of a record that no layout field took (`{"$blob": k}` cells: a parquet
/// binary column of its own, such as a mask) as `{"base64": ...}` in `fields`, so the
/// document's metadata keeps their bytes, as it keeps a WebDataset sample's other members.
pub(super) fn inline_blobs(fields: &mut Map<String, Value>, ctx: &RecordContext) {
    fn walk(v: &mut Value, ctx: &RecordContext) {
        match v {
            Value::Object(m) if m.len() == 1 && m.contains_key(BLOB_KEY) => {
                if let Ok(bytes) = ctx.take_blob(m) {
                    *v = json!({"base64": b64().encode(&bytes)});
                }
            }
            Value::Object(m) => m.values_mut().for_each(|x| walk(x, ctx)),
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, ctx)),
            _ => {}
        }
    }
    if ctx.blobs.borrow().iter().any(Option::is_some) {
        fields.values_mut().for_each(|v| walk(v, ctx));
    }
}

/// The JSON value an image node is written as: its reference (a path or URL, as read) unless
/// `embed` or it has none, then its bytes as a `data:` URI; null when it has neither.
fn image_value(n: &Node, embed: bool) -> Value {
    match (&n.image_ref, &n.image) {
        (Some(r), _) if !embed || n.image.is_none() => Value::String(r.clone()),
        (_, Some(b)) => Value::String(format!("data:{};base64,{}", image_mime(b), b64().encode(b))),
        _ => Value::Null,
    }
}

/// The MIME type of encoded image bytes, from the format their magic number names.
fn image_mime(b: &[u8]) -> &'static str {
    match crate::image::probe::sniff(b) {
        Some("JPEG") => "image/jpeg",
        Some("PNG") => "image/png",
        Some("GIF") => "image/gif",
        Some("WEBP") => "image/webp",
        Some("BMP") => "image/bmp",
        _ => "application/octet-stream",
    }
}

/// A document as a record of `format`, the inverse of reading it: the document's metadata
/// fields, its id under `"id"` (CoMM's `"data_id"`), and its nodes in the layout's own fields (images as their
/// reference, or inline as a `data:` URI when `embed_images` or when they have no reference).
/// Reading the record back gives the same document (MMC4's `image_info` entries are matched to
/// the image nodes by reference and their `matched_text_index` recomputed, its
/// `similarity_matrix` rows and `matched_sim` following, so removed nodes leave a consistent
/// record). Node errors are not written: the layouts have no place for them.
pub fn document_to_record(doc: &Document, format: Format, embed_images: bool) -> Value {
    if format == Format::Nodes {
        return document_to_json(doc);
    }
    let mut o: Map<String, Value> =
        doc.meta.as_deref().and_then(parse_stored_json).and_then(|v| if let Value::Object(m) = v { Some(m) } else { None }).unwrap_or_default();
    if format != Format::Comm {
        // CoMM's image items are for writing CoMM back; other layouts have their own fields.
        o.shift_remove(comm::IMAGE_ITEMS);
    }
    // CoMM's files name the id `data_id` (its loader reads that key); the others `id`. Where
    // the metadata keeps an id-like key that reading would take first (or that key itself,
    // another value the record had beside its id), the id goes under `doc_id`, which reading
    // takes first, so neither is lost.
    let preferred = if format == Format::Comm { "data_id" } else { "id" };
    let rank = |k: &str| ID_KEYS.iter().position(|x| *x == k).unwrap_or(usize::MAX);
    let taken = ID_KEYS.iter().any(|k| rank(k) <= rank(preferred) && o.get(*k).is_some_and(|v| !v.is_null()));
    o.insert(if taken { ID_KEYS[0] } else { preferred }.into(), Value::String(doc.doc_id.clone()));
    // CoMM's loader reads `data_id`: a CoMM record always has one.
    if format == Format::Comm && !o.contains_key(preferred) {
        o.insert(preferred.into(), Value::String(doc.doc_id.clone()));
    }
    let img = |n: &Node| image_value(n, embed_images);
    match format {
        Format::Pairs => pairs::write(doc, &mut o, &img),
        Format::Mmc4 => mmc4::write(doc, &mut o, &img),
        Format::Obelics => obelics::write(doc, &mut o, &img),
        Format::Comm => comm::write(doc, &mut o, &img),
        Format::Llava => llava::write(doc, &mut o, &img),
        Format::Nodes => unreachable!(),
    }
    Value::Object(o)
}

/// Why `doc` cannot be written as a record of `format` without losing some of its nodes; None
/// when it can. Only the pairs layout has such documents: one with several images or texts
/// (an interleaved one) does not fit a pair record. Writers refuse them rather than drop
/// nodes silently.
pub fn unwritable(doc: &Document, format: Format) -> Option<String> {
    match format {
        Format::Pairs => pairs::unwritable(doc),
        _ => None,
    }
}

/// The record format of a JSON-lines file, from the keys of its first records (None when no
/// record within the first 1,000 lines shows it).
///
/// Looks at the first 1,000 lines and at most 64 MiB of them; a line over 16 MiB is skipped
/// unread (as the reader keeps it as an error), so no line is ever held whole.
pub fn detect_jsonl_format(path: &str) -> Option<Format> {
    const MAX_LINE: usize = 16 << 20;
    const MAX_TOTAL: u64 = 64 << 20;
    let mut stream = crate::input::open(path, Default::default()).ok()?;
    let (mut line, mut seen) = (Vec::new(), 0u64);
    for _ in 0..1000 {
        let (fits, n) = capped_line(&mut stream, MAX_LINE, &mut line).ok()?;
        if n == 0 || seen > MAX_TOTAL {
            return None;
        }
        seen += n as u64;
        let parsed = || String::from_utf8(std::mem::take(&mut line)).ok().and_then(|mut t| parse_json_lenient(&mut t).ok()).map(|(v, _)| v);
        if let Some(f) = fits.then(parsed).flatten().and_then(|v| Format::detect(&v)) {
            return Some(f);
        }
    }
    None
}

/// The next line of `r` into `line` (without its newline) when it is at most `cap` bytes
/// (`true`), else skipped to its end (`false`, `line` empty); and the bytes consumed (0 at
/// the end of the input).
fn capped_line(r: &mut impl std::io::BufRead, cap: usize, line: &mut Vec<u8>) -> std::io::Result<(bool, usize)> {
    line.clear();
    let (mut fits, mut consumed) = (true, 0usize);
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok((fits, consumed));
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], i + 1),
            None => (buf, buf.len()),
        };
        if fits && line.len() + chunk.len() <= cap {
            line.extend_from_slice(chunk);
        } else if fits {
            fits = false;
            line.clear();
        }
        let end = done > chunk.len();
        r.consume(done);
        consumed += done;
        if end {
            return Ok((fits, consumed));
        }
    }
}

/// Parsed records to documents, one source at a time: the format is the one given, else
/// detected from the first record whose keys show it (then kept for the rest of the source);
/// a record without an id is named `"<file name>:<n>"` (n counts records from 1).
pub struct RecordDecoder {
    format: Option<Format>,
    ctx: RecordContext,
    stem: String,
}

impl RecordDecoder {
    pub fn new(format: Option<Format>, ctx: RecordContext) -> Self {
        let stem = Path::new(&ctx.source).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        RecordDecoder { format, ctx, stem }
    }

    /// The id of record `n` when it has none of its own.
    pub fn fallback_id(&self, n: u64) -> String {
        format!("{}:{n}", self.stem)
    }

    /// A document that holds only an error (and the raw record text, when there is one, in
    /// its metadata under `"__raw__"`).
    pub fn error_document(&self, n: u64, error: RecordError, raw: Option<String>) -> Document {
        let mut doc = Document::new(self.fallback_id(n), Some(self.ctx.source.clone()));
        if let Some(raw) = raw {
            doc.meta = Some(json!({ "__raw__": raw }).to_string());
        }
        doc.set_error(error);
        doc
    }

    /// Record `n` as a document. `blobs` are its out-of-line binary values (`{"$blob": k}`
    /// cells, see the module docs); pass an empty vector for records parsed from JSON.
    pub fn decode(&mut self, value: Value, n: u64, blobs: Vec<Option<Vec<u8>>>) -> Document {
        let items = list_items(&value, 3);
        if items > MAX_RECORD_ITEMS {
            let msg = format!("record {n} holds over {MAX_RECORD_ITEMS} list items (texts, images, steps): too many nodes for one document");
            return self.error_document(n, RecordError::new(ErrorKind::BadRecord, msg), Some(json_prefix(&value, 4096)));
        }
        let Some(format) = self.format.or_else(|| Format::detect(&value)) else {
            let msg = format!("record {n}: cannot tell the format from the keys; pass format=");
            return self.error_document(n, RecordError::new(ErrorKind::BadRecord, msg), Some(json_prefix(&value, 4096)));
        };
        self.format = Some(format);
        *self.ctx.blobs.borrow_mut() = blobs;
        self.ctx.loaded.set(0);
        let doc = record_to_document(value, format, self.fallback_id(n), &self.ctx);
        self.ctx.blobs.borrow_mut().clear();
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RecordContext {
        RecordContext::for_source("/nonexistent/x.jsonl", None, true)
    }

    #[test]
    fn mmc4_images_go_before_their_matched_sentence() {
        let v = json!({"url": "u", "text_list": ["a", "b"], "image_info": [{"raw_url": "http://x/1.jpg", "matched_text_index": 1}]});
        let d = record_to_document(v, Format::Mmc4, "f:1".into(), &ctx());
        let kinds: Vec<_> = d.nodes.iter().map(|n| n.kind.unwrap()).collect();
        assert_eq!(kinds, vec![NodeKind::Text, NodeKind::Image, NodeKind::Text]);
        assert_eq!(d.nodes[1].image_ref.as_deref(), Some("http://x/1.jpg"));
        assert!(d.nodes[1].error.is_none());
    }

    #[test]
    fn comm_steps_number_the_nodes() {
        let v = json!({"title": "t", "step_info": [[{"type": "text", "content": "s0"}], [{"type": "text", "content": "s1"}, {"type": "image", "url": "https://x/a.png"}]]});
        let d = record_to_document(v, Format::Comm, "f:1".into(), &ctx());
        assert_eq!(d.nodes.iter().map(|n| n.step).collect::<Vec<_>>(), vec![Some(0), Some(1), Some(1)]);
        assert_eq!(d.meta.as_deref(), Some(r#"{"title":"t"}"#));
    }

    #[test]
    fn a_file_log_notes_every_local_image_named_with_its_stat() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jpg"), b"12345").unwrap();
        let root = dir.path().to_str().unwrap();
        let mut ctx = RecordContext::for_source(&format!("{root}/x.jsonl"), None, true);
        let log = ImageFileLog::default();
        ctx.file_log = Some(log.clone());
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for image in ["a.jpg", "nope.jpg", "http://x/1.jpg", "a.jpg", "../outside.jpg", "sub"] {
            record_to_document(json!({"image": image, "caption": "c"}), Format::Pairs, "f:1".into(), &ctx);
        }
        let got = log.lock().unwrap().take();
        let a = format!("{root}/a.jpg");
        assert_eq!(got.len(), 4, "{got:?}"); // a URL is never a local file; a.jpg is noted once
        assert_eq!((got[0].0.as_str(), got[0].1, got[0].2), (a.as_str(), 5, file_stat(&a).1));
        assert!(got[0].2 > 0);
        assert_eq!((got[1].0.clone(), got[1].1, got[1].2), (format!("{root}/nope.jpg"), -1, -1));
        // A path refused for leaving the root is noted too: its record's error depends on it.
        assert_eq!(got[2].0, format!("{root}/../outside.jpg"));
        // A folder counts by what it is, not by its mtime (which moves with what it holds).
        assert_eq!((got[3].0.clone(), got[3].1, got[3].2), (format!("{root}/sub"), -2, -2));
        assert_eq!(file_stat(&format!("{root}/sub")), (-2, -2));
    }

    #[test]
    fn missing_local_image_is_an_error_on_its_node() {
        let v = json!({"image": "nope.jpg", "caption": "c"});
        let d = record_to_document(v, Format::Pairs, "f:1".into(), &ctx());
        assert_eq!(d.nodes[0].error.as_ref().unwrap().kind.as_str(), "missing_image");
        assert_eq!(d.nodes[1].text.as_deref(), Some("c"));
    }

    #[test]
    fn malformed_and_long_lines_are_kept_as_records() {
        let data = b"{\"caption\": \"a\", \"image\": \"http://x/a.jpg\"}\n{bad json\n\n{\"caption\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n";
        let r = JsonlReader::new(&data[..], None, ctx()).with_max_line_bytes(60);
        let docs: Vec<_> = r.collect();
        assert_eq!(docs.len(), 3);
        assert!(docs[0].error.is_none());
        assert_eq!(docs[1].error.as_ref().unwrap().kind.as_str(), "malformed_json");
        assert_eq!(docs[1].doc_id, "x.jsonl:2");
        assert_eq!(docs[2].error.as_ref().unwrap().kind.as_str(), "line_too_long");
    }

    #[test]
    fn every_layout_round_trips() {
        let cases = [
            (Format::Pairs, json!({"id": "p", "image": "http://x/a.jpg", "caption": "a cat", "license": "cc0"})),
            (
                Format::Mmc4,
                json!({"url": "u", "text_list": ["a", "b", "c"], "image_info": [{"raw_url": "http://x/2.jpg", "matched_text_index": 2, "similarity": 0.3}, {"raw_url": "http://x/1.jpg", "matched_text_index": 0}]}),
            ),
            (Format::Obelics, json!({"texts": ["A", null, "B"], "images": [null, "http://a/1.jpg", null], "metadata": "[]"})),
            (
                Format::Comm,
                json!({"title": "t", "step_info": [[{"type": "text", "content": "s0"}, {"type": "image", "url": "https://x/a.png"}], [{"type": "text", "content": "s1"}]]}),
            ),
            (
                Format::Llava,
                json!({"id": "l", "image": "http://c/1.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A bus."}]}),
            ),
        ];
        for (format, v) in cases {
            let d = record_to_document(v, format, "f:1".into(), &ctx());
            assert!(d.error.is_none() && d.nodes.iter().all(|n| n.error.is_none()), "{format:?}");
            let back = record_to_document(document_to_record(&d, format, false), format, "other".into(), &ctx());
            assert_eq!(back, d, "{format:?}");
        }
    }

    #[test]
    fn a_record_that_is_not_an_object_keeps_its_value() {
        let d = record_to_document(json!([1, 2, 3]), Format::Pairs, "f:1".into(), &ctx());
        assert_eq!(d.error.as_ref().map(|e| (e.kind, e.message.as_str())), Some((ErrorKind::BadRecord, "a pairs record must be a JSON object, not a list")));
        assert_eq!(d.meta.as_deref(), Some(r#"{"__raw__":"[1,2,3]"}"#));
    }

    #[test]
    fn ill_typed_texts_are_node_errors_not_json_text() {
        let kinds = |d: &Document| d.nodes.iter().map(|n| (n.text.clone(), n.error.as_ref().map(|e| e.kind), n.step)).collect::<Vec<_>>();
        let bad = Some(ErrorKind::BadRecord);
        let v = json!({"step_info": [[{"type": "text", "content": null}], 5, [{"type": "text", "content": {"x": 1}}], [{"type": "text", "content": 7}], null]});
        let d = record_to_document(v, Format::Comm, "f:1".into(), &ctx());
        assert_eq!(kinds(&d), vec![(None, bad, Some(0)), (None, bad, Some(1)), (None, bad, Some(2)), (Some("7".into()), None, Some(3)), (None, bad, Some(4))]);
        assert!(d.nodes[1].error.as_ref().unwrap().message.contains("step 1 must be a list of items, not a number"));
        let v = json!({"conversations": [{"from": "human", "value": null}, "plain", [1], {"from": "gpt", "value": "ok"}]});
        let d = record_to_document(v, Format::Llava, "f:1".into(), &ctx());
        assert_eq!(kinds(&d), vec![(None, bad, None), (Some("plain".into()), None, None), (None, bad, None), (Some("ok".into()), None, None)]);
        assert_eq!(d.nodes[0].error.as_ref().unwrap().message, "LLaVA turn 0 value is missing");
        let v = json!({"texts": ["a", {"y": 2}], "images": [null, null]});
        let d = record_to_document(v, Format::Obelics, "f:1".into(), &ctx());
        assert_eq!(kinds(&d), vec![(Some("a".into()), None, None), (None, bad, None)]);
    }

    #[test]
    fn binary_texts_and_ids_are_decoded_as_utf8() {
        // Parquet binary columns arrive as {"$blob": k}: a caption is text, not a blob.
        let mut dec = RecordDecoder::new(Some(Format::Pairs), ctx());
        let v = json!({"id": {"$blob": 0}, "caption": {"$blob": 1}, "image": "http://x/a.jpg"});
        let d = dec.decode(v.clone(), 1, vec![Some(b"id-\xff".to_vec()), Some(b"a caf\xc3\xa9".to_vec())]);
        assert_eq!((d.doc_id.as_str(), d.nodes[1].text.as_deref(), d.nodes[1].error.is_none()), ("id-\u{fffd}", Some("a caf\u{e9}"), true));
        assert_eq!(
            d.error.as_ref().map(|e| (e.kind, e.message.as_str())),
            Some((ErrorKind::InvalidUtf8, "id: not valid UTF-8 (byte 3); invalid bytes replaced by U+FFFD"))
        );
        let d = dec.decode(v, 2, vec![Some(b"x".to_vec()), Some(b"bad \xff\xfe caption".to_vec())]);
        let e = d.nodes[1].error.as_ref().unwrap();
        assert_eq!((e.kind, d.nodes[1].text.as_deref()), (ErrorKind::InvalidUtf8, Some("bad \u{fffd}\u{fffd} caption")));
        assert!(e.message.starts_with("caption: not valid UTF-8 (byte 4)"));
    }

    #[test]
    fn comm_writes_its_data_id_and_whole_image_items_back() {
        let item = |k: &str| json!({"type": "image", "url": format!("https://x/{k}.png"), "image_path": format!("a/{k}.png"), "image_id": k});
        let v = json!({
            "data_id": "c1",
            "dataset_type": "wikihow",
            "title": "t",
            "summary_info": [{"type": "text", "content": "s"}],
            "step_info": [[{"type": "text", "content": "s0"}, item("a")], [item("b"), {"type": "image", "image_path": "a/c.png"}]]
        });
        let d = record_to_document(v.clone(), Format::Comm, "f:1".into(), &ctx());
        assert_eq!(d.doc_id, "c1");
        assert_eq!(d.nodes.iter().filter_map(|n| n.image_ref.as_deref()).collect::<Vec<_>>(), ["a/a.png", "a/b.png", "a/c.png"]);
        assert_eq!(document_to_record(&d, Format::Comm, false), v);
        // A removed image takes its item along; no bookkeeping key is written.
        let mut cut = d.clone();
        cut.nodes.remove(1);
        let rec = document_to_record(&cut, Format::Comm, false);
        assert_eq!(rec["step_info"], json!([[{"type": "text", "content": "s0"}], [item("b"), {"type": "image", "image_path": "a/c.png"}]]));
        assert!(rec.get(comm::IMAGE_ITEMS).is_none());
        // Embedded, the bytes replace the path and the URL stays.
        let mut inline = d.clone();
        inline.nodes[1].image = Some(b"\x89PNG\r\n\x1a\n".to_vec());
        let rec = document_to_record(&inline, Format::Comm, true);
        let got = &rec["step_info"][0][1];
        assert_eq!(
            (got["url"].as_str(), got.get("image_path"), got["image"].as_str().map(|s| s.starts_with("data:image/png;base64,"))),
            (Some("https://x/a.png"), None, Some(true))
        );
        // Two images with one path, the second with a URL: each gets its own item back.
        let v = json!({"data_id": "c2", "step_info": [[{"type": "image", "image_path": "a/a.png"}], [item("a")]]});
        let twice = record_to_document(v.clone(), Format::Comm, "f:1".into(), &ctx());
        assert_eq!(document_to_record(&twice, Format::Comm, false), v);
        // Other layouts get neither the items nor CoMM's id key.
        let rec = document_to_record(&d, Format::Obelics, false);
        assert!(rec.get(comm::IMAGE_ITEMS).is_none() && rec.get("data_id").is_none() && rec["id"] == "c1");
    }

    #[test]
    fn mmc4_writes_consistent_image_info_after_removals() {
        let v = json!({"text_list": ["a", "b", "c"], "image_info": [{"raw_url": "http://x/1.jpg", "matched_text_index": 1}, {"raw_url": "http://x/2.jpg", "matched_text_index": 2}]});
        let mut d = record_to_document(v, Format::Mmc4, "f:1".into(), &ctx());
        // a, [1.jpg], b, [2.jpg], c: drop "b" and the first image.
        d.nodes.remove(2);
        d.nodes.remove(1);
        let rec = document_to_record(&d, Format::Mmc4, false);
        assert_eq!(rec["text_list"], json!(["a", "c"]));
        assert_eq!(rec["image_info"], json!([{"raw_url": "http://x/2.jpg", "matched_text_index": 1}]));
    }

    #[test]
    fn mmc4_images_without_a_reference_keep_their_own_entries() {
        // Entries holding only inline bytes (as `convert` from WebDataset writes them): a
        // dropped or reordered image must not take another's entry.
        let (a, b) = (b"\x89PNG\r\n\x1a\nAAA".to_vec(), b"\x89PNG\r\n\x1a\nBBB".to_vec());
        let uri = |x: &[u8]| format!("data:image/png;base64,{}", b64().encode(x));
        let v = json!({"text_list": ["s0", "s1", "s2"], "image_info": [
            {"image_base64": uri(&a), "matched_text_index": 0, "note": "a"},
            {"image_base64": uri(&b), "matched_text_index": 2, "note": "b"}]});
        let d = record_to_document(v, Format::Mmc4, "f:1".into(), &ctx());
        let notes = |rec: &Value| {
            rec["image_info"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["note"].as_str().unwrap().to_string(), e["matched_text_index"].as_u64().unwrap()))
                .collect::<Vec<_>>()
        };
        // Drop the first image: the second keeps its own entry.
        let mut dropped = d.clone();
        dropped.nodes.remove(0);
        assert_eq!(notes(&document_to_record(&dropped, Format::Mmc4, false)), [("b".to_string(), 2)]);
        // Swap them: a [B] s0 s1 [A] s2.
        let mut swapped = d.clone();
        let (ia, ib) = (
            swapped.nodes.iter().position(|n| n.image.as_deref() == Some(&a[..])).unwrap(),
            swapped.nodes.iter().position(|n| n.image.as_deref() == Some(&b[..])).unwrap(),
        );
        swapped.nodes.swap(ia, ib);
        assert_eq!(notes(&document_to_record(&swapped, Format::Mmc4, false)), [("a".to_string(), 2), ("b".to_string(), 0)]);
        // No sentence at all beside a matrix row: no panic, no matched_sim it cannot have.
        let v = json!({"text_list": [], "similarity_matrix": [[]], "image_info": [{"raw_url": "http://x/1.jpg", "matched_text_index": 3, "matched_sim": 0.2}]});
        let d = record_to_document(v, Format::Mmc4, "f:1".into(), &ctx());
        let rec = document_to_record(&d, Format::Mmc4, false);
        assert!(rec["image_info"][0].get("matched_sim").is_none());
    }

    #[test]
    fn an_id_beside_the_documents_own_is_kept_on_writing() {
        // doc_id is the id; the record's `id` is another value, kept in the metadata.
        for f in [Format::Pairs, Format::Obelics, Format::Comm] {
            let v = json!({"doc_id": "d1", "id": "other", "caption": "c", "texts": ["t"], "images": [null], "step_info": [[{"type": "text", "content": "x"}]]});
            let d = record_to_document(v, f, "f:1".into(), &ctx());
            assert_eq!(d.doc_id, "d1");
            let rec = document_to_record(&d, f, false);
            assert_eq!((&rec["doc_id"], &rec["id"]), (&json!("d1"), &json!("other")), "{f:?}");
            let back = record_to_document(rec, f, "f:2".into(), &ctx());
            let mut meta: Value = serde_json::from_str(back.meta.as_deref().unwrap()).unwrap();
            if f == Format::Comm {
                // CoMM's data_id, which its loader reads, is added beside.
                assert_eq!(meta.as_object_mut().unwrap().remove("data_id"), Some(json!("d1")));
            }
            assert_eq!((back.doc_id.as_str(), meta), ("d1", serde_json::from_str::<Value>(d.meta.as_deref().unwrap()).unwrap()), "{f:?}");
        }
        // The usual case: the id under `id` (CoMM: `data_id`).
        let d = record_to_document(json!({"key": "k", "caption": "c"}), Format::Pairs, "f:1".into(), &ctx());
        assert_eq!(document_to_record(&d, Format::Pairs, false)["id"], json!("k"));
        // A CoMM record always has the data_id its loader reads, also where `doc_id` had to
        // carry the id past an id-like key of the metadata (a pair's `uid`, say).
        let mut d = record_to_document(json!({"key": "k", "uid": "u", "caption": "c"}), Format::Pairs, "f:1".into(), &ctx());
        d.nodes.clear();
        d.nodes.push(Node::text("a step").with_step(Some(0)));
        let rec = document_to_record(&d, Format::Comm, false);
        assert_eq!((&rec["doc_id"], &rec["data_id"], &rec["uid"]), (&json!("k"), &json!("k"), &json!("u")));
        assert_eq!(record_to_document(rec, Format::Comm, "f:2".into(), &ctx()).doc_id, "k");
    }

    #[test]
    fn mmc4_similarities_follow_the_images_left() {
        // MMC4's matrix is len(image_info) x len(text_list), matched_sim its entry at the match.
        let v = json!({"text_list": ["a", "b", "c"], "similarity_matrix": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]], "image_info": [
            {"raw_url": "http://x/1.jpg", "matched_text_index": 0, "matched_sim": 0.1},
            {"raw_url": "http://x/2.jpg", "matched_text_index": 1, "matched_sim": 0.5},
            {"raw_url": "http://x/3.jpg", "matched_text_index": 2, "matched_sim": 0.9}]});
        let d = record_to_document(v.clone(), Format::Mmc4, "f:1".into(), &ctx());
        assert_eq!(document_to_record(&d, Format::Mmc4, false)["similarity_matrix"], v["similarity_matrix"]);
        // [1.jpg] a [2.jpg] b [3.jpg] c: drop 2.jpg and move 1.jpg to sentence c.
        let mut moved = d.clone();
        let one = moved.nodes.remove(0);
        moved.nodes.retain(|n| n.image_ref.as_deref() != Some("http://x/2.jpg"));
        moved.nodes.insert(moved.nodes.len() - 1, one);
        let rec = document_to_record(&moved, Format::Mmc4, false);
        assert_eq!(rec["similarity_matrix"], json!([[0.1, 0.2, 0.3], [0.7, 0.8, 0.9]]));
        assert_eq!(
            rec["image_info"],
            json!([{"raw_url": "http://x/1.jpg", "matched_text_index": 2, "matched_sim": 0.3}, {"raw_url": "http://x/3.jpg", "matched_text_index": 2, "matched_sim": 0.9}])
        );
        // A sentence removed: the matrix's columns are no longer the sentences; it goes, and
        // with it every matched_sim it could not vouch for.
        let mut fewer = d.clone();
        fewer.nodes.retain(|n| n.text.as_deref() != Some("b"));
        let rec = document_to_record(&fewer, Format::Mmc4, false);
        assert!(rec.get("similarity_matrix").is_none());
        assert!(rec["image_info"].as_array().unwrap().iter().all(|e| e.get("matched_sim").is_none()));
        // A new image has no row: the matrix goes, the record's own entries keep theirs.
        let mut added = d.clone();
        added.nodes.insert(0, Node::image(None, Some("http://x/new.jpg".into())));
        let rec = document_to_record(&added, Format::Mmc4, false);
        assert!(rec.get("similarity_matrix").is_none());
        assert_eq!(rec["image_info"][0]["matched_sim"], json!(0.1));
    }

    #[test]
    fn images_without_a_reference_are_embedded() {
        let mut d = Document::new("d", None);
        d.nodes.push(Node::image(Some(b"\x89PNG\r\n\x1a\n\x01\x02".to_vec()), None));
        d.nodes.push(Node::text("x"));
        let rec = document_to_record(&d, Format::Pairs, false);
        assert_eq!(rec["image"], json!("data:image/png;base64,iVBORw0KGgoBAg=="));
        let back = record_to_document(rec, Format::Pairs, "other".into(), &ctx());
        assert_eq!(back.nodes[0].image, d.nodes[0].image);
    }

    #[test]
    fn capped_lines_skip_what_is_too_long_without_holding_it() {
        let data = b"{\"a\": 1}\n0123456789abcdef\n\nlast";
        let mut r = std::io::BufReader::with_capacity(4, &data[..]);
        let mut line = Vec::new();
        let mut got = Vec::new();
        loop {
            let (fits, n) = capped_line(&mut r, 8, &mut line).unwrap();
            if n == 0 {
                break;
            }
            got.push((fits, n, String::from_utf8(line.clone()).unwrap()));
        }
        let want = [(true, 9, "{\"a\": 1}"), (false, 17, ""), (true, 1, ""), (true, 4, "last")];
        assert_eq!(got, want.map(|(f, n, l)| (f, n, l.to_string())));
    }

    #[test]
    fn format_detection_skips_a_huge_first_line() {
        let dir = std::env::temp_dir().join(format!("interleaf-detect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.jsonl");
        let mut data = vec![b'a'; 17 << 20];
        data.extend(b"\n{\"caption\": \"c\", \"image\": \"i.jpg\"}\n");
        std::fs::write(&path, data).unwrap();
        assert_eq!(detect_jsonl_format(path.to_str().unwrap()), Some(Format::Pairs));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nodes_schema_round_trips() {
        let v = json!({"text_list": ["a"], "image_info": [{"raw_url": "http://x/1.jpg", "matched_text_index": 0}]});
        let d = record_to_document(v, Format::Mmc4, "f:1".into(), &ctx());
        let back = record_to_document(document_to_json(&d), Format::Nodes, "other".into(), &ctx());
        assert_eq!(back, d);
    }

    #[test]
    fn lone_surrogate_escapes_parse_as_python_reads_them() {
        let mut t = r#"{"a": "x\ud800y", "b": "\ud83d\ude00", "c": "\\ud800", "d": "\udc00\ud800"}"#.to_string();
        let (v, n) = parse_json_lenient(&mut t).unwrap();
        assert_eq!(n, 3);
        assert_eq!(v["a"], "x\u{fffd}y");
        assert_eq!(v["b"], "\u{1f600}"); // a real pair is untouched
        assert_eq!(v["c"], "\\ud800"); // an escaped backslash, not an escape
        assert_eq!(v["d"], "\u{fffd}\u{fffd}"); // a low before a high pairs with nothing
        let mut t = r#"{"a": "\ud800"#.to_string(); // still malformed after the repair
        assert!(parse_json_lenient(&mut t).is_err());
        let mut t = r#"{"a": 1,}"#.to_string(); // other errors are left as they are
        assert!(parse_json_lenient(&mut t).is_err());
        assert_eq!(t, r#"{"a": 1,}"#);
        for cut in [r#""\"#, r#""\u"#, r#""\ud8"#, r#""\ud800\"#, r#""\ud800\u"#, r#""\ud800\udc"#] {
            let mut t = cut.to_string();
            assert!(parse_json_lenient(&mut t).is_err(), "{cut}");
        }
    }

    #[test]
    fn non_finite_numbers_parse_and_write_back_as_python_does() {
        let line = r#"{"a": NaN, "b": [Infinity, -Infinity, 1.5], "s": "NaN Infinity -Infinity", "t": "x\" NaN", "u": "\\", "v": -1}"#;
        let mut t = line.to_string();
        let (v, n) = parse_json_lenient(&mut t).unwrap();
        assert_eq!(n, 0);
        assert_eq!(nonfinite_token(v["a"].as_str().unwrap()), Some("NaN"));
        assert_eq!(v["s"], "NaN Infinity -Infinity"); // strings are untouched
        assert_eq!(v["t"], "x\" NaN");
        assert_eq!(json_text(&v), r#"{"a":NaN,"b":[Infinity,-Infinity,1.5],"s":"NaN Infinity -Infinity","t":"x\" NaN","u":"\\","v":-1}"#);
        assert_eq!(parse_stored_json(&json_text(&v)), Some(v.clone()));
        // A string that merely holds the marker's text inside another is written as it is.
        let odd = json!({"k": format!("x{NONFINITE_MARK}NaN"), "l": [format!("{NONFINITE_MARK}NaNx")]});
        assert_eq!(parse_stored_json(&json_text(&odd)), Some(odd));
        // Still malformed with the tokens read: the error is the first parse's, the text as it was.
        let mut t = r#"{"a": NaN,}"#.to_string();
        assert!(parse_json_lenient(&mut t).is_err());
        assert_eq!(t, r#"{"a": NaN,}"#);
        // Lower case is not Python's either.
        assert!(parse_json_lenient(&mut r#"{"a": nan}"#.to_string()).is_err());
        // A non-finite caption is its JSON text, as a finite number's is.
        let (v, _) = parse_json_lenient(&mut r#"{"id": NaN, "image": "http://x/a.jpg", "caption": Infinity, "sim": NaN}"#.to_string()).unwrap();
        let d = record_to_document(v, Format::Pairs, "f:1".into(), &ctx());
        assert_eq!((d.doc_id.as_str(), d.nodes[1].text.as_deref(), d.meta.as_deref()), ("NaN", Some("Infinity"), Some(r#"{"sim":NaN}"#)));
        assert_eq!(json_text(&document_to_record(&d, Format::Pairs, false)), r#"{"sim":NaN,"id":"NaN","image":"http://x/a.jpg","caption":"Infinity"}"#);
    }

    #[test]
    fn inline_images_are_held_to_the_per_image_limit() {
        let mut c = ctx();
        c.max_image_bytes = 10;
        let kind = |n: &Node| n.error.as_ref().map(|e| (e.kind, e.message.clone()));
        let fits = b64().encode(b"0123456789");
        let over = b64().encode(b"0123456789A");
        for (v, ok) in [
            (json!(format!("data:image/png;base64,{fits}")), true),
            (json!(format!("data:image/png;base64,{over}")), false),
            (json!({"bytes": fits}), true),
            (json!({"bytes": over}), false),
        ] {
            let n = resolve_image(&v, &c);
            assert_eq!(n.image.is_some(), ok, "{v}");
            if !ok {
                let (k, m) = kind(&n).unwrap();
                assert_eq!((k, m.as_str()), (ErrorKind::MemberTooLarge, "inline image of 11 bytes, over the limit of 10 bytes (max_member_bytes)"));
            }
        }
        // A long base64 string is refused by its length, before it is decoded.
        let huge = "A".repeat(1 << 20);
        let (k, m) = kind(&resolve_image(&json!({"bytes": huge}), &c)).unwrap();
        assert_eq!(k, ErrorKind::MemberTooLarge);
        assert!(m.starts_with("inline image of 1048576 base64 characters (at least 786430 bytes) not decoded"), "{m}");
        // A binary cell (parquet), an MMC4 image_base64 and a node's image_b64 alike.
        let mut dec = RecordDecoder::new(Some(Format::Pairs), c.clone());
        let d = dec.decode(json!({"image": {"$blob": 0}, "caption": "c"}), 1, vec![Some(vec![0; 11])]);
        assert_eq!(kind(&d.nodes[0]).unwrap().0, ErrorKind::MemberTooLarge);
        let d = dec.decode(json!({"image": {"$blob": 0}, "caption": "c"}), 2, vec![Some(vec![0; 10])]);
        assert_eq!(d.nodes[0].image.as_deref(), Some(&[0u8; 10][..]));
        let d =
            record_to_document(json!({"text_list": ["a"], "image_info": [{"image_base64": over, "matched_text_index": 0}]}), Format::Mmc4, "f:1".into(), &c);
        assert!(kind(&d.nodes[0]).unwrap().1.starts_with("image_base64: inline image of 11 bytes"));
        let d = record_to_document(json!({"nodes": [{"kind": "image", "image_b64": over}]}), Format::Nodes, "f:1".into(), &c);
        assert_eq!(kind(&d.nodes[0]).unwrap().0, ErrorKind::MemberTooLarge);
    }

    #[test]
    fn binary_values_no_field_takes_stay_in_the_metadata_as_base64() {
        // A parquet pairs file with a mask column: the bytes were lost, the metadata holding
        // `{"$blob": k}`.
        let mut dec = RecordDecoder::new(Some(Format::Pairs), ctx());
        let v = json!({"image": {"$blob": 0}, "caption": "c", "mask": {"$blob": 1}, "extra": {"thumb": {"$blob": 2}, "xs": [{"$blob": 3}, null]}});
        let d = dec.decode(v, 1, vec![Some(vec![1, 2]), Some(vec![0, 1, 255]), Some(b"\x89PNG".to_vec()), Some(vec![])]);
        assert_eq!(d.nodes[0].image.as_deref(), Some(&[1u8, 2][..]));
        let meta: Value = serde_json::from_str(d.meta.as_deref().unwrap()).unwrap();
        assert_eq!(meta, json!({"mask": {"base64": "AAH/"}, "extra": {"thumb": {"base64": "iVBORw=="}, "xs": [{"base64": ""}, null]}}));
        // A `{"$blob": k}` object read from JSON (no binary values beside it) stays as it is.
        let d = dec.decode(json!({"image": "a.jpg", "caption": "c", "m": {"$blob": 0}}), 2, vec![]);
        assert_eq!(d.meta.as_deref(), Some(r#"{"m":{"$blob":0}}"#));
        let mut dec = RecordDecoder::new(Some(Format::Nodes), ctx());
        let d = dec.decode(json!({"doc_id": "d", "nodes": [], "mask": {"$blob": 0}}), 1, vec![Some(vec![7])]);
        assert_eq!(d.meta.as_deref(), Some(r#"{"mask":{"base64":"Bw=="}}"#));
    }

    #[test]
    fn embedding_replaces_the_mmc4_image_name_of_the_records_own_entries() {
        let v = json!({"text_list": ["a"], "image_info": [{"image_name": "1.jpg", "raw_url": "http://x/1.jpg", "matched_text_index": 0}, {"image_name": "2.jpg", "matched_text_index": 0}]});
        let mut d = record_to_document(v.clone(), Format::Mmc4, "f:1".into(), &ctx());
        assert_eq!(document_to_record(&d, Format::Mmc4, true)["image_info"], v["image_info"]); // no bytes: nothing to embed
        d.nodes[0].image = Some(b"\x89PNG\r\n\x1a\n1".to_vec());
        d.nodes[1].image = Some(b"\x89PNG\r\n\x1a\n2".to_vec());
        let rec = document_to_record(&d, Format::Mmc4, true);
        let info = rec["image_info"].as_array().unwrap();
        assert_eq!((info[0]["raw_url"].as_str(), info[0].get("image_name"), info[1].get("image_name")), (Some("http://x/1.jpg"), None, None));
        let back = record_to_document(rec, Format::Mmc4, "f:1".into(), &RecordContext::for_source("/nonexistent/x.jsonl", None, false));
        let images: Vec<_> = back.nodes.iter().filter_map(|n| n.image.clone()).collect();
        assert_eq!(images, [d.nodes[0].image.clone().unwrap(), d.nodes[1].image.clone().unwrap()]);
        assert_eq!(document_to_record(&d, Format::Mmc4, false)["image_info"], v["image_info"]);
        // not embedded: the paths
    }

    #[test]
    fn a_pairs_record_cannot_hold_an_interleaved_document() {
        let v = json!({"texts": ["a", null, "b"], "images": [null, "http://x/1.jpg", null]});
        let d = record_to_document(v, Format::Obelics, "doc7".into(), &ctx());
        let why = unwritable(&d, Format::Pairs).unwrap();
        assert!(why.starts_with(r#"document "doc7" has 1 image(s) and 2 text(s): a pairs record holds one image and one caption"#), "{why}");
        assert!(Format::ALL.iter().filter(|f| **f != Format::Pairs).all(|f| unwritable(&d, *f).is_none()));
        let pair = record_to_document(json!({"image": "http://x/1.jpg", "caption": "c"}), Format::Pairs, "p".into(), &ctx());
        assert!(unwritable(&pair, Format::Pairs).is_none());
    }

    #[test]
    fn a_node_may_give_its_image_under_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jpg"), b"abc").unwrap();
        let c = RecordContext::for_source(dir.path().join("x.jsonl").to_str().unwrap(), None, true);
        let v = json!({"nodes": [{"kind": "image", "image": {"path": "a.jpg"}}, {"kind": "image", "image": "a.jpg", "image_ref": "mine"}, {"kind": "image", "image": 42}]});
        let d = record_to_document(v, Format::Nodes, "f:1".into(), &c);
        let got: Vec<_> = d.nodes.iter().map(|n| (n.image.as_deref(), n.image_ref.as_deref(), n.error.as_ref().map(|e| e.kind))).collect();
        assert_eq!(got, [(Some(&b"abc"[..]), Some("a.jpg"), None), (Some(&b"abc"[..]), Some("mine"), None), (None, None, Some(ErrorKind::BadRecord))]);
    }
}
