#!/usr/bin/env python3
"""The Ray engine's overhead: the same run (benches/pipeline.py's OBELICS rules recipe: text
and image statistics, MinHash and pHash dedup, OBELICS's filters; no model) on the same shards
with the local engine (1 and 2 worker processes) and on Ray Data (1 and 2 concurrent tasks, a
local Ray instance started in the child process; MinHash and pHash clustered in the driver,
which ``ray_dedup="auto"`` picks at this size, and once on Ray Data with label propagation on
Ray actors), each in a fresh process and a fresh output folder. Prints documents/s, the ratio
to the local engine with as many workers, Ray's start-up time, and the per-stage seconds the
scaling plan in docs/scale-out.md is built from. Then SemDeDup on ``--semantic`` synthetic
embeddings with its per-cluster passes here and as Ray tasks (same result checked).

    python benches/ray_engine.py [--docs 40000] [--shard-docs 2500] [--semantic 200000]

Needs the ray extra. Results: ``benches/results/ray_engine.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from _common import report_header, versions
from pipeline import DATA, child, make_rules_data, rules_recipe

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ray_engine.json"

CODE = """
import json, sys, time, interleaf
recipe, out, engine, workers, ray_dedup, paths = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6:]
init = 0.0
if engine == "ray":
    import ray
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import interleaf.ray
    interleaf.ray.init(progress=False)
    init = time.perf_counter() - t0
t0 = time.perf_counter()
s = interleaf.run(recipe, paths, out, workers=workers, engine=engine, ray_dedup=ray_dedup, progress=False, overwrite=True)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "init_s": init, "documents": s["documents"]["in"], "kept": s["documents"]["kept"], "stages": {k: v["seconds"] for k, v in s["stages"].items()}}))
"""

SEMANTIC = """
import json, sys, time
import numpy as np
n = int(sys.argv[1])
rng = np.random.default_rng(0)
centres = rng.normal(size=(n // 1000, 256))
x = (centres[rng.integers(0, len(centres), n)] + 0.3 * rng.normal(size=(n, 256))).astype(np.float32)
x[: n // 50] = x[n // 50 : 2 * (n // 50)] + 0.001 * rng.normal(size=(n // 50, 256)).astype(np.float32)
import ray
t0 = time.perf_counter()
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
init = time.perf_counter() - t0
from interleaf.search import kmeans
from interleaf.dedup.semdedup import semantic
t0 = time.perf_counter()
labels, _ = kmeans(x / np.linalg.norm(x, axis=1, keepdims=True), n // 1000, niter=20, seed=0)
km = time.perf_counter() - t0
t0 = time.perf_counter()
a = semantic(x, clusters=labels)
t1 = time.perf_counter()
b = semantic(x, clusters=labels, engine="ray")
t2 = time.perf_counter()
print(json.dumps({"n": n, "kmeans_s": km, "local_s": t1 - t0, "ray_s": t2 - t1, "init_s": init, "same": a.equals(b), "removed": int((~a["kept"]).sum())}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=40_000)
    ap.add_argument("--shard-docs", type=int, default=2_500)
    ap.add_argument("--semantic", type=int, default=200_000, help="embeddings for the SemDeDup comparison (0: skip)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    shards = make_rules_data(args.docs, args.shard_docs)
    recipe = rules_recipe(DATA / "rules.yaml")
    rows = {}
    for engine, workers, dedup in (("local", 1, "auto"), ("ray", 1, "auto"), ("local", 2, "auto"), ("ray", 2, "auto"), ("ray", 2, "distributed")):
        name = f"{engine}-{workers}" + ("-distributed-dedup" if dedup == "distributed" else "")
        out = DATA / f"ray-bench-{name}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh run, not a resumed one
        r = child(CODE, str(recipe), str(out), engine, str(workers), dedup, *map(str, shards))
        r["docs_per_s"] = r["documents"] / r["seconds"]
        rows[name] = r
        print(f"{name:28s}: {r['documents']:,} docs in {r['seconds']:.1f} s = {r['docs_per_s']:,.0f} docs/s (ray start {r['init_s']:.1f} s); stages {json.dumps({k: round(v, 2) for k, v in r['stages'].items()})}", flush=True)
    for w in (1, 2):
        ratio = rows[f"ray-{w}"]["docs_per_s"] / rows[f"local-{w}"]["docs_per_s"]
        rows[f"ray_vs_local_{w}"] = ratio
        print(f"workers={w}: Ray at {ratio:.2f}x the local engine's rate")
    if args.semantic:
        r = child(SEMANTIC, str(args.semantic))
        rows["semdedup"] = r
        print(f"SemDeDup {args.semantic:,} x 256 (k-means {r['kmeans_s']:.1f} s): cluster passes here {r['local_s']:.1f} s, as Ray tasks {r['ray_s']:.1f} s ({r['local_s'] / r['ray_s']:.2f}x; Ray start {r['init_s']:.1f} s); same result: {r['same']}")
    report = {**report_header("ray_engine"), "versions": versions(["interleaf", "ray", "polars"]), "params": {"docs": args.docs, "shard_docs": args.shard_docs, "shards": len(shards), "semantic": args.semantic}, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
