//! Resampling that reproduces Pillow's `Image.resize` for 8-bit images bit for bit: the same
//! filter kernels, coefficient windows, 22-bit fixed-point coefficients, rounding and the
//! horizontal-then-vertical pass order (Pillow's `Resample.c`).

use std::f64::consts::PI;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Pillow BILINEAR (triangle, support 1).
    Bilinear,
    /// Pillow BICUBIC (Catmull-Rom, a = -0.5, support 2).
    Bicubic,
    /// Pillow LANCZOS (a = 3).
    Lanczos,
    /// Pillow BOX (support 0.5).
    Box,
    /// Pillow HAMMING (support 1).
    Hamming,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
            Filter::Box => 0.5,
            Filter::Hamming => 1.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                let a = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
        }
    }

    /// The filter for a Pillow `Image.Resampling` code (as in `preprocessor_config.json`'s
    /// `resample`): 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING. NEAREST (0) is not a
    /// convolution in Pillow and is not supported.
    /// Pillow's `Image.Resampling` code of this filter.
    pub fn pillow_code(self) -> i64 {
        match self {
            Filter::Lanczos => 1,
            Filter::Bilinear => 2,
            Filter::Bicubic => 3,
            Filter::Box => 4,
            Filter::Hamming => 5,
        }
    }

    pub fn from_pillow(code: i64) -> Option<Filter> {
        match code {
            1 => Some(Filter::Lanczos),
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            4 => Some(Filter::Box),
            5 => Some(Filter::Hamming),
            _ => None,
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index, number of taps, and fixed-point coefficients
/// (`ksize` per pixel), as Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    k: Vec<i32>,
}

/// Per output pixel: first input index, number of taps, and the normalised float
/// coefficients (`ksize` per pixel), as Pillow's `precompute_coeffs` (what its 16-bit and
/// 32-bit passes use directly).
struct CoeffsF64 {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    k: Vec<f64>,
}

fn precompute_f64(in_size: usize, out_size: usize, filter: Filter) -> CoeffsF64 {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0f64; out_size * ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let pre = &mut k[xx * ksize..xx * ksize + n];
        let mut ww = 0.0;
        for (x, p) in pre.iter_mut().enumerate() {
            let w = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
            *p = w;
            ww += w;
        }
        if ww != 0.0 {
            pre.iter_mut().for_each(|p| *p /= ww);
        }
        bounds.push((xmin, n));
    }
    CoeffsF64 { ksize, bounds, k }
}

/// [`precompute_f64`] in 22-bit fixed point, as Pillow's `normalize_coeffs_8bpc`.
fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let CoeffsF64 { ksize, bounds, k } = precompute_f64(in_size, out_size, filter);
    let k = k
        .into_iter()
        .map(|w| {
            let scaled = w * (1u32 << PRECISION_BITS) as f64;
            if w < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            }
        })
        .collect();
    Coeffs { ksize, bounds, k }
}

/// [`precompute`] through a small per-thread cache: the kernels cost two `sin` calls per tap
/// (a few percent of a phash), and corpora repeat image sizes. At most 64 entries of at most
/// 2^16 coefficients each (16 MB in all; larger kernels are not kept); a full cache is emptied
/// rather than tracked.
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> std::rc::Rc<Coeffs> {
    use std::{cell::RefCell, collections::HashMap, rc::Rc};
    thread_local! {
        static CACHE: RefCell<HashMap<(usize, usize, Filter), Rc<Coeffs>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(c) = cache.get(&(in_size, out_size, filter)) {
            return Rc::clone(c);
        }
        if cache.len() >= 64 {
            cache.clear();
        }
        let c = Rc::new(precompute(in_size, out_size, filter));
        if c.k.len() <= 1 << 16 {
            cache.insert((in_size, out_size, filter), Rc::clone(&c));
        }
        c
    })
}

