//! Hashing for deduplication: exact keys, MinHash signatures and LSH clustering.

pub mod exact;
pub mod lsh;
pub mod minhash;
pub mod neardup;
pub mod perceptual;
pub mod unionfind;

pub use exact::{blake3_hex, normalized_text_hex, xxh3_128_hex, xxh3_64};
