//! Reader and writer bindings: type conversion, GIL release, Python errors. No logic of its own.

use std::sync::Mutex;

use interleaf_core::doc::{NodeBatch, ReadStats};
use interleaf_core::formats::{
    detect_jsonl_format, document_to_json, document_to_record, file_stat, json_text, nonfinite_value, unwritable, Format, RecordContext, RecordDecoder,
    BLOB_KEY,
};
use interleaf_core::reader::{DocumentReader, ReaderOptions, SourceKind};
use interleaf_core::shard::{ShardNames, ShardWriter, ShardWriterOptions, WriteLock};
use polars::prelude::*;
use pyo3::exceptions::{PyIOError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3_polars::{PyDataFrame, PySeries};
use serde_json::{Map, Value};

use crate::frame::{batch_to_frame, frame_to_documents, renumber};

fn polars_err(e: PolarsError) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

fn core_err(e: interleaf_core::Error) -> PyErr {
    match e {
        interleaf_core::Error::Io { .. } => PyIOError::new_err(e.to_string()),
        interleaf_core::Error::Invalid(m) => PyValueError::new_err(m),
    }
}

fn parse_format(format: Option<&str>) -> PyResult<Option<Format>> {
    format
        .map(|f| {
            Format::parse(f).ok_or_else(|| {
                let known: Vec<_> = Format::ALL.iter().map(|f| f.as_str()).collect();
                PyValueError::new_err(format!("unknown record format {f:?}; expected one of {known:?}"))
            })
        })
        .transpose()
}

fn stats_dict<'py>(py: Python<'py>, s: &ReadStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("files", s.files)?;
    d.set_item("documents", s.documents)?;
    d.set_item("nodes", s.nodes)?;
    d.set_item("text_nodes", s.text_nodes)?;
    d.set_item("image_nodes", s.image_nodes)?;
    d.set_item("text_bytes", s.text_bytes)?;
    d.set_item("image_bytes", s.image_bytes)?;
    d.set_item("bytes_read", s.bytes_read)?;
    let errors = PyDict::new(py);
    for (k, v) in &s.errors {
        errors.set_item(k, v)?;
    }
    d.set_item("errors", errors)?;
    Ok(d)
}

/// Streams node batches from WebDataset shards or JSON-lines files (see `interleaf.read`).
#[pyclass(module = "interleaf._native")]
pub struct NativeReader {
    inner: Mutex<DocumentReader>,
}

#[pymethods]
impl NativeReader {
    #[new]
    #[pyo3(signature = (paths, kind, format=None, image_root=None, load_images=true, max_member_bytes=None, first_doc_index=0, *, allow_outside_root=false, max_batch_bytes=None, track_image_files=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        paths: Vec<String>,
        kind: &str,
        format: Option<&str>,
        image_root: Option<String>,
        load_images: bool,
        max_member_bytes: Option<u64>,
        first_doc_index: i64,
        allow_outside_root: bool,
        max_batch_bytes: Option<u64>,
        track_image_files: bool,
    ) -> PyResult<Self> {
        let kind = match kind {
            "webdataset" => SourceKind::WebDataset,
            "jsonl" => SourceKind::Jsonl(parse_format(format)?),
            other => return Err(PyValueError::new_err(format!("kind must be 'webdataset' or 'jsonl', not {other:?}"))),
        };
        let mut opts = ReaderOptions { image_root, load_images, first_doc_index, allow_outside_root, track_image_files, ..Default::default() };
        if let Some(b) = max_batch_bytes {
            opts.max_batch_bytes = b;
        }
        if let Some(m) = max_member_bytes {
            opts.max_member_bytes = m;
        }
        Ok(NativeReader { inner: Mutex::new(DocumentReader::new(paths, kind, opts)) })
    }

    /// The next batch of up to `batch_size` whole documents as a DataFrame, or None at the end.
    fn next_batch(&self, py: Python<'_>, batch_size: usize) -> PyResult<Option<PyDataFrame>> {
        let frame = py.detach(|| {
            let mut r = self.inner.lock().expect("reader lock");
            r.next_batch(batch_size).map(batch_to_frame).transpose()
        });
        Ok(frame.map_err(polars_err)?.map(PyDataFrame))
    }

    /// Counters so far: files, documents, nodes, text/image nodes and bytes, bytes_read, errors.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.lock().expect("reader lock").stats();
        stats_dict(py, &s)
    }

    /// The local image files records named since the last call: `path`, `size`, `mtime_ns`
    /// (`track_image_files=True`; empty otherwise).
    fn take_image_files(&self, py: Python<'_>) -> PyResult<PyDataFrame> {
        let files = py.detach(|| self.inner.lock().expect("reader lock").take_image_files());
        Ok(PyDataFrame(files_frame(files).map_err(polars_err)?))
    }
}

