//! Reader and writer bindings: type conversion, GIL release, Python errors. No logic of its own.

use std::sync::Mutex;

use interleaf_core::doc::{NodeBatch, ReadStats};
use interleaf_core::formats::{document_to_json, record_to_document, Format, RecordContext};
use interleaf_core::reader::{DocumentReader, ReaderOptions, SourceKind};
use interleaf_core::shard::{document_to_members, key_for, ShardWriter, ShardWriterOptions};
use polars::prelude::PolarsError;
use pyo3::exceptions::{PyIOError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3_polars::PyDataFrame;
use serde_json::Value;

use crate::frame::{batch_to_frame, frame_to_documents};

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
    #[pyo3(signature = (paths, kind, format=None, image_root=None, load_images=true, max_member_bytes=None))]
    fn new(paths: Vec<String>, kind: &str, format: Option<&str>, image_root: Option<String>, load_images: bool, max_member_bytes: Option<u64>) -> PyResult<Self> {
        let kind = match kind {
            "webdataset" => SourceKind::WebDataset,
            "jsonl" => SourceKind::Jsonl(parse_format(format)?),
            other => return Err(PyValueError::new_err(format!("kind must be 'webdataset' or 'jsonl', not {other:?}"))),
        };
        let mut opts = ReaderOptions { image_root, load_images, ..Default::default() };
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
}

/// Python object to JSON; bytes become a base64 `data:` URI so image bytes survive.
fn py_to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    use base64::Engine;
    if obj.is_none() {
        Ok(Value::Null)
    } else if let Ok(b) = obj.cast::<PyBool>() {
        Ok(Value::Bool(b.is_true()))
    } else if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            Ok(Value::from(i))
        } else if let Ok(u) = obj.extract::<u64>() {
            Ok(Value::from(u))
        } else {
            Ok(Value::String(obj.str()?.to_string()))
        }
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        Ok(serde_json::Number::from_f64(f.value()).map_or(Value::Null, Value::Number))
    } else if let Ok(s) = obj.cast::<PyString>() {
        Ok(Value::String(s.to_cow()?.into_owned()))
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        Ok(Value::String(format!("data:application/octet-stream;base64,{}", base64::engine::general_purpose::STANDARD.encode(b.as_bytes()))))
    } else if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = serde_json::Map::new();
        for (k, v) in d.iter() {
            m.insert(k.str()?.to_string(), py_to_json(&v)?);
        }
        Ok(Value::Object(m))
    } else if let Ok(l) = obj.cast::<PyList>() {
        l.iter().map(|v| py_to_json(&v)).collect::<PyResult<Vec<_>>>().map(Value::Array)
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        t.iter().map(|v| py_to_json(&v)).collect::<PyResult<Vec<_>>>().map(Value::Array)
    } else {
        Ok(Value::String(obj.str()?.to_string()))
    }
}

/// The raw samples of one shard as webdataset groups them: (key, [(ext, bytes)], [(kind, message)]).
/// For tests and debugging; `interleaf.read` is the API.
#[pyfunction]
#[pyo3(signature = (path, max_member_bytes=None))]
pub fn read_samples<'py>(py: Python<'py>, path: &str, max_member_bytes: Option<u64>) -> PyResult<Vec<(String, Vec<(String, Bound<'py, PyBytes>)>, Vec<(String, String)>)>> {
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
            let errors = s.errors.into_iter().map(|e| (e.kind, e.message)).collect();
            (s.key, members, errors)
        })
        .collect())
}

