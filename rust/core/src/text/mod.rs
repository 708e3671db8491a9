//! Text utilities: whitespace as Python sees it, normalisation for exact-duplicate keys, and
//! shingles for MinHash.

pub mod caption;
pub mod obelics;
pub mod shingle;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Whitespace exactly as Python's `str.split()` / `str.isspace()` define it: Unicode
/// White_Space plus the information separators U+001C..U+001F.
#[inline]
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Words as Python's `text.split()` gives them (bytewise for ASCII, by character otherwise).
pub fn py_split(text: &str) -> PySplit<'_> {
    PySplit { text, pos: 0 }
}

pub struct PySplit<'a> {
    text: &'a str,
    pos: usize,
}

/// ASCII bytes that Python's `str.isspace()` accepts: \t \n \v \f \r, U+001C..U+001F, space.
const ASCII_SPACE: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = matches!(i as u8, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f);
        i += 1;
    }
    t
};

impl PySplit<'_> {
    /// At a non-ASCII position: (byte length of the character, whether it is whitespace).
    #[inline]
    fn wide(&self, i: usize) -> (usize, bool) {
        let c = self.text[i..].chars().next().expect("char boundary");
        (c.len_utf8(), is_py_space(c))
    }
}

impl<'a> Iterator for PySplit<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let len = bytes.len();
        // Skip whitespace.
        while self.pos < len {
            let b = bytes[self.pos];
            if b < 0x80 {
                if !ASCII_SPACE[b as usize] {
                    break;
                }
                self.pos += 1;
            } else {
                let (l, space) = self.wide(self.pos);
                if !space {
                    break;
                }
                self.pos += l;
            }
        }
        if self.pos >= len {
            return None;
        }
        let start = self.pos;
        while self.pos < len {
            let b = bytes[self.pos];
            if b < 0x80 {
                if ASCII_SPACE[b as usize] {
                    break;
                }
                self.pos += 1;
            } else {
                let (l, space) = self.wide(self.pos);
                if space {
                    break;
                }
                self.pos += l;
            }
        }
        Some(&self.text[start..self.pos])
    }
}

/// Calls `f(start, end)` with the byte range of each word of `text`, exactly as [`py_split`]
/// gives them. ASCII text (the common case) is scanned 64 bytes at a time, see
/// [`for_each_ascii_word`]; other text goes through [`py_split`].
#[inline(always)]
pub fn for_each_word_span(text: &str, mut f: impl FnMut(usize, usize)) {
    if text.is_ascii() {
        for_each_ascii_word(text.as_bytes(), f);
    } else {
        let base = text.as_ptr() as usize;
        for w in py_split(text) {
            let s = w.as_ptr() as usize - base;
            f(s, s + w.len());
        }
    }
}

/// Calls `f(start, end)` for each word of ASCII `bytes` (whitespace as in `ASCII_SPACE`): a
/// whitespace bit mask per 64-byte block, words read off its transitions.
#[inline(always)]
fn for_each_ascii_word(bytes: &[u8], mut f: impl FnMut(usize, usize)) {
    // Inside a word since `start`, or between words.
    let mut start: Option<usize> = None;
    let mut base = 0;
    while base < bytes.len() {
        let block = &bytes[base..bytes.len().min(base + 64)];
        let mut padded = [b' '; 64];
        let full: &[u8; 64] = match block.try_into() {
            Ok(b) => b,
            Err(_) => {
                padded[..block.len()].copy_from_slice(block);
                &padded
            }
        };
        let space = ascii_space_mask(full);
        // Bit i set where byte i starts a word or ends one (is the first space after it).
        let prev_space = (space << 1) | u64::from(start.is_none());
        let mut edges = space ^ prev_space;
        while edges != 0 {
            let i = base + edges.trailing_zeros() as usize;
            match start.take() {
                Some(s) => f(s, i.min(bytes.len())),
                None => start = Some(i),
            }
            edges &= edges - 1;
        }
        base += 64;
    }
    if let Some(s) = start {
        f(s, bytes.len());
    }
}

/// Bit i set when `block[i]` is ASCII whitespace for Python (see `ASCII_SPACE`).
#[inline]
fn ascii_space_mask(block: &[u8; 64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline; loads are unaligned and in bounds.
        unsafe {
            let space = _mm_set1_epi8(b' ' as i8);
            let (lo1, n1) = (_mm_set1_epi8(0x09), _mm_set1_epi8(4)); // 0x09..=0x0d
            let (lo2, n2) = (_mm_set1_epi8(0x1c), _mm_set1_epi8(3)); // 0x1c..=0x1f
            let mut mask = 0u64;
            for k in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * k) as *const __m128i);
                let d1 = _mm_sub_epi8(v, lo1);
                let d2 = _mm_sub_epi8(v, lo2);
                let in1 = _mm_cmpeq_epi8(_mm_min_epu8(d1, n1), d1);
                let in2 = _mm_cmpeq_epi8(_mm_min_epu8(d2, n2), d2);
                let m = _mm_or_si128(_mm_or_si128(in1, in2), _mm_cmpeq_epi8(v, space));
                mask |= (_mm_movemask_epi8(m) as u16 as u64) << (16 * k);
            }
            mask
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        block.iter().enumerate().fold(0u64, |m, (i, &b)| m | (u64::from(ASCII_SPACE[b as usize]) << i))
    }
}

