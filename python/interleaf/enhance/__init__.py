"""Enhance instead of discard: AITQE's minimal caption rewrites (AITQE, arXiv 2410.16166).

A low-quality image-text pair is not dropped: its caption is rewritten as little as possible,
keeping the entities the image grounds, so the data volume and the text distribution are kept.
A guard rejects rewrites that change too much (character edit ratio) or, with a CLIP model, that
do not align better with the image than the original. The original is always kept alongside.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from interleaf.llm import Client, image_part, image_urls, parse_failure, parse_json, parse_scores, text_part
from interleaf.llm.records import as_records, documents, is_node_batch

__all__ = ["AITQE_ASPECTS", "DECISIONS", "aitqe", "contrastive_pairs", "edit_ratio"]

#: AITQE's scored aspects (each 1-10) besides the overall ``score``.
AITQE_ASPECTS = ("text_quality", "image_text_matching", "object_detail", "semantic_understanding", "text_chart_description")

#: ``decision`` values: kept as is (score >= threshold), rewritten (rewrite accepted),
#: ``unchanged`` (low, but the model's rewrite is the original itself, whitespace aside: the
#: original is used and no contrastive pair is made), or why a rewrite was rejected (the
#: original is used), or failed (scoring or rewriting failed, or no caption: the original is
#: used and ``error`` says why).
DECISIONS = ("keep", "rewrite", "unchanged", "reject_edit_ratio", "reject_clip", "reject_empty", "error")

_SCORE_1_10 = {"type": "integer", "enum": list(range(1, 11))}
_FIELDS = ("score", *AITQE_ASPECTS)
_SCORE_SCHEMA = {"type": "object", "properties": dict.fromkeys(_FIELDS, _SCORE_1_10), "required": list(_FIELDS), "additionalProperties": False}


def _caption_schema(original: str) -> dict[str, Any]:
    # A bound on the answer's length (twice the original, at least 64 characters): a minimal
    # rewrite never needs more, and a runaway model stops there.
    limit = max(64, 2 * len(original))
    return {"type": "object", "properties": {"caption": {"type": "string", "maxLength": limit}}, "required": ["caption"], "additionalProperties": False}


_SYSTEM = "You assess and repair the captions of image-text training pairs. You are precise and conservative."
_SCORE_PROMPT = """Caption:
{caption}

Rate this image-text pair with integers from 1 (worst) to 10 (best):
- score: overall quality of the pair as training data
- text_quality: fluency, grammar and clarity of the caption
- image_text_matching: how well the caption matches the image
- object_detail: how well the caption names and describes the objects shown
- semantic_understanding: how well the caption captures the scene's meaning (actions, relations, context)
- text_chart_description: how well text, charts or diagrams in the image are described (10 if there are none)
Answer with a JSON object only: {{"score": n, "text_quality": n, "image_text_matching": n, "object_detail": n, "semantic_understanding": n, "text_chart_description": n}}."""
_REWRITE_PROMPT = """Caption:
{caption}

This caption was rated low for the image ({why}). Rewrite it with the smallest possible changes so that it describes the image correctly and fluently:
keep every entity, name and detail the image supports, fix or remove only what is wrong, and keep the length and style close to the original.
Answer with a JSON object only: {{"caption": "..."}}."""
_DEGRADE_PROMPT = """Caption:
{caption}

This caption describes the image well. Write a worse version for training a caption-repair model: introduce one or two realistic
errors (a wrong object, colour, count or relation, or a grammar slip) while keeping most of the wording.
Answer with a JSON object only: {{"caption": "..."}}."""


def edit_ratio(a: str, b: str) -> float:
    """Character Levenshtein distance divided by the longer length (rapidfuzz's normalised
    distance): 0 for equal strings, 1 for nothing in common."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_distance(a, b))


def _pairs(data: Any) -> list[dict[str, Any]]:
    if is_node_batch(data):
        out = []
        for d in documents(data):
            text = next((n["text"] for n in d["nodes"] if n["kind"] == "text"), None)
            node = next((n for n in d["nodes"] if n["kind"] == "image"), None)
            error = d["error"] or (f"image: {node['error']}" if node is not None and node["error"] else None)
            out.append({"doc_id": d["doc_id"], "caption": text, "image": node["image"] if node else None, "_error": error})
        return out
    recs = as_records(data, ("caption", "text", "image"), "aitqe", required=(("caption", "text"), ("image",)))
    return [{"caption": r["caption"] if _filled(r["caption"]) or r["text"] is None else r["text"], "image": r["image"], "_error": r.get("error")} | ({"doc_id": r["doc_id"]} if "doc_id" in r else {}) for r in recs]


