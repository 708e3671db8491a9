//! Perceptual hashes identical to imagehash 4.3: `average_hash`, `dhash` and `phash` of the
//! Pillow grayscale image resized with Pillow's LANCZOS (see [`crate::image`]).

use crate::error::{ErrorKind, RecordError};
use crate::image::{resize_luma, DecodeLimits, Filter};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerceptualKind {
    Average,
    Difference,
    Perceptual,
}

impl PerceptualKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ahash" => Some(PerceptualKind::Average),
            "dhash" => Some(PerceptualKind::Difference),
            "phash" => Some(PerceptualKind::Perceptual),
            _ => None,
        }
    }
}

/// A hash as its bits, row-major (imagehash's `hash.flatten()`).
pub type Bits = Vec<bool>;

/// scipy.fftpack.dct type II, unnormalised: y[k] = 2 * sum_n x[n] cos(pi k (2n + 1) / 2N),
/// for the first `out.len()` frequencies only (each the same sum as in the full transform).
///
/// A constant sequence has exactly zero AC terms, as scipy's FFT-based transform gives them
/// (the direct sums would leave rounding noise of either sign, which decides the bits of blank
/// and striped images: imagehash hashes a white image as `8000000000000000`).
fn dct2(x: &[f64], out: &mut [f64], cos: &[f64]) {
    let n = x.len();
    if x.windows(2).all(|w| w[0] == w[1]) {
        out.fill(0.0);
        if let Some(dc) = out.first_mut() {
            *dc = 2.0 * x.iter().sum::<f64>();
        }
        return;
    }
    for (k, o) in out.iter_mut().enumerate() {
        let mut s = 0.0;
        for (i, &v) in x.iter().enumerate() {
            s += v * cos[k * n + i];
        }
        *o = 2.0 * s;
    }
}

/// `cos(pi k (2i + 1) / 2n)` at `[k * n + i]`, computed once per size and thread.
fn dct_table(n: usize) -> std::rc::Rc<Vec<f64>> {
    thread_local! {
        static TABLES: std::cell::RefCell<Vec<(usize, std::rc::Rc<Vec<f64>>)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    TABLES.with(|t| {
        let mut t = t.borrow_mut();
        if let Some((_, table)) = t.iter().find(|(m, _)| *m == n) {
            return table.clone();
        }
        let table: Vec<f64> = (0..n * n).map(|i| (std::f64::consts::PI * (i / n) as f64 * (2 * (i % n) + 1) as f64 / (2 * n) as f64).cos()).collect();
        let table = std::rc::Rc::new(table);
        t.push((n, table.clone()));
        table
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The hash bits of an 8-bit grayscale image (`w x h`).
pub fn hash_luma(px: &[u8], w: usize, h: usize, kind: PerceptualKind, hash_size: usize) -> Bits {
    match kind {
        PerceptualKind::Average => {
            let small = resize_luma(px, w, h, hash_size, hash_size, Filter::Lanczos);
            let mean = small.iter().map(|&v| v as f64).sum::<f64>() / small.len() as f64;
            small.iter().map(|&v| v as f64 > mean).collect()
        }
        PerceptualKind::Difference => {
            let small = resize_luma(px, w, h, hash_size + 1, hash_size, Filter::Lanczos);
            let mut bits = Vec::with_capacity(hash_size * hash_size);
            for row in small.chunks_exact(hash_size + 1) {
                bits.extend(row.windows(2).map(|p| p[1] > p[0]));
            }
            bits
        }
        PerceptualKind::Perceptual => {
            let n = hash_size * 4;
            let small = resize_luma(px, w, h, n, n, Filter::Lanczos);
            let cos = dct_table(n);
            // Along axis 0 (columns), then axis 1 (rows), as imagehash calls scipy; only the
            // hash_size x hash_size low frequencies the hash keeps are computed.
            let mut cols = vec![0f64; hash_size * n];
            let (mut colv, mut colo) = (vec![0f64; n], vec![0f64; hash_size]);
            for x in 0..n {
                for y in 0..n {
                    colv[y] = small[y * n + x] as f64;
                }
                dct2(&colv, &mut colo, &cos);
                for y in 0..hash_size {
                    cols[y * n + x] = colo[y];
                }
            }
            let mut low = vec![0f64; hash_size * hash_size];
            for (y, row) in low.chunks_exact_mut(hash_size).enumerate() {
                dct2(&cols[y * n..(y + 1) * n], row, &cos);
            }
            // scipy's FFT-based DCT returns exactly 0.0 where the pixels' symmetry cancels a
            // coefficient (mirror-symmetric logos and flags, upscaled tiny images), and then
            // the median is often that 0.0; the direct sums above leave rounding noise of
            // either sign there instead. Values within the sums' rounding bound (about
            // 8 n eps sum|x|; twice that here) are such zeros: make them exact.
            let scale = small.iter().map(|&v| v as f64).sum::<f64>();
            let tol = 16.0 * n as f64 * f64::EPSILON * 4.0 * scale;
            for v in low.iter_mut() {
                if v.abs() <= tol {
                    *v = 0.0;
                }
            }
            let med = median(&mut low.clone());
            low.iter().map(|&v| v > med).collect()
        }
    }
}

/// Hash of encoded image bytes, or the decode error. With `draft = Some(req)`, JPEGs are
/// decoded as Pillow's `Image.draft("L", (req, req))` leaves them (see [`decode_luma_draft`]):
/// the hash then equals imagehash's on such a drafted image, not on a full decode. The same
/// as [`crate::image::analyze`] asked for this one hash.
pub fn hash_image(data: &[u8], kind: PerceptualKind, hash_size: usize, limits: &DecodeLimits, draft: Option<usize>) -> Result<Bits, RecordError> {
    let wants = crate::image::analyze::Wants { hashes: vec![(kind, hash_size)], hash_draft: draft, limits: *limits, ..Default::default() };
    let mut a = crate::image::analyze::analyze::<f32>(&[Some(data)], &wants, &mut []).map_err(|m| RecordError::new(ErrorKind::BadArgument, m))?.remove(0);
    match a.hashes.pop().flatten() {
        Some(bits) => Ok(bits),
        None => Err(a.error.expect("a hash or an error")),
    }
}

/// imagehash's `str(hash)`: the bits as one big-endian number in hex, zero-padded to
/// ceil(bits / 4) digits.
pub fn bits_to_hex(bits: &[bool]) -> String {
    let width = bits.len().div_ceil(4);
    let pad = width * 4 - bits.len();
    let mut out = String::with_capacity(width);
    let mut acc = 0u8;
    let mut count = pad;
    for &b in bits {
        acc = (acc << 1) | b as u8;
        count += 1;
        if count == 4 {
            out.push(char::from_digit(acc as u32, 16).expect("nibble"));
            acc = 0;
            count = 0;
        }
    }
    out
}

/// The first 64 bits as a u64 (the whole hash for hash_size 8), most significant bit first.
pub fn bits_to_u64(bits: &[bool]) -> u64 {
    bits.iter().take(64).fold(0u64, |acc, &b| (acc << 1) | b as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_pads_like_imagehash() {
        assert_eq!(bits_to_hex(&[true, false, false, false, false, false, false, true]), "81");
        assert_eq!(bits_to_hex(&[false; 64]), "0000000000000000");
        assert_eq!(bits_to_hex(&[true, true, true, true, true]), "1f");
    }
}
