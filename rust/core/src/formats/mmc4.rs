//! MMC4 records: `text_list` and `image_info` with `matched_text_index`; an image goes right before its matched sentence.

use super::*;

pub(super) fn read(doc: &mut Document, o: &mut Map<String, Value>, ctx: &RecordContext) {
    let Some(Value::Array(texts)) = o.shift_remove("text_list") else {
        doc.set_error(RecordError::new(ErrorKind::BadRecord, "MMC4 record without a text_list array"));
        return;
    };
    let infos: Vec<Value> = match o.get("image_info") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        // Nothing to keep for writing back (which always writes the list, empty or not).
        None | Some(Value::Null) | Some(Value::Array(_)) => {
            o.shift_remove("image_info");
            Vec::new()
        }
        Some(other) => {
            // The sentences are still read; the images cannot be.
            doc.set_error(RecordError::new(ErrorKind::BadRecord, format!("MMC4 image_info must be a list, not {}", json_type(other))));
            Vec::new()
        }
    };
    let mut before: Vec<Vec<Node>> = vec![Vec::new(); texts.len()];
    let mut unplaced = Vec::new();
    for info in &infos {
        let mut node = Node::image(None, None);
        node.image_ref = info.get("raw_url").or_else(|| info.get("image_name")).and_then(Value::as_str).map(String::from);
        if let Some(bytes) = info.get("image_base64").and_then(|b| inline_bytes(b, ctx, true, "image_base64")) {
            match bytes {
                Ok(bytes) => node.image = Some(bytes),
                Err(e) => node.error = Some(e),
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
            _ => {
                let msg = match info.get("matched_text_index") {
                    None => "image has no matched_text_index".to_string(),
                    Some(v) => format!(
                        "image matched_text_index {} is not an index into text_list (len {})",
                        v.to_string().chars().take(40).collect::<String>(),
                        texts.len()
                    ),
                };
                node.error = Some(RecordError::new(ErrorKind::BadRecord, msg));
                unplaced.push(node);
            }
        }
    }
    // MMC4 convention (as open_flamingo reads it): an image goes right before its matched sentence.
    for (imgs, t) in before.into_iter().zip(texts) {
        doc.nodes.extend(imgs);
        // A null sentence stays a text node (image positions count sentences), without text.
        doc.nodes.push(if t.is_null() {
            Node { kind: Some(NodeKind::Text), ..Default::default() }
        } else {
            text_node(Some(&t), || "MMC4 sentence".into(), ctx)
        });
    }
    doc.nodes.extend(unplaced);
}

