//! Signal kernels: OBELICS text statistics over a String column, and the per-document
//! similarity math (`interleaf_core::sim`) over embedding matrices with CSR offsets.
//! Conversion and GIL release only.

use interleaf_core::sim;
use interleaf_core::text::obelics::{filter_paragraphs, filter_paragraphs_and_stats, text_stats_with, ParagraphRules, StatsParams, TextStats, WordSet};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use polars::prelude::*;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_polars::{PyDataFrame, PySeries};
use rayon::prelude::*;

use crate::columns::str_values;
use crate::dedup::on_pool;

fn polars_err(e: PolarsError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A word list for the common-word ratio (OBELICS's common words), built once and shared by
/// the calls that take `common_words`.
#[pyclass(name = "WordSet", module = "interleaf._native", frozen)]
pub struct PyWordSet(WordSet, std::sync::OnceLock<String>);

#[pymethods]
impl PyWordSet {
    #[new]
    fn new(words: Vec<String>) -> Self {
        PyWordSet(words.into_iter().collect(), std::sync::OnceLock::new())
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }

    fn __contains__(&self, word: &str) -> bool {
        self.0.contains(word)
    }

    fn __repr__(&self) -> String {
        format!("WordSet({} words)", self.0.len())
    }

    /// The words, sorted.
    fn words(&self) -> Vec<String> {
        let mut words: Vec<String> = self.0.iter().cloned().collect();
        words.sort_unstable();
        words
    }

    /// BLAKE3 of the sorted words (each length-prefixed), hex: what identifies the list,
    /// however it was given; computed once.
    fn digest(&self, py: Python<'_>) -> String {
        py.detach(|| {
            self.1
                .get_or_init(|| {
                    let mut bytes = Vec::new();
                    for w in self.words() {
                        bytes.extend_from_slice(&(w.len() as u64).to_le_bytes());
                        bytes.extend_from_slice(w.as_bytes());
                    }
                    interleaf_core::hash::blake3(&bytes).iter().map(|b| format!("{b:02x}")).collect()
                })
                .clone()
        })
    }

    /// (how many, up to `limit` of them sorted): the entries no text can match, since OBELICS's
    /// word splitting never gives them (upper case, whitespace, special characters at an end,
    /// empty).
    #[pyo3(signature = (limit=5))]
    fn unmatchable(&self, py: Python<'_>, limit: usize) -> (usize, Vec<String>) {
        py.detach(|| {
            let mut bad: Vec<&String> = self.0.iter().filter(|w| interleaf_core::text::obelics::words(w) != [w.as_str()]).collect();
            let n = bad.len();
            bad.sort_unstable();
            (n, bad.into_iter().take(limit).cloned().collect())
        })
    }

    /// Pickled as its words (a run's plan travels to Ray workers).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, pyo3::types::PyType>, (Vec<String>,))> {
        Ok((slf.get_type(), (slf.get().words(),)))
    }
}

/// OBELICS's statistics of each text: a table with `n_words`, `n_chars`, `char_repetition`,
/// `word_repetition`, `special_char_ratio`, `stopword_ratio`, `flagged_word_ratio`,
/// `punctuation_ratio` (null for a null text), and `common_word_ratio` with `common_words`.
#[pyfunction]
#[pyo3(signature = (texts, *, char_ngram=10, word_ngram=5, punctuation_min_tokens=0, threads=None, common_words=None))]
pub fn obelics_text_stats(
    py: Python<'_>,
    texts: PySeries,
    char_ngram: usize,
    word_ngram: usize,
    punctuation_min_tokens: usize,
    threads: Option<usize>,
    common_words: Option<PyRef<'_, PyWordSet>>,
) -> PyResult<PyDataFrame> {
    let values = str_values(&texts.0, "texts")?;
    let p = StatsParams { char_ngram, word_ngram, punctuation_min_tokens };
    let common = common_words.as_ref().map(|c| &c.0);
    let stats = py.detach(|| on_pool(threads, || values.par_iter().map(|t| t.map(|t| text_stats_with(t, &p, common))).collect::<Vec<_>>()))?;
    let mut cols = text_stats_columns(&stats);
    if common.is_some() {
        cols.push(common_word_column(&stats));
    }
    Ok(PyDataFrame(DataFrame::new(stats.len(), cols).map_err(polars_err)?))
}

/// The `common_word_ratio` column (Float64, null where the text was null).
fn common_word_column(stats: &[Option<TextStats>]) -> Column {
    stats.iter().map(|s| s.as_ref().and_then(|s| s.common_word_ratio)).collect::<Float64Chunked>().with_name("common_word_ratio".into()).into_column()
}

/// The statistics as columns (`n_words`, `n_chars` UInt64, the ratios Float64), null where the
/// text was null: one layout for the table and the polars expression.
pub(crate) fn text_stats_columns(stats: &[Option<TextStats>]) -> Vec<Column> {
    let u = |f: fn(&TextStats) -> u64, name: &str| -> Column {
        stats.iter().map(|s| s.as_ref().map(f)).collect::<UInt64Chunked>().with_name(name.into()).into_column()
    };
    let r = |f: fn(&TextStats) -> f64, name: &str| -> Column {
        stats.iter().map(|s| s.as_ref().map(f)).collect::<Float64Chunked>().with_name(name.into()).into_column()
    };
    vec![
        u(|s| s.n_words, "n_words"),
        u(|s| s.n_chars, "n_chars"),
        r(|s| s.char_repetition, "char_repetition"),
        r(|s| s.word_repetition, "word_repetition"),
        r(|s| s.special_char_ratio, "special_char_ratio"),
        r(|s| s.stopword_ratio, "stopword_ratio"),
        r(|s| s.flagged_word_ratio, "flagged_word_ratio"),
        r(|s| s.punctuation_ratio, "punctuation_ratio"),
    ]
}

/// OBELICS's node-level paragraph filter on each text: (kept text or null, removed paragraph
/// indices, their reasons) per text; with `node_stats` = (char_ngram, word_ngram), also each
/// whole text's statistics at paragraph level (the columns of `obelics_text_stats` with
/// `punctuation_min_tokens` 12), computed with the filter's own where they are the same.
/// With `common_words`, paragraphs are also checked for OBELICS's common-word ratio (>= 0.8,
/// after punctuation) and the statistics have `common_word_ratio`.
#[pyfunction]
#[pyo3(signature = (texts, *, threads=None, node_stats=None, common_words=None))]
pub fn obelics_paragraphs(
    py: Python<'_>,
    texts: PySeries,
    threads: Option<usize>,
    node_stats: Option<(usize, usize)>,
    common_words: Option<PyRef<'_, PyWordSet>>,
) -> PyResult<PyDataFrame> {
    let values = str_values(&texts.0, "texts")?;
    let rules = ParagraphRules::default();
    let common = common_words.as_ref().map(|c| &c.0);
    let (out, stats) = match node_stats {
        None => (py.detach(|| on_pool(threads, || values.par_iter().map(|t| t.map(|t| filter_paragraphs(t, &rules, common))).collect::<Vec<_>>()))?, None),
        Some((char_ngram, word_ngram)) => {
            let p = StatsParams { char_ngram, word_ngram, punctuation_min_tokens: StatsParams::PARAGRAPH.punctuation_min_tokens };
            let both = py
                .detach(|| on_pool(threads, || values.par_iter().map(|t| t.map(|t| filter_paragraphs_and_stats(t, &rules, &p, common))).collect::<Vec<_>>()))?;
            let stats: Vec<Option<TextStats>> = both.iter().map(|o| o.as_ref().map(|(_, _, s)| s.clone())).collect();
            (both.into_iter().map(|o| o.map(|(k, r, _)| (k, r))).collect(), Some(stats))
        }
    };
    let kept: StringChunked = out.iter().map(|o| o.as_ref().and_then(|(k, _)| k.as_deref())).collect();
    let mut idx = ListPrimitiveChunkedBuilder::<UInt32Type>::new("removed".into(), out.len(), out.len(), DataType::UInt32);
    let mut why = ListStringChunkedBuilder::new("reasons".into(), out.len(), out.len());
    for o in &out {
        match o {
            Some((_, removed)) => {
                idx.append_slice(&removed.iter().map(|(i, _)| *i as u32).collect::<Vec<_>>());
                why.append_values_iter(removed.iter().map(|(_, r)| r.as_str()));
            }
            None => {
                idx.append_null();
                why.append_null();
            }
        }
    }
    let mut cols = vec![kept.with_name("text".into()).into_column(), idx.finish().into_column(), why.finish().into_column()];
    if let Some(stats) = stats {
        cols.extend(text_stats_columns(&stats));
        if common.is_some() {
            cols.push(common_word_column(&stats));
        }
    }
    Ok(PyDataFrame(DataFrame::new(out.len(), cols).map_err(polars_err)?))
}

/// Two matrices that must have one width.
fn matrix_pair<'a>(a: &'a PyReadonlyArray2<'_, f32>, an: &str, b: &'a PyReadonlyArray2<'_, f32>, bn: &str) -> PyResult<(&'a [f32], &'a [f32], usize)> {
    let (x, dim) = matrix(a, an)?;
    let (y, ydim) = matrix(b, bn)?;
    if dim != ydim {
        return Err(PyValueError::new_err(format!("{an} have {dim} columns, {bn} {ydim}")));
    }
    Ok((x, y, dim))
}

