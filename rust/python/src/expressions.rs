//! polars plugin expressions (registered by `interleaf.polars`).

use polars::prelude::*;
use pyo3_polars::derive::polars_expr;

use crate::frame::{error_dtype, error_series};

/// xxh3-64 (seed 0) of each string's UTF-8 bytes or each binary value; null stays null.
#[polars_expr(output_type=UInt64)]
fn xxh3_64(inputs: &[Series]) -> PolarsResult<Series> {
    let s = &inputs[0];
    let out: UInt64Chunked = match s.dtype() {
        DataType::String => s.str()?.iter().map(|v| v.map(|v| interleaf_core::hash::xxh3_64(v.as_bytes()))).collect(),
        DataType::Binary => s.binary()?.iter().map(|v| v.map(interleaf_core::hash::xxh3_64)).collect(),
        dt => polars_bail!(InvalidOperation: "xxh3_64 takes a String or Binary column, not {}", dt),
    };
    Ok(out.with_name(s.name().clone()).into_series())
}

#[derive(serde::Deserialize)]
struct MinHashKwargs {
    n: usize,
    unit: String,
    scheme: String,
    a: Vec<u64>,
    b: Vec<u64>,
    seed: u64,
}

fn minhash_field(input_fields: &[Field]) -> PolarsResult<Field> {
    Ok(Field::new(input_fields[0].name().clone(), DataType::List(Box::new(DataType::UInt32))))
}

/// MinHash signature of each string as a List[UInt32] (see `interleaf.polars.minhash`).
#[polars_expr(output_type_func=minhash_field)]
fn minhash(inputs: &[Series], kwargs: MinHashKwargs) -> PolarsResult<Series> {
    use interleaf_core::hash::minhash::{signatures, MinHashParams, Scheme};
    use interleaf_core::text::shingle::Unit;
    let s = &inputs[0];
    let ca = s.str()?;
    let unit = Unit::parse(&kwargs.unit).ok_or_else(|| polars_err!(InvalidOperation: "unit must be word or char"))?;
    let scheme = Scheme::parse(&kwargs.scheme).ok_or_else(|| polars_err!(InvalidOperation: "unknown MinHash scheme"))?;
    let params = MinHashParams { n: kwargs.n.max(1), unit, scheme, a: kwargs.a, b: kwargs.b, seed: kwargs.seed };
    let k = params.num_perm();
    let texts: Vec<&str> = ca.iter().map(|t| t.unwrap_or("")).collect();
    let flat = signatures(&texts, &params);
    let mut builder = ListPrimitiveChunkedBuilder::<UInt32Type>::new(s.name().clone(), ca.len(), ca.len() * k, DataType::UInt32);
    for (i, t) in ca.iter().enumerate() {
        match t {
            Some(_) => builder.append_slice(&flat[i * k..(i + 1) * k]),
            None => builder.append_null(),
        }
    }
    Ok(builder.finish().into_series())
}

/// Hamming distance between two UInt64 columns (popcount of the xor); null if either is null.
#[polars_expr(output_type=UInt32)]
fn hamming(inputs: &[Series]) -> PolarsResult<Series> {
    let a = inputs[0].u64()?;
    let b = inputs[1].u64()?;
    polars_ensure!(a.len() == b.len() || a.len() == 1 || b.len() == 1, ShapeMismatch: "hamming: columns differ in length");
    let n = a.len().max(b.len());
    let get = |c: &UInt64Chunked, i: usize| if c.len() == 1 { c.get(0) } else { c.get(i) };
    let out: UInt32Chunked = (0..n).map(|i| match (get(a, i), get(b, i)) {
        (Some(x), Some(y)) => Some((x ^ y).count_ones()),
        _ => None,
    }).collect();
    Ok(out.with_name(inputs[0].name().clone()).into_series())
}

#[derive(serde::Deserialize)]
struct PerceptualKwargs {
    kind: String,
    #[serde(default)]
    draft: Option<usize>,
}

/// 64-bit perceptual hash (hash_size 8, imagehash's bits as a big-endian number) of each
/// encoded image; null for null or undecodable images.
#[polars_expr(output_type=UInt64)]
fn perceptual_hash(inputs: &[Series], kwargs: PerceptualKwargs) -> PolarsResult<Series> {
    use interleaf_core::hash::perceptual::{bits_to_u64, hash_image, PerceptualKind};
    use interleaf_core::image::DecodeLimits;
    use rayon::prelude::*;
    let s = &inputs[0];
    let ca = s.binary()?;
    let kind = PerceptualKind::parse(&kwargs.kind).ok_or_else(|| polars_err!(InvalidOperation: "kind must be ahash, dhash or phash"))?;
    polars_ensure!(kwargs.draft != Some(0), InvalidOperation: "draft must be a size in pixels >= 1, or None");
    let limits = DecodeLimits::default();
    let values: Vec<Option<&[u8]>> = ca.iter().collect();
    let out: Vec<Option<u64>> = values.par_iter().map(|v| v.and_then(|b| hash_image(b, kind, 8, &limits, kwargs.draft).ok()).map(|bits| bits_to_u64(&bits))).collect();
    Ok(UInt64Chunked::from_iter_options(s.name().clone(), out.into_iter()).into_series())
}

