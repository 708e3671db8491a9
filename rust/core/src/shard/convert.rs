//! WebDataset samples to documents and back.
//!
//! Two sample shapes are read:
//! - **pair**: an image member (`jpg`, `jpeg`, `png`, `webp`, `gif`, `bmp`) and a text member
//!   (`txt`, else `text` or `caption`), plus an optional `json` member that becomes the
//!   document metadata (`__image_ref__` in it is the image's path or URL, `__doc_id__` the
//!   document's id where the key is not). Other members are kept in the metadata under `"__extra__"`, up to
//!   [`MAX_EXTRA_BYTES`] per sample; the ones that would pass it are named, with their sizes,
//!   under `"__extra_skipped__"`.
//! - **interleaved**: a `json` member holding `{"doc_id", "meta", "nodes": [...]}`, where an
//!   image node names its image member (`{"kind": "image", "member": "2.jpg"}`) and a text node
//!   carries its text (`{"kind": "text", "text": "...", "step": 0}`).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::Sample;
use crate::doc::{Document, Node, NodeKind};
use crate::error::{ErrorKind, RecordError};
use crate::formats::nodes::parse_document;
use crate::formats::{error_json, json_text, json_too_costly, lone_surrogates, node_json, parse_json_lenient, parse_stored_json};

pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp"];
const TEXT_EXTENSIONS: &[&str] = &["txt", "text", "caption"];
const DOC_ID_KEY: &str = "__doc_id__";
/// A pair's image reference (the path or URL it was read from) in its json, so that a pair
/// read from records keeps the pair shape (`key.jpg`, `key.txt`) and its reference.
const IMAGE_REF_KEY: &str = "__image_ref__";
const EXTRA_KEY: &str = "__extra__";
/// The bytes of a sample's other members (beyond its image, text and json) kept in its metadata.
pub const MAX_EXTRA_BYTES: usize = 16 << 20;
/// The metadata key naming the other members not kept (over [`MAX_EXTRA_BYTES`]), with their sizes.
const SKIPPED_KEY: &str = "__extra_skipped__";

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

fn decode_text(data: &[u8], what: &str) -> (String, Option<RecordError>) {
    match std::str::from_utf8(data) {
        Ok(s) => (s.to_string(), None),
        Err(e) => (
            String::from_utf8_lossy(data).into_owned(),
            Some(RecordError::new(ErrorKind::InvalidUtf8, format!("{what}: {e}; invalid bytes replaced by U+FFFD"))),
        ),
    }
}

/// Whether a sample is in the interleaved shape: its json has a `nodes` list of objects with a
/// `kind` (an empty one only beside a `doc_id`, as our writer gives an empty document), and it
/// has no text member, which our writer never writes there. A pair whose own metadata happens
/// to have a `nodes` key stays a pair.
fn is_interleaved(v: &Value, members: &[(String, Vec<u8>)]) -> bool {
    let Some(nodes) = v.get("nodes").and_then(Value::as_array) else { return false };
    let node_like = nodes.iter().all(|n| n.get("kind").is_some());
    node_like && (!nodes.is_empty() || v.get("doc_id").is_some()) && !members.iter().any(|(e, _)| TEXT_EXTENSIONS.contains(&e.as_str()))
}

