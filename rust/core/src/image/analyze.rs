//! One decode per image: CLIP pixels, image statistics and perceptual hashes from a single
//! pass over each image's bytes.
//!
//! [`analyze`] is the entry point every image kernel goes through ([`preprocess_batch`],
//! [`image_stats`], [`hash_image`] are it asked for one thing). What it shares:
//! - the statistics and the exact hashes read the same gray image (Pillow's `convert("L")`),
//!   decoded once;
//! - when CLIP pixels are asked too and their decode is the plain `convert("RGB")` one (no
//!   JPEG draft, no EXIF rotation, alpha dropped: the defaults), the gray image is computed
//!   from those RGB pixels (`L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`, Pillow's formula,
//!   which gives `convert("L")` of the original exactly), so the image is decoded once in all;
//! - a drafted JPEG for the CLIP pixels, EXIF rotation or alpha composited on white change the
//!   pixels, so the gray image is then decoded separately, as are hashes asked with their own
//!   JPEG draft (`hash_draft`).
//!
//! [`preprocess_batch`]: crate::image::preprocess::preprocess_batch
//! [`image_stats`]: crate::image::stats::image_stats
//! [`hash_image`]: crate::hash::perceptual::hash_image

use rayon::prelude::*;

use crate::error::{ErrorKind, RecordError};
use crate::hash::perceptual::{hash_luma, Bits, PerceptualKind};
use crate::image::decode::Source;
use crate::image::decode::{checked_header_with, decode_luma, decode_luma_draft, header_size, rgb_to_luma, DecodeLimits};
use crate::image::preprocess::{PixelFloat, PreprocessConfig, Preprocessor};
use crate::image::stats::{header_stats_and_jpeg_size, luma_stats, ImageStats};

/// What to compute for every image of a batch.
#[derive(Clone, Debug, Default)]
pub struct Wants<'a> {
    /// CLIP pixels, written to the caller's `(N, 3, H, W)` output.
    pub pixels: Option<&'a PreprocessConfig>,
    /// Image statistics ([`ImageStats`]).
    pub stats: bool,
    /// Statistics from the header only (size, format, mode, frames, bytes; checked against
    /// the limits): no decoding for them, and the pixel statistics stay `None`. A file whose
    /// header reads but whose data is damaged is not detected then.
    pub header_only: bool,
    /// Perceptual hashes, each a (kind, hash_size).
    pub hashes: Vec<(PerceptualKind, usize)>,
    /// Decode JPEGs for the hashes as Pillow's `draft("L", (n, n))` does (faster, not
    /// bit-identical to a full decode; see [`decode_luma_draft`]).
    pub hash_draft: Option<usize>,
    /// Decode limits for the statistics and hashes (the pixels use their config's).
    pub limits: DecodeLimits,
}

/// What [`analyze`] found for one image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Analysis {
    /// The statistics when asked: header fields even when decoding failed; `None` for a
    /// missing image.
    pub stats: Option<ImageStats>,
    /// One entry per asked hash, `None` when the image did not decode.
    pub hashes: Vec<Option<Bits>>,
    /// The first error met, if any (a failed image leaves its pixel slot zero).
    pub error: Option<RecordError>,
}

fn check_hashes(wants: &Wants) -> Result<(), String> {
    match wants.hashes.iter().find(|(_, n)| !(2..=MAX_HASH_SIZE).contains(n)) {
        Some((_, n)) => Err(format!("hash_size must be in [2, {MAX_HASH_SIZE}], got {n}")),
        None => Ok(()),
    }
}

/// The largest hash_size accepted (a 256 x 256 bit hash; imagehash puts no bound, but the DCT
/// of a larger one would need an image of millions of pixels per hash).
pub const MAX_HASH_SIZE: usize = 256;

