"""Per-document similarity signals from embeddings: MMC4's assignment, CoMM's F, text
coherence (METHODS.md §1, §6), in Rust, documents in parallel."""

from __future__ import annotations

import numpy as np
import polars as pl

from interleaf import _native
from interleaf._checks import int_arg


def _matrix(x, name: str) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {a.shape}")
    return a


def _offsets(offsets, n: int, name: str) -> np.ndarray:
    o = np.ascontiguousarray(offsets, dtype=np.int64)
    if o.ndim != 1 or len(o) < 1 or o[0] != 0 or o[-1] != n or (np.diff(o) < 0).any():
        raise ValueError(f"{name} must start at 0, never decrease and end at the number of rows ({n})")
    return o


def linear_assignment(cost, maximize: bool = False) -> np.ndarray:
    """The column assigned to each row of a ``(rows, cols)`` cost matrix in an assignment of
    minimum total cost (maximum with ``maximize``), each column used at most once; -1 for the
    rows left out when there are more rows than columns. The optimum equals
    ``scipy.optimize.linear_sum_assignment``'s (the same assignment where the optimum is
    unique). Costs must be finite."""
    c = np.ascontiguousarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be 2-D, got shape {c.shape}")
    return _native.linear_assignment(c, maximize)


def mmc4_assign(sim, threshold: float = 0.15) -> np.ndarray:
    """MMC4's assignment of one document's images to its sentences from the ``(images,
    sentences)`` CLIP cosine matrix: an image whose best cosine is below ``threshold`` (MMC4:
    0.15; exactly 0.15 is kept) is dropped (-1) before anything is assigned; the rest are
    matched to distinct sentences maximising the total similarity (an exact linear assignment,
    the optimum of MMC4's lapjv); when there are more images than sentences, each one left over
    goes to its most similar sentence (the first on ties). Returns the sentence index per image."""
    s = _matrix(sim, "sim")
    return _native.mmc4_assign_matrix(s, float(threshold))


def mmc4_assign_documents(image_embeddings, image_offsets, text_embeddings, text_offsets, threshold: float = 0.15, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mmc4_assign` over many documents from their embeddings (cosines computed here):
    returns, per image, the index of its sentence within its document (-1: dropped) and its
    cosine with that sentence (its best cosine when dropped)."""
    img, txt = _matrix(image_embeddings, "image_embeddings"), _matrix(text_embeddings, "text_embeddings")
    io, to = _offsets(image_offsets, len(img), "image_offsets"), _offsets(text_offsets, len(txt), "text_offsets")
    if len(io) != len(to):
        raise ValueError("image_offsets and text_offsets must cover the same documents")
    int_arg("threads", threads, 1, 512, optional=True)
    return _native.mmc4_assign(img, io, txt, to, float(threshold), threads)


def sequence_consistency(embeddings, offsets, *, threads: int | None = None) -> np.ndarray:
    """CoMM's image-sequence consistency of each document, from its CLIP image embeddings in
    document order: ``F = mean_{i=2..N} cos(x_i, x_{i-1}) - mean_{i > j + 1} cos(x_i, x_j)``;
    high F means neighbouring images agree while the sequence still develops. NaN below 3
    images (CoMM defines F from 3 on). Float64, one value per document."""
    e = _matrix(embeddings, "embeddings")
    int_arg("threads", threads, 1, 512, optional=True)
    return _native.sequence_consistency(e, _offsets(offsets, len(e), "offsets"), threads)


def text_coherence(embeddings, offsets, shuffles: int = 8, seed: int = 0, *, threads: int | None = None) -> pl.DataFrame:
    """Coherence of each document's step texts from their sentence embeddings in order:
    ``mean_cos`` and ``min_cos`` of consecutive steps (cosines in [-1, 1]) and ``margin``,
    ``mean_cos`` minus the mean consecutive cosine of the same steps in ``shuffles`` random
    orders (seeded by ``seed`` and the document's position: the same on any number of threads);
    a positive margin means the order carries meaning. Null below 2 steps."""
    e = _matrix(embeddings, "embeddings")
    int_arg("shuffles", shuffles, 0, 10_000)
    int_arg("seed", seed, 0, (1 << 64) - 1)
    int_arg("threads", threads, 1, 512, optional=True)
    mean, low, margin = _native.text_coherence(e, _offsets(offsets, len(e), "offsets"), shuffles, seed, threads)
    return pl.DataFrame({"mean_cos": mean, "min_cos": low, "margin": margin}).fill_nan(None)
