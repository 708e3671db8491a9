//! Decoding encoded image bytes (JPEG, PNG, WebP, GIF first frame, BMP) with limits read from
//! the header before any large allocation, and grayscale conversion as Pillow's
//! `convert("L")` does it.

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, RgbImage};

use crate::error::RecordError;

/// Pillow's `Image.MAX_IMAGE_PIXELS` (89,478,485): larger images are decompression-bomb errors.
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub max_pixels: u64,
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_pixels: DEFAULT_MAX_PIXELS, max_bytes: 256 << 20 }
    }
}

fn err(kind: &str, msg: impl Into<String>) -> RecordError {
    RecordError::new(kind, msg)
}

/// Decodes `data`. Errors: `empty_image`, `image_too_large` (bytes or header-declared pixels
/// over the limits, checked before decoding), `unknown_image_format`, `corrupt_image`.
pub fn decode(data: &[u8], limits: &DecodeLimits) -> Result<DynamicImage, RecordError> {
    if data.is_empty() {
        return Err(err("empty_image", "zero-length image bytes"));
    }
    if data.len() as u64 > limits.max_bytes {
        return Err(err("image_too_large", format!("{} bytes exceeds the limit of {}", data.len(), limits.max_bytes)));
    }
    let reader = ImageReader::new(Cursor::new(data)).with_guessed_format().map_err(|e| err("corrupt_image", e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(err("unknown_image_format", "bytes are not JPEG, PNG, WebP, GIF or BMP"));
    };
    let (w, h) = reader.into_dimensions().map_err(|e| err("corrupt_image", format!("{format:?} header: {e}")))?;
    let pixels = w as u64 * h as u64;
    if pixels > limits.max_pixels {
        return Err(err("image_too_large", format!("{w}x{h} = {pixels} pixels exceeds the limit of {}", limits.max_pixels)));
    }
    if format == ImageFormat::Jpeg {
        if let Some(img) = decode_jpeg_libjpeg(data)? {
            return Ok(img);
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    let mut l = image::Limits::default();
    l.max_image_width = Some(w);
    l.max_image_height = Some(h);
    l.max_alloc = Some((pixels * 16).max(1 << 20));
    reader.limits(l);
    // For GIF this is the first frame, as Pillow's Image.open gives.
    reader.decode().map_err(|e| err("corrupt_image", format!("{format:?}: {e}")))
}

/// True when an end-of-image marker follows the last start-of-scan marker (an EXIF thumbnail's
/// markers come earlier, inside APP1).
fn jpeg_has_eoi(data: &[u8]) -> bool {
    let last = |m: u8| data.windows(2).rposition(|w| w[0] == 0xFF && w[1] == m);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

/// JPEG with libjpeg-turbo's decoder (mozjpeg), as Pillow decodes it: islow IDCT, fancy
/// upsampling, its YCbCr tables. `Ok(None)` for colour spaces handled elsewhere (CMYK, YCCK).
/// A file cut before its end-of-image marker is `truncated_image`, as Pillow refuses it.
fn decode_jpeg_libjpeg(data: &[u8]) -> Result<Option<DynamicImage>, RecordError> {
    use mozjpeg::ColorSpace;
    if !jpeg_has_eoi(data) {
        return Err(err("truncated_image", "JPEG data ends before its end-of-image marker"));
    }
    let run = || -> std::io::Result<Option<DynamicImage>> {
        let d = mozjpeg::Decompress::new_mem(data)?;
        let (w, h) = (d.width() as u32, d.height() as u32);
        match d.color_space() {
            ColorSpace::JCS_GRAYSCALE => {
                let mut s = d.grayscale()?;
                let px = s.read_scanlines::<u8>()?;
                s.finish()?;
                Ok(GrayImage::from_raw(w, h, px).map(DynamicImage::ImageLuma8))
            }
            ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => {
                let mut s = d.rgb()?;
                let px = s.read_scanlines::<u8>()?;
                s.finish()?;
                Ok(RgbImage::from_raw(w, h, px).map(DynamicImage::ImageRgb8))
            }
            _ => Ok(None),
        }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(err("corrupt_image", format!("JPEG: {e}"))),
        Err(payload) => {
            let msg = payload.downcast_ref::<String>().cloned().unwrap_or_else(|| "libjpeg error".into());
            Err(err("corrupt_image", format!("JPEG: {msg}")))
        }
    }
}

/// Pillow's ITU-R 601-2 luma with its fixed-point rounding: `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`.
#[inline]
fn l24(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// The 8-bit grayscale image that Pillow's `Image.open(...).convert("L")` gives: RGB(A) through
/// [`l24`] (alpha ignored), gray as is, 16-bit gray clipped at 255 (Pillow's `I;16` -> `L`),
/// 16-bit colour through its high bytes (Pillow unpacks 16-bit PNG colour that way).
pub fn to_luma_pillow(img: &DynamicImage) -> (u32, u32, Vec<u8>) {
    let (w, h) = (img.width(), img.height());
    let px: Vec<u8> = match img {
        DynamicImage::ImageLuma8(b) => b.as_raw().clone(),
        DynamicImage::ImageLumaA8(b) => b.as_raw().chunks_exact(2).map(|p| p[0]).collect(),
        DynamicImage::ImageRgb8(b) => b.as_raw().chunks_exact(3).map(|p| l24(p[0], p[1], p[2])).collect(),
        DynamicImage::ImageRgba8(b) => b.as_raw().chunks_exact(4).map(|p| l24(p[0], p[1], p[2])).collect(),
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().map(|&v| v.min(255) as u8).collect(),
        DynamicImage::ImageLumaA16(b) => b.as_raw().chunks_exact(2).map(|p| p[0].min(255) as u8).collect(),
        DynamicImage::ImageRgb16(b) => b.as_raw().chunks_exact(3).map(|p| l24((p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8)).collect(),
        DynamicImage::ImageRgba16(b) => b.as_raw().chunks_exact(4).map(|p| l24((p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8)).collect(),
        other => other.to_rgb8().as_raw().chunks_exact(3).map(|p| l24(p[0], p[1], p[2])).collect(),
    };
    (w, h, px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l24_matches_pillow_on_known_values() {
        // PIL.Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0))
        assert_eq!(l24(255, 255, 255), 255);
        assert_eq!(l24(255, 0, 0), 76);
        assert_eq!(l24(0, 255, 0), 150);
        assert_eq!(l24(0, 0, 255), 29);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let l = DecodeLimits::default();
        assert_eq!(decode(b"", &l).unwrap_err().kind, "empty_image");
        assert_eq!(decode(b"not an image at all", &l).unwrap_err().kind, "unknown_image_format");
        assert!(decode(b"\xff\xd8\xff\xe0\x00\x10JFIF", &l).is_err());
    }
}
