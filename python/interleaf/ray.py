"""The Ray engine of ``interleaf run`` (``engine="ray"``, ``--engine ray``): the same per-shard
stage functions as the local engine (:mod:`interleaf.pipeline`), run on Ray Data.

Each per-shard stage becomes a Ray Data dataset of shard jobs mapped by the stage function: the
score stage (which reads the shard with the Rust reader inside the task, computes the signals and
writes the attribute files) as an actor pool when the recipe has models (one model session per
actor, ``num_gpus`` per actor from the device), otherwise as tasks; the write stage as tasks.
Every output is written by the stage function itself under a temporary name and renamed, with
the same completion markers as the local engine, so:

- outputs are byte-identical to the local engine's for the same inputs and recipe;
- a Ray run resumes a local run and the other way round (finished shards are skipped);
- a worker killed mid-task is retried by Ray (Ray Data restarts actors and retries their
  tasks, and retries tasks on system failures) and leaves no partial file under a final name.

The filter stage's two per-shard passes run as Ray tasks too (the dedup among the surviving
documents between them runs in the driver). Dataset dedup steps too large for the driver are
clustered on Ray Data (``ray_dedup`` of :func:`interleaf.run` chooses): MinHash
(:func:`minhash_clusters`: the bands hash-shuffled, connected components over the bucket
edges), exact (:func:`exact_clusters`: the keys hash-shuffled) and pHash
(:func:`phash_clusters`: equal hashes grouped, then multi-index hashing over bit ranges
shuffled by their bits), with connected components by label propagation on Ray actors
(:func:`components`), each with the same clusters, representatives and scores as the local
engine. SemDeDup's per-cluster passes run as Ray tasks (:func:`map_tasks`;
``interleaf.dedup.semantic(..., engine="ray")``). Progress: Ray Data's own progress bars, then
interleaf's per-stage table (with the number of Ray nodes each stage ran on).

Needs the ``ray`` extra (``pip install 'interleaf[ray]'``). ``address``: None starts (or joins)
a local Ray instance in this process; ``"auto"`` or ``"ray://host:10001"`` joins a cluster, on
whose nodes interleaf must be installed and the inputs and output folder reachable at the same
paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["DRIVER_SIGNATURE_BYTES", "cluster_cpus", "clusterer", "exact_clusters", "gpus_per_actor", "components", "init", "map_tasks", "minhash_clusters", "phash_clusters", "run_jobs"]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("engine='ray' needs Ray: pip install 'interleaf[ray]'") from None
    return ray


def init(address: str | None = None, *, progress: bool = True) -> Any:
    """Connects to Ray (``address``), or starts a local instance when there is none; returns
    the ``ray`` module. Ray Data's progress bars follow ``progress``."""
    ray = _ray()
    if not ray.is_initialized():
        kw: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": progress}
        if address is not None:
            kw["address"] = address
        ray.init(**kw)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    return ray


def _encode(job: int, res: dict[str, Any]) -> dict[str, Any]:
    """A job's result as a JSON row, with the Ray node that ran it under ``_node``."""
    return {"job": job, "result": json.dumps({**res, "_node": _ray().get_runtime_context().get_node_id()}, default=str)}


class _StageActor:
    """One actor of a model stage's pool: runs the stage function on one shard job per call."""

    def __init__(self, fn: Callable[..., dict[str, Any]], jobs: list[tuple]):
        self.fn, self.jobs = fn, jobs

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = [_encode(int(i), self.fn(*self.jobs[int(i)])) for i in batch["job"]]
        return {"job": [r["job"] for r in rows], "result": [r["result"] for r in rows]}


def cluster_cpus() -> int:
    """The CPUs of the connected Ray cluster."""
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))


