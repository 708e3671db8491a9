//! Arrow columns in: the values of a polars Series as borrowed slices, without copies.

use polars::prelude::*;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// The values of a Binary Series (null stays `None`).
pub fn binary_values<'a>(s: &'a Series, what: &str) -> PyResult<Vec<Option<&'a [u8]>>> {
    match s.dtype() {
        DataType::Binary => Ok(s.binary().expect("binary").iter().collect()),
        dt => Err(PyTypeError::new_err(format!("{what} must be a Binary column (encoded bytes), not {dt}"))),
    }
}

/// The values of a String Series (null stays `None`).
pub fn str_values<'a>(s: &'a Series, what: &str) -> PyResult<Vec<Option<&'a str>>> {
    match s.dtype() {
        DataType::String => Ok(s.str().expect("string").iter().collect()),
        dt => Err(PyTypeError::new_err(format!("{what} must be a String column, not {dt}"))),
    }
}

/// The bytes of a String or Binary Series (a string as its UTF-8 bytes).
pub fn byte_values<'a>(s: &'a Series, what: &str) -> PyResult<Vec<Option<&'a [u8]>>> {
    match s.dtype() {
        DataType::String => Ok(s.str().expect("string").iter().map(|v| v.map(str::as_bytes)).collect()),
        _ => binary_values(s, what),
    }
}
