//! interleaf-core: the pure Rust core of interleaf. Nothing here knows Python exists.
//!
//! - [`doc`]: the document model (documents made of text and image nodes) and columnar batches.
//! - [`shard`]: streaming WebDataset tar reading and writing, member grouping as `webdataset` does.
//! - [`formats`]: JSON records (pairs, MMC4, OBELICS, CoMM, LLaVA, our own) to documents and back.
//! - [`hash`]: exact keys, MinHash signatures, LSH clustering, union-find.
//! - [`image`]: decoding with limits, Pillow-compatible grayscale and resampling.
//! - [`sim`]: per-document cosine matrices, linear assignment, MMC4 assignment, CoMM's F, coherence.
//! - [`text`]: Python-compatible whitespace, normalisation, shingles.
//! - [`threads`], [`cpu`]: the process-wide thread policy and the CPU features SIMD paths use.
//! - [`cancel`]: cooperative cancellation of long computations (Ctrl-C in Python).

pub mod cancel;
pub mod cpu;
pub mod doc;
pub mod error;
pub mod formats;
pub mod hash;
pub mod image;
pub mod input;
pub mod reader;
pub mod shard;
pub mod sim;
pub mod text;
pub mod threads;

pub use doc::{Document, Node, NodeBatch, NodeKind, ReadStats};
pub use error::{Error, ErrorKind, RecordError, Result};
