//! The document model: one representation for image-text pairs and interleaved documents.
//!
//! A [`Document`] is an ordered list of [`Node`]s; a node is text or an image. A pair is a
//! two-node document. CoMM steps become the `step` index of each node; LLaVA turns carry a
//! `role`. Documents are flattened into a columnar [`NodeBatch`] (one row per node) that the
//! Python binding turns into a polars DataFrame.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use crate::error::{ErrorKind, RecordError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Text,
    Image,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Text => "text",
            NodeKind::Image => "image",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(NodeKind::Text),
            "image" => Some(NodeKind::Image),
            _ => None,
        }
    }
}

/// One node of a document. `kind` is `None` only for the error row of a document that
/// has no readable node at all (then `error` says why).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub kind: Option<NodeKind>,
    pub step: Option<i32>,
    pub role: Option<String>,
    pub text: Option<String>,
    pub image: Option<Vec<u8>>,
    pub image_ref: Option<String>,
    pub error: Option<RecordError>,
}

impl Node {
    pub fn text(text: impl Into<String>) -> Self {
        Node { kind: Some(NodeKind::Text), text: Some(text.into()), ..Default::default() }
    }

    pub fn image(bytes: Option<Vec<u8>>, image_ref: Option<String>) -> Self {
        Node { kind: Some(NodeKind::Image), image: bytes, image_ref, ..Default::default() }
    }

    pub fn with_step(mut self, step: Option<i32>) -> Self {
        self.step = step;
        self
    }
}

/// A document: its id, where it was read from, its metadata (a JSON object, serialised) and
/// its nodes. `error` is a document-level error; it is copied onto every node row that has no
/// error of its own when the document is flattened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    pub doc_id: String,
    pub source: Option<String>,
    pub meta: Option<String>,
    pub nodes: Vec<Node>,
    pub error: Option<RecordError>,
}

impl Document {
    pub fn new(doc_id: impl Into<String>, source: Option<String>) -> Self {
        Document { doc_id: doc_id.into(), source, ..Default::default() }
    }

    /// Sets the document error unless one is already set (the first error wins).
    pub fn set_error(&mut self, err: RecordError) {
        if self.error.is_none() {
            self.error = Some(err);
        }
    }

    /// Bytes of text, image data and metadata the document holds (what a batch's byte bound
    /// counts; its id, metadata and source once, as its rows share them).
    pub fn content_bytes(&self) -> u64 {
        let own = self.doc_id.len() + self.meta.as_ref().map_or(0, String::len) + self.source.as_ref().map_or(0, String::len);
        own as u64 + self.nodes.iter().map(|n| n.text.as_ref().map_or(0, |t| t.len() as u64) + n.image.as_ref().map_or(0, |b| b.len() as u64)).sum::<u64>()
    }

    /// Every error kind that this document carries, once each (document and nodes).
    pub fn error_kinds(&self) -> Vec<ErrorKind> {
        let mut kinds: Vec<ErrorKind> = Vec::new();
        let all = self.error.iter().chain(self.nodes.iter().filter_map(|n| n.error.as_ref()));
        for e in all {
            if !kinds.contains(&e.kind) {
                kinds.push(e.kind);
            }
        }
        kinds
    }
}

/// Counters that every reader keeps, reported by `interleaf inspect` and the run summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadStats {
    pub files: u64,
    pub documents: u64,
    pub nodes: u64,
    pub text_nodes: u64,
    pub image_nodes: u64,
    pub text_bytes: u64,
    pub image_bytes: u64,
    /// Bytes consumed from the sources (compressed size for .gz / .zst).
    pub bytes_read: u64,
    /// Documents carrying each error kind (a document counts once per kind).
    pub errors: BTreeMap<String, u64>,
}

