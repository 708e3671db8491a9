"""Tolerant readers for model answers.

Servers that enforce a JSON schema answer with clean JSON; many do not, and models wrap JSON in
prose, code fences or trailing commas. :func:`parse_json` finds the object anyway and says what it
could not read; :func:`parse_scores` checks integer fields and their ranges; :func:`parse_synjudge`
reads InterSyn's bracket format (and JSON). Each returns ``(value, error)``: exactly one is None.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _snippet(text: str, n: int = 80) -> str:
    t = " ".join(text.split())
    return repr(t if len(t) <= n else t[: n - 3] + "...")


def _loads_object(s: str) -> dict[str, Any] | None:
    for candidate in (s, _TRAILING_COMMA.sub(r"\1", s)):
        try:
            # strict=False: raw newlines and other control characters inside strings are common.
            v = json.loads(candidate, strict=False)
        except (ValueError, RecursionError):  # deep nesting ("[[[[...") is an unreadable answer
            continue
        if isinstance(v, dict):
            return v
    return None


def parse_json(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in a model's answer, a reasoning model's ``<think>...</think>`` left
    out: the whole answer, else each fenced block, else the span from the first ``{`` to the
    last ``}``, else the last whole object in the text (an example before the answer, braces
    in prose after it); trailing commas are forgiven."""
    if text is None:
        return None, "no answer"
    s = _THINK.sub("", text).strip()
    if not s:
        return None, "empty answer" if not text.strip() else "only reasoning (<think>) in the answer"
    v = _loads_object(s)
    if v is not None:
        return v, None
    for block in _FENCE.findall(s):
        v = _loads_object(block.strip())
        if v is not None:
            return v, None
    a, b = s.find("{"), s.rfind("}")
    if a != -1 and b > a:
        v = _loads_object(s[a : b + 1]) or _last_object(s)
        if v is not None:
            return v, None
        return None, f"invalid JSON object in answer: {_snippet(s[a : b + 1])}"
    return None, f"no JSON object in answer: {_snippet(s)}"


#: A reasoning model's thoughts (closed, or cut off with no answer after them).
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S)


def _last_object(s: str) -> dict[str, Any] | None:
    """The last JSON object that decodes where it starts in ``s`` (objects nested in it
    skipped)."""
    decoder = json.JSONDecoder(strict=False)
    found, i = None, s.find("{")
    while i != -1:
        try:
            v, end = decoder.raw_decode(s, i)
        except (ValueError, RecursionError):
            i = s.find("{", i + 1)
            continue
        if isinstance(v, dict):
            found = v
        i = s.find("{", end)
    return found


def _as_int(v: Any) -> tuple[int | None, int | None]:
    """``(value, denominator)``: the integer ``v`` holds (None when it holds none) and, for a
    fraction such as ``"7/10"``, the number it is written over (None otherwise)."""
    if isinstance(v, bool):
        return None, None
    if isinstance(v, int):
        return v, None
    if isinstance(v, float) and v.is_integer():
        return int(v), None
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(-?\d+)(?:\.0+)?\s*(?:/\s*(\d+)(?:\.0+)?\s*)?", v)
        if m:
            return int(m.group(1)), None if m.group(2) is None else int(m.group(2))
    return None, None


