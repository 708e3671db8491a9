#!/usr/bin/env python3
"""The main job, end to end (``interleaf.run``), three ways:

1. **rules** (no model): OBELICS's paragraph and document text rules + MinHash dedup + pHash
   dedup + image statistics and OBELICS's image rules, on ``--docs`` interleaved documents
   (default 100,000; OBELICS jsonl shards of 10,000, 1-3 small JPEGs and 2-4 paragraphs each),
   against the same rules as Data-Juicer ops (``dj-process``, its ``np`` = the cores) on the
   same documents (``--dj-docs``, default the same): documents/s and peak RSS, and interleaf's
   peak RSS at a tenth of the input (memory must stay flat when the input grows).
2. **datacomp**: the ``datacomp`` preset with a ViT-B/32-sized CLIP (random weights, real
   shapes; see ``benches/models.py``) on ``--pairs`` WebDataset pairs (real JPEGs, 256-512 px
   crops of the bundled photographs, and captions): end-to-end pairs/s against the CLIP model
   alone embedding the same images and captions (``embed_images`` + ``embed_texts``).
3. **refilter**: ``interleaf filter`` with a changed CLIP threshold on run 2's folder, against
   run 2's time.

Each interleaf run and each Data-Juicer run is a fresh child process. Peak RSS of an interleaf
child is its own: the largest of its ``VmHWM`` (/proc/self/status, read at its end) and its
waited-for workers' ``ru_maxrss``; Data-Juicer's is the ``ru_maxrss`` of its process tree from
``wait4``, which starts at this script's RSS when the child is spawned (that floor is recorded
next to it, ``parent_rss_floor_mb``); the rules throughput ratio compares the two processes' wall times, each
started with the data already in the page cache. Data is generated once into ``bench-data/pipeline/`` (git-ignored).

Usage::

    python benches/pipeline.py                         # all three (~20 min on 2 cores)
    python benches/pipeline.py --only rules --docs 20000 --dj-docs 2000
    python benches/pipeline.py --only datacomp,refilter --pairs 1000

Data-Juicer: ``pip install py-data-juicer`` into any environment and pass its ``dj-process``
with ``--dj`` (default: ``dj-process`` on PATH; skipped with a note when absent).

Results: ``benches/results/pipeline.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _common import report_header, versions

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "bench-data" / "pipeline"
SAMPLE = REPO_ROOT / "python" / "interleaf" / "data" / "sample"
DEFAULT_OUT = REPO_ROOT / "benches" / "results" / "pipeline.json"
GEN_VERSION = 2  # 2: every image its own file except the planted repeats (1 reused 2,000 images)

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she "
    "there been one all we their has would when if so no will more can out up about who into them some could time these two may then "
    "do first any my now such like our over man me even most made after also did many before must through back years where much your "
    "way well down should because each just those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old year off come since against go came right "
    "used take three museum river garden winter painting city music station village summer bridge library harbour mountain forest market"
).split()


# --- data -----------------------------------------------------------------------------------


def _image(photos: list, rng: random.Random, sides: tuple[int, int] = (180, 320)) -> bytes:
    """A JPEG: a random crop of one of the bundled photographs, longer side in ``sides`` px,
    quality 70-92."""
    im = photos[rng.randrange(len(photos))]
    w, h = im.size
    cw, ch = rng.randint(w // 2, w), rng.randint(h // 2, h)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    crop = im.crop((x, y, x + cw, y + ch))
    side = rng.randint(*sides)
    crop.thumbnail((side, side))
    if min(crop.size) < 40:
        crop = crop.resize((max(crop.size[0], 40), max(crop.size[1], 40)))
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=rng.randint(70, 92))
    return buf.getvalue()


def _paragraph(rng: random.Random) -> str:
    n = rng.randint(8, 90)
    words = rng.choices(WORDS, weights=[1 / (k + 1) ** 0.9 for k in range(len(WORDS))], k=n)
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "!", "?"])


def make_rules_data(docs: int, shard_docs: int = 10_000, seed: int = 0) -> list[Path]:
    """OBELICS jsonl shards of ``docs`` documents (one in 20 repeats an earlier one's text, one in
    25 an earlier image) and the image folder they name; cached by size."""
    folder = DATA / f"rules-{docs}-v{GEN_VERSION}"
    shards = sorted(folder.glob("*.jsonl"))
    if shards:
        return shards
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    from PIL import Image

    rng = random.Random(seed)
    photos = [Image.open(p).convert("RGB") for p in sorted((SAMPLE / "images").iterdir())]
    names_made: list[str] = []

    def image_name() -> str:
        # One in 25 repeats an earlier image (a planted duplicate); the rest are new files.
        if names_made and rng.random() < 0.04:
            return names_made[rng.randrange(len(names_made))]
        name = f"img{len(names_made):06d}.jpg"
        (tmp / "images" / name).write_bytes(_image(photos, rng))
        names_made.append(name)
        return name

    texts: list[list[str]] = []
    for s in range(0, docs, shard_docs):
        with open(tmp / f"obelics-{s // shard_docs:05d}.jsonl", "w") as f:
            for d in range(s, min(docs, s + shard_docs)):
                paras = texts[rng.randrange(len(texts))] if texts and rng.random() < 0.05 else [_paragraph(rng) for _ in range(rng.randint(2, 4))]
                texts.append(paras)
                n_img = rng.randint(1, 3)
                names = [image_name() for _ in range(n_img)]
                t: list[str | None] = []
                im: list[str | None] = []
                for i, p in enumerate(paras):
                    t.append(p)
                    im.append(None)
                    if i < len(names):
                        t.append(None)
                        im.append("images/" + names[i])
                f.write(json.dumps({"id": f"d{d}", "texts": t, "images": im, "metadata": "{}"}) + "\n")
    tmp.rename(folder)
    return sorted(folder.glob("*.jsonl"))


def rules_recipe(path: Path, draft: int | None = None) -> Path:
    path.write_text(
        """name: bench-rules
