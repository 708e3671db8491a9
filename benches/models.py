#!/usr/bin/env python3
"""CLIP image and text embeddings per second: interleaf (Rust decode + preprocessing, ONNX
Runtime) against the same model in torch (Pillow + transformers' CLIPImageProcessor and
tokenizer, ``CLIPModel``), in the same process, on the same inputs.

The model is a transformers ``CLIPModel`` with random weights and the shapes of a real one
(``--arch b32``: ViT-B/32, 224 px, width 768 x 12 layers, text 512 x 12, projection 512;
``--arch l14``: ViT-L/14, 224 px, 1024 x 24, text 768 x 12, projection 768; speed does not
depend on the weights). It is built and exported with ``interleaf.models.export`` on first use
and cached in ``bench-data/models/``.

Measured, each after an untimed warm-up batch, best and median of ``--repeats``:

* images, end to end: JPEG bytes -> embeddings. interleaf: ``CLIPModel.embed_images(bytes)``
  (decoding of batch k+1 overlaps inference on batch k); torch: ``Image.open`` ->
  ``CLIPImageProcessor`` -> ``vision_model`` + ``visual_projection``, batch by batch;
* images, model only: the same float32 pixels through ONNX Runtime and through torch;
* texts: real captions and docstrings -> embeddings. interleaf: ``embed_texts`` (tokenizers
  from tokenizer.json, length buckets); torch: the transformers tokenizer (padding to the
  batch's longest) -> ``text_model`` + ``text_projection``.

Threads: torch ``set_num_threads(T)`` and ONNX Runtime ``intra_op_num_threads=T`` with
``--threads T`` (default: all cores); interleaf's Rust decoding uses the same cores.
On a GPU (``--device cuda``, needs onnxruntime-gpu and CUDA torch): ``--precision fp16``
uses the exported fp16 graphs against torch in ``half()``; IO binding is on by default there.

Corpus: the real-photo JPEG corpus of ``benches/phash.py`` (0.3-2 MP), ``--images`` of them.

Usage::

    python benches/models.py                     # CPU, ViT-B/32-sized, ~5 min on 2 cores
    python benches/models.py --device cuda --arch l14 --precision fp16 --batch-size 128

Results: ``benches/results/models-<device>-<arch>-<precision>.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import phash as corpus_bench
from _common import report_header, versions

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = REPO_ROOT / "bench-data" / "models"

ARCHS = {
    "b32": dict(vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=32),
                text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77), projection_dim=512),
    "l14": dict(vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224, patch_size=14),
                text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77), projection_dim=768),
}


def build_model(arch: str, fp16: bool):
    """The torch model and the exported interleaf model directory (cached)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from make_test_models import clip_tokenizer

    from interleaf.models.export import export_clip_transformers

    src = CACHE / f"clip-{arch}-src"
    out = CACHE / f"clip-{arch}"
    if not (src / "config.json").is_file():
        tok = clip_tokenizer(merges_kept=48894)  # the whole CLIP BPE: 49,408 tokens
        tok.save_pretrained(str(src))
        CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}).save_pretrained(str(src))
        a = ARCHS[arch]
        torch.manual_seed(0)
        cfg = CLIPConfig(text_config=dict(a["text"], vocab_size=len(tok), bos_token_id=len(tok) - 2, eos_token_id=len(tok) - 1, pad_token_id=len(tok) - 1), vision_config=a["vision"], projection_dim=a["projection_dim"])
        CLIPModel(cfg).save_pretrained(str(src))
    if not (out / "onnx" / "vision_model.onnx").is_file() or (fp16 and not (out / "onnx" / "vision_model_fp16.onnx").is_file()):
        print(f"exporting {arch} to {out} ...", flush=True)
        export_clip_transformers(src, out, fp16=fp16, overwrite=True)
    model = CLIPModel.from_pretrained(str(src), attn_implementation="sdpa")
    model.eval()
    return src, out, model


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up (first-run allocations, lazy init)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def rate(n: int, secs: list[float]) -> dict:
    return {"best_per_s": round(n / min(secs), 2), "median_per_s": round(n / statistics.median(secs), 2), "seconds": [round(s, 3) for s in secs]}