def parse_scores(obj: Mapping[str, Any] | None, fields: Mapping[str, tuple[int, int]], *, aliases: Mapping[str, str] | None = None) -> tuple[dict[str, int] | None, str | None]:
    """Integer scores ``{field: value}`` from a parsed object, each within its inclusive
    ``(low, high)`` range. Keys match case-insensitively, spaces and dashes as underscores;
    ``aliases`` maps other spellings to field names. Integral floats and strings like ``"7"`` or
    ``"7/10"`` are accepted, a fraction only over the scale's maximum (``"4/5"`` on 1-10 is an
    error, not a 4); anything else is an error naming the field and its scale."""
    if obj is None:
        return None, "no object"
    norm = {re.sub(r"[\s\-]+", "_", str(k).strip().lower()): v for k, v in obj.items()}
    for alias, name in (aliases or {}).items():
        a = re.sub(r"[\s\-]+", "_", alias.lower())
        if a in norm and name not in norm:
            norm[name] = norm[a]
    out: dict[str, int] = {}
    for name, (lo, hi) in fields.items():
        if name not in norm:
            return None, f"missing field {name!r}"
        v, over = _as_int(norm[name])
        if over is not None and over != hi:
            # "4/5" on a 1-10 scale is not a 4 out of 10: refused, never misread.
            return None, f"{name}: {norm[name].strip()!r} is a score out of {over}, not on the {lo}-{hi} scale"
        if v is None:
            return None, f"{name}: expected an integer, got {norm[name]!r}"
        if not lo <= v <= hi:
            return None, f"{name}: {v} is outside {lo}-{hi}"
        out[name] = v
    return out, None


#: InterSyn's four SynJudge dimensions: field name -> the label of the published output format.
SYNJUDGE_DIMENSIONS = {
    "tcc": "Text Content Completeness",
    "icc": "Image Content Completeness",
    "iq": "Image Quality",
    "its": "Image-Text Synergy",
}


def parse_synjudge(text: str | None) -> tuple[dict[str, int] | None, str | None]:
    """SynJudge's four scores (0-5) from ``[Text Content Completeness: a; Image Content
    Completeness: b; Image Quality: c; Image-Text Synergy: d]`` (brackets, order, separators and
    case tolerated, abbreviations TCC/ICC/IQ/ITS accepted), or from a JSON object with those
    keys. Where a dimension is scored more than once (a draft line, then the final one) the last
    score counts, as :func:`parse_json` takes the last object: the final answer wins."""
    if text is None:
        return None, "no answer"
    text = _THINK.sub("", text)  # a reasoning model's drafts are not its answer
    found: dict[str, str] = {}
    for key, label in SYNJUDGE_DIMENSIONS.items():
        words = r"[\s\-_]*".join(re.escape(w) for w in re.split(r"[\s\-]+", label))
        # Each run of spaces and stars (markdown bold: **TCC**: 3) is matched by one class, so an
        # answer of long blank runs cannot make the search backtrack quadratically.
        scores = [m.group(1) for m in re.finditer(rf"(?:{words}|\b{key}\b)[\s*]*(?:\(\s*{key}\s*\)[\s*]*)?[:=][\s*]*(-?\d+(?:\.\d+)?(?:[ \t]*/[ \t]*\d+)?)", text, re.I)]
        if scores:
            found[key] = scores[-1]  # the final answer wins
    if len(found) < len(SYNJUDGE_DIMENSIONS):
        obj, _ = parse_json(text)
        if obj is not None:
            aliases = {label: key for key, label in SYNJUDGE_DIMENSIONS.items()}
            return parse_scores(obj, dict.fromkeys(SYNJUDGE_DIMENSIONS, (0, 5)), aliases=aliases)
        missing = [SYNJUDGE_DIMENSIONS[k] for k in SYNJUDGE_DIMENSIONS if k not in found]
        return None, f"SynJudge format not found (missing {', '.join(missing)}) in answer: {_snippet(text)}"
    return parse_scores(found, dict.fromkeys(SYNJUDGE_DIMENSIONS, (0, 5)))


def parse_failure(response: Any, error: str | None) -> str:
    """The error of an answer that could not be parsed, saying when the answer was cut off by
    the token limit (``finish_reason == "length"``). It also removes the answer from the
    client's cache (``response.uncache()``), so that the next run asks again rather than
    failing on the same stored answer."""
    uncache = getattr(response, "uncache", None)
    if callable(uncache):
        uncache()
    cut = " (the answer was cut off at max_tokens)" if getattr(response, "finish_reason", None) == "length" else ""
    return f"parse: {error}{cut}"
