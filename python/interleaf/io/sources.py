"""Expanding sources (paths, globs, directories, brace ranges) and telling their containers apart."""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import sys
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


#: The most names one source's brace ranges may expand to.
MAX_BRACE_NAMES = 1_000_000


def _expand_braces(pattern: str) -> list[str]:
    """``shard-{000..002}.tar`` -> three names, zero padding kept; ``{2..0}`` counts down (as
    webdataset's braceexpand). ValueError past :data:`MAX_BRACE_NAMES` names."""
    ranges = list(_BRACE.finditer(pattern))
    total = 1
    for r in ranges:
        total *= abs(int(r.group(2)) - int(r.group(1))) + 1
        if total > MAX_BRACE_NAMES:
            raise ValueError(f"{pattern}: its brace ranges name over {MAX_BRACE_NAMES:,} files")
    names = [pattern]
    for _ in ranges:
        out: list[str] = []
        for name in names:
            m = _BRACE.search(name)
            assert m is not None
            lo, hi = m.group(1), m.group(2)
            width = max(len(lo), len(hi)) if any(e.startswith("0") and len(e) > 1 for e in (lo, hi)) else 0
            step = 1 if int(hi) >= int(lo) else -1
            out.extend(name[: m.start()] + str(i).zfill(width) + name[m.end() :] for i in range(int(lo), int(hi) + step, step))
        names = out
    return names


#: Run folders already named as left out (see :func:`_folder_files`).
_ANNOUNCED: set[str] = set()


def _is_run_folder(folder: str) -> bool:
    """Whether ``folder`` holds an ``interleaf run``'s outputs (its ``.interleaf/run.json``)."""
    return os.path.isfile(os.path.join(folder, ".interleaf", "run.json"))


def _folder_files(folder: str) -> list[str]:
    """The files of known containers under ``folder``: hidden entries (temporary and lock files,
    a run's ``.interleaf`` state), links to folders and the output folders of interleaf runs
    found inside (a later read would take their outputs for inputs) are left out. Entries that
    are not regular files (a FIFO, a device, a broken link) are kept: the reader records them as
    io errors, never opening them."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        keep = []
        for d in sorted(dirs):
            path = os.path.join(root, d)
            if d.startswith("."):
                continue
            if _is_run_folder(path):
                if path not in _ANNOUNCED:  # a run expands its inputs more than once
                    _ANNOUNCED.add(path)
                    print(f"interleaf: {path} is the output folder of an interleaf run: not read as input", file=sys.stderr)
                continue
            keep.append(d)
        dirs[:] = keep
        side = _img2dataset_side_files(files)
        if side and root not in _ANNOUNCED:
            _ANNOUNCED.add(root)
            print(f"interleaf: {root} holds img2dataset's metadata beside its shards ({side[0]}, ...): read the shards only", file=sys.stderr)
        found.extend(os.path.join(root, f) for f in files if not f.startswith(".") and container_of(f) and f not in side)
    return found


def _img2dataset_side_files(files: list[str]) -> list[str]:
    """The files img2dataset writes beside each WebDataset shard ``NNNNN.tar``: its metadata
    ``NNNNN.parquet`` (the same samples again, as URLs) and ``NNNNN_stats.json``; read with the
    shards, every sample would come twice and the stats be malformed records."""
    stems = set()
    for f in files:
        sfx = next((x for x in sorted(_WDS_SUFFIXES, key=len, reverse=True) if f.endswith(x)), None)
        if sfx is not None:
            stems.add(f[: -len(sfx)])
    return sorted(f for f in files if (f.endswith(".parquet") and f[: -len(".parquet")] in stems) or (f.endswith("_stats.json") and f[: -len("_stats.json")] in stems))


def expand(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    """Every file named by ``source``: a path, a glob, a brace range, a directory (its files of
    known containers, sorted; see :func:`_folder_files` for what is left out; the output folder
    of a run itself is refused) or a list of these. Raises FileNotFoundError when a glob or
    directory matches nothing; a plain path that does not exist is passed through (the reader
    records it as an ``io`` error and goes on). A path that exists is taken as it is, whatever
    it holds: a file named ``br[1].jsonl``, ``q?.jsonl`` or ``a{1..2}.jsonl`` is that file, not
    a pattern (so the files a pattern found are read once each, by their own names)."""
    if isinstance(source, (str, os.PathLike)):
        items = [os.fspath(source)]
    else:
        items = [os.fspath(s) for s in source]
    paths: list[str] = []
    for item in items:
        for name in [item] if os.path.lexists(item) else _expand_braces(item):
            if os.path.isdir(name):
                if _is_run_folder(name):
                    raise ValueError(f"{name} is the output folder of an interleaf run (its attributes/ and dropped/ are not documents): name its kept/ folder to read the documents it kept")
                found = sorted(_folder_files(name))
                if not found:
                    raise FileNotFoundError(f"{name}: directory holds no .tar/.jsonl/.parquet files")
                paths.extend(found)
            elif glob.has_magic(name) and not os.path.lexists(name):
                found = sorted(glob.glob(name, recursive=True))
                if not found:
                    raise FileNotFoundError(f"{name}: glob matches no file")
                paths.extend(found)
            else:
                paths.append(name)
    return paths


def named_inputs(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    """:func:`expand` for inputs a person named (the CLI, :func:`interleaf.run`): a named file
    that is not there is a typo to report at once (FileNotFoundError), not an ``io`` error
    record. A dangling link found in a folder stays that file's io error, as a FIFO does. A
    file named twice (directly, by a glob, or inside a named folder) is refused (ValueError)."""
    paths = expand(source)
    if not paths:
        raise ValueError("no inputs: name files, globs, brace ranges or folders")
    missing = [x for x in paths if not os.path.lexists(x)]
    if missing:
        raise FileNotFoundError(f"input not found: {', '.join(missing[:5])}" + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))
    seen: dict[str, str] = {}
    for x in paths:
        real = os.path.realpath(x)
        if real in seen:
            # A folder and a file in it, or a glob and a name: every record would be read
            # twice and then be its own exact duplicate.
            again = f"as {seen[real]} and {x}" if seen[real] != x else "twice"
            raise ValueError(f"the input {seen[real]} is named {again}: each input is read once; name it once")
        seen[real] = x
    return paths


def _glob_matches(pattern: list[str], path: list[str]) -> bool:
    """Whether path components ``path`` match glob components ``pattern`` as
    ``glob(recursive=True)`` reads them: ``**`` any number of components, the others by
    fnmatch; a name starting with a dot is matched only by a component that starts with one
    (glob passes hidden files and folders by)."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_glob_matches(pattern[1:], path[i:]) for i in range(len(path) + 1) if not any(c.startswith(".") for c in path[:i]))
    if not path or (path[0].startswith(".") and not pattern[0].startswith(".")):
        return False
    return fnmatch.fnmatchcase(path[0], pattern[0]) and _glob_matches(pattern[1:], path[1:])