#[inline]
fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Whether Pillow 13 runs the vertical pass first for a resize of `w x h` to `ow x oh`.
///
/// Pillow 13 (python-pillow/Pillow#9549, "if height is scaled down significantly more than
/// width, resize vertically first") runs the vertical pass first when the height shrinks and
/// loses more than twice as many pixels as the width: `oh < h && h - oh > 2 * (w - ow)`. The
/// order matters because the intermediate image is rounded to 8 bits. We inferred the rule
/// from Pillow 13.0's output (the PR text does not state it): it predicts the order on all
/// 1,497 random size pairs we checked, and `==` cases go horizontal first.
pub fn vertical_first(w: usize, h: usize, ow: usize, oh: usize) -> bool {
    oh < h && (h - oh) as i64 > 2 * (w as i64 - ow as i64)
}

type Span = std::ops::Range<usize>;

/// Horizontal pass: output columns `cols` of source rows `rows`, for an interleaved
/// `C`-channel image `w` pixels wide. Dispatches to an AVX2 build of the same code where the
/// CPU has it (integer sums, so every build gives the same bytes).
fn pass_horizontal<const C: usize>(src: &[u8], w: usize, rows: Span, cols: Span, c: &Coeffs) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::avx2() {
        // SAFETY: AVX2 support was just checked.
        return unsafe { pass_horizontal_avx2::<C>(src, w, rows, cols, c) };
    }
    pass_horizontal_impl::<C>(src, w, rows, cols, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pass_horizontal_avx2<const C: usize>(src: &[u8], w: usize, rows: Span, cols: Span, c: &Coeffs) -> Vec<u8> {
    pass_horizontal_impl::<C>(src, w, rows, cols, c)
}

#[inline(always)]
fn pass_horizontal_impl<const C: usize>(src: &[u8], w: usize, rows: Span, cols: Span, c: &Coeffs) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if C == 1 && crate::cpu::avx2() {
        // SAFETY: AVX2 support was just checked.
        return unsafe { horizontal_luma_avx2(src, w, rows, cols, c) };
    }
    if C == 3 {
        horizontal_rgb(src, w, rows, cols, c)
    } else {
        horizontal_per_channel::<C>(src, w, rows, cols, c)
    }
}

/// The horizontal pass pixel by pixel, channel by channel, as Pillow's loop computes it.
#[inline(always)]
fn horizontal_per_channel<const C: usize>(src: &[u8], w: usize, rows: Span, cols: Span, c: &Coeffs) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let ow = cols.len();
    let mut out = vec![0u8; ow * C * rows.len()];
    for (y, sy) in rows.enumerate() {
        let row = &src[sy * w * C..(sy + 1) * w * C];
        let orow = &mut out[y * ow * C..(y + 1) * ow * C];
        for (ox, xx) in cols.clone().enumerate() {
            let (xmin, n) = c.bounds[xx];
            let k = &c.k[xx * c.ksize..xx * c.ksize + n];
            // i32 as in Pillow: |sum| < 255 * 1.3 * 2^22 < 2^31 for these kernels.
            if C == 1 {
                let ss = half + k.iter().zip(&row[xmin..xmin + n]).map(|(&kv, &p)| p as i32 * kv).sum::<i32>();
                orow[ox] = clip8(ss as i64);
                continue;
            }
            let mut ss = [half; C];
            for (px, &kv) in row[xmin * C..(xmin + n) * C].chunks_exact(C).zip(k) {
                for ch in 0..C {
                    ss[ch] += px[ch] as i32 * kv;
                }
            }
            for ch in 0..C {
                orow[ox * C + ch] = clip8(ss[ch] as i64);
            }
        }
    }
    out
}

