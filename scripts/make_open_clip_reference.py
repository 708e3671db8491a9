"""Builds tests/fixtures/open_clip_preprocess.npz: open_clip's own inference preprocessing of a
set of encoded images, so the tests can compare ``interleaf.image.preprocess`` with
``PreprocessConfig.open_clip(size, mode=...)`` against real open_clip exactly, without torch.

For each image, each ``resize_mode`` (shortest, longest, squash) and each size, the output of
``open_clip.transform.image_transform(size, is_train=False, mean=OPENAI_DATASET_MEAN,
std=OPENAI_DATASET_STD, resize_mode=mode)`` (bicubic, fill 0) applied to
``Image.open(data).convert("RGB")`` -- interleaf's decoding contract -- is recorded:

- at ``FULL_SIZE`` (64 px, every resize is then a downscale) as float32 arrays;
- at ``HASH_SIZE`` (224 px, open_clip's default, mostly upscales) as the sha256 of the float32
  C-order bytes (the full arrays would take ~50 MB), with float64 sums for a readable failure.

Images: every file of python/interleaf/data/sample/images, plus generated edge cases (blank
white and black, 1x1 RGB and L, 2x1, 10x400 and 400x10 strips as PNG and JPEG, RGBA with
transparency, palette, palette with a transparent index, 16-bit grayscale). Their encoded bytes
are stored (one uint8 buffer plus offsets), so the test reads exactly what open_clip was given.

open_clip converts to RGB *after* resizing and cropping (as OpenAI's CLIP does), so an image
that is not RGB when opened (L, RGBA, P, I;16) can come out differently when passed to
open_clip without ``.convert("RGB")``: Pillow resizes RGBA premultiplied, P with NEAREST, and
I;16 at 16 bits before clipping. Those outputs are recorded too (``raw_*``, only where the mode
is not RGB), as documentation of that divergence; interleaf follows the convert-first
contract.

Keys: ``names``, ``data`` + ``offsets`` (image i is ``data[offsets[i]:offsets[i+1]]``),
``pil_modes``, ``modes``, ``full_size``, ``pixels`` (modes x images x 3 x 64 x 64 float32),
``hash_size``, ``sha256`` / ``sum`` / ``abs_sum`` (modes x images), ``raw_index``,
``raw_pixels``, ``raw_sha256``, and the versions (``open_clip_version``, ``torch_version``,
``torchvision_version``, ``pillow_version``).

Rerun (torch, torchvision, open_clip_torch and pillow==13.0.0, e.g. in a virtualenv; nothing is
downloaded)::

    /tmp/oc/venv/bin/python scripts/make_open_clip_reference.py
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "python" / "interleaf" / "data" / "sample" / "images"
OUT = ROOT / "tests" / "fixtures" / "open_clip_preprocess.npz"
MODES = ("shortest", "longest", "squash")
FULL_SIZE = 64
HASH_SIZE = 224
SEED = 20261122


def encode(im, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def edge_cases() -> list[tuple[str, bytes]]:
    """Small generated images with deterministic content: noise on a gradient, so every resize
    kernel tap matters."""
    from PIL import Image

    rng = np.random.default_rng(SEED)

    def rgb(w: int, h: int) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 0 * x], -1)
        return np.clip(base + rng.integers(-60, 61, (h, w, 3)), 0, 255).astype(np.uint8)

    out = [
        ("white_300x200.png", encode(Image.new("RGB", (300, 200), (255, 255, 255)), "PNG")),
        ("black_64x64.png", encode(Image.new("RGB", (64, 64), (0, 0, 0)), "PNG")),
        ("rgb_1x1.png", encode(Image.new("RGB", (1, 1), (200, 30, 90)), "PNG")),
        ("gray_1x1.png", encode(Image.new("L", (1, 1), 77), "PNG")),
        ("rgb_2x1.png", encode(Image.fromarray(np.array([[[250, 10, 40], [5, 120, 230]]], np.uint8)), "PNG")),
    ]
    tall, wide = rgb(10, 400), rgb(400, 10)
    out += [
        ("tall_10x400.png", encode(Image.fromarray(tall), "PNG")),
        ("wide_400x10.png", encode(Image.fromarray(wide), "PNG")),
        ("tall_10x400.jpg", encode(Image.fromarray(tall), "JPEG", quality=90)),
        ("wide_400x10.jpg", encode(Image.fromarray(wide), "JPEG", quality=90)),
    ]
    # RGBA: alpha from opaque to fully transparent; transparent pixels keep their colour.
    px = rgb(120, 90)
    alpha = np.tile(np.linspace(255, 0, 120).astype(np.uint8), (90, 1))
    alpha[:, 100:] = 0
    out.append(("rgba_120x90.png", encode(Image.fromarray(np.dstack([px, alpha]), "RGBA"), "PNG")))
    # Palette, from a noisy gradient, with and without a transparent index.
    pal = Image.fromarray(rgb(97, 61)).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    out.append(("palette_97x61.png", encode(pal, "PNG")))
    out.append(("palette_trns_97x61.png", encode(pal, "PNG", transparency=3)))
    # 16-bit grayscale spanning 0..65535 (convert("RGB") clips at 255).
    y, x = np.mgrid[0:50, 0:70]
    g16 = ((x * 50 + y) * 65535 / (69 * 50 + 49)).astype(np.uint16)
    g16[::7, ::5] = rng.integers(0, 300, g16[::7, ::5].shape)
    out.append(("gray16_70x50.png", encode(Image.fromarray(g16), "PNG")))
    return out


def main() -> int:
    import open_clip
    import PIL
    import torch
    import torchvision
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.transform import image_transform
    from PIL import Image

    if PIL.__version__ != "13.0.0":
        raise SystemExit(f"needs pillow==13.0.0 (the test extra's), found {PIL.__version__}")
    items = [(p.name, p.read_bytes()) for p in sorted(SAMPLE.iterdir())] + edge_cases()
    names = [n for n, _ in items]
    modes_of = [Image.open(io.BytesIO(b)).mode for _, b in items]

    def run(size: int, mode: str, convert: bool) -> list[np.ndarray]:
        t = image_transform(size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD, resize_mode=mode)
        out = []
        for _, data in items:
            im = Image.open(io.BytesIO(data))
            if convert:
                im = im.convert("RGB")
            x = t(im)
            assert x.dtype == torch.float32 and tuple(x.shape) == (3, size, size)
            out.append(np.ascontiguousarray(x.numpy()))
        return out

    def digest(a: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()

    pixels = np.stack([np.stack(run(FULL_SIZE, m, True)) for m in MODES])
    big = [run(HASH_SIZE, m, True) for m in MODES]
    sha = np.array([[digest(a) for a in row] for row in big])
    sums = np.array([[a.astype(np.float64).sum() for a in row] for row in big])
    abs_sums = np.array([[np.abs(a.astype(np.float64)).sum() for a in row] for row in big])

    # Without convert("RGB") first: only where the opened mode is not RGB.
    raw_index = np.array([i for i, m in enumerate(modes_of) if m != "RGB"], np.int64)
    raw_full = [run(FULL_SIZE, m, False) for m in MODES]
    raw_big = [run(HASH_SIZE, m, False) for m in MODES]
    raw_pixels = np.stack([np.stack([row[i] for i in raw_index]) for row in raw_full])
    raw_sha = np.array([[digest(row[i]) for i in raw_index] for row in raw_big])

    blobs = [b for _, b in items]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        names=np.array(names),
        pil_modes=np.array(modes_of),
        data=np.frombuffer(b"".join(blobs), np.uint8),
        offsets=offsets,
        modes=np.array(MODES),
        full_size=np.int64(FULL_SIZE),
        pixels=pixels.astype(np.float32),
        hash_size=np.int64(HASH_SIZE),
        sha256=sha,
        sum=sums,
        abs_sum=abs_sums,
        raw_index=raw_index,
        raw_pixels=raw_pixels.astype(np.float32),
        raw_sha256=raw_sha,
        open_clip_version=np.array(open_clip.__version__),
        torch_version=np.array(torch.__version__),
        torchvision_version=np.array(torchvision.__version__),
        pillow_version=np.array(PIL.__version__),
    )
    print(f"{OUT.relative_to(ROOT)}: {len(items)} images, {OUT.stat().st_size / 1e3:.0f} kB")
    for j, i in enumerate(raw_index):
        same = [bool(np.array_equal(raw_full[k][i], pixels[k, i])) and raw_sha[k, j] == sha[k, i] for k in range(len(MODES))]
        print(f"  {names[i]} ({modes_of[i]}): open_clip without convert('RGB') first equals convert-first for {dict(zip(MODES, same))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
