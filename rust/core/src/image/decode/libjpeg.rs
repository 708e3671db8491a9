//! JPEG through libjpeg-turbo's decoder (mozjpeg), exactly as Pillow decodes it, including
//! the DCT-domain reduced scales of Pillow's `Image.draft`.

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use super::convert::rgbx_to_luma;
use super::err;
use crate::error::{ErrorKind, RecordError};

/// The libjpeg scale numerator (of 8) that shrinks a `w x h` JPEG the most while keeping it at
/// least `min_w x min_h` (libjpeg rounds scaled sizes up), as Pillow's `Image.draft` picks it.
pub(super) fn draft_numerator(w: u32, h: u32, min_w: usize, min_h: usize) -> u8 {
    [1u8, 2, 4].into_iter().find(|&n| (w as usize * n as usize).div_ceil(8) >= min_w && (h as usize * n as usize).div_ceil(8) >= min_h).unwrap_or(8)
}

/// Pillow's `JpegImageFile.draft(mode, (req, req))` scale denominator for a `w x h` JPEG: the
/// largest of 8, 4, 2, 1 not above `min(w // req, h // req)`.
pub(super) fn pillow_draft_denominator(w: u32, h: u32, req: usize) -> u8 {
    let scale = (w as usize / req.max(1)).min(h as usize / req.max(1));
    [8u8, 4, 2].into_iter().find(|&s| scale >= s as usize).unwrap_or(1)
}

/// True when an end-of-image marker follows the last start-of-scan marker (an EXIF thumbnail's
/// markers come earlier, inside APP1).
pub(super) fn jpeg_has_eoi(data: &[u8]) -> bool {
    // "The last SOS comes before the last EOI", without scanning the entropy-coded data
    // backwards: the last EOI is near the end, the first SOS near the start.
    use memchr::memmem;
    match memmem::rfind(data, &[0xFF, 0xD9]) {
        Some(eoi) => memmem::find(&data[eoi..], &[0xFF, 0xDA]).is_none() && memmem::find(&data[..eoi], &[0xFF, 0xDA]).is_some(),
        None => false,
    }
}

/// Pillow's `cmyk2rgb` on the inverted samples it stores ("CMYK;I": Pillow assumes Adobe
/// polarity for every CMYK JPEG): `nk = 255 - k`, `v = nk - round(c * nk / 255)`.
pub(super) fn cmyk_to_rgb_pillow(px: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(px.len() / 4 * 3);
    for p in px.chunks_exact(4) {
        out.extend(cmyk_stored_to_rgb([255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3]]));
    }
    out
}

/// Pillow's `cmyk2rgb` of one pixel as Pillow stores it (`CMYK`, after its "CMYK;I" inversion
/// of libjpeg's samples).
#[inline]
pub(crate) fn cmyk_stored_to_rgb(p: [u8; 4]) -> [u8; 3] {
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let nk = 255 - p[3] as i32;
    [p[0], p[1], p[2]].map(|v| (nk - muldiv255(v as i32, nk)).clamp(0, 255) as u8)
}

/// The most scans (start-of-scan markers) a JPEG may have. A progressive JPEG's decode time
/// grows with its scans: a 2 MB file of 15,000 empty scans took 84 s at 81 MP. Real files have
/// about 10 (libjpeg-turbo suggests 500 as the limit: `djpeg -maxscans`, TJPARAM_SCANLIMIT).
pub const MAX_JPEG_SCANS: usize = 500;

/// The most scans x pixels a JPEG may cost, in scans at the pixel limit: a progressive file's
/// decode time grows with both (under 500 scans, 499 all-grey scans at 88 MP took 8.9 s). 45
/// scans at the default limit (89 MP) is 4e9 scan-pixels, under a second, and 330 scans at
/// 12 MP; real files have about 10. A larger `max_pixels` allows proportionally more.
pub const MAX_JPEG_SCANS_AT_LIMIT: u64 = 45;

