//! OBELICS records: aligned `texts` / `images` lists, one non-null per position.

use super::*;

pub(super) fn read(doc: &mut Document, o: &mut Map<String, Value>, ctx: &RecordContext) {
    let texts = o.remove("texts").and_then(|v| if let Value::Array(a) = v { Some(a) } else { None }).unwrap_or_default();
    let images = o.remove("images").and_then(|v| if let Value::Array(a) = v { Some(a) } else { None }).unwrap_or_default();
    if texts.len() != images.len() {
        doc.set_error(RecordError::new(ErrorKind::BadRecord, format!("OBELICS texts ({}) and images ({}) differ in length", texts.len(), images.len())));
    }
    for i in 0..texts.len().max(images.len()) {
        let img = images.get(i).filter(|v| !v.is_null());
        let txt = texts.get(i).filter(|v| !v.is_null());
        if let Some(v) = img {
            doc.nodes.push(resolve_image(v, ctx));
        }
        if let Some(t) = txt {
            doc.nodes.push(Node::text(value_text(t)));
        }
    }
}
