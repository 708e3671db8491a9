//! Dedup bindings: exact keys, shingles, MinHash signatures, LSH clusters. Type conversion and
//! GIL release only; the work is in `interleaf_core::hash`.

use interleaf_core::hash::lsh::{optimal_params, representatives, shingle_sets, Verify};
use interleaf_core::hash::minhash::{signatures, MinHashParams, Scheme};
use interleaf_core::hash::normalized_text_xxh3;
use interleaf_core::text::shingle::{shingles, Unit};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use polars::prelude::*;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3_polars::PySeries;

use crate::columns::{byte_values, str_values};

fn parse_unit(unit: &str) -> PyResult<Unit> {
    Unit::parse(unit).ok_or_else(|| PyValueError::new_err(format!("unit must be 'word' or 'char', not {unit:?}")))
}

/// Runs `f` on a rayon pool of `threads` threads (the global pool when None).
pub(crate) fn on_pool<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    interleaf_core::threads::install(threads, f).map_err(PyValueError::new_err)
}

/// Inputs smaller than this are clustered without a watching thread (see [`interruptible`]).
const SHORT_CALL_ITEMS: usize = 50_000;

/// [`on_pool`] outside the GIL for a call that may run for minutes, stopped by Ctrl-C: `f` runs
/// on its own thread while the calling one checks Python's signals every 50 ms; on one, `f` is
/// cancelled (its loops watch [`interleaf_core::cancel`]), its result discarded and the
/// signal's exception (KeyboardInterrupt) raised at once instead of when `f` would have ended.
/// Work on fewer than [`SHORT_CALL_ITEMS`] items is short (seconds at worst: a Hamming search
/// of 50,000 hashes that all share buckets): it runs as [`on_pool`] does, without a thread of
/// its own (which costs a few hundred microseconds a call on a busy machine).
pub(crate) fn interruptible<T: Send>(py: Python<'_>, items: usize, threads: Option<usize>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    if items < SHORT_CALL_ITEMS {
        return py.detach(|| on_pool(threads, f));
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    type Done = (Mutex<bool>, Condvar);
    /// Marks `f` ended, also when it panics.
    struct Ended<'a>(&'a Done);
    impl Drop for Ended<'_> {
        fn drop(&mut self) {
            *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.0 .1.notify_all();
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let done: Done = (Mutex::new(false), Condvar::new());
    std::thread::scope(|s| {
        let worker_flag = flag.clone();
        let done = &done;
        let worker = s.spawn(move || {
            let _ended = Ended(done);
            interleaf_core::threads::install(threads, move || interleaf_core::cancel::within(worker_flag, f))
        });
        let wait = || {
            let ended = done.0.lock().unwrap_or_else(|e| e.into_inner());
            *done.1.wait_timeout_while(ended, std::time::Duration::from_millis(50), |e| !*e).unwrap_or_else(|e| e.into_inner()).0
        };
        while !py.detach(wait) {
            if let Err(e) = py.check_signals() {
                flag.store(true, Ordering::Relaxed);
                let _ = worker.join();
                return Err(e);
            }
        }
        match worker.join() {
            Ok(out) => out.map_err(PyValueError::new_err),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The digest `f` of each value in hex, as a String Series named like the input (null stays
/// null). Digests are computed in parallel into one flat vector, then written as hex straight
/// into the column: no allocation per value; all outside the GIL.
fn hex_series<T: Sync, const N: usize>(py: Python<'_>, name: &PlSmallStr, values: &[Option<T>], f: impl Fn(&T) -> [u8; N] + Sync) -> PyResult<PySeries> {
    use rayon::prelude::*;
    let col = py.detach(|| {
        on_pool(None, || {
            let digests: Vec<Option<[u8; N]>> = values.par_iter().map(|v| v.as_ref().map(&f)).collect();
            let mut b = StringChunkedBuilder::new(name.clone(), digests.len());
            let mut buf = [0u8; 64];
            for d in &digests {
                match d {
                    Some(d) => b.append_value(interleaf_core::hash::hex_into(d, &mut buf)),
                    None => b.append_null(),
                }
            }
            b.finish().into_series()
        })
    })?;
    Ok(PySeries(col))
}

/// xxh3-128 hex of each value of a String (UTF-8 bytes) or Binary Series.
#[pyfunction]
pub fn xxh3_128(py: Python<'_>, items: PySeries) -> PyResult<PySeries> {
    let values = byte_values(&items.0, "items")?;
    hex_series(py, items.0.name(), &values, |b| interleaf_core::hash::xxh3_128(b))
}

/// BLAKE3 hex of each value of a String (UTF-8 bytes) or Binary Series.
#[pyfunction]
pub fn blake3(py: Python<'_>, items: PySeries) -> PyResult<PySeries> {
    let values = byte_values(&items.0, "items")?;
    hex_series(py, items.0.name(), &values, |b| interleaf_core::hash::blake3(b))
}

/// xxh3-128 hex of each normalised text of a String Series.
#[pyfunction]
#[pyo3(signature = (texts, strip_punctuation=false))]
pub fn normalized_text_hash(py: Python<'_>, texts: PySeries, strip_punctuation: bool) -> PyResult<PySeries> {
    let values = str_values(&texts.0, "texts")?;
    hex_series(py, texts.0.name(), &values, |t| normalized_text_xxh3(t, strip_punctuation))
}

#[pyfunction]
#[pyo3(name = "shingles", signature = (text, n=5, unit="word"))]
pub fn py_shingles(text: &str, n: usize, unit: &str) -> PyResult<Vec<String>> {
    if n == 0 {
        return Err(PyValueError::new_err("n must be >= 1"));
    }
    Ok(shingles(text, n, parse_unit(unit)?))
}

/// Signatures `(len(texts), len(a))` as uint32.
#[pyfunction]
#[pyo3(signature = (texts, n, unit, scheme, a, b, seed=0, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn minhash_signatures<'py>(
    py: Python<'py>,
    texts: PySeries,
    n: usize,
    unit: &str,
    scheme: &str,
    a: Vec<u64>,
    b: Vec<u64>,
    seed: u64,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let scheme = Scheme::parse(scheme).ok_or_else(|| PyValueError::new_err(format!("unknown MinHash scheme {scheme:?}")))?;
    if a.len() != b.len() || a.is_empty() {
        return Err(PyValueError::new_err("a and b must be non-empty and of equal length"));
    }
    if n == 0 {
        return Err(PyValueError::new_err("n must be >= 1"));
    }
    let params = MinHashParams { n, unit: parse_unit(unit)?, scheme, a, b, seed };
    let k = params.num_perm();
    let values = str_values(&texts.0, "texts")?;
    let rows = values.len();
    let flat = py.detach(|| {
        let refs: Vec<&str> = values.iter().map(|t| t.unwrap_or("")).collect();
        on_pool(threads, || signatures(&refs, &params))
    })?;
    flat.into_pyarray(py).reshape([rows, k])
}

/// The (bands, rows) datasketch would choose.
#[pyfunction]
#[pyo3(signature = (threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5))]
pub fn lsh_params(py: Python<'_>, threshold: f64, num_perm: usize, false_positive_weight: f64, false_negative_weight: f64) -> PyResult<(usize, usize)> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(PyValueError::new_err(format!("threshold must be in [0, 1], got {threshold}")));
    }
    // Seconds at thousands of permutations (a quadrature per band shape): not under the GIL.
    Ok(py.detach(|| optimal_params(threshold, num_perm, false_positive_weight, false_negative_weight)))
}

/// Cluster representatives for MinHash signatures: returns (representative per row as int64,
/// candidate pairs checked, pairs joined).
#[pyfunction]
#[pyo3(signature = (signatures, bands, rows, verify="none", threshold=0.0, texts=None, n=5, unit="word", ranking=None))]
#[allow(clippy::too_many_arguments)]
pub fn lsh_cluster<'py>(
    py: Python<'py>,
    signatures: PyReadonlyArray2<'py, u32>,
    bands: usize,
    rows: usize,
    verify: &str,
    threshold: f64,
    texts: Option<PySeries>,
    n: usize,
    unit: &str,
    ranking: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, u64, u64)> {
    let shape = signatures.shape().to_vec();
    let (nrows, k) = (shape[0], shape[1]);
    if bands == 0 || rows == 0 || bands.checked_mul(rows).is_none_or(|n| n > k) {
        return Err(PyValueError::new_err(format!("bands * rows must be in [1, num_perm={k}], got {bands} x {rows}")));
    }
    if !signatures.is_c_contiguous() {
        return Err(PyValueError::new_err("signatures must be a C-contiguous uint32 array (row-major; np.ascontiguousarray)"));
    }
    let sigs = signatures.as_slice().map_err(|_| PyValueError::new_err("signatures must be a C-contiguous uint32 array"))?;
    let rank: Option<Vec<f64>> = ranking.map(|r| r.as_array().to_vec());
    if rank.as_ref().is_some_and(|r| r.len() != nrows) {
        return Err(PyValueError::new_err("ranking must have one value per row"));
    }
    let unit = parse_unit(unit)?;
    let texts: Option<Vec<&str>> = match &texts {
        Some(t) => Some(str_values(&t.0, "texts")?.into_iter().map(|t| t.unwrap_or("")).collect()),
        None => None,
    };
    if verify == "exact" && texts.as_ref().is_none_or(|t| t.len() != nrows) {
        return Err(PyValueError::new_err("verify='exact' needs texts, one per signature row"));
    }
    // Verification can be quadratic in a bucket's rows: watched whatever the size.
    let items = if verify == "none" { nrows } else { usize::MAX };
    let out = interruptible(py, items, None, || -> PyResult<(Vec<i64>, u64, u64)> {
        let sets = match (&texts, verify) {
            (Some(t), "exact") => shingle_sets(t, n, unit),
            _ => Vec::new(),
        };
        let v = match verify {
            "none" => Verify::None,
            "signature" => Verify::Signature(threshold),
            "exact" => Verify::Exact(threshold, &sets),
            other => return Err(PyValueError::new_err(format!("verify must be 'none', 'signature' or 'exact', not {other:?}"))),
        };
        let (reps, candidates, joined) = representatives(sigs, k, bands, rows, &v, rank.as_deref());
        Ok((reps.into_iter().map(i64::from).collect(), candidates, joined))
    })??;
    Ok((out.0.into_pyarray(py), out.1, out.2))
}

fn u64_hashes(hashes: &PySeries, radius: u32) -> PyResult<Vec<Option<u64>>> {
    if radius >= 64 {
        return Err(PyValueError::new_err("radius must be < 64"));
    }
    let ca = hashes.0.u64().map_err(|_| PyValueError::new_err(format!("hashes must be a UInt64 column, not {}", hashes.0.dtype())))?;
    Ok(ca.iter().collect())
}

/// Pairs (i, j, distance), i < j, of 64-bit hashes within `radius`, and the representative
/// (smallest index) of each item's cluster.
#[pyfunction]
#[pyo3(signature = (hashes, radius, threads=None))]
#[allow(clippy::type_complexity)]
pub fn hamming_pairs<'py>(
    py: Python<'py>,
    hashes: PySeries,
    radius: u32,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>)> {
    let hashes = u64_hashes(&hashes, radius)?;
    let (pairs, reps) = interruptible(py, hashes.len(), threads, || interleaf_core::hash::neardup::pairs_and_clusters(&hashes, radius))?;
    let i: Vec<i64> = pairs.iter().map(|p| p.0 as i64).collect();
    let j: Vec<i64> = pairs.iter().map(|p| p.1 as i64).collect();
    let d: Vec<i64> = pairs.iter().map(|p| p.2 as i64).collect();
    let r: Vec<i64> = reps.into_iter().map(i64::from).collect();
    Ok((i.into_pyarray(py), j.into_pyarray(py), d.into_pyarray(py), r.into_pyarray(py)))
}

/// The representative (smallest index) of each item's cluster of hashes within `radius`, and
/// the number of pairs of distinct hash values within it; no pair list is built.
#[pyfunction]
#[pyo3(signature = (hashes, radius, threads=None))]
pub fn hamming_clusters<'py>(py: Python<'py>, hashes: PySeries, radius: u32, threads: Option<usize>) -> PyResult<(Bound<'py, PyArray1<i64>>, u64)> {
    let hashes = u64_hashes(&hashes, radius)?;
    let (reps, pairs) = interruptible(py, hashes.len(), threads, || interleaf_core::hash::neardup::clusters_within(&hashes, radius))?;
    Ok((reps.into_iter().map(i64::from).collect::<Vec<_>>().into_pyarray(py), pairs))
}

