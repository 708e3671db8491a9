"""WebDataset shards: grouping identical to the webdataset package, compatibility both ways,
compression, the deterministic writer, and damaged shards."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import zlib

import polars as pl
import pytest
import webdataset as wds
from conftest import nodes_only, read_all, write_tar

import interleaf
from interleaf import _native


def wds_samples(path) -> list[dict]:
    """Raw samples from the webdataset package, without decoding."""
    return [dict(s) for s in wds.WebDataset(str(path), shardshuffle=False)]


def our_samples(path) -> list[dict]:
    out = []
    for key, members, errors in _native.read_samples(str(path)):
        assert errors == []
        out.append({"__key__": key, **{ext: data for ext, data in members}})
    return out


def comparable(samples: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if not k.startswith("__") or k == "__key__"} for s in samples]


def test_grouping_matches_webdataset_on_tricky_names(tmp_path):
    members = [
        ("a/b/000001.jpg", b"\xff\xd8\xff1"),
        ("a/b/000001.TXT", b"upper-case extension"),
        ("a/b/000001.seg.0.json", b"{}"),
        ("__meta__", b"skipped by both"),
        ("noext", b"skipped: no dot"),
        ("a.b/c.d.png", b"\x89PNG"),
        ("a.b/c.txt", b"dotted directory"),
        ("000002.jpg", b"\xff\xd8\xff2"),
        ("000002.txt", b"two"),
        ("000003.txt", b"three, alone"),
        ("000002.cls", b"key seen again later: a new sample, as in webdataset"),
    ]
    path = write_tar(tmp_path / "tricky.tar", members)
    ours, theirs = our_samples(path), comparable(wds_samples(path))
    assert ours == theirs
    assert [s["__key__"] for s in ours] == ["a/b/000001", "a.b/c", "000002", "000003", "000002"]


def test_gnu_and_pax_long_names_group_like_webdataset(tmp_path):
    long_dir = "d" * 120
    members = [(f"{long_dir}/k1.jpg", b"\xff\xd8\xff"), (f"{long_dir}/k1.txt", "ünïcödé".encode())]
    for fmt, name in ((tarfile.GNU_FORMAT, "gnu.tar"), (tarfile.PAX_FORMAT, "pax.tar")):
        path = write_tar(tmp_path / name, members, fmt=fmt)
        assert our_samples(path) == comparable(wds_samples(path))


def test_shards_written_by_webdataset_read_identically(tmp_path, sample_images):
    path = tmp_path / "written-by-wds.tar"
    items = sorted(sample_images.items())
    with wds.TarWriter(str(path)) as sink:
        for i, (name, data) in enumerate(items):
            ext = name.rsplit(".", 1)[1]
            sink.write({"__key__": f"s{i:04d}", ext: data, "txt": f"caption {i}", "json": {"i": i}})
    theirs = wds_samples(path)
    df = read_all(path)
    assert df.get_column("doc_id").unique(maintain_order=True).to_list() == [s["__key__"] for s in theirs]
    images = df.filter(pl.col("kind") == "image").get_column("image").to_list()
    texts = df.filter(pl.col("kind") == "text").get_column("text").to_list()
    assert images == [next(v for k, v in s.items() if k in ("jpg", "png")) for s in theirs]
    assert texts == [s["txt"].decode() for s in theirs]
    assert df.get_column("meta").to_list()[::2] == [json.dumps(json.loads(s["json"]), separators=(",", ":")) for s in theirs]
    assert df.get_column("error").null_count() == df.height


def test_shards_we_write_read_identically_in_webdataset(tmp_path, pair_shard):
    ours = read_all(pair_shard)
    written = interleaf.write(ours, tmp_path / "out", "webdataset")
    theirs = wds_samples(written[0])
    assert [s["__key__"] for s in theirs] == ours.get_column("doc_id").unique(maintain_order=True).to_list()
    for s, (_doc_id, rows) in zip(theirs, ours.group_by("doc_id", maintain_order=True)):
        image, text = rows.get_column("image")[0], rows.get_column("text")[1]
        img_ext = next(k for k in s if k in ("jpg", "png"))
        assert s[img_ext] == image
        assert s["txt"].decode() == text
        assert json.loads(s["json"]) == json.loads(rows.get_column("meta")[0])


def test_pairs_read_from_records_are_written_as_pairs(tmp_path, sample_dir):
    """A pair from jsonl (an image path, bytes loaded) is written as key.jpg + key.txt +
    key.json, what OpenCLIP's loaders read, and reads back with its path."""
    pairs = read_all(sample_dir / "pairs.jsonl")
    assert pairs.filter(pl.col("kind") == "image").get_column("image_ref").null_count() == 0
    shards = interleaf.write(pairs, tmp_path / "wds", "webdataset")
    theirs = wds.WebDataset(shards[0], shardshuffle=False).decode("pil").to_tuple("jpg;png", "txt", "json")
    got = [(img.size, txt, meta) for img, txt, meta in theirs]
    rows = pairs.group_by("doc_id", maintain_order=True)
    assert len(got) == pairs.get_column("doc_id").n_unique()
    for (size, txt, meta), (_doc, r) in zip(got, rows, strict=True):
        assert txt == r.get_column("text")[1]
        assert meta["__image_ref__"] == r.get_column("image_ref")[0]
        assert size[0] > 0
    back = read_all(shards)
    cols = ["doc_id", "pos", "kind", "text", "image", "image_ref", "meta"]
    assert back.select(cols).equals(pairs.select(cols))