/// The RGB horizontal pass as 8-lane integer dot products: each source row is widened once to
/// i32 RGBX, each output column's kernel is stored with every tap repeated over the 4 lanes
/// (taps padded to an even count with zeros), so two taps fill one 8-lane multiply-add. The
/// sums are the same integers as Pillow's, added in another order.
#[inline(always)]
fn horizontal_rgb(src: &[u8], w: usize, rows: Span, cols: Span, c: &Coeffs) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let ow = cols.len();
    let kt = (c.ksize + 1) & !1;
    let mut kx = vec![0i32; ow * kt * 4];
    for (ox, xx) in cols.clone().enumerate() {
        let (_, n) = c.bounds[xx];
        for (t, &kv) in c.k[xx * c.ksize..xx * c.ksize + n].iter().enumerate() {
            kx[(ox * kt + t) * 4..(ox * kt + t + 1) * 4].fill(kv);
        }
    }
    let mut out = vec![0u8; ow * 3 * rows.len()];
    // Room past the row end for a padded tap (its coefficient is 0).
    let mut row32 = vec![0i32; (w + kt) * 4];
    #[cfg(target_arch = "x86_64")]
    let avx2 = crate::cpu::avx2();
    for (y, sy) in rows.enumerate() {
        for (d, px) in row32.chunks_exact_mut(4).zip(src[sy * w * 3..(sy + 1) * w * 3].chunks_exact(3)) {
            d[0] = px[0] as i32;
            d[1] = px[1] as i32;
            d[2] = px[2] as i32;
        }
        let orow = &mut out[y * ow * 3..(y + 1) * ow * 3];
        for (ox, xx) in cols.clone().enumerate() {
            let (xmin, n) = c.bounds[xx];
            let nt = (n + 1) & !1;
            let a = &row32[xmin * 4..(xmin + nt) * 4];
            let k = &kx[ox * kt * 4..(ox * kt + nt) * 4];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 support was checked above; a and k have the same length, a multiple of 8.
            let acc = if avx2 { unsafe { dot8_avx2(a, k) } } else { dot8(a, k) };
            #[cfg(not(target_arch = "x86_64"))]
            let acc = dot8(a, k);
            for ch in 0..3 {
                orow[ox * 3 + ch] = clip8((half + acc[ch] + acc[4 + ch]) as i64);
            }
        }
    }
    out
}

/// Splits 22-bit fixed-point coefficients into 16-bit halves, `k = hi * 2^11 + lo` with
/// `0 <= lo < 2^11`, per output column, taps padded with zeros to a multiple of 16: the
/// layout of [`horizontal_luma_avx2`].
fn split_kernels(c: &Coeffs, cols: &Span) -> (usize, Vec<i16>, Vec<i16>) {
    let kt = c.ksize.div_ceil(16) * 16;
    let (mut hi, mut lo) = (vec![0i16; cols.len() * kt], vec![0i16; cols.len() * kt]);
    for (ox, xx) in cols.clone().enumerate() {
        let (_, n) = c.bounds[xx];
        for (t, &kv) in c.k[xx * c.ksize..xx * c.ksize + n].iter().enumerate() {
            // |kv| is about 2^22 at most (a normalised weight), so kv >> 11 fits i16 easily.
            hi[ox * kt + t] = (kv >> 11) as i16;
            lo[ox * kt + t] = (kv & 0x7FF) as i16;
        }
    }
    (kt, hi, lo)
}

