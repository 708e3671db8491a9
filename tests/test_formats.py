"""jsonl and parquet records (pairs, MMC4, OBELICS, CoMM, LLaVA, nodes) into the node model, round
trips through every writer, and bad records kept as errors."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import nodes_only, read_all

import interleaf
from interleaf.io.sources import expand


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


def test_comm_records_are_written_back_as_comms_loader_reads_them(records, sample_dir):
    """A CoMM record (data_id, summary_info, image items with url and image_path) written back
    as CoMM is the record as read, and after a node is filtered out only that node's item is
    gone: CoMM's loader reads ``data_id``, and the URLs stay for downloading the images."""
    item = lambda k: {"type": "image", "url": f"https://example.org/{k}", "image_path": f"images/{k}"}  # noqa: E731
    rec = {
        "data_id": "wikihow-1",
        "dataset_type": "wikihow",
        "title": "Make coffee",
        "summary_info": [{"type": "text", "content": "Coffee, step by step."}],
        "step_info": [[{"type": "text", "content": "Grind the beans."}, item("coffee.jpg")], [item("chelsea.jpg"), {"type": "text", "content": "Pour."}]],
    }
    src = write_jsonl(records["root"] / "comm_full.jsonl", [rec])
    first = read_all(src, image_root=sample_dir)
    assert first.get_column("doc_id")[0] == "wikihow-1" and first.filter(pl.col("kind") == "image").get_column("image").null_count() == 0
    out = records["root"] / "back" / "comm.jsonl"
    interleaf.write(first, out, "comm")
    assert json.loads(out.read_text()) == rec
    interleaf.write(first.filter(pl.col("pos") != 1), out, "comm", overwrite=True)
    got = json.loads(out.read_text())
    assert got["step_info"] == [[rec["step_info"][0][0]], rec["step_info"][1]] and set(got) == set(rec)
    # In another layout the record has its usual id key and no CoMM bookkeeping.
    interleaf.write(first, records["root"] / "back" / "obelics.jsonl", "obelics")
    other = json.loads((records["root"] / "back" / "obelics.jsonl").read_text())
    assert other["id"] == "wikihow-1" and "comm_image_items" not in other


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
@pytest.mark.parametrize("embed", [False, True])
def test_each_layout_writes_back_to_itself(records, tmp_path, fmt, embed):
    """Reading a layout and writing it back in the same layout gives the same documents,
    metadata included (images by reference, or inline)."""
    src = write_jsonl(records["root"] / f"{fmt}.jsonl", records[fmt] * 2)
    first = read_all(src, image_root=records["root"])
    dest = records["root"] / "out" / f"{fmt}.jsonl"
    written = interleaf.write(interleaf.read(src, batch_size=1), dest, fmt, embed_images=embed)
    assert interleaf._native.detect_record_format(written[0]) == fmt
    back = read_all(written, image_root=records["root"])
    cols = ["doc_id", "pos", "kind", "step", "role", "text", "image", "image_ref", "meta", "error"]
    if embed:  # inline images have no reference left, only their bytes
        cols.remove("image_ref")
    assert back.select(cols).equals(first.select(cols)), f"{fmt} changed"
    assert back.get_column("image").null_count() == first.get_column("image").null_count()


@pytest.mark.parametrize("fmt", ["pairs", "comm"])
def test_local_images_converted_to_mmc4_are_read_back_from_the_image_root(records, tmp_path, fmt):
    """A local image path written to MMC4 is an ``image_name`` (loaded from the image root), not a
    ``raw_url`` (never fetched): converting CoMM or pairs data keeps every image."""
    src = write_jsonl(records["root"] / f"{fmt}.jsonl", records[fmt])
    first = read_all(src)
    assert first.filter(pl.col("kind") == "image").get_column("image").null_count() == 0
    out = interleaf.write(interleaf.read(src), tmp_path / "w" / "m.jsonl", "mmc4")
    infos = [i for line in Path(out[0]).read_text().splitlines() for i in json.loads(line)["image_info"]]
    assert infos and all("image_name" in i and "raw_url" not in i for i in infos)
    back = read_all(out, image_root=records["root"])
    images = back.filter(pl.col("kind") == "image")
    assert images.get_column("image").to_list() == first.filter(pl.col("kind") == "image").get_column("image").to_list()
    assert images.get_column("error").null_count() == images.height


def test_layout_writers_after_node_removal(records, tmp_path):
    """Writing documents whose nodes were filtered keeps each layout consistent: MMC4's
    image_info follows the images left, CoMM's emptied steps go."""
    src = write_jsonl(records["root"] / "m.jsonl", records["mmc4"])
    df = read_all(src)  # y.jpg, First, Second, x.jpg, Third
    kept = df.filter(pl.col("pos") != 0).filter(pl.col("text").ne_missing("Second sentence."))
    out = interleaf.write(kept, tmp_path / "w" / "m.jsonl", "mmc4")
    rec = json.loads(Path(out[0]).read_text())
    assert rec["text_list"] == ["First sentence.", "Third."]
    assert rec["image_info"] == [{"image_name": "x.jpg", "raw_url": "https://example.org/x.jpg", "matched_text_index": 1, "matched_sim": 0.31}]
    assert rec["url"] == "https://example.org/a"
    c = read_all(write_jsonl(records["root"] / "c.jsonl", records["comm"]))
    out = interleaf.write(c.filter(pl.col("step") == 1), tmp_path / "w" / "c.jsonl", "comm")
    rec = json.loads(Path(out[0]).read_text())
    assert rec["title"] == "Make coffee" and len(rec["step_info"]) == 1
    assert rec["step_info"][0][0] == {"type": "text", "content": "Pour the water."}


