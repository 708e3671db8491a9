//! polars plugin expressions (registered by `interleaf.polars`).

use polars::prelude::*;
use pyo3_polars::derive::polars_expr;

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
