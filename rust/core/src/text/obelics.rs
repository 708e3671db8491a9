//! OBELICS's text statistics, exactly as its filter computes them
//! (huggingface/OBELICS `obelics/processors/web_document_filtering.py`, word lists from
//! `obelics/utils/filtering_utils.py`, shipped in `rust/core/data/obelics/`; Apache-2.0).
//!
//! - **Words**: split on `' '`, `'\n'` and `'\t'` only, empties dropped, lower-cased, stripped of
//!   special characters at both ends, empties dropped again (so "2024" and "!!!" are not words).
//! - Character n-gram repetition, word n-gram repetition, special-character, stop-word,
//!   flagged-word and punctuation ratios: see [`TextStats`]. Empty input gives 0 for every ratio.
//! - The common-word ratio, with a word list the caller gives ([`WordSet`]: OBELICS's
//!   `common_words.json` is not in its repository), as OBELICS's `compute_common_word_ratio`.
//! - Characters are Unicode code points, as Python's `str` counts them.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};

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

/// [`special_characters`] as a lookup for the hot loops: a table for ASCII, a sorted list for
/// the rest.
struct SpecialLookup {
    ascii: [bool; 128],
    other: Vec<char>,
}

fn special_lookup() -> &'static SpecialLookup {
    static LOOKUP: OnceLock<SpecialLookup> = OnceLock::new();
    LOOKUP.get_or_init(|| {
        let mut ascii = [false; 128];
        let mut other = Vec::new();
        for &c in special_characters() {
            if c.is_ascii() {
                ascii[c as usize] = true;
            } else {
                other.push(c);
            }
        }
        other.sort_unstable();
        SpecialLookup { ascii, other }
    })
}

/// Whether `c` is one of OBELICS's special characters.
#[inline]
pub fn is_special(c: char) -> bool {
    let l = special_lookup();
    if c.is_ascii() {
        l.ascii[c as usize]
    } else {
        l.other.binary_search(&c).is_ok()
    }
}

/// OBELICS's STOPWORDS (301).
pub fn stopwords() -> &'static FxHashSet<&'static str> {
    static SET: OnceLock<FxHashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| lines(include_str!("../../data/obelics/stopwords.txt")).collect())
}

/// OBELICS's FLAGGED_WORDS (67).
pub fn flagged_words() -> &'static FxHashSet<&'static str> {
    static SET: OnceLock<FxHashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| lines(include_str!("../../data/obelics/flagged_words.txt")).collect())
}

/// Both lists in one lookup: bit 0 stop word, bit 1 flagged word.
fn word_lists() -> &'static FxHashMap<&'static str, u8> {
    static MAP: OnceLock<FxHashMap<&'static str, u8>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut m = FxHashMap::default();
        for &w in stopwords() {
            *m.entry(w).or_insert(0) |= 1;
        }
        for &w in flagged_words() {
            *m.entry(w).or_insert(0) |= 2;
        }
        m
    })
}

/// A word list the caller gives (OBELICS's common words): words are looked up as OBELICS's
/// [`words`] gives them (lower-cased, stripped), so an entry with an upper-case letter or a
/// leading special character never matches, as in OBELICS.
pub type WordSet = FxHashSet<String>;

/// `text` with each of the [`WHITESPACE`] characters replaced by `' '`.
pub fn standardize_whitespace(text: &str) -> String {
    text.chars().map(|c| if WHITESPACE.contains(&c) { ' ' } else { c }).collect()
}

/// OBELICS's words of `text` (see the module docs).
pub fn words(text: &str) -> Vec<String> {
    let mut w = Words::default();
    w.fill(text);
    w.iter().map(str::to_string).collect()
}

/// The words of a text, lower-cased into one buffer (no allocation per word).
#[derive(Default)]
struct Words {
    buf: String,
    spans: Vec<(u32, u32)>,
}

