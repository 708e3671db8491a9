"""The LLM-backed commands: ``interleaf judge synjudge|comm``, ``interleaf enhance aitqe``,
``interleaf refine seir``, ``interleaf instruct run|compare``. Each reads a table (parquet / jsonl with the stage's columns) or any
dataset interleaf reads, sends its requests through one :class:`interleaf.llm.Client`, writes one
output row per input row (a result or an error) to a parquet file, and prints a JSON summary with
the request and token counters. Rerunning with the same ``--cache`` sends only the requests that
have not been answered yet, or whose answer could not be parsed; ``--refresh-cache`` sends all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from interleaf.io.atomic import atomic_output
from interleaf.io.local import read_confined
from interleaf.io.sources import named_inputs
from interleaf.llm import STRUCTURED_MODES, Client

_TABLE_SUFFIXES = (".parquet", ".jsonl", ".ndjson")


def _count(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def add_llm_options(p: argparse.ArgumentParser, out_help: str = "output parquet file, one row per input row") -> None:
    add_endpoint_options(p)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--max-edge", type=int, default=512, help="images are sent as JPEG at most this many pixels on their longer edge (default %(default)s)")
    p.add_argument("--image-root", default=None, help="directory for relative image paths (default: each input file's directory)")
    p.add_argument("--allow-outside-root", action="store_true", help="read image paths that resolve outside the image root (default: such images are row errors, never read or sent)")
    p.add_argument("--limit", type=_count, default=None, help="first N input rows / documents only")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def add_endpoint_options(p: argparse.ArgumentParser, title: str = "endpoint (any OpenAI-compatible server: vLLM, SGLang, llama.cpp, Ollama, a hosted API)") -> None:
    g = p.add_argument_group(title)
    g.add_argument("--base-url", default=None, help="endpoint, e.g. http://127.0.0.1:8000/v1 (default $INTERLEAF_LLM_BASE_URL)")
    g.add_argument("--model", default=None, help="model name (default $INTERLEAF_LLM_MODEL)")
    g.add_argument("--api-key", default=None, help="API key (default $INTERLEAF_LLM_API_KEY, then $OPENAI_API_KEY; local servers need none)")
    g.add_argument("--concurrency", type=int, default=16, help="requests in flight at most (default %(default)s)")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per attempt, answer read included (default %(default)s)")
    g.add_argument("--max-response-bytes", type=int, default=64 << 20, help="largest answer read; past it the request fails (default 64 MiB)")
    g.add_argument("--max-retries", type=int, default=5, help="retries of timeouts, 429, 5xx and dropped connections (default %(default)s)")
    g.add_argument("--max-backoff", type=float, default=60.0, help="longest wait before a retry, a server's Retry-After included (default %(default)s s)")
    g.add_argument("--cache", default=None, help="sqlite request cache: a rerun sends only unanswered requests and those whose answer could not be parsed (recommended for long runs)")
    g.add_argument("--refresh-cache", action="store_true", help="serve nothing from --cache: send every request again and store the new answers")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the server's)")
    g.add_argument("--max-tokens", type=int, default=None, help="answer length limit in tokens (default: the server's)")
    g.add_argument("--seed", type=int, default=None, help="sampling seed, where the server supports one")
    g.add_argument("--structured", choices=STRUCTURED_MODES, default="auto", help="how JSON schemas are sent (default %(default)s: json_schema, falling back to json_object, then none)")


def client_from_args(args: argparse.Namespace, base_url: str | None = None, model: str | None = None) -> Client:
    """The client the endpoint options describe; ``base_url`` / ``model`` replace those options
    (a second endpoint, e.g. an images model, with the same retries, timeouts and cache)."""
    return Client(
        base_url or args.base_url,
        model or args.model,
        args.api_key,
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_retries=args.max_retries,
        cache=args.cache,
        refresh=args.refresh_cache,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        seed=args.seed,
        structured=args.structured,
        max_response_bytes=args.max_response_bytes,
        max_backoff=args.max_backoff,
    )


def _table_columns(path: Path) -> list[str] | None:
    if path.suffix == ".parquet":
        return list(pl.read_parquet_schema(path))
    if path.suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        return None
                    return list(obj) if isinstance(obj, dict) else None
    return None


def _load_images(table: pl.DataFrame, base: Path, allow_outside_root: bool = False, max_bytes: int = 256 << 20) -> pl.DataFrame:
    """An ``image`` column of paths becomes bytes (relative paths under ``base``, the image
    root), as does a Hugging Face ``datasets`` image column (a ``{bytes, path}`` struct: its
    bytes, else its path). As for every reader: a path that resolves outside the root (unless
    allowed), that is not a regular file, or a file over ``max_bytes`` is not read; the image
    stays null and ``error`` says why, as it does for a file that cannot be read."""
    if "image" not in table.columns:
        return table
    dtype = table.schema["image"]
    if isinstance(dtype, pl.Struct) and {"bytes", "path"} & {f.name for f in dtype.fields}:
        fields = {f.name: f.dtype for f in dtype.fields}
        if fields.get("bytes", pl.Null) not in (pl.Binary, pl.Null) or fields.get("path", pl.Null) not in (pl.String, pl.Null):
            return table  # e.g. base64 text for bytes: the stage names what it cannot read
        col = table["image"]
        given = col.struct.field("bytes").to_list() if fields.get("bytes") == pl.Binary else [None] * table.height
        refs = col.struct.field("path").to_list() if fields.get("path") == pl.String else [None] * table.height
        refs = [None if b is not None else r for b, r in zip(given, refs, strict=True)]
    elif dtype == pl.String:
        given, refs = [None] * table.height, table["image"].to_list()
    else:
        return table
    root = base.resolve()
    images: list[bytes | None] = list(given)
    errors: list[str | None] = list(table["error"]) if "error" in table.columns else [None] * table.height
    inside = None if allow_outside_root else root
    for i, ref in enumerate(refs):
        if ref is None:
            continue
        data, why = read_confined(Path(ref) if Path(ref).is_absolute() else base / ref, inside, max_bytes, root_name=f"the image root {root} (--allow-outside-root to read it)")
        images[i] = data
        if why is not None:
            errors[i] = errors[i] or f"image file {ref!r}: {why}"
    return table.with_columns(pl.Series("image", images, dtype=pl.Binary), pl.Series("error", errors, dtype=pl.String))


def _inputs(args: argparse.Namespace, columns: Sequence[str]) -> Iterator[Any]:
    """The input as one table (a parquet / jsonl file holding one of ``columns``, the stage's
    identifying columns) or as node batches of any format interleaf reads, streamed: one batch
    is in memory at a time."""
    import interleaf

    paths = [Path(p) for p in named_inputs(args.inputs)]
    if len(paths) == 1 and paths[0].suffix in _TABLE_SUFFIXES and paths[0].is_file():
        cols = _table_columns(paths[0])
        if cols is not None and any(c in cols for c in columns):
            table = pl.read_parquet(paths[0]) if paths[0].suffix == ".parquet" else pl.read_ndjson(paths[0], infer_schema_length=None)
            if args.limit is not None:
                table = table.head(args.limit)
            yield _load_images(table, Path(args.image_root) if args.image_root else paths[0].parent, args.allow_outside_root)
            return
    left = args.limit
    for batch in interleaf.read([str(p) for p in paths], image_root=args.image_root, allow_outside_root=args.allow_outside_root, progress=not args.quiet):
        if left is not None:
            keep = batch["doc_index"].unique(maintain_order=True).head(left)
            batch = batch.filter(pl.col("doc_index").is_in(keep.implode()))
            left -= keep.len()
        yield batch
        if left is not None and left <= 0:
            break


def _every_row_failed(table: pl.DataFrame) -> bool:
    return bool("error" in table.columns and table.height and table["error"].null_count() == 0)


def _run(
    args: argparse.Namespace,
    columns: Sequence[str],
    stage: Callable[[Any, Client], pl.DataFrame],
    summarise: Callable[[pl.DataFrame], dict[str, Any]] | None = None,
    images: Client | None = None,
) -> int:
    """Runs ``stage`` over the inputs and writes its rows to ``--out``; the summary counts the
    requests of the client and of ``images`` (a second client for an images endpoint)."""
    t0 = time.perf_counter()
    out = Path(args.out)
    _check_out_file(out)  # before any request is paid for
    with client_from_args(args) as client:
        parts = [stage(x, client) for x in _inputs(args, columns)]
        parts = [p for p in parts if p.height or len(parts) == 1]
        table = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
        if _every_row_failed(table) and out.exists():
            # Every row failed (an endpoint down): the earlier output is worth more than this.
            print(f"interleaf {args.command}: every row failed: {out} is left as it was", file=sys.stderr)
        else:
            with atomic_output(out) as tmp:
                table.write_parquet(tmp)
        summary: dict[str, Any] = {"out": str(out), "rows": table.height, "errors": int(table["error"].is_not_null().sum()) if "error" in table.columns else 0}
        if summarise is not None and table.height:
            summary |= summarise(table)
        summary["requests"] = client.stats.as_dict()
        if images is not None:
            summary["image_requests"] = images.stats.as_dict()
        summary["seconds"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(summary, indent=2))
    return _report_errors(args, table)


def _check_out_file(out: Path) -> None:
    """Refuses an output path that cannot take the parquet file (a folder, a file inside a
    file) before the requests, not after them."""
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder: give the output file's path (e.g. {out / 'out.parquet'})")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"--out {out}: {parent} is a file, not a folder")


def _report_errors(args: argparse.Namespace, table: pl.DataFrame) -> int:
    """Rows with an error are counted in the summary; stderr names the first, and a run whose
    every row failed (an endpoint that is down, a wrong URL, answers that never parse) exits 1."""
    if "error" not in table.columns or not table.height:
        return 0
    errors = table.get_column("error").drop_nulls()
    if not errors.len():
        return 0
    first = errors[0]
    first = first.get("message", first) if isinstance(first, dict) else first
    prog = f"interleaf {args.command}"
    if errors.len() == table.height:
        print(f"{prog}: error: every row failed ({errors.len():,}); the first: {first}", file=sys.stderr)
        return 1
    print(f"{prog}: warning: {errors.len():,} of {table.height:,} rows failed; the first: {first}", file=sys.stderr)
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    from interleaf import judge

    if args.judge == "synjudge":
        # A table holds a question or an answer column (either may be missing, as for the API);
        # anything else is a dataset.
        return _run(args, ("question", "answer"), lambda x, c: judge.synjudge(x, c, output=args.output, max_edge=args.max_edge, progress=not args.quiet), lambda t: {"aggregate": judge.aggregate(t)})
    return _run(
        args,
        ("steps",),
        lambda x, c: judge.comm(x, c, images=not args.no_images, max_images=args.max_images, max_edge=args.max_edge, progress=not args.quiet),
        lambda t: {"aggregate": judge.aggregate(t, list(judge.COMM_VIEWS) if not args.no_images else list(judge.COMM_VIEWS[:2]))},
    )


def cmd_enhance(args: argparse.Namespace) -> int:
    from interleaf import enhance

    clip = None
    if args.min_clip is not None and not args.clip:
        raise ValueError("--min-clip needs --clip (the CLIP model that scores the pairs)")
    if args.clip:
        from interleaf import models

        clip = models.load(args.clip, kind="clip")
    elif not args.quiet:
        print("notice: no --clip: rewrites are accepted on their edit ratio alone (AITQE's guard also asks that the CLIP score improves)", file=sys.stderr)
    contrastive: list[pl.DataFrame] = []
    results: list[pl.DataFrame] = []

    def stage(x: Any, c: Client) -> pl.DataFrame:
        res = enhance.aitqe(x, c, clip, threshold=args.threshold, min_aspect=args.min_aspect, min_clip=args.min_clip, max_edit_ratio=args.max_edit_ratio, max_edge=args.max_edge, progress=not args.quiet)
        if args.contrastive:
            # Each read batch's pairs follow the earlier ones in --out: index counts from there.
            start = sum(r.height for r in results)
            contrastive.append(enhance.contrastive_pairs(x, res, c, max_edge=args.max_edge, progress=not args.quiet, start=start))
        results.append(res)
        return res

    rc = _run(args, ("caption", "text"), stage, lambda t: {"decisions": dict(sorted(t.group_by("decision").len().iter_rows()))})
    if args.contrastive:
        table = pl.concat(contrastive, how="diagonal_relaxed") if contrastive else pl.DataFrame()
        every_failed = _every_row_failed(pl.concat([r.select("error") for r in results]) if results else pl.DataFrame())
        if every_failed and Path(args.contrastive).exists():
            # As for --out: an endpoint that was down does not replace the earlier pairs.
            print(f"interleaf {args.command}: every row failed: {args.contrastive} is left as it was", file=sys.stderr)
        else:
            with atomic_output(args.contrastive) as tmp:
                table.write_parquet(tmp)
            print(f"{table.height:,} contrastive pairs -> {args.contrastive}", file=sys.stderr)
    return rc


def cmd_refine(args: argparse.Namespace) -> int:
    from interleaf import refine

    images = client_from_args(args, args.images_base_url, args.images_model) if args.images_model else None
    try:
        return _run(args, ("question", "answer", "caption"), lambda x, c: refine.cascade(x, c, k=args.k, images=images, image_size=args.image_size, max_edge=args.max_edge, progress=not args.quiet), images=images)
    finally:
        if images is not None:
            images.close()


def _pairs_input(args: argparse.Namespace) -> pl.DataFrame:
    """``doc_id``, ``caption``, ``image``, ``error`` from a table or the first text and image of
    each document."""
    from interleaf.llm.records import documents, is_node_batch

    rows = []
    for x in _inputs(args, ("caption", "text")):
        if is_node_batch(x):
            for d in documents(x):
                node = next((n for n in d["nodes"] if n["kind"] == "image"), None)
                err = d["error"] or (node["error"] if node is not None else "no image")
                rows.append({"doc_id": d["doc_id"], "caption": next((n["text"] for n in d["nodes"] if n["kind"] == "text"), None), "image": node["image"] if node else None, "error": err})
        else:
            cap = "caption" if "caption" in x.columns else "text"
            for i, r in enumerate(x.to_dicts()):
                rows.append({"doc_id": str(r.get("doc_id") or r.get("id") or i), "caption": r.get(cap), "image": r.get("image"), "error": r.get("error")})
    return pl.DataFrame(rows, schema={"doc_id": pl.String, "caption": pl.String, "image": pl.Binary, "error": pl.String}, orient="row")


def cmd_instruct(args: argparse.Namespace) -> int:
    from interleaf import instruct, models

    t0 = time.perf_counter()
    out = Path(args.out)
    if args.instruct == "compare":
        return _run(args, ("instruction",), lambda x, c: instruct.compare(x, c, progress=not args.quiet), lambda t: {"winners": dict(sorted((k or "error", v) for k, v in t.group_by("winner").len().iter_rows()))})
    seeds: tuple[str, ...] = instruct.DEFAULT_SEEDS
    if args.seeds:
        seeds = tuple(line.strip() for line in Path(args.seeds).read_text(encoding="utf-8").splitlines() if line.strip())
    pairs = _pairs_input(args)
    embedder = models.load(args.embedder, kind="text-embedder")
    clip = models.load(args.clip, kind="clip")

    def write(name: str, table: pl.DataFrame) -> None:
        with atomic_output(out / name) as tmp:
            table.write_parquet(tmp)

    with client_from_args(args) as client:
        generated = instruct.generate(pairs["caption"], client, seeds=seeds, per_caption=args.per_caption, n_seeds=args.n_seeds, seed=args.data_seed, progress=not args.quiet)
        write("generated.parquet", generated)
        ok = generated.filter(pl.col("instruction").is_not_null())
        if ok.is_empty():
            raise RuntimeError(f"no instruction was generated ({generated['error'].drop_nulls().head(3).to_list()}): see {out / 'generated.parquet'}")
        clustered = instruct.cluster(ok["instruction"], embedder, args.k, seed=args.data_seed)
        final = instruct.summarise(clustered, client, seed=args.data_seed, progress=not args.quiet)
        write("instructions.parquet", final)
        usable = final.filter(pl.col("instruction").is_not_null())
        if usable.is_empty():
            raise RuntimeError(f"no cluster could be summarised into an instruction: see {out / 'instructions.parquet'}")
        matched = instruct.match(usable["instruction"], pairs["image"], clip, top_k=args.match_top_k, mode=args.match, temperature=args.match_temperature, seed=args.data_seed)
        ask = [{"caption": c, "instruction": i} for c, i in zip(pairs["caption"], matched["instruction"], strict=True)]
        answered = instruct.answer(ask, client, progress=not args.quiet)
        samples = pl.DataFrame(
            {
                "doc_id": pairs["doc_id"],
                "caption": pairs["caption"],
                "instruction": matched["instruction"],
                "match_score": matched["score"],
                "answer": answered["answer"],
            }
        ).with_columns(pl.DataFrame([pairs["error"].alias("a"), matched["error"].alias("b"), answered["error"].alias("c")]).select(pl.coalesce("a", "b", "c").alias("error")).to_series())
        write("samples.parquet", samples)
        summary = {
            "out": str(out),
            "inputs": pairs.height,
            "generated": ok.height,
            "instructions": usable.height,
            "samples": samples.height,
            "answered": int(samples["answer"].is_not_null().sum()),
            "requests": client.stats.as_dict(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    print(json.dumps(summary, indent=2))
    return _report_errors(args, samples)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("judge", help="LLM judges: SynJudge, CoMM's quality views", description="Score samples with an LLM judge behind an OpenAI-compatible endpoint.")
    jsub = p.add_subparsers(dest="judge", required=True)
    s = jsub.add_parser(
        "synjudge",
        help="InterSyn's SynJudge: TCC, ICC, IQ, ITS (0-5)",
        description="Score (question, answer text, answer image) samples on InterSyn's four dimensions. INPUT: a parquet/jsonl table with question, answer, image (bytes or a path) columns (question optional; answer or image may be missing), or any dataset interleaf reads (per document: first text = question, later texts = answer, first image after it).",
    )
    s.add_argument("inputs", nargs="+", help="a table or dataset files / globs / directories")
    s.add_argument("--output", choices=("json", "bracket"), default="json", help="answer format asked for: JSON with a schema, or the published bracket line (default %(default)s)")
    add_llm_options(s)
    s.set_defaults(func=cmd_judge)
    c = jsub.add_parser(
        "comm",
        help="CoMM's views: development, completeness, alignment (0-10)",
        description="Judge interleaved documents as CoMM's dataset-quality views. INPUT: any dataset interleaf reads (CoMM steps, or each text with the images after it), or a jsonl/parquet table with title and steps.",
    )
    c.add_argument("inputs", nargs="+", help="dataset files / globs / directories")
    c.add_argument("--no-images", action="store_true", help="a text-only model: send no image and do not ask for alignment")
    c.add_argument("--max-images", type=int, default=10, help="images attached per document at most (default %(default)s, as CoMM)")
    add_llm_options(c)
    c.set_defaults(func=cmd_judge)

    p = sub.add_parser("enhance", help="enhance instead of discard: AITQE caption rewrites", description="Improve low-quality samples with an LLM instead of dropping them.")
    esub = p.add_subparsers(dest="enhance", required=True)
    a = esub.add_parser(
        "aitqe",
        help="score pairs 1-10 and minimally rewrite the low ones",
        description="AITQE: score image-text pairs; below --threshold (or, where set, below --min-aspect in text quality or image-text matching, or below --min-clip in CLIP cosine) ask for a minimal rewrite, accepted when its edit ratio is at most --max-edit-ratio and (with --clip) its CLIP score beats the original's. The original is always kept. INPUT: a table with caption (or text) and image columns, or any dataset interleaf reads (first text and first image per document).",
    )
    a.add_argument("inputs", nargs="+", help="a table or dataset files / globs / directories")
    a.add_argument("--threshold", type=int, default=7, help="rewrite pairs scoring below this (1-10; default %(default)s, AITQE's value is unverified)")
    a.add_argument("--min-aspect", type=int, default=None, help="also rewrite pairs whose text_quality or image_text_matching aspect is below this (1-10; default: the overall score alone decides)")
    a.add_argument("--min-clip", type=float, default=None, help="also rewrite pairs whose CLIP cosine is below this (needs --clip; e.g. 0.28, DataComp's B/32 cut)")
    a.add_argument("--max-edit-ratio", type=float, default=0.35, help="reject rewrites whose character edit ratio exceeds this (default %(default)s)")
    a.add_argument("--clip", default=None, help="CLIP model directory: reject rewrites whose CLIP score does not beat the original's")
    a.add_argument("--contrastive", default=None, help="also write AITQE-style contrastive pairs (degraded -> original, original -> accepted rewrite) to this parquet file")
    add_llm_options(a)
    a.set_defaults(func=cmd_enhance)

    p = sub.add_parser("refine", help="SEIR: iterative self-evaluation and refinement", description="Refine samples with InterSyn's SEIR loop on an LLM.")
    rsub = p.add_subparsers(dest="refine", required=True)
    r = rsub.add_parser(
        "seir",
        help="refine question, then answer and caption (up to k rounds each)",
        description="InterSyn's SEIR cascade: evaluate -> refine until the model answers 'none' or k rounds, for the question, then answer and caption, then (with --images-model) the image: the --model VLM critiques it, the images endpoint regenerates it. INPUT: a parquet/jsonl table with question, answer, caption and optionally image (bytes or a path) columns.",
    )
    r.add_argument("inputs", nargs=1, help="a table with question, answer, caption[, image]")
    r.add_argument("--k", type=int, default=3, help="rounds per field at most (default %(default)s, as InterSyn)")
    r.add_argument("--images-model", default=None, help="image generation model of an OpenAI images endpoint: enables the image step")
    r.add_argument("--images-base-url", default=None, help="the images endpoint (default: --base-url)")
    r.add_argument("--image-size", default="1024x1024", help="size of generated images (default %(default)s)")
    add_llm_options(r)
    r.set_defaults(func=cmd_refine)

    p = sub.add_parser("instruct", help="MM-Instruct: instructions from caption data", description="Generate visual instruction data from image-caption pairs (MM-Instruct).")
    isub = p.add_subparsers(dest="instruct", required=True)
    i = isub.add_parser(
        "run",
        help="generate -> cluster -> summarise -> match -> answer",
        description="MM-Instruct's pipeline over image-caption pairs: instructions generated from the captions and seed instructions, embedded and clustered (FAISS k-means), one instruction per cluster, matched to each image by CLIP retrieval, answered from the caption. Writes OUT/generated.parquet, OUT/instructions.parquet and OUT/samples.parquet (one row per input pair).",
    )
    i.add_argument("inputs", nargs="+", help="a table with caption (or text) and image columns, or any dataset interleaf reads (first text and first image per document)")
    i.add_argument("--embedder", required=True, help="text embedder model directory (clustering)")
    i.add_argument("--clip", required=True, help="CLIP model directory (instruction-image matching)")
    i.add_argument("--k", type=int, default=300, help="clusters = final instructions (default %(default)s, as MM-Instruct)")
    i.add_argument("--per-caption", type=int, default=3, help="instructions generated per caption (default %(default)s)")
    i.add_argument("--n-seeds", type=int, default=3, help="seed instructions shown per request (default %(default)s)")
    i.add_argument("--seeds", default=None, help="file of seed instructions, one per line (default: interleaf's own ten)")
    i.add_argument("--match", choices=("argmax", "sample"), default="argmax", help="pick the best instruction, or sample the top-k by temperature (default %(default)s)")
    i.add_argument("--match-top-k", type=int, default=5, help="sample mode: candidates per image (default %(default)s)")
    i.add_argument("--match-temperature", type=float, default=0.05, help="sample mode: softmax temperature over cosines (default %(default)s)")
    i.add_argument("--data-seed", type=int, default=0, help="seed of the seed-instruction draw, k-means and match sampling (default %(default)s; --seed is the server's sampling seed)")
    add_llm_options(i, "output folder: generated.parquet, instructions.parquet and samples.parquet are written into it")
    i.set_defaults(func=cmd_instruct)
    c = isub.add_parser("compare", help="pairwise judge with order swapping", description="MM-Instruct's benchmark judge: each (instruction, a, b[, caption]) row judged twice with the order swapped; the winner counts only when both verdicts agree, otherwise tie.")
    c.add_argument("inputs", nargs=1, help="a parquet/jsonl table with instruction, a, b and optionally caption")
    add_llm_options(c)
    c.set_defaults(func=cmd_instruct)
