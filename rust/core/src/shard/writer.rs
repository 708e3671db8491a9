//! A deterministic WebDataset shard writer: fixed member order and headers (mtime 0, mode
//! 0644, uid/gid 0), shards split by sample count and bytes, each written to a unique
//! temporary name and renamed when complete so a reader never sees half a shard; one writer
//! at a time per set of shard names ([`WriteLock`]).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::doc::Document;
use crate::error::{Error, Result};
use crate::input::Compression;
use crate::shard::{document_to_members, key_for};

/// How shards are named inside the destination folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardNames {
    /// `{prefix}-{index:06}.tar` plus `.gz` / `.zst` when compressed.
    Prefix(String),
    /// A name with one `%d` or `%0Nd` for the index (webdataset's `ShardWriter` convention),
    /// such as `out-%06d.tar`.
    Pattern(String),
    /// Exactly one shard of this name; a dataset that needs a second one is an error.
    Single(String),
}

impl ShardNames {
    /// Checks that the names stay inside the folder: a plain file name (no `/`, not `..`, not
    /// hidden), and a pattern with exactly one index field.
    pub fn check(&self) -> Result<()> {
        let (what, name) = match self {
            ShardNames::Prefix(p) => ("prefix", p),
            ShardNames::Pattern(p) => ("pattern", p),
            ShardNames::Single(p) => ("file name", p),
        };
        check_file_name(what, name)?;
        if let ShardNames::Pattern(p) = self {
            if index_field(p).is_none() {
                return Err(Error::Invalid(format!("shard pattern {p:?} needs exactly one index field such as %06d")));
            }
        }
        Ok(())
    }

    fn name(&self, index: u64, compression: Compression) -> String {
        match self {
            ShardNames::Prefix(p) => format!("{p}-{index:06}.tar{}", compression.suffix()),
            ShardNames::Pattern(p) => {
                let (start, end, width) = index_field(p).expect("checked pattern");
                format!("{}{index:0width$}{}", &p[..start], &p[end..])
            }
            ShardNames::Single(name) => name.clone(),
        }
    }

    /// Whether `file` is a shard this naming produces (any index, any compression suffix for a
    /// prefix).
    fn matches(&self, file: &str) -> bool {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match self {
            ShardNames::Prefix(p) => file
                .strip_prefix(p.as_str())
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|r| r.split_once(".tar"))
                .is_some_and(|(idx, ext)| digits(idx) && matches!(ext, "" | ".gz" | ".zst")),
            ShardNames::Pattern(p) => {
                let (start, end, _) = index_field(p).expect("checked pattern");
                file.strip_prefix(&p[..start]).and_then(|r| r.strip_suffix(&p[end..])).is_some_and(digits)
            }
            ShardNames::Single(name) => file == name,
        }
    }

    /// The lock file's name for these shards.
    fn lock_name(&self) -> String {
        match self {
            ShardNames::Prefix(p) => format!("{p}-shards"),
            ShardNames::Pattern(p) | ShardNames::Single(p) => p.replace('%', "_"),
        }
    }
}

/// The `%d` / `%0Nd` field of a pattern: (start, end, width); `None` unless there is exactly one.
fn index_field(p: &str) -> Option<(usize, usize, usize)> {
    let mut found = None;
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j >= b.len() || b[j] != b'd' || found.is_some() {
                return None;
            }
            let width = p[i + 1..j].trim_start_matches('0').parse().unwrap_or(0).min(20);
            found = Some((i, j + 1, width));
            i = j;
        }
        i += 1;
    }
    found
}

/// Refuses names that would leave the folder or hide: `/`, `\`, `..`, NUL, a leading `.`.
pub fn check_file_name(what: &str, name: &str) -> Result<()> {
    // A leading '.' covers ".." (and hidden files); ".." inside a name ("part..1.jsonl") is a name.
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return Err(Error::Invalid(format!("{what} {name:?} must be a plain file name: no '/', '\\' or leading '.' (so not '..')")));
    }
    Ok(())
}

/// An exclusive lock on writing one set of files in a folder, held until dropped (released by
/// the OS if the process dies, so a killed run never blocks the next). The lock file,
/// `.{name}.lock`, is removed when the lock is dropped (a killed process leaves it; readers
/// skip it).
#[derive(Debug)]
pub struct WriteLock {
    file: File,
    path: PathBuf,
}

