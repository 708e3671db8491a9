//! Fuzz target over the text paths: OBELICS statistics and the paragraph filter, shingles and
//! MinHash signatures (word and character units, every scheme's shingle walk), the normalised
//! exact key and the caption metrics, on arbitrary UTF-8. Any panic, sanitizer report or
//! allocation over libFuzzer's limits is a finding, and so is a broken invariant checked
//! below (statistics in their ranges, the hashed shingle walk agreeing with the shingle list,
//! the normalised key's shape, metric values finite and in [0, 1] where they are bounded).
//! Run: `make fuzz FUZZ_TARGET=text`.
#![no_main]

use interleaf_core::hash::exact::normalized_text_xxh3;
use interleaf_core::hash::minhash::{signatures, MinHashParams};
use interleaf_core::text::caption::{bleu, cider, rouge_l};
use interleaf_core::text::normalize;
use interleaf_core::text::obelics::{filter_paragraphs_and_stats, text_stats, ParagraphRules, StatsParams};
use interleaf_core::text::shingle::{for_each_shingle_hash, shingles, Unit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(body) else { return };
    let n = 1 + (selector as usize & 7);
    let unit = if selector & 8 != 0 { Unit::Char } else { Unit::Word };

    for p in [StatsParams::PARAGRAPH, StatsParams::DOCUMENT] {
        let s = text_stats(text, &p);
        for r in [s.char_repetition, s.word_repetition, s.special_char_ratio, s.stopword_ratio, s.flagged_word_ratio, s.punctuation_ratio] {
            assert!(r.is_finite() && (0.0..=1.0).contains(&r), "{s:?}");
        }
    }
    let (kept, removed, _) = filter_paragraphs_and_stats(text, &ParagraphRules::default(), &StatsParams::PARAGRAPH);
    assert!(kept.is_some() || !removed.is_empty() || text.trim().is_empty());

    let list = shingles(text, n, unit);
    let mut units = Vec::new();
    let mut walked = 0usize;
    for_each_shingle_hash(text, n, unit, 1, &mut units, |_| walked += 1);
    assert!(walked >= list.len(), "{walked} hashed, {} distinct", list.len());
    assert_eq!(walked == 0, list.is_empty());
    let params = MinHashParams::fast(16, n, unit, u64::from(selector));
    let sig = signatures(&[text, ""], &params);
    assert_eq!(sig.len(), 32);

    // The key is Python's `" ".join(NFKC(t).lower().split())`, which is not idempotent (a
    // lower-cased "İ" before a combining mark leaves marks out of canonical order): checked
    // here is its shape.
    for strip in [false, true] {
        let once = normalize(text, strip);
        assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "), "{once:?}");
        let _ = normalized_text_xxh3(text, strip);
    }

    let lines: Vec<&str> = text.lines().collect();
    if let Some((hyp, refs)) = lines.split_first() {
        let refs: Vec<&str> = if refs.is_empty() { vec![*hyp] } else { refs.to_vec() };
        let hyps = [*hyp, *hyp];
        let refs = [refs.clone(), refs];
        let b = bleu(&hyps, &refs);
        for v in b.corpus.iter().chain(b.per.iter().flatten()) {
            assert!(v.is_finite() && (0.0..=1.0 + 1e-12).contains(v), "bleu {v}");
        }
        for v in rouge_l(&hyps, &refs) {
            assert!(v.is_finite() && (0.0..=1.0 + 1e-12).contains(&v), "rouge {v}");
        }
        for v in cider(&hyps, &refs) {
            assert!(v.is_finite() && v >= 0.0, "cider {v}");
        }
    }
});
