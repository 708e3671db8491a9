"""MinHash signatures and LSH clustering (datasketch-compatible).

``MinHasher(mode="datasketch")`` gives rows bit-identical to ``datasketch.MinHash(num_perm,
seed=seed, scheme=scheme)`` updated with ``shingles(text, n, unit)`` encoded as UTF-8.
``mode="fast"`` is interleaf's own scheme (one 128-bit-multiply hash per word, a rolling
polynomial per n-gram with a MurmurHash3 finaliser, affine permutations vectorised with AVX-512
or AVX2): the same estimator, much faster, not comparable with datasketch signatures. Keep fast-mode
signatures you store with the interleaf version that made them: the scheme may change before 1.0.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import polars as pl

from interleaf import _native
from interleaf._checks import choice_arg, float_arg, int_arg, string_column

MODES = ("fast", "datasketch")
SCHEMES = ("affine32", "legacy")
UNITS = ("word", "char")


def shingles(text: str, n: int = 5, unit: str = "word") -> list[str]:
    """The distinct n-grams of ``text`` in order of first appearance.

    ``unit="word"``: words from Python's ``text.split()``, n of them joined by one space.
    ``unit="char"``: n consecutive code points of the text as it is. A text shorter than ``n``
    units gives one shingle (all of it); an empty text gives none. No case folding: normalise
    first if you want it.
    """
    int_arg("n", n, 1, 1 << 16)
    return _native.shingles(text, n, unit)


def datasketch_permutations(num_perm: int, seed: int = 1, scheme: str = "affine32") -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) permutation parameters of ``datasketch.MinHash(num_perm, seed, scheme=scheme)``.

    Drawn with numpy's ``RandomState(seed)`` in the same calls, in the same order, as datasketch
    2.0's ``MinHash._init_permutations`` (the tests compare with datasketch's own values).
    """
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        prime = np.uint64((1 << 61) - 1)
        ab = np.array(
            [(gen.randint(1, prime, dtype=np.uint64), gen.randint(0, prime, dtype=np.uint64)) for _ in range(num_perm)],
            dtype=np.uint64,
        ).T
        return ab[0], ab[1]
    if scheme != "affine32":
        raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


class MinHasher:
    """Computes MinHash signatures of many texts at once (Rust, rayon, GIL released).

    Args:
        num_perm: permutations = signature length (default 128; the field uses 128-260).
        n: shingle size (default 5).
        unit: ``"word"`` (default) or ``"char"`` shingles, see :func:`shingles`.
        seed: permutation seed (default 1, datasketch's default).
        mode: ``"fast"`` (default, ours) or ``"datasketch"`` (bit-identical to datasketch).
        scheme: datasketch mode only: ``"affine32"`` (datasketch 2.0's default) or ``"legacy"``
            (datasketch before 2.0).
        threads: worker threads (default: all cores).

    Example:
        >>> sigs = MinHasher(num_perm=128).signatures(["a b c d e f", "a b c d e g"])
        >>> sigs.shape, sigs.dtype
        ((2, 128), dtype('uint32'))
    """

    def __init__(
        self,
        num_perm: int = 128,
        n: int = 5,
        unit: str = "word",
        seed: int = 1,
        mode: str = "fast",
        scheme: str = "affine32",
        threads: int | None = None,
    ):
        int_arg("num_perm", num_perm, 1, 1 << 16)
        int_arg("n", n, 1, 1 << 16)
        int_arg("seed", seed, 0, (1 << 32) - 1)
        int_arg("threads", threads, 1, 512, optional=True)
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
        self.num_perm, self.n, self.unit, self.seed = num_perm, n, unit, seed
        self.mode, self.scheme, self.threads = mode, scheme, threads
        if mode == "datasketch":
            a, b = datasketch_permutations(num_perm, seed, scheme)
            self._native_scheme = scheme
        else:
            # Fast mode: odd 32-bit multipliers and 32-bit offsets from numpy's generator.
            gen = np.random.Generator(np.random.PCG64(seed))
            a = gen.integers(0, 1 << 31, num_perm, dtype=np.uint64) * 2 + 1
            b = gen.integers(0, 1 << 32, num_perm, dtype=np.uint64)
            self._native_scheme = "fast"
        self._a = [int(x) for x in a]
        self._b = [int(x) for x in b]

    def signatures(self, texts: pl.Series | Sequence[str | None]) -> np.ndarray:
        """uint32 array of shape ``(len(texts), num_perm)`` for a String Series (read in
        place, no copy) or a sequence of str. An empty or null text's row is all
        ``2**32 - 1`` (an empty MinHash)."""
        return _native.minhash_signatures(string_column(texts, "texts"), self.n, self.unit, self._native_scheme, self._a, self._b, self.seed, self.threads)

    def __repr__(self) -> str:
        return f"MinHasher(num_perm={self.num_perm}, n={self.n}, unit={self.unit!r}, seed={self.seed}, mode={self.mode!r}, scheme={self.scheme!r})"