/// Decodes each image once and computes what `wants` asks, in parallel on the current rayon
/// pool. `pixels` holds `N x 3 x H x W` values when `wants.pixels` is set (empty otherwise).
/// Errors are values, one per image; an `Err` means the request itself is invalid.
pub fn analyze<T: PixelFloat>(images: &[Option<&[u8]>], wants: &Wants, pixels: &mut [T]) -> Result<Vec<Analysis>, String> {
    check_hashes(wants)?;
    let pre = wants.pixels.map(Preprocessor::new).transpose()?;
    let per = pre.as_ref().map_or(0, Preprocessor::values_per_image);
    if pixels.len() != per * images.len() {
        return Err(format!("the pixel output holds {} values, {} images need {}", pixels.len(), images.len(), per * images.len()));
    }
    let one = |img: &Option<&[u8]>, slot: &mut [T]| -> Analysis {
        let a = match img {
            None => Analysis {
                hashes: vec![None; wants.hashes.len()],
                error: Some(RecordError::new(ErrorKind::MissingImage, "no image bytes")),
                ..Default::default()
            },
            Some(data) => analyze_one(data, wants, pre.as_ref(), slot),
        };
        if a.error.is_some() {
            slot.fill(T::default());
        }
        a
    };
    // Identical byte strings are analysed once (a logo or a placeholder shared by many
    // documents of a batch); each later copy takes the first one's results and pixels.
    let copy_of = first_copies(images);
    let mut out: Vec<Analysis> = if per == 0 {
        images.par_iter().zip(copy_of.par_iter()).map(|(img, c)| if c.is_some() { Analysis::default() } else { one(img, &mut []) }).collect()
    } else {
        pixels
            .par_chunks_mut(per)
            .zip(images.par_iter().zip(copy_of.par_iter()))
            .map(|(slot, (img, c))| if c.is_some() { Analysis::default() } else { one(img, slot) })
            .collect()
    };
    for (i, c) in copy_of.iter().enumerate() {
        if let Some(f) = *c {
            out[i] = out[f].clone();
            pixels.copy_within(f * per..(f + 1) * per, i * per);
        }
    }
    Ok(out)
}

/// For each image, the index of the first earlier image with the same bytes (`None` for the
/// first of its bytes and for missing images). Keys are xxh3 hashes checked byte for byte, so
/// a collision only costs a second decode.
fn first_copies(images: &[Option<&[u8]>]) -> Vec<Option<usize>> {
    let keys: Vec<Option<u64>> = images.par_iter().map(|img| img.map(crate::hash::xxh3_64)).collect();
    let mut first: std::collections::HashMap<u64, usize> = std::collections::HashMap::with_capacity(images.len());
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let k = (*k)?;
            match first.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => (images[*e.get()] == images[i]).then_some(*e.get()),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                    None
                }
            }
        })
        .collect()
}

/// A gray image: (width, height, pixels).
type Luma = (u32, u32, Vec<u8>);