/// The mode-"L" horizontal pass with 16-bit multiply-adds (`vpmaddwd`, 16 taps per two
/// instructions instead of 8 per `vpmulld`). Each coefficient is split as in
/// [`split_kernels`], so `sum(p * k) = 2^11 * sum(p * hi) + sum(p * lo)`. The `lo` sums grow
/// with the tap count (every `lo` is >= 0) and can wrap on very wide images, so everything is
/// added modulo 2^32: Pillow's sum fits in 32 bits, so the wrapped total is exactly it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_luma_avx2(src: &[u8], w: usize, rows: Span, cols: Span, c: &Coeffs) -> Vec<u8> {
    use std::arch::x86_64::*;
    let (kt, hi, lo) = split_kernels(c, &cols);
    let half = 1i32 << (PRECISION_BITS - 1);
    let ow = cols.len();
    let mut out = vec![0u8; ow * rows.len()];
    // One source row widened to i16, with zeros past its end for the padded taps.
    let mut row16 = vec![0i16; w + kt];
    let hsum = |v: __m256i| -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    };
    for (y, sy) in rows.enumerate() {
        for (d, &p) in row16.iter_mut().zip(&src[sy * w..(sy + 1) * w]) {
            *d = p as i16;
        }
        let orow = &mut out[y * ow..(y + 1) * ow];
        for (ox, xx) in cols.clone().enumerate() {
            let (xmin, n) = c.bounds[xx];
            let blocks = n.div_ceil(16);
            let (mut ah, mut al) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            let p = row16.as_ptr().add(xmin);
            let (h, l) = (hi.as_ptr().add(ox * kt), lo.as_ptr().add(ox * kt));
            for b in 0..blocks {
                // SAFETY: xmin + 16 * blocks <= w + kt (row16's length); the kernels hold kt taps.
                let v = _mm256_loadu_si256(p.add(b * 16) as *const __m256i);
                ah = _mm256_add_epi32(ah, _mm256_madd_epi16(v, _mm256_loadu_si256(h.add(b * 16) as *const __m256i)));
                al = _mm256_add_epi32(al, _mm256_madd_epi16(v, _mm256_loadu_si256(l.add(b * 16) as *const __m256i)));
            }
            orow[ox] = clip8(half.wrapping_add(hsum(ah).wrapping_shl(11)).wrapping_add(hsum(al)) as i64);
        }
    }
    out
}

/// Lane-wise sums of `a[i] * k[i]` over 8-lane blocks (`a.len() == k.len()`, a multiple of 8).
#[inline(always)]
fn dot8(a: &[i32], k: &[i32]) -> [i32; 8] {
    let mut acc = [0i32; 8];
    for (pa, pk) in a.chunks_exact(8).zip(k.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += pa[l] * pk[l];
        }
    }
    acc
}

/// [`dot8`] with AVX2 multiply-adds (the compiler keeps the scalar loop in registers instead).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot8_avx2(a: &[i32], k: &[i32]) -> [i32; 8] {
    use std::arch::x86_64::*;
    debug_assert!(a.len() == k.len() && a.len().is_multiple_of(8));
    let mut acc = _mm256_setzero_si256();
    for i in 0..a.len() / 8 {
        let pa = _mm256_loadu_si256(a.as_ptr().add(i * 8) as *const __m256i);
        let pk = _mm256_loadu_si256(k.as_ptr().add(i * 8) as *const __m256i);
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(pa, pk));
    }
    let mut out = [0i32; 8];
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, acc);
    out
}

/// Vertical pass: output rows `rows`, source columns `cols`, for an interleaved `C`-channel
/// image `w` pixels wide; `offset` is subtracted from every window start (rows the input
/// lacks). AVX2 build where the CPU has it, as [`pass_horizontal`].
fn pass_vertical<const C: usize>(src: &[u8], w: usize, rows: Span, cols: Span, c: &Coeffs, offset: usize) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::avx2() {
        // SAFETY: AVX2 support was just checked.
        return unsafe { pass_vertical_avx2::<C>(src, w, rows, cols, c, offset) };
    }
    pass_vertical_impl::<C>(src, w, rows, cols, c, offset)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pass_vertical_avx2<const C: usize>(src: &[u8], w: usize, rows: Span, cols: Span, c: &Coeffs, offset: usize) -> Vec<u8> {
    pass_vertical_impl::<C>(src, w, rows, cols, c, offset)
}