def _outputs_of(target: Path, paths: list[str]) -> list[Path]:
    """Files a run (or ``interleaf dedup``) into ``target`` writes for inputs ``paths``
    (kept/, dropped/, attributes/, signatures/; duplicates.parquet, dedup/), with each input's
    name and the containers kept documents may be written as."""
    out = [target / "duplicates.parquet"]
    for src in paths:
        name = Path(src).name
        stem = name.split(".", 1)[0]
        for ext in ("", ".jsonl", ".parquet", ".tar", ".tar.gz", ".tar.zst"):
            out += [target / "kept" / (name if not ext else stem + ext), target / "dedup" / (name if not ext else stem + ext)]
        out += [target / "dropped" / f"{stem}.parquet", target / "attributes" / "a" / f"{stem}.parquet", target / "signatures" / "a" / f"{stem}.parquet"]
    return out


def _glob_forms(pattern: str) -> list[list[str]]:
    """``pattern`` as absolute components, as written and with the folders before its first
    wildcard resolved (through links: a glob reads the files the links lead to)."""
    parts = list(Path(os.path.abspath(pattern)).parts)
    k = next((i for i, c in enumerate(parts) if glob.has_magic(c)), len(parts))
    resolved = list(Path(os.path.realpath(os.path.join(*parts[:k]))).parts) + parts[k:] if k else parts
    return [parts] if resolved == parts else [parts, resolved]


def _under(folder: tuple[str, ...], pattern: list[str]) -> bool:
    """Whether ``folder`` lies within the fixed folders of glob ``pattern`` (those before its
    first wildcard)."""
    k = next((i for i, c in enumerate(pattern) if glob.has_magic(c)), len(pattern))
    return tuple(pattern[:k]) == folder[:k]


def _resolved(path: str | os.PathLike[str]) -> Path:
    """``path`` with its links resolved, or made absolute as it is where they loop (a link to
    itself in an input folder is that file's ``io`` error when read, not the run's failure)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def check_out_apart(out: str | os.PathLike[str], paths: list[str], folders: Iterable[str] = ()) -> None:
    """Refuses an output folder ``out`` that holds one of the input files ``paths``, lies
    inside one of the named input ``folders``, or whose outputs a named glob would match (a
    later read of the same inputs would take the outputs for inputs); ValueError."""
    target = _resolved(out)
    for folder in folders:
        fp = _resolved(folder)
        if os.path.isdir(folder) and (fp == target or fp in target.parents):
            raise ValueError(f"the output folder {os.fspath(out)} is inside the input folder {folder}: a later run would read its outputs as inputs; write somewhere else")
        for name in _expand_braces(os.fspath(folder)):
            if not os.path.isdir(name) and glob.has_magic(name):
                # The output folder as named and as resolved: a glob reaches it either way
                # (a link on its path, a link inside the globbed tree).
                for base in dict.fromkeys((Path(os.path.abspath(out)), target)):
                    # Only a glob whose fixed folders hold the output folder can reach it (the
                    # usual case, outputs elsewhere, costs no matching per input).
                    forms = [f for f in _glob_forms(name) if _under(base.parts, f)]
                    for o in _outputs_of(base, paths) if forms else ():
                        if any(_glob_matches(form, list(o.parts)) for form in forms):
                            raise ValueError(f"the input glob {name} would match the outputs in {os.fspath(out)} (such as {o.relative_to(base)}): the same command run again would read them as inputs; write somewhere else")
    for src in paths:
        sp = _resolved(src)
        if sp == target or target in sp.parents:
            raise ValueError(f"the output folder {os.fspath(out)} holds the input {src}: write somewhere else")
