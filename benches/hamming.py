#!/usr/bin/env python3
"""Hamming range search over perceptual hashes: ``HashIndex`` by interleaf's multi-index
hashing (Rust) against FAISS's ``IndexBinaryMultiHash`` (``backend="faiss"``), one run.

Data: ``--n`` (default 10,000,000) 64-bit hashes, uniform random except ``--planted`` (5%)
near-copies 1-8 bits from an earlier hash (uniform hashes are the hard case for multi-index
hashing: every bit range's buckets are as full as they can be). Queries: ``--queries``
(10,000), half of them copies of indexed hashes with 0-8 bits flipped, half random.

Prints each backend's build time and queries/s at each ``--radius`` (default 2, 5 and 8; an
index built for each) and checks that both find the same (query, hash, distance) triples.
FAISS's tables are laid out for the set's size as ``HashIndex(backend="faiss")`` does
(``interleaf.dedup.perceptual.faiss_layout``: ``nhash`` tables of ``bits`` bits probed with up
to ``nflip`` flipped bits, e.g. 3 x 21 bits with one flip at radius 5 and 10M hashes); the
layout is printed and recorded with each FAISS row.
FAISS's search is far slower, so it runs ``--faiss-queries`` (1,000) of the queries (half
planted, half random), and its results are compared with interleaf's for those. Results: ``benches/results/hamming.json``.

Usage::

    python benches/hamming.py --n 10000000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import report_header, versions

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "hamming.json"


def flip(rng: np.random.Generator, h: np.ndarray, max_bits: int, min_bits: int = 0) -> np.ndarray:
    """Each hash with min_bits..max_bits distinct random bits flipped."""
    out = h.copy()
    bits = rng.integers(min_bits, max_bits + 1, len(h))
    # Distinct positions per row: the first `bits` of a random permutation of 0..63.
    perm = np.argsort(rng.random((len(h), 64)), axis=1)[:, :max_bits].astype(np.uint64)
    for k in range(max_bits):
        mask = np.where(k < bits, np.uint64(1) << perm[:, k], np.uint64(0))
        out ^= mask
    return out


def data(n: int, planted: float, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    k = int(n * planted)
    src = rng.integers(0, n - k, k)
    for a in range(0, k, 1_000_000):
        b = min(k, a + 1_000_000)
        h[n - k + a : n - k + b] = flip(rng, h[src[a:b]], 8, 1)
    half = queries // 2
    q = np.concatenate([flip(rng, h[rng.integers(0, n, half)], 8), rng.integers(0, 2**64, queries - half, dtype=np.uint64, endpoint=False)])
    return h, q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--planted", type=float, default=0.05)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--faiss-queries", type=int, default=1_000)
    ap.add_argument("--radius", type=int, nargs="+", default=[2, 5, 8])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    import faiss  # noqa: F401  (imported before any timing)
    import polars as pl

    from interleaf.dedup import HashIndex
    from interleaf.dedup.perceptual import faiss_layout

    hashes, queries = data(args.n, args.planted, args.queries, 0)
    # FAISS's multi-hash search is far slower: it gets a subset (half planted, half random).
    half, fh = args.queries // 2, args.faiss_queries // 2
    fsub = np.concatenate([np.arange(fh), half + np.arange(args.faiss_queries - fh)])
    hs = pl.Series("hash", hashes)
    print(f"Hamming range search: {args.n:,} hashes ({args.planted:.0%} planted near-copies), {args.queries:,} queries ({len(fsub):,} for FAISS)", flush=True)
    results: dict[str, dict] = {}
    for r in args.radius:
        row: dict = {}
        got = {}
        for backend, q in (("mih", queries), ("faiss", queries[fsub])):
            t0 = time.perf_counter()
            index = HashIndex(hs, r, backend=backend)
            build_s = time.perf_counter() - t0
            # Searched again until at least 1 s has passed (a fast search is too short to time once).
            qs, runs, t0 = pl.Series("hash", q), 0, time.perf_counter()
            while runs == 0 or time.perf_counter() - t0 < 1.0:
                got[backend] = index.search(qs, r)
                runs += 1
            dt = (time.perf_counter() - t0) / runs
            del index
            row[backend] = {"build_s": build_s, "queries": len(q), "search_s": dt, "queries_per_s": len(q) / dt, "matches": len(got[backend]["query"])}
            layout = ""
            if backend == "faiss":
                nhash, bits, nflip = faiss_layout(len(hashes), r)
                row[backend]["layout"] = {"nhash": nhash, "bits": bits, "nflip": nflip}
                layout = f" [{nhash} tables x {bits} bits, nflip {nflip}]"
            print(f"  radius {r} {backend:5s}: build {build_s:5.1f} s, {len(q) / dt:9,.0f} queries/s ({dt:.2f} s, {len(got[backend]['query']):,} matches){layout}", flush=True)
        # The same triples on FAISS's subset: the MIH results of those queries, renumbered.
        m = got["mih"]
        pos = np.full(args.queries, -1)
        pos[fsub] = np.arange(len(fsub))
        sel = pos[m["query"]] >= 0
        mine = (pos[m["query"][sel]], m["index"][sel], m["distance"][sel])
        theirs = (got["faiss"]["query"], got["faiss"]["index"], got["faiss"]["distance"])
        row["same"] = all(np.array_equal(x, y) for x, y in zip(mine, theirs, strict=True))
        row["queries_per_s_ratio"] = row["mih"]["queries_per_s"] / row["faiss"]["queries_per_s"]
        row["build_ratio"] = row["faiss"]["build_s"] / row["mih"]["build_s"]
        print(f"  radius {r}: same results {row['same']}; interleaf {row['queries_per_s_ratio']:.1f}x FAISS's queries/s, build {row['build_ratio']:.1f}x faster", flush=True)
        results[f"radius_{r}"] = row
    report = {
        **report_header("hamming"),
        "versions": versions(("interleaf", "numpy", "faiss-cpu")),
        "results": {"n": args.n, "planted": args.planted, **results},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