signals:
  text: {type: text, level: node, paragraphs: true}
  doc_text: {type: text, level: doc, paragraphs: true}
  image: {type: image, header_only: true}   # size and format rules read headers, as Data-Juicer's filters do
dedup:
  - {name: minhash, method: minhash, threshold: 0.8}
  - {name: phash, method: phash, radius: 5DRAFT}
filters:
  node:
    image_rules: "image_obelics_ok"
    paragraphs: "text_kept_text IS NOT NULL"
  doc:
    words: "doc_text_n_words BETWEEN 10 AND 2000"
    char_repetition: "doc_text_char_repetition <= 0.1"
    word_repetition: "doc_text_word_repetition <= 0.2"
    special_characters: "doc_text_special_char_ratio <= 0.275"
    stop_words: "doc_text_stopword_ratio >= 0.35"
    flagged_words: "doc_text_flagged_word_ratio <= 0.01"
    images: "doc_images BETWEEN 1 AND 30"
output:
  text_from: text_kept_text
""".replace("DRAFT", f", draft: {draft}" if draft else "")
    )
    return path


def dj_data(shards: list[Path], limit: int, dest: Path) -> Path:
    """The same documents in Data-Juicer's layout: ``text`` with an image token per image,
    ``images`` (absolute paths)."""
    token = "<__dj__image>"
    n = 0
    with open(dest, "w") as f:
        for s in shards:
            root = s.parent
            for line in open(s):
                r = json.loads(line)
                parts, images = [], []
                for t, im in zip(r["texts"], r["images"], strict=True):
                    if im is not None:
                        parts.append(token)
                        images.append(str(root / im))
                    elif t is not None:
                        parts.append(t)
                f.write(json.dumps({"id": r["id"], "text": "\n\n".join(parts), "images": images}) + "\n")
                n += 1
                if n >= limit:
                    return dest
    return dest


def dj_assets(folder: Path) -> Path:
    """Data-Juicer's word lists, offline: OBELICS's stop words and flagged words (the lists
    interleaf uses) in Data-Juicer's ``{lang: [words]}`` files (it would download its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = REPO_ROOT / "rust" / "core" / "data" / "obelics"
    for kind, name in (("stopwords", "stopwords.txt"), ("flagged_words", "flagged_words.txt")):
        words = [w for w in (data / name).read_text().splitlines() if w.strip() and not w.startswith("#")]
        (folder / f"{kind}.json").write_text(json.dumps({"en": words}))
    return folder


