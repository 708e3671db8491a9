//! Decoding encoded image bytes (JPEG, PNG, WebP, GIF first frame, BMP) with limits read from
//! the header before any large allocation: the limits, the header checks and the dispatch to
//! [`libjpeg`] (JPEG, as Pillow decodes it) or the `image` crate (everything else); the
//! Pillow colour conversions (`convert("L")`, `convert("RGB")`, EXIF orientation) are in
//! [`convert`].

mod convert;
mod libjpeg;

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

pub(crate) use convert::over_white;
use convert::to_rgb_pillow;
pub use convert::{orient, orient_px, rgb_to_luma, rgbx_to_luma, to_luma_pillow, Alpha};
pub(crate) use libjpeg::cmyk_stored_to_rgb;
use libjpeg::{decode_jpeg_libjpeg, draft_numerator, jpeg_has_eoi, pillow_draft_denominator, JpegOut};

use super::probe::GifBlock;
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

pub(super) fn err(kind: ErrorKind, msg: impl Into<String>) -> RecordError {
    RecordError::new(kind, msg)
}

/// Decodes `data`. Errors: `empty_image`, `image_too_large` (bytes or header-declared pixels
/// over the limits, checked before decoding), `unknown_image_format`, `corrupt_image`.
pub fn decode(data: &[u8], limits: &DecodeLimits) -> Result<DynamicImage, RecordError> {
    decode_scaled(data, limits, None)
}

/// The header's (width, height), with the same errors as [`decode`] for bytes it cannot read.
pub fn header_size(data: &[u8]) -> Result<(u32, u32), RecordError> {
    header(data, super::probe::jpeg_size(data)).map(|(_, w, h)| (w, h))
}

/// The most a header read may allocate (metadata such as a PNG's ICC profile).
const HEADER_MAX_ALLOC: u64 = 16 << 20;

/// Format and size from the header. A JPEG's size is `jpeg_size` (its start-of-frame segment
/// as our probe reads it, and as libjpeg will: the `image` crate's header reader also builds
/// the Huffman tables, a measurable share of a small photo's decode); any other header, or a
/// JPEG the probe does not take (`None`), is read by the crate.
fn header(data: &[u8], jpeg_size: Option<(u32, u32)>) -> Result<(ImageFormat, u32, u32), RecordError> {
    if data.is_empty() {
        return Err(err(ErrorKind::EmptyImage, "zero-length image bytes"));
    }
    if let Some((w, h)) = jpeg_size {
        return Ok((ImageFormat::Jpeg, w, h));
    }
    // The crate calls a BMP over 65,535 pixels a side a format error and an empty one "too
    // large": such sizes are read here, so the pixel limit names the first.
    if let Some((w, h)) = super::probe::bmp_size(data) {
        if w == 0 || h == 0 {
            return Err(err(ErrorKind::CorruptImage, format!("Bmp header: the image is {w}x{h} pixels")));
        }
        if w > 65_535 || h > 65_535 {
            return Ok((ImageFormat::Bmp, w as u32, h as u32));
        }
    }
    let mut reader = ImageReader::new(Cursor::new(data)).with_guessed_format().map_err(|e| err(ErrorKind::CorruptImage, e.to_string()))?;
    // Reading a header allocates for metadata only; PNG inflates an iCCP profile while reading
    // it (a 300 KB file held 900 MB under the crate's default 512 MiB): 16 MiB is ample.
    let mut l = image::Limits::default();
    l.max_alloc = Some(HEADER_MAX_ALLOC);
    reader.limits(l);
    // The crate recognises more formats than it is built to decode (TIFF, ...): those are as
    // unknown as bytes it does not recognise at all.
    let Some(format) = reader.format().filter(|f| matches!(f, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif | ImageFormat::Bmp))
    else {
        return Err(err(ErrorKind::UnknownImageFormat, "bytes are not JPEG, PNG, WebP, GIF or BMP"));
    };
    let (w, h) = reader.into_dimensions().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            err(ErrorKind::ImageTooLarge, format!("{format:?} header: its metadata needs over {} MiB ({e})", HEADER_MAX_ALLOC >> 20))
        }
        e => err(ErrorKind::CorruptImage, format!("{format:?} header: {e}")),
    })?;
    if format == ImageFormat::Gif {
        return Ok((format, w.max(gif_extent(data).0), h.max(gif_extent(data).1)));
    }
    Ok((format, w, h))
}

/// The right and bottom edges of a GIF's first frame ((0, 0) where it has none): Pillow grows
/// the image to hold a frame that reaches past the logical screen (a 0x0 screen, say).
fn gif_extent(data: &[u8]) -> (u32, u32) {
    let Some(frame) = gif_first_frame(data) else { return (0, 0) };
    (frame.left + frame.width, frame.top + frame.height)
}

/// `data` with its logical screen set to `w x h` (the size [`header`] gives, grown to hold the
/// first frame), so that the `image` crate composites frame 0 whole, as Pillow does.
fn gif_with_screen(data: &[u8], w: u32, h: u32) -> Result<std::borrow::Cow<'_, [u8]>, RecordError> {
    let screen = |k: usize| data.get(k..k + 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as u32);
    if (screen(6), screen(8)) == (w, h) {
        return Ok(std::borrow::Cow::Borrowed(data));
    }
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(err(ErrorKind::CorruptImage, format!("GIF: its first frame reaches {w}x{h}, past a GIF's 65,535 pixels a side")));
    };
    let mut grown = data.to_vec();
    grown[6..8].copy_from_slice(&w16.to_le_bytes());
    grown[8..10].copy_from_slice(&h16.to_le_bytes());
    Ok(std::borrow::Cow::Owned(grown))
}

/// [`decode`], but a JPEG may be decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (as
/// Pillow's `Image.draft` does) when `draft_min` (width, height) still fits: much faster for
/// large photos, no longer bit-identical to a full decode. Other formats decode in full.
pub fn decode_scaled(data: &[u8], limits: &DecodeLimits, draft_min: Option<(usize, usize)>) -> Result<DynamicImage, RecordError> {
    let (format, w, h) = checked_header(data, limits)?;
    if format == ImageFormat::Jpeg {
        let scale = draft_min.map_or(8, |(mw, mh)| draft_numerator(w, h, mw, mh));
        return decode_jpeg_libjpeg(data, scale, JpegOut::Rgb, limits.max_pixels);
    }
    decode_full(data, format, w, h)
}