@pytest.mark.parametrize("container", ["jsonl", "parquet"])
def test_a_tracking_read_names_the_local_image_files_with_their_stats(records, container):
    """What a run keeps to tell whether a shard's images changed: every local file a record
    names (MMC4's image_name under an explicit root too), absolute, with os.stat's size and
    mtime_ns, missing ones -1; URLs and inline images never."""
    root = records["root"]
    recs = [*records["pairs"], {"id": "p2", "image": "images/nowhere.jpg", "caption": "gone"}, {"id": "p3", "image": "https://example.org/u.jpg", "caption": "a url"}, *records["pairs"]]
    path = root / f"p.{container}"
    if container == "jsonl":
        write_jsonl(path, recs)
    else:
        pq.write_table(pa.Table.from_pylist(recs), path)
    reader = interleaf.read(path, "pairs", batch_size=1, track_image_files=True)
    assert reader.image_files.height == 0
    list(reader)
    coffee = root / "images" / "coffee.jpg"
    st = coffee.stat()
    assert reader.image_files.rows() == [(str(coffee), st.st_size, st.st_mtime_ns), (str(root / "images" / "nowhere.jpg"), -1, -1)]
    untracked = interleaf.read(path, "pairs")
    list(untracked)
    assert untracked.image_files.height == 0
    mmc4 = write_jsonl(root / "m.jsonl", records["mmc4"])
    (root / "x.jpg").write_bytes((root / "images" / "coffee.jpg").read_bytes())
    reader = interleaf.read(mmc4, image_root=root, track_image_files=True)
    list(reader)
    assert reader.image_files.rows() == [(str(root / "x.jpg"), st.st_size, (root / "x.jpg").stat().st_mtime_ns), (str(root / "y.jpg"), -1, -1)]
    # What a rerun compares them with: the same numbers, looked up again.
    from interleaf import _native

    paths = pl.Series([str(coffee), str(root / "images"), str(root / "nowhere.jpg"), "bad\x00name", None], dtype=pl.String)
    assert _native.stat_files(paths).rows() == [(str(coffee), st.st_size, st.st_mtime_ns), (str(root / "images"), -2, -2), (str(root / "nowhere.jpg"), -1, -1), ("bad\x00name", -1, -1), (None, -1, -1)]


def test_parquet_records_convert_the_same_on_one_thread_or_several(tmp_path, sample_images):
    """Records of a batch convert in runs of rows on the thread pool: the nodes, ids, errors,
    document numbers, stats and the image files named (in the order first named, each once)
    are those of one thread, over batches of 3,000 records."""
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.jpg").write_bytes(sample_images["chelsea.jpg"])
    keys, images, captions = [], [], []
    for i in range(7000):
        keys.append(f"k{i}" if i % 11 else None)
        # Files found, files missing, a path outside the image root, a URL (not a file).
        images.append([f"{'abc'[i % 3]}.jpg", f"missing{i % 500}.jpg", "../outside.jpg", "https://e.org/x.jpg"][i % 4 if i % 5 else 0])
        captions.append(None if i % 13 == 0 else f"caption {i}")
    pq.write_table(pa.table({"key": keys, "image": images, "caption": captions}), tmp_path / "p.parquet")
    before = interleaf.get_threads()
    out = {}
    try:
        for threads in (1, 2, 5):
            interleaf.set_threads(threads)
            reader = interleaf.read(tmp_path / "p.parquet", "pairs", batch_size=3000, track_image_files=True)
            out[threads] = (pl.concat(list(reader)), reader.stats, reader.image_files)
    finally:
        interleaf.set_threads(before)
    one = out[1]
    local = [n for n in images if not n.startswith("https:")]
    named = [str(tmp_path / n) for n in dict.fromkeys(local)]
    assert one[1]["documents"] == 7000 and one[1]["errors"]["missing_image"] > 0
    assert one[2].get_column("path").to_list() == named and len(named) > 100
    for threads in (2, 5):
        df, stats, files = out[threads]
        assert df.equals(one[0]) and stats == one[1] and files.equals(one[2])


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


def test_parquet_binary_columns_no_layout_field_takes_keep_their_bytes_in_meta(tmp_path):
    """A pairs file with a mask column, a list of binaries and an image struct beside the pair:
    their bytes were lost (the metadata held ``{"$blob": 0}``). They are ``{"base64": ...}``,
    as a WebDataset sample's other members, through every writer and back."""
    import base64
    import json

    masks = [bytes([7, 0, 255]) * 3, b"", None]
    table = pa.table(
        {
            "url": [f"http://e/{i}.jpg" for i in range(3)],
            "caption": ["a", "b", "c"],
            "mask": pa.array(masks, pa.large_binary()),
            "parts": [[b"\x00\x01", None], [], None],
            "thumb": [{"bytes": b"\x89PNG\r\n", "path": "t.png"}, None, {"bytes": None, "path": None}],
        }
    )
    pq.write_table(table, tmp_path / "m.parquet")
    df = read_all(tmp_path / "m.parquet")
    metas = [json.loads(m) for m in df.filter(pl.col("kind") == "text").get_column("meta")]
    b64 = lambda b: None if b is None else {"base64": base64.b64encode(b).decode()}  # noqa: E731
    assert metas == [
        {"mask": b64(masks[0]), "parts": [b64(b"\x00\x01"), None], "thumb": {"bytes": b64(b"\x89PNG\r\n"), "path": "t.png"}},
        {"mask": b64(b""), "parts": [], "thumb": None},
        {"mask": None, "parts": None, "thumb": {"bytes": None, "path": None}},
    ]
    assert "$blob" not in "".join(df.get_column("meta"))
    # In the file's order (taking the pair's fields moved the last ones into their places).
    assert list(metas[0]) == ["mask", "parts", "thumb"]
    for fmt, name in (("parquet", "n.parquet"), ("jsonl", "n.jsonl"), ("pairs", "p.jsonl"), ("webdataset", "w")):
        interleaf.write(df, str(tmp_path / name), format=fmt)
        back = read_all(tmp_path / name if fmt != "webdataset" else tmp_path / "w" / "shard-000000.tar")
        assert [json.loads(m) for m in back.filter(pl.col("kind") == "text").get_column("meta")] == metas, fmt


def test_parquet_small_integer_columns_are_read(tmp_path):
    """An int8, int16, uint8 or uint16 column (at the top level) made every batch of the file
    one ``corrupt_parquet`` record ("cannot create series from UInt8"): 1,000 rows lost."""
    n = 1000
    cols = {t: pa.array([i % 100 for i in range(n)], getattr(pa, t)()) for t in ("int8", "int16", "uint8", "uint16")}
    table = pa.table({"url": [f"http://e/{i}.jpg" for i in range(n)], "caption": [f"c {i}" for i in range(n)], **cols, "s": pa.array([{"b": i % 7} for i in range(n)], pa.struct([("b", pa.int8())]))})
    pq.write_table(table, tmp_path / "s.parquet")
    reader = interleaf.read(tmp_path / "s.parquet")
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {} and reader.stats["documents"] == n
    metas = [json.loads(m) for m in df.filter(pl.col("kind") == "text").get_column("meta")]
    assert metas[:3] == [{"int8": i, "int16": i, "uint8": i, "uint16": i, "s": {"b": i}} for i in range(3)]
    assert [m["uint8"] for m in metas] == [i % 100 for i in range(n)]


