"""Build the tiny KenLM fixture: a SentencePiece tokenizer and a 3-gram ARPA model over its pieces.

    python scripts/make_tiny_kenlm.py [OUT_DIR]   (default tests/fixtures/models/kenlm-tiny)

OBELICS scores a document's perplexity with a KenLM model over SentencePiece pieces (the
``en.arpa.bin`` + ``en.sp.model`` pair of CCNet's Wikipedia models). This builds a small model
of the same shape from the bundled sample data's texts and a few sentences written here:

- ``en.sp.model``: a unigram SentencePiece model (320 pieces) trained by ``sentencepiece``
  (``pip install sentencepiece``; one thread, no sampling: the same file on every run);
- ``en.arpa``: a 3-gram model in ARPA form over the pieces of the digit-normalised corpus,
  interpolated absolute discounting (D = 0.5) written as backoff weights, ``<unk>`` given
  1 / (N + 1) of the unigram mass. Probabilities sum to one in every context.

- ``en.arpa.bin``: the same model in KenLM's binary form (probing), as CCNet's models ship,
  written by KenLM's ``build_binary`` (not in the ``kenlm`` pip package: build it from that
  package's source, ``bash compile_query_only.sh`` in the unpacked sdist, and put ``bin/`` on
  PATH or name it in ``$KENLM_BUILD_BINARY``; skipped with a message when absent).

The tests compare interleaf's perplexity with OBELICS's own function on these files.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
D = 0.5  # absolute discount

SENTENCES = [
    "The museum opens at 9 in the morning and closes at 5 in the evening.",
    "A small boat sails across the lake while two children watch from the shore.",
    "Preheat the oven to 180 degrees and grease a round cake tin with butter.",
    "The bridge was built in 1932 and is still used by thousands of people every day.",
    "She planted tomatoes, beans and carrots in the garden behind the house.",
    "Our team reviewed the results of the survey and wrote a short report.",
    "The train to the city leaves every 20 minutes from platform 3.",
    "He painted the old fence white and fixed the broken gate.",
    "Wikipedia is a free online encyclopedia written by volunteers around the world.",
    "The river flows north through the valley before it reaches the sea.",
    "Mix the flour, the sugar and the eggs in a large bowl until the dough is smooth.",
    "The library has more than 40,000 books, maps and old newspapers.",
    "In the photo, a cat sleeps on a blue chair next to the window.",
    "The city council voted to build a new school near the park.",
    "Scientists measured the temperature of the water at several depths.",
    "Cut the vegetables into small pieces and cook them for ten minutes.",
    "The festival takes place every summer and attracts visitors from many countries.",
    "A red car is parked in front of the old station.",
    "The company was founded in 1998 and now employs about 250 people.",
    "Read the instructions carefully before you start to assemble the shelf.",
    "The mountain is covered with snow for most of the year.",
    "Two dogs are running on the beach at sunset.",
    "The population of the town grew quickly after the railway arrived.",
    "Add salt and pepper to taste, then serve the soup while it is hot.",
    "This album contains twelve songs recorded in a small studio.",
    "The teacher asked the students to write a story about their holidays.",
    "Heavy rain caused flooding in several parts of the region.",
    "The castle was the home of the family for more than three hundred years.",
    "Insert the battery, close the cover and press the power button.",
    "The market sells fresh fruit, bread, cheese and flowers on Saturdays.",
]


def corpus_texts() -> list[str]:
    """The training sentences: the ones above and every text of the bundled sample data."""
    out = list(SENTENCES)
    sample = ROOT / "python" / "interleaf" / "data" / "sample"
    for line in (sample / "pairs.jsonl").read_text(encoding="utf-8").splitlines():
        out.append(json.loads(line)["caption"])
    for line in (sample / "comm.jsonl").read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        out += [doc["title"], doc["summary"]]
        out += [n["content"] for step in doc["step_info"] for n in step if n.get("type") == "text"]
    return out


def train_tokenizer(texts: list[str]) -> bytes:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=320,
        model_type="unigram",
        character_coverage=1.0,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()


def arpa(sentences: list[list[str]]) -> str:
    """A 3-gram ARPA model of the tokenised sentences (see the module docstring)."""
    c1: Counter = Counter()
    c2: Counter = Counter()
    c3: Counter = Counter()
    for s in sentences:
        w = ["<s>", *s, "</s>"]
        c1.update(w[1:])
        c2.update(zip(w, w[1:]))
        c3.update(zip(w, w[1:], w[2:]))
    n = sum(c1.values())
    p1 = {w: c / (n + 1) for w, c in c1.items()}
    p1["<unk>"] = 1 / (n + 1)

    def interpolated(counts: Counter, lower) -> tuple[dict, dict]:
        total: Counter = Counter()
        types: Counter = Counter()
        for g, c in counts.items():
            total[g[:-1]] += c
            types[g[:-1]] += 1
        prob = {g: (c - D) / total[g[:-1]] + D * types[g[:-1]] / total[g[:-1]] * lower(g[1:]) for g, c in counts.items()}
        seen = defaultdict(lambda: (0.0, 0.0))
        for g, p in prob.items():
            a, b = seen[g[:-1]]
            seen[g[:-1]] = (a + p, b + lower(g[1:]))
        backoff = {ctx: (1 - a) / (1 - b) for ctx, (a, b) in seen.items()}
        return prob, backoff

    p2, b1 = interpolated(c2, lambda g: p1[g[0]])
    p3, b2 = interpolated(c3, lambda g: p2[g])
    lg = lambda x: f"{math.log10(x):.6f}"
    lines = ["", "\\data\\", f"ngram 1={len(p1) + 1}", f"ngram 2={len(p2)}", f"ngram 3={len(p3)}", "", "\\1-grams:"]
    lines.append(f"-99\t<s>\t{lg(b1[('<s>',)])}")
    for w in sorted(p1):
        lines.append(f"{lg(p1[w])}\t{w}" + (f"\t{lg(b1[(w,)])}" if (w,) in b1 else ""))
    lines += ["", "\\2-grams:"]
    for g in sorted(p2):
        lines.append(f"{lg(p2[g])}\t{' '.join(g)}" + (f"\t{lg(b2[g])}" if g in b2 else ""))
    lines += ["", "\\3-grams:"]
    for g in sorted(p3):
        lines.append(f"{lg(p3[g])}\t{' '.join(g)}")
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)


def main(out: Path) -> None:
    import sentencepiece as spm

    texts = corpus_texts()
    sp_bytes = train_tokenizer(texts)
    sp = spm.SentencePieceProcessor(model_proto=sp_bytes)
    # CCNet's models were trained on normalised text: digits read as 0.
    pieces = [sp.encode(re.sub(r"\d", "0", t), out_type=str) for t in texts]
    out.mkdir(parents=True, exist_ok=True)
    (out / "en.sp.model").write_bytes(sp_bytes)
    (out / "en.arpa").write_text(arpa(pieces), encoding="utf-8")
    print(f"wrote {out}/en.sp.model ({len(sp_bytes)} bytes) and en.arpa ({len(texts)} texts)")
    build_binary = os.environ.get("KENLM_BUILD_BINARY") or shutil.which("build_binary")
    if build_binary is None:
        print("build_binary not found: en.arpa.bin left as it is (see this script's docstring)")
        return
    subprocess.run([build_binary, str(out / "en.arpa"), str(out / "en.arpa.bin")], check=True, capture_output=True)
    print(f"wrote {out}/en.arpa.bin")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "fixtures" / "models" / "kenlm-tiny")
