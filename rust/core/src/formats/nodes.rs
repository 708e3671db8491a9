//! interleaf's own document JSON: `{"doc_id", "source", "meta", "error", "nodes": [...]}`, read and written.

use super::*;

/// An error as stored in our JSON (`{"kind", "message"}`); kinds outside the registry become
/// `other` (see [`RecordError::from_stored`]).
pub fn error_from_value(v: &Value) -> Option<RecordError> {
    let o = v.as_object()?;
    Some(RecordError::from_stored(o.get("kind")?.as_str().unwrap_or("other"), o.get("message").and_then(Value::as_str).unwrap_or("")))
}

/// Fills `doc` from our document JSON, the one parser of the schema (jsonl records and
/// WebDataset json members both use it): `doc_id`, `meta`, `error` and `nodes`, each node's
/// `kind`, `text`, `step`, `role`, `image_ref` and `error`. `image` fills an image node's bytes
/// from its JSON (base64, a file, a tar member). A node without a valid kind is kept with a
/// `bad_record` error.
pub fn parse_document(doc: &mut Document, o: &Map<String, Value>, mut image: impl FnMut(&Map<String, Value>, &mut Node)) {
    if let Some(id) = o.get("doc_id").filter(|v| !v.is_null()) {
        doc.doc_id = id.as_str().map_or_else(|| id.to_string(), String::from);
    }
    if let Some(m) = o.get("meta").filter(|m| m.is_object()) {
        doc.meta = Some(json_text(m));
    }
    if let Some(e) = o.get("error").and_then(error_from_value) {
        doc.set_error(e);
    }
    for n in o.get("nodes").and_then(Value::as_array).into_iter().flatten() {
        let Some(n) = n.as_object() else {
            doc.nodes.push(Node {
                error: Some(RecordError::new(ErrorKind::BadRecord, format!("a node must be a JSON object: {}", short_json(n)))),
                ..Default::default()
            });
            continue;
        };
        let kind = n.get("kind").and_then(Value::as_str).and_then(NodeKind::parse);
        let mut node = Node { kind, ..Default::default() };
        node.text = n.get("text").and_then(Value::as_str).map(String::from);
        node.step = match n.get("step") {
            None | Some(Value::Null) => None,
            Some(v) => {
                // An integral float (pandas writes 1.0 for an int column with nulls) is that int.
                let whole = v.as_f64().filter(|f| f.fract() == 0.0 && *f >= i32::MIN as f64 && *f <= i32::MAX as f64).map(|f| f as i64);
                let step = v.as_i64().or(whole).and_then(|s| i32::try_from(s).ok());
                if step.is_none() {
                    node.error = Some(RecordError::new(ErrorKind::BadRecord, format!("node step {} is not a 32-bit integer", short_json(v))));
                }
                step
            }
        };
        node.role = n.get("role").and_then(Value::as_str).map(String::from);
        node.image_ref = n.get("image_ref").and_then(Value::as_str).map(String::from);
        match kind {
            Some(NodeKind::Image) => image(n, &mut node),
            Some(NodeKind::Text) => {}
            None => node.error = Some(RecordError::new(ErrorKind::BadRecord, format!("node without a valid kind: {}", short_json(n)))),
        }
        if let Some(e) = n.get("error").and_then(error_from_value) {
            node.error = Some(e);
        }
        doc.nodes.push(node);
    }
}

pub(super) fn read(mut doc: Document, mut o: Map<String, Value>, ctx: &RecordContext) -> Document {
    parse_document(&mut doc, &o, |n, node| {
        if let Some(bytes) = n.get("image_b64").and_then(|b| inline_bytes(b, ctx, true, "image_b64")) {
            match bytes {
                Ok(bytes) => node.image = Some(bytes),
                Err(e) => node.error = Some(e),
            }
        } else if let Some(v) = n.get("image").filter(|v| !v.is_null()) {
            // The image under `image`, in any form a pair record's image takes (a path, a
            // `data:` URI, `{"bytes"}`, `{"path"}`...); `image_ref`, when given, stays the
            // node's reference.
            let got = resolve_image(v, ctx);
            node.image = got.image;
            node.error = got.error;
            node.image_ref = node.image_ref.take().or(got.image_ref);
        } else if ctx.load_images {
            if let Some(r) = node.image_ref.clone().filter(|r| !is_url(r)) {
                match load_file(&r, ctx) {
                    Ok(bytes) => node.image = Some(bytes),
                    Err(e) => node.error = Some(e),
                }
            }
        }
    });
    if let Some(Value::String(s)) = o.get("source") {
        doc.source = Some(s.clone());
    }
    for k in ["doc_id", "source", "meta", "error", "nodes"] {
        o.shift_remove(k);
    }
    if !o.is_empty() {
        // Unknown top-level keys are kept in the metadata rather than dropped.
        inline_blobs(&mut o, ctx);
        let mut meta: Map<String, Value> = match doc.meta.as_deref().and_then(parse_stored_json) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        meta.extend(o);
        doc.meta = Some(json_text(&Value::Object(meta)));
    }
    doc
}

/// `{"kind", "message"}`, the JSON form of an error everywhere we write one.
pub fn error_json(e: &RecordError) -> Value {
    json!({"kind": e.kind.as_str(), "message": e.message})
}

/// A node's JSON object; the image, when the node has bytes, is the given (key, value).
pub fn node_json(n: &Node, image: Option<(&str, Value)>) -> Value {
    let mut o = Map::new();
    o.insert("kind".into(), n.kind.map_or(Value::Null, |k| Value::String(k.as_str().into())));
    if let Some(t) = &n.text {
        o.insert("text".into(), Value::String(t.clone()));
    }
    if let Some((key, v)) = image {
        o.insert(key.into(), v);
    }
    if let Some(r) = &n.image_ref {
        o.insert("image_ref".into(), Value::String(r.clone()));
    }
    if let Some(s) = n.step {
        o.insert("step".into(), json!(s));
    }
    if let Some(r) = &n.role {
        o.insert("role".into(), Value::String(r.clone()));
    }
    if let Some(e) = &n.error {
        o.insert("error".into(), error_json(e));
    }
    Value::Object(o)
}

/// A document in our own JSON schema (the inverse of reading [`Format::Nodes`]). Image bytes
/// are base64 in `image_b64`.
pub fn document_to_json(doc: &Document) -> Value {
    let nodes: Vec<Value> = doc.nodes.iter().map(|n| node_json(n, n.image.as_ref().map(|b| ("image_b64", Value::String(b64().encode(b)))))).collect();
    let mut o = Map::new();
    o.insert("doc_id".into(), Value::String(doc.doc_id.clone()));
    if let Some(s) = &doc.source {
        o.insert("source".into(), Value::String(s.clone()));
    }
    if let Some(m) = doc.meta.as_deref().and_then(parse_stored_json) {
        o.insert("meta".into(), m);
    }
    if let Some(e) = &doc.error {
        o.insert("error".into(), error_json(e));
    }
    o.insert("nodes".into(), Value::Array(nodes));
    Value::Object(o)
}
