"""Exact-duplicate keys, computed in Rust with the GIL released."""

from __future__ import annotations

from collections.abc import Sequence

from interleaf import _native


def xxh3_128(items: Sequence[bytes | str]) -> list[str]:
    """xxh3-128 (seed 0) of each item (str as UTF-8) as 32 hex digits; equals
    ``xxhash.xxh3_128_hexdigest``. Fast, not cryptographic: use for exact-duplicate keys."""
    return _native.xxh3_128(list(items))


def blake3(items: Sequence[bytes | str]) -> list[str]:
    """BLAKE3 of each item (str as UTF-8) as 64 hex digits; equals
    ``blake3.blake3(item).hexdigest()``. Cryptographic: use where keys must resist collisions."""
    return _native.blake3(list(items))


def normalized_text_hash(texts: Sequence[str], strip_punctuation: bool = False) -> list[str]:
    """xxh3-128 hex of each text after NFKC, lower-casing and folding whitespace runs to one
    space (Python's ``str.split()`` whitespace); with ``strip_punctuation`` (default False),
    Unicode punctuation is removed first. Equal keys = texts equal up to those differences."""
    return _native.normalized_text_hash(list(texts), strip_punctuation)