#[inline(always)]
fn pass_vertical_impl<const C: usize>(src: &[u8], w: usize, rows: Span, cols: Span, c: &Coeffs, offset: usize) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let stride = w * C;
    let (x0, x1) = (cols.start * C, cols.end * C);
    let ostride = x1 - x0;
    let mut out = vec![0u8; ostride * rows.len()];
    let mut acc = vec![0i32; ostride];
    for (oy, yy) in rows.enumerate() {
        let (ymin, n) = c.bounds[yy];
        let ymin = ymin - offset;
        let k = &c.k[yy * c.ksize..yy * c.ksize + n];
        acc.fill(half);
        // Row-wise accumulation: the same integer sums as Pillow's column loop, in an order
        // the compiler vectorises.
        for (y, &kv) in k.iter().enumerate() {
            let row = &src[(ymin + y) * stride + x0..(ymin + y) * stride + x1];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * kv;
            }
        }
        for (o, &a) in out[oy * ostride..(oy + 1) * ostride].iter_mut().zip(&acc) {
            *o = clip8(a as i64);
        }
    }
    out
}

/// Resizes an interleaved 8-bit image with `C` channels (row-major `w x h`) to `ow x oh` as
/// Pillow's `Image.resize((ow, oh), filter)` does for modes "L" (`C = 1`) and "RGB" (`C = 3`);
/// see [`vertical_first`] for the one place where Pillow 13 is matched empirically rather
/// than by construction.
pub fn resize<const C: usize>(src: &[u8], w: usize, h: usize, ow: usize, oh: usize, filter: Filter) -> Vec<u8> {
    resize_region::<C>(src, w, h, ow, oh, filter, 0..ow, 0..oh)
}

/// The `cols x rows` window of [`resize`]'s output, computing only those pixels: a resize
/// followed by a crop without the work for the cropped-away part. Each output pixel is the
/// same integer sum as in the full resize, so the window is bit-identical to it.
#[allow(clippy::too_many_arguments)]
pub fn resize_region<const C: usize>(src: &[u8], w: usize, h: usize, ow: usize, oh: usize, filter: Filter, cols: Span, rows: Span) -> Vec<u8> {
    assert_eq!(src.len(), w * h * C);
    assert!(cols.end <= ow && rows.end <= oh);
    if cols.is_empty() || rows.is_empty() {
        return Vec::new();
    }
    match (ow != w, oh != h) {
        (false, false) => {
            let mut out = Vec::with_capacity(cols.len() * rows.len() * C);
            for y in rows {
                out.extend_from_slice(&src[(y * w + cols.start) * C..(y * w + cols.end) * C]);
            }
            out
        }
        (true, false) => pass_horizontal::<C>(src, w, rows, cols, &coeffs(w, ow, filter)),
        (false, true) => pass_vertical::<C>(src, w, rows, cols, &coeffs(h, oh, filter), 0),
        (true, true) => {
            let horiz = coeffs(w, ow, filter);
            let vert = coeffs(h, oh, filter);
            let n = rows.len();
            if vertical_first(w, h, ow, oh) {
                let tmp = pass_vertical::<C>(src, w, rows, 0..w, &vert, 0);
                pass_horizontal::<C>(&tmp, w, 0..n, cols, &horiz)
            } else {
                // Only the source rows the vertical pass reads go through the horizontal pass.
                let first = vert.bounds[rows.start].0;
                let last = (rows.clone()).map(|y| vert.bounds[y].0 + vert.bounds[y].1).max().unwrap_or(first);
                let tmp = pass_horizontal::<C>(src, w, first..last, cols.clone(), &horiz);
                pass_vertical::<C>(&tmp, cols.len(), rows, 0..cols.len(), &vert, first)
            }
        }
    }
}

