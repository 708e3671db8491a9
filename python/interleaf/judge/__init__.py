"""LLM judges: InterSyn's SynJudge and CoMM's dataset-quality views (CoMM, arXiv 2406.10462; InterSyn, arXiv 2506.09427).

Both send one request per sample through an :class:`interleaf.llm.Client` and return one row per
input, in order, with the scores (null when the request or the parse failed), the raw answer and
the error. Parse failures are counted and excluded from the aggregates, never averaged in.
"""

from __future__ import annotations

from typing import Any, cast

import polars as pl

from interleaf.llm import Client, image_part, image_urls, parse_failure, parse_json, parse_scores, parse_synjudge, text_part
from interleaf.llm.parse import SYNJUDGE_DIMENSIONS
from interleaf.llm.records import as_records, documents, first_text, is_node_batch, steps

__all__ = ["COMM_VIEWS", "SYNJUDGE_DIMENSIONS", "aggregate", "comm", "synjudge"]

_SYNJUDGE_SYSTEM = (
    "You are SynJudge, a strict evaluator of multimodal answers. You score how well an answer made of text and an image "
    "responds to a question, on four integer dimensions from 0 (worst) to 5 (best)."
)

_SYNJUDGE_RULES = """Score the answer on these dimensions, each an integer from 0 to 5:
- Text Content Completeness (TCC): does the text answer the question fully, correctly and clearly?
- Image Content Completeness (ICC): does the image show what the question asks for, completely?
- Image Quality (IQ): is the image sharp, well composed and free of artefacts?
- Image-Text Synergy (ITS): are text and image aligned AND complementary? If the image only repeats the text (redundant), ITS is at most 4.
Rules: if the text answer is missing, TCC = 0 and ITS = 0. If the image is missing, ICC = 0, IQ = 0 and ITS = 0."""

_SYNJUDGE_BRACKET = "Answer with exactly one line in this format and nothing else:\n[Text Content Completeness: a; Image Content Completeness: b; Image Quality: c; Image-Text Synergy: d]"
_SYNJUDGE_JSON = 'Answer with a JSON object only: {"tcc": a, "icc": b, "iq": c, "its": d}.'

_SCORE_0_5 = {"type": "integer", "enum": [0, 1, 2, 3, 4, 5]}
_SYNJUDGE_SCHEMA = {"type": "object", "properties": dict.fromkeys(SYNJUDGE_DIMENSIONS, _SCORE_0_5), "required": list(SYNJUDGE_DIMENSIONS), "additionalProperties": False}


def _blank(s: Any) -> bool:
    return s is None or (isinstance(s, str) and not s.strip())


def _synjudge_samples(samples: Any) -> list[dict[str, Any]]:
    if is_node_batch(samples):
        out = []
        for d in documents(samples):
            nodes = d["nodes"]
            q = first_text(nodes, roles=("human", "user"))
            rest = nodes[q + 1 :] if q is not None else nodes
            answer = "\n".join(n["text"] for n in rest if n["kind"] == "text" and not _blank(n["text"])) or None
            node = next((n for n in rest if n["kind"] == "image"), None) or next((n for n in nodes if n["kind"] == "image"), None)
            error = d["error"] or (f"image: {node['error']}" if node is not None and node["error"] else None)
            out.append({"doc_id": d["doc_id"], "question": nodes[q]["text"] if q is not None else None, "answer": answer, "image": node["image"] if node else None, "_error": error})
        return out
    # A table's own ``error`` column (e.g. an image file that could not be read) is kept.
    return [r | {"_error": r.get("error")} for r in as_records(samples, ("question", "answer", "image"), "synjudge", required=(("answer", "image"),))]


