"""CoMM's four generation tasks (CoMM, arXiv 2406.10462): building their inputs from CoMM documents,
reading a model's predictions back in CoMM's folder layout, and their automatic metrics.

The tasks, as CoMM's data loader builds them in test mode (``docs/reference/evaluation-protocols.md``
has the reading of CoMM's code this follows):

- ``task1`` (image sequence -> step texts): ``Here are step-by-step instructions images
  sequence about {title}:`` + ``(k) <IMAGE> ...`` per step + ``According to the above images,
  can you generate text for each step?``; target ``(1) text (2) text ...``.
- ``task2`` (step texts -> image sequence): ``... without images about {title}:`` + ``(k) text``
  per step + ``According to the above steps, can you generate images for each step?``.
- ``task3`` (continuation): the first ``len(steps) // 2`` steps with their texts and images,
  then ``According to the above steps, can you generate the rest steps?``; the target is the
  rest, numbered on.
- ``task4`` (title -> whole document): ``Can you generate step-by-step instructions with images
  about {title}?``.

Texts are cleaned as CoMM does (``strip(" \\n")``, runs of whitespace to one space); images are
``<IMAGE>``. A document whose task has no image where the task needs one (task 1's input, task
2's and 4's output, task 3's first and second half: a one-step document has no first half) cannot
be built and is skipped and counted, as CoMM's loader rejects it (``CoMMDataset.__getitem__``
raises on an empty input or output image list).

A predictions folder holds one folder per sample, ``{data_id}_task{n}/``, with ``results.json``
(``model_input``, ``model_output``, ``input_image_list``, ``output_gt_image_list``,
``prediction_image_list``), the predicted images beside it and the ground-truth images under
``origin/``. :func:`write_tasks` writes that layout without ``results.json`` (plus a
``task.json`` with the target and the reference step texts); the model's runner adds
``results.json`` and its images. :func:`read_predictions` reads it back; a missing or broken
``results.json`` is that sample's error (it is not evaluated), and a missing image file or an
image path leaving the sample's folder leaves that image out of the sample's pairs (the
sample's ``image_errors``, in its row of the per-sample table, counted in ``errors["image
files"]``); neither stops the run.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from interleaf.io.atomic import atomic_output, write_text
from interleaf.io.local import read_confined

__all__ = ["MAX_IMAGES", "TASKS", "build_tasks", "metrics", "read_predictions", "reference_steps", "step_texts", "write_tasks"]

TASKS = ("task1", "task2", "task3", "task4")

#: CoMM's judge sees at most this many images per sample.
MAX_IMAGES = 10

#: Image files read from a predictions folder larger than this are errors, not read.
MAX_IMAGE_BYTES = 256 << 20
#: The most image bytes one sample's lists may name in all, repeats counted (1 GiB): a
#: results.json that names one large file a thousand times is that sample's error, not a
#: thousandfold copy in the metrics.
MAX_SAMPLE_IMAGE_BYTES = 1 << 30

_PROMPTS = {
    "task1": ("Here are step-by-step instructions images sequence about {SOURCE}:", "According to the above images, can you generate text for each step?"),
    "task2": ("Here are step-by-step instructions without images about {SOURCE}:", "According to the above steps, can you generate images for each step?"),
    "task3": ("Here are step-by-step instructions with images about {SOURCE}:", "According to the above steps, can you generate the rest steps?"),
    "task4": ("Can you generate step-by-step instructions with images about {SOURCE}?", ""),
}

IMAGE = "<IMAGE>"

_STEP_START = re.compile(r"\(\d+\)\s")
_STEP_MARK = re.compile(r"\(\d+\)")
_PIECE = re.compile(r"(\[img\](.*?)\[/img\]|\[imgblock\](.*?)\[/imgblock\]|<IMAGE>|[^\[\]<]+)")
_SPACES = re.compile(r"\s{2,}")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def _clean(text: str) -> str:
    """CoMM's text cleaning: ``strip(" \\n")``, whitespace runs to one space, trailing newline
    and spaces removed."""
    return _SPACES.sub(" ", text.strip(" \n")).rstrip("\n").strip(" ")


def step_texts(text: str | None) -> list[str]:
    r"""The steps of a ``(1) ... (2) ...`` text, as CoMM's parser reads them (a marker needs a
    space after it; the text before ``(1)`` is not a step).

    Each step runs from its marker to the next ``(n)`` (with or without a space after it) or the
    end, trailing whitespace removed: what CoMM's ``findall(r"\(\d+\)\s(.*?)\s*(?=\(\d+\)|$)")``
    gives, found in linear time (that pattern backtracks quadratically on long blank runs)."""
    text = text or ""
    marks = [m.start() for m in _STEP_MARK.finditer(text)]
    out: list[str] = []
    pos = 0
    while (m := _STEP_START.search(text, pos)) is not None:
        i = bisect.bisect_left(marks, m.end())
        end = marks[i] if i < len(marks) else len(text)
        out.append(text[m.end() : end].rstrip())
        pos = end
    return out


def _pieces(step: str) -> list[tuple[str, str]]:
    """A step's text and image items, as CoMM's task 3/4 parser splits them."""
    out: list[tuple[str, str]] = []
    for m in _PIECE.findall(step):
        s = m[0]
        if s.startswith("/IMGB"):
            out.append(("image", s))
        elif not s.strip() or s.startswith(("IMG1", "IMG0", "IMGB", "[imgblock]")):
            continue
        elif s == IMAGE:
            out.append(("image", s))
        else:
            out.append(("text", s.strip()))
    return out


def parse_steps(text: str | None, images: Sequence[Any], previous: int = 0, max_images: int = MAX_IMAGES) -> tuple[list[list[tuple[str, Any]]], int]:
    """A model text as steps of ``("text", str)`` / ``("image", image)`` items, with ``images``
    given to its ``<IMAGE>`` markers in order, as CoMM's evaluation formats a sample for its
    judge: each step opens with ``"(k)"``; a step stops at a marker when the images are used up;
    the whole stops once ``previous`` + the images used reach ``max_images``. Returns the steps
    and how many images were used."""
    steps: list[list[tuple[str, Any]]] = []
    used = 0
    for k, step in enumerate(step_texts(text)):
        items: list[tuple[str, Any]] = [("text", f"({k + 1})")]
        for kind, value in _pieces(step):
            if kind == "text":
                items.append((kind, value))
                continue
            if used >= len(images):
                break
            items.append(("image", images[used]))
            used += 1
            if used + previous >= max_images:
                break
        steps.append(items)
        if used + previous >= max_images:
            break
    return steps, used


# --- building the tasks ------------------------------------------------------------------------


def _documents(data: Any, image_root: str | None = None, progress: bool = False) -> list[dict[str, Any]]:
    from interleaf.llm.records import documents, node_batches

    try:
        return [d for batch in node_batches(data, image_root=image_root, progress=progress) for d in documents(batch)]
    except TypeError as e:
        raise TypeError(f"expected CoMM documents as a node batch or dataset paths: {e}") from None


def reference_steps(doc: dict[str, Any]) -> list[str]:
    """A document's step texts as CoMM's evaluation takes its ground truth: per step, the text
    items concatenated as they are (no separator, no cleaning)."""
    from interleaf.llm.records import steps

    return ["".join(n["text"] or "" for n in step if n["kind"] == "text") for step in steps(doc)]


def build_task(doc: dict[str, Any], task: str) -> dict[str, Any]:
    """One task sample from one document (a :func:`interleaf.llm.records.documents` dict):
    ``data_id``, ``task``, ``model_input`` and ``target`` (images as ``<IMAGE>``),
    ``input_images`` and ``output_images`` (bytes, None where unreadable), ``reference_steps``,
    and ``skipped`` (why the sample cannot be built, or None)."""
    from interleaf.llm.records import steps

    check_task(task)
    meta = doc.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    title = meta.get("title")
    title = "" if title is None else str(title)
    prefix, suffix = _PROMPTS[task]
    source = prefix.replace("{SOURCE}", title)
    step_list = steps(doc)
    model_input, target = source, ""
    input_images: list[Any] = []
    output_images: list[Any] = []
    split = len(step_list) // 2 - 1  # task 3: steps 0..split are the input

    def render(step: list[dict[str, Any]], k: int, images: list[Any] | None, image_text: bool) -> str:
        s = f"({k + 1}) "
        for n in step:
            if n["kind"] == "text" and image_text:
                s += _clean(n["text"] or "") + " "
            elif n["kind"] == "image" and images is not None:
                s += IMAGE + " "
                images.append(n["image"])
        return s

    for k, step in enumerate(step_list):
        if task == "task1":
            model_input += render(step, k, input_images, image_text=False)
            target += render(step, k, None, image_text=True)
        elif task == "task2":
            model_input += render(step, k, None, image_text=True)
            target += render(step, k, output_images, image_text=False)
        elif task == "task3" and k <= split:
            model_input += render(step, k, input_images, image_text=True)
            if k == split:
                model_input += suffix
        else:
            target += render(step, k, output_images, image_text=True)
    if task in ("task1", "task2"):
        model_input += suffix
    skipped = None
    if doc.get("error"):
        skipped = "unreadable_document"
    elif task == "task1" and not input_images:
        skipped = "no_input_image"
    elif task != "task1" and not output_images:
        skipped = "no_output_image"
    elif task == "task3" and not input_images:
        # CoMM's __getitem__ rejects any sample without an input image: for task 3, a document
        # whose first len(steps) // 2 steps have none (a one-step document has no input at all).
        skipped = "no_input_image"
    elif any(b is None for b in input_images + output_images):
        skipped = "unreadable_image"
    return {
        "data_id": str(doc.get("doc_id")),
        "task": task,
        "model_input": model_input,
        "target": target.strip(),
        "input_images": input_images,
        "output_images": output_images,
        "reference_steps": reference_steps(doc),
        "skipped": skipped,
    }


def build_tasks(documents: Any, tasks: Sequence[str] = TASKS, *, image_root: str | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """:func:`build_task` for every document and task (documents outer, tasks inner).
    ``documents``: a node batch or CoMM dataset paths (read with :func:`interleaf.read`, with a
    progress line on stderr when ``progress``)."""
    for t in tasks:
        check_task(t)
    return [build_task(d, t) for d in _documents(documents, image_root, progress) for t in tasks]


def _extension(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data.startswith(b"\x89PNG"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return "bin"


_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_DOTS = re.compile(r"\.{2,}")


def folder_name(data_id: str, task: str) -> str:
    """The sample folder's name: ``{data_id}_{task}``, with a data_id that is not a safe file
    name (path separators, ``..``, other characters, over 150 characters) replaced by a safe
    form plus a hash of the original, so no id can leave the output folder."""
    safe = _DOTS.sub("_", _SAFE.sub("_", data_id)).lstrip(".")[:150]
    if safe != data_id or not safe:
        safe = f"{safe or 'id'}-{hashlib.sha256(data_id.encode()).hexdigest()[:10]}"
    return f"{safe}_{task}"


def write_tasks(samples: Iterable[dict[str, Any]], out: str | Path) -> dict[str, Any]:
    """Writes built samples (:func:`build_tasks`) in CoMM's folder layout under ``out``:
    ``{data_id}_{task}/origin/input_{i}.{ext}`` and ``output_gt_{i}.{ext}`` (one counter per
    sample, inputs first, as CoMM's inference numbers them; the bytes as they are), and
    ``task.json`` with ``data_id``, ``task``, ``model_input``, ``target``, ``input_image_list``,
    ``output_gt_image_list`` (task 1 keeps no output images, tasks 2 and 4 no input images, as
    CoMM's) and ``reference_steps``; plus ``tasks.jsonl``, one line per written sample. The
    model's runner adds ``results.json`` and ``predict_{i}`` images numbered on from the inputs.
    Every file is written atomically. Returns ``{"written": {task: n}, "skipped": {reason: n}}``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    written: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    lines: list[str] = []
    seen: set[str] = set()
    for s in samples:
        if s["skipped"]:
            skipped[s["skipped"]] += 1
            continue
        name = folder_name(s["data_id"], s["task"])
        if name in seen:
            skipped["duplicate_data_id"] += 1
            continue
        seen.add(name)
        folder = root / name
        n = 0
        lists: dict[str, list[str]] = {"input_image_list": [], "output_gt_image_list": []}
        for key, prefix, images, keep in (
            ("input_image_list", "input", s["input_images"], s["task"] in ("task1", "task3")),
            ("output_gt_image_list", "output_gt", s["output_images"], s["task"] != "task1"),
        ):
            if not keep:
                continue
            for data in images:
                n += 1
                file = f"{prefix}_{n}.{_extension(bytes(data))}"
                with atomic_output(folder / "origin" / file) as tmp:
                    tmp.write_bytes(bytes(data))
                lists[key].append(file)
        record = {"data_id": s["data_id"], "task": s["task"], "model_input": s["model_input"], "target": s["target"], **lists, "reference_steps": s["reference_steps"]}
        write_text(folder / "task.json", json.dumps(record, ensure_ascii=False, indent=2))
        lines.append(json.dumps({"folder": name, **record}, ensure_ascii=False))
        written[s["task"]] += 1
    write_text(root / "tasks.jsonl", "".join(line + "\n" for line in lines))
    return {"out": str(root), "written": dict(sorted(written.items())), "skipped": dict(sorted(skipped.items()))}


# --- reading predictions -----------------------------------------------------------------------


def _read_image(base: Path, folder: Path, ref: Any, errors: list[str], seen: dict[Path, bytes | None]) -> bytes | None:
    """One image of a sample (``seen``: the files this sample has read, so an entry repeated
    many times is read, and held, once)."""
    if not isinstance(ref, str) or not ref:
        errors.append(f"image entry {str(ref)[:80]!r} is not a file name")
        return None
    try:
        p = Path(ref)
        # CoMM's own runner may write paths that already include the sample folder.
        cand = p if p.is_absolute() else base / p
        if not p.is_absolute() and not cand.exists() and (folder / p).exists():
            cand = folder / p
        cand = cand.resolve()
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        errors.append(f"image {ref[:80]!r}: {e}")
        return None
    if cand not in seen:
        seen[cand], why = read_confined(cand, folder, MAX_IMAGE_BYTES, root_name="the sample folder")
        if why is not None:
            errors.append(f"image {ref}: {why}")
    return seen[cand]


def read_predictions(folder: str | Path, task: str, references: Any = None, *, image_root: str | None = None) -> list[dict[str, Any]]:
    """The samples of ``task`` in a predictions folder (sub-folders named ``*_{task}``, sorted),
    one dict each: ``sample`` (the folder name), ``data_id``, ``model_input``, ``model_output``,
    ``input_images``, ``gt_images``, ``pred_images`` (bytes, None where a file could not be
    read), ``reference_steps`` (from ``references`` by data_id, else the sample's ``task.json``,
    else None), ``image_errors`` and ``error`` (why the sample cannot be evaluated: no or a
    broken ``results.json``; None when it can).

    ``references``: CoMM ground-truth documents (a node batch or dataset paths, their ids the
    data_ids) for the reference step texts of task 1; not needed when the folder was written by
    :func:`write_tasks`."""
    check_task(task)
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"predictions folder {root} does not exist")
    refs: dict[str, list[str]] = {}
    if references is not None:
        for d in _documents(references, image_root):
            refs.setdefault(str(d["doc_id"]), reference_steps(d))
    suffix = f"_{task}"
    out: list[dict[str, Any]] = []
    for sample in sorted(p for p in root.iterdir() if p.name.endswith(suffix) and p.is_dir()):
        rec: dict[str, Any] = {"sample": sample.name, "data_id": sample.name[: -len(suffix)], "model_input": None, "model_output": None, "input_images": [], "gt_images": [], "pred_images": [], "reference_steps": None, "image_errors": [], "error": None}
        out.append(rec)
        task_json = sample / "task.json"
        if task_json.is_file():
            try:
                t = json.loads(task_json.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                t = None
            if isinstance(t, dict):
                rec["data_id"] = str(t.get("data_id", rec["data_id"]))
                steps = t.get("reference_steps")
                # Only a list of texts is a reference; anything else is as if there were none.
                if isinstance(steps, list) and all(isinstance(x, str) for x in steps):
                    rec["reference_steps"] = steps
        if rec["data_id"] in refs:
            rec["reference_steps"] = refs[rec["data_id"]]
        results = sample / "results.json"
        if not results.is_file():
            rec["error"] = "missing results.json"
            continue
        try:
            data = json.loads(results.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            rec["error"] = f"results.json: {e}"
            continue
        if not isinstance(data, dict):
            rec["error"] = "results.json: not a JSON object"
            continue
        for key in ("model_input", "model_output"):
            v = data.get(key)
            if v is not None and not isinstance(v, str):
                rec["error"] = f"results.json: {key} is not a string"
                break
            rec[key] = v
        if rec["error"]:
            continue
        if rec["model_output"] is None:
            rec["error"] = "results.json: no model_output"
            continue
        seen: dict[Path, bytes | None] = {}
        for key, name, base in (("input_images", "input_image_list", sample / "origin"), ("gt_images", "output_gt_image_list", sample / "origin"), ("pred_images", "prediction_image_list", sample)):
            entries = data.get(name) or []
            if not isinstance(entries, list):
                rec["error"] = f"results.json: {name} is not a list"
                break
            rec[key] = [_read_image(base, sample, e, rec["image_errors"], seen) for e in entries]
        listed = sum(len(b) for key in ("input_images", "gt_images", "pred_images") for b in rec[key] if b is not None)
        if listed > MAX_SAMPLE_IMAGE_BYTES:
            rec["error"] = f"results.json: its image lists come to {listed:,} bytes (repeats counted), over the {MAX_SAMPLE_IMAGE_BYTES:,}-byte limit"
            for key in ("input_images", "gt_images", "pred_images"):
                rec[key] = [None] * len(rec[key])
    return out


# --- automatic metrics -------------------------------------------------------------------------


def _index_pairs(ok: list[dict[str, Any]]) -> tuple[list[Any], list[Any], list[int], dict[str, int]]:
    """Generated image i with reference image i of each sample (truncated to the shorter), the
    sample each pair belongs to, and the images left without a partner: ``missing_generated``
    (reference images past the last prediction) and ``missing_reference`` (the reverse)."""
    gen, ref, owner = [], [], []
    unmatched = Counter[str]()
    for i, s in enumerate(ok):
        for g, r in zip(s["pred_images"], s["gt_images"], strict=False):
            gen.append(g)
            ref.append(r)
            owner.append(i)
        extra = len(s["gt_images"]) - len(s["pred_images"])
        if extra:
            unmatched["missing_generated" if extra > 0 else "missing_reference"] += abs(extra)
    return gen, ref, owner, dict(unmatched)


def _owner_means(owner: list[int], values: Any, n: int) -> list[float | None]:
    """The mean of the finite ``values`` of each of ``n`` samples (None for a sample with none:
    an identical pair's infinite PSNR is left out, as :func:`image_metrics` leaves it out)."""
    frame = pl.DataFrame({"owner": pl.Series(owner, dtype=pl.Int64), "v": pl.Series(values, dtype=pl.Float64)})
    by = frame.filter(pl.col("v").is_finite()).group_by("owner").agg(pl.col("v").mean())
    means = dict(by.iter_rows())
    return [means.get(i) for i in range(n)]


def _mean_over_samples(per_sample: list[float | None]) -> float | None:
    """The unweighted mean over the samples that have a value (CoMM's and GILL's averaging:
    a sample with five pairs weighs as much as a sample with one)."""
    got = [v for v in per_sample if v is not None]
    return math.fsum(got) / len(got) if got else None


def _merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    total = Counter[str]()
    for c in counts:
        total.update(c)
    return dict(sorted(total.items()))


def _image_pairs(samples: list[dict[str, Any]], clip: Any, size: int, pairing: str, lpips_network: Any, fid_network: Any, is_splits: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from interleaf.evaluate import clip_image_similarity, fid, image_metrics, inception_score, lpips

    ok = [s for s in samples if s["error"] is None]
    gen, ref, owner, unmatched = _index_pairs(ok)
    cross = ([[g for g in s["pred_images"] if g is not None] for s in ok], [[r for r in s["gt_images"] if r is not None] for s in ok])
    # Every summary value is the mean over samples of each sample's mean (over its cross pairs,
    # or over its index pairs with pairing="index"): pooling the pairs would weigh a sample by
    # its image count.
    if pairing == "cross":
        summary, per = image_metrics(*cross, size=size, pairing="cross")
        cols = {"ssim": per["ssim"].to_list(), "psnr": per["psnr"].to_list()}
        out: dict[str, Any] = {"ssim": summary["ssim"], "psnr": summary["psnr"], "image_pairs_skipped": summary["skipped"]}
    else:
        summary, pairs = image_metrics(gen, ref, size=size, pairing="index")
        cols = {k: _owner_means(owner, pairs[k], len(ok)) for k in ("ssim", "psnr")}
        out = {"ssim": _mean_over_samples(cols["ssim"]), "psnr": _mean_over_samples(cols["psnr"]), "image_pairs_skipped": _merge_counts(summary["skipped"], unmatched)}
    out["pairing"] = pairing
    if clip is not None:
        csum, cper = clip_image_similarity(gen, ref, clip)
        cols["clip_i"] = _owner_means(owner, cper["similarity"].cast(pl.Float64), len(ok))
        out |= {"clip_i": _mean_over_samples(cols["clip_i"]), "clip_i_pairs": csum["scored"], "clip_i_skipped": _merge_counts(csum["skipped"], unmatched)}
    if lpips_network is not None:
        lsum, lper = lpips(*cross, lpips_network, pairing="cross") if pairing == "cross" else lpips(gen, ref, lpips_network, pairing="index")
        cols["lpips"] = lper["lpips"].to_list() if pairing == "cross" else _owner_means(owner, lper["lpips"], len(ok))
        out["lpips"] = lsum["lpips"] if pairing == "cross" else _mean_over_samples(cols["lpips"])
    if fid_network is not None:
        all_gen = [g for x in cross[0] for g in x]
        all_ref = [r for x in cross[1] for r in x]
        out["fid"] = fid(all_gen, all_ref, fid_network)
        out["inception_score_generated"] = inception_score(all_gen, fid_network, splits=is_splits)
        out["inception_score_reference"] = inception_score(all_ref, fid_network, splits=is_splits)
    return out, [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


def metrics(
    samples: list[dict[str, Any]],
    task: str,
    *,
    clip: Any = None,
    size: int = 256,
    pairing: str = "cross",
    tokenizer: str = "auto",
    java_metrics: bool = True,
    fid_network: Any = None,
    lpips_network: Any = None,
    is_splits: int = 10,
) -> tuple[dict[str, Any], pl.DataFrame]:
    """CoMM's automatic metrics of read predictions (:func:`read_predictions`).

    - task 1: pycocoevalcap's BLEU-1..4, ROUGE-L, CIDEr, METEOR and SPICE (the last two where
      their Java tools run and ``java_metrics``; :func:`interleaf.evaluate.text_metrics`) of the
      predicted step texts, twice as CoMM reports them: ``step_level``
      (predicted step k against reference step k over all samples' steps, both truncated to
      the shorter) and ``whole_text`` (per sample, the predicted steps joined by spaces against
      the reference steps joined by spaces, both cut to the shorter count as CoMM's
      ``parse_data_for_task1`` cuts them: a prediction of one step is compared with the first
      reference step only, and an output with no step scores ROUGE-L 1.0 on the empty pair, as
      in CoMM's numbers; ``predicted_steps`` / ``reference_steps`` per sample show the cut).
      Samples without reference steps are skipped and counted.
    - tasks 2-4: SSIM and PSNR of the predicted against the ground-truth output images at
      ``size`` px, CoMM's all-cross-pairs per sample by default (``pairing="index"`` pairs
      image i with image i), the mean over samples of each sample's mean (a sample weighs the
      same whatever its image count); CoMM reports them for task 2 only. With a ``clip``
      model, GILL's CLIP-I over index-matched pairs as well, averaged the same way. Images
      left without a partner at their index are counted in ``image_pairs_skipped`` and
      ``clip_i_skipped`` (``missing_generated``, ``missing_reference``). With an ``lpips_network``
      (an ``image-distance`` model), LPIPS paired as SSIM is; with a ``fid_network`` (an
      ``image-features`` model), FID of all generated against all reference images and the
      Inception Score of each set (``is_splits`` chunks), as CoMM reports them.

    Returns ``(summary, per_sample)``: one row per sample with ``sample``, ``data_id``, the
    per-sample values, ``error`` and ``image_errors`` (the images left out: missing, unreadable
    or outside the sample's folder; None when there were none)."""
    from interleaf.evaluate import text_metrics

    check_task(task)
    summary: dict[str, Any] = {"task": task, "samples": len(samples), "evaluated": 0, "errors": {}}
    rows = [{"sample": s["sample"], "data_id": s["data_id"], "error": s["error"], "image_errors": "; ".join(s["image_errors"]) or None} for s in samples]
    error_kinds: Counter[str] = Counter()
    if task == "task1":
        step_p: list[str] = []
        step_r: list[str] = []
        whole_p: list[str] = []
        whole_r: list[str] = []
        owners: list[int] = []
        for i, s in enumerate(samples):
            if s["error"] is None and s["reference_steps"] is None:
                s["error"] = rows[i]["error"] = "no reference steps for this data_id"
            if s["error"] is not None:
                continue
            pred = step_texts(s["model_output"])
            ref = list(s["reference_steps"])
            n = min(len(pred), len(ref))
            pred, ref = pred[:n], ref[:n]
            step_p += pred
            step_r += ref
            whole_p.append(" ".join(pred))
            whole_r.append(" ".join(ref))
            owners.append(i)
            rows[i] |= {"predicted_steps": len(step_texts(s["model_output"])), "reference_steps": len(s["reference_steps"])}
        step_sum, _ = text_metrics(step_p, step_r, tokenizer=tokenizer, java_metrics=java_metrics)
        whole_sum, whole_per = text_metrics(whole_p, whole_r, tokenizer=tokenizer, java_metrics=java_metrics)
        summary |= {"step_level": step_sum, "whole_text": whole_sum}
        for j, i in enumerate(owners):
            rows[i] |= {k: whole_per[k][j] for k in whole_per.columns if k != "skipped"}
        summary["evaluated"] = len(owners)
    else:
        ok_idx = [i for i, s in enumerate(samples) if s["error"] is None]
        img_sum, img_rows = _image_pairs(samples, clip, size, pairing, lpips_network, fid_network, is_splits)
        for i, r in zip(ok_idx, img_rows, strict=True):
            rows[i] |= r | {"generated_images": len(samples[i]["pred_images"]), "reference_images": len(samples[i]["gt_images"])}
        summary |= img_sum
        # Evaluated: a sample with at least one metric (its images all missing give none).
        summary["evaluated"] = sum(1 for r in img_rows if any(v is not None and v == v for v in r.values()))
    for s in samples:
        if s["error"] is not None:
            error_kinds[s["error"].split(":")[0]] += 1
        if s["image_errors"]:
            error_kinds["image files"] += 1
    summary["errors"] = dict(sorted(error_kinds.items()))
    return summary, pl.DataFrame(rows, infer_schema_length=None)