def dj_config(data: Path, out: Path, np_: int) -> str:
    """The rules as Data-Juicer ops (OBELICS's thresholds where the op has them)."""
    assets = dj_assets(out.parent / "assets")
    return f"""project_name: interleaf-bench
dataset_path: {data}
export_path: {out}
np: {np_}
text_keys: text
image_key: images
process:
  - words_num_filter: {{min_num: 10, max_num: 2000}}
  - character_repetition_filter: {{rep_len: 10, max_ratio: 0.1}}
  - word_repetition_filter: {{rep_len: 5, max_ratio: 0.2}}
  - special_characters_filter: {{max_ratio: 0.275}}
  - stopwords_filter: {{lang: en, min_ratio: 0.35, stopwords_dir: {assets}}}
  - flagged_words_filter: {{lang: en, max_ratio: 0.01, flagged_words_dir: {assets}}}
  - image_shape_filter: {{min_width: 150, min_height: 150, max_width: 20000, max_height: 20000}}
  - image_aspect_ratio_filter: {{min_ratio: 0.5, max_ratio: 2.0}}
  - document_minhash_deduplicator: {{tokenization: space, window_size: 5, num_permutations: 128, jaccard_threshold: 0.8}}
  - image_deduplicator: {{method: phash}}
"""


def pairs_data(n: int) -> Path:
    """One WebDataset shard of ``n`` image-caption pairs: real JPEGs (random crops of the bundled
    photographs, 256-512 px, as LAION-sized thumbnails) and 6-30 word captions; cached."""
    from PIL import Image

    dest = DATA / f"pairs-{n}-v{GEN_VERSION}.tar"
    if dest.exists():
        return dest
    DATA.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    photos = [Image.open(p).convert("RGB") for p in sorted((SAMPLE / "images").iterdir())]
    tmp = dest.with_suffix(".tmp")

    def add(t: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))

    with tarfile.open(tmp, "w") as out:
        for i in range(n):
            words = rng.choices(WORDS, k=rng.randint(6, 30))
            add(out, f"{i:09d}.jpg", _image(photos, rng, (256, 512)))
            add(out, f"{i:09d}.txt", " ".join(words).capitalize().encode())
            add(out, f"{i:09d}.json", json.dumps({"key": f"{i:09d}"}).encode())
    tmp.rename(dest)
    return dest


# --- running --------------------------------------------------------------------------------


def run_measured(argv: list[str], cwd: Path) -> tuple[int, str, str, float]:
    """Runs ``argv``; returns (exit code, stdout, stderr, peak RSS in MiB): the largest of the
    process and the children it waited for, from its own ``wait4`` rusage (``RUSAGE_CHILDREN``
    would be a maximum over every earlier child of this script too). On Linux that value starts
    at this process's RSS at the spawn (see :func:`parent_rss_floor`): the interleaf children
    report their own peak instead (``PEAK_CODE``)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        proc = subprocess.Popen(argv, stdout=fo, stderr=fe, text=True, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        return proc.returncode, fo.read(), fe.read(), round(usage.ru_maxrss / 1024, 1)


def parent_rss_floor() -> float:
    """This process's own peak RSS in MiB: the value a child's ``ru_maxrss`` starts at."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# Appended to every Python child: its own peak RSS (MiB), the largest of its VmHWM (fresh after
# exec) and its waited-for children's ru_maxrss (the workers; theirs start at this child's RSS
# at their spawn, at most its VmHWM). Printed as the last JSON line's "own_peak_rss_mb".
PEAK_CODE = """
def _own_peak_rss_mb():
    import resource
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return round(max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024, 1)
"""