fn analyze_one<T: PixelFloat>(data: &[u8], wants: &Wants, pre: Option<&Preprocessor>, slot: &mut [T]) -> Analysis {
    let (stats, jpeg_size) = if wants.stats { header_stats_and_jpeg_size(data) } else { Default::default() };
    let mut out = Analysis { stats: wants.stats.then_some(stats), hashes: vec![None; wants.hashes.len()], error: None };
    let exact_hashes = !wants.hashes.is_empty() && wants.hash_draft.is_none();
    let need_luma = (wants.stats && !wants.header_only) || exact_hashes;
    if wants.stats && wants.header_only {
        // The JPEG size comes from the probe the header stats already ran.
        match checked_header_with(data, jpeg_size, &wants.limits) {
            Ok((_, w, h)) => {
                if let Some(s) = out.stats.as_mut() {
                    s.width = Some(w);
                    s.height = Some(h);
                }
            }
            Err(e) => out.error = Some(e),
        }
    }
    let mut luma: Option<Result<Luma, RecordError>> = None;
    if let Some(pre) = pre {
        match pre.decode(data) {
            Ok((src, target)) => {
                pre.fill(&src, target, slot);
                if let (Source::Rgb(rgb) | Source::Nearest(rgb, _), true) = (&src, need_luma && pre.plain_decode(data) && pre.cfg.decode.limits == wants.limits)
                {
                    luma = Some(Ok((rgb.width as u32, rgb.height as u32, rgb_to_luma(&rgb.px))));
                }
            }
            Err(e) => out.error = Some(e),
        }
    }
    if need_luma {
        let luma = luma.unwrap_or_else(|| decode_luma(data, &wants.limits));
        match luma {
            Ok((w, h, gray)) => {
                if let Some(s) = out.stats.as_mut() {
                    luma_stats(s, w, h, &gray);
                }
                if exact_hashes {
                    for (slot, &(kind, size)) in out.hashes.iter_mut().zip(&wants.hashes) {
                        *slot = Some(hash_luma(&gray, w as usize, h as usize, kind, size));
                    }
                }
            }
            Err(e) => {
                out.error.get_or_insert(e);
            }
        }
    }
    if let (Some(req), false) = (wants.hash_draft, wants.hashes.is_empty()) {
        match decode_luma_draft(data, &wants.limits, req) {
            Ok((w, h, gray)) => {
                for (slot, &(kind, size)) in out.hashes.iter_mut().zip(&wants.hashes) {
                    *slot = Some(hash_luma(&gray, w as usize, h as usize, kind, size));
                }
            }
            Err(e) => {
                out.error.get_or_insert(e);
            }
        }
    }
    // Pixels that do not decode (damage, or over a limit) still have the size their header
    // gives: size rules can judge them.
    if let (Some(s), Some(_)) = (out.stats.as_mut(), &out.error) {
        if s.width.is_none() {
            if let Ok((w, h)) = header_size(data) {
                (s.width, s.height) = (Some(w), Some(h));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::preprocess::preprocess_batch;

    fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 4]) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba(f(x, y)));
        let mut buf = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png).unwrap();
        buf
    }

    #[test]
    fn one_call_equals_the_three_separate_ones() {
        let a = png(67, 41, |x, y| [(x * 3) as u8, (y * 5) as u8, (x * y) as u8, 200]);
        let b = png(1, 1, |_, _| [255, 255, 255, 255]);
        let images = [Some(a.as_slice()), None, Some(b"junk".as_slice()), Some(b.as_slice())];
        let cfg = PreprocessConfig::open_clip(16);
        let limits = DecodeLimits::default();
        let kinds = vec![(PerceptualKind::Perceptual, 8), (PerceptualKind::Difference, 8)];
        let wants = Wants { pixels: Some(&cfg), stats: true, hashes: kinds.clone(), hash_draft: None, limits, ..Default::default() };
        let mut together = vec![0f32; 4 * 3 * 16 * 16];
        let all = analyze(&images, &wants, &mut together).unwrap();
        let mut alone = vec![0f32; 4 * 3 * 16 * 16];
        let errs = preprocess_batch(&images, &cfg, &mut alone).unwrap();
        assert_eq!(together, alone);
        for (i, img) in images.iter().enumerate() {
            assert_eq!(all[i].error.as_ref().map(|e| e.kind), errs[i].as_ref().map(|e| e.kind));
            let Some(data) = img else { continue };
            let (stats, _) = crate::image::stats::image_stats(data, &limits);
            assert_eq!(all[i].stats.as_ref(), Some(&stats));
            for (j, &(kind, size)) in kinds.iter().enumerate() {
                assert_eq!(all[i].hashes[j], crate::hash::perceptual::hash_image(data, kind, size, &limits, None).ok());
            }
        }
        assert_eq!(all[1].error.as_ref().unwrap().kind, ErrorKind::MissingImage);
        assert_eq!(all[2].error.as_ref().unwrap().kind, ErrorKind::UnknownImageFormat);
    }

    #[test]
    fn copies_of_the_same_bytes_get_the_first_ones_results() {
        let a = png(30, 20, |x, y| [(x * 7) as u8, (y * 11) as u8, 9, 255]);
        let b = png(20, 30, |x, y| [(y * 3) as u8, (x * 13) as u8, 90, 255]);
        let a2 = a.clone(); // equal bytes, another buffer
        let images =
            [Some(a.as_slice()), Some(b.as_slice()), None, Some(a2.as_slice()), Some(b"junk".as_slice()), Some(b"junk".as_slice()), Some(b.as_slice())];
        assert_eq!(first_copies(&images), vec![None, None, None, Some(0), None, Some(4), Some(1)]);
        let cfg = PreprocessConfig::open_clip(8);
        let wants = Wants { pixels: Some(&cfg), stats: true, hashes: vec![(PerceptualKind::Perceptual, 8)], ..Default::default() };
        let per = 3 * 8 * 8;
        let mut together = vec![0f32; images.len() * per];
        let all = analyze(&images, &wants, &mut together).unwrap();
        for (i, img) in images.iter().enumerate() {
            // Each image on its own gives what the batch gave it.
            let mut alone = vec![0f32; per];
            let one = analyze(&[*img], &wants, &mut alone).unwrap();
            assert_eq!(all[i], one[0], "image {i}");
            assert_eq!(&together[i * per..(i + 1) * per], alone.as_slice(), "pixels of image {i}");
        }
        assert_eq!(all[5].error.as_ref().unwrap().kind, ErrorKind::UnknownImageFormat);
    }

    #[test]
    fn hash_sizes_out_of_range_are_refused_before_any_work() {
        let wants = Wants { hashes: vec![(PerceptualKind::Perceptual, 1)], ..Default::default() };
        assert!(analyze::<f32>(&[None], &wants, &mut []).unwrap_err().contains("hash_size"));
        let wants = Wants { hashes: vec![(PerceptualKind::Perceptual, 1 << 31)], ..Default::default() };
        assert!(analyze::<f32>(&[None], &wants, &mut []).is_err());
    }
}
