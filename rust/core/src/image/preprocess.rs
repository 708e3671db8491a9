//! CLIP-style preprocessing of encoded images into one NCHW float array: decode as Pillow
//! does, resize with Pillow's kernels, center crop (or pad), convert to RGB before the resize
//! (transformers) or after the crop (open_clip; see [`ConvertOrder`]), rescale and normalise
//! with the same float arithmetic as transformers' `CLIPImageProcessor` (or torchvision, for
//! open_clip's defaults).

use crate::error::RecordError;
use crate::image::decode::{cmyk_stored_to_rgb, decode_rgb, decode_rgb_draft, decode_source, header_size, over_white, Alpha, DecodeOptions, Source};
use crate::image::resample::{nearest_region, resize16_region, resize_region, Filter};

/// open_clip's `OPENAI_DATASET_MEAN` (also transformers' `OPENAI_CLIP_MEAN`), the decimals as
/// the references write them.
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// open_clip's `OPENAI_DATASET_STD` (also transformers' `OPENAI_CLIP_STD`).
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// How the decoded image is brought to the model's input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// Shortest side to `shortest_edge` (the long side `int(edge * long / short)`), keeping
    /// the aspect ratio; then the center crop. transformers' `{"shortest_edge": n}`,
    /// open_clip's `resize_mode="shortest"`.
    Shortest,
    /// Straight to `size` (height, width), ignoring the aspect ratio; then the crop if any.
    /// transformers' `{"height", "width"}`, open_clip's `"squash"`.
    Squash,
    /// Longest side to fit `size`, keeping the aspect ratio (each side
    /// `round(side / max(h / H, w / W))`, at least 1), then centered on a `fill` canvas.
    /// open_clip's `"longest"` (`ResizeKeepRatio` + `CenterCropOrPad`).
    Longest,
}

/// How the crop offset `(in - out) / 2` is rounded when it is not whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CropRounding {
    /// `floor`, as transformers' `center_crop`.
    Floor,
    /// Python's `round` (half to even), as torchvision's `center_crop` (open_clip).
    HalfEven,
}

impl ResizeMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "shortest" => Ok(ResizeMode::Shortest),
            "squash" => Ok(ResizeMode::Squash),
            "longest" => Ok(ResizeMode::Longest),
            other => Err(format!("mode must be 'shortest', 'squash' or 'longest', not {other:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResizeMode::Shortest => "shortest",
            ResizeMode::Squash => "squash",
            ResizeMode::Longest => "longest",
        }
    }
}

impl CropRounding {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "floor" => Ok(CropRounding::Floor),
            "half_even" => Ok(CropRounding::HalfEven),
            other => Err(format!("crop_rounding must be 'floor' or 'half_even', not {other:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CropRounding::Floor => "floor",
            CropRounding::HalfEven => "half_even",
        }
    }
}

/// When the decoded image becomes RGB: before the resize (transformers'
/// `CLIPImageProcessor`, whose `convert_rgb` comes first) or after the resize and crop
/// (open_clip's `image_transform`: `Resize`, `CenterCrop`, then `convert("RGB")` on the image
/// as Pillow opened it). They differ on modes Pillow resizes differently from RGB: "P" and "1"
/// (NEAREST whatever the filter), "RGBA" and "LA" (premultiplied), "CMYK" and "I;16".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertOrder {
    /// `convert("RGB")` first, then the resize (transformers).
    BeforeResize,
    /// The resize and crop in the opened mode, then `convert("RGB")` (open_clip).
    AfterResize,
}

impl ConvertOrder {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "before_resize" => Ok(ConvertOrder::BeforeResize),
            "after_resize" => Ok(ConvertOrder::AfterResize),
            other => Err(format!("convert_rgb must be 'before_resize' or 'after_resize', not {other:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConvertOrder::BeforeResize => "before_resize",
            ConvertOrder::AfterResize => "after_resize",
        }
    }
}

/// How 8-bit values become floats before normalisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rescale {
    /// None: values stay 0-255.
    Off,
    /// `float32(float64(v) * factor)`, as transformers' `rescale`.
    Multiply(f64),
    /// `float32(v) / 255` in float32, as torchvision's `ToTensor` (open_clip).
    Divide255,
}