def test_interleaved_documents_survive_webdataset_round_trip(tmp_path, sample_dir):
    comm = read_all(sample_dir / "comm.jsonl")
    shards = interleaf.write(comm, tmp_path / "wds", "webdataset")
    back = read_all(shards)
    assert nodes_only(back).equals(nodes_only(comm))
    # webdataset sees one sample per document: a json plus one member per image.
    theirs = wds_samples(shards[0])
    assert len(theirs) == comm.get_column("doc_id").n_unique()
    n_images = sum(1 for s in theirs for k in s if k[0].isdigit())
    assert n_images == comm.filter(pl.col("kind") == "image").height


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_compressed_shards_read_and_write(tmp_path, pair_shard, compression):
    plain = read_all(pair_shard)
    shards = interleaf.write(plain, tmp_path / "c", "webdataset", compression=compression)
    assert shards[0].endswith(f".tar.{compression}")
    assert nodes_only(read_all(shards)).equals(nodes_only(plain))
    if compression == "gz":
        assert our_samples(shards[0]) == comparable(wds_samples(shards[0]))


def test_writer_is_deterministic_and_splits_by_count_and_bytes(tmp_path, pair_shard):
    df = read_all(pair_shard)
    a = interleaf.write(df, tmp_path / "a", "webdataset", max_count=4)
    b = interleaf.write(df, tmp_path / "b", "webdataset", max_count=4)
    assert [p.rsplit("/", 1)[1] for p in a] == ["shard-000000.tar", "shard-000001.tar"]
    assert [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in a] == [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in b]
    with tarfile.open(a[0]) as t:
        assert {m.mtime for m in t.getmembers()} == {0}
        assert {m.mode for m in t.getmembers()} == {0o644}
    by_bytes = interleaf.write(df, tmp_path / "c", "webdataset", max_bytes=60_000)
    assert len(by_bytes) > 1
    assert nodes_only(read_all(by_bytes)).equals(nodes_only(df))
    assert not list((tmp_path / "c").glob("*.tmp"))


