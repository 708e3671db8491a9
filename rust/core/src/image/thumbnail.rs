//! Small JPEG previews of images (the run report shows them inline).

use image::codecs::jpeg::JpegEncoder;

use super::decode::{decode_rgb_draft, DecodeOptions};
use super::resample::{resize, Filter};
use crate::error::{ErrorKind, RecordError};

/// `data` decoded (EXIF orientation applied, JPEGs decoded reduced when that is enough),
/// scaled to fit in `max_side` x `max_side` (never enlarged) with Pillow's bilinear filter,
/// and encoded as a baseline JPEG of `quality` (1-100).
pub fn thumbnail(data: &[u8], max_side: usize, quality: u8, opts: &DecodeOptions) -> Result<Vec<u8>, RecordError> {
    let opts = DecodeOptions { exif_transpose: true, ..*opts };
    let img = decode_rgb_draft(data, &opts, Some((max_side, max_side)))?;
    let (w, h) = (img.width, img.height);
    let scale = max_side as f64 / w.max(h) as f64;
    let (tw, th) = if scale < 1.0 { (((w as f64 * scale).round() as usize).max(1), ((h as f64 * scale).round() as usize).max(1)) } else { (w, h) };
    let px = if (tw, th) == (w, h) { img.px } else { resize::<3>(&img.px, w, h, tw, th, Filter::Bilinear) };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode(&px, tw as u32, th as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| RecordError::new(ErrorKind::Other, format!("thumbnail: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_the_box_and_keeps_the_aspect() {
        let mut png = Vec::new();
        let px: Vec<u8> = (0..300 * 100 * 3).map(|i| (i % 251) as u8).collect();
        image::codecs::png::PngEncoder::new(&mut png).write_image(&px, 300, 100, image::ExtendedColorType::Rgb8).unwrap();
        let t = thumbnail(&png, 60, 80, &DecodeOptions::default()).unwrap();
        let back = image::load_from_memory(&t).unwrap();
        assert_eq!((back.width(), back.height()), (60, 20));
        let small = thumbnail(&png, 1000, 80, &DecodeOptions::default()).unwrap();
        assert_eq!(image::load_from_memory(&small).unwrap().width(), 300);
        assert!(thumbnail(b"nope", 60, 80, &DecodeOptions::default()).is_err());
    }

    use image::ImageEncoder;
}