/// NFKC, lower-cased, whitespace runs folded to one space and trimmed; with `strip_punct`, the
/// characters of [`is_punctuation`] then removed (and words made of them dropped). The key
/// behind `normalized_text_hash`.
pub fn normalize(text: &str, strip_punct: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut push = |w: &str| {
        if strip_punct && w.chars().all(is_punctuation) {
            return;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        if strip_punct {
            let kept: String = w.chars().filter(|c| !is_punctuation(*c)).collect();
            // A mark the punctuation kept from its letter composes with it now: "p]\u{301}"
            // gives "ṕ", as normalising the stripped text again would.
            if kept.len() != w.len() && !kept.is_ascii() {
                out.extend(kept.nfkc());
            } else {
                out.push_str(&kept);
            }
        } else {
            out.push_str(w);
        }
    };
    if text.is_ascii() {
        // ASCII is its own NFKC.
        py_split(&text.to_ascii_lowercase()).for_each(&mut push);
        return out;
    }
    // Whitespace bounds both NFKC (a space or other blank composes with nothing) and lower-casing
    // (final sigma looks no further than its word), so each word is normalised on its own: only
    // the words not already in NFKC pay for the decomposition.
    for word in py_split(text) {
        let lower = if word.is_ascii() {
            word.to_ascii_lowercase()
        } else if is_nfkc_quick(word.chars()) == IsNormalized::Yes {
            word.to_lowercase()
        } else {
            word.nfkc().collect::<String>().to_lowercase()
        };
        // NFKC can make blanks of its own ("¨" is a space and a diaeresis).
        py_split(&lower).for_each(&mut push);
    }
    out
}

/// ASCII punctuation and symbols, U+00A1-U+00BF (Latin-1 punctuation and symbols), General
/// Punctuation, CJK Symbols and Punctuation and the full-width forms of ASCII punctuation: the
/// common blocks, not every Unicode `P*` character.
pub fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32,
            0x00A1..=0x00BF | 0x2010..=0x2027 | 0x2030..=0x205E | 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripping_punctuation_composes_what_it_separated() {
        // Found by the text fuzz target: stripping "]" left "p" and a combining acute apart
        // in NFKC terms; they compose once the brackets are gone.
        for t in ["A .Oek a N`SA p]]]]]]]]]]]]]\u{301}\u{a0}\u{200b}\te", "Caf]\u{301} \u{fb01}ne ÉTÉ", "plain, text."] {
            for strip in [false, true] {
                let once = normalize(t, strip);
                assert_eq!(normalize(&once, strip), once, "{t:?} {strip}");
            }
        }
        assert_eq!(normalize("p]\u{301}", true), "\u{1e55}");
    }

    #[test]
    fn split_matches_python_including_separators() {
        assert_eq!(py_split(" a\u{1f}b\u{a0}c\n").collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }

    #[test]
    fn ascii_word_scan_matches_py_split() {
        let long = "w".repeat(200);
        let mut cases: Vec<String> = vec![
            "".into(),
            " ".into(),
            "a".into(),
            " a ".into(),
            "a\x1fb\tc\x0bd\x0ce\re\n\x1c \x08x\x0ey\x00z".into(),
            format!("{long} {long}"),
            format!("  {long}"),
        ];
        // Words and spaces straddling 64-byte block edges.
        for cut in 60..70 {
            cases.push(format!("{} {} end", "x".repeat(cut), "y".repeat(3)));
            cases.push(format!("{}{}", " ".repeat(cut), "z".repeat(70)));
            cases.push(format!("{}{}", "q".repeat(cut), " ".repeat(70)));
        }
        cases.push("non-ascii\u{a0}words here".into());
        for t in &cases {
            let mut got = Vec::new();
            for_each_word_span(t, |s, e| got.push(&t[s..e]));
            assert_eq!(got, py_split(t).collect::<Vec<_>>(), "{t:?}");
        }
    }

    #[test]
    fn normalize_folds_case_width_space_and_punctuation() {
        assert_eq!(normalize("  Ｈｅｌｌｏ,\t WORLD! ", false), "hello, world!");
        assert_eq!(normalize("  Ｈｅｌｌｏ,\t WORLD! ", true), "hello world");
    }
}
