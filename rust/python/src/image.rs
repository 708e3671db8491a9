//! Image bindings: one entry point (`analyze_images`) over `interleaf_core::image::analyze`,
//! and the RGB decode used by parity tests. Type conversion and GIL release only.

use interleaf_core::hash::perceptual::{bits_to_hex, bits_to_u64, PerceptualKind};
use interleaf_core::image::analyze::{analyze, Analysis, Wants};
use interleaf_core::image::decode::{Alpha, DecodeLimits, DecodeOptions};
use interleaf_core::image::preprocess::{ConvertOrder, CropRounding, PixelFloat, PreprocessConfig, Rescale, ResizeMode, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use interleaf_core::image::{decode_rgb, Filter, ImageStats};
use numpy::{PyArray4, PyArrayMethods, PyUntypedArrayMethods};
use polars::prelude::*;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3_polars::{PyDataFrame, PySeries};

use crate::columns::binary_values;
use crate::dedup::on_pool;
use crate::frame::error_series;

fn polars_err(e: PolarsError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Decode limits from the optional overrides (core's one builder; defaults: Pillow's pixel
/// limit, 256 MiB).
pub fn limits(max_pixels: Option<u64>, max_bytes: Option<u64>) -> PyResult<DecodeLimits> {
    DecodeLimits::new(max_pixels, max_bytes).map_err(PyValueError::new_err)
}

fn alpha(a: &str) -> PyResult<Alpha> {
    match a {
        "drop" => Ok(Alpha::Drop),
        "white" => Ok(Alpha::White),
        other => Err(PyValueError::new_err(format!("alpha must be 'drop' or 'white', not {other:?}"))),
    }
}

/// How images become model input (see `interleaf.image.PreprocessConfig`): the core
/// configuration, checked once by `interleaf_core` when made.
#[pyclass(name = "PreprocessConfig", module = "interleaf._native", subclass, frozen, eq, skip_from_py_object)]
#[derive(Clone, PartialEq)]
pub struct PyPreprocessConfig {
    pub inner: PreprocessConfig,
}

#[pymethods]
impl PyPreprocessConfig {
    #[new]
    #[pyo3(signature = (*, mode="shortest", shortest_edge=224, size=(224, 224), crop=Some((224, 224)), crop_rounding="half_even", resample=3, rescale="divide255", rescale_factor=1.0 / 255.0, mean=Some(OPENAI_CLIP_MEAN), std=Some(OPENAI_CLIP_STD), fill=0, convert_rgb="after_resize"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
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
        convert_rgb: &str,
    ) -> PyResult<Self> {
        let err = PyValueError::new_err;
        let filter = Filter::from_pillow(resample)
            .ok_or_else(|| err(format!("resample {resample} is not supported: use 1 (LANCZOS), 2 (BILINEAR), 3 (BICUBIC), 4 (BOX) or 5 (HAMMING)")))?;
        let normalize = match (mean, std) {
            (Some(m), Some(s)) => Some((m, s)),
            (None, None) => None,
            _ => return Err(err("mean and std go together".to_string())),
        };
        let inner = PreprocessConfig {
            mode: ResizeMode::parse(mode).map_err(err)?,
            shortest_edge,
            size,
            crop,
            crop_rounding: CropRounding::parse(crop_rounding).map_err(err)?,
            filter,
            rescale: Rescale::parse(rescale, rescale_factor).map_err(err)?,
            normalize,
            fill,
            convert_rgb: ConvertOrder::parse(convert_rgb).map_err(err)?,
            jpeg_draft: false,
            decode: DecodeOptions::default(),
        };
        inner.validate().map_err(err)?;
        Ok(PyPreprocessConfig { inner })
    }

    /// ``"shortest"``, ``"squash"`` or ``"longest"``.
    #[getter]
    fn mode(&self) -> &'static str {
        self.inner.mode.as_str()
    }
    #[getter]
    fn shortest_edge(&self) -> usize {
        self.inner.shortest_edge
    }
    /// (height, width).
    #[getter]
    fn size(&self) -> (usize, usize) {
        self.inner.size
    }
    /// (height, width) of the center crop, or None.
    #[getter]
    fn crop(&self) -> Option<(usize, usize)> {
        self.inner.crop
    }
    #[getter]
    fn crop_rounding(&self) -> &'static str {
        self.inner.crop_rounding.as_str()
    }
    /// Pillow's filter code.
    #[getter]
    fn resample(&self) -> i64 {
        self.inner.filter.pillow_code()
    }
    #[getter]
    fn rescale(&self) -> &'static str {
        self.inner.rescale.as_str()
    }
    #[getter]
    fn rescale_factor(&self) -> f64 {
        match self.inner.rescale {
            Rescale::Multiply(f) => f,
            _ => 1.0 / 255.0,
        }
    }
    #[getter]
    fn mean(&self) -> Option<(f32, f32, f32)> {
        self.inner.normalize.map(|(m, _)| (m[0], m[1], m[2]))
    }
    #[getter]
    fn std(&self) -> Option<(f32, f32, f32)> {
        self.inner.normalize.map(|(_, s)| (s[0], s[1], s[2]))
    }
    #[getter]
    fn fill(&self) -> u8 {
        self.inner.fill
    }
    /// ``"before_resize"`` (transformers) or ``"after_resize"`` (open_clip).
    #[getter]
    fn convert_rgb(&self) -> &'static str {
        self.inner.convert_rgb.as_str()
    }
    /// (height, width) of every preprocessed image.
    #[getter]
    fn output_shape(&self) -> PyResult<(usize, usize)> {
        self.inner.output_shape().map_err(PyValueError::new_err)
    }

    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "PreprocessConfig(mode={:?}, shortest_edge={}, size={:?}, crop={:?}, crop_rounding={:?}, resample={}, rescale={:?}, rescale_factor={}, mean={:?}, std={:?}, fill={}, convert_rgb={:?})",
            c.mode.as_str(),
            c.shortest_edge,
            c.size,
            c.crop,
            c.crop_rounding.as_str(),
            c.filter.pillow_code(),
            c.rescale.as_str(),
            self.rescale_factor(),
            self.mean(),
            self.std(),
            c.fill,
            c.convert_rgb.as_str()
        )
    }
}

