//! What an image's header says, without decoding pixels: container format, the mode Pillow's
//! `Image.open` reports, the number of frames and the EXIF orientation. Every read is bounds
//! checked; a header this cannot parse gives defaults, never a panic (decoding reports the
//! error).

/// Header facts of one encoded image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// "JPEG", "PNG", "GIF", "WEBP" or "BMP" (Pillow's `Image.format` names).
    pub format: &'static str,
    /// The mode Pillow reports on open: "RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16".
    pub mode: &'static str,
    /// Frames in an animated GIF, APNG or WebP; 1 otherwise.
    pub frames: u32,
    /// EXIF orientation tag (1-8), 1 where there is none.
    pub orientation: u8,
    /// A JPEG's (width, height) from its first start-of-frame segment when that frame is
    /// baseline, extended or progressive (what the decoder takes), both are non-zero and a
    /// start-of-scan follows (as Pillow's `Image.open` needs); `None` otherwise and for other
    /// formats.
    pub jpeg_size: Option<(u32, u32)>,
}

/// Sniffs the container format from the magic bytes.
pub fn sniff(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\xff\xd8\xff") {
        Some("JPEG")
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("PNG")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("GIF")
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("WEBP")
    } else if data.starts_with(b"BM") {
        Some("BMP")
    } else {
        None
    }
}

fn u16_be(d: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(i..i + 2)?.try_into().ok()?))
}

fn u32_be(d: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(i..i + 4)?.try_into().ok()?))
}

fn u16_le(d: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(i..i + 2)?.try_into().ok()?))
}

fn u32_le(d: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(i..i + 4)?.try_into().ok()?))
}

/// Reads the header of `data`; `None` when the format is not one we decode.
pub fn probe(data: &[u8]) -> Option<Probe> {
    let format = sniff(data)?;
    let mut p = Probe { format, mode: "RGB", frames: 1, orientation: 1, jpeg_size: None };
    match format {
        "JPEG" => probe_jpeg(data, &mut p),
        "PNG" => probe_png(data, &mut p),
        "GIF" => probe_gif(data, &mut p),
        "WEBP" => probe_webp(data, &mut p),
        _ => probe_bmp(data, &mut p),
    }
    Some(p)
}

/// [`Probe::jpeg_size`] alone: `None` for anything but a JPEG the probe takes.
pub fn jpeg_size(data: &[u8]) -> Option<(u32, u32)> {
    if sniff(data) != Some("JPEG") {
        return None;
    }
    let mut p = Probe { format: "JPEG", mode: "RGB", frames: 1, orientation: 1, jpeg_size: None };
    probe_jpeg(data, &mut p);
    p.jpeg_size
}

