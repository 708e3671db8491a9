"""Every output file is written under a temporary name beside it and renamed when complete,
so a crash or a kill never leaves a partial file under the final name, and a rerun never
destroys a good one before its replacement is whole."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def refuse_existing(path: str | os.PathLike[str], overwrite: bool) -> None:
    """FileExistsError when the output file ``path`` exists and ``overwrite`` is not set (a
    command that writes one file checks this before any work)."""
    if Path(path).is_dir():
        raise IsADirectoryError(f"{path} is a folder: give the output file's path")
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite to replace it")


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a unique temporary path in ``path``'s folder (created if needed). When the block
    ends without an exception the file is flushed to disk (fsync) and renamed onto ``path``
    (atomic on one filesystem); otherwise it is removed and ``path`` is left as it was."""
    final = Path(path)
    if final.is_dir():
        raise IsADirectoryError(f"{final} is a folder: give the output file's path")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
