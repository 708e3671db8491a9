#!/usr/bin/env python3
"""FAISS on a GPU through ``interleaf.search`` and ``interleaf.dedup.semantic``: k-means, exact and
IVF search, SemDeDup, against FAISS on the same machine's CPU cores, one run.

Data: ``--n`` (default 10,000,000) synthetic ``--dim``-wide (512) L2-normalised float32
embeddings around ``--clusters`` centres (a CLIP-sized corpus; 20 GB at the defaults), made on
all cores. Steps, each timed and written to the results as soon as it ends:

* **kmeans**: ``kmeans(x, k, niter=20, device="cuda")`` over all ``n`` rows, ``k`` =
  SemDeDup's default (``n / 1000``): wall time and the mean cosine of each row to its centroid.
  Then GPU vs CPU on a ``--subset`` (1M rows, ``k = subset / 1000``, 10 iterations): the ratio.
* **flat**: ``Index(dim, "cosine", "flat", device="cuda")`` add all rows, search ``--queries``
  (10,000) for the top 10; the CPU flat index searches the first ``--cpu-queries`` (1,000) of
  them: queries/s both ways, and how many top-10 lists agree.
* **ivf**: ``Index(..., "ivf", device="cuda")`` trained on ``--train`` rows with the default
  nlist / nprobe, add all rows, search: build and search time and recall@10 against the flat
  index.
* **semdedup**: ``semantic(x, eps=0.01, clusters=<the GPU k-means labels>)``: the per-cluster pass
  (CPU threads); SemDeDup end to end on this machine is the k-means time plus this.

Needs faiss-gpu and a GPU (``--device cpu`` runs the same steps on the CPU alone, for a dry run).
Results: ``benches/results/faiss_gpu.json`` (``--out``), with the GPU named.

Usage::

    python benches/faiss_gpu.py                       # 10M x 512 on the GPU
    python benches/faiss_gpu.py --n 200000 --device cpu --subset 100000   # dry run, any machine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import report_header, versions

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "faiss_gpu.json"
CHUNK = 250_000


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def data(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """``n`` unit rows around ``clusters`` centres, made in row chunks on all cores."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    labels = rng.integers(0, clusters, n)
    x = np.empty((n, dim), dtype=np.float32)

    def fill(a: int) -> None:
        b = min(n, a + CHUNK)
        r = np.random.default_rng([seed, a])
        r.standard_normal((b - a, dim), dtype=np.float32, out=x[a:b])
        x[a:b] *= 0.8
        x[a:b] += centres[labels[a:b]]
        x[a:b] /= np.linalg.norm(x[a:b], axis=1, keepdims=True)

    with ThreadPoolExecutor(os.cpu_count()) as ex:
        list(ex.map(fill, range(0, n, CHUNK)))
    return x