fn hash_kinds(hashes: &[String], hash_size: usize) -> PyResult<Vec<(PerceptualKind, usize)>> {
    hashes
        .iter()
        .map(|k| {
            PerceptualKind::parse(k).map(|kind| (kind, hash_size)).ok_or_else(|| PyValueError::new_err(format!("hashes are ahash, dhash or phash, not {k:?}")))
        })
        .collect()
}

fn run<T: PixelFloat + numpy::Element>(
    py: Python<'_>,
    images: &[Option<&[u8]>],
    wants: &Wants,
    out: Option<&Bound<'_, PyArray4<T>>>,
    threads: Option<usize>,
) -> PyResult<Vec<Analysis>> {
    let Some(out) = out else {
        return py.detach(|| on_pool(threads, || analyze::<T>(images, wants, &mut [])))?.map_err(PyValueError::new_err);
    };
    let cfg = wants.pixels.expect("pixels asked");
    let (h, w) = cfg.output_shape().map_err(PyValueError::new_err)?;
    if out.shape() != [images.len(), 3, h, w] {
        return Err(PyValueError::new_err(format!("out has shape {:?}, expected {:?}", out.shape(), [images.len(), 3, h, w])));
    }
    // A Fortran-ordered array is contiguous too, but its elements are not in row-major order.
    if !out.is_c_contiguous() {
        return Err(PyValueError::new_err("out must be C-contiguous (row-major; np.ascontiguousarray)"));
    }
    let mut guard = out.try_readwrite().map_err(|e| PyValueError::new_err(format!("out is not writable: {e}")))?;
    let slice = guard.as_slice_mut().map_err(|_| PyValueError::new_err("out must be C-contiguous"))?;
    py.detach(|| on_pool(threads, || analyze(images, wants, slice)))?.map_err(PyValueError::new_err)
}

/// The stats struct fields (see `interleaf.image.stats`), for rows with stats (`None`: a null input).
pub fn stats_columns(rows: &[Option<&ImageStats>]) -> Vec<Series> {
    let stat = |f: fn(&ImageStats) -> Option<f64>| -> Float64Chunked { rows.iter().map(|r| r.and_then(f)).collect() };
    let u32col = |f: fn(&ImageStats) -> Option<u32>| -> UInt32Chunked { rows.iter().map(|r| r.and_then(f)).collect() };
    let strcol = |f: fn(&ImageStats) -> Option<&'static str>| -> StringChunked { rows.iter().map(|r| r.and_then(f)).collect() };
    vec![
        u32col(|s| s.width).with_name("width".into()).into_series(),
        u32col(|s| s.height).with_name("height".into()).into_series(),
        stat(|s| Some(s.width? as f64 / s.height? as f64)).with_name("aspect_ratio".into()).into_series(),
        strcol(|s| s.format).with_name("format".into()).into_series(),
        strcol(|s| s.mode).with_name("mode".into()).into_series(),
        u32col(|s| s.frames).with_name("frames".into()).into_series(),
        rows.iter().map(|r| r.map(|s| s.bytes)).collect::<UInt64Chunked>().with_name("bytes".into()).into_series(),
        stat(|s| s.blur).with_name("blur".into()).into_series(),
        stat(|s| s.entropy).with_name("entropy".into()).into_series(),
        stat(|s| s.brightness).with_name("brightness".into()).into_series(),
        stat(|s| s.contrast).with_name("contrast".into()).into_series(),
        stat(|s| s.uniform_fraction).with_name("uniform_fraction".into()).into_series(),
    ]
}

