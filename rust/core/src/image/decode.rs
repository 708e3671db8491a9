//! Decoding encoded image bytes (JPEG, PNG, WebP, GIF first frame, BMP) with limits read from
//! the header before any large allocation, and grayscale conversion as Pillow's
//! `convert("L")` does it.

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, RgbImage};

use crate::error::{ErrorKind, RecordError};

/// Pillow's `Image.MAX_IMAGE_PIXELS` (89,478,485): larger images are decompression-bomb errors.
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_pixels: u64,
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_pixels: DEFAULT_MAX_PIXELS, max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// The default limit on one image's encoded size: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

impl DecodeLimits {
    /// The defaults, with each limit that is given replacing its default (each must be >= 1):
    /// the one builder every entry point uses.
    pub fn new(max_pixels: Option<u64>, max_bytes: Option<u64>) -> Result<Self, String> {
        let mut l = DecodeLimits::default();
        if let Some(m) = max_pixels {
            l.max_pixels = if m >= 1 { m } else { return Err(format!("max_pixels must be >= 1, got {m}")) };
        }
        if let Some(m) = max_bytes {
            l.max_bytes = if m >= 1 { m } else { return Err(format!("max_bytes must be >= 1, got {m}")) };
        }
        Ok(l)
    }
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> RecordError {
    RecordError::new(kind, msg)
}

/// Decodes `data`. Errors: `empty_image`, `image_too_large` (bytes or header-declared pixels
/// over the limits, checked before decoding), `unknown_image_format`, `corrupt_image`.
pub fn decode(data: &[u8], limits: &DecodeLimits) -> Result<DynamicImage, RecordError> {
    decode_scaled(data, limits, None)
}

/// The header's (width, height), with the same errors as [`decode`] for bytes it cannot read.
pub fn header_size(data: &[u8]) -> Result<(u32, u32), RecordError> {
    if data.is_empty() {
        return Err(err(ErrorKind::EmptyImage, "zero-length image bytes"));
    }
    let reader = ImageReader::new(Cursor::new(data)).with_guessed_format().map_err(|e| err(ErrorKind::CorruptImage, e.to_string()))?;
    if reader.format().is_none() {
        return Err(err(ErrorKind::UnknownImageFormat, "bytes are not JPEG, PNG, WebP, GIF or BMP"));
    }
    reader.into_dimensions().map_err(|e| err(ErrorKind::CorruptImage, format!("header: {e}")))
}

/// The libjpeg scale numerator (of 8) that shrinks a `w x h` JPEG the most while keeping it at
/// least `min_w x min_h` (libjpeg rounds scaled sizes up), as Pillow's `Image.draft` picks it.
fn draft_numerator(w: u32, h: u32, min_w: usize, min_h: usize) -> u8 {
    [1u8, 2, 4]
        .into_iter()
        .find(|&n| (w as usize * n as usize).div_ceil(8) >= min_w && (h as usize * n as usize).div_ceil(8) >= min_h)
        .unwrap_or(8)
}

/// [`decode`], but a JPEG may be decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (as
/// Pillow's `Image.draft` does) when `draft_min` (width, height) still fits: much faster for
/// large photos, no longer bit-identical to a full decode. Other formats decode in full.
pub fn decode_scaled(data: &[u8], limits: &DecodeLimits, draft_min: Option<(usize, usize)>) -> Result<DynamicImage, RecordError> {
    let (format, w, h) = checked_header(data, limits)?;
    if format == ImageFormat::Jpeg {
        let scale = draft_min.map_or(8, |(mw, mh)| draft_numerator(w, h, mw, mh));
        return decode_jpeg_libjpeg(data, scale, JpegOut::Rgb);
    }
    decode_full(data, format, w, h)
}

/// Format and size from the header, after the byte and pixel limits: the checks every decode
/// makes before allocating.
fn checked_header(data: &[u8], limits: &DecodeLimits) -> Result<(ImageFormat, u32, u32), RecordError> {
    if data.is_empty() {
        return Err(err(ErrorKind::EmptyImage, "zero-length image bytes"));
    }
    if data.len() as u64 > limits.max_bytes {
        return Err(err(ErrorKind::ImageTooLarge, format!("{} bytes exceeds the limit of {}", data.len(), limits.max_bytes)));
    }
    let reader = ImageReader::new(Cursor::new(data)).with_guessed_format().map_err(|e| err(ErrorKind::CorruptImage, e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(err(ErrorKind::UnknownImageFormat, "bytes are not JPEG, PNG, WebP, GIF or BMP"));
    };
    let (w, h) = reader.into_dimensions().map_err(|e| err(ErrorKind::CorruptImage, format!("{format:?} header: {e}")))?;
    let pixels = w as u64 * h as u64;
    if pixels > limits.max_pixels {
        return Err(err(ErrorKind::ImageTooLarge, format!("{w}x{h} = {pixels} pixels exceeds the limit of {}", limits.max_pixels)));
    }
    Ok((format, w, h))
}

/// A non-JPEG image (checked by [`checked_header`]) through the `image` crate, with its
/// allocation bounded by the header's size.
fn decode_full(data: &[u8], format: ImageFormat, w: u32, h: u32) -> Result<DynamicImage, RecordError> {
    let pixels = w as u64 * h as u64;
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    let mut l = image::Limits::default();
    l.max_image_width = Some(w);
    l.max_image_height = Some(h);
    l.max_alloc = Some((pixels * 16).max(1 << 20));
    reader.limits(l);
    // For GIF this is the first frame, as Pillow's Image.open gives.
    reader.decode().map_err(|e| err(ErrorKind::CorruptImage, format!("{format:?}: {e}")))
}

/// Pillow's `JpegImageFile.draft(mode, (req, req))` scale denominator for a `w x h` JPEG: the
/// largest of 8, 4, 2, 1 not above `min(w // req, h // req)`.
fn pillow_draft_denominator(w: u32, h: u32, req: usize) -> u8 {
    let scale = (w as usize / req.max(1)).min(h as usize / req.max(1));
    [8u8, 4, 2].into_iter().find(|&s| scale >= s as usize).unwrap_or(1)
}

/// The 8-bit grayscale image that Pillow gives for `im = Image.open(...); im.draft("L", (req,
/// req)); im.convert("L")`: a colour JPEG is decoded by libjpeg straight to luma (its Y
/// channel, no chroma work) and shrunk 2, 4 or 8 times in the DCT domain while both sides stay
/// at least `req` (see [`pillow_draft_denominator`]); other formats, and CMYK JPEGs, are
/// decoded as by [`decode`] and converted by [`to_luma_pillow`]. Much faster than a full
/// decode, and not bit-identical to it.
pub fn decode_luma_draft(data: &[u8], limits: &DecodeLimits, req: usize) -> Result<(u32, u32, Vec<u8>), RecordError> {
    let (format, w, h) = checked_header(data, limits)?;
    if format != ImageFormat::Jpeg {
        return Ok(to_luma_pillow(&decode_full(data, format, w, h)?));
    }
    let scale = 8 / pillow_draft_denominator(w, h, req);
    // 1/8 scale is the DC coefficients alone: our own entropy decoder skips the rest faster
    // than libjpeg (same bytes, see `jpeg_eighth`); a file it does not take goes to libjpeg.
    if scale == 1 && jpeg_has_eoi(data) {
        if let Some(luma) = super::jpeg_eighth::luma_eighth(data) {
            return Ok(luma);
        }
    }
    Ok(into_luma(decode_jpeg_libjpeg(data, scale, JpegOut::DraftLuma)?))
}

/// The 8-bit grayscale image of `Image.open(...).convert("L")`, bit for bit: [`decode`] then
/// [`to_luma_pillow`], except that a colour JPEG's RGB rows go through [`rgbx_to_luma`] in
/// small batches as libjpeg produces them, never held as a whole RGB image.
pub fn decode_luma(data: &[u8], limits: &DecodeLimits) -> Result<(u32, u32, Vec<u8>), RecordError> {
    let (format, w, h) = checked_header(data, limits)?;
    if format != ImageFormat::Jpeg {
        return Ok(to_luma_pillow(&decode_full(data, format, w, h)?));
    }
    Ok(into_luma(decode_jpeg_libjpeg(data, 8, JpegOut::Luma)?))
}

fn into_luma(img: DynamicImage) -> (u32, u32, Vec<u8>) {
    match img {
        DynamicImage::ImageLuma8(g) => (g.width(), g.height(), g.into_raw()),
        other => to_luma_pillow(&other),
    }
}

/// True when an end-of-image marker follows the last start-of-scan marker (an EXIF thumbnail's
/// markers come earlier, inside APP1).
fn jpeg_has_eoi(data: &[u8]) -> bool {
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
fn cmyk_to_rgb_pillow(px: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut out = Vec::with_capacity(px.len() / 4 * 3);
    for p in px.chunks_exact(4) {
        let (c, m, y, k) = (255 - p[0] as i32, 255 - p[1] as i32, 255 - p[2] as i32, 255 - p[3] as i32);
        let nk = 255 - k;
        out.extend([c, m, y].map(|v| (nk - muldiv255(v, nk)).clamp(0, 255) as u8));
    }
    out
}

/// JPEG with libjpeg-turbo's decoder (mozjpeg), as Pillow decodes it: islow IDCT, fancy
/// upsampling, its YCbCr tables; CMYK and YCCK through libjpeg's CMYK output and Pillow's
/// conversion. A file cut before its end-of-image marker is `truncated_image`, as Pillow
/// refuses it.
fn decode_jpeg_libjpeg(data: &[u8], scale_num: u8, out: JpegOut) -> Result<DynamicImage, RecordError> {
    use mozjpeg::ColorSpace;
    if !jpeg_has_eoi(data) {
        return Err(err(ErrorKind::TruncatedImage, "JPEG data ends before its end-of-image marker"));
    }
    let run = || -> std::io::Result<Option<DynamicImage>> {
        let mut d = mozjpeg::Decompress::new_mem(data)?;
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
                let px = s.read_scanlines::<u8>()?;
                s.finish()?;
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
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
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
enum JpegOut {
    /// RGB, as Pillow's `Image.open` gives.
    Rgb,
    /// Pillow's `convert("L")` of that RGB.
    Luma,
    /// libjpeg's own grayscale output (the Y channel), as Pillow's `draft("L", ...)` asks for.
    DraftLuma,
}

/// Pillow's ITU-R 601-2 luma with its fixed-point rounding: `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`.
#[inline]
fn l24(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// [`l24`] of every pixel of packed RGB, vectorised (AVX2 when the CPU has it: LLVM turns the
/// stride-3 loads into shuffles).
pub fn rgb_to_luma(rgb: &[u8]) -> Vec<u8> {
    #[inline(always)]
    fn run(rgb: &[u8], out: &mut [u8]) {
        const N: usize = 32;
        let mut blocks = out.chunks_exact_mut(N);
        let mut src = rgb.chunks_exact(3 * N);
        for (o, p) in (&mut blocks).zip(&mut src) {
            for i in 0..N {
                o[i] = l24(p[3 * i], p[3 * i + 1], p[3 * i + 2]);
            }
        }
        for (o, p) in blocks.into_remainder().iter_mut().zip(src.remainder().chunks_exact(3)) {
            *o = l24(p[0], p[1], p[2]);
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(rgb: &[u8], out: &mut [u8]) {
        run(rgb, out)
    }
    let mut out = vec![0u8; rgb.len() / 3];
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::avx2() {
        // SAFETY: AVX2 support was just checked.
        unsafe { run_avx2(rgb, &mut out) };
        return out;
    }
    run(rgb, &mut out);
    out
}

/// [`l24`] of every pixel of RGBX (4 bytes a pixel, the 4th ignored) into `out`
/// (`rgbx.len() == 4 * out.len()`). Uses `l24 = g + (19595 (r - g) + 7471 (b - g) + 0x8000) >> 16`
/// (the three weights sum to 2^16), so the AVX2 build needs only 16-bit multiply-adds.
pub fn rgbx_to_luma(rgbx: &[u8], out: &mut [u8]) {
    assert_eq!(rgbx.len(), out.len() * 4);
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::avx2() {
        // SAFETY: AVX2 support was just checked.
        return unsafe { rgbx_to_luma_avx2(rgbx, out) };
    }
    for (o, p) in out.iter_mut().zip(rgbx.chunks_exact(4)) {
        *o = l24(p[0], p[1], p[2]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rgbx_to_luma_avx2(rgbx: &[u8], out: &mut [u8]) {
    use std::arch::x86_64::*;
    // Per 32-bit pixel: the words (r, b) and (g, g), zero-extended.
    let rb = _mm256_setr_epi8(
        0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1, 12, -1, 14, -1, 0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1, 12, -1, 14, -1,
    );
    let gg = _mm256_setr_epi8(
        1, -1, 1, -1, 5, -1, 5, -1, 9, -1, 9, -1, 13, -1, 13, -1, 1, -1, 1, -1, 5, -1, 5, -1, 9, -1, 9, -1, 13, -1, 13, -1,
    );
    let w = _mm256_set1_epi32((7471 << 16) | 19595);
    let round = _mm256_set1_epi32(0x8000);
    // Luma of the 8 pixels at p, as eight i32 lanes.
    let luma8 = |p: *const u8| -> __m256i {
        let v = _mm256_loadu_si256(p as *const __m256i);
        let g = _mm256_shuffle_epi8(v, gg);
        let d = _mm256_sub_epi16(_mm256_shuffle_epi8(v, rb), g);
        let t = _mm256_srai_epi32::<16>(_mm256_add_epi32(_mm256_madd_epi16(d, w), round));
        _mm256_add_epi32(t, _mm256_srli_epi32::<16>(g))
    };
    let n = out.len() / 32 * 32;
    for i in (0..n).step_by(32) {
        // SAFETY: pixels i..i + 32 are in bounds (i + 32 <= n <= out.len()).
        let p = rgbx.as_ptr().add(i * 4);
        let lo = _mm256_packs_epi32(luma8(p), luma8(p.add(32)));
        let hi = _mm256_packs_epi32(luma8(p.add(64)), luma8(p.add(96)));
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, bytes);
    }
    for (o, p) in out[n..].iter_mut().zip(rgbx[n * 4..].chunks_exact(4)) {
        *o = l24(p[0], p[1], p[2]);
    }
}

/// The 8-bit grayscale image that Pillow's `Image.open(...).convert("L")` gives: RGB(A) through
/// [`l24`] (alpha ignored), gray as is, 16-bit gray clipped at 255 (Pillow's `I;16` -> `L`), 16-bit gray + alpha through its high
/// byte (Pillow opens it as `LA`),
/// 16-bit colour through its high bytes (Pillow unpacks 16-bit PNG colour that way).
pub fn to_luma_pillow(img: &DynamicImage) -> (u32, u32, Vec<u8>) {
    let (w, h) = (img.width(), img.height());
    let px: Vec<u8> = match img {
        DynamicImage::ImageLuma8(b) => b.as_raw().clone(),
        DynamicImage::ImageLumaA8(b) => b.as_raw().chunks_exact(2).map(|p| p[0]).collect(),
        DynamicImage::ImageRgb8(b) => rgb_to_luma(b.as_raw()),
        DynamicImage::ImageRgba8(b) => b.as_raw().chunks_exact(4).map(|p| l24(p[0], p[1], p[2])).collect(),
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().map(|&v| v.min(255) as u8).collect(),
        DynamicImage::ImageLumaA16(b) => b.as_raw().chunks_exact(2).map(|p| (p[0] >> 8) as u8).collect(),
        DynamicImage::ImageRgb16(b) => b.as_raw().chunks_exact(3).map(|p| l24((p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8)).collect(),
        DynamicImage::ImageRgba16(b) => b.as_raw().chunks_exact(4).map(|p| l24((p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8)).collect(),
        other => other.to_rgb8().as_raw().chunks_exact(3).map(|p| l24(p[0], p[1], p[2])).collect(),
    };
    (w, h, px)
}

/// What to do with an alpha channel (including palette and tRNS transparency) when converting
/// to RGB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpha {
    /// Drop it, as Pillow's `convert("RGB")` and open_clip do: transparent pixels keep their
    /// stored colour.
    Drop,
    /// Composite over opaque white with Pillow's `alpha_composite` arithmetic, as
    /// transformers' `convert_to_rgb` does (transformers 5).
    White,
}

/// Options for [`decode_rgb`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    pub limits: DecodeLimits,
    pub alpha: Alpha,
    /// Apply the EXIF orientation tag as Pillow's `ImageOps.exif_transpose` does. Off by
    /// default: Pillow's `Image.open`, open_clip and transformers ignore it.
    pub exif_transpose: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { limits: DecodeLimits::default(), alpha: Alpha::Drop, exif_transpose: false }
    }
}

/// An 8-bit RGB image, rows of `width * 3` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub px: Vec<u8>,
}

/// Pillow's `alpha_composite` of `(c, a)` over opaque white (7-bit precision coefficients,
/// rounded division by 255); checked against Pillow on all 65,536 pairs.
#[inline]
fn over_white(c: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    let (c, a) = (c as u32, a as u32);
    let coef1 = a * 128;
    let coef2 = 255 * 128 - coef1;
    let t = c * coef1 + 255 * coef2 + (0x80 << 7);
    ((((t >> 8) + t) >> 8) >> 7) as u8
}

/// Decodes `data` to 8-bit RGB as Pillow's `Image.open(...).convert("RGB")` does (gray is
/// replicated, 16-bit colour keeps its high bytes, 16-bit gray is clipped at 255, CMYK goes
/// through Pillow's `cmyk2rgb`), with alpha handled by `opts.alpha` and, when asked, the
/// EXIF orientation applied.
pub fn decode_rgb(data: &[u8], opts: &DecodeOptions) -> Result<Rgb8, RecordError> {
    decode_rgb_draft(data, opts, None)
}

/// [`decode_rgb`] with [`decode_scaled`]'s JPEG draft: `draft_min` is the smallest (width,
/// height) wanted after orientation.
pub fn decode_rgb_draft(data: &[u8], opts: &DecodeOptions, draft_min: Option<(usize, usize)>) -> Result<Rgb8, RecordError> {
    let orientation = if opts.exif_transpose { crate::image::probe::probe(data).map_or(1, |p| p.orientation) } else { 1 };
    // Stored pixels are transposed relative to the output for orientations 5-8.
    let draft_min = draft_min.map(|(w, h)| if orientation >= 5 { (h, w) } else { (w, h) });
    let img = decode_scaled(data, &opts.limits, draft_min)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let white = opts.alpha == Alpha::White;
    let gray = |v: u8| [v, v, v];
    let px: Vec<u8> = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().flat_map(|&v| gray(v)).collect(),
        DynamicImage::ImageLumaA8(b) if white => b.as_raw().chunks_exact(2).flat_map(|p| gray(over_white(p[0], p[1]))).collect(),
        DynamicImage::ImageLumaA8(b) => b.as_raw().chunks_exact(2).flat_map(|p| gray(p[0])).collect(),
        DynamicImage::ImageRgba8(b) if white => {
            b.as_raw().chunks_exact(4).flat_map(|p| [0, 1, 2].map(|c| over_white(p[c], p[3]))).collect()
        }
        DynamicImage::ImageRgba8(b) => b.as_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().flat_map(|&v| gray(v.min(255) as u8)).collect(),
        DynamicImage::ImageLumaA16(b) if white => {
            b.as_raw().chunks_exact(2).flat_map(|p| gray(over_white((p[0] >> 8) as u8, (p[1] >> 8) as u8))).collect()
        }
        DynamicImage::ImageLumaA16(b) => b.as_raw().chunks_exact(2).flat_map(|p| gray((p[0] >> 8) as u8)).collect(),
        DynamicImage::ImageRgb16(b) => b.as_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(b) if white => b
            .as_raw()
            .chunks_exact(4)
            .flat_map(|p| [0, 1, 2].map(|c| over_white((p[c] >> 8) as u8, (p[3] >> 8) as u8)))
            .collect(),
        DynamicImage::ImageRgba16(b) => b.as_raw().chunks_exact(4).flat_map(|p| [0, 1, 2].map(|c| (p[c] >> 8) as u8)).collect(),
        other => other.to_rgb8().into_raw(),
    };
    Ok(orient(Rgb8 { width, height, px }, orientation))
}

/// Applies an EXIF orientation (1-8) as Pillow's `ImageOps.exif_transpose`: 2 mirror, 3 rotate
/// 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
pub fn orient(img: Rgb8, orientation: u8) -> Rgb8 {
    let (w, h) = (img.width, img.height);
    let swap = orientation >= 5;
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    // Source (x, y) of output (x', y').
    let src = |x: usize, y: usize| -> (usize, usize) {
        match orientation {
            2 => (w - 1 - x, y),
            3 => (w - 1 - x, h - 1 - y),
            4 => (x, h - 1 - y),
            5 => (y, x),
            6 => (y, h - 1 - x),
            7 => (w - 1 - y, h - 1 - x),
            8 => (w - 1 - y, x),
            _ => (x, y),
        }
    };
    if !(2..=8).contains(&orientation) {
        return img;
    }
    let mut px = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        for x in 0..ow {
            let (sx, sy) = src(x, y);
            let s = (sy * w + sx) * 3;
            px[(y * ow + x) * 3..(y * ow + x) * 3 + 3].copy_from_slice(&img.px[s..s + 3]);
        }
    }
    Rgb8 { width: ow, height: oh, px }
}

#[cfg(test)]
mod tests {
    use super::super::jpeg_eighth::luma_eighth;
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
    fn vectorised_luma_equals_l24_on_every_colour() {
        // All 2^24 colours, in one buffer whose length is not a multiple of the block.
        let rgb: Vec<u8> = (0..1u32 << 24).flat_map(|c| [(c >> 16) as u8, (c >> 8) as u8, c as u8]).chain([1, 2, 3]).collect();
        let luma = rgb_to_luma(&rgb);
        assert_eq!(luma.len(), rgb.len() / 3);
        for (i, p) in rgb.chunks_exact(3).enumerate() {
            assert_eq!(luma[i], l24(p[0], p[1], p[2]), "{p:?}");
        }
    }

    #[test]
    fn eoi_check_needs_the_last_sos_before_the_last_eoi() {
        let soi = [0xFF, 0xD8];
        let thumb = [0xFF, 0xE1, 0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9]; // APP1 with a thumbnail
        let scan = [0xFF, 0xDA, 7, 7, 0xFF, 0x00, 7];
        let cat = |parts: &[&[u8]]| parts.concat();
        assert!(jpeg_has_eoi(&cat(&[&soi, &scan, &[0xFF, 0xD9]])));
        assert!(jpeg_has_eoi(&cat(&[&soi, &thumb, &scan, &[0xFF, 0xD9], &[0, 0, 0]])));
        assert!(!jpeg_has_eoi(&cat(&[&soi, &thumb, &scan])), "cut main image after a thumbnail");
        assert!(!jpeg_has_eoi(&cat(&[&soi, &scan])));
        assert!(!jpeg_has_eoi(&cat(&[&soi, &[0xFF, 0xD9]])), "no scan at all");
    }

    #[test]
    fn rgbx_luma_equals_l24_on_every_colour() {
        let rgbx: Vec<u8> = (0..1u32 << 24).flat_map(|c| [(c >> 16) as u8, (c >> 8) as u8, c as u8, (c * 7) as u8]).chain([9, 250, 3, 0]).collect();
        let mut luma = vec![0u8; rgbx.len() / 4];
        rgbx_to_luma(&rgbx, &mut luma);
        for (i, p) in rgbx.chunks_exact(4).enumerate() {
            assert_eq!(luma[i], l24(p[0], p[1], p[2]), "{p:?}");
        }
    }

    /// The 1/8-scale entropy decoder against libjpeg on the bundled JPEGs (which it must take)
    /// and on 6,000 damaged copies: whenever it returns pixels for a file the draft path would
    /// hand it, libjpeg must give the same ones.
    #[test]
    fn eighth_scale_decoder_equals_libjpeg_or_declines() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python/interleaf/data/sample/images");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "jpg")).collect();
        files.sort();
        assert!(files.len() >= 10);
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut taken = 0;
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let fast = luma_eighth(&data);
            assert!(fast.is_some(), "{f:?}: a plain baseline file must take the fast path");
            assert_eq!(fast, libjpeg_eighth(&data), "{f:?}");
            for i in 0..375 {
                let mut d = data.clone();
                match i % 5 {
                    0 => d[rand(data.len())] ^= 1 << rand(8),
                    1 => d[rand(data.len())] = 0xFF,
                    2 => {
                        let at = rand(data.len());
                        d.insert(at, [0xFF, 0x00, 0xD0, 0xD9][rand(4)]);
                    }
                    3 => {
                        d.truncate(rand(data.len()));
                        d.extend([0xFF, 0xD9]);
                    }
                    _ => {
                        for _ in 0..4 {
                            d[rand(data.len())] = rand(256) as u8;
                        }
                    }
                }
                if !jpeg_has_eoi(&d) {
                    continue;
                }
                if let Some(px) = luma_eighth(&d) {
                    taken += 1;
                    assert_eq!(Some(px), libjpeg_eighth(&d), "{f:?} mutant {i}");
                }
            }
        }
        // Damage in the entropy-coded data often still decodes: the comparison must have run.
        assert!(taken > 100, "{taken}");
    }

    fn libjpeg_eighth(data: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
        decode_jpeg_libjpeg(data, 1, JpegOut::DraftLuma).ok().map(into_luma)
    }

    /// A JPEG marker segment: marker, length, body.
    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        [&[0xFF, marker][..], &((body.len() + 2) as u16).to_be_bytes(), body].concat()
    }

    /// A baseline gray JPEG from parts: quantiser 16, the given DC and AC tables (code counts
    /// per length, symbols), and `blocks` blocks each coded as `block_bits` (a bit string).
    fn crafted_gray(w: u16, h: u16, dc: (&[u8; 16], &[u8]), ac: (&[u8; 16], &[u8]), block_bits: &str, blocks: usize) -> Vec<u8> {
        let mut q = vec![0u8, 16];
        q.extend([1u8; 63]);
        let mut sof = vec![8u8];
        sof.extend(h.to_be_bytes());
        sof.extend(w.to_be_bytes());
        sof.extend([1, 1, 0x11, 0]);
        let dht_dc = [&[0x00u8][..], dc.0, dc.1].concat();
        let dht_ac = [&[0x10u8][..], ac.0, ac.1].concat();
        let mut bits: String = block_bits.repeat(blocks);
        while bits.len() % 8 != 0 {
            bits.push('1');
        }
        let mut scan = Vec::new();
        for byte in bits.as_bytes().chunks(8).map(|b| u8::from_str_radix(std::str::from_utf8(b).unwrap(), 2).unwrap()) {
            scan.push(byte);
            if byte == 0xFF {
                scan.push(0);
            }
        }
        let seg = segment;
        [&[0xFF, 0xD8][..], &seg(0xDB, &q), &seg(0xC0, &sof), &seg(0xC4, &dht_dc), &seg(0xC4, &dht_ac), &seg(0xDA, &[1, 1, 0, 0, 63, 0]), &scan, &[0xFF, 0xD9]].concat()
    }

    /// Crafted files from the review of the 1/8-scale decoder: each used to give pixels libjpeg
    /// does not give (or to panic).
    #[test]
    fn eighth_scale_decoder_on_crafted_tables_and_sizes() {
        let (fast, libjpeg) = (luma_eighth, libjpeg_eighth);
        let counts = |c: &[u8]| -> [u8; 16] { std::array::from_fn(|i| c.get(i).copied().unwrap_or(0)) };
        // DC code "0" -> 0; AC codes ZRL "0", EOB "10", 0x01 "110". A block: "0" + "10".
        let (dc_counts, ac_counts) = (counts(&[1]), counts(&[1, 1, 1]));
        let dc = (&dc_counts, &[0u8][..]);
        let ac = (&ac_counts, &[0xF0u8, 0x00, 0x01][..]);
        // Eight ZRLs in one 12-bit lookup (their run overflowed the entry's field); libjpeg
        // ends the block after four. The reviewer's file: DC codes "0" -> 0, "10" -> 1.
        let hex = "ffd8ffdb00430010010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101ffc0000b080008001001011100ffc4001500010100000000000000000000000000000001ffc400161001010100000000000000000000000000f00001ffda0008010100003f000056ffd9";
        let zrls: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        assert_eq!(fast(&zrls), libjpeg(&zrls));
        assert_eq!(libjpeg(&zrls), Some((2, 1, vec![128, 128])));
        // Plain files up to libjpeg's largest side, and one past it (libjpeg refuses those).
        let ok = crafted_gray(65500, 8, dc, ac, "010", 8188);
        assert_eq!(fast(&ok), libjpeg(&ok));
        assert!(fast(&ok).is_some());
        let wide = crafted_gray(65501, 8, dc, ac, "010", 8188);
        assert_eq!((fast(&wide), libjpeg(&wide)), (None, None));
        // Three 1-bit codes (over-subscribed), and a DC symbol above 15 that is never read:
        // libjpeg rejects both tables.
        let over = counts(&[3]);
        let bad = crafted_gray(16, 8, dc, (&over, &[0xF0, 0x00, 0x01]), "010", 2);
        assert_eq!(fast(&bad), None);
        let dc16 = counts(&[1, 1]);
        let dc2 = crafted_gray(16, 8, (&dc16, &[0, 16]), ac, "010", 2);
        assert_eq!((fast(&dc2), libjpeg(&dc2)), (None, None));
        // The same file with a valid second DC symbol decodes on both sides, alike.
        let dc2_ok = crafted_gray(16, 8, (&dc16, &[0, 1]), ac, "010", 2);
        assert_eq!(fast(&dc2_ok), libjpeg(&dc2_ok));
        assert!(fast(&dc2_ok).is_some());
    }

    #[test]
    fn draft_denominator_follows_pillow() {
        // Pillow: scale = min(w // req, h // req), then the largest of 8, 4, 2, 1 <= scale.
        assert_eq!(pillow_draft_denominator(1024, 768, 128), 4);
        assert_eq!(pillow_draft_denominator(1023, 768, 128), 4);
        assert_eq!(pillow_draft_denominator(1024, 1024, 128), 8);
        assert_eq!(pillow_draft_denominator(1023, 1024, 128), 4);
        assert_eq!(pillow_draft_denominator(255, 4000, 128), 1);
        assert_eq!(pillow_draft_denominator(100, 100, 128), 1);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let l = DecodeLimits::default();
        assert_eq!(decode(b"", &l).unwrap_err().kind.as_str(), "empty_image");
        assert_eq!(decode(b"not an image at all", &l).unwrap_err().kind.as_str(), "unknown_image_format");
        assert!(decode(b"\xff\xd8\xff\xe0\x00\x10JFIF", &l).is_err());
    }
}