def synjudge(samples: Any, client: Client, *, output: str = "json", max_edge: int = 512, progress: bool = False) -> pl.DataFrame:
    """InterSyn's SynJudge over ``(question, answer text, answer image)`` samples.

    ``samples``: a list of ``{"question": str, "answer": str | None, "image": bytes | None}``, a
    DataFrame with those columns, or a node batch (per document: the question is the first text
    node (of role human/user when roles exist), the answer the text nodes after it, the image the
    first image after it, else the first image).

    Returns one row per sample, in order: ``tcc``, ``icc``, ``iq``, ``its`` (Int8 in 0-5, null
    when the request or the parse failed), ``raw`` (the model's answer), ``error``, plus ``doc_id``
    for node batches. The published rules are applied after the model answers: a missing text
    answer sets TCC = ITS = 0, a missing image ICC = IQ = ITS = 0; a sample missing both is scored
    all zeros without a request. ``output="json"`` asks for ``{"tcc", "icc", "iq", "its"}`` with a
    JSON schema; ``"bracket"`` asks for the published line ``[Text Content Completeness: a; ...]``
    (both formats are parsed either way). The prompt is ours, written from the paper's
    definitions. Aggregate with :func:`aggregate`."""
    if output not in ("json", "bracket"):
        raise ValueError(f"output must be 'json' or 'bracket', got {output!r}")
    recs = _synjudge_samples(samples)
    urls = image_urls([r["image"] for r in recs], max_edge) if recs else []
    requests: list[Any] = []
    slots: list[int] = []
    rows: list[dict[str, Any]] = []
    for i, r in enumerate(recs):
        row: dict[str, Any] = dict.fromkeys(SYNJUDGE_DIMENSIONS) | {"raw": None, "error": r["_error"]}
        if "doc_id" in r:
            row = {"doc_id": r["doc_id"]} | row
        rows.append(row)
        if row["error"] is not None:
            continue
        no_text, (url, img_err) = _blank(r["answer"]), urls[i]
        if img_err is not None:
            row["error"] = f"image: {img_err}"
            continue
        if no_text and url is None:
            row.update(dict.fromkeys(SYNJUDGE_DIMENSIONS, 0))
            continue
        content: list[dict[str, Any]] = [text_part(f"Question:\n{r['question'] or '(no question)'}\n\nAnswer text:\n{'(missing)' if no_text else r['answer']}\n\nAnswer image:")]
        content.append(image_part(url) if url is not None else text_part("(missing)"))
        content.append(text_part(_SYNJUDGE_RULES + "\n\n" + (_SYNJUDGE_JSON if output == "json" else _SYNJUDGE_BRACKET)))
        req: dict[str, Any] = {"messages": [{"role": "system", "content": _SYNJUDGE_SYSTEM}, {"role": "user", "content": content}]}
        if output == "json":
            req |= {"schema": _SYNJUDGE_SCHEMA, "schema_name": "synjudge"}
        requests.append(req)
        slots.append(i)
    def parse(text: str, i: int) -> tuple[dict[str, int] | None, str | None]:
        scores, err = parse_synjudge(text)
        if scores is not None and _blank(recs[i]["answer"]):
            scores |= {"tcc": 0, "its": 0}
        if scores is not None and recs[i]["image"] is None:
            scores |= {"icc": 0, "iq": 0, "its": 0}
        return scores, err

    _fill(rows, slots, client.chat(requests, progress=progress, label="synjudge"), parse)
    schema_ = ({"doc_id": pl.String} if rows and "doc_id" in rows[0] else {}) | dict.fromkeys(SYNJUDGE_DIMENSIONS, pl.Int8) | {"raw": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema_, orient="row") if rows else pl.DataFrame(schema=schema_)


def _fill(rows: list[dict[str, Any]], slots: list[int], responses: list[Any], parse: Any) -> None:
    """Writes each answer into its row: ``raw``, then the parsed scores, or ``error`` (the
    request's, or why the answer could not be parsed)."""
    for i, resp in zip(slots, responses, strict=True):
        row = rows[i]
        row["raw"] = resp.text
        if not resp.ok:
            row["error"] = resp.error
            continue
        scores, err = parse(resp.text, i)
        if scores is None:
            row["error"] = parse_failure(resp, err)
            continue
        row.update(scores)


