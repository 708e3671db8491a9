"""CoMM's negative samples for preference data (CoMM, arXiv 2406.10462): an interleaved document made
incoherent on purpose, four ways.

- ``texts``: the text blocks of the steps trade places, the images stay where they were;
- ``images``: the image blocks trade places, the texts stay;
- ``both``: texts and images each shuffled, independently;
- ``steps``: whole steps (text and image together) in another order.

A document's units are its CoMM steps, or, in a document without steps (OBELICS, MMC4), its
nodes; a node outside every step of a stepped document (a title) keeps its place. A block that
moves into a step fills that step's places of its kind in order (a step laid out text, image,
text keeps that layout), and steps keep their numbers. Every shuffle is a permutation other
than the identity, drawn per document from ``seed`` alone (a document's shuffle does not depend on the batch it is read in or on the other
documents). A document with fewer than two units to shuffle (two steps with text for
``texts``, two with images for ``images``, both for ``both``, two steps for ``steps``) gives no
negative of that kind and is counted, as is a shuffle that gives the document back (two equal
blocks traded: ``unchanged``). The negatives are node tables: write them in any layout
(``interleaf.write(negatives, "neg.jsonl", "comm")``). Each keeps its source's metadata, and
its ``doc_id`` is the source's with ``#<kind>`` appended.

The shuffles run a column at a time in polars and numpy (no step per document in Python).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl

from interleaf import schema as S

__all__ = ["NEGATIVE_KINDS", "iter_negatives", "negatives"]

#: The four kinds of negatives CoMM builds from a document.
NEGATIVE_KINDS = ("texts", "images", "both", "steps")

_SKIP = {"texts": "too_few_text_steps", "images": "too_few_image_steps", "steps": "too_few_steps"}


def _mix(*parts: np.ndarray | int) -> np.ndarray:
    """A SplitMix64 hash of the parts, element-wise (uint64): keys that depend only on the
    values given, not on array order or batch boundaries."""
    h = np.zeros(np.broadcast(*[np.asarray(p) for p in parts]).shape, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for p in parts:
            h = h ^ (np.asarray(p).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
    return h


def _doc_keys(doc_ids: pl.Series) -> np.ndarray:
    """A stable key per document id: the first 60 bits of the xxh3-128 of its UTF-8 bytes."""
    from interleaf.dedup.exact import xxh3_128

    return xxh3_128(doc_ids.fill_null("")).str.slice(0, 15).str.to_integer(base=16).to_numpy().astype(np.uint64)


def _permute(units: pl.DataFrame, member: str, salt: int) -> pl.DataFrame:
    """For the units where ``member`` is true, the unit whose block each one receives, a
    permutation other than the identity within each document (``_dest``); the others get
    themselves. Columns in: ``doc_index``, ``unit`` (rank in the document), ``_key`` (per
    document), ``member``."""
    cand = units.filter(pl.col(member))
    slot = pl.col("unit").rank("ordinal").over(S.DOC_INDEX) - 1
    draw = pl.Series(_mix(cand.get_column("_key").to_numpy(), cand.get_column("unit").to_numpy().astype(np.uint64), salt))
    cand = cand.with_columns(_slot=slot.cast(pl.Int64), _draw=draw).with_columns(_to=(pl.col("_draw").rank("ordinal").over(S.DOC_INDEX) - 1).cast(pl.Int64), _n=pl.len().over(S.DOC_INDEX))
    # The identity is no negative: then every block moves one slot on instead.
    same = (pl.col("_to") == pl.col("_slot")).all().over(S.DOC_INDEX)
    cand = cand.with_columns(_to=pl.when(same).then((pl.col("_slot") + 1) % pl.col("_n")).otherwise(pl.col("_to")))
    # The block of the unit in slot s goes to the unit in slot _to(s).
    target = cand.select(S.DOC_INDEX, pl.col("_slot").alias("_to"), pl.col("unit").alias("_dest"))
    moved = cand.join(target, on=[S.DOC_INDEX, "_to"], how="left").select(S.DOC_INDEX, "unit", "_dest")
    return units.join(moved, on=[S.DOC_INDEX, "unit"], how="left").with_columns(pl.coalesce("_dest", "unit").alias("_dest"))


def _negatives_of(batch: pl.DataFrame, kinds: Sequence[str], seed: int, skipped: Counter[str]) -> pl.DataFrame | None:
    nodes = batch.filter(pl.col(S.KIND).is_not_null()).sort(S.DOC_INDEX, S.POS).with_columns(_at=pl.int_range(pl.len()).over(S.DOC_INDEX))
    # Units: CoMM steps where the document has them, else each node. A node outside every step
    # of a stepped document (a title, a note between steps) is a unit of its own that no
    # shuffle moves.
    stepped = pl.col(S.STEP).is_not_null().any().over(S.DOC_INDEX)
    nodes = nodes.with_columns(_fixed=stepped & pl.col(S.STEP).is_null(), _u=pl.when(stepped & pl.col(S.STEP).is_not_null()).then(pl.col(S.STEP).cast(pl.Int64)).otherwise(pl.col("_at") + (1 << 40)))
    units = nodes.group_by(S.DOC_INDEX, "_u").agg(
        pl.col("_at").min().alias("_first"),
        pl.col("_fixed").first(),
        pl.col(S.STEP).first().alias("_step"),
        (pl.col(S.KIND) == S.TEXT_KIND).any().alias("_has_text"),
        (pl.col(S.KIND) == S.IMAGE_KIND).any().alias("_has_image"),
    )
    units = units.with_columns(
        unit=pl.col("_first").rank("ordinal").over(S.DOC_INDEX).cast(pl.Int64) - 1,
        _t=pl.col("_has_text") & ~pl.col("_fixed"),
        _i=pl.col("_has_image") & ~pl.col("_fixed"),
        _m=~pl.col("_fixed"),
    )
    docs = batch.group_by(S.DOC_INDEX, maintain_order=True).agg(pl.col(S.DOC_ID).first())
    keys = pl.DataFrame({S.DOC_INDEX: docs.get_column(S.DOC_INDEX), "_key": _mix(_doc_keys(docs.get_column(S.DOC_ID)), seed)})
    units = units.join(keys, on=S.DOC_INDEX, how="left")
    counts = units.group_by(S.DOC_INDEX).agg(pl.col("_t").sum().alias("t"), pl.col("_i").sum().alias("i"), pl.col("_m").sum().alias("n"))
    per_doc = docs.join(counts, on=S.DOC_INDEX, how="left").with_columns(pl.col("t", "i", "n").fill_null(0))
    # Each node's rank among the nodes of its kind in its unit, and where each such slot lies:
    # a block that moves into a step fills that step's slots of its kind in order.
    nodes = nodes.join(units.select(S.DOC_INDEX, "_u", "unit"), on=[S.DOC_INDEX, "_u"], how="left").with_columns(_j=pl.int_range(pl.len()).over(S.DOC_INDEX, "unit", S.KIND))
    slots = nodes.select(S.DOC_INDEX, pl.col("unit").alias("_dest"), S.KIND, "_j", pl.col("_at").alias("_slot"))
    dest_step = units.select(S.DOC_INDEX, pl.col("unit").alias("_dest"), pl.col("_step").alias("_dest_step"))
    content = [S.KIND, S.TEXT, S.IMAGE, S.IMAGE_REF]
    before = nodes.select(S.DOC_INDEX, pl.col("_at").cast(pl.Int32).alias(S.POS), *[pl.col(c).alias(f"_{c}") for c in content])
    out = []
    for salt, kind in enumerate(NEGATIVE_KINDS):
        if kind not in kinds:
            continue
        need = {"texts": pl.col("t") >= 2, "images": pl.col("i") >= 2, "both": (pl.col("t") >= 2) & (pl.col("i") >= 2), "steps": pl.col("n") >= 2}[kind]
        reason = pl.when(pl.lit(kind in ("texts", "both")) & (pl.col("t") < 2)).then(pl.lit(_SKIP["texts"])).when(pl.lit(kind in ("images", "both")) & (pl.col("i") < 2)).then(pl.lit(_SKIP["images"])).otherwise(pl.lit(_SKIP["steps"]))
        for why, count in per_doc.filter(~need).group_by(reason.alias("why")).len().iter_rows():
            skipped[why] += count
        ok = per_doc.filter(need).get_column(S.DOC_INDEX).implode()
        u = units.filter(pl.col(S.DOC_INDEX).is_in(ok))
        n = nodes.filter(pl.col(S.DOC_INDEX).is_in(ok))
        if not n.height:
            continue
        if kind == "steps":
            # Whole steps move, each keeping its own order.
            perm = _permute(u, "_m", 4 * salt).select(S.DOC_INDEX, "unit", "_dest")
            n = n.join(perm, on=[S.DOC_INDEX, "unit"], how="left").with_columns(_key=pl.col("_at"))
        else:
            t_perm = _permute(u, "_t", 4 * salt + 1) if kind in ("texts", "both") else u.with_columns(_dest=pl.col("unit"))
            i_perm = _permute(u, "_i", 4 * salt + 2) if kind in ("images", "both") else u.with_columns(_dest=pl.col("unit"))
            n = n.join(t_perm.select(S.DOC_INDEX, "unit", pl.col("_dest").alias("_dest_t")), on=[S.DOC_INDEX, "unit"], how="left")
            n = n.join(i_perm.select(S.DOC_INDEX, "unit", pl.col("_dest").alias("_dest_i")), on=[S.DOC_INDEX, "unit"], how="left")
            n = n.with_columns(_dest=pl.when(pl.col(S.KIND) == S.TEXT_KIND).then("_dest_t").otherwise("_dest_i"))
            # The j-th incoming node of a kind takes the destination's j-th slot of that kind;
            # more than the destination had go after its last node.
            n = n.join(slots, on=[S.DOC_INDEX, "_dest", S.KIND, "_j"], how="left").with_columns(_key=pl.coalesce("_slot", pl.col("_j") + (1 << 40)))
        n = n.join(dest_step, on=[S.DOC_INDEX, "_dest"], how="left").sort(S.DOC_INDEX, "_dest", "_key")
        n = n.with_columns(pl.int_range(pl.len()).over(S.DOC_INDEX).cast(pl.Int32).alias(S.POS), pl.col("_dest_step").alias(S.STEP))
        # A shuffle of equal blocks (the same image twice) can give the document back, node for
        # node in order: no negative.
        same = n.join(before, on=[S.DOC_INDEX, S.POS], how="left").group_by(S.DOC_INDEX).agg(pl.all_horizontal([pl.col(c).eq_missing(pl.col(f"_{c}")) for c in content]).all().alias("_same"))
        unchanged = same.filter("_same").get_column(S.DOC_INDEX)
        skipped["unchanged"] += unchanged.len()
        n = n.filter(~pl.col(S.DOC_INDEX).is_in(unchanged.implode()))
        if n.height:
            out.append(n.with_columns((pl.col(S.DOC_ID) + f"#{kind}").alias(S.DOC_ID), pl.lit(salt).alias("_kind")).select(*S.NODE_SCHEMA.keys(), "_kind"))
    # Each document's negatives in NEGATIVE_KINDS order, documents in input order.
    return pl.concat(out).sort(S.DOC_INDEX, "_kind", S.POS, maintain_order=True) if out else None


def iter_negatives(
    documents: Any,
    kinds: Sequence[str] = NEGATIVE_KINDS,
    *,
    seed: int = 0,
    image_root: str | None = None,
    load_images: bool = True,
    progress: bool = False,
    summary: dict[str, Any] | None = None,
) -> Iterator[pl.DataFrame]:
    """:func:`negatives` a batch at a time (node batches, ``doc_index`` numbered on across
    them), for writing as they come (``interleaf.write(iter_negatives(...), dest, "comm")``):
    memory stays one input batch and its negatives. ``summary`` (a dict) is filled in as the
    batches go."""
    unknown = [k for k in kinds if k not in NEGATIVE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be some of {NEGATIVE_KINDS}, got {list(kinds)!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 1 << 63:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    from interleaf.llm.records import node_batches

    summary = {} if summary is None else summary
    summary.update(documents=0, made={k: 0 for k in NEGATIVE_KINDS if k in kinds}, skipped={})
    skipped: Counter[str] = Counter()
    offset = 0
    for batch in node_batches(documents, image_root=image_root, load_images=load_images, progress=progress):
        if not batch.height:
            continue
        summary["documents"] += batch.get_column(S.DOC_INDEX).n_unique()
        damaged = batch.filter(pl.col(S.ERROR).is_not_null() & pl.col(S.KIND).is_null()).get_column(S.DOC_INDEX).unique()
        skipped["unreadable_document"] += damaged.len() * len(kinds)
        part = _negatives_of(batch.filter(~pl.col(S.DOC_INDEX).is_in(damaged.implode())), kinds, seed, skipped)
        summary["skipped"] = dict(sorted((k, v) for k, v in skipped.items() if v))
        if part is None:
            continue
        for k, count in part.group_by("_kind").agg(pl.col(S.DOC_INDEX).n_unique()).iter_rows():
            summary["made"][NEGATIVE_KINDS[k]] += count
        # One document per (source, kind), numbered in output order across batches.
        part = part.with_columns((pl.struct(S.DOC_INDEX, "_kind").rle_id().cast(pl.Int64) + offset).alias(S.DOC_INDEX)).drop("_kind")
        offset = int(part.get_column(S.DOC_INDEX).max()) + 1  # type: ignore[arg-type]
        yield part


def negatives(
    documents: Any,
    kinds: Sequence[str] = NEGATIVE_KINDS,
    *,
    seed: int = 0,
    image_root: str | None = None,
    load_images: bool = True,
    progress: bool = False,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """CoMM's negative samples of ``documents`` (a node table, node batches, or dataset paths
    read with :func:`interleaf.read`; ``load_images=False`` reads image references only): one
    shuffled copy per document and kind in ``kinds`` (:data:`NEGATIVE_KINDS`), seeded by
    ``seed``.

    Returns ``(nodes, summary)``: the negatives as one node table (documents in input order,
    each one's negatives in :data:`NEGATIVE_KINDS` order; ``doc_id`` ``"<id>#<kind>"``,
    ``doc_index`` renumbered from 0; a node keeps its ``step`` number where its step is, so
    step numbers stay the source's) and ``{"documents", "made": {kind: n}, "skipped": {reason:
    n}}``. Documents read with an error are skipped (``unreadable_document``); nodes keep
    their own errors. :func:`iter_negatives` gives the same a batch at a time."""
    summary: dict[str, Any] = {}
    parts = list(iter_negatives(documents, kinds, seed=seed, image_root=image_root, load_images=load_images, progress=progress, summary=summary))
    return (pl.concat(parts) if parts else S.empty_frame()), summary
