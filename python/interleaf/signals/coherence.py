"""Text coherence of step sequences (CoMM's text development, arXiv 2406.10462): consecutive
cosines of sentence embeddings against the same steps shuffled, in Rust."""

from __future__ import annotations

import numpy as np
import polars as pl

from interleaf import _native
from interleaf import schema as S
from interleaf._checks import int_arg
from interleaf.polars import xxh3_64
from interleaf.signals.base import DOC_KEYS, as_matrix, as_offsets, sorted_docs, step_texts


def text_coherence(embeddings, offsets, shuffles: int = 8, seed: int = 0, *, threads: int | None = None, keys=None) -> pl.DataFrame:
    """Coherence of each document's step texts from their sentence embeddings in order:
    ``mean_cos`` and ``min_cos`` of consecutive steps (cosines in [-1, 1]) and ``margin``,
    ``mean_cos`` minus the mean consecutive cosine of the same steps in ``shuffles`` random
    orders, seeded by ``seed`` and the document's key: ``keys`` (uint64, one per document, for
    example a hash of its step texts, as :class:`TextCoherence` uses, so a document's margin
    does not depend on the batch it came in), else its position here (the same on any number
    of threads); a positive margin means the order carries meaning. ``mean_cos`` and ``min_cos`` are null
    below 2 steps, ``margin`` below 3 (two steps have one consecutive pair in every order, so
    there is nothing to test; a ``margin > 0`` filter then follows its ``on_null``). A shuffle
    that keeps the original's consecutive pairs (a reversal) adds exactly 0 to the margin."""
    e = as_matrix(embeddings, "embeddings")
    int_arg("shuffles", shuffles, 0, 10_000)
    int_arg("seed", seed, 0, (1 << 64) - 1)
    int_arg("threads", threads, 1, 512, optional=True)
    off = as_offsets(offsets, len(e), "offsets")
    if keys is not None:
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if keys.shape != (len(off) - 1,):
            raise ValueError(f"keys must hold one value per document ({len(off) - 1}), got shape {keys.shape}")
    mean, low, margin = _native.text_coherence(e, off, shuffles, seed, threads, keys)
    return pl.DataFrame({"mean_cos": mean, "min_cos": low, "margin": margin}).fill_nan(None)


class TextCoherence:
    """Text coherence (:func:`text_coherence`) of every document (document level): its steps
    are its CoMM steps (the text nodes of a step joined by a space) or, without steps, its text
    nodes, embedded with the :class:`Context`'s sentence embedder. Columns: ``<name>_mean_cos``,
    ``<name>_min_cos`` (cosines in [-1, 1]), ``<name>_margin`` (> 0: the order carries
    meaning; null below 3 steps, where every order has the same neighbours), ``<name>_steps`` (steps with text) and ``<name>_error`` (``too_few_steps`` below
    2). A document's shuffles are seeded by ``seed`` and the xxh3 hash of its step texts, so its
    margin is the same in any batch, shard or input format. Needs a text embedder
    (all-MiniLM-L6-v2 is the usual choice)."""

    level = "doc"
    needs: tuple[str, ...] = ("text.embedding",)
    # 2: shuffles seeded by the step texts, not the position in the batch (a run's stored
    # margins of version 1 are computed again on resume).
    version = 2

    def __init__(self, *, name: str = "coherence", shuffles: int = 8, seed: int = 0, threads: int | None = None):
        int_arg("shuffles", shuffles, 0, 10_000)
        int_arg("seed", seed, 0, (1 << 64) - 1)
        int_arg("threads", threads, 1, 512, optional=True)
        self.name, self.shuffles, self.seed, self.threads = name, shuffles, seed, threads

    def columns(self) -> dict[str, pl.DataType]:
        n = self.name
        return {f"{n}_mean_cos": pl.Float64(), f"{n}_min_cos": pl.Float64(), f"{n}_margin": pl.Float64(), f"{n}_steps": pl.UInt32(), f"{n}_error": S.ERROR_DTYPE}

    def compute(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        docs = sorted_docs(batch)
        # In a document with steps, text outside every step (a title node) is not a step.
        steps = step_texts(batch)
        vectors, errors = ctx.text_embeddings(steps.get_column(S.TEXT).to_list(), self.name)
        ok = errors.is_null().to_numpy()
        steps, vectors = steps.filter(pl.Series(ok)), vectors[ok]
        di = steps.get_column(S.DOC_INDEX).to_numpy()
        offsets = np.concatenate([np.searchsorted(di, docs.get_column(S.DOC_INDEX).to_numpy(), "left"), [len(di)]]).astype(np.int64)
        if not len(vectors):
            vectors = np.zeros((0, 1), np.float32)
        # Each document's shuffles are seeded by its step texts, not its place in the batch.
        keys = (
            docs.select(S.DOC_INDEX)
            .join(steps.group_by(S.DOC_INDEX).agg(xxh3_64(pl.col(S.TEXT).str.join("\x00")).alias("_key")), on=S.DOC_INDEX, how="left", maintain_order="left")
            .get_column("_key")
            .fill_null(0)
            .to_numpy()
        )
        t = text_coherence(vectors, offsets, self.shuffles, self.seed, threads=self.threads, keys=keys)
        count = np.diff(offsets)
        n = self.name
        err = [None if k >= 2 else S.record_error("too_few_steps", f"coherence needs 2 steps with text; the document has {k}") for k in count.tolist()]
        out = pl.DataFrame({f"{n}_mean_cos": t["mean_cos"], f"{n}_min_cos": t["min_cos"], f"{n}_margin": t["margin"], f"{n}_steps": count.astype(np.uint32), f"{n}_error": S.error_column(err)})
        return pl.concat([docs.select(DOC_KEYS), out], how="horizontal")
