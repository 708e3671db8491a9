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
  tasks, and retries tasks on system failures) and leaves no partial file under a final name;
  a distributed dedup step whose label actors are lost (they hold state Ray cannot restore)
  starts again once; a lost head or a second loss stops the run with one line that says so,
  and the same command resumes it;
- joining a cluster (``address``) checks that every node imports interleaf, the same version.

The filter stage's two per-shard passes run as Ray tasks too, and so do the ``top_fraction``
thresholds' radix passes. Dataset dedup steps too large for the driver are clustered on Ray
(``ray_dedup`` of :func:`interleaf.run` chooses, for the dedup among the documents the
filters kept too: :func:`dedup_survivors`): MinHash
(:func:`minhash_clusters`: the bands hash-shuffled, connected components over the bucket
edges), exact (:func:`exact_clusters`: the keys hash-shuffled) and pHash
(:func:`phash_clusters`: equal hashes grouped, then multi-index hashing over bit ranges
shuffled by their bits), with connected components by label propagation on Ray actors
(:func:`components`), each with the same clusters, representatives and scores as the local
engine. SemDeDup's per-cluster passes run as Ray tasks (:func:`map_tasks`;
``interleaf.dedup.semantic(..., engine="ray")``). Progress: Ray Data's own progress bars, then
interleaf's per-stage table (with the number of Ray nodes each stage ran on).

Needs the ``ray`` extra (``pip install 'interleaf[ray]'``). ``address``: None starts (or joins)
a local Ray instance in this process; ``"auto"`` or ``"HOST:6379"`` (the head's GCS port) joins
a cluster from one of its nodes, on all of which interleaf must be installed (the same version,
checked) and the inputs and output folder reachable at the same paths. Ray Client addresses
(``ray://``) are refused: Ray Data does not run through Ray Client; submit the run as a Ray job
(``ray job submit -- interleaf run ...``) instead.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["DRIVER_SIGNATURE_BYTES", "Labels", "check_workers", "cluster_cpus", "clusterer", "exact_clusters", "gpus_per_actor", "components", "init", "local_instance_env", "map_tasks", "minhash_clusters", "phash_clusters", "run_jobs", "survivor_ranker", "dedup_survivors"]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("engine='ray' needs Ray: pip install 'interleaf[ray]'") from None
    if not hasattr(ray, "is_initialized"):
        # A folder named ray/ in the working directory (Ray's own /tmp/ray, say) imports as an
        # empty namespace package when Ray is not installed.
        where = ", ".join(getattr(ray, "__path__", [])) or "?"
        raise ImportError(f"engine='ray' needs Ray: pip install 'interleaf[ray]' (the 'ray' imported here is not Ray but the folder {where})")
    return ray


def init(address: str | None = None, *, progress: bool = True) -> Any:
    """Connects to Ray (``address``), or starts a local instance when there is none; returns
    the ``ray`` module. Ray Data's progress bars follow ``progress``."""
    import os

    ray = _ray()
    # `ray job submit` and many setups name the cluster in RAY_ADDRESS, not --address.
    address = address if address is not None else os.environ.get("RAY_ADDRESS") or None
    if address is not None and address.startswith("ray://"):
        # Ray Data does not run through Ray Client ('Worker' object has no attribute 'core_worker').
        raise ValueError(
            f"{address}: Ray Client (ray://) cannot run interleaf's Ray Data stages; run interleaf on a node of the cluster "
            "with --address auto (or HEAD:6379), for example through `ray job submit -- interleaf run ...`"
        )
    if not ray.is_initialized():
        # Quiet runs: Ray's own INFO and WARNING lines (the local instance starting, its
        # token-authentication notice) are left out too; its errors are still shown.
        kw: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": progress, "logging_level": logging.INFO if progress else logging.ERROR}
        if address is not None:
            _check_reachable(address)
            kw["address"] = address
            ray.init(**kw)
        else:
            with local_instance_env():
                ray.init(**kw)
    # Also without an address: ray.init() joins the cluster a `ray start` on this machine
    # recorded, whose nodes may run another Python (or none with interleaf).
    cluster = ray.get_runtime_context().gcs_address
    if cluster not in _CHECKED:
        check_workers(ray)
        _CHECKED.add(cluster)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
    # Without bars Ray Data warns, once per process, that they are off: what was asked for.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.NOTSET if progress else logging.ERROR)
    return ray


@contextlib.contextmanager
def local_instance_env(cpus: int | None = None) -> Iterator[None]:
    """The environment for starting a local Ray instance (``ray.init()`` without an address,
    ``ray.cluster_utils.Cluster``): its raylet keeps up to two idle workers per CPU
    (``RAY_num_workers_soft_limit``, unless already set) instead of Ray's one.

    Ray Data runs a shuffle's reduce tasks in workers of their own runtime environment, so a
    keyed repartition needs a second pool of workers beside the one for ordinary tasks; with one
    idle worker per CPU the raylet kills workers of either pool as soon as they idle and every
    shuffle waits for new Python processes: measured on 2 CPUs, a keyed ``repartition`` of ten
    rows took 9 s each time, 0.3 s with the limit raised. ``cpus``: the instance's CPUs
    (default: this machine's). An instance already running (``ray start``) is not affected."""
    import os

    key = "RAY_num_workers_soft_limit"
    if key in os.environ:
        yield
        return
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ[key] = str(2 * max(1, cpus))
    try:
        yield
    finally:
        os.environ.pop(key, None)


# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, the Ray
# Client server) answers with a frame of its own; anything else is not Ray.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


#: The clusters (GCS addresses) whose nodes :func:`init` checked in this process.
_CHECKED: set[str] = set()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """ConnectionError unless a gRPC server (Ray's GCS) answers at a ``host:port`` address:
    Ray itself retries an unreachable head for
    minutes, and waits forever on a port that takes the connection but is not Ray (the
    dashboard's 8265, a web server). ``auto`` and other forms go to Ray as they are; with
    ``RAY_USE_TLS`` only the connection is checked."""
    import os
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    hint = "--address takes the head's GCS port (ray start --head prints it; 6379 by default)"
    try:
        conn = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except OSError as e:
        raise ConnectionError(f"no Ray cluster answers at {address} ({e}); start one (ray start --head) or fix --address") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return
        got = b""
        try:
            conn.sendall(_H2_PREFACE)
            while len(got) < 9:
                chunk = conn.recv(9 - len(got))
                if not chunk:
                    break
                got += chunk
        except OSError as e:
            raise ConnectionError(f"{address} takes connections but is not a Ray cluster (no gRPC answer: {e}); {hint}") from None
    if got[:1] == b"\x15":  # a TLS alert: the cluster wants TLS
        raise ConnectionError(f"{address} answers with TLS: set RAY_USE_TLS=1 and Ray's TLS variables (RAY_TLS_SERVER_CERT, ...) as the cluster has them")
    if got.startswith(b"HTTP/"):
        raise ConnectionError(f"{address} is an HTTP server, not a Ray cluster (the dashboard is port 8265); {hint}")
    if len(got) < 9 or got[3] != 4:  # the server's first frame is SETTINGS (type 4)
        raise ConnectionError(f"{address} takes connections but is not a Ray cluster (no gRPC answer); {hint}")


def _worker_version() -> str:
    import interleaf

    return interleaf.__version__


def check_workers(ray: Any, timeout: float = 120.0) -> None:
    """RuntimeError unless every live node of the cluster imports interleaf, the same version
    as this driver (one zero-CPU task per node): a node without it would fail every task
    sent there, a node with another version would give other outputs."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    import interleaf

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    probe = ray.remote(num_cpus=0, max_retries=0)(_worker_version)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote() for n in nodes]
    try:
        got = ray.get(refs, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise RuntimeError(f"no answer within {timeout:.0f} s from interleaf on every Ray node (a node still installing a runtime_env, or out of resources?)") from None
    except Exception as e:
        raise ray_failure(e, "checking the Ray nodes") from e
    other = sorted({v for v in got if v != interleaf.__version__})
    if other:
        n = sum(v != interleaf.__version__ for v in got)
        raise RuntimeError(f"interleaf {interleaf.__version__} here but {', '.join(other)} on {n} of {len(nodes)} Ray nodes: outputs would differ; install the same version on every node")


def _encode(job: int, res: dict[str, Any]) -> dict[str, Any]:
    """A job's result as a JSON row, with the Ray node that ran it under ``_node``."""
    return {"job": job, "result": json.dumps({**res, "_node": _ray().get_runtime_context().get_node_id()}, default=str)}


class _StageActor:
    """One actor of a model stage's pool: runs the stage function on one shard job per call
    (the job's arguments travel pickled in its row, so the actor's constructor arguments stay
    small enough to go inline, not through the object store, where an actor restart could find
    them lost)."""

    def __init__(self, fn: Callable[..., dict[str, Any]]):
        self.fn = fn

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from ray import cloudpickle

        rows = [_encode(int(i), self.fn(*cloudpickle.loads(a))) for i, a in zip(batch["job"], batch["args"], strict=True)]
        return {"job": [r["job"] for r in rows], "result": [r["result"] for r in rows]}


def _tasks(ray: Any, n: int) -> dict[str, Any]:
    """At most ``n`` tasks at once: ``compute=TaskPoolStrategy(size=n)`` where this Ray has it
    (``concurrency=`` is deprecated since 2.51), ``concurrency=n`` on older releases."""
    try:
        return {"compute": ray.data.TaskPoolStrategy(size=n)}
    except (AttributeError, TypeError):
        return {"concurrency": n}


def cluster_cpus() -> int:
    """The CPUs of the connected Ray cluster."""
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))