def texts_corpus(n: int) -> list[str]:
    import collections
    import email
    import inspect
    import json as j
    import os
    import pathlib
    import string
    import textwrap
    import typing

    caps = [json.loads(l)["caption"] for l in (REPO_ROOT / "python/interleaf/data/sample/pairs.jsonl").read_text().splitlines() if l.strip()]
    docs = []
    for mod in (collections, email, j, os, pathlib, string, textwrap, typing):
        for _, obj in sorted(vars(mod).items()):
            d = inspect.getdoc(obj)
            if d:
                docs.append(" ".join(d.split()[:60]))
    pool = caps + docs
    return [pool[i % len(pool)] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    corpus_bench.add_corpus_args(ap)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="b32")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime CPU threads (default: all cores)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--images", type=int, default=256, help="images per timed run")
    ap.add_argument("--texts", type=int, default=1024, help="texts per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-io-binding", action="store_true", help="cuda: run without IO binding")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from io import BytesIO

    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPTokenizerFast

    from interleaf import models
    from interleaf.image import preprocess
    from interleaf.models.runtime import available_cores

    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    fp16 = args.precision == "fp16"
    src, out, model = build_model(args.arch, fp16)
    dev = torch.device(args.device)
    model = model.to(dev)
    if fp16:
        model = model.half()
    clip = models.load(out, device=args.device, threads=threads, precision=args.precision, batch_size=args.batch_size, io_binding=None if not args.no_io_binding else False)
    proc = CLIPImageProcessor.from_pretrained(str(src))
    tok = CLIPTokenizerFast.from_pretrained(str(src))

    corpus = corpus_bench.load_corpus(args)
    jpegs = [corpus["unique"][i % len(corpus["unique"])]["bytes"] for i in range(args.images)]
    mp = sum(corpus["unique"][i % len(corpus["unique"])]["w"] * corpus["unique"][i % len(corpus["unique"])]["h"] for i in range(args.images)) / 1e6
    texts = texts_corpus(args.texts)
    bs = args.batch_size
    dtype = torch.float16 if fp16 else torch.float32

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    def torch_images_e2e():
        outs = []
        with torch.no_grad():
            for i in range(0, len(jpegs), bs):
                pil = [Image.open(BytesIO(b)).convert("RGB") for b in jpegs[i : i + bs]]
                pv = torch.from_numpy(proc(pil, return_tensors="np")["pixel_values"]).to(dev, dtype)
                outs.append(model.visual_projection(model.vision_model(pixel_values=pv).pooler_output).float().cpu())
        sync()
        return outs

    pixels, _ = preprocess(jpegs, clip.preprocess_config)
    pixels_t = torch.from_numpy(pixels)

    def torch_images_model():
        with torch.no_grad():
            for i in range(0, len(pixels_t), bs):
                model.visual_projection(model.vision_model(pixel_values=pixels_t[i : i + bs].to(dev, dtype)).pooler_output).float().cpu()
        sync()

    def torch_texts():
        with torch.no_grad():
            for i in range(0, len(texts), bs):
                enc = tok(texts[i : i + bs], padding=True, truncation=True, max_length=77, return_tensors="pt").to(dev)
                model.text_projection(model.text_model(**enc).pooler_output).float().cpu()
        sync()

    results = {}
    plan = [
        ("images_end_to_end", "interleaf", lambda: clip.embed_images(jpegs, threads=threads), len(jpegs)),
        ("images_end_to_end", "torch", torch_images_e2e, len(jpegs)),
        ("images_model_only", "interleaf", lambda: clip.embed_images(pixels), len(jpegs)),
        ("images_model_only", "torch", torch_images_model, len(jpegs)),
        ("texts", "interleaf", lambda: clip.embed_texts(texts), len(texts)),
        ("texts", "torch", torch_texts, len(texts)),
    ]
    for what, who, fn, n in plan:
        print(f"{what:<20} {who:<10} ...", end="", flush=True)
        r = rate(n, timed(fn, args.repeats))
        results.setdefault(what, {})[who] = r
        print(f" {r['best_per_s']:>9,.1f}/s best, {r['median_per_s']:>9,.1f}/s median", flush=True)
    # Parity on these inputs (not asserted): cosine of interleaf's vs torch's embeddings.
    ours, _ = clip.embed_images(jpegs[:bs])
    theirs = torch.cat(torch_images_e2e()[:1]).numpy()
    cos = (ours * theirs).sum(1) / np.linalg.norm(theirs, axis=1)
    print(f"\nparity: image embeddings cosine interleaf vs torch, min {cos.min():.6f}")
    print(f"\n{'':<20} {'interleaf/s':>12} {'torch/s':>10} {'ratio':>7}   (best; median ratio)")
    for what, r in results.items():
        a, b = r["interleaf"], r["torch"]
        r["ratio_best"] = round(a["best_per_s"] / b["best_per_s"], 3)
        r["ratio_median"] = round(a["median_per_s"] / b["median_per_s"], 3)
        print(f"{what:<20} {a['best_per_s']:>12,.1f} {b['best_per_s']:>10,.1f} {r['ratio_best']:>6.2f}x   ({r['ratio_median']:.2f}x)")
    report = {
        **report_header("models"),
        "settings": {k: v for k, v in vars(args).items() if k not in ("corpus",)},
        "threads": threads,
        "onnxruntime_providers": clip.vision.providers,
        "io_binding": clip.vision.io_binding,
        "images_megapixels": round(mp, 1),
        "versions": versions(["interleaf", "onnxruntime", "onnxruntime-gpu", "torch", "transformers", "tokenizers", "pillow"]),
        "parity_min_cosine": float(cos.min()),
        "results": results,
    }
    path = Path(args.out or REPO_ROOT / "benches" / "results" / f"models-{args.device}-{args.arch}-{args.precision}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
