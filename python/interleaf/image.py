"""Images in Rust: decoding with limits, CLIP preprocessing into one NCHW array, and
per-image statistics, all from the same decoder, in parallel with the GIL released.

Decoding reproduces ``PIL.Image.open(...).convert("RGB")``: JPEG through libjpeg-turbo's
decoder (bit-identical to Pillow's), CMYK and YCCK JPEG through Pillow's conversion, PNG 1-16
bit (16-bit colour keeps its high bytes, 16-bit gray is clipped at 255 as Pillow does), palette,
gray and alpha, WebP, GIF (first frame) and BMP. **Alpha rule:** ``alpha="drop"`` drops the
alpha channel as ``convert("RGB")`` does (open_clip's conversion; the default of :func:`decode`
and of open_clip configs), so transparent pixels keep their stored colour in :func:`decode`;
``alpha="white"`` (the default of a ``preprocessor_config.json``) composites over white with
Pillow's ``alpha_composite`` arithmetic, as transformers' ``convert_to_rgb`` does, with one
deliberate difference: a PNG
tRNS colour key at bit depth 1, 2, 4 or 16 applies where the PNG specification says (Pillow
compares the key with scaled or cut pixel values, so it matches the wrong pixels or none, and
turns a keyed 16-bit gray image all white). Damaged PNGs are taken or refused as Pillow
does: a wrong CRC on any chunk before the image data refuses the file; the IDAT chunks' CRCs
are not checked, and their data is read as zlib gives it until the rows are complete (a
damaged stream that zlib stops on first is refused, one that still inflates is read, as
Pillow reads it); a file cut inside its last IDAT after the rows, or missing its IEND chunk,
decodes; one cut inside a later chunk's data is refused. The interlaced GIFs the ``gif``
crate calls truncated decode (in one pass, their rows put back). Known gap against Pillow on
damaged files: some damaged JPEGs that Pillow decodes stop with libjpeg's read error. EXIF orientation is ignored unless
``exif_transpose=True`` (then as ``ImageOps.exif_transpose``), because Pillow's ``Image.open``,
open_clip and transformers ignore it.

**Order of the RGB conversion in preprocessing** (``PreprocessConfig.convert_rgb``): open_clip
(``config=None``, :meth:`PreprocessConfig.open_clip`, an ``open_clip_config.json``) resizes and
crops the image in the mode Pillow opened it in and converts to RGB last; transformers'
``CLIPImageProcessor`` (a ``preprocessor_config.json``) converts first. Each config follows its
origin, so both match their reference exactly (max |diff| <= 1e-5 on the normalised values,
in fact equal) on every mode: Pillow resizes "P" and "1" images with NEAREST whatever the
filter, "RGBA" and "LA" premultiplied (so, unlike ``decode``, transparent pixels' stored
colours do not survive open_clip's resize; ``alpha`` applies after it), "CMYK" in CMYK and
16-bit gray ("I;16") at 16 bits before clipping at 255; open_clip's padding (``"longest"``)
is ``fill`` in the opened mode (a palette image's entry ``fill``). Modes that convert
per pixel (RGB, L, 16-bit RGB) give the same pixels in either order.

Limits are checked from the header before any pixel buffer is allocated: ``max_pixels``
(default 89,478,485, Pillow's ``MAX_IMAGE_PIXELS``; Pillow only warns there and refuses at twice
that, here a larger image is an ``image_too_large`` error: raise it to take such images) and
``max_bytes`` (default 256 MiB). A 16-bit colour PNG is cut to the 8 bits Pillow keeps row by
row as it decodes (straight to gray for :func:`stats` and the hashes), never held at 16 bits:
a 9459x9459 RGBA file peaks at about 0.44 GB in :func:`preprocess` and 0.17 GB in
:func:`stats` (1.1 and 0.86 GB before). Every
failure is a value with a ``kind``: ``empty_image``, ``unknown_image_format``,
``corrupt_image``, ``truncated_image``, ``image_too_large``, ``missing_image``.

Everything goes through one decode per image (:func:`analyze`); :func:`preprocess` and
:func:`stats` are it asked for one thing.

Example::

    from interleaf import image
    pixels, errors = image.preprocess(list_of_jpeg_bytes)            # open_clip defaults, 224
    pixels, errors = image.preprocess(jpegs, config="clip-model/preprocessor_config.json")
    df = image.stats(list_of_jpeg_bytes)                              # polars DataFrame
    both = image.analyze(jpegs, pixels=True, stats=True, hashes=["phash"])   # one decode each
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from interleaf import _native
from interleaf._checks import choice_arg, int_arg, not_one

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Pillow Image.Resampling codes, as preprocessor_config.json stores them.
_RESAMPLE_NAMES = {"lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
_MODES = ("shortest", "squash", "longest")

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "ImageAnalysis",
    "PreprocessConfig",
    "analyze",
    "binary_column",
    "decode",
    "load_config",
    "preprocess",
    "stats",
]


class PreprocessConfig(_native.PreprocessConfig):
    """How images become model input; immutable, checked once (in Rust) when made. Build it
    with :meth:`open_clip`, :meth:`from_hf` or :func:`load_config` rather than by hand.

    Keyword arguments (and attributes):
        mode: ``"shortest"`` (shortest side to ``shortest_edge``, long side
            ``int(edge * long / short)``, then center crop), ``"squash"`` (straight to ``size``,
            aspect ratio ignored) or ``"longest"`` (longest side to fit ``size``, centered on a
            ``fill`` canvas: open_clip's ``resize_mode="longest"``).
        shortest_edge: the target of ``"shortest"``.
        size: (height, width), the target of ``"squash"`` and ``"longest"``.
        crop: (height, width) of the center crop, or None. A crop larger than the image pads
            with ``fill``.
        crop_rounding: ``"floor"`` (transformers) or ``"half_even"`` (torchvision/open_clip)
            for an odd margin.
        resample: Pillow filter code: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING.
        rescale: ``"multiply"`` (``float32(float64(v) * rescale_factor)``, transformers),
            ``"divide255"`` (``float32(v) / 255``, torchvision) or ``"off"``.
        rescale_factor: the factor of ``"multiply"``.
        mean, std: per-channel normalisation ``(x - mean) / std`` in float32, or None.
        fill: the 8-bit value padding takes before rescaling (0, as both references pad).
        convert_rgb: when the image becomes RGB: ``"after_resize"`` (open_clip's
            ``image_transform``: ``Resize`` and ``CenterCrop`` on the image in the mode Pillow
            opened it in, then ``convert("RGB")``; the default of :meth:`open_clip`, of
            open_clip configs and of this constructor) or ``"before_resize"`` (transformers'
            ``CLIPImageProcessor`` converts first; the default of :meth:`from_hf`). They
            differ only on modes Pillow resizes otherwise than RGB: "P" and "1" (NEAREST
            whatever the filter), "RGBA" and "LA" (premultiplied alpha, so transparent
            pixels' colours do not bleed), "CMYK" (resized in CMYK) and 16-bit gray "I;16"
            (resized at 16 bits, then clipped at 255). With ``"after_resize"`` the ``alpha``
            rule applies to RGBA and LA after the resize; palette and tRNS transparency are
            per pixel, before it.

    Sides are 1-4096 pixels; ``output_shape`` is the (height, width) of every output image.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> PreprocessConfig:
        try:
            return super().__new__(cls, *args, **kwargs)
        except OverflowError:
            # An int the native type cannot hold (a negative side, fill=300): name it.
            for name, value in kwargs.items():
                values = value if isinstance(value, (tuple, list)) else (value,)
                top = 256 if name == "fill" else 1 << 32
                if any(isinstance(v, int) and not isinstance(v, bool) and not 0 <= v < top for v in values):
                    raise ValueError(f"{name} must be in {'[0, 255]' if name == 'fill' else '[1, 4096]'}, got {value!r}") from None
            raise

    @classmethod
    def open_clip(cls, size: int = 224, mode: str = "shortest", mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, resample: int = 3, fill: int = 0, convert_rgb: str = "after_resize") -> PreprocessConfig:
        """open_clip's ``image_transform`` for inference: bicubic, OpenAI mean/std, torchvision
        rounding, RGB after the resize and crop (``convert_rgb``, see the class); ``mode`` is
        its ``resize_mode`` (``"shortest"`` resizes and center-crops, ``"squash"`` resizes to
        ``size`` square, ``"longest"`` fits and pads with ``fill``)."""
        int_arg("size", size, 1, 1 << 16)
        int_arg("fill", fill, 0, 255)
        crop = (size, size) if mode == "shortest" else None
        return cls(mode=mode, shortest_edge=size, size=(size, size), crop=crop, crop_rounding="half_even", resample=resample, rescale="divide255", mean=tuple(mean), std=tuple(std), fill=fill, convert_rgb=convert_rgb)

    @classmethod
    def from_hf(cls, cfg: Mapping[str, Any], convert_rgb: str = "before_resize") -> PreprocessConfig:
        """A Hugging Face ``preprocessor_config.json`` (CLIP-style image processors) as
        ``CLIPImageProcessor`` applies it: ``size`` (``{"shortest_edge"}``, ``{"height",
        "width"}`` or an int meaning shortest edge), ``crop_size``, ``resample``,
        ``rescale_factor``, ``image_mean``/``image_std`` and the ``do_*`` switches; RGB
        before the resize, as it converts (``convert_rgb``, see the class)."""
        def hw(v: Any, what: str) -> tuple[int, int]:
            if isinstance(v, int):
                return (v, v)
            if isinstance(v, Mapping) and "height" in v and "width" in v:
                return (int(v["height"]), int(v["width"]))
            raise ValueError(f"{what} must be an int or {{'height', 'width'}}, got {v!r}")

        if not cfg.get("do_resize", True):
            raise ValueError("do_resize=False is not supported: every image must come out the same shape")
        size = cfg.get("size", {"shortest_edge": 224})
        crop = None
        if cfg.get("do_center_crop", True):
            crop = hw(cfg.get("crop_size", 224), "crop_size")
        if isinstance(size, int) or (isinstance(size, Mapping) and set(size) == {"shortest_edge"}):
            edge = size if isinstance(size, int) else int(size["shortest_edge"])
            if crop is None:
                raise ValueError("size {'shortest_edge'} without do_center_crop gives images of different shapes")
            mode, target = "shortest", (edge, edge)
        elif isinstance(size, Mapping) and "height" in size and "width" in size:
            edge, mode, target = 0, "squash", hw(size, "size")
        else:
            raise ValueError(f"size {size!r} is not supported (use shortest_edge or height/width)")
        resample = cfg.get("resample", 3)
        mean = std = None
        if cfg.get("do_normalize", True):
            mean = _triple(cfg.get("image_mean", OPENAI_CLIP_MEAN))
            std = _triple(cfg.get("image_std", OPENAI_CLIP_STD))
        return cls(
            mode=mode,
            shortest_edge=edge or target[0],
            size=target,
            crop=crop,
            crop_rounding="floor",
            resample=int(resample),
            rescale="multiply" if cfg.get("do_rescale", True) else "off",
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
            mean=mean,
            std=std,
            convert_rgb=convert_rgb,
        )

    @classmethod
    def from_open_clip(cls, cfg: Mapping[str, Any], convert_rgb: str = "after_resize") -> PreprocessConfig:
        """An open_clip ``preprocess_cfg`` (``size``, ``mean``, ``std``, ``interpolation``,
        ``resize_mode``, ``fill_color``), as in ``open_clip_config.json``; RGB after the
        resize, as open_clip converts (``convert_rgb``, see the class)."""
        size = cfg.get("size", 224)
        if not isinstance(size, int):
            if len(size) != 2 or size[0] != size[1]:
                raise ValueError(f"non-square open_clip sizes are not supported: {size!r}")
            size = size[0]
        interp = str(cfg.get("interpolation", "bicubic")).lower()
        if interp not in _RESAMPLE_NAMES:
            raise ValueError(f"interpolation {interp!r} is not supported")
        return cls.open_clip(
            size=int(size),
            mode=cfg.get("resize_mode", "shortest"),
            mean=_triple(cfg.get("mean", OPENAI_CLIP_MEAN)),
            std=_triple(cfg.get("std", OPENAI_CLIP_STD)),
            resample=_RESAMPLE_NAMES[interp],
            fill=int(cfg.get("fill_color", 0)),
            convert_rgb=convert_rgb,
        )


def _triple(v: Any) -> tuple[float, float, float]:
    if isinstance(v, (int, float)):
        return (float(v),) * 3
    return tuple(float(x) for x in v)  # type: ignore[return-value]


def load_config(config: str | os.PathLike | Mapping[str, Any] | PreprocessConfig | None = None, size: int = 224) -> PreprocessConfig:
    """A :class:`PreprocessConfig` from a ``preprocessor_config.json`` path (or the model
    directory holding it), an ``open_clip_config.json``, a dict of either, or None (open_clip's
    defaults at ``size``)."""
    if config is None:
        return PreprocessConfig.open_clip(size)
    if isinstance(config, _native.PreprocessConfig):
        return config
    path = None
    cfg: Mapping[str, Any]
    if isinstance(config, Mapping):
        cfg = config
    else:
        path = Path(config)
        if path.is_dir():
            candidates = [path / "preprocessor_config.json", path / "open_clip_config.json"]
            found = [p for p in candidates if p.is_file()]
            if not found:
                raise FileNotFoundError(f"{path} has neither preprocessor_config.json nor open_clip_config.json")
            path = found[0]
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"preprocessing config not found: {path} (give a preprocessor_config.json, an open_clip_config.json or the directory holding one)") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(cfg, Mapping):
            raise ValueError(f"{path}: bad preprocessing config: expected a JSON object, got {type(cfg).__name__}")
    try:
        if "preprocess_cfg" in cfg:
            return PreprocessConfig.from_open_clip(cfg["preprocess_cfg"])
        if any(k in cfg for k in ("resize_mode", "interpolation", "fill_color")) or ("mean" in cfg and "image_mean" not in cfg):
            return PreprocessConfig.from_open_clip(cfg)
        return PreprocessConfig.from_hf(cfg)
    except (ValueError, TypeError, KeyError) as e:
        where = f"{path}: " if path is not None else ""
        raise ValueError(f"{where}bad preprocessing config: {e}") from None


ImageInput = pl.Series | Sequence[bytes | None]


def binary_column(images: ImageInput, name: str = "image") -> pl.Series:
    """Encoded images as a Binary Series: a Series passes through (Binary, or cast from a
    null-only column), a sequence of bytes / None is wrapped once."""
    if isinstance(images, pl.Series):
        if images.dtype == pl.Binary:
            return images
        if images.dtype == pl.Null:
            return images.cast(pl.Binary)
        raise TypeError(f"images must be a Binary column of encoded bytes, not {images.dtype}")
    not_one(name if name != "image" else "images", images, "encoded images")
    items = [bytes(x) if isinstance(x, bytearray | memoryview) else x for x in images]
    bad = next((i for i, x in enumerate(items) if x is not None and not isinstance(x, bytes)), None)
    if bad is not None:
        # Named by position and type, never by value (an image in a message is megabytes).
        raise TypeError(f"images must be encoded bytes or None; item {bad} is {type(items[bad]).__name__}" + (" (a path? read the file's bytes)" if isinstance(items[bad], str | os.PathLike) else ""))
    return pl.Series(name, items, dtype=pl.Binary)


def default_alpha(config: PreprocessConfig | None) -> str:
    """The alpha rule of ``config``'s reference pipeline: ``"white"`` where the image becomes
    RGB before the resize (transformers' ``CLIPImageProcessor``, whose ``convert_to_rgb``
    composites transparency over white), ``"drop"`` otherwise (open_clip's ``convert("RGB")``;
    no config)."""
    return "white" if config is not None and config.convert_rgb == "before_resize" else "drop"


def check_draft(draft: int | None) -> int | None:
    """``draft`` as given, or ValueError unless it is None or an int from 1 to 65535 (the
    largest side a JPEG can have)."""
    if draft is not None and (isinstance(draft, bool) or not isinstance(draft, int) or not 1 <= draft <= 65535):
        raise ValueError(f"draft must be a size in pixels from 1 to 65535, or None; got {draft!r}")
    return draft


def _check(threads: int | None, dtype: str = "float32") -> None:
    choice_arg("dtype", dtype, ("float32", "float16"))
    int_arg("threads", threads, 1, 512, optional=True)


@dataclass(frozen=True)
class ImageAnalysis:
    """What :func:`analyze` found.

    Attributes:
        pixels: the ``(N, 3, H, W)`` CLIP input when pixels were asked, else None (a failed
            image leaves zeros).
        table: one row per image, in input order: the :func:`stats` columns when asked, two
            columns per hash (``phash``: UInt64, the first 64 bits; ``phash_hex``: imagehash's
            string), and ``error`` (null, or ``{kind, message}``).
    """

    pixels: np.ndarray | None
    table: pl.DataFrame


def analyze(
    images: ImageInput,
    *,
    pixels: str | os.PathLike | Mapping[str, Any] | PreprocessConfig | bool | None = None,
    stats: bool = False,
    hashes: Sequence[str] = (),
    hash_size: int = 8,
    draft: int | None = None,
    size: int = 224,
    dtype: str = "float32",
    threads: int | None = None,
    alpha: str | None = None,
    exif_transpose: bool = False,
    jpeg_draft: bool = False,
    max_pixels: int | None = None,
    max_bytes: int | None = None,
    out: np.ndarray | None = None,
    header_only: bool = False,
) -> ImageAnalysis:
    """Decodes each image once and computes what is asked: CLIP pixels, statistics and
    perceptual hashes, in parallel in Rust with the GIL released.

    The statistics and the exact hashes read one gray image (Pillow's ``convert("L")``). When
    pixels are asked with the plain decode (no ``jpeg_draft``, no ``exif_transpose``: the
    defaults; and ``alpha="drop"``, or a JPEG, which has no alpha), that gray image is computed
    from the same RGB pixels, so each image is decoded once in all; otherwise, and for hashes
    with ``draft``, the gray image is decoded separately. Results equal :func:`preprocess`, :func:`stats` and
    :func:`interleaf.dedup.phash` (etc.) called one by one.

    Args:
        images: encoded images (a Binary Series, or bytes / None); None is ``missing_image``.
        pixels: a preprocessing config (as :func:`preprocess` takes), or True for open_clip's
            defaults at ``size``; None (default) for no pixels.
        stats: add the :func:`stats` columns.
        hashes: perceptual hashes to add: any of ``"phash"``, ``"dhash"``, ``"ahash"`` (one name
            or a list).
        hash_size: bits per side of each hash (default 8, imagehash's; 2-256).
        draft: decode JPEGs for the hashes as Pillow's ``draft("L", (draft, draft))`` (see
            :func:`interleaf.dedup.phash`).
        size, dtype, alpha, exif_transpose, jpeg_draft, out: as :func:`preprocess`.
        threads: worker threads (default: all cores).
        max_pixels, max_bytes: decode limits (defaults: 89,478,485 pixels, 256 MiB).
        header_only: the statistics from the header alone (width, height, format, mode,
            frames, bytes; the limits checked): no decoding for them, the pixel statistics
            null. Much faster; damage after a readable header is not detected.
    """
    _check(threads, dtype)
    check_draft(draft)
    int_arg("hash_size", hash_size, 2, 256)
    int_arg("max_pixels", max_pixels, optional=True)
    int_arg("max_bytes", max_bytes, optional=True)
    col = binary_column(images)
    arr = None
    cfg = None
    if pixels is not None and pixels is not False:
        cfg = load_config(None if pixels is True else pixels, size)
        h, w = cfg.output_shape
        if out is None:
            arr = np.empty((col.len(), 3, h, w), dtype=dtype)
        elif not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array of shape (n, 3, {h}, {w}), not {type(out).__name__}")
        elif out.dtype != np.dtype(dtype):
            raise ValueError(f"out has dtype {out.dtype}, expected {dtype}")
        else:
            arr = out
    elif out is not None:
        raise ValueError("out receives CLIP pixels: ask for them with pixels= (a config, or True), or leave out unset")
    alpha = default_alpha(cfg) if alpha is None else alpha
    table = _native.analyze_images(
        col,
        out=arr,
        config=cfg,
        stats=stats,
        hashes=[hashes] if isinstance(hashes, str) else list(hashes),
        hash_size=hash_size,
        hash_draft=draft,
        alpha=alpha,
        exif_transpose=exif_transpose,
        jpeg_draft=jpeg_draft,
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        threads=threads,
        header_only=header_only,
    )
    return ImageAnalysis(arr, table)


def preprocess(
    images: ImageInput,
    config: str | os.PathLike | Mapping[str, Any] | PreprocessConfig | None = None,
    size: int = 224,
    threads: int | None = None,
    dtype: str = "float32",
    *,
    alpha: str | None = None,
    exif_transpose: bool = False,
    max_pixels: int | None = None,
    max_bytes: int | None = None,
    out: np.ndarray | None = None,
    jpeg_draft: bool = False,
) -> tuple[np.ndarray, pl.Series]:
    """Decodes and preprocesses encoded images into one ``(N, 3, H, W)`` array for a CLIP
    vision model.

    Resizing uses Pillow's own fixed-point kernels (bicubic is antialiased on downscale), so
    outputs match Pillow + ``CLIPImageProcessor`` / open_clip to float rounding wherever the
    decoded pixels match; the RGB conversion comes before the resize or after it as the
    config's origin says (``convert_rgb``: see the module docs).

    Args:
        images: encoded images (a Binary Series, or bytes / None); None is ``missing_image``.
        config: a ``preprocessor_config.json`` path or dict, an open_clip config, a
            :class:`PreprocessConfig`, or None for open_clip's defaults at ``size``.
        size: the model's input size when ``config`` is None (ignored otherwise).
        threads: worker threads (default: all cores).
        dtype: ``"float32"`` or ``"float16"``.
        alpha: ``"drop"`` or ``"white"`` (see the module docs); default: the config's
            origin's (:func:`default_alpha`: ``"white"`` for a ``preprocessor_config.json``,
            as transformers composites transparency over white; ``"drop"`` for open_clip).
        exif_transpose: apply the EXIF orientation first.
        max_pixels, max_bytes: decode limits (defaults: 89,478,485 pixels, 256 MiB).
        out: an existing C-contiguous ``(N, 3, H, W)`` array of ``dtype`` to fill instead of a
            new one.
        jpeg_draft: decode JPEGs at the smallest DCT scale (1/2, 1/4, 1/8) that still covers
            the resize target, as Pillow's ``Image.draft``. Several times faster on large
            photos; the output is close to, but no longer identical with, the reference
            (measured in ``benches/image_preprocess.py``). Off by default.

    Returns:
        ``(array, error)``: ``error`` is the error column (null, or ``{kind, message}`` per
        image); a failed image leaves zeros in its row and never raises for the batch.
    """
    r = analyze(
        images,
        pixels=load_config(config, size),
        dtype=dtype,
        threads=threads,
        alpha=alpha,
        exif_transpose=exif_transpose,
        jpeg_draft=jpeg_draft,
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        out=out,
    )
    assert r.pixels is not None
    return r.pixels, r.table.get_column("error")


def decode(data: bytes, *, alpha: str = "drop", exif_transpose: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """One image as an ``(H, W, 3)`` uint8 array, equal to
    ``np.asarray(Image.open(BytesIO(data)).convert("RGB"))`` (see the module docs for alpha).
    Raises ValueError with the error kind when the image does not decode."""
    w, h, px = _native._decode_rgb(data, alpha, exif_transpose, max_pixels)
    return np.frombuffer(px, dtype=np.uint8).reshape(h, w, 3)


def stats(images: ImageInput, *, threads: int | None = None, max_pixels: int | None = None, max_bytes: int | None = None, header_only: bool = False) -> pl.DataFrame:
    """Statistics of each encoded image, one row per image, in input order.

    Columns: ``width``, ``height``, ``aspect_ratio`` (width / height), ``format`` (Pillow's
    name: JPEG, PNG, GIF, WEBP, BMP), ``mode`` (what Pillow's ``Image.open`` reports: a GIF or BMP whose palette is the gray ramp
    is ``L``, a 32-bit BMP with an alpha mask ``RGBA``),
    ``frames`` (animated GIF/APNG/WebP), ``bytes``; on the gray image of ``convert("L")``:
    ``blur`` (variance of the Laplacian, as ``cv2.Laplacian(gray, cv2.CV_64F).var()``; lower is
    blurrier, NeMo Curator keeps >= 100), ``entropy`` (bits, Pillow's ``Image.entropy()``),
    ``brightness`` (mean / 255), ``contrast`` (standard deviation / 255), ``uniform_fraction``
    (share of pixels within 4 gray levels of the most common level); ``error`` (null, or
    ``{kind, message}``). Header fields are filled even when the pixels do not decode.
    ``header_only=True`` reads the header alone (width, height, format, mode, frames, bytes;
    the limits checked; the pixel statistics null): many times faster, for size and format
    rules, but damage after a readable header goes unseen.
    """
    return analyze(images, stats=True, threads=threads, max_pixels=max_pixels, max_bytes=max_bytes, header_only=header_only).table


def thumbnails(images: ImageInput, max_side: int = 128, *, quality: int = 80, threads: int | None = None, max_pixels: int | None = None, max_bytes: int | None = None) -> pl.DataFrame:
    """Small JPEG previews of encoded images, one row per image: ``thumbnail`` (JPEG bytes
    that fit in ``max_side`` x ``max_side`` pixels, aspect kept, never enlarged, EXIF
    orientation applied; null where the image failed) and ``error``. Decoding is reduced for
    large JPEGs; the run report shows these inline."""
    _check(threads)
    int_arg("max_side", max_side, 1, 4096)
    int_arg("quality", quality, 1, 100)
    return _native.thumbnails(binary_column(images), max_side, quality, max_pixels, max_bytes, threads)
