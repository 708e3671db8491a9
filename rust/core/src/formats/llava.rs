//! LLaVA records: `image` and `conversations` turns; text nodes carry their role.

use super::*;

pub(super) fn read(doc: &mut Document, o: &mut Map<String, Value>, ctx: &RecordContext) {
    match o.shift_remove("image") {
        Some(Value::Array(imgs)) => imgs.iter().for_each(|v| doc.nodes.push(resolve_image(v, ctx))),
        Some(Value::Null) | None => {}
        Some(v) => doc.nodes.push(resolve_image(&v, ctx)),
    }
    let Some(Value::Array(turns)) = o.shift_remove("conversations") else {
        doc.set_error(RecordError::new(ErrorKind::BadRecord, "LLaVA record without a conversations list"));
        return;
    };
    for (k, t) in turns.iter().enumerate() {
        let mut node = match t {
            Value::Object(_) => text_node(t.get("value"), || format!("LLaVA turn {k} value"), ctx),
            // A bare string is the turn's text (no role); null or a list is the turn's error.
            other => text_node(Some(other), || format!("LLaVA turn {k}"), ctx),
        };
        node.role = t.get("from").and_then(Value::as_str).map(String::from);
        doc.nodes.push(node);
    }
}

pub(super) fn write(doc: &Document, o: &mut Map<String, Value>, img: &ImageValue) {
    let images: Vec<Value> = doc.nodes.iter().filter(|n| n.kind == Some(NodeKind::Image)).map(img).collect();
    match images.len() {
        0 => {}
        1 => {
            o.insert("image".into(), images.into_iter().next().unwrap_or_default());
        }
        _ => {
            o.insert("image".into(), Value::Array(images));
        }
    }
    let turns: Vec<Value> = doc
        .nodes
        .iter()
        .filter(|n| n.kind == Some(NodeKind::Text))
        .map(|n| {
            let mut t = Map::new();
            if let Some(r) = &n.role {
                t.insert("from".into(), Value::String(r.clone()));
            }
            t.insert("value".into(), Value::String(n.text.clone().unwrap_or_default()));
            Value::Object(t)
        })
        .collect();
    o.insert("conversations".into(), Value::Array(turns));
}
