//! Node batches to polars DataFrames and back, and the `error` struct column every table
//! carries. Conversion only: which rows are one document is decided in
//! `interleaf_core::doc`.

use interleaf_core::doc::{documents_from_rows, number_documents, Document, NodeBatch, NodeRows};
use interleaf_core::RecordError;
use polars::prelude::*;
use polars_arrow::array::{BinaryViewArray, Utf8ViewArray, View};
use polars_arrow::bitmap::Bitmap;
use polars_arrow::datatypes::ArrowDataType;
use polars_buffer::Buffer;
use std::sync::Arc;

fn opt_str(name: &str, v: Vec<Option<String>>) -> Column {
    StringChunked::from_iter_options(name.into(), v.into_iter()).into_column()
}

/// A String column of per-document values (id, metadata, source) that the rows of one
/// document share: each document's value is one Arrow buffer that all its rows' views point
/// into, so a document with many nodes and large metadata holds that metadata once.
fn shared_str(name: &str, values: &[Option<Arc<str>>]) -> Column {
    let mut views = Vec::with_capacity(values.len());
    let mut buffers: Vec<Buffer<u8>> = Vec::new();
    let mut last: Option<&Arc<str>> = None;
    for v in values {
        match v {
            Some(s) if s.len() > View::MAX_INLINE_SIZE as usize => {
                if !last.is_some_and(|l| Arc::ptr_eq(l, s)) {
                    buffers.push(Buffer::from(s.as_bytes().to_vec()));
                    last = Some(s);
                }
                views.push(View::new_from_bytes(s.as_bytes(), buffers.len() as u32 - 1, 0));
            }
            Some(s) => views.push(View::new_inline(s.as_bytes())),
            None => views.push(View::default()),
        }
    }
    let validity = values.iter().any(Option::is_none).then(|| values.iter().map(Option::is_some).collect::<Bitmap>());
    // SAFETY: every value is a `str` (valid UTF-8), and each long view spans exactly the whole
    // buffer it names, which holds that same value.
    let arr = unsafe { Utf8ViewArray::new_unchecked_unknown_md(ArrowDataType::Utf8View, views.into(), buffers.into(), validity, None) };
    StringChunked::with_chunk(name.into(), arr).into_column()
}

/// The dtype of every `error` column: `Struct{kind: String, message: String}`.
pub fn error_dtype() -> DataType {
    DataType::Struct(vec![Field::new("kind".into(), DataType::String), Field::new("message".into(), DataType::String)])
}

/// The `error` column: a struct `{kind, message}` per row, null where there is no error.
pub fn error_series<'a>(name: &str, errors: impl ExactSizeIterator<Item = Option<&'a RecordError>> + Clone) -> PolarsResult<Series> {
    let n = errors.len();
    let kind: StringChunked = errors.clone().map(|e| e.map(|e| e.kind.as_str())).collect();
    let message: StringChunked = errors.clone().map(|e| e.map(|e| e.message.as_str())).collect();
    let fields = [kind.with_name("kind".into()).into_series(), message.with_name("message".into()).into_series()];
    let validity: Bitmap = errors.map(|e| e.is_some()).collect();
    let ca = StructChunked::from_series(name.into(), n, fields.iter())?;
    let validity = if validity.unset_bits() == 0 { None } else { Some(validity) };
    Ok(ca.with_outer_validity(validity).into_series())
}

/// The errors of an `error` struct column (kinds outside the registry become `other`).
pub fn errors_of(col: &Column) -> PolarsResult<Vec<Option<RecordError>>> {
    let s = col.as_materialized_series();
    let ca = s.struct_()?;
    let fields = ca.fields_as_series();
    let by_name = |n: &str| fields.iter().find(|f| f.name().as_str() == n).cloned();
    let (Some(kind), Some(message)) = (by_name("kind"), by_name("message")) else {
        polars_bail!(SchemaMismatch: "the error column must be a struct {{kind, message}}");
    };
    let (kind, message) = (kind.str()?.clone(), message.str()?.clone());
    let valid = ca.rechunk_validity();
    Ok((0..ca.len())
        .map(|i| {
            let present = valid.as_ref().is_none_or(|v| v.get_bit(i));
            match (present, kind.get(i)) {
                (true, Some(k)) => Some(RecordError::from_stored(k, message.get(i).unwrap_or(""))),
                _ => None,
            }
        })
        .collect())
}