def lsh_params(threshold: float, num_perm: int, false_positive_weight: float = 0.5, false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false-positive + false-negative probability areas,
    the choice datasketch's ``MinHashLSH`` makes (its ``_optimal_param``). ``num_perm`` in
    [1, 65536] as for :class:`MinHasher`; the search takes seconds past a few thousand.

    With both weights above 0 the choice equals datasketch's (measured for num_perm 1-1,000, 11
    thresholds, 4 weight pairs). With a weight of 0 the objective is flat to about 1e-18 near its optimum, and
    datasketch's pick is decided by the rounding of scipy's ``quad``; interleaf integrates by
    Gauss-Legendre and may pick a neighbouring row count there (e.g. threshold 0.8, 256
    permutations, weights (1, 0): (1, 168) vs datasketch's (1, 167))."""
    float_arg("threshold", threshold, 0.0, 1.0)
    int_arg("num_perm", num_perm, 1, 1 << 16)
    float_arg("false_positive_weight", false_positive_weight, 0.0, 1e9)
    float_arg("false_negative_weight", false_negative_weight, 0.0, 1e9)
    if false_positive_weight + false_negative_weight == 0:
        raise ValueError("false_positive_weight and false_negative_weight cannot both be 0")
    return _optimal_params(float(threshold), int(num_perm), float(false_positive_weight), float(false_negative_weight))


@functools.lru_cache(maxsize=256)
def _optimal_params(threshold: float, num_perm: int, false_positive_weight: float, false_negative_weight: float) -> tuple[int, int]:
    """The search behind :func:`lsh_params` (milliseconds at 128 permutations), once per
    setting: every small ``lsh_clusters`` call asked it again."""
    return _native.lsh_params(threshold, num_perm, false_positive_weight, false_negative_weight)


def check_banding(bands: int | None, rows: int | None, num_perm: int) -> None:
    """Both of ``bands`` and ``rows`` or neither, each >= 1, ``bands * rows <= num_perm``;
    else ValueError (checked before any data is read)."""
    if (bands is None) != (rows is None):
        raise ValueError("give both bands and rows, or neither")
    if bands is not None and rows is not None:
        int_arg("bands", bands, 1, num_perm)
        int_arg("rows", rows, 1, num_perm)
        if bands * rows > num_perm:
            raise ValueError(f"bands * rows must be in [1, num_perm={num_perm}], got {bands} x {rows}")


def lsh_clusters(
    signatures: np.ndarray,
    threshold: float = 0.8,
    bands: int | None = None,
    rows: int | None = None,
    *,
    verify: str = "none",
    texts: pl.Series | Sequence[str | None] | None = None,
    n: int = 5,
    unit: str = "word",
    ranking: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Clusters rows whose signatures share a band, via union-find in Rust.

    Args:
        signatures: uint32 array ``(n_rows, num_perm)`` from :class:`MinHasher`.
        threshold: Jaccard similarity the bands are tuned for (default 0.8) and the bar for
            ``verify``.
        bands, rows: LSH banding; both None (default) = :func:`lsh_params` with equal weights.
        verify: ``"none"`` (default: every candidate pair joins, as in datasketch),
            ``"signature"`` (join when the estimated Jaccard of the full signatures is >=
            threshold) or ``"exact"`` (join when the Jaccard of the shingle sets of ``texts``,
            with ``n`` and ``unit``, is >= threshold; shingles compared by 64-bit hash).
        ranking: one score per row (for example a CLIP or quality score); a cluster's
            representative is the row with the highest score (ties: the smallest index), as
            :func:`interleaf.dedup.semantic` keeps the best-ranked. Default: the smallest index.

    Rows whose signature is the empty set's (every value 2^32 - 1: empty, whitespace-only and
    null texts) are identical and join each other, as in datasketch; leave them out (as
    :func:`deduplicate` does with text-less documents) where that is not wanted.

    Returns:
        ``(representatives, stats)``: an int64 array holding, for each row, the index of its
        cluster's representative (itself when it has no duplicate), and ``{"bands", "rows",
        "candidates", "joined"}``.
    """
    float_arg("threshold", threshold, 0.0, 1.0)
    int_arg("n", n, 1, 1 << 16)
    choice_arg("verify", verify, ("none", "signature", "exact"))
    arr = np.asarray(signatures)
    if arr.dtype.kind not in "ui" and arr.size:
        raise TypeError(f"signatures must be an integer (uint32) array from MinHasher, got dtype {arr.dtype}")
    if arr.dtype != np.uint32 and arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.uint32).max):
        # A cast would wrap or cut them: other values, other clusters.
        raise ValueError(f"signatures must be uint32 values (MinHasher's); this {arr.dtype} array holds values outside [0, 2^32)")
    sigs = np.ascontiguousarray(arr, dtype=np.uint32)
    if sigs.ndim != 2:
        raise ValueError(f"signatures must be 2-D (rows, num_perm), got shape {sigs.shape}")
    check_banding(bands, rows, max(sigs.shape[1], 1))
    if bands is None or rows is None:  # both or neither (check_banding)
        bands, rows = lsh_params(threshold, sigs.shape[1])
    rank = None if ranking is None else np.ascontiguousarray(ranking, dtype=np.float64)
    if rank is not None and (rank.shape != (len(sigs),) or np.isnan(rank).any()):
        raise ValueError(f"ranking must hold one number per row ({len(sigs)} rows), got shape {rank.shape} (NaN is refused)")
    col = None if texts is None else string_column(texts, "texts")
    if col is not None and len(col) != len(sigs):
        raise ValueError(f"texts must hold one text per row ({len(sigs)} rows), got {len(col)}")
    # The native clusterer keeps the smallest (ranking, index): the highest score first.
    reps, candidates, joined = _native.lsh_cluster(sigs, bands, rows, verify, threshold, col, n, unit, None if rank is None else -rank)
    return reps, {"bands": bands, "rows": rows, "candidates": candidates, "joined": joined}