def _members_of(path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as t:
        return t.getmembers()


def test_truncated_tar_keeps_everything_before_the_cut(tmp_path, pair_shard):
    data = pair_shard.read_bytes()
    last = _members_of(pair_shard)[-2]  # the last sample's txt member
    cut = tmp_path / "truncated.tar"
    cut.write_bytes(data[: last.offset_data + 2])
    full = read_all(pair_shard)
    reader = interleaf.read(cut)
    df = pl.concat(list(reader))
    n_docs = full.get_column("doc_id").n_unique()
    assert df.get_column("doc_id").n_unique() == n_docs
    good = df.filter(pl.col("error").is_null())
    assert good.get_column("doc_id").n_unique() == n_docs - 1
    bad = df.filter(pl.col("error").is_not_null())
    assert set(bad.get_column("error").struct.field("kind")) == {"truncated_tar"}
    assert bad.get_column("image")[0] == full.filter(pl.col("doc_id") == bad.get_column("doc_id")[0]).get_column("image")[0]
    assert reader.stats["errors"] == {"truncated_tar": 1}


def test_truncated_gzip_shard_keeps_the_samples_before_the_cut(tmp_path, pair_shard):
    gz = gzip.compress(pair_shard.read_bytes())
    cut = gz[: len(gz) // 2]
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(cut)
    # The tar bytes a gzip decoder gets back from the first half of the stream, and the samples
    # (members grouped by key, in order) whose every member lies before that point.
    recovered = len(zlib.decompressobj(wbits=31).decompress(cut))
    members = _members_of(pair_shard)
    samples: dict[str, list[tarfile.TarInfo]] = {}
    for m in members:
        samples.setdefault(m.name.split(".", 1)[0], []).append(m)
    keys = list(samples)
    assert len(keys) == 6
    intact = [key for key in keys if all(m.offset_data + m.size <= recovered for m in samples[key])]
    k = len(intact)
    assert 0 < k < len(keys) and intact == keys[:k]
    # The cut falls inside a member's data, in sample k.
    damaged = next(m for m in members if m.offset_data + m.size > recovered)
    assert damaged.offset_data < recovered and damaged.name.startswith(keys[k] + ".")

    reader = interleaf.read(path)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"truncated_tar": 1}
    assert reader.stats["documents"] == k + 1
    good = df.filter(pl.col("error").is_null())
    assert good.get_column("doc_id").unique(maintain_order=True).to_list() == keys[:k]
    assert good.get_column("doc_index").unique(maintain_order=True).to_list() == list(range(k))
    with tarfile.open(pair_shard) as t:
        data = {m.name: t.extractfile(m).read() for m in members}
    for key, ms in list(samples.items())[:k]:
        doc = good.filter(pl.col("doc_id") == key)
        image = next(data[m.name] for m in ms if m.name.endswith((".jpg", ".png")))
        assert doc.get_column("kind").to_list() == ["image", "text"]
        assert doc.get_column("image")[0] == image
        assert doc.get_column("text")[1] == data[f"{key}.txt"].decode()
        assert json.loads(doc.get_column("meta")[0]) == json.loads(data[f"{key}.json"])
    bad = df.filter(pl.col("error").is_not_null())
    assert bad.get_column("doc_id").unique().to_list() == [keys[k]]
    assert bad.get_column("doc_index").unique().to_list() == [k]
    assert bad.get_column("error").struct.field("kind").unique().to_list() == ["truncated_tar"]
    assert bad.get_column("error").struct.field("message")[0].startswith(f"{damaged.name}:")
    assert df.get_column("doc_id").unique(maintain_order=True).to_list() == keys[: k + 1]  # nothing after the cut


def test_corrupt_header_stops_the_shard_but_not_the_read(tmp_path, pair_shard):
    data = bytearray(pair_shard.read_bytes())
    third = _members_of(pair_shard)[6]
    data[third.offset + 148 : third.offset + 156] = b"0000000\0"  # wrong checksum
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    reader = interleaf.read([bad, pair_shard])
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"corrupt_tar": 1}
    assert df.filter(pl.col("source") == str(pair_shard)).get_column("error").null_count() == 12
    assert df.filter(pl.col("source") == str(bad), pl.col("error").is_null()).get_column("doc_id").n_unique() == 2


def test_member_without_partner_invalid_utf8_and_duplicate_extension(tmp_path):
    path = write_tar(
        tmp_path / "odd.tar",
        [
            ("a.jpg", b"\xff\xd8\xffA"),
            ("b.txt", b"caption without image"),
            ("c.jpg", b"\xff\xd8\xffC"),
            ("c.txt", b"caf\xe9 au lait"),
            ("d.jpg", b"\xff\xd8\xffD"),
            ("d.txt", b"first"),
            ("d.txt", b"second"),
            ("e.jpg", b"\xff\xd8\xffE"),
            ("e.txt", b"fine"),
        ],
    )
    reader = interleaf.read(path)
    df = pl.concat(list(reader))
    errors = {r["doc_id"]: r["error"]["kind"] for r in df.filter(pl.col("error").is_not_null()).iter_rows(named=True)}
    assert errors == {"a": "missing_partner", "b": "missing_partner", "c": "invalid_utf8", "d": "duplicate_member"}
    assert df.filter(pl.col("doc_id") == "c", pl.col("kind") == "text").get_column("text")[0] == "caf\ufffd au lait"
    assert df.filter(pl.col("doc_id") == "d", pl.col("kind") == "text").get_column("text")[0] == "first"
    assert df.filter(pl.col("doc_id") == "e").get_column("error").null_count() == 2
    assert reader.stats["errors"] == {"missing_partner": 2, "invalid_utf8": 1, "duplicate_member": 1}
    assert reader.stats["documents"] == 5


