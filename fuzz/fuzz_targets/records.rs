//! Fuzz target over the shard readers: WebDataset tar streams (members grouped into samples,
//! samples into documents, documents back into members) and JSON lines in every record layout
//! (detected or named), each document written back to its layout and read again. Damage must
//! come out as error values: any panic, sanitizer report or allocation over libFuzzer's limits
//! is a finding, and so is a record that does not survive its own round trip (a document read
//! without error, written back to the layout it came from and read again, must come back
//! equal (its metadata as JSON), and write back to the same JSON). Run: `make fuzz FUZZ_TARGET=records`.
#![no_main]

use std::io::Cursor;

use interleaf_core::doc::NodeBatch;
use interleaf_core::formats::{document_to_record, Format, JsonlReader, RecordContext};
use interleaf_core::shard::{document_to_members, key_for, sample_to_document, SampleReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    if selector & 1 == 0 {
        tar(body, selector);
    } else {
        jsonl(body, selector);
    }
});

fn context() -> RecordContext {
    // No image file is read: paths stay references, so the target touches no file system.
    RecordContext::for_source("/nonexistent/fuzz.jsonl", None, false)
}

fn tar(body: &[u8], selector: u8) {
    let max_member = [64u64, 4096, 1 << 20][(selector >> 1) as usize % 3];
    let mut batch = NodeBatch::default();
    for (i, sample) in SampleReader::new(Cursor::new(body), "fuzz.tar", max_member).enumerate() {
        let doc = sample_to_document(sample);
        let members = document_to_members(&doc, &key_for(&doc.doc_id));
        assert!(!members.is_empty() || doc.nodes.is_empty() || doc.error.is_some() || doc.nodes.iter().all(|n| n.error.is_some()));
        batch.push(doc, i as i64);
    }
}

fn jsonl(body: &[u8], selector: u8) {
    let format = match (selector >> 1) as usize % 7 {
        0 => None,
        k => Some(Format::ALL[k - 1]),
    };
    let mut batch = NodeBatch::default();
    let docs: Vec<_> = JsonlReader::new(Cursor::new(body), format, context()).with_max_line_bytes(1 << 16).collect();
    for (i, doc) in docs.into_iter().enumerate() {
        if let Some(f) = format {
            round_trip(&doc, f);
        }
        for f in Format::ALL {
            let _ = serde_json::to_string(&document_to_record(&doc, f, true)).unwrap();
        }
        batch.push(doc, i as i64);
    }
}

/// A document read without error survives being written back to its layout and read again.
fn round_trip(doc: &interleaf_core::doc::Document, format: Format) {
    if doc.error.is_some() || doc.nodes.iter().any(|n| n.error.is_some()) {
        return;
    }
    let line = serde_json::to_string(&document_to_record(doc, format, false)).unwrap();
    let again: Vec<_> = JsonlReader::new(Cursor::new(line.as_bytes()), Some(format), context()).collect();
    assert_eq!(again.len(), 1, "{line}");
    let mut back = again.into_iter().next().unwrap();
    // Metadata as JSON values: a layout's writer may order the keys its own way.
    let parsed = |m: &Option<String>| m.as_deref().map(|m| serde_json::from_str::<serde_json::Value>(m).unwrap());
    let (mut got, want) = (parsed(&back.meta), parsed(&doc.meta));
    if format == Format::Comm && want.as_ref().and_then(|w| w.get("data_id")).is_none() {
        // A CoMM record always carries the data_id its loader reads (beside a doc_id).
        if let Some(serde_json::Value::Object(m)) = got.as_mut() {
            m.remove("data_id");
        }
        if got.as_ref().is_some_and(|g| g.as_object().is_some_and(|m| m.is_empty())) && want.is_none() {
            got = None;
        }
    }
    assert_eq!(got, want, "{line}");
    (back.source, back.meta) = (doc.source.clone(), doc.meta.clone());
    assert_eq!(&back, doc, "{line}");
    let line2 = serde_json::to_string(&document_to_record(&back, format, false)).unwrap();
    assert_eq!(line, line2);
}
