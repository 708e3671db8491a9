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

The global dedup and filter stages run in the driver, as in the local engine (a later release
moves MinHash clustering onto a Ray Data shuffle). Progress: Ray Data's own progress bars, then
interleaf's per-stage table.

Needs the ``ray`` extra (``pip install 'interleaf[ray]'``). ``address``: None starts (or joins)
a local Ray instance in this process; ``"auto"`` or ``"ray://host:10001"`` joins a cluster, on
whose nodes interleaf must be installed and the inputs and output folder reachable at the same
paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["cluster_cpus", "gpus_per_actor", "init", "run_jobs"]


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
    return {"job": job, "result": json.dumps(res, default=str)}


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
    cluster's CPUs). Results travel as JSON."""
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


def gpus_per_actor(device: str) -> float:
    """One GPU per model actor when the run's device is CUDA (or "auto" on a cluster with
    GPUs), else none."""
    if device == "cpu":
        return 0.0
    gpus = float(_ray().cluster_resources().get("GPU", 0))
    if device == "cuda" and gpus < 1:
        raise RuntimeError("device='cuda' but the Ray cluster has no GPU")
    return 1.0 if gpus >= 1 else 0.0
