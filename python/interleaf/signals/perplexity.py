"""Language-model perplexity of text nodes and documents (CoMM, arXiv 2406.10462; OBELICS, arXiv 2306.16527)."""

from __future__ import annotations

import numpy as np
import polars as pl

from interleaf import schema as S
from interleaf._checks import choice_arg
from interleaf.signals.base import DOC_KEYS, NODE_KEYS, as_offsets, group_rows, node_errors, sorted_docs, step_texts
from interleaf.signals.text import document_texts

#: OBELICS's document perplexity limit (its KenLM model; a neural LM's scale differs: set the
#: threshold for the model used).
OBELICS_MAX_PERPLEXITY = 1500.0


def document_perplexity(nll, tokens, offsets) -> np.ndarray:
    """Token-weighted perplexity of each document from its texts' mean negative log-likelihoods
    (nats per token) and token counts (:meth:`interleaf.models.CausalLM.perplexity`'s ``nll``
    and ``tokens``), documents given by CSR ``offsets``: ``exp(sum(nll * tokens) /
    sum(tokens))`` over the texts with a value; NaN for a document with no scored token."""
    nll = np.asarray(nll, dtype=np.float64)
    tok = np.asarray(tokens, dtype=np.float64)
    if nll.shape != tok.shape or nll.ndim != 1:
        raise ValueError(f"nll and tokens must be 1-D and of one length, got {nll.shape} and {tok.shape}")
    o = as_offsets(offsets, len(nll), "offsets")
    ok = ~np.isnan(nll)
    w = np.where(ok, nll * tok, 0.0)
    t = np.where(ok, tok, 0.0)
    doc = np.repeat(np.arange(len(o) - 1), np.diff(o))
    sw = np.bincount(doc, weights=w, minlength=len(o) - 1)
    st = np.bincount(doc, weights=t, minlength=len(o) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(st > 0, np.exp(sw / np.where(st > 0, st, 1)), np.nan)


class Perplexity:
    """Perplexity from the :class:`Context`'s language model: a causal LM
    (:meth:`interleaf.models.CausalLM.perplexity`) or a KenLM n-gram model
    (:meth:`interleaf.models.KenLM.perplexity`).

    ``level="node"``: one row per text node: ``<name>_perplexity`` (``exp`` of the mean
    negative log-likelihood per token), ``<name>_tokens`` (tokens scored), ``<name>_ok``
    (perplexity <= ``max_perplexity``) and ``<name>_error`` (``missing_text``,
    ``too_few_tokens``). ``level="step"``: the perplexity of each CoMM step's text (its text
    nodes joined by a space, as :class:`TextCoherence` reads a step, as CoMM), given on
    every text node of the step, so a node filter keeps or drops a step's text whole; text
    outside the steps (a title) and documents without steps are scored per node.
    ``level="doc"``: per document, the token-weighted perplexity of its text nodes,
    ``exp(sum(nll * tokens) / sum(tokens))``, with the same columns; with a KenLM model
    (:class:`interleaf.models.KenLM`, OBELICS's kind), the perplexity of the document's text as
    OBELICS computes it: its non-empty text nodes joined by ``"\\n\\n"``, scored as one text,
    rounded to one decimal (``<name>_tokens``: the SentencePiece pieces + 1); a document
    without text is ``missing_text``.
    ``max_perplexity`` defaults to OBELICS's 1500 (a KenLM number, for OBELICS's Wikipedia
    model: calibrate it for any other model).
    ``paragraphs=True`` scores each text node's paragraphs that survive OBELICS's node-level
    filter (:func:`interleaf.signals.obelics_paragraphs`, shared with the text signals through
    the :class:`Context`), as OBELICS scores the document text left after that filter; a node
    with none left is ``missing_text`` and does not count in its document.
    """

    needs: tuple[str, ...] = ("lm.perplexity",)

    def __init__(self, level: str = "node", *, name: str = "lm", max_perplexity: float = OBELICS_MAX_PERPLEXITY, paragraphs: bool = False):
        choice_arg("level", level, ("node", "step", "doc"))
        if level == "step" and paragraphs:
            raise ValueError("paragraphs (OBELICS's paragraph filter) applies to level 'node' or 'doc', not 'step'")
        # A step's value is given on its text nodes: the rows are the node level's.
        self.unit, self.level = level, "doc" if level == "doc" else "node"
        self.name, self.max_perplexity, self.paragraphs = name, float(max_perplexity), bool(paragraphs)

    @property
    def node_kind(self) -> str | None:
        """The kind of node it scores: ``"text"`` at node and step level, None at document level."""
        return "text" if self.level == "node" else None

    def columns(self) -> dict[str, pl.DataType]:
        n = self.name
        return {f"{n}_perplexity": pl.Float64(), f"{n}_tokens": pl.Int64(), f"{n}_ok": pl.Boolean(), f"{n}_error": S.ERROR_DTYPE}

    def compute(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        if self.unit == "doc" and getattr(ctx.model("lm", f"signal {self.name}"), "kind", None) == "kenlm":
            return self._document_texts(batch, ctx)
        if self.unit == "step":
            t = self._steps(batch, ctx)
        else:
            t = ctx.perplexity(batch, self.name, paragraphs=self.paragraphs)
        n = self.name
        if self.level == "node":
            rows = t.get_column("row").to_numpy()
            out = t.select(
                pl.col("perplexity").alias(f"{n}_perplexity"),
                pl.col("tokens").cast(pl.Int64).alias(f"{n}_tokens"),
                (pl.col("perplexity") <= self.max_perplexity).alias(f"{n}_ok"),
                pl.col(S.ERROR).alias(f"{n}_error"),
            )
            return pl.concat([batch.select(NODE_KEYS)[rows] if len(rows) else batch.select(NODE_KEYS).clear(), out], how="horizontal")
        docs = sorted_docs(batch)
        row_of = t.get_column("row").to_numpy()
        rows, offsets = group_rows(batch, row_of, docs)
        at = np.empty(batch.height, dtype=np.int64)
        at[row_of] = np.arange(len(row_of))
        nll = t.get_column("nll").fill_null(np.nan).to_numpy().astype(np.float64)[at[rows]]
        tok = t.get_column("tokens").to_numpy().astype(np.float64)[at[rows]]
        ppl = document_perplexity(nll, tok, offsets)
        doc = np.repeat(np.arange(docs.height), np.diff(offsets))
        scored = np.bincount(doc, weights=np.where(np.isnan(nll), 0.0, tok), minlength=docs.height).astype(np.int64)
        err = [None if k > 0 else S.record_error("too_few_tokens", "the document has no text the model can score") for k in scored.tolist()]
        res = pl.DataFrame({f"{n}_perplexity": ppl}, nan_to_null=True).with_columns(
            pl.Series(f"{n}_tokens", scored, dtype=pl.Int64), (pl.col(f"{n}_perplexity") <= self.max_perplexity).alias(f"{n}_ok"), S.error_column(err, f"{n}_error")
        )
        return pl.concat([docs.select(DOC_KEYS), res], how="horizontal")

    def _document_texts(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        """OBELICS's document perplexity with a KenLM model: the document's text (its
        non-empty text nodes, or their surviving paragraphs, joined by ``"\\n\\n"``) scored as
        one text, as ``compute_perplexity_score`` scores it."""
        n = self.name
        texts = batch.with_row_index("_row").filter(pl.col(S.KIND) == S.TEXT_KIND)
        if self.paragraphs:
            texts = texts.with_columns(ctx.obelics_paragraphs(batch).get_column("text").alias(S.TEXT))
        docs = document_texts(batch, texts)
        # A document without text (none, or none left by the paragraph filter) is not scored:
        # KenLM would give "</s>" alone a value.
        empty = pl.col(S.TEXT).str.len_bytes() == 0
        t = ctx.model("lm", f"signal {n}").perplexity(docs.select(pl.when(~empty).then(pl.col(S.TEXT))).to_series(), batch_size=ctx.batch_size)
        none = S.record_error("missing_text", "the document has no text" + (" left after OBELICS's paragraph filter" if self.paragraphs else ""))
        t = t.with_columns(pl.when(docs.select(empty).to_series()).then(pl.lit(none, dtype=S.ERROR_DTYPE)).otherwise(pl.col(S.ERROR)).alias(S.ERROR))
        out = t.select(
            pl.col("perplexity").alias(f"{n}_perplexity"),
            pl.col("tokens").cast(pl.Int64).alias(f"{n}_tokens"),
            (pl.col("perplexity") <= self.max_perplexity).alias(f"{n}_ok"),
            pl.col(S.ERROR).alias(f"{n}_error"),
        )
        return pl.concat([docs.select(DOC_KEYS), out], how="horizontal")

    def _steps(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        """The perplexity of each step text, one row per text node of the step (``row``, the
        batch row), with :meth:`interleaf.models.CausalLM.perplexity`'s columns."""
        steps = step_texts(batch, outside_steps=True)
        table = ctx.model("lm", self.name).perplexity(steps.get_column(S.TEXT).to_list(), batch_size=ctx.batch_size)
        rows = steps.get_column("rows").explode().to_numpy().astype(np.int64) if steps.height else np.zeros(0, np.int64)
        t = table[np.repeat(np.arange(steps.height), steps.get_column("rows").list.len().to_numpy())]
        # A text node without text is in no step text: its row says so, as at node level.
        empty = np.setdiff1d(np.flatnonzero((batch.get_column(S.KIND) == S.TEXT_KIND).fill_null(False).to_numpy()), rows)
        if len(empty):
            missing = pl.DataFrame({"error": S.error_column([S.record_error("missing_text", "the text node has no text")] * len(empty))}).with_columns(pl.lit(0).cast(t.schema["tokens"]).alias("tokens"))
            t = pl.concat([t, missing], how="diagonal_relaxed").select(t.columns)
            rows = np.concatenate([rows, empty])
        return t.with_columns(row=pl.Series(rows, dtype=pl.Int64), error=node_errors(batch, rows, t.get_column("error")))
