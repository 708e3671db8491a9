#!/usr/bin/env python3
"""SemDeDup: ``interleaf.dedup.semantic`` against the published per-cluster procedure, one run.

Data: ``--n`` (default 1,000,000) synthetic ``--dim``-wide (512) float32 embeddings around
``--clusters`` (1,000) centres, 2% of them planted near-copies (cosine 0.995-0.9999 to a
source). Both sides get the same cluster ids (k-means is FAISS's in both and is left out):

* **reference**: SemDeDup as published (``clustering/sort_clusters.py`` then ``semdedup.py``):
  a pandas table of (path, nearest centroid, distance), each cluster selected with
  ``df.loc[df.nearest_cent == c]``, sorted with Python's ``sorted`` by distance descending,
  then the cluster's full cosine matrix (numpy float32 matmul), its upper triangle and the
  column maxima; kept when the maximum is <= 1 - eps.
* **interleaf**: ``semantic(embeddings, eps, clusters=ids)`` (blockwise upper triangle,
  clusters on a thread pool).

Kept sets are checked equal; wall time and peak RSS (of this process, sampled) are printed.
Results: ``benches/results/semdedup.json``.

Usage::

    python benches/semdedup.py --n 1000000       # needs pandas for the reference
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from pathlib import Path

import numpy as np
from _common import report_header, versions

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "semdedup.json"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class PeakRSS:
    """Samples this process's RSS every 20 ms while in the block (the peak above the start)."""

    def __enter__(self):
        self.start, self.peak, self.stop = rss_mib(), 0.0, False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        while not self.stop:
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()
        self.peak = max(self.peak, rss_mib())
        self.extra = self.peak - self.start


def data(n: int, dim: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    labels = rng.integers(0, k, n)
    x = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        x[a:b] = centres[labels[a:b]] + 0.8 * rng.standard_normal((b - a, dim), dtype=np.float32)
    dups = n // 50
    src = rng.integers(0, n - dups, dups)
    t = rng.choice(np.array([0.01, 0.05, 0.1], dtype=np.float32), dups)
    noise = rng.standard_normal((dups, dim), dtype=np.float32)
    unit = x[src] / np.linalg.norm(x[src], axis=1, keepdims=True)
    x[n - dups :] = unit + t[:, None] * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    labels[n - dups :] = labels[src]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def reference(x: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """The published two scripts, in memory (no files, no SLURM)."""
    import pandas as pd

    k = int(labels.max()) + 1
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, x)
    cent = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    dist_df = pd.DataFrame({"paths_list": np.arange(len(x)), "nearest_cent": labels, "dist_to_cent": 1 - np.einsum("ij,ij->i", x, cent[labels])})
    removed = np.zeros(len(x), dtype=bool)
    for c in range(k):
        cluster_df = dist_df.loc[dist_df["nearest_cent"] == c]
        items = list(cluster_df.index)
        ordered = sorted(zip(list(cluster_df["paths_list"]), items, list(cluster_df["dist_to_cent"]), strict=True), key=lambda t: t[2], reverse=True)
        ids = np.array([t[1] for t in ordered], dtype=np.int64)
        if len(ids) == 1:
            continue
        reps = x[ids]
        sim = reps @ reps.T
        np.fill_diagonal(sim, 0.0)
        m = np.triu(sim, k=1).max(axis=0)
        removed[ids] = m > 1 - eps
    return ~removed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    from interleaf.dedup import semantic

    x, labels = data(args.n, args.dim, args.clusters, 0)
    print(f"SemDeDup of {args.n:,} x {args.dim} float32 ({x.nbytes / 2**20:,.0f} MiB), {args.clusters:,} clusters, eps {args.eps}", flush=True)
    with PeakRSS() as m1:
        t0 = time.perf_counter()
        ours = semantic(x, eps=args.eps, clusters=labels).get_column("kept").to_numpy()
        t_ours = time.perf_counter() - t0
    print(f"  interleaf: {t_ours:.1f} s, peak RSS +{m1.extra:,.0f} MiB, kept {ours.sum():,}", flush=True)
    with PeakRSS() as m2:
        t0 = time.perf_counter()
        ref = reference(x, labels, args.eps)
        t_ref = time.perf_counter() - t0
    print(f"  published procedure: {t_ref:.1f} s, peak RSS +{m2.extra:,.0f} MiB, kept {ref.sum():,}", flush=True)
    same = (ours == ref).mean()
    print(f"  same kept set: {same * 100:.4f}% of rows; interleaf {t_ref / t_ours:.1f}x faster", flush=True)
    report = {
        **report_header("semdedup"),
        "versions": versions(("interleaf", "numpy", "pandas", "faiss-cpu")),
        "results": {"n": args.n, "dim": args.dim, "clusters": args.clusters, "eps": args.eps, "interleaf_s": t_ours, "reference_s": t_ref, "ratio": t_ref / t_ours, "interleaf_peak_extra_mib": m1.extra, "reference_peak_extra_mib": m2.extra, "embeddings_mib": x.nbytes / 2**20, "same_kept_fraction": same},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
