"""Dataset-level deduplication (``interleaf dedup``) as four steps, each with its own counters:

1. **sign**: stream documents and compute each one's key (exact), hash (pHash) or MinHash
   signature, batch by batch, in Rust;
2. **cluster**: group documents whose keys are equal or whose hashes / signatures are near;
3. **duplicates**: the table of documents in clusters of two or more;
4. **keep**: the documents that are their own cluster's representative (optionally written
   in a second pass).

Documents are the reader's ``doc_index`` values, so ids need not be unique.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import interleaf
from interleaf._checks import choice_arg, float_arg, int_arg
from interleaf.dedup.exact import normalized_text_hash, xxh3_128
from interleaf.dedup.minhash import MinHasher, check_banding, lsh_clusters, lsh_params
from interleaf.dedup.perceptual import hash_clusters, phash
from interleaf.image import check_draft
from interleaf.io.atomic import FolderLock, atomic_output, missing_folders, remove_empty, write_text
from interleaf.io.reader import READ_OPTIONS
from interleaf.io.sources import check_out_apart, named_inputs
from interleaf.io.writer import WRITE_FORMATS
from interleaf.polars import hamming
from interleaf.schema import DOC_ID, DOC_INDEX, IMAGE, KIND, POS, TEXT, has_words

METHODS = ("exact", "minhash", "phash", "semantic")
EXACT_ON = ("text", "image", "all")


def document_texts(df: pl.DataFrame) -> pl.DataFrame:
    """One row per document (``doc_index``) in batch order: ``doc_index``, ``doc_id``, its text
    nodes joined by newlines in ``pos`` order (``text``), its images with bytes (``images``;
    an empty file, what a failed download often leaves, has none) and the first of them
    (``first_image``)."""
    return df.sort(DOC_INDEX, POS, maintain_order=True).group_by(DOC_INDEX, maintain_order=True).agg(
        pl.col(DOC_ID).first(),
        pl.col(TEXT).filter(pl.col(KIND) == "text").str.join("\n").alias("text"),
        pl.col(IMAGE).filter(_HAS_IMAGE).alias("images"),
        pl.col(IMAGE).filter(_HAS_IMAGE).first().alias("first_image"),
    )


#: An image node with bytes to hash (an empty file has none).
_HAS_IMAGE = (pl.col(KIND) == "image") & (pl.col(IMAGE).bin.size() > 0).fill_null(False)


def has_text(docs: pl.DataFrame) -> pl.Series:
    """Whether each document (:func:`document_texts` row) has text besides whitespace: a blank
    one has none to compare, and duplicates nothing rather than every other blank one."""
    return docs.select(has_words(pl.col("text"))).to_series()


def _first_image_hashes(df: pl.DataFrame, image_hashes: pl.Series) -> pl.Series:
    """Per document in :func:`document_texts` order: the hash of its ``first_image`` (the
    first image node with bytes in ``pos`` order), from ``image_hashes``, one per image node of
    ``df`` in order."""
    is_image = (pl.col(KIND) == "image").fill_null(False)
    rows = df.select(DOC_INDEX, POS, is_image.alias("_image"), (is_image & pl.col(IMAGE).is_not_null()).alias("_bytes"))
    rows = rows.with_columns(pl.lit(None, dtype=pl.UInt64).alias("hash"))
    rows = rows.with_columns(rows.get_column("hash").scatter(rows.get_column("_image").arg_true(), image_hashes))
    first = rows.sort(DOC_INDEX, POS, maintain_order=True).group_by(DOC_INDEX, maintain_order=True).agg(pl.col("hash").filter(pl.col("_bytes")).first())
    return first.get_column("hash")


def _image_keys(df: pl.DataFrame, docs: pl.DataFrame) -> pl.Series:
    """Per document: xxh3-128 of its images' xxh3-128 keys joined by commas, in ``pos`` order
    (a document without images hashes the empty string; :func:`sign_batch` gives it no key)."""
    images = df.filter(_HAS_IMAGE).sort(DOC_INDEX, POS, maintain_order=True)
    per_image = images.select(DOC_INDEX, xxh3_128(images.get_column(IMAGE)).alias("h"))
    joined = per_image.group_by(DOC_INDEX, maintain_order=True).agg(pl.col("h").str.join(","))
    keys = docs.select(DOC_INDEX).join(joined, on=DOC_INDEX, how="left", maintain_order="left").get_column("h").fill_null("")
    return xxh3_128(keys)


@dataclass
class Signatures:
    """Step 1's output: one entry per document in read order, and its counters."""

    doc_ids: list[pl.Series] = field(default_factory=list)
    keys: list[pl.Series] = field(default_factory=list)  # exact: String keys (null: nothing to hash); phash: UInt64 hashes
    signatures: list[np.ndarray] = field(default_factory=list)  # minhash; semantic: embeddings
    signed: list[np.ndarray] = field(default_factory=list)  # minhash: which documents have text
    counters: dict[str, int] = field(default_factory=lambda: {"documents": 0, "unhashed": 0})