/// A multi-index hashing index over 64-bit hashes for Hamming range search
/// (`interleaf_core::hash::neardup::HammingIndex`); immutable once built.
#[pyclass(name = "HammingIndex", module = "interleaf._native", frozen)]
pub struct PyHammingIndex(interleaf_core::hash::neardup::HammingIndex);

#[pymethods]
impl PyHammingIndex {
    #[new]
    #[pyo3(signature = (hashes, radius, threads=None))]
    fn new(py: Python<'_>, hashes: PySeries, radius: u32, threads: Option<usize>) -> PyResult<Self> {
        let hashes = u64_hashes(&hashes, radius)?;
        if hashes.len() >= u32::MAX as usize {
            return Err(PyValueError::new_err("an index holds fewer than 2^32 hashes"));
        }
        Ok(PyHammingIndex(py.detach(|| on_pool(threads, || interleaf_core::hash::neardup::HammingIndex::new(&hashes, radius)))?))
    }

    /// `(query, id, distance)` int64 arrays of every entry within `radius` of each query,
    /// sorted by query then id.
    #[pyo3(signature = (queries, radius, threads=None))]
    #[allow(clippy::type_complexity)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PySeries,
        radius: u32,
        threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>)> {
        if radius > self.0.radius() {
            return Err(PyValueError::new_err(format!(
                "radius {radius} is above the index's radius {} (build the index for the largest radius you search)",
                self.0.radius()
            )));
        }
        let queries = u64_hashes(&queries, radius)?;
        let found = interruptible(py, queries.len().max(self.0.len()), threads, || self.0.search_all(&queries, radius))?;
        let q: Vec<i64> = found.iter().map(|p| p.0 as i64).collect();
        let i: Vec<i64> = found.iter().map(|p| p.1 as i64).collect();
        let d: Vec<i64> = found.iter().map(|p| p.2 as i64).collect();
        Ok((q.into_pyarray(py), i.into_pyarray(py), d.into_pyarray(py)))
    }

    #[getter]
    fn radius(&self) -> u32 {
        self.0.radius()
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }
}

