#!/usr/bin/env python3
"""MinHash throughput: texts -> 128-permutation signatures of distinct 5-word shingles.

Compared, on the same corpus of real English paragraphs:

* ``interleaf fast``: ``MinHasher(num_perm=128, n=5, unit="word", seed=1, mode="fast",
  threads=T).signatures(texts)`` (shingling in Rust), T = 1 and 2;
* ``interleaf datasketch``: the same with ``mode="datasketch", scheme="affine32"``, bit-identical
  to datasketch 2.0 (checked), T = 1 and 2;
* ``rensa``: ``RMinHash.digest_matrix_from_token_sets(token_sets, num_perm=128, seed=1)`` with
  the shingles built in Python the way rensa users do
  (``w = text.split(); [" ".join(w[i:i+5]) for i in range(len(w) - 4)]``). Its time includes that
  shingling; the digest call alone is reported too (``rensa (digest only)``). rensa has no
  threads argument and its bulk digest starts worker threads of its own (it keeps ~1.8 of 2
  cores busy even with ``RAYON_NUM_THREADS=1``), so T=1 means the child is pinned to one core
  (as every T=1 child is) and T=2 means unpinned on 2 cores;
* ``datasketch``: per text ``m = MinHash(num_perm=128, seed=1)``,
  ``m.update_batch([s.encode() for s in shingles])`` with the same Python shingling, on a random
  subset (``--ds-subset``, default 5,000 texts) because it is slow; its texts/s is per text on
  that subset (the subset's mean length is printed next to the corpus's). Most of that time is
  ``MinHash()`` itself (it redraws the permutations with ``RandomState`` for every text), so a
  second, informational row reuses them:
  ``MinHash(num_perm=128, seed=1, permutations=perms, scheme="affine32")`` (same hash values).
  The ratios use the first, plain row.

Corpus (built once, cached in ``bench-data/minhash/corpus.json``, git-ignored): docstrings of
every ``.py`` file of the Python standard library and of site-packages (read with ``ast``, no
imports), ``/usr/share/common-licenses/*`` and ``/usr/share/doc/*/copyright``; each source is cut
into paragraphs at blank lines, consecutive paragraphs of one source are merged until a
document has >= 50 words, documents over 400 words are cut into equal parts, exact duplicates
(same word sequence) and documents that are mostly not words (code, tables) are dropped.
Then ``--near-dups`` (default 2%) of the documents get a planted near-duplicate (2-10% of
their words deleted or replaced by a random corpus word) and the whole is shuffled with
``--seed``. If fewer than ``--min-docs`` remain the corpus is repeated (reported); above
``--max-docs`` a random sample is kept.

Each measurement runs in a fresh child process (env ``RAYON_NUM_THREADS=T``,
``OMP_NUM_THREADS=1``...; T=1 children are pinned to one core with ``sched_setaffinity``), after
one untimed warm-up call on 500 texts; configurations run round-robin, ``--repeats`` times
(default 3): best and median are reported. A run during which other processes used more than
``--max-foreign`` (3%) of the CPUs (from ``/proc/stat``) is discarded and redone after
``--retry-wait`` seconds, up to ``--max-retries`` times. ``cpu/wall`` = process CPU time / wall time of the
timed call (how many cores it kept busy).

Correctness (untimed, in the parent): interleaf datasketch-mode rows == datasketch
``hashvalues`` on the datasketch subset (assert); threads=1 and threads=2 give identical rows
(assert); interleaf's ``shingles`` == the Python shingle set (assert, subset); mean absolute
error of the Jaccard estimates (interleaf fast, rensa, interleaf datasketch mode) against the
exact Jaccard of the shingle sets on ``--pairs`` (default 500) pairs: half planted
near-duplicates, half natural pairs sharing at least one shingle.

Usage::

    python benches/minhash.py                      # builds the corpus on first run (~1 min)
    python benches/minhash.py --repeats 5 --ds-subset 5000
    python benches/minhash.py --rebuild-corpus

Results: ``benches/results/minhash.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import glob
import hashlib
import json
import os
import platform
import random
import re
import resource
import statistics
import sys
import sysconfig
import time
from pathlib import Path

from _common import add_quiet_machine_args, child_env, git_commit, machine_info, run_quiet, versions
from _common import busy_cpu_s as _busy_cpu_s
from _common import cpu_s as _cpu_s

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT / "bench-data" / "minhash" / "corpus.json"
DEFAULT_OUT = REPO_ROOT / "benches" / "results" / "minhash.json"
CORPUS_VERSION = 1  # bump when the corpus builder's output changes

NUM_PERM, NGRAM, SEED = 128, 5, 1
MIN_WORDS, MAX_WORDS = 50, 400
WARMUP_TEXTS = 500

CHILD_ENV = {
    "POLARS_MAX_THREADS": None,  # set to T
    "RAYON_NUM_THREADS": None,  # set to T
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"^[(\"'`]?[A-Za-z][a-z'-]*[.,;:!?)\"'`]*$")
_PARA_RE = re.compile(r"\n[ \t]*\n")


def _py_docstrings(root: str, skip_dirs: set[str]) -> list[tuple[str, str]]:
    """(source id, text) per .py file under root: its docstrings joined by blank lines."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not d.startswith(".") and d != "__pycache__")
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            path = os.path.join(dirpath, fn)
            try:
                with open(path, "rb") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, ValueError, OSError, RecursionError):
                continue
            docs = []
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    d = ast.get_docstring(node)
                    if d:
                        docs.append(d)
            if docs:
                out.append((os.path.relpath(path, root), "\n\n".join(docs)))
    return out