def test_json_floats_read_and_written_exactly_as_python_does(tmp_path):
    """Floats were parsed without correct rounding (serde_json without float_roundtrip): 10-30%
    of values written by json.dumps came back changed (974518.4020660259 -> 974518.402066026),
    more with each pass. Every value now reads back as Python's json reads it, through a
    reader and writer and again."""
    import random

    rng = random.Random(5)
    floats = [rng.random() for _ in range(300)] + [rng.uniform(-1e6, 1e6) for _ in range(300)] + [rng.gauss(0, 1) * 10 ** rng.randint(-30, 30) for _ in range(300)]
    floats += [974518.4020660259, 2.2250738585072011e-308, 1.0000000000000002, 5e-324, 1e308, -0.0, 0.1 + 0.2]
    src = write_jsonl(tmp_path / "f.jsonl", [{"url": f"http://e/{i}.jpg", "caption": "c", "v": v, "vs": [v, -v]} for i, v in enumerate(floats)])
    df = read_all(src, format="pairs")
    got = [json.loads(m) for m in df.filter(pl.col("kind") == "text").get_column("meta")]
    assert [g["v"] for g in got] == floats and [g["vs"] for g in got] == [[v, -v] for v in floats]
    for _ in range(2):
        interleaf.write(df, tmp_path / "p.jsonl", "pairs", overwrite=True)
        back = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
        assert [b["v"] for b in back] == floats
        df = read_all(tmp_path / "p.jsonl", format="pairs")


def test_parquet_with_categorical_decimal_float16_and_zoned_timestamp_columns(tmp_path, sample_images):
    """Column types pandas and Spark write (categoricals, decimals, float16, time-zone-aware
    timestamps, nested dictionaries) are read as their nearest plain type, in records and in
    node tables, instead of failing the file; whole-number decimals (Spark's big integer ids)
    stay exact."""
    data = sample_images["chelsea.jpg"]
    extra = {
        "ts": pa.array([0, 3_600_000], pa.timestamp("ms", tz="Europe/Paris")),
        "price": pa.array([1, 250], pa.decimal128(10, 2)),
        "uid": pa.array([12345678901234567891, 12345678901234567892], pa.decimal128(38, 0)),
        "n": pa.array([7, 8], pa.decimal128(10, 0)),
        "h": pa.array([1.5, None], pa.float16()),
        "tags": pa.array([["p", "q"], []], pa.list_(pa.dictionary(pa.int8(), pa.string()))),
    }
    captions = pa.array(["A cat.", "Another cat."]).dictionary_encode()
    pq.write_table(pa.table({"key": ["a", "b"], "jpg": [data, data], "caption": captions, **extra}), tmp_path / "r.parquet")
    df = read_all(tmp_path / "r.parquet")
    assert df.get_column("error").null_count() == df.height
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == ["A cat.", "Another cat."]
    assert json.loads(df.get_column("meta")[0]) == {"ts": "1970-01-01 00:00:00", "price": 1.0, "uid": "12345678901234567891", "n": 7, "h": 1.5, "tags": ["p", "q"]}
    assert json.loads(df.get_column("meta")[2]) == {"ts": "1970-01-01 01:00:00", "price": 250.0, "uid": "12345678901234567892", "n": 8, "h": None, "tags": []}
    nodes = pa.table({"doc_id": ["a", "a"], "pos": [0, 1], "kind": pa.array(["text", "text"]).dictionary_encode(), "text": ["x", "y"], "score": pa.array([1, 2], pa.float16())})
    odd = pa.table({"doc_id": ["b", "b", "c"], "pos": [0, 1, 0], "kind": ["video", None, "text"], "text": ["v", "w", "fine"]})
    pq.write_table(odd, tmp_path / "odd.parquet")
    df = read_all(tmp_path / "odd.parquet")
    assert df.get_column("kind").to_list() == [None, None, "text"]
    assert [e and e["message"] for e in df.get_column("error").to_list()] == ["node without a valid kind: video", "node without a valid kind: null", None]
    pq.write_table(nodes, tmp_path / "n.parquet")
    df = read_all(tmp_path / "n.parquet")
    assert df.get_column("kind").to_list() == ["text", "text"] and df.get_column("error").null_count() == 2


def test_lone_surrogate_escapes_read_as_python_reads_them(records):
    # Python's json accepts "\ud800" (serde_json refuses it): the record is kept, the lone
    # surrogate becomes U+FFFD and the record says so; a real pair stays one character.
    root = records["root"]
    lines = ['{"id": "cut", "image": "images/coffee.jpg", "caption": "coffee \\ud83d"}', '{"id": "pair", "image": "images/coffee.jpg", "caption": "coffee \\ud83d\\ude00"}']
    assert json.loads(lines[0])["caption"] == "coffee \ud83d"
    (root / "surrogates.jsonl").write_text("\n".join(lines) + "\n")
    reader = interleaf.read(root / "surrogates.jsonl", format="pairs")
    df = pl.concat(list(reader)).filter(pl.col("kind") == "text")
    assert df.get_column("text").to_list() == ["coffee \ufffd", "coffee \U0001f600"]
    errors = df.get_column("error").to_list()
    assert errors[0]["kind"] == "invalid_utf8" and "1 lone UTF-16 surrogate" in errors[0]["message"] and errors[1] is None
    assert reader.stats["errors"] == {"invalid_utf8": 1}


def test_nodes_parquet_with_non_utf8_binary_text_keeps_the_rest_of_the_file(tmp_path):
    table = pa.table(
        {
            "doc_id": pa.array([b"d1", b"d1", b"d\xff2"], pa.binary()),
            "pos": [0, 1, 0],
            "kind": ["text", "text", "text"],
            "text": pa.array([b"caf\xe9 au lait", b"fine", None], pa.binary()),
        }
    )
    pq.write_table(table, tmp_path / "n.parquet")
    reader = interleaf.read(tmp_path / "n.parquet")
    df = pl.concat(list(reader))
    assert df.get_column("text").to_list() == ["caf\ufffd au lait", "fine", None]
    assert df.get_column("doc_id").to_list() == ["d1", "d1", "d\ufffd2"]
    errors = df.get_column("error").to_list()
    assert errors[1] is None
    assert errors[0]["kind"] == "invalid_utf8" and errors[0]["message"].startswith("text is not UTF-8")
    assert errors[2]["kind"] == "invalid_utf8" and errors[2]["message"].startswith("doc_id is not UTF-8")
    assert reader.stats["errors"] == {"invalid_utf8": 2}


def _patched_parquet(path, table, good: bytes, bad: bytes, **options):
    """``table`` written plain and uncompressed (with write_table's ``options``), then ``good``
    replaced by ``bad`` (the same length) in the file's bytes: text columns holding what
    Parquet forbids (invalid UTF-8)."""
    assert len(good) == len(bad)
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False, **options)
    data = path.read_bytes()
    assert good in data
    path.write_bytes(data.replace(good, bad))
    return path


