"""How far interleaf's Python ``simple`` tokenizer is from pycocoevalcap's PTB tokenizer (Stanford
CoreNLP 3.4.1 through Java, what CoMM's and COCO's caption numbers use), on real English text:
the bundled sample's captions and CoMM step texts, and paragraphs of the standard library's
docstrings (prose with some code: dunder names, URLs, dotted paths). Prints the share of texts
tokenised identically, the token edits per PTB token, the time of each, and the first
differences.

    python benches/tokenizer_difference.py [--limit 5000]

Needs Java and pycocoevalcap (``pip install 'interleaf[eval]'``). Results:
``benches/results/tokenizer_difference.json``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import json
import time
from pathlib import Path

from _common import REPO_ROOT, report_header, versions

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "tokenizer_difference.json"
MODULES = ("email", "json", "collections", "argparse", "logging", "unittest", "http.client", "urllib.request", "asyncio", "pathlib", "subprocess", "threading", "shutil", "tarfile", "zipfile", "csv", "datetime", "decimal", "fractions", "statistics", "random", "string", "textwrap", "difflib", "inspect", "functools", "itertools", "typing", "dataclasses", "enum")


def sample_texts() -> list[str]:
    sample = REPO_ROOT / "python" / "interleaf" / "data" / "sample"
    texts = [json.loads(line)["caption"] for line in (sample / "pairs.jsonl").read_text().splitlines() if line.strip()]
    for line in (sample / "comm.jsonl").read_text().splitlines():
        if line.strip():
            texts += [it["content"] for step in json.loads(line)["step_info"] for it in step if it["type"] == "text"]
    return texts


def docstring_paragraphs(limit: int) -> list[str]:
    out = []
    for m in MODULES:
        for _, obj in inspect.getmembers(importlib.import_module(m)):
            for para in (inspect.getdoc(obj) or "").split("\n\n"):
                para = " ".join(para.split())
                if 20 < len(para) < 400 and not para.startswith((">>>", "..")):
                    out.append(para)
    return list(dict.fromkeys(out))[:limit]


def compare(texts: list[str]) -> dict:
    from interleaf.evaluate import tokenize

    t = time.perf_counter()
    ptb = tokenize(texts, "ptb")
    t_ptb = time.perf_counter() - t
    t = time.perf_counter()
    simple = tokenize(texts, "simple")
    t_simple = time.perf_counter() - t
    tokens = edits = same = 0
    examples = []
    for text, a, b in zip(texts, ptb, simple, strict=True):
        tokens += len(a.split())
        if a == b:
            same += 1
            continue
        diff = [x for x in difflib.ndiff(a.split(), b.split()) if x[0] in "+-"]
        edits += len(diff)
        if len(examples) < 8:
            examples.append({"text": text[:120], "diff": diff[:8]})
    return {"texts": len(texts), "ptb_tokens": tokens, "identical_texts": same, "identical_share": same / len(texts), "token_edits": edits, "edits_per_token": edits / max(tokens, 1), "ptb_s": t_ptb, "simple_s": t_simple, "examples": examples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=5000, help="docstring paragraphs at most")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    from interleaf.evaluate import java_unavailable

    if (why := java_unavailable()) is not None:
        raise SystemExit(f"needs pycocoevalcap's PTB tokenizer: {why}")
    rows = {"sample": compare(sample_texts()), "docstrings": compare(docstring_paragraphs(args.limit))}
    for name, r in rows.items():
        print(f"{name:10s} {r['texts']:5d} texts, {r['ptb_tokens']:6d} PTB tokens: identical {r['identical_share']:.1%}, token edits {r['edits_per_token']:.2%} of tokens; PTB {r['ptb_s']:.2f} s, simple {r['simple_s']:.3f} s")
        for e in r["examples"][:4]:
            print("   ", e["diff"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {**report_header("tokenizer_difference"), "versions": versions(["interleaf", "pycocoevalcap"]), "params": {"limit": args.limit}, "results": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
