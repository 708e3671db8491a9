"""SEIR: InterSyn's self-evaluation and iterative refinement (METHODS.md §2).

For each item x with context C: ``s_k = evaluate(x_{k-1}, C)``; stop when ``s_k`` is "none",
otherwise ``x_k = refine(x_{k-1}, s_k, C)``; at most ``k`` rounds (InterSyn uses 3: the gains
flatten after 3-5). :func:`seir` is the generic loop over batches (every round is one batch call,
so LLM-backed steps run concurrently); :func:`llm_evaluator` / :func:`llm_refiner` are ready-made
steps on an OpenAI-compatible endpoint, and :func:`cascade` applies them as InterSyn does: the
question first, then the answer together with the image caption.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from interleaf.llm import Client, parse_failure, parse_json
from interleaf.llm.records import as_records

__all__ = ["STOP_REASONS", "cascade", "is_none", "llm_evaluator", "llm_refiner", "seir"]

#: Why an item's loop ended: the evaluator said "none", ``k`` rounds were made, or a step failed
#: for this item (its last good value is kept as ``final``).
STOP_REASONS = ("none", "max_rounds", "error")

Evaluate = Callable[[list[str], list[Any]], Sequence[str | None | BaseException]]
Refine = Callable[[list[str], list[str], list[Any]], Sequence[str | None | BaseException]]


def is_none(suggestion: str | None) -> bool:
    """InterSyn's stopping answer: None, or "none" (case, quotes and a final full stop
    ignored)."""
    if suggestion is None:
        return True
    return re.sub(r"^[\s\"'`]+|[\s\"'`.!]+$", "", suggestion).lower() == "none"


def seir(items: Sequence[str], evaluate: Evaluate, refine: Refine, *, k: int = 3, contexts: Sequence[Any] | None = None) -> pl.DataFrame:
    """The SEIR loop over ``items`` (the x_0 values) with optional per-item ``contexts``.

    ``evaluate(xs, contexts)`` returns one suggestion per item (``"none"`` / None: good as is);
    ``refine(xs, suggestions, contexts)`` returns one refined value per item. Either may return an
    exception object for one item (that item stops with ``error``) or raise (every item of that
    batch stops with ``error``); nothing is lost either way.

    Returns one row per item, in order: ``initial``, ``final`` (the last refined value),
    ``rounds`` (refinements applied), ``stopped`` (:data:`STOP_REASONS`), ``suggestions`` and
    ``history`` (the values after each round), ``error``."""
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    n = len(items)
    ctx = list(contexts) if contexts is not None else [None] * n
    if len(ctx) != n:
        raise ValueError(f"items and contexts differ in length ({n} vs {len(ctx)})")
    state = [{"initial": x, "final": x, "rounds": 0, "stopped": "max_rounds", "suggestions": [], "history": [], "error": None} for x in items]
    active = [i for i in range(n) if isinstance(items[i], str)]
    for i in range(n):
        if not isinstance(items[i], str):
            state[i] |= {"stopped": "error", "error": f"expected a string, got {type(items[i]).__name__}"}

    def call(fn: Callable[..., Sequence[Any]], what: str, idx: list[int], *args: list[Any]) -> list[Any]:
        try:
            out = list(fn(*args))
        except Exception as e:
            return [RuntimeError(f"{what} failed: {type(e).__name__}: {e}")] * len(idx)
        if len(out) != len(idx):
            return [RuntimeError(f"{what} returned {len(out)} values for {len(idx)} items")] * len(idx)
        return out

    for _ in range(k):
        if not active:
            break
        suggestions = call(evaluate, "evaluate", active, [state[i]["final"] for i in active], [ctx[i] for i in active])
        todo: list[tuple[int, str]] = []
        for i, s in zip(active, suggestions, strict=True):
            if isinstance(s, BaseException) or (s is not None and not isinstance(s, str)):
                state[i] |= {"stopped": "error", "error": f"evaluate: {s}" if isinstance(s, BaseException) else f"evaluate returned {type(s).__name__}"}
            elif is_none(s):
                state[i]["stopped"] = "none"
            else:
                state[i]["suggestions"].append(s)
                todo.append((i, s))
        if not todo:
            active = []
            break
        idx = [i for i, _ in todo]
        refined = call(refine, "refine", idx, [state[i]["final"] for i in idx], [s for _, s in todo], [ctx[i] for i in idx])
        active = []
        for i, x in zip(idx, refined, strict=True):
            if isinstance(x, BaseException) or not isinstance(x, str):
                state[i] |= {"stopped": "error", "error": f"refine: {x}" if isinstance(x, BaseException) else f"refine returned {type(x).__name__}"}
                continue
            state[i]["final"] = x
            state[i]["rounds"] += 1
            state[i]["history"].append(x)
            active.append(i)
    # An item still active after k rounds was refined k times: its stop reason stays max_rounds.
    schema = {"initial": pl.String, "final": pl.String, "rounds": pl.Int32, "stopped": pl.String, "suggestions": pl.List(pl.String), "history": pl.List(pl.String), "error": pl.String}
    return pl.DataFrame([{c: s[c] if c not in ("initial", "final") or isinstance(s[c], str) else None for c in schema} for s in state], schema=schema, orient="row") if state else pl.DataFrame(schema=schema)


_EVAL_SCHEMA = {"type": "object", "properties": {"suggestion": {"type": "string", "maxLength": 500}}, "required": ["suggestion"], "additionalProperties": False}


def _refine_schema(x: str) -> dict[str, Any]:
    # At most three times the current value (64 characters at least): a runaway model stops there.
    return {"type": "object", "properties": {"text": {"type": "string", "maxLength": max(64, 3 * len(x))}}, "required": ["text"], "additionalProperties": False}


def _context_text(c: Any) -> str:
    if c is None:
        return ""
    if isinstance(c, dict):
        return "".join(f"{k}: {v}\n" for k, v in c.items() if v is not None)
    return f"{c}\n"


def llm_evaluator(client: Client, field: str, criteria: str, *, progress: bool = False) -> Evaluate:
    """An ``evaluate`` step on the endpoint: the model critiques ``field`` (e.g. "question")
    against ``criteria`` given the context (a string or a dict of named fields) and answers
    ``{"suggestion": "..."}``, or ``"none"`` when nothing needs improving. The prompt is ours."""

    def evaluate(xs: list[str], contexts: list[Any]) -> list[str | BaseException]:
        reqs = [
            {
                "messages": [
                    {"role": "system", "content": "You review training data for a multimodal model and point out the single most important improvement, or say none."},
                    {
                        "role": "user",
                        "content": f"{_context_text(c)}{field}: {x}\n\nCriteria: {criteria}\n"
                        f'If the {field} already meets the criteria, answer {{"suggestion": "none"}}. Otherwise answer {{"suggestion": "<one concrete improvement>"}}. JSON only.',
                    },
                ],
                "schema": _EVAL_SCHEMA,
                "schema_name": "seir_evaluate",
            }
            for x, c in zip(xs, contexts, strict=True)
        ]
        return [_field(r, "suggestion") for r in client.chat(reqs, progress=progress, label=f"seir evaluate {field}")]

    return evaluate


def llm_refiner(client: Client, field: str, *, progress: bool = False) -> Refine:
    """A ``refine`` step on the endpoint: the model rewrites ``field`` following the suggestion,
    changing nothing else, and answers ``{"text": "..."}``. The prompt is ours."""

    def refine(xs: list[str], suggestions: list[str], contexts: list[Any]) -> list[str | BaseException]:
        reqs = [
            {
                "messages": [
                    {"role": "system", "content": "You improve training data for a multimodal model by applying one requested change and nothing else."},
                    {"role": "user", "content": f'{_context_text(c)}{field}: {x}\n\nApply this improvement: {s}\nAnswer {{"text": "<the improved {field}>"}}. JSON only.'},
                ],
                "schema": _refine_schema(x),
                "schema_name": "seir_refine",
            }
            for x, s, c in zip(xs, suggestions, contexts, strict=True)
        ]
        return [_field(r, "text") for r in client.chat(reqs, progress=progress, label=f"seir refine {field}")]

    return refine


def _field(resp: Any, key: str) -> str | BaseException:
    if not resp.ok:
        return RuntimeError(resp.error)
    obj, err = parse_json(resp.text)
    if obj is None:
        return ValueError(parse_failure(resp, err))
    v = obj.get(key)
    if not isinstance(v, str):
        return ValueError(parse_failure(resp, f"{key}: expected a string, got {v!r}"))
    return v.strip()


def cascade(samples: Any, client: Client, *, k: int = 3, progress: bool = False) -> pl.DataFrame:
    """InterSyn's SEIR cascade on text: the ``question`` is refined first (context: the caption),
    then the ``answer`` and ``caption`` (context: the refined question and each other's current
    value), each with up to ``k`` rounds.

    ``samples``: a list of ``{"question", "answer", "caption"}`` dicts or a DataFrame with those
    columns. Returns the refined ``question``, ``answer``, ``caption``, the originals
    (``*_initial``), rounds per field and ``error`` (the first step that failed). InterSyn's last
    step, critiquing and regenerating the image, is not part of this cascade: it needs an image
    generation endpoint, which this client does not drive yet."""
    recs = as_records(samples, ("question", "answer", "caption"), "seir cascade")
    out = [{f"{f}_initial": r[f] for f in ("question", "answer", "caption")} | {f: r[f] for f in ("question", "answer", "caption")} | {"error": None} for r in recs]
    q = seir(
        [r["question"] for r in recs],
        llm_evaluator(client, "question", "clear, specific, answerable with text and an image, grammatical", progress=progress),
        llm_refiner(client, "question", progress=progress),
        k=k,
        contexts=[{"caption": r["caption"]} for r in recs],
    )
    for o, row in zip(out, q.iter_rows(named=True), strict=True):
        o["question"], o["question_rounds"] = row["final"], row["rounds"]
        if row["error"]:
            o["error"] = f"question: {row['error']}"
    for field, other in (("answer", "caption"), ("caption", "answer")):
        crit = "answers the question completely and correctly" if field == "answer" else "describes an image that complements the answer without repeating it"
        res = seir(
            [o[field] for o in out],
            llm_evaluator(client, field, crit, progress=progress),
            llm_refiner(client, field, progress=progress),
            k=k,
            contexts=[{"question": o["question"], other: o[other]} for o in out],
        )
        for o, row in zip(out, res.iter_rows(named=True), strict=True):
            o[field], o[f"{field}_rounds"] = row["final"] if row["final"] is not None else o[field], row["rounds"]
            if row["error"] and o["error"] is None:
                o["error"] = f"{field}: {row['error']}"
    cols = ["question", "answer", "caption", "question_initial", "answer_initial", "caption_initial", "question_rounds", "answer_rounds", "caption_rounds", "error"]
    schema = {c: (pl.Int32 if c.endswith("_rounds") else pl.String) for c in cols}
    return pl.DataFrame([{c: o.get(c) for c in cols} for o in out], schema=schema, orient="row") if out else pl.DataFrame(schema=schema)

