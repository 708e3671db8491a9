"""Readers and writers: WebDataset shards, jsonl and parquet, all as node batches."""

from interleaf.io.reader import FORMATS, Reader, frame_stats, read
from interleaf.io.sources import container_of, expand
from interleaf.io.writer import WRITE_FORMATS, write

__all__ = ["FORMATS", "WRITE_FORMATS", "Reader", "container_of", "expand", "frame_stats", "read", "write"]