def test_record_and_node_parquet_with_invalid_utf8_in_a_text_column(tmp_path, sample_dir):
    """A string column whose bytes are not UTF-8 (the file breaks Parquet's rule; pyarrow reads
    it unchecked) is the bad value's record's invalid_utf8 error; the other rows and columns
    are untouched and a run over the file finishes."""
    jpg = (sample_dir / "images" / "coffee.jpg").read_bytes()
    table = pa.table({"id": ["a", "b", "c"], "caption": ["a cup of coffee", "bad ZZ coffee", "more coffee here"], "image": [jpg] * 3})
    path = _patched_parquet(tmp_path / "pairs.parquet", table, b"bad ZZ coffee", b"bad \xff\xfe coffee")
    reader = interleaf.read(path, format="pairs")
    df = pl.concat(list(reader))
    texts = df.filter(pl.col("kind") == "text")
    assert texts.get_column("text").to_list() == ["a cup of coffee", "bad \ufffd\ufffd coffee", "more coffee here"]
    errors = texts.get_column("error").to_list()
    assert errors[0] is None and errors[2] is None and errors[1]["kind"] == "invalid_utf8"
    assert df.get_column("doc_id").unique(maintain_order=True).to_list() == ["a", "b", "c"]
    assert reader.stats["errors"] == {"invalid_utf8": 1}
    assert df.filter(pl.col("doc_id") == "b").get_column("error").struct.field("kind").to_list() == ["invalid_utf8"] * 2  # the record's error
    # A bad value in a metadata column leaves the other columns (image paths) and rows as they were.
    meta = pa.table({"id": ["a", "b"], "caption": ["one cup", "two cups"], "image": ["images/coffee.jpg", "images/chelsea.jpg"], "title": ["fine", "bad ZZ"]})
    path = _patched_parquet(tmp_path / "meta.parquet", meta, b"bad ZZ", b"bad \xff\xfe")
    df = read_all(path, format="pairs", image_root=sample_dir)
    images = df.filter(pl.col("kind") == "image")
    assert images.get_column("image_ref").to_list() == ["images/coffee.jpg", "images/chelsea.jpg"] and images.get_column("image").null_count() == 0
    assert [json.loads(m)["title"] for m in images.get_column("meta").to_list()] == ["fine", "bad \ufffd\ufffd"]
    assert [e and e["kind"] for e in images.get_column("error").to_list()] == [None, "invalid_utf8"]
    assert "title is not UTF-8" in images.get_column("error")[1]["message"]
    # Binary id and caption columns are text, decoded as UTF-8.
    pq.write_table(pa.table({"id": pa.array([b"x1", b"x\xff2"], pa.binary()), "caption": pa.array([b"caf\xc3\xa9 cr\xc3\xa8me", b"bad \xff"], pa.binary()), "image": [jpg] * 2}), tmp_path / "bin.parquet")
    df = read_all(tmp_path / "bin.parquet", format="pairs")
    assert df.get_column("doc_id").unique(maintain_order=True).to_list() == ["x1", "x\ufffd2"]
    texts = df.filter(pl.col("kind") == "text")
    assert texts.get_column("text").to_list() == ["caf\u00e9 cr\u00e8me", "bad \ufffd"] and [e and e["kind"] for e in texts.get_column("error").to_list()] == [None, "invalid_utf8"]
    # A node table: the text column's bad value is its node's error.
    nodes = pa.table({"doc_id": ["d1", "d1"], "pos": [0, 1], "kind": ["text", "text"], "text": ["fine text", "bad ZZ text"]})
    path = _patched_parquet(tmp_path / "nodes.parquet", nodes, b"bad ZZ text", b"bad \xc3\x28 text")
    df = read_all(path)
    assert df.get_column("text").to_list() == ["fine text", "bad \ufffd( text"]
    assert [e and e["kind"] for e in df.get_column("error").to_list()] == [None, "invalid_utf8"]
    # The whole job over the first file finishes, the bad record counted.
    from interleaf.pipeline import run

    summary = run("pairs-basic", [str(tmp_path / "pairs.parquet")], tmp_path / "out", progress=False)
    assert summary["documents"]["in"] == 3 and summary["errors"].get("invalid_utf8") == 1
    assert (tmp_path / "out" / "report.html").is_file()


def test_nodes_parquet_keeps_documents_whole_across_row_batches(tmp_path, sample_dir):
    comm = read_all(sample_dir / "comm.jsonl")
    path = interleaf.write(comm, tmp_path / "n.parquet")[0]
    # 8 rows per arrow batch at batch_size=1: the first document (10 rows) spans two of them.
    assert comm.filter(pl.col("doc_index") == 0).height > 8
    batches = list(interleaf.read(path, batch_size=1))
    assert len(batches) > 1
    seen = [d for b in batches for d in b.get_column("doc_index").unique(maintain_order=True)]
    assert seen == list(range(comm.get_column("doc_index").n_unique()))  # none in two batches
    assert pl.concat(batches).equals(comm)


def test_nodes_parquet_of_long_documents_reads_each_whole_in_order(tmp_path):
    # Documents of 1,000 and 3 and 2,000 rows read 8 rows per arrow batch (batch_size=1): each
    # comes out whole, in one batch of its own, numbered in order (the pending rows are joined
    # only as they double, which keeps one huge document linear).
    sizes = [1000, 3, 2000]
    doc_id = [f"d{i}" for i, n in enumerate(sizes) for _ in range(n)]
    pos = [p for n in sizes for p in range(n)]
    pq.write_table(pa.table({"doc_id": doc_id, "pos": pa.array(pos, pa.int32()), "kind": ["text"] * len(pos), "text": [f"t{p}" for p in pos]}), tmp_path / "n.parquet", row_group_size=64)
    batches = list(interleaf.read(tmp_path / "n.parquet", batch_size=1))
    assert [b.height for b in batches] == sizes
    assert [b.get_column("doc_index").unique().to_list() for b in batches] == [[0], [1], [2]]
    assert pl.concat(batches).get_column("pos").to_list() == pos