pub(super) fn write(doc: &Document, o: &mut Map<String, Value>, img: &ImageValue) {
    let mut infos: Vec<Option<Value>> = match o.shift_remove("image_info") {
        Some(Value::Array(a)) => a.into_iter().map(Some).collect(),
        _ => Vec::new(),
    };
    let texts: Vec<Value> = doc.nodes.iter().filter(|n| n.kind == Some(NodeKind::Text)).map(|n| n.text.clone().map_or(Value::Null, Value::String)).collect();
    // MMC4's `similarity_matrix` is len(image_info) x len(text_list): its rows follow the record's
    // entries, its columns the sentences. Usable only while both are the record's own.
    let matrix = o.shift_remove("similarity_matrix");
    let rows: Option<Vec<&Vec<Value>>> = match &matrix {
        Some(Value::Array(rows)) if rows.len() == infos.len() => rows.iter().map(|r| r.as_array().filter(|r| r.len() == texts.len())).collect(),
        _ => None,
    };
    let mut image_info = Vec::new();
    let mut seen_texts = 0usize;
    for n in &doc.nodes {
        match n.kind {
            Some(NodeKind::Text) => seen_texts += 1,
            Some(NodeKind::Image) => {
                // The record's own entry for this image (matched by its reference; an image read
                // without one, by an entry that names none either), else a new one.
                fn named<'v>(v: &'v Value, k: &str) -> Option<&'v str> {
                    v.get(k).and_then(Value::as_str)
                }
                // An image without a reference is compared by its base64, encoded once here
                // (decoding every candidate entry for every image was quadratic in bytes).
                let encoded = if n.image_ref.is_none() { n.image.as_deref().map(|b| b64().encode(b)) } else { None };
                let same = |v: &Value| match n.image_ref.as_deref() {
                    Some(r) => named(v, "raw_url") == Some(r) || named(v, "image_name") == Some(r),
                    // Without a reference: the entry that names none and holds these bytes (or,
                    // for an image without bytes either, one that holds none).
                    None => {
                        named(v, "raw_url").is_none()
                            && named(v, "image_name").is_none()
                            && match (&n.image, v.get("image_base64")) {
                                (Some(_), Some(b)) => entry_base64(b) == encoded.as_deref(),
                                (None, None) => true,
                                _ => false,
                            }
                    }
                };
                let found = infos.iter_mut().enumerate().find(|(_, i)| i.as_ref().is_some_and(same)).and_then(|(k, i)| i.take().map(|v| (k, v)));
                let order = found.as_ref().map_or(usize::MAX, |(k, _)| *k);
                let mut entry = match found {
                    // The record's own entry; with `embed_images` (the image value is a `data:`
                    // URI while the entry holds no bytes) the bytes replace its `image_name`
                    // path, as in a new entry, and its other fields (`raw_url`) stay.
                    Some((_, Value::Object(mut m))) => {
                        if !m.contains_key("image_base64") && n.image.is_some() {
                            if let Value::String(s) = img(n) {
                                if s.starts_with("data:") {
                                    m.shift_remove("image_name");
                                    m.insert("image_base64".into(), Value::String(s));
                                }
                            }
                        }
                        m
                    }
                    _ => {
                        let mut m = Map::new();
                        match img(n) {
                            Value::String(s) if s.starts_with("data:") => {
                                m.insert("image_base64".into(), Value::String(s));
                            }
                            // A local path is MMC4's `image_name` (read back from the image
                            // root); only a URL is a `raw_url`, which is never fetched.
                            Value::String(s) if !is_url(&s) => {
                                m.insert("image_name".into(), Value::String(s));
                            }
                            v => {
                                m.insert("raw_url".into(), v);
                            }
                        }
                        m
                    }
                };
                // An image goes right before its matched sentence: the next text node.
                let idx = seen_texts.min(texts.len().saturating_sub(1));
                let moved = entry.get("matched_text_index").and_then(Value::as_u64) != Some(idx as u64);
                entry.insert("matched_text_index".into(), json!(idx));
                // `matched_sim` is the similarity with the matched sentence: from the matrix for
                // an image matched anew; where the record's matrix no longer fits its sentences
                // (some were removed), which sentence it was is unknown, so it goes rather than
                // stay wrong. Without a matrix it is left as the record gave it.
                if entry.contains_key("matched_sim") {
                    match &rows {
                        Some(rows) => {
                            if let (true, Some(row)) = (moved, rows.get(order)) {
                                match row.get(idx) {
                                    Some(v) => entry.insert("matched_sim".into(), v.clone()),
                                    // No sentence at all: nothing it could be matched with.
                                    None => entry.shift_remove("matched_sim"),
                                };
                            }
                        }
                        None if matrix.is_some() => {
                            entry.shift_remove("matched_sim");
                        }
                        None => {}
                    }
                }
                image_info.push((order, Value::Object(entry)));
            }
            None => {}
        }
    }
    o.insert("text_list".into(), Value::Array(texts));
    // The record's entries keep their order (new ones follow), so reading back places images
    // that share a sentence as before.
    image_info.sort_by_key(|(k, _)| *k);
    // The matrix keeps the rows of the images left, in their order; it goes where an image has
    // no row (a new one) or the sentences are not the record's.
    if let Some(rows) = rows {
        if let Some(kept) = image_info.iter().map(|(k, _)| rows.get(*k).map(|r| Value::Array(r.to_vec()))).collect::<Option<Vec<Value>>>() {
            o.insert("similarity_matrix".into(), Value::Array(kept));
        }
    }
    o.insert("image_info".into(), Value::Array(image_info.into_iter().map(|(_, v)| v).collect()));
}

/// The base64 payload of an entry's `image_base64` (a `data:` URI or bare base64).
fn entry_base64(v: &Value) -> Option<&str> {
    let s = v.as_str()?;
    Some(s.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")).map_or(s, |(_, p)| p).trim())
}
