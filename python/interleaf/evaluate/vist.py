"""The VIST protocol of GILL and MGCC (MGCC, arXiv 2405.18304; GILL): for each story, a model sees the
captions and images of the first steps and the last step's caption, ``[cap1, img1, ..., cap4,
img4, cap5]``, and generates the last (5th) image, which CLIP-I then compares with the story's
own (:func:`interleaf.evaluate.clip_image_similarity`, or ``interleaf eval clip-i`` on the
folders).

As GILL's ``evals/generate_vist_images.py`` and ``compute_clip_similarity_vist.py`` do: the
annotations are GILL's formatted file (``{"annotations": {story_id: [{"image_id", "caption"},
...]}}``, steps in story order), image ``i`` is ``<image_root>/<image_id>.png``, a story whose
context images are not all there is skipped (with the missing file named), and the generated
image is saved as ``<target image_id>.png``, so :func:`interleaf.evaluate.generations.folder_pairs`
pairs it with the ground truth. The raw VIST SIS file (``annotations`` a list of one-item lists
with ``story_id``, ``photo_flickr_id``, ``worker_arranged_photo_order`` and ``text``) is read
too: steps ordered by ``worker_arranged_photo_order``, captions from ``text_field`` (``"text"``,
VIST's normalised text, by default; which field GILL's formatted file was made from is not
published).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from interleaf.evaluate.comm import MAX_IMAGE_BYTES
from interleaf.io.local import load_json_file, read_confined

__all__ = ["vist_stories"]

VIST_SCHEMA: dict[str, pl.DataType] = {
    "story_id": pl.String(),
    "captions": pl.List(pl.String()),
    "image_ids": pl.List(pl.String()),
    "target_image_id": pl.String(),
    "context_images": pl.List(pl.Binary()),
    "target_image": pl.Binary(),
    "target_error": pl.String(),
    "error": pl.String(),
}


def read_image(root: Path, name: str) -> tuple[bytes | None, str | None]:
    """The bytes of image file ``name`` under ``root`` (only inside it), or None and why
    (``"<name>: <reason>"``)."""
    data, why = read_confined(root / name, root, MAX_IMAGE_BYTES, root_name="the image root")
    return data, None if why is None else f"{name}: {why}"


def _steps(annotations: Any, text_field: str) -> list[tuple[str | None, list[tuple[str, str]], str | None]]:
    """(story_id, [(image_id, caption), ...], error) per story, in file order: a malformed
    story or step is that story's error, never the run's; a SIS item without a story is a row
    of its own (story_id None) after the stories, unless no item has one (the file is refused)."""
    if isinstance(annotations, dict):
        # GILL's formatted file: story id -> steps in order.
        out: list[tuple[str | None, list[tuple[str, str]], str | None]] = []
        for sid, steps in annotations.items():
            if not isinstance(steps, list):
                out.append((str(sid), [], "expected a list of {'image_id', 'caption'} steps"))
                continue
            bad = next((k for k, st in enumerate(steps) if not (isinstance(st, dict) and isinstance(st.get("image_id"), str | int) and not isinstance(st.get("image_id"), bool) and isinstance(st.get("caption"), str))), None)
            if bad is not None:
                out.append((str(sid), [], f"step {bad}: expected an 'image_id' (text or number) and a 'caption' (text)"))
                continue
            out.append((str(sid), [(str(st["image_id"]), st["caption"]) for st in steps], None))
        return out
    if isinstance(annotations, list):
        # VIST's SIS file: one-item lists of story items.
        stories: dict[str, list[tuple[int, str, str]]] = {}
        errors: dict[str, str] = {}
        orphans: list[str] = []  # items without a story: counted, unless the file has no story
        for k, item in enumerate(annotations):
            a = item[0] if isinstance(item, list) and item else item
            if not isinstance(a, dict) or not isinstance(a.get("story_id"), str | int) or isinstance(a.get("story_id"), bool):
                orphans.append(f"annotation {k}: no story_id: expected VIST's SIS items (story_id, photo_flickr_id, worker_arranged_photo_order, {text_field!r})")
                continue
            sid = str(a["story_id"])
            order, image, text = a.get("worker_arranged_photo_order"), a.get("photo_flickr_id"), a.get(text_field)
            if not (isinstance(order, int) and not isinstance(order, bool) and isinstance(image, str | int) and isinstance(text, str)):
                errors.setdefault(sid, f"annotation {k}: expected worker_arranged_photo_order (a number), photo_flickr_id and {text_field!r} (text)")
                stories.setdefault(sid, [])
                continue
            stories.setdefault(sid, []).append((order, str(image), text))
        if orphans and not stories:
            raise ValueError(orphans[0])
        out = [(sid, [(img, cap) for _, img, cap in sorted(items)] if sid not in errors else [], errors.get(sid)) for sid, items in stories.items()]
        return out + [(None, [], why) for why in orphans]
    raise ValueError("annotations must be GILL's formatted mapping (story id -> steps) or VIST's SIS list")


def vist_stories(annotations: Any, image_root: str | os.PathLike | None = None, *, image_suffix: str = ".png", text_field: str = "text") -> pl.DataFrame:
    """The VIST generation samples of ``annotations`` (a path to a JSON file with an
    ``annotations`` key, or that value): one row per story with ``story_id``, ``captions`` (every
    step's, in order), ``image_ids`` (every step's), ``target_image_id`` (the last step's: the
    image to generate), and with an ``image_root`` the context images' bytes
    (``context_images``, every step but the last) and the ``target_image``, read from
    ``<image_root>/<image_id><image_suffix>`` (only inside ``image_root``). ``error`` says why a
    story cannot be used (a story of one step, a missing or unreadable context image: GILL skips
    those stories; an item of VIST's SIS file without a story is a row of its own, with no
    story_id); a missing target only leaves ``target_image`` null, with ``target_error`` saying
    why, as GILL generates it anyway and its CLIP-I script skips and counts the pair."""
    if isinstance(annotations, (str, os.PathLike)):
        annotations = load_json_file(annotations)
    if isinstance(annotations, dict) and "annotations" in annotations:
        annotations = annotations["annotations"]
    root = Path(image_root) if image_root is not None else None
    rows = []
    for sid, steps, error in _steps(annotations, text_field):
        ids = [i for i, _ in steps]
        row: dict[str, Any] = {"story_id": sid, "captions": [c for _, c in steps], "image_ids": ids, "target_image_id": ids[-1] if ids else None, "context_images": None, "target_image": None, "target_error": None, "error": error}
        if error is None and len(steps) < 2:
            row["error"] = f"a story needs 2 steps or more, this one has {len(steps)}"
        elif error is None and root is not None:
            context = []
            for image_id in ids[:-1]:
                data, why = read_image(root, f"{image_id}{image_suffix}")
                if why is not None:
                    row["error"] = f"context image {why}"
                    break
                context.append(data)
            else:
                row["context_images"] = context
            row["target_image"], row["target_error"] = read_image(root, f"{ids[-1]}{image_suffix}")
        rows.append(row)
    return pl.DataFrame(rows, schema=VIST_SCHEMA)
