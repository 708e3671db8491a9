//! The document model: one representation for image-text pairs and interleaved documents.
//!
//! A [`Document`] is an ordered list of [`Node`]s; a node is text or an image. A pair is a
//! two-node document. CoMM steps become the `step` index of each node; LLaVA turns carry a
//! `role`. Documents are flattened into a columnar [`NodeBatch`] (one row per node) that the
//! Python binding turns into a polars DataFrame.

use std::collections::BTreeMap;

use crate::error::RecordError;

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

    /// Every error kind that this document carries, once each (document and nodes).
    pub fn error_kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = Vec::new();
        let all = self.error.iter().chain(self.nodes.iter().filter_map(|n| n.error.as_ref()));
        for e in all {
            if !kinds.contains(&e.kind.as_str()) {
                kinds.push(e.kind.as_str());
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
            *self.errors.entry(k.to_string()).or_insert(0) += 1;
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
    pub doc_id: Vec<String>,
    pub pos: Vec<i32>,
    pub kind: Vec<Option<&'static str>>,
    pub step: Vec<Option<i32>>,
    pub role: Vec<Option<String>>,
    pub text: Vec<Option<String>>,
    pub image: Vec<Option<Vec<u8>>>,
    pub image_ref: Vec<Option<String>>,
    pub meta: Vec<Option<String>>,
    pub source: Vec<Option<String>>,
    pub error_kind: Vec<Option<String>>,
    pub error_message: Vec<Option<String>>,
    pub documents: usize,
}

impl NodeBatch {
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }

    /// Flattens one document into rows. A document without nodes becomes one row with a null
    /// `kind` and an error (`empty_document` when it had none).
    pub fn push(&mut self, doc: Document) {
        self.documents += 1;
        let Document { doc_id, source, meta, nodes, error } = doc;
        if nodes.is_empty() {
            let err = error.unwrap_or_else(|| RecordError::new("empty_document", "document has no text or image node"));
            self.push_row(&doc_id, 0, &source, &meta, Node { error: Some(err), ..Default::default() });
            return;
        }
        for (pos, mut node) in nodes.into_iter().enumerate() {
            if node.error.is_none() {
                node.error = error.clone();
            }
            self.push_row(&doc_id, pos as i32, &source, &meta, node);
        }
    }

    fn push_row(&mut self, doc_id: &str, pos: i32, source: &Option<String>, meta: &Option<String>, node: Node) {
        self.doc_id.push(doc_id.to_string());
        self.pos.push(pos);
        self.kind.push(node.kind.map(NodeKind::as_str));
        self.step.push(node.step);
        self.role.push(node.role);
        self.text.push(node.text);
        self.image.push(node.image);
        self.image_ref.push(node.image_ref);
        self.meta.push(meta.clone());
        self.source.push(source.clone());
        let (k, m) = match node.error {
            Some(e) => (Some(e.kind), Some(e.message)),
            None => (None, None),
        };
        self.error_kind.push(k);
        self.error_message.push(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_becomes_one_error_row() {
        let mut b = NodeBatch::default();
        b.push(Document::new("d", None));
        assert_eq!(b.len(), 1);
        assert_eq!(b.kind[0], None);
        assert_eq!(b.error_kind[0].as_deref(), Some("empty_document"));
    }

    #[test]
    fn document_error_is_copied_to_nodes_without_their_own() {
        let mut doc = Document::new("d", None);
        doc.nodes.push(Node::text("a"));
        let mut img = Node::image(None, Some("x.jpg".into()));
        img.error = Some(RecordError::new("missing_image", "x.jpg"));
        doc.nodes.push(img);
        doc.set_error(RecordError::new("missing_partner", "no text"));
        let mut stats = ReadStats::default();
        stats.add_document(&doc);
        assert_eq!(stats.errors.len(), 2);
        let mut b = NodeBatch::default();
        b.push(doc);
        assert_eq!(b.error_kind[0].as_deref(), Some("missing_partner"));
        assert_eq!(b.error_kind[1].as_deref(), Some("missing_image"));
    }
}
