//! interleaf._native: the Python module and the polars plugin in one cdylib.
//! Bindings only convert types, release the GIL around batch work and raise Python errors;
//! the work is in the `interleaf-core` crate.

use pyo3::prelude::*;
use pyo3_polars::PolarsAllocator;

mod columns;
mod dedup;
mod evaluate;
mod expressions;
mod frame;
mod image;
mod io;
mod signals;

#[global_allocator]
static ALLOC: PolarsAllocator = PolarsAllocator::new();

/// xxh3-64 (seed 0) of each bytes object.
#[pyfunction]
fn xxh3_64(py: Python<'_>, data: Vec<Vec<u8>>) -> Vec<u64> {
    py.detach(|| data.iter().map(|d| interleaf_core::hash::xxh3_64(d)).collect())
}

/// Sets the default number of threads of every batch call that does not name one.
#[pyfunction]
fn set_threads(threads: usize) -> PyResult<()> {
    interleaf_core::threads::set_default_threads(threads).map_err(pyo3::exceptions::PyValueError::new_err)
}

/// The default number of threads (see `interleaf.set_threads`).
#[pyfunction]
fn get_threads() -> usize {
    interleaf_core::threads::default_threads()
}

/// The error registry: (kind, meaning) for every kind a record error can have.
#[pyfunction]
fn error_kinds() -> Vec<(&'static str, &'static str)> {
    interleaf_core::ErrorKind::ALL.iter().map(|k| (k.as_str(), k.doc())).collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // numpy's C API is fetched on first use, by running Python code: fetched inside a long
    // call, a pending Ctrl-C made that fail and the numpy crate panic (a PanicException, not
    // a KeyboardInterrupt). Fetched here, at import, it is there for every later call.
    let _ = numpy::PyArray1::<u8>::zeros(m.py(), 0, false);
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<io::NativeReader>()?;
    m.add_class::<io::NativeShardWriter>()?;
    m.add_class::<io::NativeWriteLock>()?;
    m.add_function(wrap_pyfunction!(io::check_file_name, m)?)?;
    m.add_function(wrap_pyfunction!(io::records_to_frame, m)?)?;
    m.add_function(wrap_pyfunction!(io::stat_files, m)?)?;
    m.add_function(wrap_pyfunction!(io::frame_to_jsonl, m)?)?;
    m.add_function(wrap_pyfunction!(io::frame_to_records, m)?)?;
    m.add_function(wrap_pyfunction!(io::detect_record_format, m)?)?;
    m.add_function(wrap_pyfunction!(io::number_documents, m)?)?;
    m.add_function(wrap_pyfunction!(io::parquet_page_header, m)?)?;
    m.add_function(wrap_pyfunction!(io::plain_byte_array_longest, m)?)?;
    m.add_function(wrap_pyfunction!(io::dictionary_gathered_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(io::read_samples, m)?)?;
    m.add_function(wrap_pyfunction!(xxh3_64, m)?)?;
    m.add_function(wrap_pyfunction!(error_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_threads, m)?)?;
    m.add_class::<image::PyPreprocessConfig>()?;
    m.add_function(wrap_pyfunction!(dedup::xxh3_128, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::blake3, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::normalized_text_hash, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::py_shingles, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::minhash_signatures, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::lsh_params, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::lsh_cluster, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::hamming_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::hamming_clusters, m)?)?;
    m.add_class::<dedup::PyHammingIndex>()?;
    m.add_class::<signals::PyWordSet>()?;
    m.add_function(wrap_pyfunction!(dedup::resize_luma_py, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::decode_luma_py, m)?)?;
    m.add_function(wrap_pyfunction!(image::analyze_images, m)?)?;
    m.add_function(wrap_pyfunction!(image::thumbnails, m)?)?;
    m.add_function(wrap_pyfunction!(image::image_compare, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate::caption_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(signals::obelics_text_stats, m)?)?;
    m.add_function(wrap_pyfunction!(signals::obelics_paragraphs, m)?)?;
    m.add_function(wrap_pyfunction!(signals::mmc4_assign, m)?)?;
    m.add_function(wrap_pyfunction!(signals::mmc4_assign_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(signals::mmc4_assign_rows, m)?)?;
    m.add_function(wrap_pyfunction!(signals::mmc4_similarity_rows, m)?)?;
    m.add_function(wrap_pyfunction!(signals::sequence_consistency, m)?)?;
    m.add_function(wrap_pyfunction!(signals::text_coherence, m)?)?;
    m.add_function(wrap_pyfunction!(signals::linear_assignment, m)?)?;
    m.add_function(wrap_pyfunction!(signals::top_k, m)?)?;
    m.add_function(wrap_pyfunction!(image::decode_rgb_py, m)?)?;
    Ok(())
}
