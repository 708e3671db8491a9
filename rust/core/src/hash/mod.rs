//! Hashing for deduplication: exact keys, MinHash signatures and LSH clustering.

pub mod exact;
pub mod lsh;
pub mod minhash;
pub mod neardup;
pub mod perceptual;
pub mod unionfind;

pub use exact::{blake3, hex_into, normalized_text_xxh3, xxh3_128, xxh3_64};