#: How often a stage's model actor is started again after its worker or node died (Ray Data's
#: default is without end: a shard that crashes its worker every time would loop forever).
ACTOR_RESTARTS = 3


def run_jobs(fn: Callable[..., dict[str, Any]], jobs: list[tuple], *, concurrency: int | None = None, actors: bool = False, num_gpus: float = 0.0, stage: str = "stage", env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Runs ``fn(*job)`` for every job on Ray Data and returns the results in job order.
    ``actors``: an actor pool of ``concurrency`` actors (for stages that load models; each
    with ``num_gpus``; one that dies is started again :data:`ACTOR_RESTARTS` times); otherwise
    tasks, at most ``concurrency`` at once (default: the cluster's CPUs). ``env``: environment
    variables the jobs' workers get (the run's LLM API key), through their ``runtime_env``.
    Results travel as JSON; each names the node that ran it (``_node``)."""
    ray = _ray()
    if not jobs:
        return []
    n = concurrency or min(len(jobs), cluster_cpus())
    extra: dict[str, Any] = {"runtime_env": {"env_vars": dict(env)}} if env else {}
    if actors:
        from ray import cloudpickle

        ds = ray.data.from_items([{"job": i, "args": cloudpickle.dumps(j)} for i, j in enumerate(jobs)], override_num_blocks=len(jobs))
        kw: dict[str, Any] = {"fn_constructor_args": (fn,), "batch_size": 1, "compute": ray.data.ActorPoolStrategy(size=min(n, len(jobs))), "num_gpus": num_gpus or None, "num_cpus": 1, **extra}
        with warnings.catch_warnings():
            # Ray 2.60 takes the restarts among its deprecated free remote arguments (none names them).
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            try:
                ds = ds.map_batches(_StageActor, max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS, **kw)
            except TypeError:  # a Ray that takes named remote arguments only: its own default
                ds = ds.map_batches(_StageActor, **kw)
    else:
        ds = ray.data.from_items([{"job": i} for i in range(len(jobs))], override_num_blocks=len(jobs))
        ds = ds.map(lambda row: _encode(int(row["job"]), fn(*jobs[int(row["job"])])), num_cpus=1, **_tasks(ray, min(n, len(jobs))), **extra)
    failure: BaseException | None = None
    try:
        rows = ds.take_all()
    except BaseException as e:
        failure = e
    if failure is not None:
        # A failed Dataset's actor pool lives while anything refers to it, and the error's
        # tracebacks do (through Ray's frames, in reference cycles): its actors kept their
        # CPUs, and the next Ray run in this process waited for them. Drop both and collect
        # (outside the except block, which holds the error while it runs).
        cause: BaseException | None = failure
        seen: set[int] = set()
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            cause.__traceback__ = None
            cause = cause.__cause__ or cause.__context__
        del ds
        gc.collect()
        raise failure
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
    first argument), so small jobs do not each pay a task's overhead. A task whose worker dies
    is retried by Ray (three times); an exception raised by ``fn`` cancels the other tasks and
    raises here naming the stage."""
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
        for r in refs:
            ray.cancel(r)
        raise ray_failure(e, f"ray engine: {stage}") from e
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
    exact and pHash steps on Ray when ``mode`` says so (``auto``, ``distributed``, ``driver``),
    each shard's attribute slice written by a Ray task; with ``driver`` every step is left to
    the driver."""

    def once(step: Any, sig_paths: list[Any], counts: list[int], writers: list[Callable[..., None]]) -> dict[str, Any]:
        if step.method == "exact":
            return exact_clusters(sig_paths, counts, writers=writers)
        if step.method == "phash":
            return phash_clusters(sig_paths, counts, step.radius, writers=writers)
        from interleaf.dedup.minhash import lsh_params

        bands, rows = lsh_params(step.threshold, step.num_perm)
        return minhash_clusters(sig_paths, counts, bands, rows, writers=writers)

    def run(step: Any, sig_paths: list[Any], counts: list[int], writers: list[Callable[..., None]]) -> dict[str, Any] | None:
        if step.method not in ("minhash", "exact", "phash") or not _distribute(mode, step, sig_paths, counts):
            return None
        # The label actors hold the step's state: one lost with its worker or node (which Ray
        # cannot restore) restarts the step from its beginning, once; its files are rewritten.
        for attempt in (1, 2):
            try:
                return once(step, sig_paths, counts, writers)
            except Exception as e:
                if attempt == 2 or not _actor_lost(e):
                    raise
                logging.getLogger("interleaf").warning("dedup %s: a Ray actor was lost (%s); clustering the step again", step.name, ": ".join(_root(e)))
        return None

    return run


# Ray's own failures (a lost worker, actor, node, object or head): a rerun can get past them.
_RAY_LOSSES = ("ActorDiedError", "ActorUnavailableError", "RayActorError", "NodeDiedError", "ObjectLostError", "OwnerDiedError", "ObjectReconstructionFailedError", "WorkerCrashedError", "LocalRayletDiedError", "RaySystemError", "GetTimeoutError")
# Wrappers around the real error (a Ray Data UDF's, a task's).
_RAY_WRAPPERS = ("RayTaskError", "UserCodeException")


def _root(e: BaseException) -> tuple[str, str]:
    """(name, message) of the error under Ray's wrappers: a task's error reaches the driver as
    ``RayTaskError(UserCodeException)`` whose cause survives only in its text (``ValueError:
    ...`` lines of its chain, the innermost first): the outermost of them, the one the task's
    code raised (``filter x (...) failed on the scored values: ...``, not the polars error it
    was raised from)."""
    import re

    if not any(c.__name__.startswith(_RAY_WRAPPERS) for c in type(e).__mro__):
        first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
        return type(e).__name__, first.strip()
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    found: tuple[str, str] | None = None
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): ?(.*)$", line.strip())
        if m and not m.group(1).rsplit(".", 1)[-1].startswith(_RAY_WRAPPERS):
            found = m.group(1).rsplit(".", 1)[-1], m.group(2).strip()
    return found if found is not None else (type(e).__name__, _last_line(e))


def _actor_lost(e: BaseException) -> bool:
    """Whether ``e`` is (or wraps, or was raised from) a Ray actor that died or became
    unreachable, not for want of memory (a rerun would hit the same limit)."""
    seen: BaseException | None = e
    while seen is not None:
        name, message = _root(seen)
        if name in ("ActorDiedError", "ActorUnavailableError", "RayActorError") and "memory" not in message.lower() and "OutOfMemory" not in str(seen):
            return True
        seen = seen.__cause__
    return False


def _last_line(e: BaseException, limit: int = 300) -> str:
    """The last non-empty line of an exception's text, shortened."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ray_failure(e: BaseException, stage: str) -> RuntimeError:
    """An error out of Ray as the one line a user acts on: the error under Ray's wrappers
    (a task's ``ValueError: ...``), workers that cannot import interleaf, or a lost worker,
    node or head, for which the same command resumes."""
    if "No module named 'interleaf" in str(e):
        return RuntimeError(f"{stage}: the Ray workers cannot import interleaf: install it (the same version as here) on every node of the cluster")
    name, message = _root(e)
    message = message if len(message) <= 2000 else message[:1997] + "..."
    if name in _RAY_LOSSES:
        return RuntimeError(f"{stage}: the Ray run stopped ({name}: {message}); finished shards are kept: the same command resumes")
    return RuntimeError(f"{stage}: {name}: {message} (in a Ray task)")


def _signed(path: str, offset: int, values: bool = True) -> tuple[Any, Any]:
    """The global rows and the values of a shard's signed documents: the uint32 signature
    matrix (MinHash) or the uint64 hashes (pHash); None without ``values``."""
    import numpy as np
    import polars as pl

    col = pl.read_parquet(path, columns=["value"]).get_column("value")
    mask = col.is_not_null().to_numpy()
    if not values:
        return np.flatnonzero(mask).astype(np.int64) + offset, None
    good = col.filter(pl.Series(mask))
    if col.dtype == pl.UInt64:  # pHash
        out: np.ndarray = good.to_numpy().astype(np.uint64, copy=False)
    else:
        out = good.to_numpy().astype(np.uint32, copy=False) if good.len() else np.zeros((0, 0), np.uint32)
    return np.flatnonzero(mask).astype(np.int64) + offset, out


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
    import numpy as np
    import polars as pl

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return {"a": np.zeros(0, np.int64), "b": np.zeros(0, np.int64)}
    e = df.group_by(["band", "key"]).agg(pl.col("row").min().alias("a"), pl.col("row").alias("b")).explode("b").filter(pl.col("a") != pl.col("b"))
    return {"a": e.get_column("a").to_numpy(), "b": e.get_column("b").to_numpy()}


class _LabelShard:
    """One Ray actor's slice of the component labels: rows ``[lo, hi)``, each starting as its
    own row; labels only ever decrease (to another row of the same component). Also marks the
    rows that are another row's label (representatives) and keeps their values for scoring."""

    def __init__(self, lo: int, hi: int):
        import numpy as np

        self.lo = lo
        self.label = np.arange(lo, hi, dtype=np.int64)
        self.fell = 0  # labels lowered since the last reset: counted here, so a retried task's drops count too
        self.rep = np.zeros(hi - lo, dtype=bool)
        self.values: dict[int, Any] = {}

    def get(self, rows: Any) -> Any:
        return self.label[rows - self.lo]

    def lower(self, rows: Any, values: Any) -> int:
        """``label[row] = min(label[row], value)`` for each pair; returns how many labels fell."""
        import numpy as np

        idx = np.asarray(rows, dtype=np.int64) - self.lo
        u = np.unique(idx)
        before = self.label[u].copy()
        np.minimum.at(self.label, idx, np.asarray(values, dtype=np.int64))
        n = int((self.label[u] != before).sum())
        self.fell += n
        return n

    def reset(self) -> int:
        """The labels lowered since the last reset (then zero)."""
        n, self.fell = self.fell, 0
        return n

    def labels(self) -> Any:
        return self.label

    def mark(self, rows: Any) -> None:
        self.rep[rows - self.lo] = True

    def reps(self, rows: Any) -> Any:
        return self.rep[rows - self.lo]

    def put(self, rows: Any, values: Any) -> None:
        for r, v in zip(rows.tolist(), values, strict=True):
            self.values[r] = v

    def take(self, rows: Any) -> list[Any]:
        return [self.values[r] for r in rows.tolist()]


class Labels:
    """Component labels of rows ``0..total-1`` held by Ray actors (``shards`` of them, default
    one per cluster CPU, each a contiguous row range, 9 bytes per row: the label and a
    representative flag, plus the values of the representatives stored for scoring): a
    picklable handle that
    tasks use to read and lower labels where they run. :meth:`propagate` finds the connected
    components of a Ray Dataset of edges (label = the smallest row of the component); the
    edges never come to the driver. :meth:`close` releases the actors."""

    def __init__(self, total: int, shards: int | None = None):
        import numpy as np

        ray = _ray()
        self.total = total
        k = max(1, min(shards or cluster_cpus(), total))
        self.bounds = np.linspace(0, total, k + 1).astype(np.int64)
        self.rounds = 0
        remote = ray.remote(num_cpus=0)(_LabelShard)
        self.actors = [remote.remote(int(self.bounds[i]), int(self.bounds[i + 1])) for i in range(k)]

    def _groups(self, rows: Any) -> list[tuple[int, Any]]:
        """``rows`` split by owning actor: (actor, positions in ``rows``)."""
        import numpy as np

        owner = np.searchsorted(self.bounds, rows, side="right") - 1
        order = np.argsort(owner, kind="stable")
        ks, starts = np.unique(owner[order], return_index=True)
        ends = np.append(starts[1:], len(order)) if len(starts) else starts
        return [(int(k), order[a:b]) for k, a, b in zip(ks, starts, ends, strict=True)]

    def _gather(self, method: str, rows: Any, out: Any) -> Any:
        parts = self._groups(rows)
        for (_, pos), got in zip(parts, _ray().get([getattr(self.actors[k], method).remote(rows[pos]) for k, pos in parts]), strict=True):
            if isinstance(out, list):
                for p_, v in zip(pos.tolist(), got, strict=True):
                    out[p_] = v
            else:
                out[pos] = got
        return out

    def lookup(self, rows: Any) -> Any:
        """The current labels of ``rows`` (int64), asked of their owners in parallel."""
        import numpy as np

        return self._gather("get", np.asarray(rows, dtype=np.int64), np.empty(len(rows), dtype=np.int64))

    def lower(self, rows: Any, values: Any) -> int:
        """Lowers each row's label to ``values`` where smaller; returns how many fell."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64)
        values = np.asarray(values, dtype=np.int64)
        parts = self._groups(rows)
        return int(sum(_ray().get([self.actors[k].lower.remote(rows[pos], values[pos]) for k, pos in parts])))

    def propagate(self, edges: Any) -> int:
        """Connected components over ``edges`` (a Ray Dataset with int64 columns ``a``, ``b``):
        rounds of label propagation (each edge block mapped where it lies: both ends and their
        labels lowered to the smaller label) and pointer jumping (each label lowered to its label's label), until
        a round changes nothing (``rounds`` counts them). Returns the number of edges."""
        ray = _ray()
        edges = edges.materialize()
        jump = ray.remote(num_cpus=1)(_jump)
        n_edges = 0
        self.rounds = 0
        while True:
            self.rounds += 1
            ray.get([a.reset.remote() for a in self.actors])
            passed = edges.map_batches(_propagate, fn_kwargs={"labels": self}, batch_size=65536, batch_format="numpy").to_pandas()
            n_edges = int(passed["edges"].sum()) if len(passed) else 0
            # The actors count what fell (a task retried after lowering some labels would
            # report nothing for them); the jump's drops do not decide the next round.
            changed = sum(ray.get([a.reset.remote() for a in self.actors]))
            ray.get([jump.remote(self, k) for k in range(len(self.actors))])
            if not changed:
                return n_edges

    def mark_representatives(self) -> None:
        """Marks the rows that are the label of another row."""
        ray = _ray()
        ray.get([ray.remote(num_cpus=1)(_mark).remote(self, k) for k in range(len(self.actors))])

    def is_representative(self, rows: Any) -> Any:
        import numpy as np

        return self._gather("reps", np.asarray(rows, dtype=np.int64), np.zeros(len(rows), dtype=bool))

    def put_values(self, rows: Any, values: Any) -> None:
        """Stores the values (signature rows, hashes) of representatives with their owners."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64)
        _ray().get([self.actors[k].put.remote(rows[pos], values[pos]) for k, pos in self._groups(rows)])

    def take_values(self, rows: Any) -> list[Any]:
        import numpy as np

        return self._gather("take", np.asarray(rows, dtype=np.int64), [None] * len(rows))

    def array(self) -> Any:
        """Every row's label, in the driver (8 bytes per row)."""
        import numpy as np

        return np.concatenate(_ray().get([a.labels.remote() for a in self.actors])) if self.total else np.zeros(0, np.int64)

    def close(self) -> None:
        for a in self.actors:
            _ray().kill(a)
        self.actors = []


def _propagate(batch: dict[str, Any], labels: Labels) -> dict[str, Any]:
    """One round of label propagation over a batch of edges: both ends of each edge, and their
    labels, lowered to the smaller of the two labels."""
    import numpy as np

    a = np.asarray(batch["a"], dtype=np.int64)
    b = np.asarray(batch["b"], dtype=np.int64)
    if len(a):
        la, lb = labels.lookup(a), labels.lookup(b)
        m = np.minimum(la, lb)
        # Both ends and both ends' labels (the roots they point to: hooking, as FastSV does),
        # so a whole tree moves at once and the rounds grow with the log of a component's
        # diameter.
        labels.lower(np.concatenate([a, b, la, lb]), np.concatenate([m, m, m, m]))
    return {"edges": np.array([len(a)], np.int64)}


def _own_rows(labels: Labels, k: int) -> tuple[Any, Any]:
    import numpy as np

    lab = _ray().get(labels.actors[k].labels.remote())
    return np.arange(int(labels.bounds[k]), int(labels.bounds[k + 1]), dtype=np.int64), lab


def _jump(labels: Labels, k: int) -> int:
    """Pointer jumping for actor ``k``'s rows: each label lowered to its label's label."""
    rows, lab = _own_rows(labels, k)
    move = lab != rows
    return labels.lower(rows[move], labels.lookup(lab[move])) if move.any() else 0


def _mark(labels: Labels, k: int) -> None:
    """Marks the labels of actor ``k``'s rows that are not their own row as representatives."""
    import numpy as np

    rows, lab = _own_rows(labels, k)
    reps = np.unique(lab[lab != rows])
    if len(reps):
        _ray().get([labels.actors[j].mark.remote(reps[pos]) for j, pos in labels._groups(reps)])


def components(total: int, edges: Any, *, shards: int | None = None) -> tuple[Any, dict[str, int]]:
    """Connected components of rows ``0..total-1`` over the edges of a Ray Dataset (int64
    columns ``a``, ``b``), by label propagation on Ray actors (:class:`Labels`). Returns
    ``(label, stats)``: for every row the smallest row of its component, and the number of
    ``edges`` and ``rounds``."""
    labels = Labels(total, shards)
    try:
        n_edges = labels.propagate(edges)
        return labels.array(), {"edges": n_edges, "rounds": labels.rounds}
    finally:
        labels.close()


def _shard_items(sig_paths: list[Any], counts: list[int]) -> list[dict[str, Any]]:
    """One item per shard: its signature file, the global row of its first document, its size."""
    import numpy as np

    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if counts else np.zeros(0, np.int64)
    return [{"path": str(p), "offset": int(o), "n": int(n)} for p, o, n in zip(sig_paths, offsets, counts, strict=True)]


def _partitions(items: list[dict[str, Any]]) -> int:
    """Blocks of a shuffle: up to four per cluster CPU, at least one per shard or per 100,000
    documents (a few huge shards still spread over the cluster)."""
    docs = sum(int(it.get("n", 0)) for it in items)
    return max(1, min(4 * cluster_cpus(), max(len(items), -(-docs // 100_000))))


def _push_values(item: dict[str, Any], labels: Labels) -> None:
    """Stores the values of the shard's representatives with their label actors."""
    glob, values = _signed(item["path"], item["offset"])
    rep = labels.is_representative(glob)
    if rep.any():
        labels.put_values(glob[rep], values[rep])


def _finish_shard(item: dict[str, Any], labels: Labels, metric: str | None, self_score: float, writer: Callable[..., None] | None) -> dict[str, Any]:
    """One shard's representatives (-1 without a value) and scores (NaN without a value;
    ``self_score`` for a representative; a duplicate scored against its representative's
    value: ``jaccard`` the share of equal MinHash rows, ``hamming`` the bits that differ, None
    1), written by ``writer`` or returned."""
    import numpy as np

    off, n = item["offset"], item["n"]
    glob, values = _signed(item["path"], off, values=metric is not None)
    label = labels.lookup(glob)
    reps = np.full(n, -1, dtype=np.int64)
    score = np.full(n, np.nan)
    reps[glob - off] = label
    score[glob - off] = self_score
    dup = np.flatnonzero(label != glob)
    if len(dup):
        if metric is None:
            score[glob[dup] - off] = 1.0
        else:
            rv = labels.take_values(label[dup])
            if metric == "jaccard":
                score[glob[dup] - off] = (values[dup] == np.stack(rv)).mean(axis=1)
            else:
                score[glob[dup] - off] = [float((int(a) ^ int(b)).bit_count()) for a, b in zip(values[dup], rv, strict=True)]
    res: dict[str, Any] = {"signed": len(glob), "joined": len(dup)}
    if writer is not None:
        writer(reps, score)
    else:
        res.update(reps=reps, score=score)
    return res


def _finish(labels: Labels, items: list[dict[str, Any]], metric: str | None, self_score: float, writers: list[Callable[..., None]] | None) -> tuple[Any, Any, dict[str, Any]]:
    """After the components: the representatives' values stored with the label actors (for
    the scores), then every shard's slice computed by a Ray task and written by its writer
    (``writers``; nothing per document comes to the driver) or returned and concatenated
    (``writers`` None). Returns ``(representative, score, counts)`` (the arrays None when
    written)."""
    import numpy as np

    if metric is not None:
        labels.mark_representatives()
        map_tasks(_push_values, [(it, labels) for it in items], weights=[max(1, it["n"]) for it in items], stage="dedup: representatives' values")
    jobs = [(it, labels, metric, self_score, writers[i] if writers is not None else None) for i, it in enumerate(items)]
    res = map_tasks(_finish_shard, jobs, weights=[max(1, it["n"]) for it in items], stage="dedup: write")
    counts = {"signed": int(sum(r["signed"] for r in res)), "joined": int(sum(r["joined"] for r in res))}
    if writers is not None:
        return None, None, counts
    reps = np.concatenate([r["reps"] for r in res]) if res else np.zeros(0, np.int64)
    score = np.concatenate([r["score"] for r in res]) if res else np.zeros(0)
    return reps, score, counts


def _result(reps: Any, score: Any, stats: dict[str, Any], writers: Any) -> Any:
    """``stats`` when the slices were written, else ``(representative, score, stats)``."""
    return stats if writers is not None else (reps, score, {k: v for k, v in stats.items() if k != "signed"})


def minhash_clusters(sig_paths: list[Any], counts: list[int], bands: int, rows: int, *, writers: list[Callable[..., None]] | None = None) -> Any:
    """MinHash LSH clustering of every shard's signatures on Ray, equal to the local engine's:
    each document's bands keyed by their exact values (a Ray Data hash shuffle on (band,
    values)), each bucket's members joined to its first row, connected components by label
    propagation on Ray actors (:class:`Labels`), the representative the smallest global row of
    its component, the score the estimated Jaccard with it. With ``writers`` (one per shard,
    ``writer(representative, score)``) each shard's slice is computed and written by a Ray task
    and the stats are returned (with ``signed``): nothing per document comes to the driver.
    Without, returns ``(representative, score, stats)`` over the global row order (-1 / NaN
    for documents without a signature)."""
    ray = _ray()
    total = int(sum(counts))
    items = _shard_items(sig_paths, counts)
    shards = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    keyed = shards.map_batches(_band_rows, fn_kwargs={"bands": bands, "rows": rows}, batch_size=1, batch_format="numpy")
    # The shuffle: every (band, values) bucket into one block, then its edges in polars.
    edges = keyed.repartition(_partitions(items), keys=["band", "key"]).map_batches(_block_edges, batch_size=None, batch_format="pyarrow")
    labels = Labels(total)
    try:
        n_edges = labels.propagate(edges)
        reps, score, counts_ = _finish(labels, items, "jaccard", 1.0, writers)
    finally:
        labels.close()
    return _result(reps, score, {"bands": bands, "rows": rows, "candidates": n_edges, "rounds": labels.rounds, **counts_}, writers)


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
    import numpy as np
    import polars as pl

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return {"row": np.zeros(0, np.int64), "rep": np.zeros(0, np.int64)}
    df = df.with_columns(pl.col("row").min().over("key").alias("rep"))
    return {"row": df.get_column("row").to_numpy(), "rep": df.get_column("rep").to_numpy()}


def _lower_to_first(batch: dict[str, Any], labels: Labels) -> dict[str, Any]:
    import numpy as np

    labels.lower(np.asarray(batch["row"], dtype=np.int64), np.asarray(batch["rep"], dtype=np.int64))
    return {"n": np.array([len(batch["row"])], np.int64)}


def exact_clusters(sig_paths: list[Any], counts: list[int], *, writers: list[Callable[..., None]] | None = None) -> Any:
    """Exact dedup on Ray, equal to the local engine's: the documents' keys hash-shuffled
    (``repartition(keys=["key"])``), each document's representative the first (smallest global
    row) with its key, kept by the label actors (:class:`Labels`), score 1. ``writers`` and the
    return value as :func:`minhash_clusters`."""
    ray = _ray()
    total = int(sum(counts))
    items = _shard_items(sig_paths, counts)
    keyed = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(_key_rows, batch_size=1, batch_format="numpy")
    firsts = keyed.repartition(_partitions(items), keys=["key"]).map_batches(_block_firsts, batch_size=None, batch_format="pyarrow")
    labels = Labels(total)
    try:
        firsts.map_batches(_lower_to_first, fn_kwargs={"labels": labels}, batch_size=65536, batch_format="numpy").to_pandas()
        reps, score, counts_ = _finish(labels, items, None, 1.0, writers)
    finally:
        labels.close()
    return _result(reps, score, {"distinct_keys": counts_["signed"] - counts_["joined"], **counts_}, writers)


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
    import numpy as np
    import polars as pl

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return {"h": np.zeros(0, np.uint64), "row": np.zeros(0, np.int64), "first": np.zeros(0, np.int64)}
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


def phash_clusters(sig_paths: list[Any], counts: list[int], radius: int, *, writers: list[Callable[..., None]] | None = None) -> Any:
    """pHash dedup on Ray, equal to the local engine's (hashes within Hamming ``radius``,
    transitively): documents with equal hashes grouped by a hash shuffle, then each distinct
    hash keyed by its bits in each of ``radius + 1`` ranges and shuffled on (range, bits), the
    pairs within ``radius`` found per block by multi-index hashing (Rust), connected components
    by label propagation on Ray actors (:class:`Labels`); the representative the smallest
    global row of its cluster, the score the Hamming distance to it. ``writers`` and the return
    value as :func:`minhash_clusters`."""
    ray = _ray()
    total = int(sum(counts))
    items = _shard_items(sig_paths, counts)
    shards = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    firsts = shards.map_batches(_hash_rows, batch_size=1, batch_format="numpy").repartition(_partitions(items), keys=["h"]).map_batches(_block_hash_firsts, batch_size=None, batch_format="pyarrow").materialize()
    keyed = firsts.map_batches(_range_keys, fn_kwargs={"radius": radius}, batch_format="numpy")
    near = keyed.repartition(_partitions(items), keys=["part", "bits"]).map_batches(_block_near, fn_kwargs={"radius": radius}, batch_size=None, batch_format="pyarrow").materialize()
    # Equal hashes join their first row, near hashes' first rows join each other.
    equal = firsts.map_batches(_equal_edges, batch_format="numpy")
    labels = Labels(total)
    try:
        labels.propagate(equal.union(near))
        reps, score, counts_ = _finish(labels, items, "hamming", 0.0, writers)
    finally:
        labels.close()
    return _result(reps, score, {"radius": radius, "distinct_hash_pairs": near.count(), "rounds": labels.rounds, **counts_}, writers)


# --- dedup among the documents the filters kept, on Ray Data ----------------------------------


def survivor_ranker(mode: str) -> Callable[..., None]:
    """The ``rank`` of :func:`interleaf.pipeline.filter_all` for the Ray engine: the dedup
    among the surviving documents on Ray Data (:func:`dedup_survivors`) when ``mode`` says so
    (``distributed``, or ``auto`` when the documents' keys, about 64 bytes per document of the
    input (an upper bound on the survivors'), plus a MinHash step's signatures (num_perm x 4
    bytes), would exceed :data:`DRIVER_SIGNATURE_BYTES`), else in the driver."""

    def rank(opts: Any, shards: list[Any], counts: list[int]) -> None:
        from interleaf import pipeline

        per_doc = 64 + max((4 * s.num_perm for s in opts.plan.dataset_steps if s.method == "minhash"), default=0)
        if mode == "distributed" or (mode == "auto" and sum(counts) * per_doc > DRIVER_SIGNATURE_BYTES):
            dedup_survivors(opts, shards, counts)
        else:
            pipeline.dedup_survivors(opts, shards, counts)

    return rank


def _survivor_rows(batch: dict[str, Any], out: str, step: str, earlier: list[str]) -> dict[str, Any]:
    """The surviving documents of the batch's shards that the step clustered and no earlier
    step dropped: (cluster, global row, doc_index, doc_id, score, shard name)."""
    import polars as pl

    from interleaf import pipeline

    S = pipeline.S
    frames = []
    for name, offset in zip(batch["name"], batch["offset"], strict=True):
        d = pl.read_parquet(pipeline.filter_scratch(Path(out), "survivors", str(name)), columns=[S.DOC_INDEX, S.DOC_ID, f"{step}_cluster", f"{step}_score"])
        for e in earlier:
            f = pipeline.filter_scratch(Path(out), f"dedup/{e}", str(name))
            if f.exists():
                d = d.join(pl.read_parquet(f, columns=[S.DOC_INDEX]), on=S.DOC_INDEX, how="anti", maintain_order="left")
        d = d.filter(pl.col(f"{step}_cluster").is_not_null())
        frames.append(d.select(pl.col(f"{step}_cluster").alias("cluster"), (pl.col(S.DOC_INDEX) + int(offset)).alias("g"), pl.col(S.DOC_INDEX).alias("doc_index"), pl.col(S.DOC_ID).alias("doc_id"), pl.col(f"{step}_score").alias("score"), pl.lit(str(name)).alias("shard")))
    df = pl.concat(frames)
    return {c: df.get_column(c).to_numpy() for c in df.columns}


def _block_shared(table: Any) -> Any:
    """Within a block partitioned on the cluster: the rows of the clusters with two or more
    survivors (only those can drop anything, and only their values are read)."""
    import polars as pl

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return table.slice(0, 0)
    return df.filter(pl.len().over("cluster") > 1).to_arrow()


def _attach_values(table: Any, out: str, step: Any) -> Any:
    """Within a block partitioned on the shard: each row's pHash (uint64) or MinHash signature
    (its bytes), read once per shard from ``signatures/<step>/``."""
    import numpy as np
    import polars as pl

    from interleaf import pipeline

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return table.slice(0, 0).append_column("value", _empty_values(step))
    parts = []
    for (name,), part in df.group_by("shard", maintain_order=True):
        sig = pl.read_parquet(Path(out) / "signatures" / step.name / f"{name}.parquet", columns=[pipeline.S.DOC_INDEX, "value"]).rename({pipeline.S.DOC_INDEX: "doc_index"})
        got = part.join(sig, on="doc_index", how="left", maintain_order="left")
        if step.method == "minhash":  # rows of bytes: one arrow binary column through the shuffle
            m = np.ascontiguousarray(got.get_column("value").to_numpy(), dtype=np.uint32)
            got = got.with_columns(pl.Series("value", [r.tobytes() for r in m], dtype=pl.Binary))
        parts.append(got)
    return pl.concat(parts).to_arrow()


def _empty_values(step: Any) -> Any:
    import pyarrow as pa

    return pa.array([], type=pa.binary() if step.method == "minhash" else pa.uint64())


def _block_rank(table: Any, step: Any) -> dict[str, Any]:
    """Within a block partitioned on the cluster (the rows of clusters with two or more
    survivors, with their values): the survivors clustered again among themselves
    (:func:`interleaf.pipeline.survivor_duplicates`); the first of each in read order stays,
    the others come back with the kept one's doc_id and shard."""
    import numpy as np
    import polars as pl

    from interleaf import pipeline

    text = np.zeros(0, dtype=object)
    empty = {"shard": text, "doc_index": np.zeros(0, np.int64), "doc_id": text, "score": np.zeros(0), "rep": text, "rs": text, "ri": np.zeros(0, np.int64)}
    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return empty
    values: np.ndarray | None = None
    if step.method == "phash":
        values = df.get_column("value").to_numpy().astype(np.uint64)
    elif step.method == "minhash":
        values = np.frombuffer(b"".join(df.get_column("value").to_list()), dtype=np.uint32).reshape(df.height, step.num_perm)
    d = pipeline.survivor_duplicates(df, step, values)
    return {c: d.get_column(c).to_numpy() for c in ("shard", "doc_index", "doc_id", "score", "rep", "rs", "ri")}


def _block_shared_rank(table: Any, step: Any) -> dict[str, Any]:
    """:func:`_block_rank` of :func:`_block_shared` in one block (an exact step: no values)."""
    return _block_rank(_block_shared(table), step)


def _write_drops(table: Any, out: str, step: Any) -> dict[str, Any]:
    """Within a block partitioned on the shard: each shard's drops of ``step``, in document
    order, written (atomically) to its file under ``OUT/.interleaf/filter/dedup/<step>/``."""
    import numpy as np
    import polars as pl

    from interleaf import pipeline

    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame) or df.is_empty():
        return {"n": np.zeros(1, np.int64)}
    S = pipeline.S
    for (name,), part in df.group_by("shard"):
        rows = part.sort("doc_index").select(pl.col("doc_index").alias(S.DOC_INDEX), pl.col("doc_id").alias(S.DOC_ID), pl.col("score").alias(f"{step.name}_score"), pl.col("rep").alias("_rep"), pl.col("rs").alias("_rs"), pl.col("ri").alias("_ri"))
        pipeline.write_parquet(pipeline.dedup_drops(rows, step), pipeline.filter_scratch(Path(out), f"dedup/{step.name}", str(name)))
    return {"n": np.array([df.height], np.int64)}


def dedup_survivors(opts: Any, shards: list[Any], counts: list[int]) -> None:
    """:func:`interleaf.pipeline.dedup_survivors` on Ray Data, with the same files: per dataset
    dedup step in order, the documents every filter kept and no earlier step dropped are
    hash-shuffled on their cluster; the clusters with two or more survivors are shuffled to
    their shards for their hashes or signatures and back, clustered again among themselves,
    the first of each cluster in read order stays, and the others are shuffled back to their
    shards, whose drop files Ray tasks write. Nothing per document comes to the driver."""
    import shutil

    import numpy as np

    from interleaf import pipeline

    ray = _ray()
    out = Path(opts.out)
    shutil.rmtree(out / pipeline.STATE / "filter" / "dedup", ignore_errors=True)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64).tolist() if counts else []
    items = [{"name": s.name, "offset": int(o), "n": int(n)} for s, o, n in zip(shards, offsets, counts, strict=True)]
    done: list[str] = []
    for step in opts.plan.dataset_steps:
        rows = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(_survivor_rows, fn_kwargs={"out": str(out), "step": step.name, "earlier": list(done)}, batch_size=1, batch_format="numpy").materialize()
        done.append(step.name)
        if not rows.count():
            continue
        # A cluster is ranked within one block of a repartition on it (those are never cut; a
        # map's output may be, at Ray Data's target block size, splitting a cluster in two).
        by_cluster = rows.repartition(_partitions(items), keys=["cluster"])
        if step.method == "exact":
            dups = by_cluster.map_batches(_block_shared_rank, fn_kwargs={"step": step}, batch_size=None, batch_format="pyarrow").materialize()
        else:
            # Integers first: the clusters with two or more survivors; then their values, read
            # once per shard, travel with those rows alone to be clustered again.
            shared = by_cluster.map_batches(_block_shared, batch_size=None, batch_format="pyarrow").materialize()
            if not shared.count():
                continue
            shared = shared.repartition(_partitions(items), keys=["shard"]).map_batches(_attach_values, fn_kwargs={"out": str(out), "step": step}, batch_size=None, batch_format="pyarrow")
            shared = shared.repartition(_partitions(items), keys=["cluster"])
            dups = shared.map_batches(_block_rank, fn_kwargs={"step": step}, batch_size=None, batch_format="pyarrow").materialize()
        if not dups.count():
            continue
        dups.repartition(_partitions(items), keys=["shard"]).map_batches(_write_drops, fn_kwargs={"out": str(out), "step": step}, batch_size=None, batch_format="pyarrow").to_pandas()
