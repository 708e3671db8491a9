"""BLEU-1..4, ROUGE-L and CIDEr over many caption pairs: interleaf's
``evaluate.text_metrics`` (Rust) against pycocoevalcap 1.2's ``Bleu(4)``, ``Rouge()`` and
``Cider()`` on the same tokens, in one process; checks the values agree and prints the ratio.
interleaf runs over hypotheses on ``--threads`` threads (default: interleaf's default, all
usable cores, or ``INTERLEAF_THREADS``; set with ``interleaf.set_threads``), pycocoevalcap is
pure Python on one core. The thread count is recorded with the results.

    python benches/caption_metrics.py [--n 50000] [--refs 5] [--threads 1]

Captions: the bundled sample's real captions and CoMM step texts, each prediction a perturbed
copy (a word dropped, two swapped, truncated, extended), references drawn from the same pool.
Results: ``benches/results/caption_metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import REPO_ROOT, report_header, versions

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "caption_metrics.json"


def corpus(n: int, refs: int) -> tuple[list[str], list[list[str]]]:
    from interleaf.evaluate import tokenize

    sample = REPO_ROOT / "python" / "interleaf" / "data" / "sample"
    caps = [json.loads(line)["caption"] for line in (sample / "pairs.jsonl").read_text().splitlines() if line.strip()]
    for line in (sample / "comm.jsonl").read_text().splitlines():
        if line.strip():
            caps += [it["content"] for step in json.loads(line)["step_info"] for it in step if it["type"] == "text"]
    caps = [c for c in tokenize(caps, "simple") if c]
    rng = np.random.default_rng(0)
    hyps, rs = [], []
    for i in range(n):
        base = caps[i % len(caps)].split()
        w = list(base)
        op = rng.integers(0, 4)
        if op == 0 and len(w) > 3:
            del w[int(rng.integers(0, len(w)))]
        elif op == 1 and len(w) > 2:
            j = int(rng.integers(0, len(w) - 1))
            w[j], w[j + 1] = w[j + 1], w[j]
        elif op == 2:
            w = w[: max(1, len(w) // 2)]
        else:
            w += ["with", "more", "words"]
        hyps.append(" ".join(w))
        rs.append([" ".join(base)] + [caps[int(k)] for k in rng.integers(0, len(caps), size=refs - 1)])
    return hyps, rs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--refs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="interleaf's threads (default: interleaf.get_threads())")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    import os

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    import interleaf
    from interleaf.evaluate import text_metrics

    if args.threads is not None:
        interleaf.set_threads(args.threads)
    threads = interleaf.get_threads()
    hyps, refs = corpus(args.n, args.refs)
    t = time.perf_counter()
    ours, per = text_metrics(hyps, refs, tokenizer="none", java_metrics=False)
    t_ours = time.perf_counter() - t
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    t = time.perf_counter()
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    r, _ = Rouge().compute_score(gts, res)
    c, c_per = Cider().compute_score(gts, res)
    t_ref = time.perf_counter() - t
    diffs = {f"BLEU-{k + 1}": abs(ours[f"BLEU-{k + 1}"] - b[k]) for k in range(4)} | {"ROUGE-L": abs(ours["ROUGE-L"] - r), "CIDEr": abs(ours["CIDEr"] - c)}
    diffs["cider_per_example_max"] = float(np.abs(per["cider"].to_numpy() - c_per).max())
    rows = {"pairs": args.n, "refs": args.refs, "interleaf_threads": threads, "interleaf_s": t_ours, "pycocoevalcap_s": t_ref, "ratio": t_ref / t_ours, "abs_differences": diffs, "values": {k: ours[k] for k in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr")}}
    print(f"{args.n:,} predictions x {args.refs} references: interleaf {t_ours:.2f} s on {threads} thread(s), pycocoevalcap {t_ref:.2f} s (one core): {rows['ratio']:.1f}x")
    print("largest absolute differences: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    env = {k: os.environ.get(k) for k in ("INTERLEAF_THREADS", "RAYON_NUM_THREADS")}
    report = {**report_header("caption_metrics"), "versions": versions(["interleaf", "pycocoevalcap", "numpy"]), "params": vars(args) | {"interleaf_threads": threads, "env": env}, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