impl Words {
    fn fill(&mut self, text: &str) {
        self.buf.clear();
        self.spans.clear();
        self.buf.reserve(text.len());
        let special = &special_lookup().ascii;
        if text.is_ascii() {
            // ASCII lower-casing keeps every byte in place and maps no character into or out of
            // the special set: the words are stripped spans of the lower-cased text.
            self.buf.push_str(text);
            self.buf.make_ascii_lowercase();
            let b = text.as_bytes();
            let mut start = 0;
            for end in memchr::memchr3_iter(b' ', b'\n', b'\t', b).chain(std::iter::once(b.len())) {
                let w = &b[start..end];
                if let Some(first) = w.iter().position(|&c| !special[c as usize]) {
                    let last = w.iter().rposition(|&c| !special[c as usize]).unwrap_or(first);
                    self.spans.push(((start + first) as u32, (start + last + 1) as u32));
                }
                start = end + 1;
            }
            return;
        }
        // The separators are ASCII, so splitting the bytes keeps every piece valid UTF-8.
        let mut start = 0;
        for end in memchr::memchr3_iter(b' ', b'\n', b'\t', text.as_bytes()).chain(std::iter::once(text.len())) {
            let w = &text[start..end];
            start = end + 1;
            if w.is_empty() {
                continue;
            }
            let at = self.buf.len();
            if w.is_ascii() {
                // ASCII lower-casing maps no character into or out of the special set, so an
                // ASCII word is stripped first, then lower-cased in the buffer.
                let b = w.as_bytes();
                let Some(first) = b.iter().position(|&c| !special[c as usize]) else { continue };
                let last = b.iter().rposition(|&c| !special[c as usize]).unwrap_or(first);
                self.buf.push_str(&w[first..=last]);
                self.buf[at..].make_ascii_lowercase();
            } else {
                self.buf.push_str(w.to_lowercase().trim_matches(is_special));
            }
            if self.buf.len() > at {
                self.spans.push((at as u32, self.buf.len() as u32));
            }
        }
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans.iter().map(|&(a, b)| &self.buf[a as usize..b as usize])
    }
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
    /// Words in the common-word list / words (0 without words); `None` when no list was given.
    pub common_word_ratio: Option<f64>,
}

/// Parameters of [`text_stats`], OBELICS's defaults from its filter config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    text_stats_with(text, p, None)
}

/// [`text_stats`] with the common-word ratio against `common` when given.
pub fn text_stats_with(text: &str, p: &StatsParams, common: Option<&WordSet>) -> TextStats {
    thread_local! {
        static WORDS: std::cell::RefCell<Words> = std::cell::RefCell::new(Words::default());
    }
    WORDS.with_borrow_mut(|w| {
        w.fill(text);
        let ascii = text.is_ascii();
        let n_chars = if ascii { text.len() } else { text.chars().count() };
        let ratio = |count: usize, of: usize| if of == 0 { 0.0 } else { count as f64 / of as f64 };
        let (n_special, (tokens, punct)) =
            if ascii { ascii_scan(text.as_bytes()) } else { (text.chars().filter(|&c| is_special(c)).count(), unicode_punctuation_counts(text)) };
        // One hash per word: its id (for the n-grams) and, on first sight, its list class.
        let lists = word_lists();
        let (mut n_stop, mut n_flagged, mut n_common) = (0, 0, 0);
        let mut ids: FxHashMap<&str, (u32, u8)> = FxHashMap::with_capacity_and_hasher(w.len(), Default::default());
        // Bit 2 of a word's class: in the common-word list.
        let class_of = |x: &str| lists.get(x).copied().unwrap_or(0) | (u8::from(common.is_some_and(|c| c.contains(x))) << 2);
        let seq: Vec<u32> = w
            .iter()
            .map(|x| {
                let next = ids.len() as u32;
                let &mut (id, class) = ids.entry(x).or_insert_with(|| (next, class_of(x)));
                n_stop += usize::from(class & 1);
                n_flagged += usize::from((class >> 1) & 1);
                n_common += usize::from(class >> 2);
                id
            })
            .collect();
        TextStats {
            n_words: w.len() as u64,
            n_chars: n_chars as u64,
            char_repetition: char_repetition(text, p.char_ngram),
            word_repetition: id_repetition(&seq, ids.len(), p.word_ngram),
            special_char_ratio: ratio(n_special, n_chars),
            stopword_ratio: ratio(n_stop, w.len()),
            flagged_word_ratio: ratio(n_flagged, w.len()),
            punctuation_ratio: punctuation_of(tokens, punct, p.punctuation_min_tokens),
            common_word_ratio: common.map(|_| ratio(n_common, w.len())),
        }
    })
}

