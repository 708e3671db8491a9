//! OBELICS records: aligned `texts` / `images` lists, one non-null per position.

use super::*;

pub(super) fn read(doc: &mut Document, o: &mut Map<String, Value>, ctx: &RecordContext) {
    let mut list = |key: &str| match o.shift_remove(key) {
        Some(Value::Array(a)) => Some(a),
        None | Some(Value::Null) => Some(Vec::new()),
        Some(other) => {
            // The other list is still read.
            doc.set_error(RecordError::new(ErrorKind::BadRecord, format!("OBELICS {key} must be a list, not {}", json_type(&other))));
            None
        }
    };
    let (texts, images) = (list("texts"), list("images"));
    let aligned = texts.is_some() && images.is_some();
    let (texts, images) = (texts.unwrap_or_default(), images.unwrap_or_default());
    if aligned && texts.len() != images.len() {
        doc.set_error(RecordError::new(ErrorKind::BadRecord, format!("OBELICS texts ({}) and images ({}) differ in length", texts.len(), images.len())));
    }
    for i in 0..texts.len().max(images.len()) {
        let img = images.get(i).filter(|v| !v.is_null());
        let txt = texts.get(i).filter(|v| !v.is_null());
        if let Some(v) = img {
            doc.nodes.push(resolve_image(v, ctx));
        }
        if let Some(t) = txt {
            doc.nodes.push(text_node(Some(t), || "OBELICS text".into(), ctx));
        }
    }
}

pub(super) fn write(doc: &Document, o: &mut Map<String, Value>, img: &ImageValue) {
    let (mut texts, mut images) = (Vec::new(), Vec::new());
    for n in &doc.nodes {
        match n.kind {
            Some(NodeKind::Text) => {
                texts.push(n.text.clone().map_or(Value::Null, Value::String));
                images.push(Value::Null);
            }
            Some(NodeKind::Image) => {
                texts.push(Value::Null);
                images.push(img(n));
            }
            None => {}
        }
    }
    o.insert("texts".into(), Value::Array(texts));
    o.insert("images".into(), Value::Array(images));
}
