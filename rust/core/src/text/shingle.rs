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
    let grams: Vec<String> = match unit {
        Unit::Word => {
            let words: Vec<&str> = py_split(text).collect();
            if words.is_empty() {
                return Vec::new();
            }
            if words.len() < n {
                vec![words.join(" ")]
            } else {
                words.windows(n).map(|w| w.join(" ")).collect()
            }
        }
        Unit::Char => {
            let idx: Vec<usize> = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect();
            let chars = idx.len() - 1;
            if chars == 0 {
                return Vec::new();
            }
            if chars < n {
                vec![text.to_string()]
            } else {
                (0..=chars - n).map(|i| text[idx[i]..idx[i + n]].to_string()).collect()
            }
        }
    };
    let mut seen = std::collections::HashSet::with_capacity(grams.len());
    grams.into_iter().filter(|g| seen.insert(g.clone())).collect()
}

/// Calls `f` with the 64-bit hash of every n-gram (repeats included), without building
/// strings: words are hashed once and an n-gram's hash is xxh3 of its words' hashes. This is
/// the token hash of MinHash's `fast` mode.
pub fn for_each_shingle_hash(text: &str, n: usize, unit: Unit, seed: u64, mut f: impl FnMut(u64)) {
    use xxhash_rust::xxh3::xxh3_64_with_seed;
    let n = n.max(1);
    let unit_hashes: Vec<u64> = match unit {
        Unit::Word => py_split(text).map(|w| xxh3_64_with_seed(w.as_bytes(), seed)).collect(),
        Unit::Char => {
            let mut buf = [0u8; 4];
            text.chars().map(|c| xxh3_64_with_seed(c.encode_utf8(&mut buf).as_bytes(), seed)).collect()
        }
    };
    if unit_hashes.is_empty() {
        return;
    }
    let combine = |hs: &[u64]| {
        let mut bytes = [0u8; 8 * 32];
        if hs.len() <= 32 {
            for (i, h) in hs.iter().enumerate() {
                bytes[i * 8..i * 8 + 8].copy_from_slice(&h.to_le_bytes());
            }
            xxh3_64_with_seed(&bytes[..hs.len() * 8], seed)
        } else {
            let long: Vec<u8> = hs.iter().flat_map(|h| h.to_le_bytes()).collect();
            xxh3_64_with_seed(&long, seed)
        }
    };
    if unit_hashes.len() < n {
        f(combine(&unit_hashes));
    } else {
        unit_hashes.windows(n).for_each(|w| f(combine(w)));
    }
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
    fn char_shingles_use_code_points() {
        assert_eq!(shingles("héllo", 4, Unit::Char), vec!["héll", "éllo"]);
        assert_eq!(shingles("hé", 4, Unit::Char), vec!["hé"]);
    }
}
