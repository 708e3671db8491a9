//! polars plugin expressions (registered by `interleaf.polars`).

use polars::prelude::*;
use pyo3_polars::derive::{polars_expr, CallerContext};

use interleaf_core::hash::perceptual::PerceptualKind;
use interleaf_core::image::analyze::{analyze, Analysis, Wants};

use crate::frame::{error_dtype, error_series};
use crate::image::{analysis_table, hash_columns};

// Output types come from functions (`output_type_func`), never `output_type=`: the derive's
// field function for the latter does not catch a panic, and reading an input field of a dtype
// this build of polars lacks (Categorical, Decimal, ...) panics, which would abort the process.
/// `s`, or, for a column of nulls only (dtype Null: a column of Nones, a frame built without a
/// schema), the same nulls as `dtype`: the expression gives nulls, as the Python API does.
fn typed(s: &Series, dtype: DataType) -> PolarsResult<Series> {
    if s.dtype() == &DataType::Null {
        s.cast(&dtype)
    } else {
        Ok(s.clone())
    }
}

fn u64_field(input_fields: &[Field]) -> PolarsResult<Field> {
    Ok(Field::new(input_fields[0].name().clone(), DataType::UInt64))
}

fn u32_field(input_fields: &[Field]) -> PolarsResult<Field> {
    Ok(Field::new(input_fields[0].name().clone(), DataType::UInt32))
}