/// The number of scans of a JPEG, counted up to one past `limit`: its start-of-scan markers,
/// found by walking the segments (so `FF DA` bytes inside a metadata segment, an ICC profile or
/// a comment, do not count) and skipping each scan's entropy-coded data (where a coded `FF` is
/// followed by `00` or a restart marker).
fn scan_count(d: &[u8], limit: usize) -> usize {
    let (mut i, mut scans) = (2, 0);
    while i + 1 < d.len() && scans <= limit {
        if d[i] != 0xFF {
            // Not at a marker (a damaged file): on to the next FF.
            i += memchr::memchr(0xFF, &d[i..]).unwrap_or(d.len() - i);
            continue;
        }
        match d[i + 1] {
            0xFF => i += 1,               // a fill byte
            0x01 | 0xD0..=0xD8 => i += 2, // markers without a length
            0xD9 => break,                // end of image
            m => {
                let Some(len) = d.get(i + 2..i + 4).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else { break };
                i += 2 + len;
                if m == 0xDA {
                    scans += 1;
                    // The entropy-coded data runs to the next marker that is not a stuffed 00 or
                    // a restart.
                    while let Some(k) = d.get(i..).and_then(|rest| memchr::memchr(0xFF, rest)) {
                        i += k;
                        match d.get(i + 1) {
                            Some(0x00 | 0xD0..=0xD7) => i += 2,
                            _ => break,
                        }
                    }
                }
            }
        }
    }
    scans
}

/// JPEG with libjpeg-turbo's decoder (mozjpeg), as Pillow decodes it: islow IDCT, fancy
/// upsampling, its YCbCr tables; CMYK and YCCK through libjpeg's CMYK output and Pillow's
/// conversion. A file cut before its end-of-image marker is `truncated_image`, as Pillow
/// refuses it.
///
/// `max_pixels` is checked again on the frame size libjpeg itself reads, before anything is
/// allocated: the callers' header check used our probe's reading of the markers, and a crafted
/// file must not make the two disagree into a bomb.
pub(super) fn decode_jpeg_libjpeg(data: &[u8], scale_num: u8, out: JpegOut, max_pixels: u64) -> Result<DynamicImage, RecordError> {
    use mozjpeg::ColorSpace;
    if !jpeg_has_eoi(data) {
        return Err(err(ErrorKind::TruncatedImage, "JPEG data ends before its end-of-image marker"));
    }
    let scans = scan_count(data, MAX_JPEG_SCANS);
    if scans > MAX_JPEG_SCANS {
        return Err(err(ErrorKind::ImageTooLarge, format!("JPEG has over {MAX_JPEG_SCANS} scans (its decode time grows with each; real files have about 10)")));
    }
    let mut too_large = None;
    let mut run = || -> std::io::Result<Option<DynamicImage>> {
        let mut d = mozjpeg::Decompress::new_mem(data)?;
        let (w, h) = (d.width() as u64, d.height() as u64);
        if w * h > max_pixels {
            too_large = Some(err(ErrorKind::ImageTooLarge, format!("{w}x{h} = {} pixels exceeds the limit of {max_pixels}", w * h)));
            return Ok(None);
        }
        let budget = MAX_JPEG_SCANS_AT_LIMIT.saturating_mul(max_pixels);
        if (scans as u64).saturating_mul(w * h) > budget {
            let msg = format!("JPEG has {scans} scans of {w}x{h} pixels: over {budget} scan-pixels to decode ({MAX_JPEG_SCANS_AT_LIMIT} scans at the pixel limit; real files have about 10 scans)");
            too_large = Some(err(ErrorKind::ImageTooLarge, msg));
            return Ok(None);
        }
        if scale_num != 8 {
            d.scale(scale_num);
        }
        let color = d.color_space();
        let colour = matches!(color, ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB);
        let to_gray = out == JpegOut::DraftLuma && colour;
        match color {
            _ if out == JpegOut::Luma && colour => {
                // RGBX rows (libjpeg's SIMD colour conversion, 4-byte pixels) a few at a time,
                // each batch turned into Pillow's luma while it is still in cache.
                let mut s = d.rgba()?;
                let (w, h) = (s.width(), s.height());
                let mut luma = vec![0u8; w * h];
                let mut rgbx = vec![0u8; w * 4 * 8];
                for rows in luma.chunks_mut(w * 8) {
                    let got = s.read_scanlines_into::<u8>(&mut rgbx[..rows.len() * 4])?;
                    rgbx_to_luma(got, rows);
                }
                s.finish()?;
                Ok(GrayImage::from_raw(w as u32, h as u32, luma).map(DynamicImage::ImageLuma8))
            }
            _ if to_gray || color == ColorSpace::JCS_GRAYSCALE => {
                let mut s = d.grayscale()?;
                let (w, h) = (s.width() as u32, s.height() as u32);
                let px = s.read_scanlines::<u8>()?;
                s.finish()?;
                Ok(GrayImage::from_raw(w, h, px).map(DynamicImage::ImageLuma8))
            }
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => {
                let mut s = d.to_colorspace(ColorSpace::JCS_CMYK)?;
                let (w, h) = (s.width() as u32, s.height() as u32);
                let mut px = s.read_scanlines::<u8>()?;
                s.finish()?;
                if out == JpegOut::RgbOrCmyk {
                    // Pillow's stored CMYK ("CMYK;I": every sample inverted), 4 bytes a pixel.
                    px.iter_mut().for_each(|v| *v = 255 - *v);
                    return Ok(RgbaImage::from_raw(w, h, px).map(DynamicImage::ImageRgba8));
                }
                Ok(RgbImage::from_raw(w, h, cmyk_to_rgb_pillow(&px)).map(DynamicImage::ImageRgb8))
            }
            _ => {
                let mut s = d.rgb()?;
                let (w, h) = (s.width() as u32, s.height() as u32);
                let px = s.read_scanlines::<u8>()?;
                s.finish()?;
                Ok(RgbImage::from_raw(w, h, px).map(DynamicImage::ImageRgb8))
            }
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut run));
    if let Some(e) = too_large {
        return Err(e);
    }
    match result {
        Ok(Ok(Some(img))) => Ok(img),
        Ok(Ok(None)) => Err(err(ErrorKind::CorruptImage, "JPEG: decoded size does not match its header")),
        Ok(Err(e)) => Err(err(ErrorKind::CorruptImage, format!("JPEG: {e}"))),
        Err(payload) => {
            let msg = payload.downcast_ref::<String>().cloned().unwrap_or_else(|| "libjpeg error".into());
            Err(err(ErrorKind::CorruptImage, format!("JPEG: {msg}")))
        }
    }
}