def timed(fn, *args):
    """``(fn(*args), seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def mean_cosine(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> float:
    c = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)

    def part(a: int) -> float:
        b = min(len(x), a + CHUNK)
        return float(np.einsum("ij,ij->i", x[a:b], c[labels[a:b]]).sum())

    with ThreadPoolExecutor(os.cpu_count()) as ex:
        return sum(ex.map(part, range(0, len(x), CHUNK))) / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=20_000, help="centres the data is drawn around")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--cpu-queries", type=int, default=1_000)
    ap.add_argument("--subset", type=int, default=1_000_000, help="rows of the GPU-vs-CPU k-means comparison")
    ap.add_argument("--train", type=int, default=1_000_000, help="IVF training rows")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--steps", default="kmeans,flat,ivf,semdedup")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    from interleaf.dedup import semantic
    from interleaf.dedup.semdedup import default_clusters
    from interleaf.search import Index, gpu_count, kmeans

    steps = set(args.steps.split(","))
    report = {
        **report_header("faiss_gpu"),
        "gpu": gpu_name(),
        "faiss_gpus": gpu_count(),
        "versions": versions(("interleaf", "numpy", "faiss-cpu", "faiss-gpu", "faiss-gpu-cu12")),
        "params": vars(args),
        "results": {},
    }
    res = report["results"]

    def save() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))

    print(f"GPU: {report['gpu']} (FAISS sees {report['faiss_gpus']}); device {args.device}", flush=True)
    t0 = time.perf_counter()
    x = data(args.n, args.dim, args.clusters, 0)
    q = x[np.random.default_rng(1).choice(args.n, args.queries, replace=False)] + 0.05 * np.random.default_rng(2).standard_normal((args.queries, args.dim), dtype=np.float32)
    res["data_s"] = time.perf_counter() - t0
    print(f"data: {args.n:,} x {args.dim} float32 ({x.nbytes / 2**30:.1f} GiB) in {res['data_s']:.1f} s", flush=True)
    labels = None

    if "kmeans" in steps:
        k = default_clusters(args.n)
        t0 = time.perf_counter()
        labels, cents = kmeans(x, k, niter=20, seed=0, device=args.device)
        t = time.perf_counter() - t0
        res["kmeans"] = {"n": args.n, "k": k, "niter": 20, "device": args.device, "s": t, "mean_cosine": mean_cosine(x, labels, cents)}
        print(f"kmeans {args.n:,} x {args.dim}, k={k:,}, 20 iterations on {args.device}: {t:.1f} s, mean cosine to centroid {res['kmeans']['mean_cosine']:.4f}", flush=True)
        save()
        sub = x[: args.subset]
        ks = default_clusters(len(sub))
        cmp = {"n": len(sub), "k": ks, "niter": 10}
        for dev in dict.fromkeys((args.device, "cpu")):
            t0 = time.perf_counter()
            lab, c = kmeans(sub, ks, niter=10, seed=0, device=dev)
            cmp[f"{dev}_s"] = time.perf_counter() - t0
            cmp[f"{dev}_mean_cosine"] = mean_cosine(sub, lab, c)
        cmp["ratio"] = cmp["cpu_s"] / cmp[f"{args.device}_s"]
        res["kmeans_subset"] = cmp
        print(f"kmeans {len(sub):,} rows, k={ks:,}, 10 iterations: {args.device} {cmp[f'{args.device}_s']:.1f} s vs cpu {cmp['cpu_s']:.1f} s = {cmp['ratio']:.1f}x", flush=True)
        save()

    flat_ids = None
    if "flat" in steps or "ivf" in steps:
        index = Index(args.dim, "cosine", "flat", args.device)
        _, t_add = timed(index.add, x)
        (_, flat_ids), t_search = timed(index.search, q, 10)
        del index
        flat = {"add_s": t_add, f"{args.device}_queries": args.queries, f"{args.device}_search_s": t_search, f"{args.device}_qps": args.queries / t_search}
        print(f"flat on {args.device}: add {t_add:.1f} s, {args.queries:,} queries top-10 in {t_search:.2f} s = {args.queries / t_search:,.0f} q/s", flush=True)
        if "flat" in steps and args.device != "cpu":
            cpu = Index(args.dim, "cosine", "flat", "cpu").add(x)
            (_, cpu_ids), t_cpu = timed(cpu.search, q[: args.cpu_queries], 10)
            del cpu
            flat.update(cpu_queries=args.cpu_queries, cpu_search_s=t_cpu, cpu_qps=args.cpu_queries / t_cpu, ratio=(args.queries / t_search) / (args.cpu_queries / t_cpu))
            flat["same_top10_sets"] = float(np.mean([set(a) == set(b) for a, b in zip(cpu_ids.tolist(), flat_ids[: args.cpu_queries].tolist(), strict=True)]))
            print(f"flat on cpu: {args.cpu_queries:,} queries in {t_cpu:.2f} s = {args.cpu_queries / t_cpu:,.0f} q/s; GPU {flat['ratio']:.1f}x; same top-10 sets {flat['same_top10_sets']:.4f}", flush=True)
        res["flat"] = flat
        save()

    if "ivf" in steps:
        index = Index(args.dim, "cosine", "ivf", args.device)
        _, t_train = timed(index.train, x[: args.train])
        _, t_add = timed(index.add, x)
        (_, ids), t_search = timed(index.search, q, 10)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), flat_ids.tolist(), strict=True)]))
        res["ivf"] = {"device": args.device, "nlist": index.params["nlist"], "nprobe": index.nprobe, "train_rows": args.train, "train_s": t_train, "add_s": t_add, "search_s": t_search, "qps": args.queries / t_search, "recall_at_10": recall}
        del index
        print(f"ivf on {args.device}: nlist {res['ivf']['nlist']:,} nprobe {res['ivf']['nprobe']:,}; train {t_train:.1f} s, add {t_add:.1f} s, {args.queries / t_search:,.0f} q/s, recall@10 {recall:.4f}", flush=True)
        save()

    if "semdedup" in steps:
        if labels is None:
            labels, _ = kmeans(x, default_clusters(args.n), niter=20, seed=0, device=args.device)
        t0 = time.perf_counter()
        kept = semantic(x, eps=0.01, clusters=labels).get_column("kept").to_numpy()
        t = time.perf_counter() - t0
        res["semdedup"] = {"pass_s": t, "threads": os.cpu_count(), "kept": int(kept.sum()), "removed": int(len(kept) - kept.sum())}
        if "kmeans" in res:
            res["semdedup"]["end_to_end_s"] = res["kmeans"]["s"] + t
        print(f"semdedup pass over {args.n:,} rows in {len(np.unique(labels)):,} clusters: {t:.1f} s on {os.cpu_count()} threads, removed {len(kept) - kept.sum():,}", flush=True)
        save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
