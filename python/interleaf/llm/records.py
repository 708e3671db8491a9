"""Inputs of the LLM stages: lists of dicts, tables, or interleaf node batches.

Every stage takes a list of dicts, a polars DataFrame with the stage's columns, or a node batch
(:mod:`interleaf.schema`: one row per node, ``doc_index`` grouping documents); node batches are
turned into the stage's records here, one record per document, in document order, with the
document's ``doc_id``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import polars as pl

from interleaf import schema


def is_node_batch(data: Any) -> bool:
    return isinstance(data, pl.DataFrame) and {schema.DOC_INDEX, schema.KIND, schema.POS}.issubset(data.columns)


def node_batches(data: Any, *, image_root: str | None = None, load_images: bool = True, progress: bool = False) -> Iterator[pl.DataFrame]:
    """The node batches of ``data``: a node batch, an iterable of node batches (an
    ``interleaf.read``), or dataset paths (a path or a list of them, read with
    :func:`interleaf.read` with ``image_root``, ``load_images`` and ``progress``)."""
    if is_node_batch(data):
        yield data
    elif isinstance(data, str | os.PathLike) or (isinstance(data, list | tuple) and data and all(isinstance(x, str | os.PathLike) for x in data)):
        import interleaf

        paths = [os.fspath(data)] if isinstance(data, str | os.PathLike) else [os.fspath(x) for x in data]
        yield from interleaf.read(paths, image_root=image_root, load_images=load_images, progress=progress)
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes | dict | pl.DataFrame):
        for batch in data:
            if not is_node_batch(batch):
                raise TypeError(f"expected node batches, got a {type(batch).__name__}")
            yield batch
    else:
        raise TypeError(f"expected a node batch, node batches or dataset paths, got {type(data).__name__}")


def _blank(s: Any) -> bool:
    return s is None or (isinstance(s, str) and not s.strip())


def documents(nodes: pl.DataFrame) -> list[dict[str, Any]]:
    """One dict per document of a node batch: ``doc_id``, ``meta`` (dict), ``error`` (the
    document's error message or None) and ``nodes`` (``kind``, ``text``, ``image``, ``step``,
    ``role``, ``error``: e.g. an image file that could not be read), in node order."""
    cols = [c for c in (schema.DOC_ID, schema.DOC_INDEX, schema.POS, schema.KIND, schema.STEP, schema.ROLE, schema.TEXT, schema.IMAGE, schema.META, schema.ERROR) if c in nodes.columns]
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for row in nodes.select(cols).sort([schema.DOC_INDEX, schema.POS]).iter_rows(named=True):
        if current is None or current["_index"] != row[schema.DOC_INDEX]:
            meta = row.get(schema.META)
            try:
                meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
            except ValueError:
                meta = {}
            current = {"_index": row[schema.DOC_INDEX], "doc_id": row.get(schema.DOC_ID), "meta": meta if isinstance(meta, dict) else {}, "error": None, "nodes": []}
            out.append(current)
        err = row.get(schema.ERROR)
        if row.get(schema.KIND) is None:
            current["error"] = f"{err['kind']}: {err['message']}" if err else "unreadable document"
            continue
        node = {k: row.get(k) for k in (schema.KIND, schema.TEXT, schema.IMAGE, schema.STEP, schema.ROLE)}
        node["error"] = f"{err['kind']}: {err['message']}" if err else None
        current["nodes"].append(node)
    for d in out:
        del d["_index"]
    return out


def steps(doc: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """A document's steps: by the ``step`` column where the format has one (CoMM), otherwise each
    text node opens a step that also holds the images after it (images before the first text
    form their own step)."""
    nodes = doc["nodes"]
    if nodes and all(n.get(schema.STEP) is not None for n in nodes):
        by: dict[int, list[dict[str, Any]]] = {}
        for n in nodes:
            by.setdefault(n[schema.STEP], []).append(n)
        return [by[k] for k in sorted(by)]
    out: list[list[dict[str, Any]]] = []
    for n in nodes:
        if n[schema.KIND] == "text" or not out:
            out.append([n])
        else:
            out[-1].append(n)
    return out


def as_records(data: Any, columns: Sequence[str], what: str, required: Sequence[Sequence[str]] = ()) -> list[dict[str, Any]]:
    """A list of dicts (each with ``columns``, missing keys as None) from a list of dicts or a
    DataFrame holding at least one of ``columns``, and of each group in ``required`` (a table
    whose answer column is named otherwise would be judged as if every answer were missing)."""
    if is_node_batch(data):
        raise ValueError(f"{what}: takes a table or a list of dicts with the columns {', '.join(columns)}, not documents (a node batch: {', '.join(data.columns[:6])}, ...)")
    if isinstance(data, pl.DataFrame):
        present = [c for c in columns if c in data.columns]
        if not present:
            raise ValueError(f"{what}: the table needs some of the columns {', '.join(columns)}; it has {', '.join(data.columns)}")
        _check_required(what, "the table", set(data.columns), required)
        rows = data.to_dicts()
        return [{c: r.get(c) for c in columns} | {k: v for k, v in r.items() if k not in columns} for r in rows]
    if isinstance(data, dict) or isinstance(data, str | bytes) or not isinstance(data, Iterable):
        raise TypeError(f"{what}: expected a list of dicts, a DataFrame or a node batch, got {type(data).__name__}")
    items = list(data)
    out = []
    for i, r in enumerate(items):
        if not isinstance(r, dict):
            raise TypeError(f"{what}: item {i} is a {type(r).__name__}, expected a dict with {', '.join(columns)}")
        out.append({c: r.get(c) for c in columns} | {k: v for k, v in r.items() if k not in columns})
    if items and not any(c in r for r in items for c in columns):
        keys = sorted({str(k) for r in items for k in r})
        raise ValueError(f"{what}: the items need some of the keys {', '.join(columns)}; they have {', '.join(keys[:10])}")
    if items:
        _check_required(what, "the items", {str(k) for r in items for k in r}, required)
    return out


def _check_required(what: str, holder: str, have: set[str], required: Sequence[Sequence[str]]) -> None:
    for group in required:
        if not any(c in have for c in group):
            need = group[0] if len(group) == 1 else "one of " + ", ".join(group)
            verb, has = ("needs", "it has") if holder == "the table" else ("need", "they have")
            raise ValueError(f"{what}: {holder} {verb} {need}; {has} {', '.join(sorted(have)[:12])} (rename the column)")


def first_text(nodes: Sequence[dict[str, Any]], roles: Sequence[str] = ()) -> int | None:
    """Index of the first non-blank text node (with one of ``roles`` when any node has a role)."""
    has_roles = roles and any(n.get(schema.ROLE) for n in nodes)
    for i, n in enumerate(nodes):
        if n[schema.KIND] == "text" and not _blank(n.get(schema.TEXT)) and (not has_roles or n.get(schema.ROLE) in roles):
            return i
    return None