impl WriteLock {
    pub fn acquire(dir: &Path, name: &str) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Invalid(format!("{} is a file, not a folder: the destination's folder must be a folder", dir.display())));
        }
        fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        let path = dir.join(format!(".{name}.lock"));
        loop {
            let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::Invalid(format!(
                        "another writer is writing {name} in {} (lock {}); wait for it or write elsewhere",
                        dir.display(),
                        path.display()
                    )))
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io(path.display().to_string(), e)),
            }
            // The holder before us removes the file before it unlocks: if the name no longer
            // leads to the file we locked, that lock guards nothing, so take the new file.
            if same_file(&file, &path) {
                return Ok(WriteLock { file, path });
            }
        }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Removed while still locked, so no one can lock this file and take it for current.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// A temporary name beside `path`, unique to this process and call.
pub fn temp_name(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// The shard name a [`temp_name`] (`.NAME.PID-N.tmp`) was made for; `None` for other names.
fn leftover_of(name: &str) -> Option<&str> {
    let (shard, tag) = name.strip_prefix('.')?.strip_suffix(".tmp")?.rsplit_once('.')?;
    let (pid, n) = tag.split_once('-')?;
    (!pid.is_empty() && !n.is_empty() && pid.bytes().chain(n.bytes()).all(|b| b.is_ascii_digit())).then_some(shard)
}

#[derive(Clone, Debug)]
pub struct ShardWriterOptions {
    pub names: ShardNames,
    pub compression: Compression,
    pub max_count: u64,
    pub max_bytes: u64,
    pub start_index: u64,
    /// Replace shards of the same names already in the folder (those this run does not write
    /// again are removed when it finishes); without it, such shards are an error.
    pub overwrite: bool,
}

impl Default for ShardWriterOptions {
    fn default() -> Self {
        ShardWriterOptions {
            names: ShardNames::Prefix("shard".into()),
            compression: Compression::None,
            max_count: 10_000,
            max_bytes: 1 << 30,
            start_index: 0,
            overwrite: false,
        }
    }
}

enum Sink {
    Plain(BufWriter<File>),
    Gz(flate2::write::GzEncoder<BufWriter<File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gz(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gz(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

impl Sink {
    fn finish(self) -> std::io::Result<()> {
        let mut inner = match self {
            Sink::Plain(w) => w,
            Sink::Gz(w) => w.finish()?,
            Sink::Zstd(w) => w.finish()?,
        };
        inner.flush()?;
        inner.get_ref().sync_all()
    }
}

struct OpenShard {
    builder: tar::Builder<Sink>,
    tmp: PathBuf,
    path: PathBuf,
    count: u64,
    bytes: u64,
}

pub struct ShardWriter {
    dir: PathBuf,
    opts: ShardWriterOptions,
    index: u64,
    current: Option<OpenShard>,
    written: Vec<String>,
    last_key: String,
    /// Shards of these names that were in the folder before (removed at the end unless
    /// rewritten; only with `overwrite`).
    stale: Vec<PathBuf>,
    _lock: WriteLock,
}

impl ShardWriter {
    pub fn new(dir: impl AsRef<Path>, opts: ShardWriterOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        opts.names.check()?;
        if opts.max_count == 0 || opts.max_bytes == 0 {
            return Err(Error::Invalid("max_count and max_bytes must be positive".into()));
        }
        let lock = WriteLock::acquire(&dir, &opts.names.lock_name())?;
        let mut stale = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if opts.names.matches(&name) {
                stale.push(entry.path());
            } else if leftover_of(&name).is_some_and(|shard| opts.names.matches(shard)) {
                // A killed writer's temporary shard (the lock says none is alive): garbage.
                let _ = fs::remove_file(entry.path());
            }
        }
        stale.sort();
        if !stale.is_empty() && !opts.overwrite {
            return Err(Error::Invalid(format!(
                "{} already holds {} shard(s) of these names ({}, ...); pass overwrite=True (--overwrite) to replace them",
                dir.display(),
                stale.len(),
                stale[0].display()
            )));
        }
        let index = opts.start_index;
        Ok(ShardWriter { dir, opts, index, current: None, written: Vec::new(), last_key: String::new(), stale, _lock: lock })
    }

    fn one_file_error(&self) -> Error {
        Error::Invalid(format!(
            "the documents need more than one shard ({} documents or {} bytes per shard) but the destination names one file; give a folder or a pattern such as out-%06d.tar",
            self.opts.max_count, self.opts.max_bytes
        ))
    }

    fn open(&mut self) -> Result<()> {
        if matches!(self.opts.names, ShardNames::Single(_)) && self.index > self.opts.start_index {
            return Err(self.one_file_error());
        }
        let name = self.opts.names.name(self.index, self.opts.compression);
        let path = self.dir.join(&name);
        let tmp = temp_name(&path);
        let file = File::create(&tmp).map_err(|e| Error::io(tmp.display().to_string(), e))?;
        let w = BufWriter::with_capacity(1 << 20, file);
        let sink = match self.opts.compression {
            Compression::Gzip => Sink::Gz(flate2::write::GzEncoder::new(w, flate2::Compression::default())),
            Compression::Zstd => Sink::Zstd(zstd::stream::write::Encoder::new(w, 3).map_err(|e| Error::io(tmp.display().to_string(), e))?),
            Compression::None => Sink::Plain(w),
        };
        let mut builder = tar::Builder::new(sink);
        builder.mode(tar::HeaderMode::Deterministic);
        self.current = Some(OpenShard { builder, tmp, path, count: 0, bytes: 0 });
        self.index += 1;
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(shard) = self.current.take() {
            let OpenShard { builder, tmp, path, .. } = shard;
            let io = |e| Error::io(tmp.display().to_string(), e);
            let sink = builder.into_inner().map_err(io)?;
            sink.finish().map_err(io)?;
            fs::rename(&tmp, &path).map_err(|e| Error::io(path.display().to_string(), e))?;
            self.written.push(path.display().to_string());
        }
        Ok(())
    }

    /// Writes one sample: members `{key}.{ext}` in the given order. Starts a new shard first
    /// when the current one is full (by count, or when this sample would pass max_bytes).
    pub fn write_sample(&mut self, key: &str, members: &[(String, Vec<u8>)]) -> Result<()> {
        let size: u64 = members.iter().map(|(_, d)| 512 + (d.len() as u64).div_ceil(512) * 512).sum();
        let full = self.current.as_ref().is_some_and(|s| s.count >= self.opts.max_count || (s.count > 0 && s.bytes + size > self.opts.max_bytes));
        if full {
            if matches!(self.opts.names, ShardNames::Single(_)) {
                // Refused before the shard is closed: nothing is renamed onto the one file.
                return Err(self.one_file_error());
            }
            self.close_current()?;
        }
        if self.current.is_none() {
            self.open()?;
        }
        let shard = self.current.as_mut().expect("open shard");
        for (ext, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            let name = format!("{key}.{ext}");
            shard.builder.append_data(&mut header, &name, data.as_slice()).map_err(|e| Error::io(shard.tmp.display().to_string(), e))?;
        }
        shard.count += 1;
        shard.bytes += size;
        Ok(())
    }

    /// Writes one document as a sample keyed by its doc_id ([`key_for`]). Two consecutive
    /// documents with one key would merge into one sample on reading, so the second gets
    /// `_1` appended (its doc_id is kept in the sample's json).
    pub fn write_document(&mut self, doc: &Document) -> Result<()> {
        let mut key = key_for(&doc.doc_id);
        if key == self.last_key {
            key.push_str("_1");
        }
        self.write_sample(&key, &document_to_members(doc, &key))?;
        self.last_key = key;
        Ok(())
    }

    /// Finishes the open shard, removes the replaced shards this run did not write again, and
    /// returns the paths of every shard written, in order.
    pub fn finish(mut self) -> Result<Vec<String>> {
        self.close_current()?;
        self.remove_replaced()?;
        Ok(std::mem::take(&mut self.written))
    }

    /// Removes the shards of these names that were there before and that this write has not
    /// written again.
    fn remove_replaced(&mut self) -> Result<()> {
        for old in std::mem::take(&mut self.stale) {
            if !self.written.iter().any(|w| Path::new(w) == old) {
                fs::remove_file(&old).map_err(|e| Error::io(old.display().to_string(), e))?;
            }
        }
        Ok(())
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        // An unfinished shard (an error stopped the write) is removed, never renamed into place.
        if let Some(shard) = self.current.take() {
            let tmp = shard.tmp.clone();
            drop(shard);
            let _ = fs::remove_file(tmp);
        }
        // A write that stopped after renaming some shards over the old ones: the old shards it
        // did not reach go too, so the folder holds one dataset (this write's first shards),
        // not a mix of two. One that renamed none leaves the old shards as they were.
        if !self.written.is_empty() {
            let _ = self.remove_replaced();
        }
    }
}
