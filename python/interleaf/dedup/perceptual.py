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
        decode has null hashes and its error. ``max_pixels`` defaults to 89,478,485 (Pillow's ``MAX_IMAGE_PIXELS``, where Pillow only warns; a larger image is an ``image_too_large`` error here).

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
    if isinstance(hashes, np.ndarray) and hashes.dtype.kind not in "u" and hashes.size:
        # A float array would be truncated, a negative int wrap: only unsigned hashes are taken.
        raise TypeError(f"hashes must be a uint64 array (the hash column of phash), not {hashes.dtype}")
    if isinstance(hashes, np.ndarray) and hashes.ndim != 1:
        raise ValueError(f"hashes must be 1-D, got shape {hashes.shape}")
    try:
        col = hashes if isinstance(hashes, pl.Series) else pl.Series("hash", hashes, dtype=pl.UInt64)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as e:
        raise TypeError(f"hashes must be unsigned 64-bit integers (or None): {e}") from None
    if isinstance(col.dtype, pl.Struct) and "hash" in [f.name for f in col.dtype.fields]:
        col = col.struct.field("hash")  # interleaf.polars.phash's {hash, error}, as hamming takes it
    if col.dtype != pl.UInt64:
        raise TypeError(f"hashes must be UInt64, not {col.dtype}")
    return col


def hash_clusters(hashes: pl.Series | np.ndarray | Sequence[int | None], radius: int = 5, *, threads: int | None = None) -> tuple[np.ndarray, int]:
    """Clusters of 64-bit hashes within Hamming ``radius`` of each other (transitively),
    without listing pairs: equal hashes are grouped first and only distinct values are
    searched, so memory and time grow with the number of distinct hashes, not with the square
    of a common one's copies (a blank placeholder image shared by 20,000 documents is one entry).

    Args:
        threads: threads for the search (default: interleaf's, ``interleaf.set_threads``).
    Returns:
        ``(representative, pairs)``: for each hash the smallest index in its cluster (int64; a
        null hash is its own), and the number of pairs of distinct hash values within radius.
    """
    from interleaf._checks import int_arg

    int_arg("threads", threads, 1, 512, optional=True)
    return _native.hamming_clusters(_hash_column(hashes, radius), radius, threads)


def near_duplicates(
    hashes: pl.Series | np.ndarray | Sequence[int | None], radius: int = 5, backend: str = "mih", *, threads: int | None = None
) -> dict[str, np.ndarray]:
    """Pairs of 64-bit hashes within Hamming ``radius`` (default 5, MMC4's pHash radius) and
    clusters, by multi-index hashing: the hash is cut into bit ranges, each with a bucket table,
    and only the hashes in the buckets of values close to a hash's own are verified. The number
    of ranges follows the set's size: ``radius + 1`` exact-match ranges for small sets, fewer and
    wider ones searched within ``radius // ranges`` bits for large ones (at radius 5: 3 ranges of
    21-22 bits within 1 bit from 262,144 hashes), so the work per hash grows slowly with the set
    (memory latency) instead of in proportion to it.

    Args:
        hashes: UInt64 hashes (the ``hash`` column of :func:`phash`, the ``{hash, error}``
            struct of :func:`interleaf.polars.phash`, a uint64 array, or ints); nulls join
            nothing.
        backend: ``"mih"`` (interleaf's multi-index hashing in Rust) or ``"faiss"`` (FAISS's
            ``IndexBinaryMultiHash`` with ``radius + 1`` exact-match sub-hashes and a range
            search: the same pairs, by the pigeonhole argument both rest on).
        threads: threads for the ``"mih"`` search (default: interleaf's, ``interleaf.set_threads``);
            FAISS uses its own OpenMP threads.
    Returns:
        ``{"i", "j", "distance"}``: int64 arrays of the pairs (i < j, sorted), and
        ``"representative"``: for each hash the smallest index in its cluster. Every pair is
        listed, so n copies of one hash give n(n-1)/2 pairs: use :func:`hash_clusters` when only
        clusters matter.
    """
    from interleaf._checks import choice_arg, int_arg

    choice_arg("backend", backend, ("mih", "faiss"))
    int_arg("threads", threads, 1, 512, optional=True)
    col = _hash_column(hashes, radius)
    if backend == "mih":
        i, j, d, reps = _native.hamming_pairs(col, radius, threads)
        return {"i": i, "j": j, "distance": d, "representative": reps}
    return _faiss_pairs(col, radius)


def _faiss_pairs(col: pl.Series, radius: int) -> dict[str, np.ndarray]:
    found = HashIndex(col, radius, backend="faiss").search(col)
    keep = found["query"] < found["index"]
    i, j, d = found["query"][keep], found["index"][keep], found["distance"][keep]
    return {"i": i, "j": j, "distance": d, "representative": _components(col.len(), i, j)}


class HashIndex:
    """Hamming range search over a fixed set of 64-bit hashes: which indexed hashes lie within
    ``radius`` of each query (decontamination against an evaluation set's hashes, new shards
    against an already deduplicated corpus). :func:`near_duplicates` is the all-pairs form.

    Args:
        hashes: the UInt64 hashes to index (the ``hash`` column of :func:`phash`, a uint64
            array, or ints); a null is never found. Results name them by position.
        radius: the largest search radius (default 5, MMC4's pHash radius); the index splits
            the hash into bit ranges, ``radius + 1`` exact-match ones for small sets and fewer,
            wider ones for large sets (see :func:`near_duplicates`).
        backend: ``"mih"`` (interleaf's multi-index hashing in Rust: a bucket table per bit
            range, each bucket scanned sequentially, queries in parallel) or ``"faiss"``
            (FAISS's ``IndexBinaryMultiHash`` and its range search, its tables laid out for
            the set's size by :func:`faiss_layout`). Same results.
        threads: threads for building and searching (``"mih"``; default: interleaf's).

    Memory (``"mih"``): 12 bytes per hash and bit range, so at radius 5 72 bytes per hash for
    small sets and 36 for large ones (360 MB for 10 million hashes), plus at most 16 MiB of
    bucket offsets per range.
    """

    def __init__(self, hashes: pl.Series | np.ndarray | Sequence[int | None], radius: int = 5, *, backend: str = "mih", threads: int | None = None) -> None:
        from interleaf._checks import choice_arg, int_arg

        choice_arg("backend", backend, ("mih", "faiss"))
        int_arg("threads", threads, 1, 512, optional=True)
        col = _hash_column(hashes, radius)
        self.radius, self.backend, self.threads, self._len = radius, backend, threads, col.len()
        if backend == "mih":
            self._mih = _native.HammingIndex(col, radius, threads)
        else:
            import faiss

            self._present = np.flatnonzero(col.is_not_null().to_numpy())
            nhash, bits, nflip = faiss_layout(len(self._present), radius)
            self._faiss = faiss.IndexBinaryMultiHash(64, nhash, bits)
            self._faiss.nflip = nflip
            if len(self._present):
                self._faiss.add(_codes(col.drop_nulls()))

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"HashIndex({self._len:,} hashes, radius={self.radius}, backend={self.backend!r})"

    def search(self, queries: pl.Series | np.ndarray | Sequence[int | None], radius: int | None = None) -> dict[str, np.ndarray]:
        """Every indexed hash within ``radius`` (default and at most the index's) of each query.

        Returns:
            ``{"query", "index", "distance"}``: int64 arrays, one entry per (query, indexed
            hash) pair within the radius, sorted by query then index; a null query finds
            nothing.
        """
        r = self.radius if radius is None else radius
        col = _hash_column(queries, r)
        if r > self.radius:
            raise ValueError(f"radius {r} is above the index's radius {self.radius} (build the index for the largest radius you search)")
        if self.backend == "mih":
            q, i, d = self._mih.search(col, r, self.threads)
            return {"query": q, "index": i, "distance": d}
        qpos = np.flatnonzero(col.is_not_null().to_numpy())
        if not len(qpos) or not len(self._present):
            empty = np.zeros(0, np.int64)
            return {"query": empty, "index": empty.copy(), "distance": empty.copy()}
        lims, dist, found = self._faiss.range_search(_codes(col.drop_nulls()), r + 1)  # FAISS keeps distances < r + 1
        q = qpos[np.repeat(np.arange(len(qpos)), np.diff(lims.astype(np.int64)))]
        i = self._present[found.astype(np.int64)]
        order = np.lexsort((i, q))
        return {"query": q[order], "index": i[order], "distance": dist.astype(np.int64)[order]}


def faiss_layout(n: int, radius: int) -> tuple[int, int, int]:
    """``(nhash, bits, nflip)`` for FAISS's ``IndexBinaryMultiHash`` over ``n`` 64-bit hashes:
    ``nhash`` tables keyed by ``bits`` bits each, probed with up to ``nflip`` bits flipped. A
    hash within ``radius`` matches some table's key within ``nflip`` flips whenever ``nhash *
    (nflip + 1) > radius`` (pigeonhole), so every layout considered finds every neighbour; the
    one chosen has the fewest expected bucket probes and entries scanned per query, ``nhash *
    probes * (1 + n / 2**bits)``: ``radius + 1`` exact-match tables for small sets, fewer and
    wider ones with flips for large ones (at radius 5: 6 x 10 bits up to about 20,000 hashes,
    3 x 21 bits with one flip at 10 million), as :class:`HashIndex`'s own index chooses."""
    from math import comb

    best: tuple[float, int, int, int] | None = None
    for bits in range(max(1, 64 // (radius + 1)), 65):
        nhash = 64 // bits
        nflip = -(-(radius + 1) // nhash) - 1
        probes = sum(comb(bits, k) for k in range(nflip + 1))
        cost = nhash * probes * (1 + n / 2.0**bits)
        if best is None or cost < best[0]:
            best = (cost, nhash, bits, nflip)
    assert best is not None
    return best[1], best[2], best[3]


def _codes(values: pl.Series) -> np.ndarray:
    """Non-null UInt64 hashes as FAISS binary codes (8 bytes each)."""
    return np.ascontiguousarray(values.to_numpy().astype(np.uint64)).view(np.uint8).reshape(-1, 8)


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