/// The orientation (tag 0x0112) in IFD0 of a TIFF-structured EXIF block; a leading
/// `Exif\0\0` is skipped.
pub fn exif_orientation(exif: &[u8]) -> Option<u8> {
    let t = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let le = match t.get(..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let r16 = |i: usize| if le { u16_le(t, i) } else { u16_be(t, i) };
    let r32 = |i: usize| if le { u32_le(t, i) } else { u32_be(t, i) };
    let ifd = r32(4)? as usize;
    let n = r16(ifd)? as usize;
    for e in 0..n.min(1024) {
        let at = ifd + 2 + e * 12;
        if r16(at)? == 0x0112 {
            let v = r16(at + 8)?;
            return (1..=8).contains(&v).then_some(v as u8);
        }
    }
    None
}

fn probe_jpeg(d: &[u8], p: &mut Probe) {
    let mut i = 2;
    let mut frame: Option<(u8, u32, u32)> = None;
    let mut scan = false;
    while i + 4 <= d.len() {
        if d[i] != 0xFF {
            i += 1;
            continue;
        }
        let m = d[i + 1];
        // As libjpeg's next_marker: fill bytes (FF FF), a stuffed zero (FF 00) and the
        // parameterless markers carry no length.
        if m == 0xFF || m == 0x00 || m == 0x01 || (0xD0..=0xD8).contains(&m) {
            i += if m == 0xFF { 1 } else { 2 };
            continue;
        }
        if m == 0xDA || m == 0xD9 {
            scan = m == 0xDA;
            break;
        }
        let Some(len) = u16_be(d, i + 2).map(usize::from) else { break };
        // A length under 2 is corrupt (it counts its own two bytes): an empty segment.
        let start = (i + 4).min(d.len());
        let seg = &d[start..(i + 2 + len).min(d.len()).max(start)];
        match m {
            0xE1 if seg.starts_with(b"Exif\0\0") && p.orientation == 1 => {
                p.orientation = exif_orientation(seg).unwrap_or(1);
            }
            0xC0..=0xCF if m != 0xC4 && m != 0xC8 && m != 0xCC => {
                p.mode = match seg.get(5) {
                    Some(1) => "L",
                    Some(4) => "CMYK",
                    _ => "RGB",
                };
                if frame.is_none() {
                    if let (Some(h), Some(w)) = (u16_be(seg, 1), u16_be(seg, 3)) {
                        frame = Some((m, w as u32, h as u32));
                    }
                }
            }
            _ => {}
        }
        i += 2 + len.max(2);
    }
    if let (true, Some((0xC0..=0xC2, w, h))) = (scan, frame) {
        p.jpeg_size = (w > 0 && h > 0).then_some((w, h));
    }
}

fn probe_png(d: &[u8], p: &mut Probe) {
    // APNG: acTL's frame count (Pillow ignores 0 and counts above 2^31), plus one where the
    // IDAT image comes before any fcTL (a default image outside the animation, which Pillow's
    // n_frames counts too).
    let (mut actl, mut fctl, mut default_image, mut idat) = (None, false, false, false);
    let mut i = 8;
    while let (Some(len), Some(kind)) = (u32_be(d, i), d.get(i + 4..i + 8)) {
        let start = i + 8;
        let body = &d[start.min(d.len())..start.saturating_add(len as usize).min(d.len())];
        match kind {
            b"IHDR" => {
                p.mode = match (body.get(9), body.get(8)) {
                    (Some(0), Some(1)) => "1",
                    (Some(0), Some(16)) => "I;16",
                    (Some(0), _) => "L",
                    (Some(2), _) => "RGB",
                    (Some(3), _) => "P",
                    // Pillow opens 16-bit gray + alpha as RGBA (its LA has 8 bits a sample).
                    (Some(4), Some(16)) => "RGBA",
                    (Some(4), _) => "LA",
                    _ => "RGBA",
                };
            }
            // As Pillow's chunk_acTL, which only reads chunks before the image data: a second
            // acTL makes the file a plain PNG, a short one is refused (one frame here).
            b"acTL" if !idat => actl = if body.len() < 8 || actl.is_some() { None } else { u32_be(body, 0).filter(|&n| n != 0 && n <= 0x8000_0000) },
            b"fcTL" => fctl = true,
            b"IDAT" => {
                default_image |= actl.is_some() && !fctl;
                idat = true;
            }
            b"eXIf" => p.orientation = exif_orientation(body).unwrap_or(1),
            b"IEND" => break,
            _ => {}
        }
        i = start.saturating_add(len as usize).saturating_add(4);
    }
    if let Some(n) = actl {
        p.frames = n.saturating_add(u32::from(default_image));
    }
}

/// Counts a GIF's image descriptors; Pillow opens GIFs as mode "P".
fn probe_gif(d: &[u8], p: &mut Probe) {
    p.mode = "P";
    p.frames = (gif_blocks(d).filter(|b| matches!(b, GifBlock::Image { .. })).count() as u32).max(1);
}

/// A block of a GIF's data stream (past its header and global colour table).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum GifBlock {
    /// An extension: its label and the offset of its first sub-block's length byte.
    Extension { label: u8, at: usize },
    /// An image descriptor: the offset of its 0x2C.
    Image { at: usize },
}

/// A GIF's blocks in order, to the trailer or the first byte that starts none; a block whose
/// sub-blocks run past the end of `d` is the last one given.
pub(crate) fn gif_blocks(d: &[u8]) -> impl Iterator<Item = GifBlock> + '_ {
    let skip_sub_blocks = move |mut i: usize| -> Option<usize> {
        loop {
            let n = *d.get(i)? as usize;
            i += 1 + n;
            if n == 0 {
                return Some(i);
            }
        }
    };
    let table = |flags: u8| if flags & 0x80 != 0 { 3usize << ((flags & 7) + 1) } else { 0 };
    let mut next = d.get(10).map(|&flags| 13 + table(flags));
    std::iter::from_fn(move || {
        let i = next.take()?;
        let block = match *d.get(i)? {
            0x21 => GifBlock::Extension { label: *d.get(i + 1)?, at: i + 2 },
            0x2C => GifBlock::Image { at: i },
            _ => return None,
        };
        next = match block {
            GifBlock::Extension { at, .. } => skip_sub_blocks(at),
            // The descriptor (10 bytes), its local colour table, the LZW code size, the data.
            GifBlock::Image { at } => d.get(at + 9).and_then(|&flags| skip_sub_blocks(at + 10 + table(flags) + 1)),
        };
        Some(block)
    })
}

