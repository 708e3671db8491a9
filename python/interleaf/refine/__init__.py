"""SEIR: InterSyn's self-evaluation and iterative refinement (InterSyn, arXiv 2506.09427).

For each item x with context C: ``s_k = evaluate(x_{k-1}, C)``; stop when ``s_k`` is "none",
otherwise ``x_k = refine(x_{k-1}, s_k, C)``; at most ``k`` rounds (InterSyn uses 3: the gains
flatten after 3-5). :func:`seir` is the generic loop over batches (every round is one batch call,
so LLM-backed steps run concurrently); :func:`llm_evaluator` / :func:`llm_refiner` are ready-made
text steps on an OpenAI-compatible endpoint, :func:`image_evaluator` / :func:`image_refiner` the
image steps (a vision-language model critiques, an OpenAI images endpoint regenerates), and
:func:`cascade` applies them as InterSyn does: the question first, then the answer together with
the image caption, then the image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import polars as pl

from interleaf.llm import Client, parse_failure, parse_json
from interleaf.llm.parse import _THINK
from interleaf.llm.records import as_records

__all__ = ["STOP_REASONS", "cascade", "image_evaluator", "image_refiner", "is_none", "llm_evaluator", "llm_refiner", "seir"]

#: Why an item's loop ended: the evaluator said "none", ``k`` rounds were made, a step failed
#: for this item (its last good value is kept as ``final``), or there was no value to refine
#: (None: nothing is asked).
STOP_REASONS = ("none", "max_rounds", "error", "missing")

#: A step's values: texts, or encoded images (bytes) for an image step.
_V = TypeVar("_V", str, bytes)
Evaluate = Callable[[list[_V], list[Any]], Sequence[str | None | BaseException]]
Refine = Callable[[list[_V], list[str], list[Any]], Sequence[_V | None | BaseException]]


#: Answers that say there is nothing to improve, in the words models use for InterSyn's "none"
#: (after the trim of :func:`is_none`, lower-cased).
_NO_SUGGESTION = re.compile(
    r"no|none(?: (?:needed|required|necessary))?|n/?a|n\.a|not applicable|nil|null"
    r"|nothing(?: (?:to (?:change|improve|fix)|needed))?"
    r"|no(?: further)? (?:changes?|suggestions?|improvements?|issues?|problems?)(?: (?:(?:is|are|were) )?(?:found|needed|necessary|required))?"
)


def is_none(suggestion: str | None) -> bool:
    """InterSyn's stopping answer: None, a blank answer, or "none" (case, quotes and a final
    full stop ignored), or one of its common wordings ("N/A", "No changes needed.", "nothing to
    improve"): a model that finds nothing to improve says so in more ways than one."""
    if suggestion is None:
        return True
    s = suggestion.strip()
    if not s:
        return True
    # Anything longer is a suggestion however it is quoted (and the trim below stays linear).
    if len(s) > 64:
        return False
    s = " ".join(re.sub(r"^[\s\"'`]+|[\s\"'`.!]+$", "", s).lower().split())
    return _NO_SUGGESTION.fullmatch(s) is not None


def seir(items: Sequence[_V], evaluate: Evaluate[_V], refine: Refine[_V], *, k: int = 3, contexts: Sequence[Any] | None = None) -> pl.DataFrame:
    """The SEIR loop over ``items`` (the x_0 values) with optional per-item ``contexts``.

    Values are strings, or encoded images (bytes) for an image step.
    ``evaluate(xs, contexts)`` returns one suggestion per item (``"none"``, None, a blank or
    another way of saying none, :func:`is_none`: good as is);
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
    # Values are texts, or encoded images (bytes) for an image step.
    kind: type = bytes if any(isinstance(x, bytes) for x in items) else str
    state: list[dict[str, Any]] = [{"initial": x, "final": x, "rounds": 0, "stopped": "max_rounds", "suggestions": [], "history": [], "error": None} for x in items]
    active = [i for i in range(n) if isinstance(items[i], kind)]
    for i in range(n):
        if items[i] is None:
            state[i]["stopped"] = "missing"
        elif not isinstance(items[i], kind):
            state[i] |= {"stopped": "error", "error": f"expected {'bytes' if kind is bytes else 'a string'}, got {type(items[i]).__name__}"}

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
            elif s is None or is_none(s):
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
            if isinstance(x, BaseException) or not isinstance(x, kind):
                state[i] |= {"stopped": "error", "error": f"refine: {x}" if isinstance(x, BaseException) else f"refine returned {type(x).__name__}"}
                continue
            state[i]["final"] = x
            state[i]["rounds"] += 1
            state[i]["history"].append(x)
            active.append(i)
    # An item still active after k rounds was refined k times: its stop reason stays max_rounds.
    vt = pl.Binary if kind is bytes else pl.String
    schema = {"initial": vt, "final": vt, "rounds": pl.Int32, "stopped": pl.String, "suggestions": pl.List(pl.String), "history": pl.List(vt), "error": pl.String}
    return pl.DataFrame([{c: s[c] if c not in ("initial", "final") or isinstance(s[c], kind) else None for c in schema} for s in state], schema=schema, orient="row") if state else pl.DataFrame(schema=schema)


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


def llm_evaluator(client: Client, field: str, criteria: str, *, progress: bool = False) -> Evaluate[str]:
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
        return [_suggestion(r) for r in client.chat(reqs, progress=progress, label=f"seir evaluate {field}")]

    return evaluate


def llm_refiner(client: Client, field: str, *, progress: bool = False) -> Refine[str]:
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


def _suggestion(resp: Any) -> str | BaseException:
    """An evaluator's ``suggestion``; ``"none"`` for the answers that say there is none: a null
    suggestion, or a bare "none" (or "N/A", ...) instead of the JSON object."""
    answer = _THINK.sub("", resp.text or "").strip() if resp.ok else ""
    if answer and is_none(answer):  # a blank answer is a failure, not a "none"
        return "none"
    if resp.ok:
        obj, _ = parse_json(resp.text)
        if obj is not None and "suggestion" in obj and obj["suggestion"] is None:
            return "none"
    return _field(resp, "suggestion")


def image_evaluator(client: Client, criteria: str = "the image shows what the caption describes, completely, with good quality and no artefacts", *, max_edge: int = 512, progress: bool = False) -> Evaluate[bytes]:
    """An ``evaluate`` step for images on a vision-language endpoint: the model sees the image
    (a JPEG data URL, at most ``max_edge`` pixels) and its context (the caption) and answers
    ``{"suggestion": "..."}`` or ``"none"``. The prompt is ours."""
    from interleaf.llm import image_part, image_urls, text_part

    def evaluate(xs: list[bytes], contexts: list[Any]) -> list[str | BaseException]:
        urls = image_urls(xs, max_edge)
        out: list[str | BaseException | None] = [None] * len(xs)
        reqs, slots = [], []
        for i, ((url, err), c) in enumerate(zip(urls, contexts, strict=True)):
            if url is None:
                out[i] = ValueError(f"image: {err or 'missing'}")
                continue
            prompt = f'{_context_text(c)}Criteria: {criteria}\nIf the image meets the criteria, answer {{"suggestion": "none"}}. Otherwise answer {{"suggestion": "<one concrete change to the image>"}}. JSON only.'
            reqs.append({"messages": [{"role": "user", "content": [image_part(url), text_part(prompt)]}], "schema": _EVAL_SCHEMA, "schema_name": "seir_evaluate"})
            slots.append(i)
        for i, r in zip(slots, client.chat(reqs, progress=progress, label="seir evaluate image"), strict=True):
            out[i] = _suggestion(r)
        return [o if o is not None else RuntimeError("not evaluated") for o in out]

    return evaluate


def image_refiner(images: Client, *, size: str = "1024x1024", progress: bool = False) -> Refine[bytes]:
    """A ``refine`` step for images on an OpenAI images endpoint (:meth:`Client.images`): a new
    image from the caption (the context's ``caption``) and the suggestion."""

    def refine(xs: list[bytes], suggestions: list[str], contexts: list[Any]) -> list[bytes | BaseException]:
        prompts = [f"{(c or {}).get('caption') if isinstance(c, dict) else c or ''}\nMake sure that: {s}".strip() for s, c in zip(suggestions, contexts, strict=True)]
        return [r.image if r.ok and r.image else RuntimeError(r.error or "no image") for r in images.images(prompts, size=size, progress=progress, label="seir refine image")]

    return refine


def cascade(samples: Any, client: Client, *, k: int = 3, images: Client | None = None, image_size: str = "1024x1024", max_edge: int = 512, progress: bool = False) -> pl.DataFrame:
    """InterSyn's SEIR cascade: the ``question`` is refined first (context: the caption), then
    the ``answer`` and ``caption`` (context: the refined question and each other's current
    value), then the ``image``: a vision-language ``client`` critiques it against the refined
    caption and, while it suggests a change, ``images`` (a client for an OpenAI images
    endpoint, :meth:`Client.images`) generates a new one; each step at most ``k`` rounds.

    ``samples``: a list of ``{"question", "answer", "caption", "image"}`` dicts (``image``:
    encoded bytes, optional) or a DataFrame with those columns. Returns the refined
    ``question``, ``answer``, ``caption`` and ``image``, the original texts (``*_initial``),
    rounds per field, ``image_step`` (``done``, or why it was skipped: no images client, no
    image) and ``error`` (the first step that failed; its field keeps its last good value)."""
    recs = as_records(samples, ("question", "answer", "caption", "image"), "seir cascade", required=(("question", "answer", "caption"),))
    out = [{f"{f}_initial": r[f] for f in ("question", "answer", "caption")} | {f: r[f] for f in ("question", "answer", "caption", "image")} | {"error": None} for r in recs]
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
    with_image = [i for i, o in enumerate(out) if isinstance(o["image"], bytes) and o["image"]]
    for i, o in enumerate(out):
        o["image_rounds"] = 0
        o["image_step"] = "skipped: no image" if i not in with_image else "skipped: no images client (pass images=Client(...) for an OpenAI images endpoint)"
    if images is not None and with_image:
        res = seir(
            [out[i]["image"] for i in with_image],
            image_evaluator(client, max_edge=max_edge, progress=progress),
            image_refiner(images, size=image_size, progress=progress),
            k=k,
            contexts=[{"caption": out[i]["caption"]} for i in with_image],
        )
        for i, row in zip(with_image, res.iter_rows(named=True), strict=True):
            o = out[i]
            o["image"], o["image_rounds"], o["image_step"] = row["final"], row["rounds"], "done"
            if row["error"] and o["error"] is None:
                o["error"] = f"image: {row['error']}"
    cols = ["question", "answer", "caption", "image", "question_initial", "answer_initial", "caption_initial", "question_rounds", "answer_rounds", "caption_rounds", "image_rounds", "image_step", "error"]
    schema = {c: (pl.Int32 if c.endswith("_rounds") else pl.Binary if c == "image" else pl.String) for c in cols}
    return pl.DataFrame([{c: o.get(c) for c in cols} for o in out], schema=schema, orient="row") if out else pl.DataFrame(schema=schema)