/// Converts one grouped sample into a document (see the module docs for the two shapes).
pub fn sample_to_document(sample: Sample) -> Document {
    let Sample { key, url, members, errors } = sample;
    let mut doc = Document::new(key.clone(), Some(url));
    for e in errors {
        doc.set_error(e);
    }
    let json_member = members.iter().find(|(e, _)| e == "json").map(|(_, d)| d.as_slice());
    let parsed: Option<Result<Value, RecordError>> = json_member.map(|data| {
        if let Some(why) = json_too_costly(data) {
            return Err(RecordError::new(ErrorKind::LineTooLong, format!("{key}.json has {why}: too many to parse in bounded memory")));
        }
        let (mut text, utf8_err) = decode_text(data, &format!("{key}.json"));
        match parse_json_lenient(&mut text) {
            Ok((v, surrogates)) => match utf8_err {
                Some(e) => Err(e),
                None => {
                    if surrogates > 0 {
                        doc.set_error(lone_surrogates(&format!("{key}.json"), surrogates));
                    }
                    Ok(v)
                }
            },
            Err(e) => Err(RecordError::new(ErrorKind::MalformedJson, format!("{key}.json: {e}"))),
        }
    });
    if let Some(Ok(v)) = &parsed {
        if is_interleaved(v, &members) {
            interleaved_from_json(&mut doc, v, &members);
            return doc;
        }
    }
    let mut meta = Map::new();
    match parsed {
        Some(Ok(Value::Object(m))) => meta = m,
        Some(Ok(other)) => {
            meta.insert("__json__".into(), other);
        }
        Some(Err(e)) => {
            if let Some(data) = json_member {
                meta.insert("__json__".into(), Value::String(String::from_utf8_lossy(data).into_owned()));
            }
            doc.set_error(e);
        }
        None => {}
    }
    if let Some(Value::String(id)) = meta.remove(DOC_ID_KEY) {
        doc.doc_id = id;
    }
    let image_ref = match meta.remove(IMAGE_REF_KEY) {
        Some(Value::String(r)) => Some(r),
        Some(other) => {
            meta.insert(IMAGE_REF_KEY.into(), other);
            None
        }
        None => None,
    };
    let image_ext = IMAGE_EXTENSIONS.iter().find(|e| members.iter().any(|(m, _)| m == *e)).copied();
    let text_ext = TEXT_EXTENSIONS.iter().find(|e| members.iter().any(|(m, _)| m == *e)).copied();
    let mut extra = match meta.remove(EXTRA_KEY) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let (mut extra_bytes, mut skipped) = (0usize, Map::new());
    for (ext, data) in members {
        if Some(ext.as_str()) == image_ext {
            doc.nodes.insert(0, Node::image(Some(data), image_ref.clone()));
        } else if Some(ext.as_str()) == text_ext {
            let (text, err) = decode_text(&data, &format!("{key}.{ext}"));
            let mut node = Node::text(text);
            node.error = err;
            doc.nodes.push(node);
        } else if ext != "json" {
            let ext = member_ext(&ext);
            // Kept in the metadata (JSON, base64 when binary: several copies of it in a run),
            // so only up to MAX_EXTRA_BYTES in all; a member that would pass it is not kept,
            // its size noted under SKIPPED_KEY (the sample's image and text are unharmed).
            if extra_bytes + data.len() > MAX_EXTRA_BYTES {
                skipped.insert(ext, Value::from(data.len()));
                continue;
            }
            extra_bytes += data.len();
            // Text stays text; anything else (invalid UTF-8, or control bytes, which JSON
            // would escape to six bytes each) is base64, a third larger whatever the bytes.
            let v = match std::str::from_utf8(&data) {
                Ok(s) if !data.iter().any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) => Value::String(s.to_string()),
                _ => json!({"base64": b64().encode(&data)}),
            };
            extra.insert(ext, v);
        }
    }
    if !extra.is_empty() {
        meta.insert(EXTRA_KEY.into(), Value::Object(extra));
    }
    if !skipped.is_empty() {
        meta.insert(SKIPPED_KEY.into(), Value::Object(skipped));
    }
    match (image_ext, text_ext) {
        (Some(_), None) => doc.set_error(RecordError::new(ErrorKind::MissingPartner, format!("sample {key:?} has an image but no txt member"))),
        (None, Some(_)) => doc.set_error(RecordError::new(ErrorKind::MissingPartner, format!("sample {key:?} has a text but no image member"))),
        _ => {}
    }
    if !meta.is_empty() {
        doc.meta = Some(json_text(&Value::Object(meta)));
    }
    doc
}

fn interleaved_from_json(doc: &mut Document, v: &Value, members: &[(String, Vec<u8>)]) {
    let Some(o) = v.as_object() else { return };
    let doc_id = o.get("doc_id").and_then(Value::as_str).unwrap_or(&doc.doc_id).to_string();
    parse_document(doc, o, |n, node| {
        if let Some(member) = n.get("member").and_then(Value::as_str) {
            match members.iter().find(|(e, _)| e == member) {
                Some((_, data)) => node.image = Some(data.clone()),
                None => node.error = Some(RecordError::new(ErrorKind::MissingImage, format!("sample {doc_id:?} names member {member:?}, which is absent"))),
            }
        }
    });
}

