"""Local files that records, tables and prediction folders name: read only when they resolve
inside their folder, are regular files and fit the size limit (the Python side of the rule the
Rust readers follow for record image paths)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_confined(path: Path, root: Path | None, max_bytes: int, *, root_name: str = "its folder") -> tuple[bytes | None, str | None]:
    """The bytes of the regular file ``path`` leads to (symbolic links followed) when it lies
    under ``root`` (None: anywhere) and holds at most ``max_bytes``: ``(data, None)``; else
    ``(None, why)`` in words (``root_name`` names the root in them). Devices, FIFOs and folders
    are never opened, and at most ``max_bytes + 1`` bytes are read whatever the size says."""
    try:
        real = path.resolve()
        if root is not None and not real.is_relative_to(root.resolve()):
            return None, f"resolves outside {root_name}"
        if not real.is_file():
            return None, "not a regular file" if real.exists() else "not found"
        size = real.stat().st_size
        if size > max_bytes:
            return None, f"{size:,} bytes, over the {max_bytes:,}-byte limit"
        with open(real, "rb") as f:
            data = f.read(max_bytes + 1)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        return None, getattr(e, "strerror", None) or str(e)
    if len(data) > max_bytes:
        return None, f"over the {max_bytes:,}-byte limit"
    return data, None


def load_json_file(path: str | os.PathLike[str]) -> Any:
    """A whole JSON file (an annotation file), parse errors naming the file and the place."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{os.fspath(path)} is not one JSON document: {e.msg} at line {e.lineno} column {e.colno} (a JSON-lines file holds one per line)") from None
