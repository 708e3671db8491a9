"""Language identification with fastText (DataComp, arXiv 2304.14108; OBELICS, arXiv 2306.16527).

DataComp's basic filter keeps a caption whose top fastText ``lid.176`` label is English (no
confidence cutoff: ``model.predict(caption.replace("\\n", " "))``); OBELICS keeps a document
whose text, lower-cased, is English with probability >= 0.8 (its paragraph-level check is off).
"""

from __future__ import annotations

import polars as pl

from interleaf import schema as S
from interleaf._checks import choice_arg
from interleaf.signals.base import DOC_KEYS, NODE_KEYS, node_errors
from interleaf.signals.text import document_texts


class Language:
    """The top language of each text node or document from the :class:`Context`'s fastText
    language-id model (:class:`interleaf.models.LanguageID`).

    Columns: ``<name>_lang`` (fastText's label without ``__label__``: ``"en"``, ``"fr"``, ...),
    ``<name>_score`` (its probability) and ``<name>_error`` (``missing_text`` for a blank or
    absent text, which has no language). ``level="node"``: per text node. ``level="doc"``:
    the document's text, its non-empty text nodes joined by ``"\\n\\n"`` (OBELICS's document
    text; a pair's caption is its one text); with ``paragraphs=True`` only the paragraphs that
    survive OBELICS's node-level filter (as OBELICS identifies the text left after it).
    Newlines become spaces before fastText reads a text (as DataComp and OBELICS do);
    ``lowercase=True`` lower-cases it too (OBELICS; DataComp does not).

    DataComp's rule: ``<name>_lang = 'en'``; OBELICS's: ``<name>_lang = 'en' AND <name>_score
    >= 0.8``.
    """

    needs: tuple[str, ...] = ("lid",)

    def __init__(self, level: str = "doc", *, name: str = "language", lowercase: bool = False, paragraphs: bool = False):
        choice_arg("level", level, ("node", "doc"))
        self.level, self.name, self.lowercase, self.paragraphs = level, name, bool(lowercase), bool(paragraphs)

    @property
    def node_kind(self) -> str | None:
        """The kind of node it scores: ``"text"`` at node level, None at document level."""
        return "text" if self.level == "node" else None

    def columns(self) -> dict[str, pl.DataType]:
        n = self.name
        return {f"{n}_lang": pl.String(), f"{n}_score": pl.Float64(), f"{n}_error": S.ERROR_DTYPE}

    def compute(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        n = self.name
        texts = batch.with_row_index("_row").filter(pl.col(S.KIND) == S.TEXT_KIND)
        if self.paragraphs:
            kept = ctx.obelics_paragraphs(batch).get_column("text")
            texts = texts.with_columns(kept.alias(S.TEXT))
        model = ctx.model("lid", f"signal {n}")
        if self.level == "node":
            got = model.predict(texts.get_column(S.TEXT), lowercase=self.lowercase)
            rows = texts.get_column("_row").cast(pl.Int64).to_numpy()
            err = node_errors(batch, rows, got.get_column(S.ERROR))
            return pl.concat([texts.select(NODE_KEYS), got.select(pl.col("lang").alias(f"{n}_lang"), pl.col("score").alias(f"{n}_score")), err.alias(f"{n}_error").to_frame()], how="horizontal")
        docs = document_texts(batch, texts)
        got = model.predict(docs.get_column(S.TEXT), lowercase=self.lowercase)
        return pl.concat([docs.select(DOC_KEYS), got.select(pl.col("lang").alias(f"{n}_lang"), pl.col("score").alias(f"{n}_score"), pl.col(S.ERROR).alias(f"{n}_error"))], how="horizontal")