impl ReadStats {
    pub fn add_document(&mut self, doc: &Document) {
        self.documents += 1;
        for n in &doc.nodes {
            self.nodes += 1;
            match n.kind {
                Some(NodeKind::Text) => {
                    self.text_nodes += 1;
                    self.text_bytes += n.text.as_ref().map_or(0, |t| t.len() as u64);
                }
                Some(NodeKind::Image) => {
                    self.image_nodes += 1;
                    self.image_bytes += n.image.as_ref().map_or(0, |b| b.len() as u64);
                }
                None => {}
            }
        }
        for k in doc.error_kinds() {
            *self.errors.entry(k.as_str().to_string()).or_insert(0) += 1;
        }
        // A document without nodes or an error of its own becomes an empty_document row
        // (`NodeBatch::push`): counted here as the run counts it.
        if doc.nodes.is_empty() && doc.error.is_none() {
            *self.errors.entry(ErrorKind::EmptyDocument.as_str().to_string()).or_insert(0) += 1;
        }
    }

    /// Adds another read's counts to these.
    pub fn merge(&mut self, other: &ReadStats) {
        self.files += other.files;
        self.documents += other.documents;
        self.nodes += other.nodes;
        self.text_nodes += other.text_nodes;
        self.image_nodes += other.image_nodes;
        self.text_bytes += other.text_bytes;
        self.image_bytes += other.image_bytes;
        self.bytes_read += other.bytes_read;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn error_documents(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Node rows in columns, ready to become Arrow arrays. A document is never split across two
/// batches.
#[derive(Debug, Default)]
pub struct NodeBatch {
    /// `doc_id`, `meta` and `source` are the document's, shared by its rows (one allocation per
    /// document, however many nodes it has).
    pub doc_id: Vec<Arc<str>>,
    /// The document's ordinal in the read (see [`document_ranges`]).
    pub doc_index: Vec<i64>,
    pub pos: Vec<i32>,
    pub kind: Vec<Option<&'static str>>,
    pub step: Vec<Option<i32>>,
    pub role: Vec<Option<String>>,
    pub text: Vec<Option<String>>,
    pub image: Vec<Option<Vec<u8>>>,
    pub image_ref: Vec<Option<String>>,
    pub meta: Vec<Option<Arc<str>>>,
    pub source: Vec<Option<Arc<str>>>,
    pub error: Vec<Option<RecordError>>,
    pub documents: usize,
}

impl NodeBatch {
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }

    /// Flattens one document into rows, all carrying `doc_index`. A document without nodes
    /// becomes one row with a null `kind` and an error (`empty_document` when it had none).
    pub fn push(&mut self, doc: Document, doc_index: i64) {
        self.documents += 1;
        let Document { doc_id, source, meta, nodes, error } = doc;
        let (doc_id, source, meta): (Arc<str>, Option<Arc<str>>, Option<Arc<str>>) = (doc_id.into(), source.map(Into::into), meta.map(Into::into));
        if nodes.is_empty() {
            let err = error.unwrap_or_else(|| RecordError::new(ErrorKind::EmptyDocument, "document has no text or image node"));
            self.push_row(&doc_id, doc_index, 0, &source, &meta, Node { error: Some(err), ..Default::default() });
            return;
        }
        for (pos, mut node) in nodes.into_iter().enumerate() {
            if node.error.is_none() {
                node.error = error.clone();
            }
            self.push_row(&doc_id, doc_index, pos as i32, &source, &meta, node);
        }
    }

    fn push_row(&mut self, doc_id: &Arc<str>, doc_index: i64, pos: i32, source: &Option<Arc<str>>, meta: &Option<Arc<str>>, node: Node) {
        self.doc_id.push(doc_id.clone());
        self.doc_index.push(doc_index);
        self.pos.push(pos);
        self.kind.push(node.kind.map(NodeKind::as_str));
        self.step.push(node.step);
        self.role.push(node.role);
        self.text.push(node.text);
        self.image.push(node.image);
        self.image_ref.push(node.image_ref);
        self.meta.push(meta.clone());
        self.source.push(source.clone());
        self.error.push(node.error);
    }
}

/// Which rows are one document, the one rule every grouping, count and join follows: a new
/// document starts where `doc_index` changes. Returns each document's row range, in order.
pub fn document_ranges(doc_index: &[i64]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=doc_index.len() {
        if i == doc_index.len() || doc_index[i] != doc_index[i - 1] {
            out.push(start..i);
            start = i;
        }
    }
    out
}

/// Numbers the documents of a node table as a read does: `first`, `first + 1`, ... in row
/// order. Rows that carry a `doc_index` keep their grouping ([`document_ranges`]); a table
/// without one (null everywhere: built by hand, or written before the column existed) is
/// grouped by the rows' `doc_id`, a new document starting where the id changes or a `pos`
/// repeats within the current one. Returns the new `doc_index` per row.
pub fn number_documents(doc_index: Option<&[Option<i64>]>, doc_id: &[Option<&str>], pos: &[Option<i32>], first: i64) -> Vec<i64> {
    let n = doc_id.len();
    let mut out = Vec::with_capacity(n);
    let mut next = first - 1;
    if let Some(idx) = doc_index.filter(|idx| idx.iter().all(Option::is_some)) {
        for i in 0..n {
            if i == 0 || idx[i] != idx[i - 1] {
                next += 1;
            }
            out.push(next);
        }
        return out;
    }
    let mut seen: HashSet<i32> = HashSet::new();
    for i in 0..n {
        let p = pos[i].unwrap_or(0);
        if i == 0 || doc_id[i] != doc_id[i - 1] || seen.contains(&p) {
            seen.clear();
            next += 1;
        }
        seen.insert(p);
        out.push(next);
    }
    out
}

/// Borrowed node-table columns, one entry per row (the binding's view of a DataFrame).
pub struct NodeRows<'a> {
    pub doc_index: &'a [i64],
    pub doc_id: Vec<Option<&'a str>>,
    pub pos: Vec<Option<i32>>,
    pub kind: Vec<Option<&'a str>>,
    pub step: Vec<Option<i32>>,
    pub role: Vec<Option<&'a str>>,
    pub text: Vec<Option<&'a str>>,
    pub image: Vec<Option<&'a [u8]>>,
    pub image_ref: Vec<Option<&'a str>>,
    pub meta: Vec<Option<&'a str>>,
    pub source: Vec<Option<&'a str>>,
    pub error: Vec<Option<RecordError>>,
}

/// Rebuilds documents from node rows (the inverse of [`NodeBatch::push`]): one document per
/// [`document_ranges`] range, its nodes ordered by `pos`. The single row of a document
/// without nodes (no kind, text, image or image_ref) gives the document its error.
pub fn documents_from_rows(rows: &NodeRows<'_>) -> Vec<Document> {
    let own = |v: Option<&str>| v.map(String::from);
    document_ranges(rows.doc_index)
        .into_iter()
        .map(|range| {
            let first = range.start;
            let mut doc = Document::new(rows.doc_id[first].unwrap_or(""), own(rows.source[first]));
            doc.meta = own(rows.meta[first]);
            let mut order: Vec<usize> = range.collect();
            order.sort_by_key(|&i| rows.pos[i].unwrap_or(0));
            for i in order {
                let node = Node {
                    kind: rows.kind[i].and_then(NodeKind::parse),
                    step: rows.step[i],
                    role: own(rows.role[i]),
                    text: own(rows.text[i]),
                    image: rows.image[i].map(<[u8]>::to_vec),
                    image_ref: own(rows.image_ref[i]),
                    error: rows.error[i].clone(),
                };
                if node.kind.is_none() && node.text.is_none() && node.image.is_none() && node.image_ref.is_none() {
                    doc.error = node.error;
                    continue;
                }
                doc.nodes.push(node);
            }
            doc
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_becomes_one_error_row() {
        let mut b = NodeBatch::default();
        b.push(Document::new("d", None), 7);
        assert_eq!(b.len(), 1);
        assert_eq!(b.kind[0], None);
        assert_eq!(b.doc_index, vec![7]);
        assert_eq!(b.error[0].as_ref().unwrap().kind, ErrorKind::EmptyDocument);
    }

    #[test]
    fn document_error_is_copied_to_nodes_without_their_own() {
        let mut doc = Document::new("d", None);
        doc.nodes.push(Node::text("a"));
        let mut img = Node::image(None, Some("x.jpg".into()));
        img.error = Some(RecordError::new(ErrorKind::MissingImage, "x.jpg"));
        doc.nodes.push(img);
        doc.set_error(RecordError::new(ErrorKind::MissingPartner, "no text"));
        let mut stats = ReadStats::default();
        stats.add_document(&doc);
        assert_eq!(stats.errors.len(), 2);
        let mut b = NodeBatch::default();
        b.push(doc, 0);
        assert_eq!(b.error[0].as_ref().unwrap().kind, ErrorKind::MissingPartner);
        assert_eq!(b.error[1].as_ref().unwrap().kind, ErrorKind::MissingImage);
    }

    #[test]
    fn a_new_document_starts_where_doc_index_changes() {
        assert_eq!(document_ranges(&[4, 4, 5, 9, 9, 9]), vec![0..2, 2..3, 3..6]);
        assert!(document_ranges(&[]).is_empty());
    }

    #[test]
    fn numbering_keeps_a_tables_grouping_or_infers_it_from_ids() {
        let ids = [Some("a"), Some("a"), Some("a"), Some("b"), Some("a")];
        let pos = [Some(1), Some(0), Some(0), Some(0), Some(0)];
        // With doc_index: its grouping, renumbered from 10 (ids and positions are not looked at).
        let idx = [Some(3), Some(3), Some(8), Some(8), Some(3)];
        assert_eq!(number_documents(Some(&idx), &ids, &pos, 10), vec![10, 10, 11, 11, 12]);
        // Without: an id change or a repeated position starts a document.
        assert_eq!(number_documents(None, &ids, &pos, 0), vec![0, 0, 1, 2, 3]);
        let partial = [Some(3), None, Some(8), Some(8), Some(3)];
        assert_eq!(number_documents(Some(&partial), &ids, &pos, 0), vec![0, 0, 1, 2, 3]);
    }

    #[test]
    fn rows_become_documents_with_nodes_in_pos_order() {
        let mut b = NodeBatch::default();
        let mut d = Document::new("same", None);
        d.nodes.push(Node::text("first"));
        d.nodes.push(Node::text("second"));
        b.push(d.clone(), 0);
        b.push(d.clone(), 1);
        b.push(Document::new("empty", None), 2);
        // Shuffle the first document's rows: pos decides the order back.
        let order = [1usize, 0, 2, 3, 4];
        let rows = NodeRows {
            doc_index: &order.iter().map(|&i| b.doc_index[i]).collect::<Vec<_>>(),
            doc_id: order.iter().map(|&i| Some(&*b.doc_id[i])).collect(),
            pos: order.iter().map(|&i| Some(b.pos[i])).collect(),
            kind: order.iter().map(|&i| b.kind[i]).collect(),
            step: vec![None; 5],
            role: vec![None; 5],
            text: order.iter().map(|&i| b.text[i].as_deref()).collect(),
            image: vec![None; 5],
            image_ref: vec![None; 5],
            meta: vec![None; 5],
            source: vec![None; 5],
            error: order.iter().map(|&i| b.error[i].clone()).collect(),
        };
        let docs = documents_from_rows(&rows);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0], d);
        assert_eq!(docs[1], d);
        assert!(docs[2].nodes.is_empty());
        assert_eq!(docs[2].error.as_ref().unwrap().kind, ErrorKind::EmptyDocument);
    }
}