/// `(path, size, mtime_ns)` rows as a frame of those columns.
fn files_frame(files: Vec<(String, i64, i64)>) -> PolarsResult<DataFrame> {
    let n = files.len();
    let mut paths = Vec::with_capacity(n);
    let (mut sizes, mut mtimes) = (Vec::with_capacity(files.len()), Vec::with_capacity(files.len()));
    for (p, s, m) in files {
        paths.push(p);
        sizes.push(s);
        mtimes.push(m);
    }
    DataFrame::new(n, vec![Column::new("path".into(), paths), Column::new("size".into(), sizes), Column::new("mtime_ns".into(), mtimes)])
}

/// `path`, `size`, `mtime_ns` of each path of a String Series as it stands now, looked up in
/// parallel (interleaf's pool, GIL released): a regular file's size and mtime as `os.stat`
/// gives them, -2 for anything else that exists, -1 for what cannot be looked up (null too).
#[pyfunction]
pub fn stat_files(py: Python<'_>, paths: PySeries) -> PyResult<PyDataFrame> {
    use rayon::prelude::*;
    let values = crate::columns::str_values(&paths.0, "paths")?;
    let stats: Vec<(i64, i64)> = py.detach(|| crate::dedup::on_pool(None, || values.par_iter().map(|p| p.map_or((-1, -1), file_stat)).collect()))?;
    let (sizes, mtimes): (Vec<i64>, Vec<i64>) = stats.into_iter().unzip();
    let df = DataFrame::new(
        values.len(),
        vec![paths.0.clone().with_name("path".into()).into(), Column::new("size".into(), sizes), Column::new("mtime_ns".into(), mtimes)],
    );
    Ok(PyDataFrame(df.map_err(polars_err)?))
}