impl Rescale {
    /// `"multiply"` (by `factor`), `"divide255"` or `"off"`.
    pub fn parse(kind: &str, factor: f64) -> Result<Self, String> {
        match kind {
            "multiply" if factor.is_finite() && factor > 0.0 => Ok(Rescale::Multiply(factor)),
            "multiply" => Err(format!("rescale_factor must be a positive number, got {factor}")),
            "divide255" => Ok(Rescale::Divide255),
            "off" => Ok(Rescale::Off),
            other => Err(format!("rescale must be 'multiply', 'divide255' or 'off', not {other:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rescale::Off => "off",
            Rescale::Multiply(_) => "multiply",
            Rescale::Divide255 => "divide255",
        }
    }
}

/// The largest output side, resize target or crop (a CLIP input is a few hundred pixels; a
/// 20,000-pixel side would ask for gigabytes per image).
pub const MAX_SIDE: usize = 4096;

/// Everything preprocessing needs; see [`PreprocessConfig::open_clip`] for the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    pub mode: ResizeMode,
    /// The target of [`ResizeMode::Shortest`].
    pub shortest_edge: usize,
    /// (height, width): the target of [`ResizeMode::Squash`] and [`ResizeMode::Longest`].
    pub size: (usize, usize),
    /// (height, width) of the center crop; `None` for no crop.
    pub crop: Option<(usize, usize)>,
    pub crop_rounding: CropRounding,
    pub filter: Filter,
    pub rescale: Rescale,
    /// Per-channel mean and std, `(x - mean) / std` in float32; `None` for no normalisation.
    pub normalize: Option<([f32; 3], [f32; 3])>,
    /// The 8-bit value of padding (crops larger than the image, [`ResizeMode::Longest`]).
    pub fill: u8,
    /// Whether the image becomes RGB before or after the resize (see [`ConvertOrder`]).
    pub convert_rgb: ConvertOrder,
    /// Decode large JPEGs at a reduced DCT scale (1/2, 1/4, 1/8) that still covers the
    /// resize target, as Pillow's `Image.draft`: several times faster on multi-megapixel
    /// photos, close to but no longer bit-identical with the reference.
    pub jpeg_draft: bool,
    pub decode: DecodeOptions,
}

impl PreprocessConfig {
    /// open_clip's defaults for a `size` model: shortest side + center crop, bicubic, OpenAI
    /// mean and std, torchvision's crop rounding and `ToTensor` division, RGB after the resize.
    pub fn open_clip(size: usize) -> Self {
        PreprocessConfig {
            mode: ResizeMode::Shortest,
            shortest_edge: size,
            size: (size, size),
            crop: Some((size, size)),
            crop_rounding: CropRounding::HalfEven,
            filter: Filter::Bicubic,
            rescale: Rescale::Divide255,
            normalize: Some((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)),
            fill: 0,
            convert_rgb: ConvertOrder::AfterResize,
            jpeg_draft: false,
            decode: DecodeOptions::default(),
        }
    }

    /// Checks everything a configuration can get wrong, with a message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        let sides = [self.shortest_edge, self.size.0, self.size.1, self.crop.map_or(1, |c| c.0), self.crop.map_or(1, |c| c.1)];
        if sides.iter().any(|&v| !(1..=MAX_SIDE).contains(&v)) {
            return Err(format!("shortest_edge, size and crop must be in [1, {MAX_SIDE}], got {}, {:?}, {:?}", self.shortest_edge, self.size, self.crop));
        }
        if self.mode == ResizeMode::Shortest && self.crop.is_none() {
            return Err("mode 'shortest' without a crop gives images of different shapes; set crop".into());
        }
        if let Some((mean, std)) = &self.normalize {
            if std.iter().any(|&v| v == 0.0 || !v.is_finite()) || mean.iter().any(|v| !v.is_finite()) {
                return Err(format!("mean must be finite and std finite and non-zero, got mean {mean:?}, std {std:?}"));
            }
        }
        Ok(())
    }

    /// (height, width) of every output image, or why the configuration has none.
    pub fn output_shape(&self) -> Result<(usize, usize), String> {
        self.validate()?;
        Ok(self.crop.unwrap_or(self.size))
    }

