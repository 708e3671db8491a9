"""LLM judges as a document-level signal, so a recipe can filter on them (CoMM's LLM stage)."""

from __future__ import annotations

from typing import Literal

import polars as pl

from interleaf import schema as S
from interleaf.signals.base import DOC_KEYS, sorted_docs

_COLUMNS = {"comm": ("development", "completeness", "alignment"), "synjudge": ("tcc", "icc", "iq", "its")}


class LLMJudge:
    """One LLM judgement per document through the :class:`Context`'s LLM client:
    ``judge="comm"``: CoMM's views (:func:`interleaf.judge.comm`), columns
    ``<name>_development``, ``<name>_completeness``, ``<name>_alignment`` (Int8, 0-10; alignment
    null with ``images=False``); ``judge="synjudge"``: InterSyn's SynJudge
    (:func:`interleaf.judge.synjudge`), ``<name>_tcc``, ``_icc``, ``_iq``, ``_its`` (0-5). A
    document the endpoint could not judge gets nulls and ``<name>_error`` of kind ``llm_failed``
    (its message: the HTTP or parse error). Needs an LLM endpoint (``needs = ("llm",)``)."""

    level = "doc"
    needs: tuple[str, ...] = ("llm",)

    def __init__(self, judge: Literal["comm", "synjudge"] = "comm", *, name: str = "llm_judge", images: bool = True, max_images: int = 10, max_edge: int = 512, output: Literal["json", "bracket"] = "json"):
        if judge not in _COLUMNS:
            raise ValueError(f"judge must be one of {', '.join(_COLUMNS)}, got {judge!r}")
        self.judge, self.name, self.images, self.max_images, self.max_edge, self.output = judge, name, images, max_images, max_edge, output

    def columns(self) -> dict[str, pl.DataType]:
        n = self.name
        return {**{f"{n}_{c}": pl.Int8() for c in _COLUMNS[self.judge]}, f"{n}_error": S.ERROR_DTYPE}

    def compute(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        from interleaf import judge

        client = ctx.llm(self.name)
        if self.judge == "comm":
            got = judge.comm(batch, client, images=self.images, max_images=self.max_images, max_edge=self.max_edge)
        else:
            got = judge.synjudge(batch, client, output=self.output, max_edge=self.max_edge)
        docs = sorted_docs(batch)
        if got.height != docs.height:  # pragma: no cover - the judges return one row per document
            raise RuntimeError(f"{self.name}: {got.height} judgements for {docs.height} documents")
        n = self.name
        errors = [None if e is None else S.record_error("llm_failed", e) for e in got.get_column("error").to_list()]
        out = got.select([pl.col(c).alias(f"{n}_{c}") for c in _COLUMNS[self.judge]]).with_columns(S.error_column(errors).alias(f"{n}_error"))
        return pl.concat([docs.select(DOC_KEYS), out], how="horizontal")