/// One cell as JSON; a binary value goes to `blobs` and the cell becomes `{"$blob": k}`.
fn cell_to_json(av: AnyValue<'_>, blobs: &mut Blobs) -> Value {
    match av {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::String(s) => Value::String(s.to_string()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::Binary(b) => blob(b.to_vec(), blobs),
        AnyValue::BinaryOwned(b) => blob(b, blobs),
        AnyValue::UInt8(v) => Value::from(v),
        AnyValue::UInt16(v) => Value::from(v),
        AnyValue::UInt32(v) => Value::from(v),
        AnyValue::UInt64(v) => Value::from(v),
        AnyValue::Int8(v) => Value::from(v),
        AnyValue::Int16(v) => Value::from(v),
        AnyValue::Int32(v) => Value::from(v),
        AnyValue::Int64(v) => Value::from(v),
        // NaN and infinities as a JSON record read by Python's json holds them (see
        // `interleaf_core::formats::parse_json_lenient`).
        AnyValue::Float32(v) => float_json(v as f64),
        AnyValue::Float64(v) => float_json(v),
        AnyValue::List(s) => Value::Array(s.iter().map(|v| cell_to_json(v, blobs)).collect()),
        av @ AnyValue::Struct(..) => {
            let AnyValue::Struct(_, _, fields) = &av else { unreachable!() };
            let mut m = Map::new();
            for (f, v) in fields.iter().zip(av._iter_struct_av()) {
                m.insert(f.name().to_string(), cell_to_json(v, blobs));
            }
            Value::Object(m)
        }
        other => Value::String(other.to_string()),
    }
}

fn float_json(v: f64) -> Value {
    serde_json::Number::from_f64(v).map(Value::Number).or_else(|| nonfinite_value(v)).unwrap_or(Value::Null)
}

fn blob(bytes: Vec<u8>, blobs: &mut Blobs) -> Value {
    blobs.push(Some(bytes));
    let mut m = Map::new();
    m.insert(BLOB_KEY.into(), Value::from(blobs.len() - 1));
    Value::Object(m)
}

/// A record's out-of-line binary values (see `interleaf_core::formats::BLOB_KEY`).
type Blobs = Vec<Option<Vec<u8>>>;

/// The rows of a record table as JSON objects, each with its binary values beside it.
fn table_records(df: &DataFrame) -> PolarsResult<Vec<(Value, Blobs)>> {
    let mut rows: Vec<(Map<String, Value>, Blobs)> = (0..df.height()).map(|_| (Map::new(), Vec::new())).collect();
    for col in df.columns() {
        // Chunk by chunk (a parquet batch keeps its pieces' chunks: gathering them would copy
        // every image once more).
        let s = col.as_materialized_series();
        for ((m, blobs), av) in rows.iter_mut().zip(s.iter()) {
            let v = cell_to_json(av, blobs);
            m.insert(col.name().to_string(), v);
        }
    }
    Ok(rows.into_iter().map(|(m, b)| (Value::Object(m), b)).collect())
}

/// The raw samples of one shard as webdataset groups them: (key, [(ext, bytes)], [(kind, message)]).
/// For tests and debugging; `interleaf.read` is the API.
#[pyfunction]
#[pyo3(signature = (path, max_member_bytes=None))]
#[allow(clippy::type_complexity)]
pub fn read_samples<'py>(
    py: Python<'py>,
    path: &str,
    max_member_bytes: Option<u64>,
) -> PyResult<Vec<(String, Vec<(String, Bound<'py, PyBytes>)>, Vec<(String, String)>)>> {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let samples: Vec<_> = py.detach(|| -> PyResult<Vec<_>> {
        let stream = interleaf_core::input::open(path, counter).map_err(core_err)?;
        let limit = max_member_bytes.unwrap_or(interleaf_core::shard::DEFAULT_MAX_MEMBER_BYTES);
        Ok(interleaf_core::shard::SampleReader::new(stream, path, limit).collect())
    })?;
    Ok(samples
        .into_iter()
        .map(|s| {
            let members = s.members.into_iter().map(|(e, d)| (e, PyBytes::new(py, &d))).collect();
            let errors = s.errors.into_iter().map(|e| (e.kind.as_str().to_string(), e.message)).collect();
            (s.key, members, errors)
        })
        .collect())
}

/// The image files a read noted: `(path, size, mtime_ns)` (see `interleaf_core::formats::ImageFiles`).
type ImageFileRows = Vec<(String, i64, i64)>;

/// Rows of a records table per task of [`records_to_frame`] at least (fewer rows are one task).
const RECORDS_PER_TASK: usize = 256;

