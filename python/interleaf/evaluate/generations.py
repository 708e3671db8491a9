"""Generations folders: GILL's image folders for CLIP-I, and SynJudge samples from a CoMM-layout
predictions folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from interleaf.evaluate.comm import IMAGE, MAX_IMAGE_BYTES, TASKS, read_predictions
from interleaf.io.local import read_confined

__all__ = ["IMAGE_SUFFIXES", "folder_pairs", "synjudge_samples"]

#: Image files :func:`folder_pairs` pairs.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def _images(folder: Path, prefix: str = "") -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or p.is_symlink()):
            out.setdefault(p.stem.removeprefix(prefix), p)
    return out


def _read(p: Path | None, errors: list[str | None], i: int) -> bytes | None:
    if p is None:
        return None
    # As for every reader: a file (or symbolic link) that resolves outside its folder is not read.
    data, why = read_confined(p, p.parent, MAX_IMAGE_BYTES)
    if why is not None:
        errors[i] = f"{p.name}: {why}"
    return data


def folder_pairs(generated: str | Path, reference: str | Path, *, reference_prefix: str = "") -> tuple[list[str], list[bytes | None], list[bytes | None], list[str | None]]:
    """Generated and reference images paired by file stem, as GILL's script pairs
    ``outputs/{id}.png`` with ``val_images/{id}.png``: every stem in either folder, sorted, with
    the bytes of each side (None where the folder has no such image) and a read error per pair
    (None when both read). ``reference_prefix`` is taken off the reference stems that start with
    it first, as GILL's VisDial script pairs ``{id}.png`` with
    ``VisualDialog_val2018_{id}.jpg``."""
    gen, ref = _images(Path(generated)), _images(Path(reference), reference_prefix)
    names = sorted(set(gen) | set(ref))
    errors: list[str | None] = [None] * len(names)
    g = [_read(gen.get(n), errors, i) for i, n in enumerate(names)]
    r = [_read(ref.get(n), errors, i) for i, n in enumerate(names)]
    return names, g, r, errors


def synjudge_samples(folder: str | Path, tasks: tuple[str, ...] = TASKS) -> list[dict[str, Any]]:
    """SynJudge samples from a CoMM-layout predictions folder: per sample, ``question`` = the
    model input (``<IMAGE>`` markers removed), ``answer`` = the model's text (markers removed),
    ``image`` = its first predicted image; ``doc_id`` the sample folder; ``error`` the sample's
    (a broken results.json, an unreadable first image)."""
    out = []
    for task in tasks:
        for s in read_predictions(folder, task):
            strip = lambda t: re.sub(r"\s+", " ", (t or "").replace(IMAGE, " ")).strip() or None  # noqa: E731
            image = s["pred_images"][0] if s["pred_images"] else None
            error = s["error"] or (s["image_errors"][0] if s["pred_images"] and image is None and s["image_errors"] else None)
            out.append({"doc_id": s["sample"], "question": strip(s["model_input"]), "answer": strip(s["model_output"]), "image": image, "error": error})
    return out