def test_a_json_member_with_a_lone_surrogate_escape_keeps_its_metadata(tmp_path):
    # JavaScript writes lone surrogates when it cuts a string inside a pair; Python's json reads
    # them, serde_json refuses them. The metadata is kept with U+FFFD and the sample flagged.
    meta = b'{"title": "cut \\ud83d", "url": "http://x"}'
    path = write_tar(tmp_path / "s.tar", [("a.jpg", b"\xff\xd8\xffA"), ("a.json", meta), ("a.txt", b"a caption")])
    reader = interleaf.read(path)
    df = pl.concat(list(reader))
    assert json.loads(df.get_column("meta")[0])["title"] == "cut \ufffd"
    assert df.get_column("text").drop_nulls().to_list() == ["a caption"]
    assert df.get_column("error")[0]["kind"] == "invalid_utf8" and "surrogate" in df.get_column("error")[0]["message"]
    assert reader.stats["errors"] == {"invalid_utf8": 1}


def test_oversized_member_is_skipped_with_an_error(tmp_path):
    path = write_tar(tmp_path / "big.tar", [("a.jpg", b"\xff\xd8\xff" + b"x" * 5000), ("a.txt", b"big"), ("b.jpg", b"\xff\xd8\xff"), ("b.txt", b"small")])
    reader = interleaf.read(path, max_member_bytes=1000)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"member_too_large": 1}
    assert df.filter(pl.col("doc_id") == "b").get_column("error").null_count() == 2


@pytest.mark.parametrize("fmt", [("--format=gnu",), ("--format=pax", "--sparse-version=0.0"), ("--format=pax", "--sparse-version=0.1"), ("--format=pax", "--sparse-version=1.0")])
def test_gnu_sparse_members_read_as_webdataset_reads_them(tmp_path, fmt):
    """Sparse members (GNU tar --sparse: the old GNU header and its extension blocks, PAX 0.0,
    0.1 and 1.0) are files with their holes as zeros, named by their real name, as Python's
    tarfile gives them to webdataset; the samples after them are all read."""
    import shutil
    import subprocess

    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    src = tmp_path / "src"
    src.mkdir()
    for k in ("000", "002"):
        (src / f"{k}.jpg").write_bytes(b"\xff\xd8\xff" + k.encode())
        (src / f"{k}.txt").write_text(f"caption {k}")
    with open(src / "001.bin", "wb") as f:  # 8 data regions: more than the old header's four
        for i in range(8):
            f.seek(i * 300_000)
            f.write(bytes([65 + i]) * 100)
        f.truncate(2_500_000)
    (src / "001.txt").write_text("caption 001")
    names = ["000.jpg", "000.txt", "001.bin", "001.txt", "002.jpg", "002.txt"]
    subprocess.run(["tar", "--sparse", *fmt, "-cf", str(tmp_path / "s.tar"), "-C", str(src), *names], check=True)
    with tarfile.open(tmp_path / "s.tar") as tf:
        assert tf.getmember("001.bin").issparse()  # else the sparse readers were never exercised
    ours, theirs = our_samples(tmp_path / "s.tar"), comparable(wds_samples(tmp_path / "s.tar"))
    assert [s["__key__"] for s in ours] == ["000", "001", "002"]
    assert ours == theirs
    assert ours[1]["bin"] == (src / "001.bin").read_bytes()
    reader = interleaf.read(tmp_path / "s.tar", max_member_bytes=1_000_000)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"member_too_large": 1}
    assert df.get_column("doc_id").unique(maintain_order=True).to_list() == ["000", "001", "002"]


