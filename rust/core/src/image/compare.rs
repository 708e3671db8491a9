//! Full-reference image metrics as CoMM's evaluation computes them: each image decoded as
//! Pillow's `Image.open(...).convert("RGB")`, resized to `size` x `size` with Pillow's default
//! filter (bicubic), then scikit-image's `structural_similarity(a, b, data_range=255,
//! channel_axis=2)` and `peak_signal_noise_ratio(a, b, data_range=255)`, in float64.

use super::decode::{decode_rgb, DecodeOptions};
use super::resample::{resize, Filter};
use crate::error::RecordError;

/// `data` as `size` x `size` RGB bytes: decoded as Pillow's `convert("RGB")` (EXIF orientation
/// ignored, as `Image.open` does) and resized with Pillow's bicubic filter (not at all when it
/// already has that size, as Pillow's `resize` returns a copy then).
pub fn load_square(data: &[u8], size: usize, opts: &DecodeOptions) -> Result<Vec<u8>, RecordError> {
    let img = decode_rgb(data, opts)?;
    if img.width == size && img.height == size {
        return Ok(img.px);
    }
    Ok(resize::<3>(&img.px, img.width, img.height, size, size, Filter::Bicubic))
}

/// scikit-image's SSIM defaults: a 7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample
/// covariance; the SSIM map is averaged over the pixels at least 3 from the border (which is
/// why the window never leaves the image), per channel, then over the channels.
const WIN: usize = 7;
const K1: f64 = 0.01;
const K2: f64 = 0.03;

/// Mean SSIM of two `w` x `h` images with `c` interleaved channels of 8-bit values
/// (`data_range` 255), as `skimage.metrics.structural_similarity(..., data_range=255,
/// channel_axis=2)` computes it. None when the image is smaller than the window.
pub fn ssim(a: &[u8], b: &[u8], w: usize, h: usize, c: usize) -> Option<f64> {
    assert_eq!(a.len(), w * h * c);
    assert_eq!(b.len(), a.len());
    if w < WIN || h < WIN {
        return None;
    }
    let np = (WIN * WIN) as f64;
    let cov_norm = np / (np - 1.0);
    let (c1, c2) = ((K1 * 255.0).powi(2), (K2 * 255.0).powi(2));
    let pad = (WIN - 1) / 2;
    let (ow, oh) = (w - 2 * pad, h - 2 * pad);
    let mut total = 0.0f64;
    // The five window sums (of p, q, p^2, q^2, pq) of every interior pixel from sliding column
    // sums and a sliding row window. The values are integers, so every sum is exact (scipy's
    // running float sums of the same integers are too); only the final division rounds.
    let px = |src: &[u8], x: usize, y: usize, ch: usize| src[(y * w + x) * c + ch] as i64;
    for ch in 0..c {
        let mut cols = vec![[0i64; 5]; w];
        let add = |cols: &mut [[i64; 5]], y: usize, sign: i64| {
            for (x, col) in cols.iter_mut().enumerate() {
                let (p, q) = (px(a, x, y, ch), px(b, x, y, ch));
                col[0] += sign * p;
                col[1] += sign * q;
                col[2] += sign * p * p;
                col[3] += sign * q * q;
                col[4] += sign * p * q;
            }
        };
        for y in 0..WIN - 1 {
            add(&mut cols, y, 1);
        }
        let mut s = 0.0f64;
        for oy in 0..oh {
            add(&mut cols, oy + WIN - 1, 1);
            let mut m = [0i64; 5];
            for col in &cols[..WIN - 1] {
                for k in 0..5 {
                    m[k] += col[k];
                }
            }
            for ox in 0..ow {
                for k in 0..5 {
                    m[k] += cols[ox + WIN - 1][k];
                }
                let (ux, uy, uxx, uyy, uxy) = (m[0] as f64 / np, m[1] as f64 / np, m[2] as f64 / np, m[3] as f64 / np, m[4] as f64 / np);
                let vx = cov_norm * (uxx - ux * ux);
                let vy = cov_norm * (uyy - uy * uy);
                let vxy = cov_norm * (uxy - ux * uy);
                let num = (2.0 * ux * uy + c1) * (2.0 * vxy + c2);
                let den = (ux * ux + uy * uy + c1) * (vx + vy + c2);
                s += num / den;
                for k in 0..5 {
                    m[k] -= cols[ox][k];
                }
            }
            add(&mut cols, oy, -1);
        }
        total += s / (ow * oh) as f64;
    }
    Some(total / c as f64)
}

/// PSNR in dB of two 8-bit images, as `skimage.metrics.peak_signal_noise_ratio(a, b,
/// data_range=255)`: `10 log10(255^2 / MSE)`, infinite for identical images.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sse: f64 = a.iter().zip(b).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum();
    let mse = sse / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images_score_one_and_infinity() {
        let px: Vec<u8> = (0..32 * 20 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert!((ssim(&px, &px, 32, 20, 3).unwrap() - 1.0).abs() < 1e-12);
        assert!(psnr(&px, &px).is_infinite());
        assert!(ssim(&px[..6 * 6 * 3], &px[..6 * 6 * 3], 6, 6, 3).is_none());
    }

    #[test]
    fn psnr_of_a_constant_offset() {
        let a = vec![10u8; 300];
        let b = vec![20u8; 300];
        assert!((psnr(&a, &b) - 10.0 * (65025.0f64 / 100.0).log10()).abs() < 1e-12);
    }
}
