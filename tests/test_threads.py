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
