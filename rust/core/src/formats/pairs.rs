//! Image-text pairs: `{"image": ..., "caption": ...}` and its key variants (LAION, DataComp, HF image datasets).

use super::*;

pub(crate) const PAIR_TEXT_KEYS: &[&str] = &["caption", "text", "txt"];
pub(crate) const PAIR_IMAGE_KEYS: &[&str] = &["image", "image_path", "jpg", "png", "webp", "img", "image_url", "url"];

pub(super) fn read(doc: &mut Document, o: &mut Map<String, Value>, ctx: &RecordContext) {
    let image = take_string(o, PAIR_IMAGE_KEYS);
    let text = take_string(o, PAIR_TEXT_KEYS);
    if let Some((_, v)) = &image {
        doc.nodes.push(resolve_image(v, ctx));
    }
    if let Some((_, v)) = &text {
        doc.nodes.push(text_node(Some(v), || "caption".into(), ctx));
    }
    match (image, text) {
        (Some(_), None) => doc.set_error(RecordError::new(ErrorKind::MissingPartner, "pair record has an image but no caption")),
        (None, Some(_)) => doc.set_error(RecordError::new(ErrorKind::MissingPartner, "pair record has a caption but no image")),
        (None, None) => doc.set_error(RecordError::new(ErrorKind::BadRecord, "pair record has neither an image nor a caption")),
        _ => {}
    }
}

/// Why `doc` cannot be written as a pair record without losing nodes (it has more than one
/// image or more than one text: an interleaved document); None when it can.
pub(super) fn unwritable(doc: &Document) -> Option<String> {
    let count = |k: NodeKind| doc.nodes.iter().filter(|n| n.kind == Some(k)).count();
    let (images, texts) = (count(NodeKind::Image), count(NodeKind::Text));
    (images > 1 || texts > 1).then(|| {
        format!(
            "document {:?} has {images} image(s) and {texts} text(s): a pairs record holds one image and one caption, so the others would be lost; \
             write interleaved documents as obelics, mmc4, comm or llava records, as jsonl (interleaf's nodes schema), parquet or webdataset \
             (convert --to, run --output-format)",
            doc.doc_id
        )
    })
}

/// The pair record of `doc`: its first image and first text (see [`unwritable`] for documents
/// that have more).
pub(super) fn write(doc: &Document, o: &mut Map<String, Value>, img: &ImageValue) {
    if let Some(n) = doc.nodes.iter().find(|n| n.kind == Some(NodeKind::Image)) {
        o.insert("image".into(), img(n));
    }
    if let Some(t) = doc.nodes.iter().find(|n| n.kind == Some(NodeKind::Text)).and_then(|n| n.text.clone()) {
        o.insert("caption".into(), Value::String(t));
    }
}
