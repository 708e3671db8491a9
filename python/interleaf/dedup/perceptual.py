"""Perceptual hashes identical to imagehash 4.3, and near-duplicate search within a Hamming
radius (multi-index hashing, not O(n^2)). Images are decoded in Rust, in parallel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from interleaf import _native

KINDS = ("ahash", "dhash", "phash")


def check_draft(draft: int | None) -> int | None:
    """``draft`` as given, or ValueError unless it is None or an int >= 1."""
    if draft is not None and (isinstance(draft, bool) or not isinstance(draft, int) or draft < 1):
        raise ValueError(f"draft must be a size in pixels >= 1, or None; got {draft!r}")
    return draft


def _hash(kind: str, images: Sequence[bytes | None], hash_size: int, return_errors: bool, threads: int | None, max_pixels: int | None, draft: int | None) -> Any:
    check_draft(draft)
    hexes, _, errors = _native.perceptual_hashes(list(images), kind, hash_size, threads, max_pixels, draft)
    if return_errors:
        return hexes, [None if e is None else {"kind": e[0], "message": e[1]} for e in errors]
    return hexes


def phash(
    images: Sequence[bytes | None],
    hash_size: int = 8,
    *,
    return_errors: bool = False,
    threads: int | None = None,
    max_pixels: int | None = None,
    draft: int | None = None,
):
    """``str(imagehash.phash(Image.open(BytesIO(b)), hash_size))`` for each encoded image.

    Grayscale as Pillow's ``convert("L")``, Pillow's LANCZOS resize to ``4 * hash_size``
    square, 2-D DCT-II, top-left ``hash_size`` square, bit = value > median; hex row-major.
    An image that does not decode gives None; with ``return_errors=True`` the result is
    ``(hashes, errors)`` where ``errors[i]`` is None or ``{"kind", "message"}`` (kinds:
    ``empty_image``, ``unknown_image_format``, ``corrupt_image``, ``truncated_image``,
    ``image_too_large``, ``missing_image``). ``max_pixels`` defaults to Pillow's 89,478,485.

    ``draft`` (pixels, default None = exact): decode JPEGs the way Pillow's
    ``im.draft("L", (draft, draft))`` does, straight to luma and shrunk 2, 4 or 8 times in the
    DCT domain while both sides stay >= ``draft``. Several times faster on photos; the hash is
    then ``str(imagehash.phash(im))`` of that drafted image, which differs from the full-decode
    hash by a few bits on some images (``benches/phash.py`` measures how often). Other formats
    are decoded in full.
    """
    return _hash("phash", images, hash_size, return_errors, threads, max_pixels, draft)


def dhash(
    images: Sequence[bytes | None],
    hash_size: int = 8,
    *,
    return_errors: bool = False,
    threads: int | None = None,
    max_pixels: int | None = None,
    draft: int | None = None,
):
    """``str(imagehash.dhash(...))``: LANCZOS to ``(hash_size + 1) x hash_size``, bit = right
    pixel > left pixel. Errors and ``draft`` as in :func:`phash`."""
    return _hash("dhash", images, hash_size, return_errors, threads, max_pixels, draft)


def ahash(
    images: Sequence[bytes | None],
    hash_size: int = 8,
    *,
    return_errors: bool = False,
    threads: int | None = None,
    max_pixels: int | None = None,
    draft: int | None = None,
):
    """``str(imagehash.average_hash(...))``: LANCZOS to ``hash_size`` square, bit = pixel > mean.
    Errors and ``draft`` as in :func:`phash`."""
    return _hash("ahash", images, hash_size, return_errors, threads, max_pixels, draft)


def hex_to_u64(hexes: Sequence[str | None]) -> list[int | None]:
    """64-bit hex hashes (hash_size 8) to integers, None kept."""
    return [None if h is None else int(h, 16) for h in hexes]


def near_duplicates(hashes: Sequence[str | int | None], radius: int = 5) -> dict[str, np.ndarray]:
    """Pairs of 64-bit hashes within Hamming ``radius`` (default 5, MMC4's pHash radius) and
    clusters, by multi-index hashing: ``radius + 1`` bit ranges, exact-match buckets, then
    verification, so the cost grows with the number of true candidates, not n^2.

    Args:
        hashes: hex strings (hash_size 8) or ints; None entries join nothing.
    Returns:
        ``{"i", "j", "distance"}``: int64 arrays of the pairs (i < j), and ``"representative"``:
        for each hash the smallest index in its cluster.
    """
    ints = [h if h is None or isinstance(h, int) else int(h, 16) for h in hashes]
    if any(h is not None and not 0 <= h < 1 << 64 for h in ints):
        raise ValueError("hashes must be 64-bit (hash_size 8)")
    i, j, d, reps = _native.hamming_pairs(ints, radius)
    return {"i": i, "j": j, "distance": d, "representative": reps}
