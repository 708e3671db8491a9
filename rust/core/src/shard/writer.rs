//! A deterministic WebDataset shard writer: fixed member order and headers (mtime 0, mode
//! 0644, uid/gid 0), shards split by sample count and bytes, each written to a temporary name
//! and renamed when complete so a reader never sees half a shard.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::doc::Document;
use crate::error::{Error, Result};
use crate::input::Compression;
use crate::shard::{document_to_members, key_for};

#[derive(Clone, Debug)]
pub struct ShardWriterOptions {
    /// Shard names are `{prefix}-{index:06}.tar` plus `.gz` / `.zst` when compressed.
    pub prefix: String,
    pub compression: Compression,
    pub max_count: u64,
    pub max_bytes: u64,
    pub start_index: u64,
}

impl Default for ShardWriterOptions {
    fn default() -> Self {
        ShardWriterOptions { prefix: "shard".into(), compression: Compression::None, max_count: 10_000, max_bytes: 1 << 30, start_index: 0 }
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
}

impl ShardWriter {
    pub fn new(dir: impl AsRef<Path>, opts: ShardWriterOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        if opts.max_count == 0 || opts.max_bytes == 0 {
            return Err(Error::Invalid("max_count and max_bytes must be positive".into()));
        }
        let index = opts.start_index;
        Ok(ShardWriter { dir, opts, index, current: None, written: Vec::new(), last_key: String::new() })
    }

    fn shard_name(&self) -> String {
        format!("{}-{:06}.tar{}", self.opts.prefix, self.index, self.opts.compression.suffix())
    }

    fn open(&mut self) -> Result<()> {
        let name = self.shard_name();
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
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

    /// Finishes the open shard and returns the paths of every shard written, in order.
    pub fn finish(mut self) -> Result<Vec<String>> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.written))
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
    }
}
