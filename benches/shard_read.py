#!/usr/bin/env python3
"""Shard read throughput: ``interleaf.read`` vs ``webdataset`` vs plain ``tarfile``.

Generates LAION-like WebDataset shards (default 1.2 GB in ~100 MB shards under
``bench-data/shards``, git-ignored) unless they are already there, warms the page cache,
then times each reader in a fresh subprocess (so peak RSS is per reader: the child's own
``VmHWM`` from /proc/self/status, read at its end; ``ru_maxrss`` would start at the parent's
RSS), 3 times each, interleaved round-robin, and reports the best and the median.

Readers timed (all single-threaded: children run with POLARS_MAX_THREADS=1,
RAYON_NUM_THREADS=1, OMP_NUM_THREADS=1; interleaf's reader is one stream on one thread):

* ``interleaf bs=1024``: ``for df in interleaf.read(shards, batch_size=1024): n += df.height``
* ``interleaf bs=256``:  the same with ``batch_size=256``
* ``webdataset``: ``for s in webdataset.WebDataset(shards, shardshuffle=False): len(s["jpg"])``
  (raw samples, no decoding; ``shardshuffle=False`` keeps the shard order and silences the
  "shardshuffle is None" warning)
* ``tarfile (floor)``: ``tarfile.open(p, "r|")``, reading every member's bytes
* ``raw read (ceiling)``: plain ``f.readinto`` over the files in 8 MiB chunks, for reference

Plus a flat-memory check: interleaf on the first shard only vs on all shards (peak RSS).

Usage::

    python benches/shard_read.py                 # 1.2 GB, 3 repeats
    python benches/shard_read.py --size-gb 2 --dir /tmp/shards --repeats 5

Results go to ``benches/results/shard_read.json`` (``--out``). Sizes: GB = 1e9 bytes,
MB = 1e6 bytes (MB/s is shard bytes on disk per second); RSS is in MiB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import git_commit, machine_info, versions

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO_ROOT / "bench-data" / "shards"
DEFAULT_OUT = REPO_ROOT / "benches" / "results" / "shard_read.json"
SHARD_PATTERN = "shard-{:06d}.tar"
GEN_VERSION = 1  # bump when the generator's output changes

SINGLE_THREAD_ENV = {
    "POLARS_MAX_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# --------------------------------------------------------------------------------------------
# Shard generation
# --------------------------------------------------------------------------------------------

_WORDS = (
    "a the of and with in on at for from by to an two three small large old new red blue "
    "green white black yellow wooden modern vintage beautiful little happy young woman man "
    "girl boy dog cat horse bird car house tree flower garden beach mountain river lake city "
    "street road bridge building room kitchen table chair bed window door wall floor sky "
    "sunset sunrise night winter summer spring autumn snow rain water sea ocean forest park "
    "field sitting standing walking running holding wearing looking playing smiling posing "
    "dress shirt shoes hat bag watch ring necklace poster vector illustration photo portrait "
    "closeup view background pattern design logo icon art painting drawing print canvas "
    "stock image picture set collection style home decor interior exterior wedding party "
    "birthday christmas food cake coffee pizza salad fruit vegetable bottle glass cup plate "
    "bowl phone laptop camera book paper map flag sign text word letter number isolated "
    "against over under near behind front side top bottom left right center abstract"
).split()


def _caption(rng) -> str:
    target = rng.randint(20, 200)
    words: list[str] = []
    n = -1
    while n < target:
        w = rng.choice(_WORDS)
        words.append(w)
        n += len(w) + 1
    text = " ".join(words)
    if len(text) > 200:
        text = text[:200].rstrip()
    return text[0].upper() + text[1:]


def _add(tf, name: str, data: bytes) -> None:
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tf.addfile(info, io.BytesIO(data))


def _write_shard(path: Path, shard_idx: int, seed: int, shard_bytes: int, budget: int) -> dict:
    """Writes one shard of about ``min(shard_bytes, budget)`` bytes; returns its manifest row."""
    import random
    import tarfile

    import numpy as np

    rng = np.random.default_rng([seed, shard_idx])
    prng = random.Random(seed * 1_000_003 + shard_idx)
    limit = min(shard_bytes, budget)
    n = 0
    jpg_bytes = 0
    tmp = path.with_suffix(".tar.tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
        while tf.offset < limit:
            key = f"{shard_idx:06d}{n:06d}"
            # JPEG-ish payload: lognormal, median 40 KB, clipped to [2 KB, 1 MB].
            size = int(np.clip(rng.lognormal(mean=np.log(40_000), sigma=0.5), 2_000, 1_000_000))
            jpg = b"\xff\xd8\xff\xe0" + rng.bytes(size - 6) + b"\xff\xd9"
            cap = _caption(prng)
            w, h = int(rng.integers(256, 1025)), int(rng.integers(256, 1025))
            meta = {
                "key": key,
                "url": f"https://images.example.com/{rng.bytes(8).hex()}.jpg",
                "caption": cap,
                "width": w,
                "height": h,
                "original_width": w * 2,
                "original_height": h * 2,
                "similarity": round(float(rng.uniform(0.28, 0.45)), 6),
                "punsafe": round(float(rng.beta(1, 30)), 6),
                "pwatermark": round(float(rng.beta(1, 5)), 6),
                "status": "success",
            }
            _add(tf, f"{key}.jpg", jpg)
            _add(tf, f"{key}.txt", cap.encode())
            _add(tf, f"{key}.json", json.dumps(meta).encode())
            n += 1
            jpg_bytes += len(jpg)
    tmp.rename(path)
    return {"file": path.name, "bytes": path.stat().st_size, "samples": n, "jpg_bytes": jpg_bytes}


def ensure_shards(directory: Path, size_gb: float, shard_mb: float, seed: int) -> dict:
    """Generates the shards unless a matching manifest says they are already there."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / "manifest.json"
    params = {"generator": GEN_VERSION, "size_gb": size_gb, "shard_mb": shard_mb, "seed": seed}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("params") == params and all(
                (directory / s["file"]).is_file() and (directory / s["file"]).stat().st_size == s["bytes"]
                for s in manifest["shards"]
            ):
                print(f"shards: reusing {len(manifest['shards'])} shards in {directory}", flush=True)
                return manifest
        except (ValueError, KeyError, TypeError):
            pass
    for old in directory.glob("shard-*.tar*"):
        old.unlink()
    total_target = int(size_gb * 1e9)
    shard_bytes = int(shard_mb * 1e6)
    print(f"shards: generating {total_target / 1e9:.2f} GB in ~{shard_mb:g} MB shards into {directory}", flush=True)
    t0 = time.perf_counter()
    shards = []
    total = 0
    while total < total_target:
        row = _write_shard(directory / SHARD_PATTERN.format(len(shards)), len(shards), seed, shard_bytes, total_target - total)
        shards.append(row)
        total += row["bytes"]
        print(f"  {row['file']}: {row['bytes'] / 1e6:.1f} MB, {row['samples']} samples", flush=True)
    manifest = {"params": params, "shards": shards}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(f"shards: done in {time.perf_counter() - t0:.1f}s", flush=True)
    return manifest