/// Format and size from the header, after the byte and pixel limits: the checks every decode
/// makes before allocating.
fn checked_header(data: &[u8], limits: &DecodeLimits) -> Result<(ImageFormat, u32, u32), RecordError> {
    checked_header_with(data, super::probe::jpeg_size(data), limits)
}

/// [`checked_header`] for a caller that has already probed the JPEG size (see [`header`]).
pub fn checked_header_with(data: &[u8], jpeg_size: Option<(u32, u32)>, limits: &DecodeLimits) -> Result<(ImageFormat, u32, u32), RecordError> {
    if data.len() as u64 > limits.max_bytes {
        return Err(err(ErrorKind::ImageTooLarge, format!("{} bytes exceeds the limit of {}", data.len(), limits.max_bytes)));
    }
    let (format, w, h) = header(data, jpeg_size)?;
    let pixels = w as u64 * h as u64;
    if pixels > limits.max_pixels {
        return Err(err(ErrorKind::ImageTooLarge, format!("{w}x{h} = {pixels} pixels exceeds the limit of {}", limits.max_pixels)));
    }
    Ok((format, w, h))
}

/// A non-JPEG image (checked by [`checked_header`]) through the `image` crate, with its
/// allocation bounded by the header's size.
fn decode_full(data: &[u8], format: ImageFormat, w: u32, h: u32) -> Result<DynamicImage, RecordError> {
    Ok(gray16_key_as_pillow(data, format, decode_full_unkeyed(data, format, w, h)?))
}

/// [`decode_full`] before [`gray16_key_as_pillow`]: a keyed 16-bit gray PNG keeps its values.
fn decode_full_unkeyed(data: &[u8], format: ImageFormat, w: u32, h: u32) -> Result<DynamicImage, RecordError> {
    let grown = if format == ImageFormat::Gif { gif_with_screen(data, w, h)? } else { std::borrow::Cow::Borrowed(data) };
    let data: &[u8] = &grown;
    if let Some(img) = png16_by_rows(data, format, w, h, false) {
        if let Some(why) = png_refused_as_pillow(data, format) {
            return Err(err(ErrorKind::CorruptImage, why));
        }
        return Ok(img);
    }
    // For GIF this is the first frame, as Pillow's Image.open gives.
    let img = match crate_decode(data, format, w, h) {
        Ok(img) => img,
        // A frame or buffer over the limits (a GIF frame larger than its screen, say) is a bomb,
        // not damage.
        Err(e @ image::ImageError::Limits(_)) => return Err(err(ErrorKind::ImageTooLarge, format!("{format:?}: {e}"))),
        Err(e) => match png_as_pillow_reads(data, format, w, h).or_else(|| gif_interlaced_by_rows(data, format, w, h)) {
            Some(img) => img,
            None => return Err(err(ErrorKind::CorruptImage, format!("{format:?}: {e}"))),
        },
    };
    if let Some(why) = png_refused_as_pillow(data, format) {
        return Err(err(ErrorKind::CorruptImage, why));
    }
    Ok(match format {
        ImageFormat::Gif => gif_fill_uncovered(data, img),
        ImageFormat::Bmp => bmp16_as_pillow(data, img),
        _ => img,
    })
}

/// A 16-bit BMP in the layouts Pillow reads (5-5-5: BI_RGB, or BI_BITFIELDS with its masks;
/// 5-6-5 with BI_BITFIELDS) with Pillow's scaling of each channel, `v * 255 / max` rounded
/// down (its `BGR;15` and `BGR;16` unpackers); the `image` crate rounds to nearest. Its
/// levels are distinct, so each of its values maps back to one level.
fn bmp16_as_pillow(data: &[u8], img: DynamicImage) -> DynamicImage {
    let u32_at = |i: usize| data.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let header = u32_at(14).unwrap_or(0);
    if header == 12 || data.get(28..30) != Some(&[16, 0]) {
        return img;
    }
    let green_bits = match (u32_at(30), u32_at(54), u32_at(58), u32_at(62)) {
        (Some(0), ..) => 5,
        (Some(3), Some(0x7C00), Some(0x3E0), Some(0x1F)) => 5,
        (Some(3), Some(0xF800), Some(0x7E0), Some(0x1F)) => 6,
        _ => return img,
    };
    // The crate's value of each level (nearest) -> Pillow's (floor).
    let table = |bits: u32| {
        let max = (1u32 << bits) - 1;
        let mut t: [u8; 256] = std::array::from_fn(|i| i as u8);
        for v in 0..=max {
            t[((v * 255 + max / 2) / max) as usize] = (v * 255 / max) as u8;
        }
        t
    };
    let (five, green) = (table(5), table(green_bits));
    // Pillow reads these as RGB: an alpha mask (A1R5G5B5) is not applied.
    let mut rgb = img.into_rgb8();
    for px in rgb.pixels_mut() {
        px.0 = [five[px.0[0] as usize], green[px.0[1] as usize], five[px.0[2] as usize]];
    }
    DynamicImage::ImageRgb8(rgb)
}

/// A GIF whose first frame does not cover its logical screen, as Pillow opens it: the pixels
/// outside the frame are palette index 0, or the transparency index where the frame has one
/// (Pillow's `load_prepare` fills frame 0's canvas with it); the `image` crate leaves them
/// transparent black. The fill is that entry's colour, transparent where it is the
/// transparency index (as Pillow's `convert("RGBA")` gives it); without a colour table, the
/// index as gray (Pillow's "L").
fn gif_fill_uncovered(data: &[u8], img: DynamicImage) -> DynamicImage {
    let Some(frame) = gif_first_frame(data) else { return img };
    let (left, top, fw, fh) = (frame.left, frame.top, frame.width, frame.height);
    let (w, h) = (img.width(), img.height());
    if left == 0 && top == 0 && fw >= w && fh >= h {
        return img;
    }
    let index = frame.transparent.unwrap_or(0);
    let mut fill = match palette_rgba(data, ImageFormat::Gif) {
        Some(p) => p.get(index as usize).copied().unwrap_or([0, 0, 0, 255]),
        None => [index, index, index, 255],
    };
    fill[3] = if frame.transparent.is_some() { 0 } else { 255 };
    let mut rgba = img.into_rgba8();
    let (x1, y1) = (left.saturating_add(fw), top.saturating_add(fh));
    for (x, y, px) in rgba.enumerate_pixels_mut() {
        if x < left || x >= x1 || y < top || y >= y1 {
            px.0 = fill;
        }
    }
    DynamicImage::ImageRgba8(rgba)
}

