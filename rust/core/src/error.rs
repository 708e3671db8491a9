//! Errors are values: a record that cannot be read keeps flowing with a [`RecordError`].
//!
//! Every kind of record error is one [`ErrorKind`]; the registry ([`ErrorKind::ALL`], each
//! kind's name and one-line meaning) is what `interleaf.ERROR_KINDS` exports and what the
//! node-table docs list, so a kind cannot be emitted without being documented.

use std::fmt;

macro_rules! error_kinds {
    ($($variant:ident => $name:literal : $doc:literal,)+) => {
        /// What went wrong with one record (a document, a node, an image or a text).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorKind {
            $(#[doc = $doc] $variant,)+
        }

        impl ErrorKind {
            /// Every kind, in registry order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant,)+];

            /// The stable snake_case name that tables and summaries carry.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $name,)+
                }
            }

            /// One line on what the kind means and what happened to the record.
            pub const fn doc(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $doc,)+
                }
            }
        }
    };
}

error_kinds! {
    Io => "io": "a file could not be opened or read (the message has the OS error); nothing of it was read",
    TruncatedFile => "truncated_file": "a compressed stream (gzip, zstd) ends early; records before the cut are kept",
    TruncatedTar => "truncated_tar": "a tar archive ends inside a header or a member; that member and the rest are lost",
    CorruptTar => "corrupt_tar": "a tar header is invalid (checksum, size); the rest of that archive is skipped",
    CorruptParquet => "corrupt_parquet": "a parquet file or row group cannot be decoded; the rows before it are kept",
    DuplicateMember => "duplicate_member": "a WebDataset sample has two members with one extension; the first is kept",
    MemberTooLarge => "member_too_large": "a tar member or image file is over the size limit, or a WebDataset sample or a record over its limits (members or image files together over 8 times it, or over 65,536 members): what is over was not read or kept",
    MissingPartner => "missing_partner": "an image-text pair lacks its image or its text; the half that exists is kept",
    InvalidUtf8 => "invalid_utf8": "text is not valid UTF-8; invalid bytes were replaced by U+FFFD (or the text skipped)",
    MalformedJson => "malformed_json": "a JSON line or json member does not parse; the raw text is kept in meta.__raw__",
    LineTooLong => "line_too_long": "a JSON line is over the length limit, or a JSON line or json member holds over 8 Mi values or 1 Mi arrays and objects (too many to parse in bounded memory); a line's first 4 KiB are kept in meta.__raw__",
    BadRecord => "bad_record": "a record does not fit its format (missing or ill-typed fields, unknown format)",
    EmptyDocument => "empty_document": "a record has no text or image node",
    MissingImage => "missing_image": "an image node has no bytes: its file is absent, or a member it names is missing",
    PathOutsideRoot => "path_outside_root": "a record names an image path that resolves outside the image root (not read unless allowed)",
    NotAFile => "not_a_file": "a record names an image path that is a directory, device or FIFO (never opened)",
    EmptyFile => "empty_file": "a source file (a tar, a compressed file) has no bytes at all",
    EmptyImage => "empty_image": "image bytes are empty",
    UnknownImageFormat => "unknown_image_format": "image bytes are not JPEG, PNG, WebP, GIF or BMP",
    CorruptImage => "corrupt_image": "an image header or its pixel data cannot be decoded",
    TruncatedImage => "truncated_image": "image data ends before its end marker (Pillow refuses such files too)",
    ImageTooLarge => "image_too_large": "an image is over the byte or pixel limit (checked from its header, before decoding), or a JPEG has over 500 scans or over 4e9 scans x pixels",
    MissingText => "missing_text": "a text input is null",
    TooFewTokens => "too_few_tokens": "a text has no token a language model can score (perplexity needs one after the first)",
    NoText => "no_text": "a signal has no text to compare an image with (its document or step has none)",
    BelowThreshold => "below_threshold": "MMC4's assignment dropped the image: its best similarity is below the threshold",
    TooFewImages => "too_few_images": "a document has fewer usable images than the signal is defined for (CoMM's F: 3)",
    TooFewSteps => "too_few_steps": "a document has fewer steps with text than the signal is defined for (coherence: 2)",
    BadArgument => "bad_argument": "an argument makes the computation impossible for this record (for example hash_size < 2)",
    SignalFailed => "signal_failed": "a signal failed on the batch holding this record (a model error); the message has the cause; the record is kept and the run goes on",
    LlmFailed => "llm_failed": "an LLM endpoint gave no usable answer for this record: the request failed after its retries, or the answer could not be parsed (the message says which); the record is kept",
    Other => "other": "an error kind read from a file that this version does not know; the message starts with that kind",
}

impl ErrorKind {
    /// The kind named `s`, if it is in the registry.
    pub fn parse(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong with one record (a document or a node): a kind from the registry and a
/// message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RecordError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// An error as a file stored it (`{"kind", "message"}`): a kind outside the registry
    /// becomes [`ErrorKind::Other`] with the stored kind kept at the start of the message.
    pub fn from_stored(kind: &str, message: &str) -> Self {
        match ErrorKind::parse(kind) {
            Some(k) => RecordError::new(k, message),
            None => RecordError::new(ErrorKind::Other, format!("{kind}: {message}")),
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// Errors that stop a whole operation (cannot open a file, cannot write), as opposed to
/// [`RecordError`]s, which stay attached to their record.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_snake_case_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for &k in ErrorKind::ALL {
            let name = k.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()), "{name}");
            assert_eq!(ErrorKind::parse(name), Some(k));
            assert!(!k.doc().is_empty());
        }
    }

    #[test]
    fn stored_errors_of_unknown_kinds_keep_their_kind_in_the_message() {
        assert_eq!(RecordError::from_stored("corrupt_image", "x"), RecordError::new(ErrorKind::CorruptImage, "x"));
        let e = RecordError::from_stored("gremlins", "in the data");
        assert_eq!(e.kind, ErrorKind::Other);
        assert_eq!(e.message, "gremlins: in the data");
    }
}