def warm_page_cache(paths: list[str]) -> float:
    buf = bytearray(8 << 20)
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# Child side: one measurement per process
# --------------------------------------------------------------------------------------------


def _rss_mib(field: str = "VmRSS") -> float:
    """``field`` of /proc/self/status in MiB: ``VmRSS`` (now) or ``VmHWM`` (this process's
    peak since its exec: unlike ``ru_maxrss``, it does not start at the parent's RSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> dict:
    import resource
    import warnings

    kind, paths = spec["kind"], spec["paths"]
    caught: list[str] = []
    if kind == "interleaf":
        import interleaf

        def run():
            reader = interleaf.read(paths, batch_size=spec["batch_size"])
            rows = batches = 0
            for df in reader:
                rows += df.height
                batches += 1
            st = reader.stats
            return {"samples": st["documents"], "rows": rows, "batches": batches, "errors": st["errors"], "bytes_read": st["bytes_read"]}

    elif kind == "webdataset":
        import webdataset as wds

        def run():
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                ds = wds.WebDataset(paths, shardshuffle=False)
                samples = jpg = 0
                for sample in ds:
                    samples += 1
                    jpg += len(sample["jpg"])
            caught.extend(str(x.message) for x in w if not issubclass(x.category, ResourceWarning))
            return {"samples": samples, "jpg_bytes": jpg}

    elif kind == "tarfile":
        import tarfile

        def run():
            samples = members = nbytes = 0
            for p in paths:
                with tarfile.open(p, "r|") as tf:
                    for m in tf:
                        if m.isfile():
                            data = tf.extractfile(m).read()
                            members += 1
                            nbytes += len(data)
                            if m.name.endswith(".jpg"):
                                samples += 1
            return {"samples": samples, "members": members, "member_bytes": nbytes}

    elif kind == "raw":

        def run():
            buf = bytearray(8 << 20)
            nbytes = 0
            for p in paths:
                with open(p, "rb", buffering=0) as f:
                    while k := f.readinto(buf):
                        nbytes += k
            return {"samples": spec["expected_samples"], "bytes": nbytes}

    else:
        raise ValueError(kind)

    rss_before = _rss_mib()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = run()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    out.update(
        wall_s=wall,
        cpu_s=(ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
        # The child's own peak: VmHWM, read at its end. ru_maxrss (Linux: KiB) starts at the
        # parent's RSS when the child is spawned, so it is kept apart, for reference only.
        peak_rss_mib=_rss_mib("VmHWM"),
        ru_maxrss_mib=ru1.ru_maxrss / 1024,
        rss_after_import_mib=rss_before,
        peak_rss_before_read_mib=maxrss_before,
        warnings=caught,
    )
    return out


def run_child(spec: dict) -> dict:
    env = {**os.environ, **SINGLE_THREAD_ENV}
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['kind']} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Parent: orchestration and report
# --------------------------------------------------------------------------------------------


def package_versions() -> dict:
    out = versions(("interleaf", "webdataset", "polars", "numpy", "pyarrow"))
    return out


def summarize(runs: list[dict], total_bytes: int) -> dict:
    walls = [r["wall_s"] for r in runs]
    samples = runs[0]["samples"]
    best, med = min(walls), statistics.median(walls)
    return {
        "samples": samples,
        "wall_s": {"best": best, "median": med, "all": walls},
        "samples_per_s": {"best": samples / best, "median": samples / med},
        "mb_per_s": {"best": total_bytes / 1e6 / best, "median": total_bytes / 1e6 / med},
        "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
        "peak_rss_mib": {"max": max(r["peak_rss_mib"] for r in runs), "median": statistics.median(r["peak_rss_mib"] for r in runs)},
        "rss_after_import_mib": statistics.median(r["rss_after_import_mib"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=1.2, help="total shard size to generate, GB (1e9 bytes); default 1.2")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"shard directory (default {DEFAULT_DIR.relative_to(REPO_ROOT)})")
    ap.add_argument("--shard-mb", type=float, default=100, help="approximate shard size, MB (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.size_gb * 1e9 < 1e9:
        print("note: --size-gb below 1 GB; the I/O numbers mean less on a small set", file=sys.stderr)

    directory = args.dir if args.dir.is_absolute() else (Path.cwd() / args.dir)
    manifest = ensure_shards(directory, args.size_gb, args.shard_mb, args.seed)
    paths = [str(directory / s["file"]) for s in manifest["shards"]]
    total_bytes = sum(s["bytes"] for s in manifest["shards"])
    n_samples = sum(s["samples"] for s in manifest["shards"])
    jpg_bytes = sum(s["jpg_bytes"] for s in manifest["shards"])
    first = manifest["shards"][0]

    warm_s = warm_page_cache(paths)
    print(f"page cache warmed: {total_bytes / 1e6:.0f} MB in {warm_s:.2f}s", flush=True)

    configs = {
        "interleaf bs=1024": {"kind": "interleaf", "batch_size": 1024, "paths": paths},
        "interleaf bs=256": {"kind": "interleaf", "batch_size": 256, "paths": paths},
        "webdataset": {"kind": "webdataset", "paths": paths},
        "tarfile (floor)": {"kind": "tarfile", "paths": paths},
        "raw read (ceiling)": {"kind": "raw", "paths": paths, "expected_samples": n_samples},
        "interleaf bs=1024, first shard": {"kind": "interleaf", "batch_size": 1024, "paths": paths[:1]},
    }
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for rep in range(args.repeats):
        for name, spec in configs.items():  # round-robin, so drift hits every reader alike
            r = run_child(spec)
            runs[name].append(r)
            print(f"  [{rep + 1}/{args.repeats}] {name:<32} {r['wall_s']:7.3f}s  peak RSS {r['peak_rss_mib']:7.1f} MiB", flush=True)

    # Every reader must have seen every sample.
    for name, rs in runs.items():
        want = first["samples"] if name.endswith("first shard") else n_samples
        for r in rs:
            if r["samples"] != want:
                raise SystemExit(f"{name}: saw {r['samples']} samples, expected {want}")
            if r.get("errors"):
                raise SystemExit(f"{name}: reader errors {r['errors']}")

    results = {}
    for name, rs in runs.items():
        nbytes = first["bytes"] if name.endswith("first shard") else total_bytes
        results[name] = summarize(rs, nbytes)
    wds = results["webdataset"]
    for res in results.values():
        res["vs_webdataset"] = {
            "best": res["samples_per_s"]["best"] / wds["samples_per_s"]["best"],
            "median": res["samples_per_s"]["median"] / wds["samples_per_s"]["median"],
        }

    # ---- table ----
    info = machine_info()
    versions = package_versions()
    print()
    print(f"Shard read benchmark: {len(paths)} shards, {total_bytes / 1e9:.2f} GB, {n_samples} samples "
          f"(mean jpg {jpg_bytes / n_samples / 1e3:.1f} KB), page cache warm, {args.repeats} runs each, "
          f"1 thread (POLARS_MAX_THREADS=1, RAYON_NUM_THREADS=1)")
    print(f"{info['cpu_model']}, {info['cores']} cores; interleaf {versions['interleaf']}, "
          f"webdataset {versions['webdataset']}, polars {versions['polars']}, python {info['python']}")
    hdr = f"{'reader':<22} {'samples/s best':>14} {'median':>9} {'MB/s best':>10} {'median':>8} {'wall s best':>11} {'median':>7} {'peak RSS MiB':>12} {'cpu/wall':>8} {'vs wds (best/med)':>18}"
    print(hdr)
    print("-" * len(hdr))
    for name, res in results.items():
        if name.endswith("first shard"):
            continue
        sps, mbs, w = res["samples_per_s"], res["mb_per_s"], res["wall_s"]
        ratio = res["vs_webdataset"]
        print(f"{name:<22} {sps['best']:>14,.0f} {sps['median']:>9,.0f} {mbs['best']:>10,.0f} {mbs['median']:>8,.0f} "
              f"{w['best']:>11.3f} {w['median']:>7.3f} {res['peak_rss_mib']['max']:>12.1f} "
              f"{res['cpu_s_median'] / w['median']:>8.2f} {ratio['best']:>8.2f}x/{ratio['median']:.2f}x")
    one, all_ = results["interleaf bs=1024, first shard"], results["interleaf bs=1024"]
    print()
    print("Flat memory (interleaf bs=1024, peak RSS incl. ~{:.0f} MiB of imports):".format(all_["rss_after_import_mib"]))
    print(f"  first shard only: {first['bytes'] / 1e6:7.1f} MB  {first['samples']:>6} samples  peak RSS {one['peak_rss_mib']['max']:7.1f} MiB")
    print(f"  all {len(paths):>2} shards:     {total_bytes / 1e6:7.1f} MB  {n_samples:>6} samples  peak RSS {all_['peak_rss_mib']['max']:7.1f} MiB"
          f"  (x{all_['peak_rss_mib']['max'] / one['peak_rss_mib']['max']:.2f} RSS for x{total_bytes / first['bytes']:.1f} data)")
    warns = sorted({w for r in runs["webdataset"] for w in r["warnings"]})
    if warns:
        print(f"webdataset warnings: {warns}")

    out = {
        "benchmark": "shard_read",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": info,
        "versions": versions,
        "settings": {
            "repeats": args.repeats,
            "child_env": SINGLE_THREAD_ENV,
            "page_cache": "warm (all files read once before timing)",
            "units": "MB = 1e6 bytes of shard files on disk; RSS in MiB (peak_rss_mib: VmHWM of the child, read at its end; ru_maxrss_mib: its ru_maxrss, which starts at the parent's RSS)",
            "ratio": "vs_webdataset = samples/s of the reader / samples/s of webdataset",
        },
        "dataset": {
            "dir": str(directory),
            "params": manifest["params"],
            "shards": len(paths),
            "bytes": total_bytes,
            "samples": n_samples,
            "mean_jpg_bytes": jpg_bytes / n_samples,
            "first_shard": first,
            "warm_s": warm_s,
        },
        "results": results,
        "flat_memory": {
            "first_shard_peak_rss_mib": one["peak_rss_mib"]["max"],
            "all_shards_peak_rss_mib": all_["peak_rss_mib"]["max"],
            "rss_after_import_mib": all_["rss_after_import_mib"],
            "first_shard_bytes": first["bytes"],
            "all_shards_bytes": total_bytes,
        },
        "webdataset_warnings": warns,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
