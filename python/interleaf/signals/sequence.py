"""CoMM's image-sequence consistency F (CoMM, arXiv 2406.10462), in Rust, documents in parallel."""

from __future__ import annotations

import numpy as np
import polars as pl

from interleaf import _native
from interleaf import schema as S
from interleaf._checks import int_arg
from interleaf.signals.base import DOC_KEYS, as_matrix, as_offsets, group_rows, sorted_docs


def sequence_consistency(embeddings, offsets, *, threads: int | None = None) -> np.ndarray:
    """CoMM's image-sequence consistency of each document, from its CLIP image embeddings in
    document order: ``F = mean_{i=2..N} cos(x_i, x_{i-1}) - mean_{i > j + 1} cos(x_i, x_j)``;
    high F means neighbouring images agree while the sequence still develops (F lies in [-2,
    2]; CoMM reports dataset means rescaled, 0.21 for MMC4 to 4.27 for CoMM). NaN below 3
    images (CoMM defines F from 3 on). Float64, one value per document."""
    e = as_matrix(embeddings, "embeddings")
    int_arg("threads", threads, 1, 512, optional=True)
    return _native.sequence_consistency(e, as_offsets(offsets, len(e), "offsets"), threads)


class SequenceConsistency:
    """CoMM's F (:func:`sequence_consistency`) of every document (document level) from the CLIP
    embeddings of its images in document order; images that did not decode are left out and
    counted. Columns: ``<name>_f`` (Float64, null below 3 usable images), ``<name>_images``
    (images used) and ``<name>_error`` (``too_few_images``). Needs a CLIP model."""

    level = "doc"
    needs: tuple[str, ...] = ("clip.image",)

    def __init__(self, *, name: str = "sequence", threads: int | None = None):
        int_arg("threads", threads, 1, 512, optional=True)
        self.name, self.threads = name, threads

    def columns(self) -> dict[str, pl.DataType]:
        n = self.name
        return {f"{n}_f": pl.Float64(), f"{n}_images": pl.UInt32(), f"{n}_error": S.ERROR_DTYPE}

    def compute(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        emb = ctx.clip_images(batch, self.name)
        docs = sorted_docs(batch)
        ok = emb.error.is_null().to_numpy()
        vec_of = np.full(batch.height, -1, dtype=np.int64)
        vec_of[emb.rows] = np.arange(len(emb.rows))
        rows, offsets = group_rows(batch, emb.rows[ok], docs)
        vectors = emb.vectors[vec_of[rows]] if len(rows) else np.zeros((0, max(emb.vectors.shape[1] if emb.vectors.ndim == 2 else 1, 1)), np.float32)
        f = sequence_consistency(vectors, offsets, threads=self.threads)
        used = np.diff(offsets)
        errors = [None if k >= 3 else S.record_error("too_few_images", f"CoMM's F needs 3 images; the document has {k} usable") for k in used.tolist()]
        n = self.name
        out = pl.DataFrame({f"{n}_f": f, f"{n}_images": used.astype(np.uint32), f"{n}_error": S.error_column(errors)}, nan_to_null=True)
        return pl.concat([docs.select(DOC_KEYS), out], how="horizontal")
