//! Shingles: the overlapping n-grams of words or characters that MinHash sets are made of.

use super::py_split;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Words from Python's `str.split()`, joined by one space.
    Word,
    /// Unicode code points of the text as it is.
    Char,
}

impl Unit {
    pub fn parse(s: &str) -> Option<Unit> {
        match s {
            "word" => Some(Unit::Word),
            "char" => Some(Unit::Char),
            _ => None,
        }
    }
}

/// The distinct n-grams of `text`, in order of first appearance. A text shorter than `n` units
/// (but not empty) gives one shingle, the whole text in that unit; an empty text gives none.
pub fn shingles(text: &str, n: usize, unit: Unit) -> Vec<String> {
    let n = n.max(1);
    // Only distinct shingles are kept as they come (a character n-gram is checked while still a
    // slice of the text; a word n-gram once joined, then dropped if seen), so a long repetitive
    // text at a large n costs its distinct shingles, not (len - n) x n bytes.
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut keep = |g: std::borrow::Cow<'_, str>| {
        if !seen.contains(g.as_ref()) {
            seen.insert(g.clone().into_owned());
            out.push(g.into_owned());
        }
    };
    match unit {
        Unit::Word => {
            let words: Vec<&str> = py_split(text).collect();
            if words.is_empty() {
                return Vec::new();
            }
            if words.len() < n {
                keep(words.join(" ").into());
            } else {
                words.windows(n).for_each(|w| keep(w.join(" ").into()));
            }
        }
        Unit::Char => {
            let idx: Vec<usize> = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect();
            let chars = idx.len() - 1;
            if chars == 0 {
                return Vec::new();
            }
            if chars < n {
                keep(text.into());
            } else {
                (0..=chars - n).for_each(|i| keep(text[idx[i]..idx[i + n]].into()));
            }
        }
    }
    out
}

/// Calls `f` with the 64-bit hash of every n-gram (repeats included), without building
/// strings: each word (or character) is hashed once with [`unit_hash`], an n-gram's hash is
/// the polynomial `((u0 * P + u1) * P + ...) + u(n-1)` of its units' hashes mod 2^64, finalised
/// by [`fmix64`]. This is the token hash of MinHash's `fast` mode; `units` is scratch space.
pub fn for_each_shingle_hash(text: &str, n: usize, unit: Unit, seed: u64, units: &mut Vec<u64>, mut f: impl FnMut(u64)) {
    let n = n.max(1);
    units.clear();
    match unit {
        Unit::Word => {
            let bytes = text.as_bytes();
            super::for_each_word_span(text, |s, e| units.push(unit_hash_at(bytes, s, e, seed)));
        }
        Unit::Char => {
            let mut buf = [0u8; 4];
            units.extend(text.chars().map(|c| unit_hash(c.encode_utf8(&mut buf).as_bytes(), seed)));
        }
    }
    if units.is_empty() {
        return;
    }
    let poly = |us: &[u64]| us.iter().fold(0u64, |h, &u| h.wrapping_mul(POLY).wrapping_add(u));
    if units.len() < n {
        f(fmix64(poly(units)));
        return;
    }
    // Rolling: drop the oldest unit's term (times POLY^(n-1)), shift, add the next unit.
    let top = (1..n).fold(1u64, |p, _| p.wrapping_mul(POLY));
    let mut h = poly(&units[..n]);
    f(fmix64(h));
    for i in n..units.len() {
        h = h.wrapping_sub(units[i - n].wrapping_mul(top)).wrapping_mul(POLY).wrapping_add(units[i]);
        f(fmix64(h));
    }
}

/// Multiplier of the n-gram polynomial (odd, from the binary expansion of pi).
const POLY: u64 = 0x243F_6A88_85A3_08D3;
const K0: u64 = 0x9E37_79B9_7F4A_7C15;
const K1: u64 = 0xC2B2_AE3D_27D4_EB4F;
const K2: u64 = 0x1656_67B1_9E37_79F9;

/// 128-bit product folded to 64 bits.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline(always)]
fn read64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// A 64-bit hash of one short byte string (a word), built for speed: up to 16 bytes are read
/// as two little-endian words, zero-padded (with the length, they determine the input), and
/// mixed by one folded 128-bit multiply; longer inputs fold 16-byte blocks in first.
#[inline]
pub fn unit_hash(w: &[u8], seed: u64) -> u64 {
    if w.len() <= 16 {
        let mut t = [0u8; 16];
        t[..w.len()].copy_from_slice(w);
        short_hash(read64(&t, 0), read64(&t, 8), w.len(), seed)
    } else {
        long_hash(w, seed)
    }
}