def test_crafted_sparse_headers_are_errors_of_their_member_only(tmp_path):
    """A PAX 1.0 sparse member too short for its own map is corrupt_tar (no panic), and sparse
    records before a directory do not carry over to the file after it; stray GNU.sparse keys
    alone leave a file plain, as tarfile reads them."""
    import io

    def add(tf, name, data=b"", kind=tarfile.REGTYPE, pax=None):
        ti = tarfile.TarInfo(name)
        ti.type, ti.size, ti.pax_headers = kind, len(data), pax or {}
        tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    path = tmp_path / "c.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "a.txt", b"1\n0\n0\n", pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "10"})
        add(tf, "dir", kind=tarfile.DIRTYPE, pax={"GNU.sparse.map": "5,5", "GNU.sparse.size": "10"})
        add(tf, "b.txt", b"hello")
        add(tf, "c.txt", b"plain", pax={"GNU.sparse.major": "0", "GNU.sparse.minor": "1"})
    df = read_all(path)
    texts = dict(zip(df.get_column("doc_id"), df.get_column("text"), strict=True))
    assert texts["b"] == "hello" and texts["c"] == "plain"
    assert df.filter(pl.col("doc_id") == "a").get_column("error")[0]["kind"] == "corrupt_tar"


def test_a_sample_is_held_to_its_limits_as_a_whole(tmp_path):
    """A sample's members together may hold 8 times the member limit, and at most 65,536
    members: past either, members are not kept (one member_too_large error), what fits is,
    and the next sample reads whole."""
    jpg = b"\xff\xd8\xff" + b"x" * 300
    members = [("a.jpg", jpg), ("a.txt", b"cap")] + [(f"a.x{i}", b"y" * 400) for i in range(1, 11)] + [("a.x11", b"w")]
    members += [(f"m.e{i}", b"") for i in range(65_536 + 5)]  # MAX_SAMPLE_MEMBERS + 5
    members += [("b.jpg", jpg), ("b.txt", b"fine")]
    path = write_tar(tmp_path / "s.tar", members)
    reader = interleaf.read(path, max_member_bytes=500)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"member_too_large": 2}
    a = df.filter(pl.col("doc_id") == "a")
    assert a.get_column("error")[0]["message"].startswith('sample "a": its members come to over 4000 bytes')
    # 303 + 3 + 9 x 400 = 3906 bytes fit; x10 would make 4306; x11 (one byte) fits again.
    assert set(json.loads(a.get_column("meta")[0])["__extra__"]) == {*(f"x{i}" for i in range(1, 10)), "x11"}
    m = json.loads(df.filter(pl.col("doc_id") == "m").get_column("meta")[0])["__extra__"]
    assert len(m) == 65_536
    assert df.filter(pl.col("doc_id") == "b").get_column("error").null_count() == 2


def test_a_document_of_many_images_round_trips(tmp_path, sample_images):
    """A document we write as one sample (1,100 images, each its own member) reads back whole."""
    jpg = sample_images["chelsea.jpg"]
    rows = [{"doc_id": "big", "pos": i, "kind": "image", "image": jpg} for i in range(1100)] + [{"doc_id": "big", "pos": 1100, "kind": "text", "text": "t"}]
    out = interleaf.write(interleaf.schema.conform(pl.DataFrame(rows, infer_schema_length=None)), tmp_path / "w", format="webdataset")
    reader = interleaf.read(out[0])
    back = pl.concat(list(reader))
    assert reader.stats["errors"] == {} and back.filter(pl.col("kind") == "image").get_column("image").null_count() == 0
    assert back.height == 1101


def test_binary_extra_members_are_base64_and_round_trip(tmp_path):
    """Extra members that are not plain text (control bytes, invalid UTF-8) are kept as base64,
    never as JSON escapes six times their size, and are written back byte for byte."""
    zeros, text = b"\x00" * 3000, b"line one\nline\ttwo\r\n"
    path = write_tar(tmp_path / "x.tar", [("a.jpg", b"\xff\xd8\xffA"), ("a.txt", b"cap"), ("a.bin", zeros), ("a.meta", text)])
    df = read_all(path)
    extra = json.loads(df.get_column("meta")[0])["__extra__"]
    assert extra["meta"] == text.decode() and set(extra["bin"]) == {"base64"}
    assert len(df.get_column("meta")[0]) < 4500
    out = interleaf.write(interleaf.read(path), tmp_path / "out", format="webdataset")
    assert our_samples(out[0]) == our_samples(path)


