//! Fuzz target over the image pipeline: header probe, decode (RGB, alpha both ways, EXIF
//! orientation), CLIP preprocessing in every resize mode, statistics, and the grayscale decodes
//! behind the perceptual hashes (full, and drafted at 1/2 to 1/8 scale, where our own 1/8-scale
//! entropy decoder runs). Any panic that
//! escapes our code, any sanitizer report and any allocation over libFuzzer's RSS limit is
//! a finding. Run: `make fuzz` (cargo +nightly fuzz run image).
#![no_main]

use interleaf_core::image::decode::{Alpha, DecodeLimits};
use interleaf_core::image::preprocess::{preprocess_batch, PreprocessConfig, ResizeMode};
use interleaf_core::image::{decode_luma, decode_luma_draft, image_stats, probe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // libjpeg reports errors by unwinding out of its error handler, which our decoder
    // catches; libFuzzer's panic hook would abort on those, so panics are judged by whether
    // they escape instead.
    std::panic::set_hook(Box::new(|_| {}));
    let escaped = std::panic::catch_unwind(|| run(data)).is_err();
    if escaped {
        std::process::abort();
    }
});

fn run(data: &[u8]) {
    let selector = data.last().copied().unwrap_or(0);
    let limits = DecodeLimits { max_pixels: 1 << 22, max_bytes: 1 << 24 };
    let _ = probe(data);
    let mut cfg = PreprocessConfig::open_clip(32);
    cfg.mode = [ResizeMode::Shortest, ResizeMode::Squash, ResizeMode::Longest][selector as usize % 3];
    if cfg.mode != ResizeMode::Shortest && selector & 4 != 0 {
        cfg.crop = None;
    }
    cfg.decode.limits = limits;
    cfg.decode.alpha = if selector & 8 != 0 { Alpha::White } else { Alpha::Drop };
    cfg.decode.exif_transpose = selector & 16 != 0;
    let (h, w) = cfg.output_shape().unwrap();
    let mut out = vec![0f32; 3 * h * w];
    let errors = preprocess_batch(&[Some(data)], &cfg, &mut out).unwrap();
    if errors[0].is_none() {
        assert!(out.iter().all(|v| v.is_finite()));
    }
    for luma in [decode_luma(data, &limits), decode_luma_draft(data, &limits, [1, 8, 16, 64][(selector >> 5) as usize & 3])] {
        if let Ok((w, h, px)) = luma {
            assert_eq!(px.len(), w as usize * h as usize);
        }
    }
    let (stats, err) = image_stats(data, &limits);
    assert_eq!(stats.bytes, data.len() as u64);
    if err.is_none() {
        let (bw, bh) = (stats.width.unwrap(), stats.height.unwrap());
        assert!(bw as u64 * bh as u64 <= limits.max_pixels);
        assert!(stats.blur.unwrap() >= 0.0 && stats.entropy.unwrap() >= 0.0);
    }
}
