//! Images: decoding with limits, header probing, Pillow-compatible conversion and resampling,
//! CLIP preprocessing, image statistics, and [`analyze`], which gives all three from one decode.

pub mod analyze;
pub mod compare;
pub mod decode;
mod jpeg_eighth;
pub mod preprocess;
pub mod probe;
pub mod resample;
pub mod stats;
pub mod thumbnail;

pub use analyze::{analyze, Analysis, Wants};
pub use decode::{
    decode, decode_luma, decode_luma_draft, decode_rgb, decode_source, orient, to_luma_pillow, Alpha, DecodeLimits, DecodeOptions, Rgb8, Source,
    DEFAULT_MAX_PIXELS,
};
pub use preprocess::{ConvertOrder, PreprocessConfig, ResizeMode};
pub use probe::{probe, Probe};
pub use resample::{resize, resize_luma, Filter};
pub use stats::{image_stats, ImageStats};