fn matrix<'a>(a: &'a PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<(&'a [f32], usize)> {
    let dim = a.shape()[1];
    Ok((c_order(a, what, "float32")?, dim))
}

/// The elements of a 2-D array in row-major order: refused unless it is C-contiguous (a
/// Fortran-ordered array is contiguous too, but column-major).
fn c_order<'a, T: numpy::Element>(a: &'a PyReadonlyArray2<'_, T>, what: &str, dtype: &str) -> PyResult<&'a [T]> {
    let err = || PyValueError::new_err(format!("{what} must be a C-contiguous {dtype} array (row-major; np.ascontiguousarray)"));
    if !a.is_c_contiguous() {
        return Err(err());
    }
    a.as_slice().map_err(|_| err())
}

/// MMC4's assignment over documents: (sentence index per image, -1 when dropped; cosine).
#[pyfunction]
#[pyo3(signature = (images, image_offsets, texts, text_offsets, threshold=0.15, threads=None))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn mmc4_assign<'py>(
    py: Python<'py>,
    images: PyReadonlyArray2<'py, f32>,
    image_offsets: PyReadonlyArray1<'py, i64>,
    texts: PyReadonlyArray2<'py, f32>,
    text_offsets: PyReadonlyArray1<'py, i64>,
    threshold: f32,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>)> {
    let (img, txt, dim) = matrix_pair(&images, "images", &texts, "texts")?;
    let (io, to) = (image_offsets.as_slice()?, text_offsets.as_slice()?);
    let (idx, score) = py.detach(|| on_pool(threads, || sim::mmc4_assign_docs(img, io, txt, to, dim, threshold)))?.map_err(PyValueError::new_err)?;
    Ok((idx.into_pyarray(py), score.into_pyarray(py)))
}

