"""polars expressions backed by interleaf's Rust core (the same .so as ``interleaf._native``).

Usable in eager, lazy and streaming queries::

    import polars as pl
    import interleaf.polars as ilp
    df.with_columns(ilp.xxh3_64("text").alias("text_hash"), ilp.minhash("text").alias("sig"))

The examples in these docstrings run as tests (``tests/test_doctests.py``) with the output
shown. When polars calls an expression in parallel (a group-by, the streaming engine) it runs
on one thread; otherwise on interleaf's pool (``interleaf.set_threads``).

Inputs are String or Binary columns, as each expression says; the text-only expressions
(:func:`minhash`, :func:`text_stats`) also take Categorical and Enum columns. Cast a
Categorical, Enum or Object column with ``.cast(pl.String)`` before :func:`xxh3_64`: polars
hands those to plugins in forms it cannot read (a Categorical fails with "the plugin
panicked", even when the query is planned; an Object column's values are not its strings).
The plugin does not read Decimal, Int128 or Float16 columns either (polars fails with "the
plugin panicked" before interleaf sees them): cast them to a type the expression takes.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.plugins import register_plugin_function

from interleaf._checks import int_arg
from interleaf.image import check_draft

_LIB = Path(__file__).parent
_U64_MAX = (1 << 64) - 1


def _col(expr: str | pl.Expr) -> pl.Expr:
    return pl.col(expr) if isinstance(expr, str) else expr


def _text(expr: str | pl.Expr) -> pl.Expr:
    """A text input as String: Categorical and Enum columns become their strings (polars hands
    them to plugins in a form this build cannot read); a String column is unchanged. Any other
    column is cast too (an integer 22 is the text "22"), as the expression cannot see its
    type before it runs: give text columns."""
    return _col(expr).cast(pl.String)


def xxh3_64(expr: str | pl.Expr) -> pl.Expr:
    """xxh3-64 (seed 0) of each value of a String (its UTF-8 bytes) or Binary column, as UInt64.

    Null stays null. Equals ``xxhash.xxh3_64_intdigest(value)``; use it for exact-duplicate keys.
    Cast a Categorical, Enum or Object column to String first (see the module docs).

    Example:
        >>> import polars as pl
        >>> from interleaf.polars import xxh3_64
        >>> pl.DataFrame({"t": ["a cat", None]}).select(xxh3_64("t"))
        shape: (2, 1)
        ┌─────────────────────┐
        │ t                   │
        │ ---                 │
        │ u64                 │
        ╞═════════════════════╡
        │ 3629719892817775357 │
        │ null                │
        └─────────────────────┘
    """
    return register_plugin_function(plugin_path=_LIB, function_name="xxh3_64", args=_col(expr), is_elementwise=True)


def minhash(
    expr: str | pl.Expr,
    num_perm: int = 128,
    n: int = 5,
    unit: str = "word",
    seed: int = 1,
    mode: str = "fast",
    scheme: str = "affine32",
) -> pl.Expr:
    """MinHash signature of each string as ``List[UInt32]`` of length ``num_perm``; null stays
    null. Same values as :class:`interleaf.dedup.MinHasher` with the same arguments (so
    ``mode="datasketch"`` rows equal datasketch's ``hashvalues``).

    Example:
        >>> import polars as pl
        >>> from interleaf.polars import minhash
        >>> df = pl.DataFrame({"text": ["the quick brown fox jumps over the lazy dog", None]})
        >>> df.select(minhash("text", num_perm=2))
        shape: (2, 1)
        ┌─────────────────────────┐
        │ text                    │
        │ ---                     │
        │ list[u32]               │
        ╞═════════════════════════╡
        │ [1520781907, 459671406] │
        │ null                    │
        └─────────────────────────┘
    """
    from interleaf.dedup import MinHasher

    m = MinHasher(num_perm=num_perm, n=n, unit=unit, seed=seed, mode=mode, scheme=scheme)
    kwargs = {"n": n, "unit": unit, "scheme": m._native_scheme, "a": m._a, "b": m._b, "seed": seed}
    return register_plugin_function(plugin_path=_LIB, function_name="minhash", args=_text(expr), kwargs=kwargs, is_elementwise=True)


def hamming(a: str | pl.Expr, b: str | pl.Expr) -> pl.Expr:
    """Hamming distance (bits that differ) between two hash columns, as UInt32: UInt64 columns,
    or the ``{hash, error}`` structs of :func:`phash` (their ``hash`` is used); a literal on one
    side broadcasts. Null if either side is null.

    Example:
        >>> import polars as pl
        >>> from interleaf.polars import hamming
        >>> df = pl.DataFrame({"a": [0b1011, 7, None], "b": [0b0001, 7, 1]}, schema={"a": pl.UInt64, "b": pl.UInt64})
        >>> df.select(hamming("a", "b").alias("bits"), near=hamming("a", pl.lit(0, dtype=pl.UInt64)) <= 2)
        shape: (3, 2)
        ┌──────┬───────┐
        │ bits ┆ near  │
        │ ---  ┆ ---   │
        │ u32  ┆ bool  │
        ╞══════╪═══════╡
        │ 2    ┆ false │
        │ 0    ┆ false │
        │ null ┆ null  │
        └──────┴───────┘
    """
    return register_plugin_function(plugin_path=_LIB, function_name="hamming", args=[_col(a), _col(b)], is_elementwise=True)


def _perceptual(kind: str, expr: str | pl.Expr, draft: int | None, max_pixels: int | None) -> pl.Expr:
    kwargs = {"kind": kind, "draft": check_draft(draft), "max_pixels": int_arg("max_pixels", max_pixels, 1, _U64_MAX, optional=True)}
    return register_plugin_function(plugin_path=_LIB, function_name="perceptual_hash", args=_col(expr), kwargs=kwargs, is_elementwise=True)


def phash(expr: str | pl.Expr, draft: int | None = None, max_pixels: int | None = None) -> pl.Expr:
    """imagehash's ``phash`` (hash_size 8) of each encoded image in a Binary column, as a
    struct ``{hash: UInt64, error: {kind, message}}``: ``hash`` is the hex string read as a
    number, null for a null or undecodable image, whose ``error`` says why. Compose with
    :func:`hamming` (which takes the struct) for near-duplicate filters. ``draft``: see
    :func:`interleaf.dedup.phash` (faster reduced JPEG decoding, not bit-identical to a full
    decode); ``max_pixels``: the decode limit (default 89,478,485, Pillow's ``MAX_IMAGE_PIXELS``, where Pillow only warns; larger images are ``image_too_large`` errors).

    Example:
        >>> import polars as pl
        >>> from interleaf.cli import SAMPLE_DIR
        >>> from interleaf.polars import phash
        >>> coffee = (SAMPLE_DIR / "images" / "coffee.jpg").read_bytes()
        >>> df = pl.DataFrame({"image": [coffee, b"junk", None]}, schema={"image": pl.Binary})
        >>> p = pl.col("p")
        >>> df.select(p=phash("image")).select(p.struct.field("hash"), p.struct.field("error").struct.field("kind"))
        shape: (3, 2)
        ┌──────────────────────┬──────────────────────┐
        │ hash                 ┆ kind                 │
        │ ---                  ┆ ---                  │
        │ u64                  ┆ str                  │
        ╞══════════════════════╪══════════════════════╡
        │ 13511678729449846327 ┆ null                 │
        │ null                 ┆ unknown_image_format │
        │ null                 ┆ missing_image        │
        └──────────────────────┴──────────────────────┘
    """
    return _perceptual("phash", expr, draft, max_pixels)


def dhash(expr: str | pl.Expr, draft: int | None = None, max_pixels: int | None = None) -> pl.Expr:
    """imagehash's ``dhash`` (hash_size 8) as a ``{hash, error}`` struct; see :func:`phash`."""
    return _perceptual("dhash", expr, draft, max_pixels)


def ahash(expr: str | pl.Expr, draft: int | None = None, max_pixels: int | None = None) -> pl.Expr:
    """imagehash's ``average_hash`` (hash_size 8) as a ``{hash, error}`` struct; see :func:`phash`."""
    return _perceptual("ahash", expr, draft, max_pixels)


def image_stats(expr: str | pl.Expr, max_pixels: int | None = None, max_bytes: int | None = None) -> pl.Expr:
    """Statistics of each encoded image in a Binary column, as a struct with the columns of
    :func:`interleaf.image.stats` (``width``, ``height``, ``aspect_ratio``, ``format``,
    ``mode``, ``frames``, ``bytes``, ``blur``, ``entropy``, ``brightness``, ``contrast``,
    ``uniform_fraction``) and ``error`` (null, or ``{kind, message}``).

    Example:
        >>> import polars as pl
        >>> from interleaf.cli import SAMPLE_DIR
        >>> from interleaf.polars import image_stats
        >>> coffee = (SAMPLE_DIR / "images" / "coffee.jpg").read_bytes()
        >>> df = pl.DataFrame({"image": [coffee, b"junk"]}, schema={"image": pl.Binary})
        >>> s = image_stats("image")
        >>> df.select(s.struct.field("width", "height"), s.struct.field("blur").round(1), s.struct.field("error").struct.field("kind"))
        shape: (2, 4)
        ┌───────┬────────┬────────┬──────────────────────┐
        │ width ┆ height ┆ blur   ┆ kind                 │
        │ ---   ┆ ---    ┆ ---    ┆ ---                  │
        │ u32   ┆ u32    ┆ f64    ┆ str                  │
        ╞═══════╪════════╪════════╪══════════════════════╡
        │ 400   ┆ 267    ┆ 1703.5 ┆ null                 │
        │ null  ┆ null   ┆ null   ┆ unknown_image_format │
        └───────┴────────┴────────┴──────────────────────┘
    """
    # Checked here, not when the query runs (u64 in Rust).
    kwargs = {"max_pixels": int_arg("max_pixels", max_pixels, 1, _U64_MAX, optional=True), "max_bytes": int_arg("max_bytes", max_bytes, 1, _U64_MAX, optional=True)}
    return register_plugin_function(plugin_path=_LIB, function_name="image_stats", args=_col(expr), kwargs=kwargs, is_elementwise=True)


def text_stats(expr: str | pl.Expr, level: str = "paragraph", char_ngram: int = 10, word_ngram: int = 5) -> pl.Expr:
    """OBELICS's statistics of each text in a String column, as a struct with the columns of
    :func:`interleaf.signals.text_stats` (``n_words``, ``n_chars``, ``char_repetition``,
    ``word_repetition``, ``special_char_ratio``, ``stopword_ratio``, ``flagged_word_ratio``,
    ``punctuation_ratio``); null fields for a null text. The common-word ratio, which needs a
    word list, is :func:`interleaf.signals.text_stats`'s (``common_words=``).

    ``level``: ``"paragraph"`` (OBELICS's paragraph rules: a text of fewer than 12 tokens has
    punctuation ratio 1.0) or ``"document"`` (no such floor); ``char_ngram`` (10) and
    ``word_ngram`` (5): the n-gram sizes of the repetition ratios.

    Example:
        >>> import polars as pl
        >>> from interleaf.polars import text_stats
        >>> df = pl.DataFrame({"t": ["The cat sat on the mat, and it was happy there.", None]})
        >>> df.select(text_stats("t").struct.field("n_words", "stopword_ratio"))
        shape: (2, 2)
        ┌─────────┬────────────────┐
        │ n_words ┆ stopword_ratio │
        │ ---     ┆ ---            │
        │ u64     ┆ f64            │
        ╞═════════╪════════════════╡
        │ 11      ┆ 0.636364       │
        │ null    ┆ null           │
        └─────────┴────────────────┘
    """
    from interleaf._checks import choice_arg, int_arg

    choice_arg("level", level, ("paragraph", "document"))
    int_arg("char_ngram", char_ngram, 1, 1000)
    int_arg("word_ngram", word_ngram, 1, 1000)
    kwargs = {"char_ngram": char_ngram, "word_ngram": word_ngram, "punctuation_min_tokens": 12 if level == "paragraph" else 0}
    return register_plugin_function(plugin_path=_LIB, function_name="text_stats", args=_text(expr), kwargs=kwargs, is_elementwise=True)


def cosine(a: str | pl.Expr, b: str | pl.Expr) -> pl.Expr:
    """Cosine similarity (Float64, in [-1, 1]) of the vectors in two List or Array columns of
    numbers, row by row (a one-row side is compared with every row of the other); null where
    either is null, of zero norm or holds NaN. Vectors of one row must have one length.

    Example:
        >>> import polars as pl
        >>> from interleaf.polars import cosine
        >>> df = pl.DataFrame({"a": [[1.0, 0.0], [1.0, 1.0], None], "b": [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]})
        >>> df.select(cosine("a", "b").round(4))
        shape: (3, 1)
        ┌─────────┐
        │ a       │
        │ ---     │
        │ f64     │
        ╞═════════╡
        │ 1.0     │
        │ -0.7071 │
        │ null    │
        └─────────┘
    """
    as_list = pl.List(pl.Float64)
    return register_plugin_function(plugin_path=_LIB, function_name="cosine", args=[_col(a).cast(as_list), _col(b).cast(as_list)], is_elementwise=True)


def clip_score(image_embedding: str | pl.Expr, text_embedding: str | pl.Expr) -> pl.Expr:
    """DataComp's CLIP score from embedding columns: the :func:`cosine` of the image and caption
    embeddings (not x100; DataComp's threshold mode keeps ``score >= t``, ViT-B/32 >= 0.28 in
    LAION-2B's recipe). Embed with :meth:`interleaf.models.CLIPModel.embed_images` /
    ``embed_texts`` and store the vectors as List or Array columns."""
    return cosine(image_embedding, text_embedding).alias("clip_score")