/// A non-interlaced 16-bit colour PNG (RGB, gray + alpha, RGBA: Pillow opens them as "RGB"
/// and "RGBA" and keeps each sample's high byte) decoded row by row by the png crate, with the
/// `image` crate's settings, each row cut to those high bytes as it comes, so the 16-bit image
/// is never held: a 9459x9459 RGBA file needs its 358 MB 8-bit image instead of 716 MB for the
/// 16-bit one plus the conversion. A tRNS colour key is matched on the 16-bit samples (the crate
/// expands it into an alpha of 0 or 65535, whose high byte is kept). Every conversion reads the
/// high bytes, so the 8-bit image gives the same pixels. With `luma`, each row becomes
/// Pillow's `convert("L")` of it instead ([`l24`] of the high bytes; a gray + alpha file, which
/// Pillow opens as RGBA with R = G = B, its gray), an 89 MB image for that file. `None` for any
/// other PNG and wherever the png crate fails (reading on to IEND, which the crate's own decode
/// does not need): the full decode then decides, mending what Pillow reads.
fn png16_by_rows(data: &[u8], format: ImageFormat, w: u32, h: u32, luma: bool) -> Option<DynamicImage> {
    // IHDR: bit depth at 24, colour type at 25, interlace at 28.
    if format != ImageFormat::Png || data.get(24) != Some(&16) || !matches!(data.get(25), Some(2 | 4 | 6)) || data.get(28) != Some(&0) {
        return None;
    }
    let limits = png::Limits { bytes: usize::try_from((w as u64 * h as u64 * 16).max(1 << 20)).unwrap_or(usize::MAX) };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(data), limits);
    decoder.set_ignore_text_chunk(false);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().ok()?;
    let (colour, depth) = reader.output_color_type();
    let channels = match colour {
        png::ColorType::Rgb => 3,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgba => 4,
        _ => return None,
    };
    let (rw, rh) = (reader.info().width, reader.info().height);
    if depth != png::BitDepth::Sixteen || (rw, rh) != (w, h) {
        return None;
    }
    let len = w as usize * h as usize * if luma { 1 } else { channels };
    let mut px = Vec::new();
    px.try_reserve_exact(len).ok()?;
    let mut high = Vec::with_capacity(w as usize * channels);
    while let Some(row) = reader.next_row().ok()? {
        // Big-endian samples: the high byte comes first.
        high.clear();
        high.extend(row.data().iter().step_by(2));
        match (luma, channels) {
            (false, _) => px.extend_from_slice(&high),
            (true, 2) => px.extend(high.chunks_exact(2).map(|p| p[0])),
            (true, _) => px.extend(high.chunks_exact(channels).map(|p| convert::l24(p[0], p[1], p[2]))),
        }
    }
    reader.finish().ok()?;
    if px.len() != len {
        return None;
    }
    if luma {
        return image::GrayImage::from_raw(w, h, px).map(DynamicImage::ImageLuma8);
    }
    match channels {
        3 => image::RgbImage::from_raw(w, h, px).map(DynamicImage::ImageRgb8),
        2 => image::GrayAlphaImage::from_raw(w, h, px).map(DynamicImage::ImageLumaA8),
        _ => image::RgbaImage::from_raw(w, h, px).map(DynamicImage::ImageRgba8),
    }
}

/// The IEND chunk: length 0, type, CRC.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// A PNG read as Pillow reads it, where the crate refuses it. Pillow checks the CRC of each
/// chunk before the first IDAT but not of the IDATs or of the chunks after them, feeds the image
/// data to zlib until the rows are complete (an error of zlib's before then refuses the file),
/// and reads the chunks after it up to IEND, refusing one cut inside its data. So it takes a
/// file whose image-data CRCs are wrong, whose last IDAT or its CRC is cut short while the rows
/// are whole, or that lost its final IEND chunk (a download cut short). Such a file is mended
/// ([`png_mended`]) and decoded again; `None` when nothing is to mend, when Pillow would refuse
/// it, or when the mended file fails too.
fn png_as_pillow_reads(data: &[u8], format: ImageFormat, w: u32, h: u32) -> Option<DynamicImage> {
    if format != ImageFormat::Png {
        return None;
    }
    let mended = png_mended(data)?;
    crate_decode(&mended, format, w, h).ok()
}

/// `data` as the crate takes it where Pillow reads it: the chunks before the first IDAT as they
/// are, the IDATs and the chunks after them with their CRCs recomputed, a last IDAT cut short
/// ended where its data ends, and IEND appended. `None` when that changes nothing, when a chunk
/// after the image data is cut inside its data, or when zlib fails on the image data before the
/// rows the header asks for are complete ([`zlib_gives_rows`]), as Pillow then refuses the file.
fn png_mended(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = data.get(..8)?.to_vec();
    let (mut changed, mut seen_idat, mut seen_iend) = (false, false, false);
    let mut ihdr: &[u8] = &[];
    let mut idat = Vec::new();
    for (kind, at, body_end) in png_chunks(data) {
        let crc_end = body_end.saturating_add(4);
        seen_idat |= kind == b"IDAT";
        if kind == b"IEND" {
            seen_iend = true;
            break;
        }
        if !seen_idat {
            // Before the image data: kept as it is (Pillow and the crate check these CRCs).
            let chunk = data.get(at..crc_end)?;
            if kind == b"IHDR" {
                ihdr = &chunk[8..chunk.len() - 4];
            }
            out.extend_from_slice(chunk);
            continue;
        }
        if body_end > data.len() && kind != b"IDAT" {
            return None; // Pillow: "Truncated File Read"
        }
        let body = &data[at + 8..body_end.min(data.len())];
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(body);
        let crc = crc.sum().to_be_bytes();
        changed |= data.get(body_end..crc_end) != Some(&crc[..]);
        if kind == b"IDAT" {
            idat.extend_from_slice(body);
        }
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out.extend_from_slice(&crc);
    }
    changed |= !seen_iend;
    out.extend_from_slice(&PNG_IEND);
    (changed && seen_idat && zlib_gives_rows(ihdr, &idat)).then_some(out)
}

/// The chunks of a PNG after its signature, in order, as (type, offset of the chunk, end of its
/// data): the last one may be cut (its end past `data.len()`); they stop after IEND or where
/// fewer than 8 bytes are left.
fn png_chunks(data: &[u8]) -> impl Iterator<Item = (&[u8], usize, usize)> {
    let mut next = Some(8usize);
    std::iter::from_fn(move || {
        let at = next?;
        let head = data.get(at..at + 8)?;
        let body_end = (at + 8).saturating_add(u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize);
        next = (&head[4..8] != b"IEND").then(|| body_end.saturating_add(4));
        Some((&head[4..8], at, body_end))
    })
}

