//! Images: decoding with limits, and Pillow-compatible grayscale conversion and resampling.

pub mod decode;
pub mod resample;

pub use decode::{decode, to_luma_pillow, DecodeLimits, DEFAULT_MAX_PIXELS};
pub use resample::{resize_luma, Filter};