    /// Per-channel lookup table from an 8-bit value to the final float, reproducing the
    /// reference's float arithmetic exactly (each step is one IEEE operation).
    pub(crate) fn lut(&self) -> [[f32; 256]; 3] {
        let mut t = [[0f32; 256]; 3];
        for (c, row) in t.iter_mut().enumerate() {
            for (v, out) in row.iter_mut().enumerate() {
                let x = match self.rescale {
                    Rescale::Off => v as f32,
                    Rescale::Multiply(f) => (v as f64 * f) as f32,
                    Rescale::Divide255 => v as f32 / 255.0,
                };
                *out = match self.normalize {
                    Some((mean, std)) => (x - mean[c]) / std[c],
                    None => x,
                };
            }
        }
        t
    }
}

/// Python's `round` for a non-negative half-integer-or-whole `x2 / 2`: half to even.
fn half_even_div2(x2: i64) -> i64 {
    let q = x2.div_euclid(2);
    if x2.rem_euclid(2) == 1 && q % 2 != 0 {
        q + 1
    } else {
        q
    }
}

/// Offset of output index 0 in the input axis for a centered crop (negative: padding).
fn crop_offset(input: usize, output: usize, rounding: CropRounding) -> i64 {
    let d = input as i64 - output as i64;
    match rounding {
        CropRounding::Floor => d.div_euclid(2),
        // torchvision pads first ((out - in) // 2 before), then crops with round().
        CropRounding::HalfEven if d < 0 => -((-d).div_euclid(2)),
        CropRounding::HalfEven => half_even_div2(d),
    }
}

/// Python's `round(x)` (half to even) for a non-negative float.
fn round_half_even(x: f64) -> usize {
    let f = x.floor();
    let r = match (x - f).partial_cmp(&0.5) {
        Some(std::cmp::Ordering::Greater) => f + 1.0,
        Some(std::cmp::Ordering::Equal) if f % 2.0 != 0.0 => f + 1.0,
        _ => f,
    };
    r as usize
}

/// The resized (width, height) for an input of `w x h`.
fn resized_size(cfg: &PreprocessConfig, w: usize, h: usize) -> (usize, usize) {
    match cfg.mode {
        ResizeMode::Shortest => {
            let s = cfg.shortest_edge;
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let new_long = ((s as f64 * long as f64) / short as f64) as usize;
            if w <= h {
                (s, new_long)
            } else {
                (new_long, s)
            }
        }
        ResizeMode::Squash => (cfg.size.1, cfg.size.0),
        ResizeMode::Longest => {
            let ratio = (h as f64 / cfg.size.0 as f64).max(w as f64 / cfg.size.1 as f64);
            (round_half_even(w as f64 / ratio).max(1), round_half_even(h as f64 / ratio).max(1))
        }
    }
}

/// A float type the pixel output array can hold (float32 or float16).
pub trait PixelFloat: Copy + Send + Sync + Default {
    fn from_f32(v: f32) -> Self;
}

impl PixelFloat for f32 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl PixelFloat for half::f16 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}

/// A validated [`PreprocessConfig`] with its lookup table, made once per batch.
pub struct Preprocessor<'a> {
    pub cfg: &'a PreprocessConfig,
    /// (height, width) of every output image.
    pub shape: (usize, usize),
    lut: [[f32; 256]; 3],
}

impl<'a> Preprocessor<'a> {
    pub fn new(cfg: &'a PreprocessConfig) -> Result<Self, String> {
        Ok(Preprocessor { cfg, shape: cfg.output_shape()?, lut: cfg.lut() })
    }

    /// Values one image fills: 3 x height x width.
    pub fn values_per_image(&self) -> usize {
        3 * self.shape.0 * self.shape.1
    }

    /// True when the decode this configuration makes of `data` is the plain `convert("RGB")`
    /// decode (no draft, no EXIF rotation, the alpha dropped or a JPEG, which has none), so
    /// its pixels also give Pillow's `convert("L")` exactly.
    pub fn plain_decode(&self, data: &[u8]) -> bool {
        !self.cfg.jpeg_draft && !self.cfg.decode.exif_transpose && (self.cfg.decode.alpha == Alpha::Drop || crate::image::probe::sniff(data) == Some("JPEG"))
    }