def embed_documents(model: Any, docs: pl.DataFrame, on: str) -> np.ndarray:
    """Embeddings of documents (``document_texts`` rows) for semantic dedup: the first image
    through a CLIP model (``on="image"``), or the text through a CLIP model or a sentence
    embedder (``on="text"``); NaN rows where a document has nothing to embed."""
    if on == "image":
        if not hasattr(model, "embed_images"):
            raise ValueError("on='image' needs a CLIP model")
        return model.embed_images(docs.get_column("first_image"))[0]
    # A document without text has nothing to embed: null, so its row is NaN (not the
    # embedding of "", which every text-less document would share).
    texts = docs.select(pl.when(has_words(pl.col("text"))).then(pl.col("text"))).to_series()
    return (model.embed_texts(texts) if hasattr(model, "embed_texts") else model.embed(texts))[0]


def sign_batch(
    df: pl.DataFrame,
    method: str,
    *,
    on: str = "text",
    strip_punctuation: bool = False,
    hasher: MinHasher | None = None,
    draft: int | None = None,
    max_pixels: int | None = None,
    model: Any = None,
    docs: pl.DataFrame | None = None,
    image_hashes: pl.Series | None = None,
) -> tuple[pl.DataFrame, Any]:
    """Step 1 on one node batch: its documents (:func:`document_texts`, or ``docs`` when the
    caller already has them for this batch) and their keys (exact: a String Series), hashes
    (phash: a UInt64 Series, null without a decodable image), MinHash signatures (a uint32
    matrix) or embeddings (semantic: float32, NaN rows where there is nothing to embed; None
    without a model). ``image_hashes`` (phash): the pHash of each image node of ``df`` in
    order, when the caller has them, instead of decoding each first image again; ``draft`` and
    ``max_pixels``: :func:`interleaf.dedup.phash`'s."""
    if docs is None:
        docs = document_texts(df)
    texts = docs.get_column("text").fill_null("")
    if method == "semantic":
        return docs, (embed_documents(model, docs, on) if model is not None else None)
    if method == "minhash":
        assert hasher is not None
        return docs, hasher.signatures(texts)
    if method == "phash":
        if image_hashes is not None:
            return docs, _first_image_hashes(df, image_hashes)
        return docs, phash(docs.get_column("first_image"), draft=draft, max_pixels=max_pixels).get_column("hash")
    parts = []
    text_key = normalized_text_hash(texts, strip_punctuation)
    if on in ("text", "all"):
        parts.append(text_key)
    if on in ("image", "all"):
        parts.append(_image_keys(df, docs))
    key = parts[0] if len(parts) == 1 else pl.select(pl.concat_str(parts, separator=":")).to_series().alias("key")
    # A document with nothing to hash (no text for on="text": blank, or only punctuation with
    # strip_punctuation, normalising to the empty text; no image with bytes for on="image";
    # neither for on="all") has no key: it duplicates nothing, rather than every other such
    # document.
    texted = text_key != normalized_text_hash([""], strip_punctuation)[0]
    imaged = docs.get_column("images").list.len() > 0
    ok = {"text": texted, "image": imaged, "all": texted | imaged}[on]
    return docs, pl.select(pl.when(ok).then(key)).to_series().alias("key")