/// The share held by the k most frequent of `counts` (see [`TextStats::char_repetition`]).
/// k never exceeds the number of counts above 1, so only those are sorted.
fn top_k_share(counts: impl Iterator<Item = u32>) -> f64 {
    let (mut distinct, mut total) = (0usize, 0u64);
    let mut repeated: Vec<u32> = Vec::new();
    for f in counts {
        distinct += 1;
        total += u64::from(f);
        if f > 1 {
            repeated.push(f);
        }
    }
    let k = ((distinct as f64).sqrt() as usize).min(repeated.len());
    if k == 0 {
        return 0.0;
    }
    repeated.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    repeated[..k].iter().map(|&f| u64::from(f)).sum::<u64>() as f64 / total as f64
}

/// See [`TextStats::char_repetition`].
pub fn char_repetition(text: &str, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    if text.is_ascii() && n <= 16 {
        // One byte per character: each n-gram packed into a u128 is an exact key.
        let b = text.as_bytes();
        if b.len() < n {
            return 0.0;
        }
        let mask = if n == 16 { u128::MAX } else { (1u128 << (8 * n)) - 1 };
        return with_packed_counts(b.len(), |counts| {
            let mut key = b[..n - 1].iter().fold(0u128, |k, &c| (k << 8) | u128::from(c));
            counts.add_all(b[n - 1..].iter().map(|&c| {
                key = ((key << 8) | u128::from(c)) & mask;
                key
            }));
            top_k_share(counts.values())
        });
    }
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect();
    let chars = starts.len() - 1;
    if chars < n {
        return 0.0;
    }
    let mut counts: FxHashMap<&str, u32> = FxHashMap::with_capacity_and_hasher(chars, Default::default());
    for i in 0..=chars - n {
        *counts.entry(&text[starts[i]..starts[i + n]]).or_insert(0) += 1;
    }
    top_k_share(counts.into_values())
}

/// See [`TextStats::word_repetition`].
pub fn word_repetition(words: &[String], n: usize) -> f64 {
    repetition_of(words.iter().map(String::as_str), words.len(), n)
}

fn repetition_of<'a>(words: impl Iterator<Item = &'a str>, len: usize, n: usize) -> f64 {
    if n == 0 || len < n {
        return 0.0;
    }
    // Words become ids (one hash per word), n-grams are compared as id windows.
    let mut ids: FxHashMap<&str, u32> = FxHashMap::with_capacity_and_hasher(len, Default::default());
    let seq: Vec<u32> = words
        .map(|w| {
            let next = ids.len() as u32;
            *ids.entry(w).or_insert(next)
        })
        .collect();
    id_repetition(&seq, ids.len(), n)
}

/// Word n-gram repetition of a sequence of word ids (`distinct` of them).
fn id_repetition(seq: &[u32], distinct: usize, n: usize) -> f64 {
    if n == 0 || seq.len() < n {
        return 0.0;
    }
    let share = |counts: &mut dyn Iterator<Item = u32>| {
        let (mut total, mut repeated) = (0u64, 0u64);
        for f in counts {
            total += u64::from(f);
            repeated += if f > 1 { u64::from(f) } else { 0 };
        }
        repeated as f64 / total as f64
    };
    // Up to 5 ids below 2^25 pack exactly into a u128 key.
    let bits = 32 - (distinct as u32).leading_zeros().min(31);
    if n as u32 * bits <= 128 {
        return with_packed_counts(seq.len(), |counts| {
            counts.add_all(seq.windows(n).map(|g| g.iter().fold(0u128, |k, &id| (k << bits) | u128::from(id))));
            share(&mut counts.values())
        });
    }
    let mut counts: FxHashMap<&[u32], u32> = FxHashMap::with_capacity_and_hasher(seq.len(), Default::default());
    for g in seq.windows(n) {
        *counts.entry(g).or_insert(0) += 1;
    }
    share(&mut counts.values().copied())
}

