"""``interleaf.write``: node batches to parquet, jsonl (our schema) or WebDataset shards."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator

import polars as pl

from interleaf import _native
from interleaf._checks import choice_arg, int_arg
from interleaf._progress import Progress
from interleaf.io.atomic import atomic_output, remove_leftovers
from interleaf.io.sources import JSONL, PARQUET, WEBDATASET, _resolved
from interleaf.schema import DOC_INDEX, conform

#: Record layouts written as JSON lines, each the inverse of reading it.
RECORD_LAYOUTS = ("pairs", "mmc4", "obelics", "comm", "llava")
WRITE_FORMATS = (PARQUET, JSONL, WEBDATASET, *RECORD_LAYOUTS)
#: What ``interleaf run --output-format`` takes: ``auto`` (the input's own layout) or a write format.
OUTPUT_FORMATS = ("auto", *WRITE_FORMATS)


def _batches(batches: pl.DataFrame | Iterable[pl.DataFrame]) -> Iterator[tuple[pl.DataFrame, int]]:
    """Each batch conformed to the node schema with its documents numbered on from the last
    batch's (``doc_index`` becomes the document's ordinal in the output), and its count."""
    first = 0
    for df in [batches] if isinstance(batches, pl.DataFrame) else batches:
        df = conform(df)
        if not df.height:
            continue
        df = df.with_columns(_native.number_documents(df, first))
        last = int(df.get_column(DOC_INDEX)[-1])
        yield df, last + 1 - first
        first = last + 1


_SHARD_SUFFIXES = {".tar": "none", ".tar.gz": "gz", ".tar.zst": "zst"}


def _shard_suffix(name: str) -> str | None:
    return next((sfx for sfx in (".tar.gz", ".tar.zst", ".tar") if name.endswith(sfx)), None)


def _check_not_overlapping(batches: object, dest: str) -> None:
    """Refuses to write into a folder (or onto a file) that the batches are being read from:
    the reader would read the new shards, or the writer would replace what is being read."""
    from interleaf.io.reader import Reader

    if not isinstance(batches, Reader):
        return
    target = _resolved(dest)
    for src in batches.paths:
        src_path = _resolved(src)
        if src_path == target or target in src_path.parents:
            raise ValueError(f"the destination {dest} overlaps the source {src}: write somewhere else")
    for folder in batches.source_dirs:
        f = _resolved(folder)
        if f == target or f in target.parents:
            raise ValueError(f"the destination {dest} overlaps the source {folder} (a later read of it would read the output too): write somewhere else")


def _data_suffix(dest: str) -> str | None:
    """The data-file suffix ``dest`` ends in (``.parquet``, ``.jsonl``, ``.tar.gz``, ...), if any:
    such a name is meant as a file, never as a folder to create."""
    name = os.path.basename(dest)  # as the suffix checks above: case-sensitive
    return next((sfx for sfx in (".tar.gz", ".tar.zst", ".tar.zstd", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".parquet", ".jsonl", ".ndjson", ".json", ".tar", ".tgz") if name.endswith(sfx)), None)


def _target_file(dest: str, prefix: str, suffix: str, overwrite: bool) -> str:
    """``dest`` itself when it names a file with the suffix, else ``dest/{prefix}-000000{suffix}``;
    an existing file is an error unless ``overwrite``."""
    if dest.endswith(suffix) or dest.endswith(suffix + ".gz"):
        path = dest
    elif (other := _data_suffix(dest)) is not None:
        raise ValueError(f"{dest} names a {other} file, but this format writes {suffix}: give a {suffix} file name or a folder")
    else:
        path = os.path.join(dest, f"{prefix}-000000{suffix}")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    return path


def write(
    batches: pl.DataFrame | Iterable[pl.DataFrame],
    dest: str | os.PathLike[str],
    format: str = PARQUET,
    *,
    prefix: str = "shard",
    max_count: int = 10_000,
    max_bytes: int = 1 << 30,
    compression: str = "none",
    overwrite: bool = False,
    embed_images: bool = False,
    progress: bool = False,
) -> list[str]:
    """Writes node batches and returns the files written.

    Every file is written under a unique temporary name beside it and renamed when complete,
    so a crash never leaves a half-written file under the final name; one writer at a time
    may write a given set of files (a second gets a clear error instead of a silent
    replacement). Destinations that already hold what would be written are refused unless
    ``overwrite``, and so is a destination inside the source being read.

    Args:
        batches: a node DataFrame or an iterable of them (for example an ``interleaf.read``).
            Rows of one document share a ``doc_index`` and are contiguous; nodes are ordered
            by ``pos``. A frame without ``doc_index`` (built by hand) is grouped by ``doc_id``,
            a new document starting where the id changes or a ``pos`` repeats.
        dest: for ``"parquet"``/``"jsonl"`` a file (``out.parquet``, ``out.jsonl``,
            ``out.jsonl.gz``) or a directory (then ``{prefix}-000000.<ext>`` inside it). For
            ``"webdataset"``: a directory that receives ``{prefix}-NNNNNN.tar`` shards; a file
            name ending in ``.tar``, ``.tar.gz`` or ``.tar.zst`` (one shard, that file; an error
            if the documents need more than one; the suffix sets the compression); or a
            pattern with one ``%d`` / ``%06d`` field such as ``out/shard-%06d.tar``
            (webdataset's ``ShardWriter`` convention).
        format: ``"parquet"`` (the node table), ``"jsonl"`` (one document per line, interleaf's
            ``nodes`` schema, images base64), ``"webdataset"``, or a record layout written as
            JSON lines: ``"pairs"``, ``"mmc4"``, ``"obelics"``, ``"comm"``, ``"llava"`` (the
            inverse of reading that layout: reading the file back gives the same documents,
            metadata included; images are written as their reference (path or URL, as read),
            or inline as ``data:`` URIs when they have none or ``embed_images``; MMC4's
            ``image_info`` entries follow their images and their ``matched_text_index`` is
            recomputed; node errors are not written). A pairs record holds one image and one
            caption: a document with more than one image or text (an interleaved one) is
            refused with a ``ValueError`` naming it and the layouts that hold it, and nothing is
            written (the file is renamed into place only when complete); never cut silently.
            Non-finite numbers in the metadata are written as Python's ``json.dumps`` writes
            them (``NaN``, ``Infinity``, ``-Infinity``).
        prefix: file name prefix for directory destinations (a plain name: no ``/``, ``..``).
        max_count: WebDataset only: documents per shard (default 10,000).
        max_bytes: WebDataset only: shard size bound in bytes before compression (default 1 GiB);
            a single larger document still gets a shard of its own.
        compression: WebDataset only: ``"none"``, ``"gz"`` or ``"zst"``.
        overwrite: replace existing files of the same names; for shards, the old shards of
            that prefix or pattern that this write does not produce again are removed when it
            finishes (so a folder never mixes two datasets). Default False: an error.
        embed_images: record layouts only: write every image's bytes inline (``data:`` URIs)
            instead of its reference, so the file stands alone and reads back without
            ``image_root`` (the bytes replace a path, MMC4's ``image_name`` and CoMM's
            ``image_path`` included; a URL beside it stays). An image read without its bytes
            (``load_images=False``, or MMC4 without ``image_root``) keeps its reference.
        progress: print a progress line with rates to stderr.
    """
    if isinstance(batches, (str, bytes, os.PathLike)):
        raise TypeError(f"write takes documents (a node DataFrame or batches, such as interleaf.read(path)), not a path: {os.fsdecode(batches)!r}")
    dest = os.fspath(dest)
    if format in ("wds", "tar"):
        format = WEBDATASET
    choice_arg("format", format, WRITE_FORMATS)
    _native.check_file_name("prefix", prefix)
    int_arg("max_count", max_count)
    int_arg("max_bytes", max_bytes)
    choice_arg("compression", compression, tuple(_SHARD_SUFFIXES.values()))
    if compression != "none" and format != WEBDATASET:
        raise ValueError(f"compression applies to WebDataset shards; a {format} file is compressed by its name ({'parquet files are zstd-compressed' if format == PARQUET else 'out.jsonl.gz'})")
    _check_not_overlapping(batches, dest)
    prog = Progress("write", enabled=progress)
    docs = nodes = nbytes = 0

    def count(df: pl.DataFrame, n_docs: int) -> None:
        nonlocal docs, nodes, nbytes
        docs += n_docs
        nodes += df.height
        nbytes += int(df.estimated_size())
        prog.update(docs, nodes, nbytes)

    if format == WEBDATASET:
        name = os.path.basename(dest)
        folder, pattern, single = dest, None, None
        if "%" in name:
            folder, pattern = os.path.dirname(dest) or ".", name
        elif (sfx := _shard_suffix(name)) is not None:
            folder, single = os.path.dirname(dest) or ".", name
            compression = _SHARD_SUFFIXES[sfx]
        elif (other := _data_suffix(dest)) is not None:
            raise ValueError(f"{dest} names a {other} file, but WebDataset writes .tar shards: give a .tar name, a pattern such as shard-%06d.tar, or a folder")
        writer = _native.NativeShardWriter(folder, prefix, compression, max_count, max_bytes, pattern=pattern, single=single, overwrite=overwrite)
        try:
            for df, n in _batches(batches):
                writer.write(df)
                count(df, n)
            written = writer.finish()
        except BaseException:
            writer.abort()  # now, not when the error's traceback lets the writer go
            raise
    else:
        suffix = ".parquet" if format == PARQUET else ".jsonl"
        layout = format if format in RECORD_LAYOUTS else None
        path = _target_file(dest, prefix, suffix, overwrite)
        lock = _native.NativeWriteLock(os.path.dirname(path) or ".", os.path.basename(path))
        remove_leftovers(path)  # a killed writer's temporary file (the lock says none is alive)
        try:
            if format == PARQUET:
                _write_parquet(_batches(batches), path, count)
            else:
                opener = gzip.open if path.endswith(".gz") else open
                with atomic_output(path) as tmp, opener(tmp, "wb") as f:
                    for df, n in _batches(batches):
                        f.write(_native.frame_to_records(df, layout, embed_images) if layout else _native.frame_to_jsonl(df))
                        count(df, n)
        finally:
            lock.release()
        written = [path]
    prog.close()
    return written


def _write_parquet(batches: Iterator[tuple[pl.DataFrame, int]], path: str, count) -> None:
    import pyarrow.parquet as pq

    with atomic_output(path) as tmp:
        pw: pq.ParquetWriter | None = None
        try:
            for df, n in batches:
                table = df.to_arrow()
                if pw is None:
                    pw = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                pw.write_table(table)
                count(df, n)
        finally:
            if pw is not None:
                pw.close()
        if pw is None:
            conform(pl.DataFrame()).write_parquet(tmp)
