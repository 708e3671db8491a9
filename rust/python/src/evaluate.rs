//! Evaluation bindings: caption metrics (`interleaf_core::text::caption`). Type conversion
//! and GIL release only.

use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// BLEU-1..4 (corpus and per hypothesis), ROUGE-L and CIDEr-D per hypothesis of tokenised
/// texts, as pycocoevalcap 1.2 computes them: `(bleu_corpus, bleu (n, 4), rouge_l (n,),
/// cider (n,))`.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn caption_metrics<'py>(
    py: Python<'py>,
    hyps: Vec<String>,
    refs: Vec<Vec<String>>,
) -> PyResult<(Vec<f64>, Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)> {
    use interleaf_core::text::caption::{bleu, cider, rouge_l};
    if hyps.len() != refs.len() {
        return Err(PyValueError::new_err(format!("{} hypotheses but {} reference lists", hyps.len(), refs.len())));
    }
    if let Some(i) = refs.iter().position(|r| r.is_empty()) {
        return Err(PyValueError::new_err(format!("hypothesis {i} has no reference")));
    }
    // On the process-wide thread policy (interleaf.set_threads); each metric is parallel over
    // hypotheses and sums the corpus in order, so values do not depend on the thread count.
    let (b, r, c) = py
        .detach(|| {
            interleaf_core::threads::install(None, || {
                let h: Vec<&str> = hyps.iter().map(String::as_str).collect();
                let rs: Vec<Vec<&str>> = refs.iter().map(|v| v.iter().map(String::as_str).collect()).collect();
                (bleu(&h, &rs), rouge_l(&h, &rs), cider(&h, &rs))
            })
        })
        .map_err(PyValueError::new_err)?;
    let n = b.per.len();
    let flat: Vec<f64> = b.per.iter().flat_map(|x| x.iter().copied()).collect();
    let per = numpy::ndarray::Array2::from_shape_vec((n, 4), flat).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((b.corpus.to_vec(), per.into_pyarray(py), r.into_pyarray(py), c.into_pyarray(py)))
}