    /// Decodes one image as this configuration asks (JPEG draft included, in the form its
    /// [`ConvertOrder`] resizes), with the (width, height) it is to be resized to (for a
    /// drafted JPEG, the size its full-size original would get).
    pub fn decode(&self, data: &[u8]) -> Result<(Source, (usize, usize)), RecordError> {
        let cfg = self.cfg;
        let after = cfg.convert_rgb == ConvertOrder::AfterResize;
        if cfg.jpeg_draft && crate::image::probe::sniff(data) == Some("JPEG") {
            // The geometry comes from the full-size header so it matches the exact path.
            let (hw, hh) = header_size(data)?;
            let swapped = cfg.decode.exif_transpose && crate::image::probe::probe(data).is_some_and(|p| p.orientation >= 5);
            let (w, h) = if swapped { (hh as usize, hw as usize) } else { (hw as usize, hh as usize) };
            let target = resized_size(cfg, w, h);
            let mut src = if after { decode_source(data, &cfg.decode, Some(target))? } else { Source::Rgb(decode_rgb_draft(data, &cfg.decode, Some(target))?) };
            if target != src.size() {
                src.premultiply();
            }
            return Ok((src, target));
        }
        let mut src = if after { decode_source(data, &cfg.decode, None)? } else { Source::Rgb(decode_rgb(data, &cfg.decode)?) };
        let (w, h) = src.size();
        let target = resized_size(cfg, w, h);
        if target != (w, h) {
            // Pillow resizes RGBA and LA premultiplied (an image kept at its size is copied).
            src.premultiply();
        }
        Ok((src, target))
    }

    /// Resizes `img` to `(rw, rh)`, crops or pads, converts to RGB (where [`Source`] says),
    /// rescales and normalises it into `out` (3 x H x W, channel-major).
    pub fn fill<T: PixelFloat>(&self, img: &Source, (rw, rh): (usize, usize), out: &mut [T]) {
        let (cfg, (oh, ow)) = (self.cfg, self.shape);
        debug_assert_eq!(out.len(), 3 * oh * ow);
        // The window of the resized image the output shows: (first output index, source range).
        let (top, left) = match (cfg.mode, cfg.crop) {
            (ResizeMode::Longest, None) => (crop_offset(rh, oh, CropRounding::HalfEven), crop_offset(rw, ow, CropRounding::HalfEven)),
            _ => (crop_offset(rh, oh, cfg.crop_rounding), crop_offset(rw, ow, cfg.crop_rounding)),
        };
        let span = |off: i64, n_out: usize, n_in: usize| -> (usize, std::ops::Range<usize>) {
            let first_src = off.max(0) as usize;
            let first_out = (-off).max(0) as usize;
            let end_src = ((off + n_out as i64).min(n_in as i64)).max(first_src as i64) as usize;
            (first_out, first_src..end_src)
        };
        let (oy0, rows) = span(top, oh, rh);
        let (ox0, cols) = span(left, ow, rw);
        let region = resized_rgb(img, rw, rh, cfg.filter, cfg.decode.alpha, cols.clone(), rows.clone());
        let plane = oh * ow;
        let (rn, cn) = (rows.len(), cols.len());
        let pad = img.pad_rgb(cfg.fill, cfg.decode.alpha);
        for (c, table) in self.lut.iter().enumerate() {
            let dst = &mut out[c * plane..(c + 1) * plane];
            let fill = T::from_f32(table[pad[c] as usize]);
            if rn * cn < plane {
                dst.fill(fill);
            }
            for y in 0..rn {
                let src_row = &region[y * cn * 3..(y + 1) * cn * 3];
                let drow = &mut dst[(oy0 + y) * ow + ox0..(oy0 + y) * ow + ox0 + cn];
                for (d, px) in drow.iter_mut().zip(src_row.chunks_exact(3)) {
                    *d = T::from_f32(table[px[c] as usize]);
                }
            }
        }
    }
}