/// Each image's cosines with its document's sentences (flat) and each image's offset into them.
#[pyfunction]
#[pyo3(signature = (images, image_offsets, texts, text_offsets, threads=None))]
#[allow(clippy::type_complexity)]
pub fn mmc4_similarity_rows<'py>(
    py: Python<'py>,
    images: PyReadonlyArray2<'py, f32>,
    image_offsets: PyReadonlyArray1<'py, i64>,
    texts: PyReadonlyArray2<'py, f32>,
    text_offsets: PyReadonlyArray1<'py, i64>,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<i64>>)> {
    let (img, txt, dim) = matrix_pair(&images, "images", &texts, "texts")?;
    let (io, to) = (image_offsets.as_slice()?, text_offsets.as_slice()?);
    let (sims, offsets) = py.detach(|| on_pool(threads, || sim::mmc4_similarity_rows(img, io, txt, to, dim)))?.map_err(PyValueError::new_err)?;
    Ok((sims.into_pyarray(py), offsets.into_pyarray(py)))
}

/// MMC4's assignment over documents from each image's cosines with its document's sentences.
#[pyfunction]
#[pyo3(signature = (sims, sim_offsets, image_offsets, threshold=0.15, threads=None))]
#[allow(clippy::type_complexity)]
pub fn mmc4_assign_rows<'py>(
    py: Python<'py>,
    sims: PyReadonlyArray1<'py, f32>,
    sim_offsets: PyReadonlyArray1<'py, i64>,
    image_offsets: PyReadonlyArray1<'py, i64>,
    threshold: f32,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>)> {
    let (s, so, io) = (sims.as_slice()?, sim_offsets.as_slice()?, image_offsets.as_slice()?);
    let (idx, score) = py.detach(|| on_pool(threads, || sim::mmc4_assign_rows(s, so, io, threshold)))?.map_err(PyValueError::new_err)?;
    Ok((idx.into_pyarray(py), score.into_pyarray(py)))
}