/// Runs `f` on this thread's n-gram counter, emptied and sized for `len` keys.
fn with_packed_counts<T>(len: usize, f: impl FnOnce(&mut PackedCounter) -> T) -> T {
    thread_local! {
        static COUNTER: std::cell::RefCell<PackedCounter> = std::cell::RefCell::new(PackedCounter::default());
    }
    COUNTER.with_borrow_mut(|c| {
        c.reset(len);
        f(c)
    })
}

/// Exact counts of u128 keys (packed n-grams): open addressing with linear probing over a
/// table kept between texts (a zero count marks an empty slot); the distinct keys are listed
/// in `used`. At most about 3/4 full, so a paragraph's table stays in the L1 cache.
#[derive(Default)]
struct PackedCounter {
    keys: Vec<u128>,
    counts: Vec<u32>,
    used: Vec<u32>,
    shift: u32,
}

impl PackedCounter {
    fn reset(&mut self, len: usize) {
        let size = (len.max(4) + len / 3).next_power_of_two();
        if size > self.keys.len() || self.keys.len() > (1 << 20) {
            self.keys = vec![0; size];
            self.counts = vec![0; size];
        } else {
            self.counts[..size].fill(0);
        }
        self.used.clear();
        self.shift = 64 - size.trailing_zeros();
    }

