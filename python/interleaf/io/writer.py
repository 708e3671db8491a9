"""``interleaf.write``: node batches to parquet, jsonl (our schema) or WebDataset shards."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl

from interleaf import _native
from interleaf._progress import Progress
from interleaf.io.atomic import atomic_output
from interleaf.io.sources import JSONL, PARQUET, WEBDATASET
from interleaf.schema import DOC_INDEX, conform

WRITE_FORMATS = (PARQUET, JSONL, WEBDATASET)


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


def _target_file(dest: str, prefix: str, suffix: str) -> str:
    """``dest`` itself when it names a file with the suffix, else ``dest/{prefix}-000000{suffix}``."""
    if dest.endswith(suffix) or dest.endswith(suffix + ".gz"):
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        return dest
    Path(dest).mkdir(parents=True, exist_ok=True)
    return os.path.join(dest, f"{prefix}-000000{suffix}")


def write(
    batches: pl.DataFrame | Iterable[pl.DataFrame],
    dest: str | os.PathLike[str],
    format: str = PARQUET,
    *,
    prefix: str = "shard",
    max_count: int = 10_000,
    max_bytes: int = 1 << 30,
    compression: str = "none",
    progress: bool = False,
) -> list[str]:
    """Writes node batches and returns the files written.

    Every file is written under a temporary name and renamed when complete, so a crash never
    leaves a half-written file under the final name.

    Args:
        batches: a node DataFrame or an iterable of them (for example an ``interleaf.read``).
            Rows of one document share a ``doc_index`` and are contiguous; nodes are ordered
            by ``pos``. A frame without ``doc_index`` (built by hand) is grouped by ``doc_id``,
            a new document starting where the id changes or a ``pos`` repeats.
        dest: for ``"parquet"``/``"jsonl"`` a file (``out.parquet``, ``out.jsonl``,
            ``out.jsonl.gz``) or a directory (then ``{prefix}-000000.<ext>`` inside it); for
            ``"webdataset"`` a directory that receives ``{prefix}-NNNNNN.tar`` shards.
        format: ``"parquet"`` (the node table), ``"jsonl"`` (one document per line, interleaf's
            ``nodes`` schema, images base64) or ``"webdataset"``.
        prefix: file name prefix for directory destinations.
        max_count: WebDataset only: documents per shard (default 10,000).
        max_bytes: WebDataset only: shard size bound in bytes before compression (default 1 GiB);
            a single larger document still gets a shard of its own.
        compression: WebDataset only: ``"none"``, ``"gz"`` or ``"zst"``.
        progress: print a progress line with rates to stderr.
    """
    dest = os.fspath(dest)
    if format in ("wds", "tar"):
        format = WEBDATASET
    if format not in WRITE_FORMATS:
        raise ValueError(f"unknown output format {format!r}; expected one of {', '.join(WRITE_FORMATS)}")
    prog = Progress("write", enabled=progress)
    docs = nodes = nbytes = 0

    def count(df: pl.DataFrame, n_docs: int) -> None:
        nonlocal docs, nodes, nbytes
        docs += n_docs
        nodes += df.height
        nbytes += int(df.estimated_size())
        prog.update(docs, nodes, nbytes)

    if format == WEBDATASET:
        writer = _native.NativeShardWriter(dest, prefix, compression, max_count, max_bytes)
        for df, n in _batches(batches):
            writer.write(df)
            count(df, n)
        written = writer.finish()
    elif format == PARQUET:
        import pyarrow.parquet as pq

        path = _target_file(dest, prefix, ".parquet")
        with atomic_output(path) as tmp:
            pw: pq.ParquetWriter | None = None
            try:
                for df, n in _batches(batches):
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
        written = [path]
    else:
        path = _target_file(dest, prefix, ".jsonl")
        opener = gzip.open if path.endswith(".gz") else open
        with atomic_output(path) as tmp, opener(tmp, "wb") as f:
            for df, n in _batches(batches):
                f.write(_native.frame_to_jsonl(df))
                count(df, n)
        written = [path]
    prog.close()
    return written
