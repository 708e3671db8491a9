"""polars expressions backed by interleaf's Rust core (the same .so as ``interleaf._native``).

Usable in eager, lazy and streaming queries::

    import polars as pl
    import interleaf.polars as ilp
    df.with_columns(ilp.xxh3_64("text").alias("text_hash"))
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.plugins import register_plugin_function

_LIB = Path(__file__).parent


def xxh3_64(expr: str | pl.Expr) -> pl.Expr:
    """xxh3-64 (seed 0) of each value of a String (its UTF-8 bytes) or Binary column, as UInt64.

    Null stays null. Equals ``xxhash.xxh3_64_intdigest(value)``; use it for exact-duplicate keys.

    Example:
        >>> pl.DataFrame({"t": ["a", None]}).select(xxh3_64("t"))  # doctest: +SKIP
    """
    e = pl.col(expr) if isinstance(expr, str) else expr
    return register_plugin_function(plugin_path=_LIB, function_name="xxh3_64", args=e, is_elementwise=True)
