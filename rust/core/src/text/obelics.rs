//! OBELICS's text statistics, exactly as its filter computes them
//! (huggingface/OBELICS `obelics/processors/web_document_filtering.py`, word lists from
//! `obelics/utils/filtering_utils.py`, shipped in `rust/core/data/obelics/`; Apache-2.0).
//!
//! - **Words**: split on `' '`, `'\n'` and `'\t'` only, empties dropped, lower-cased, stripped of
//!   special characters at both ends, empties dropped again (so "2024" and "!!!" are not words).
//! - Character n-gram repetition, word n-gram repetition, special-character, stop-word,
//!   flagged-word and punctuation ratios: see [`TextStats`]. Empty input gives 0 for every ratio.
//! - Characters are Unicode code points, as Python's `str` counts them.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use regex::Regex;

/// The 12 whitespace characters OBELICS turns into `' '` before splitting paragraphs.
pub const WHITESPACE: [char; 12] =
    ['\u{20}', '\u{2009}', '\u{200A}', '\u{202F}', '\u{2005}', '\u{3000}', '\u{2002}', '\u{2008}', '\u{2003}', '\u{FFFC}', '\u{84}', '\u{A0}'];

/// OBELICS's punctuation marks (the punctuation ratio counts these tokens).
pub const PUNCTUATION: [char; 6] = ['.', ',', '?', '!', ':', ';'];

fn lines(data: &'static str) -> impl Iterator<Item = &'static str> {
    data.lines().filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// OBELICS's SPECIAL_CHARACTERS, the members that are one code point (1,598).
pub fn special_characters() -> &'static HashSet<char> {
    static SET: OnceLock<HashSet<char>> = OnceLock::new();
    SET.get_or_init(|| {
        lines(include_str!("../../data/obelics/special_characters.txt"))
            .map(|l| char::from_u32(u32::from_str_radix(l.trim_start_matches("U+"), 16).expect("hex code point")).expect("code point"))
            .collect()
    })
}

/// OBELICS's STOPWORDS (301).
pub fn stopwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| lines(include_str!("../../data/obelics/stopwords.txt")).collect())
}

/// OBELICS's FLAGGED_WORDS (67).
pub fn flagged_words() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| lines(include_str!("../../data/obelics/flagged_words.txt")).collect())
}

/// `text` with each of the [`WHITESPACE`] characters replaced by `' '`.
pub fn standardize_whitespace(text: &str) -> String {
    text.chars().map(|c| if WHITESPACE.contains(&c) { ' ' } else { c }).collect()
}