def aggregate(scores: pl.DataFrame, dimensions: list[str] | None = None) -> dict[str, Any]:
    """Per-dimension mean and (population) variance over the rows that were scored, the overall
    score (mean of the dimension means, as InterSyn reports), and the counts: ``n`` rows,
    ``scored`` (rows with every dimension), ``failed`` (error or unparsed: excluded, never
    averaged in). ``dimensions`` default: SynJudge's four, or CoMM's views, whichever the table
    has, leaving out a dimension that is null in every row while another is scored somewhere
    (e.g. ``alignment`` after ``comm(..., images=False)``, which does not ask it); when no row
    was scored at all, every dimension of the table counts and every row is failed."""
    if dimensions is None:
        dimensions = [d for d in (*SYNJUDGE_DIMENSIONS, *COMM_VIEWS) if d in scores.columns]
        asked = [d for d in dimensions if scores[d].null_count() < scores.height]
        dimensions = asked or dimensions
    if not dimensions:
        raise ValueError(f"no score columns in the table (columns: {', '.join(scores.columns)})")
    ok = scores.filter(pl.all_horizontal(pl.col(d).is_not_null() for d in dimensions))
    out: dict[str, Any] = {"n": scores.height, "scored": ok.height, "failed": scores.height - ok.height}
    means: list[float] = []
    for d in dimensions:
        col = ok[d].cast(pl.Float64)
        mean = cast("float | None", col.mean()) if ok.height else None  # a Float64 column's mean
        var = col.var(ddof=0) if ok.height else None
        out[d] = {"mean": mean, "var": var}
        if mean is not None:
            means.append(mean)
    out["overall"] = sum(means) / len(means) if means and len(means) == len(dimensions) else None
    return out


#: CoMM's dataset-quality views, each an integer 0-10.
COMM_VIEWS = ("development", "completeness", "alignment")

_COMM_SYSTEM = "You are a strict judge of the quality of interleaved image-text documents (step-by-step guides, stories, tutorials). You score whole documents."
_COMM_VIEW_TEXT = {
    "development": "development: do the step texts develop coherently, each following from the previous one towards the goal of the title?",
    "completeness": "completeness: does the document cover every step needed, without gaps, so that a reader could follow it?",
    "alignment": "alignment: does each image show what its step text describes?",
}
_SCORE_0_10 = {"type": "integer", "enum": list(range(11))}


def _serialise(doc: dict[str, Any], urls: list[tuple[str | None, str | None]], max_images: int, images: bool) -> tuple[str, list[str]]:
    """CoMM's serialisation: the title, then ``(k) <step text> <IMAGE>`` per step; the returned
    URLs are the images in ``<IMAGE>`` order."""
    title = doc["meta"].get("title") if isinstance(doc.get("meta"), dict) else None
    lines = [f"Title: {title}"] if title else []
    attached: list[str] = []
    it = iter(urls)
    for k, step in enumerate(steps(doc), 1):
        parts: list[str] = []
        for n in step:
            if n["kind"] == "text":
                if not _blank(n["text"]):
                    parts.append(" ".join(n["text"].split()))
                continue
            url, err = next(it)
            err = err or n.get("error")
            if not images:
                parts.append("<IMAGE>")
            elif url is not None and len(attached) < max_images:
                attached.append(url)
                parts.append("<IMAGE>")
            else:
                parts.append("<IMAGE not shown>" if url is not None else "<IMAGE unreadable>" if err else "<IMAGE missing>")
        lines.append(f"({k}) " + " ".join(parts))
    return "\n".join(lines), attached