/// [`unit_hash`] of `bytes[s..e]`, the same value, without a copy or a branch on the length
/// when 16 bytes can be read from `s`: the bytes past `e` are masked off.
#[inline(always)]
pub fn unit_hash_at(bytes: &[u8], s: usize, e: usize, seed: u64) -> u64 {
    let len = e - s;
    if len > 16 || s + 16 > bytes.len() {
        return unit_hash_cold(&bytes[s..e], seed);
    }
    let keep = |n: usize| ((1u128 << (8 * n.min(8))) - 1) as u64;
    let a = read64(bytes, s) & keep(len);
    let b = read64(bytes, s + 8) & keep(len.saturating_sub(8));
    short_hash(a, b, len, seed)
}

#[cold]
#[inline(never)]
fn unit_hash_cold(w: &[u8], seed: u64) -> u64 {
    unit_hash(w, seed)
}

#[inline(always)]
fn short_hash(a: u64, b: u64, len: usize, seed: u64) -> u64 {
    fold_mul(a ^ K0 ^ seed, b ^ K1 ^ (len as u64).wrapping_mul(K2))
}

#[cold]
fn long_hash(w: &[u8], seed: u64) -> u64 {
    let len = w.len();
    let mut h = seed;
    let mut i = 0;
    while i + 16 < len {
        h = fold_mul(read64(w, i) ^ K1, read64(w, i + 8) ^ h ^ K0);
        i += 16;
    }
    short_hash(read64(w, len - 16) ^ h, read64(w, len - 8), len, seed)
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline(always)]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_shingles_are_distinct_and_ordered() {
        assert_eq!(shingles("a b a b a", 2, Unit::Word), vec!["a b", "b a"]);
        assert_eq!(shingles("one", 5, Unit::Word), vec!["one"]);
        assert!(shingles("  ", 5, Unit::Word).is_empty());
    }

    #[test]
    fn unit_hash_separates_close_inputs() {
        // Every length from 0 to 40, and inputs that differ in one byte at each position.
        let mut seen = std::collections::HashSet::new();
        for len in 0..=40usize {
            let base: Vec<u8> = (0..len as u8).map(|i| b'a' + i % 26).collect();
            assert!(seen.insert(unit_hash(&base, 1)), "len {len}");
            for pos in 0..len {
                let mut w = base.clone();
                w[pos] ^= 0x20;
                assert!(seen.insert(unit_hash(&w, 1)), "len {len} pos {pos}");
            }
        }
        assert_ne!(unit_hash(b"word", 1), unit_hash(b"word", 2));
    }

    #[test]
    fn unit_hash_at_equals_unit_hash() {
        let text: Vec<u8> = (0..60u8).map(|i| b'!' + i).collect();
        for s in 0..text.len() {
            for e in s..=text.len().min(s + 24) {
                assert_eq!(unit_hash_at(&text, s, e, 9), unit_hash(&text[s..e], 9), "{s}..{e}");
            }
        }
    }

    #[test]
    fn shingle_hashes_follow_word_order_and_count() {
        let hashes = |t: &str, n: usize| {
            let mut v = Vec::new();
            for_each_shingle_hash(t, n, Unit::Word, 1, &mut Vec::new(), |h| v.push(h));
            v
        };
        let abc = hashes("a b c d", 2);
        assert_eq!(abc.len(), 3);
        assert_ne!(hashes("a b", 2), hashes("b a", 2));
        assert_eq!(hashes("x a b y", 2)[1], abc[0]);
        assert_eq!(hashes("one", 5).len(), 1);
        assert!(hashes(" \t", 5).is_empty());
        // The ASCII scanner and the general splitter give the same hashes: a no-break space
        // (non-ASCII whitespace) sends the second text down the general path.
        let words = "the quick brown fox jumps over a lazy dog with extraordinarily long words";
        assert_eq!(hashes(words, 3), hashes(&words.replacen(' ', "\u{a0}", 1), 3));
    }

    #[test]
    fn char_shingles_use_code_points() {
        assert_eq!(shingles("héllo", 4, Unit::Char), vec!["héll", "éllo"]);
        assert_eq!(shingles("hé", 4, Unit::Char), vec!["hé"]);
    }
}