/// OBELICS's words of `text` (see the module docs).
pub fn words(text: &str) -> Vec<String> {
    let special = special_characters();
    text.split([' ', '\n', '\t'])
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .map(|w| w.trim_matches(|c| special.contains(&c)).to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The statistics of one text (a paragraph or a whole document).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TextStats {
    /// Words (see the module docs).
    pub n_words: u64,
    /// Code points.
    pub n_chars: u64,
    /// Character n-gram repetition: over the n-grams of the raw text, with counts sorted in
    /// decreasing order, the share of all n-grams held by the k most frequent, where
    /// k = min(floor(sqrt(distinct)), distinct - singletons). 0 for a text shorter than n.
    pub char_repetition: f64,
    /// Word n-gram repetition: the share of word n-grams that occur more than once. 0 with
    /// fewer than n words.
    pub word_repetition: f64,
    /// Special characters / code points.
    pub special_char_ratio: f64,
    /// Stop words / words.
    pub stopword_ratio: f64,
    /// Flagged words / words.
    pub flagged_word_ratio: f64,
    /// Punctuation tokens / tokens, tokens being `[\w']+` or one of [`PUNCTUATION`]; 1.0 when
    /// there are tokens but fewer than the minimum asked (OBELICS checks paragraphs only from 12
    /// tokens on).
    pub punctuation_ratio: f64,
}

/// Parameters of [`text_stats`], OBELICS's defaults from its filter config.
#[derive(Clone, Copy, Debug)]
pub struct StatsParams {
    pub char_ngram: usize,
    pub word_ngram: usize,
    /// Fewer punctuation-split tokens than this gives a punctuation ratio of 1.0 (0: off).
    pub punctuation_min_tokens: usize,
}

impl StatsParams {
    /// Paragraph (node) level: 10-char and 5-word n-grams, punctuation from 12 tokens.
    pub const PARAGRAPH: StatsParams = StatsParams { char_ngram: 10, word_ngram: 5, punctuation_min_tokens: 12 };
    /// Document level: the same n-grams, punctuation always counted.
    pub const DOCUMENT: StatsParams = StatsParams { char_ngram: 10, word_ngram: 5, punctuation_min_tokens: 0 };
}

/// The statistics of `text` (as it is: standardise whitespace first where OBELICS does).
pub fn text_stats(text: &str, p: &StatsParams) -> TextStats {
    let w = words(text);
    let n_chars = text.chars().count();
    let ratio = |count: usize, of: usize| if of == 0 { 0.0 } else { count as f64 / of as f64 };
    let special = special_characters();
    let (stop, flagged) = (stopwords(), flagged_words());
    TextStats {
        n_words: w.len() as u64,
        n_chars: n_chars as u64,
        char_repetition: char_repetition(text, p.char_ngram),
        word_repetition: word_repetition(&w, p.word_ngram),
        special_char_ratio: ratio(text.chars().filter(|c| special.contains(c)).count(), n_chars),
        stopword_ratio: ratio(w.iter().filter(|x| stop.contains(x.as_str())).count(), w.len()),
        flagged_word_ratio: ratio(w.iter().filter(|x| flagged.contains(x.as_str())).count(), w.len()),
        punctuation_ratio: punctuation_ratio(text, p.punctuation_min_tokens),
    }
}

/// See [`TextStats::char_repetition`].
pub fn char_repetition(text: &str, n: usize) -> f64 {
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect();
    let chars = starts.len() - 1;
    if n == 0 || chars < n {
        return 0.0;
    }
    let mut counts: HashMap<&str, u64> = HashMap::with_capacity(chars);
    for i in 0..=chars - n {
        *counts.entry(&text[starts[i]..starts[i + n]]).or_insert(0) += 1;
    }
    let mut freq: Vec<u64> = counts.into_values().collect();
    freq.sort_unstable_by(|a, b| b.cmp(a));
    let singletons = freq.iter().filter(|&&f| f == 1).count();
    let k = ((freq.len() as f64).sqrt() as usize).min(freq.len() - singletons);
    let total: u64 = freq.iter().sum();
    freq[..k].iter().sum::<u64>() as f64 / total as f64
}

/// See [`TextStats::word_repetition`].
pub fn word_repetition(words: &[String], n: usize) -> f64 {
    if n == 0 || words.len() < n {
        return 0.0;
    }
    let mut counts: HashMap<&[String], u64> = HashMap::with_capacity(words.len());
    for g in words.windows(n) {
        *counts.entry(g).or_insert(0) += 1;
    }
    let total: u64 = counts.values().sum();
    counts.values().filter(|&&f| f > 1).sum::<u64>() as f64 / total as f64
}

/// See [`TextStats::punctuation_ratio`]. Python's `\w` (letters, numbers and `_`) is
/// `[\p{L}\p{N}_]` here.
pub fn punctuation_ratio(text: &str, min_tokens: usize) -> f64 {
    static TOKEN: OnceLock<Regex> = OnceLock::new();
    let re = TOKEN.get_or_init(|| Regex::new(r"[\p{L}\p{N}_']+|[.,?!:;]").expect("valid regex"));
    let (mut tokens, mut punct) = (0usize, 0usize);
    for m in re.find_iter(text) {
        tokens += 1;
        if m.as_str().len() == 1 && PUNCTUATION.contains(&m.as_str().chars().next().expect("one char")) {
            punct += 1;
        }
    }
    if tokens == 0 {
        return 0.0;
    }
    if min_tokens > 0 && tokens < min_tokens {
        return 1.0;
    }
    punct as f64 / tokens as f64
}

/// Why OBELICS's node-level filter removes a paragraph: the first check it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParagraphCheck {
    Words,
    CharRepetition,
    WordRepetition,
    SpecialCharacters,
    Stopwords,
    FlaggedWords,
    Punctuation,
}

impl ParagraphCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            ParagraphCheck::Words => "words",
            ParagraphCheck::CharRepetition => "char_repetition",
            ParagraphCheck::WordRepetition => "word_repetition",
            ParagraphCheck::SpecialCharacters => "special_characters",
            ParagraphCheck::Stopwords => "stopwords",
            ParagraphCheck::FlaggedWords => "flagged_words",
            ParagraphCheck::Punctuation => "punctuation",
        }
    }
}

/// OBELICS's node-level thresholds (its filter config): bounds are inclusive, a max fails on
/// `>`, a min on `<`.
#[derive(Clone, Copy, Debug)]
pub struct ParagraphRules {
    pub min_words: u64,
    pub max_words: u64,
    pub max_char_repetition: f64,
    pub max_word_repetition: f64,
    pub max_special_char_ratio: f64,
    pub min_stopword_ratio: f64,
    pub max_flagged_word_ratio: f64,
    pub min_punctuation_ratio: f64,
}