def comm(documents_: Any, client: Client, *, images: bool = True, max_images: int = 10, max_edge: int = 512, progress: bool = False) -> pl.DataFrame:
    """CoMM's dataset-quality views of interleaved documents, each an integer 0-10:
    ``development`` (the step texts develop coherently), ``completeness`` (no missing steps) and
    ``alignment`` (images match their steps), as CoMM reports them per dataset (GPT-4o judged:
    MMC4 4.75 / 5.12 / 4.66, OBELICS 5.97 / 5.88 / 3.81, CoMM 7.64 / 7.07 / 8.91).

    ``documents_``: a node batch (any format interleaf reads; steps from CoMM's ``step`` column,
    otherwise each text node with the images after it), or a list of ``{"title", "steps": [[{"type":
    "text", "content"} | {"type": "image", "image": bytes}, ...], ...]}``. Each document is sent
    serialised as CoMM does (``Title: ...`` then ``(k) <step text> <IMAGE>``) with the first
    ``max_images`` images attached in ``<IMAGE>`` order, at most ``max_edge`` pixels. With
    ``images=False`` (a text-only model) no image is sent and ``alignment`` is not asked (null).

    CoMM did not publish its judge prompts: this prompt is ours, written from the paper's
    definitions. Returns ``doc_id``, the views (Int8, null on failure), ``raw`` and ``error``, one
    row per document, in order."""
    if not isinstance(max_images, int) or max_images < 0:
        raise ValueError(f"max_images must be an integer >= 0, got {max_images!r}")
    docs = documents(documents_) if is_node_batch(documents_) else _comm_docs(documents_)
    views = COMM_VIEWS if images else COMM_VIEWS[:2]
    schema = {"type": "object", "properties": dict.fromkeys(views, _SCORE_0_10), "required": list(views), "additionalProperties": False}
    instructions = (
        "Score the document on these views, each an integer from 0 (worst) to 10 (best):\n- "
        + "\n- ".join(_COMM_VIEW_TEXT[v] for v in views)
        + "\nAnswer with a JSON object only: {"
        + ", ".join(f'"{v}": n' for v in views)
        + "}."
    )
    all_images = [n["image"] for d in docs for n in d["nodes"] if n["kind"] == "image"]
    urls: list[tuple[str | None, str | None]] = image_urls(all_images, max_edge) if images and all_images else [(None, None)] * len(all_images)
    rows: list[dict[str, Any]] = []
    requests: list[Any] = []
    slots: list[int] = []
    at = 0
    for i, d in enumerate(docs):
        n_img = sum(1 for n in d["nodes"] if n["kind"] == "image")
        doc_urls, at = urls[at : at + n_img], at + n_img
        rows.append({"doc_id": d["doc_id"], **dict.fromkeys(COMM_VIEWS), "raw": None, "error": d["error"]})
        if d["error"] is not None:
            continue
        if not d["nodes"]:
            rows[-1]["error"] = "empty document"
            continue
        text, attached = _serialise(d, doc_urls, max_images, images)
        content = [text_part("Document:\n" + text)] + [image_part(u) for u in attached] + [text_part(instructions)]
        requests.append({"messages": [{"role": "system", "content": _COMM_SYSTEM}, {"role": "user", "content": content}], "schema": schema, "schema_name": "comm_views"})
        slots.append(i)
    def parse(text: str, i: int) -> tuple[dict[str, int] | None, str | None]:
        obj, err = parse_json(text)
        return parse_scores(obj, dict.fromkeys(views, (0, 10)), aliases={"text_development": "development", "image_text_alignment": "alignment"}) if obj is not None else (None, err)

    _fill(rows, slots, client.chat(requests, progress=progress, label="comm judge"), parse)
    schema_out = {"doc_id": pl.String} | dict.fromkeys(COMM_VIEWS, pl.Int8) | {"raw": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema=schema_out, orient="row") if rows else pl.DataFrame(schema=schema_out)


def _comm_docs(data: Any) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(as_records(data, ("title", "steps"), "comm", required=(("steps",),))):
        nodes = []
        error = None
        for k, step in enumerate(r["steps"] or []):
            for item in step:
                if item.get("type") == "text":
                    nodes.append({"kind": "text", "text": item.get("content"), "image": None, "step": k, "role": None})
                elif item.get("type") == "image":
                    image = item.get("image")
                    if image is not None and not isinstance(image, (bytes, bytearray, memoryview)):
                        # A path or URL in a table: only a dataset read by interleaf has its images loaded.
                        error = error or f"step {k}'s image is a {type(image).__name__} ({str(image)[:80]!r}), not image bytes: give the CoMM files themselves (interleaf reads them and loads their images, --image-root) rather than a table"
                        image = None
                    nodes.append({"kind": "image", "text": None, "image": image, "step": k, "role": None})
        out.append({"doc_id": str(r.get("doc_id") or r.get("id") or r.get("data_id") or i), "meta": {"title": r["title"]} if r["title"] else {}, "error": error, "nodes": nodes})
    return out
