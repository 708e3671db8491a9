#!/usr/bin/env python3
"""KenLM perplexity: interleaf's ``KenLM.perplexity`` vs OBELICS's ``compute_perplexity_score``, one run.

The corpus is document texts of 2-8 paragraphs (``--texts``, default 20,000) drawn with a fixed
seed from the bundled sample's texts and the sentences of ``scripts/make_tiny_kenlm.py``, with
digits, curly quotes and dashes, so every normalisation step has work. The peer is OBELICS's
function (``tests/obelics_reference.py``: its normalisation one character at a time,
``encode_as_pieces`` per text, ``kenlm.Model.score``), on the same model files through the same
kenlm and sentencepiece builds; interleaf normalises with ``str.translate`` and tokenises in
batches on all cores. Values are checked equal first; the two alternate in ``--repeats`` rounds
(default 5) and the ratio (peer time / interleaf time: above 1 is faster) is given per round.
The default model is the tests' tiny one (``tests/fixtures/models/kenlm-tiny/en.arpa.bin``):
with CCNet's 4 GB Wikipedia model KenLM's lookups cost more on both sides. Results:
``benches/results/kenlm_perplexity.json``.

Usage::

    python benches/kenlm_perplexity.py [--model wikipedia/en.arpa.bin]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

from _common import REPO_ROOT, alternate, report_header, versions

from interleaf.models.kenlm import KenLM

sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "scripts"))
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "kenlm_perplexity.json"
DEFAULT_MODEL = REPO_ROOT / "tests" / "fixtures" / "models" / "kenlm-tiny" / "en.arpa.bin"


def corpus(n: int, seed: int = 0) -> list[str]:
    from make_tiny_kenlm import corpus_texts

    sentences = [s.replace('"', "\u201c", 1).replace(" - ", " \u2014 ") for s in corpus_texts()]
    rng = random.Random(seed)
    return ["\n\n".join(" ".join(rng.sample(sentences, rng.randint(1, 4))) for _ in range(rng.randint(2, 8))) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="KenLM file with its .sp.model beside it (default: the tests' tiny model)")
    ap.add_argument("--texts", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    import kenlm
    import sentencepiece
    from obelics_reference import ref_perplexity

    texts = corpus(args.texts)
    ours = KenLM(args.model)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(ours.tokenizer_path))
    lm = kenlm.Model(str(ours.path))

    def obelics() -> list[float]:
        return [ref_perplexity(t, sp, lm) for t in texts]

    assert ours.perplexity(texts).get_column("perplexity").to_list() == obelics()
    times = alternate({"obelics": obelics, "interleaf": lambda: ours.perplexity(texts)}, args.repeats)
    ratio = [a / b for a, b in zip(times["obelics"], times["interleaf"], strict=True)]
    words = sum(len(t.split()) for t in texts)
    result = {
        **report_header("kenlm_perplexity"),
        "versions": versions(["interleaf", "kenlm", "sentencepiece", "polars"]),
        "model": {"path": str(ours.path), "bytes": ours.path.stat().st_size, "order": ours.order},
        "texts": len(texts),
        "words": words,
        "seconds_best": {k: min(v) for k, v in times.items()},
        "texts_per_second_interleaf": len(texts) / min(times["interleaf"]),
        "ratio_obelics_over_interleaf": {"best": max(ratio), "median": statistics.median(ratio)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for k, v in result["seconds_best"].items():
        print(f"{k:10s} {v:7.3f} s  ({len(texts) / v:,.0f} texts/s, {words / v:,.0f} words/s)")
    print(f"OBELICS / interleaf: median {result['ratio_obelics_over_interleaf']['median']:.2f}x (best {result['ratio_obelics_over_interleaf']['best']:.2f}x)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
