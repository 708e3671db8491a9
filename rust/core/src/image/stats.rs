//! Per-image statistics from the same decode as preprocessing: header facts (format, mode,
//! frames, size) and pixel statistics on the grayscale image Pillow's `convert("L")` gives.

use crate::error::RecordError;
use crate::image::decode::DecodeLimits;
use crate::image::probe::probe;

/// Gray levels within this distance of the most common level count as near-uniform.
pub const UNIFORM_TOLERANCE: i32 = 4;

/// Statistics of one image; pixel fields are `None` when decoding failed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageStats {
    pub bytes: u64,
    pub format: Option<&'static str>,
    pub mode: Option<&'static str>,
    pub frames: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Variance of the 3x3 Laplacian (`[[0,1,0],[1,-4,1],[0,1,0]]`, borders reflected without
    /// repeating the edge) over the gray image: `cv2.Laplacian(gray, cv2.CV_64F).var()`.
    /// Low values mean blur.
    pub blur: Option<f64>,
    /// Shannon entropy in bits of the 256-bin gray histogram (Pillow's `Image.entropy()`).
    pub entropy: Option<f64>,
    /// Mean gray level / 255.
    pub brightness: Option<f64>,
    /// Standard deviation of the gray levels / 255 (RMS contrast).
    pub contrast: Option<f64>,
    /// Fraction of pixels within [`UNIFORM_TOLERANCE`] levels of the most common gray level;
    /// near 1 for blank, single-colour and placeholder images.
    pub uniform_fraction: Option<f64>,
}

/// Variance of the Laplacian as OpenCV's `Laplacian(ksize=1)` + numpy's `var()` compute it.
pub fn laplacian_variance(px: &[u8], w: usize, h: usize) -> f64 {
    if w == 0 || h == 0 {
        return 0.0;
    }
    // BORDER_REFLECT_101: -1 -> 1, n -> n - 2 (a single row or column reflects onto itself).
    let reflect = |i: isize, n: usize| -> usize {
        if n == 1 {
            0
        } else if i < 0 {
            (-i) as usize
        } else if i as usize >= n {
            2 * n - 2 - i as usize
        } else {
            i as usize
        }
    };
    let (mut sum, mut sumsq) = (0i64, 0i64);
    for y in 0..h {
        let up = &px[reflect(y as isize - 1, h) * w..][..w];
        let row = &px[y * w..][..w];
        let down = &px[reflect(y as isize + 1, h) * w..][..w];
        for x in 0..w {
            let l = row[reflect(x as isize - 1, w)] as i32;
            let r = row[reflect(x as isize + 1, w)] as i32;
            let v = up[x] as i32 + down[x] as i32 + l + r - 4 * row[x] as i32;
            sum += v as i64;
            sumsq += (v * v) as i64;
        }
    }
    let n = (w * h) as f64;
    let mean = sum as f64 / n;
    (sumsq as f64 / n - mean * mean).max(0.0)
}

/// Statistics of the encoded image `data`, and the decode error if there was one (header
/// fields are filled even then). The same as [`crate::image::analyze`] asked for stats alone.
pub fn image_stats(data: &[u8], limits: &DecodeLimits) -> (ImageStats, Option<RecordError>) {
    let wants = crate::image::analyze::Wants { stats: true, limits: *limits, ..Default::default() };
    let mut a = crate::image::analyze::analyze::<f32>(&[Some(data)], &wants, &mut []).expect("no pixels asked").remove(0);
    (a.stats.take().expect("stats asked"), a.error)
}

/// The header facts of `data` (size in bytes, format, mode, frames), before any decoding.
pub fn header_stats(data: &[u8]) -> ImageStats {
    header_stats_and_jpeg_size(data).0
}

/// [`header_stats`] and, for a JPEG, the size its start-of-frame gives (one pass over the
/// markers).
pub fn header_stats_and_jpeg_size(data: &[u8]) -> (ImageStats, Option<(u32, u32)>) {
    let mut s = ImageStats { bytes: data.len() as u64, ..Default::default() };
    let mut size = None;
    if let Some(p) = probe(data) {
        s.format = Some(p.format);
        // A GIF or BMP palette that is the gray ramp: "L" (or "1"), as Pillow opens it.
        s.mode = Some(match (p.format, p.mode) {
            ("GIF", "P") => crate::image::decode::pillow_mode(data, image::ImageFormat::Gif),
            ("BMP", "P") => crate::image::decode::pillow_mode(data, image::ImageFormat::Bmp),
            (_, mode) => mode,
        });
        s.frames = Some(p.frames);
        size = p.jpeg_size;
    }
    (s, size)
}

/// Fills the pixel statistics of `s` from the decoded gray image (`w x h` 8-bit pixels, as
/// Pillow's `convert("L")`).
pub fn luma_stats(s: &mut ImageStats, w: u32, h: u32, gray: &[u8]) {
    s.width = Some(w);
    s.height = Some(h);
    let n = gray.len() as f64;
    let mut hist = [0u64; 256];
    for &v in gray {
        hist[v as usize] += 1;
    }
    let (mut sum, mut sumsq) = (0f64, 0f64);
    let mut entropy = 0f64;
    for (v, &c) in hist.iter().enumerate() {
        if c == 0 {
            continue;
        }
        sum += v as f64 * c as f64;
        sumsq += (v * v) as f64 * c as f64;
        let p = c as f64 / n;
        entropy -= p * p.log2();
    }
    let mean = sum / n;
    let mode = hist.iter().enumerate().max_by_key(|&(v, &c)| (c, std::cmp::Reverse(v))).map_or(0, |(v, _)| v as i32);
    let near: u64 = (mode - UNIFORM_TOLERANCE..=mode + UNIFORM_TOLERANCE).filter(|v| (0..256).contains(v)).map(|v| hist[v as usize]).sum();
    s.blur = Some(laplacian_variance(gray, w as usize, h as usize));
    s.entropy = Some(entropy.max(0.0));
    s.brightness = Some(mean / 255.0);
    s.contrast = Some((sumsq / n - mean * mean).max(0.0).sqrt() / 255.0);
    s.uniform_fraction = Some(near as f64 / n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laplacian_of_constant_and_of_a_dot() {
        assert_eq!(laplacian_variance(&[9; 12], 4, 3), 0.0);
        // A single bright pixel in the middle of a 5x5 image: -4*9 there, +9 at its four
        // neighbours, 0 elsewhere (the reflected borders only see zeros).
        let mut px = [0u8; 25];
        px[12] = 9;
        let mut vals = [0.0f64; 25];
        vals[12] = -36.0;
        for i in [7, 11, 13, 17] {
            vals[i] = 9.0;
        }
        let mean: f64 = vals.iter().sum::<f64>() / 25.0;
        let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 25.0;
        assert!((laplacian_variance(&px, 5, 5) - var).abs() < 1e-9);
    }

    #[test]
    fn undecodable_bytes_keep_their_size_and_error() {
        let (s, e) = image_stats(b"\x89PNG\r\n\x1a\nbroken", &DecodeLimits::default());
        assert_eq!(s.bytes, 14);
        assert_eq!(s.format, Some("PNG"));
        assert!(s.blur.is_none());
        assert!(e.is_some());
    }
}