impl Default for ParagraphRules {
    fn default() -> Self {
        ParagraphRules {
            min_words: 4,
            max_words: 1000,
            max_char_repetition: 0.1,
            max_word_repetition: 0.1,
            max_special_char_ratio: 0.3,
            min_stopword_ratio: 0.3,
            max_flagged_word_ratio: 0.01,
            min_punctuation_ratio: 0.001,
        }
    }
}

impl ParagraphRules {
    /// The first check `s` fails, in OBELICS's order, or `None` when the paragraph stays.
    pub fn first_failure(&self, s: &TextStats) -> Option<ParagraphCheck> {
        if s.n_words < self.min_words || s.n_words > self.max_words {
            Some(ParagraphCheck::Words)
        } else if s.char_repetition > self.max_char_repetition {
            Some(ParagraphCheck::CharRepetition)
        } else if s.word_repetition > self.max_word_repetition {
            Some(ParagraphCheck::WordRepetition)
        } else if s.special_char_ratio > self.max_special_char_ratio {
            Some(ParagraphCheck::SpecialCharacters)
        } else if s.stopword_ratio < self.min_stopword_ratio {
            Some(ParagraphCheck::Stopwords)
        } else if s.flagged_word_ratio > self.max_flagged_word_ratio {
            Some(ParagraphCheck::FlaggedWords)
        } else if s.punctuation_ratio < self.min_punctuation_ratio {
            Some(ParagraphCheck::Punctuation)
        } else {
            None
        }
    }
}

/// OBELICS's node-level filter on one text node: whitespace standardised, split on `"\n\n"`,
/// each paragraph checked ([`ParagraphRules::first_failure`]); returns the kept text (the
/// survivors joined by `"\n\n"`, `None` when none survive: the node goes) and each removed
/// paragraph's index and reason.
pub fn filter_paragraphs(text: &str, rules: &ParagraphRules) -> (Option<String>, Vec<(usize, ParagraphCheck)>) {
    let text = standardize_whitespace(text);
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for (i, par) in text.split("\n\n").enumerate() {
        match rules.first_failure(&text_stats(par, &StatsParams::PARAGRAPH)) {
            Some(why) => removed.push((i, why)),
            None => kept.push(par),
        }
    }
    ((!kept.is_empty()).then(|| kept.join("\n\n")), removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_lists_have_obelicss_sizes() {
        assert_eq!(special_characters().len(), 1598);
        assert_eq!(stopwords().len(), 301);
        assert_eq!(flagged_words().len(), 67);
        for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~0123456789 \t\n\r\x0b\x0c".chars() {
            assert!(special_characters().contains(&c), "{c:?}");
        }
    }

    #[test]
    fn words_are_stripped_lowercased_and_need_a_letter() {
        assert_eq!(words("Hello, World!! 2024 ... a\tb\nc"), vec!["hello", "world", "a", "b", "c"]);
        assert!(words("").is_empty());
    }

    #[test]
    fn repetition_ratios_follow_the_definitions() {
        assert_eq!(char_repetition("short", 10), 0.0);
        // "aaaaaaaaaaaa" (12 a's): 3 identical 10-grams, 1 distinct, k = min(1, 1 - 0) = 1.
        assert_eq!(char_repetition(&"a".repeat(12), 10), 1.0);
        let w: Vec<String> = "a b c d e a b c d e".split(' ').map(String::from).collect();
        // 6 5-grams, "a b c d e" twice: 2 / 6.
        assert!((word_repetition(&w, 5) - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(word_repetition(&w[..4], 5), 0.0);
    }

    #[test]
    fn punctuation_counts_tokens_and_lets_short_paragraphs_pass() {
        assert_eq!(punctuation_ratio("Hi, there.", 0), 2.0 / 4.0);
        assert_eq!(punctuation_ratio("Hi, there.", 12), 1.0);
        assert_eq!(punctuation_ratio("", 12), 0.0);
        assert_eq!(punctuation_ratio("don't stop", 0), 0.0);
    }

    #[test]
    fn paragraphs_are_removed_by_their_first_failed_check() {
        let good = "The cat sat on the mat and it was a very good day for all of us, as we went to the park.";
        let (kept, removed) = filter_paragraphs(&format!("{good}\n\nbuy now\n\n{good}"), &ParagraphRules::default());
        assert_eq!(kept.as_deref(), Some(format!("{good}\n\n{good}").as_str()));
        assert_eq!(removed, vec![(1, ParagraphCheck::Words)]);
        assert_eq!(filter_paragraphs("x", &ParagraphRules::default()).0, None);
    }
}
