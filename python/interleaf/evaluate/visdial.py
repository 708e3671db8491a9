"""The VisDial protocol of GILL and MGCC (MGCC, arXiv 2405.18304; GILL): for each dialogue, a model sees the
dialogue as text and generates the dialogue's image, which CLIP-I then compares with the real one
(:func:`interleaf.evaluate.clip_image_similarity`, or ``interleaf eval clip-i`` on the folders).

As GILL's ``evals/generate_visdial_images.py`` and ``compute_clip_similarity_visdial.py`` do:
the annotations are VisDial v1.0's file (``{"split", "data": {"questions", "answers",
"dialogs"}}``, each dialog ``{"image_id", "caption", "dialog": [{"question", "answer"}, ...]}``
with indices into the question and answer lists); the context is every round as
``"Q: <question>?"`` then ``"A: <answer>"``, the lines joined by ``"\\n"`` (the caption is not
part of it: GILL leaves it out; it is given in its own column); the generated image is saved as
``<12-digit image id>.png`` and the real one is ``VisualDialog_<split>_<12-digit id>.jpg`` in the
image folder, so ``interleaf eval clip-i GENERATED IMAGES --reference-prefix
VisualDialog_val2018_`` pairs them. A missing real image is skipped and counted there, as GILL's
script skips it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from interleaf.evaluate.vist import read_image
from interleaf.io.local import load_json_file

__all__ = ["IMAGE_NAME", "visdial_context", "visdial_dialogs"]

#: The image file of a dialogue in VisDial's image folders (``split`` as the file's, e.g.
#: ``val2018``); train dialogues use COCO's images: ``"COCO_train2014_{image_id:012d}.jpg"``.
IMAGE_NAME = "VisualDialog_{split}_{image_id:012d}.jpg"

VISDIAL_SCHEMA: dict[str, pl.DataType] = {
    "image_id": pl.Int64(),
    "name": pl.String(),
    "caption": pl.String(),
    "questions": pl.List(pl.String()),
    "answers": pl.List(pl.String()),
    "context": pl.String(),
    "target_image": pl.Binary(),
    "target_error": pl.String(),
    "error": pl.String(),
}


def visdial_context(questions: list[str], answers: list[str | None]) -> str:
    """GILL's text context of one dialogue: per round ``"Q: <question>?"`` and ``"A: <answer>"``,
    joined by newlines. A round without an answer (the last round of VisDial's test split) gives
    its question line only."""
    lines = []
    for q, a in zip(questions, answers, strict=True):
        lines.append(f"Q: {q}?")
        if a is not None:
            lines.append(f"A: {a}")
    return "\n".join(lines)


def _index(pool: list[Any], i: Any) -> str | None:
    if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(pool) and isinstance(pool[i], str):
        return pool[i]
    return None


def _dialog(d: Any, k: int, questions: list[Any], answers: list[Any], rounds: int | None) -> dict[str, Any]:
    """One dialogue's row without its image; a malformed dialogue is that row's error."""
    row: dict[str, Any] = {"image_id": None, "name": None, "caption": None, "questions": None, "answers": None, "context": None, "target_image": None, "target_error": None, "error": None}
    if not isinstance(d, dict):
        return row | {"error": f"dialog {k}: expected an object with image_id, caption and dialog"}
    image_id = d.get("image_id")
    if not isinstance(image_id, int) or isinstance(image_id, bool) or not 0 <= image_id < 1 << 63:
        return row | {"error": f"dialog {k}: image_id must be an integer in [0, 2**63)"}
    row |= {"image_id": image_id, "name": f"{image_id:012d}", "caption": d.get("caption") if isinstance(d.get("caption"), str) else None}
    turns = d.get("dialog")
    if not isinstance(turns, list) or not turns:
        return row | {"error": "no dialogue rounds"}
    qs: list[str] = []
    ans: list[str | None] = []
    for r, t in enumerate(turns[:rounds] if rounds is not None else turns):
        q = _index(questions, t.get("question")) if isinstance(t, dict) else None
        a = _index(answers, t.get("answer")) if isinstance(t, dict) else None
        if q is None or (isinstance(t, dict) and "answer" in t and a is None):
            return row | {"error": f"round {r + 1}: the question or answer index is not in the file's lists"}
        qs.append(q)
        ans.append(a)
    return row | {"questions": qs, "answers": ans, "context": visdial_context(qs, ans)}


def visdial_dialogs(annotations: Any, image_root: str | os.PathLike | None = None, *, split: str | None = None, image_name: str = IMAGE_NAME, rounds: int | None = None) -> pl.DataFrame:
    """The VisDial generation samples of ``annotations`` (a path to VisDial's v1.0 JSON, or its
    parsed object): one row per dialogue, in file order, with ``image_id``, ``name`` (the id as
    12 digits: save the generated image as ``<name>.png``), ``caption``, the rounds'
    ``questions`` and ``answers`` (text; an answer is null in a round that has none),
    ``context`` (GILL's text: :func:`visdial_context`), and with an ``image_root`` the real
    image's bytes (``target_image``, read from ``image_name`` formatted with ``split`` and
    ``image_id``, only inside ``image_root``; null when missing, as GILL still generates and its
    CLIP-I script skips the pair, with ``target_error`` saying why). ``split``: the file's own ``split`` (``val2018``) unless given.
    ``rounds``: use only the first ``rounds`` rounds (default every round: 10 in VisDial).
    ``error`` says why a dialogue cannot be used (a malformed dialogue or an index outside the
    file's lists); a file without VisDial's lists is refused."""
    if isinstance(annotations, (str, os.PathLike)):
        annotations = load_json_file(annotations)
    data = annotations.get("data") if isinstance(annotations, dict) else None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("questions", "answers", "dialogs")):
        raise ValueError("annotations must be VisDial's v1.0 file: {'split', 'data': {'questions': [...], 'answers': [...], 'dialogs': [...]}}")
    if rounds is not None and rounds < 1:
        raise ValueError(f"rounds must be 1 or more, got {rounds}")
    split = split or annotations.get("split") or "val2018"
    try:
        image_name.format(split=split, image_id=0)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"image_name {image_name!r} must be a template with only {{split}} and {{image_id}} (an integer): {e!r}") from None
    root = Path(image_root) if image_root is not None else None
    rows = []
    for k, d in enumerate(data["dialogs"]):
        row = _dialog(d, k, data["questions"], data["answers"], rounds)
        if row["error"] is None and root is not None:
            row["target_image"], row["target_error"] = read_image(root, image_name.format(split=split, image_id=row["image_id"]))
        rows.append(row)
    return pl.DataFrame(rows, schema=VISDIAL_SCHEMA)