/// Converts a table of records (parquet rows, as Arrow data) to a node batch, runs of rows on
/// the thread pool. Record `i` is number `start_index + i + 1` of its source (for ids) and
/// document `first_doc_index + i`.
/// Returns (frame, stats); with `track_image_files`, stats also hold `image_files`: the local
/// image files the records named, as `(path, size, mtime_ns)`.
#[pyfunction]
#[pyo3(signature = (table, format, source, start_index=0, first_doc_index=0, image_root=None, load_images=true, *, allow_outside_root=false, max_member_bytes=None, track_image_files=false))]
#[allow(clippy::too_many_arguments)]
pub fn records_to_frame<'py>(
    py: Python<'py>,
    table: PyDataFrame,
    format: Option<&str>,
    source: &str,
    start_index: u64,
    first_doc_index: i64,
    image_root: Option<String>,
    load_images: bool,
    allow_outside_root: bool,
    max_member_bytes: Option<u64>,
    track_image_files: bool,
) -> PyResult<(PyDataFrame, Bound<'py, PyDict>)> {
    let format = parse_format(format)?;
    let mut ctx = RecordContext::for_source(source, image_root.as_deref(), load_images);
    ctx.allow_outside_root = allow_outside_root;
    let log = track_image_files.then(interleaf_core::formats::ImageFileLog::default);
    ctx.file_log = log.clone();
    if let Some(m) = max_member_bytes {
        ctx.max_image_bytes = m;
    }
    // Records convert independently: runs of rows on the thread pool, each with its own decoder
    // (and image file log, merged in row order), then joined in order.
    let df = &table.0;
    let n = df.height();
    let parts = interleaf_core::threads::default_threads().min(n / RECORDS_PER_TASK).max(1);
    let tasks: Vec<(usize, usize, RecordContext)> = (0..parts)
        .map(|k| {
            let mut ctx = ctx.clone();
            ctx.file_log = log.as_ref().map(|_| interleaf_core::formats::ImageFileLog::default());
            (k * n / parts, (k + 1) * n / parts, ctx)
        })
        .collect();
    let (frame, stats) = py.detach(|| -> PyResult<_> {
        use rayon::prelude::*;
        // Each run of rows to its own frame: record i is document first_doc_index + i.
        let convert = |(lo, hi, ctx): (usize, usize, RecordContext)| -> PolarsResult<(DataFrame, ReadStats, ImageFileRows)> {
            let part_log = ctx.file_log.clone();
            let mut decoder = RecordDecoder::new(format, ctx);
            let mut batch = NodeBatch::default();
            let mut stats = ReadStats::default();
            for (i, (value, blobs)) in table_records(&df.slice(lo as i64, hi - lo))?.into_iter().enumerate() {
                let doc = decoder.decode(value, start_index + (lo + i) as u64 + 1, blobs);
                stats.add_document(&doc);
                batch.push(doc, first_doc_index + (lo + i) as i64);
            }
            let files = part_log.map(|l| l.lock().expect("image file log").take()).unwrap_or_default();
            Ok((batch_to_frame(batch)?, stats, files))
        };
        let parts: Vec<_> =
            if parts == 1 { tasks.into_iter().map(convert).collect() } else { crate::dedup::on_pool(None, || tasks.into_par_iter().map(convert).collect())? };
        let mut frame: Option<DataFrame> = None;
        let mut stats = ReadStats::default();
        for part in parts {
            let (part, part_stats, files) = part.map_err(polars_err)?;
            stats.merge(&part_stats);
            if let Some(log) = &log {
                log.lock().expect("image file log").merge(files);
            }
            match &mut frame {
                None => frame = Some(part),
                Some(f) => {
                    f.vstack_mut_owned(part).map_err(polars_err)?;
                }
            }
        }
        let mut frame = frame.expect("one part at least");
        if frame.first_col_n_chunks() > 1 {
            frame.rechunk_mut_par();
        }
        Ok((frame, stats))
    })?;
    let stats = stats_dict(py, &stats)?;
    if let Some(log) = log {
        let files = log.lock().expect("image file log").take();
        stats.set_item("image_files", PyDataFrame(files_frame(files).map_err(polars_err)?))?;
    }
    Ok((PyDataFrame(frame), stats))
}

/// `doc_index` for a node table read from a file, numbered from `first` in row order: the
/// table's own `doc_index` groups its rows when present, else `doc_id` and `pos` do (see
/// `interleaf_core::doc::number_documents`).
#[pyfunction]
pub fn number_documents(py: Python<'_>, df: PyDataFrame, first: i64) -> PyResult<PySeries> {
    let idx = py.detach(|| renumber(&df.0, first)).map_err(polars_err)?;
    Ok(PySeries(Int64Chunked::from_vec("doc_index".into(), idx).into_series()))
}

/// One JSON line per document in interleaf's own schema (images as base64), as bytes.
#[pyfunction]
pub fn frame_to_jsonl<'py>(py: Python<'py>, df: PyDataFrame) -> PyResult<Bound<'py, PyBytes>> {
    let out = py.detach(|| -> PyResult<Vec<u8>> {
        let docs = frame_to_documents(&df.0).map_err(polars_err)?;
        let mut out = Vec::new();
        for d in &docs {
            out.extend_from_slice(json_text(&document_to_json(d)).as_bytes());
            out.push(b'\n');
        }
        Ok(out)
    })?;
    Ok(PyBytes::new(py, &out))
}