#[derive(serde::Deserialize)]
struct ImageStatsKwargs {
    max_pixels: Option<u64>,
    max_bytes: Option<u64>,
}

/// The fields of an image-statistics struct, in order (see `interleaf.image.stats`).
pub(crate) fn image_stats_dtype() -> DataType {
    let f = |n: &str, t: DataType| Field::new(n.into(), t);
    DataType::Struct(vec![
        f("width", DataType::UInt32),
        f("height", DataType::UInt32),
        f("aspect_ratio", DataType::Float64),
        f("format", DataType::String),
        f("mode", DataType::String),
        f("frames", DataType::UInt32),
        f("bytes", DataType::UInt64),
        f("blur", DataType::Float64),
        f("entropy", DataType::Float64),
        f("brightness", DataType::Float64),
        f("contrast", DataType::Float64),
        f("uniform_fraction", DataType::Float64),
        f("error", error_dtype()),
    ])
}

/// One struct Series of image statistics for `rows` (None: a null input value).
pub(crate) fn image_stats_series(name: PlSmallStr, rows: &[Option<(interleaf_core::image::ImageStats, Option<interleaf_core::RecordError>)>]) -> PolarsResult<Series> {
    let errors: Vec<Option<interleaf_core::RecordError>> = rows
        .iter()
        .map(|r| match r {
            None => Some(interleaf_core::RecordError::new(interleaf_core::ErrorKind::MissingImage, "no image bytes")),
            Some((_, e)) => e.clone(),
        })
        .collect();
    let stat = |f: fn(&interleaf_core::image::ImageStats) -> Option<f64>| -> Float64Chunked { rows.iter().map(|r| r.as_ref().and_then(|(s, _)| f(s))).collect() };
    let u32col = |f: fn(&interleaf_core::image::ImageStats) -> Option<u32>| -> UInt32Chunked { rows.iter().map(|r| r.as_ref().and_then(|(s, _)| f(s))).collect() };
    let strcol = |f: fn(&interleaf_core::image::ImageStats) -> Option<&'static str>| -> StringChunked { rows.iter().map(|r| r.as_ref().and_then(|(s, _)| f(s))).collect() };
    let fields: Vec<Series> = vec![
        u32col(|s| s.width).with_name("width".into()).into_series(),
        u32col(|s| s.height).with_name("height".into()).into_series(),
        stat(|s| Some(s.width? as f64 / s.height? as f64)).with_name("aspect_ratio".into()).into_series(),
        strcol(|s| s.format).with_name("format".into()).into_series(),
        strcol(|s| s.mode).with_name("mode".into()).into_series(),
        u32col(|s| s.frames).with_name("frames".into()).into_series(),
        rows.iter().map(|r| r.as_ref().map(|(s, _)| s.bytes)).collect::<UInt64Chunked>().with_name("bytes".into()).into_series(),
        stat(|s| s.blur).with_name("blur".into()).into_series(),
        stat(|s| s.entropy).with_name("entropy".into()).into_series(),
        stat(|s| s.brightness).with_name("brightness".into()).into_series(),
        stat(|s| s.contrast).with_name("contrast".into()).into_series(),
        stat(|s| s.uniform_fraction).with_name("uniform_fraction".into()).into_series(),
        error_series("error", errors.iter().map(Option::as_ref))?,
    ];
    Ok(StructChunked::from_series(name, rows.len(), fields.iter())?.into_series())
}

fn image_stats_field(input_fields: &[Field]) -> PolarsResult<Field> {
    Ok(Field::new(input_fields[0].name().clone(), image_stats_dtype()))
}

/// Image statistics of each encoded image in a Binary column, as a struct (see
/// `interleaf.polars.image_stats`).
#[polars_expr(output_type_func=image_stats_field)]
fn image_stats(inputs: &[Series], kwargs: ImageStatsKwargs) -> PolarsResult<Series> {
    use interleaf_core::image::{image_stats, DecodeLimits};
    use rayon::prelude::*;
    let s = &inputs[0];
    let ca = s.binary()?;
    let mut limits = DecodeLimits::default();
    if let Some(m) = kwargs.max_pixels {
        limits.max_pixels = m;
    }
    if let Some(m) = kwargs.max_bytes {
        limits.max_bytes = m;
    }
    let values: Vec<Option<&[u8]>> = ca.iter().collect();
    let rows: Vec<_> = values.par_iter().map(|v| v.map(|b| image_stats(b, &limits))).collect();
    image_stats_series(s.name().clone(), &rows)
}
