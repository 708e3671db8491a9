"""The polars plugin (same .so as interleaf._native) against the xxhash reference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
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


def test_a_column_of_nulls_only_gives_nulls_as_the_python_api_does():
    # pl.Null is the dtype of a column of Nones (a frame built without a schema): each
    # expression gives its own dtype's nulls instead of a dtype error.
    df = pl.DataFrame({"x": [None, None]})
    assert df.schema["x"] == pl.Null
    exprs = {
        "xxh3_64": ilp.xxh3_64("x"),
        "minhash": ilp.minhash("x", num_perm=4),
        "phash": ilp.phash("x"),
        "image_stats": ilp.image_stats("x"),
        "text_stats": ilp.text_stats("x"),
        "hamming": ilp.hamming("x", "x"),
        "cosine": ilp.cosine("x", "x"),
    }
    for name, e in exprs.items():
        out = df.select(e.alias(name)).to_series()
        assert out.null_count() == 2 or out.struct.unnest().null_count().row(0)[0] == 2, name


def test_text_expressions_take_categorical_and_enum_columns():
    texts = ["the quick brown fox jumps over", "a b", None]
    df = pl.DataFrame({"s": texts}).with_columns(pl.col("s").cast(pl.Categorical).alias("c"), pl.col("s").cast(pl.Enum(texts[:2])).alias("e"))
    for col in ("c", "e"):
        assert df.select(ilp.minhash(col, num_perm=4)).to_series().to_list() == df.select(ilp.minhash("s", num_perm=4)).to_series().to_list()
        assert df.select(ilp.text_stats(col).alias("t")).equals(df.select(ilp.text_stats("s").alias("t")))


# ------------------------------------------------------------------- signal expressions


def test_text_stats_expression_equals_the_function_form():
    import inspect

    from interleaf.signals import text_stats as table

    texts = [p for p in (inspect.getdoc(m) or "" for m in (pl.DataFrame, pl.Series, pl.Expr, pl.LazyFrame)) for p in p.split("\n\n")][:300] + ["", None, "word"]
    df = pl.DataFrame({"t": texts}, schema={"t": pl.String})
    for level in ("paragraph", "document"):
        got = df.select(ilp.text_stats("t", level=level, char_ngram=7).struct.unnest())
        assert got.equals(table(texts, level=level, char_ngram=7)), level
    # In a group-by (polars runs it in parallel) the values are the same.
    g = df.with_columns(k=pl.int_range(pl.len()) % 3).group_by("k").agg(ilp.text_stats("t").struct.field("n_words")).explode("n_words")
    assert sorted(x for x in g.get_column("n_words").to_list() if x is not None) == sorted(x for x in table(texts).get_column("n_words").to_list() if x is not None)


def test_cosine_and_clip_score_expressions_against_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 16)), rng.normal(size=(50, 16)).astype(np.float32)
    b64 = b.astype(np.float64)
    want = np.einsum("ij,ij->i", a, b64) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b64, axis=1))
    df = pl.DataFrame({"a": a.tolist(), "b": b.tolist()}).with_columns(arr=pl.col("b").cast(pl.Array(pl.Float32, 16)))
    got = df.select(ilp.cosine("a", "b"), ilp.clip_score("a", "arr")).to_numpy().T
    assert got[0] == pytest.approx(want, abs=1e-12) and got[1] == pytest.approx(want, abs=1e-6)
    one = df.select(ilp.cosine("a", pl.lit([1.0] + [0.0] * 15))).to_series().to_numpy()
    assert one == pytest.approx(a[:, 0] / np.linalg.norm(a, axis=1), abs=1e-12)
    edge = pl.DataFrame({"a": [[0.0, 0.0], None, [1.0, float("nan")], [1.0, 2.0]], "b": [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 4.0]]})
    assert edge.select(ilp.cosine("a", "b")).to_series().to_list() == [None, None, None, pytest.approx(1.0)]
    # Norms past float64's range either way still give the cosine (scaled first).
    huge = pl.DataFrame({"a": [[1e200, 1e200], [1e-200, 0.0], [3e300, -4e300]], "b": [[1.0, 0.0], [1e-300, 1e-300], [3.0, -4.0]]})
    assert huge.select(ilp.cosine("a", "b")).to_series().to_list() == pytest.approx([2**-0.5, 2**-0.5, 1.0], abs=1e-12)
    with pytest.raises(pl.exceptions.ComputeError, match="vectors of 2 and 3"):
        pl.DataFrame({"a": [[1.0, 2.0]], "b": [[1.0, 2.0, 3.0]]}).select(ilp.cosine("a", "b"))
    # A literal vector against no rows (a batch without images): no rows, not a panic.
    none = df.filter(pl.lit(False))
    assert none.select(ilp.cosine("a", pl.lit([1.0] * 16)), ilp.clip_score("arr", pl.lit([1.0] * 16))).height == 0
    assert none.select(ilp.cosine(pl.lit([1.0] * 16), "a")).height == 0
