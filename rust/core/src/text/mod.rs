//! Text utilities: whitespace as Python sees it, normalisation for exact-duplicate keys, and
//! shingles for MinHash.

pub mod shingle;

use unicode_normalization::UnicodeNormalization;

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

/// NFKC, lower-cased, whitespace runs folded to one space and trimmed; with `strip_punct`,
/// Unicode punctuation removed first. The key behind `normalized_text_hash`.
pub fn normalize(text: &str, strip_punct: bool) -> String {
    let nfkc: String = text.nfkc().collect();
    let lower = nfkc.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    for w in py_split(&lower) {
        let w: String = if strip_punct { w.chars().filter(|c| !is_punctuation(*c)).collect() } else { w.to_string() };
        if w.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&w);
    }
    out
}

/// ASCII punctuation and the common Unicode punctuation blocks (General Punctuation,
/// CJK Symbols and Punctuation, fullwidth forms' ASCII punctuation).
pub fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32,
            0x00A1..=0x00BF | 0x2010..=0x2027 | 0x2030..=0x205E | 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_python_including_separators() {
        assert_eq!(py_split(" a\u{1f}b\u{a0}c\n").collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }

    #[test]
    fn normalize_folds_case_width_space_and_punctuation() {
        assert_eq!(normalize("  Ｈｅｌｌｏ,\t WORLD! ", false), "hello, world!");
        assert_eq!(normalize("  Ｈｅｌｌｏ,\t WORLD! ", true), "hello world");
    }
}
