"""The ``interleaf`` command line: run, score, filter, recipes, inspect, convert, dedup,
image-stats, signals, models, demo, and the LLM stages judge, enhance and refine
(``interleaf COMMAND --help``)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

import interleaf
from interleaf.io.atomic import atomic_output, refuse_existing
from interleaf.io.reader import DEFAULT_BATCH_SIZE, FORMATS
from interleaf.io.sources import named_inputs
from interleaf.io.writer import OUTPUT_FORMATS, WRITE_FORMATS
from interleaf.schema import empty_frame

SAMPLE_DIR = Path(__file__).parent / "data" / "sample"


def _add_read_options(p: argparse.ArgumentParser, batch_size: int = DEFAULT_BATCH_SIZE, quiet: str = "no progress lines") -> None:
    p.add_argument("--format", choices=FORMATS, default=None, help="input format (default: from file names and the first record's keys)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="documents per batch (default %(default)s)")
    p.add_argument("--image-root", default=None, help="directory for relative image paths in records (default: each file's directory; MMC4's image_name files load only when it is given)")
    p.add_argument("--no-load-images", action="store_true", help="do not read local image files named by records")
    p.add_argument("--max-member-bytes", type=int, default=None, help="largest image read, however supplied: tar member, image file, inline data: URI or base64, parquet binary cell (default 256 MiB; a WebDataset sample's members together: 8 times it)")
    p.add_argument("--max-batch-bytes", type=int, default=None, help="a batch also closes at this many bytes of text, images and metadata (default 256 MiB)")
    p.add_argument("--allow-outside-root", action="store_true", help="let records read image files outside the image root (default: such paths are path_outside_root errors)")
    p.add_argument("--quiet", action="store_true", help=quiet)


def _read_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The read options of :func:`_add_read_options` as :func:`interleaf.read`'s keywords."""
    return {
        "image_root": args.image_root,
        "load_images": not args.no_load_images,
        "max_member_bytes": args.max_member_bytes,
        "max_batch_bytes": args.max_batch_bytes,
        "allow_outside_root": args.allow_outside_root,
    }


def _reader(args: argparse.Namespace, source: Sequence[str]) -> interleaf.Reader:
    named_inputs(list(source))  # a typo'd file name is refused here; the reader gets the names as given (folders included)
    return interleaf.read(list(source), args.format, args.batch_size, progress=not args.quiet, **_read_kwargs(args))


def _summary(stats: dict[str, Any], seconds: float) -> dict[str, Any]:
    docs = stats["documents"]
    return {
        **stats,
        "error_documents": sum(stats["errors"].values()),
        "mean_nodes_per_document": round(stats["nodes"] / docs, 3) if docs else 0.0,
        "seconds": round(seconds, 3),
        "documents_per_second": round(docs / seconds, 1) if seconds > 0 else None,
        "mb_per_second": round(stats["bytes_read"] / 1e6 / seconds, 1) if seconds > 0 else None,
    }