def _text_files(paths: list[str]) -> list[tuple[str, str]]:
    out = []
    for p in paths:
        if not os.path.isfile(p):
            continue
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                out.append((p, f.read()))
        except OSError:
            continue
    return out


def _documents(text: str) -> list[str]:
    """Paragraphs merged to >= MIN_WORDS words; over MAX_WORDS cut into equal parts."""
    docs, paras, nwords = [], [], 0

    def flush():
        nonlocal paras, nwords
        if nwords > MAX_WORDS:
            words = " ".join(paras).split()
            parts = -(-len(words) // MAX_WORDS)
            size = -(-len(words) // parts)
            docs.extend(" ".join(words[i : i + size]) for i in range(0, len(words), size))
        else:
            docs.append("\n\n".join(paras))
        paras, nwords = [], 0

    for para in _PARA_RE.split(text):
        para = para.strip()
        if not para:
            continue
        paras.append(para)
        nwords += len(para.split())
        if nwords >= MIN_WORDS:
            flush()
    return docs  # a trailing remainder under MIN_WORDS is dropped


def _is_prose(doc: str) -> bool:
    words = doc.split()
    return sum(1 for w in words if _WORD_RE.match(w)) >= 0.6 * len(words)


def _plant_near_duplicate(words: list[str], rate: float, rng: random.Random, vocab: list[str]) -> list[str]:
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 2:
            continue  # delete
        out.append(rng.choice(vocab) if r < rate else w)  # replace
    return out


def build_corpus(args) -> dict:
    t0 = time.perf_counter()
    paths = sysconfig.get_paths()
    stdlib, site = paths["stdlib"], paths["purelib"]
    sources = {
        "stdlib docstrings": _py_docstrings(stdlib, {"site-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo"}),
        "site-packages docstrings": _py_docstrings(site, {"test", "tests", "testing"}),
        "licenses": _text_files(sorted(glob.glob("/usr/share/common-licenses/*")) + sorted(glob.glob("/usr/share/doc/*/copyright"))),
    }
    seen: set[str] = set()
    docs: list[str] = []
    stats = {}
    for name, items in sources.items():
        n_raw = n_kept = 0
        for _src, text in items:
            for d in _documents(text):
                n_raw += 1
                key = " ".join(d.split())
                if key in seen or not _is_prose(d):
                    continue
                seen.add(key)
                docs.append(d)
                n_kept += 1
        stats[name] = {"files": len(items), "documents_raw": n_raw, "documents_kept": n_kept}
    unique = len(docs)

    rng = random.Random(args.seed)
    if unique > args.max_docs:
        docs = rng.sample(docs, args.max_docs)
    repeat = 1
    if len(docs) < args.min_docs:
        repeat = -(-args.min_docs // len(docs))
        docs = (docs * repeat)[: args.min_docs]

    # Planted near-duplicates.
    vocab = sorted({w for d in docs[:5000] for w in d.split() if _WORD_RE.match(w)})
    n_plant = int(len(docs) * args.near_dups)
    originals = rng.sample(range(len(docs)), n_plant)
    planted = []
    for i in originals:
        rate = rng.uniform(0.02, 0.10)
        planted.append(" ".join(_plant_near_duplicate(docs[i].split(), rate, rng, vocab)))
    all_docs = docs + planted
    order = list(range(len(all_docs)))
    rng.shuffle(order)
    pos = {old: new for new, old in enumerate(order)}
    texts = [all_docs[i] for i in order]
    pairs = [(pos[i], pos[len(docs) + k]) for k, i in enumerate(originals)]
    words = [len(t.split()) for t in texts]
    meta = {
        "corpus_version": CORPUS_VERSION,
        "seed": args.seed,
        "min_docs": args.min_docs,
        "max_docs": args.max_docs,
        "near_dups": args.near_dups,
        "python": platform.python_version(),
        "sources": stats,
        "unique_documents": unique,
        "repeat": repeat,
        "planted_near_duplicates": n_plant,
        "documents": len(texts),
        "mean_words": statistics.fmean(words),
        "median_words": statistics.median(words),
        "total_words": sum(words),
        "sha256": hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
        "build_s": round(time.perf_counter() - t0, 1),
    }
    return {"meta": meta, "texts": texts, "planted_pairs": pairs}


def load_corpus(args) -> dict:
    path = Path(args.corpus)
    if path.exists() and not args.rebuild_corpus:
        with open(path) as f:
            corpus = json.load(f)
        m = corpus["meta"]
        if (m.get("corpus_version"), m.get("seed"), m.get("min_docs"), m.get("max_docs"), m.get("near_dups")) == (
            CORPUS_VERSION, args.seed, args.min_docs, args.max_docs, args.near_dups
        ):
            return corpus
    print(f"building corpus -> {path} ...", flush=True)
    corpus = build_corpus(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(corpus, f)
    os.replace(tmp, path)
    return corpus


# --------------------------------------------------------------------------------------------
# The measured code (children)
# --------------------------------------------------------------------------------------------


def py_shingles(text: str) -> list[str]:
    """How rensa/datasketch users shingle: 5-word windows (duplicates kept)."""
    w = text.split()
    return [" ".join(w[i : i + 5]) for i in range(len(w) - 4)]


def make_runner(kind: str, threads: int):
    """A function texts -> (result, {phase: seconds})."""
    if kind in ("interleaf_fast", "interleaf_ds"):
        from interleaf.dedup import MinHasher

        if kind == "interleaf_fast":
            mh = MinHasher(num_perm=NUM_PERM, n=NGRAM, unit="word", seed=SEED, mode="fast", threads=threads)
        else:
            mh = MinHasher(num_perm=NUM_PERM, n=NGRAM, unit="word", seed=SEED, mode="datasketch", scheme="affine32", threads=threads)

        def run(texts):
            return mh.signatures(texts), {}

        return run
    if kind == "rensa":
        from rensa import RMinHash

        def run(texts):
            t0 = time.perf_counter()
            token_sets = [py_shingles(t) for t in texts]
            t1 = time.perf_counter()
            c1 = _cpu_s()
            m = RMinHash.digest_matrix_from_token_sets(token_sets, NUM_PERM, SEED)
            t2 = time.perf_counter()
            return m, {"shingle_s": t1 - t0, "digest_s": t2 - t1, "digest_cpu_s": _cpu_s() - c1}

        return run
    if kind == "datasketch_shared":
        from datasketch import MinHash

        perms = MinHash(num_perm=NUM_PERM, seed=SEED).permutations

        def run(texts):
            out = []
            for t in texts:
                m = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=perms, scheme="affine32")
                m.update_batch([s.encode() for s in py_shingles(t)])
                out.append(m.hashvalues)
            return out, {}

        return run
    if kind == "datasketch":
        from datasketch import MinHash

        def run(texts):
            out = []
            for t in texts:
                m = MinHash(num_perm=NUM_PERM, seed=SEED)
                m.update_batch([s.encode() for s in py_shingles(t)])
                out.append(m.hashvalues)
            return out, {}

        return run
    raise ValueError(kind)


def child_main(args) -> None:
    if args.threads == 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with open(args.corpus) as f:
        corpus = json.load(f)
    texts = corpus["texts"]
    if args.kind.startswith("datasketch"):
        texts = [texts[i] for i in subset_indices(len(texts), args.ds_subset, args.seed)]
    run = make_runner(args.kind, args.threads)
    run(texts[:WARMUP_TEXTS])
    c0 = _cpu_s()
    t0 = time.perf_counter()
    _, phases = run(texts)
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    print(json.dumps({"texts": len(texts), "wall_s": wall, "cpu_s": cpu, **phases}))


def subset_indices(n: int, k: int, seed: int) -> list[int]:
    return sorted(random.Random(seed + 1).sample(range(n), min(k, n)))


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


def run_child(args, kind: str, threads: int) -> dict:
    cmd = [
        sys.executable, __file__, "--child", kind, "--threads", str(threads), "--corpus", str(args.corpus),
        "--ds-subset", str(args.ds_subset), "--seed", str(args.seed),
    ]
    return run_quiet(cmd, child_env(CHILD_ENV, threads), f"{kind} T={threads}", args)


def correctness(corpus: dict, args) -> dict:
    import numpy as np
    from datasketch import MinHash
    from rensa import RMinHash

    from interleaf.dedup import MinHasher, shingles

    texts = corpus["texts"]
    sub = [texts[i] for i in subset_indices(len(texts), args.ds_subset, args.seed)]
    out = {}

    # 1. shingles: interleaf == Python (as a set), on the subset.
    for t in sub:
        assert set(shingles(t, n=NGRAM, unit="word")) == set(py_shingles(t)), t[:200]
    out["shingles_equal_on_subset"] = True

    # 2. datasketch mode == datasketch, on the subset.
    ds = np.array([_ds_minhash(MinHash, t) for t in sub], dtype=np.uint32)
    for threads in (1, 2):
        ours = MinHasher(num_perm=NUM_PERM, n=NGRAM, unit="word", seed=SEED, mode="datasketch", scheme="affine32", threads=threads).signatures(sub)
        assert ours.shape == ds.shape and np.array_equal(ours, ds), f"datasketch mode != datasketch (threads={threads})"
    out["datasketch_mode_equals_datasketch"] = {"texts": len(sub), "equal": True}

    # 3. threads=1 and threads=2 give the same rows (whole corpus).
    sigs = {}
    for mode in ("fast", "datasketch"):
        a = MinHasher(num_perm=NUM_PERM, seed=SEED, mode=mode, threads=1).signatures(texts)
        b = MinHasher(num_perm=NUM_PERM, seed=SEED, mode=mode, threads=2).signatures(texts)
        assert np.array_equal(a, b), f"{mode}: threads=1 != threads=2"
        sigs[mode] = a
    out["threads_1_equals_2"] = True

    # 4. Jaccard estimates vs exact on pairs.
    rng = random.Random(args.seed + 2)
    n_planted = min(args.pairs // 2, len(corpus["planted_pairs"]))
    planted = [tuple(p) for p in rng.sample(corpus["planted_pairs"], n_planted)]
    natural = natural_pairs(texts, args.pairs - n_planted, set(planted), rng)
    pairs = planted + natural
    idx = sorted({i for p in pairs for i in p})
    rens = RMinHash.digest_matrix_from_token_sets([py_shingles(texts[i]) for i in idx], NUM_PERM, SEED).to_rows()
    rens = dict(zip(idx, (np.array(r, dtype=np.uint32) for r in rens)))
    sets = {i: set(py_shingles(texts[i])) for i in idx}

    def est(a, b):
        return float(np.mean(a == b))

    rows = []
    for i, j in pairs:
        exact = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
        rows.append(
            {
                "exact": exact,
                "fast": est(sigs["fast"][i], sigs["fast"][j]),
                "ds_mode": est(sigs["datasketch"][i], sigs["datasketch"][j]),
                "rensa": est(rens[i], rens[j]),
            }
        )

    def summary(rs):
        if not rs:
            return None
        return {
            "pairs": len(rs),
            "mean_exact_jaccard": statistics.fmean(r["exact"] for r in rs),
            "mae_fast_vs_exact": statistics.fmean(abs(r["fast"] - r["exact"]) for r in rs),
            "mae_rensa_vs_exact": statistics.fmean(abs(r["rensa"] - r["exact"]) for r in rs),
            "mae_ds_mode_vs_exact": statistics.fmean(abs(r["ds_mode"] - r["exact"]) for r in rs),
            "mae_fast_vs_rensa": statistics.fmean(abs(r["fast"] - r["rensa"]) for r in rs),
            "bias_fast": statistics.fmean(r["fast"] - r["exact"] for r in rs),
            "bias_rensa": statistics.fmean(r["rensa"] - r["exact"] for r in rs),
        }

    out["jaccard"] = {
        "all": summary(rows),
        "planted": summary(rows[: len(planted)]),
        "natural": summary(rows[len(planted) :]),
    }
    return out


def _ds_minhash(MinHash, text):
    m = MinHash(num_perm=NUM_PERM, seed=SEED)
    m.update_batch([s.encode() for s in py_shingles(text)])
    return m.hashvalues


def natural_pairs(texts: list[str], k: int, exclude: set, rng: random.Random) -> list[tuple[int, int]]:
    """k distinct pairs of different, non-planted documents sharing at least one shingle:
    a random document, one of its shingles that another document also has, a random such
    other document."""
    index: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        for s in set(py_shingles(t)):
            index.setdefault(s, []).append(i)
    shared = [i for i in range(len(texts))]
    rng.shuffle(shared)
    excl = exclude | {(b, a) for a, b in exclude}
    out, seen = [], set()
    for i in shared:
        if len(out) >= k:
            break
        cands = sorted({j for s in set(py_shingles(texts[i])) for j in index[s] if j != i})
        cands = [j for j in cands if (i, j) not in excl and texts[i] != texts[j]]
        if not cands:
            continue
        j = rng.choice(cands)
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        out.append(key)
    return out


def busy_fraction(seconds: float = 2.0) -> float:
    """Share of all CPUs' time that was not idle over ``seconds`` (from /proc/stat)."""

    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except OSError:
        return float("nan")
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def _own_cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def package_versions() -> dict:
    out = versions(("interleaf", "rensa", "datasketch", "numpy"))
    try:
        import interleaf._native as native  # identifies the build actually measured

        with open(native.__file__, "rb") as f:
            out["interleaf_native_sha256"] = hashlib.sha256(f.read()).hexdigest()[:16]
    except (ImportError, OSError):
        pass
    return out


CONFIGS = [
    ("interleaf_fast", 1), ("interleaf_fast", 2),
    ("interleaf_ds", 1), ("interleaf_ds", 2),
    ("rensa", 1), ("rensa", 2),
    ("datasketch", 1),
    ("datasketch_shared", 1),
]
LABELS = {"interleaf_fast": "interleaf fast", "interleaf_ds": "interleaf datasketch-mode", "rensa": "rensa (+py shingling)", "datasketch": "datasketch (subset)", "datasketch_shared": "datasketch, reused perms (subset)"}


def summarize(runs: list[dict], key: str = "wall_s", cpu_key: str = "cpu_s") -> dict:
    walls = [r[key] for r in runs]
    n = runs[0]["texts"]
    best, med = min(walls), statistics.median(walls)
    return {
        "texts": n,
        "wall_s": {"best": best, "median": med, "all": walls},
        "texts_per_s": {"best": n / best, "median": n / med},
        "cpu_per_wall": statistics.median(r[cpu_key] / r[key] for r in runs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus cache (JSON)")
    ap.add_argument("--rebuild-corpus", action="store_true")
    ap.add_argument("--min-docs", type=int, default=50_000, help="repeat the corpus up to this many documents")
    ap.add_argument("--max-docs", type=int, default=100_000, help="sample down to this many documents")
    ap.add_argument("--near-dups", type=float, default=0.02, help="fraction of documents given a planted near-duplicate")
    ap.add_argument("--ds-subset", type=int, default=5000, help="texts for datasketch")
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    add_quiet_machine_args(ap)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    if args.child:
        args.kind = args.child
        child_main(args)
        return

    corpus = load_corpus(args)
    meta = corpus["meta"]
    texts = corpus["texts"]
    sub = subset_indices(len(texts), args.ds_subset, args.seed)
    sub_mean_words = statistics.fmean(len(texts[i].split()) for i in sub)
    rep_note = f", repeated x{meta['repeat']}" if meta["repeat"] > 1 else ""
    print(
        f"corpus: {meta['documents']:,} documents ({meta['unique_documents']:,} unique paragraphs"
        f"{rep_note}, "
        f"+{meta['planted_near_duplicates']:,} planted near-duplicates), mean {meta['mean_words']:.1f} words "
        f"(median {meta['median_words']}), {meta['total_words']:,} words; datasketch subset: {len(sub):,} texts, "
        f"mean {sub_mean_words:.1f} words",
        flush=True,
    )
    for name, s in meta["sources"].items():
        print(f"  {name}: {s['files']:,} files -> {s['documents_kept']:,} documents kept", flush=True)

    print("correctness checks ...", flush=True)
    t0 = time.perf_counter()
    checks = correctness(corpus, args)
    print(f"  ok ({time.perf_counter() - t0:.1f} s): shingles match, datasketch mode == datasketch on "
          f"{checks['datasketch_mode_equals_datasketch']['texts']:,} texts, threads=1 == threads=2", flush=True)
    for group, s in checks["jaccard"].items():
        if s:
            print(
                f"  Jaccard MAE vs exact, {group} ({s['pairs']} pairs, mean exact J {s['mean_exact_jaccard']:.3f}): "
                f"interleaf fast {s['mae_fast_vs_exact']:.4f}, rensa {s['mae_rensa_vs_exact']:.4f}, "
                f"datasketch mode {s['mae_ds_mode_vs_exact']:.4f}; |fast - rensa| {s['mae_fast_vs_rensa']:.4f}",
                flush=True,
            )

    busy = busy_fraction()
    if busy > 0.1:
        print(f"WARNING: the CPUs were {busy:.0%} busy just before timing: the machine is not quiet", flush=True)
    busy0, own0, t_start = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
    runs: dict[str, list[dict]] = {f"{k}@{t}": [] for k, t in CONFIGS}
    for rep in range(args.repeats):
        for kind, threads in CONFIGS:
            r = run_child(args, kind, threads)
            runs[f"{kind}@{threads}"].append(r)
            print(
                f"  run {rep + 1}/{args.repeats} {kind} T={threads}: {r['wall_s']:.3f} s ({r['texts'] / r['wall_s']:,.0f} texts/s)"
                f", other processes {r['other_processes_cpu_s']:.2f} CPU s",
                flush=True,
            )

    timing_s = time.perf_counter() - t_start
    foreign_cpu_s = (_busy_cpu_s() - busy0) - (_own_cpu_s() - own0)  # CPU used by other processes
    results = {}
    for kind, threads in CONFIGS:
        key = f"{kind}@{threads}"
        results[key] = summarize(runs[key])
        results[key]["runs"] = runs[key]
        if kind == "rensa":
            d = summarize(runs[key], key="digest_s", cpu_key="digest_cpu_s")
            results[key]["digest_only"] = {"wall_s": d["wall_s"], "texts_per_s": d["texts_per_s"], "cpu_per_wall": d["cpu_per_wall"]}
            results[key]["shingle_s_median"] = statistics.median(r["shingle_s"] for r in runs[key])

    def tps(key, stat):
        return results[key]["texts_per_s"][stat]

    ratios = {}
    for t in (1, 2):
        for stat in ("best", "median"):
            ratios[f"fast_vs_rensa@{t}_{stat}"] = tps(f"interleaf_fast@{t}", stat) / tps(f"rensa@{t}", stat)
            ratios[f"fast_vs_rensa_digest_only@{t}_{stat}"] = tps(f"interleaf_fast@{t}", stat) / results[f"rensa@{t}"]["digest_only"]["texts_per_s"][stat]
            ratios[f"fast_vs_datasketch@{t}_{stat}"] = tps(f"interleaf_fast@{t}", stat) / tps("datasketch@1", stat)
            ratios[f"ds_mode_vs_datasketch@{t}_{stat}"] = tps(f"interleaf_ds@{t}", stat) / tps("datasketch@1", stat)

    # Table.
    print()
    print(f"{'method':<34}{'T':>2}{'texts':>9}{'best s':>9}{'med s':>9}{'texts/s best':>14}{'texts/s med':>13}{'cpu/wall':>9}")
    for kind, threads in CONFIGS:
        key = f"{kind}@{threads}"
        r = results[key]
        print(
            f"{LABELS[kind]:<34}{threads:>2}{r['texts']:>9,}{r['wall_s']['best']:>9.3f}{r['wall_s']['median']:>9.3f}"
            f"{r['texts_per_s']['best']:>14,.0f}{r['texts_per_s']['median']:>13,.0f}{r['cpu_per_wall']:>9.2f}"
        )
        if kind == "rensa":
            d = r["digest_only"]
            print(
                f"{'  rensa (digest only)':<34}{threads:>2}{r['texts']:>9,}{d['wall_s']['best']:>9.3f}{d['wall_s']['median']:>9.3f}"
                f"{d['texts_per_s']['best']:>14,.0f}{d['texts_per_s']['median']:>13,.0f}{d['cpu_per_wall']:>9.2f}"
            )
    print()
    print(f"{'ratio (texts/s), best | median':<44}{'T=1':>17}{'T=2':>17}{'goal':>8}")
    for name, label, goal in (
        ("fast_vs_rensa", "interleaf fast / rensa (+py shingling)", ">= 1.5x"),
        ("fast_vs_rensa_digest_only", "interleaf fast / rensa digest only", ""),
        ("fast_vs_datasketch", "interleaf fast / datasketch", ">= 100x"),
        ("ds_mode_vs_datasketch", "interleaf ds-mode / datasketch", ">= 20x"),
    ):
        cells = [f"{ratios[f'{name}@{t}_best']:.1f} | {ratios[f'{name}@{t}_median']:.1f}" for t in (1, 2)]
        print(f"{label:<44}{cells[0]:>17}{cells[1]:>17}{goal:>8}")
    print("(datasketch runs on one thread only: its T=2 ratios use the same datasketch number)")
    discarded = sum(r["discarded_runs"] for rs in runs.values() for r in rs)
    print(
        f"CPUs busy just before timing: {busy:.0%}; CPU time of other processes during the {timing_s:.0f} s "
        f"of timing (discarded runs included): {foreign_cpu_s:.1f} s; runs discarded and redone because "
        f"other processes were busy: {discarded}"
    )

    report = {
        "benchmark": "minhash",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "versions": package_versions(),
        "settings": {
            "num_perm": NUM_PERM, "shingle": f"{NGRAM}-word", "seed": SEED, "repeats": args.repeats,
            "ds_subset": len(sub), "ds_subset_mean_words": sub_mean_words, "warmup_texts": WARMUP_TEXTS,
            "rensa_threads": "no threads argument; its bulk digest spawns worker threads of its own (about 1.8 cores busy on 2 cores even with RAYON_NUM_THREADS=1); T=1 = pinned to one core, T=2 = unpinned",
            "pinning": "T=1 children pinned to one core (sched_setaffinity)",
        },
        "cpu_busy_before_timing": busy,
        "timing_phase_s": timing_s,
        "other_processes_cpu_s_during_timing": foreign_cpu_s,
        "max_foreign": args.max_foreign,
        "corpus": meta,
        "correctness": checks,
        "results": results,
        "ratios": ratios,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