/// Converts records (dicts, as parquet rows come) to a node batch. Returns (frame, stats).
#[pyfunction]
#[pyo3(signature = (records, format, source, start_index=0, image_root=None, load_images=true))]
pub fn records_to_frame<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyList>,
    format: Option<&str>,
    source: &str,
    start_index: u64,
    image_root: Option<String>,
    load_images: bool,
) -> PyResult<(PyDataFrame, Bound<'py, PyDict>)> {
    let mut format = parse_format(format)?;
    let values = records.iter().map(|r| py_to_json(&r)).collect::<PyResult<Vec<_>>>()?;
    let ctx = RecordContext::for_source(source, image_root.as_deref(), load_images);
    let stem = std::path::Path::new(source).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let (frame, stats) = py.detach(|| {
        let mut batch = NodeBatch::default();
        let mut stats = ReadStats::default();
        for (i, v) in values.into_iter().enumerate() {
            let fallback = format!("{stem}:{}", start_index + i as u64 + 1);
            let f = format.or_else(|| Format::detect(&v));
            let doc = match f {
                Some(f) => {
                    format = Some(f);
                    record_to_document(v, f, fallback, &ctx)
                }
                None => {
                    let mut d = interleaf_core::Document::new(fallback, Some(source.to_string()));
                    d.set_error(interleaf_core::RecordError::new("bad_record", "cannot tell the format from the keys; pass format="));
                    d
                }
            };
            stats.add_document(&doc);
            batch.push(doc);
        }
        (batch_to_frame(batch), stats)
    });
    Ok((PyDataFrame(frame.map_err(polars_err)?), stats_dict(py, &stats)?))
}

/// One JSON line per document in interleaf's own schema (images as base64), as bytes.
#[pyfunction]
pub fn frame_to_jsonl<'py>(py: Python<'py>, df: PyDataFrame) -> PyResult<Bound<'py, PyBytes>> {
    let out = py.detach(|| -> PyResult<Vec<u8>> {
        let docs = frame_to_documents(&df.0).map_err(polars_err)?;
        let mut out = Vec::new();
        for d in &docs {
            serde_json::to_writer(&mut out, &document_to_json(d)).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            out.push(b'\n');
        }
        Ok(out)
    })?;
    Ok(PyBytes::new(py, &out))
}

/// Writes node frames as WebDataset shards (see `interleaf.write`).
#[pyclass(module = "interleaf._native")]
pub struct NativeShardWriter {
    inner: Mutex<Option<(ShardWriter, String)>>,
}

#[pymethods]
impl NativeShardWriter {
    #[new]
    #[pyo3(signature = (directory, prefix="shard", compression="none", max_count=10_000, max_bytes=1<<30, start_index=0))]
    fn new(directory: &str, prefix: &str, compression: &str, max_count: u64, max_bytes: u64, start_index: u64) -> PyResult<Self> {
        let opts = ShardWriterOptions { prefix: prefix.into(), compression: compression.into(), max_count, max_bytes, start_index };
        let w = ShardWriter::new(directory, opts).map_err(core_err)?;
        Ok(NativeShardWriter { inner: Mutex::new(Some((w, String::new()))) })
    }

    /// Writes every document of a node frame; returns the number of documents written.
    fn write(&self, py: Python<'_>, df: PyDataFrame) -> PyResult<usize> {
        py.detach(|| {
            let docs = frame_to_documents(&df.0).map_err(polars_err)?;
            let mut guard = self.inner.lock().expect("writer lock");
            let (w, last_key) = guard.as_mut().ok_or_else(|| PyValueError::new_err("writer is closed"))?;
            for d in &docs {
                let mut key = key_for(&d.doc_id);
                if key == *last_key {
                    // Consecutive equal keys would merge two documents into one sample.
                    let mut n = 1;
                    while format!("{key}_{n}") == *last_key {
                        n += 1;
                    }
                    key = format!("{key}_{n}");
                }
                w.write_sample(&key, &document_to_members(d, &key)).map_err(core_err)?;
                *last_key = key;
            }
            Ok(docs.len())
        })
    }

    /// Finishes the last shard; returns the paths of all shards written.
    fn finish(&self) -> PyResult<Vec<String>> {
        let taken = self.inner.lock().expect("writer lock").take();
        match taken {
            Some((w, _)) => w.finish().map_err(core_err),
            None => Ok(Vec::new()),
        }
    }
}
