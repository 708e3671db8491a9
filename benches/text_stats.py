#!/usr/bin/env python3
"""OBELICS text statistics and signal kernels: interleaf vs the published Python, one run.

* **OBELICS statistics** of real paragraphs (the corpus of ``benches/minhash.py``: docstrings
  and licence texts, 50-400 words each, repeated to ``--paragraphs``, default 100,000):
  ``interleaf.signals.text_stats(texts, threads=T)`` against OBELICS's functions
  (``tests/obelics_reference.py``, a transcription of ``web_document_filtering.py``) computing
  the same seven statistics per paragraph, one core. Values are checked equal first.
* **MMC4 assignment** over ``--docs`` documents (default 20,000; images and sentences per
  document drawn around 6 and 30) from CLIP-like unit embeddings of ``--dim`` dimensions
  (default 512, CLIP ViT-B/32's embedding width): ``mmc4_assign_documents`` against
  MMC4's per-document loop as published (similarity matrix with numpy, drop below 0.15, ``-S``
  padded to square with 1000, ``lapjv``, leftovers to their argmax), one core. Assignments are
  checked equal first.
* **Per-document F and coherence** from precomputed ``--dim`` embeddings (``--docs``
  documents of 3-12 steps): documents per minute on T threads.

T=1 runs are pinned to one core; the reference and interleaf alternate in ``--repeats`` rounds
(default 5) and the ratio is given per round (best and median). Results:
``benches/results/text_stats.json``; ``--parts`` reruns some parts only and replaces just
those sections of an existing results file (each rerun section records its own run header).

Usage::

    python benches/text_stats.py               # needs lapjv (pip install lapjv) for the MMC4 peer
    python benches/text_stats.py --parts mmc4  # MMC4 assignment only (~1 min at the defaults)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import report_header, versions

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))
DEFAULT_OUT = REPO_ROOT / "benches" / "results" / "text_stats.json"


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def rounds(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Each of ``fns`` (name -> (callable, scale)) timed once per round, round-robin, so a
    slow spell of the machine hits every contender alike; times multiplied by ``scale``."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, (fn, scale) in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - t0) * scale)
    return out


def ratios(times: dict[str, list[float]], ref: str, ours: str) -> tuple[float, float]:
    """(best, median) over rounds of ref time / our time, each round's pair taken together."""
    r = sorted(a / b for a, b in zip(times[ref], times[ours], strict=True))
    return r[-1], float(np.median(r))


