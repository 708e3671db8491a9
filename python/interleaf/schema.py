"""The document model: one representation for image-text pairs and interleaved documents.

A **document** is an ordered list of **nodes**; a node is either text or an image. An image-text
pair is a two-node document (image, then caption). CoMM's step-by-step documents give every node
the index of its ``step``; LLaVA conversations give every text node the ``role`` of its turn.
MMC4 and OBELICS map onto the same nodes. In memory the unit of work is a batch of node rows in a
polars DataFrame, one row per node, documents never split across batches:

============  ==============  ============================================================
column        dtype           meaning
============  ==============  ============================================================
doc_id        String          stable document id (record id, WebDataset key, or
                              ``"<file name>:<line>"``); need not be unique
doc_index     Int64           the document's ordinal in this read (0, 1, 2, ... across
                              every file of the source): **which rows are one document**.
                              Group, count and join documents by it (with ``pos`` for
                              nodes) and check ``doc_id``. A run reads each shard on its
                              own: its per-shard tables count from 0 in each shard
pos           Int32           position of the node in its document, from 0
kind          String          ``"text"`` or ``"image"``; null only on the single error
                              row of a document that has no readable node (``error`` says why)
step          Int32           CoMM step index (null outside step-structured formats)
role          String          conversation role of a text node (LLaVA ``from``), else null
text          String          text of a text node
image         Binary          encoded image bytes (JPEG, PNG, ...) when available
image_ref     String          where the image came from or lives: a URL or a path (URLs are
                              never fetched)
meta          String          the document's metadata as a JSON object, the same on every
                              row of the document (record fields not turned into nodes);
                              read as Python's ``json`` reads it: a ``NaN``, ``Infinity``
                              or ``-Infinity`` of the record (or a parquet float NaN) is
                              kept as that token, so ``json.loads(meta)`` gives the float
                              (strict JSON parsers refuse such text); a parquet binary
                              value is ``{"base64": ...}``
source        String          the file the document was read from
error         Struct          null, or ``{kind, message}``: why this node or document is
                              damaged. A document-level error is copied to every node row
============  ==============  ============================================================

Errors are values: a truncated tar, a malformed JSON line, invalid UTF-8 or a missing image
file never stops a read. The affected record is kept with ``error`` set and counted; everything
else is read. Every table interleaf makes (node tables, image statistics, hashes, model
outputs) carries errors in the same ``error`` struct, with a kind from one registry,
:data:`ERROR_KINDS` (listed at the end of this docstring).

Examples of each input format and the nodes it becomes:

**pairs** (jsonl / parquet) ``{"id": "p1", "image": "images/cat.jpg", "caption": "A cat."}``
-> ``p1``: pos 0 image (bytes of images/cat.jpg, image_ref "images/cat.jpg"), pos 1 text
"A cat.". WebDataset pairs (``p1.jpg`` + ``p1.txt`` + ``p1.json``) read the same way, the json
member becoming ``meta``.

**MMC4** ``{"url": ..., "text_list": ["s0", "s1"], "image_info": [{"raw_url": "http://a/1.jpg",
"image_name": "1.jpg", "matched_text_index": 1}]}`` -> text "s0", image (image_ref
"http://a/1.jpg"), text "s1": each image goes right before its matched sentence; ``image_info``
stays in ``meta``. Image files are loaded from ``image_root/image_name`` only when
``image_root`` is given.

**OBELICS** ``{"texts": ["A", null, "B"], "images": [null, "http://a/1.jpg", null],
"metadata": ...}`` -> text "A", image, text "B" (aligned lists, one non-null per position).

**CoMM** ``{"data_id": "c1", "title": "Make tea", "step_info": [[{"type": "text", "content":
"Boil water."}, {"type": "image", "url": "https://a/1.jpg", "image_path": "images/1.jpg"}],
...]}`` -> text (step 0), image (step 0, image_ref "images/1.jpg"), ...; ``title``,
``summary_info`` and the other fields stay in ``meta``. An image item with more fields than its
reference (CoMM's ``url`` beside ``image_path``) is kept whole (``meta["comm_image_items"]``)
and written back as it was; CoMM records are written with their id as ``data_id``, as CoMM's
loader reads it.

**LLaVA** ``{"id": "x", "image": "coco/1.jpg", "conversations": [{"from": "human", "value":
"<image>\\nWhat is this?"}, {"from": "gpt", "value": "A bus."}]}`` -> image, text (role
"human"), text (role "gpt").

**nodes** (interleaf's own jsonl): ``{"doc_id", "source", "meta": {...}, "error": {...},
"nodes": [{"kind", "text", "image_b64", "image_ref", "step", "role", "error"}]}``; an image
node without ``image_b64`` may give its image under ``image`` in any form a pairs record's image
takes (a path, a ``data:`` URI, ``{"bytes": ...}``, ``{"path": ...}``), else its ``image_ref``
is loaded as a path; the parquet form is the node table itself.
"""