/// The file extension for encoded image bytes, from their magic number (the one sniffer,
/// [`crate::image::probe::sniff`]); `bin` for bytes of no known format.
pub fn sniff_image_ext(data: &[u8]) -> &'static str {
    match crate::image::probe::sniff(data) {
        Some("JPEG") => "jpg",
        Some("PNG") => "png",
        Some("WEBP") => "webp",
        Some("GIF") => "gif",
        Some("BMP") => "bmp",
        _ => "bin",
    }
}

/// An extra member's extension as written and as read back: path separators become `_`, so a
/// metadata key such as `x/../../etc` can neither escape the archive's folder nor be dropped
/// on reading (a member name with a `/` after its dot has no extension).
pub fn member_ext(ext: &str) -> String {
    ext.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c }).collect()
}

/// The longest key [`key_for`] gives, in bytes: member names stay file names any file system
/// takes (255 bytes) and far from any reader's limit on a tar header.
pub const MAX_KEY_BYTES: usize = 160;

/// A WebDataset key for a doc_id: dots and slashes become underscores (a dot would end the key);
/// an id over [`MAX_KEY_BYTES`] is cut and ends in a hash of the whole id. Where the key is not
/// the id, the sample's json keeps the id.
pub fn key_for(doc_id: &str) -> String {
    let k: String = doc_id.chars().map(|c| if c == '.' || c == '/' || c.is_control() { '_' } else { c }).collect();
    let k = if k.is_empty() || k.starts_with("__") { format!("doc{k}") } else { k };
    if k.len() <= MAX_KEY_BYTES {
        return k;
    }
    let mut cut = MAX_KEY_BYTES - 17;
    while !k.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{:016x}", &k[..cut], crate::hash::xxh3_64(doc_id.as_bytes()))
}

fn is_simple_pair(doc: &Document) -> bool {
    if doc.error.is_some() || doc.nodes.len() != 2 {
        return false;
    }
    let (a, b) = (&doc.nodes[0], &doc.nodes[1]);
    let plain = |n: &Node| n.step.is_none() && n.role.is_none() && n.error.is_none();
    // The image must be of a known format: its member extension is how a reader finds it (an
    // empty or unknown image is written in the interleaved form, which names its member).
    // Its reference (a pair read from records has one) goes in the json.
    let known = a.image.as_deref().is_some_and(|img| sniff_image_ext(img) != "bin");
    plain(a) && plain(b) && a.kind == Some(NodeKind::Image) && known && b.kind == Some(NodeKind::Text) && b.text.is_some()
}