def _print_summary(s: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    print(f"files            {s['files']:>12,}", file=out)
    print(f"documents        {s['documents']:>12,}", file=out)
    print(f"nodes            {s['nodes']:>12,}   (text {s['text_nodes']:,}, image {s['image_nodes']:,})", file=out)
    print(f"text bytes       {s['text_bytes']:>12,}", file=out)
    print(f"image bytes      {s['image_bytes']:>12,}", file=out)
    print(f"bytes read       {s['bytes_read']:>12,}   in {s['seconds']:.2f} s", file=out)
    print(f"error documents  {s['error_documents']:>12,}", file=out)
    for kind, n in sorted(s["errors"].items()):
        print(f"  {kind:<15}{n:>12,}", file=out)


def cmd_inspect(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    reader = _reader(args, args.paths)
    image_sizes: list[pl.Series] = []
    unloaded = 0
    for df in reader:
        images = df.filter(pl.col("kind") == "image")
        image_sizes.append(images.get_column("image").bin.size().drop_nulls())
        # Named but not read, without an error: MMC4's image_name files without --image-root,
        # or --no-load-images.
        unloaded += images.filter(pl.col("image").is_null() & pl.col("error").is_null() & pl.col("image_ref").is_not_null()).height
    s = _summary(reader.stats, time.perf_counter() - t0)
    sizes = pl.concat(image_sizes) if image_sizes else pl.Series([], dtype=pl.UInt32)
    if sizes.len():
        s["image_bytes_quantiles"] = {q: sizes.quantile(q / 100) for q in (0, 50, 90, 100)}
    s["images_not_loaded"] = unloaded
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        _print_summary(s)
        if "image_bytes_quantiles" in s:
            q = s["image_bytes_quantiles"]
            print(f"image size       min {q[0]:,.0f}  median {q[50]:,.0f}  p90 {q[90]:,.0f}  max {q[100]:,.0f} bytes")
        if unloaded:
            why = "--no-load-images" if args.no_load_images else "MMC4's image_name files load only with --image-root DIR; a run scores them as missing_image"
            print(f"{'images not loaded':<17}{unloaded:>12,}   ({why})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    reader = _reader(args, args.src)
    written = interleaf.write(
        reader,
        args.dst,
        args.to,
        prefix=args.prefix,
        max_count=args.max_count,
        max_bytes=args.max_bytes,
        compression=args.compression,
        overwrite=args.overwrite,
        embed_images=args.embed_images,
    )
    s = reader.stats
    print(f"{s['documents']:,} documents ({sum(s['errors'].values()):,} with errors) -> {len(written)} file(s):")
    for w in written:
        print(f"  {w}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the bundled sample: the pairs-basic preset (exact and pHash dedup,
    DataComp's basic filter; no model needed) over the WebDataset and jsonl pairs."""
    from interleaf.pipeline import run

    sources = [SAMPLE_DIR / "pairs-000000.tar", SAMPLE_DIR / "pairs.jsonl"]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        print(f"bundled sample is missing: {missing}", file=sys.stderr)
        return 2
    print(f"interleaf run pairs-basic {' '.join(str(p) for p in sources)} --out {args.out}")
    summary = run("pairs-basic", [str(p) for p in sources], args.out, overwrite=args.overwrite, progress=not args.quiet)
    _print_run(summary)
    print(f"open {args.out}/report.html; why each document was dropped: {args.out}/dropped/*.parquet; the recipe: interleaf recipes show pairs-basic")
    return 0


#: The parser's default of an option that applies to some ``dedup`` methods only.
_NOT_GIVEN = object()


def cmd_dedup(args: argparse.Namespace) -> int:
    from interleaf.dedup import deduplicate

    for dest, default, flag, methods in args.method_options:
        if getattr(args, dest) is _NOT_GIVEN:
            setattr(args, dest, default)
        elif args.method not in methods:
            raise ValueError(f"{flag} applies to --method {' or '.join(methods)}, not {args.method}")

    named_inputs(args.paths)
    summary = deduplicate(
        args.paths,
        args.out,
        args.method,
        format=args.format,
        batch_size=args.batch_size,
        threshold=args.threshold,
        num_perm=args.num_perm,
        n=args.ngram,
        unit=args.unit,
        seed=args.seed,
        bands=args.bands,
        rows=args.rows,
        verify=args.verify,
        on=args.on,
        radius=args.radius,
        draft=args.draft,
        max_pixels=args.max_pixels,
        strip_punctuation=args.strip_punctuation,
        write_format=args.write,
        progress=not args.quiet,
        model=args.model,
        embeddings=args.embeddings,
        eps=args.eps,
        n_clusters=args.clusters,
        device=args.device,
        engine=args.engine,
        ray_address=args.address,
        read_options=_read_kwargs(args),
        overwrite=args.overwrite,
    )
    print(f"{summary['documents']:,} documents, {summary['duplicate_documents']:,} duplicates in {summary['clusters_with_duplicates']:,} clusters; kept {summary['kept_documents']:,}")
    for name, path in summary["outputs"].items():
        print(f"  {name}: {path}")
    return 0


def image_stats_table(nodes: pl.DataFrame, threads: int | None = None, max_pixels: int | None = None, max_bytes: int | None = None, header_only: bool = False) -> pl.DataFrame:
    """Image statistics (see :func:`interleaf.image.stats`) of every image node, keyed by
    ``doc_id``, ``doc_index``, ``pos`` and ``source``."""
    from interleaf.image import stats

    images = nodes.filter(pl.col("kind") == "image")
    table = stats(images.get_column("image"), threads=threads, max_pixels=max_pixels, max_bytes=max_bytes, header_only=header_only)
    return pl.concat([images.select("doc_id", "doc_index", "pos", "source"), table], how="horizontal")


def cmd_image_stats(args: argparse.Namespace) -> int:
    out = Path(args.out)
    refuse_existing(out, args.overwrite)
    t0 = time.perf_counter()
    reader = _reader(args, args.paths)
    parts = [image_stats_table(df, args.threads, args.max_pixels, args.max_image_bytes, args.header_only) for df in reader]
    table = pl.concat(parts) if parts else image_stats_table(empty_frame())
    with atomic_output(out) as tmp:
        table.write_parquet(tmp)
    seconds = time.perf_counter() - t0
    errors = table.filter(pl.col("error").is_not_null()).group_by(pl.col("error").struct.field("kind")).len().sort("kind")
    ok = table.filter(pl.col("error").is_null())
    print(f"{table.height:,} images ({'headers read' if args.header_only else f'{ok.height:,} decoded'}) in {seconds:.2f} s -> {out}")
    for kind, n in errors.iter_rows():
        print(f"  {kind:<22}{n:>10,}")
    if ok.height:
        q = lambda c: ok.get_column(c).quantile(0.5)
        pixels = "" if args.header_only else f", blur {q('blur'):.1f}, entropy {q('entropy'):.2f} bits, brightness {q('brightness'):.2f}"
        print(f"median: {q('width'):.0f}x{q('height'):.0f} px{pixels}")
    return 0


SIGNAL_CHOICES = ("text", "text-doc", "caption", "image", "clip", "sequence", "coherence", "perplexity", "perplexity-step", "perplexity-doc", "language", "language-node")


def build_signals(names: Sequence[str], args: argparse.Namespace) -> list:
    """The Signal objects named on the command line."""
    from interleaf import signals as sg

    make = {
        "text": lambda: sg.TextStats(paragraphs=args.paragraphs, threads=args.threads, common_words=args.common_words),
        "text-doc": lambda: sg.TextStats("doc", name="doc_text", paragraphs=args.paragraphs, threads=args.threads, common_words=args.common_words),
        "caption": lambda: sg.CaptionStats("doc"),
        "image": lambda: sg.ImageStats(max_pixels=args.max_pixels, max_bytes=args.max_image_bytes, header_only=args.header_only),
        "clip": lambda: sg.ClipAlignment(args.alignment, threshold=args.threshold, threads=args.threads),
        "sequence": lambda: sg.SequenceConsistency(threads=args.threads),
        "coherence": lambda: sg.TextCoherence(shuffles=args.shuffles, seed=args.seed, threads=args.threads),
        "perplexity": lambda: sg.Perplexity(max_perplexity=args.max_perplexity, paragraphs=args.paragraphs),
        "perplexity-step": lambda: sg.Perplexity("step", name="step_lm", max_perplexity=args.max_perplexity),
        "perplexity-doc": lambda: sg.Perplexity("doc", name="doc_lm", max_perplexity=args.max_perplexity, paragraphs=args.paragraphs),
        "language": lambda: sg.Language("doc", lowercase=args.lowercase, paragraphs=args.paragraphs),
        "language-node": lambda: sg.Language("node", name="node_language", lowercase=args.lowercase, paragraphs=args.paragraphs),
    }
    out = []
    for n in names:
        if n not in make:
            raise ValueError(f"unknown signal {n!r}; choose from {', '.join(SIGNAL_CHOICES)}")
        out.append(make[n]())
    return out


def cmd_signals(args: argparse.Namespace) -> int:
    from interleaf import signals as sg

    names = list(dict.fromkeys(n.strip() for n in args.signals.split(",") if n.strip()))
    if not names:
        raise ValueError(f"--signals names no signal; choose from {', '.join(SIGNAL_CHOICES)}")
    sigs = build_signals(names, args)
    for sig, name in zip(sigs, names, strict=True):
        for need, flag in (("clip.", "--clip"), ("text.embedding", "--text-embedder"), ("lm.", "--lm"), ("lid", "--lid")):
            if any(n.startswith(need) for n in sig.needs) and getattr(args, flag[2:].replace("-", "_")) is None:
                raise ValueError(f"signal {name} needs a model: give {flag} {'FILE' if flag == '--lid' else 'DIR'}")
    ctx = sg.Context(clip=args.clip, text_embedder=args.text_embedder, lm=args.lm, lid=args.lid, words=args.common_words, device=args.device, threads=args.threads, batch_size=args.model_batch_size)
    reader = _reader(args, args.paths)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    node_parts, doc_parts = [], []
    for batch in reader:
        n, d = sg.compute(batch, sigs, ctx)
        node_parts.append(n)
        doc_parts.append(d)
    if not node_parts:
        n, d = sg.compute(empty_frame(), sigs, ctx)
        node_parts, doc_parts = [n], [d]
    nodes, docs = pl.concat(node_parts), pl.concat(doc_parts)
    for name, table in (("node_attrs.parquet", nodes), ("doc_attrs.parquet", docs)):
        with atomic_output(out / name) as tmp:
            table.write_parquet(tmp)
    seconds = time.perf_counter() - t0
    print(f"{docs.height:,} documents, {nodes.height:,} nodes in {seconds:.2f} s -> {out}/node_attrs.parquet, doc_attrs.parquet")
    for table in (nodes, docs):
        for col in (c for c in table.columns if c.endswith("_error")):
            kinds = table.filter(pl.col(col).is_not_null()).group_by(pl.col(col).struct.field("kind")).len().sort("kind")
            for kind, k in kinds.iter_rows():
                print(f"  {col:<28}{kind:<22}{k:>10,}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from interleaf import models

    if args.models_command == "list":
        if args.root is not None and not Path(args.root).is_dir():
            raise FileNotFoundError(f"--root {args.root} is not a folder")
        rows = models.list_models(args.root)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        root = args.root or models.home()
        if not rows:
            print(f"no models under {root} (interleaf models export / pull put them there; INTERLEAF_MODELS moves it)")
        for r in rows:
            print(f"{r['name']:<40} {r['kind'] or 'invalid':<14} {r['error'] or r['path']}")
        return 0
    if args.models_command == "info":
        d = models.info(args.path)
        if args.json:
            print(json.dumps(d, indent=2))
            return 0
        if d["kind"] == "language-id":
            print(f"{d['path']}: fastText language id, {d['labels']} labels, {d['words']:,} words, dim {d['dim']}, {'quantised' if d['quantized'] else 'dense'}, {d['bytes']:,} bytes")
            return 0
        if d["kind"] == "kenlm":
            counts = f", {d['order']}-gram, n-grams {' / '.join(f'{c:,}' for c in d['ngrams'])}" if "order" in d else ""
            print(f"{d['path']}: KenLM ({d['format']}{counts}), {d['bytes']:,} bytes, tokenizer {d['tokenizer']}")
            return 0
        print(f"{d['path']}: {d['kind']} ({d['model_type']})")
        for k in ("dim", "context_length", "image_size", "max_seq_length", "pooling", "normalize", "vocab_size", "logit_scale", "source"):
            if d.get(k) is not None:
                print(f"  {k:<15} {d[k]}")
        for rel, io in d["onnx"].items():
            print(f"  {rel}")
            for x in io["inputs"]:
                print(f"    in  {x['name']:<22} {x['type']:<16} {x['shape']}")
            for x in io["outputs"]:
                print(f"    out {x['name']:<22} {x['type']:<16} {x['shape']}")
        return 0
    if args.models_command == "pull":
        from interleaf.models.hub import pull

        dest = pull(args.repo, args.out or models.default_dir(args.repo), revision=args.revision, fp16=args.fp16, endpoint=args.endpoint)
        print(f"{args.repo} -> {dest}")
        return 0
    from interleaf.models import export as ex

    what = args.what
    kw = {"fp16": args.fp16, "verify": not args.no_verify, "overwrite": args.overwrite}
    if what == "clip":
        if bool(args.from_transformers) == bool(args.from_open_clip):
            raise ValueError("give exactly one of --from-transformers DIR|NAME and --from-open-clip ARCH PRETRAINED")
        if args.from_transformers:
            out = args.out or models.default_dir(args.from_transformers)
            dest = ex.export_clip_transformers(args.from_transformers, out, **kw)
        else:
            arch, pretrained = args.from_open_clip
            out = args.out or models.home() / f"{arch}-{Path(pretrained).stem}"
            dest = ex.export_clip_open_clip(arch, pretrained, out, **kw)
    elif what == "text-embedder":
        if not args.from_sentence_transformers:
            raise ValueError("text-embedder needs --from-sentence-transformers DIR")
        dest = ex.export_text_embedder(args.from_sentence_transformers, args.out or models.default_dir(args.from_sentence_transformers), backend=args.backend, **kw)
    else:
        if not args.from_transformers:
            raise ValueError("causal-lm needs --from-transformers DIR|NAME")
        dest = ex.export_causal_lm(args.from_transformers, args.out or models.default_dir(args.from_transformers), **kw)
    check = (json.loads((Path(dest) / "config.json").read_text(encoding="utf-8")).get("interleaf") or {}).get("export_check")
    print(f"exported {what} -> {dest}")
    if isinstance(check, str):
        print(f"  {check}")
    elif check:
        print(f"  ONNX vs torch: {json.dumps(check)}")
    return 0


def _models_arg(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model takes NAME=PATH (clip=DIR, text=DIR, lm=DIR, lid=FILE), not {item!r}")
        out[name] = path
    return out


def _run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "models": _models_arg(args.model),
        "llm": {k: v for k, v in (("base_url", args.llm_base_url), ("model", args.llm_model), ("api_key_env", args.llm_api_key_env), ("concurrency", args.llm_concurrency), ("cache", args.llm_cache)) if v is not None} or None,
        "format": args.format,
        **_read_kwargs(args),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "device": args.device,
        "threads": args.threads,
        "model_batch_size": args.model_batch_size,
        "limit": args.limit,
        "overwrite": args.overwrite,
        "progress": not args.quiet,
        "engine": args.engine,
        "ray_address": args.address,
        "ray_dedup": args.ray_dedup,
    }


def _print_run(summary: Any) -> None:
    from interleaf.pipeline import NOT_APPLICABLE

    d = summary.data
    print(f"{d['documents']['in']:,} documents in, {d['documents']['kept']:,} kept, {d['documents']['dropped']:,} dropped; nodes {d['nodes']['in']:,} in, {d['nodes']['kept']:,} kept")
    for title, key in (("documents dropped by (each under the first filter that dropped it)", "dropped_documents"), ("nodes dropped by", "dropped_nodes")):
        if d[key]:
            print(f"{title}:")
            for name, n in d[key].items():
                print(f"  {name:<24}{n:>10,}")
    if d["errors"]:
        print("documents with read or decode errors:")
        for kind, n in d["errors"].items():
            print(f"  {kind:<24}{n:>10,}")
        if d.get("error_documents", 0) >= d["documents"]["in"] > 0:
            urls = "; an image named only by URL is never downloaded" if "missing_image" in d["errors"] else ""
            print(f"interleaf: warning: every document has a read or decode error ({', '.join(d['errors'])}): check --format, --image-root and the inputs{urls}", file=sys.stderr)
    if d.get("signal_errors"):
        print("signal rows with errors:")
        for name, e in d["signal_errors"].items():
            for kind, n in e["errors"].items():
                print(f"  {name:<24}{kind:<22}{n:>10,}")
            # Not "not applicable" rows (F below 3 images, a text-less node): failures.
            if sum(n for kind, n in e["errors"].items() if kind not in NOT_APPLICABLE) >= e["rows"]:
                print(f"interleaf: warning: every row of signal {name} has an error, e.g. {e['example']}", file=sys.stderr)
    for name, msg in {**d["skipped"]["signals"], **d["skipped"]["filters"]}.items():
        print(f"skipped {name}: {msg}")
    if d["documents"]["in"] and not d["documents"]["kept"]:
        print(f"interleaf: warning: no document was kept; check the thresholds (interleaf recipes show {d['recipe']}) and the drops per filter above", file=sys.stderr)
    if d.get("llm"):
        q = d["llm"]
        print(f"LLM ({q['model']}): {q.get('requests', 0):,} requests, {q.get('cached', 0):,} cached, {q.get('retried', 0):,} retried, {q.get('failed', 0):,} failed; tokens {q.get('prompt_tokens', 0):,} in / {q.get('completion_tokens', 0):,} out")
    print(f"wrote {summary.out}/ (attributes/, dropped/, kept/, summary.json); the report: {summary.out}/report.html")


def cmd_run(args: argparse.Namespace) -> int:
    from interleaf.pipeline import run

    recipe = args.recipe
    if args.embed_images:
        from interleaf.recipes import load

        rec = load(recipe)
        recipe = rec.model_copy(update={"output": rec.output.model_copy(update={"embed_images": True})})
    summary = run(recipe, args.inputs, args.out, output_format=args.output_format, **_run_kwargs(args))
    _print_run(summary)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from interleaf.pipeline import run

    summary = run(args.recipe, args.inputs, args.out, stages=("score", "dedup"), **_run_kwargs(args))
    print(f"wrote the attributes of {len(summary.data['shards'])} shard(s) to {summary.out}/attributes; `interleaf filter {summary.out}` applies the filters")
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    from interleaf.pipeline import refilter

    summary = refilter(args.out, args.recipe, workers=args.workers, output_format=args.output_format, embed_images=args.embed_images, progress=not args.quiet)
    _print_run(summary)
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from interleaf import recipes

    if args.recipes_command == "list":
        for name, desc in recipes.presets().items():
            print(f"{name:<12} {desc}")
        return 0
    print(recipes.preset_text(args.name), end="")
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="a preset name (interleaf recipes list) or a recipe YAML file")
    p.add_argument("inputs", nargs="+", help="files, globs, brace ranges or directories; each file is a shard")
    p.add_argument("--out", required=True, help="output folder (new, empty, or an earlier run over the same inputs, which is resumed)")
    p.add_argument("--model", action="append", metavar="NAME=PATH", help="a model the recipe names: clip=DIR, text=DIR, lm=DIR (a causal LM, or a KenLM model as OBELICS used: en.arpa.bin with en.sp.model beside it), lid=FILE (a fastText language-id model such as lid.176.bin), words=FILE (a common-word list: OBELICS's common_words.json, a JSON array, or a word per line) (repeatable)")
    p.add_argument("--workers", type=int, default=None, help="shards processed at once, each in its own process (default 1; outputs do not depend on it); with --engine ray: concurrent tasks / model actors (default: the cluster's CPUs)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="where the per-shard stages run: this machine, or Ray Data (needs the ray extra; same outputs) (default %(default)s)")
    p.add_argument("--address", default=None, help="with --engine ray: the cluster to join from one of its nodes (auto, or HEAD:6379; Ray Client ray:// addresses cannot run Ray Data: use ray job submit); default: start or join a local Ray instance")
    p.add_argument("--ray-dedup", choices=("auto", "distributed", "driver"), default="auto", help="with --engine ray: MinHash, exact and pHash dedup (and the dedup among the documents the filters kept) on Ray or in the driver (default %(default)s: on Ray when the values exceed 4 GiB; same outputs)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the models run (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="threads per worker (default: INTERLEAF_THREADS, else the usable cores, divided among the workers)")
    p.add_argument("--model-batch-size", type=int, default=None, help="inference batch size (default: each model's)")
    p.add_argument("--limit", type=int, default=None, help="only the first N documents of the input, in read order (shards after the one that reaches N get no outputs)")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder that holds something else")
    p.add_argument("--llm-base-url", default=None, help="LLM endpoint of the recipe's llm_judge signals (overrides its llm.base_url; default $INTERLEAF_LLM_BASE_URL)")
    p.add_argument("--llm-model", default=None, help="LLM model name (overrides llm.model; default $INTERLEAF_LLM_MODEL)")
    p.add_argument("--llm-api-key-env", default=None, metavar="VAR", help="environment variable holding the LLM API key (default $INTERLEAF_LLM_API_KEY, then $OPENAI_API_KEY; an endpoint the recipe names gets a key only from the variable named here)")
    p.add_argument("--llm-concurrency", type=int, default=None, help="LLM requests in flight per worker (overrides llm.concurrency)")
    p.add_argument("--llm-cache", default=None, help="sqlite cache of LLM answers (overrides llm.cache): a rerun sends only new requests")
    _add_read_options(p, quiet="no progress lines or timing table")


def _add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="export, pull, list and describe ONNX models", description="Model directories in the Hugging Face / Optimum layout (CLIP, sentence-transformers text embedder, causal LM).")
    msub = p.add_subparsers(dest="models_command", required=True)
    e = msub.add_parser("export", help="export transformers / open_clip / sentence-transformers weights to ONNX (needs the export extra: torch; BERT text embedders also without it)", description="Export weights on disk (or a hub name when a hub is reachable) to an interleaf model directory, check the ONNX graphs against torch, and record the check in config.json.")
    e.add_argument("what", choices=("clip", "text-embedder", "causal-lm"), help="kind of model to export")
    e.add_argument("--from-transformers", metavar="DIR|NAME", help="clip or causal-lm: a transformers checkpoint")
    e.add_argument("--from-open-clip", nargs=2, metavar=("ARCH", "PRETRAINED"), help="clip: an open_clip architecture and its pretrained tag or checkpoint file")
    e.add_argument("--from-sentence-transformers", metavar="DIR", help="text-embedder: a sentence-transformers model directory")
    e.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto", help="text-embedder: trace with torch, or write a BERT encoder's graph from its safetensors with the onnx package and no torch (auto: torch when installed)")
    e.add_argument("--out", default=None, help="output directory (default: the models home, INTERLEAF_MODELS)")
    e.add_argument("--fp16", action="store_true", help="also write onnx/*_fp16.onnx (used on CUDA)")
    e.add_argument("--no-verify", action="store_true", help="skip the ONNX-vs-torch check")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    pl_ = msub.add_parser("pull", help="download a model directory from the Hugging Face Hub", description="Download an ONNX model directory (Optimum / Xenova layout) into the models home; needs huggingface_hub and a reachable hub.")
    pl_.add_argument("repo", help="owner/name")
    pl_.add_argument("--out", default=None, help="output directory (default: the models home)")
    pl_.add_argument("--revision", default=None, help="branch, tag or commit")
    pl_.add_argument("--fp16", action="store_true", help="also fetch onnx/*_fp16.onnx")
    pl_.add_argument("--endpoint", default=None, help="the hub's URL, for a mirror or a self-hosted hub (default: $HF_ENDPOINT, else https://huggingface.co)")
    li = msub.add_parser("list", help="list the models in the models home", description="List model directories (and fastText language-id and KenLM files) under the models home ($INTERLEAF_MODELS or ~/.cache/interleaf/models) with their kind.")
    li.add_argument("--root", default=None, help="directory to list instead of the models home")
    li.add_argument("--json", action="store_true", help="print JSON")
    inf = msub.add_parser("info", help="describe a model", description="Kind, sizes and ONNX inputs/outputs of a model directory (or a model name in the models home); labels, words and dimension of a fastText language-id file; form, tokenizer and (of an ARPA file) n-gram counts of a KenLM model.")
    inf.add_argument("path", help="model directory or name")
    inf.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interleaf", description="Score, deduplicate, filter and enhance multimodal training data.")
    parser.add_argument("--version", action="version", version=f"interleaf {interleaf.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="count documents, nodes, sizes and errors", description="Read sources and report documents, nodes by kind, sizes and errors by kind.")
    p.add_argument("paths", nargs="+", help="files, globs, brace ranges or directories")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_read_options(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("convert", help="convert between formats", description="Read SRC in any supported format and write it as parquet, jsonl or WebDataset.")
    p.add_argument("src", nargs="+", help="input files, globs, brace ranges or directories")
    p.add_argument("dst", help="output file (.parquet / .jsonl[.gz]) or directory")
    p.add_argument("--to", choices=WRITE_FORMATS + ("wds",), required=True, help="output format")
    p.add_argument("--prefix", default="shard", help="file name prefix in a directory destination (default %(default)s)")
    p.add_argument("--max-count", type=int, default=10_000, help="WebDataset: documents per shard (default %(default)s)")
    p.add_argument("--max-bytes", type=int, default=1 << 30, help="WebDataset: bytes per shard (default 1 GiB)")
    p.add_argument("--compression", choices=("none", "gz", "zst"), default="none", help="WebDataset shard compression (default %(default)s)")
    p.add_argument("--embed-images", action="store_true", help="record layouts (pairs, mmc4, obelics, comm, llava): write image bytes inline as data: URIs instead of their references (an image with no reference, as from a WebDataset, is always written inline)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files of the same names (stale shards of the prefix are removed)")
    _add_read_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("dedup", help="find duplicate documents", description="Stream documents, find exact, MinHash (text), pHash (image) or semantic (SemDeDup on embeddings) duplicates, write duplicates.parquet (doc_id, cluster_id, representative, method, score) and summary.json, optionally the deduplicated dataset.")
    p.add_argument("paths", nargs="+", help="files, globs, brace ranges or directories")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--method", choices=("exact", "minhash", "phash", "semantic"), default="minhash", help="exact keys, MinHash LSH on text, pHash on each document's first image, or SemDeDup on embeddings (default %(default)s)")
    method_options: list[tuple[str, Any, str, tuple[str, ...]]] = []

    def only(methods: tuple[str, ...], *a: Any, **kw: Any) -> None:
        """An option that applies to some methods only: given with another, it is an error
        (even at its default value: the parser's default is a marker for "not given")."""
        default = kw.get("default", False if kw.get("action") == "store_true" else None)
        kw["default"] = _NOT_GIVEN
        kw["help"] = kw["help"].replace("%(default)s", str(default))
        action = p.add_argument(*a, **kw)
        method_options.append((action.dest, default, action.option_strings[0], methods))

    only(("phash",), "--radius", type=int, default=5, help="phash: Hamming radius (default %(default)s, as MMC4)")
    only(("phash",), "--draft", type=int, default=None, metavar="PIXELS", help="phash: decode JPEGs reduced, as Pillow's draft('L', (PIXELS, PIXELS)): several times faster, hashes not bit-identical to a full decode (default: full decode)")
    only(("phash",), "--max-pixels", type=int, default=None, metavar="PIXELS", help="phash: largest image decoded (default 89,478,485, Pillow's MAX_IMAGE_PIXELS); a larger one is not hashed and its document stays alone")
    only(("exact", "semantic"), "--on", choices=("text", "image", "all"), default="text", help="exact: what the key covers; semantic: what is embedded, text or image (default %(default)s)")
    only(("exact",), "--strip-punctuation", action="store_true", help="exact text keys ignore punctuation")
    only(("minhash",), "--threshold", type=float, default=0.8, help="minhash: Jaccard threshold (default %(default)s)")
    only(("minhash",), "--num-perm", type=int, default=128, help="minhash: permutations (default %(default)s)")
    only(("minhash",), "--ngram", type=int, default=5, help="minhash: shingle size (default %(default)s)")
    only(("minhash",), "--unit", choices=("word", "char"), default="word", help="minhash: shingle unit (default %(default)s)")
    only(("minhash", "semantic"), "--seed", type=int, default=None, help="minhash: permutation seed (default 1, datasketch's); semantic: k-means seed (default 1234, SemDeDup's)")
    only(("minhash",), "--bands", type=int, default=None, help="minhash: LSH bands (default: chosen like datasketch)")
    only(("minhash",), "--rows", type=int, default=None, help="minhash: LSH rows per band (default: chosen like datasketch)")
    only(("minhash",), "--verify", choices=("none", "signature"), default="none", help="minhash: check candidate pairs on the full signature (default %(default)s)")
    only(("semantic",), "--model", default=None, metavar="MODEL", help="semantic: CLIP model (--on image or text) or sentence embedder (--on text) directory")
    only(("semantic",), "--embeddings", default=None, metavar="FILE", help="semantic: precomputed embeddings instead of --model, one row per document in read order (.npy, or file.parquet:column)")
    only(("semantic",), "--eps", type=float, default=0.01, help="semantic: a document is a duplicate when its cosine with an earlier one of its cluster is > 1 - eps (default %(default)s)")
    only(("semantic",), "--clusters", type=int, default=None, help="semantic: k-means clusters (default: about 1,000 documents per cluster)")
    only(("semantic",), "--device", choices=("auto", "cpu", "cuda"), default="auto", help="semantic: where the model and FAISS k-means run (default %(default)s)")
    only(("semantic",), "--engine", choices=("local", "ray"), default="local", help="semantic: run SemDeDup's per-cluster passes here or as parallel Ray tasks (same result; default %(default)s)")
    only(("semantic",), "--address", default=None, help="with --engine ray: the Ray cluster to join from one of its nodes (auto, or HEAD:6379; default: start a local instance)")
    p.add_argument("--overwrite", action="store_true", help="replace a duplicates.parquet (or, with --write, a dedup folder) in OUT that no finished dedup wrote (a rerun replaces its own outputs without it)")
    p.add_argument("--write", choices=WRITE_FORMATS, default=None, help="also write the deduplicated dataset to OUT/dedup in this format (one stream over every input: WebDataset shards of 10,000 documents or 1 GiB, one parquet or jsonl file; the input's shard boundaries are not kept, `interleaf run` keeps them in kept/)")
    _add_read_options(p)
    p.set_defaults(func=cmd_dedup, method_options=method_options)

    p = sub.add_parser("image-stats", help="per-image statistics", description="Decode every image node and write its statistics (size, format, mode, frames, blur as OpenCV's Laplacian variance, entropy, brightness, contrast, uniform fraction, error) with doc_id, pos and source to a parquet file.")
    p.add_argument("paths", nargs="+", help="files, globs, brace ranges or directories")
    p.add_argument("--out", required=True, help="output parquet file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--threads", type=int, default=None, help="decoding threads (default: all cores)")
    p.add_argument("--max-pixels", type=int, default=None, help="largest image decoded, in pixels (default 89,478,485, Pillow's MAX_IMAGE_PIXELS: where Pillow warns, here an image_too_large error)")
    p.add_argument("--max-image-bytes", type=int, default=None, help="largest encoded image read, in bytes (default 256 MiB)")
    p.add_argument("--header-only", action="store_true", help="size, format and mode from the headers only, no decode (the pixel statistics are null)")
    _add_read_options(p)
    p.set_defaults(func=cmd_image_stats)

    p = sub.add_parser(
        "signals",
        help="score documents with signals",
        description="Read sources, compute the chosen signals (OBELICS text statistics, DataComp's caption word and character counts, image statistics and size rules, CLIP alignment, CoMM's image-sequence F, text coherence, perplexity, fastText language id) and write OUT/node_attrs.parquet (one row per node) and OUT/doc_attrs.parquet (one row per document).",
    )
    p.add_argument("paths", nargs="+", help="files, globs, brace ranges or directories")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--signals", default="text,text-doc,image", help=f"comma-separated, from {', '.join(SIGNAL_CHOICES)} (default %(default)s)")
    p.add_argument("--clip", default=None, metavar="MODEL", help="CLIP model directory (clip, sequence)")
    p.add_argument("--text-embedder", default=None, metavar="MODEL", help="sentence embedder directory (coherence)")
    p.add_argument("--lm", default=None, metavar="MODEL", help="causal LM directory, or a KenLM model (en.arpa.bin with en.sp.model beside it; OBELICS's perplexity) (perplexity)")
    p.add_argument("--lid", default=None, metavar="FILE", help="fastText language-id model file, e.g. lid.176.bin (language, language-node)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the models run (default %(default)s)")
    p.add_argument("--model-batch-size", type=int, default=None, help="inference batch size (default: each model's)")
    p.add_argument("--alignment", choices=("auto", "pair", "step", "mmc4"), default="auto", help="clip: pair (DataComp), step (CoMM) or mmc4 assignment; auto picks per document (default %(default)s)")
    p.add_argument("--threshold", type=float, default=0.15, help="clip, mmc4: drop an image whose best similarity is below this (default %(default)s, MMC4's)")
    p.add_argument("--paragraphs", action="store_true", help="text: also apply OBELICS's paragraph filter (kept text, reasons); text-doc, perplexity, perplexity-doc, language, language-node: on the surviving paragraphs")
    p.add_argument("--common-words", default=None, metavar="FILE", help="text, text-doc: also the common-word ratio against this list (OBELICS's common_words.json, a JSON array, or a word per line), and OBELICS's paragraph filter checks it (>= 0.8)")
    p.add_argument("--lowercase", action="store_true", help="language, language-node: lower-case the text before fastText reads it (OBELICS; DataComp does not)")
    p.add_argument("--shuffles", type=int, default=8, help="coherence: shuffled orders to compare with (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="coherence: shuffle seed (default %(default)s)")
    p.add_argument("--max-perplexity", type=float, default=1500.0, help="perplexity: the _ok column's limit (default %(default)s, OBELICS's KenLM value)")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--max-pixels", type=int, default=None, help="image: largest image decoded, in pixels (default 89,478,485, Pillow's MAX_IMAGE_PIXELS: where Pillow warns, here an image_too_large error)")
    p.add_argument("--max-image-bytes", type=int, default=None, help="image: largest encoded image read, in bytes (default 256 MiB)")
    p.add_argument("--header-only", action="store_true", help="image: size, format and mode from the headers only, no decode (the pixel statistics are null): the OBELICS and DataComp size rules at a fraction of the cost")
    _add_read_options(p)
    p.set_defaults(func=cmd_signals)

    p = sub.add_parser(
        "run",
        help="run a recipe: score, deduplicate, filter, write",
        description="Run RECIPE (a preset or a YAML file) over INPUTS into OUT: attributes/<signal>/<shard>.parquet, dropped/<shard>.parquet (doc_index, doc_id, pos, filter, value, threshold, rule, detail), kept/, summary.json and report.html. A rerun into the same OUT skips finished work.",
    )
    _add_run_options(p)
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default=None, help="how kept documents are written (default: the recipe's output.format; auto = the input's own layout: WebDataset, the jsonl record layout, or the node table for parquet)")
    p.add_argument("--embed-images", action="store_true", help="record layouts: write kept images inline as data: URIs (the recipe's output.embed_images), so kept/ reads back without the input's --image-root")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("score", help="compute a recipe's attributes only", description="Run the score and dedup stages of RECIPE over INPUTS into OUT (attributes/, signatures/); `interleaf filter OUT` then applies the filters.")
    _add_run_options(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("filter", help="re-apply (edited) filters to a run's attributes", description="Re-apply the filters of the run in OUT, or of an edited recipe (its signals and dedup steps unchanged), to the stored attributes without running any model; rewrites dropped/, kept/, summary.json and report.html.")
    p.add_argument("out", help="a folder written by interleaf run / score")
    p.add_argument("--recipe", default=None, help="an edited recipe (default: the run's own)")
    p.add_argument("--workers", type=int, default=1, help="shards written at once (default %(default)s)")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default=None, help="how kept documents are written (default: as the run wrote them)")
    p.add_argument("--embed-images", action=argparse.BooleanOptionalAction, default=None, help="record layouts: kept images inline as data: URIs, or not (default: as the run wrote them, unless --recipe sets output.embed_images)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser("recipes", help="list and show the preset recipes", description="The preset recipes: `list` names each with what it does; `show` prints one as YAML to copy and edit.")
    rsub = p.add_subparsers(dest="recipes_command", required=True)
    rsub.add_parser("list", help="the presets and what they do")
    r = rsub.add_parser("show", help="print a preset's YAML")
    r.add_argument("name", help="preset name")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("demo", help="run the main job on the bundled sample", description="Run the pairs-basic preset (exact and pHash radius-5 dedup, DataComp's basic filter; no model needed) over the bundled sample (WebDataset and jsonl pairs) into OUT: attributes/, dropped/, kept/, summary.json and report.html.")
    p.add_argument("--out", default="interleaf-demo", help="output directory (default %(default)s; an earlier demo there is resumed)")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder that holds something else")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_demo)

    _add_models_parser(sub)
    from interleaf import cli_eval, cli_llm

    cli_llm.add_parsers(sub)
    cli_eval.add_parsers(sub)
    return parser


def _as_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, message: str) -> str:
    """An argument check's message (``batch_size must be an int >= 1 or None, got 0``) in the
    command's terms (``--batch-size must be an int >= 1, got 0``)."""
    m = re.match(r"(\w+) must be ", message)
    if not m:
        return message
    # Arguments whose flag says more than the parameter's name.
    dest = {"max_bytes": "max_image_bytes"}.get(m.group(1), m.group(1))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and args.command in action.choices:
            flags = {a.dest: a.option_strings[-1] for a in action.choices[args.command]._actions if a.option_strings}
            if dest in flags:
                return flags[dest] + message[len(m.group(1)) :].replace(" or None,", ",", 1)
    return message


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError as e:
        if _stdout_open():
            print(f"interleaf {args.command}: error: {e}", file=sys.stderr)
            return 2
        # Whoever read our output stopped (`| head`): end quietly, as a shell tool does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ValueError as e:
        print(f"interleaf {args.command}: error: {_as_flags(parser, args, str(e))}", file=sys.stderr)
        return 2
    except (FileNotFoundError, OSError, ImportError, RuntimeError, sqlite3.Error) as e:
        print(f"interleaf {args.command}: error: {e}", file=sys.stderr)
        return 2
    except pl.exceptions.PolarsError as e:
        # A full or failing disk under a parquet write reaches us as polars' error: the
        # message is the user's to act on; any other polars error is a bug with its traceback.
        if not any(m in str(e) for m in ("IO error", "os error", "No space left")):
            raise
        print(f"interleaf {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumes = " (finished shards are kept: the same command resumes)" if args.command in ("run", "score", "demo") else ""
        print(f"interleaf {args.command}: interrupted{resumes}", file=sys.stderr)
        return 130


def _stdout_open() -> bool:
    """Whether standard output can still be written (a BrokenPipeError may come from
    elsewhere, a socket to a server)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return False
    except (OSError, ValueError):
        return True
    import select

    try:  # a pipe whose reader is gone polls as an error (what print raised may be dropped)
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return not any(ev & select.POLLERR for _, ev in poll.poll(0))
    except (AttributeError, OSError, ValueError):
        return True


def entry() -> None:
    """The ``interleaf`` command: :func:`main`, and after Ctrl-C the process ends by SIGINT, as
    an interrupted program does, so a shell loop over interleaf commands stops too."""
    code = main()
    if not _stdout_open():  # what was left in the buffer found the reader gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = code or 141
    if code == 130:
        import signal

        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    sys.exit(code)


if __name__ == "__main__":
    entry()
