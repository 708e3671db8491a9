//! CoMM records: `data_id`, `title`, `step_info` (a list of steps, each a list of text and image
//! items); nodes carry their step.
//!
//! When an image item has more fields than its reference (CoMM's carry both `url` and
//! `image_path`), the record's image items are kept whole, in order, in the document's metadata
//! under [`IMAGE_ITEMS`] and written back as they were (each node takes the first unused item
//! with its reference), so a filtered CoMM file keeps the URLs its images were downloaded from.

use super::*;

/// The metadata key holding a record's image items (all of them, in order) when one has more
/// fields than its reference.
pub const IMAGE_ITEMS: &str = "comm_image_items";

/// The item fields an image's reference is read from, in order.
const IMAGE_FIELDS: [&str; 4] = ["image_path", "image", "path", "url"];

pub(super) fn read(doc: &mut Document, o: &mut Map<String, Value>, ctx: &RecordContext) {
    let Some((_, Value::Array(steps))) = take_string(o, &["step_info", "steps"]) else {
        doc.set_error(RecordError::new(ErrorKind::BadRecord, "CoMM record without a step_info list"));
        return;
    };
    // Every image item with a reference, in order, kept when one of them has more fields: a
    // node takes the first unused item with its reference when written, so two images with
    // one path each get their own item back.
    let (mut kept_items, mut any_extra) = (Vec::new(), false);
    for (si, step) in steps.iter().enumerate() {
        let s = Some(si as i32);
        let items: Vec<Value> = match step {
            Value::Array(items) => items.clone(),
            Value::Object(so) => {
                // {"text": ..., "image": ...} or {"text": ..., "images": [...]}
                let mut items = Vec::new();
                for k in ["text", "content", "caption"] {
                    if let Some(t) = so.get(k).filter(|v| !v.is_null()) {
                        items.push(json!({"type": "text", "content": t}));
                        break;
                    }
                }
                for k in ["image", "image_path", "images", "url"] {
                    match so.get(k) {
                        Some(Value::Array(a)) => a.iter().for_each(|x| items.push(json!({"type": "image", "image": x}))),
                        Some(v) if !v.is_null() => items.push(json!({"type": "image", "image": v})),
                        _ => continue,
                    }
                    break;
                }
                items
            }
            Value::String(t) => vec![json!({"type": "text", "content": t})],
            other => {
                let msg = format!("CoMM step {si} must be a list of items, not {}", json_type(other));
                doc.nodes.push(Node { error: Some(RecordError::new(ErrorKind::BadRecord, msg)), ..Default::default() }.with_step(s));
                continue;
            }
        };
        for item in items {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
            let node = match kind {
                "text" => text_node(item.get("content").or_else(|| item.get("text")), || format!("CoMM step {si} text content"), ctx),
                "image" => {
                    let field = item_ref(&item);
                    if field.and_then(Value::as_str).is_some_and(|r| !r.starts_with("data:")) {
                        any_extra |= item.as_object().is_some_and(|m| m.len() > 2);
                        kept_items.push(item.clone());
                    }
                    match field {
                        Some(v) => resolve_image(v, ctx),
                        None => Node {
                            kind: Some(NodeKind::Image),
                            error: Some(RecordError::new(ErrorKind::BadRecord, "CoMM image item without a path or url")),
                            ..Default::default()
                        },
                    }
                }
                other => Node { error: Some(RecordError::new(ErrorKind::BadRecord, format!("CoMM item of unknown type {other:?}"))), ..Default::default() },
            };
            doc.nodes.push(node.with_step(s));
        }
    }
    if any_extra {
        o.insert(IMAGE_ITEMS.into(), Value::Array(kept_items));
    }
}

pub(super) fn write(doc: &Document, o: &mut Map<String, Value>, img: &ImageValue) {
    // Nodes of one step stay together, in document order; a node without a step is a step of its own.
    let mut steps: Vec<(Option<i32>, Vec<Value>)> = Vec::new();
    let mut kept: Vec<Option<Value>> = match o.shift_remove(IMAGE_ITEMS) {
        Some(Value::Array(a)) => a.into_iter().map(Some).collect(),
        _ => Vec::new(),
    };
    for n in &doc.nodes {
        let item = match n.kind {
            Some(NodeKind::Text) => json!({"type": "text", "content": n.text.clone().unwrap_or_default()}),
            Some(NodeKind::Image) => {
                let v = img(n);
                let embedded = v.as_str().is_some_and(|s| s.starts_with("data:"));
                match own_item(&mut kept, n) {
                    // The bytes inline, the item's other fields (its URL) kept.
                    Some(Value::Object(mut m)) if embedded => {
                        m.shift_remove("image_path");
                        m.shift_remove("path");
                        m.insert("image".into(), v);
                        Value::Object(m)
                    }
                    Some(own) if !embedded => own,
                    _ => {
                        let key = match v.as_str() {
                            _ if embedded => "image",
                            Some(s) if is_url(s) => "url",
                            _ => "image_path",
                        };
                        json!({"type": "image", key: v})
                    }
                }
            }
            None => continue,
        };
        match steps.last_mut() {
            Some((s, items)) if s.is_some() && *s == n.step => items.push(item),
            _ => steps.push((n.step, vec![item])),
        }
    }
    o.insert("step_info".into(), Value::Array(steps.into_iter().map(|(_, items)| Value::Array(items)).collect()));
}

/// The value an image item's reference is read from.
fn item_ref(item: &Value) -> Option<&Value> {
    IMAGE_FIELDS.iter().find_map(|k| item.get(*k).filter(|v| !v.is_null()))
}

/// Takes the record's own item for image node `n` from `kept`: the first unused one with the
/// node's reference.
fn own_item(kept: &mut [Option<Value>], n: &Node) -> Option<Value> {
    let r = n.image_ref.as_deref()?;
    kept.iter_mut().find(|i| i.as_ref().and_then(item_ref).and_then(Value::as_str) == Some(r))?.take()
}