def paragraphs(n: int) -> list[str]:
    import minhash

    args = argparse.Namespace(corpus=str(minhash.DEFAULT_CORPUS), rebuild_corpus=False, seed=0, min_docs=50_000, max_docs=100_000, near_dups=0.02)
    docs = minhash.load_corpus(args)["texts"]
    return (docs * (n // len(docs) + 1))[:n]


def mmc4_reference(img: np.ndarray, txt: np.ndarray, threshold: float = 0.15) -> np.ndarray:
    """MMC4's published per-document procedure (compute_assignments.py + linear_assignment.py)."""
    from lapjv import lapjv

    sim = img @ txt.T
    out = np.full(len(img), -1)
    if not sim.size:
        return out
    keep = np.flatnonzero(sim.max(axis=1) >= threshold)
    if not len(keep):
        return out
    s = sim[keep]
    n = max(s.shape)
    cost = np.full((n, n), 1000.0, dtype=np.float32)
    cost[: s.shape[0], : s.shape[1]] = -s
    row_ind, _, _ = lapjv(cost)
    for k, j in enumerate(row_ind[: s.shape[0]]):
        if j < s.shape[1]:
            out[keep[k]] = j
    for i in keep:
        if out[i] == -1:
            out[i] = int(np.argmax(sim[i]))
    return out


def documents(n: int, dim: int, rng, chunk: int = 5000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CLIP-like unit embeddings: each document has a topic, images and sentences near it.
    Made in float32, ``chunk`` documents at a time (at 512 dimensions the sentences of 20,000
    documents are 1.2 GB)."""
    n_img = np.clip(rng.poisson(6, n), 0, 20)
    n_txt = np.clip(rng.poisson(30, n), 1, 80)
    io, to = np.concatenate([[0], np.cumsum(n_img)]), np.concatenate([[0], np.cumsum(n_txt)])
    shared = rng.standard_normal(dim, dtype=np.float32)  # CLIP cosines sit around 0.2
    img, txt = np.empty((io[-1], dim), np.float32), np.empty((to[-1], dim), np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        for out, off, count in ((img, io, n_img), (txt, to, n_txt)):
            x = np.repeat(0.5 * rng.standard_normal((b - a, dim), dtype=np.float32), count[a:b], axis=0)
            x += rng.standard_normal(x.shape, dtype=np.float32)
            x += 0.6 * shared
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[off[a] : off[b]] = x
    return img, io, txt, to


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--paragraphs", type=int, default=100_000)
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=512, help="embedding width (512: CLIP ViT-B/32)")
    ap.add_argument("--parts", default="obelics,mmc4,per_document", help="comma-separated parts to run (others kept from --out)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    from obelics_reference import ref_text_stats

    from interleaf.signals import mmc4_assign_documents, sequence_consistency, text_coherence, text_stats

    cores = sorted(os.sched_getaffinity(0))
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    unknown = parts - {"obelics", "mmc4", "per_document"}
    if unknown:
        ap.error(f"unknown --parts {sorted(unknown)}")
    results: dict = {}
    rng = np.random.default_rng(0)

    if "obelics" in parts:
        obelics_part(args, cores, results, ref_text_stats, text_stats)
    if "mmc4" in parts:
        mmc4_part(args, cores, results, rng, mmc4_assign_documents)
    if "per_document" in parts:
        per_document_part(args, cores, results, rng, sequence_consistency, text_coherence)

    header = report_header("text_stats")
    vers = versions(("interleaf", "numpy", "lapjv"))
    out = Path(args.out)
    if parts == {"obelics", "mmc4", "per_document"} or not out.exists():
        report = {**header, "versions": vers, "results": results}
    else:
        # A partial rerun: the other sections stay as recorded; these carry their own header.
        report = json.loads(out.read_text())
        for name, section in results.items():
            report["results"][name] = {**section, "run": {**header, "versions": vers}}
        report.setdefault("partial_reruns", []).append({"parts": sorted(parts), "date": header["date"], "command": header["command"]})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


def obelics_part(args, cores, results, ref_text_stats, text_stats) -> None:
    texts = paragraphs(args.paragraphs)
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"OBELICS statistics: {len(texts):,} paragraphs, {words:.0f} words on average", flush=True)
    check = text_stats(texts[:2000])
    want = [ref_text_stats(t) for t in texts[:2000]]
    assert all(abs(a - b) < 1e-12 for row, w in zip(check.rows(), want, strict=True) for a, b in zip(row, w, strict=True)), "values differ"
    os.sched_setaffinity(0, {cores[0]})
    subset = texts[: max(2000, len(texts) // 20)]  # the Python reference on 5%
    t = rounds({"ref": (lambda: [ref_text_stats(x) for x in subset], len(texts) / len(subset)), "t1": (lambda: text_stats(texts, threads=1), 1.0)}, args.repeats)
    best1, med1 = ratios(t, "ref", "t1")
    os.sched_setaffinity(0, set(cores))
    ours2 = best_of(lambda: text_stats(texts, threads=2), args.repeats)
    ref_s, ours1 = min(t["ref"]), min(t["t1"])
    results["obelics_text_stats"] = {"paragraphs": len(texts), "python_s": ref_s, "interleaf_t1_s": ours1, "interleaf_t2_s": ours2, "ratio_t1_best": best1, "ratio_t1_median": med1, "ratio_t2": ref_s / ours2, "rounds": t}
    print(f"  OBELICS functions {len(texts) / ref_s:,.0f}/s; interleaf T=1 {len(texts) / ours1:,.0f}/s ({best1:.1f}x best, {med1:.1f}x median of {args.repeats} rounds), T=2 {len(texts) / ours2:,.0f}/s ({ref_s / ours2:.1f}x)", flush=True)


def mmc4_part(args, cores, results, rng, mmc4_assign_documents) -> None:
    img, io, txt, to = documents(args.docs, args.dim, rng)
    print(f"MMC4 assignment: {args.docs:,} documents, median {int(np.median(np.diff(io)))} images x {int(np.median(np.diff(to)))} sentences, dim {args.dim}", flush=True)
    try:
        import lapjv  # noqa: F401

        have_lapjv = True
    except ImportError:
        have_lapjv = False
        print("  lapjv is not installed: no reference row (pip install lapjv)", flush=True)
    idx, _ = mmc4_assign_documents(img, io, txt, to)
    os.sched_setaffinity(0, {cores[0]})
    fns = {"t1": (lambda: mmc4_assign_documents(img, io, txt, to, threads=1), 1.0)}
    row: dict = {"documents": args.docs, "dim": args.dim, "images_median": int(np.median(np.diff(io))), "sentences_median": int(np.median(np.diff(to)))}
    if have_lapjv:
        sub = range(0, args.docs, 10)  # the Python loop on 10%
        for d in list(sub)[:2000]:
            a, b = io[d], io[d + 1]
            ref = mmc4_reference(img[a:b], txt[to[d] : to[d + 1]])
            sim = img[a:b] @ txt[to[d] : to[d + 1]].T
            got = idx[a:b]
            same_total = np.isclose(sum(sim[i, j] for i, j in enumerate(got) if j >= 0), sum(sim[i, j] for i, j in enumerate(ref) if j >= 0), atol=1e-4)
            assert same_total and ((got >= 0) == (ref >= 0)).all(), d
        fns["ref"] = (lambda: [mmc4_reference(img[io[d] : io[d + 1]], txt[to[d] : to[d + 1]]) for d in sub], args.docs / len(sub))
    t = rounds(fns, args.repeats)
    ours1 = min(t["t1"])
    row.update(interleaf_t1_s=ours1, rounds=t)
    if have_lapjv:
        ref_s = min(t["ref"])
        best, med = ratios(t, "ref", "t1")
        row.update(reference_s=ref_s, ratio_t1_best=best, ratio_t1_median=med)
        print(f"  MMC4's loop (numpy + lapjv) {args.docs / ref_s:,.0f} docs/s; interleaf T=1 {args.docs / ours1:,.0f} docs/s ({best:.1f}x best, {med:.1f}x median of {args.repeats} rounds)", flush=True)
    else:
        print(f"  interleaf T=1 {args.docs / ours1:,.0f} docs/s", flush=True)
    results["mmc4_assign"] = row
    os.sched_setaffinity(0, set(cores))


def per_document_part(args, cores, results, rng, sequence_consistency, text_coherence) -> None:
    os.sched_setaffinity(0, set(cores))
    steps = rng.integers(3, 13, args.docs)
    offsets = np.concatenate([[0], np.cumsum(steps)])
    emb = rng.standard_normal((offsets[-1], args.dim), dtype=np.float32)
    f_s = best_of(lambda: sequence_consistency(emb, offsets, threads=2), args.repeats)
    c_s = best_of(lambda: text_coherence(emb, offsets, threads=2), args.repeats)
    results["per_document"] = {"documents": args.docs, "dim": args.dim, "steps_mean": float(steps.mean()), "sequence_consistency_docs_per_min_t2": args.docs / f_s * 60, "coherence_docs_per_min_t2": args.docs / c_s * 60}
    print(f"per-document on 2 threads ({steps.mean():.1f} steps, dim {args.dim}): F {args.docs / f_s * 60:,.0f} docs/min, coherence (8 shuffles) {args.docs / c_s * 60:,.0f} docs/min", flush=True)


if __name__ == "__main__":
    main()
