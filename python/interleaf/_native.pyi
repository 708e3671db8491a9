"""Type stubs for interleaf._native, the Rust extension (also the polars plugin library)."""

from typing import Any

import numpy as np
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

def xxh3_128(items: list[bytes | str]) -> list[str]:
    """xxh3-128 (seed 0) hex of each item (str as UTF-8)."""

def blake3(items: list[bytes | str]) -> list[str]:
    """BLAKE3 hex of each item (str as UTF-8)."""

def normalized_text_hash(texts: list[str], strip_punctuation: bool = False) -> list[str]:
    """xxh3-128 hex of NFKC + lower-cased + whitespace-folded text."""

def shingles(text: str, n: int = 5, unit: str = "word") -> list[str]:
    """Distinct word or character n-grams in order of first appearance."""

def minhash_signatures(
    texts: list[str],
    n: int,
    unit: str,
    scheme: str,
    a: list[int],
    b: list[int],
    seed: int = 0,
    threads: int | None = None,
) -> np.ndarray:
    """uint32 signatures (len(texts), len(a)); scheme is "affine32", "legacy" or "fast"."""

def lsh_params(threshold: float, num_perm: int, false_positive_weight: float = 0.5, false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) as datasketch's _optimal_param chooses them."""

def lsh_cluster(
    signatures: np.ndarray,
    bands: int,
    rows: int,
    verify: str = "none",
    threshold: float = 0.0,
    texts: list[str] | None = None,
    n: int = 5,
    unit: str = "word",
    ranking: np.ndarray | None = None,
) -> tuple[np.ndarray, int, int]:
    """(representative per row as int64, candidate pairs checked, pairs joined)."""

def perceptual_hashes(
    images: list[bytes | None],
    kind: str,
    hash_size: int = 8,
    threads: int | None = None,
    max_pixels: int | None = None,
    draft: int | None = None,
) -> tuple[list[str | None], list[int | None], list[tuple[str, str] | None]]:
    """(hex, first 64 bits as int, (error kind, message)) per image; kind is ahash/dhash/phash;
    draft: decode JPEGs as Pillow's im.draft("L", (draft, draft)) leaves them."""

def hamming_pairs(hashes: list[int | None], radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) of 64-bit hashes within radius (i < j), and each item's representative."""

def _resize_luma(pixels: bytes, width: int, height: int, out_width: int, out_height: int, filter: str) -> bytes:
    """Pillow-compatible resize of 8-bit grayscale pixels (lanczos, bicubic, bilinear). For tests."""

def _decode_luma(data: bytes, draft: int | None = None) -> tuple[int, int, bytes]:
    """Decode and convert to grayscale as Pillow's convert("L") (after `Image.draft("L", (draft, draft))`
    when `draft` is given). For tests."""

def preprocess_images(
    images: list[bytes | None],
    out: np.ndarray,
    *,
    mode: str,
    shortest_edge: int,
    size: tuple[int, int],
    crop: tuple[int, int] | None,
    crop_rounding: str,
    resample: int,
    rescale: str,
    rescale_factor: float,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
    fill: int,
    alpha: str,
    exif_transpose: bool,
    max_pixels: int | None,
    max_bytes: int | None,
    threads: int | None,
    jpeg_draft: bool = False,
) -> list[tuple[str, str] | None]:
    """Fill ``out`` (N, 3, H, W; float32 or float16, C-contiguous) with preprocessed images;
    (error kind, message) or None per image. See ``interleaf.image.preprocess``."""

def image_stats_series(
    images: list[bytes | None], *, max_pixels: int | None = None, max_bytes: int | None = None, threads: int | None = None
) -> pl.Series:
    """One struct Series named "stats" with the fields of ``interleaf.polars.image_stats``."""

def _decode_rgb(data: bytes, alpha: str = "drop", exif_transpose: bool = False, max_pixels: int | None = None) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) as Pillow's convert("RGB"). Raises ValueError on failure."""