/// One JSON line per document in a record layout (pairs, mmc4, obelics, comm, llava, nodes), as
/// bytes: images as their reference, or inline `data:` URIs when `embed_images` or when they
/// have no reference.
/// A document the layout cannot hold without losing nodes (pairs: more than one image or text)
/// is a ValueError (see `interleaf_core::formats::unwritable`).
#[pyfunction]
#[pyo3(signature = (df, format, embed_images=false))]
pub fn frame_to_records<'py>(py: Python<'py>, df: PyDataFrame, format: &str, embed_images: bool) -> PyResult<Bound<'py, PyBytes>> {
    let format = parse_format(Some(format))?.expect("a format was given");
    let out = py.detach(|| -> PyResult<Vec<u8>> {
        let docs = frame_to_documents(&df.0).map_err(polars_err)?;
        let mut out = Vec::new();
        for d in &docs {
            if let Some(why) = unwritable(d, format) {
                return Err(PyValueError::new_err(format!("cannot write {} records: {why}", format.as_str())));
            }
            out.extend_from_slice(json_text(&document_to_record(d, format, embed_images)).as_bytes());
            out.push(b'\n');
        }
        Ok(out)
    })?;
    Ok(PyBytes::new(py, &out))
}

/// The record format of a JSON-lines file from the keys of its first records, or None.
#[pyfunction]
pub fn detect_record_format(py: Python<'_>, path: &str) -> Option<&'static str> {
    py.detach(|| detect_jsonl_format(path).map(Format::as_str))
}

/// Writes node frames as WebDataset shards (see `interleaf.write`).
#[pyclass(module = "interleaf._native")]
pub struct NativeShardWriter {
    inner: Mutex<Option<ShardWriter>>,
}

#[pymethods]
impl NativeShardWriter {
    /// Shards go into `directory`, named `{prefix}-NNNNNN.tar[.gz|.zst]`, or by `pattern`
    /// (one `%0Nd` field), or as the one file `single`.
    #[new]
    #[pyo3(signature = (directory, prefix="shard", compression="none", max_count=10_000, max_bytes=1<<30, start_index=0, *, pattern=None, single=None, overwrite=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        directory: &str,
        prefix: &str,
        compression: &str,
        max_count: u64,
        max_bytes: u64,
        start_index: u64,
        pattern: Option<String>,
        single: Option<String>,
        overwrite: bool,
    ) -> PyResult<Self> {
        let compression = interleaf_core::input::Compression::parse(compression).map_err(PyValueError::new_err)?;
        let names = match (pattern, single) {
            (Some(p), None) => ShardNames::Pattern(p),
            (None, Some(s)) => ShardNames::Single(s),
            (None, None) => ShardNames::Prefix(prefix.into()),
            _ => return Err(PyValueError::new_err("give a pattern or a single file name, not both")),
        };
        let opts = ShardWriterOptions { names, compression, max_count, max_bytes, start_index, overwrite };
        let w = ShardWriter::new(directory, opts).map_err(core_err)?;
        Ok(NativeShardWriter { inner: Mutex::new(Some(w)) })
    }

    /// Writes every document of a node frame; returns the number of documents written.
    fn write(&self, py: Python<'_>, df: PyDataFrame) -> PyResult<usize> {
        py.detach(|| {
            let docs = frame_to_documents(&df.0).map_err(polars_err)?;
            let mut guard = self.inner.lock().expect("writer lock");
            let w = guard.as_mut().ok_or_else(|| PyValueError::new_err("writer is closed"))?;
            for d in &docs {
                w.write_document(d).map_err(core_err)?;
            }
            Ok(docs.len())
        })
    }

    /// Stops a write that failed: the open shard is removed, and where some shards were
    /// already renamed over older ones, the older ones it did not reach (never a mix of two
    /// datasets in one folder).
    fn abort(&self) {
        drop(self.inner.lock().expect("writer lock").take());
    }

    /// Finishes the last shard; returns the paths of all shards written.
    fn finish(&self) -> PyResult<Vec<String>> {
        let taken = self.inner.lock().expect("writer lock").take();
        match taken {
            Some(w) => w.finish().map_err(core_err),
            None => Ok(Vec::new()),
        }
    }
}

/// An exclusive lock on writing `name` in `directory` (see `interleaf_core::shard::WriteLock`),
/// for the writers that live in Python (parquet, jsonl); `release()` or garbage collection
/// frees it, and so does the death of the process.
#[pyclass(module = "interleaf._native")]
pub struct NativeWriteLock {
    inner: Mutex<Option<WriteLock>>,
}

