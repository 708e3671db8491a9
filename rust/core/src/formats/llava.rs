//! LLaVA records: `image` and `conversations` turns; text nodes carry their role.

use super::*;

pub(super) fn read(doc: &mut Document, o: &mut Map<String, Value>, ctx: &RecordContext) {
    match o.remove("image") {
        Some(Value::Array(imgs)) => imgs.iter().for_each(|v| doc.nodes.push(resolve_image(v, ctx))),
        Some(Value::Null) | None => {}
        Some(v) => doc.nodes.push(resolve_image(&v, ctx)),
    }
    let Some(Value::Array(turns)) = o.remove("conversations") else {
        doc.set_error(RecordError::new(ErrorKind::BadRecord, "LLaVA record without a conversations list"));
        return;
    };
    for t in turns {
        let mut node = Node::text(t.get("value").map(value_text).unwrap_or_default());
        node.role = t.get("from").and_then(Value::as_str).map(String::from);
        doc.nodes.push(node);
    }
}