/// The `cols x rows` window of `img` resized to `rw x rh` as Pillow resizes its mode, in
/// packed 8-bit RGB (see [`Source`]): RGB with `filter`; "P" and "1" with NEAREST; "RGBA" and
/// "LA" premultiplied (Pillow's `RGBA` -> `RGBa` done by [`Preprocessor::decode`], resize,
/// `RGBa` -> `RGBA`), then the alpha dropped or composited on white; "CMYK" resized then `cmyk2rgb`; "I;16" resized at 16 bits
/// then clipped at 255. An image already at its target size is not resampled (Pillow copies it).
fn resized_rgb(img: &Source, rw: usize, rh: usize, filter: Filter, alpha: Alpha, cols: std::ops::Range<usize>, rows: std::ops::Range<usize>) -> Vec<u8> {
    let (w, h) = img.size();
    let same = (rw, rh) == (w, h);
    match img {
        Source::Rgb(i) => resize_region::<3>(&i.px, w, h, rw, rh, filter, cols, rows),
        Source::Nearest(i, _) => nearest_region::<3>(&i.px, w, h, rw, rh, cols, rows),
        Source::Rgba { px, premultiplied, .. } => {
            let mut rgba = resize_region::<4>(px, w, h, rw, rh, filter, cols, rows);
            if *premultiplied {
                // Pillow's `RGBa` -> `RGBA`.
                for p in rgba.chunks_exact_mut(4) {
                    let a = p[3] as u32;
                    if a != 0 && a != 255 {
                        for v in &mut p[..3] {
                            *v = (255 * *v as u32 / a).min(255) as u8;
                        }
                    }
                }
            }
            debug_assert!(*premultiplied || same);
            match alpha {
                Alpha::Drop => rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
                Alpha::White => rgba.chunks_exact(4).flat_map(|p| [0, 1, 2].map(|c| over_white(p[c], p[3]))).collect(),
            }
        }
        Source::Cmyk { px, .. } => {
            resize_region::<4>(px, w, h, rw, rh, filter, cols, rows).chunks_exact(4).flat_map(|p| cmyk_stored_to_rgb([p[0], p[1], p[2], p[3]])).collect()
        }
        Source::Gray16 { px, .. } => resize16_region(px, w, h, rw, rh, filter, cols, rows).into_iter().flat_map(|v| [v.min(255) as u8; 3]).collect(),
    }
}

/// Preprocesses `images` into `out` (N x 3 x H x W) on the current rayon pool, one error
/// slot per image (`None` where it worked). A failed or missing image leaves its slot zero.
/// The same as [`crate::image::analyze`] asked for pixels alone.
pub fn preprocess_batch<T: PixelFloat>(images: &[Option<&[u8]>], cfg: &PreprocessConfig, out: &mut [T]) -> Result<Vec<Option<RecordError>>, String> {
    let wants = crate::image::analyze::Wants { pixels: Some(cfg), ..Default::default() };
    Ok(crate::image::analyze::analyze(images, &wants, out)?.into_iter().map(|a| a.error).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_offsets_follow_each_reference() {
        // transformers: floor; torchvision: round half to even, padding floor((out - in) / 2).
        assert_eq!(crop_offset(229, 224, CropRounding::Floor), 2);
        assert_eq!(crop_offset(229, 224, CropRounding::HalfEven), 2);
        assert_eq!(crop_offset(227, 224, CropRounding::HalfEven), 2);
        assert_eq!(crop_offset(227, 224, CropRounding::Floor), 1);
        assert_eq!(crop_offset(221, 224, CropRounding::Floor), -2);
        assert_eq!(crop_offset(221, 224, CropRounding::HalfEven), -1);
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(3.4), 3);
        assert_eq!(half_even_div2(5), 2);
        assert_eq!(half_even_div2(7), 4);
    }

    #[test]
    fn resized_sizes() {
        let cfg = PreprocessConfig::open_clip(224);
        assert_eq!(resized_size(&cfg, 1500, 40), (8400, 224));
        assert_eq!(resized_size(&cfg, 37, 900), (224, 5448));
        let mut longest = cfg.clone();
        longest.mode = ResizeMode::Longest;
        assert_eq!(resized_size(&longest, 1500, 1), (224, 1));
    }

    #[test]
    fn errors_leave_zeros_and_do_not_stop_the_batch() {
        let cfg = PreprocessConfig::open_clip(8);
        let mut out = vec![1f32; 2 * 3 * 64];
        let errs = preprocess_batch(&[Some(b"junk".as_slice()), None], &cfg, &mut out).unwrap();
        assert_eq!(errs[0].as_ref().unwrap().kind.as_str(), "unknown_image_format");
        assert_eq!(errs[1].as_ref().unwrap().kind.as_str(), "missing_image");
        assert!(out.iter().all(|&v| v == 0.0));
    }
}