/// Why Pillow refuses a PNG that the crate decodes, if it does: Pillow checks the CRC of every
/// chunk before the image data (the crate skips ancillary ones, `gAMA`, `tEXt`, ...), and reads
/// the chunks after it up to IEND, so one cut inside its data refuses the file (the crate stops
/// after the image data).
fn png_refused_as_pillow(data: &[u8], format: ImageFormat) -> Option<String> {
    if format != ImageFormat::Png {
        return None;
    }
    let mut seen_idat = false;
    for (kind, at, body_end) in png_chunks(data) {
        seen_idat |= kind == b"IDAT";
        let name = || String::from_utf8_lossy(kind);
        if body_end > data.len() {
            return (seen_idat && kind != b"IDAT")
                .then(|| format!("Png: the {} chunk after the image data is cut short (Pillow: Truncated File Read)", name()));
        }
        if !seen_idat {
            let mut crc = flate2::Crc::new();
            crc.update(&data[at + 4..body_end]);
            if data.get(body_end..body_end.saturating_add(4)) != Some(&crc.sum().to_be_bytes()[..]) {
                return Some(format!("Png: the CRC of the {} chunk is wrong (Pillow: broken PNG file)", name()));
            }
        }
    }
    None
}

/// Whether zlib, fed `idat` as Pillow feeds it, gives the bytes of every row the PNG header
/// `ihdr` declares (filter bytes included, the seven Adam7 passes when interlaced) without an
/// error: Pillow reads the rows through an output buffer of their size, and zlib goes on
/// decoding until it would have to write past it, so the symbol after the rows counts too (the
/// end of the stream and its checksum, a bad code), a byte past them does not. Emulated by
/// inflating one byte more than the rows: the rows are read when that byte comes out, when the
/// stream ends cleanly right after them, or when the data ends (a file cut short) after them.
/// Counted through a small buffer, never held.
fn zlib_gives_rows(ihdr: &[u8], idat: &[u8]) -> bool {
    use flate2::{Decompress, FlushDecompress, Status};
    let &[w0, w1, w2, w3, h0, h1, h2, h3, depth, colour, _, _, interlace] = ihdr else { return false };
    let (w, h) = (u32::from_be_bytes([w0, w1, w2, w3]) as u64, u32::from_be_bytes([h0, h1, h2, h3]) as u64);
    let channels = match colour {
        0 | 3 => 1,
        2 => 3,
        4 => 2,
        6 => 4,
        _ => return false,
    };
    let bits = channels * depth as u64;
    // Saturating: a header beyond any real image (the limits were raised) just never completes.
    let rows = |pw: u64, ph: u64| if pw == 0 { 0 } else { ph.saturating_mul(1 + (pw * bits).div_ceil(8)) };
    let want = if interlace == 0 {
        rows(w, h)
    } else {
        let pass = |x0: u64, y0: u64, dx: u64, dy: u64| rows(w.saturating_sub(x0).div_ceil(dx), h.saturating_sub(y0).div_ceil(dy));
        [pass(0, 0, 8, 8), pass(4, 0, 8, 8), pass(0, 4, 4, 8), pass(2, 0, 4, 4), pass(0, 2, 2, 4), pass(1, 0, 2, 2), pass(0, 1, 1, 2)]
            .into_iter()
            .fold(0u64, u64::saturating_add)
    };
    let mut z = Decompress::new(true);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let room = buf.len().min((want.saturating_add(1) - z.total_out()).min(1 << 16) as usize);
        let (before_in, before_out) = (z.total_in(), z.total_out());
        match z.decompress(&idat[before_in as usize..], &mut buf[..room], FlushDecompress::None) {
            Ok(Status::StreamEnd) => return z.total_out() >= want,
            Err(_) => return z.total_out() > want,
            Ok(_) if z.total_out() > want => return true,
            // The data ends (a file cut short): read if the rows came out before.
            Ok(_) if z.total_in() == before_in && z.total_out() == before_out => return z.total_out() >= want,
            Ok(_) => {}
        }
    }
}

/// Frame 0 of a GIF, as far as Pillow's mode and palette and the interlace workaround need it.
struct GifFrame {
    /// The offset of its image descriptor's packed byte (interlace flag, local colour table).
    packed: usize,
    /// Its place and size on the logical screen.
    left: u32,
    top: u32,
    width: u32,
    height: u32,
    /// The transparent index of the last graphic control extension before it that sets one
    /// (Pillow's `info["transparency"]`).
    transparent: Option<u8>,
}

/// Frame 0 of a GIF: its image descriptor and the graphic control extensions before it.
fn gif_first_frame(data: &[u8]) -> Option<GifFrame> {
    let mut transparent = None;
    for block in super::probe::gif_blocks(data) {
        match block {
            // 21 F9 04 flags delay(2) index 00: bit 0 of the flags says the index is transparent.
            GifBlock::Extension { label: 0xF9, at } => {
                if data.get(at + 1).is_some_and(|f| f & 1 == 1) {
                    transparent = data.get(at + 4).copied();
                }
            }
            GifBlock::Extension { .. } => {}
            GifBlock::Image { at } => {
                let field = |k: usize| Some(u16::from_le_bytes([*data.get(at + k)?, *data.get(at + k + 1)?]) as u32);
                return Some(GifFrame { packed: at + 9, left: field(1)?, top: field(3)?, width: field(5)?, height: field(7)?, transparent });
            }
        }
    }
    None
}

/// Frame 0's colour table as (offset, bytes): its local table, else the global one (the global
/// one where frame 0 was not found); `None` where there is neither.
fn gif_colour_table(data: &[u8], frame: Option<&GifFrame>) -> Option<(usize, usize)> {
    let table = |flags: u8, at: usize| (flags & 0x80 != 0).then(|| (at, 3usize << ((flags & 7) + 1)));
    frame.and_then(|f| table(*data.get(f.packed)?, f.packed + 1)).or_else(|| table(*data.get(10)?, 13))
}

