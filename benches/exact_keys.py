#!/usr/bin/env python3
"""Exact-dedup keys: interleaf vs the same keys in Python, one run.

* **Normalised text keys** (``interleaf.dedup.normalized_text_hash``: NFKC, lower case,
  whitespace runs folded; xxh3-128) against Python's own ``unicodedata.normalize("NFKC", t)
  .lower().split()`` joined and hashed with the ``xxhash`` package, the key the exact dedup of
  datatrove-style pipelines computes. Two corpora of ``--texts`` texts (default 50,000) of 60
  words: ASCII, and mixed with accented, Greek, full-width and ligature words (the paths that
  need NFKC). Keys are checked equal first.
* **Raw keys** (``interleaf.dedup.xxh3_128``, from a Python list and from a polars Series, a
  Series out) against ``xxhash.xxh3_128_hexdigest`` per text (a list out).

Both run on one thread (``interleaf.set_threads(1)``); interleaf and the reference alternate
in ``--repeats`` rounds (default 3; each round times every contender once, round-robin, so a
slow spell of the machine hits all alike) and the ratio of the best times is given, with the
median per-round ratio and the time on all cores. Results: ``benches/results/exact_keys.json``.

Usage::

    python benches/exact_keys.py
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import unicodedata
from pathlib import Path

from _common import report_header, versions

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "exact_keys.json"
ASCII_WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex bad jocks".split()
OTHER_WORDS = "café crème straße naïve résumé ΣΊΣΥΦΟΣ Ｔｈｅ ﬁne Ⅻ".split()


def corpus(n: int, words: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(60)) for _ in range(n)]


def best_of(repeats: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def rounds(repeats: int, fns: dict) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Each of ``fns`` (name -> callable) timed once per round, round-robin, ``repeats`` rounds;
    returns every time and each one's last output."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
    return times, outs


def median_ratio(times: dict[str, list[float]], ref: str, ours: str) -> float:
    return statistics.median(a / b for a, b in zip(times[ref], times[ours], strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    import os

    import polars as pl
    import xxhash

    import interleaf
    from interleaf.dedup import normalized_text_hash, xxh3_128

    results = {}
    for name, words in (("ascii", ASCII_WORDS), ("mixed_unicode", ASCII_WORDS + OTHER_WORDS)):
        texts = corpus(args.texts, words, 0)

        def reference(texts: list[str] = texts) -> list[str]:
            return [xxhash.xxh3_128_hexdigest(" ".join(unicodedata.normalize("NFKC", t).lower().split()).encode()) for t in texts]

        column = pl.Series("text", texts)
        interleaf.set_threads(1)
        # Keys checked equal first (untimed), then every contender once per round.
        assert normalized_text_hash(texts).to_list() == reference(), "the keys differ"
        assert xxh3_128(texts).to_list() == [xxhash.xxh3_128_hexdigest(t.encode()) for t in texts], "the raw keys differ"
        times, _ = rounds(args.repeats, {
            "normalized": lambda texts=texts: normalized_text_hash(texts),
            "normalized_python": reference,
            "raw_list": lambda texts=texts: xxh3_128(texts),
            "raw_series": lambda column=column: xxh3_128(column),
            "raw_python": lambda texts=texts: [xxhash.xxh3_128_hexdigest(t.encode()) for t in texts],
        })
        ours_t, ref_t, raw_t, col_t, raw_ref_t = (min(times[k]) for k in ("normalized", "normalized_python", "raw_list", "raw_series", "raw_python"))
        interleaf.set_threads(os.cpu_count() or 1)
        all_t, _ = best_of(args.repeats, lambda texts=texts: normalized_text_hash(texts))
        results[name] = {
            "texts": len(texts),
            "normalized": {"interleaf_t1_s": round(ours_t, 4), "python_s": round(ref_t, 4), "ratio_t1": round(ref_t / ours_t, 2), "ratio_t1_median_per_round": round(median_ratio(times, "normalized_python", "normalized"), 2), "interleaf_all_cores_s": round(all_t, 4)},
            "raw_xxh3_128": {"interleaf_t1_list_s": round(raw_t, 4), "interleaf_t1_series_s": round(col_t, 4), "python_s": round(raw_ref_t, 4), "ratio_t1_list": round(raw_ref_t / raw_t, 2), "ratio_t1_series": round(raw_ref_t / col_t, 2),
                             "ratio_t1_list_median_per_round": round(median_ratio(times, "raw_python", "raw_list"), 2), "ratio_t1_series_median_per_round": round(median_ratio(times, "raw_python", "raw_series"), 2)},
            "rounds_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        }
        print(f"{name}: normalised keys {ours_t:.3f} s vs Python {ref_t:.3f} s ({ref_t / ours_t:.2f}x, all cores {all_t:.3f} s); raw xxh3-128 from a list {raw_t:.4f} s, from a Series {col_t:.4f} s vs {raw_ref_t:.4f} s ({raw_ref_t / raw_t:.2f}x, {raw_ref_t / col_t:.2f}x)")
    report = report_header("exact_keys") | {"versions": versions(["interleaf", "xxhash", "polars"]), "settings": {"repeats": args.repeats, "words_per_text": 60}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
