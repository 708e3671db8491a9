//! Node batches to polars DataFrames and back. The `error` struct column is assembled on the
//! Python side from `error_kind` / `error_message`.

use std::collections::HashSet;

use interleaf_core::doc::{Document, Node, NodeBatch, NodeKind};
use interleaf_core::RecordError;
use polars::prelude::*;
use polars_arrow::array::{BinaryViewArray, View};
use polars_arrow::bitmap::Bitmap;
use polars_buffer::Buffer;
use polars_arrow::datatypes::ArrowDataType;

fn opt_str(name: &str, v: Vec<Option<String>>) -> Column {
    StringChunked::from_iter_options(name.into(), v.into_iter()).into_column()
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

/// Builds the node DataFrame (without the `error` struct; see the module docs).
pub fn batch_to_frame(b: NodeBatch) -> PolarsResult<DataFrame> {
    let n = b.len();
    let cols = vec![
        StringChunked::from_iter_values("doc_id".into(), b.doc_id.into_iter()).into_column(),
        Int32Chunked::from_vec("pos".into(), b.pos).into_column(),
        StringChunked::from_iter_options("kind".into(), b.kind.into_iter()).into_column(),
        Int32Chunked::from_iter_options("step".into(), b.step.into_iter()).into_column(),
        opt_str("role", b.role),
        opt_str("text", b.text),
        binary_column("image", b.image)?,
        opt_str("image_ref", b.image_ref),
        opt_str("meta", b.meta),
        opt_str("source", b.source),
        opt_str("error_kind", b.error_kind),
        opt_str("error_message", b.error_message),
    ];
    DataFrame::new(n, cols)
}

fn str_col<'a>(df: &'a DataFrame, name: &str) -> PolarsResult<&'a StringChunked> {
    df.column(name)?.str()
}

/// Groups the rows of a node frame into documents: consecutive rows with one `doc_id` and
/// distinct `pos` values form a document, nodes ordered by `pos`. Expects the columns that [`batch_to_frame`] makes, with
/// `pos`/`step` as Int32 and `image` as Binary (the Python side casts).
pub fn frame_to_documents(df: &DataFrame) -> PolarsResult<Vec<Document>> {
    let doc_id = str_col(df, "doc_id")?;
    let pos = df.column("pos")?.i32()?;
    let kind = str_col(df, "kind")?;
    let step = df.column("step")?.i32()?;
    let role = str_col(df, "role")?;
    let text = str_col(df, "text")?;
    let image = df.column("image")?.binary()?;
    let image_ref = str_col(df, "image_ref")?;
    let meta = str_col(df, "meta")?;
    let source = str_col(df, "source")?;
    let ek = str_col(df, "error_kind")?;
    let em = str_col(df, "error_message")?;
    let mut docs: Vec<Document> = Vec::new();
    let mut positions: Vec<Vec<i32>> = Vec::new();
    let mut seen: HashSet<i32> = HashSet::new();
    for i in 0..df.height() {
        let id = doc_id.get(i).unwrap_or("");
        let p = pos.get(i).unwrap_or(0);
        // A new document starts where the id changes, or where a position repeats (two
        // consecutive documents that share an id).
        if docs.last().is_none_or(|d| d.doc_id != id) || seen.contains(&p) {
            seen.clear();
            let mut d = Document::new(id, source.get(i).map(String::from));
            d.meta = meta.get(i).map(String::from);
            docs.push(d);
            positions.push(Vec::new());
        }
        let error = ek.get(i).map(|k| RecordError::new(k, em.get(i).unwrap_or("")));
        let node = Node {
            kind: kind.get(i).and_then(NodeKind::parse),
            step: step.get(i),
            role: role.get(i).map(String::from),
            text: text.get(i).map(String::from),
            image: image.get(i).map(<[u8]>::to_vec),
            image_ref: image_ref.get(i).map(String::from),
            error,
        };
        let d = docs.last_mut().expect("document");
        if node.kind.is_none() && node.text.is_none() && node.image.is_none() && node.image_ref.is_none() {
            // The error row of a document without nodes carries the document's error.
            d.error = node.error;
            continue;
        }
        d.nodes.push(node);
        seen.insert(p);
        positions.last_mut().expect("positions").push(p);
    }
    for (d, p) in docs.iter_mut().zip(positions) {
        if p.windows(2).any(|w| w[0] > w[1]) {
            let mut idx: Vec<usize> = (0..p.len()).collect();
            idx.sort_by_key(|&i| p[i]);
            let nodes = std::mem::take(&mut d.nodes);
            let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
            d.nodes = idx.into_iter().map(|i| slots[i].take().expect("node")).collect();
        }
    }
    Ok(docs)
}
