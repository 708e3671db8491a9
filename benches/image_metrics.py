"""SSIM and PSNR of image pairs as CoMM computes them: interleaf's ``evaluate.image_metrics``
(Rust: decode, Pillow-exact bicubic resize to 256 x 256, SSIM and PSNR, pairs in parallel)
against the reference path (Pillow ``open().convert("RGB").resize((256, 256))`` and
scikit-image's ``structural_similarity`` / ``peak_signal_noise_ratio``) on the same pairs, in
one process; checks the values agree and prints pairs/s and the ratio.

    python benches/image_metrics.py [--n 10000] [--threads 1 2] [--repeats 3]

Pairs: the bundled photographs against distorted copies (blur, noise, recompression, a
downscale), cycled to ``n``; every pair gets its own copies of the bytes (distinct objects), so
both sides decode all ``2 n`` images (``image_metrics`` decodes each distinct object once, and
cycling the same objects let it decode only the few originals). Imports and an untimed warm-up
come before timing; interleaf (on each ``--threads``) and the reference run round-robin
``--repeats`` times and best and median are reported (the ratio per round, its median).
Results: ``benches/results/image_metrics.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
from _common import REPO_ROOT, report_header, versions
from PIL import Image, ImageFilter

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "image_metrics.json"


def pairs(n: int) -> tuple[list[bytes], list[bytes]]:
    photos = [p.read_bytes() for p in sorted((REPO_ROOT / "python" / "interleaf" / "data" / "sample" / "images").iterdir())]
    rng = np.random.default_rng(0)
    base, dist = [], []
    for p in photos:
        im = Image.open(io.BytesIO(p)).convert("RGB")
        for how in ("blur", "noise", "jpeg", "small"):
            if how == "blur":
                d = im.filter(ImageFilter.GaussianBlur(2))
            elif how == "noise":
                d = Image.fromarray(np.clip(np.asarray(im).astype(np.int16) + rng.integers(-20, 21, size=(im.height, im.width, 3)), 0, 255).astype(np.uint8))
            elif how == "small":
                d = im.resize((max(1, im.width // 3), max(1, im.height // 3)))
            else:
                d = im
            buf = io.BytesIO()
            d.save(buf, "JPEG", quality=50)
            base.append(p)
            dist.append(buf.getvalue())
    k = len(base)
    # A copy per pair: equal bytes, distinct objects (nothing can be decoded once and reused).
    return [bytes(bytearray(base[i % k])) for i in range(n)], [bytes(bytearray(dist[i % k])) for i in range(n)]


def reference(ref: list[bytes], gen: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """CoMM's per-pair path (scikit-image imported by the caller, before any timing)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # already loaded: a dict lookup

    ss, ps = [], []
    for a, b in zip(ref, gen, strict=True):
        x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB").resize((256, 256)))
        y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((256, 256)))
        ss.append(structural_similarity(x, y, data_range=255, channel_axis=2))
        ps.append(peak_signal_noise_ratio(x, y, data_range=255))
    return np.array(ss), np.array(ps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="interleaf thread counts (the reference runs on one)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    import skimage.metrics  # noqa: F401  (imported before any timing)

    from interleaf.evaluate import image_metrics

    ref, gen = pairs(args.n)
    assert len({id(x) for x in ref + gen}) == 2 * args.n, "every image must be its own object"
    # Untimed warm-up of both paths (on other objects: copies of the first pairs).
    warm_r, warm_g = [bytes(bytearray(x)) for x in ref[:20]], [bytes(bytearray(x)) for x in gen[:20]]
    image_metrics(warm_g, warm_r, threads=1)
    reference(warm_r, warm_g)
    times: dict[str, list[float]] = {f"interleaf@{t}": [] for t in args.threads} | {"reference": []}
    per = ss = ps = None
    for _ in range(args.repeats):
        for t in args.threads:
            t0 = time.perf_counter()
            _, per = image_metrics(gen, ref, threads=t)
            times[f"interleaf@{t}"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ss, ps = reference(ref, gen)
        times["reference"].append(time.perf_counter() - t0)
    ssim_diff = float(np.abs(per["ssim"].to_numpy() - ss).max())
    psnr_diff = float(np.abs(per["psnr"].to_numpy() - ps).max())
    n = args.n
    rows: dict = {"pairs": n, "images_decoded_per_side": 2 * n, "rounds": times,
                  "reference_pairs_per_s": {"best": n / min(times["reference"]), "median": n / statistics.median(times["reference"])}}
    for t in args.threads:
        k = f"interleaf@{t}"
        per_round = [r / o for r, o in zip(times["reference"], times[k], strict=True)]
        rows[k] = {"threads": t, "pairs_per_s": {"best": n / min(times[k]), "median": n / statistics.median(times[k])},
                   "ratio": {"best": max(per_round), "median": statistics.median(per_round)}}
    rows |= {"max_ssim_diff": ssim_diff, "max_psnr_diff": psnr_diff}
    ref_med = rows["reference_pairs_per_s"]["median"]
    print(f"{n:,} pairs at 256x256 ({2 * n:,} images decoded per side), {args.repeats} rounds, medians: Pillow + scikit-image {ref_med:,.1f}/s")
    for t in args.threads:
        r = rows[f"interleaf@{t}"]
        print(f"  interleaf {t} thread(s): {r['pairs_per_s']['median']:,.1f}/s (best {r['pairs_per_s']['best']:,.1f}): {r['ratio']['median']:.1f}x median, {r['ratio']['best']:.1f}x best")
    print(f"largest differences: SSIM {ssim_diff:.2e}, PSNR {psnr_diff:.2e} dB")
    report = {**report_header("image_metrics"), "versions": versions(["interleaf", "scikit-image", "pillow", "numpy"]), "params": vars(args), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")

if __name__ == "__main__":
    main()