/// What [`decode_jpeg_libjpeg`] returns for a colour (YCbCr or RGB) JPEG.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum JpegOut {
    /// RGB, as Pillow's `Image.open` gives.
    Rgb,
    /// RGB, but a CMYK (or YCCK) JPEG as the CMYK bytes Pillow stores for it (mode "CMYK"),
    /// 4 a pixel in an RGBA buffer.
    RgbOrCmyk,
    /// Pillow's `convert("L")` of that RGB.
    Luma,
    /// libjpeg's own grayscale output (the Y channel), as Pillow's `draft("L", ...)` asks for.
    DraftLuma,
}

#[cfg(test)]
mod tests {
    use super::scan_count;

    #[test]
    fn scans_are_counted_by_their_segments_not_by_ff_da_bytes() {
        let mut d = vec![0xFF, 0xD8];
        // An ICC profile (APP2) whose payload is 210 FF DA pairs: not scans.
        let app = [0xFF, 0xDA].repeat(210);
        d.extend([0xFF, 0xE2]);
        d.extend(((app.len() + 2) as u16).to_be_bytes());
        d.extend(&app);
        let sos = [0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0];
        // Entropy-coded data with a stuffed FF 00 and a restart marker, then a second scan.
        d.extend(sos);
        d.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF]);
        d.extend(sos);
        d.extend([0x11, 0xFF, 0xD9]);
        assert_eq!(scan_count(&d, 500), 2);
        assert_eq!(scan_count(&d, 1), 2); // counted up to one past the limit
        assert_eq!(scan_count(&d[..d.len() - 3], 500), 2); // cut before its end: still walked
        assert_eq!(scan_count(&d[..40], 500), 0);
    }
}
