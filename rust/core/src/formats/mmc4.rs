//! MMC4 records: `text_list` and `image_info` with `matched_text_index`; an image goes right before its matched sentence.

use super::*;

pub(super) fn read(doc: &mut Document, o: &mut Map<String, Value>, ctx: &RecordContext) {
    let Some(Value::Array(texts)) = o.remove("text_list") else {
        doc.set_error(RecordError::new(ErrorKind::BadRecord, "MMC4 record without a text_list array"));
        return;
    };
    let infos: Vec<Value> = o.get("image_info").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut before: Vec<Vec<Node>> = vec![Vec::new(); texts.len()];
    let mut unplaced = Vec::new();
    for info in &infos {
        let mut node = Node::image(None, None);
        node.image_ref = info.get("raw_url").or_else(|| info.get("image_name")).and_then(Value::as_str).map(String::from);
        if let Some(bytes) = info.get("image_base64").and_then(|b| inline_bytes(b, ctx, true)) {
            match bytes {
                Ok(bytes) => node.image = Some(bytes),
                Err(m) => node.error = Some(RecordError::new(ErrorKind::BadRecord, format!("image_base64: {m}"))),
            }
        } else if ctx.load_images && ctx.image_root_explicit {
            if let Some(name) = info.get("image_name").and_then(Value::as_str) {
                match load_file(name, ctx) {
                    Ok(bytes) => node.image = Some(bytes),
                    Err(e) => node.error = Some(e),
                }
            }
        }
        match info.get("matched_text_index").and_then(Value::as_u64).map(|i| i as usize) {
            Some(i) if i < texts.len() => before[i].push(node),
            other => {
                node.error =
                    Some(RecordError::new(ErrorKind::BadRecord, format!("image matched_text_index {other:?} is outside text_list (len {})", texts.len())));
                unplaced.push(node);
            }
        }
    }
    // MMC4 convention (as open_flamingo reads it): an image goes right before its matched sentence.
    for (imgs, t) in before.into_iter().zip(texts) {
        doc.nodes.extend(imgs);
        doc.nodes.push(Node::text(value_text(&t)));
    }
    doc.nodes.extend(unplaced);
}
