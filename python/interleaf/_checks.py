"""Argument checks at the API boundary: every count, size and limit is checked before any data
is read, with a ValueError that names the argument (instead of an OverflowError from the
native layer, or a failure after a whole read pass)."""

from __future__ import annotations

import numbers
from typing import Any, Literal, overload


@overload
def int_arg(name: str, value: Any, lo: int = 1, hi: int | None = None, *, optional: Literal[False] = False) -> int: ...


@overload
def int_arg(name: str, value: Any, lo: int = 1, hi: int | None = None, *, optional: bool) -> int | None: ...


def int_arg(name: str, value: Any, lo: int = 1, hi: int | None = None, *, optional: bool = False) -> int | None:
    """``value`` as given when it is an int in ``[lo, hi]`` (or None when ``optional``); else
    ValueError naming ``name`` and the range."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        # A numpy integer would pass here but not later (run.json, summaries): say how to fix it.
        hint = f" (a {type(value).__name__}: pass int(...))" if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)) else ""
        raise ValueError(f"{name} must be an int {bound}{' or None' if optional else ''}, got {value!r}{hint}")
    return value


def float_arg(name: str, value: Any, lo: float, hi: float) -> float:
    """``value`` as a float in ``[lo, hi]``; else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        hint = f" (a {type(value).__name__}: pass float(...))" if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)) else ""
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}{hint}")
    return float(value)


def choice_arg(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices``; else ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")
    return value


def not_one(name: str, value: Any, what: str = "texts") -> None:
    """TypeError when ``value``, which should be a sequence of texts or images, is one str or
    bytes (which would otherwise be taken as a sequence of characters or bytes)."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be a sequence of {what} (a list or Series), not one {type(value).__name__}: wrap it in a list")


def string_column(texts: Any, name: str = "texts") -> Any:
    """``texts`` (a polars String Series, or a sequence of str / None) as a String Series;
    TypeError for another dtype."""
    import polars as pl

    not_one(name, texts)
    col = texts if isinstance(texts, pl.Series) else arrow_series(name, texts)
    if col is None:
        try:
            col = pl.Series(name, texts if isinstance(texts, list) else list(texts), dtype=pl.String)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must hold str values or None: {str(e).splitlines()[0]}") from None
    if col.dtype == pl.Null:
        col = col.cast(pl.String)
    if col.dtype != pl.String:
        raise TypeError(f"{name} must be a String column, not {col.dtype}")
    return col


def arrow_series(name: str, values: Any) -> Any:
    """``values`` as a polars Series when they are an Arrow array or chunked array (pyarrow,
    nanoarrow: anything with the Arrow PyCapsule interface), read without a Python object per
    value; else None."""
    import polars as pl

    if hasattr(values, "__arrow_c_array__") or hasattr(values, "__arrow_c_stream__"):
        return pl.Series(name, values)
    return None