#[pymethods]
impl NativeWriteLock {
    #[new]
    fn new(directory: &str, name: &str) -> PyResult<Self> {
        interleaf_core::shard::check_file_name("file name", name).map_err(core_err)?;
        let lock = WriteLock::acquire(std::path::Path::new(directory), name).map_err(core_err)?;
        Ok(NativeWriteLock { inner: Mutex::new(Some(lock)) })
    }

    /// Frees the lock (idempotent).
    fn release(&self) {
        self.inner.lock().expect("lock").take();
    }
}

/// What the reader needs of the parquet page header at the start of `data`: `(type,
/// uncompressed, compressed, values, dictionary_encoded, header_bytes, levels,
/// repetition_levels, values_compressed, rle_repetition, rle_definition)` (see
/// `interleaf_core::formats::parquet::PageHeader`); None when `data` ends inside it;
/// ValueError when it is malformed.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn parquet_page_header(data: &[u8]) -> PyResult<Option<(i128, i128, i128, i128, bool, usize, i128, i128, bool, bool, bool)>> {
    use interleaf_core::formats::parquet::{self, ThriftError};
    match parquet::page_header(data) {
        Ok(h) => Ok(Some((
            h.kind,
            h.uncompressed,
            h.compressed,
            h.values,
            h.dictionary_encoded,
            h.header_bytes,
            h.levels,
            h.repetition_levels,
            h.values_compressed,
            h.rle_repetition,
            h.rle_definition,
        ))),
        Err(ThriftError::Short) => Ok(None),
        Err(ThriftError::Bad(m)) => Err(PyValueError::new_err(m)),
    }
}

/// The byte length of the longest of the first `count` values of PLAIN-encoded BYTE_ARRAY
/// data (a parquet dictionary page's body); ValueError when the data ends before them.
#[pyfunction]
pub fn plain_byte_array_longest(py: Python<'_>, data: &[u8], count: usize) -> PyResult<usize> {
    py.detach(|| interleaf_core::formats::parquet::longest_plain_byte_array(data, count)).map_err(PyValueError::new_err)
}

/// The bytes the dictionary indices of a parquet column chunk gather: `dictionary` is its
/// dictionary page's body (`entries` PLAIN BYTE_ARRAY values); `pages` its dictionary-encoded
/// data pages, each as its definition levels (an RLE/bit-packed hybrid stream with no length
/// prefix, empty when `max_definition` is 0) and its index data (a byte of bit width, then
/// RLE/bit-packed runs); `values` their value counts, nulls included. A page's indices are read
/// for its non-null values, those whose level is `max_definition` (all of its values when its
/// levels end early). Each value counts its entry's length plus 8. ValueError for a damaged
/// dictionary or stream.
#[pyfunction]
pub fn dictionary_gathered_bytes(
    py: Python<'_>,
    dictionary: &[u8],
    entries: usize,
    pages: Vec<(Vec<u8>, Vec<u8>)>,
    values: Vec<u64>,
    max_definition: u16,
) -> PyResult<u64> {
    use interleaf_core::formats::parquet;
    if pages.len() != values.len() {
        return Err(PyValueError::new_err(format!("{} pages but {} value counts", pages.len(), values.len())));
    }
    py.detach(|| {
        let lengths = parquet::plain_byte_array_lengths(dictionary, entries)?;
        let mut total = 0u64;
        for ((levels, indices), &n) in pages.iter().zip(&values) {
            let mut non_null = n;
            if max_definition > 0 {
                let (defined, read) = parquet::count_level(levels, max_definition, n, max_definition).map_err(|e| format!("definition levels: {e}"))?;
                if read == n {
                    non_null = defined;
                }
            }
            let (gathered, _) = parquet::dictionary_gathered_bytes(&lengths, indices, non_null, 8).map_err(|e| format!("dictionary indices: {e}"))?;
            total = total.saturating_add(gathered);
        }
        Ok(total)
    })
    .map_err(|e: String| PyValueError::new_err(e))
}

/// Checks that `name` is a plain file name (no `/` or `\`, no leading `.`, so not `..`); raises ValueError.
#[pyfunction]
pub fn check_file_name(what: &str, name: &str) -> PyResult<()> {
    interleaf_core::shard::check_file_name(what, name).map_err(core_err)
}