/// The `cols x rows` window of Pillow's `Image.resize((ow, oh), NEAREST)` of an interleaved
/// `C`-channel image (what Pillow does for modes "1" and "P" whatever the filter asked):
/// Pillow's `ImagingScaleAffine`, whose source index is `int(x0)` with `x0 = step / 2` and
/// `step = w / ow` added once per output pixel, in double precision as Pillow adds it.
#[allow(clippy::too_many_arguments)]
pub fn nearest_region<const C: usize>(src: &[u8], w: usize, h: usize, ow: usize, oh: usize, cols: Span, rows: Span) -> Vec<u8> {
    assert_eq!(src.len(), w * h * C);
    assert!(cols.end <= ow && rows.end <= oh);
    let index = |n_in: usize, n_out: usize, range: Span| -> Vec<Option<usize>> {
        if n_in == n_out {
            return range.map(Some).collect();
        }
        let step = n_in as f32 as f64 / n_out as f64;
        let mut at = step * 0.5;
        let mut all = Vec::with_capacity(range.end);
        for _ in 0..range.end {
            // COORD(v): -1 below zero, else the truncation; outside the image stays 0.
            all.push((at >= 0.0 && (at as i64) < n_in as i64).then_some(at as usize));
            at += step;
        }
        all.drain(range).collect()
    };
    let xs = index(w, ow, cols);
    let ys = index(h, oh, rows);
    let mut out = vec![0u8; xs.len() * ys.len() * C];
    for (orow, y) in out.chunks_exact_mut(xs.len() * C).zip(&ys) {
        let Some(y) = *y else { continue };
        let row = &src[y * w * C..(y + 1) * w * C];
        for (o, x) in orow.chunks_exact_mut(C).zip(&xs) {
            if let Some(x) = *x {
                o.copy_from_slice(&row[x * C..(x + 1) * C]);
            }
        }
    }
    out
}

/// One pass of Pillow's 16-bit resample (`ImagingResample{Horizontal,Vertical}_16bpc`, mode
/// "I;16"): a double-precision sum of `value * coefficient` in tap order, rounded half away
/// from zero and clipped to 0-65535. Output (`n_lines` x `n_out`) in the pass's own layout.
fn pass16(read: impl Fn(usize, usize) -> u16, lines: Span, outs: Span, c: &CoeffsF64) -> Vec<u16> {
    let mut out = Vec::with_capacity(lines.len() * outs.len());
    for line in lines {
        for o in outs.clone() {
            let (min, n) = c.bounds[o];
            let k = &c.k[o * c.ksize..o * c.ksize + n];
            let mut ss = 0.0f64;
            for (t, &kv) in k.iter().enumerate() {
                ss += read(line, min + t) as f64 * kv;
            }
            let r = if ss >= 0.0 { (ss + 0.5) as i64 } else { (ss - 0.5) as i64 };
            out.push(r.clamp(0, 65535) as u16);
        }
    }
    out
}

/// The `cols x rows` window of Pillow's `Image.resize((ow, oh), filter)` of a 16-bit gray
/// image (mode "I;16"), with [`resize_region`]'s pass order; each pass rounds to 16 bits as
/// Pillow's does.
#[allow(clippy::too_many_arguments)]
pub fn resize16_region(src: &[u16], w: usize, h: usize, ow: usize, oh: usize, filter: Filter, cols: Span, rows: Span) -> Vec<u16> {
    assert_eq!(src.len(), w * h);
    assert!(cols.end <= ow && rows.end <= oh);
    if cols.is_empty() || rows.is_empty() {
        return Vec::new();
    }
    let (nc, nr) = (cols.len(), rows.len());
    // Horizontal pass over source rows `ys` into `cols`; vertical pass reading `img` (`iw`
    // wide, its row 0 being source row `y0`) into `rows`.
    let horizontal = |img: &[u16], iw: usize, ys: Span, cs: Span| pass16(|y, x| img[y * iw + x], ys, cs, &precompute_f64(w, ow, filter));
    let vertical = |img: &[u16], iw: usize, y0: usize, cs: Span| {
        let c = precompute_f64(h, oh, filter);
        // Computed column by column (lines = columns), then transposed to rows.
        let by_col = pass16(|x, y| img[(y - y0) * iw + x], cs.clone(), rows.clone(), &c);
        let n = cs.len();
        (0..nr).flat_map(|r| (0..n).map(move |x| (r, x))).map(|(r, x)| by_col[x * nr + r]).collect::<Vec<u16>>()
    };
    match (ow != w, oh != h) {
        (false, false) => rows.flat_map(|y| src[y * w + cols.start..y * w + cols.end].to_vec()).collect(),
        (true, false) => {
            let n = horizontal(src, w, rows, cols);
            debug_assert_eq!(n.len(), nc * nr);
            n
        }
        (false, true) => vertical(src, w, 0, cols),
        (true, true) => {
            if vertical_first(w, h, ow, oh) {
                let tmp = vertical(src, w, 0, 0..w);
                horizontal(&tmp, w, 0..nr, cols)
            } else {
                let c = precompute_f64(h, oh, filter);
                let first = c.bounds[rows.start].0;
                let last = rows.clone().map(|y| c.bounds[y].0 + c.bounds[y].1).max().unwrap_or(first);
                let tmp = horizontal(src, w, first..last, cols);
                vertical(&tmp, nc, first, 0..nc)
            }
        }
    }
}

