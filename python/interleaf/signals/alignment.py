"""Image-text alignment (CoMM, arXiv 2406.10462; DataComp, arXiv 2304.14108): DataComp's CLIP score for pairs, CoMM's image
against its step's text, and MMC4's assignment of a document's images to its sentences."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from interleaf import _native
from interleaf import schema as S
from interleaf._checks import choice_arg, int_arg
from interleaf.signals.base import NODE_KEYS, as_matrix, as_offsets, group_rows, sorted_docs


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
    goes to its most similar sentence (the first on ties). Returns the sentence index per image.

    A float64 matrix is used as given (threshold and assignment in float64); any other is
    float32, compared with the float32 of ``threshold`` as MMC4's numpy does."""
    a = np.asarray(sim)
    if a.dtype == np.float64:
        if a.ndim != 2:
            raise ValueError(f"sim must be 2-D (rows, dim), got shape {a.shape}")
        return _native.mmc4_assign_matrix(np.ascontiguousarray(a), float(threshold))
    return _native.mmc4_assign_matrix(as_matrix(sim, "sim"), float(threshold))


def mmc4_assign_documents(image_embeddings, image_offsets, text_embeddings, text_offsets, threshold: float = 0.15, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mmc4_assign` over many documents from their embeddings (cosines computed here, in
    float32 as MMC4's numpy product): returns, per image, the index of its sentence within its
    document (-1: dropped) and its cosine with that sentence (its best cosine when dropped)."""
    img, txt = as_matrix(image_embeddings, "image_embeddings"), as_matrix(text_embeddings, "text_embeddings")
    io, to = as_offsets(image_offsets, len(img), "image_offsets"), as_offsets(text_offsets, len(txt), "text_offsets")
    if len(io) != len(to):
        raise ValueError("image_offsets and text_offsets must cover the same documents")
    if img.shape[1] != txt.shape[1] and len(img) and len(txt):
        raise ValueError(f"image and text embeddings differ in width ({img.shape[1]} vs {txt.shape[1]})")
    int_arg("threads", threads, 1, 512, optional=True)
    return _native.mmc4_assign(img, io, txt, to, float(threshold), threads)


def clip_scores(clip, images: pl.Series | Sequence[bytes | None], texts: pl.Series | Sequence[str | None], *, batch_size: int | None = None, threads: int | None = None) -> pl.DataFrame:
    """DataComp's CLIP score of each image-text pair: the cosine (in [-1, 1], not x100) of the
    image's and the caption's CLIP embeddings. DataComp's threshold mode keeps ``score >= t``
    (ViT-B/32 >= 0.28 is LAION-2B's); Data-Juicer keeps [0.1, 1] with a logit scale of 100.

    Returns ``clip_score`` (Float32, null where either side failed) and ``error`` (the image's
    error, else the text's)."""
    img, ie = clip.embed_images(images, batch_size=batch_size, threads=threads)
    txt, te = clip.embed_texts(texts, batch_size=batch_size)
    if len(img) != len(txt):
        raise ValueError(f"images and texts differ in length ({len(img)} vs {len(txt)})")
    score = np.einsum("ij,ij->i", img, txt).astype(np.float32)
    error = pl.select(pl.coalesce(ie.alias("a"), te.alias("b")).alias("error")).to_series()
    return pl.DataFrame({"clip_score": score, "error": error}, nan_to_null=True)


_METHODS = ("auto", "pair", "step", "mmc4")


class ClipAlignment:
    """CLIP image-text alignment of every image node (node level), by one of three published
    methods, chosen per document with ``method="auto"``: ``step`` when the document has CoMM
    steps, ``pair`` when it has one image and at most one text, else ``mmc4``.

    - ``pair`` (DataComp): the cosine of the image and the document's text (its text nodes
      joined by a space: the caption of a pair);
    - ``step`` (CoMM): the cosine of the image and its own step's text (that step's text nodes
      joined by a space); CoMM drops pairs below 0.10;
    - ``mmc4``: MMC4's assignment of the document's images to its text nodes (its sentences):
      an image below ``threshold`` (0.15) at best is dropped, the rest matched one to one by a
      linear assignment maximising the total similarity, leftovers to their best sentence.

    Columns: ``<name>_score`` (Float32 cosine in [-1, 1]; for an image MMC4 dropped, its best
    cosine), ``<name>_text_pos`` (the ``pos`` of the text node compared with: the caption, the
    step's first text node, the assigned sentence; null when dropped), ``<name>_method``,
    ``<name>_error`` (why there is no score or no text: the image's decode error, ``no_text``,
    ``below_threshold``) and, for ``mmc4`` images, ``<name>_sentence_cos`` /
    ``<name>_sentence_pos`` (the image's cosine with each sentence of its document, and their
    ``pos``), from which :meth:`reassign` assigns again among the images that other rules keep
    (MMC4 assigned only the images that passed its image filters and pHash dedup). Needs a
    CLIP model in the :class:`Context`.
    """

    level = "node"
    node_kind = "image"  # the kind of node it scores
    needs: tuple[str, ...] = ("clip.image", "clip.text")

    def __init__(self, method: str = "auto", *, name: str = "clip_alignment", threshold: float = 0.15, threads: int | None = None):
        choice_arg("method", method, _METHODS)
        int_arg("threads", threads, 1, 512, optional=True)
        self.method, self.name, self.threshold, self.threads = method, name, float(threshold), threads

    def columns(self) -> dict[str, pl.DataType]:
        n = self.name
        return {
            f"{n}_score": pl.Float32(),
            f"{n}_text_pos": pl.Int32(),
            f"{n}_method": pl.String(),
            f"{n}_error": S.ERROR_DTYPE,
            f"{n}_sentence_cos": pl.List(pl.Float32()),
            f"{n}_sentence_pos": pl.List(pl.Int32()),
        }

    def _unassigned(self, sentences: int, best: float) -> dict[str, str]:
        """The error of an image MMC4's assignment left out: its document has no sentence, or
        its best cosine is below the threshold."""
        if sentences == 0:
            return S.record_error("no_text", "the document has no sentence to assign the image to")
        return S.record_error("below_threshold", f"best similarity {best:.4f} is below the assignment threshold {self.threshold}")

    def reassign(self, nodes: pl.DataFrame) -> pl.DataFrame:
        """MMC4's assignment again among the image rows of ``nodes`` (node rows with this
        signal's columns; the images some earlier rule dropped are simply absent), from their
        ``<name>_sentence_cos`` / ``<name>_sentence_pos``: ``<name>_score``, ``<name>_text_pos``
        and ``<name>_error`` recomputed for the ``mmc4`` images, the other rows as they were.
        An image's best cosine does not depend on the others, so the threshold drops the same
        images; only who gets which sentence can change."""
        n = self.name
        cos, spos = f"{n}_sentence_cos", f"{n}_sentence_pos"
        rows = nodes.with_row_index("_row").filter(pl.col(cos).is_not_null()).sort(S.DOC_INDEX, S.POS)
        if not rows.height:
            return nodes
        lengths = rows.get_column(cos).list.len().to_numpy().astype(np.int64)
        sim_off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        di = rows.get_column(S.DOC_INDEX).to_numpy()
        starts = np.flatnonzero(np.concatenate([[True], di[1:] != di[:-1]]))
        img_off = np.concatenate([starts, [len(di)]]).astype(np.int64)
        sims = rows.get_column(cos).explode(empty_as_null=False).to_numpy().astype(np.float32)
        idx, score = _native.mmc4_assign_rows(sims, sim_off, img_off, self.threshold, self.threads)
        positions = rows.get_column(spos).explode(empty_as_null=False).to_numpy().astype(np.int64)
        assigned = idx >= 0
        text_pos = np.full(len(idx), -1, dtype=np.int64)
        text_pos[assigned] = positions[sim_off[:-1][assigned] + idx[assigned]]
        errors = [None if k >= 0 else self._unassigned(m, v) for k, m, v in zip(idx.tolist(), lengths.tolist(), score.tolist(), strict=True)]
        new = pl.DataFrame(
            {
                "_row": rows.get_column("_row"),
                f"{n}_score": pl.Series(score, dtype=pl.Float32, nan_to_null=True),
                f"{n}_text_pos": pl.Series(text_pos).cast(pl.Int32).set(pl.Series(~assigned), None),
                f"{n}_error": S.error_column(errors),
            }
        )
        keep = [c for c in (f"{n}_score", f"{n}_text_pos", f"{n}_error") if c in nodes.columns]
        out = nodes.with_row_index("_row").join(new.select("_row", pl.lit(True).alias("_new"), *[pl.col(c).alias(c + "_new") for c in keep]), on="_row", how="left", maintain_order="left")
        return out.with_columns([pl.when(pl.col("_new")).then(pl.col(c + "_new")).otherwise(pl.col(c)).alias(c) for c in keep]).drop("_row", "_new", *[c + "_new" for c in keep])

    def compute(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        emb = ctx.clip_images(batch, self.name)
        n_rows = batch.height
        score = np.full(n_rows, np.nan, dtype=np.float32)
        text_pos = np.full(n_rows, -1, dtype=np.int64)
        errors: list[dict[str, str] | None] = [None] * n_rows
        vec_of = np.full(n_rows, -1, dtype=np.int64)
        vec_of[emb.rows] = np.arange(len(emb.rows))
        for r, e in zip(emb.rows.tolist(), emb.error.to_list(), strict=True):
            errors[r] = e
        ok_img = np.zeros(n_rows, dtype=bool)
        ok_img[emb.rows] = emb.error.is_null().to_numpy()
        # mmc4 images: their [start, end) in the flat cosines with their document's sentences.
        segment = np.full((n_rows, 2), -1, dtype=np.int64)
        sims = np.zeros(0, np.float32)
        sentence_pos = np.zeros(0, np.int32)

        nodes = batch.select(S.DOC_INDEX, S.POS, S.KIND, S.STEP, S.TEXT).with_row_index("_row")
        texts = nodes.filter(pl.col(S.KIND) == S.TEXT_KIND)
        images = nodes.filter(pl.col(S.KIND) == S.IMAGE_KIND)
        per_doc = nodes.group_by(S.DOC_INDEX).agg(
            (pl.col(S.STEP).is_not_null().any()).alias("_steps"),
            (pl.col(S.KIND) == S.IMAGE_KIND).sum().alias("_ni"),
            (pl.col(S.KIND) == S.TEXT_KIND).sum().alias("_nt"),
        )
        auto = pl.when(pl.col("_steps")).then(pl.lit("step")).when((pl.col("_ni") == 1) & (pl.col("_nt") <= 1)).then(pl.lit("pair")).otherwise(pl.lit("mmc4"))
        per_doc = per_doc.with_columns((auto if self.method == "auto" else pl.lit(self.method)).alias("_method"))
        images = images.join(per_doc.select(S.DOC_INDEX, "_method"), on=S.DOC_INDEX, how="left")
        method = np.full(n_rows, None, dtype=object)
        method[images.get_column("_row").to_numpy()] = images.get_column("_method").to_numpy()

        # pair and step: one text unit per document or per (document, step).
        for kind, by in (("pair", [S.DOC_INDEX]), ("step", [S.DOC_INDEX, S.STEP])):
            imgs = images.filter(pl.col("_method") == kind)
            if not imgs.height:
                continue
            # Blank text is no text: an image whose unit is blank has none to be scored against.
            units = texts.filter(S.has_words(pl.col(S.TEXT))).group_by(by).agg(pl.col(S.TEXT).sort_by(S.POS).str.join(" ").alias("_unit"), pl.col(S.POS).min().alias("_tpos"))
            imgs = imgs.join(units, on=by, how="left", nulls_equal=False)
            rows = imgs.get_column("_row").to_numpy()
            has_text = imgs.get_column("_unit").is_not_null().to_numpy()
            tv, te = ctx.clip_texts(imgs.get_column("_unit").to_list(), self.name)
            ok = has_text & ok_img[rows] & te.is_null().to_numpy()
            if ok.any():
                score[rows[ok]] = np.einsum("ij,ij->i", emb.vectors[vec_of[rows[ok]]], tv[ok])
            text_pos[rows[has_text]] = imgs.get_column("_tpos").to_numpy()[has_text]
            for r, h, o, e in zip(rows.tolist(), has_text.tolist(), ok.tolist(), te.to_list(), strict=True):
                if errors[r] is None and not h:
                    errors[r] = S.record_error("no_text", "the document has no text" if kind == "pair" else "the image's step has no text (or the image has no step)")
                elif errors[r] is None and not o:
                    errors[r] = e

        # mmc4: the document's images against its text nodes.
        imgs = images.filter(pl.col("_method") == "mmc4")
        if imgs.height:
            docs = sorted_docs(batch).filter(pl.col(S.DOC_INDEX).is_in(imgs.get_column(S.DOC_INDEX).unique().implode()))
            img_rows = imgs.get_column("_row").to_numpy().astype(np.int64)
            img_rows = img_rows[ok_img[img_rows]]
            txt_all = texts.filter(pl.col(S.DOC_INDEX).is_in(docs.get_column(S.DOC_INDEX).implode()) & pl.col(S.TEXT).is_not_null())
            tv, te = ctx.clip_texts(txt_all.get_column(S.TEXT).to_list(), self.name)
            good = te.is_null().to_numpy()
            txt_rows = txt_all.get_column("_row").to_numpy().astype(np.int64)[good]
            tv_of = np.full(n_rows, -1, dtype=np.int64)
            tv_of[txt_all.get_column("_row").to_numpy()] = np.arange(txt_all.height)
            img_rows, io = group_rows(batch, img_rows, docs)
            txt_rows, to = group_rows(batch, txt_rows, docs)
            dim = emb.vectors.shape[1] if emb.vectors.ndim == 2 else 0
            iv = emb.vectors[vec_of[img_rows]] if len(img_rows) else np.zeros((0, dim), np.float32)
            tvs = tv[tv_of[txt_rows]] if len(txt_rows) else np.zeros((0, iv.shape[1]), np.float32)
            sims, sim_off = _native.mmc4_similarity_rows(as_matrix(iv, "image embeddings"), io, as_matrix(tvs, "text embeddings"), to, self.threads)
            idx, sim = _native.mmc4_assign_rows(sims, sim_off, io, self.threshold, self.threads)
            pos = batch.get_column(S.POS).to_numpy()
            doc_of_img = np.repeat(np.arange(len(io) - 1), np.diff(io))
            n_sent = np.diff(to)[doc_of_img]
            score[img_rows] = sim
            assigned = idx >= 0
            text_pos[img_rows[assigned]] = pos[txt_rows[to[doc_of_img[assigned]] + idx[assigned]]]
            # Each image's sentences (its document's, in order) beside its cosines with them.
            first = np.repeat(to[doc_of_img] - sim_off[:-1], n_sent)
            sentence_pos = pos[txt_rows[first + np.arange(len(sims))]].astype(np.int32)
            segment[img_rows, 0], segment[img_rows, 1] = sim_off[:-1], sim_off[1:]
            for r, k, ns, s in zip(img_rows.tolist(), idx.tolist(), n_sent.tolist(), sim.tolist(), strict=True):
                if k < 0:
                    errors[r] = self._unassigned(ns, s)

        rows = images.get_column("_row").to_numpy()
        n = self.name
        out = pl.DataFrame(
            {
                f"{n}_score": score[rows],
                f"{n}_text_pos": np.where(text_pos[rows] >= 0, text_pos[rows], np.nan),
                f"{n}_method": method[rows].tolist(),
                f"{n}_error": S.error_column([errors[r] for r in rows.tolist()]),
                f"{n}_sentence_cos": _segments(sims, segment[rows], pl.Float32()),
                f"{n}_sentence_pos": _segments(sentence_pos, segment[rows], pl.Int32()),
            },
            nan_to_null=True,
        ).with_columns(pl.col(f"{n}_text_pos").cast(pl.Int32), pl.col(f"{n}_method").cast(pl.String))
        return pl.concat([batch.select(NODE_KEYS)[rows], out], how="horizontal")


def _segments(values: np.ndarray, segment: np.ndarray, dtype: pl.DataType) -> pl.Series:
    """A List column: row i holds ``values[segment[i, 0]:segment[i, 1]]``, null where
    ``segment[i, 0]`` is -1."""
    import pyarrow as pa

    valid = segment[:, 0] >= 0
    lengths = np.where(valid, segment[:, 1] - segment[:, 0], 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    gather = np.repeat(np.where(valid, segment[:, 0], 0) - offsets[:-1], lengths) + np.arange(offsets[-1])
    arrow = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[gather]), mask=pa.array(~valid))
    return pl.Series(pl.from_arrow(arrow)).cast(pl.List(dtype))


def top_k(queries, keys, k: int, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``queries`` ``(n, dim)``, the ``k`` rows of ``keys`` ``(m, dim)`` with
    the highest cosine, best first (ties: the lower key index; NaN rows are never ranked), by
    brute force in Rust: ``(indices, scores)``, int64 and float32 ``(n, k)``, padded with -1
    and NaN when fewer than ``k`` keys qualify. For retrieval within a batch (instruction-image
    matching, nearest captions); use a FAISS index for large collections."""
    q, kk = as_matrix(queries, "queries"), as_matrix(keys, "keys")
    int_arg("k", k, 1, 1 << 20)
    int_arg("threads", threads, 1, 512, optional=True)
    if q.shape[1] != kk.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} columns, keys {kk.shape[1]}")
    if q.shape[0] * k > 1 << 28:  # 12 bytes per cell: over 3 GB of mostly padding
        raise ValueError(f"the result would hold {q.shape[0]:,} x {k:,} cells: ask for fewer (there are {kk.shape[0]:,} keys)")
    return _native.top_k(q, kk, k, threads)