/// Pillow-compatible resize of an 8-bit grayscale image (for parity tests).
#[pyfunction]
#[pyo3(name = "_resize_luma")]
pub fn resize_luma_py(
    py: Python<'_>,
    pixels: PyBackedBytes,
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
    filter: &str,
) -> PyResult<Vec<u8>> {
    use interleaf_core::image::{resize_luma, Filter};
    let f = match filter {
        "lanczos" => Filter::Lanczos,
        "bicubic" => Filter::Bicubic,
        "bilinear" => Filter::Bilinear,
        other => return Err(PyValueError::new_err(format!("unknown filter {other:?}"))),
    };
    if pixels.len() != width * height || out_width == 0 || out_height == 0 {
        return Err(PyValueError::new_err("pixels must be width*height bytes and the output non-empty"));
    }
    Ok(py.detach(|| resize_luma(&pixels, width, height, out_width, out_height, f)))
}

/// Pillow-compatible `convert("L")` of decoded image bytes: (width, height, pixels); with
/// `draft`, what Pillow gives after `Image.draft("L", (draft, draft))` (for parity tests).
#[pyfunction]
#[pyo3(name = "_decode_luma", signature = (data, draft=None))]
pub fn decode_luma_py(py: Python<'_>, data: PyBackedBytes, draft: Option<usize>) -> PyResult<(u32, u32, Vec<u8>)> {
    use interleaf_core::image::{decode_luma, decode_luma_draft, DecodeLimits};
    let limits = DecodeLimits::default();
    py.detach(|| match draft {
        Some(req) => decode_luma_draft(&data, &limits, req),
        None => decode_luma(&data, &limits),
    })
    .map_err(|e| PyValueError::new_err(e.to_string()))
}
