"""The image pipeline against its references: decoding against Pillow's ``convert("RGB")``,
preprocessing against Pillow + transformers' ``CLIPImageProcessor`` (and Pillow + numpy for
open_clip's modes), statistics against OpenCV and Pillow; bad input.

Tolerances (from the issue): PNG within one 8-bit step before normalisation (max abs diff
<= 0.015 after it), JPEG mean abs diff <= 0.005; blur within 1% of OpenCV. Our decode and
resize are bit-identical to Pillow 13 (pinned in the test extra), so the strict tests below
also require identical values where the inputs decode identically.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest
from conftest import SKIMAGE_DATA, SKIMAGE_PHOTOS, encode
from PIL import Image, ImageOps

from interleaf import image
from interleaf.image import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessConfig

try:  # transformers 5 names the Pillow backend explicitly; 4.x has only CLIPImageProcessor.
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # pragma: no cover
    from transformers import CLIPImageProcessor

PNG_MAX = 0.015
JPEG_MEAN = 0.005


def hf(**kw) -> CLIPImageProcessor:
    return CLIPImageProcessor(**kw)


def hf_pixels(proc: CLIPImageProcessor, data: bytes) -> np.ndarray:
    return proc(images=Image.open(io.BytesIO(data)), return_tensors="np")["pixel_values"][0]


@pytest.fixture(scope="module")
def photos(sample_dir) -> list[tuple[str, bytes]]:
    """Real photographs: the bundled sample (JPEG and PNG) and scikit-image's photos."""
    files = sorted((sample_dir / "images").iterdir()) + [SKIMAGE_DATA / n for n in SKIMAGE_PHOTOS]
    return [(f.name, f.read_bytes()) for f in files if f.exists()]


@pytest.fixture(scope="module")
def odd_shapes() -> list[tuple[str, bytes]]:
    """1x1, 1500x40 and 37x900 crops and resizes of a photo, as PNG and JPEG."""
    src = Image.open(SKIMAGE_DATA / "astronaut.png").convert("RGB")
    out = []
    for w, h in [(1, 1), (1500, 40), (37, 900), (224, 224), (225, 223), (3, 500)]:
        im = src.resize((w, h), Image.Resampling.BILINEAR)
        out += [(f"{w}x{h}.png", encode(im, "PNG")), (f"{w}x{h}.jpg", encode(im, "JPEG", quality=90))]
    return out


