"""Perceptual hashes identical to imagehash 4.3, and near-duplicate search within a Hamming
radius (multi-index hashing, not O(n^2)). Images are decoded in Rust, in parallel, through
the same single-decode path as the rest of :mod:`interleaf.image` (:func:`interleaf.image.analyze`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from interleaf import _native
from interleaf.image import ImageInput, analyze, check_draft

KINDS = ("ahash", "dhash", "phash")


def _hash(kind: str, images: ImageInput, hash_size: int, threads: int | None, max_pixels: int | None, draft: int | None) -> pl.DataFrame:
    if isinstance(hash_size, bool) or not isinstance(hash_size, int) or not 2 <= hash_size <= 256:
        raise ValueError(f"hash_size must be an int in [2, 256], got {hash_size!r}")
    table = analyze(images, hashes=[kind], hash_size=hash_size, draft=check_draft(draft), threads=threads, max_pixels=max_pixels).table
    return table.select(pl.col(kind).alias("hash"), pl.col(f"{kind}_hex").alias("hex"), "error")


def phash(images: ImageInput, hash_size: int = 8, *, threads: int | None = None, max_pixels: int | None = None, draft: int | None = None) -> pl.DataFrame:
    """imagehash's ``phash`` of each encoded image, one row per image in input order.

    Grayscale as Pillow's ``convert("L")``, Pillow's LANCZOS resize to ``4 * hash_size``
    square, 2-D DCT-II, top-left ``hash_size`` square, bit = value > median; hex row-major.

    Returns:
        A DataFrame: ``hex`` (String, ``str(imagehash.phash(Image.open(BytesIO(b)),
        hash_size))``), ``hash`` (UInt64, the bits as a big-endian number: the whole hash at
        the default hash_size 8, its first 64 bits above) and ``error`` (null, or ``{kind,
        message}``: ``empty_image``, ``unknown_image_format``, ``corrupt_image``,
        ``truncated_image``, ``image_too_large``, ``missing_image``). An image that does not
        decode has null hashes and its error. ``max_pixels`` defaults to Pillow's 89,478,485.

    ``draft`` (pixels, default None = exact): decode JPEGs the way Pillow's
    ``im.draft("L", (draft, draft))`` does, straight to luma and shrunk 2, 4 or 8 times in the
    DCT domain while both sides stay >= ``draft``. Several times faster on photos; the hash is
    then ``str(imagehash.phash(im))`` of that drafted image, which differs from the full-decode
    hash by a few bits on some images (``benches/phash.py`` measures how often). Other formats
    are decoded in full.
    """
    return _hash("phash", images, hash_size, threads, max_pixels, draft)


def dhash(images: ImageInput, hash_size: int = 8, *, threads: int | None = None, max_pixels: int | None = None, draft: int | None = None) -> pl.DataFrame:
    """``str(imagehash.dhash(...))``: LANCZOS to ``(hash_size + 1) x hash_size``, bit = right
    pixel > left pixel. Output, errors and ``draft`` as in :func:`phash`."""
    return _hash("dhash", images, hash_size, threads, max_pixels, draft)


def ahash(images: ImageInput, hash_size: int = 8, *, threads: int | None = None, max_pixels: int | None = None, draft: int | None = None) -> pl.DataFrame:
    """``str(imagehash.average_hash(...))``: LANCZOS to ``hash_size`` square, bit = pixel > mean.
    Output, errors and ``draft`` as in :func:`phash`."""
    return _hash("ahash", images, hash_size, threads, max_pixels, draft)


def _hash_column(hashes: pl.Series | np.ndarray | Sequence[int | None], radius: int) -> pl.Series:
    if isinstance(radius, bool) or not isinstance(radius, int) or not 0 <= radius < 64:
        raise ValueError(f"radius must be an int in [0, 63], got {radius!r}")
    col = hashes if isinstance(hashes, pl.Series) else pl.Series("hash", hashes, dtype=pl.UInt64)
    if col.dtype != pl.UInt64:
        raise TypeError(f"hashes must be UInt64, not {col.dtype}")
    return col


def hash_clusters(hashes: pl.Series | np.ndarray | Sequence[int | None], radius: int = 5) -> tuple[np.ndarray, int]:
    """Clusters of 64-bit hashes within Hamming ``radius`` of each other (transitively),
    without listing pairs: equal hashes are grouped first and only distinct values are
    searched, so memory and time grow with the number of distinct hashes, not with the square
    of a common one's copies (a blank placeholder image shared by 20,000 documents is one entry).

    Returns:
        ``(representative, pairs)``: for each hash the smallest index in its cluster (int64; a
        null hash is its own), and the number of pairs of distinct hash values within radius.
    """
    return _native.hamming_clusters(_hash_column(hashes, radius), radius)


def near_duplicates(hashes: pl.Series | np.ndarray | Sequence[int | None], radius: int = 5, backend: str = "mih") -> dict[str, np.ndarray]:
    """Pairs of 64-bit hashes within Hamming ``radius`` (default 5, MMC4's pHash radius) and
    clusters, by multi-index hashing: ``radius + 1`` bit ranges, exact-match buckets, then
    verification, so the cost grows with the number of true candidates, not n^2.

    Args:
        hashes: UInt64 hashes (the ``hash`` column of :func:`phash`, a uint64 array, or ints);
            nulls join nothing.
        backend: ``"mih"`` (interleaf's multi-index hashing in Rust) or ``"faiss"`` (FAISS's
            ``IndexBinaryMultiHash`` with ``radius + 1`` exact-match sub-hashes and a range
            search: the same pairs, by the pigeonhole argument both rest on).
    Returns:
        ``{"i", "j", "distance"}``: int64 arrays of the pairs (i < j, sorted), and
        ``"representative"``: for each hash the smallest index in its cluster. Every pair is
        listed, so n copies of one hash give n(n-1)/2 pairs: use :func:`hash_clusters` when only
        clusters matter.
    """
    from interleaf._checks import choice_arg

    choice_arg("backend", backend, ("mih", "faiss"))
    col = _hash_column(hashes, radius)
    if backend == "mih":
        i, j, d, reps = _native.hamming_pairs(col, radius)
        return {"i": i, "j": j, "distance": d, "representative": reps}
    return _faiss_pairs(col, radius)


def _faiss_pairs(col: pl.Series, radius: int) -> dict[str, np.ndarray]:
    import faiss

    n = col.len()
    present = np.flatnonzero(col.is_not_null().to_numpy())
    values = col.drop_nulls().to_numpy().astype(np.uint64)
    i_out, j_out, d_out = [np.zeros(0, np.int64)] * 3
    if len(values):
        codes = np.ascontiguousarray(values).view(np.uint8).reshape(-1, 8)
        parts = radius + 1
        index = faiss.IndexBinaryMultiHash(64, parts, 64 // parts)
        index.nflip = 0
        index.add(codes)
        lims, dist, found = index.range_search(codes, radius + 1)  # FAISS keeps distances < radius + 1
        q = np.repeat(np.arange(len(values)), np.diff(lims.astype(np.int64)))
        keep = q < found
        qi, qj, qd = present[q[keep]], present[found.astype(np.int64)[keep]], dist[keep].astype(np.int64)
        order = np.lexsort((qj, qi))
        i_out, j_out, d_out = qi[order], qj[order], qd[order]
    return {"i": i_out, "j": j_out, "distance": d_out, "representative": _components(n, i_out, j_out)}


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The smallest index of each item's connected component over the pairs (min-label
    propagation with pointer jumping)."""
    label = np.arange(n, dtype=np.int64)
    if not len(i):
        return label
    while True:
        before = label.copy()
        low = np.minimum(label[i], label[j])
        np.minimum.at(label, i, low)
        np.minimum.at(label, j, low)
        while True:
            jumped = label[label]
            if (jumped == label).all():
                break
            label = jumped
        if (label == before).all():
            return label