/// xxh3-64 (seed 0) of each string's UTF-8 bytes or each binary value; null stays null.
#[polars_expr(output_type_func=u64_field)]
fn xxh3_64(inputs: &[Series]) -> PolarsResult<Series> {
    let s = &typed(&inputs[0], DataType::String)?;
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
fn minhash(inputs: &[Series], context: CallerContext, kwargs: MinHashKwargs) -> PolarsResult<Series> {
    use interleaf_core::hash::minhash::{signatures, MinHashParams, Scheme};
    use interleaf_core::text::shingle::Unit;
    let s = &typed(&inputs[0], DataType::String)?;
    let ca = s.str()?;
    let unit = Unit::parse(&kwargs.unit).ok_or_else(|| polars_err!(InvalidOperation: "unit must be word or char"))?;
    let scheme = Scheme::parse(&kwargs.scheme).ok_or_else(|| polars_err!(InvalidOperation: "unknown MinHash scheme"))?;
    let params = MinHashParams { n: kwargs.n.max(1), unit, scheme, a: kwargs.a, b: kwargs.b, seed: kwargs.seed };
    let k = params.num_perm();
    let texts: Vec<&str> = ca.iter().map(|t| t.unwrap_or("")).collect();
    let flat = honouring(&context, || signatures(&texts, &params))?;
    let mut builder = ListPrimitiveChunkedBuilder::<UInt32Type>::new(s.name().clone(), ca.len(), ca.len() * k, DataType::UInt32);
    for (i, t) in ca.iter().enumerate() {
        match t {
            Some(_) => builder.append_slice(&flat[i * k..(i + 1) * k]),
            None => builder.append_null(),
        }
    }
    Ok(builder.finish().into_series())
}

/// A hash column as UInt64: the column itself, or the `hash` field of a `{hash, error}` struct
/// (what `interleaf.polars.phash` gives).
fn hash_u64(s: &Series) -> PolarsResult<UInt64Chunked> {
    let s = &typed(s, DataType::UInt64)?;
    match s.dtype() {
        DataType::Struct(_) => Ok(s.struct_()?.field_by_name("hash")?.u64()?.clone()),
        _ => Ok(s.u64()?.clone()),
    }
}

/// Hamming distance between two UInt64 hash columns (popcount of the xor); null if either is
/// null.
#[polars_expr(output_type_func=u32_field)]
fn hamming(inputs: &[Series]) -> PolarsResult<Series> {
    let (a, b) = (hash_u64(&inputs[0])?, hash_u64(&inputs[1])?);
    polars_ensure!(a.len() == b.len() || a.len() == 1 || b.len() == 1, ShapeMismatch: "hamming: columns differ in length");
    // A length-1 side (a literal) broadcasts to the other's length, an empty one included.
    let n = if a.len() == 1 { b.len() } else { a.len() };
    let get = |c: &UInt64Chunked, i: usize| if c.len() == 1 { c.get(0) } else { c.get(i) };
    let out: UInt32Chunked = (0..n)
        .map(|i| match (get(&a, i), get(&b, i)) {
            (Some(x), Some(y)) => Some((x ^ y).count_ones()),
            _ => None,
        })
        .collect();
    Ok(out.with_name(inputs[0].name().clone()).into_series())
}

#[derive(serde::Deserialize)]
struct PerceptualKwargs {
    kind: String,
    #[serde(default)]
    draft: Option<usize>,
    #[serde(default)]
    max_pixels: Option<u64>,
}

fn perceptual_field(input_fields: &[Field]) -> PolarsResult<Field> {
    let dtype = DataType::Struct(vec![Field::new("hash".into(), DataType::UInt64), Field::new("error".into(), error_dtype())]);
    Ok(Field::new(input_fields[0].name().clone(), dtype))
}

/// Runs `f` on interleaf's pool, or on one thread when polars already runs this expression in
/// parallel (a group-by, a streaming engine), so the two pools never oversubscribe the CPUs.
fn honouring<T: Send>(context: &CallerContext, f: impl FnOnce() -> T + Send) -> PolarsResult<T> {
    let threads = if context.parallel() { Some(1) } else { None };
    interleaf_core::threads::install(threads, f).map_err(|m| polars_err!(ComputeError: "{}", m))
}

/// One decode pass over a Binary column (see `interleaf_core::image::analyze`).
fn analyze_column(s: &Series, wants: &Wants, context: &CallerContext) -> PolarsResult<Vec<Analysis>> {
    let values: Vec<Option<&[u8]>> = s.binary()?.iter().collect();
    honouring(context, || analyze::<f32>(&values, wants, &mut []))?.map_err(|m| polars_err!(InvalidOperation: "{}", m))
}

fn expr_limits(max_pixels: Option<u64>, max_bytes: Option<u64>) -> PolarsResult<interleaf_core::image::DecodeLimits> {
    interleaf_core::image::DecodeLimits::new(max_pixels, max_bytes).map_err(|m| polars_err!(InvalidOperation: "{}", m))
}

/// 64-bit perceptual hash (hash_size 8, imagehash's bits as a big-endian number) of each
/// encoded image, as a struct `{hash, error}`: a null or undecodable image has a null hash and
/// its error.
#[polars_expr(output_type_func=perceptual_field)]
fn perceptual_hash(inputs: &[Series], context: CallerContext, kwargs: PerceptualKwargs) -> PolarsResult<Series> {
    let s = &typed(&inputs[0], DataType::Binary)?;
    let kind = PerceptualKind::parse(&kwargs.kind).ok_or_else(|| polars_err!(InvalidOperation: "kind must be ahash, dhash or phash"))?;
    polars_ensure!(kwargs.draft != Some(0), InvalidOperation: "draft must be a size in pixels >= 1, or None");
    let wants = Wants { hashes: vec![(kind, 8)], hash_draft: kwargs.draft, limits: expr_limits(kwargs.max_pixels, None)?, ..Default::default() };
    let all = analyze_column(s, &wants, &context)?;
    let [hash, _] = hash_columns(&all, 0, "hash");
    let error = error_series("error", all.iter().map(|a| a.error.as_ref()))?;
    Ok(StructChunked::from_series(s.name().clone(), all.len(), [hash, error].iter())?.into_series())
}

#[derive(serde::Deserialize)]
struct ImageStatsKwargs {
    max_pixels: Option<u64>,
    max_bytes: Option<u64>,
}

/// The fields of an image-statistics struct, in order (see `interleaf.image.stats`).
fn image_stats_dtype() -> DataType {
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

fn image_stats_field(input_fields: &[Field]) -> PolarsResult<Field> {
    Ok(Field::new(input_fields[0].name().clone(), image_stats_dtype()))
}

/// Image statistics of each encoded image in a Binary column, as a struct (see
/// `interleaf.polars.image_stats`).
#[polars_expr(output_type_func=image_stats_field)]
fn image_stats(inputs: &[Series], context: CallerContext, kwargs: ImageStatsKwargs) -> PolarsResult<Series> {
    let s = &typed(&inputs[0], DataType::Binary)?;
    let wants = Wants { stats: true, limits: expr_limits(kwargs.max_pixels, kwargs.max_bytes)?, ..Default::default() };
    let all = analyze_column(s, &wants, &context)?;
    let table = analysis_table(&all, true, &[])?;
    Ok(table.into_struct(s.name().clone()).into_series())
}

#[derive(serde::Deserialize)]
struct TextStatsKwargs {
    char_ngram: usize,
    word_ngram: usize,
    punctuation_min_tokens: usize,
}

fn text_stats_field(input_fields: &[Field]) -> PolarsResult<Field> {
    let f = |n: &str, dt: DataType| Field::new(n.into(), dt);
    let mut fields = vec![f("n_words", DataType::UInt64), f("n_chars", DataType::UInt64)];
    for n in ["char_repetition", "word_repetition", "special_char_ratio", "stopword_ratio", "flagged_word_ratio", "punctuation_ratio"] {
        fields.push(f(n, DataType::Float64));
    }
    Ok(Field::new(input_fields[0].name().clone(), DataType::Struct(fields)))
}

/// OBELICS's statistics of each text in a String column, as a struct (see
/// `interleaf.polars.text_stats`).
#[polars_expr(output_type_func=text_stats_field)]
fn text_stats(inputs: &[Series], context: CallerContext, kwargs: TextStatsKwargs) -> PolarsResult<Series> {
    use interleaf_core::text::obelics::{text_stats, StatsParams};
    use rayon::prelude::*;
    let s = &typed(&inputs[0], DataType::String)?;
    let ca = s.str()?;
    let values: Vec<Option<&str>> = ca.iter().collect();
    let p = StatsParams { char_ngram: kwargs.char_ngram, word_ngram: kwargs.word_ngram, punctuation_min_tokens: kwargs.punctuation_min_tokens };
    let stats = honouring(&context, || values.par_iter().map(|t| t.map(|t| text_stats(t, &p))).collect::<Vec<_>>())?;
    let df = DataFrame::new(stats.len(), crate::signals::text_stats_columns(&stats))?;
    Ok(df.into_struct(s.name().clone()).into_series())
}

fn float_field(input_fields: &[Field]) -> PolarsResult<Field> {
    Ok(Field::new(input_fields[0].name().clone(), DataType::Float64))
}

/// The rows of a List(Float64) column: values (NaN for a null inside a list) and offsets; a
/// null list is an empty range flagged in `valid`.
fn list_rows(s: &Series) -> PolarsResult<(Vec<f64>, Vec<usize>, Vec<bool>)> {
    let s = &typed(s, DataType::List(Box::new(DataType::Float64)))?;
    let ca = s.list()?;
    let (mut values, mut offsets, mut valid) = (Vec::new(), vec![0usize], Vec::with_capacity(ca.len()));
    for row in ca.amortized_iter() {
        match row {
            Some(r) => {
                values.extend(r.as_ref().f64()?.iter().map(|v| v.unwrap_or(f64::NAN)));
                valid.push(true);
            }
            None => valid.push(false),
        }
        offsets.push(values.len());
    }
    Ok((values, offsets, valid))
}

/// Cosine of each pair of rows of two List(Float64) columns (one may have a single row, used
/// for every row of the other); null where either is null, empty, of zero norm or holds NaN.
#[polars_expr(output_type_func=float_field)]
fn cosine(inputs: &[Series]) -> PolarsResult<Series> {
    let (a, b) = (list_rows(&inputs[0])?, list_rows(&inputs[1])?);
    let (na, nb) = (a.2.len(), b.2.len());
    polars_ensure!(na == nb || na == 1 || nb == 1, ShapeMismatch: "cosine: columns differ in length ({} vs {})", na, nb);
    // A length-1 side (a literal) broadcasts to the other's length, an empty one included.
    let n = if na == 1 { nb } else { na };
    fn row(r: &(Vec<f64>, Vec<usize>, Vec<bool>), i: usize) -> Option<&[f64]> {
        let i = if r.2.len() == 1 { 0 } else { i };
        r.2[i].then(|| &r.0[r.1[i]..r.1[i + 1]])
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let v = match (row(&a, i), row(&b, i)) {
            (Some(x), Some(y)) => {
                polars_ensure!(x.len() == y.len(), ShapeMismatch: "cosine: row {} has vectors of {} and {} values", i, x.len(), y.len());
                // Each vector is scaled by its largest magnitude first, so norms past f64's
                // range (either way) still give their cosine.
                let top = |v: &[f64]| v.iter().fold(0.0f64, |m, p| m.max(p.abs()));
                let (sx, sy) = (top(x), top(y));
                let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
                for (p, q) in x.iter().zip(y) {
                    let (p, q) = (p / sx, q / sy);
                    xy += p * q;
                    xx += p * p;
                    yy += q * q;
                }
                let c = xy / (xx.sqrt() * yy.sqrt());
                c.is_finite().then_some(c)
            }
            _ => None,
        };
        out.push(v);
    }
    Ok(Float64Chunked::from_iter_options(inputs[0].name().clone(), out.into_iter()).into_series())
}
