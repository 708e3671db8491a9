#!/usr/bin/env python3
"""Perceptual-hash throughput from encoded JPEG bytes: interleaf vs imagehash.

Compared, on one corpus of JPEG-encoded real photographs:

* ``interleaf phash``: ``interleaf.dedup.phash(list_of_bytes, threads=T)``, T = 1 and 2;
* ``imagehash phash``: ``[str(imagehash.phash(Image.open(BytesIO(b)))) for b in list_of_bytes]``
  (decode + ``convert("L")`` + LANCZOS resize + scipy DCT, as its users call it), one core;
* the same two for dHash (``interleaf.dedup.dhash`` / ``imagehash.dhash``);
* reference floor (not a hasher): ``Image.open(BytesIO(b)).convert("L")``, i.e. Pillow's
  libjpeg-turbo decode + grayscale conversion alone, which imagehash pays before hashing;
* draft mode: ``interleaf.dedup.phash(list_of_bytes, draft=D, threads=T)`` (``--draft``, default
  128: JPEGs decoded straight to luma and shrunk in the DCT domain as Pillow's
  ``im.draft("L", (D, D))`` does), T = 1 and 2, and its own reference, imagehash on the same
  drafted image: ``im = Image.open(BytesIO(b)); im.draft("L", (D, D)); str(imagehash.phash(im))``.
  Its ratio is given against plain imagehash (what users run today) and against that reference.

Corpus (built once, cached in ``bench-data/phash/corpus.pkl``, git-ignored): the photographs
under ``python/interleaf/data/sample/images/`` (crops of scikit-image photos) and photographs of
``skimage/data/`` (astronaut, brick, camera, chelsea, clock_motion, coffee, coins, grass,
gravel, hubble_deep_field, moon, motorcycle_left/right, retina, rocket; synthetic images such
as chessboard, logo, phantom, text are left out). Each source (RGBA -> RGB; grayscale sources
stay grayscale) is resized with Pillow BICUBIC to each of ``--mp`` target sizes (default 0.3,
0.5, 0.8, 1.2, 2.0 megapixels, keeping its aspect ratio; most sources are smaller, so this is
mostly upscaling) and saved as JPEG quality 90 (Pillow defaults: 4:2:0 for colour). Each size
bucket holds ``--n / len(--mp)`` images cycling through the sources (the corpus is the unique
images repeated; the run prints how often), each copy with a JPEG comment of its own after the
SOI marker: the same pixels, distinct bytes (interleaf decodes identical bytes once, so exact
copies would time that shortcut, not decoding). Megapixel and bytes-per-pixel distributions are
printed and saved.

Each measurement runs in a fresh child process (env ``RAYON_NUM_THREADS=T``,
``OMP_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``...; T=1 children are
pinned to one core with ``sched_setaffinity``), after an untimed warm-up on 30 images; each size
bucket is one timed call (interleaf) or loop (imagehash), and the total is their sum.
Configurations run round-robin, ``--repeats`` times (default 3): best and median are
reported, as images/s and megapixels/s. A run during which other processes used more than
``--max-foreign`` (3%) of the CPUs (``/proc/stat``) is redone after ``--retry-wait`` seconds,
up to ``--max-retries`` times.

Parity (untimed, in the parent, printed, not asserted): the fraction of unique corpus images
whose interleaf hash equals imagehash's (phash and dhash), and whether threads=1 and threads=2
give the same hashes; for draft mode, the fraction equal to imagehash on the drafted image and,
against plain imagehash on the full decode, the fraction equal and the Hamming distances.

Usage::

    python benches/phash.py                 # builds the corpus on first run (~10 s), then ~5 min
    python benches/phash.py --repeats 5 --n 2000

Results: ``benches/results/phash.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import resource
import statistics
import sys
import time
from pathlib import Path

from _common import add_quiet_machine_args, child_env, report_header, run_quiet, versions
from _common import busy_cpu_s as _busy_cpu_s
from _common import cpu_s as _cpu_s

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "python" / "interleaf" / "data" / "sample" / "images"
DEFAULT_CORPUS = REPO_ROOT / "bench-data" / "phash" / "corpus.pkl"
DEFAULT_OUT = REPO_ROOT / "benches" / "results" / "phash.json"
GEN_VERSION = 2  # bump when the corpus generator's output changes (2: distinct copies)
SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "clock_motion.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "moon.png",
    "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
)
JPEG_QUALITY = 90
WARMUP_IMAGES = 30

CHILD_ENV = {
    "RAYON_NUM_THREADS": None,  # = T
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "POLARS_MAX_THREADS": "1",
}

# (kind, threads) in round-robin order
CONFIGS = [
    ("interleaf_phash", 1), ("interleaf_phash", 2), ("imagehash_phash", 1),
    ("interleaf_dhash", 1), ("interleaf_dhash", 2), ("imagehash_dhash", 1),
    ("pillow_decode_l", 1),
    ("interleaf_phash-draft", 1), ("interleaf_phash-draft", 2), ("imagehash_phash-draft", 1),
]
DRAFT = 128  # --draft
LABELS = {
    "interleaf_phash": "interleaf phash",
    "imagehash_phash": "imagehash phash (+Image.open)",
    "interleaf_dhash": "interleaf dhash",
    "imagehash_dhash": "imagehash dhash (+Image.open)",
    "pillow_decode_l": "ref: Pillow open+convert('L') only",
    "interleaf_phash-draft": "interleaf phash draft",
    "imagehash_phash-draft": "imagehash phash on Pillow draft",
}

# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


def source_paths() -> list[Path]:
    import skimage

    sk = Path(skimage.__file__).resolve().parent / "data"
    paths = sorted(p for p in SAMPLE_DIR.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    paths += [sk / name for name in SKIMAGE_PHOTOS if (sk / name).exists()]
    return paths


def distinct_copy(jpeg: bytes, i: int) -> bytes:
    """``jpeg`` with a comment segment (FF FE) naming copy ``i`` after its SOI marker: the same
    pixels and hash, other bytes."""
    payload = f"interleaf bench copy {i}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def build_corpus(args) -> dict:
    from PIL import Image

    targets = [float(x) for x in args.mp.split(",")]
    per_bucket = max(1, args.n // len(targets))
    sources = []
    for p in source_paths():
        im = Image.open(p)
        im.load()
        if im.mode not in ("L", "RGB"):
            im = im.convert("L" if im.mode in ("LA", "I", "I;16") else "RGB")
        sources.append((f"{p.parent.name}/{p.name}", im))
    buckets = []
    unique = []  # (bucket index, source name, bytes, w, h)
    for mp in targets:
        encoded = []
        for name, im in sources:
            w, h = im.size
            s = (mp * 1e6 / (w * h)) ** 0.5
            size = (max(1, round(w * s)), max(1, round(h * s)))
            buf = io.BytesIO()
            im.resize(size, Image.BICUBIC).save(buf, "JPEG", quality=JPEG_QUALITY)
            encoded.append({"source": name, "mode": im.mode, "w": size[0], "h": size[1], "bytes": buf.getvalue()})
        unique.extend(encoded)
        first = sum(len(b["images"]) for b in buckets)
        buckets.append({"target_mp": mp, "images": [{**encoded[i % len(encoded)], "bytes": distinct_copy(encoded[i % len(encoded)]["bytes"], first + i)} for i in range(per_bucket)]})
    sha = hashlib.sha256()
    for u in unique:
        sha.update(u["bytes"])
    return {
        "gen_version": GEN_VERSION,
        "settings": {"mp": args.mp, "n": args.n},
        "sha256": sha.hexdigest(),
        "sources": [n for n, _ in sources],
        "unique": unique,
        "buckets": buckets,
    }


def load_corpus(args) -> dict:
    path = Path(args.corpus)
    if path.exists() and not args.rebuild_corpus:
        with open(path, "rb") as f:
            c = pickle.load(f)
        if c.get("gen_version") == GEN_VERSION and c.get("settings") == {"mp": args.mp, "n": args.n}:
            return c
    print("building corpus ...", flush=True)
    c = build_corpus(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(c, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return c


def corpus_stats(c: dict) -> dict:
    def dist(v):
        v = sorted(v)
        return {"min": v[0], "p10": v[len(v) // 10], "median": statistics.median(v), "mean": statistics.fmean(v),
                "p90": v[(9 * len(v)) // 10], "max": v[-1]}

    imgs = [im for b in c["buckets"] for im in b["images"]]
    return {
        "sha256": c["sha256"],
        "sources": len(c["sources"]),
        "unique_images": len(c["unique"]),
        "images": len(imgs),
        "repeat": len(imgs) / len(c["unique"]),
        "grayscale_fraction": sum(im["mode"] == "L" for im in imgs) / len(imgs),
        "total_megapixels": sum(im["w"] * im["h"] for im in imgs) / 1e6,
        "total_mb": sum(len(im["bytes"]) for im in imgs) / 1e6,
        "megapixels": dist([im["w"] * im["h"] / 1e6 for im in imgs]),
        "bytes_per_pixel": dist([len(im["bytes"]) / (im["w"] * im["h"]) for im in imgs]),
        "longest_side_px": dist([max(im["w"], im["h"]) for im in imgs]),
        "buckets": [
            {
                "target_mp": b["target_mp"],
                "images": len(b["images"]),
                "mean_mp": statistics.fmean(im["w"] * im["h"] / 1e6 for im in b["images"]),
                "mean_kb": statistics.fmean(len(im["bytes"]) for im in b["images"]) / 1e3,
            }
            for b in c["buckets"]
        ],
        "jpeg_quality": JPEG_QUALITY,
    }


# --------------------------------------------------------------------------------------------
# Child
# --------------------------------------------------------------------------------------------


def imagehash_drafted_phash(b: bytes) -> str:
    """imagehash's phash of the image as Pillow's ``draft("L", (DRAFT, DRAFT))`` decodes it."""
    import imagehash
    from PIL import Image

    im = Image.open(io.BytesIO(b))
    im.draft("L", (DRAFT, DRAFT))
    return str(imagehash.phash(im))


def make_runner(kind: str, threads: int):
    """A function list_of_bytes -> list of results."""
    if kind == "interleaf_phash-draft":
        from interleaf.dedup import phash

        return lambda bs: phash(bs, threads=threads, draft=DRAFT).get_column("hex").to_list()
    if kind.startswith("interleaf_"):
        from interleaf.dedup import dhash, phash

        fn = phash if kind == "interleaf_phash" else dhash
        return lambda bs: fn(bs, threads=threads).get_column("hex").to_list()
    from PIL import Image

    if kind == "imagehash_phash-draft":
        return lambda bs: [imagehash_drafted_phash(b) for b in bs]
    if kind.startswith("imagehash_"):
        import imagehash

        fn = imagehash.phash if kind == "imagehash_phash" else imagehash.dhash
        return lambda bs: [str(fn(Image.open(io.BytesIO(b)))) for b in bs]
    if kind == "pillow_decode_l":
        return lambda bs: [Image.open(io.BytesIO(b)).convert("L") for b in bs]
    raise ValueError(kind)


def child_main(args, make_runner=make_runner) -> None:
    """Times ``make_runner(kind, threads)`` on each size bucket (after a warm-up) and prints
    one JSON line; shared with ``image_preprocess.py``."""
    if args.threads == 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with open(args.corpus, "rb") as f:
        c = pickle.load(f)
    run = make_runner(args.kind, args.threads)
    buckets = [[im["bytes"] for im in b["images"]] for b in c["buckets"]]
    warm = [im["bytes"] for im in c["unique"]]
    run(warm[:: max(1, len(warm) // WARMUP_IMAGES)][:WARMUP_IMAGES])
    walls = []
    c0 = _cpu_s()
    for bs in buckets:
        t0 = time.perf_counter()
        out = run(bs)
        walls.append(time.perf_counter() - t0)
        assert len(out) == len(bs)
    cpu = _cpu_s() - c0
    print(json.dumps({"images": sum(map(len, buckets)), "wall_s": sum(walls), "bucket_wall_s": walls, "cpu_s": cpu}))


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def busy_fraction(seconds: float = 2.0) -> float:
    b0 = _busy_cpu_s()
    time.sleep(seconds)
    return (_busy_cpu_s() - b0) / (seconds * (os.cpu_count() or 1))


def run_child(args, kind: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--threads", str(threads), "--corpus", str(args.corpus), "--draft", str(args.draft)]
    return run_quiet(cmd, child_env(CHILD_ENV, threads), f"{kind} T={threads}", args)


def parity(c: dict) -> dict:
    import imagehash
    from PIL import Image

    from interleaf.dedup import dhash, phash

    bs = [u["bytes"] for u in c["unique"]]
    out = {"images": len(bs)}
    for name, il, ih in (("phash", phash, imagehash.phash), ("dhash", dhash, imagehash.dhash)):
        a1 = il(bs, threads=1).get_column("hex").to_list()
        a2 = il(bs, threads=2).get_column("hex").to_list()
        ref = [str(ih(Image.open(io.BytesIO(b)))) for b in bs]
        mism = [i for i, (x, y) in enumerate(zip(a1, ref)) if x != y]
        dists = [bin(int(a1[i], 16) ^ int(ref[i], 16)).count("1") if a1[i] else None for i in mism]
        out[name] = {
            "identical_fraction": 1 - len(mism) / len(bs),
            "mismatches": [
                {"source": c["unique"][i]["source"], "w": c["unique"][i]["w"], "h": c["unique"][i]["h"],
                 "interleaf": a1[i], "imagehash": ref[i], "hamming": d}
                for i, d in zip(mism, dists)
            ],
            "threads1_equals_threads2": a1 == a2,
        }
    d1, d2 = (phash(bs, threads=t, draft=DRAFT).get_column("hex").to_list() for t in (1, 2))
    full_ref = [str(imagehash.phash(Image.open(io.BytesIO(b)))) for b in bs]
    draft_ref = [imagehash_drafted_phash(b) for b in bs]
    dist = [bin(int(x, 16) ^ int(y, 16)).count("1") for x, y in zip(d1, full_ref)]
    out["phash-draft"] = {
        "draft": DRAFT,
        "identical_to_imagehash_on_drafted": sum(x == y for x, y in zip(d1, draft_ref)) / len(bs),
        "identical_to_imagehash_full_decode": sum(d == 0 for d in dist) / len(bs),
        "hamming_to_full_decode": {"mean": statistics.mean(dist), "max": max(dist),
                                   "histogram": {str(k): dist.count(k) for k in sorted(set(dist))}},
        "threads1_equals_threads2": d1 == d2,
    }
    return out


def package_versions() -> dict:
    out = versions(("interleaf", "imagehash", "pillow", "numpy", "scipy", "scikit-image"))
    try:
        from PIL import features

        out["pillow_libjpeg_turbo"] = features.version("libjpeg_turbo")
    except Exception:  # noqa: BLE001
        pass
    return out


def summarize(runs: list[dict], bucket_mp: list[float], bucket_n: list[int]) -> dict:
    walls = [r["wall_s"] for r in runs]
    n = runs[0]["images"]
    mp = sum(bucket_mp)
    best, med = min(walls), statistics.median(walls)
    per_bucket = []
    for i in range(len(bucket_n)):
        bw = statistics.median(r["bucket_wall_s"][i] for r in runs)
        per_bucket.append({"images_per_s_median": bucket_n[i] / bw, "mp_per_s_median": bucket_mp[i] / bw})
    return {
        "images": n,
        "megapixels": mp,
        "wall_s": {"best": best, "median": med, "all": walls},
        "images_per_s": {"best": n / best, "median": n / med},
        "mp_per_s": {"best": mp / best, "median": mp / med},
        "cpu_per_wall": statistics.median(r["cpu_s"] / r["wall_s"] for r in runs),
        # Per CPU second of the child: less sensitive than wall time to other processes on a
        # shared machine (a child that got half its core shows it in wall time, not here).
        "images_per_cpu_s": {"best": n / min(r["cpu_s"] for r in runs), "median": n / statistics.median(r["cpu_s"] for r in runs)},
        "per_bucket": per_bucket,
    }


def measure(args, script: str, configs: list[tuple[str, int]], corpus: dict) -> dict[str, dict]:
    """Runs every (kind, threads) of ``configs`` as ``script --child`` round-robin,
    ``args.repeats`` times, on quiet CPUs; returns each one's per-bucket summary with its runs
    (shared by ``image_preprocess.py`` and ``analyze.py``)."""
    runs: dict[str, list[dict]] = {f"{k}@{t}": [] for k, t in configs}
    for rep in range(args.repeats):
        for kind, threads in configs:
            cmd = [sys.executable, script, "--child", kind, "--threads", str(threads), "--corpus", str(args.corpus)]
            r = run_quiet(cmd, child_env(CHILD_ENV, threads), f"{kind} T={threads}", args)
            runs[f"{kind}@{threads}"].append(r)
            print(f"  run {rep + 1}/{args.repeats} {kind} T={threads}: {r['wall_s']:.2f} s ({r['images'] / r['wall_s']:,.0f} images/s)", flush=True)
    bucket_n = [len(b["images"]) for b in corpus["buckets"]]
    bucket_mp = [sum(im["w"] * im["h"] for im in b["images"]) / 1e6 for b in corpus["buckets"]]
    results = {}
    for key, rs in runs.items():
        results[key] = summarize(rs, bucket_mp, bucket_n)
        results[key]["runs"] = rs
    return results


def add_corpus_args(ap) -> None:
    """The options that define and cache the JPEG corpus (shared with ``image_preprocess.py``)."""
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus cache (pickle)")
    ap.add_argument("--rebuild-corpus", action="store_true")
    ap.add_argument("--mp", default="0.3,0.5,0.8,1.2,2.0", help="target megapixels of the size buckets")
    ap.add_argument("--n", type=int, default=1500, help="images in the corpus (split evenly over the buckets)")


def main() -> None:
    global DRAFT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_corpus_args(ap)
    ap.add_argument("--repeats", type=int, default=3)
    add_quiet_machine_args(ap)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--draft", type=int, default=DRAFT, help="draft size of the draft-mode rows (default %(default)s)")
    args = ap.parse_args()
    DRAFT = args.draft
    if args.child:
        args.kind = args.child
        child_main(args)
        return

    c = load_corpus(args)
    st = corpus_stats(c)
    m, bpp = st["megapixels"], st["bytes_per_pixel"]
    print(
        f"corpus: {st['images']:,} JPEGs (q{JPEG_QUALITY}) = {st['unique_images']} unique ({st['sources']} sources x "
        f"{len(st['buckets'])} sizes) repeated x{st['repeat']:.1f}; {st['total_megapixels']:.0f} MP, {st['total_mb']:.0f} MB; "
        f"{st['grayscale_fraction']:.0%} grayscale",
        flush=True,
    )
    print(f"  megapixels: min {m['min']:.2f}, p10 {m['p10']:.2f}, median {m['median']:.2f}, mean {m['mean']:.2f}, "
          f"p90 {m['p90']:.2f}, max {m['max']:.2f}; bytes/pixel median {bpp['median']:.3f} "
          f"(p10 {bpp['p10']:.3f}, p90 {bpp['p90']:.3f})", flush=True)
    for b in st["buckets"]:
        print(f"  bucket {b['target_mp']:.1f} MP: {b['images']} images, mean {b['mean_mp']:.2f} MP, mean {b['mean_kb']:.0f} KB", flush=True)

    print("parity vs imagehash (unique images) ...", flush=True)
    par = parity(c)
    for name in ("phash", "dhash"):
        p = par[name]
        print(f"  {name}: {p['identical_fraction']:.1%} identical ({len(p['mismatches'])} of {par['images']} differ"
              + (f", Hamming {sorted(x['hamming'] for x in p['mismatches'])}" if p["mismatches"] else "")
              + f"); threads=1 == threads=2: {p['threads1_equals_threads2']}", flush=True)
    pd = par["phash-draft"]
    print(f"  phash draft={DRAFT}: {pd['identical_to_imagehash_on_drafted']:.1%} identical to imagehash on the Pillow-drafted image; "
          f"against the full decode {pd['identical_to_imagehash_full_decode']:.1%} identical, Hamming mean "
          f"{pd['hamming_to_full_decode']['mean']:.2f}, max {pd['hamming_to_full_decode']['max']} "
          f"(histogram {pd['hamming_to_full_decode']['histogram']}); threads=1 == threads=2: {pd['threads1_equals_threads2']}", flush=True)

    busy = busy_fraction()
    if busy > 0.1:
        print(f"WARNING: the CPUs were {busy:.0%} busy just before timing: the machine is not quiet", flush=True)
    busy0, ch0, t_start = _busy_cpu_s(), _children_cpu_s(), time.perf_counter()
    runs: dict[str, list[dict]] = {f"{k}@{t}": [] for k, t in CONFIGS}
    for rep in range(args.repeats):
        for kind, threads in CONFIGS:
            r = run_child(args, kind, threads)
            runs[f"{kind}@{threads}"].append(r)
            print(f"  run {rep + 1}/{args.repeats} {kind} T={threads}: {r['wall_s']:.2f} s "
                  f"({r['images'] / r['wall_s']:,.0f} images/s), other processes {r['other_processes_cpu_s']:.2f} CPU s", flush=True)
    timing_s = time.perf_counter() - t_start
    foreign_cpu_s = (_busy_cpu_s() - busy0) - (_children_cpu_s() - ch0)

    bucket_n = [len(b["images"]) for b in c["buckets"]]
    bucket_mp = [sum(im["w"] * im["h"] for im in b["images"]) / 1e6 for b in c["buckets"]]
    results = {}
    for kind, threads in CONFIGS:
        key = f"{kind}@{threads}"
        results[key] = summarize(runs[key], bucket_mp, bucket_n)
        results[key]["runs"] = runs[key]

    ratios = {}
    for h in ("phash", "dhash"):
        ref = results[f"imagehash_{h}@1"]["images_per_s"]
        for t in (1, 2):
            mine = results[f"interleaf_{h}@{t}"]["images_per_s"]
            for stat in ("best", "median"):
                ratios[f"{h}@{t}_{stat}"] = mine[stat] / ref[stat]
    for t in (1, 2):
        mine = results[f"interleaf_phash-draft@{t}"]["images_per_s"]
        for stat in ("best", "median"):
            ratios[f"phash-draft@{t}_{stat}"] = mine[stat] / results["imagehash_phash@1"]["images_per_s"][stat]
            ratios[f"phash-draft@{t}_vs_imagehash_drafted_{stat}"] = mine[stat] / results["imagehash_phash-draft@1"]["images_per_s"][stat]

    print()
    print(f"{'method':<37}{'T':>2}{'img/s best':>11}{'img/s med':>10}{'MP/s best':>10}{'MP/s med':>9}{'cpu/wall':>9}{'vs imagehash':>13}")
    for kind, threads in CONFIGS:
        r = results[f"{kind}@{threads}"]
        h = kind.split("_")[-1]
        vs = ""
        if kind.startswith("interleaf"):
            vs = f"{ratios[f'{h}@{threads}_best']:.2f}x"
        elif kind == "imagehash_phash-draft":
            vs = f"{r['images_per_s']['best'] / results['imagehash_phash@1']['images_per_s']['best']:.2f}x"
        elif kind.startswith("imagehash"):
            vs = "1.00x"
        print(f"{LABELS[kind]:<37}{threads:>2}{r['images_per_s']['best']:>11,.1f}{r['images_per_s']['median']:>10,.1f}"
              f"{r['mp_per_s']['best']:>10,.1f}{r['mp_per_s']['median']:>9,.1f}{r['cpu_per_wall']:>9.2f}{vs:>13}")
    print("('vs imagehash' = images/s best / imagehash's best on the full decode; goal for phash T=1: >= 5x)")
    print()
    print("phash T=1 per size bucket (median images/s): " + "; ".join(
        f"{b['target_mp']:.1f} MP: {il['images_per_s_median']:.0f} vs {ih['images_per_s_median']:.0f} "
        f"({il['images_per_s_median'] / ih['images_per_s_median']:.2f}x)"
        for b, il, ih in zip(st["buckets"], results["interleaf_phash@1"]["per_bucket"], results["imagehash_phash@1"]["per_bucket"])))
    print(f"phash ratio T=1 best | median: {ratios['phash@1_best']:.2f}x | {ratios['phash@1_median']:.2f}x; "
          f"T=2: {ratios['phash@2_best']:.2f}x | {ratios['phash@2_median']:.2f}x (goal T=1 >= 5x)")
    print(f"phash draft={DRAFT} ratio vs plain imagehash T=1 best | median: {ratios['phash-draft@1_best']:.2f}x | {ratios['phash-draft@1_median']:.2f}x; "
          f"T=2: {ratios['phash-draft@2_best']:.2f}x | {ratios['phash-draft@2_median']:.2f}x; vs imagehash on the same drafted image T=1: "
          f"{ratios['phash-draft@1_vs_imagehash_drafted_best']:.2f}x | {ratios['phash-draft@1_vs_imagehash_drafted_median']:.2f}x")
    print(f"parity: phash {par['phash']['identical_fraction']:.1%}, dhash {par['dhash']['identical_fraction']:.1%} identical to imagehash; "
          f"phash draft {par['phash-draft']['identical_to_imagehash_on_drafted']:.1%} identical to imagehash on the drafted image, "
          f"{par['phash-draft']['identical_to_imagehash_full_decode']:.1%} to the full decode")
    discarded = sum(r["discarded_runs"] for rs in runs.values() for r in rs)
    print(f"CPUs busy just before timing: {busy:.0%}; CPU time of other processes during the {timing_s:.0f} s of timing: "
          f"{foreign_cpu_s:.1f} s; runs redone because of it: {discarded}")

    report = {
        **report_header("phash"),
        "versions": package_versions(),
        "settings": {
            "repeats": args.repeats, "warmup_images": WARMUP_IMAGES, "hash_size": 8,
            "child_env": {k: (v or "T") for k, v in CHILD_ENV.items()},
            "pinning": "T=1 children pinned to one core (sched_setaffinity)",
            "imagehash_call": "str(imagehash.phash(Image.open(BytesIO(b)))) per image (dhash likewise)",
            "interleaf_call": "interleaf.dedup.phash(list_of_bytes, threads=T) per size bucket (dhash likewise)",
            "draft": DRAFT,
            "draft_calls": "interleaf.dedup.phash(list_of_bytes, threads=T, draft=D); reference: im = Image.open(BytesIO(b)); im.draft('L', (D, D)); str(imagehash.phash(im))",
        },
        "cpu_busy_before_timing": busy,
        "timing_phase_s": timing_s,
        "other_processes_cpu_s_during_timing": foreign_cpu_s,
        "corpus": st | {"source_names": c["sources"]},
        "parity": par,
        "ratios_vs_imagehash": ratios,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out}")


if __name__ == "__main__":
    main()