fn probe_webp(d: &[u8], p: &mut Probe) {
    let mut i = 12;
    let mut anmf = 0u32;
    let mut vp8x_mode = None;
    while let (Some(kind), Some(len)) = (d.get(i..i + 4), u32_le(d, i + 4)) {
        let start = i + 8;
        let end = start.saturating_add(len as usize);
        let body = &d[start.min(d.len())..end.min(d.len())];
        match kind {
            b"VP8 " => p.mode = "RGB",
            b"VP8L" => p.mode = if u32_le(body, 1).is_some_and(|v| (v >> 28) & 1 == 1) { "RGBA" } else { "RGB" },
            // VP8X's alpha flag decides the mode whatever the frames say.
            b"VP8X" => vp8x_mode = Some(if body.first().is_some_and(|f| f & 0x10 != 0) { "RGBA" } else { "RGB" }),
            b"ANMF" => anmf += 1,
            b"EXIF" => p.orientation = exif_orientation(body).unwrap_or(1),
            _ => {}
        }
        i = end.saturating_add(len as usize & 1);
    }
    if let Some(mode) = vp8x_mode {
        p.mode = mode;
    }
    p.frames = anmf.max(1);
}

/// A BMP's (width, |height|) from its info header (a BITMAPCOREHEADER's 16-bit fields, else the
/// 32-bit ones; a negative height is a top-down image); `None` for anything else.
pub fn bmp_size(d: &[u8]) -> Option<(u64, u64)> {
    if sniff(d) != Some("BMP") {
        return None;
    }
    if u32_le(d, 14)? == 12 {
        return Some((u16_le(d, 18)? as u64, u16_le(d, 20)? as u64));
    }
    let (w, h) = (u32_le(d, 18)? as i32, u32_le(d, 22)? as i32);
    Some((w.unsigned_abs() as u64, h.unsigned_abs() as u64))
}

/// BMP modes as Pillow's `BIT2MODE` maps the bit count (before its palette analysis); a 32-bit
/// BI_BITFIELDS image whose masks Pillow reads with an alpha channel is "RGBA".
fn probe_bmp(d: &[u8], p: &mut Probe) {
    let header = u32_le(d, 14).unwrap_or(40);
    let bits = if header == 12 { u16_le(d, 24) } else { u16_le(d, 28) };
    p.mode = match bits {
        Some(1 | 4 | 8) => "P",
        Some(32) if header != 12 && bmp_alpha_masks(d, header) => "RGBA",
        _ => "RGB",
    };
}

