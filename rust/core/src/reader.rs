//! Reading many sources as one stream of node batches, with counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::doc::{Document, NodeBatch, ReadStats};
use crate::error::{ErrorKind, RecordError};
use crate::formats::{Format, ImageFileLog, JsonlReader, RecordContext};
use crate::input;
use crate::shard::{sample_to_document, SampleReader, DEFAULT_MAX_MEMBER_BYTES};

/// What kind of source files a [`DocumentReader`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    WebDataset,
    /// JSON lines in a given format, or detected from the first record when `None`.
    Jsonl(Option<Format>),
}

#[derive(Clone, Debug)]
pub struct ReaderOptions {
    pub image_root: Option<String>,
    pub load_images: bool,
    pub max_member_bytes: u64,
    /// The `doc_index` of the first document read (documents are numbered in read order).
    pub first_doc_index: i64,
    /// Let records read image files outside the image root (see `RecordContext`).
    pub allow_outside_root: bool,
    /// A batch closes once it holds this many bytes of text and images (a single larger
    /// document gets a batch of its own).
    pub max_batch_bytes: u64,
    /// Note every local image file records name (see [`DocumentReader::take_image_files`]).
    pub track_image_files: bool,
}

/// The default bound on a batch's text and image bytes: 256 MiB, a few times that in memory
/// once polars and the caller hold their copies: comfortable on a laptop.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 256 << 20;

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            image_root: None,
            load_images: true,
            max_member_bytes: DEFAULT_MAX_MEMBER_BYTES,
            first_doc_index: 0,
            allow_outside_root: false,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            track_image_files: false,
        }
    }
}

type DocIter = Box<dyn Iterator<Item = Document> + Send>;

/// Streams documents from a list of files, one file at a time, in order. A file that cannot be
/// opened becomes one error record (`io`) and the reader moves on.
pub struct DocumentReader {
    paths: Vec<String>,
    next_path: usize,
    kind: SourceKind,
    opts: ReaderOptions,
    current: Option<DocIter>,
    counter: Arc<AtomicU64>,
    stats: ReadStats,
    next_doc_index: i64,
    /// A document read but left for the next batch (it would have passed the byte bound).
    pending: Option<Document>,
    image_files: Option<ImageFileLog>,
}

impl DocumentReader {
    pub fn new(paths: Vec<String>, kind: SourceKind, opts: ReaderOptions) -> Self {
        let next_doc_index = opts.first_doc_index;
        DocumentReader {
            paths,
            next_path: 0,
            kind,
            current: None,
            counter: Arc::new(AtomicU64::new(0)),
            stats: ReadStats::default(),
            next_doc_index,
            pending: None,
            image_files: opts.track_image_files.then(ImageFileLog::default),
            opts,
        }
    }

    /// The local image files records named since the last call (with
    /// `ReaderOptions::track_image_files`; empty otherwise), in the order they were looked up.
    pub fn take_image_files(&mut self) -> Vec<(String, i64, i64)> {
        self.image_files.as_ref().map(|log| log.lock().expect("image file log").take()).unwrap_or_default()
    }

    pub fn stats(&self) -> ReadStats {
        let mut s = self.stats.clone();
        s.bytes_read = self.counter.load(Ordering::Relaxed);
        s
    }

    fn open_next(&mut self) -> Option<Result<DocIter, Document>> {
        let path = self.paths.get(self.next_path)?.clone();
        self.next_path += 1;
        self.stats.files += 1;
        let failed = |kind: ErrorKind, message: String| {
            let mut doc = Document::new(path.clone(), Some(path.clone()));
            doc.set_error(RecordError::new(kind, message));
            Some(Err(doc))
        };
        // A tar or a compressed file with no bytes at all is damage, not an empty dataset (an
        // empty plain jsonl file is a file of zero records).
        let container = self.kind == SourceKind::WebDataset || path.ends_with(".gz") || path.ends_with(".zst");
        if container && std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            return failed(ErrorKind::EmptyFile, format!("{path}: the file is empty (0 bytes)"));
        }
        let stream = match input::open(&path, self.counter.clone()) {
            Ok(s) => s,
            Err(e) => return failed(ErrorKind::Io, e.to_string()),
        };
        Some(Ok(match self.kind {
            SourceKind::WebDataset => Box::new(SampleReader::new(stream, path, self.opts.max_member_bytes).map(sample_to_document)),
            SourceKind::Jsonl(format) => {
                let mut ctx = RecordContext::for_source(&path, self.opts.image_root.as_deref(), self.opts.load_images);
                ctx.max_image_bytes = self.opts.max_member_bytes;
                ctx.allow_outside_root = self.opts.allow_outside_root;
                ctx.file_log = self.image_files.clone();
                Box::new(JsonlReader::new(stream, format, ctx))
            }
        }))
    }

    fn next_document(&mut self) -> Option<Document> {
        loop {
            if let Some(it) = self.current.as_mut() {
                if let Some(doc) = it.next() {
                    return Some(doc);
                }
                self.current = None;
            }
            match self.open_next()? {
                Ok(it) => self.current = Some(it),
                Err(doc) => return Some(doc),
            }
        }
    }

    /// The next batch of up to `batch_size` documents (never splitting one), or `None` at the end.
    /// The next batch: up to `batch_size` documents (never splitting one) and, past its first
    /// document, at most `max_batch_bytes` of text and images; `None` at the end.
    pub fn next_batch(&mut self, batch_size: usize) -> Option<NodeBatch> {
        let mut batch = NodeBatch::default();
        let mut bytes = 0u64;
        while batch.documents < batch_size.max(1) {
            let Some(doc) = self.pending.take().or_else(|| self.next_document()) else { break };
            let size = doc.content_bytes();
            if batch.documents > 0 && bytes.saturating_add(size) > self.opts.max_batch_bytes {
                self.pending = Some(doc);
                break;
            }
            bytes = bytes.saturating_add(size);
            self.stats.add_document(&doc);
            batch.push(doc, self.next_doc_index);
            self.next_doc_index += 1;
        }
        if batch.documents == 0 {
            None
        } else {
            Some(batch)
        }
    }
}

impl Iterator for DocumentReader {
    type Item = Document;

    fn next(&mut self) -> Option<Document> {
        let doc = self.pending.take().or_else(|| self.next_document())?;
        self.stats.add_document(&doc);
        self.next_doc_index += 1;
        Some(doc)
    }
}