def sign(reader: interleaf.Reader, method: str, *, on: str = "text", strip_punctuation: bool = False, hasher: MinHasher | None = None, draft: int | None = None, max_pixels: int | None = None, model: Any = None) -> Signatures:
    """Step 1: each document's key, hash, signature or embedding, batch by batch. ``unhashed``
    counts documents without a decodable image (pHash) or anything to embed (semantic), which
    then join nothing."""
    out = Signatures()
    for df in reader:
        docs, value = sign_batch(df, method, on=on, strip_punctuation=strip_punctuation, hasher=hasher, draft=draft, max_pixels=max_pixels, model=model)
        out.doc_ids.append(docs.get_column(DOC_ID))
        out.counters["documents"] += docs.height
        if method == "semantic":
            if value is not None:
                out.counters["unhashed"] += int(np.isnan(value).any(axis=1).sum())
                out.signatures.append(value)
        elif method == "minhash":
            # A text-less document's signature is the empty set's: it joins nothing.
            signed = has_text(docs).to_numpy()
            out.counters["unhashed"] += int((~signed).sum())
            out.signatures.append(value)
            out.signed.append(signed)
        else:
            out.counters["unhashed"] += value.null_count()
            out.keys.append(value)
    return out


def cluster(sig: Signatures, method: str, *, threshold: float, num_perm: int, bands: int | None, rows: int | None, verify: str, radius: int, semantic: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Step 2: (representative doc_index per document, score per document, counters). The
    representative is the first document of its cluster in read order (semantic: the one
    SemDeDup keeps)."""
    total = sig.counters["documents"]
    if method == "semantic":
        return semantic_clusters(np.concatenate(sig.signatures) if sig.signatures else np.zeros((0, 1), np.float32), total, **(semantic or {}))
    if method == "minhash":
        # One copy of the signatures at a time (4 * num_perm bytes a document): the batches'
        # arrays are let go once joined, the signed rows taken without a copy when all are,
        # and the scores computed a block at a time (three full copies peaked at 3.2x).
        matrix = np.concatenate(sig.signatures) if sig.signatures else np.zeros((0, num_perm), dtype=np.uint32)
        sig.signatures.clear()
        signed = np.concatenate(sig.signed) if sig.signed else np.ones(len(matrix), dtype=bool)
        rows_ok = np.flatnonzero(signed)
        reps = np.arange(len(matrix), dtype=np.int64)
        sub, stats = lsh_clusters(matrix if len(rows_ok) == len(matrix) else matrix[rows_ok], threshold, bands, rows, verify=verify)
        reps[rows_ok] = rows_ok[sub]
        score = np.empty(len(matrix))
        step = 1 << 16
        for a in range(0, len(matrix), step):
            score[a : a + step] = (matrix[a : a + step] == matrix[reps[a : a + step]]).mean(axis=1)
        return reps, score, {**stats, "unhashed": sig.counters["unhashed"]}
    keys = pl.concat(sig.keys) if sig.keys else pl.Series("key", [], dtype=pl.UInt64 if method == "phash" else pl.String)
    if method == "phash":
        reps, pairs = hash_clusters(keys, radius)
        both = pl.DataFrame({"a": keys, "b": keys.gather(reps)})
        score = both.select(hamming("a", "b").fill_null(0).cast(pl.Float64)).to_series().to_numpy()
        return reps, score, {"radius": radius, "distinct_hash_pairs": pairs, "unhashed": sig.counters["unhashed"]}
    indexed = pl.DataFrame({"key": keys}).with_row_index("i")
    reps = indexed.select(pl.when(pl.col("key").is_null()).then(pl.col("i")).otherwise(pl.col("i").min().over("key"))).to_series().cast(pl.Int64).to_numpy()
    return reps, np.ones(total), {"distinct_keys": keys.drop_nulls().n_unique(), "unhashed": sig.counters["unhashed"]}


def semantic_clusters(emb: np.ndarray, total: int, *, eps: float = 0.01, n_clusters: int | None = None, seed: int = 1234, device: str = "auto", engine: str = "local") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """SemDeDup (:func:`interleaf.dedup.semantic`) over one embedding per document; a removed
    document's representative is the kept document its chain of ``duplicate_of`` ends at, its
    score the cosine with that representative (as the other methods score against theirs; along
    a chain it can be below ``1 - eps``). Documents without an embedding (a NaN or zero row)
    stay alone."""
    from interleaf.dedup.semdedup import semantic

    if len(emb) != total:
        raise ValueError(f"semantic dedup needs one embedding per document: {len(emb)} embeddings for {total} documents")
    reps = np.arange(total, dtype=np.int64)
    score = np.ones(total)
    # Rows with NaN (nothing to embed) or all zeros (no direction) join nothing.
    ok = np.flatnonzero(np.isfinite(emb).all(axis=1) & (np.abs(emb).sum(axis=1) > 0)) if total else np.zeros(0, np.int64)
    stats: dict[str, Any] = {"eps": eps, "embedded": int(len(ok)), "unembedded": int(total - len(ok))}
    if len(ok):
        # Every row embedded (the usual case): the array itself, not a copy of it.
        table = semantic(emb if len(ok) == total else emb[ok], eps=eps, n_clusters=n_clusters, seed=seed, device=device, engine=engine)
        dup = table.get_column("duplicate_of").fill_null(-1).to_numpy()
        local = np.arange(len(ok))
        target = np.where(dup >= 0, dup, local)
        while True:  # follow duplicate_of to the kept item it ends at
            nxt = target[target]
            if (nxt == target).all():
                break
            target = nxt
        reps[ok] = ok[target]
        # The cosine of each duplicate with its kept item, in float64 (float32 norms of rows
        # near 1e20 overflow), for the duplicates' rows only (no copy of every embedding).
        score[ok] = 1.0
        d = np.flatnonzero(dup >= 0)
        if len(d):
            x, y = emb[ok[d]].astype(np.float64), emb[ok[target[d]]].astype(np.float64)
            cos = np.einsum("ij,ij->i", x, y) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
            score[ok[d]] = cos.clip(-1.0, 1.0)
        stats["clusters"] = int(table.get_column("cluster").n_unique())
    return reps, score, stats


def duplicates_table(doc_ids: pl.Series, reps: np.ndarray, score: np.ndarray, method: str) -> pl.DataFrame:
    """Step 3: one row per document in a cluster of two or more: ``doc_id``, ``doc_index``,
    ``cluster_id`` (the representative's doc_index), ``representative`` (its doc_id),
    ``method``, ``score``."""
    total = doc_ids.len()
    table = pl.DataFrame({"doc_id": doc_ids, "doc_index": np.arange(total, dtype=np.int64), "cluster_id": reps, "score": score})
    dups = table.filter(pl.len().over("cluster_id") > 1)
    return dups.with_columns(doc_ids.gather(dups.get_column("cluster_id")).alias("representative"), pl.lit(method).alias("method")).select(
        "doc_id", "doc_index", "cluster_id", "representative", "method", "score"
    )


def _list_matrix(s: pl.Series, name: str) -> np.ndarray:
    """A List column of equal-length vectors as a 2-D array, without a Python object per float
    (``to_list`` took 1.6 GB and 4 s for 50k x 512)."""
    lengths = s.list.len()
    if s.null_count() or lengths.null_count():
        raise ValueError(f"embeddings column {name!r} has null rows: every document needs a vector")
    dims = lengths.unique()
    if dims.len() > 1:
        raise ValueError(f"embeddings column {name!r} holds vectors of different lengths: {sorted(dims.to_list())[:5]}")
    dim = int(dims[0]) if dims.len() else 0
    if not dim:
        return np.zeros((s.len(), 0), np.float32)
    return s.explode().to_numpy().reshape(s.len(), dim)


def load_embeddings(embeddings: Any) -> np.ndarray:
    """Embeddings given to semantic dedup: an array, a ``.npy`` file, or ``file.parquet:column``
    (a List or Array column), one row per document in read order."""
    if isinstance(embeddings, (str, os.PathLike)):
        text = str(embeddings)
        if text.endswith(".npy"):
            a = np.load(text, mmap_mode="r")
        elif ".parquet:" in text:
            path, col = text.rsplit(":", 1)
            names = pl.read_parquet_schema(path)
            if col not in names:
                raise ValueError(f"{path} has no column {col!r} (its columns: {', '.join(names)})")
            s = pl.read_parquet(path, columns=[col]).get_column(col)
            a = _list_matrix(s, col) if s.dtype == pl.List else s.to_numpy()
        else:
            raise ValueError(f"embeddings must be a .npy file or 'file.parquet:column', got {text!r}")
    else:
        a = np.asarray(embeddings)
    a = np.asarray(a, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (documents, dim), got shape {a.shape}")
    return a


def kept(source: Any, format: str | None, batch_size: int, keep: np.ndarray, **read_options: Any) -> Iterator[pl.DataFrame]:
    """Step 4's second pass: the batches of the documents whose ``doc_index`` is kept (the same
    read numbers documents the same way)."""
    for df in interleaf.read(source, format, batch_size, **read_options):
        yield df.filter(pl.Series(keep[df.get_column(DOC_INDEX).to_numpy()]))


def deduplicate(
    source: Any,
    out: str | os.PathLike[str],
    method: str = "minhash",
    *,
    format: str | None = None,
    batch_size: int = 1024,
    threshold: float = 0.8,
    num_perm: int = 128,
    n: int = 5,
    unit: str = "word",
    seed: int | None = None,
    bands: int | None = None,
    rows: int | None = None,
    verify: str = "none",
    on: str = "text",
    radius: int = 5,
    draft: int | None = None,
    max_pixels: int | None = None,
    strip_punctuation: bool = False,
    write_format: str | None = None,
    progress: bool = False,
    model: Any = None,
    embeddings: Any = None,
    eps: float = 0.01,
    n_clusters: int | None = None,
    device: str = "auto",
    engine: str = "local",
    ray_address: str | None = None,
    read_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Finds duplicate documents in ``source`` and writes ``out/duplicates.parquet`` and
    ``out/summary.json`` (each written under a temporary name and renamed).

    The table has one row per document that belongs to a cluster of two or more: ``doc_id``,
    ``doc_index`` (position in read order), ``cluster_id`` (the representative's doc_index),
    ``representative`` (its doc_id), ``method`` and ``score`` (1.0 for exact duplicates; the
    estimated Jaccard with the representative for MinHash; the Hamming distance for pHash).
    The representative is the first document in read order. With ``write_format``
    ("parquet", "jsonl", "webdataset"), the documents that are their own representative are
    written to ``out/dedup`` in a second pass.

    ``method="exact"`` keys documents by ``on``: "text" (normalised text, see
    :func:`normalized_text_hash`), "image" (xxh3-128 of the image bytes) or "all". A document
    with nothing to key (no text for "text", no readable image for "image", neither for "all")
    stays alone and is counted in ``unhashed``, as is a text-less document for MinHash.
    ``method="phash"`` hashes each document's first image as imagehash's ``phash`` does and
    joins documents within Hamming ``radius`` (default 5, MMC4's near-duplicate radius) by
    multi-index search; ``score`` is the Hamming distance to the representative. Documents
    without a decodable image stay alone and are counted in ``unhashed``. ``draft`` (pixels)
    hashes JPEGs from Pillow-style reduced decoding, several times faster and not
    bit-identical to imagehash on a full decode (see :func:`interleaf.dedup.phash`);
    ``max_pixels``: the largest image decoded (default 89,478,485, Pillow's limit; a larger
    one is unhashed).
    ``method="minhash"`` signs document texts with :class:`MinHasher` (fast mode) and clusters
    with :func:`lsh_clusters` at ``threshold``. Signatures take ``4 * num_perm`` bytes per
    document (512 B at 128: 10M documents = 5.1 GB), twice that for a moment while the
    batches' signatures are joined into one matrix.
    ``method="semantic"`` runs SemDeDup (:func:`interleaf.dedup.semantic`, ``eps``,
    ``n_clusters``, ``seed``, ``device``) on one embedding per document: each document's first
    image (``on="image"``) or its text (``on="text"``) through ``model`` (a CLIP model or a
    sentence embedder, loaded object or directory), or the rows of ``embeddings`` (an array, a
    ``.npy`` file, or ``path.parquet:column``; one row per document in read order). The
    representative is the document SemDeDup keeps; ``score`` is the cosine with it (a document
    is removed because the nearest earlier one of its cluster is within ``eps``; along a chain
    of such neighbours the representative can be further). ``seed`` defaults to 1 for MinHash
    (datasketch's) and 1234 for semantic (SemDeDup's k-means seed, as :func:`interleaf.dedup.semantic`). ``engine="ray"`` runs SemDeDup's per-cluster passes as
    parallel Ray tasks on the cluster at ``ray_address`` (None: a local Ray instance; the
    ``ray`` extra), with the same result; the other methods run on Ray through
    ``interleaf run --engine ray``. ``read_options`` go to :func:`interleaf.read` on every pass
    (``image_root``, ``load_images``, ``max_member_bytes``, ``max_batch_bytes``,
    ``allow_outside_root``).

    A rerun into the folder of an earlier dedup replaces its outputs. A ``duplicates.parquet``
    (or, with ``write_format``, a ``dedup`` folder) that no finished dedup wrote there is
    refused unless ``overwrite`` (a first dedup killed before its summary leaves one too).

    Every argument is checked before any data is read.
    """
    read_options = dict(read_options or {})
    unknown = sorted(set(read_options) - READ_OPTIONS)
    if unknown:
        raise ValueError(f"unknown read_options {unknown}: the options are {sorted(READ_OPTIONS)}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    choice_arg("engine", engine, ("local", "ray"))
    if engine == "ray" and method != "semantic":
        raise ValueError(f"engine='ray' runs method='semantic' here; MinHash, exact and pHash dedup run on Ray through `interleaf run --engine ray`, not method={method!r}")
    if ray_address is not None and engine != "ray":
        raise ValueError("ray_address needs engine='ray'")
    if seed is None:
        seed = 1 if method == "minhash" else 1234
    emb_given = None
    if method == "semantic":
        choice_arg("on", on, ("text", "image"))
        if (model is None) == (embeddings is None):
            raise ValueError("method='semantic' needs exactly one of model= (a CLIP model or text embedder) and embeddings=")
        choice_arg("device", device, ("auto", "cpu", "cuda"))
        int_arg("seed", seed, 0, (1 << 31) - 1)
        float_arg("eps", eps, 0.0, 1.0)
        int_arg("n_clusters", n_clusters, 1, 1 << 24, optional=True)
        if embeddings is not None:
            emb_given = load_embeddings(embeddings)
        elif isinstance(model, (str, os.PathLike)):
            from interleaf import models

            model = models.load(model, device)
        if model is not None and not (hasattr(model, "embed_images") or hasattr(model, "embed_texts") or hasattr(model, "embed")):
            raise ValueError(f"method='semantic' needs a CLIP model or a text embedder, not a {type(model).__name__}")
        if model is not None and on == "image" and not hasattr(model, "embed_images"):
            raise ValueError("on='image' needs a CLIP model (this one embeds only text)")
    if on not in EXACT_ON:
        raise ValueError(f"on must be one of {EXACT_ON}, not {on!r}")
    if verify not in ("none", "signature", "exact"):
        raise ValueError(f"verify must be 'none', 'signature' or 'exact', not {verify!r}")
    if verify == "exact":
        raise ValueError("verify='exact' needs every text in memory; use verify='signature' for datasets")
    int_arg("radius", radius, 0, 63)
    int_arg("batch_size", batch_size)
    if write_format is not None:
        choice_arg("write_format", write_format, WRITE_FORMATS)
    float_arg("threshold", threshold, 0.0, 1.0)
    check_draft(draft)
    int_arg("max_pixels", max_pixels, 1, 1 << 48, optional=True)
    if engine == "ray":  # joined before any data is read: a wrong address fails now, not after the embedding
        from interleaf import ray as ray_engine

        ray_engine.init(ray_address, progress=progress)
    hasher = MinHasher(num_perm=num_perm, n=n, unit=unit, seed=seed) if method == "minhash" else None
    if hasher is not None:
        check_banding(bands, rows, num_perm)
    if hasher is not None and bands is None and rows is None:
        bands, rows = lsh_params(threshold, num_perm)
    out = Path(out)
    named = [source] if isinstance(source, (str, os.PathLike)) else list(source) if isinstance(source, (list, tuple)) else []
    if named and all(isinstance(x, (str, os.PathLike)) for x in named):
        # An input named twice would make every record its own exact duplicate.
        check_out_apart(out, named_inputs(named), [os.fspath(x) for x in named])
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: choose a folder")
    created = missing_folders(out)
    with FolderLock(out, "interleaf dedup"):
        try:
            return _deduplicate_into(out, source, format, batch_size, method, on, strip_punctuation, hasher, draft, max_pixels, model, emb_given, eps, n_clusters, seed, device, engine, threshold, num_perm, bands, rows, verify, radius, write_format, progress, read_options, overwrite)
        except BaseException:
            remove_empty(created)  # a failed dedup into a new folder leaves none behind
            raise


def _earlier_dedup(out: Path) -> dict[str, Any] | None:
    """The summary an earlier dedup into ``out`` wrote, or None; ValueError when ``out`` holds
    another command's summary.json (a run's), which a dedup would overwrite."""
    path = out / "summary.json"
    if not (path.is_file() or path.is_symlink()):
        return None
    try:
        got = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        got = None
    if not (isinstance(got, dict) and got.get("method") in METHODS and "duplicate_documents" in got):
        raise ValueError(f"{out} holds a summary.json that no dedup wrote (another command's output?): choose another --out")
    return got


#: Names the outputs a dedup into the folder is writing, until its summary is written: a rerun
#: after it stopped (a full disk, a kill) replaces them without ``--overwrite``.
_PENDING = ".dedup-pending.json"


def _deduplicate_into(out: Path, source: Any, format: str | None, batch_size: int, method: str, on: str, strip_punctuation: bool, hasher: Any, draft: int | None, max_pixels: int | None, model: Any, emb_given: Any, eps: float, n_clusters: int | None, seed: int, device: str, engine: str, threshold: float, num_perm: int, bands: int | None, rows: int | None, verify: str, radius: int, write_format: str | None, progress: bool, read_options: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """:func:`deduplicate`'s work, with the folder's lock held."""
    # What an earlier dedup into this folder wrote goes first: an interrupted rerun leaves
    # no summary of another method beside its files. Its dedup/ only when its summary
    # says it wrote it (a folder named dedup may be the user's).
    earlier = _earlier_dedup(out)
    pending = out / _PENDING
    mine = dict((earlier.get("outputs") or {}) if earlier is not None else {})
    # What a dedup that stopped before its summary (a full disk, a kill) had begun writing.
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        mine.update(dict.fromkeys(json.loads(pending.read_text(encoding="utf-8"))["outputs"], True))
    if not overwrite:
        theirs = [p.name for p in (out / "duplicates.parquet", out / "dedup") if (p.exists() or p.is_symlink()) and not mine.get(p.stem) and (p.name != "dedup" or write_format)]
        if theirs:
            raise ValueError(f"{out} already holds {' and '.join(theirs)}, which no finished dedup wrote: pass --overwrite (overwrite=True) to replace, or choose another --out")
    leftovers = [p for p in out.glob(".*.tmp") if p.name.startswith((".summary.json.", ".duplicates.parquet."))]  # a killed run's
    olds = [out / "summary.json", *leftovers]
    if mine.get("dedup"):
        olds.append(out / "dedup")
    for old in olds:
        if old.is_symlink() or old.is_file():
            old.unlink()
        elif old.is_dir():
            shutil.rmtree(old)
    t0 = time.perf_counter()
    reader = interleaf.read(source, format, batch_size, progress=progress, **read_options)
    sig = sign(reader, method, on=on, strip_punctuation=strip_punctuation, hasher=hasher, draft=draft, max_pixels=max_pixels, model=model)
    if emb_given is not None:
        sig.signatures = [emb_given]
    doc_ids = pl.concat(sig.doc_ids) if sig.doc_ids else pl.Series("doc_id", [], dtype=pl.String)
    sem = {"eps": eps, "n_clusters": n_clusters, "seed": seed, "device": device, "engine": engine}
    reps, score, cluster_stats = cluster(sig, method, threshold=threshold, num_perm=num_perm, bands=bands, rows=rows, verify=verify, radius=radius, semantic=sem)
    dup = duplicates_table(doc_ids, reps, score, method)
    write_text(pending, json.dumps({"outputs": ["duplicates", *(["dedup"] if write_format else [])]}) + "\n")
    with atomic_output(out / "duplicates.parquet") as tmp:
        dup.write_parquet(tmp)
    keep = reps == np.arange(sig.counters["documents"])
    summary: dict[str, Any] = {
        "method": method,
        "documents": sig.counters["documents"],
        "clusters_with_duplicates": int(dup.get_column("cluster_id").n_unique()),
        "duplicate_documents": int(len(keep) - keep.sum()),
        "kept_documents": int(keep.sum()),
        "read_errors": reader.stats["errors"],
        "seconds": round(time.perf_counter() - t0, 3),
        "outputs": {"duplicates": str(out / "duplicates.parquet")},
    }
    if method == "minhash":
        summary.update(lsh=cluster_stats, threshold=threshold, num_perm=num_perm)
    elif method == "phash":
        summary["phash"] = {**cluster_stats, "draft": draft, "max_pixels": max_pixels}
    elif method == "semantic":
        summary["semantic"] = {**cluster_stats, "on": on if emb_given is None else "embeddings", "n_clusters": n_clusters, "seed": seed}
    else:
        summary.update(on=on, **cluster_stats)
    if write_format:
        summary["outputs"]["dedup"] = interleaf.write(kept(source, format, batch_size, keep, **read_options), out / "dedup", write_format, overwrite=True, progress=progress)
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    pending.unlink(missing_ok=True)
    return summary