from __future__ import annotations

import polars as pl

from interleaf import _native

DOC_ID = "doc_id"
DOC_INDEX = "doc_index"
POS = "pos"
KIND = "kind"
STEP = "step"
ROLE = "role"
TEXT = "text"
IMAGE = "image"
IMAGE_REF = "image_ref"
META = "meta"
SOURCE = "source"
ERROR = "error"

TEXT_KIND = "text"
IMAGE_KIND = "image"

ERROR_DTYPE = pl.Struct({"kind": pl.String, "message": pl.String})

#: Every error kind a record can carry, with its meaning (the registry lives in the Rust core,
#: ``rust/core/src/error.rs``).
ERROR_KINDS: dict[str, str] = dict(_native.error_kinds())

__doc__ = (__doc__ or "") + "\nError kinds:\n\n" + "\n".join(f"- ``{k}``: {v}" for k, v in ERROR_KINDS.items()) + "\n"


def error_column(errors: list[dict[str, str] | None], name: str = ERROR) -> pl.Series:
    """Error values (None or :func:`record_error` dicts) as an ``error`` column."""
    return pl.Series(name, errors, dtype=ERROR_DTYPE)


def has_words(text: pl.Expr) -> pl.Expr:
    """Whether a text has anything besides whitespace (false where null): a blank text is no
    text to score, embed or deduplicate."""
    return (text.str.strip_chars().str.len_chars() > 0).fill_null(False)


def record_error(kind: str, message: str) -> dict[str, str]:
    """An ``error`` value ``{"kind", "message"}``; ``kind`` must be in :data:`ERROR_KINDS`."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; add it to the registry in rust/core/src/error.rs")
    return {"kind": kind, "message": message}

#: The node table's columns, in order, with their dtypes.
NODE_SCHEMA: dict[str, pl.DataType] = {
    DOC_ID: pl.String(),
    DOC_INDEX: pl.Int64(),
    POS: pl.Int32(),
    KIND: pl.String(),
    STEP: pl.Int32(),
    ROLE: pl.String(),
    TEXT: pl.String(),
    IMAGE: pl.Binary(),
    IMAGE_REF: pl.String(),
    META: pl.String(),
    SOURCE: pl.String(),
    ERROR: ERROR_DTYPE,
}

#: Record formats that ``interleaf.read`` understands inside jsonl and parquet files.
RECORD_FORMATS = ("pairs", "mmc4", "obelics", "comm", "llava", "nodes")


def empty_frame() -> pl.DataFrame:
    """An empty node table with the full schema."""
    return pl.DataFrame(schema=NODE_SCHEMA)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Casts a node table (ours, possibly with columns dropped) to the full schema and order."""
    missing = [pl.lit(None, dtype=dt).alias(name) for name, dt in NODE_SCHEMA.items() if name not in df.columns]
    if missing:
        df = df.with_columns(missing)
    return df.select([pl.col(name).cast(dt) for name, dt in NODE_SCHEMA.items()])
