"""``interleaf eval``: evaluation of generated interleaved content (CoMM, arXiv 2406.10462; InterSyn, arXiv 2506.09427; MGCC, arXiv 2405.18304).

- ``eval tasks GT... --out DIR``: CoMM's four task inputs from CoMM documents, in CoMM's folder
  layout, for a model's runner to fill.
- ``eval negatives DOCS... --out FILE``: CoMM's negative samples (shuffled texts, images, both,
  steps) for preference data.
- ``eval vist ANNOTATIONS --out FILE`` and ``eval visdial ANNOTATIONS --out FILE``: GILL's VIST
  and VisDial samples (context and the image to generate).
- ``eval comm PRED_DIR --task taskN --out DIR``: CoMM's automatic metrics of a predictions
  folder, and with ``--judge`` its LLM judge.
- ``eval clip-i GENERATED_DIR REFERENCE_DIR --clip MODEL --out DIR``: GILL's CLIP image similarity
  of images paired by file name.
- ``eval synjudge PRED_DIR --out DIR``: InterSyn's SynJudge over a predictions folder.

``comm``, ``clip-i`` and ``synjudge`` write ``metrics.json``, ``examples.parquet`` and
``report.html`` into ``--out`` and print the metrics as JSON; ``tasks`` writes CoMM's task
folders, ``negatives``, ``vist`` and ``visdial`` one file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from interleaf.cli_llm import add_endpoint_options, client_from_args
from interleaf.evaluate.visdial import IMAGE_NAME
from interleaf.io.atomic import atomic_output, refuse_existing
from interleaf.io.sources import named_inputs

WORST = 12


def _meta(args: argparse.Namespace, t0: float) -> dict[str, Any]:
    import interleaf

    return {"command": f"interleaf eval {args.eval}", "interleaf": interleaf.__version__, "seconds": round(time.perf_counter() - t0, 3)}


def _finish(args: argparse.Namespace, t0: float, title: str, metrics: dict[str, Any], examples: pl.DataFrame, cards: list[dict[str, Any]], worst_by: str | None) -> int:
    from interleaf.evaluate import report

    metrics = metrics | _meta(args, t0)
    report.write(args.out, title, metrics, examples, cards, worst_by)
    print(json.dumps({k: v for k, v in metrics.items() if k != "command"} | {"out": str(args.out)}, indent=2, default=str))
    return 0


def _some_to_evaluate(samples: list[dict[str, Any]], what: str, folder: str) -> None:
    """Raises when every sample of a predictions folder is broken: nothing to evaluate is a
    wrong folder (the tasks before the model ran), not a score of nothing."""
    if all(s["error"] for s in samples):
        why, count = Counter(s["error"] for s in samples).most_common(1)[0]
        raise ValueError(f"none of the {len(samples)} {what} sample folders in {folder} can be evaluated ({count} of them: {why}); the model's runner writes results.json and predict_* images beside each task.json")


def _every_row_failed(args: argparse.Namespace, scores: pl.DataFrame) -> int:
    """1 (the exit code) when the judge failed on every sample (an endpoint down, a wrong URL),
    with the first reason on stderr; else 0. The metrics are written either way."""
    if not scores.height or "error" not in scores.columns or scores["error"].null_count():
        return 0
    print(f"interleaf eval {args.eval}: error: the judge failed on every sample ({scores.height:,}); the first: {scores['error'].drop_nulls()[0]}", file=sys.stderr)
    return 1


def _has_endpoint(args: argparse.Namespace) -> bool:
    import os

    return bool(args.base_url or os.environ.get("INTERLEAF_LLM_BASE_URL"))


def cmd_tasks(args: argparse.Namespace) -> int:
    from interleaf.evaluate import comm

    named_inputs(args.inputs)
    samples = comm.build_tasks(args.inputs, tuple(args.task or comm.TASKS), image_root=args.image_root, progress=not args.quiet)
    summary = comm.write_tasks(samples, args.out)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_negatives(args: argparse.Namespace) -> int:
    import interleaf
    from interleaf.evaluate.negatives import NEGATIVE_KINDS, iter_negatives

    named_inputs(args.inputs)
    # Written a batch at a time; image bytes are read only where the output holds them.
    load_images = args.embed_images or args.format in ("parquet", "jsonl", "webdataset")
    summary: dict[str, Any] = {}
    batches = iter_negatives(args.inputs, tuple(args.kind or NEGATIVE_KINDS), seed=args.seed, image_root=args.image_root, load_images=load_images, progress=not args.quiet, summary=summary)
    files = interleaf.write(batches, args.out, args.format, overwrite=args.overwrite, embed_images=args.embed_images)
    print(json.dumps(summary | {"files": files}, indent=2))
    return 0


def _write_samples(args: argparse.Namespace, table: pl.DataFrame, what: str) -> int:
    """Writes ``eval vist`` / ``eval visdial`` samples to ``--out`` and prints their counts."""
    with atomic_output(args.out) as tmp:
        table.write_parquet(tmp)
    errors = table.get_column("error").drop_nulls()
    missing = int((table.get_column("target_image").is_null() & table.get_column("error").is_null()).sum()) if args.image_root else None
    print(json.dumps({what: table.height, "usable": table.height - errors.len(), "skipped": errors.len(), "missing_targets": missing, "out": args.out}, indent=2))
    return 0


def cmd_vist(args: argparse.Namespace) -> int:
    from interleaf.evaluate.vist import vist_stories

    refuse_existing(args.out, args.overwrite)
    return _write_samples(args, vist_stories(args.annotations, args.image_root, image_suffix=args.image_suffix, text_field=args.text_field), "stories")


def cmd_visdial(args: argparse.Namespace) -> int:
    from interleaf.evaluate.visdial import visdial_dialogs

    refuse_existing(args.out, args.overwrite)
    return _write_samples(args, visdial_dialogs(args.annotations, args.image_root, split=args.split, image_name=args.image_name, rounds=args.rounds), "dialogs")


def cmd_comm(args: argparse.Namespace) -> int:
    from interleaf.evaluate import judge as ej

    t0 = time.perf_counter()
    client = None
    if args.judge:
        # The judge's endpoint, model, prompts and attempts are checked before the metrics,
        # which can take minutes: a missing --model fails now, not after them.
        if not _has_endpoint(args):
            raise ValueError("--judge needs an endpoint: --base-url and --model (or INTERLEAF_LLM_BASE_URL / INTERLEAF_LLM_MODEL)")
        if args.attempts < 1:
            raise ValueError(f"--attempts must be >= 1, got {args.attempts}")
        ej.prompts(args.prompts)
        client = client_from_args(args)
    try:
        return _comm(args, t0, client)
    finally:
        if client is not None:
            client.close()


def _comm(args: argparse.Namespace, t0: float, client: Any) -> int:
    from interleaf import models
    from interleaf.evaluate import comm
    from interleaf.evaluate import judge as ej
    from interleaf.evaluate.report import worst_rows

    samples = comm.read_predictions(args.predictions, args.task, args.references, image_root=args.image_root)
    if not samples:
        raise FileNotFoundError(f"no *_{args.task} sample folders in {args.predictions}")
    _some_to_evaluate(samples, f"*_{args.task}", args.predictions)

    images = args.task != "task1"
    clip = models.load(args.clip, kind="clip") if args.clip and images else None
    fid_net = models.load(args.fid_network, kind="image-features") if args.fid_network and images else None
    lpips_net = models.load(args.lpips_network, kind="image-distance") if args.lpips_network and images else None
    summary, per = comm.metrics(samples, args.task, clip=clip, size=args.size, pairing=args.pairing, tokenizer=args.tokenizer, java_metrics=not args.no_java, fid_network=fid_net, lpips_network=lpips_net, is_splits=args.is_splits)
    metrics: dict[str, Any] = {"task": args.task, "metrics": summary}
    if client is not None:
        scores = ej.judge(samples, client, args.task, prompts_folder=args.prompts, temperature=args.judge_temperature, attempts=args.attempts, max_edge=args.max_edge, task2_hide_images=args.task2_hide_images, progress=not args.quiet)
        metrics["judge"] = ej.aggregate(scores) | {"prompts": str(args.prompts) if args.prompts else "interleaf's", "requests": client.stats.as_dict()}
        failed = _every_row_failed(args, scores)
        judged = scores.drop("data_id", "error").rename({"answers": "judge_answers"}).with_columns(scores["error"].alias("judge_error"))
        per = per.join(judged, on="sample", how="left")
    by = "cider" if args.task == "task1" else "clip_i" if clip is not None else "ssim"
    worst_by = args.worst_by or by
    cards = []
    for i in worst_rows(per, worst_by, WORST):
        s = samples[i]
        target = None
        task_json = Path(args.predictions) / s["sample"] / "task.json"
        if task_json.is_file():
            try:
                target = json.loads(task_json.read_text(encoding="utf-8")).get("target")
            except (OSError, ValueError):
                target = None
        if target is None and s["reference_steps"] is not None:
            target = " ".join(f"({k}) {t}" for k, t in enumerate(s["reference_steps"], 1))
        # Task 1 is judged against the input images, task 2's images against the input texts.
        ref_images = s["input_images"] if args.task == "task1" else s["gt_images"]
        ref_text = s["model_input"] if args.task == "task2" else target
        cards.append({"name": s["sample"], "value": per[worst_by][i], "generated": {"texts": [s["model_output"]], "images": s["pred_images"]}, "reference": {"texts": [ref_text], "images": ref_images}})
    code = _finish(args, t0, f"CoMM {args.task}: {Path(args.predictions).name}", metrics, per, cards, worst_by) or (failed if args.judge else 0)
    if not summary.get("evaluated"):
        print(f"interleaf eval comm: error: no sample gave a metric (errors: {summary.get('errors') or 'none'}; image pairs skipped: {summary.get('image_pairs_skipped') or 'none'})", file=sys.stderr)
        return code or 1
    return code


def cmd_clip_i(args: argparse.Namespace) -> int:
    from interleaf import models
    from interleaf.evaluate import clip_image_similarity
    from interleaf.evaluate.generations import folder_pairs
    from interleaf.evaluate.report import worst_rows

    t0 = time.perf_counter()
    names, gen, ref, errors = folder_pairs(args.generated, args.reference, reference_prefix=args.reference_prefix)
    if not names:
        raise FileNotFoundError(f"no images in {args.generated} or {args.reference}")
    if not any(g is not None and r is not None or e is not None for g, r, e in zip(gen, ref, errors, strict=True)):
        hint = " (VisDial's ground truth is named VisualDialog_<split>_<id>: pass --reference-prefix)" if not args.reference_prefix else ""
        raise ValueError(f"no image name is in both {args.generated} and {args.reference}: images are paired by file name without the extension{hint}")
    clip = models.load(args.clip, kind="clip")
    summary, per = clip_image_similarity(gen, ref, clip, batch_size=args.batch_size, progress=not args.quiet)
    per = pl.DataFrame({"name": names}).with_columns(per).with_columns(pl.Series("read_error", errors, dtype=pl.String))
    cards = [{"name": names[i], "value": per["similarity"][i], "generated": {"texts": [], "images": [gen[i]]}, "reference": {"texts": [], "images": [ref[i]]}} for i in worst_rows(per, "similarity", WORST)]
    code = _finish(args, t0, f"CLIP-I: {Path(args.generated).name} vs {Path(args.reference).name}", {"metrics": summary, "clip": str(args.clip)}, per, cards, "similarity")
    if not summary["scored"]:
        # As eval comm: the metrics are written, and the exit code says nothing was measured.
        print(f"interleaf eval clip-i: error: no image pair gave a metric (skipped: {summary['skipped'] or 'none'})", file=sys.stderr)
        return code or 1
    return code


def cmd_synjudge(args: argparse.Namespace) -> int:
    from interleaf import judge
    from interleaf.evaluate.generations import synjudge_samples
    from interleaf.evaluate.report import worst_rows

    t0 = time.perf_counter()
    samples = synjudge_samples(args.predictions, tuple(args.task) if args.task else ("task1", "task2", "task3", "task4"))
    if not samples:
        raise FileNotFoundError(f"no *_task1..4 sample folders in {args.predictions}")
    _some_to_evaluate(samples, "*_task1..4", args.predictions)
    with client_from_args(args) as client:
        scores = judge.synjudge(samples, client, output=args.output, max_edge=args.max_edge, progress=not args.quiet)
        agg = judge.aggregate(scores) | {"requests": client.stats.as_dict()}
    failed = _every_row_failed(args, scores)
    dims = list(judge.SYNJUDGE_DIMENSIONS)
    per = scores.rename({"doc_id": "sample"}).with_columns(pl.mean_horizontal([pl.col(d).cast(pl.Float64) for d in dims]).alias("overall"))
    per = per.with_columns(pl.when(pl.all_horizontal(pl.col(d).is_not_null() for d in dims)).then(pl.col("overall")).alias("overall"))
    cards = []
    for i in worst_rows(per, "overall", WORST):
        s = samples[i]
        cards.append({"name": s["doc_id"], "value": per["overall"][i], "generated": {"texts": [s["answer"]], "images": [s["image"]]}, "reference": {"texts": [s["question"]], "images": []}})
    return _finish(args, t0, f"SynJudge: {Path(args.predictions).name}", {"synjudge": agg}, per, cards, "overall") or failed


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate generated interleaved content: CoMM tasks and metrics, GILL's VIST/VisDial, CLIP-I, SynJudge", description="Evaluate a model's generated interleaved content the way the papers do. 'tasks' writes CoMM's task folders; 'negatives', 'vist' and 'visdial' write one file (--out); 'comm', 'clip-i' and 'synjudge' write metrics.json, examples.parquet and report.html into --out.")
    esub = p.add_subparsers(dest="eval", required=True)

    t = esub.add_parser("tasks", help="build CoMM's four task inputs from CoMM documents", description="Build CoMM's task inputs (prompt templates, task 3's split at len(steps)//2) from CoMM documents and write them in CoMM's predictions layout: {data_id}_{task}/task.json + origin/ images, and tasks.jsonl. A model's runner adds results.json and predict_{i} images to each folder.")
    t.add_argument("inputs", nargs="+", help="CoMM documents: jsonl/parquet files, globs or directories")
    t.add_argument("--task", action="append", choices=("task1", "task2", "task3", "task4"), help="a task to build (repeatable; default all four)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--image-root", default=None, help="directory for relative image paths (default: each input file's directory)")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.set_defaults(func=cmd_tasks)

    from interleaf.evaluate.negatives import NEGATIVE_KINDS

    g = esub.add_parser(
        "negatives",
        help="CoMM's negative samples: documents with shuffled texts, images, both or steps",
        description="CoMM's negatives for preference data: per document and kind, a copy whose step texts (texts), step images (images), both independently (both) or whole steps (steps) are in another order, seeded; documents without steps shuffle their nodes. A document with too little to shuffle, or whose shuffle gives it back, is counted, not written. Written in --format (doc_id '<id>#<kind>').",
    )
    g.add_argument("inputs", nargs="+", help="documents: jsonl/parquet/WebDataset files, globs or directories")
    g.add_argument("--out", required=True, help="output file or folder")
    g.add_argument("--kind", action="append", choices=NEGATIVE_KINDS, help="a kind of negative (repeatable; default all four)")
    g.add_argument("--seed", type=int, default=0, help="shuffle seed (default %(default)s): the same seed gives the same negatives")
    g.add_argument("--format", default="comm", choices=("comm", "obelics", "mmc4", "jsonl", "parquet", "webdataset"), help="output layout (default %(default)s: CoMM documents as JSON lines)")
    g.add_argument("--image-root", default=None, help="directory for relative image paths (default: each input file's directory)")
    g.add_argument("--embed-images", action="store_true", help="record layouts: write image bytes inline (data: URIs) instead of their paths")
    g.add_argument("--overwrite", action="store_true", help="replace existing output files")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    g.set_defaults(func=cmd_negatives)

    def samples_parser(name: str, help: str, description: str, annotations: str, images: str) -> argparse.ArgumentParser:
        """A parser for one of GILL's sample builders (``vist``, ``visdial``): its annotations
        file, --out parquet, --overwrite and --image-root."""
        q = esub.add_parser(name, help=help, description=description)
        q.add_argument("annotations", help=annotations)
        q.add_argument("--out", required=True, help="output parquet file")
        q.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
        q.add_argument("--image-root", default=None, help=images)
        return q

    v = samples_parser(
        "vist",
        "GILL/MGCC's VIST samples: the context and the 5th image to generate",
        "GILL's VIST protocol: per story, the captions of every step and the images of all but the last form the context; the last image is the target (save the generated one as <target_image_id>.png, then 'interleaf eval clip-i GENERATED IMAGES'). Reads GILL's formatted annotations or VIST's SIS file; writes a parquet table (story_id, captions, image_ids, target_image_id, context_images, target_image, target_error, error). A story missing a context image is kept with its error, as GILL skips it.",
        "GILL's val_formatted.json or a VIST SIS json file",
        "folder of the story images (<image_id><suffix>); without it only ids and captions are written",
    )
    v.add_argument("--image-suffix", default=".png", help="image file suffix (default %(default)s, as GILL's scripts)")
    v.add_argument("--text-field", default="text", help="caption field of a SIS file (default %(default)s; 'original_text' for the raw text)")
    v.set_defaults(func=cmd_vist)

    d = samples_parser(
        "visdial",
        "GILL/MGCC's VisDial samples: the dialogue as text and the image to generate",
        "GILL's VisDial protocol: per dialogue, the rounds as 'Q: <question>?' and 'A: <answer>' lines form the context; the dialogue's image is the target (save the generated one as <name>.png, the 12-digit image id, then 'interleaf eval clip-i GENERATED IMAGES --reference-prefix VisualDialog_val2018_'). Reads VisDial's v1.0 json; writes a parquet table (image_id, name, caption, questions, answers, context, target_image, target_error, error). A malformed dialogue is kept with its error.",
        "VisDial's visdial_1.0_val.json (or another split's)",
        "folder of the dialogue images (VisualDialog_val2018); without it only the text is written",
    )
    d.add_argument("--split", default=None, help="split in the image file names (default: the file's own 'split', e.g. val2018)")
    d.add_argument("--image-name", default=IMAGE_NAME, help="image file name template with {split} and {image_id} (default %(default)s; COCO_train2014_{image_id:012d}.jpg for the train split)")
    d.add_argument("--rounds", type=int, default=None, help="use only the first N rounds (default: every round, 10 in VisDial)")
    d.set_defaults(func=cmd_visdial)

    c = esub.add_parser(
        "comm",
        help="CoMM's metrics (and judge) of a predictions folder",
        description="CoMM's evaluation of one task in a predictions folder ({data_id}_taskN/results.json + images): task 1 pycocoevalcap's BLEU/ROUGE-L/CIDEr (METEOR where Java runs) per step and on the whole text; tasks 2-4 SSIM/PSNR (CoMM's cross pairs) and, with --clip, CLIP-I, with --lpips-network LPIPS, with --fid-network FID and Inception Scores (networks you export to ONNX); with --judge, CoMM's LLM judge. Broken samples are counted, never stop the run.",
    )
    c.add_argument("predictions", help="the predictions folder")
    c.add_argument("--task", required=True, choices=("task1", "task2", "task3", "task4"), help="which task's sample folders to evaluate")
    c.add_argument("--out", required=True, help="output folder for metrics.json, examples.parquet, report.html")
    c.add_argument("--references", nargs="+", default=None, help="CoMM ground-truth documents (their ids = data_id) for task 1's reference texts; not needed for folders written by 'interleaf eval tasks'")
    c.add_argument("--image-root", default=None, help="image root of --references")
    c.add_argument("--tokenizer", choices=("auto", "ptb", "simple", "none"), default="auto", help="task 1 tokenizer (default %(default)s: PTB through Java when available, else our Python approximation)")
    c.add_argument("--no-java", action="store_true", help="skip METEOR and SPICE (Java) even where they can run")
    c.add_argument("--size", type=int, default=256, help="SSIM/PSNR image size (default %(default)s, as CoMM)")
    c.add_argument("--pairing", choices=("cross", "index"), default="cross", help="SSIM/PSNR pairs: CoMM's every (reference, generated) pair, or image i with image i (default %(default)s)")
    c.add_argument("--clip", default=None, help="CLIP model directory: CLIP-I of generated vs reference images (tasks 2-4)")
    c.add_argument("--fid-network", default=None, help="image-features model directory (an Inception exported to ONNX): FID and Inception Scores (tasks 2-4)")
    c.add_argument("--is-splits", type=int, default=10, help="Inception Score splits (default %(default)s, as torchmetrics)")
    c.add_argument("--lpips-network", default=None, help="image-distance model directory (LPIPS exported to ONNX): LPIPS paired as SSIM (tasks 2-4)")
    c.add_argument("--worst-by", default=None, help="per-example column ranking the report's worst examples (default: cider for task 1, else clip_i or ssim)")
    c.add_argument("--judge", action="store_true", help="also run CoMM's LLM judge (needs an endpoint)")
    c.add_argument("--prompts", default=None, help="folder with CoMM's machine_evaluation_prompts/*.json, for numbers comparable to CoMM's (default: interleaf's prompts)")
    c.add_argument("--judge-temperature", type=float, default=1.0, help="judge sampling temperature (default %(default)s, as CoMM)")
    c.add_argument("--attempts", type=int, default=3, help="tries per sample when the judge's answers are unusable (default %(default)s, as CoMM)")
    c.add_argument("--task2-hide-images", action="store_true", help="task 2: hide the images in the description call as CoMM's prompt says (CoMM's code sends them)")
    c.add_argument("--max-edge", type=int, default=512, help="judge images: JPEG at most this many pixels on the longer edge (default %(default)s, as CoMM)")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    add_endpoint_options(c, "judge endpoint (with --judge)")
    c.set_defaults(func=cmd_comm)

    g = esub.add_parser("clip-i", help="GILL's CLIP image similarity of two image folders", description="GILL/MGCC's CLIP-I: cosine of CLIP image embeddings of each generated image and the reference image of the same file name; pairs missing either image are skipped and counted. Exits 2, writing nothing, when no file name is in both folders; 1 (the metrics still written) when names match but no pair could be scored.")
    g.add_argument("generated", help="folder of generated images ({id}.png ...)")
    g.add_argument("reference", help="folder of reference images (same names)")
    g.add_argument("--reference-prefix", default="", help="taken off reference file names before pairing, e.g. VisualDialog_val2018_ for GILL's VisDial images")
    g.add_argument("--clip", required=True, help="CLIP model directory (the papers use ViT-L/14)")
    g.add_argument("--batch-size", type=int, default=None, help="images per inference batch")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    g.set_defaults(func=cmd_clip_i)

    s = esub.add_parser("synjudge", help="InterSyn's SynJudge over a predictions folder", description="SynJudge (TCC, ICC, IQ, ITS, 0-5) of every sample in a CoMM-layout predictions folder: the model input is the question, the model's text the answer, its first predicted image the image. Per-dimension mean and variance, and the overall score.")
    s.add_argument("predictions", help="the predictions folder")
    s.add_argument("--task", action="append", choices=("task1", "task2", "task3", "task4"), help="tasks to include (repeatable; default all)")
    s.add_argument("--output", choices=("json", "bracket"), default="json", help="answer format asked for (default %(default)s)")
    s.add_argument("--max-edge", type=int, default=512, help="images sent at most this many pixels on the longer edge (default %(default)s)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    add_endpoint_options(s)
    s.set_defaults(func=cmd_synjudge)