def test_parquet_batches_span_small_row_groups(tmp_path):
    # Files written in row groups of 100 (Hugging Face datasets' image shards) still give
    # batches of batch_size documents, with the same fallback ids.
    n = 2500
    pq.write_table(pa.table({"caption": [f"caption {i}" for i in range(n)], "image": [f"http://e/{i}.jpg" for i in range(n)]}), tmp_path / "p.parquet", row_group_size=100)
    batches = list(interleaf.read(tmp_path / "p.parquet", format="pairs", batch_size=1000))
    assert [b.get_column("doc_index").n_unique() for b in batches] == [1000, 1000, 500]
    ids = pl.concat(batches).get_column("doc_id").unique(maintain_order=True).to_list()
    assert ids == [f"p.parquet:{i + 1}" for i in range(n)]


def test_parquet_records_read_the_same_from_many_row_groups_as_from_one(tmp_path, sample_images):
    # A batch gathered from row groups of 3 reaches the converter as chunks (joining them would
    # copy every image again): images, dictionary captions and float16 metadata come out as
    # from one row group.
    names = sorted(sample_images)
    n = 20
    table = pa.table({
        "key": [f"k{i}" for i in range(n)],
        "jpg": [sample_images[names[i % len(names)]] for i in range(n)],
        "caption": pa.array([f"caption {i % 4}" for i in range(n)]).dictionary_encode(),
        "h": pa.array([i / 2 for i in range(n)], pa.float16()),
    })
    frames = []
    for sub, groups in (("one", n), ("many", 3)):
        (tmp_path / sub).mkdir()
        pq.write_table(table, tmp_path / sub / "r.parquet", row_group_size=groups)
        batches = list(interleaf.read(tmp_path / sub / "r.parquet", format="pairs", batch_size=8))
        assert [b.get_column("doc_index").n_unique() for b in batches] == [8, 8, 4]
        frames.append(pl.concat(batches).drop("source"))
    assert frames[0].equals(frames[1])
    assert frames[1].filter(pl.col("kind") == "image").get_column("image").to_list() == table.column("jpg").to_pylist()
    assert frames[1].filter(pl.col("kind") == "text").get_column("text").to_list() == table.column("caption").to_pylist()
    # A caption that is not UTF-8 in the third of seven chunks: its record's error, as from one.
    plain = table.set_column(2, "caption", pa.array([f"caption {i:02d}" for i in range(n)]))
    frames = []
    for sub, groups in (("one", n), ("many", 3)):
        path = _patched_parquet(tmp_path / sub / "bad.parquet", plain, b"caption 07", b"caption \xff7", row_group_size=groups)
        frames.append(pl.concat(list(interleaf.read(path, format="pairs", batch_size=8))).drop("source"))
    assert frames[0].equals(frames[1])
    errors = frames[1].filter(pl.col("kind") == "text").get_column("error").to_list()
    assert [i for i, e in enumerate(errors) if e] == [7] and errors[7]["kind"] == "invalid_utf8"


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


def test_ill_typed_layout_fields_are_bad_records_and_null_sentences_stay_null(tmp_path):
    """A layout list given as another type is a bad_record naming the field (the rest of the
    record is still read); an MMC4 null sentence is a text node without text, written back as
    null; a record with nothing in it is counted as empty_document by the read itself."""
    m = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": "obj", "text_list": ["a", "b"], "image_info": {"raw_url": "http://x/1.jpg", "matched_text_index": 0}},
            {"id": "nul", "text_list": ["a", None, "c"], "image_info": [{"raw_url": "http://x/1.jpg", "matched_text_index": 2}]},
        ],
    )
    df = read_all(m, format="mmc4")
    obj = df.filter(pl.col("doc_id") == "obj")
    assert obj.get_column("text").to_list() == ["a", "b"] and obj.get_column("error")[0]["message"] == "MMC4 image_info must be a list, not an object"
    nul = df.filter(pl.col("doc_id") == "nul")
    assert nul.get_column("kind").to_list() == ["text", "text", "image", "text"] and nul.get_column("text").to_list() == ["a", None, None, "c"]
    out = interleaf.write(nul, tmp_path / "w" / "m.jsonl", "mmc4")
    assert json.loads(Path(out[0]).read_text())["text_list"] == ["a", None, "c"]
    o = write_jsonl(tmp_path / "o.jsonl", [{"id": "s", "texts": "not a list", "images": [None]}, {"id": "e", "texts": [], "images": []}])
    reader = interleaf.read(o, format="obelics")
    df = pl.concat(list(reader))
    assert df.filter(pl.col("doc_id") == "s").get_column("error")[0]["message"] == "OBELICS texts must be a list, not a string"
    assert reader.stats["errors"] == {"bad_record": 1, "empty_document": 1}


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



ODD_NAMES = ("br[1].jsonl", "br1.jsonl", "q?.jsonl", "qa.jsonl", "lone[x].jsonl", "brace{1..2}.jsonl", "part..1.jsonl", "st*r.jsonl")


def test_files_named_like_patterns_are_read_once_by_their_own_names(tmp_path):
    """A folder of files whose names hold glob or brace characters: a run read each shard by
    expanding its path again, so ``br[1].jsonl`` read ``br1.jsonl``, ``q?.jsonl`` read
    ``qa.jsonl`` too, and ``lone[x].jsonl`` failed the run (matches no file); naming such a file
    could not read it. A path that exists is that file."""
    folder = tmp_path / "odd"
    folder.mkdir()
    for name in ODD_NAMES:
        write_jsonl(folder / name, [{"url": f"http://e/{name}", "caption": name}])
    captions = read_all(folder, format="pairs").get_column("text").drop_nulls().to_list()
    assert sorted(captions) == sorted(ODD_NAMES)
    for name in ODD_NAMES:
        assert read_all(folder / name, format="pairs").get_column("text").drop_nulls().to_list() == [name]
        assert expand(str(folder / name)) == [str(folder / name)]
    # Patterns still expand where no file has their name.
    assert [os.path.basename(p) for p in expand(str(folder / "br?.jsonl"))] == ["br1.jsonl"]
    assert [os.path.basename(p) for p in expand(str(folder / "q*.jsonl"))] == ["q?.jsonl", "qa.jsonl"]


# --- batch boundaries: batch_size changes only where batches end ----------------------------------

#: One variant per number, so that a lost, repeated or reordered document changes the table; the
#: variants differ in node count too, so batch ends fall at different row offsets.
VARIANTS = {
    "pairs": lambda r, i: {**r, "id": f"p{i}", "caption": f"{r['caption']} #{i}"},
    "mmc4": lambda r, i: {**r, "text_list": [f"{t} #{i}" for t in r["text_list"]]},
    "obelics": lambda r, i: {**r, "texts": [t if t is None else f"{t} #{i}" for t in r["texts"]]},
    "comm": lambda r, i: {**r, "id": f"c{i}", "step_info": r["step_info"][: 1 + i % 2]},
    "llava": lambda r, i: {
        **r,
        "id": f"l{i}",
        "conversations": r["conversations"] + [{"from": "human", "value": f"And #{i}?"}, {"from": "gpt", "value": f"Answer {i}."}] * (i % 3),
    },
}
N_VARIANTS = 7
#: Larger than every file below, in documents.
BIGGER_THAN_THE_FILE = 1000
BATCH_SIZES = [1, 2, 3, BIGGER_THAN_THE_FILE]
BATCH_SOURCES = [*(f"{fmt}.jsonl" for fmt in FORMATS), "nodes.jsonl", "nodes.parquet", "comm.parquet"]


