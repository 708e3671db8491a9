"""Type stubs for interleaf._native, the Rust extension (also the polars plugin library)."""

from typing import Any, Self, final

import numpy as np
import polars as pl
from typing_extensions import disjoint_base

__version__: str
__all__ = [
    "HammingIndex",
    "NativeReader",
    "PreprocessConfig",
    "NativeShardWriter",
    "NativeWriteLock",
    "WordSet",
    "__version__",
    "_decode_luma",
    "_decode_rgb",
    "_resize_luma",
    "analyze_images",
    "thumbnails",
    "image_compare",
    "caption_metrics",
    "blake3",
    "check_file_name",
    "error_kinds",
    "frame_to_jsonl",
    "frame_to_records",
    "detect_record_format",
    "get_threads",
    "hamming_clusters",
    "hamming_pairs",
    "linear_assignment",
    "lsh_cluster",
    "lsh_params",
    "minhash_signatures",
    "mmc4_assign",
    "mmc4_assign_matrix",
    "mmc4_assign_rows",
    "mmc4_similarity_rows",
    "normalized_text_hash",
    "number_documents",
    "obelics_paragraphs",
    "obelics_text_stats",
    "parquet_page_header",
    "plain_byte_array_longest",
    "dictionary_gathered_bytes",
    "read_samples",
    "records_to_frame",
    "stat_files",
    "sequence_consistency",
    "set_threads",
    "shingles",
    "text_coherence",
    "top_k",
    "xxh3_128",
    "xxh3_64",
]

@final
class NativeReader:
    """Streams node batches from WebDataset shards or JSON-lines files; use ``interleaf.read``."""

    def __new__(
        cls,
        paths: list[str],
        kind: str,
        format: str | None = None,
        image_root: str | None = None,
        load_images: bool = True,
        max_member_bytes: int | None = None,
        first_doc_index: int = 0,
        *,
        allow_outside_root: bool = False,
        max_batch_bytes: int | None = None,
        track_image_files: bool = False,
    ) -> Self: ...
    def next_batch(self, batch_size: int) -> pl.DataFrame | None:
        """Up to ``batch_size`` whole documents as a node table (``interleaf.schema``), or
        None at the end; documents are numbered from ``first_doc_index``."""
    def stats(self) -> dict[str, Any]:
        """files, documents, nodes, text_nodes, image_nodes, text_bytes, image_bytes,
        bytes_read, errors (documents per error kind)."""
    def take_image_files(self) -> pl.DataFrame:
        """The local image files records named since the last call: ``path``, ``size``,
        ``mtime_ns`` (``track_image_files=True``; empty otherwise)."""

@final
class NativeShardWriter:
    """Writes flat node frames as deterministic WebDataset shards; use ``interleaf.write``."""

    def __new__(
        cls,
        directory: str,
        prefix: str = "shard",
        compression: str = "none",
        max_count: int = 10_000,
        max_bytes: int = ...,
        start_index: int = 0,
        *,
        pattern: str | None = None,
        single: str | None = None,
        overwrite: bool = False,
    ) -> Self: ...
    def write(self, df: pl.DataFrame) -> int:
        """Writes every document of a node table (full schema); returns how many."""
    def abort(self) -> None:
        """Stops a failed write: the open shard removed; where shards were already renamed
        over older ones, the older ones it did not reach removed too (never two datasets)."""
    def finish(self) -> list[str]:
        """Closes the last shard; returns every shard path written."""

