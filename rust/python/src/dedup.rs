//! Dedup bindings: exact keys, shingles, MinHash signatures, LSH clusters. Type conversion and
//! GIL release only; the work is in `interleaf_core::hash`.

use interleaf_core::hash::lsh::{cluster, optimal_params, Verify};
use interleaf_core::hash::minhash::{signatures, MinHashParams, Scheme};
use interleaf_core::hash::{blake3_hex, normalized_text_hex, xxh3_128_hex};
use interleaf_core::text::shingle::{for_each_shingle_hash, shingles, Unit};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};

fn parse_unit(unit: &str) -> PyResult<Unit> {
    Unit::parse(unit).ok_or_else(|| PyValueError::new_err(format!("unit must be 'word' or 'char', not {unit:?}")))
}

/// Runs `f` on a rayon pool of `threads` threads (the global pool when None).
fn on_pool<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    match threads {
        None => Ok(f()),
        Some(0) => Err(PyValueError::new_err("threads must be >= 1")),
        Some(t) => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().map_err(|e| PyValueError::new_err(e.to_string()))?;
            Ok(pool.install(f))
        }
    }
}

/// Bytes or str items, as bytes (str as UTF-8).
#[derive(FromPyObject)]
pub enum BytesLike {
    Bytes(PyBackedBytes),
    Str(PyBackedStr),
}

impl BytesLike {
    fn as_bytes(&self) -> &[u8] {
        match self {
            BytesLike::Bytes(b) => b.as_ref(),
            BytesLike::Str(s) => s.as_bytes(),
        }
    }
}

#[pyfunction]
pub fn xxh3_128(py: Python<'_>, items: Vec<BytesLike>) -> Vec<String> {
    py.detach(|| items.iter().map(|i| xxh3_128_hex(i.as_bytes())).collect())
}

#[pyfunction]
pub fn blake3(py: Python<'_>, items: Vec<BytesLike>) -> Vec<String> {
    py.detach(|| items.iter().map(|i| blake3_hex(i.as_bytes())).collect())
}

#[pyfunction]
#[pyo3(signature = (texts, strip_punctuation=false))]
pub fn normalized_text_hash(py: Python<'_>, texts: Vec<PyBackedStr>, strip_punctuation: bool) -> Vec<String> {
    py.detach(|| texts.iter().map(|t| normalized_text_hex(t, strip_punctuation)).collect())
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
    texts: Vec<PyBackedStr>,
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
    let rows = texts.len();
    let flat = py.detach(|| {
        let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
        on_pool(threads, || signatures(&refs, &params))
    })?;
    flat.into_pyarray(py).reshape([rows, k])
}

/// The (bands, rows) datasketch would choose.
#[pyfunction]
#[pyo3(signature = (threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5))]
pub fn lsh_params(threshold: f64, num_perm: usize, false_positive_weight: f64, false_negative_weight: f64) -> PyResult<(usize, usize)> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(PyValueError::new_err(format!("threshold must be in [0, 1], got {threshold}")));
    }
    Ok(optimal_params(threshold, num_perm, false_positive_weight, false_negative_weight))
}

fn jaccard_sorted(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
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
    texts: Option<Vec<PyBackedStr>>,
    n: usize,
    unit: &str,
    ranking: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, u64, u64)> {
    let shape = signatures.shape().to_vec();
    let (nrows, k) = (shape[0], shape[1]);
    if bands == 0 || rows == 0 || bands * rows > k {
        return Err(PyValueError::new_err(format!("bands * rows must be in [1, num_perm={k}], got {bands} x {rows}")));
    }
    let sigs = signatures.as_slice().map_err(|_| PyValueError::new_err("signatures must be a C-contiguous uint32 array"))?;
    let rank: Option<Vec<f64>> = ranking.map(|r| r.as_array().to_vec());
    if rank.as_ref().is_some_and(|r| r.len() != nrows) {
        return Err(PyValueError::new_err("ranking must have one value per row"));
    }
    let unit = parse_unit(unit)?;
    if verify == "exact" && texts.as_ref().is_none_or(|t| t.len() != nrows) {
        return Err(PyValueError::new_err("verify='exact' needs texts, one per signature row"));
    }
    let out = py.detach(|| -> PyResult<(Vec<i64>, u64, u64)> {
        let sets: Vec<Vec<u64>> = match (&texts, verify) {
            (Some(t), "exact") => t
                .iter()
                .map(|t| {
                    let mut v = Vec::new();
                    for_each_shingle_hash(t, n, unit, 0, |h| v.push(h));
                    v.sort_unstable();
                    v.dedup();
                    v
                })
                .collect(),
            _ => Vec::new(),
        };
        let exact = |i: usize, j: usize| jaccard_sorted(&sets[i], &sets[j]);
        let v = match verify {
            "none" => Verify::None,
            "signature" => Verify::Signature(threshold),
            "exact" => Verify::Exact(threshold, &exact),
            other => return Err(PyValueError::new_err(format!("verify must be 'none', 'signature' or 'exact', not {other:?}"))),
        };
        let mut c = cluster(sigs, k, bands, rows, &v);
        let reps = match &rank {
            Some(r) => c.uf.representatives(|i| r[i]),
            None => c.uf.representatives(|_| 0u8),
        };
        Ok((reps.into_iter().map(i64::from).collect(), c.candidates, c.joined))
    })?;
    Ok((out.0.into_pyarray(py), out.1, out.2))
}