/// An interlaced GIF frame that the `gif` crate calls truncated although its data is whole (its
/// deinterlacing hands the LZW decoder one row at a time, which stalls on some sizes: gif
/// 0.14.2 with weezl 0.1; image-rs/image-gif#232): decoded as if not interlaced, which fills
/// the frame in one pass, then its rows put back in the interlaced order (passes from rows 0,
/// 4, 2 and 1, every 8, 8, 4 and 2). `None` for anything else.
fn gif_interlaced_by_rows(data: &[u8], format: ImageFormat, w: u32, h: u32) -> Option<DynamicImage> {
    if format != ImageFormat::Gif {
        return None;
    }
    let GifFrame { packed, top, height, .. } = gif_first_frame(data)?;
    if data.get(packed)? & 0x40 == 0 {
        return None;
    }
    let mut flat = data.to_vec();
    flat[packed] &= !0x40;
    let img = crate_decode(&flat, format, w, h).ok()?;
    let mut rgba = img.into_rgba8();
    let stride = 4 * rgba.width() as usize;
    let (top, height) = (top as usize, (height as usize).min((rgba.height() as usize).saturating_sub(top as usize)));
    let order: Vec<usize> = [(0, 8), (4, 8), (2, 4), (1, 2)].iter().flat_map(|&(start, step)| (start..height).step_by(step)).collect();
    let sent = rgba.as_raw()[top * stride..(top + height) * stride].to_vec();
    let raw: &mut [u8] = &mut rgba;
    for (k, &row) in order.iter().enumerate() {
        let at = (top + row) * stride;
        raw[at..at + stride].copy_from_slice(&sent[k * stride..(k + 1) * stride]);
    }
    Some(DynamicImage::ImageRgba8(rgba))
}

/// The `image` crate's decode with its allocation bounded by the header's size.
fn crate_decode(data: &[u8], format: ImageFormat, w: u32, h: u32) -> image::ImageResult<DynamicImage> {
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    let mut l = image::Limits::default();
    l.max_image_width = Some(w);
    l.max_image_height = Some(h);
    l.max_alloc = Some((w as u64 * h as u64 * 16).max(1 << 20));
    reader.limits(l);
    reader.decode()
}

/// A 16-bit grayscale PNG with a tRNS colour key comes out of the crate as gray + alpha; Pillow
/// opens it as `I;16` and clips each value at 255 where the conversions here take the high
/// byte of a gray + alpha image (what Pillow does for a real `LA` PNG). The gray of such an
/// image is stored as `min(v, 255) * 257`, whose high byte is the clipped value.
fn gray16_key_as_pillow(data: &[u8], format: ImageFormat, img: DynamicImage) -> DynamicImage {
    let gray16 = || format == ImageFormat::Png && super::probe::probe(data).is_some_and(|p| p.mode == "I;16");
    match img {
        DynamicImage::ImageLumaA16(mut b) if gray16() => {
            for p in b.pixels_mut() {
                p.0[0] = p.0[0].min(255) * 257;
            }
            DynamicImage::ImageLumaA16(b)
        }
        other => other,
    }
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
    Ok(into_luma(decode_jpeg_libjpeg(data, scale, JpegOut::DraftLuma, limits.max_pixels)?))
}

/// The 8-bit grayscale image of `Image.open(...).convert("L")`, bit for bit: [`decode`] then
/// [`to_luma_pillow`], except that a colour JPEG's RGB rows go through [`rgbx_to_luma`] in
/// small batches as libjpeg produces them, never held as a whole RGB image.
pub fn decode_luma(data: &[u8], limits: &DecodeLimits) -> Result<(u32, u32, Vec<u8>), RecordError> {
    let (format, w, h) = checked_header(data, limits)?;
    if format != ImageFormat::Jpeg {
        // A 16-bit colour PNG straight to luma by rows, never held in colour.
        if let Some(DynamicImage::ImageLuma8(g)) = png16_by_rows(data, format, w, h, true) {
            if let Some(why) = png_refused_as_pillow(data, format) {
                return Err(err(ErrorKind::CorruptImage, why));
            }
            return Ok((w, h, g.into_raw()));
        }
        return Ok(to_luma_pillow(&decode_full(data, format, w, h)?));
    }
    Ok(into_luma(decode_jpeg_libjpeg(data, 8, JpegOut::Luma, limits.max_pixels)?))
}

fn into_luma(img: DynamicImage) -> (u32, u32, Vec<u8>) {
    match img {
        DynamicImage::ImageLuma8(g) => (g.width(), g.height(), g.into_raw()),
        other => to_luma_pillow(&other),
    }
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
    let px = to_rgb_pillow(img, opts.alpha);
    Ok(orient(Rgb8 { width, height, px }, orientation))
}

/// An image as Pillow's `Image.open` holds it, in the form a resize before the RGB
/// conversion reads (open_clip's order: `Resize`, `CenterCrop`, then `convert("RGB")`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Modes whose conversion to RGB commutes with the resize ("RGB", "L", and every image in
    /// the convert-first order): `convert("RGB")` already applied.
    Rgb(Rgb8),
    /// Modes "P" and "1", which Pillow resizes with NEAREST whatever the filter asked (a
    /// per-pixel lookup, so converted first: the same pixels), with the palette of a "P"
    /// image as RGBA entries (padding takes the colour of its entry `fill`; for "1", black
    /// then 255 whites, as a non-zero fill is white there).
    Nearest(Rgb8, Option<Vec<[u8; 4]>>),
    /// Modes "RGBA" and "LA" (gray in R, G and B), 4 bytes a pixel: Pillow resizes them
    /// premultiplied ("RGBa", "La") and converts back; `premultiplied` once
    /// [`Source::premultiply`] has made them so, in place.
    Rgba { width: usize, height: usize, px: Vec<u8>, premultiplied: bool },
    /// Mode "CMYK" (a CMYK or YCCK JPEG) as Pillow stores it, 4 bytes a pixel; resized, then
    /// Pillow's `cmyk2rgb`.
    Cmyk { width: usize, height: usize, px: Vec<u8> },
    /// Mode "I;16" (16-bit gray PNG): resized at 16 bits, then clipped at 255 (`I;16` -> RGB).
    Gray16 { width: usize, height: usize, px: Vec<u16> },
}

impl Source {
    /// (width, height).
    pub fn size(&self) -> (usize, usize) {
        match self {
            Source::Rgb(i) | Source::Nearest(i, _) => (i.width, i.height),
            Source::Rgba { width, height, .. } | Source::Cmyk { width, height, .. } | Source::Gray16 { width, height, .. } => (*width, *height),
        }
    }

