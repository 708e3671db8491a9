#!/usr/bin/env python3
"""Dataset-wide pHash dedup at growing sizes: ``hash_clusters`` (every pair of 64-bit hashes
within Hamming ``--radius``, connected into clusters, as the ``pairs`` presets and ``dedup
--method phash`` run it) on uniform random hashes with 3% exact copies and 2% one-bit
near-copies. Prints seconds and hashes/s per size, so the growth with size is seen directly:
linear-ish is the goal (multi-index hashing with as many bit ranges as suits the size); the
earlier fixed radius + 1 exact-match ranges grew quadratically (README). FAISS's binary
multi-hash index, the peer, is compared on the same queries in ``benches/hamming.py``.

Usage::

    python benches/phash_clusters.py --sizes 250000 1000000 2000000 4000000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
from _common import report_header, versions

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "phash_clusters.json"


def hashes(n: int, seed: int = 0) -> pl.Series:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) | (rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63))
    copies = rng.random(n) < 0.03
    h[copies] = h[rng.integers(0, n, int(copies.sum()))]
    flips = rng.random(n) < 0.02
    h[flips] ^= np.uint64(1) << rng.integers(0, 64, int(flips.sum())).astype(np.uint64)
    return pl.Series("hash", h, dtype=pl.UInt64)


def main() -> None:
    from interleaf.dedup import hash_clusters

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000, 2_000_000, 4_000_000])
    ap.add_argument("--radius", type=int, default=5)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        s = hashes(n)
        t = time.perf_counter()
        reps, pairs = hash_clusters(s, args.radius)
        dt = time.perf_counter() - t
        dups = int((reps != np.arange(n)).sum())
        rows.append({"hashes": n, "seconds": round(dt, 3), "hashes_per_s": round(n / dt), "duplicates": dups, "distinct_pairs": int(pairs)})
        print(f"{n:>12,} hashes: {dt:8.2f} s, {n / dt:>12,.0f} hashes/s, {dups:,} duplicates", flush=True)
    for a, b in zip(rows, rows[1:], strict=False):
        print(f"  x{b['hashes'] / a['hashes']:.0f} hashes: x{b['seconds'] / a['seconds']:.1f} time")
    report = {**report_header("phash_clusters"), "versions": versions(("interleaf", "numpy")), "params": {"radius": args.radius}, "results": rows}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
