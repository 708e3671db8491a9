"""Exact-duplicate keys, computed in Rust with the GIL released: a column in, a column out."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from interleaf import _native
from interleaf._checks import arrow_series, not_one, string_column

BytesInput = pl.Series | Sequence[bytes | str | None]


def _column(items: BytesInput, name: str) -> pl.Series:
    """Items as a String or Binary Series (texts as they are; a list with any bytes-like value
    as Binary, texts encoded as UTF-8)."""
    not_one(name, items, "texts or byte strings")
    given: pl.Series | None = items if isinstance(items, pl.Series) else arrow_series(name, items)
    col: pl.Series
    if given is not None:
        col = given.cast(pl.String) if given.dtype == pl.Null else given
    else:
        items = items if isinstance(items, list) else list(items)
        try:
            col = pl.Series(name, items, dtype=pl.String)  # texts, the common case: one pass, in polars
        except (TypeError, ValueError) as e:
            if not any(isinstance(v, (bytes, bytearray, memoryview)) for v in items):
                raise TypeError(f"{name} must hold str or bytes values or None: {str(e).splitlines()[0]}") from None
            col = pl.Series(name, [v.encode() if isinstance(v, str) else bytes(v) if isinstance(v, (bytearray, memoryview)) else v for v in items], dtype=pl.Binary)
    if col.dtype not in (pl.String, pl.Binary):
        raise TypeError(f"{name} must be a String or Binary column, not {col.dtype}")
    return col


def xxh3_128(items: BytesInput) -> pl.Series:
    """xxh3-128 (seed 0) of each item (str as UTF-8) as 32 hex digits, a String Series (null
    stays null); equals ``xxhash.xxh3_128_hexdigest``. Fast, not cryptographic: use for
    exact-duplicate keys."""
    return _native.xxh3_128(_column(items, "items"))


def blake3(items: BytesInput) -> pl.Series:
    """BLAKE3 of each item (str as UTF-8) as 64 hex digits, a String Series (null stays null);
    equals ``blake3.blake3(item).hexdigest()``. Cryptographic: use where keys must resist
    collisions."""
    return _native.blake3(_column(items, "items"))


def normalized_text_hash(texts: BytesInput, strip_punctuation: bool = False) -> pl.Series:
    """xxh3-128 hex of each text after NFKC, lower-casing and folding whitespace runs to one
    space (Python's ``str.split()`` whitespace); with ``strip_punctuation`` (default False),
    after NFKC and lower-casing, ASCII punctuation and symbols, U+00A1-U+00BF (Latin-1
    punctuation and symbols such as ``¡ « © °``), U+2010-U+2027 and U+2030-U+205E (General
    Punctuation without its spaces and format characters), the whole CJK Symbols and
    Punctuation block U+3000-U+303F (``々`` and ``〇`` included) and the full-width ASCII
    punctuation are removed, a word made only of them dropped, and a word that lost some
    composed again (NFKC); not every Unicode ``P*`` character: Arabic ``،`` or Devanagari
    ``।`` stay. Equal keys = texts equal up to
    those differences. NFKC follows the Unicode version of the Rust ``unicode-normalization``
    crate (16), a little newer than Python 3.11's ``unicodedata`` (14): code points unassigned
    in 14 can normalise differently.
    A String Series; null stays null."""
    return _native.normalized_text_hash(string_column(texts, "texts"), strip_punctuation)
