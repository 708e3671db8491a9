"""jsonl and parquet records (pairs, MMC4, OBELICS, CoMM, LLaVA, nodes) into the node model, round
trips through every writer, and bad records kept as errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import interleaf
from conftest import nodes_only, read_all


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def kinds(df: pl.DataFrame) -> list[str]:
    return df.get_column("kind").to_list()


@pytest.fixture()
def records(sample_dir, tmp_path):
    """One small file per format, images referenced by path relative to the file."""
    img = "images/coffee.jpg"
    (tmp_path / "images").mkdir()
    for p in (sample_dir / "images").iterdir():
        (tmp_path / "images" / p.name).write_bytes(p.read_bytes())
    return {
        "pairs": [{"id": "p1", "image": img, "caption": "A cup of coffee.", "license": "CC0"}],
        "mmc4": [
            {
                "url": "https://example.org/a",
                "text_list": ["First sentence.", "Second sentence.", "Third."],
                "image_info": [
                    {"image_name": "x.jpg", "raw_url": "https://example.org/x.jpg", "matched_text_index": 2, "matched_sim": 0.31},
                    {"image_name": "y.jpg", "raw_url": "https://example.org/y.jpg", "matched_text_index": 0, "matched_sim": 0.27},
                ],
            }
        ],
        "obelics": [
            {
                "texts": ["Intro paragraph.", None, "Closing paragraph."],
                "images": [None, "https://example.org/z.jpg", None],
                "metadata": "[]",
                "general_metadata": "{}",
            }
        ],
        "comm": [
            {
                "id": "c1",
                "title": "Make coffee",
                "step_info": [
                    [{"type": "text", "content": "Grind the beans."}, {"type": "image", "image_path": img}],
                    [{"type": "text", "content": "Pour the water."}, {"type": "image", "image_path": "images/coffee_cup.jpg"}],
                ],
            }
        ],
        "llava": [
            {
                "id": "l1",
                "image": img,
                "conversations": [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A cup of coffee."}],
            }
        ],
        "root": tmp_path,
    }


def test_pairs_jsonl_loads_the_image_file(records, sample_dir):
    root = records["root"]
    df = read_all(write_jsonl(root / "p.jsonl", records["pairs"]))
    assert kinds(df) == ["image", "text"]
    assert df.get_column("image")[0] == (sample_dir / "images" / "coffee.jpg").read_bytes()
    assert df.get_column("image_ref")[0] == "images/coffee.jpg"
    assert df.get_column("doc_id").to_list() == ["p1", "p1"]
    assert json.loads(df.get_column("meta")[0]) == {"license": "CC0"}


def test_mmc4_places_each_image_before_its_matched_sentence(records):
    df = read_all(write_jsonl(records["root"] / "m.jsonl", records["mmc4"]))
    assert kinds(df) == ["image", "text", "text", "image", "text"]
    assert df.get_column("image_ref").to_list()[0] == "https://example.org/y.jpg"
    assert df.get_column("text").to_list()[4] == "Third."
    assert df.get_column("image").null_count() == df.height  # URLs are never fetched
    assert json.loads(df.get_column("meta")[0])["image_info"][0]["matched_sim"] == 0.31
    assert df.get_column("doc_id")[0] == "m.jsonl:1"


def test_mmc4_loads_image_names_from_an_explicit_image_root(records, sample_dir):
    rec = dict(records["mmc4"][0])
    rec["image_info"] = [{"image_name": "coffee.jpg", "raw_url": "https://e/c.jpg", "matched_text_index": 0}]
    df = read_all(write_jsonl(records["root"] / "m.jsonl", [rec]), image_root=sample_dir / "images")
    assert df.get_column("image")[0] == (sample_dir / "images" / "coffee.jpg").read_bytes()


def test_obelics_aligned_lists(records):
    df = read_all(write_jsonl(records["root"] / "o.jsonl", records["obelics"]))
    assert kinds(df) == ["text", "image", "text"]
    assert df.get_column("image_ref")[1] == "https://example.org/z.jpg"


def test_comm_steps_and_title(records):
    df = read_all(write_jsonl(records["root"] / "c.jsonl", records["comm"]))
    assert kinds(df) == ["text", "image", "text", "image"]
    assert df.get_column("step").to_list() == [0, 0, 1, 1]
    assert json.loads(df.get_column("meta")[0]) == {"title": "Make coffee"}
    assert df.filter(pl.col("kind") == "image").get_column("image").null_count() == 0


def test_llava_roles(records):
    df = read_all(write_jsonl(records["root"] / "l.jsonl", records["llava"]))
    assert kinds(df) == ["image", "text", "text"]
    assert df.get_column("role").to_list() == [None, "human", "gpt"]


FORMATS = ["pairs", "mmc4", "obelics", "comm", "llava"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("out", ["parquet", "jsonl", "webdataset"])
def test_round_trip_through_every_writer(records, tmp_path, fmt, out):
    src = write_jsonl(records["root"] / f"{fmt}.jsonl", records[fmt] * 3)
    first = read_all(src)
    dest = tmp_path / "out" / (f"x.{out}" if out != "webdataset" else "shards")
    written = interleaf.write(interleaf.read(src, batch_size=2), dest, out)
    back = read_all(written)
    assert nodes_only(back).equals(nodes_only(first)), f"{fmt} -> {out} changed the nodes"


@pytest.mark.parametrize("fmt", FORMATS)
def test_parquet_records_read_like_jsonl(records, fmt):
    root = records["root"]
    table = pa.Table.from_pylist(records[fmt])
    pq.write_table(table, root / f"{fmt}.parquet")
    from_jsonl = read_all(write_jsonl(root / f"{fmt}.jsonl", records[fmt]), format=fmt)
    from_parquet = read_all(root / f"{fmt}.parquet", format=fmt)
    cols = ["pos", "kind", "step", "role", "text", "image", "image_ref"]
    assert from_parquet.select(cols).equals(from_jsonl.select(cols))


def test_parquet_pairs_with_embedded_image_bytes(tmp_path, sample_images):
    data = sample_images["chelsea.jpg"]
    pq.write_table(pa.table({"key": ["k"], "jpg": [data], "caption": ["A cat."]}), tmp_path / "b.parquet")
    df = read_all(tmp_path / "b.parquet")
    assert df.get_column("image")[0] == data
    assert df.get_column("text")[1] == "A cat."


def test_nodes_parquet_keeps_documents_whole_across_row_batches(tmp_path, sample_dir):
    comm = read_all(sample_dir / "comm.jsonl")
    path = interleaf.write(comm, tmp_path / "n.parquet")[0]
    batches = list(interleaf.read(path, batch_size=1))  # 8 rows per arrow batch: docs span batches
    assert all(b.get_column("doc_id").n_unique() >= 1 for b in batches)
    seen = [d for b in batches for d in b.get_column("doc_id").unique(maintain_order=True)]
    assert len(seen) == len(set(seen))
    assert pl.concat(batches).equals(comm)


def test_bad_lines_are_kept_with_their_error_and_the_read_goes_on(records, tmp_path):
    root = records["root"]
    good = json.dumps({"id": "ok", "image": "images/coffee.jpg", "caption": "fine"})
    path = root / "bad.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                good.encode(),
                b'{"id": "broken", "caption": ',  # malformed JSON
                json.dumps({"id": "missing", "image": "images/nope.jpg", "caption": "gone"}).encode(),
                '{"id": "latin1", "image": "images/coffee.jpg", "caption": "caf\u00e9"}'.encode("latin-1"),
                b"",
                json.dumps({"id": "nocap", "image": "images/coffee.jpg"}).encode(),
                good.replace('"ok"', '"ok2"').encode(),
            ]
        )
        + b"\n"
    )
    reader = interleaf.read(path, format="pairs")
    df = pl.concat(list(reader))
    errs = {r["doc_id"]: r["error"]["kind"] for r in df.filter(pl.col("error").is_not_null()).iter_rows(named=True)}
    assert errs == {"bad.jsonl:2": "malformed_json", "missing": "missing_image", "latin1": "invalid_utf8", "nocap": "missing_partner"}
    assert reader.stats["documents"] == 6
    assert reader.stats["errors"] == {"malformed_json": 1, "missing_image": 1, "invalid_utf8": 1, "missing_partner": 1}
    assert df.filter(pl.col("doc_id") == "latin1", pl.col("kind") == "text").get_column("text")[0] == "caf\ufffd"
    raw = json.loads(df.filter(pl.col("doc_id") == "bad.jsonl:2").get_column("meta")[0])["__raw__"]
    assert raw == '{"id": "broken", "caption": '
    assert df.filter(pl.col("doc_id").is_in(["ok", "ok2"])).get_column("error").null_count() == 4


def test_gzip_jsonl_and_data_uri_images(tmp_path, sample_images):
    import gzip

    data = sample_images["rocket.jpg"]
    rec = {"id": "d", "image": "data:image/jpeg;base64," + base64.b64encode(data).decode(), "caption": "A rocket."}
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(rec) + "\n").encode()))
    df = read_all(path)
    assert df.get_column("image")[0] == data


def test_format_is_required_when_keys_say_nothing(tmp_path):
    reader = interleaf.read(write_jsonl(tmp_path / "u.jsonl", [{"foo": 1}]))
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"bad_record": 1}
    assert df.get_column("kind")[0] is None


def test_unknown_format_and_container_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        interleaf.read(tmp_path / "x.jsonl", format="csv")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot tell the container"):
        interleaf.read(tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError, match="glob matches no file"):
        interleaf.read(str(tmp_path / "*.tar"))