/// The members (extension, bytes) that represent `doc` under `key`, in a fixed order.
pub fn document_to_members(doc: &Document, key: &str) -> Vec<(String, Vec<u8>)> {
    let meta: Map<String, Value> =
        doc.meta.as_deref().and_then(parse_stored_json).and_then(|v| if let Value::Object(o) = v { Some(o) } else { None }).unwrap_or_default();
    let mut out = Vec::new();
    // A pair whose own metadata has the key its image reference would go under is written in
    // the interleaved form, which keeps both.
    if is_simple_pair(doc) && !meta.contains_key(IMAGE_REF_KEY) {
        let image = doc.nodes[0].image.as_ref().expect("pair image");
        out.push((sniff_image_ext(image).to_string(), image.clone()));
        out.push(("txt".to_string(), doc.nodes[1].text.as_ref().expect("pair text").as_bytes().to_vec()));
        let mut meta = meta;
        if let Some(Value::Object(extra)) = meta.remove(EXTRA_KEY) {
            for (ext, v) in extra {
                let ext = member_ext(&ext);
                let data = match v {
                    Value::String(s) => s.into_bytes(),
                    other => other.get("base64").and_then(Value::as_str).and_then(|s| b64().decode(s).ok()).unwrap_or_default(),
                };
                out.push((ext, data));
            }
        }
        if doc.doc_id != key {
            meta.insert(DOC_ID_KEY.into(), Value::String(doc.doc_id.clone()));
        }
        if let Some(r) = &doc.nodes[0].image_ref {
            meta.insert(IMAGE_REF_KEY.into(), Value::String(r.clone()));
        }
        if !meta.is_empty() {
            out.push(("json".to_string(), json_text(&Value::Object(meta)).into_bytes()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        return out;
    }
    let mut nodes = Vec::with_capacity(doc.nodes.len());
    let mut images = Vec::new();
    for (pos, n) in doc.nodes.iter().enumerate() {
        let image = n.image.as_ref().map(|img| {
            let member = format!("{pos}.{}", sniff_image_ext(img));
            images.push((member.clone(), img.clone()));
            ("member", Value::String(member))
        });
        nodes.push(node_json(n, image));
    }
    let mut body = Map::new();
    body.insert("doc_id".into(), Value::String(doc.doc_id.clone()));
    if !meta.is_empty() {
        body.insert("meta".into(), Value::Object(meta));
    }
    if let Some(e) = &doc.error {
        body.insert("error".into(), error_json(e));
    }
    body.insert("nodes".into(), Value::Array(nodes));
    out.push(("json".to_string(), json_text(&Value::Object(body)).into_bytes()));
    out.extend(images);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(members: &[(&str, &[u8])]) -> Sample {
        Sample { key: "k1".into(), url: "s.tar".into(), members: members.iter().map(|(e, d)| (e.to_string(), d.to_vec())).collect(), errors: vec![] }
    }

    #[test]
    fn pair_sample_becomes_image_then_text() {
        let d = sample_to_document(sample(&[("jpg", b"\xff\xd8\xffabc"), ("txt", b"a cat"), ("json", br#"{"url":"u"}"#)]));
        assert_eq!(d.nodes.len(), 2);
        assert_eq!(d.nodes[0].kind, Some(NodeKind::Image));
        assert_eq!(d.nodes[1].text.as_deref(), Some("a cat"));
        assert_eq!(d.meta.as_deref(), Some(r#"{"url":"u"}"#));
        assert!(d.error.is_none());
    }

    #[test]
    fn a_pair_whose_metadata_has_a_nodes_key_stays_a_pair() {
        for json in [&br#"{"url":"u","nodes":[]}"#[..], br#"{"nodes":[{"kind":"tree"}]}"#, br#"{"nodes":[{"kind":"text","text":"x"}]}"#] {
            let d = sample_to_document(sample(&[("jpg", b"\xff\xd8\xffabc"), ("txt", b"a cat"), ("json", json)]));
            assert_eq!(d.nodes.len(), 2, "{}", String::from_utf8_lossy(json));
            assert_eq!(d.nodes[1].text.as_deref(), Some("a cat"));
            assert!(d.error.is_none());
        }
        // Our own interleaved shape, an empty document included, is still read as such.
        let d = sample_to_document(sample(&[("json", br#"{"doc_id":"d","nodes":[{"kind":"text","text":"x"}]}"#)]));
        assert_eq!((d.doc_id.as_str(), d.nodes[0].text.as_deref()), ("d", Some("x")));
        let d = sample_to_document(sample(&[("json", br#"{"doc_id":"e","nodes":[]}"#)]));
        assert_eq!((d.doc_id.as_str(), d.nodes.len()), ("e", 0));
    }

    #[test]
    fn image_without_text_is_kept_with_missing_partner() {
        let d = sample_to_document(sample(&[("png", b"\x89PNGxx")]));
        assert_eq!(d.nodes.len(), 1);
        assert_eq!(d.error.as_ref().unwrap().kind.as_str(), "missing_partner");
    }

    #[test]
    fn invalid_utf8_text_is_replaced_and_flagged() {
        let d = sample_to_document(sample(&[("jpg", b"\xff\xd8\xff"), ("txt", b"caf\xe9")]));
        assert_eq!(d.nodes[1].text.as_deref(), Some("caf\u{fffd}"));
        assert_eq!(d.nodes[1].error.as_ref().unwrap().kind.as_str(), "invalid_utf8");
    }

    #[test]
    fn interleaved_round_trip() {
        let mut doc = Document::new("doc.1", None);
        doc.nodes.push(Node::text("step one").with_step(Some(0)));
        doc.nodes.push(Node::image(Some(b"\x89PNGdata".to_vec()), None).with_step(Some(0)));
        doc.meta = Some(r#"{"title":"t"}"#.into());
        let key = key_for(&doc.doc_id);
        assert_eq!(key, "doc_1");
        let members = document_to_members(&doc, &key);
        let back = sample_to_document(Sample { key, url: "s".into(), members, errors: vec![] });
        assert_eq!(back.nodes, doc.nodes);
        assert_eq!(back.doc_id, doc.doc_id);
        assert_eq!(back.meta, doc.meta);
    }

    #[test]
    fn pair_round_trip_keeps_doc_id_and_extra_members() {
        let d = sample_to_document(sample(&[("jpg", b"\xff\xd8\xffabc"), ("txt", b"a cat"), ("cls", b"3"), ("npy", b"\x93NUMPY\xff")]));
        let mut d2 = d.clone();
        d2.doc_id = "pairs.jsonl:3".into();
        let key = key_for(&d2.doc_id);
        let members = document_to_members(&d2, &key);
        let back = sample_to_document(Sample { key, url: "s".into(), members, errors: vec![] });
        assert_eq!(back.doc_id, "pairs.jsonl:3");
        assert_eq!(back.nodes, d.nodes);
        assert_eq!(back.meta, d.meta);
    }

    #[test]
    fn a_pair_read_from_records_keeps_the_pair_shape_and_its_image_reference() {
        // A pair from jsonl/parquet has a path: still key.jpg + key.txt (what OpenCLIP's
        // loaders read), the path in the json, and read back as it was.
        let mut d = Document::new("pair-1", Some("pairs.jsonl".into()));
        d.nodes.push(Node::image(Some(b"\xff\xd8\xffabc".to_vec()), Some("images/a.jpg".into())));
        d.nodes.push(Node::text("a cat"));
        d.meta = Some(r#"{"license":"CC0"}"#.into());
        let members = document_to_members(&d, "pair-1");
        let exts: Vec<&str> = members.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(exts, ["jpg", "json", "txt"]);
        let back = sample_to_document(Sample { key: "pair-1".into(), url: "s.tar".into(), members, errors: vec![] });
        assert_eq!(back.nodes, d.nodes);
        assert_eq!(back.meta, d.meta);
        // A reference that is not text stays in the metadata as it was.
        let odd = sample_to_document(sample(&[("jpg", b"\xff\xd8\xffabc"), ("txt", b"x"), ("json", br#"{"__image_ref__":3}"#)]));
        assert_eq!((odd.nodes[0].image_ref.as_deref(), odd.meta.as_deref()), (None, Some(r#"{"__image_ref__":3}"#)));
        // A pair whose metadata already has that key keeps it (written interleaved).
        let mut own = d.clone();
        own.meta = Some(r#"{"__image_ref__":"mine"}"#.into());
        let members = document_to_members(&own, "pair-1");
        let back = sample_to_document(Sample { key: "pair-1".into(), url: "s.tar".into(), members, errors: vec![] });
        assert_eq!((back.nodes, back.meta), (own.nodes, own.meta));
    }

    #[test]
    fn extra_members_are_kept_up_to_their_limit() {
        let big = vec![0u8; MAX_EXTRA_BYTES - 10];
        let d = sample_to_document(sample(&[("jpg", b"\xff\xd8\xffabc"), ("txt", b"a cat"), ("a.bin", &big), ("b.bin", &[1u8; 20])]));
        let meta: Value = serde_json::from_str(d.meta.as_deref().unwrap()).unwrap();
        assert!(meta["__extra__"].get("a.bin").is_some() && meta["__extra__"].get("b.bin").is_none());
        assert_eq!(meta["__extra_skipped__"], json!({"b.bin": 20}));
        // The pair itself is unharmed, and a smaller member after a skipped one is still kept.
        assert!(d.error.is_none() && d.nodes.len() == 2);
        let d = sample_to_document(sample(&[("jpg", b"\xff\xd8\xffabc"), ("txt", b"a cat"), ("a.bin", &vec![0u8; MAX_EXTRA_BYTES + 1]), ("b.bin", b"small")]));
        let meta: Value = serde_json::from_str(d.meta.as_deref().unwrap()).unwrap();
        assert_eq!((meta["__extra__"]["b.bin"].as_str(), &meta["__extra_skipped__"]), (Some("small"), &json!({"a.bin": MAX_EXTRA_BYTES + 1})));
    }
}
