//! Pillow's colour conversions, bit for bit: `convert("L")` (ITU-R 601-2 luma in fixed point),
//! `convert("RGB")` of every mode the decoders give (with alpha dropped or composited on white)
//! and `ImageOps.exif_transpose`.

use image::DynamicImage;

use super::Rgb8;

/// Pillow's ITU-R 601-2 luma with its fixed-point rounding: `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`.
#[inline]
pub(super) fn l24(r: u8, g: u8, b: u8) -> u8 {
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
    let rb = _mm256_setr_epi8(0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1, 12, -1, 14, -1, 0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1, 12, -1, 14, -1);
    let gg = _mm256_setr_epi8(1, -1, 1, -1, 5, -1, 5, -1, 9, -1, 9, -1, 13, -1, 13, -1, 1, -1, 1, -1, 5, -1, 5, -1, 9, -1, 9, -1, 13, -1, 13, -1);
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
    /// Drop it, as Pillow's `convert("RGB")` does: transparent pixels keep their stored
    /// colour (open_clip drops it too, but after resizing premultiplied: see
    /// [`crate::image::Source`]).
    Drop,
    /// Composite over opaque white with Pillow's `alpha_composite` arithmetic, as
    /// transformers' `convert_to_rgb` does (transformers 5).
    White,
}

/// Pillow's `alpha_composite` of `(c, a)` over opaque white (7-bit precision coefficients,
/// rounded division by 255); checked against Pillow on all 65,536 pairs.
#[inline]
pub(crate) fn over_white(c: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    let (c, a) = (c as u32, a as u32);
    let coef1 = a * 128;
    let coef2 = 255 * 128 - coef1;
    let t = c * coef1 + 255 * coef2 + (0x80 << 7);
    ((((t >> 8) + t) >> 8) >> 7) as u8
}

/// Packed 8-bit RGB of a decoded image as Pillow's `convert("RGB")` gives it (gray replicated,
/// 16-bit colour through its high bytes, 16-bit gray clipped at 255), alpha dropped or
/// composited on white.
pub fn to_rgb_pillow(img: DynamicImage, alpha: Alpha) -> Vec<u8> {
    let white = alpha == Alpha::White;
    let gray = |v: u8| [v, v, v];
    match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().flat_map(|&v| gray(v)).collect(),
        DynamicImage::ImageLumaA8(b) if white => b.as_raw().chunks_exact(2).flat_map(|p| gray(over_white(p[0], p[1]))).collect(),
        DynamicImage::ImageLumaA8(b) => b.as_raw().chunks_exact(2).flat_map(|p| gray(p[0])).collect(),
        DynamicImage::ImageRgba8(b) if white => b.as_raw().chunks_exact(4).flat_map(|p| [0, 1, 2].map(|c| over_white(p[c], p[3]))).collect(),
        DynamicImage::ImageRgba8(b) => {
            // In place (each pixel's 3 bytes land on bytes already read), so an RGBA image
            // never has an RGB copy beside it.
            let mut px = b.into_raw();
            for i in 0..px.len() / 4 {
                let [r, g, b] = [px[4 * i], px[4 * i + 1], px[4 * i + 2]];
                px[3 * i..3 * i + 3].copy_from_slice(&[r, g, b]);
            }
            px.truncate(px.len() / 4 * 3);
            px.shrink_to_fit();
            px
        }
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().flat_map(|&v| gray(v.min(255) as u8)).collect(),
        DynamicImage::ImageLumaA16(b) if white => b.as_raw().chunks_exact(2).flat_map(|p| gray(over_white((p[0] >> 8) as u8, (p[1] >> 8) as u8))).collect(),
        DynamicImage::ImageLumaA16(b) => b.as_raw().chunks_exact(2).flat_map(|p| gray((p[0] >> 8) as u8)).collect(),
        DynamicImage::ImageRgb16(b) => b.as_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(b) if white => {
            b.as_raw().chunks_exact(4).flat_map(|p| [0, 1, 2].map(|c| over_white((p[c] >> 8) as u8, (p[3] >> 8) as u8))).collect()
        }
        DynamicImage::ImageRgba16(b) => b.as_raw().chunks_exact(4).flat_map(|p| [0, 1, 2].map(|c| (p[c] >> 8) as u8)).collect(),
        other => other.to_rgb8().into_raw(),
    }
}

/// Applies an EXIF orientation (1-8) as Pillow's `ImageOps.exif_transpose`: 2 mirror, 3 rotate
/// 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
pub fn orient(img: Rgb8, orientation: u8) -> Rgb8 {
    let (width, height, px) = orient_px(img.px, img.width, img.height, 3, orientation);
    Rgb8 { width, height, px }
}

/// [`orient`] for interleaved pixels of `c` values each: (width, height, pixels) after it.
pub fn orient_px<T: Copy + Default>(px: Vec<T>, w: usize, h: usize, c: usize, orientation: u8) -> (usize, usize, Vec<T>) {
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
        return (w, h, px);
    }
    let mut out = vec![T::default(); ow * oh * c];
    for y in 0..oh {
        for x in 0..ow {
            let (sx, sy) = src(x, y);
            let s = (sy * w + sx) * c;
            out[(y * ow + x) * c..(y * ow + x) * c + c].copy_from_slice(&px[s..s + c]);
        }
    }
    (ow, oh, out)
}