def test_missing_shard_is_an_io_error_record(tmp_path, pair_shard):
    reader = interleaf.read([tmp_path / "nope.tar", pair_shard])
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"io": 1}
    assert df.get_column("doc_id").n_unique() == 7


def test_batches_never_split_documents(sample_dir):
    batches = list(interleaf.read(sample_dir / "comm.jsonl", batch_size=1))
    assert len(batches) == 4
    assert all(b.get_column("doc_id").n_unique() == 1 for b in batches)


def test_long_doc_ids_get_short_keys_and_round_trip(tmp_path, sample_images):
    """A doc_id too long for a file name (here 17 MiB, and 300 multi-byte characters) is
    written under a short key ending in a hash of the id; the id itself comes back from the
    sample's json, and the documents after it read too."""
    jpg = sample_images["chelsea.jpg"]
    ids = ["first", "x" * (17 << 20), "é" * 300, "after_long"]
    rows = []
    for i in ids:
        rows += [{"doc_id": i, "pos": 0, "kind": "image", "image": jpg}, {"doc_id": i, "pos": 1, "kind": "text", "text": "a cat"}]
    nodes = interleaf.schema.conform(pl.DataFrame(rows))
    out = interleaf.write(nodes, tmp_path / "w", format="webdataset")
    names = [m.name for m in tarfile.open(out[0])]
    assert max(len(n.encode()) for n in names) <= 170
    reader = interleaf.read(out[0])
    back = pl.concat(list(reader))
    assert reader.stats["errors"] == {}
    assert back.get_column("doc_id").unique(maintain_order=True).to_list() == ids


def test_a_json_member_with_nan_reads_as_python_json_reads_it(tmp_path, sample_images):
    """img2dataset-style metadata written by json.dumps holds NaN for a missing float: the sample
    keeps its image, caption and metadata (json.loads(meta) gives the float back), and a
    WebDataset written from it holds the same json."""
    meta = {"url": "http://x/y.jpg", "similarity": float("nan"), "width": 100, "peak": float("-inf")}
    data = sample_images["coffee.jpg"]
    shard = write_tar(tmp_path / "nan.tar", [("a.jpg", data), ("a.txt", b"a caption"), ("a.json", json.dumps(meta).encode())])
    reader = interleaf.read(shard)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {}
    assert df.get_column("image")[0] == data and df.get_column("text")[1] == "a caption"
    assert json.dumps(json.loads(df.get_column("meta")[0]), sort_keys=True) == json.dumps(meta, sort_keys=True)
    out = interleaf.write(df, tmp_path / "o", "webdataset")
    back = [s for s in wds_samples(out[0])]
    assert json.dumps(json.loads(back[0]["json"]), sort_keys=True) == json.dumps(meta, sort_keys=True)


def test_a_zstd_shard_with_a_long_window_is_refused_with_the_way_out(tmp_path, sample_images):
    """zstd --long gives frames whose window is over the decoder's 128 MiB limit: the read is
    refused (memory), with an error that says so and how to recompress; the read goes on."""
    import zstandard

    tar = write_tar(tmp_path / "a.tar", [("a.jpg", sample_images["coffee.jpg"]), ("a.txt", b"a caption")]).read_bytes()
    params = zstandard.ZstdCompressionParameters(window_log=28, write_content_size=False)
    long = zstandard.ZstdCompressor(compression_params=params)
    obj = long.compressobj()
    (tmp_path / "long.tar.zst").write_bytes(obj.compress(tar) + obj.flush())
    (tmp_path / "ok.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(tar))
    reader = interleaf.read([tmp_path / "long.tar.zst", tmp_path / "ok.tar.zst"])
    df = pl.concat(list(reader))
    err = df.get_column("error")[0]
    assert err["kind"] == "io"
    assert "the zstd stream needs a 256 MiB window, above the decoder's limit of 128 MiB (window log 27)" in err["message"]
    assert "recompress it without --long" in err["message"]
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == ["a caption"]