def records_to_frame(
    table: pl.DataFrame,
    format: str | None,
    source: str,
    start_index: int = 0,
    first_doc_index: int = 0,
    image_root: str | None = None,
    load_images: bool = True,
    *,
    allow_outside_root: bool = False,
    max_member_bytes: int | None = None,
    track_image_files: bool = False,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A table of records (parquet rows as Arrow data; binary cells stay bytes) to a node
    table and its counters (with ``track_image_files``, ``image_files`` among them: the local
    image files the records named, a frame of ``path``, ``size``, ``mtime_ns``)."""

def stat_files(paths: pl.Series) -> pl.DataFrame:
    """``path``, ``size``, ``mtime_ns`` of each path of a String Series as it stands now, looked
    up in parallel: a regular file's size and mtime as ``os.stat`` gives them, -2 for anything
    else that exists, -1 for what cannot be looked up (null too)."""

@final
class NativeWriteLock:
    """An exclusive lock on writing one file name in a folder (released by release(), garbage
    collection or the death of the process)."""

    def __new__(cls, directory: str, name: str) -> Self: ...
    def release(self) -> None:
        """Frees the lock (idempotent)."""

def check_file_name(what: str, name: str) -> None:
    """ValueError unless name is a plain file name (no '/', '..' or leading '.')."""

def number_documents(df: pl.DataFrame, first: int) -> pl.Series:
    """``doc_index`` for the rows of a node table, numbered from ``first``: its own
    ``doc_index`` groups the rows when present, else ``doc_id`` and ``pos`` do."""

def parquet_page_header(data: bytes) -> tuple[int, int, int, int, bool, int, int, int, bool, bool, bool] | None:
    """What the reader needs of the parquet page header at the start of ``data``: ``(type,
    uncompressed, compressed, values, dictionary_encoded, header_bytes, levels,
    repetition_levels, values_compressed, rle_repetition, rle_definition)``; None when ``data``
    ends inside it; ValueError when it is malformed."""

def plain_byte_array_longest(data: bytes, count: int) -> int:
    """The byte length of the longest of the first ``count`` values of PLAIN-encoded BYTE_ARRAY
    data (a parquet dictionary page's body); ValueError when the data ends before them."""

def dictionary_gathered_bytes(dictionary: bytes, entries: int, pages: list[tuple[bytes, bytes]], values: list[int], max_definition: int) -> int:
    """The bytes the dictionary indices of a parquet column chunk gather: ``dictionary`` is its
    dictionary page's body (``entries`` PLAIN BYTE_ARRAY values); ``pages`` its
    dictionary-encoded data pages, each as its definition levels (an RLE/bit-packed hybrid
    stream with no length prefix, empty when ``max_definition`` is 0) and its index data (a
    byte of bit width, then RLE/bit-packed runs); ``values`` their value counts, nulls
    included. A page's indices are read for its non-null values, those whose level is
    ``max_definition`` (all of its values when its levels end early). Each value counts its
    entry's length plus 8. ValueError for a damaged dictionary or stream."""

def frame_to_jsonl(df: pl.DataFrame) -> bytes:
    """One JSON line per document of a node table, in interleaf's ``nodes`` schema."""

def frame_to_records(df: pl.DataFrame, format: str, embed_images: bool = False) -> bytes:
    """One JSON line per document in a record layout (``pairs``, ``mmc4``, ``obelics``,
    ``comm``, ``llava``, ``nodes``); images as their reference, or inline ``data:`` URIs when
    ``embed_images`` or when they have none. Raises ValueError for a document the layout cannot
    hold without losing nodes (``pairs``: more than one image or text)."""

def detect_record_format(path: str) -> str | None:
    """The record format of a JSON-lines file from the keys of its first records, or None."""

def set_threads(threads: int) -> None:
    """Default thread count (1-512) of every batch call that does not name one."""

def get_threads() -> int:
    """The default thread count: set_threads, else INTERLEAF_THREADS, else the usable cores."""

@disjoint_base
class PreprocessConfig:
    """How images become model input (interleaf.image.PreprocessConfig), checked in Rust."""

    def __new__(
        cls,
        *,
        mode: str = "shortest",
        shortest_edge: int = 224,
        size: tuple[int, int] = ...,
        crop: tuple[int, int] | None = ...,
        crop_rounding: str = "half_even",
        resample: int = 3,
        rescale: str = "divide255",
        rescale_factor: float = ...,
        mean: tuple[float, float, float] | None = ...,
        std: tuple[float, float, float] | None = ...,
        fill: int = 0,
        convert_rgb: str = "after_resize",
    ) -> Self: ...
    @property
    def mode(self) -> str: ...
    @property
    def shortest_edge(self) -> int: ...
    @property
    def size(self) -> tuple[int, int]: ...
    @property
    def crop(self) -> tuple[int, int] | None: ...
    @property
    def crop_rounding(self) -> str: ...
    @property
    def resample(self) -> int: ...
    @property
    def rescale(self) -> str: ...
    @property
    def rescale_factor(self) -> float: ...
    @property
    def mean(self) -> tuple[float, float, float] | None: ...
    @property
    def std(self) -> tuple[float, float, float] | None: ...
    @property
    def fill(self) -> int: ...
    @property
    def convert_rgb(self) -> str: ...
    @property
    def output_shape(self) -> tuple[int, int]: ...

def error_kinds() -> list[tuple[str, str]]:
    """(kind, meaning) of every error kind in the registry."""

def xxh3_64(data: list[bytes]) -> list[int]:
    """xxh3-64 (seed 0) of each bytes object."""

def read_samples(path: str, max_member_bytes: int | None = None) -> list[tuple[str, list[tuple[str, bytes]], list[tuple[str, str]]]]:
    """One shard's raw samples as webdataset groups them: (key, [(ext, bytes)], [(error kind,
    message)]). For tests and debugging."""

def xxh3_128(items: pl.Series) -> pl.Series:
    """xxh3-128 (seed 0) hex of each value of a String (UTF-8) or Binary Series; null stays null."""

def blake3(items: pl.Series) -> pl.Series:
    """BLAKE3 hex of each value of a String (UTF-8) or Binary Series; null stays null."""

def normalized_text_hash(texts: pl.Series, strip_punctuation: bool = False) -> pl.Series:
    """xxh3-128 hex of NFKC + lower-cased + whitespace-folded text, per value of a String Series."""

def shingles(text: str, n: int = 5, unit: str = "word") -> list[str]:
    """Distinct word or character n-grams in order of first appearance."""

def minhash_signatures(
    texts: pl.Series,
    n: int,
    unit: str,
    scheme: str,
    a: list[int],
    b: list[int],
    seed: int = 0,
    threads: int | None = None,
) -> np.ndarray:
    """uint32 signatures (len(texts), len(a)) of a String Series (null as ""); scheme is
    "affine32", "legacy" or "fast"."""

def lsh_params(threshold: float, num_perm: int, false_positive_weight: float = 0.5, false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) as datasketch's _optimal_param chooses them."""

def lsh_cluster(
    signatures: np.ndarray,
    bands: int,
    rows: int,
    verify: str = "none",
    threshold: float = 0.0,
    texts: pl.Series | None = None,
    n: int = 5,
    unit: str = "word",
    ranking: np.ndarray | None = None,
) -> tuple[np.ndarray, int, int]:
    """(representative per row as int64, candidate pairs checked, pairs joined)."""

def hamming_pairs(hashes: pl.Series, radius: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) of the UInt64 hashes within radius (i < j; nulls join nothing), and each
    item's representative."""

def hamming_clusters(hashes: pl.Series, radius: int, threads: int | None = None) -> tuple[np.ndarray, int]:
    """(representative per item as int64, pairs of distinct hash values within radius), without
    listing pairs of equal hashes."""

@final
class HammingIndex:
    """A multi-index hashing index over UInt64 hashes (nulls are never found) for searches
    within its radius or less."""

    def __new__(cls, hashes: pl.Series, radius: int, threads: int | None = None) -> Self: ...
    def search(self, queries: pl.Series, radius: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, id, distance) int64 arrays of every entry within radius of each query,
        sorted by query then id."""
    @property
    def radius(self) -> int: ...
    def __len__(self) -> int: ...

def _resize_luma(pixels: bytes, width: int, height: int, out_width: int, out_height: int, filter: str) -> bytes:
    """Pillow-compatible resize of 8-bit grayscale pixels (lanczos, bicubic, bilinear). For tests."""

def _decode_luma(data: bytes, draft: int | None = None) -> tuple[int, int, bytes]:
    """Decode and convert to grayscale as Pillow's convert("L") (after `Image.draft("L", (draft, draft))`
    when `draft` is given). For tests."""

def analyze_images(
    images: pl.Series,
    *,
    out: np.ndarray | None = None,
    config: PreprocessConfig | None = None,
    stats: bool = False,
    hashes: list[str] = ...,
    hash_size: int = 8,
    hash_draft: int | None = None,
    alpha: str = "drop",
    exif_transpose: bool = False,
    jpeg_draft: bool = False,
    max_pixels: int | None = None,
    max_bytes: int | None = None,
    threads: int | None = None,
    header_only: bool = False,
) -> pl.DataFrame:
    """Decodes each image of a Binary Series once: CLIP pixels into ``out`` (N, 3, H, W;
    float32 or float16, C-contiguous) when ``config`` (the fields of
    ``interleaf.image.PreprocessConfig``) is given, and a table of the stats columns (when
    asked), ``{kind}`` / ``{kind}_hex`` per hash, and ``error``. See ``interleaf.image.analyze``."""

@final
class WordSet:
    """A word list for the common-word ratio (see interleaf.signals.load_common_words)."""

    def __new__(cls, words: list[str]) -> Self: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: str, /) -> bool: ...
    def words(self) -> list[str]:
        """The words, sorted."""
    def digest(self) -> str:
        """BLAKE3 of the sorted words, hex: what identifies the list; computed once."""
    def unmatchable(self, limit: int = 5) -> tuple[int, list[str]]:
        """(how many, up to limit of them sorted): entries OBELICS's word splitting never gives."""
    def __reduce__(self) -> tuple[type[WordSet], tuple[list[str]]]:
        """Pickled as its words (a run's plan travels to Ray workers)."""

def obelics_text_stats(
    texts: pl.Series, *, char_ngram: int = 10, word_ngram: int = 5, punctuation_min_tokens: int = 0, threads: int | None = None, common_words: WordSet | None = None
) -> pl.DataFrame:
    """OBELICS's statistics per text of a String Series (see interleaf.signals.text_stats);
    ``common_word_ratio`` too with ``common_words``."""

def obelics_paragraphs(texts: pl.Series, *, threads: int | None = None, node_stats: tuple[int, int] | None = None, common_words: WordSet | None = None) -> pl.DataFrame:
    """OBELICS's node-level paragraph filter per text: text, removed, reasons; with
    ``node_stats=(char_ngram, word_ngram)`` also each whole text's paragraph-level statistics
    (``obelics_text_stats``'s columns, ``punctuation_min_tokens`` 12); with ``common_words``
    also OBELICS's common-word check (>= 0.8) and ``common_word_ratio``."""

def mmc4_assign(
    images: np.ndarray, image_offsets: np.ndarray, texts: np.ndarray, text_offsets: np.ndarray, threshold: float = 0.15, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sentence index per image, -1 when dropped; its cosine) over documents."""

def mmc4_assign_matrix(sim: np.ndarray, threshold: float = 0.15) -> np.ndarray:
    """MMC4's assignment of one (images, sentences) float32 similarity matrix."""

def mmc4_assign_rows(sims: np.ndarray, sim_offsets: np.ndarray, image_offsets: np.ndarray, threshold: float = 0.15, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sentence index per image, -1 when dropped; its cosine) over documents, from each
    image's float32 cosines with its document's sentences."""

def mmc4_similarity_rows(
    images: np.ndarray, image_offsets: np.ndarray, texts: np.ndarray, text_offsets: np.ndarray, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each image's float32 cosines with its document's sentences (flat, images in order) and
    each image's offset into them (int64, one more than the images)."""

def sequence_consistency(embeddings: np.ndarray, offsets: np.ndarray, threads: int | None = None) -> np.ndarray:
    """CoMM's F per document (NaN below 3 images)."""

def text_coherence(
    embeddings: np.ndarray, offsets: np.ndarray, shuffles: int = 8, seed: int = 0, threads: int | None = None, keys: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean consecutive cosine, minimum, margin over shuffles) per document; ``keys`` (uint64,
    one per document) seed each document's shuffles instead of its position."""

def linear_assignment(cost: np.ndarray, maximize: bool = False) -> np.ndarray:
    """The column of each row in an optimal assignment of a float64 cost matrix, -1 when left out."""

def top_k(queries: np.ndarray, keys: np.ndarray, k: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the k most similar key rows (int64, -1 padded) and their cosines (float32, NaN padded)."""

def _decode_rgb(data: bytes, alpha: str = "drop", exif_transpose: bool = False, max_pixels: int | None = None) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) as Pillow's convert("RGB"). Raises ValueError on failure."""

def caption_metrics(hyps: list[str], refs: list[list[str]]) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray]:
    """BLEU-1..4 (corpus, and per hypothesis ``(n, 4)``), ROUGE-L and CIDEr-D per hypothesis of
    tokenised texts, as pycocoevalcap 1.2 computes them."""

def image_compare(images: pl.Series, a: list[int], b: list[int], size: int, max_pixels: int | None = None, max_bytes: int | None = None, threads: int | None = None) -> tuple[pl.DataFrame, pl.Series]:
    """SSIM and PSNR of index pairs into ``images`` (each decoded and resized to ``size`` x
    ``size`` once): the pairs' ``ssim``, ``psnr`` (null where an image failed) and each image's
    ``error``."""

def thumbnails(images: pl.Series, max_side: int = 128, quality: int = 80, max_pixels: int | None = None, max_bytes: int | None = None, threads: int | None = None) -> pl.DataFrame:
    """Small JPEG previews (fit in ``max_side`` px, EXIF orientation applied): ``thumbnail``
    (Binary, null where the image failed) and ``error``."""