def run_jobs(fn: Callable[..., dict[str, Any]], jobs: list[tuple], *, concurrency: int | None = None, actors: bool = False, num_gpus: float = 0.0, stage: str = "stage") -> list[dict[str, Any]]:
    """Runs ``fn(*job)`` for every job on Ray Data and returns the results in job order.
    ``actors``: an actor pool of ``concurrency`` actors (for stages that load models; each
    with ``num_gpus``); otherwise tasks, at most ``concurrency`` at once (default: the
    cluster's CPUs). Results travel as JSON; each names the node that ran it (``_node``)."""
    ray = _ray()
    if not jobs:
        return []
    n = concurrency or min(len(jobs), cluster_cpus())
    ds = ray.data.from_items([{"job": i} for i in range(len(jobs))], override_num_blocks=len(jobs))
    if actors:
        ds = ds.map_batches(_StageActor, fn_constructor_args=(fn, jobs), batch_size=1, concurrency=min(n, len(jobs)), num_gpus=num_gpus or None, num_cpus=1)
    else:
        ds = ds.map(lambda row: _encode(int(row["job"]), fn(*jobs[int(row["job"])])), concurrency=min(n, len(jobs)), num_cpus=1)
    rows = ds.take_all()
    by = {int(r["job"]): json.loads(r["result"]) for r in rows}
    missing = [i for i in range(len(jobs)) if i not in by]
    if missing:
        raise RuntimeError(f"ray engine: {stage}: no result for {len(missing)} of {len(jobs)} shard jobs")
    return [by[i] for i in range(len(jobs))]


def _run_batch(fn: Callable[..., Any], batch: list[tuple]) -> list[Any]:
    return [fn(*job) for job in batch]


