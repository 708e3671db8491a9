"""Type stubs for interleaf._native, the Rust extension (also the polars plugin library)."""

from typing import Any

import polars as pl

__version__: str

class NativeReader:
    """Streams node batches from WebDataset shards or JSON-lines files; use ``interleaf.read``."""

    def __init__(
        self,
        paths: list[str],
        kind: str,
        format: str | None = None,
        image_root: str | None = None,
        load_images: bool = True,
        max_member_bytes: int | None = None,
    ) -> None: ...
    def next_batch(self, batch_size: int) -> pl.DataFrame | None:
        """Up to ``batch_size`` whole documents as a flat node frame (``error_kind`` and
        ``error_message`` columns instead of the ``error`` struct), or None at the end."""
    def stats(self) -> dict[str, Any]:
        """files, documents, nodes, text_nodes, image_nodes, text_bytes, image_bytes,
        bytes_read, errors (documents per error kind)."""

class NativeShardWriter:
    """Writes flat node frames as deterministic WebDataset shards; use ``interleaf.write``."""

    def __init__(
        self,
        directory: str,
        prefix: str = "shard",
        compression: str = "none",
        max_count: int = 10_000,
        max_bytes: int = 1 << 30,
        start_index: int = 0,
    ) -> None: ...
    def write(self, df: pl.DataFrame) -> int:
        """Writes every document of the frame; returns how many."""
    def finish(self) -> list[str]:
        """Closes the last shard; returns every shard path written."""

def records_to_frame(
    records: list[dict[str, Any]],
    format: str | None,
    source: str,
    start_index: int = 0,
    image_root: str | None = None,
    load_images: bool = True,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Record dicts (parquet rows) to a flat node frame and its counters."""

def frame_to_jsonl(df: pl.DataFrame) -> bytes:
    """One JSON line per document of a flat node frame, in interleaf's ``nodes`` schema."""

def xxh3_64(data: list[bytes]) -> list[int]:
    """xxh3-64 (seed 0) of each bytes object."""

def read_samples(path: str, max_member_bytes: int | None = None) -> list[tuple[str, list[tuple[str, bytes]], list[tuple[str, str]]]]:
    """One shard's raw samples as webdataset groups them: (key, [(ext, bytes)], [(error kind,
    message)]). For tests and debugging."""
