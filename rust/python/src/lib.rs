use pyo3::prelude::*;
use pyo3_polars::derive::polars_expr;
use pyo3_polars::PolarsAllocator;
use polars::prelude::*;

#[global_allocator]
static ALLOC: PolarsAllocator = PolarsAllocator::new();

#[polars_expr(output_type=UInt64)]
fn xxh3_64(inputs: &[Series]) -> PolarsResult<Series> {
    let s = &inputs[0];
    let ca = s.str()?;
    let out: UInt64Chunked = ca.apply_nonnull_values_generic(DataType::UInt64, |v: &str| xxhash_rust::xxh3::xxh3_64(v.as_bytes()));
    Ok(out.into_series())
}

#[pyfunction]
fn demo_df() -> PyResult<pyo3_polars::PyDataFrame> {
    let df = df!("a" => [1i64, 2, 3], "b" => ["x", "y", "z"]).map_err(pyo3_polars::error::PyPolarsErr::from)?;
    Ok(pyo3_polars::PyDataFrame(df))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(demo_df, m)?)?;
    Ok(())
}