def map_tasks(fn: Callable[..., Any], jobs: list[tuple], *, weights: list[int] | None = None, stage: str = "tasks") -> list[Any]:
    """Runs ``fn(*job)`` for every job as Ray tasks (one CPU each; on the connected cluster, or
    a local instance started here) and returns the results in job order. Jobs are grouped into
    about four tasks per cluster CPU of similar total ``weight`` (default: ``len`` of each job's
    first argument), so small jobs do not each pay a task's overhead; a task that fails is
    retried by Ray, then raises here naming the stage."""
    ray = init(None, progress=False) if not _ray().is_initialized() else _ray()
    if not jobs:
        return []
    w = weights if weights is not None else [max(1, len(job[0])) if hasattr(job[0], "__len__") else 1 for job in jobs]
    target = max(1, sum(w) // (4 * cluster_cpus()))
    batches: list[list[int]] = [[]]
    acc = 0
    for i, wi in enumerate(w):
        if batches[-1] and acc + wi > target:
            batches.append([])
            acc = 0
        batches[-1].append(i)
        acc += wi
    remote = ray.remote(num_cpus=1, max_retries=3)(_run_batch)
    refs = [remote.remote(fn, [jobs[i] for i in b]) for b in batches]
    out: list[Any] = [None] * len(jobs)
    try:
        for b, res in zip(batches, ray.get(refs), strict=True):
            for i, r in zip(b, res, strict=True):
                out[i] = r
    except ray.exceptions.RayError as e:
        raise RuntimeError(f"ray engine: {stage}: {e}") from e
    return out


def gpus_per_actor(device: str) -> float:
    """One GPU per model actor when the run's device is CUDA (or "auto" on a cluster with
    GPUs), else none."""
    if device == "cpu":
        return 0.0
    gpus = float(_ray().cluster_resources().get("GPU", 0))
    if device == "cuda" and gpus < 1:
        raise RuntimeError("device='cuda' but the Ray cluster has no GPU")
    return 1.0 if gpus >= 1 else 0.0


# --- MinHash LSH on Ray Data ------------------------------------------------------------------

#: With ``ray_dedup="auto"``, MinHash, exact and pHash steps whose values (MinHash: documents x
#: num_perm x 4 bytes) exceed this many bytes are clustered on Ray Data; smaller ones in the
#: driver, which is faster there (measured: 20,000 documents cluster in 0.4 s in the driver, about 10 s as a Ray Data
#: shuffle on one 2-core machine, most of it fixed cost).
DRIVER_SIGNATURE_BYTES = 4 << 30


def _distribute(mode: str, step: Any, sig_paths: list[Any], counts: list[int]) -> bool:
    """Whether a step clusters on Ray Data (see ``ray_dedup`` of :func:`interleaf.run`): in
    ``auto``, when its values (MinHash: num_perm x 4 bytes, exact and pHash: about 16 bytes per
    document) exceed :data:`DRIVER_SIGNATURE_BYTES`."""
    if mode != "auto":
        return mode == "distributed"
    per_doc = step.num_perm * 4 if step.method == "minhash" else 16
    return sum(counts) * per_doc > DRIVER_SIGNATURE_BYTES


def clusterer(mode: str) -> Callable[..., Any]:
    """The ``elsewhere`` of :func:`interleaf.pipeline.cluster_step` for the Ray engine: MinHash,
    exact and pHash steps on Ray Data when ``mode`` says so (``auto``, ``distributed``,
    ``driver``); with ``driver`` every step is left to the driver."""

    def run(step: Any, sig_paths: list[Any], counts: list[int]) -> Any:
        if step.method not in ("minhash", "exact", "phash") or not _distribute(mode, step, sig_paths, counts):
            return None
        if step.method == "exact":
            return exact_clusters(sig_paths, counts)
        if step.method == "phash":
            return phash_clusters(sig_paths, counts, step.radius)
        from interleaf.dedup.minhash import lsh_params

        bands, rows = lsh_params(step.threshold, step.num_perm)
        return minhash_clusters(sig_paths, counts, bands, rows)

    return run


def _signed(path: str, offset: int) -> tuple[Any, Any]:
    """The global rows and the values of a shard's signed documents: the uint32 signature
    matrix (MinHash) or the uint64 hashes (pHash)."""
    import numpy as np
    import polars as pl

    col = pl.read_parquet(path, columns=["value"]).get_column("value")
    mask = col.is_not_null().to_numpy()
    good = col.filter(pl.Series(mask))
    if col.dtype == pl.UInt64:  # pHash
        values = good.to_numpy().astype(np.uint64, copy=False)
    else:
        values = good.to_numpy().astype(np.uint32, copy=False) if good.len() else np.zeros((0, 0), np.uint32)
    return np.flatnonzero(mask).astype(np.int64) + offset, values


def _band_rows(batch: dict[str, Any], bands: int, rows: int) -> dict[str, Any]:
    """For each signed document of the batch's shards and each band: (band, the band's values as
    bytes, global row)."""
    out_band: list[int] = []
    out_key: list[bytes] = []
    out_row: list[int] = []
    for path, offset in zip(batch["path"], batch["offset"], strict=True):
        glob, m = _signed(str(path), int(offset))
        for b in range(bands):
            sl = m[:, b * rows : (b + 1) * rows].copy()
            out_band += [b] * len(glob)
            out_key += [x.tobytes() for x in sl]
            out_row += glob.tolist()
    return {"band": out_band, "key": out_key, "row": out_row}


def _block_edges(table: Any) -> dict[str, Any]:
    """Edges of a hash-partitioned block, which holds every member of its buckets: each
    bucket's members joined to its first (smallest) row, as the local clustering joins them."""
    import polars as pl

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return {"a": [], "b": []}
    e = df.group_by(["band", "key"]).agg(pl.col("row").min().alias("a"), pl.col("row").alias("b")).explode("b").filter(pl.col("a") != pl.col("b"))
    return {"a": e.get_column("a").to_numpy(), "b": e.get_column("b").to_numpy()}


class _LabelShard:
    """One Ray actor's slice of the component labels: rows ``[lo, hi)``, each starting as its
    own row; labels only ever decrease (to another row of the same component)."""

    def __init__(self, lo: int, hi: int):
        import numpy as np

        self.lo = lo
        self.label = np.arange(lo, hi, dtype=np.int64)

    def get(self, rows: Any) -> Any:
        return self.label[rows - self.lo]

    def lower(self, rows: Any, values: Any) -> int:
        """``label[row] = min(label[row], value)`` for each pair; returns how many labels fell."""
        import numpy as np

        idx = np.asarray(rows, dtype=np.int64) - self.lo
        u = np.unique(idx)
        before = self.label[u].copy()
        np.minimum.at(self.label, idx, np.asarray(values, dtype=np.int64))
        return int((self.label[u] != before).sum())

    def labels(self) -> Any:
        return self.label


def _owners(rows: Any, bounds: Any) -> Any:
    import numpy as np

    return np.searchsorted(bounds, rows, side="right") - 1


def _lookup(ray: Any, actors: list[Any], bounds: Any, rows: Any) -> Any:
    """The current labels of ``rows``, asked of their owners in parallel."""
    import numpy as np

    owner = _owners(rows, bounds)
    out = np.empty(len(rows), dtype=np.int64)
    parts = [(k, np.flatnonzero(owner == k)) for k in np.unique(owner)]
    for (_, pos), got in zip(parts, ray.get([actors[k].get.remote(rows[pos]) for k, pos in parts]), strict=True):
        out[pos] = got
    return out


def _lower(ray: Any, actors: list[Any], bounds: Any, rows: Any, values: Any) -> int:
    import numpy as np

    owner = _owners(rows, bounds)
    ks = np.unique(owner)
    return int(sum(ray.get([actors[k].lower.remote(rows[owner == k], values[owner == k]) for k in ks])))


def _propagate(batch: dict[str, Any], actors: list[Any], bounds: Any) -> dict[str, Any]:
    """One pass of label propagation over a batch of edges: both ends of each edge lowered to
    the smaller of their labels."""
    import numpy as np

    ray = _ray()
    a = np.asarray(batch["a"], dtype=np.int64)
    b = np.asarray(batch["b"], dtype=np.int64)
    if not len(a):
        return {"changed": np.zeros(1, np.int64), "edges": np.zeros(1, np.int64)}
    m = np.minimum(_lookup(ray, actors, bounds, a), _lookup(ray, actors, bounds, b))
    changed = _lower(ray, actors, bounds, np.concatenate([a, b]), np.concatenate([m, m]))
    return {"changed": np.array([changed], np.int64), "edges": np.array([len(a)], np.int64)}


def _jump(actors: list[Any], bounds: Any, k: int) -> int:
    """Pointer jumping for actor ``k``'s rows: each label lowered to its label's label."""
    import numpy as np

    ray = _ray()
    lab = ray.get(actors[k].labels.remote())
    rows = np.arange(int(bounds[k]), int(bounds[k + 1]), dtype=np.int64)
    move = lab != rows
    if not move.any():
        return 0
    return _lower(ray, actors, bounds, rows[move], _lookup(ray, actors, bounds, lab[move]))


def components(total: int, edges: Any, *, shards: int | None = None) -> tuple[Any, int]:
    """Connected components of rows ``0..total-1`` over the edges of a Ray Dataset (columns
    ``a``, ``b``), on Ray: the labels live in ``shards`` actors (default: one per cluster CPU)
    holding row ranges, each pass of label propagation maps the edge blocks where they lie
    (both ends lowered to the smaller label, asked of and sent to the owning actors), pointer
    jumping follows each label to its label's label between passes, until a pass changes
    nothing. The edges never come to the driver. Returns ``(label, edges)``: for every row the
    smallest row of its component, and the number of edges."""
    import numpy as np

    ray = _ray()
    k = max(1, min(shards or cluster_cpus(), total))
    bounds = np.linspace(0, total, k + 1).astype(np.int64)
    remote = ray.remote(num_cpus=0)(_LabelShard)
    actors = [remote.remote(int(bounds[i]), int(bounds[i + 1])) for i in range(k)]
    jump = ray.remote(num_cpus=1)(_jump)
    try:
        edges = edges.materialize()
        n_edges = None
        while True:
            passed = edges.map_batches(_propagate, fn_kwargs={"actors": actors, "bounds": bounds}, batch_size=65536, batch_format="numpy").to_pandas()
            changed = int(passed["changed"].sum()) if len(passed) else 0
            n_edges = int(passed["edges"].sum()) if len(passed) else 0
            ray.get([jump.remote(actors, bounds, i) for i in range(k)])
            if not changed:
                break
        label = np.concatenate(ray.get([a.labels.remote() for a in actors])) if total else np.zeros(0, np.int64)
    finally:
        for a in actors:
            ray.kill(a)
    return label, n_edges or 0


def _signed_rows(batch: dict[str, Any]) -> dict[str, Any]:
    rows_out: list[int] = []
    for path, offset in zip(batch["path"], batch["offset"], strict=True):
        import polars as pl

        col = pl.read_parquet(str(path), columns=["value"]).get_column("value")
        rows_out += [int(offset) + i for i in col.is_not_null().arg_true().to_list()]
    return {"row": rows_out}


def _rep_signatures(batch: dict[str, Any], wanted: Any) -> dict[str, Any]:
    """The signatures of the batch's shards' rows that are representatives in ``wanted``."""
    import numpy as np

    rows_out, sigs = [], []
    for path, offset in zip(batch["path"], batch["offset"], strict=True):
        glob, m = _signed(str(path), int(offset))
        keep = np.isin(glob, wanted)
        rows_out += glob[keep].tolist()
        sigs += list(m[keep])
    return {"row": rows_out, "sig": sigs}


def _scores(batch: dict[str, Any], rep_sigs: dict[int, Any], label: Any) -> dict[str, Any]:
    """Each duplicate of the batch's shards against its representative, as the local engine
    scores it: MinHash the estimated Jaccard, pHash the Hamming distance."""
    rows_out: list[int] = []
    score_out: list[float] = []
    for path, offset in zip(batch["path"], batch["offset"], strict=True):
        glob, m = _signed(str(path), int(offset))
        for g, sig in zip(glob.tolist(), m, strict=True):
            r = int(label[g])
            if r != g:
                rows_out.append(g)
                score_out.append(float((sig == rep_sigs[r]).mean()) if m.ndim == 2 else float((int(sig) ^ int(rep_sigs[r])).bit_count()))
    return {"row": rows_out, "score": score_out}


def _shard_items(sig_paths: list[Any], counts: list[int]) -> list[dict[str, Any]]:
    """One item per shard: its signature file and the global row of its first document."""
    import numpy as np

    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if counts else np.zeros(0, np.int64)
    return [{"path": str(p), "offset": int(o)} for p, o in zip(sig_paths, offsets, strict=True)]


def _partitions(items: list[Any]) -> int:
    """Blocks of a shuffle: up to four per cluster CPU, no more than the shards."""
    return max(1, min(len(items), 4 * cluster_cpus()))


def _rep_scores(shards: Any, label: Any, signed: Any, self_score: float = 1.0) -> tuple[Any, Any]:
    """``(representative, score)`` over the global rows from the component labels: -1 / NaN
    where unsigned, ``self_score`` (MinHash 1, pHash 0) for a representative, the duplicates scored
    against their representatives' values, gathered by Ray passes over the shards."""
    import numpy as np

    total = len(label)
    reps = np.where(signed, label, -1)
    score = np.where(signed, self_score, np.nan)
    dup = np.flatnonzero(signed & (label != np.arange(total)))
    if len(dup):
        wanted = np.unique(label[dup])
        rep_sigs = {int(r["row"]): np.asarray(r["sig"]) for r in shards.map_batches(_rep_signatures, fn_kwargs={"wanted": wanted}, batch_size=1, batch_format="numpy").take_all()}
        for r in shards.map_batches(_scores, fn_kwargs={"rep_sigs": rep_sigs, "label": label}, batch_size=1, batch_format="numpy").take_all():
            score[int(r["row"])] = float(r["score"])
    return reps, score


def minhash_clusters(sig_paths: list[Any], counts: list[int], bands: int, rows: int) -> tuple[Any, Any, dict[str, Any]]:
    """MinHash LSH clustering of every shard's signatures on Ray Data, equal to the local
    engine's: each document's bands keyed by their exact values (a Ray Data hash shuffle on
    (band, values)), each bucket's members joined to its first row, connected components by
    label propagation on Ray (:func:`components`), the representative the smallest global row
    of its component, the score the estimated Jaccard with it. Returns ``(representative,
    score, stats)`` over the global row order (-1 / NaN for documents without a signature).
    The driver holds about 17 bytes per document (the two result arrays and a signed flag)
    and the representatives' signatures; never every signature, never the edges."""
    import numpy as np

    ray = _ray()
    total = int(sum(counts))
    items = _shard_items(sig_paths, counts)
    shards = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    keyed = shards.map_batches(_band_rows, fn_kwargs={"bands": bands, "rows": rows}, batch_size=1, batch_format="numpy")
    # The shuffle: every (band, values) bucket into one block, then its edges in polars.
    edges = keyed.repartition(_partitions(items), keys=["band", "key"]).map_batches(_block_edges, batch_size=None, batch_format="pyarrow")
    label, n_edges = components(total, edges)
    signed = np.zeros(total, dtype=bool)
    for batch in shards.map_batches(_signed_rows, batch_size=1, batch_format="numpy").iter_batches(batch_size=65536, batch_format="numpy"):
        signed[np.asarray(batch["row"], dtype=np.int64)] = True
    reps, score = _rep_scores(shards, label, signed)
    dup = np.flatnonzero(signed & (label != np.arange(total)))
    stats = {"bands": bands, "rows": rows, "candidates": n_edges, "joined": int(len(dup))}
    return reps, score, stats


# --- exact dedup on Ray Data ------------------------------------------------------------------


def _key_rows(batch: dict[str, Any]) -> dict[str, Any]:
    """(key, global row) of each document of the batch's shards that has a key."""
    import polars as pl

    keys: list[str] = []
    rows_out: list[int] = []
    for path, offset in zip(batch["path"], batch["offset"], strict=True):
        col = pl.read_parquet(str(path), columns=["value"]).get_column("value").cast(pl.String)
        idx = col.is_not_null().arg_true()
        keys += col.gather(idx).to_list()
        rows_out += (idx.cast(pl.Int64) + int(offset)).to_list()
    return {"key": keys, "row": rows_out}


def _block_firsts(table: Any) -> dict[str, Any]:
    """For every row of a hash-partitioned block (which holds every row of its keys), the first
    row with its key."""
    import polars as pl

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return {"row": [], "rep": []}
    df = df.with_columns(pl.col("row").min().over("key").alias("rep"))
    return {"row": df.get_column("row").to_numpy(), "rep": df.get_column("rep").to_numpy()}


def exact_clusters(sig_paths: list[Any], counts: list[int]) -> tuple[Any, Any, dict[str, Any]]:
    """Exact dedup on Ray Data, equal to the local engine's: the documents' keys hash-shuffled
    (``repartition(keys=["key"])``), each document's representative the first (smallest global
    row) with its key, score 1. Returns ``(representative, score, stats)`` over the global row
    order (-1 / NaN for documents without a key)."""
    import numpy as np

    ray = _ray()
    total = int(sum(counts))
    items = _shard_items(sig_paths, counts)
    keyed = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(_key_rows, batch_size=1, batch_format="numpy")
    firsts = keyed.repartition(_partitions(items), keys=["key"]).map_batches(_block_firsts, batch_size=None, batch_format="pyarrow")
    reps = np.full(total, -1, dtype=np.int64)
    for batch in firsts.iter_batches(batch_size=65536, batch_format="numpy"):
        reps[np.asarray(batch["row"], dtype=np.int64)] = np.asarray(batch["rep"], dtype=np.int64)
    signed = reps >= 0
    score = np.where(signed, 1.0, np.nan)
    distinct = int(signed.sum() - (signed & (reps != np.arange(total))).sum())
    return reps, score, {"distinct_keys": distinct, "joined": int((signed & (reps != np.arange(total))).sum())}


# --- pHash dedup on Ray Data ------------------------------------------------------------------


def _hash_rows(batch: dict[str, Any]) -> dict[str, Any]:
    """(hash, global row) of each document of the batch's shards that has a pHash."""
    import numpy as np

    hs, rows_out = [], []
    for path, offset in zip(batch["path"], batch["offset"], strict=True):
        glob, h = _signed(str(path), int(offset))
        hs.append(h)
        rows_out.append(glob)
    return {"h": np.concatenate(hs) if hs else np.zeros(0, np.uint64), "row": np.concatenate(rows_out) if rows_out else np.zeros(0, np.int64)}


def _block_hash_firsts(table: Any) -> dict[str, Any]:
    """For every row of a block hash-partitioned on the pHash: the first row with its hash."""
    import polars as pl

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return {"h": [], "row": [], "first": []}
    df = df.with_columns(pl.col("row").min().over("h").alias("first"))
    return {"h": df.get_column("h").to_numpy(), "row": df.get_column("row").to_numpy(), "first": df.get_column("first").to_numpy()}


def _ranges(radius: int) -> list[tuple[int, int]]:
    """The 64 bits cut into ``radius + 1`` ranges (shift, width): two hashes within ``radius``
    bits agree exactly on at least one of them (the pigeonhole argument of multi-index hashing)."""
    n = radius + 1
    out, lo = [], 0
    for i in range(n):
        w = 64 // n + (1 if i < 64 % n else 0)
        out.append((lo, w))
        lo += w
    return out


def _range_keys(batch: dict[str, Any], radius: int) -> dict[str, Any]:
    """Each distinct hash (the rows that are their hash's first) once per bit range, keyed by
    (range, the hash's bits in it)."""
    import numpy as np

    own = np.asarray(batch["row"], dtype=np.int64) == np.asarray(batch["first"], dtype=np.int64)
    h = np.asarray(batch["h"], dtype=np.uint64)[own]
    first = np.asarray(batch["first"], dtype=np.int64)[own]
    ranges = _ranges(radius)
    part = [np.full(len(h), i, dtype=np.int16) for i in range(len(ranges))]
    bits = [(h >> np.uint64(lo)) & np.uint64((1 << w) - 1) for lo, w in ranges]
    return {"part": np.concatenate(part), "bits": np.concatenate(bits), "h": np.tile(h, len(ranges)), "first": np.tile(first, len(ranges))}


def _block_near(table: Any, radius: int) -> dict[str, Any]:
    """Edges between the distinct hashes of a block partitioned on (range, bits) that lie within
    ``radius``: every pair within it agrees exactly on some range, so it meets in that range's
    bucket; each pair is emitted only by the block holding the bucket of the first range it
    agrees on, so exactly once over all blocks."""
    import numpy as np
    import polars as pl

    from interleaf.dedup.perceptual import near_duplicates

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return {"a": np.zeros(0, np.int64), "b": np.zeros(0, np.int64)}
    d = df.select("h", "first").unique("h").sort("h")
    pairs = near_duplicates(d.get_column("h"), radius)
    h = d.get_column("h").to_numpy()
    first = d.get_column("first").to_numpy()
    i, j = pairs["i"], pairs["j"]
    x = h[i] ^ h[j]
    agree = np.stack([((x >> np.uint64(lo)) & np.uint64((1 << w) - 1)) == 0 for lo, w in _ranges(radius)], axis=1)
    cand = pl.DataFrame({"h": h[i], "part": agree.argmax(axis=1).astype(np.int16), "k": np.arange(len(i))})
    mine = cand.join(df.select("h", pl.col("part").cast(pl.Int16)).unique(), on=["h", "part"], how="semi").get_column("k").to_numpy()
    a, b = first[i[mine]], first[j[mine]]
    return {"a": np.minimum(a, b), "b": np.maximum(a, b)}


def _equal_edges(batch: dict[str, Any]) -> dict[str, Any]:
    """Each document joined to the first row with its hash."""
    import numpy as np

    row = np.asarray(batch["row"], dtype=np.int64)
    first = np.asarray(batch["first"], dtype=np.int64)
    own = row != first
    return {"a": first[own], "b": row[own]}


def phash_clusters(sig_paths: list[Any], counts: list[int], radius: int) -> tuple[Any, Any, dict[str, Any]]:
    """pHash dedup on Ray Data, equal to the local engine's (hashes within Hamming ``radius``,
    transitively): documents with equal hashes grouped by a hash shuffle, then each distinct
    hash keyed by its bits in each of ``radius + 1`` ranges and shuffled on (range, bits), the
    pairs within ``radius`` found per block by multi-index hashing (Rust), connected components
    by label propagation on Ray (:func:`components`); the representative the smallest global row of its cluster, the score
    the Hamming distance to it. Returns ``(representative, score, stats)`` over the global row
    order (-1 / NaN for documents without a hash)."""
    import numpy as np

    ray = _ray()
    total = int(sum(counts))
    items = _shard_items(sig_paths, counts)
    shards = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    firsts = shards.map_batches(_hash_rows, batch_size=1, batch_format="numpy").repartition(_partitions(items), keys=["h"]).map_batches(_block_hash_firsts, batch_size=None, batch_format="pyarrow").materialize()
    first = np.full(total, -1, dtype=np.int64)
    for batch in firsts.iter_batches(batch_size=65536, batch_format="numpy"):
        first[np.asarray(batch["row"], dtype=np.int64)] = np.asarray(batch["first"], dtype=np.int64)
    keyed = firsts.map_batches(_range_keys, fn_kwargs={"radius": radius}, batch_format="numpy")
    edges = keyed.repartition(_partitions(items), keys=["part", "bits"]).map_batches(_block_near, fn_kwargs={"radius": radius}, batch_size=None, batch_format="pyarrow")
    equal = firsts.map_batches(_equal_edges, batch_format="numpy")
    signed = first >= 0
    n_equal = int((signed & (first != np.arange(total))).sum())
    # Equal hashes join their first row, near hashes' first rows join each other.
    label, n_edges = components(total, equal.union(edges))
    reps, score = _rep_scores(shards, label, signed, self_score=0.0)
    stats = {"radius": radius, "distinct_hash_pairs": n_edges - n_equal, "joined": int((signed & (reps != np.arange(total))).sum())}
    return reps, score, stats
