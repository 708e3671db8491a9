//! Errors are values: a record that cannot be read keeps flowing with a [`RecordError`].

use std::fmt;

/// What went wrong with one record (a document or a node), as a stable kind and a message.
///
/// Kinds are short snake_case words that summaries count by:
/// `truncated_tar`, `corrupt_tar`, `missing_partner`, `invalid_utf8`, `malformed_json`,
/// `missing_image`, `duplicate_member`, `member_too_large`, `line_too_long`, `bad_record`,
/// `empty_document`, `io`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    pub kind: String,
    pub message: String,
}

impl RecordError {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Self { kind: kind.to_string(), message: message.into() }
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
