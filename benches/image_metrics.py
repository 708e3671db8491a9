"""SSIM and PSNR of image pairs as CoMM computes them: interleaf's ``evaluate.image_metrics``
(Rust: decode, Pillow-exact bicubic resize to 256 x 256, SSIM and PSNR, pairs in parallel)
against the reference path (Pillow ``open().convert("RGB").resize((256, 256))`` and
scikit-image's ``structural_similarity`` / ``peak_signal_noise_ratio``) on the same pairs, in
one process; checks the values agree and prints pairs/s and the ratio.

    python benches/image_metrics.py [--n 10000] [--threads 1]

Pairs: the bundled photographs against distorted copies (blur, noise, recompression, a
downscale), cycled to ``n``. Results: ``benches/results/image_metrics.json``.
"""

from __future__ import annotations

import argparse
import io
import json
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
    return [base[i % k] for i in range(n)], [dist[i % k] for i in range(n)]


def reference(ref: list[bytes], gen: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

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
    ap.add_argument("--threads", type=int, default=1, help="interleaf threads (the reference runs on one)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    from interleaf.evaluate import image_metrics

    ref, gen = pairs(args.n)
    t = time.perf_counter()
    _, per = image_metrics(gen, ref, threads=args.threads)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ss, ps = reference(ref, gen)
    t_ref = time.perf_counter() - t
    ssim_diff = float(np.abs(per["ssim"].to_numpy() - ss).max())
    psnr_diff = float(np.abs(per["psnr"].to_numpy() - ps).max())
    rows = {"pairs": args.n, "interleaf_pairs_per_s": args.n / t_ours, "reference_pairs_per_s": args.n / t_ref, "ratio": t_ref / t_ours, "max_ssim_diff": ssim_diff, "max_psnr_diff": psnr_diff}
    print(f"{args.n:,} pairs at 256x256: interleaf {rows['interleaf_pairs_per_s']:,.0f}/s ({args.threads} thread(s)), Pillow + scikit-image {rows['reference_pairs_per_s']:,.0f}/s: {rows['ratio']:.1f}x")
    print(f"largest differences: SSIM {ssim_diff:.2e}, PSNR {psnr_diff:.2e} dB")
    report = {**report_header("image_metrics"), "versions": versions(["interleaf", "scikit-image", "pillow", "numpy"]), "params": vars(args), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
