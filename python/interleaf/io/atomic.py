"""Every output file is written under a temporary name beside it and renamed when complete,
so a crash or a kill never leaves a partial file under the final name, and a rerun never
destroys a good one before its replacement is whole."""

from __future__ import annotations

import contextlib
import errno
import os
import re
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


#: The lock file of an output folder that a command writes as a whole (``interleaf run``,
#: ``filter``, ``dedup``): ``.interleaf.lock`` (removed on release; a killed holder's lock is
#: released by the OS, so it never blocks the next command).
FOLDER_LOCK = "interleaf"


class FolderLock:
    """An exclusive lock on writing the output folder ``folder`` (created if needed), held until
    :meth:`release`: a second command writing the same folder at once is refused, as the
    two would delete and rewrite each other's files."""

    def __init__(self, folder: str | os.PathLike[str], command: str):
        from interleaf import _native

        try:
            self._lock: object | None = _native.NativeWriteLock(os.fspath(folder), FOLDER_LOCK)
        except ValueError as e:
            if "another writer" not in str(e):
                raise
            raise ValueError(f"{os.fspath(folder)} is being written by another interleaf command ({command} needs the folder to itself): wait for it to finish, or choose another output folder") from None

    def release(self) -> None:
        """Frees the lock (idempotent)."""
        if self._lock is not None:
            self._lock.release()  # type: ignore[attr-defined]
            self._lock = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def missing_folders(folder: str | os.PathLike[str]) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first (what taking
    its lock would create, for a failed command to remove)."""
    missing = []
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Removes each of ``folders`` (deepest first) that is empty or holds only a lock file;
    stops at the first that holds more."""
    for d in folders:
        try:
            children = list(d.iterdir())
            if not all(is_lock_file(c) for c in children):
                return
            for c in children:
                c.unlink(missing_ok=True)
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


def is_lock_file(path: Path) -> bool:
    """Whether ``path`` is an output folder's lock file (see :class:`FolderLock`)."""
    return path.name == f".{FOLDER_LOCK}.lock"


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
    except Exception as e:
        if _disk_full(final.parent, e):
            # Writers report a full disk their own ways (polars: "Invalid thrift: transport
            # error"; Python: a bare "[Errno 28]"): say so, and which file.
            raise OSError(errno.ENOSPC, f"no space left on the device writing {final}: {e}") from e
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _disk_full(folder: Path, e: BaseException) -> bool:
    """Whether ``e``, raised writing a file in ``folder``, is (most likely) a full disk or quota:
    its errno says so, or its folder's filesystem has under 1 MiB left."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def remove_leftovers(path: str | os.PathLike[str]) -> int:
    """Removes the temporary files :func:`atomic_output` left beside ``path`` in processes that
    died before renaming them (``.NAME.PID.HEX.tmp``); call it holding the writer's lock on
    ``path``, so that no live writer's file is among them. Returns how many went."""
    final = Path(path)
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.\d+\.[0-9a-f]{{12}}\.tmp$")
    gone = 0
    with contextlib.suppress(OSError):
        for p in final.parent.iterdir():
            if pattern.match(p.name) and not p.is_dir():
                with contextlib.suppress(OSError):
                    p.unlink()
                    gone += 1
    return gone


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
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