    /// Pillow's `RGBA` -> `RGBa` (`MULDIV255(c, a)`) of an "RGBA" or "LA" source, in place;
    /// nothing for the others.
    pub fn premultiply(&mut self) {
        if let Source::Rgba { px, premultiplied: premultiplied @ false, .. } = self {
            let muldiv255 = |a: u32, b: u32| {
                let t = a * b + 128;
                (((t >> 8) + t) >> 8) as u8
            };
            for p in px.chunks_exact_mut(4) {
                let a = p[3] as u32;
                for v in &mut p[..3] {
                    *v = muldiv255(*v as u32, a);
                }
            }
            *premultiplied = true;
        }
    }

    /// The RGB of padding with the 8-bit value `fill` (open_clip pads the image in its opened
    /// mode, torchvision's `pad` giving every band `fill`, then converts): the palette entry
    /// `fill` of a "P" image (black past the palette's end, as Pillow), white for a
    /// non-zero `fill` in "1", Pillow's
    /// `cmyk2rgb` of `(fill, fill, fill, fill)` for "CMYK", `fill` in every channel otherwise;
    /// alpha (of "RGBA", "LA" and the palette entry) dropped or composited on white.
    pub fn pad_rgb(&self, fill: u8, alpha: Alpha) -> [u8; 3] {
        let with_alpha = |c: [u8; 3], a: u8| match alpha {
            Alpha::Drop => c,
            Alpha::White => c.map(|v| over_white(v, a)),
        };
        match self {
            Source::Nearest(_, Some(palette)) => {
                let [r, g, b, a] = palette.get(fill as usize).copied().unwrap_or([0, 0, 0, 255]);
                with_alpha([r, g, b], a)
            }
            Source::Cmyk { .. } => cmyk_stored_to_rgb([fill; 4]),
            Source::Rgba { .. } => with_alpha([fill; 3], fill),
            _ => [fill; 3],
        }
    }
}

/// The palette of a "P" PNG, GIF (frame 0's table) or BMP as RGBA entries: the alpha from a
/// PNG's tRNS, or 0 at a GIF's transparent index; `None` where there is none to read.
fn palette_rgba(data: &[u8], format: ImageFormat) -> Option<Vec<[u8; 4]>> {
    let entries = |table: &[u8], size: usize, order: [usize; 3]| -> Vec<[u8; 4]> {
        table.chunks_exact(size).map(|e| [e[order[0]], e[order[1]], e[order[2]], 255]).collect()
    };
    match format {
        ImageFormat::Png => {
            let mut palette = None;
            for (kind, at, end) in png_chunks(data) {
                let body = data.get(at + 8..end)?;
                match kind {
                    b"PLTE" => palette = Some(entries(body, 3, [0, 1, 2])),
                    b"tRNS" => {
                        for (e, &a) in palette.as_mut()?.iter_mut().zip(body) {
                            e[3] = a;
                        }
                    }
                    b"IDAT" => break,
                    _ => {}
                }
            }
            palette
        }
        ImageFormat::Gif => {
            let frame = gif_first_frame(data)?;
            let (at, len) = gif_colour_table(data, Some(&frame))?;
            let mut palette = entries(data.get(at..at + len)?, 3, [0, 1, 2]);
            if let Some(e) = frame.transparent.and_then(|t| palette.get_mut(t as usize)) {
                e[3] = 0;
            }
            Some(palette)
        }
        ImageFormat::Bmp => {
            let (table, size, colors) = bmp_palette(data)?;
            let n = (table.len() / size).min(colors).min(256);
            Some(entries(&table[..n * size], size, [2, 1, 0]))
        }
        _ => None,
    }
}

/// The mode Pillow's `Image.open` gives a non-JPEG image, refining the probe's where it reads
/// the palette: a GIF whose frame-0 colour table is the gray ramp (or that has none) is "L"; a
/// BMP whose palette is the gray ramp is "L", or "1" for black and white.
pub(crate) fn pillow_mode(data: &[u8], format: ImageFormat) -> &'static str {
    let Some(p) = super::probe::probe(data) else { return "RGB" };
    let ramp = |table: &[u8], entry: usize, n: usize, values: &dyn Fn(usize) -> usize| {
        (0..n).all(|i| table.get(i * entry..i * entry + 3).is_some_and(|c| c.iter().all(|&v| v as usize == values(i))))
    };
    match (format, p.mode) {
        (ImageFormat::Gif, "P") => match gif_colour_table(data, gif_first_frame(data).as_ref()) {
            None => "L",
            Some((at, len)) => match data.get(at..at + len) {
                Some(t) if ramp(t, 3, len / 3, &|i| i) => "L",
                _ => "P",
            },
        },
        (ImageFormat::Bmp, "P") => {
            let Some((table, entry, colors)) = bmp_palette(data) else { return "P" };
            if colors == 2 && ramp(table, entry, 2, &|i| i * 255) {
                "1"
            } else if colors != 2 && ramp(table, entry, colors, &|i| i) {
                if colors <= 2 {
                    "1"
                } else {
                    "L"
                }
            } else {
                "P"
            }
        }
        (_, mode) => mode,
    }
}

/// A BMP's colour table as Pillow reads it: (the bytes from its start, bytes an entry, entries:
/// the header's colour count, else 2^bits).
fn bmp_palette(data: &[u8]) -> Option<(&[u8], usize, usize)> {
    let u32_at = |i: usize| data.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let header = u32_at(14)?;
    let (bits, used, entry) = if header == 12 { (*data.get(24)? as u32, 0, 3) } else { (*data.get(28)? as u32, u32_at(46)?, 4) };
    let colors = if used != 0 { used } else { 1usize << bits.min(16) };
    Some((data.get(14 + header..)?, entry, colors))
}

