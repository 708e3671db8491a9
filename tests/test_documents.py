"""Which rows are one document (``doc_index``, one rule everywhere), and the one error model
(the registry behind every ``error`` column)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import read_all

import interleaf
from interleaf.dedup import deduplicate
from interleaf.schema import ERROR_KINDS, NODE_SCHEMA, record_error

PYTHON_SOURCES = Path(interleaf.__file__).parent


def test_doc_index_numbers_documents_in_read_order_across_files_and_containers(tmp_path, sample_dir):
    comm = read_all(sample_dir / "comm.jsonl")
    nodes = interleaf.write(comm, tmp_path / "comm.parquet")[0]
    sources = [sample_dir / "pairs.jsonl", sample_dir / "pairs-000000.tar", nodes]
    reader = interleaf.read(sources, batch_size=3)
    batches = list(reader)
    df = pl.concat(batches)
    per_doc = df.group_by("doc_index", maintain_order=True).agg(pl.col("source").n_unique(), pl.col("pos"))
    n = reader.stats["documents"]
    assert df.get_column("doc_index").unique(maintain_order=True).to_list() == list(range(n))
    assert per_doc.get_column("source").to_list() == [1] * n  # a document never spans files
    assert all(p == list(range(len(p))) for p in per_doc.get_column("pos").to_list())
    # Batches hold whole documents and continue the numbering.
    firsts = [b.get_column("doc_index")[0] for b in batches]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(batches)
    assert list(df.schema) == list(NODE_SCHEMA) and df.schema["doc_index"] == pl.Int64


def test_a_table_with_out_of_order_pos_is_one_document_to_every_reader_writer_and_dedup(tmp_path):
    # Built by hand, no doc_index: one id, positions 1, 0, 2 (none repeats: one document).
    rows = pl.DataFrame({"doc_id": ["d", "d", "d"], "pos": [1, 0, 2], "kind": ["text"] * 3, "text": ["b", "a", "c"]})
    parquet = interleaf.write(rows, tmp_path / "nodes.parquet")[0]
    back = read_all(parquet)
    assert back.get_column("doc_index").to_list() == [0, 0, 0]
    summary = deduplicate(parquet, tmp_path / "dedup", method="exact")
    assert summary["documents"] == 1
    for fmt in ("jsonl", "webdataset"):
        out = read_all(interleaf.write(back, tmp_path / fmt, fmt))
        assert out.get_column("text").to_list() == ["a", "b", "c"], fmt  # nodes in pos order
        assert out.get_column("doc_index").n_unique() == 1, fmt


def test_documents_that_share_an_id_stay_apart_through_every_writer(tmp_path, sample_dir):
    # The image beside the records (inside the image root, so it is read: dedup on image then
    # compares its bytes; an unread image would give no key and join nothing).
    image = "coffee.jpg"
    (tmp_path / image).write_bytes((sample_dir / "images" / "coffee.jpg").read_bytes())
    recs = [{"id": "same", "image": image, "caption": c} for c in ("one", "two")] + [{"id": "other", "image": image, "caption": "three"}]
    src = tmp_path / "dup.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    first = read_all(src)
    assert first.get_column("doc_index").to_list() == [0, 0, 1, 1, 2, 2]
    for fmt in ("parquet", "jsonl", "webdataset"):
        back = read_all(interleaf.write(first, tmp_path / f"out-{fmt}", fmt))
        assert back.get_column("doc_index").to_list() == [0, 0, 1, 1, 2, 2], fmt
        assert back.get_column("doc_id").to_list() == ["same"] * 4 + ["other"] * 2, fmt
        assert back.filter(pl.col("kind") == "text").get_column("text").to_list() == ["one", "two", "three"], fmt
    summary = deduplicate(src, tmp_path / "d", method="exact", on="image")
    dup = pl.read_parquet(tmp_path / "d" / "duplicates.parquet")
    assert summary["documents"] == 3 and dup.get_column("doc_index").to_list() == [0, 1, 2]


def test_parquet_records_keep_binary_images_as_bytes(tmp_path, sample_images):
    data = sample_images["chelsea.jpg"]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array([{"bytes": data, "path": "cat.jpg"}, {"bytes": None, "path": "https://x/y.jpg"}], type=image_type),
            "text": ["A cat.", "Far away."],
            "score": [0.5, None],
        }
    )
    pq.write_table(table, tmp_path / "hf.parquet")
    df = read_all(tmp_path / "hf.parquet")
    images = df.filter(pl.col("kind") == "image")
    assert images.get_column("image").to_list() == [data, None]
    assert images.get_column("image_ref").to_list() == ["cat.jpg", "https://x/y.jpg"]
    assert json.loads(df.get_column("meta")[0]) == {"score": 0.5}
    assert df.get_column("doc_id").to_list() == ["hf.parquet:1"] * 2 + ["hf.parquet:2"] * 2


def test_the_error_registry_names_every_kind_and_the_schema_docs_list_it():
    assert {"truncated_tar", "malformed_json", "corrupt_image", "missing_text", "too_few_tokens", "other"} <= set(ERROR_KINDS)
    assert all(v and k == k.lower() for k, v in ERROR_KINDS.items())
    assert interleaf.ERROR_KINDS is ERROR_KINDS
    for kind in ERROR_KINDS:
        assert f"``{kind}``" in interleaf.schema.__doc__
    with pytest.raises(ValueError, match="unknown error kind"):
        record_error("gremlins", "x")


def test_every_error_kind_the_python_code_writes_is_in_the_registry():
    # Rust kinds are an enum (the compiler checks them); Python code writes kinds as literals.
    pattern = re.compile(r"""(?:"kind":\s*|record_error\(\s*|_error_frame\([^)]*?,\s*)"([a-z0-9_]+)\"""")
    found = {m for p in PYTHON_SOURCES.rglob("*.py") for m in pattern.findall(p.read_text())}
    assert {"missing_text", "invalid_utf8", "too_few_tokens", "io", "corrupt_parquet"} <= found
    assert found - set(ERROR_KINDS) <= {"text", "image"}, found - set(ERROR_KINDS)  # node kinds, not errors


def test_an_error_kind_this_version_does_not_know_is_read_as_other(tmp_path):
    rec = {"doc_id": "x", "error": {"kind": "gremlins", "message": "in the data"}, "nodes": [{"kind": "text", "text": "t"}]}
    path = tmp_path / "n.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    err = read_all(path).get_column("error")[0]
    assert err == {"kind": "other", "message": "gremlins: in the data"}