@pytest.fixture()
def batch_source(request, records, sample_dir):
    """``(path, read kwargs, number of documents)`` for the source named by the test's parameter."""
    name = request.param
    root = records["root"]
    fmt, container = name.split(".")
    if container == "jsonl" and fmt in VARIANTS:
        lines = [json.dumps(VARIANTS[fmt](records[fmt][0], i)) for i in range(N_VARIANTS)]
        lines.insert(3, '{"broken": ')  # a one-row error document in the middle
        return write_jsonl(root / name, lines), {"format": fmt}, N_VARIANTS + 1
    if fmt == "nodes":
        # Documents of 2 (pairs), 7 (CoMM) and 1 (an error row) nodes, in interleaf's own format.
        write_jsonl(root / "broken.jsonl", ['{"broken": '])
        mixed = read_all([sample_dir / "pairs.jsonl", sample_dir / "comm.jsonl", root / "broken.jsonl", sample_dir / "pairs.jsonl"])
        n_docs = mixed.get_column("doc_index").n_unique()
        assert n_docs == 14 + 4 + 1 + 14
        return Path(interleaf.write(mixed, root / name, container)[0]), {}, n_docs
    pq.write_table(pa.Table.from_pylist([VARIANTS[fmt](records[fmt][0], i) for i in range(N_VARIANTS)]), root / name)
    return root / name, {"format": fmt}, N_VARIANTS


def doc_indexes_per_batch(batches: list[pl.DataFrame]) -> list[list[int]]:
    return [b.get_column("doc_index").unique(maintain_order=True).to_list() for b in batches]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("batch_source", BATCH_SOURCES, indirect=True)
def test_batch_size_changes_only_where_batches_end(batch_source, batch_size):
    path, kw, n_docs = batch_source
    assert n_docs < BIGGER_THAN_THE_FILE
    one = interleaf.read(path, batch_size=10 * BIGGER_THAN_THE_FILE, **kw)
    whole = pl.concat(list(one))
    reader = interleaf.read(path, batch_size=batch_size, **kw)
    batches = list(reader)
    assert pl.concat(batches).equals(whole)
    per_batch = doc_indexes_per_batch(batches)
    assert all(per_batch), "an empty batch"
    # Whole documents: no doc_index in two batches, and 0..N-1 in order across the batches.
    assert [d for docs in per_batch for d in docs] == list(range(n_docs))
    assert all(b.get_column("doc_index").is_sorted() for b in batches)
    assert reader.stats["documents"] == n_docs
    assert reader.stats == one.stats


@pytest.mark.parametrize(
    ("batch_source", "batch_size"),
    [
        pytest.param(source, size, id=f"{source}-{size}")
        for source in BATCH_SOURCES
        for size in BATCH_SIZES
    ],
    indirect=["batch_source"],
)
def test_batches_hold_at_most_batch_size_documents(batch_source, batch_size):
    path, kw, n_docs = batch_source
    per_batch = doc_indexes_per_batch(list(interleaf.read(path, batch_size=batch_size, **kw)))
    assert max(len(docs) for docs in per_batch) <= batch_size
    assert sum(len(docs) for docs in per_batch) == n_docs


def test_invalid_utf8_is_the_error_even_when_it_breaks_a_key(tmp_path):
    """A line whose invalid bytes fall in a key: the record's error is invalid_utf8 (the
    damage), not the missing field it causes."""
    path = tmp_path / "k.jsonl"
    path.write_bytes(b'{"id": "k", "image": "http://x/a.jpg", "capt\xe9on": "a cat"}\n')
    df = read_all(path, format="pairs")
    assert {e["kind"] for e in df.get_column("error").to_list()} == {"invalid_utf8"}


def test_node_steps_that_are_not_32_bit_integers_are_bad_records(tmp_path):
    # "step": 2**40 was read as 0 (wrapped); a float or a string became null without an error.
    nodes = [{"kind": "text", "text": f"t{i}", "step": s} for i, s in enumerate([1, 2**40, 1.5, "2", None, -3.0])]
    path = tmp_path / "n.jsonl"
    path.write_text(json.dumps({"doc_id": "d", "nodes": nodes + [{"kind": "text", "text": "x" * 10_000, "step": "y" * 10_000}]}) + "\n")
    df = read_all(path, format="nodes")
    assert df.get_column("step").to_list() == [1, None, None, None, None, -3, None]
    kinds = [e and e["kind"] for e in df.get_column("error").to_list()]
    assert kinds == [None, "bad_record", "bad_record", "bad_record", None, None, "bad_record"]
    assert df.get_column("error")[1]["message"] == f"node step {2**40} is not a 32-bit integer"
    assert len(df.get_column("error")[6]["message"]) < 300  # a hostile value is cut in the message