/// Decodes `data` into a [`Source`]: the image in the mode Pillow opens it in, as far as the
/// resize before the RGB conversion must know it (see [`Source`]); `draft_min` as
/// [`decode_rgb_draft`]. The alpha rule applies to "RGBA" and "LA" after the resize; to every
/// other mode (palette and tRNS transparency) before it, as [`decode_rgb`] applies it.
pub fn decode_source(data: &[u8], opts: &DecodeOptions, draft_min: Option<(usize, usize)>) -> Result<Source, RecordError> {
    let orientation = if opts.exif_transpose { crate::image::probe::probe(data).map_or(1, |p| p.orientation) } else { 1 };
    let draft_min = draft_min.map(|(w, h)| if orientation >= 5 { (h, w) } else { (w, h) });
    let (format, w, h) = checked_header(data, &opts.limits)?;
    let (img, mode) = if format == ImageFormat::Jpeg {
        let scale = draft_min.map_or(8, |(mw, mh)| draft_numerator(w, h, mw, mh));
        let img = decode_jpeg_libjpeg(data, scale, JpegOut::RgbOrCmyk, opts.limits.max_pixels)?;
        let mode = if matches!(img, DynamicImage::ImageRgba8(_)) { "CMYK" } else { "RGB" };
        (img, mode)
    } else {
        (decode_full_unkeyed(data, format, w, h)?, pillow_mode(data, format))
    };
    let (width, height) = (img.width() as usize, img.height() as usize);
    let high = |v: u16| (v >> 8) as u8;
    let oriented4 = |px: Vec<u8>| orient_px(px, width, height, 4, orientation);
    Ok(match (mode, img) {
        ("CMYK", DynamicImage::ImageRgba8(b)) => {
            let (width, height, px) = oriented4(b.into_raw());
            Source::Cmyk { width, height, px }
        }
        ("I;16", DynamicImage::ImageLuma16(b)) => {
            let (width, height, px) = orient_px(b.into_raw(), width, height, 1, orientation);
            Source::Gray16 { width, height, px }
        }
        ("I;16", DynamicImage::ImageLumaA16(b)) if opts.alpha == Alpha::Drop => {
            // A tRNS key: Pillow's `I;16` -> RGB ignores it.
            let gray = b.as_raw().chunks_exact(2).map(|p| p[0]).collect();
            let (width, height, px) = orient_px(gray, width, height, 1, orientation);
            Source::Gray16 { width, height, px }
        }
        ("RGBA" | "LA", img @ (DynamicImage::ImageRgba8(_) | DynamicImage::ImageLumaA8(_) | DynamicImage::ImageRgba16(_) | DynamicImage::ImageLumaA16(_))) => {
            let px: Vec<u8> = match img {
                DynamicImage::ImageRgba8(b) => b.into_raw(),
                DynamicImage::ImageLumaA8(b) => b.as_raw().chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
                DynamicImage::ImageRgba16(b) => b.as_raw().iter().map(|&v| high(v)).collect(),
                DynamicImage::ImageLumaA16(b) => b.as_raw().chunks_exact(2).flat_map(|p| [high(p[0]), high(p[0]), high(p[0]), high(p[1])]).collect(),
                _ => unreachable!(),
            };
            let (width, height, px) = oriented4(px);
            Source::Rgba { width, height, px, premultiplied: false }
        }
        (mode, img) => {
            let rgb = orient(Rgb8 { width, height, px: to_rgb_pillow(gray16_key_as_pillow(data, format, img), opts.alpha) }, orientation);
            if matches!(mode, "P" | "1") {
                // Mode "1" stores any non-zero value as white: a 256-entry "palette" says so.
                let bilevel = || (0..256).map(|i| if i == 0 { [0, 0, 0, 255] } else { [255; 4] }).collect();
                Source::Nearest(rgb, if mode == "P" { palette_rgba(data, format) } else { Some(bilevel()) })
            } else {
                Source::Rgb(rgb)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::jpeg_eighth::luma_eighth;
    use super::convert::*;
    use super::libjpeg::*;
    use super::*;

    #[test]
    fn an_interlaced_gif_decoded_by_rows_equals_the_crates_own_deinterlacing() {
        // A 37x21 gradient GIF that Pillow wrote interlaced (its default), which the crate
        // decodes: the fallback (not interlaced, rows put back) must give the same pixels.
        let gif = include_bytes!("testdata/interlaced.gif");
        let GifFrame { packed, top, height, .. } = gif_first_frame(gif).unwrap();
        assert_eq!((gif[packed] & 0x40, top, height), (0x40, 0, 21));
        let own = decode(gif, &DecodeLimits::default()).unwrap().into_rgba8();
        let by_rows = gif_interlaced_by_rows(gif, ImageFormat::Gif, 37, 21).unwrap().into_rgba8();
        assert_eq!(own, by_rows);
        // One flat colour, 73x42: the crate calls it truncated; the fallback reads it.
        let flat = include_bytes!("testdata/flat-73x42.gif");
        let img = decode(flat, &DecodeLimits::default()).unwrap().into_rgb8();
        assert!(img.pixels().all(|p| p.0 == img.get_pixel(0, 0).0) && img.dimensions() == (73, 42));
    }

    #[test]
    fn sixteen_bit_colour_pngs_read_by_rows_equal_the_crates_high_bytes() {
        let (w, h) = (37u32, 23u32);
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as u16
        };
        let rgba = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(w, h, |_, _| image::Rgba([next(), next(), next(), next()]));
        let la = image::ImageBuffer::<image::LumaA<u16>, _>::from_fn(w, h, |_, _| image::LumaA([next(), next()]));
        let rgb = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(w, h, |_, _| image::Rgb([next(), next(), next()]));
        for img in [DynamicImage::ImageRgba16(rgba), DynamicImage::ImageLumaA16(la), DynamicImage::ImageRgb16(rgb)] {
            let mut png = Vec::new();
            img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
            let rows = png16_by_rows(&png, ImageFormat::Png, w, h, false).expect("a plain 16-bit colour PNG is read by rows");
            let luma = png16_by_rows(&png, ImageFormat::Png, w, h, true).unwrap();
            assert_eq!(luma.as_bytes(), &to_luma_pillow(&full_of(&png, w, h)).2[..]);
            let full = crate_decode(&png, ImageFormat::Png, w, h).unwrap();
            let high: Vec<u8> = full.as_bytes().chunks_exact(2).map(|v| u16::from_ne_bytes([v[0], v[1]]) >> 8).map(|v| v as u8).collect();
            assert_eq!(rows.as_bytes(), &high[..], "{:?}", full.color());
            assert_eq!(to_rgb_pillow(rows, Alpha::White), to_rgb_pillow(full, Alpha::White));
        }
        // Not 16-bit colour: left to the full decode.
        let mut gray = Vec::new();
        DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(4, 4, image::Luma([300u16]))).write_to(&mut Cursor::new(&mut gray), ImageFormat::Png).unwrap();
        assert!(png16_by_rows(&gray, ImageFormat::Png, 4, 4, false).is_none());
    }

    fn full_of(png: &[u8], w: u32, h: u32) -> DynamicImage {
        crate_decode(png, ImageFormat::Png, w, h).unwrap()
    }

    #[test]
    fn png_repairs_and_refusals_follow_pillow() {
        let chunk = |t: &[u8], d: &[u8], bad: bool| {
            let mut crc = flate2::Crc::new();
            crc.update(t);
            crc.update(d);
            [&(d.len() as u32).to_be_bytes()[..], t, d, &(crc.sum() ^ bad as u32).to_be_bytes()].concat()
        };
        let sig = b"\x89PNG\r\n\x1a\n".to_vec();
        let ihdr = [&1u32.to_be_bytes()[..], &1u32.to_be_bytes(), &[8, 0, 0, 0, 0]].concat();
        let idat = [0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01];
        let file = |bad_ihdr: bool, bad_idat: bool, bad_text: bool, iend: bool| {
            let mut f = [sig.clone(), chunk(b"IHDR", &ihdr, bad_ihdr), chunk(b"gAMA", &[0, 0, 177, 143], false)].concat();
            f.extend(chunk(b"IDAT", &idat, bad_idat));
            f.extend(chunk(b"tEXt", b"a\0b", bad_text));
            if iend {
                f.extend(PNG_IEND);
            }
            f
        };
        let good = file(false, false, false, true);
        assert_eq!(png_mended(&good), None);
        assert_eq!(png_mended(&file(false, true, true, true)).as_deref(), Some(&good[..]));
        assert_eq!(png_mended(&file(false, false, false, false)).as_deref(), Some(&good[..]));
        // A wrong CRC before the first IDAT is left wrong (Pillow refuses that file too).
        let early = file(true, true, false, true);
        assert_eq!(png_mended(&early).unwrap(), file(true, false, false, true));
        let limits = DecodeLimits::default();
        assert!(decode(&file(false, true, true, false), &limits).is_ok());
        assert!(decode(&early, &limits).is_err());
        // The last IDAT's CRC cut off: ended where its data ends.
        let idat_end = good.len() - 12 - 15; // IEND, then tEXt (4 + 4 + 3 + 4 bytes)
        assert_eq!(png_mended(&good[..idat_end - 1]).as_deref(), Some(&[&good[..idat_end], &PNG_IEND[..]].concat()[..]));
        // A chunk after the image data cut inside its data: refused, mended or not.
        let cut_text = &good[..idat_end + 9];
        assert_eq!(png_mended(cut_text), None);
        assert!(png_refused_as_pillow(cut_text, ImageFormat::Png).is_some_and(|why| why.contains("tEXt")));
        // A wrong CRC on an ancillary chunk before the image data, which the crate skips.
        let mut gama = good.clone();
        gama[8 + 25 + 12] ^= 1;
        assert!(png_refused_as_pillow(&gama, ImageFormat::Png).is_some_and(|why| why.contains("gAMA")));
        assert!(decode(&gama, &limits).is_err());
        // Damaged image data that zlib stops on before the row is out stays refused.
        let mut stream = good.clone();
        stream[8 + 25 + 16 + 8 + 2] = 0xff;
        assert!(!zlib_gives_rows(&ihdr, &stream[8 + 25 + 16 + 8..8 + 25 + 16 + 8 + idat.len()]));
        assert!(decode(&stream, &limits).is_err());
        assert!(zlib_gives_rows(&ihdr, &idat));
        // A header far beyond any real image neither overflows nor completes.
        for interlace in [0, 1] {
            let huge = [&0x7fff_ffffu32.to_be_bytes()[..], &0x7fff_ffffu32.to_be_bytes(), &[16, 6, 0, 0, interlace]].concat();
            assert!(!zlib_gives_rows(&huge, &idat));
        }
    }

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

    /// The pixel limit holds on the frame libjpeg reads, whatever our probe made of the
    /// markers: a stuffed zero (FF 00) that libjpeg skips must not hide a huge frame behind a
    /// small one tucked into an APP1 segment.
    #[test]
    fn the_pixel_limit_holds_on_the_frame_libjpeg_reads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python/interleaf/data/sample/images");
        let photo = std::fs::read(dir.join("coffee.jpg")).unwrap();
        let limits = DecodeLimits::default();
        let (w, h) = header_size(&photo).unwrap();
        // libjpeg's own check, with a limit one pixel short of the photo.
        let tight = (w as u64 * h as u64) - 1;
        let e = decode_jpeg_libjpeg(&photo, 8, JpegOut::Rgb, tight).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ImageTooLarge, "{e:?}");
        assert!(decode_jpeg_libjpeg(&photo, 8, JpegOut::Rgb, w as u64 * h as u64).is_ok());
        // The desync: SOI, FF 00 + a "length" reaching the APP1 body, the huge SOF libjpeg
        // reads, an APP1 holding a 16x16 SOF, then the photo's own tables and scan.
        let sof_at = (2..photo.len()).find(|&i| photo[i] == 0xFF && photo[i + 1] == 0xC0).unwrap();
        let sof_len = u16::from_be_bytes([photo[sof_at + 2], photo[sof_at + 3]]) as usize;
        let sof = &photo[sof_at..sof_at + 2 + sof_len];
        let mut huge = sof.to_vec();
        huge[5..9].copy_from_slice(&[0x4E, 0x20, 0x4E, 0x20]); // 20000 x 20000
        let mut small = sof.to_vec();
        small[5..9].copy_from_slice(&[0, 16, 0, 16]);
        let app1 = [&[0xFF, 0xE1][..], &((small.len() + 2) as u16).to_be_bytes(), &small].concat();
        let ff00 = [0xFF, 0x00, 0, (huge.len() + 4) as u8];
        let rest: Vec<u8> = [&photo[2..sof_at], &photo[sof_at + 2 + sof_len..]].concat();
        let crafted = [&[0xFF, 0xD8][..], &ff00, &huge, &app1, &rest].concat();
        assert_eq!(header_size(&crafted).unwrap(), (20000, 20000), "the probe reads the frame libjpeg reads");
        let e = decode(&crafted, &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ImageTooLarge, "{e:?}");
        let e = decode_luma_draft(&crafted, &limits, 32).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ImageTooLarge, "{e:?}");
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
        decode_jpeg_libjpeg(data, 1, JpegOut::DraftLuma, u64::MAX).ok().map(into_luma)
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
        while !bits.len().is_multiple_of(8) {
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
        [&[0xFF, 0xD8][..], &seg(0xDB, &q), &seg(0xC0, &sof), &seg(0xC4, &dht_dc), &seg(0xC4, &dht_ac), &seg(0xDA, &[1, 1, 0, 0, 63, 0]), &scan, &[0xFF, 0xD9]]
            .concat()
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
