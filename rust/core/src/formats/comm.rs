//! CoMM records: `title`, `step_info` (a list of steps, each a list of text and image items); nodes carry their step.

use super::*;

pub(super) fn read(doc: &mut Document, o: &mut Map<String, Value>, ctx: &RecordContext) {
    let Some((_, Value::Array(steps))) = take_string(o, &["step_info", "steps"]) else {
        doc.set_error(RecordError::new(ErrorKind::BadRecord, "CoMM record without a step_info list"));
        return;
    };
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
            _ => vec![],
        };
        for item in items {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
            let node = match kind {
                "text" => Node::text(item.get("content").or_else(|| item.get("text")).map(value_text).unwrap_or_default()),
                "image" => {
                    let field = ["image_path", "image", "path", "url"].iter().find_map(|k| item.get(*k).filter(|v| !v.is_null()));
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
}

pub(super) fn write(doc: &Document, o: &mut Map<String, Value>, img: &ImageValue) {
    // Nodes of one step stay together, in document order; a node without a step is a step of its own.
    let mut steps: Vec<(Option<i32>, Vec<Value>)> = Vec::new();
    for n in &doc.nodes {
        let item = match n.kind {
            Some(NodeKind::Text) => json!({"type": "text", "content": n.text.clone().unwrap_or_default()}),
            Some(NodeKind::Image) => {
                let v = img(n);
                let key = match v.as_str() {
                    Some(s) if s.starts_with("data:") => "image",
                    Some(s) if is_url(s) => "url",
                    _ => "image_path",
                };
                json!({"type": "image", key: v})
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
