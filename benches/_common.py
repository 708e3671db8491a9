"""Helpers the benchmarks share: machine facts, package versions, the git commit measured and
CPU accounting for quiet-machine checks."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "mem_gib": mem_gib,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions(names) -> dict:
    """Installed version of each distribution (None when absent)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """HEAD, with "-dirty" when python/ or rust/ has uncommitted changes."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "python", "rust"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def report_header(benchmark: str) -> dict:
    """The fields every results JSON starts with: name, date, command, commit, machine."""
    import datetime as dt
    import sys

    return {
        "benchmark": benchmark,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_commit": git_commit(),
        "machine": machine_info(),
    }


def busy_cpu_s() -> float:
    """Non-idle CPU seconds of the whole machine since boot (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # guest time is inside user


def cpu_s() -> float:
    """CPU seconds of this process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def add_quiet_machine_args(ap) -> None:
    """The options of :func:`run_quiet` and the hidden child-process options."""
    import argparse

    ap.add_argument("--max-foreign", type=float, default=0.03,
                    help="rerun a child when other processes used more than this share of the CPUs meanwhile")
    ap.add_argument("--max-retries", type=int, default=10)
    ap.add_argument("--retry-wait", type=float, default=5.0, help="seconds to wait before rerunning a child")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)


def child_env(child_env_spec: dict, threads: int) -> dict:
    """The environment for a child: ``None`` values in the spec become the thread count."""
    env = dict(os.environ)
    for k, v in child_env_spec.items():
        env[k] = str(threads) if v is None else v
    return env


def run_quiet(cmd: list[str], env: dict, label: str, args) -> dict:
    """Runs a benchmark child (which prints one JSON line last) and reruns it, up to
    ``args.max_retries`` times, while other processes used more than ``args.max_foreign`` of
    the CPUs during the run. Adds ``other_processes_cpu_s`` and ``discarded_runs``."""
    import json
    import sys
    import time

    ncpu = len(os.sched_getaffinity(0))
    for attempt in range(args.max_retries + 1):
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        b0, t0 = busy_cpu_s(), time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        foreign = max(0.0, (busy_cpu_s() - b0) - child_cpu)
        if proc.returncode != 0:
            raise RuntimeError(f"child {label} failed ({proc.returncode}):\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["other_processes_cpu_s"] = round(foreign, 2)
        r["discarded_runs"] = attempt
        noisy = foreign > args.max_foreign * wall * ncpu
        if not noisy or attempt == args.max_retries:
            if noisy:
                print(f"  WARNING: {label}: other processes used {foreign:.1f} CPU s during the run; kept anyway", file=sys.stdout, flush=True)
            return r
        print(f"  {label}: other processes used {foreign:.1f} CPU s during the run; rerunning", flush=True)
        time.sleep(args.retry_wait)
    raise AssertionError("unreachable")


def alternate(contenders: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each contender (name -> call with no argument) over ``repeats`` rounds, the
    contenders taking turns within a round so that drift of the machine falls on all alike."""
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times
