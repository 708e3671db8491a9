#!/usr/bin/env python3
"""One decode per image: image statistics + pHash + CLIP preprocessing of the same JPEGs
through ``interleaf.image.analyze`` vs the three separate calls, and vs the Python pipeline
that does the same with Pillow, imagehash, OpenCV and transformers.

Every method computes, for each JPEG, the (N, 3, 224, 224) CLIP input (transformers'
``CLIPImageProcessor`` config, ``cfg = CLIPImageProcessor().to_dict()``, on every side),
the statistics of ``interleaf.image.stats`` (here: the Laplacian-variance blur, the one a
peer computes) and imagehash's ``phash``:

* ``analyze``: ``analyze(bs, pixels=cfg, stats=True, hashes=["phash"], threads=T)``: each
  image decoded once (the gray image comes from the RGB pixels);
* ``three calls``: ``preprocess(bs, config=cfg, threads=T)``, ``stats(bs, threads=T)``,
  ``phash(bs, threads=T)``: each image decoded three times;
* ``Python peers``: per image ``Image.open`` once, ``CLIPImageProcessor`` on
  ``convert("RGB")``, ``imagehash.phash``, ``cv2.Laplacian(np.asarray(im.convert("L")),
  cv2.CV_64F).var()``; one core.

Corpus, child processes, repeats and quiet-machine checks are those of ``benches/phash.py``
(1,500 real photographs at 0.3-2 MP, JPEG q90). Parity (untimed): analyze's columns equal
the three calls', and its pixels and pHash against the peers' (``CLIPImageProcessor``,
imagehash) on the unique images. Results: ``benches/results/analyze.json``.

Usage::

    python benches/analyze.py              # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import phash as corpus_bench  # the JPEG corpus, the child runner and the per-bucket summary
from _common import add_quiet_machine_args, report_header, versions

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benches" / "results" / "analyze.json"
CONFIGS = [("analyze", 1), ("three_calls", 1), ("analyze", 2), ("three_calls", 2), ("peers", 1)]
LABELS = {"analyze": "interleaf analyze (one decode)", "three_calls": "interleaf three calls", "peers": "Pillow+CLIPImageProcessor+imagehash+cv2"}


def make_runner(kind: str, threads: int):
    """A function list_of_bytes -> one result per image."""
    from image_preprocess import clip_processor

    cfg = clip_processor().to_dict()  # the peers' config, on every side
    if kind == "analyze":
        from interleaf.image import analyze

        return lambda bs: analyze(bs, pixels=cfg, stats=True, hashes=["phash"], threads=threads).table.rows()
    if kind == "three_calls":
        from interleaf.dedup import phash
        from interleaf.image import preprocess, stats

        def run(bs):
            pixels, _ = preprocess(bs, config=cfg, threads=threads)
            table = stats(bs, threads=threads)
            hashes = phash(bs, threads=threads)
            assert len(pixels) == table.height == hashes.height
            return hashes.rows()

        return run
    if kind == "peers":
        import cv2
        import imagehash
        import numpy as np
        from PIL import Image

        proc = clip_processor()

        def one(b):
            im = Image.open(io.BytesIO(b))
            im.load()
            pixels = proc(images=im.convert("RGB"), return_tensors="np")["pixel_values"]
            h = str(imagehash.phash(im))
            blur = cv2.Laplacian(np.asarray(im.convert("L")), cv2.CV_64F).var()
            return pixels, h, blur

        return lambda bs: [one(b) for b in bs]
    raise ValueError(kind)


def parity(c: dict) -> dict:
    """analyze's columns against the three calls on the unique images (must be equal), and its
    pixels and pHash against the peers' (printed)."""
    import imagehash
    import numpy as np
    from image_preprocess import clip_processor
    from PIL import Image

    from interleaf.dedup import phash
    from interleaf.image import analyze, preprocess, stats

    bs = [u["bytes"] for u in c["unique"]]
    proc = clip_processor()
    cfg = proc.to_dict()
    r = analyze(bs, pixels=cfg, stats=True, hashes=["phash"])
    pixels, _ = preprocess(bs, config=cfg)
    st = stats(bs)
    ph = phash(bs)
    peer_pixels = np.stack([proc(images=Image.open(io.BytesIO(b)).convert("RGB"), return_tensors="np")["pixel_values"][0] for b in bs])
    peer_hashes = [str(imagehash.phash(Image.open(io.BytesIO(b)))) for b in bs]
    return {
        "images": len(bs),
        "pixels_equal": bool(np.array_equal(r.pixels, pixels)),
        "stats_equal": r.table.select(st.columns).equals(st),
        "phash_equal": r.table.get_column("phash_hex").to_list() == ph.get_column("hex").to_list(),
        "pixels_identical_to_peer_images": int(sum(np.array_equal(a, b) for a, b in zip(r.pixels, peer_pixels, strict=True))),
        "pixels_max_abs_diff_to_peer": float(np.abs(r.pixels - peer_pixels).max()),
        "phash_equal_to_imagehash_images": int(sum(a == b for a, b in zip(r.table.get_column("phash_hex").to_list(), peer_hashes, strict=True))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    corpus_bench.add_corpus_args(ap)
    ap.add_argument("--repeats", type=int, default=3)
    add_quiet_machine_args(ap)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    if args.child:
        args.kind = args.child
        corpus_bench.child_main(args, make_runner)
        return

    c = corpus_bench.load_corpus(args)
    st = corpus_bench.corpus_stats(c)
    print(f"corpus: {st['images']:,} JPEGs ({st['unique_images']} unique), {st['total_megapixels']:.0f} MP", flush=True)
    par = parity(c)
    print(f"parity on {par['images']} unique images: {par}", flush=True)

    results = corpus_bench.measure(args, __file__, CONFIGS, c)
    ratios = {}
    for stat in ("best", "median"):
        for t in (1, 2):
            ratios[f"T{t}_analyze_vs_three_calls_{stat}"] = results[f"analyze@{t}"]["images_per_s"][stat] / results[f"three_calls@{t}"]["images_per_s"][stat]
        ratios[f"T1_analyze_vs_peers_{stat}"] = results["analyze@1"]["images_per_s"][stat] / results["peers@1"]["images_per_s"][stat]
    # Per CPU second (one thread each): the load-robust view on a shared machine.
    ratios["T1_analyze_vs_three_calls_per_cpu_s_median"] = results["analyze@1"]["images_per_cpu_s"]["median"] / results["three_calls@1"]["images_per_cpu_s"]["median"]
    ratios["T1_analyze_vs_peers_per_cpu_s_median"] = results["analyze@1"]["images_per_cpu_s"]["median"] / results["peers@1"]["images_per_cpu_s"]["median"]

    print()
    print(f"{'method':<42}{'T':>2}{'img/s best':>11}{'img/s med':>10}{'cpu/wall':>9}{'img/cpu-s med':>14}")
    for kind, threads in CONFIGS:
        r = results[f"{kind}@{threads}"]
        print(f"{LABELS[kind]:<42}{threads:>2}{r['images_per_s']['best']:>11,.1f}{r['images_per_s']['median']:>10,.1f}{r['cpu_per_wall']:>9.2f}{r['images_per_cpu_s']['median']:>14,.1f}")
    print()
    for t in (1, 2):
        print(f"T={t}: analyze is {ratios[f'T{t}_analyze_vs_three_calls_median']:.2f}x the three calls (median)")
    print(f"T=1: analyze is {ratios['T1_analyze_vs_peers_median']:.2f}x the Python peers (median)")
    print(f"T=1 per CPU second: analyze is {ratios['T1_analyze_vs_three_calls_per_cpu_s_median']:.2f}x the three calls, "
          f"{ratios['T1_analyze_vs_peers_per_cpu_s_median']:.2f}x the Python peers (medians)")

    report = {
        **report_header("analyze"),
        "versions": versions(("interleaf", "pillow", "numpy", "transformers", "imagehash", "opencv-python-headless")),
        "corpus": st,
        "parity": par,
        "results": results,
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
