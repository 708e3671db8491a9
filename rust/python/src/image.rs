//! Image bindings: CLIP preprocessing into a caller's NCHW array, image statistics, and the
//! RGB decode used by parity tests. Type conversion and GIL release only; the work is in
//! `interleaf_core::image`.

use interleaf_core::image::decode::{Alpha, DecodeLimits, DecodeOptions};
use interleaf_core::image::preprocess::{preprocess_batch, CropRounding, PreprocessConfig, Rescale, ResizeMode, Sample};
use interleaf_core::image::{decode_rgb, image_stats, Filter};
use interleaf_core::RecordError;
use numpy::{PyArray4, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3_polars::PySeries;

use crate::dedup::on_pool;

type ErrorPair = Option<(String, String)>;

fn pair(e: Option<RecordError>) -> ErrorPair {
    e.map(|e| (e.kind.as_str().to_string(), e.message))
}

fn decode_options(alpha: &str, exif_transpose: bool, max_pixels: Option<u64>, max_bytes: Option<u64>) -> PyResult<DecodeOptions> {
    let mut limits = DecodeLimits::default();
    if let Some(m) = max_pixels {
        limits.max_pixels = m;
    }
    if let Some(m) = max_bytes {
        limits.max_bytes = m;
    }
    let alpha = match alpha {
        "drop" => Alpha::Drop,
        "white" => Alpha::White,
        other => return Err(PyValueError::new_err(format!("alpha must be 'drop' or 'white', not {other:?}"))),
    };
    Ok(DecodeOptions { limits, alpha, exif_transpose })
}

fn fill_batch<T: Sample + numpy::Element>(
    py: Python<'_>,
    images: &[Option<PyBackedBytes>],
    cfg: &PreprocessConfig,
    out: &Bound<'_, PyArray4<T>>,
    threads: Option<usize>,
) -> PyResult<Vec<ErrorPair>> {
    let (h, w) = cfg.output_shape().map_err(PyValueError::new_err)?;
    if out.shape() != [images.len(), 3, h, w] {
        return Err(PyValueError::new_err(format!("out has shape {:?}, expected {:?}", out.shape(), [images.len(), 3, h, w])));
    }
    let mut guard = out.try_readwrite().map_err(|e| PyValueError::new_err(format!("out is not writable: {e}")))?;
    let slice = guard.as_slice_mut().map_err(|_| PyValueError::new_err("out must be C-contiguous"))?;
    let refs: Vec<Option<&[u8]>> = images.iter().map(|b| b.as_ref().map(|b| b.as_ref())).collect();
    let errs = py.detach(|| on_pool(threads, || preprocess_batch(&refs, cfg, slice)))?.map_err(PyValueError::new_err)?;
    Ok(errs.into_iter().map(pair).collect())
}

/// Fills `out` (N, 3, H, W; float32 or float16, C-contiguous) with preprocessed `images`;
/// returns one (kind, message) or None per image. Failed images leave zeros.
#[pyfunction]
#[pyo3(signature = (images, out, *, mode, shortest_edge, size, crop, crop_rounding, resample, rescale, rescale_factor, mean, std, fill, alpha, exif_transpose, max_pixels, max_bytes, threads, jpeg_draft=false))]
#[allow(clippy::too_many_arguments)]
pub fn preprocess_images(
    py: Python<'_>,
    images: Vec<Option<PyBackedBytes>>,
    out: &Bound<'_, PyAny>,
    mode: &str,
    shortest_edge: usize,
    size: (usize, usize),
    crop: Option<(usize, usize)>,
    crop_rounding: &str,
    resample: i64,
    rescale: &str,
    rescale_factor: f64,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    fill: u8,
    alpha: &str,
    exif_transpose: bool,
    max_pixels: Option<u64>,
    max_bytes: Option<u64>,
    threads: Option<usize>,
    jpeg_draft: bool,
) -> PyResult<Vec<ErrorPair>> {
    let mode = match mode {
        "shortest" => ResizeMode::Shortest,
        "squash" => ResizeMode::Squash,
        "longest" => ResizeMode::Longest,
        other => return Err(PyValueError::new_err(format!("mode must be 'shortest', 'squash' or 'longest', not {other:?}"))),
    };
    let crop_rounding = match crop_rounding {
        "floor" => CropRounding::Floor,
        "half_even" => CropRounding::HalfEven,
        other => return Err(PyValueError::new_err(format!("crop_rounding must be 'floor' or 'half_even', not {other:?}"))),
    };
    let filter = Filter::from_pillow(resample).ok_or_else(|| {
        PyValueError::new_err(format!("resample {resample} is not supported: use 1 (LANCZOS), 2 (BILINEAR), 3 (BICUBIC), 4 (BOX) or 5 (HAMMING)"))
    })?;
    let rescale = match rescale {
        "multiply" => Rescale::Multiply(rescale_factor),
        "divide255" => Rescale::Divide255,
        "off" => Rescale::Off,
        other => return Err(PyValueError::new_err(format!("unknown rescale {other:?}"))),
    };
    let normalize = match (mean, std) {
        (Some(m), Some(s)) => {
            if s.iter().any(|&v| v == 0.0) {
                return Err(PyValueError::new_err("image_std must not contain 0"));
            }
            Some((m, s))
        }
        (None, None) => None,
        _ => return Err(PyValueError::new_err("mean and std go together")),
    };
    let cfg = PreprocessConfig {
        mode,
        shortest_edge,
        size,
        crop,
        crop_rounding,
        filter,
        rescale,
        normalize,
        fill,
        jpeg_draft,
        decode: decode_options(alpha, exif_transpose, max_pixels, max_bytes)?,
    };
    if let Ok(a) = out.cast::<PyArray4<f32>>() {
        fill_batch(py, &images, &cfg, a, threads)
    } else if let Ok(a) = out.cast::<PyArray4<half::f16>>() {
        fill_batch(py, &images, &cfg, a, threads)
    } else {
        Err(PyTypeError::new_err("out must be a 4-d float32 or float16 numpy array"))
    }
}

/// Image statistics of `images` as one polars struct Series (the fields of
/// `interleaf.polars.image_stats`).
#[pyfunction]
#[pyo3(signature = (images, *, max_pixels=None, max_bytes=None, threads=None))]
pub fn image_stats_series(py: Python<'_>, images: Vec<Option<PyBackedBytes>>, max_pixels: Option<u64>, max_bytes: Option<u64>, threads: Option<usize>) -> PyResult<PySeries> {
    use rayon::prelude::*;
    let limits = decode_options("drop", false, max_pixels, max_bytes)?.limits;
    let series = py.detach(|| {
        on_pool(threads, || {
            let rows: Vec<_> = images.par_iter().map(|img| img.as_ref().map(|b| image_stats(b.as_ref(), &limits))).collect();
            crate::expressions::image_stats_series("stats".into(), &rows)
        })
    })?;
    series.map(PySeries).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Decodes one image to RGB as Pillow's `convert("RGB")`: (width, height, pixels).
#[pyfunction]
#[pyo3(name = "_decode_rgb", signature = (data, alpha="drop", exif_transpose=false, max_pixels=None))]
pub fn decode_rgb_py(py: Python<'_>, data: PyBackedBytes, alpha: &str, exif_transpose: bool, max_pixels: Option<u64>) -> PyResult<(usize, usize, Vec<u8>)> {
    let opts = decode_options(alpha, exif_transpose, max_pixels, None)?;
    py.detach(|| decode_rgb(&data, &opts)).map(|i| (i.width, i.height, i.px)).map_err(|e| PyValueError::new_err(e.to_string()))
}