/// A Binary column that takes ownership of each value's bytes: every value longer than a view's
/// inline size becomes its own Arrow buffer, so image bytes are never copied again.
fn binary_column(name: &str, values: Vec<Option<Vec<u8>>>) -> PolarsResult<Column> {
    let mut views = Vec::with_capacity(values.len());
    let mut buffers: Vec<Buffer<u8>> = Vec::new();
    let mut validity = Vec::with_capacity(values.len());
    for v in values {
        validity.push(v.is_some());
        match v {
            Some(bytes) if bytes.len() > View::MAX_INLINE_SIZE as usize => {
                views.push(View::new_from_bytes(&bytes, buffers.len() as u32, 0));
                buffers.push(Buffer::from(bytes));
            }
            Some(bytes) => views.push(View::new_inline(&bytes)),
            None => views.push(View::default()),
        }
    }
    let validity = if validity.iter().all(|&b| b) { None } else { Some(Bitmap::from_iter(validity)) };
    let arr = BinaryViewArray::try_new(ArrowDataType::BinaryView, views.into(), buffers.into(), validity)?;
    Ok(BinaryChunked::with_chunk(name.into(), arr).into_column())
}

/// The node table (`interleaf.schema.NODE_SCHEMA`, in its order) of a batch.
pub fn batch_to_frame(b: NodeBatch) -> PolarsResult<DataFrame> {
    let n = b.len();
    let error = error_series("error", b.error.iter().map(Option::as_ref))?.into_column();
    let cols = vec![
        shared_str("doc_id", &b.doc_id.into_iter().map(Some).collect::<Vec<_>>()),
        Int64Chunked::from_vec("doc_index".into(), b.doc_index).into_column(),
        Int32Chunked::from_vec("pos".into(), b.pos).into_column(),
        StringChunked::from_iter_options("kind".into(), b.kind.into_iter()).into_column(),
        Int32Chunked::from_iter_options("step".into(), b.step.into_iter()).into_column(),
        opt_str("role", b.role),
        opt_str("text", b.text),
        binary_column("image", b.image)?,
        opt_str("image_ref", b.image_ref),
        shared_str("meta", &b.meta),
        shared_str("source", &b.source),
        error,
    ];
    DataFrame::new(n, cols)
}

fn strs<'a>(df: &'a DataFrame, name: &str) -> PolarsResult<Vec<Option<&'a str>>> {
    Ok(df.column(name)?.str()?.iter().collect())
}

/// `doc_index` for the rows of a node table, numbered from `first` (see
/// `interleaf_core::doc::number_documents`).
pub fn renumber(df: &DataFrame, first: i64) -> PolarsResult<Vec<i64>> {
    let doc_index: Option<Vec<Option<i64>>> = match df.column("doc_index") {
        Ok(c) => Some(c.i64()?.iter().collect()),
        Err(_) => None,
    };
    let pos: Vec<Option<i32>> = df.column("pos")?.i32()?.iter().collect();
    Ok(number_documents(doc_index.as_deref(), &strs(df, "doc_id")?, &pos, first))
}

/// The documents of a node table with the full schema (the Python side conforms it first).
pub fn frame_to_documents(df: &DataFrame) -> PolarsResult<Vec<Document>> {
    let doc_index = renumber(df, 0)?;
    let rows = NodeRows {
        doc_index: &doc_index,
        doc_id: strs(df, "doc_id")?,
        pos: df.column("pos")?.i32()?.iter().collect(),
        kind: strs(df, "kind")?,
        step: df.column("step")?.i32()?.iter().collect(),
        role: strs(df, "role")?,
        text: strs(df, "text")?,
        image: df.column("image")?.binary()?.iter().collect(),
        image_ref: strs(df, "image_ref")?,
        meta: strs(df, "meta")?,
        source: strs(df, "source")?,
        error: errors_of(df.column("error")?)?,
    };
    Ok(documents_from_rows(&rows))
}
