"""The polars plugin (same .so as interleaf._native) against the xxhash reference."""

from __future__ import annotations

import polars as pl
import xxhash

import interleaf.polars as ilp
from interleaf import _native

TEXTS = ["", "a", "The quick brown fox jumps over the lazy dog.", "naïve café — ünïcödé", "x" * 10_000]


def test_xxh3_64_of_strings_matches_xxhash_in_eager_lazy_and_streaming():
    df = pl.DataFrame({"t": [*TEXTS, None]})
    expected = [xxhash.xxh3_64_intdigest(t.encode()) for t in TEXTS] + [None]
    assert df.select(ilp.xxh3_64("t")).to_series().to_list() == expected
    lazy = df.lazy().select(ilp.xxh3_64(pl.col("t")).alias("h"))
    assert lazy.collect(engine="streaming").get_column("h").to_list() == expected


def test_xxh3_64_of_binary_matches_xxhash(sample_images):
    blobs = list(sample_images.values())
    df = pl.DataFrame({"b": blobs}, schema={"b": pl.Binary})
    assert df.select(ilp.xxh3_64("b")).to_series().to_list() == [xxhash.xxh3_64_intdigest(b) for b in blobs]
    assert _native.xxh3_64(blobs) == [xxhash.xxh3_64_intdigest(b) for b in blobs]


def test_xxh3_64_rejects_other_dtypes():
    import pytest

    with pytest.raises(pl.exceptions.ComputeError, match="String or Binary"):
        pl.DataFrame({"i": [1, 2]}).select(ilp.xxh3_64("i"))