def test_nan_and_infinity_read_as_python_json_reads_them(records, tmp_path):
    """Python's json.dumps writes NaN, Infinity and -Infinity for non-finite floats (allow_nan is
    its default) and json.loads reads them: such a record keeps its image and caption, its
    metadata keeps the numbers (json.loads(meta) gives the floats), a "NaN" string stays a
    string, and writing the record back gives what json.dumps wrote."""
    root = records["root"]
    recs = [
        {"id": "nan", "image": "images/coffee.jpg", "caption": "NaN in a caption stays text", "similarity": float("nan"), "scores": [float("inf"), float("-inf"), 0.5], "note": "NaN"},
        {"id": "ok", "image": "images/coffee.jpg", "caption": "a fine caption", "similarity": 0.31},
    ]
    lines = [json.dumps(r) for r in recs]
    assert "NaN" in lines[0] and "Infinity" in lines[0]
    src = write_jsonl(root / "nan.jsonl", lines)
    reader = interleaf.read(src)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {}
    assert df.get_column("kind").to_list() == ["image", "text"] * 2
    assert df.filter(pl.col("kind") == "image").get_column("image").null_count() == 0
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == ["NaN in a caption stays text", "a fine caption"]
    for line, meta in zip(lines, df.filter(pl.col("pos") == 0).get_column("meta").to_list(), strict=True):
        want = {k: v for k, v in json.loads(line).items() if k not in ("id", "image", "caption")}
        # NaN != NaN: compare as json.dumps writes them.
        assert json.dumps(json.loads(meta), sort_keys=True) == json.dumps(want, sort_keys=True)
    written = interleaf.write(interleaf.read(src), tmp_path / "w" / "p.jsonl", "pairs")
    back = [json.loads(x) for x in Path(written[0]).read_text().splitlines()]
    assert [json.dumps(b, sort_keys=True) for b in back] == [json.dumps(r, sort_keys=True) for r in recs]
    # interleaf's own jsonl and a parquet float column keep them the same way.
    nodes = interleaf.write(interleaf.read(src), tmp_path / "w" / "n.jsonl", "jsonl")
    assert json.dumps(json.loads(read_all(nodes).get_column("meta")[0]), sort_keys=True) == json.dumps(json.loads(df.get_column("meta")[0]), sort_keys=True)
    pq.write_table(pa.table({"id": ["p"], "image": ["images/coffee.jpg"], "caption": ["c"], "similarity": [float("nan")], "top": [float("inf")]}), root / "nan.parquet")
    meta = json.loads(read_all(root / "nan.parquet").get_column("meta")[0])
    assert str(meta["similarity"]) == "nan" and meta["top"] == float("inf")


def _image_forms(data: bytes, root: Path) -> dict[str, Path]:
    """One record file per way a record supplies an image inline, each holding ``data``."""
    b64 = base64.b64encode(data).decode()
    files = {
        "data_uri": write_jsonl(root / "uri.jsonl", [{"id": "d", "image": "data:image/jpeg;base64," + b64, "caption": "c"}]),
        "bytes_object": write_jsonl(root / "obj.jsonl", [{"id": "d", "image": {"bytes": b64}, "caption": "c"}]),
        "mmc4_image_base64": write_jsonl(root / "mmc4.jsonl", [{"id": "d", "text_list": ["c"], "image_info": [{"image_base64": b64, "matched_text_index": 0}]}]),
        "nodes_image_b64": write_jsonl(root / "nodes.jsonl", [{"doc_id": "d", "nodes": [{"kind": "image", "image_b64": b64}, {"kind": "text", "text": "c"}]}]),
        "parquet_cell": root / "cell.parquet",
        "node_table": root / "table.parquet",
        "file": write_jsonl(root / "file.jsonl", [{"id": "d", "image": "img.jpg", "caption": "c"}]),
    }
    (root / "img.jpg").write_bytes(data)
    pq.write_table(pa.table({"id": ["d"], "image": [data], "caption": ["c"]}), files["parquet_cell"])
    pq.write_table(pa.table({"doc_id": ["d", "d"], "pos": [0, 1], "kind": ["image", "text"], "image": [data, None], "text": [None, "c"]}), files["node_table"])
    return files


@pytest.mark.parametrize("form", ["data_uri", "bytes_object", "mmc4_image_base64", "nodes_image_b64", "parquet_cell", "node_table", "file"])
def test_max_member_bytes_holds_every_way_an_image_is_supplied(sample_images, tmp_path, form):
    """An image over max_member_bytes is member_too_large however it is supplied, as an image
    file is; the record keeps its text; at the limit the bytes are read whole."""
    data = sample_images["coffee.jpg"]
    src = _image_forms(data, tmp_path)[form]
    fits = read_all(src, max_member_bytes=len(data))
    image = fits.filter(pl.col("kind") == "image")
    assert image.get_column("image").to_list() == [data] and image.get_column("error").to_list() == [None]
    reader = interleaf.read(src, max_member_bytes=len(data) - 1)
    over = pl.concat(list(reader))
    image = over.filter(pl.col("kind") == "image")
    assert image.get_column("image").to_list() == [None]
    err = image.get_column("error")[0]
    assert err["kind"] == "member_too_large" and f"{len(data) - 1}" in err["message"], err
    assert over.filter(pl.col("kind") == "text").get_column("text").to_list() == ["c"]
    assert reader.stats["errors"] == {"member_too_large": 1}


def test_a_long_base64_image_is_refused_by_its_length_before_decoding(tmp_path):
    """A base64 string that must decode to more than the limit is not decoded (it need not even
    be valid base64 to be refused)."""
    src = write_jsonl(tmp_path / "big.jsonl", [{"id": "d", "image": {"bytes": "!" * 8000}, "caption": "c"}])
    err = read_all(src, max_member_bytes=1000).get_column("error")[0]
    assert err == {"kind": "member_too_large", "message": "inline image of 8000 base64 characters (at least 5998 bytes) not decoded, over the limit of 1000 bytes (max_member_bytes)"}


def test_an_image_node_may_give_its_image_as_a_pairs_record_does(records):
    """In the nodes schema an image node's ``image`` takes the forms a pairs record's image
    takes; the same image is read either way, and a value of no such form is the node's error."""
    root = records["root"]
    coffee = (root / "images" / "coffee.jpg").read_bytes()
    b64 = base64.b64encode(coffee).decode()
    forms = ["images/coffee.jpg", {"path": "images/coffee.jpg"}, {"bytes": b64}, "data:image/jpeg;base64," + b64]
    for i, form in enumerate(forms):
        pair = read_all(write_jsonl(root / f"p{i}.jsonl", [{"id": "d", "image": form, "caption": "c"}]))
        node = read_all(write_jsonl(root / f"n{i}.jsonl", [{"doc_id": "d", "nodes": [{"kind": "image", "image": form}, {"kind": "text", "text": "c"}]}]))
        cols = ["kind", "text", "image", "image_ref", "error"]
        assert node.select(cols).equals(pair.select(cols)), form
        assert node.get_column("image")[0] == coffee
    bad = read_all(write_jsonl(root / "bad.jsonl", [{"doc_id": "d", "nodes": [{"kind": "image", "image": 42}]}]))
    assert bad.get_column("error")[0] == {"kind": "bad_record", "message": "image field is neither a string nor an object: 42"}


