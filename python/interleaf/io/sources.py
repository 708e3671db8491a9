"""Expanding sources (paths, globs, directories, brace ranges) and telling their containers apart."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from pathlib import Path

#: Container of a source file, from its name.
WEBDATASET = "webdataset"
JSONL = "jsonl"
PARQUET = "parquet"

_WDS_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd")
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
_COMPRESSED = ("", ".gz", ".zst", ".zstd")
_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def container_of(path: str) -> str | None:
    """``"webdataset"``, ``"jsonl"`` or ``"parquet"`` from the file name; None if unknown."""
    name = path.lower()
    if name.endswith(_WDS_SUFFIXES):
        return WEBDATASET
    if name.endswith(".parquet"):
        return PARQUET
    if any(name.endswith(s + c) for s in _JSONL_SUFFIXES for c in _COMPRESSED):
        return JSONL
    return None


def _expand_braces(pattern: str) -> list[str]:
    """``shard-{000..002}.tar`` -> three names, zero padding kept (as webdataset's braceexpand)."""
    m = _BRACE.search(pattern)
    if not m:
        return [pattern]
    lo, hi = m.group(1), m.group(2)
    width = len(lo) if lo.startswith("0") else 0
    out: list[str] = []
    for i in range(int(lo), int(hi) + 1):
        out.extend(_expand_braces(pattern[: m.start()] + str(i).zfill(width) + pattern[m.end() :]))
    return out


def expand(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    """Every file named by ``source``: a path, a glob, a brace range, a directory (its files of
    known containers, sorted) or a list of these. Raises FileNotFoundError when a glob or
    directory matches nothing; a plain path that does not exist is passed through (the reader
    records it as an ``io`` error and goes on)."""
    if isinstance(source, (str, os.PathLike)):
        items = [os.fspath(source)]
    else:
        items = [os.fspath(s) for s in source]
    paths: list[str] = []
    for item in items:
        for name in _expand_braces(item):
            if os.path.isdir(name):
                found = sorted(str(p) for p in Path(name).rglob("*") if p.is_file() and container_of(str(p)))
                if not found:
                    raise FileNotFoundError(f"{name}: directory holds no .tar/.jsonl/.parquet files")
                paths.extend(found)
            elif glob.has_magic(name):
                found = sorted(glob.glob(name, recursive=True))
                if not found:
                    raise FileNotFoundError(f"{name}: glob matches no file")
                paths.extend(found)
            else:
                paths.append(name)
    return paths