/// Hash columns of `name`: `name` (UInt64, the first 64 bits) and `{name}_hex` (imagehash's
/// string).
pub fn hash_columns(all: &[Analysis], j: usize, name: &str) -> [Series; 2] {
    let bits = || all.iter().map(|a| a.hashes[j].as_ref());
    let ints: UInt64Chunked = bits().map(|b| b.map(|b| bits_to_u64(b))).collect();
    let hex: StringChunked = bits().map(|b| b.map(|b| bits_to_hex(b))).collect();
    [ints.with_name(name.into()).into_series(), hex.with_name(format!("{name}_hex").into()).into_series()]
}

/// The table of an analysis: the stats fields when asked, two columns per hash, `error`.
pub fn analysis_table(all: &[Analysis], stats: bool, hashes: &[String]) -> PolarsResult<DataFrame> {
    let mut cols: Vec<Series> = Vec::new();
    if stats {
        cols.extend(stats_columns(&all.iter().map(|a| a.stats.as_ref()).collect::<Vec<_>>()));
    }
    for (j, name) in hashes.iter().enumerate() {
        cols.extend(hash_columns(all, j, name));
    }
    cols.push(error_series("error", all.iter().map(|a| a.error.as_ref()))?);
    DataFrame::new(all.len(), cols.into_iter().map(Into::into).collect())
}

/// Decodes each image once and returns the table of what was asked (see
/// `interleaf.image.analyze`); CLIP pixels go to `out` when `config` is given.
#[pyfunction]
#[pyo3(signature = (images, *, out=None, config=None, stats=false, hashes=vec![], hash_size=8, hash_draft=None, alpha="drop", exif_transpose=false, jpeg_draft=false, max_pixels=None, max_bytes=None, threads=None, header_only=false))]
#[allow(clippy::too_many_arguments)]
pub fn analyze_images(
    py: Python<'_>,
    images: PySeries,
    out: Option<&Bound<'_, PyAny>>,
    config: Option<PyRef<'_, PyPreprocessConfig>>,
    stats: bool,
    hashes: Vec<String>,
    hash_size: usize,
    hash_draft: Option<usize>,
    alpha: &str,
    exif_transpose: bool,
    jpeg_draft: bool,
    max_pixels: Option<u64>,
    max_bytes: Option<u64>,
    threads: Option<usize>,
    header_only: bool,
) -> PyResult<PyDataFrame> {
    let values = binary_values(&images.0, "images")?;
    let limits = limits(max_pixels, max_bytes)?;
    let decode = DecodeOptions { limits, alpha: self::alpha(alpha)?, exif_transpose };
    let cfg = config.map(|c| PreprocessConfig { jpeg_draft, decode, ..c.inner.clone() });
    if hash_draft == Some(0) {
        return Err(PyValueError::new_err("draft must be a size in pixels >= 1, or None"));
    }
    let wants = Wants { pixels: cfg.as_ref(), stats, header_only, hashes: hash_kinds(&hashes, hash_size)?, hash_draft, limits };
    let all = match (out, &cfg) {
        (None, None) => run::<f32>(py, &values, &wants, None, threads)?,
        (Some(o), Some(_)) => {
            if let Ok(a) = o.cast::<PyArray4<f32>>() {
                run(py, &values, &wants, Some(a), threads)?
            } else if let Ok(a) = o.cast::<PyArray4<half::f16>>() {
                run(py, &values, &wants, Some(a), threads)?
            } else {
                return Err(PyTypeError::new_err("out must be a 4-d float32 or float16 numpy array"));
            }
        }
        _ => return Err(PyValueError::new_err("config and out go together")),
    };
    Ok(PyDataFrame(analysis_table(&all, stats, &hashes).map_err(polars_err)?))
}