def test_an_embedded_mmc4_file_reads_back_with_its_images_and_no_image_root(sample_dir, tmp_path):
    """MMC4 written back as MMC4 with embed_images: the record's own image_info entries get the
    bytes in place of their image_name, so the file reads back alone."""
    from interleaf.cli import main

    mmc4 = tmp_path / "mmc4.jsonl"
    assert main(["convert", str(sample_dir / "comm.jsonl"), str(sample_dir / "pairs.jsonl"), str(mmc4), "--to", "mmc4"]) == 0
    first = read_all(mmc4, image_root=sample_dir).filter(pl.col("kind") == "image")
    assert first.height and first.get_column("image").null_count() == 0
    out = tmp_path / "e" / "e.jsonl"
    assert main(["convert", str(mmc4), str(out), "--to", "mmc4", "--embed-images", "--image-root", str(sample_dir)]) == 0
    assert out.read_bytes() != mmc4.read_bytes()
    infos = [i for line in out.read_text().splitlines() for i in json.loads(line)["image_info"]]
    assert infos and all(i["image_base64"].startswith("data:image/") and "image_name" not in i for i in infos)
    back = read_all(out).filter(pl.col("kind") == "image")
    assert back.get_column("image").to_list() == first.get_column("image").to_list()
    assert back.get_column("error").null_count() == back.height


def test_an_interleaved_document_is_refused_as_a_pair_not_cut(sample_dir, tmp_path, capsys):
    """A pairs record holds one image and one caption: writing a CoMM document as pairs is a
    clear error naming the document and the layouts that hold it, and nothing is written;
    pairs still write as pairs."""
    from interleaf.cli import main

    docs = read_all(sample_dir / "comm.jsonl")
    first_id = docs.get_column("doc_id")[0]
    dest = tmp_path / "w" / "p.jsonl"
    with pytest.raises(ValueError, match=rf'cannot write pairs records: document "{first_id}" has \d+ image\(s\) and \d+ text\(s\).*obelics, mmc4, comm or llava'):
        interleaf.write(interleaf.read(sample_dir / "comm.jsonl"), dest, "pairs")
    assert not dest.exists() and not list(dest.parent.iterdir())
    assert main(["convert", str(sample_dir / "comm.jsonl"), str(dest), "--to", "pairs"]) != 0
    assert "a pairs record holds one image and one caption" in capsys.readouterr().err
    assert not dest.exists()
    pairs = interleaf.write(interleaf.read(sample_dir / "pairs.jsonl"), dest, "pairs")
    assert read_all(pairs).select("kind", "text").equals(read_all(sample_dir / "pairs.jsonl").select("kind", "text"))
    # A run refuses before it starts.
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="holds comm documents.*--output-format comm"):
        interleaf.run("pairs-basic", [str(sample_dir / "comm.jsonl")], out, output_format="pairs", progress=False)
    assert not (out / "summary.json").exists()


def test_a_killed_writers_temporary_files_are_removed_by_the_next_write(sample_dir, tmp_path):
    """A writer killed before its rename leaves a hidden temporary file (47 MB in a killed
    dedup --write); the next write into that folder, holding the lock, removes it: the
    temporary files of the names it writes, not other hidden files."""
    docs = read_all(str(sample_dir / "pairs.jsonl"))
    for fmt, leftover in (("jsonl", ".shard-000000.jsonl.12345.0123456789ab.tmp"), ("parquet", ".shard-000000.parquet.999.abcdefabcdef.tmp"), ("webdataset", ".shard-000000.tar.4242-7.tmp")):
        out = tmp_path / fmt
        out.mkdir()
        (out / leftover).write_bytes(b"half a file")
        (out / ".keep.tmp").write_bytes(b"not a writer's")
        (out / ".other-000000.tar.4242-7.tmp").write_bytes(b"another prefix's")
        interleaf.write(docs, out, fmt, prefix="shard")
        assert not (out / leftover).exists(), fmt
        assert (out / ".keep.tmp").exists() and (out / ".other-000000.tar.4242-7.tmp").exists(), fmt
        assert read_all(str(out)).height == docs.height


def test_an_img2dataset_folder_is_read_as_its_shards(sample_dir, tmp_path, capsys):
    """img2dataset writes NNNNN.parquet (the samples' metadata, URLs) and NNNNN_stats.json
    beside each NNNNN.tar: read with the shards, every pair came twice and each line of the
    stats file was a malformed record. A parquet without a shard of its name is still read."""
    import shutil

    shard = sample_dir / "pairs-000000.tar"
    out = tmp_path / "laion"
    out.mkdir()
    shutil.copy(shard, out / "00000.tar")
    n = read_all(str(shard)).get_column("doc_index").n_unique()
    pq.write_table(pa.table({"url": ["http://x/a.jpg"] * n, "caption": ["a caption"] * n, "key": [f"{i:09d}" for i in range(n)]}), out / "00000.parquet")
    (out / "00000_stats.json").write_text(json.dumps({"count": n, "successes": n}, indent=4))
    docs = read_all(str(out))
    assert docs.get_column("doc_index").n_unique() == n and docs.filter(pl.col("error").is_not_null()).height == 0
    assert "img2dataset's metadata beside its shards (00000.parquet, ...): read the shards only" in capsys.readouterr().err
    pq.write_table(pa.table({"url": ["http://x/b.jpg"], "caption": ["another"]}), out / "extra.parquet")
    assert read_all(str(out)).get_column("doc_id").n_unique() == n + 1


def test_a_failed_webdataset_write_never_leaves_a_partial_file_or_two_datasets(sample_dir, tmp_path):
    """One named .tar that needs a second shard is refused before anything is renamed onto it
    (the good file was replaced by its first shard's documents); an overwrite that fails after
    renaming some shards removes the old shards it did not reach (the folder mixed both); one
    that fails before renaming any leaves the old shards as they were."""
    docs = read_all(str(sample_dir / "pairs.jsonl"))
    n = docs.get_column("doc_index").n_unique()
    one = tmp_path / "one.tar"
    interleaf.write(docs, one, "webdataset")
    good = one.read_bytes()
    with pytest.raises(ValueError, match="need more than one shard"):
        interleaf.write(docs, one, "webdataset", max_count=2, overwrite=True)
    assert one.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["one.tar"]
    folder = tmp_path / "shards"
    interleaf.write(docs, folder, "webdataset", max_count=2)
    old = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert len(old) == (n + 1) // 2 >= 3

    def failing(after: int):
        batches = [docs.filter(pl.col("doc_index") == d) for d in sorted(docs.get_column("doc_index").unique())]
        yield from batches[:after]
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        interleaf.write(failing(0), folder, "webdataset", max_count=2, overwrite=True)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == old
    with pytest.raises(RuntimeError, match="the source broke"):
        interleaf.write(failing(3), folder, "webdataset", max_count=2, overwrite=True)
    left = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert left == old[:1]  # the one shard this write finished; none of the old ones after it
    with pytest.raises(ValueError, match=r"names a \.jsonl\.zst file"):
        interleaf.write(docs, tmp_path / "out.jsonl.zst", "jsonl")
    assert not (tmp_path / "out.jsonl.zst").exists()