def _filled(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _message(url: str, prompt: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": [image_part(url), text_part(prompt)]}]


def aitqe(
    pairs: Any,
    client: Client,
    clip: Any = None,
    *,
    threshold: int = 7,
    min_aspect: int | None = None,
    min_clip: float | None = None,
    max_edit_ratio: float = 0.35,
    max_edge: int = 512,
    progress: bool = False,
) -> pl.DataFrame:
    """AITQE over image-text pairs: score each pair 1-10 (overall + :data:`AITQE_ASPECTS`); a
    low pair gets a minimal rewrite of its caption, which a guard accepts only when its
    character edit ratio (:func:`edit_ratio`) is at most ``max_edit_ratio`` and, when a CLIP
    model (or model directory) is given as ``clip``, its CLIP score with the image beats the
    original's. Without ``clip`` that second check is not made (the ``reason`` says so).

    A pair is low when its overall score is below ``threshold`` (AITQE's rule; its value is
    unverified: 7 by default, AITQE arXiv 2410.16166) or, where set, when its ``text_quality`` or
    ``image_text_matching`` aspect is below ``min_aspect`` (1-10) or its CLIP cosine with the
    image is below ``min_clip`` (needs ``clip``; for example 0.28, DataComp's B/32 cut): the
    alignment and text-quality signals then decide too, as interleaf's reading of AITQE does.

    ``pairs``: a list of ``{"caption" (or "text"): str, "image": bytes}``, a DataFrame with those
    columns, or a node batch (per document: the first text and the first image). A missing or
    blank caption (``""`` as None) is that row's error ``"no caption"``, sent to no one.

    Returns one row per pair, in order: ``caption`` (the original, always kept), ``score`` and the
    aspects (Int8, null on failure), ``rewrite`` (the model's rewrite or null), ``edit_ratio``,
    ``clip_original`` / ``clip_rewrite`` (Float32, with ``clip``), ``decision``
    (:data:`DECISIONS`), ``reason`` (why, in words), ``final`` (the caption to train on: the
    accepted rewrite, else the original) and ``error``; ``doc_id`` for node batches. The prompts
    are ours, written from the paper's description."""
    if not 1 <= threshold <= 10:
        raise ValueError(f"threshold must be in 1-10, got {threshold!r}")
    if min_aspect is not None and not 1 <= min_aspect <= 10:
        raise ValueError(f"min_aspect must be in 1-10, got {min_aspect!r}")
    if min_clip is not None and not (isinstance(min_clip, int | float) and -1.0 <= min_clip <= 1.0):
        raise ValueError(f"min_clip must be a cosine in [-1, 1], got {min_clip!r}")
    if min_clip is not None and clip is None:
        raise ValueError("min_clip needs a CLIP model: pass clip (a model or its directory)")
    if not 0.0 <= max_edit_ratio <= 1.0:
        raise ValueError(f"max_edit_ratio must be in [0, 1], got {max_edit_ratio!r}")
    if isinstance(clip, str) or hasattr(clip, "__fspath__"):
        from interleaf import models

        clip = models.load(clip, kind="clip")
    recs = _pairs(pairs)
    urls = image_urls([r["image"] for r in recs], max_edge) if recs else []
    rows: list[dict[str, Any]] = []
    score_req: list[Any] = []
    score_slot: list[int] = []
    for i, r in enumerate(recs):
        row: dict[str, Any] = ({"doc_id": r["doc_id"]} if "doc_id" in r else {}) | {"caption": r["caption"]} | dict.fromkeys(_FIELDS)
        row |= {"rewrite": None, "edit_ratio": None, "clip_original": None, "clip_rewrite": None, "decision": "error", "reason": None, "final": r["caption"], "error": r["_error"]}
        rows.append(row)
        url, err = urls[i]
        if row["error"] is None and not _filled(r["caption"]):
            row["error"] = "no caption"
        elif row["error"] is None and url is None:
            row["error"] = f"image: {err}" if err else "no image"
        if row["error"] is not None:
            row["reason"] = row["error"]
            continue
        assert url is not None  # else row["error"] is set above
        score_req.append({"messages": _message(url, _SCORE_PROMPT.format(caption=r["caption"])), "schema": _SCORE_SCHEMA, "schema_name": "aitqe_score"})
        score_slot.append(i)
    if clip is not None and score_slot:
        # The originals' alignment: what min_clip reads, and the guard's baseline.
        from interleaf.signals.alignment import clip_scores

        before = clip_scores(clip, [recs[i]["image"] for i in score_slot], [rows[i]["caption"] for i in score_slot])["clip_score"].to_list()
        for i, b in zip(score_slot, before, strict=True):
            rows[i]["clip_original"] = b
    rewrite_req: list[Any] = []
    rewrite_slot: list[int] = []
    for i, resp in zip(score_slot, client.chat(score_req, progress=progress, label="aitqe score"), strict=True):
        row = rows[i]
        obj, err = parse_json(resp.text) if resp.ok else (None, resp.error)
        scores, err = parse_scores(obj, dict.fromkeys(_FIELDS, (1, 10))) if obj is not None else (None, err)
        if scores is None:
            row["error"] = err if not resp.ok else parse_failure(resp, err)
            row["reason"] = "scoring failed"
            continue
        row.update(scores)
        low = [f"score {scores['score']} < {threshold}"] if scores["score"] < threshold else []
        if min_aspect is not None:
            low += [f"{a} {scores[a]} < {min_aspect}" for a in ("text_quality", "image_text_matching") if scores[a] < min_aspect]
        if min_clip is not None and (row["clip_original"] is None or row["clip_original"] < min_clip):
            low.append(f"CLIP {row['clip_original']:.4f} < {min_clip:g}" if row["clip_original"] is not None else "CLIP score unavailable")
        if not low:
            row["decision"], row["reason"] = "keep", f"score {scores['score']} >= {threshold}" + (f", aspects >= {min_aspect}" if min_aspect is not None else "") + (f", CLIP {row['clip_original']:.4f} >= {min_clip:g}" if min_clip is not None else "")
            continue
        row["_low"] = "; ".join(low)
        rewrite_req.append({"messages": _message(urls[i][0], _REWRITE_PROMPT.format(caption=row["caption"], why=row["_low"])), "schema": _caption_schema(row["caption"]), "schema_name": "aitqe_rewrite"})  # type: ignore[arg-type]
        rewrite_slot.append(i)
    candidates: list[int] = []
    for i, resp in zip(rewrite_slot, client.chat(rewrite_req, progress=progress, label="aitqe rewrite"), strict=True):
        row = rows[i]
        obj, err = parse_json(resp.text) if resp.ok else (None, resp.error)
        new = obj.get("caption") if obj is not None else None
        if obj is not None and not isinstance(new, str):
            err = f"caption: expected a string, got {new!r}"
        if not isinstance(new, str):
            row["error"] = err if not resp.ok else parse_failure(resp, err)
            row["reason"] = "rewrite failed: the original is kept"
            continue
        new = new.strip()
        row["rewrite"] = new
        if not new:
            row["decision"], row["reason"] = "reject_empty", "the rewrite is empty"
            continue
        if new.split() == row["caption"].split():
            row["decision"], row["reason"] = "unchanged", f"{row['_low']}; the rewrite is the original caption: it is kept"
            continue
        ratio = edit_ratio(row["caption"], new)
        row["edit_ratio"] = ratio
        if ratio > max_edit_ratio:
            row["decision"], row["reason"] = "reject_edit_ratio", f"edit ratio {ratio:.2f} > {max_edit_ratio:g}"
            continue
        row["decision"], row["reason"], row["final"] = "rewrite", f"{row['_low']}; edit ratio {ratio:.2f} <= {max_edit_ratio:g}", new
        if clip is None:
            row["reason"] += "; CLIP guard not applied (no clip model)"
        candidates.append(i)
    if clip is not None and candidates:
        from interleaf.signals.alignment import clip_scores

        after = clip_scores(clip, [recs[i]["image"] for i in candidates], [rows[i]["rewrite"] for i in candidates])["clip_score"].to_list()
        for i, a in zip(candidates, after, strict=True):
            row = rows[i]
            b = row["clip_original"]
            row["clip_rewrite"] = a
            if a is None or b is None or not a > b:
                row["decision"], row["final"] = "reject_clip", row["caption"]
                row["reason"] = f"CLIP score {a:.4f} does not beat the original's {b:.4f}" if a is not None and b is not None else "CLIP score unavailable"
            else:
                row["reason"] += f"; CLIP {b:.4f} -> {a:.4f}"
    for row in rows:
        row.pop("_low", None)
    schema: dict[str, type[pl.DataType]] = ({"doc_id": pl.String} if rows and "doc_id" in rows[0] else {}) | {"caption": pl.String} | dict.fromkeys(_FIELDS, pl.Int8)
    schema |= {"rewrite": pl.String, "edit_ratio": pl.Float32, "clip_original": pl.Float32, "clip_rewrite": pl.Float32, "decision": pl.String, "reason": pl.String, "final": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def contrastive_pairs(pairs: Any, result: pl.DataFrame, client: Client, *, max_edge: int = 512, progress: bool = False, start: int = 0) -> pl.DataFrame:
    """AITQE-style contrastive training data from an :func:`aitqe` result over the same
    ``pairs``: for each kept pair the model writes a degraded caption whose target is the original
    (``type = "degraded"``); each accepted rewrite gives its original as input and the rewrite as
    target (``type = "rewrite"``). Returns ``index`` (the pair's row in ``result``, plus
    ``start``: where ``result`` begins in a larger table, e.g. one written batch by batch),
    ``doc_id`` (where the pairs have one), ``type``, ``input``, ``target``, ``error``; failed
    degradations are kept as rows with ``error``. Only decision ``"rewrite"`` gives a rewrite
    pair (an ``"unchanged"`` rewrite would teach nothing)."""
    recs = _pairs(pairs)
    if len(recs) != result.height:
        raise ValueError(f"pairs and result differ in length ({len(recs)} vs {result.height})")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be an integer >= 0, got {start!r}")
    rows: list[dict[str, Any]] = []
    keep = [i for i, d in enumerate(result["decision"].to_list()) if d == "keep"]
    urls = image_urls([recs[i]["image"] for i in keep], max_edge) if keep else []
    # A result from aitqe over other pairs can mark a pair "keep" whose image does not read here:
    # that pair is an error row, not a request without an image.
    sent = [(i, u) for i, (u, _) in zip(keep, urls, strict=True) if u is not None]
    rows += [{"index": i, "type": "degraded", "input": None, "target": recs[i]["caption"], "error": f"image: {e}" if e else "the pair has no image"} for i, (u, e) in zip(keep, urls, strict=True) if u is None]
    reqs = [{"messages": _message(u, _DEGRADE_PROMPT.format(caption=recs[i]["caption"])), "schema": _caption_schema(recs[i]["caption"]), "schema_name": "aitqe_degrade"} for i, u in sent]
    for (i, _), resp in zip(sent, client.chat(reqs, progress=progress, label="aitqe degrade"), strict=True):
        obj, err = parse_json(resp.text) if resp.ok else (None, resp.error)
        bad = obj.get("caption") if obj is not None else None
        if resp.ok and not isinstance(bad, str):
            err = parse_failure(resp, err if obj is None else f"caption: expected a string, got {bad!r}")
        ok = isinstance(bad, str) and bad.strip() and bad.strip() != recs[i]["caption"]
        rows.append({"index": i, "type": "degraded", "input": bad.strip() if ok else None, "target": recs[i]["caption"], "error": None if ok else (err or "the degraded caption is empty or unchanged")})  # type: ignore[union-attr]
    for i, (d, orig, new) in enumerate(zip(result["decision"], result["caption"], result["rewrite"], strict=True)):
        if d == "rewrite":
            rows.append({"index": i, "type": "rewrite", "input": orig, "target": new, "error": None})
    rows.sort(key=lambda r: (r["index"], r["type"]))
    ids = result["doc_id"].to_list() if "doc_id" in result.columns else None
    for r in rows:
        if ids is not None:
            r["doc_id"] = ids[r["index"]]
        r["index"] += start
    schema: dict[str, type[pl.DataType]] = {"index": pl.Int64}
    schema |= ({"doc_id": pl.String} if ids is not None else {}) | {"type": pl.String, "input": pl.String, "target": pl.String, "error": pl.String}
    return pl.DataFrame([{c: r[c] for c in schema} for r in rows], schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