/// Whether a 32-bit BMP's BI_BITFIELDS masks are one of the layouts Pillow opens as "RGBA"
/// (BGRA, RGBA, ABGR, BGAR, or all four zero, which it reads as BGRA). The masks follow the
/// 40-byte header, or are its fields in a longer one (the same offsets); the alpha mask is read
/// from headers of 56 bytes and more, else 0.
fn bmp_alpha_masks(d: &[u8], header: u32) -> bool {
    if u32_le(d, 30) != Some(3) {
        return false;
    }
    let (Some(r), Some(g), Some(b)) = (u32_le(d, 54), u32_le(d, 58), u32_le(d, 62)) else { return false };
    let a = if header >= 56 { u32_le(d, 66).unwrap_or(0) } else { 0 };
    matches!(
        (r, g, b, a),
        (0xFF0000, 0xFF00, 0xFF, 0xFF000000)
            | (0xFF, 0xFF00, 0xFF0000, 0xFF000000)
            | (0xFF000000, 0xFF0000, 0xFF00, 0xFF)
            | (0xFF000000, 0xFF00, 0xFF, 0xFF0000)
            | (0, 0, 0, 0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exif_orientation_both_byte_orders() {
        let le = b"Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0";
        assert_eq!(exif_orientation(le), Some(6));
        let be = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x08\0\0";
        assert_eq!(exif_orientation(be), Some(8));
        assert_eq!(exif_orientation(b"MM\0*\0\0\xff\xff"), None);
    }

    #[test]
    fn truncated_headers_give_defaults() {
        assert_eq!(probe(b"\xff\xd8\xff").unwrap().mode, "RGB");
        assert_eq!(probe(b"\xff\xd8\xff").unwrap().jpeg_size, None);
        // SOF0: length 11, precision 8, height 0x01e0 (480), width 0x0280 (640), 1 component;
        // then a start of scan.
        let sof = b"\xff\xd8\xff\xc0\x00\x0b\x08\x01\xe0\x02\x80\x01\x01\x11\x00\xff\xda\x00\x08";
        assert_eq!(probe(sof).unwrap().jpeg_size, Some((640, 480)));
        assert_eq!(probe(sof).unwrap().mode, "L");
        // Truncated before the scan: no size (the header parser reports the error).
        assert_eq!(probe(&sof[..15]).unwrap().jpeg_size, None);
        // Lossless (SOF3) and arithmetic (SOF9) frames, which the decoder refuses: no size.
        for m in [0xc3u8, 0xc9] {
            let mut other = sof.to_vec();
            other[3] = m;
            assert_eq!(probe(&other).unwrap().jpeg_size, None, "{m:x}");
        }
        // Every truncation of a header (hostile or cut-off bytes) probes without a panic, and
        // only the ones that reach the scan have a size.
        for n in 0..=sof.len() {
            let got = probe(&sof[..n]).map(|p| p.jpeg_size);
            assert_eq!(got.flatten().is_some(), n == sof.len(), "{n}");
        }
        // A zero height (the size comes later, in a DNL marker) gives no size.
        assert_eq!(probe(b"\xff\xd8\xff\xc0\x00\x0b\x08\x00\x00\x02\x80\x01\x01\x11\x00\xff\xda\x00\x08").unwrap().jpeg_size, None);
        assert_eq!(probe(b"GIF89a\x01\0").unwrap().frames, 1);
        assert_eq!(probe(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR").unwrap().format, "PNG");
        assert!(probe(b"nothing").is_none());
        // Found by the fuzzer: a JPEG segment whose length field is below 2.
        assert_eq!(probe(b"\xff\xd8\xff\xe1\x00\x00\xff\xe1\x00\x01Exif").unwrap().orientation, 1);
    }

    #[test]
    fn gif_blocks_walk_extensions_and_frames_to_the_end_or_a_cut() {
        // A 1x1 GIF with a 2-entry global table; a graphic control extension, a comment, a
        // frame with a 2-entry local table, another control extension, a second frame.
        let mut gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
        gif.extend_from_slice(b"\x21\xf9\x04\x01\x00\x00\x01\x00");
        gif.extend_from_slice(b"\x21\xfe\x03abc\x02de\x00");
        let first = gif.len();
        gif.extend_from_slice(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x80\x01\x02\x03\x04\x05\x06\x02\x02\x4c\x01\x00");
        gif.extend_from_slice(b"\x21\xf9\x04\x00\x00\x00\x00\x00");
        let second = gif.len();
        gif.extend_from_slice(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x4c\x01\x00\x3b");
        let blocks: Vec<_> = gif_blocks(&gif).collect();
        let want = [
            GifBlock::Extension { label: 0xf9, at: 21 },
            GifBlock::Extension { label: 0xfe, at: 29 },
            GifBlock::Image { at: first },
            GifBlock::Extension { label: 0xf9, at: second - 6 },
            GifBlock::Image { at: second },
        ];
        assert_eq!(blocks, want);
        assert_eq!(probe(&gif).unwrap().frames, 2);
        // Cut inside the second frame's data: both frames are still given, and nothing past.
        assert_eq!(gif_blocks(&gif[..second + 12]).collect::<Vec<_>>(), want);
        // Cut inside the comment's sub-blocks: it is the last block.
        assert_eq!(gif_blocks(&gif[..35]).collect::<Vec<_>>(), want[..2]);
        // Every truncation walks without a panic.
        for n in 0..gif.len() {
            assert!(gif_blocks(&gif[..n]).count() <= want.len());
        }
    }
}
