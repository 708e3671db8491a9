#!/usr/bin/env python3
"""Parquet read throughput and memory: ``interleaf.read`` vs pyarrow into polars.

Generates three files under ``bench-data/parquet`` (git-ignored) unless they are there:

* ``captions.parquet``: 1M LAION-like rows (url, caption, similarity), written by pyarrow
  with its defaults (dictionary pages that fill and fall back to plain);
* ``obelics.parquet``: 100k OBELICS-like documents (texts and images lists, paragraphs of a
  lognormal length, a few up to 60 KB);
* ``dictionary_bomb.parquet``: 400 OBELICS rows whose texts name one 10 MiB paragraph each, a
  few KB on disk and 4 GiB decoded (what bounded memory is about).

Each reader runs in a fresh single-threaded subprocess, 3 times round-robin; the report gives
the best and median wall time and the child's peak RSS (``VmHWM``):

* ``interleaf``: ``for df in interleaf.read(path, format=..., load_images=False)`` (node
  batches with ids, errors and metadata, each at most ``max_batch_bytes`` decoded);
* ``interleaf (all cores)``: the same with interleaf's default threads (records convert in runs
  of rows on its thread pool) and polars' and arrow's;
* ``pyarrow+polars (floor)``: ``ParquetFile.iter_batches(batch_size=1024)`` and
  ``pl.from_arrow`` per batch, the records read and nothing done with them. Not run on the
  bomb: it decodes a whole piece of rows at once (several GB).

Usage::

    python benches/parquet_read.py                # 3 repeats
    python benches/parquet_read.py --repeats 5 --dir /tmp/pq

Results go to ``benches/results/parquet_read.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import report_header, versions

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO_ROOT / "bench-data" / "parquet"
DEFAULT_OUT = REPO_ROOT / "benches" / "results" / "parquet_read.json"
GEN_VERSION = 1
SINGLE_THREAD_ENV = {"POLARS_MAX_THREADS": "1", "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "ARROW_NUM_THREADS": "1", "INTERLEAF_THREADS": "1"}
#: interleaf with its default threads (every core), the one reader not run single-threaded.
ALL_CORES = "interleaf (all cores)"
FILES = {"captions.parquet": "pairs", "obelics.parquet": "obelics", "dictionary_bomb.parquet": "obelics"}
WORDS = "the a of and in on with cat dog park sunny day red blue house tree car road city man woman child plays runs near old new".split()


def generate(directory: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / "generator.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("version") == GEN_VERSION and all((directory / f).is_file() for f in FILES):
        print(f"parquet: reusing {directory}", flush=True)
        return
    rng = np.random.default_rng(0)
    words = np.array(WORDS)

    def text(n_words: int) -> str:
        return " ".join(words[rng.integers(0, len(words), n_words)])

    t0 = time.perf_counter()
    n = 1_000_000
    captions = [text(int(k)) + f" {i}" for i, k in enumerate(rng.integers(4, 30, n))]
    table = pa.table({"url": [f"https://images.example.com/{i:08d}.jpg" for i in range(n)], "caption": captions, "similarity": rng.uniform(0.2, 0.45, n)})
    pq.write_table(table, directory / "captions.parquet")
    docs = 100_000
    texts, images = [], []
    for d in range(docs):
        k = int(rng.integers(1, 6))
        lengths = np.minimum(rng.lognormal(4.0, 1.0, k).astype(int) + 4, 10_000)
        t, im = [], []
        for j, words_in in enumerate(lengths):
            t += [text(int(words_in)), None]
            im += [None, f"https://e.example.com/{d}/{j}.jpg"]
        texts.append(t)
        images.append(im)
    pq.write_table(pa.table({"id": [f"doc{d}" for d in range(docs)], "texts": texts, "images": images}), directory / "obelics.parquet")
    paragraph = "z " * (5 << 20)
    rows = 400
    bomb = pa.table({"id": [f"b{i}" for i in range(rows)], "texts": pa.array([[paragraph, None] for _ in range(rows)]), "images": pa.array([[None, f"https://e.example.com/{i}.jpg"] for i in range(rows)])})
    pq.write_table(bomb, directory / "dictionary_bomb.parquet", compression="zstd")
    stamp.write_text(json.dumps({"version": GEN_VERSION}))
    print(f"parquet: generated in {time.perf_counter() - t0:.1f}s", flush=True)


def _peak_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> dict:
    kind, path, fmt = spec["kind"], spec["path"], spec["format"]
    if kind.startswith("interleaf"):
        import interleaf

        def run() -> dict:
            reader = interleaf.read(path, format=fmt, load_images=False)
            nodes = 0
            for df in reader:
                nodes += df.height
            return {"documents": reader.stats["documents"], "nodes": nodes, "errors": reader.stats["errors"]}

    else:
        import polars as pl
        import pyarrow.parquet as pq

        def run() -> dict:
            rows = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                rows += pl.from_arrow(batch).height  # type: ignore[union-attr]
            return {"documents": rows}

    t0 = time.perf_counter()
    out = run()
    out.update(wall_s=time.perf_counter() - t0, peak_rss_mib=_peak_mib())
    return out


def run_child(spec: dict) -> dict:
    env = {**os.environ, **SINGLE_THREAD_ENV}
    if spec["kind"] == ALL_CORES:
        env = {k: v for k, v in os.environ.items() if k not in SINGLE_THREAD_ENV}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    generate(args.dir)
    report = report_header("parquet_read")
    report["versions"] = versions(("interleaf", "pyarrow", "polars", "numpy"))
    report["settings"] = {"repeats": args.repeats, "child_env": SINGLE_THREAD_ENV, "units": "wall seconds; peak RSS in MiB (the child's VmHWM)"}
    report["files"] = {}
    for name, fmt in FILES.items():
        path = str(args.dir / name)
        kinds = ["interleaf"] if name.startswith("dictionary_bomb") else ["interleaf", ALL_CORES, "pyarrow+polars"]
        runs: dict[str, list[dict]] = {k: [] for k in kinds}
        for _ in range(args.repeats):
            for kind in kinds:
                runs[kind].append(run_child({"kind": kind, "path": path, "format": fmt}))
        entry: dict = {"bytes": os.path.getsize(path), "readers": {}}
        for kind, rs in runs.items():
            walls = [r["wall_s"] for r in rs]
            entry["readers"][kind] = {
                "documents": rs[0]["documents"],
                "errors": rs[0].get("errors"),
                "wall_s": {"best": min(walls), "median": statistics.median(walls), "all": walls},
                "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
            }
        if "pyarrow+polars" in runs:
            entry["interleaf_vs_floor_time"] = entry["readers"]["interleaf"]["wall_s"]["median"] / entry["readers"]["pyarrow+polars"]["wall_s"]["median"]
        report["files"][name] = entry
        line = "  ".join(f"{k}: {v['wall_s']['median']:.2f} s, {v['peak_rss_mib']:.0f} MiB" for k, v in entry["readers"].items())
        ratio = f"  (interleaf/floor {entry['interleaf_vs_floor_time']:.2f}x)" if "interleaf_vs_floor_time" in entry else ""
        print(f"{name} ({entry['bytes'] / 1e6:.1f} MB): {line}{ratio}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