def check(name: str, ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape, name
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    if name.endswith(".png"):
        assert diff.max() <= PNG_MAX, (name, diff.max())
    else:
        assert diff.mean() <= JPEG_MEAN, (name, diff.mean())


# --- preprocessing against transformers -------------------------------------------------


def test_shortest_edge_and_crop_match_clip_image_processor(photos, odd_shapes):
    proc = hf()
    items = photos + odd_shapes
    got, errors = image.preprocess([b for _, b in items], config=proc.to_dict())
    assert errors.to_list() == [None] * len(items)
    assert got.shape == (len(items), 3, 224, 224) and got.dtype == np.float32
    exact = 0
    for (name, data), ours in zip(items, got):
        im = Image.open(io.BytesIO(data))
        alpha = "A" in im.getbands() or "transparency" in im.info
        if alpha:
            continue  # transformers composites alpha on white; see the alpha test.
        ref = hf_pixels(proc, data)
        check(name, ours, ref)
        exact += np.array_equal(ours, ref)
    # Bit-identical decode and resize: every non-alpha image matches exactly.
    assert exact == sum(1 for _, d in items if "A" not in Image.open(io.BytesIO(d)).getbands())


@pytest.mark.parametrize("resample", [1, 2, 3])
def test_other_filters_sizes_and_squash(photos, resample):
    # Squash: {"height", "width"} without a crop; a non-square crop after a shortest edge.
    configs = [
        dict(size={"height": 200, "width": 160}, do_center_crop=False, resample=resample),
        dict(size={"shortest_edge": 256}, crop_size={"height": 240, "width": 200}, resample=resample),
        dict(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, resample=resample, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
    ]
    for cfg in configs:
        proc = hf(**cfg)
        items = photos[:8]
        got, errors = image.preprocess([b for _, b in items], config=proc.to_dict())
        assert errors.to_list() == [None] * len(items)
        for (name, data), ours in zip(items, got):
            if Image.open(io.BytesIO(data)).mode == "RGBA":
                continue
            ref = hf_pixels(proc, data)
            check(name, ours, ref)
            assert np.array_equal(ours, ref), (name, cfg)


def test_alpha_white_matches_transformers_and_drop_matches_convert_rgb(sample_dir):
    logo = (SKIMAGE_DATA / "logo.png").read_bytes()
    disc = (sample_dir / "images" / "retina_disc.png").read_bytes()
    photo = Image.open(sample_dir / "images" / "coffee.jpg").convert("RGB").resize((120, 90))
    la = encode(photo.convert("LA"), "PNG")
    palette_t = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette_t.info["transparency"] = 3
    pal = encode(palette_t, "PNG", transparency=3)
    rgba16 = encode(Image.open(io.BytesIO(logo)), "PNG")
    items = [logo, disc, la, pal, rgba16]
    proc = hf()
    got, _ = image.preprocess(items, config=proc.to_dict(), alpha="white")
    for data, ours in zip(items, got):
        ref = hf_pixels(proc, data)
        assert np.array_equal(ours, ref)
    from transformers.image_transforms import convert_to_rgb

    for data in items:
        im = Image.open(io.BytesIO(data))
        assert np.array_equal(image.decode(data), np.asarray(im.convert("RGB")))
        assert np.array_equal(image.decode(data, alpha="white"), convert_to_rgb(im, return_numpy=True))


# --- open_clip's modes, against Pillow + numpy by hand ---------------------------------------


def open_clip_reference(data: bytes, size: int, mode: str) -> np.ndarray:
    """open_clip's image_transform for inference written out with Pillow + numpy: Resize
    (torchvision: int(size * long / short)), CenterCrop (round half to even, pad floor),
    ResizeKeepRatio + CenterCropOrPad for "longest", ToTensor (/255 in float32), Normalize."""
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    if mode == "shortest":
        short, long = min(w, h), max(w, h)
        new = (size, int(size * long / short)) if w <= h else (int(size * long / short), size)
        im = im.resize(new, Image.Resampling.BICUBIC)
    elif mode == "squash":
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    else:
        ratio = max(h / size, w / size)
        im = im.resize((max(1, round(w / ratio)), max(1, round(h / ratio))), Image.Resampling.BICUBIC)
    a = np.asarray(im)
    h, w = a.shape[:2]
    canvas = np.zeros((size, size, 3), np.uint8)
    def offsets(n):
        d = n - size
        return (round(d / 2), 0) if d >= 0 else (0, (-d) // 2)
    (sy, py), (sx, px) = offsets(h), offsets(w)
    part = a[sy : sy + size, sx : sx + size]
    canvas[py : py + part.shape[0], px : px + part.shape[1]] = part
    x = canvas.astype(np.float32) / np.float32(255)
    x = (x - np.array(OPENAI_CLIP_MEAN, np.float32)) / np.array(OPENAI_CLIP_STD, np.float32)
    return x.transpose(2, 0, 1)


@pytest.mark.parametrize("mode", ["shortest", "squash", "longest"])
def test_open_clip_modes_match_pillow_by_hand(photos, odd_shapes, mode):
    items = photos[:10] + odd_shapes
    got, errors = image.preprocess([b for _, b in items], config=PreprocessConfig.open_clip(224, mode=mode))
    assert errors.to_list() == [None] * len(items)
    for (name, data), ours in zip(items, got):
        ref = open_clip_reference(data, 224, mode)
        check(name, ours, ref)
        assert np.array_equal(ours, ref), name


OPEN_CLIP_FIXTURE = Path(__file__).parent / "fixtures" / "open_clip_preprocess.npz"


@pytest.fixture(scope="module")
def open_clip_outputs() -> dict:
    with np.load(OPEN_CLIP_FIXTURE, allow_pickle=False) as z:
        r = {k: z[k] for k in z.files}
    data, off = r["data"].tobytes(), r["offsets"]
    r["images"] = [data[a:b] for a, b in zip(off[:-1], off[1:], strict=True)]
    return r


@pytest.mark.parametrize("convert_rgb", ["after_resize", "before_resize"])
@pytest.mark.parametrize("mode", ["shortest", "longest", "squash"])
def test_open_clip_modes_equal_open_clip_itself(open_clip_outputs, mode, convert_rgb):
    """open_clip 3.3's own ``image_transform(size, is_train=False, resize_mode=mode)``, recorded
    by scripts/make_open_clip_reference.py (torch is not needed here) for the bundled
    photographs and edge cases (blank, 1x1, 2x1, 10x400, RGBA, palette, 16-bit gray): equal
    arrays at 64 px, equal sha256 of the float32 bytes at 224. open_clip was given the image as
    opened (``raw_*``: it resizes first, then converts) and ``Image.open(data).convert("RGB")``:
    ``convert_rgb="after_resize"`` (open_clip's default) equals the first, ``"before_resize"``
    the second; they differ only on the images not opened as RGB or L."""
    r = open_clip_outputs
    k = [str(m) for m in r["modes"]].index(mode)
    names = [str(n) for n in r["names"]]
    assert len(names) >= 30 and any("1x1" in n for n in names)
    raw = {int(i): j for j, i in enumerate(r["raw_index"])} if convert_rgb == "after_resize" else {}
    # The convert("RGB") reference dropped the alpha (open_clip's own conversion does too).
    small, errors = image.preprocess(r["images"], config=PreprocessConfig.open_clip(int(r["full_size"]), mode=mode, convert_rgb=convert_rgb), alpha="drop")
    assert errors.to_list() == [None] * len(names)
    for i, (name, ours) in enumerate(zip(names, small, strict=True)):
        theirs = r["raw_pixels"][k, raw[i]] if i in raw else r["pixels"][k, i]
        assert np.array_equal(ours, theirs), (name, float(np.abs(ours - theirs).max()))
    big, errors = image.preprocess(r["images"], config=PreprocessConfig.open_clip(int(r["hash_size"]), mode=mode, convert_rgb=convert_rgb), alpha="drop")
    assert errors.to_list() == [None] * len(names)
    for i, (name, ours) in enumerate(zip(names, big, strict=True)):
        digest = hashlib.sha256(np.ascontiguousarray(ours, "<f4").tobytes()).hexdigest()
        assert digest == (r["raw_sha256"][k, raw[i]] if i in raw else r["sha256"][k, i]), (name, ours.astype(np.float64).sum())
    # The recorded cases where the order matters (RGBA, palette, 16-bit gray) are there.
    modes_raw = {str(r["pil_modes"][i]) for i in r["raw_index"]}
    assert {"RGBA", "P", "I;16"} <= modes_raw


# --- open_clip's order (resize in the opened mode, then RGB) on every mode ------------------


def open_clip_order_reference(data: bytes, size: int, mode: str, fill: int = 0, white: bool = False) -> np.ndarray:
    """open_clip's ``image_transform(size, is_train=False, resize_mode=mode)`` on
    ``Image.open(data)`` as opened, written out with Pillow (open_clip is not installed here):
    torchvision's ``Resize`` on a PIL image is ``im.resize(size, BICUBIC)`` (Pillow then uses
    NEAREST for "P" and "1" and resizes "RGBA"/"LA" premultiplied), ``CenterCrop`` /
    ``CenterCropOrPad`` pad with ``ImageOps.expand`` (``fill`` in every band; a palette index
    for "P") and crop at ``round((n - size) / 2)``, then ``convert("RGB")`` (``white``: the
    alpha composited on white first, as transformers' ``convert_to_rgb``), ``ToTensor``,
    ``Normalize``."""
    im = Image.open(io.BytesIO(data))
    w, h = im.size
    if mode == "shortest":
        short, long = min(w, h), max(w, h)
        new = (size, int(size * long / short)) if w <= h else (int(size * long / short), size)
    elif mode == "squash":
        new = (size, size)
    else:
        ratio = max(h / size, w / size)
        new = (max(1, round(w / ratio)), max(1, round(h / ratio)))
    if new != (w, h):
        im = im.resize(new, Image.Resampling.BICUBIC)
    w, h = im.size
    if w < size or h < size:
        dw, dh = max(size - w, 0), max(size - h, 0)
        bands = len(im.getbands())
        im = ImageOps.expand(im, (dw // 2, dh // 2, (dw + 1) // 2, (dh + 1) // 2), fill=fill if bands == 1 else (fill,) * bands)
        w, h = im.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    im = im.crop((left, top, left + size, top + size))
    if white and im.mode in ("RGBA", "LA"):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    x = np.asarray(im.convert("RGB")).astype(np.float32) / np.float32(255)
    x = (x - np.array(OPENAI_CLIP_MEAN, np.float32)) / np.array(OPENAI_CLIP_STD, np.float32)
    return x.transpose(2, 0, 1)


def _png16(arr: np.ndarray, colour: int, trns: bytes | None = None, interlace: bool = False) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour), Adam7 if asked."""
    h, w = arr.shape[:2]
    a = arr.reshape(h, w, -1).astype(">u2")
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)) if interlace else ((0, 0, 1, 1),)
    raw = b"".join(b"\x00" + row.tobytes() for x0, y0, dx, dy in passes if a[y0::dy, x0::dx].size for row in a[y0::dy, x0::dx])
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    extra = chunk(b"tRNS", trns) if trns else b""
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, int(interlace))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _gif_gray_ramp(a: np.ndarray) -> bytes:
    """A GIF whose colour table is the gray ramp, which Pillow opens as "L" (not "P")."""
    im = Image.fromarray(a, "L").convert("P")
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    return encode(im, "GIF")


def mode_corpus() -> dict[str, bytes]:
    """Real-ish images in every mode Pillow opens differently from RGB, at ordinary, tiny
    (1x1, 2x3) and extreme (1x300, 400x3) sizes, and a tall one whose resize runs its vertical
    pass first."""
    photo = Image.open(SKIMAGE_DATA / "astronaut.png").convert("RGB")
    rng = np.random.default_rng(7)
    out: dict[str, bytes] = {}
    for w, h in [(97, 61), (1, 1), (2, 3), (1, 300), (400, 3), (300, 2000)]:
        if w * h > 100_000 and out:
            tall = True
        else:
            tall = False
        tag = f"{w}x{h}"
        rgb = photo.resize((w, h), Image.Resampling.BILINEAR)
        a = np.asarray(rgb)
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
        alpha[:, : max(1, w // 4)] = 0  # fully transparent pixels keep a stored colour
        rgba = Image.fromarray(np.dstack([a, alpha]), "RGBA")
        gray = rgb.convert("L")
        g16 = (np.asarray(gray).astype(np.uint32) * 257 + rng.integers(0, 257, (h, w))).astype(np.uint16)
        g16[::3, ::2] = rng.integers(0, 300, g16[::3, ::2].shape)  # values around the 255 clip
        out[f"rgba_{tag}.png"] = encode(rgba, "PNG")
        out[f"gray16_{tag}.png"] = encode(Image.fromarray(g16), "PNG")
        out[f"cmyk_{tag}.jpg"] = encode(rgb.convert("CMYK"), "JPEG", quality=90)
        if tall:
            continue
        pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
        out[f"palette_{tag}.png"] = encode(pal, "PNG")
        out[f"palette_trns_{tag}.png"] = encode(pal, "PNG", transparency=0)
        out[f"palette_{tag}.gif"] = encode(pal, "GIF", transparency=0)
        out[f"palette_{tag}.bmp"] = encode(pal, "BMP")
        out[f"bilevel_{tag}.png"] = encode(gray.convert("1"), "PNG")
        out[f"bilevel_{tag}.bmp"] = encode(gray.convert("1"), "BMP")
        out[f"gray_{tag}.png"] = encode(gray, "PNG")
        out[f"gray_palette_{tag}.bmp"] = encode(gray.convert("P"), "BMP")  # Pillow opens it as "L"
        out[f"gray_ramp_{tag}.gif"] = _gif_gray_ramp(np.asarray(gray))
        out[f"la_{tag}.png"] = encode(Image.fromarray(np.dstack([np.asarray(gray), alpha]), "LA"), "PNG")
        out[f"rgba_{tag}.webp"] = encode(rgba, "WEBP", lossless=True)
        c16 = a.astype(np.uint16) * 257 + rng.integers(0, 257, a.shape).astype(np.uint16)
        a16 = alpha.astype(np.uint16) * 257
        out[f"rgb16_{tag}.png"] = _png16(c16, 2)
        out[f"rgba16_{tag}.png"] = _png16(np.dstack([c16, a16]), 6)
        out[f"la16_{tag}.png"] = _png16(np.dstack([c16[..., 0], a16]), 4)
        out[f"gray16_trns_{tag}.png"] = _png16(g16, 0, trns=struct.pack(">H", int(g16.flat[0])))
        c = a.astype(np.uint32)
        out[f"rgb555_{tag}.bmp"] = _bmp(((c[..., 0] >> 3) << 10) | ((c[..., 1] >> 3) << 5) | (c[..., 2] >> 3), 16)
        out[f"rgb565_{tag}.bmp"] = _bmp(((c[..., 0] >> 3) << 11) | ((c[..., 1] >> 2) << 5) | (c[..., 2] >> 3), 16, (0xF800, 0x7E0, 0x1F))
        # A1R5G5B5: Pillow reads it as RGB, its alpha mask not applied.
        top = (alpha.astype(np.uint32) >> 7) << 15
        out[f"argb1555_{tag}.bmp"] = _bmp(top | ((c[..., 0] >> 3) << 10) | ((c[..., 1] >> 3) << 5) | (c[..., 2] >> 3), 16, (0x7C00, 0x3E0, 0x1F, 0x8000))
        bgra = (alpha.astype(np.uint32) << 24) | (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
        out[f"bgra_v5_{tag}.bmp"] = _bmp(bgra, 32, (0xFF0000, 0xFF00, 0xFF, 0xFF000000))
    return out


def _bmp(pixels: np.ndarray, bits: int, masks: tuple[int, ...] | None = None) -> bytes:
    """A bottom-up BMP of ``bits`` (16 or 32) per pixel: BI_RGB without ``masks``, else
    BI_BITFIELDS, with a BITMAPV5HEADER where there are four masks (Pillow reads the alpha
    mask from headers of 56 bytes and more)."""
    h, w = pixels.shape
    stride = (w * bits // 8 + 3) // 4 * 4
    dtype = "<u2" if bits == 16 else "<u4"
    data = b"".join(row.astype(dtype).tobytes().ljust(stride, b"\0") for row in pixels[::-1])
    size = 124 if masks is not None and len(masks) == 4 else 40
    info = struct.pack("<IiiHHIIiiII", size, w, h, 1, bits, 0 if masks is None else 3, len(data), 2835, 2835, 0, 0)
    if size == 124:
        info += struct.pack("<IIII", *masks) + b"BGRs" + b"\0" * (124 - 56 - 4)
        extra = b""
    else:
        extra = b"" if masks is None else struct.pack(f"<{len(masks)}I", *masks)
    off = 14 + len(info) + len(extra)
    return b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off) + info + extra + data


MODE_CORPUS = mode_corpus()


@pytest.mark.parametrize("name", list(MODE_CORPUS))
def test_open_clip_order_matches_pillow_resize_then_convert_on_every_mode(name):
    """``convert_rgb="after_resize"`` (the default and every open_clip config) against open_clip's
    transform written out with Pillow, in its three resize modes: max |diff| <= 1e-5 on the
    normalised values (float rounding only; in fact equal)."""
    data = MODE_CORPUS[name]
    for mode in ("shortest", "squash", "longest"):
        cfg = None if mode == "shortest" else PreprocessConfig.open_clip(224, mode=mode)
        (ours,), errors = image.preprocess([data], config=cfg)
        assert errors.to_list() == [None], name
        ref = open_clip_order_reference(data, 224, mode)
        assert np.abs(ours - ref).max() <= 1e-5, (name, Image.open(io.BytesIO(data)).mode, mode, float(np.abs(ours - ref).max()))
    # Downscales too (every image here is small): 32 px.
    (ours,), _ = image.preprocess([data], config=PreprocessConfig.open_clip(32))
    assert np.abs(ours - open_clip_order_reference(data, 32, "shortest")).max() <= 1e-5, name


def test_the_corpus_covers_the_modes_where_the_order_matters():
    modes = {Image.open(io.BytesIO(d)).mode for d in MODE_CORPUS.values()}
    assert {"P", "1", "L", "LA", "RGBA", "I;16", "CMYK", "RGB"} <= modes


def test_every_mode_decodes_hashes_and_reports_as_pillow():
    """On the corpus of every mode (16-bit BMPs in both of Pillow's layouts, a 32-bit BMP with an
    alpha mask, GIFs and BMPs whose palette is the gray ramp...): ``stats``' mode (full and
    header_only) is Pillow's ``Image.open`` mode, ``decode`` equals ``convert("RGB")`` and the
    hashes equal imagehash's."""
    import imagehash

    from interleaf.dedup import dhash, phash

    names, blobs = list(MODE_CORPUS), list(MODE_CORPUS.values())
    want = [Image.open(io.BytesIO(d)).mode for d in blobs]
    assert dict(zip(names, image.stats(blobs).get_column("mode").to_list(), strict=True)) == dict(zip(names, want, strict=True))
    assert image.stats(blobs, header_only=True).get_column("mode").to_list() == want
    hashes = {"phash": (phash(blobs), imagehash.phash), "dhash": (dhash(blobs), imagehash.dhash)}
    for i, (name, data) in enumerate(MODE_CORPUS.items()):
        ref = Image.open(io.BytesIO(data))
        assert np.array_equal(image.decode(data), np.asarray(ref.convert("RGB"))), name
        white = Image.alpha_composite(Image.new("RGBA", ref.size, (255, 255, 255, 255)), ref.convert("RGBA")).convert("RGB")
        assert np.array_equal(image.decode(data, alpha="white"), np.asarray(white)), name
        for k, (got, f) in hashes.items():
            assert got.get_column("hex")[i] == str(f(ref)), (k, name)


def test_open_clip_order_pads_with_the_fill_in_the_opened_mode():
    """``"longest"`` pads before the conversion: a palette image's pad is its palette entry
    ``fill``, a CMYK image's is ``cmyk2rgb(fill, fill, fill, fill)``."""
    wide = {k: v for k, v in MODE_CORPUS.items() if "97x61" in k or "400x3" in k}
    for fill in (0, 7, 200):
        cfg = PreprocessConfig.open_clip(64, mode="longest", fill=fill)
        got, errors = image.preprocess(list(wide.values()), config=cfg)
        assert errors.to_list() == [None] * len(wide)
        for (name, data), ours in zip(wide.items(), got):
            ref = open_clip_order_reference(data, 64, "longest", fill=fill)
            assert np.abs(ours - ref).max() <= 1e-5, (name, fill)


def test_open_clip_order_with_alpha_white_composites_after_the_resize():
    names = [k for k in MODE_CORPUS if k.startswith(("rgba_", "la_", "rgba16_", "la16_"))]
    got, _ = image.preprocess([MODE_CORPUS[k] for k in names], alpha="white")
    for name, ours in zip(names, got):
        ref = open_clip_order_reference(MODE_CORPUS[name], 224, "shortest", white=True)
        assert np.abs(ours - ref).max() <= 1e-5, name


def test_hf_configs_still_convert_first_as_clip_image_processor():
    """A ``preprocessor_config.json`` keeps transformers' order on every mode: equal to
    ``CLIPImageProcessor`` (which composites alpha on white: the default alpha of such a
    config)."""
    proc = hf()
    cfg = image.load_config(proc.to_dict())
    assert cfg.convert_rgb == "before_resize" and image.default_alpha(cfg) == "white"
    names = [k for k in MODE_CORPUS if "300x2000" not in k]
    got, errors = image.preprocess([MODE_CORPUS[k] for k in names], config=proc.to_dict())
    assert errors.to_list() == [None] * len(names)
    for name, ours in zip(names, got):
        ref = hf_pixels(proc, MODE_CORPUS[name])
        assert np.abs(ours - ref).max() <= 1e-5, name
    # The order is a field: open_clip's arithmetic with transformers' order is convert-first
    # (the reference converted with convert("RGB"): alpha dropped).
    oc_first, _ = image.preprocess([MODE_CORPUS[k] for k in names], config=PreprocessConfig.open_clip(224, convert_rgb="before_resize"), alpha="drop")
    for name, ours in zip(names, oc_first):
        assert np.array_equal(ours, open_clip_reference(MODE_CORPUS[name], 224, "shortest")), name


def test_convert_order_follows_the_config_origin_and_can_be_overridden(tmp_path):
    assert image.load_config(None).convert_rgb == "after_resize"
    assert PreprocessConfig().convert_rgb == "after_resize"
    assert image.load_config({"preprocess_cfg": {"size": 224}}).convert_rgb == "after_resize"
    assert image.load_config({"size": 224, "interpolation": "bicubic"}).convert_rgb == "after_resize"
    assert image.load_config({"size": {"shortest_edge": 224}, "crop_size": 224}).convert_rgb == "before_resize"
    assert PreprocessConfig.from_hf({}, convert_rgb="after_resize").convert_rgb == "after_resize"
    assert PreprocessConfig.from_open_clip({}, convert_rgb="before_resize").convert_rgb == "before_resize"
    assert PreprocessConfig.open_clip(224) != PreprocessConfig.open_clip(224, convert_rgb="before_resize")
    assert "convert_rgb='after_resize'" in repr(PreprocessConfig.open_clip(224)).replace('"', "'")
    with pytest.raises(ValueError, match="convert_rgb must be"):
        PreprocessConfig.open_clip(224, convert_rgb="first")


def test_default_config_is_open_clip_and_size_is_honoured(photos):
    data = [b for _, b in photos[:3]]
    a, _ = image.preprocess(data)
    b, _ = image.preprocess(data, config=PreprocessConfig.open_clip(224))
    assert np.array_equal(a, b)
    c, _ = image.preprocess(data, size=96)
    assert c.shape == (3, 3, 96, 96)
    assert np.array_equal(c[0], open_clip_reference(data[0], 96, "shortest"))


def test_float16_threads_and_out(photos):
    data = [b for _, b in photos[:6]]
    f32, _ = image.preprocess(data, threads=1)
    f16, _ = image.preprocess(data, dtype="float16", threads=2)
    assert f16.dtype == np.float16
    assert np.array_equal(f16, f32.astype(np.float16))
    out = np.full((6, 3, 224, 224), 7, np.float32)
    same, _ = image.preprocess(data, out=out)
    assert same is out and np.array_equal(out, f32)
    with pytest.raises(ValueError, match="shape"):
        image.preprocess(data, out=np.zeros((5, 3, 224, 224), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        image.preprocess(data, dtype="float64")
    with pytest.raises(ValueError, match="threads"):
        image.preprocess(data, threads=0)


def test_jpeg_draft_is_close_and_faster_path_only_for_large_jpegs(sample_dir):
    big = Image.open(SKIMAGE_DATA / "astronaut.png").convert("RGB").resize((1600, 1200), Image.Resampling.BICUBIC)
    items = [encode(big, "JPEG", quality=90), encode(big, "PNG"), (sample_dir / "images" / "coffee_cup.jpg").read_bytes()]
    exact, _ = image.preprocess(items)
    draft, errors = image.preprocess(items, jpeg_draft=True)
    assert errors.to_list() == [None] * 3
    # 1600x1200 -> decoded at 1/4 scale (400x300), then resized to the same 298x224 geometry.
    diff = np.abs(exact[0] - draft[0])
    assert 0 < diff.mean() < 0.03 and diff.max() < 0.5
    # PNG, and a JPEG too small to reduce (265x205 for a 224 target), are unchanged.
    assert np.array_equal(exact[1:], draft[1:])


# --- configs --------------------------------------------------------------------------------


def test_configs_from_files_dicts_and_open_clip(tmp_path):
    proc = hf(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    proc.save_pretrained(tmp_path)
    from_dir = image.load_config(tmp_path)
    from_file = image.load_config(tmp_path / "preprocessor_config.json")
    assert from_dir == from_file == PreprocessConfig.from_hf(proc.to_dict())
    assert from_dir.output_shape == (336, 336) and from_dir.crop_rounding == "floor"
    legacy = image.load_config({"size": 224, "crop_size": 224, "do_center_crop": True})
    assert legacy.mode == "shortest" and legacy.crop == (224, 224)
    oc = image.load_config({"preprocess_cfg": {"size": 384, "mean": [0.5] * 3, "std": [0.5] * 3, "resize_mode": "squash", "interpolation": "bilinear"}})
    assert (oc.mode, oc.size, oc.resample, oc.mean) == ("squash", (384, 384), 2, (0.5, 0.5, 0.5))
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        image.load_config(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        image.load_config(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        image.load_config(tmp_path / "list.json")
    with pytest.raises(ValueError, match="resample"):
        image.load_config({"resample": 0})
    with pytest.raises(ValueError, match="shortest_edge"):
        image.load_config({"size": {"shortest_edge": 224}, "do_center_crop": False})
    with pytest.raises(ValueError, match="do_resize"):
        image.load_config({"do_resize": False})


# --- decoding -------------------------------------------------------------------------------


def formats_corpus(sample_dir) -> list[tuple[str, bytes]]:
    photo = Image.open(sample_dir / "images" / "chelsea.jpg").convert("RGB")
    gray = photo.convert("L")
    arr16 = (np.asarray(photo).astype(np.uint16) * 257).astype(">u2")
    out = [
        ("progressive.jpg", encode(photo, "JPEG", quality=85, progressive=True)),
        ("cmyk.jpg", encode(photo.convert("CMYK"), "JPEG", quality=90)),
        ("gray.jpg", encode(gray, "JPEG")),
        ("subsampled420.jpg", encode(photo, "JPEG", subsampling=2)),
        ("rgb.png", encode(photo, "PNG")),
        ("gray.png", encode(gray, "PNG")),
        ("gray4.png", encode(gray.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG", bits=4)),
        ("bilevel.png", encode(gray.convert("1"), "PNG")),
        ("palette.png", encode(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG")),
        ("gray16.png", encode(Image.fromarray(np.asarray(gray).astype(np.uint16) * 2), "PNG")),
        ("lossless.webp", encode(photo, "WEBP", lossless=True)),
        ("first-frame.gif", (SKIMAGE_DATA / "no_time_for_that_tiny.gif").read_bytes()),
        ("palette.gif", encode(photo.convert("P", palette=Image.Palette.ADAPTIVE), "GIF")),
        ("rgb.bmp", encode(photo, "BMP")),
        ("palette.bmp", encode(photo.convert("P", palette=Image.Palette.ADAPTIVE), "BMP")),
    ]
    # 16-bit RGB PNG: Pillow keeps the high bytes.
    raw = b"".join(b"\x00" + row.tobytes() for row in arr16.reshape(arr16.shape[0], -1))
    ihdr = struct.pack(">IIBBBBB", photo.width, photo.height, 16, 2, 0, 0, 0)
    out.append(("rgb16.png", png(ihdr, zlib.compress(raw))))
    return out


def png(ihdr: bytes, idat: bytes) -> bytes:
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


ZERO_LENGTH_APP1 = b"\xff\xd8\xff\xe1\x00\x00"


def test_decode_equals_pillow_convert_rgb(sample_dir):
    odd = [("zero-length APP1 before the JPEG", ZERO_LENGTH_APP1 + (sample_dir / "images" / "coffee.jpg").read_bytes()[2:])]
    for name, data in formats_corpus(sample_dir) + odd:
        want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        got = image.decode(data)
        assert got.shape == want.shape, name
        assert np.array_equal(got, want), (name, np.abs(got.astype(int) - want).max())


def test_lossy_webp_is_within_tolerance(sample_dir):
    photo = Image.open(sample_dir / "images" / "chelsea.jpg").convert("RGB")
    data = encode(photo, "WEBP", quality=80)
    got = image.decode(data).astype(int)
    want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    # image-webp and libwebp differ in their YUV->RGB rounding: at most a few levels.
    assert np.abs(got - want).mean() < 1.0 and np.abs(got - want).max() <= 8
    proc = hf()
    (ours,), _ = image.preprocess([data], config=proc.to_dict())
    assert np.abs(ours - hf_pixels(proc, data)).mean() <= JPEG_MEAN


def exif_jpeg(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_only_when_asked(sample_dir, orientation):
    photo = Image.open(sample_dir / "images" / "coffee_cup.jpg").convert("RGB")
    for data in (exif_jpeg(photo, orientation), encode(photo, "PNG", exif=_exif(orientation)), encode(photo, "WEBP", lossless=True, exif=_exif(orientation))):
        im = Image.open(io.BytesIO(data))
        assert np.array_equal(image.decode(data), np.asarray(im.convert("RGB")))
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        assert np.array_equal(image.decode(data, exif_transpose=True), want), orientation


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# --- bad input ------------------------------------------------------------------------------


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "TIFF")
    return buf.getvalue()


def bad_inputs(sample_dir) -> dict[str, tuple[bytes | None, str]]:
    jpg = (sample_dir / "images" / "coffee.jpg").read_bytes()
    rng = np.random.default_rng(0)
    huge_gif = b"GIF89a" + struct.pack("<HH", 60000, 60000) + b"\x00\x00\x00" + b",\x00\x00\x00\x00" + struct.pack("<HH", 60000, 60000) + b"\x00\x02\x02\x4c\x01\x00;"
    return {
        "truncated jpeg": (jpg[: len(jpg) // 2], "truncated_image"),
        "random bytes": (rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), "unknown_image_format"),
        "zero bytes": (b"", "empty_image"),
        "png claiming 100000x100000": (png(struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0), zlib.compress(b"\x00" * 10)), "image_too_large"),
        "huge gif": (huge_gif, "image_too_large"),
        "jpeg with a broken scan": (jpg[:2000] + bytes(500) + jpg[2500:], None),
        "missing": (None, "missing_image"),
        # Found by the fuzzer: a segment length below 2 made the header probe slice backwards.
        # Pillow (libjpeg) decodes it, and so do we (test_decode_equals_pillow_convert_rgb).
        "jpeg segment length 0": (ZERO_LENGTH_APP1 + jpg[2:], None),
        "tiff (recognised, not decoded)": (_tiff(), "unknown_image_format"),
    }


def test_bad_input_is_an_error_value_and_the_batch_goes_on(sample_dir):
    cases = bad_inputs(sample_dir)
    good = (sample_dir / "images" / "coffee.jpg").read_bytes()
    items = [good] + [d for d, _ in cases.values()] + [good]
    got, errors = image.preprocess(items)
    assert errors[0] is None and errors[-1] is None
    assert np.array_equal(got[0], got[-1]) and np.abs(got[0]).sum() > 0
    for (name, (_, kind)), err, row in zip(cases.items(), errors[1:-1], got[1:-1]):
        if kind is None:  # libjpeg recovers from these, as Pillow does: decoded, no error
            assert err is None and row.any(), (name, err)
            continue
        assert err is not None and err["kind"] == kind, (name, err)
        assert not row.any(), name
    # Limits come from the header: a tighter max_pixels refuses a photo before decoding it.
    _, errors = image.preprocess([good], max_pixels=1000)
    assert errors[0]["kind"] == "image_too_large"


def test_sixteen_bit_colour_pngs_read_row_by_row_give_pillows_pixels():
    """16-bit RGB, gray + alpha and RGBA PNGs are cut to their high bytes row by row as they
    are decoded (the 16-bit image is never held); interlaced and damaged ones take the full
    decode. Either way: Pillow's ``convert("RGB")``, transformers' ``convert_to_rgb`` for
    ``alpha="white"``, and a tRNS key matched on all 16 bits."""
    from transformers.image_transforms import convert_to_rgb

    rng = np.random.default_rng(3)
    c16 = rng.integers(0, 65536, (37, 53, 3), dtype=np.uint16)
    a16 = rng.integers(0, 65536, (37, 53), dtype=np.uint16)
    a16[:, :9] = 0
    for interlace in (False, True):
        files = {
            "rgb16": _png16(c16, 2, interlace=interlace),
            "la16": _png16(np.dstack([c16[..., 0], a16]), 4, interlace=interlace),
            "rgba16": _png16(np.dstack([c16, a16]), 6, interlace=interlace),
        }
        files["rgba16 without IEND"] = files["rgba16"][:-12]
        for name, data in files.items():
            im = Image.open(io.BytesIO(data))
            assert np.array_equal(image.decode(data), np.asarray(im.convert("RGB"))), (name, interlace)
            if "A" in im.getbands():
                assert np.array_equal(image.decode(data, alpha="white"), convert_to_rgb(im, return_numpy=True)), (name, interlace)
            ref = hf_pixels(hf(), data) if "A" not in im.getbands() else open_clip_order_reference(data, 224, "shortest")
            (ours,), errors = image.preprocess([data], config=hf().to_dict() if "A" not in im.getbands() else None)
            assert errors.to_list() == [None] and np.abs(ours - ref).max() <= 1e-5, (name, interlace)
    # A tRNS key on 16-bit RGB: only the pixels equal to it in all 16 bits turn white.
    keyed = c16.copy()
    key = (1000, 20000, 50000)
    keyed[0, 0] = key
    keyed[0, 1] = (key[0] ^ 1, key[1], key[2])  # the same high bytes, another colour
    data = _png16(keyed, 2, trns=struct.pack(">HHH", *key))
    white = image.decode(data, alpha="white")
    assert white[0, 0].tolist() == [255, 255, 255] and white[0, 1].tolist() == [v >> 8 for v in keyed[0, 1]]
    assert np.array_equal(white[1:], (keyed[1:] >> 8).astype(np.uint8))
    assert np.array_equal(image.decode(data), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_sixteen_bit_png_gives_pillows_output(sample_dir):
    gray16 = dict(formats_corpus(sample_dir))["gray16.png"]
    ref = hf_pixels(hf(), gray16)
    (ours,), errors = image.preprocess([gray16], config=hf().to_dict())
    assert errors.to_list() == [None] and np.array_equal(ours, ref)


# --- statistics -----------------------------------------------------------------------------


def _apng(default_image: bool) -> bytes:
    """A 3-frame APNG; with ``default_image`` its IDAT image is outside the animation (Pillow's
    n_frames counts it: 3; acTL says 2)."""
    rng = np.random.default_rng(int(default_image))
    frames = [Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)) for _ in range(3)]
    return encode(frames[0], "PNG", save_all=True, append_images=frames[1:], default_image=default_image, duration=50)


def _twice_actl(png: bytes) -> bytes:
    """``png`` with its acTL chunk written twice (Pillow: "Invalid APNG", a plain PNG)."""
    at = png.index(b"acTL") - 4
    end = at + 12 + struct.unpack(">I", png[at : at + 4])[0]
    return png[:end] + png[at:end] + png[end:]


def test_stats_match_opencv_and_pillow(photos, sample_dir):
    extra = formats_corpus(sample_dir) + [("clock_motion.png", (SKIMAGE_DATA / "clock_motion.png").read_bytes())]
    extra += [("apng.png", _apng(False)), ("apng_default_image.png", _apng(True)), ("apng_actl_twice.png", _twice_actl(_apng(False)))]
    items = photos + extra
    df = image.stats([b for _, b in items], threads=2)
    assert df.height == len(items)
    assert df.columns == ["width", "height", "aspect_ratio", "format", "mode", "frames", "bytes", "blur", "entropy", "brightness", "contrast", "uniform_fraction", "error"]
    for (name, data), row in zip(items, df.iter_rows(named=True)):
        im = Image.open(io.BytesIO(data))
        gray = np.asarray(im.convert("L"))
        assert row["error"] is None, name
        assert (row["width"], row["height"], row["bytes"]) == (im.width, im.height, len(data))
        assert row["format"] == im.format, name
        assert row["mode"] == im.mode, name
        assert row["frames"] == getattr(im, "n_frames", 1), name
        blur = cv2.Laplacian(gray, cv2.CV_64F).var()
        assert row["blur"] == pytest.approx(blur, rel=0.01, abs=1e-9), name
        assert row["entropy"] == pytest.approx(im.convert("L").entropy(), rel=1e-9), name
        assert row["brightness"] == pytest.approx(gray.mean() / 255, rel=1e-9)
        assert row["contrast"] == pytest.approx(gray.std() / 255, rel=1e-9, abs=1e-12)
        hist = np.bincount(gray.ravel(), minlength=256)
        mode = int(hist.argmax())
        near = hist[max(0, mode - 4) : mode + 5].sum() / gray.size
        assert row["uniform_fraction"] == pytest.approx(near, rel=1e-12)
    blurry = df.filter(pl.Series([n for n, _ in items]) == "clock_motion.png")["blur"][0]
    sharp = df.filter(pl.Series([n for n, _ in items]) == "astronaut.png")["blur"][0]
    assert blurry < sharp


def test_a_png_that_only_lacks_its_iend_chunk_decodes_as_in_pillow(sample_dir):
    """A download that lost its last 12 bytes: Pillow decodes it (it stops once the rows are
    read), and so does interleaf; a PNG cut inside its image data stays an error in both."""
    png = encode(Image.open(sample_dir / "images" / "astronaut_shuttle.png").convert("RGB"), "PNG")
    assert png.endswith(b"IEND\xaeB`\x82")
    no_iend = png[:-12]
    want = np.asarray(Image.open(io.BytesIO(no_iend)).convert("RGB"))
    assert np.array_equal(image.decode(no_iend), want)
    assert image.stats([no_iend]).get_column("error")[0] is None
    cut = png[: len(png) // 2]
    with pytest.raises(OSError):
        Image.open(io.BytesIO(cut)).load()
    assert image.stats([cut]).get_column("error")[0]["kind"] == "corrupt_image"


def test_a_png_with_wrong_crcs_from_its_image_data_on_decodes_as_in_pillow(sample_dir):
    """Pillow checks the CRC of each chunk before the first IDAT, not of the IDATs or what
    follows them: a PNG whose image-data, later text or IEND CRC is wrong decodes to Pillow's
    pixels (alone or with the IEND cut off); a wrong IHDR CRC is an error in both."""
    pixels = np.asarray(Image.open(sample_dir / "images" / "astronaut_shuttle.png").convert("RGB").resize((96, 64)))
    png = encode(Image.fromarray(pixels), "PNG")
    chunks, at = [], 8
    while at < len(png):
        (n,) = struct.unpack(">I", png[at : at + 4])
        chunks.append([png[at + 4 : at + 8], png[at + 8 : at + 8 + n]])
        at += 12 + n
    # Split the image data over two IDATs and put a text chunk after them.
    kinds = [c[0] for c in chunks]
    assert kinds == [b"IHDR", b"IDAT", b"IEND"], kinds
    data = chunks[1][1]
    chunks[1:2] = [[b"IDAT", data[:100]], [b"IDAT", data[100:]], [b"tEXt", b"k\0v"]]

    def build(bad, iend=True):
        out = b"\x89PNG\r\n\x1a\n"
        for kind, body in chunks if iend else chunks[:-1]:
            crc = zlib.crc32(kind + body) ^ (0xFF if kind + body[:3] in bad else 0)
            out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
        return out

    want = np.asarray(Image.open(io.BytesIO(build(set()))).convert("RGB"))
    first, second = b"IDAT" + data[:3], b"IDAT" + data[100:103]
    for bad, iend in [({first}, True), ({second}, True), ({b"tEXtk\0v"}, True), ({b"IEND"}, True), ({first, second}, False)]:
        damaged = build(bad, iend)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(damaged)).convert("RGB")), want)
        assert np.array_equal(image.decode(damaged), want), (bad, iend)
        assert image.stats([damaged]).get_column("error")[0] is None
    broken = build({b"IHDR" + chunks[0][1][:3]})
    with pytest.raises(OSError):
        Image.open(io.BytesIO(broken)).load()
    assert image.stats([broken]).get_column("error")[0]["kind"] == "corrupt_image"


def test_damaged_and_cut_png_image_data_decodes_exactly_where_pillow_does():
    """Each bit of a PNG's image data flipped in turn, and the file cut at every length through
    its last IDAT and what follows: interleaf decodes exactly the files Pillow decodes (zlib
    failing before the rows are complete refuses the file; a stream that still inflates to the
    right length is read, wrong CRC or not), with Pillow's pixels."""
    import struct

    y, x = np.mgrid[0:40, 0:52]
    for interlace in (False, True):
        arr = np.stack([x * 4, y * 6, x + y], -1).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        good = buf.getvalue()
        if interlace:
            good = _adam7_png(arr)  # Pillow does not write Adam7
        at = 8
        while True:
            n, kind = struct.unpack(">I4s", good[at : at + 8])
            if kind == b"IDAT":
                lo, hi = at + 8, at + 8 + n
                break
            at += 12 + n
        damaged = []
        for i in range(lo, hi):
            bad = bytearray(good)
            bad[i] ^= 0x10
            damaged.append(bytes(bad))
        cut = [good[:k] for k in range(lo, len(good))]
        text = good[:-12] + struct.pack(">I", 3) + b"tEXtk\0v" + struct.pack(">I", zlib.crc32(b"tEXtk\0v")) + good[-12:]
        cut += [text[: len(text) - k] for k in range(12, 30)]
        agree = 0
        for data in damaged + cut:
            try:
                want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            except (OSError, SyntaxError):
                want = None
            err = image.stats([data]).get_column("error")[0]
            if want is None:
                assert err is not None, (interlace, len(data))
            else:
                assert err is None, (interlace, len(data), err)
                assert np.array_equal(image.decode(data), want)
            agree += 1
        assert agree == len(damaged) + len(cut)


def _adam7_png(arr: np.ndarray) -> bytes:
    """An interlaced (Adam7) RGB PNG of ``arr``, filter 0 throughout."""
    import struct

    h, w, _ = arr.shape
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        sub = arr[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\0" + row.tobytes() for row in sub)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_interlaced_flat_gifs_that_the_gif_crate_calls_truncated_decode_as_in_pillow():
    """Pillow writes GIFs interlaced; for some sizes of one flat colour the gif crate stalls in
    its row-by-row deinterlacing ("image truncated"). They decode, equal to Pillow, as do the
    sizes it always read."""
    import imagehash

    from interleaf.dedup import phash

    # The first three failed before; the others did not.
    for w, h in [(73, 42), (23, 16), (139, 72), (40, 40), (64, 17)]:
        im = Image.new("RGB", (w, h), (172, 132, 87)).convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
        data = encode(im, "GIF")
        ref = Image.open(io.BytesIO(data))
        assert np.array_equal(image.decode(data), np.asarray(ref.convert("RGB"))), (w, h)
        assert phash([data]).get_column("hex").to_list() == [str(imagehash.phash(ref))], (w, h)


def test_stats_keep_bad_rows_and_polars_expression_agrees(sample_dir):
    import interleaf.polars as ilp

    cases = bad_inputs(sample_dir)
    good = (sample_dir / "images" / "coffee.jpg").read_bytes()
    items = [good] + [d for d, _ in cases.values()]
    df = image.stats(items)
    assert df["error"][0] is None and df["width"][0] == 400
    kinds = [e and e["kind"] for e in df["error"].to_list()[1:]]
    for (name, (_, kind)), got in zip(cases.items(), kinds):
        if kind is not None:
            assert got == kind, name
    row = df.row(4, named=True)  # the PNG that claims 100000 x 100000
    assert row["format"] == "PNG" and row["bytes"] > 0 and row["blur"] is None
    # Pixels that do not decode keep the size their header gives (what header_only reads), so
    # size rules can judge them.
    head = image.stats(items, header_only=True)
    failed = df.get_column("error").is_not_null() & head.get_column("width").is_not_null()
    assert failed.sum() >= 2  # the truncated JPEG and the oversized PNG at least
    for c in ("width", "height", "aspect_ratio"):
        assert df.filter(failed).get_column(c).equals(head.filter(failed).get_column(c)), c
    lazy = pl.LazyFrame({"image": items}, schema={"image": pl.Binary}).select(ilp.image_stats("image").alias("s")).collect().unnest("s")
    assert lazy.equals(df)


def test_analyze_gives_what_the_separate_calls_give_from_one_decode(sample_dir):
    """Pixels, stats and hashes from ``analyze`` equal ``preprocess``, ``stats`` and the hash
    functions called one by one, on every decode path that shares the RGB pixels (JPEG colour,
    gray and CMYK; PNG RGBA, palette, 16-bit; WebP) and on those that do not (alpha on white,
    EXIF rotation, JPEG draft)."""
    from PIL import Image

    from interleaf.dedup import dhash, phash

    photo = Image.open(sample_dir / "images" / "chelsea.jpg").convert("RGB")
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    items = [
        (sample_dir / "images" / "coffee.jpg").read_bytes(),
        encode(photo.convert("L"), "JPEG"),
        encode(photo.convert("CMYK"), "JPEG"),
        encode(rgba, "PNG"),
        encode(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        encode(Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 200), "PNG"),
        encode(photo, "WEBP"),
        encode(Image.new("RGB", (1, 1), "white"), "PNG"),
        b"not an image",
        None,
    ]
    for opts in ({}, {"alpha": "white"}, {"exif_transpose": True}, {"jpeg_draft": True}):
        r = image.analyze(items, pixels=True, stats=True, hashes=["phash", "dhash"], **opts)
        pixels, errors = image.preprocess(items, **opts)
        assert np.array_equal(r.pixels, pixels), opts
        assert r.table.get_column("error").equals(errors), opts
        stats = image.stats(items)
        assert r.table.select(stats.columns[:-1]).equals(stats.drop("error")), opts
        for kind, fn in (("phash", phash), ("dhash", dhash)):
            want = fn(items)
            assert r.table.get_column(kind).equals(want.get_column("hash").alias(kind)), (opts, kind)
            assert r.table.get_column(f"{kind}_hex").to_list() == want.get_column("hex").to_list(), (opts, kind)
    assert [e and e["kind"] for e in r.table.get_column("error").to_list()[-2:]] == ["unknown_image_format", "missing_image"]
    # Nothing asked: only the error column; a Binary Series goes in as it is.
    only = image.analyze(pl.Series(items, dtype=pl.Binary))
    assert only.pixels is None and only.table.columns == ["error"]
    with pytest.raises(TypeError, match="Binary"):
        image.analyze(pl.Series(["a string"]))
    with pytest.raises(ValueError, match="hashes are"):
        image.analyze(items, hashes=["md5"])
    # One name is one hash, not its letters.
    assert image.analyze(items, hashes="phash").table.get_column("phash").equals(r.table.get_column("phash"))
    with pytest.raises(ValueError, match="out receives CLIP pixels"):
        image.analyze(items, out=np.zeros((len(items), 3, 224, 224), np.float32))


def test_preprocess_config_is_checked_once_in_rust_with_clear_errors():
    cfg = PreprocessConfig.open_clip(336)
    assert cfg.output_shape == (336, 336) and cfg.resample == 3 and cfg.mean == pytest.approx(OPENAI_CLIP_MEAN)
    assert cfg == PreprocessConfig.open_clip(336) != PreprocessConfig.open_clip(224)
    assert "shortest_edge=336" in repr(cfg)
    cases = [
        (dict(size=(20000, 20000), mode="squash", crop=None), "must be in \\[1, 4096\\]"),
        (dict(shortest_edge=0), "must be in \\[1, 4096\\]"),
        (dict(mode="shortest", crop=None), "different shapes"),
        (dict(mode="sideways"), "mode must be"),
        (dict(resample=9), "resample 9"),
        (dict(std=(0.0, 1.0, 1.0)), "std"),
        (dict(mean=None), "mean and std go together"),
        (dict(rescale="multiply", rescale_factor=-1.0), "rescale_factor"),
        (dict(size=(-1, 3), mode="squash", crop=None), "size must be in \\[1, 4096\\], got \\(-1, 3\\)"),
        (dict(shortest_edge=-5), "shortest_edge must be in \\[1, 4096\\]"),
        (dict(fill=300), "fill must be in \\[0, 255\\]"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            PreprocessConfig(**kwargs)
    with pytest.raises(ValueError, match="4096"):
        image.preprocess([b"x"], size=20000)
    with pytest.raises(ValueError, match="max_pixels must be an int >= 1"):
        image.preprocess([b"x"], max_pixels=0)


def test_thumbnails_fit_the_box_and_errors_are_values(sample_dir):
    from PIL import Image

    files = sorted((sample_dir / "images").iterdir())
    data = [f.read_bytes() for f in files] + [b"not an image", None]
    t = image.thumbnails(data, 64)
    assert t.columns == ["thumbnail", "error"] and t.height == len(data)
    for f, thumb in zip(files, t.get_column("thumbnail").to_list()[: len(files)], strict=True):
        src = Image.open(f)
        got = Image.open(io.BytesIO(thumb))
        assert got.format == "JPEG" and max(got.size) == min(64, max(src.size))
        # Aspect kept to within a pixel's rounding.
        assert abs(got.size[0] / got.size[1] - src.size[0] / src.size[1]) < 2 / min(got.size)
    assert t.get_column("error").struct.field("kind").to_list()[-2:] == ["unknown_image_format", "missing_image"]
    with pytest.raises(ValueError, match="max_side"):
        image.thumbnails(data, 0)


def test_header_only_stats_match_the_decoded_header_fields(sample_dir):
    data = [f.read_bytes() for f in sorted((sample_dir / "images").iterdir())]
    full = image.stats(data)
    head = image.stats(data, header_only=True)
    cols = ["width", "height", "aspect_ratio", "format", "mode", "frames", "bytes"]
    assert head.select(cols).equals(full.select(cols))
    assert head.get_column("blur").null_count() == head.height and head.get_column("error").null_count() == head.height
    bad = image.stats([b"", b"not an image", b"\xff\xd8\xff\xe0" + b"\x00" * 8, data[0]], header_only=True, max_pixels=100)
    assert bad.get_column("error").struct.field("kind").to_list() == ["empty_image", "unknown_image_format", "corrupt_image", "image_too_large"]


def _offset_gif(screen: tuple[int, int], at: tuple[int, int], frame: np.ndarray, colors: int, **save: object) -> bytes:
    """A Pillow-written one-frame GIF whose logical screen is ``screen`` and whose frame sits at
    ``at`` (patched in place): the uncovered pixels are not in the file."""
    im = Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE, colors=colors)
    d = bytearray(encode(im, "GIF", **save))
    struct.pack_into("<HH", d, 6, *screen)
    d[11] = 2  # a background index Pillow does not use for frame 0
    pos = 13 + (3 * (1 << ((d[10] & 7) + 1)) if d[10] & 0x80 else 0)
    while d[pos] == 0x21:  # extensions
        pos += 2
        while d[pos]:
            pos += d[pos] + 1
        pos += 1
    assert d[pos] == 0x2C
    struct.pack_into("<HH", d, pos + 1, *at)
    return bytes(d)


def test_a_gif_frame_smaller_than_its_screen_is_filled_as_pillow_fills_it():
    """Pillow fills frame 0's canvas with palette index 0, or the transparency index where the
    frame has one; the gif crate left those pixels transparent black. A frame reaching past the
    screen (a 0x0 screen, say) grows the image to hold it, as Pillow does (it was cut to the
    screen: a 0x0 image hashed 0, a duplicate of every other). Decoding, sizes and the hashes
    equal Pillow's and imagehash's."""
    import imagehash

    from interleaf.dedup import ahash, dhash, phash

    rng = np.random.default_rng(7)
    blobs = []
    for k in range(24):
        fw, fh = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        sw, sh = fw + int(rng.integers(0, 30)), fh + int(rng.integers(0, 30))
        frame = np.kron(rng.integers(0, 256, (fh // 4 + 1, fw // 4 + 1, 3), dtype=np.uint8), np.ones((4, 4, 1), np.uint8))[:fh, :fw]
        save = {"transparency": int(rng.integers(0, 3))} if k % 2 else {}
        if k % 3 == 0:
            save["interlace"] = True
        at = (int(rng.integers(0, sw - fw + 1)), int(rng.integers(0, sh - fh + 1)))
        if k % 5 == 4:  # sticking out of the screen
            at = (sw - fw + int(rng.integers(1, 6)), int(rng.integers(0, 6)))
        if k == 23:
            sw = sh = 0
        blobs.append(_offset_gif((sw, sh), at, frame, [2, 4, 16, 256][k % 4], **save))
    hashes = {"phash": (phash, imagehash.phash), "dhash": (dhash, imagehash.dhash), "ahash": (ahash, imagehash.average_hash)}
    got = {k: f(blobs).get_column("hex").to_list() for k, (f, _) in hashes.items()}
    sizes = list(zip(image.stats(blobs).get_column("width").to_list(), image.stats(blobs, header_only=True).get_column("height").to_list(), strict=True))
    for i, data in enumerate(blobs):
        ref = Image.open(io.BytesIO(data))
        assert sizes[i] == ref.size, i
        assert np.array_equal(image.decode(data), np.asarray(ref.convert("RGB"))), i
        assert np.array_equal(image.decode(data, alpha="white"), np.asarray(Image.alpha_composite(Image.new("RGBA", ref.size, (255, 255, 255, 255)), ref.convert("RGBA")).convert("RGB"))), i
        for k, (_, ref_hash) in hashes.items():
            assert got[k][i] == str(ref_hash(ref)), (k, i)