/// MMC4's assignment of one document from its `images x sentences` similarity matrix (float32,
/// compared with the threshold in float32 as MMC4 does, or float64): the sentence index per
/// image, -1 when dropped.
#[pyfunction]
#[pyo3(signature = (sim, threshold=0.15))]
pub fn mmc4_assign_matrix<'py>(py: Python<'py>, sim: &Bound<'py, PyAny>, threshold: f64) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let a = if let Ok(sim) = sim.extract::<PyReadonlyArray2<'py, f64>>() {
        let (rows, cols) = (sim.shape()[0], sim.shape()[1]);
        let s = c_order(&sim, "sim", "float64")?;
        py.detach(|| sim::mmc4_assign(s, rows, cols, threshold))
    } else {
        let sim = sim.extract::<PyReadonlyArray2<'py, f32>>()?;
        let (rows, cols) = (sim.shape()[0], sim.shape()[1]);
        let s = c_order(&sim, "sim", "float32")?;
        py.detach(|| sim::mmc4_assign(s, rows, cols, threshold as f32))
    };
    Ok(a.map_err(PyValueError::new_err)?.into_pyarray(py))
}

/// CoMM's F per document (NaN below 3 images).
#[pyfunction]
#[pyo3(signature = (embeddings, offsets, threads=None))]
pub fn sequence_consistency<'py>(
    py: Python<'py>,
    embeddings: PyReadonlyArray2<'py, f32>,
    offsets: PyReadonlyArray1<'py, i64>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (emb, dim) = matrix(&embeddings, "embeddings")?;
    let off = offsets.as_slice()?;
    let f = py.detach(|| on_pool(threads, || sim::sequence_consistency(emb, off, dim)))?.map_err(PyValueError::new_err)?;
    Ok(f.into_pyarray(py))
}

/// Text coherence per document: (mean consecutive cosine, minimum, margin over shuffles);
/// `keys` (one per document) seed each document's shuffles instead of its position.
#[pyfunction]
#[pyo3(signature = (embeddings, offsets, shuffles=8, seed=0, threads=None, keys=None))]
#[allow(clippy::type_complexity)]
pub fn text_coherence<'py>(
    py: Python<'py>,
    embeddings: PyReadonlyArray2<'py, f32>,
    offsets: PyReadonlyArray1<'py, i64>,
    shuffles: usize,
    seed: u64,
    threads: Option<usize>,
    keys: Option<PyReadonlyArray1<'py, u64>>,
) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)> {
    let (emb, dim) = matrix(&embeddings, "embeddings")?;
    let off = offsets.as_slice()?;
    let keys = keys.as_ref().map(|k| k.as_slice()).transpose()?;
    let r = py.detach(|| on_pool(threads, || sim::coherence(emb, off, dim, shuffles, seed, keys)))?.map_err(PyValueError::new_err)?;
    let col = |k: usize| r.iter().map(|v| v[k]).collect::<Vec<f64>>().into_pyarray(py);
    Ok((col(0), col(1), col(2)))
}

/// The column of each row in a minimum (or maximum) cost assignment, -1 for rows left out.
#[pyfunction]
#[pyo3(signature = (cost, maximize=false))]
pub fn linear_assignment<'py>(py: Python<'py>, cost: PyReadonlyArray2<'py, f64>, maximize: bool) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (rows, cols) = (cost.shape()[0], cost.shape()[1]);
    let c = c_order(&cost, "cost", "float64")?;
    let a = py.detach(|| sim::linear_assignment(c, rows, cols, maximize)).map_err(PyValueError::new_err)?;
    Ok(a.into_iter().map(|j| j.map_or(-1, |j| j as i64)).collect::<Vec<_>>().into_pyarray(py))
}

/// For each query row, the k most similar key rows (indices, -1 padded) and their cosines.
#[pyfunction]
#[pyo3(signature = (queries, keys, k, threads=None))]
#[allow(clippy::type_complexity)]
pub fn top_k<'py>(
    py: Python<'py>,
    queries: PyReadonlyArray2<'py, f32>,
    keys: PyReadonlyArray2<'py, f32>,
    k: usize,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>)> {
    if k > 1 << 24 {
        return Err(PyValueError::new_err(format!("k must be at most 2^24, got {k}")));
    }
    let (q, kk, dim) = matrix_pair(&queries, "queries", &keys, "keys")?;
    let nq = queries.shape()[0];
    let (idx, val) = py.detach(|| on_pool(threads, || sim::top_k(q, kk, dim, k)))?.map_err(PyValueError::new_err)?;
    let shape = [nq, k];
    let idx = numpy::ndarray::Array2::from_shape_vec(shape, idx).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let val = numpy::ndarray::Array2::from_shape_vec(shape, val).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((idx.into_pyarray(py), val.into_pyarray(py)))
}