def child(code: str, *args: str) -> dict:
    """Runs ``code`` (Python printing one JSON line last, with ``own_peak_rss_mb`` from
    ``PEAK_CODE``) in a fresh process; adds its wall time and peak RSS."""
    t0 = time.perf_counter()
    floor = parent_rss_floor()
    rc, out, err, peak = run_measured([sys.executable, "-c", PEAK_CODE + code, *args], REPO_ROOT)
    wall = time.perf_counter() - t0
    if rc:
        sys.exit(f"child failed:\n{err[-3000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["process_wall_s"] = round(wall, 2)
    res["peak_rss_mb"] = res.pop("own_peak_rss_mb")
    res["wait4_maxrss_mb"], res["parent_rss_floor_mb"] = peak, floor
    return res


RUN_CODE = """
import json, sys, time, interleaf
recipe, out, models, workers, paths = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
t0 = time.perf_counter()
s = interleaf.run(recipe, paths, out, models=models, workers=workers, device="cpu", progress=False, overwrite=True)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "documents": s["documents"], "stages": s["stages"], "own_peak_rss_mb": _own_peak_rss_mb()}))
"""


def warm_page_cache(shards: list[Path]) -> float:
    """Reads every file of the rules data once (the shards and their ``images/`` folder), so
    that each timed side starts with the data in the page cache: whichever side ran second
    would otherwise read what the first had just brought in. Returns the seconds it took."""
    t0 = time.perf_counter()
    for folder in {s.parent for s in shards}:
        for f in [*shards, *sorted((folder / "images").iterdir())]:
            with open(f, "rb") as fh:
                while fh.read(1 << 20):
                    pass
    return time.perf_counter() - t0


def run_rules(args, res: dict) -> None:
    shards = make_rules_data(args.docs)
    recipe = rules_recipe(DATA / "rules.yaml", args.phash_draft)
    small = make_rules_data(max(1000, args.docs // 10))
    out = DATA / "out-rules"
    warm_page_cache(small)
    r_small = child(RUN_CODE, str(recipe), str(out), "{}", str(args.workers), *map(str, small))
    print(f"rules: page cache warmed in {warm_page_cache(shards):.1f} s")
    r = child(RUN_CODE, str(recipe), str(out), "{}", str(args.workers), *map(str, shards))
    docs = r["documents"]["in"]
    res["rules"] = {
        "documents": docs,
        "interleaf": {"seconds": round(r["seconds"], 2), "process_seconds": r["process_wall_s"], "docs_per_s": round(docs / r["seconds"], 1), "peak_rss_mb": r["peak_rss_mb"], "stages": r["stages"], "kept": r["documents"]["kept"]},
        "interleaf_tenth": {"documents": r_small["documents"]["in"], "seconds": round(r_small["seconds"], 2), "peak_rss_mb": r_small["peak_rss_mb"]},
    }
    print(f"rules: interleaf {docs:,} docs in {r['seconds']:.1f} s = {docs / r['seconds']:,.0f} docs/s, peak RSS {r['peak_rss_mb']} MB (a tenth: {r_small['peak_rss_mb']} MB)")
    dj = shutil.which(args.dj) or (args.dj if os.path.exists(args.dj) else None)
    if not dj:
        res["rules"]["data_juicer"] = "not installed (pip install py-data-juicer; --dj PATH)"
        print("rules: Data-Juicer not installed, skipped")
        return
    n = min(args.dj_docs or docs, docs)
    work = DATA / "dj"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = dj_data(shards, n, work / "input.jsonl")
    cfg = work / "config.yaml"
    cfg.write_text(dj_config(data, work / "out.jsonl", os.cpu_count() or 1))
    warm_page_cache(shards)
    floor = parent_rss_floor()
    t0 = time.perf_counter()
    rc, out, err, dj_peak = run_measured([dj, "--config", str(cfg)], work)
    wall = time.perf_counter() - t0
    if rc:
        res["rules"]["data_juicer"] = {"error": err[-2000:]}
        print("rules: Data-Juicer failed:", err[-1500:])
        return
    kept = sum(1 for _ in open(work / "out.jsonl")) if (work / "out.jsonl").exists() else None
    import re

    m = re.search(r"All OPs are done in ([\d.]+)s", out + err)
    ops = float(m.group(1)) if m else None
    res["rules"]["data_juicer"] = {"documents": n, "seconds": round(wall, 2), "docs_per_s": round(n / wall, 1), "ops_seconds": ops, "ops_docs_per_s": round(n / ops, 1) if ops else None, "peak_rss_mb": dj_peak, "parent_rss_floor_mb": floor, "kept": kept, "np": os.cpu_count()}
    # The headline compares whole processes (start-up, reading, writing and all); the second
    # ratio sets interleaf.run() against Data-Juicer's time in its ops alone.
    ratio = (docs / r["process_wall_s"]) / (n / wall)
    res["rules"]["throughput_ratio"] = round(ratio, 1)
    if ops:
        res["rules"]["throughput_ratio_run_vs_ops_only"] = round((docs / r["seconds"]) / (n / ops), 1)
    print(f"rules: Data-Juicer {n:,} docs in {wall:.1f} s = {n / wall:,.0f} docs/s ({ops} s in its ops); interleaf / Data-Juicer = {ratio:.1f}x process wall" + (f", {res['rules']['throughput_ratio_run_vs_ops_only']}x interleaf.run() against its op time alone" if ops else ""))


CLIP_ALONE = """
import json, sys, time, interleaf, polars as pl
from interleaf import models
clip = models.load(sys.argv[1], device="cpu")
df = pl.concat(list(interleaf.read(sys.argv[2])))
imgs = df.filter(pl.col("kind") == "image").get_column("image")
txts = df.filter(pl.col("kind") == "text").get_column("text")
clip.embed_images(imgs[:32]); clip.embed_texts(txts[:32])
t0 = time.perf_counter()
clip.embed_images(imgs)
clip.embed_texts(txts)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "pairs": imgs.len(), "own_peak_rss_mb": _own_peak_rss_mb()}))
"""

FILTER_CODE = """
import json, sys, time
from interleaf.pipeline import refilter
t0 = time.perf_counter()
s = refilter(sys.argv[1], sys.argv[2], progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "kept": s["documents"]["kept"], "own_peak_rss_mb": _own_peak_rss_mb()}))
"""


def run_datacomp(args, res: dict) -> None:
    model = REPO_ROOT / "bench-data" / "models" / "clip-b32"
    if not (model / "onnx" / "vision_model.onnx").is_file():
        sys.path.insert(0, str(Path(__file__).parent))
        from models import build_model  # the ViT-B/32-sized model, exported once (needs torch)

        build_model("b32", fp16=False)
    shard = pairs_data(args.pairs)
    alone = child(CLIP_ALONE, str(model), str(shard))
    out = DATA / "out-datacomp"
    r = child(RUN_CODE, "datacomp", str(out), json.dumps({"clip": str(model)}), "1", str(shard))
    pairs = r["documents"]["in"]
    ratio = (pairs / r["seconds"]) / (alone["pairs"] / alone["seconds"])
    res["datacomp"] = {
        "pairs": pairs,
        "clip_alone": {"seconds": round(alone["seconds"], 2), "pairs_per_s": round(alone["pairs"] / alone["seconds"], 2)},
        "pipeline": {"seconds": round(r["seconds"], 2), "pairs_per_s": round(pairs / r["seconds"], 2), "stages": r["stages"], "peak_rss_mb": r["peak_rss_mb"]},
        "pipeline_over_model": round(ratio, 3),
    }
    print(f"datacomp: CLIP alone {alone['pairs'] / alone['seconds']:.1f} pairs/s; the preset end to end {pairs / r['seconds']:.1f} pairs/s = {100 * ratio:.0f}% of the model alone")
    if "refilter" in args.only:
        from interleaf.recipes import preset_text

        edited = DATA / "datacomp-edited.yaml"
        edited.write_text(preset_text("datacomp").replace("clip_alignment_score >= 0.28", "clip_alignment_score >= 0.05"))
        f = child(FILTER_CODE, str(out), str(edited))
        res["refilter"] = {"seconds": round(f["seconds"], 3), "scoring_run_seconds": round(r["seconds"], 2), "speedup": round(r["seconds"] / f["seconds"], 1)}
        print(f"refilter: interleaf filter with a new CLIP threshold {f['seconds']:.2f} s vs the scoring run {r['seconds']:.1f} s = {r['seconds'] / f['seconds']:.0f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="rules,datacomp,refilter", help="comma-separated: rules, datacomp, refilter")
    ap.add_argument("--docs", type=int, default=100_000, help="rules: documents (default %(default)s)")
    ap.add_argument("--dj-docs", type=int, default=None, help="rules: documents for Data-Juicer (default: --docs)")
    ap.add_argument("--dj", default="dj-process", help="Data-Juicer's dj-process (default: on PATH)")
    ap.add_argument("--workers", type=int, default=1, help="rules: interleaf --workers (default %(default)s)")
    ap.add_argument("--phash-draft", type=int, default=None, help="rules: pHash from JPEGs decoded reduced to at least this many pixels (interleaf's opt-in fast path; default: exact)")
    ap.add_argument("--pairs", type=int, default=2000, help="datacomp: pairs (default %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    args.only = {x.strip() for x in args.only.split(",")}
    res: dict = {"header": report_header("pipeline"), "versions": versions(["interleaf", "polars", "onnxruntime", "py-data-juicer"]), "args": {k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if "rules" in args.only:
        run_rules(args, res)
    if args.only & {"datacomp", "refilter"}:
        run_datacomp(args, res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    prev = json.loads(args.out.read_text()) if args.out.exists() else {}
    prev.update({k: v for k, v in res.items()})
    args.out.write_text(json.dumps(prev, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