/// [`resize`] for single-channel (mode "L") images.
pub fn resize_luma(src: &[u8], w: usize, h: usize, ow: usize, oh: usize, filter: Filter) -> Vec<u8> {
    resize::<1>(src, w, h, ow, oh, filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 50 * 30];
        assert!(resize_luma(&src, 50, 30, 9, 8, Filter::Lanczos).iter().all(|&v| v == 77));
        assert!(resize_luma(&src, 50, 30, 120, 7, Filter::Bicubic).iter().all(|&v| v == 77));
        let rgb: Vec<u8> = (0..50 * 30).flat_map(|_| [10u8, 200, 77]).collect();
        let out = resize::<3>(&rgb, 50, 30, 224, 13, Filter::Bicubic);
        assert_eq!(out.len(), 224 * 13 * 3);
        assert!(out.chunks_exact(3).all(|p| p == [10, 200, 77]));
    }

    #[test]
    fn nearest_takes_pillows_scale_affine_source_pixels() {
        // Pillow: Image.new("L", (5, 1)) of 0..4 resized to 3 with NEAREST gives [0, 2, 4];
        // to 7, [0, 1, 1, 2, 3, 3, 4] (source int((i + 0.5) * 5 / 7), accumulated in doubles).
        let src = [0u8, 1, 2, 3, 4];
        assert_eq!(nearest_region::<1>(&src, 5, 1, 3, 1, 0..3, 0..1), [0, 2, 4]);
        assert_eq!(nearest_region::<1>(&src, 5, 1, 7, 1, 0..7, 0..1), [0, 1, 1, 2, 3, 3, 4]);
        assert_eq!(nearest_region::<1>(&src, 5, 1, 7, 1, 2..5, 0..1), [1, 2, 3]);
    }

    #[test]
    fn sixteen_bit_resize_keeps_a_constant_and_its_window_equals_the_full_resize() {
        let flat = vec![40_000u16; 30 * 70];
        assert!(resize16_region(&flat, 30, 70, 13, 224, Filter::Bicubic, 0..13, 0..224).iter().all(|&v| v == 40_000));
        let src: Vec<u16> = (0..37 * 300).map(|i| (i * 7919 % 65_521) as u16).collect();
        for (ow, oh) in [(20, 160), (50, 40), (37, 100), (80, 300)] {
            let full = resize16_region(&src, 37, 300, ow, oh, Filter::Bicubic, 0..ow, 0..oh);
            let part = resize16_region(&src, 37, 300, ow, oh, Filter::Bicubic, 3..ow - 2, 5..oh - 1);
            let want: Vec<u16> = (5..oh - 1).flat_map(|y| full[y * ow + 3..y * ow + ow - 2].to_vec()).collect();
            assert_eq!(part, want, "{ow}x{oh}");
        }
    }

    #[test]
    fn rgb_lanes_equal_the_per_channel_sums() {
        let src: Vec<u8> = (0..97 * 41 * 3).map(|i| (i * 7919 % 251) as u8).collect();
        for (ow, filter) in [(20, Filter::Bicubic), (33, Filter::Lanczos), (96, Filter::Bilinear), (150, Filter::Bicubic), (7, Filter::Box)] {
            let c = precompute(97, ow, filter);
            let fast = horizontal_rgb(&src, 97, 0..41, 0..ow, &c);
            let slow = horizontal_per_channel::<3>(&src, 97, 0..41, 0..ow, &c);
            assert_eq!(fast, slow, "{ow} {filter:?}");
        }
    }

    #[test]
    fn luma_multiply_adds_equal_the_per_pixel_sums() {
        // Wide and narrow sources, down and up, every filter: the split 16-bit sums must give
        // Pillow's bytes, including saturated and negative-lobe pixels.
        for (w, h) in [(997, 23), (61, 5), (33, 4)] {
            let src: Vec<u8> = (0..w * h).map(|i| if i % 13 == 0 { 255 } else { (i * 7919 % 251) as u8 }).collect();
            for (ow, filter) in [
                (32, Filter::Lanczos),
                (9, Filter::Lanczos),
                (224, Filter::Bicubic),
                (31, Filter::Bilinear),
                (7, Filter::Box),
                (120, Filter::Hamming),
                (2000, Filter::Lanczos),
            ] {
                let c = precompute(w, ow, filter);
                let slow = horizontal_per_channel::<1>(&src, w, 0..h, 0..ow, &c);
                assert_eq!(pass_horizontal::<1>(&src, w, 0..h, 0..ow, &c), slow, "{w} -> {ow} {filter:?}");
                let (a, b) = (ow / 5, ow - ow / 7);
                assert_eq!(pass_horizontal::<1>(&src, w, 1..h, a..b, &c), horizontal_per_channel::<1>(&src, w, 1..h, a..b, &c));
            }
        }
    }

    #[test]
    fn luma_sums_wrap_back_to_pillows_on_very_wide_images() {
        // Tens of thousands of taps: the low halves' sums pass 2^31 (a review finding).
        for (w, ow) in [(14000, 8), (65535, 32)] {
            let src = vec![255u8; w * 2];
            let c = precompute(w, ow, Filter::Lanczos);
            let fast = pass_horizontal::<1>(&src, w, 0..2, 0..ow, &c);
            assert_eq!(fast, horizontal_per_channel::<1>(&src, w, 0..2, 0..ow, &c), "{w}");
            assert!(fast.iter().all(|&v| v == 255));
        }
    }

    #[test]
    fn dot8_scalar_and_avx2_agree() {
        let a: Vec<i32> = (0..64).map(|i| i * 37 % 256).collect();
        let k: Vec<i32> = (0..64).map(|i| i * 7919 % 9000 - 3000).collect();
        let scalar = dot8(&a, &k);
        let mut expect = [0i32; 8];
        for i in 0..64 {
            expect[i % 8] += a[i] * k[i];
        }
        assert_eq!(scalar, expect);
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::avx2() {
            // SAFETY: checked just above.
            assert_eq!(unsafe { dot8_avx2(&a, &k) }, expect);
        }
    }

    #[test]
    fn region_equals_crop_of_full_resize() {
        let src: Vec<u8> = (0..61 * 47 * 3).map(|i| (i * 7919 % 251) as u8).collect();
        for (ow, oh) in [(30, 20), (100, 20), (30, 90), (61, 20), (30, 47), (61, 47), (80, 70)] {
            let full = resize::<3>(&src, 61, 47, ow, oh, Filter::Bicubic);
            let (cols, rows) = (ow / 4..ow - ow / 5, oh / 3..oh - 1);
            let region = resize_region::<3>(&src, 61, 47, ow, oh, Filter::Bicubic, cols.clone(), rows.clone());
            let expect: Vec<u8> = rows.flat_map(|y| full[(y * ow + cols.start) * 3..(y * ow + cols.end) * 3].to_vec()).collect();
            assert_eq!(region, expect, "{ow}x{oh}");
        }
    }
}
