"""One process-wide thread policy: a default set once, pools reused, bounds with clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import interleaf
from interleaf.dedup import MinHasher


def test_set_threads_sets_the_default_and_bounds_it():
    before = interleaf.get_threads()
    try:
        interleaf.set_threads(1)
        assert interleaf.get_threads() == 1
        texts = ["a b c d e f g"] * 50
        one = MinHasher().signatures(texts)
        interleaf.set_threads(2)
        assert np.array_equal(MinHasher().signatures(texts), one)
        for bad in (0, 513, 100_000):
            with pytest.raises(ValueError, match=r"threads must be in \[1, 512\]"):
                interleaf.set_threads(bad)
        with pytest.raises(ValueError, match="threads"):
            MinHasher(threads=100_000).signatures(texts)
    finally:
        interleaf.set_threads(before)


def test_interleaf_threads_environment_variable_is_the_default():
    code = "import interleaf; print(interleaf.get_threads())"
    env = {**os.environ, "INTERLEAF_THREADS": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


def test_prefetch_works_at_most_depth_ahead_and_raises_in_place():
    """The read-ahead of shards and the decode-ahead of image batches: the next item is made
    while the caller holds this one, never more than ``depth`` ahead (memory), an error comes
    at its place in the sequence, and a caller that stops early stops the worker."""
    import time

    from interleaf._prefetch import prefetch

    made: list[int] = []

    def items(n: int, fail_at: int | None = None):
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"item {i} is bad")
            made.append(i)
            yield i

    for depth in (1, 2):
        made.clear()
        seen = []
        for x in prefetch(items(6), depth=depth):
            want = min(6, x + 1 + depth)
            deadline = time.monotonic() + 10
            while len(made) < want and time.monotonic() < deadline:  # it runs ahead...
                time.sleep(0.01)
            time.sleep(0.05)  # ...and no further, given the time to
            seen.append((x, len(made)))
        assert seen == [(i, min(6, i + 1 + depth)) for i in range(6)]
    got = []
    with pytest.raises(ValueError, match="item 3 is bad"):
        for x in prefetch(items(6, fail_at=3)):
            got.append(x)
    assert got == [0, 1, 2]
    made.clear()
    it = prefetch(items(1000), depth=2)
    assert next(it) == 0
    it.close()
    time.sleep(0.3)
    assert len(made) <= 3


def test_ctrl_c_in_the_first_numpy_call_is_a_keyboard_interrupt():
    """numpy's C API is fetched at import: fetched lazily inside the first call that returns an
    array, a pending Ctrl-C made the fetch fail and the numpy crate panic
    (``pyo3_runtime.PanicException``, which ``except KeyboardInterrupt`` misses)."""
    code = """
import os, signal, threading
from interleaf.dedup import MinHasher
texts = [" ".join(f"w{(i * 7919 + j) % 5000}" for j in range(200)) for i in range(30000)]
signal.signal(signal.SIGINT, signal.default_int_handler)  # also where SIGINT is inherited ignored
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    MinHasher(num_perm=1024, threads=1).signatures(texts)
    print("returned")
except KeyboardInterrupt:
    print("interrupted")
except BaseException as e:
    print("other", type(e).__name__)
"""
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert got.stdout.strip() in ("interrupted", "returned"), (got.stdout, got.stderr[-2000:])
    assert "panicked" not in got.stderr


_LONG_CALLS = {
    # Rows that all share band 0 but whose signatures agree on 8 of 128 values: every row is
    # verified against every earlier one and none joins (n^2 / 2 = 2e10 verifications: hours).
    "lsh": """
import numpy as np
from interleaf.dedup.minhash import lsh_clusters
sigs = np.random.default_rng(0).integers(0, 2**32, (200_000, 128), dtype=np.uint32)
sigs[:, :8] = 7
call = lambda: lsh_clusters(sigs, 0.9, bands=1, rows=8, verify="signature")
""",
    # Hashes equal in their top 32 bits: every query meets every hash in those ranges' buckets
    # (5e11 comparisons: many minutes).
    "hamming": """
import numpy as np
from interleaf.dedup.perceptual import hash_clusters
hashes = np.random.default_rng(0).integers(0, 2**32, 1_000_000, dtype=np.uint64)
call = lambda: hash_clusters(hashes, 5)
""",
}


@pytest.mark.parametrize("which", sorted(_LONG_CALLS))
def test_ctrl_c_stops_a_long_clustering_call(which):
    """The clustering calls that run for minutes on a large dataset (MinHash LSH, Hamming
    clusters) stop at Ctrl-C: KeyboardInterrupt comes at once, not when the call would end
    (here, hours; the subprocess is killed after 120 s if it is not stopped)."""
    code = (
        _LONG_CALLS[which]
        + """
import os, signal, threading
# Python's own handler, also where this test runs with SIGINT ignored (a background job
# inherits SIG_IGN, and Python then installs no handler).
signal.signal(signal.SIGINT, signal.default_int_handler)
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    call()
    print("returned")
except KeyboardInterrupt:
    print("interrupted")
"""
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert got.stdout.strip() == "interrupted", (got.stdout, got.stderr[-2000:])
    assert "panicked" not in got.stderr