/// Decodes one image to RGB as Pillow's `convert("RGB")`: (width, height, pixels).
#[pyfunction]
#[pyo3(name = "_decode_rgb", signature = (data, alpha="drop", exif_transpose=false, max_pixels=None))]
pub fn decode_rgb_py(py: Python<'_>, data: PyBackedBytes, alpha: &str, exif_transpose: bool, max_pixels: Option<u64>) -> PyResult<(usize, usize, Vec<u8>)> {
    let opts = DecodeOptions { limits: limits(max_pixels, None)?, alpha: self::alpha(alpha)?, exif_transpose };
    py.detach(|| decode_rgb(&data, &opts)).map(|i| (i.width, i.height, i.px)).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Small JPEG previews: each image decoded, scaled to fit in `max_side` pixels and encoded at
/// `quality`; a table of `thumbnail` (Binary, null where it failed) and `error`.
#[pyfunction]
#[pyo3(signature = (images, max_side=128, quality=80, max_pixels=None, max_bytes=None, threads=None))]
pub fn thumbnails(
    py: Python<'_>,
    images: PySeries,
    max_side: usize,
    quality: u8,
    max_pixels: Option<u64>,
    max_bytes: Option<u64>,
    threads: Option<usize>,
) -> PyResult<PyDataFrame> {
    use interleaf_core::error::{ErrorKind, RecordError};
    use interleaf_core::image::thumbnail::thumbnail;
    use rayon::prelude::*;
    if !(1..=4096).contains(&max_side) {
        return Err(PyValueError::new_err(format!("max_side must be in [1, 4096], got {max_side}")));
    }
    let values = binary_values(&images.0, "images")?;
    let opts = DecodeOptions { limits: limits(max_pixels, max_bytes)?, ..Default::default() };
    let out: Vec<Result<Vec<u8>, RecordError>> = py.detach(|| {
        on_pool(threads, || {
            values
                .par_iter()
                .map(|v| match v {
                    Some(b) => thumbnail(b, max_side, quality, &opts),
                    None => Err(RecordError::new(ErrorKind::MissingImage, "no image bytes")),
                })
                .collect()
        })
    })?;
    let thumbs = BinaryChunked::from_iter_options("thumbnail".into(), out.iter().map(|r| r.as_ref().ok().map(|b| b.as_slice())));
    let errors = error_series("error", out.iter().map(|r| r.as_ref().err())).map_err(polars_err)?;
    Ok(PyDataFrame(DataFrame::new(out.len(), vec![thumbs.into_series().into(), errors.into()]).map_err(polars_err)?))
}

/// SSIM and PSNR of image pairs as CoMM's evaluation computes them
/// (`interleaf_core::image::compare`): each image of `images` decoded and resized to `size` x
/// `size` once, then each pair (`a[i]`, `b[i]`) of indices into `images` scored. Returns the
/// pairs' table (`ssim`, `psnr`: Float64, null where either image failed) and each image's
/// error.
#[pyfunction]
#[pyo3(signature = (images, a, b, size, max_pixels=None, max_bytes=None, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn image_compare(
    py: Python<'_>,
    images: PySeries,
    a: Vec<i64>,
    b: Vec<i64>,
    size: usize,
    max_pixels: Option<u64>,
    max_bytes: Option<u64>,
    threads: Option<usize>,
) -> PyResult<(PyDataFrame, PySeries)> {
    use interleaf_core::error::{ErrorKind, RecordError};
    use interleaf_core::image::compare::{load_square, psnr, ssim};
    use rayon::prelude::*;
    if !(7..=4096).contains(&size) {
        return Err(PyValueError::new_err(format!("size must be in [7, 4096] (SSIM's window is 7), got {size}")));
    }
    if a.len() != b.len() {
        return Err(PyValueError::new_err(format!("a and b differ in length ({} vs {})", a.len(), b.len())));
    }
    let values = binary_values(&images.0, "images")?;
    let n = values.len() as i64;
    if let Some(bad) = a.iter().chain(&b).find(|&&i| i < 0 || i >= n) {
        return Err(PyValueError::new_err(format!("pair index {bad} is outside the {n} images")));
    }
    let opts = DecodeOptions { limits: limits(max_pixels, max_bytes)?, ..Default::default() };
    type Loaded = Vec<Result<Vec<u8>, RecordError>>;
    let (loaded, scores): (Loaded, Vec<Option<(f64, f64)>>) = py.detach(|| {
        on_pool(threads, || {
            let loaded: Loaded = values
                .par_iter()
                .map(|v| match v {
                    Some(d) => load_square(d, size, &opts),
                    None => Err(RecordError::new(ErrorKind::MissingImage, "no image bytes")),
                })
                .collect();
            let scores = a
                .par_iter()
                .zip(b.par_iter())
                .map(|(&i, &j)| match (&loaded[i as usize], &loaded[j as usize]) {
                    (Ok(x), Ok(y)) => ssim(x, y, size, size, 3).map(|s| (s, psnr(x, y))),
                    _ => None,
                })
                .collect();
            (loaded, scores)
        })
    })?;
    let ssim_col = Float64Chunked::from_iter_options("ssim".into(), scores.iter().map(|s| s.map(|v| v.0)));
    let psnr_col = Float64Chunked::from_iter_options("psnr".into(), scores.iter().map(|s| s.map(|v| v.1)));
    let pairs = DataFrame::new(scores.len(), vec![ssim_col.into_series().into(), psnr_col.into_series().into()]).map_err(polars_err)?;
    let errors = error_series("error", loaded.iter().map(|r| r.as_ref().err())).map_err(polars_err)?;
    Ok((PyDataFrame(pairs), PySeries(errors)))
}
