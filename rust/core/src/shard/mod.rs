//! WebDataset shards: streaming read with member grouping exactly as the `webdataset` package
//! does it, conversion of samples to documents and back, and a deterministic shard writer.

mod convert;
mod tar_read;
mod writer;

use std::io::BufRead;
use std::sync::OnceLock;

use regex::Regex;

pub use convert::{document_to_members, key_for, sample_to_document, sniff_image_ext, IMAGE_EXTENSIONS};
pub use tar_read::{TarEvent, TarReader};
pub use writer::{check_file_name, temp_name, ShardNames, ShardWriter, ShardWriterOptions, WriteLock};

use crate::error::{ErrorKind, RecordError};

/// Default limit on one member's size: larger members are skipped with `member_too_large`.
pub const DEFAULT_MAX_MEMBER_BYTES: u64 = 256 << 20;

/// Splits a member path into (sample key, extension) like `webdataset.tariterators.base_plus_ext`:
/// key = path up to the first dot of the basename, extension = the rest. `None` for names that
/// webdataset skips (no dot in the basename).
pub fn split_key(name: &str) -> Option<(&str, &str)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^((?:.*/|)[^.]+)[.]([^/]*)$").expect("valid regex"));
    let caps = re.captures(name)?;
    Some((caps.get(1)?.as_str(), caps.get(2)?.as_str()))
}

/// Members that webdataset skips as metadata: `__[^/]*__($|/)` at the start of the path.
pub fn is_meta_member(name: &str) -> bool {
    let first = name.split('/').next().unwrap_or("");
    first.len() >= 4 && first.starts_with("__") && first.ends_with("__")
}

/// One WebDataset sample: consecutive members sharing a key. Extensions are lower-cased.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    pub key: String,
    pub url: String,
    pub members: Vec<(String, Vec<u8>)>,
    pub errors: Vec<RecordError>,
}

impl Sample {
    pub fn get(&self, ext: &str) -> Option<&[u8]> {
        self.members.iter().find(|(e, _)| e == ext).map(|(_, d)| d.as_slice())
    }
}

/// The most members one sample keeps; later ones are not kept (`member_too_large`). Real
/// samples have a handful (a document we write has one per image, plus its json); the cap
/// bounds the time and memory a crafted one can take.
pub const MAX_SAMPLE_MEMBERS: usize = 65_536;

/// A sample's members together may hold this many times the member limit (2 GiB at the
/// default): a document of many large images reads whole, a crafted sample stays bounded.
pub const SAMPLE_BYTES_PER_MEMBER_LIMIT: u64 = 8;

/// The most errors one sample keeps (a crafted sample can repeat a damaged member).
const MAX_SAMPLE_ERRORS: usize = 1000;

/// Groups the members of one tar stream into samples. A sample's members together are held to
/// [`SAMPLE_BYTES_PER_MEMBER_LIMIT`] times the member limit and to [`MAX_SAMPLE_MEMBERS`]
/// members: a member past either is not kept (`member_too_large`), so no sample holds more than
/// that (plus one member in flight).
pub struct SampleReader<R> {
    tar: TarReader<R>,
    url: String,
    current: Option<Sample>,
    finished: bool,
    max_sample_bytes: u64,
    /// Bytes of the current sample's members; whether it has said it is over a limit.
    current_bytes: u64,
    current_over: bool,
    /// The current sample's extensions, for the duplicate check in constant time.
    current_exts: std::collections::HashSet<String>,
}

impl<R: BufRead> SampleReader<R> {
    pub fn new(inner: R, url: impl Into<String>, max_member_bytes: u64) -> Self {
        SampleReader {
            tar: TarReader::new(inner, max_member_bytes),
            url: url.into(),
            current: None,
            finished: false,
            max_sample_bytes: max_member_bytes.saturating_mul(SAMPLE_BYTES_PER_MEMBER_LIMIT),
            current_bytes: 0,
            current_over: false,
            current_exts: Default::default(),
        }
    }

    /// Makes `sample` the current one (its limits counted afresh); returns the previous one.
    fn begin(&mut self, sample: Sample) -> Option<Sample> {
        (self.current_bytes, self.current_over) = (0, false);
        self.current_exts.clear();
        self.current.replace(sample)
    }