    /// Counts every key (fields held in locals for the loop).
    fn add_all(&mut self, keys: impl Iterator<Item = u128>) {
        let shift = self.shift;
        let mask = (1usize << (64 - shift)) - 1;
        let size = mask + 1;
        let (keys_tab, counts, used) = (&mut self.keys[..size], &mut self.counts[..size], &mut self.used);
        for key in keys {
            let x = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
            let mut i = (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize & mask;
            loop {
                let c = counts[i];
                if c == 0 {
                    counts[i] = 1;
                    keys_tab[i] = key;
                    used.push(i as u32);
                    break;
                }
                if keys_tab[i] == key {
                    counts[i] = c + 1;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.used.iter().map(|&i| self.counts[i as usize])
    }
}

/// See [`TextStats::punctuation_ratio`]. Python's `\w` (letters, numbers and `_`) is
/// `[\p{L}\p{N}_]` here; ASCII text is scanned without the regex.
pub fn punctuation_ratio(text: &str, min_tokens: usize) -> f64 {
    let (tokens, punct) = if text.is_ascii() { ascii_scan(text.as_bytes()).1 } else { unicode_punctuation_counts(text) };
    punctuation_of(tokens, punct, min_tokens)
}

fn punctuation_of(tokens: usize, punct: usize, min_tokens: usize) -> f64 {
    if tokens == 0 {
        return 0.0;
    }
    if min_tokens > 0 && tokens < min_tokens {
        return 1.0;
    }
    punct as f64 / tokens as f64
}

/// One pass over ASCII text: (special characters, (punctuation-split tokens, punctuation marks)).
fn ascii_scan(bytes: &[u8]) -> (usize, (usize, usize)) {
    // Byte classes: 1 word character, 2 punctuation mark, 0 anything else.
    const CLASS: [u8; 128] = {
        let mut t = [0u8; 128];
        let mut b = 0;
        while b < 128 {
            let c = b as u8;
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'\'' {
                t[b] = 1;
            } else if matches!(c, b'.' | b',' | b'?' | b'!' | b':' | b';') {
                t[b] = 2;
            }
            b += 1;
        }
        t
    };
    let special = &special_lookup().ascii;
    let (mut n_special, mut tokens, mut punct) = (0usize, 0usize, 0usize);
    let mut prev = 0u8;
    for &b in bytes {
        let c = CLASS[b as usize & 127];
        n_special += usize::from(special[b as usize & 127]);
        tokens += usize::from((c == 1 && prev != 1) || c == 2);
        punct += usize::from(c == 2);
        prev = c;
    }
    (n_special, (tokens, punct))
}

fn unicode_punctuation_counts(text: &str) -> (usize, usize) {
    static TOKEN: OnceLock<Regex> = OnceLock::new();
    let re = TOKEN.get_or_init(|| Regex::new(r"[\p{L}\p{N}_']+|[.,?!:;]").expect("valid regex"));
    let (mut tokens, mut punct) = (0usize, 0usize);
    for m in re.find_iter(text) {
        tokens += 1;
        if m.as_str().len() == 1 && PUNCTUATION.contains(&m.as_str().chars().next().expect("one char")) {
            punct += 1;
        }
    }
    (tokens, punct)
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
    CommonWords,
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
            ParagraphCheck::CommonWords => "common_words",
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
    /// Applied to statistics that have a common-word ratio (a list was given).
    pub min_common_word_ratio: f64,
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
            min_common_word_ratio: 0.8,
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
        } else if s.common_word_ratio.is_some_and(|r| r < self.min_common_word_ratio) {
            Some(ParagraphCheck::CommonWords)
        } else {
            None
        }
    }
}

/// The paragraph OBELICS's extraction leaves where a document ends (replaced later in its
/// pipeline): its node-level filter keeps it without checking it.
pub const END_OF_DOCUMENT: &str = "END_OF_DOCUMENT_TOKEN_TO_BE_REPLACED";

/// OBELICS's node-level filter on one text node: whitespace standardised, split on `"\n\n"`,
/// each paragraph checked ([`ParagraphRules::first_failure`], the common-word ratio against
/// `common` when given; [`END_OF_DOCUMENT`] is kept unchecked, as OBELICS does); returns the
/// kept text (the survivors joined by `"\n\n"`, `None` when none survive: the node goes) and
/// each removed paragraph's index and reason.
pub fn filter_paragraphs(text: &str, rules: &ParagraphRules, common: Option<&WordSet>) -> (Option<String>, Vec<(usize, ParagraphCheck)>) {
    let (kept, removed, _) = filter_paragraphs_keeping(text, rules, common, false);
    (kept, removed)
}

/// The kept text, the removed paragraphs, and the statistics of the only paragraph when
/// `keep_single` and there is one.
type Filtered = (Option<String>, Vec<(usize, ParagraphCheck)>, Option<TextStats>);

fn filter_paragraphs_keeping(text: &str, rules: &ParagraphRules, common: Option<&WordSet>, keep_single: bool) -> Filtered {
    let text = standardize_whitespace(text);
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    let mut single = None;
    let mut pars = text.split("\n\n").enumerate().peekable();
    while let Some((i, par)) = pars.next() {
        let stats = text_stats_with(par, &StatsParams::PARAGRAPH, common);
        let verdict = if par == END_OF_DOCUMENT { None } else { rules.first_failure(&stats) };
        match verdict {
            Some(why) => removed.push((i, why)),
            None => kept.push(par),
        }
        if keep_single && i == 0 && pars.peek().is_none() {
            single = Some(stats);
        }
    }
    ((!kept.is_empty()).then(|| kept.join("\n\n")), removed, single)
}

/// [`filter_paragraphs`] and the statistics of the whole `text` with `node` parameters (what
/// [`text_stats`] gives): when `text` is one paragraph needing no whitespace standardised and
/// `node` is [`StatsParams::PARAGRAPH`], the paragraph's own statistics, computed once.
pub fn filter_paragraphs_and_stats(
    text: &str,
    rules: &ParagraphRules,
    node: &StatsParams,
    common: Option<&WordSet>,
) -> (Option<String>, Vec<(usize, ParagraphCheck)>, TextStats) {
    let reuse = *node == StatsParams::PARAGRAPH && !text.chars().any(|c| c != ' ' && WHITESPACE.contains(&c));
    let (kept, removed, single) = filter_paragraphs_keeping(text, rules, common, reuse);
    let stats = single.unwrap_or_else(|| text_stats_with(text, node, common));
    (kept, removed, stats)
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
    fn fused_node_statistics_equal_text_stats() {
        let rules = ParagraphRules::default();
        let texts = [
            "The cat sat on the mat, and then it went to sleep in the warm sun by the door.",
            "One paragraph.\n\nAnd a second one, which is a little longer than the first.",
            "Tabs\tand\u{a0}odd spaces in one paragraph, which standardising changes.",
            "",
            "word word word word word word word word word word word word",
        ];
        for t in texts {
            for node in [StatsParams::PARAGRAPH, StatsParams { char_ngram: 3, word_ngram: 2, punctuation_min_tokens: 12 }] {
                let (kept, removed, stats) = filter_paragraphs_and_stats(t, &rules, &node, None);
                assert_eq!((kept, removed), filter_paragraphs(t, &rules, None), "{t:?}");
                assert_eq!(stats, text_stats(t, &node), "{t:?}");
                let common: WordSet = ["the", "cat", "one", "and", "word"].into_iter().map(String::from).collect();
                let (kept, removed, stats) = filter_paragraphs_and_stats(t, &rules, &node, Some(&common));
                assert_eq!((kept, removed), filter_paragraphs(t, &rules, Some(&common)), "{t:?}");
                assert_eq!(stats, text_stats_with(t, &node, Some(&common)), "{t:?}");
            }
        }
    }

    #[test]
    fn paragraphs_are_removed_by_their_first_failed_check() {
        let good = "The cat sat on the mat and it was a very good day for all of us, as we went to the park.";
        let (kept, removed) = filter_paragraphs(&format!("{good}\n\nbuy now\n\n{good}"), &ParagraphRules::default(), None);
        assert_eq!(kept.as_deref(), Some(format!("{good}\n\n{good}").as_str()));
        assert_eq!(removed, vec![(1, ParagraphCheck::Words)]);
        assert_eq!(filter_paragraphs("x", &ParagraphRules::default(), None).0, None);
    }

    #[test]
    fn the_common_word_ratio_counts_stripped_lower_cased_words_and_checks_last() {
        let common: WordSet = ["the", "cat", "sat", "on", "mat"].into_iter().map(String::from).collect();
        // Words: the cat sat on the "mat" (stripped of its quote and full stop), purred: 6 of 7.
        let s = text_stats_with("The cat sat on the \"mat\". Purred", &StatsParams::DOCUMENT, Some(&common));
        assert_eq!(s.common_word_ratio, Some(6.0 / 7.0));
        assert_eq!(text_stats("The cat", &StatsParams::DOCUMENT).common_word_ratio, None);
        assert_eq!(text_stats_with("", &StatsParams::DOCUMENT, Some(&common)).common_word_ratio, Some(0.0));
        // An entry OBELICS's words never give (upper case) never matches.
        let upper: WordSet = ["The"].into_iter().map(String::from).collect();
        assert_eq!(text_stats_with("The the", &StatsParams::DOCUMENT, Some(&upper)).common_word_ratio, Some(0.0));
        let good = "The cat sat on the mat and it was a very good day for all of us, as we went to the park.";
        let (kept, removed) = filter_paragraphs(good, &ParagraphRules::default(), Some(&common));
        assert_eq!((kept, removed), (None, vec![(0, ParagraphCheck::CommonWords)]));
        // A paragraph failing an earlier check is removed for that one.
        assert_eq!(filter_paragraphs("buy now", &ParagraphRules::default(), Some(&common)).1, vec![(0, ParagraphCheck::Words)]);
    }
}