    /// Puts a member into the current sample, returning the previous sample when the key changed.
    fn place(&mut self, key: &str, ext: String, data: Option<Vec<u8>>, error: Option<RecordError>) -> Option<Sample> {
        let mut emitted = None;
        if self.current.as_ref().is_none_or(|s| s.key != key) {
            emitted = self.begin(Sample { key: key.to_string(), url: self.url.clone(), ..Default::default() });
        }
        let sample = self.current.as_mut().expect("current sample");
        if let Some(e) = error.filter(|_| sample.errors.len() < MAX_SAMPLE_ERRORS) {
            sample.errors.push(e);
        }
        if let Some(data) = data {
            let bytes = self.current_bytes.saturating_add(data.len() as u64);
            if bytes > self.max_sample_bytes || sample.members.len() >= MAX_SAMPLE_MEMBERS {
                if !self.current_over {
                    self.current_over = true;
                    let why = if bytes > self.max_sample_bytes {
                        format!("its members come to over {} bytes, the limit", self.max_sample_bytes)
                    } else {
                        format!("it has over {MAX_SAMPLE_MEMBERS} members")
                    };
                    let msg = format!("sample {key:?}: {why}; member {ext:?} and any later ones over the limit are not kept");
                    sample.errors.push(RecordError::new(ErrorKind::MemberTooLarge, msg));
                }
            } else if self.current_exts.contains(&ext) {
                if sample.errors.len() < MAX_SAMPLE_ERRORS {
                    sample.errors.push(RecordError::new(
                        ErrorKind::DuplicateMember,
                        format!("sample {key:?} has a second member with extension {ext:?}; the first is kept"),
                    ));
                }
            } else {
                self.current_bytes = bytes;
                self.current_exts.insert(ext.clone());
                sample.members.push((ext, data));
            }
        }
        emitted
    }
}

impl<R: BufRead> Iterator for SampleReader<R> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        while !self.finished {
            let Some(event) = self.tar.next() else {
                self.finished = true;
                break;
            };
            match event {
                TarEvent::Member { name, data } => {
                    if is_meta_member(&name) {
                        continue;
                    }
                    let Some((key, ext)) = split_key(&name) else { continue };
                    let (key, ext) = (key.to_string(), ext.to_lowercase());
                    if let Some(s) = self.place(&key, ext, Some(data), None) {
                        return Some(s);
                    }
                }
                TarEvent::Damaged { name, error, .. } => {
                    let keyed = name.as_deref().and_then(split_key).map(|(k, e)| (k.to_string(), e.to_lowercase()));
                    match keyed {
                        Some((key, ext)) => {
                            let error = RecordError::new(error.kind, format!("{}: {}", name.as_deref().unwrap_or(""), error.message));
                            if let Some(s) = self.place(&key, ext, None, Some(error)) {
                                return Some(s);
                            }
                        }
                        None => {
                            // Damage we cannot attribute to a key becomes a record of its own.
                            let prev =
                                self.begin(Sample { key: format!("{}#damaged", self.url), url: self.url.clone(), members: Vec::new(), errors: vec![error] });
                            if prev.is_some() {
                                return prev;
                            }
                        }
                    }
                }
            }
        }
        self.current.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_key_follows_webdataset() {
        assert_eq!(split_key("a/b/000001.jpg"), Some(("a/b/000001", "jpg")));
        assert_eq!(split_key("000001.seg.0.JPG"), Some(("000001", "seg.0.JPG")));
        assert_eq!(split_key("a.b/c.txt"), Some(("a.b/c", "txt")));
        assert_eq!(split_key("noext"), None);
        assert_eq!(split_key("dir/.hidden"), Some(("dir/", "hidden")));
        assert_eq!(split_key("a.b/.hidden"), None);
    }

    #[test]
    fn meta_members_are_recognised() {
        assert!(is_meta_member("__meta__"));
        assert!(is_meta_member("__index__/x.json"));
        assert!(!is_meta_member("__a__b.txt"));
        assert!(!is_meta_member("___"));
    }
}
