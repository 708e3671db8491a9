"""Hostile and careless input: records that name files outside their root, devices and FIFOs,
bombs, names that collide, writes that would lose data, and arguments out of range. Every
input is built here; nothing outside the repository or tmp_path is read."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from pathlib import Path

import imagehash
import numpy as np
import polars as pl
import pytest
from conftest import encode, read_all, write_tar
from PIL import Image

import interleaf
from interleaf import _native, image
from interleaf.dedup import MinHasher, deduplicate, hash_clusters, phash

# --- records that read files ------------------------------------------------------------------


@pytest.fixture()
def tree(tmp_path, sample_images):
    """root/records.jsonl + root/images/ok.jpg, a secret beside root, a symlink out of root."""
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "images" / "ok.jpg").write_bytes(sample_images["coffee.jpg"])
    (tmp_path / "secret.txt").write_text("password=hunter2")
    (root / "images" / "link.jpg").symlink_to(tmp_path / "secret.txt")
    return root


def read_pairs(root: Path, images: list[str], **kw) -> pl.DataFrame:
    recs = [{"id": f"r{i}", "image": im, "caption": "c"} for i, im in enumerate(images)]
    path = root / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return read_all(path, **kw).filter(pl.col("kind") == "image")


def without_blocking(fn):
    """``fn()`` run in a thread, so that a read that blocks (a FIFO opened, /dev/zero read)
    fails this test instead of hanging the suite. A liveness check, not a speed check: the
    bound is generous and nothing is timed."""
    box: dict = {}

    def call():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = e

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(300)
    assert not t.is_alive(), "the read blocked: a FIFO or a device was opened"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_image_paths_must_resolve_inside_the_image_root(tree):
    secret = str(tree.parent / "secret.txt")
    names = ["images/ok.jpg", "../secret.txt", "images/../../secret.txt", secret, "images/link.jpg"]
    df = read_pairs(tree, names)
    kinds = [e and e["kind"] for e in df.get_column("error").to_list()]
    assert kinds == [None] + ["path_outside_root"] * 4
    assert df.get_column("image").to_list()[1:] == [None] * 4  # not a byte of the secret is read
    # An explicit image root confines the same way; allow_outside_root reads them.
    df = read_pairs(tree, names, image_root=tree, allow_outside_root=True)
    assert df.get_column("error").null_count() == 5
    assert df.get_column("image").to_list()[1] == b"password=hunter2"


def test_symlinks_that_stay_inside_the_root_are_followed(tree):
    # Relative paths are opened beneath the root by the kernel (openat2 on Linux); an absolute
    # symlink is refused there and must still be read through the general path when it lands inside.
    ok = (tree / "images" / "ok.jpg").read_bytes()
    (tree / "images" / "rel.jpg").symlink_to("ok.jpg")
    (tree / "images" / "abs.jpg").symlink_to(tree / "images" / "ok.jpg")
    (tree / "sub").mkdir()
    (tree / "sub" / "up.jpg").symlink_to("../images/ok.jpg")
    (tree / "images" / "escape.jpg").symlink_to("../../secret.txt")
    names = ["images/rel.jpg", "images/abs.jpg", "sub/up.jpg", "sub/../images/ok.jpg", "images/escape.jpg", "images/missing.jpg"]
    df = read_pairs(tree, names)
    assert df.get_column("image").to_list() == [ok] * 4 + [None, None]
    kinds = [e and e["kind"] for e in df.get_column("error").to_list()]
    assert kinds == [None] * 4 + ["path_outside_root", "missing_image"]
    assert str(tree / "images" / "missing.jpg") in df.get_column("error").to_list()[5]["message"]


def test_devices_fifos_and_folders_inside_the_root_are_never_opened(tree):
    os.mkfifo(tree / "images" / "fifo.jpg")
    (tree / "images" / "dir.jpg").mkdir()
    df = without_blocking(lambda: read_pairs(tree, ["images/fifo.jpg", "images/dir.jpg", "images", "."]))
    assert [e["kind"] for e in df.get_column("error").to_list()] == ["not_a_file"] * 4


def test_devices_fifos_and_folders_are_never_opened(tree):
    fifo = tree / "images" / "fifo.jpg"
    os.mkfifo(fifo)
    (tree / "images" / "dev.jpg").symlink_to("/dev/zero")
    (tree / "images" / "dir.jpg").mkdir()
    df = without_blocking(lambda: read_pairs(tree, ["images/fifo.jpg", "images/dir.jpg", "/dev/zero", "images/dev.jpg"], allow_outside_root=True))
    assert [e["kind"] for e in df.get_column("error").to_list()] == ["not_a_file"] * 4


def test_a_file_larger_than_the_member_limit_is_not_read(tree):
    (tree / "images" / "big.jpg").write_bytes(b"\xff" * 5000)
    df = read_pairs(tree, ["images/big.jpg", "images/ok.jpg"], max_member_bytes=4000)
    assert [e and e["kind"] for e in df.get_column("error").to_list()] == ["member_too_large", "member_too_large"]


def test_writer_prefixes_and_file_names_cannot_leave_the_destination(tmp_path, sample_dir):
    df = read_all(sample_dir / "pairs.jsonl")
    for bad in ("../up", "a/b", "..", ".hidden", ""):
        for fmt in ("webdataset", "parquet", "jsonl"):
            with pytest.raises(ValueError, match="plain file name"):
                interleaf.write(df, tmp_path / "out", fmt, prefix=bad)
    assert not (tmp_path / "up").exists() and not any(tmp_path.rglob("*.tar"))
    # ".." inside a name is a name (an input "part..1.jsonl" made a run fail at its write stage).
    for fmt in ("webdataset", "parquet", "jsonl"):
        written = interleaf.write(df, tmp_path / "ok", fmt, prefix="part..1")
        assert written and all(os.path.basename(w).startswith("part..1") and os.path.dirname(w) == str(tmp_path / "ok") for w in written)


# --- memory bounded by bytes ------------------------------------------------------------------


def test_batches_close_on_bytes_and_a_large_document_gets_its_own(tmp_path):
    import zstandard

    members = []
    for i, size in enumerate([3 << 20, 3 << 20, 1 << 10, 9 << 20, 1 << 10, 1 << 10]):
        members += [(f"{i:03d}.jpg", bytes(size)), (f"{i:03d}.txt", b"c")]
    raw = tmp_path / "big.tar"
    write_tar(raw, members)
    path = tmp_path / "big.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.read_bytes()))
    batches = list(interleaf.read(path, batch_size=100, max_batch_bytes=5 << 20))
    docs = [b.get_column("doc_index").unique(maintain_order=True).to_list() for b in batches]
    assert docs == [[0], [1, 2], [3], [4, 5]]
    sizes = [int(b.get_column("image").bin.size().sum()) for b in batches]
    assert all(s <= 5 << 20 for s, d in zip(sizes, docs, strict=True) if len(d) > 1)
    with pytest.raises(ValueError, match="max_batch_bytes"):
        interleaf.read(path, max_batch_bytes=0)


def _tar_header(name: str, size: int) -> bytes:
    """A ustar header whose size field holds `size` in GNU base-256 (any size fits)."""
    info = tarfile.TarInfo(name)
    h = bytearray(info.tobuf(format=tarfile.GNU_FORMAT)[:512])
    h[124:136] = bytes([0x80]) + size.to_bytes(11, "big")
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def test_a_header_that_claims_exabytes_is_an_error_not_an_abort(tmp_path):
    path = tmp_path / "liar.tar"
    path.write_bytes(_tar_header("000.jpg", 1 << 62) + b"\xff\xd8" * 3000)
    reader = interleaf.read(path, max_member_bytes=(1 << 63) - 1)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"truncated_tar": 1}
    assert df.get_column("error")[0]["kind"] == "truncated_tar"


def test_phash_dedup_of_many_copies_of_one_placeholder_stays_linear(tmp_path):
    blank = encode(Image.new("RGB", (64, 64), "white"), "PNG")
    n = 3000
    members = []
    for i in range(n):
        members += [(f"{i:05d}.png", blank), (f"{i:05d}.txt", f"caption {i}".encode())]
    write_tar(tmp_path / "blank.tar", members)
    summary = deduplicate(tmp_path / "blank.tar", tmp_path / "dd", method="phash")
    assert summary["documents"] == n and summary["kept_documents"] == 1 and summary["duplicate_documents"] == n - 1
    assert summary["phash"]["distinct_hash_pairs"] == 0
    dup = pl.read_parquet(tmp_path / "dd" / "duplicates.parquet")
    assert dup.height == n and set(dup.get_column("cluster_id")) == {0}
    # The clustering itself: 200,000 copies of one hash, no pair list.
    reps, pairs = hash_clusters(np.full(200_000, 0x8000_0000_0000_0000, dtype=np.uint64))
    assert pairs == 0 and not reps.any()


# --- wrong results ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (64, 64), (1000, 1000)])
def test_phash_of_uniform_and_striped_images_equals_imagehash(size):
    w, h = size
    images = [
        Image.new("L", size, 255),
        Image.new("L", size, 128),
        Image.new("L", size, 0),
        Image.new("RGB", size, (200, 30, 40)),
        Image.new("RGBA", size, (10, 200, 30, 128)),
        Image.fromarray(np.tile(np.arange(h, dtype=np.uint8)[:, None] * 3, (1, w))),  # horizontal stripes
        Image.fromarray(np.tile(np.arange(w, dtype=np.uint8)[None, :] * 5, (h, 1))),  # vertical stripes
    ]
    blobs, want = [], []
    for im in images:
        for fmt in ("PNG", "JPEG"):
            if fmt == "JPEG" and im.mode == "RGBA":
                continue
            b = encode(im, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
            blobs.append(b)
            want.append(str(imagehash.phash(Image.open(io.BytesIO(b)))))
    got = phash(blobs).get_column("hex").to_list()
    assert got == want
    assert got[0] == "8000000000000000"  # blank placeholder images cluster


def test_member_names_that_differ_only_in_invalid_utf8_stay_apart(tmp_path):
    import webdataset as wds

    path = tmp_path / "names.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as t:
        for name, data in [("\udcffA.jpg", b"\xff\xd8\xffone"), ("\udcffA.txt", b"one"), ("\udcfeA.jpg", b"\xff\xd8\xfftwo"), ("\udcfeA.txt", b"two")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    df = read_all(path)
    assert df.get_column("doc_id").unique(maintain_order=True).to_list() == ["\\xffA", "\\xfeA"]
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == ["one", "two"]
    assert len(list(wds.WebDataset(str(path), shardshuffle=False))) == 2  # as webdataset groups them


def test_large_integer_ids_keep_their_exact_text(tmp_path):
    path = tmp_path / "ids.jsonl"
    path.write_text(f'{{"id": {10**30}, "caption": "a", "image": "http://x/a.jpg"}}\n{{"id": {10**30 + 1}, "caption": "b", "image": "http://x/b.jpg"}}\n{{"id": 7, "caption": "c", "image": "http://x/c.jpg"}}\n')
    ids = read_all(path).get_column("doc_id").unique(maintain_order=True).to_list()
    assert ids == [str(10**30), str(10**30 + 1), "7"]


def test_a_byte_order_mark_does_not_cost_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"id": "a", "caption": "x", "image": "http://x/a.jpg"}\n{"id": "b", "caption": "y", "image": "http://x/b.jpg"}\n')
    reader = interleaf.read(path)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {} and df.get_column("doc_id").unique(maintain_order=True).to_list() == ["a", "b"]


@pytest.mark.parametrize("name", ["empty.tar", "empty.tar.gz", "empty.jsonl.gz"])
def test_an_empty_archive_is_counted_as_an_error(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    reader = interleaf.read(tmp_path / name)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"empty_file": 1} and reader.stats["files"] == 1
    assert df.get_column("error")[0]["kind"] == "empty_file"
    (tmp_path / "empty.jsonl").write_bytes(b"")  # a plain empty jsonl is zero records, no error
    assert interleaf.read(tmp_path / "empty.jsonl").stats["errors"] == {}


def test_empty_and_unknown_image_bytes_round_trip_through_webdataset(tmp_path):
    df = pl.DataFrame(
        {
            "doc_id": ["empty", "empty", "odd", "odd"],
            "pos": [0, 1, 0, 1],
            "kind": ["image", "text", "image", "text"],
            "image": [b"", None, b"not an image", None],
            "text": [None, "caption", None, ""],
        },
        schema_overrides={"image": pl.Binary},
    )
    shards = interleaf.write(df, tmp_path / "out", "webdataset")
    reader = interleaf.read(shards)
    back = pl.concat(list(reader))
    assert reader.stats["errors"] == {}
    assert back.get_column("image").to_list() == [b"", None, b"not an image", None]
    assert back.get_column("text").to_list() == [None, "caption", None, ""]


# --- writes that lose data ----------------------------------------------------------------------


def test_a_failed_write_leaves_the_previous_output_and_no_temporary_file(tmp_path, sample_dir):
    df = read_all(sample_dir / "pairs.jsonl")
    for fmt, name in (("parquet", "x.parquet"), ("jsonl", "x.jsonl")):
        good = interleaf.write(df, tmp_path / name, fmt)[0]
        before = Path(good).read_bytes()

        def failing():
            yield df
            raise RuntimeError("killed")

        with pytest.raises(RuntimeError, match="killed"):
            interleaf.write(failing(), tmp_path / name, fmt, overwrite=True)
        assert Path(good).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["x.jsonl", "x.parquet"]


def test_a_killed_convert_reruns_to_identical_shards(tmp_path):
    """kill -9 once the first shard is being written (not at a fixed time: the import alone can
    outlast one), then a rerun: the same shards as a run never killed, no temporary left."""
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i:06d}", "image": f"http://x/{i}.jpg", "caption": f"caption number {i} " * 12}) + "\n" for i in range(100_000)))
    out = tmp_path / "out"

    def cmd(dest: Path) -> list[str]:
        return [sys.executable, "-m", "interleaf.cli", "convert", str(src), str(dest), "--to", "webdataset", "--max-count", "500", "--quiet"]

    proc = subprocess.Popen(cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not (out.is_dir() and any(out.iterdir())):
        time.sleep(0.005)
    assert proc.poll() is None, "convert finished before it could be killed"
    proc.kill()
    proc.wait()
    partial = sorted(p.name for p in out.iterdir())
    assert len([n for n in partial if n.endswith(".tar")]) < 200, partial  # killed part-way
    subprocess.run([*cmd(out), "--overwrite"], check=True, capture_output=True)
    subprocess.run(cmd(tmp_path / "clean"), check=True, capture_output=True)
    got = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    assert len(got) == 200 and got == {p.name: p.read_bytes() for p in (tmp_path / "clean").glob("*.tar")}
    assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".lock"))]


def test_a_non_empty_destination_needs_overwrite_which_removes_stale_shards(tmp_path, sample_dir):
    src = sample_dir / "pairs.jsonl"
    out = tmp_path / "out"
    many = interleaf.write(interleaf.read(src), out, "webdataset", max_count=2)
    with pytest.raises(ValueError, match="overwrite"):
        interleaf.write(interleaf.read(src), out, "webdataset", max_count=5)
    few = interleaf.write(interleaf.read(src), out, "webdataset", max_count=5, overwrite=True)
    assert len(few) < len(many)
    assert sorted(str(p) for p in out.glob("*.tar")) == sorted(few)
    assert read_all(out).get_column("doc_index").n_unique() == read_all(src).get_column("doc_index").n_unique()
    interleaf.write(interleaf.read(src), tmp_path / "n.parquet", "parquet")
    with pytest.raises(FileExistsError, match="overwrite"):
        interleaf.write(interleaf.read(src), tmp_path / "n.parquet", "parquet")


def test_an_output_that_is_a_file_or_holds_a_symlink_is_handled_safely(tmp_path, sample_dir):
    """A run or write whose destination is a file says so in words; overwriting a run folder
    whose kept/ is a symbolic link removes the link, never the folder it points to."""
    src = sample_dir / "pairs.jsonl"
    afile = tmp_path / "afile"
    afile.write_text("keep")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        interleaf.run("pairs-basic", src, afile, progress=False)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        interleaf.write(interleaf.read(src), afile / "x.jsonl", "jsonl")
    assert afile.read_text() == "keep"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept").symlink_to(victim)
    interleaf.run("pairs-basic", src, out, overwrite=True, progress=False)
    assert (victim / "precious.txt").read_text() == "keep" and sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert not (out / "kept").is_symlink() and any((out / "kept").iterdir())


def test_converting_a_folder_into_itself_is_refused(tmp_path, sample_dir):
    src = tmp_path / "data"
    interleaf.write(read_all(sample_dir / "pairs.jsonl"), src, "webdataset", max_count=2)
    with pytest.raises(ValueError, match="overlaps the source"):
        interleaf.write(interleaf.read(src), src, "webdataset", overwrite=True)
    from interleaf.cli import main

    assert main(["convert", str(src), str(src / "inner"), "--to", "webdataset", "--quiet"]) == 2


def test_two_writers_into_one_destination_get_a_clear_error(tmp_path, sample_dir):
    df = read_all(sample_dir / "pairs.jsonl")
    held = _native.NativeShardWriter(str(tmp_path), "shard")
    with pytest.raises(ValueError, match="another writer"):
        interleaf.write(df, tmp_path, "webdataset")
    held.finish()
    del held
    lock = _native.NativeWriteLock(str(tmp_path), "n.parquet")
    with pytest.raises(ValueError, match="another writer"):
        interleaf.write(df, tmp_path / "n.parquet", "parquet")
    lock.release()
    assert interleaf.write(df, tmp_path / "n.parquet", "parquet")
    interleaf.write(df, tmp_path, "webdataset", overwrite=True)
    interleaf.write(df, tmp_path / "n.jsonl", "jsonl")
    # Lock files go with their locks: nothing but the outputs is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.jsonl", "n.parquet", "shard-000000.tar"]


def test_extra_members_with_path_separators_are_written_and_read_back(tmp_path, sample_images):
    members = [("000.jpg", sample_images["coffee.jpg"]), ("000.txt", b"ok"), ("000.json", json.dumps({"__extra__": {"x/../../etc": "boom", "a/b": "c"}}).encode())]
    members += [("001.jpg", sample_images["coffee.jpg"]), ("001.txt", b"fine")]
    write_tar(tmp_path / "in.tar", members)
    shards = interleaf.write(interleaf.read(tmp_path / "in.tar"), tmp_path / "out", "webdataset")
    back = read_all(shards)
    assert back.get_column("doc_id").unique(maintain_order=True).to_list() == ["000", "001"]
    extra = json.loads(back.get_column("meta")[0])["__extra__"]
    assert extra == {"x_.._.._etc": "boom", "a_b": "c"}
    with tarfile.open(shards[0]) as t:
        assert all(".." not in Path(n).parts and not n.startswith("/") for n in t.getnames())


# --- clear errors -------------------------------------------------------------------------------


def test_arguments_out_of_range_are_value_errors_naming_them(tmp_path, sample_dir):
    src = sample_dir / "pairs.jsonl"
    cases = [
        (lambda: interleaf.read(src, batch_size=-1), "batch_size"),
        (lambda: interleaf.read(src, max_member_bytes=-5), "max_member_bytes"),
        (lambda: interleaf.write(read_all(src), tmp_path / "w", "webdataset", max_count=-1), "max_count"),
        (lambda: MinHasher(num_perm=-1), "num_perm"),
        (lambda: MinHasher(threads=100_000), "threads"),
        (lambda: phash([b"x"], hash_size=2**31), "hash_size"),
        (lambda: phash([b"x"], max_pixels=-1), "max_pixels"),
        (lambda: image.preprocess([b"x"], size=20000), "4096"),
        (lambda: interleaf.set_threads(100_000), "threads"),
        (lambda: deduplicate(src, tmp_path / "d", method="phash", radius=-1), "radius"),
        (lambda: deduplicate(src, tmp_path / "d", threshold=2.0), "threshold"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()
    assert not (tmp_path / "d").exists()  # refused before anything was read or written


def test_cli_errors_are_one_line_not_tracebacks(tmp_path, sample_dir):
    cmd = [sys.executable, "-m", "interleaf.cli"]
    r = subprocess.run([*cmd, "dedup", str(sample_dir / "pairs.jsonl"), "--out", str(tmp_path / "d"), "--method", "phash", "--radius", "-1"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "radius" in r.stderr
    r = subprocess.run([*cmd, "inspect", str(tmp_path / "nonexistent")], capture_output=True, text=True)
    assert r.returncode == 2 and "input not found" in r.stderr and "container" not in r.stderr


def test_a_gif_frame_larger_than_its_screen_is_image_too_large():
    # Logical screen 1x1; one frame that claims 60000 x 60000.
    gif = b"GIF89a" + (1).to_bytes(2, "little") * 2 + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    gif += b"\x2c" + (0).to_bytes(2, "little") * 2 + (60000).to_bytes(2, "little") * 2 + b"\x00"
    gif += b"\x02\x02\x44\x01\x00\x3b"
    err = image.stats([gif]).get_column("error")[0]
    assert err["kind"] == "image_too_large", err


# --- conventions --------------------------------------------------------------------------------


def test_a_tar_file_name_writes_one_shard_and_a_pattern_names_many(tmp_path, sample_dir):
    df = read_all(sample_dir / "pairs.jsonl")
    one = interleaf.write(df, tmp_path / "out-000000.tar", "webdataset")
    assert one == [str(tmp_path / "out-000000.tar")] and (tmp_path / "out-000000.tar").is_file()
    gz = interleaf.write(df, tmp_path / "one.tar.gz", "webdataset")
    assert gz == [str(tmp_path / "one.tar.gz")] and gzip.open(gz[0]).read(1)
    many = interleaf.write(df, tmp_path / "p" / "part-%04d.tar", "webdataset", max_count=3)
    assert [Path(p).name for p in many] == [f"part-{i:04d}.tar" for i in range(len(many))] and len(many) > 1
    with pytest.raises(ValueError, match="more than one shard"):
        interleaf.write(df, tmp_path / "small.tar", "webdataset", max_count=2)
    assert read_all(one).drop("source").equals(read_all(many).drop("source"))


def test_a_record_with_many_nodes_holds_its_metadata_once(tmp_path):
    """A document's id and metadata are shared by its rows: one record of 5,000 nodes with a
    200 KB field (a gigabyte if copied per row) is read, and converted, in bounded memory."""
    path = tmp_path / "o.jsonl"
    rec = {"id": "d" * 100, "texts": ["a"] * 5000, "images": [None] * 5000, "notes": "x" * 200_000}
    path.write_text(json.dumps({"id": "ok", "texts": ["fine"], "images": [None]}) + "\n" + json.dumps(rec) + "\n")
    # The child's own peak (VmHWM: ru_maxrss would carry the forking parent's across exec).
    code = (
        "import sys, interleaf\n"
        "rows = sum(b.height for b in interleaf.read(sys.argv[1]))\n"
        "interleaf.write(interleaf.read(sys.argv[1]), sys.argv[2], 'obelics')\n"
        "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "print(rows, hwm // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "w" / "o.jsonl")], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(Path(interleaf.__file__).parent.parent)})
    rows, peak_mib = map(int, out.stdout.split())
    assert rows == 5001
    assert peak_mib < 600, f"peak RSS {peak_mib} MiB"
    back = read_all(tmp_path / "w" / "o.jsonl")
    assert back.filter(pl.col("doc_id") == "d" * 100).height == 5000


def test_character_shingles_of_a_long_repetitive_text_at_a_large_n_stay_small():
    """Every n-character window was built as a string before duplicates went: 40,000 chars
    at n=20,000 took 400 MB (and a longer text aborted the process). Only the distinct
    shingles (two here) are allocated now, for shingles() and for datasketch-mode MinHash."""
    code = (
        "from interleaf.dedup import MinHasher, shingles\n"
        "t = 'ab' * 20000\n"
        "assert shingles(t, 20000, unit='char') == [t[:20000], t[1:20001]]\n"
        "MinHasher(n=20000, unit='char', mode='datasketch').signatures([t])\n"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(Path(interleaf.__file__).parent.parent)})
    assert int(out.stdout) < 300, f"peak RSS {out.stdout.strip()} MiB"


def test_a_line_of_millions_of_small_values_is_refused_before_parsing(tmp_path):
    """Parsed JSON takes ~32 bytes per value: a 17 MB line of 8.4 million zeros (~270 MB
    parsed, and a 256 MiB line would be 4 GB) is line_too_long, and the next line reads."""
    n = (8 << 20) + 10
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "bomb", "caption": "c", "v": [' + ",".join(["0"] * n) + "]}\n" + json.dumps({"id": "ok", "caption": "fine", "image": "http://x/a.jpg"}) + "\n")
    reader = interleaf.read(path, format="pairs")
    df = pl.concat(list(reader))
    bomb = df.filter(pl.col("doc_id") == "p.jsonl:1").get_column("error")[0]
    assert bomb["kind"] == "line_too_long" and "too many to parse" in bomb["message"]
    assert df.filter(pl.col("doc_id") == "ok").get_column("text").to_list() == [None, "fine"]


def test_nested_arrays_without_commas_are_refused_before_parsing(tmp_path):
    """Single-element arrays nested 100 deep have no commas but take ~160 bytes each parsed:
    a 16 MB line of them took 2.6 GB. Over 1 Mi arrays and objects is line_too_long, in a JSON
    line and in a WebDataset json member alike."""
    nest = "[" * 100 + "0" + "]" * 100
    blob = "[" + " ".join([nest] * ((1 << 20) // 100 + 10)) + "]"  # spaces: no commas
    path = tmp_path / "n.jsonl"
    path.write_text('{"id": "bomb", "caption": "c", "v": ' + blob + "}\n" + json.dumps({"id": "ok", "caption": "fine", "image": "http://x/a.jpg"}) + "\n")
    df = read_all(path, format="pairs")
    bomb = df.filter(pl.col("doc_id") == "n.jsonl:1").get_column("error")[0]
    assert bomb["kind"] == "line_too_long" and "arrays and objects" in bomb["message"]
    assert df.filter(pl.col("doc_id") == "ok").get_column("text").to_list() == [None, "fine"]
    tar = write_tar(tmp_path / "n.tar", [("a.jpg", b"\xff\xd8\xff"), ("a.json", ('{"v": ' + blob + "}").encode()), ("a.txt", b"kept")])
    df = read_all(tar)
    assert df.get_column("error")[0]["kind"] == "line_too_long" and df.get_column("text").drop_nulls().to_list() == ["kept"]


# --- public APIs given hostile arguments --------------------------------------------------------


def test_polars_expressions_on_unsupported_dtypes_raise_instead_of_aborting():
    """xxh3_64 and hamming on a Categorical column raised a panic outside polars' unwinding
    guard (the process aborted); an empty column against a literal read out of bounds."""
    code = (
        "import polars as pl, interleaf.polars as ilp\n"
        "lf = pl.LazyFrame({'t': pl.Series(['a'], dtype=pl.Categorical), 'h': pl.Series([1], dtype=pl.UInt64)})\n"
        "for e in (ilp.xxh3_64('t'), ilp.hamming('t', 'h')):\n"
        "    try:\n"
        "        lf.select(e).collect()\n"
        "    except pl.exceptions.PolarsError as err:\n"
        "        print(type(err).__name__)\n"
        "empty = pl.DataFrame({'h': pl.Series([], dtype=pl.UInt64)})\n"
        "print(empty.select(ilp.hamming('h', pl.lit(3, dtype=pl.UInt64))).height)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(interleaf.__file__).parent.parent)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["ComputeError", "ComputeError", "0"]


def test_dedup_and_search_arguments_are_checked_before_any_work():
    from interleaf import search, signals
    from interleaf.dedup import lsh_clusters, lsh_params, near_duplicates

    for bad in ({"num_perm": 0}, {"num_perm": 10**9}, {"threshold": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            lsh_params(**{"threshold": 0.5, "num_perm": 128, **bad})
    # Banding is refused before the (missing) source is even opened.
    with pytest.raises(ValueError, match="bands"):
        deduplicate("/nonexistent/x.jsonl", "/nonexistent/out", bands=7, rows=20)
    sigs = MinHasher(num_perm=16).signatures(["a b c d e f", "a b c d e g"])
    with pytest.raises(TypeError, match="integer"):
        lsh_clusters(sigs.astype(np.float64))
    with pytest.raises(ValueError, match="NaN is refused"):
        lsh_clusters(sigs, ranking=[np.nan, 1.0])
    with pytest.raises(TypeError, match="uint64"):
        near_duplicates(np.array([1.5, 2.0]))
    with pytest.raises(ValueError, match="fewer"):
        signals.top_k(np.ones((2000, 4)), np.ones((10, 4)), 1 << 20)
    idx = search.Index(4, metric="ip", device="cpu")
    v = np.eye(4, dtype=np.float32)
    for ids, err in (([-1, 1, 2, 3], ValueError), (np.array([2**63, 1, 2, 3], dtype=np.uint64), ValueError), ([0.5, 1, 2, 3], TypeError)):
        with pytest.raises(err, match="ids"):
            idx.add(v, ids=ids)
    assert len(idx) == 0
    from interleaf.dedup import shingles

    with pytest.raises(ValueError, match="n must be"):
        shingles("a b c", n=-1)
    with pytest.raises(ValueError, match="fill"):
        image.PreprocessConfig.open_clip(fill=300)


def test_nan_inputs_are_nulls_or_row_errors_never_numbers():
    from interleaf import models, signals

    coh = signals.text_coherence(np.full((4, 8), np.nan, np.float32), [0, 4])
    assert coh.row(0) == (None, None, None)  # min_cos was +inf
    e = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    e[1] = np.nan
    assert signals.text_coherence(e, [0, 4])["min_cos"][0] is None
    clip = models.load("tests/fixtures/models/clip-tiny", kind="clip")
    h, w = clip.preprocess_config.output_shape
    px = np.zeros((3, 3, h, w), dtype=np.float32)
    px[1, 0, 0, 0] = np.nan
    emb, err = clip.embed_images(px)
    assert err[1]["kind"] == "bad_argument" and np.isnan(emb[1]).all()
    assert err[0] is None and err[2] is None and np.isfinite(emb[[0, 2]]).all()
    with pytest.raises(TypeError, match="item 1 is int"):
        image.stats([b"\xff\xd8", 123])
    assert image.stats([bytearray(b"not an image")])["error"][0]["kind"] == "unknown_image_format"


def test_malformed_arguments_and_configs_are_named_errors(tmp_path):
    import shutil

    from interleaf import models

    with pytest.raises(TypeError, match="out must be a numpy array"):
        image.preprocess([b"x"], out=[1])
    d = tmp_path / "clip"
    shutil.copytree("tests/fixtures/models/clip-tiny", d)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "vision_config": 5}))
    with pytest.raises(models.ModelDirectoryError, match="vision_config must be an object"):
        models.load(d, kind="clip")


def test_the_one_confined_local_read_serves_tables_predictions_and_image_folders(tmp_path):
    """interleaf.io.local.read_confined, which the LLM commands, eval comm and eval clip-i share:
    a file inside is read; a link out, a FIFO (never opened: no hang), a folder, a missing file,
    a file over the limit and a NUL in the name each say why."""
    from interleaf.io.local import read_confined

    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.bin").write_bytes(b"12345")
    (tmp_path / "secret").write_bytes(b"s")
    (root / "out").symlink_to(tmp_path / "secret")
    os.mkfifo(root / "fifo")
    cases = {
        "ok.bin": (b"12345", None),
        "out": (None, "resolves outside the root"),
        "fifo": (None, "not a regular file"),
        ".": (None, "not a regular file"),
        "gone": (None, "not found"),
        "bad\0name": (None, "embedded null byte"),
    }
    for name, want in cases.items():
        assert read_confined(root / name, root, 100, root_name="the root") == want, name
    assert read_confined(root / "ok.bin", root, 4) == (None, "5 bytes, over the 4-byte limit")
    assert read_confined(tmp_path / "secret", None, 100) == (b"s", None)  # no root: anywhere


# ---------------------------------------------------------- second round: CPU and memory bombs


def progressive_jpeg(side: int, ac_scans: int) -> bytes:
    """A valid grey progressive JPEG of ``side`` x ``side`` whose pixels are all mid-grey: a DC
    scan, then ``ac_scans`` AC scans that hold nothing but end-of-band runs (a few bytes each,
    a full pass over every block for libjpeg)."""

    def seg(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    def bits(values: list[tuple[int, int]]) -> bytes:
        """(value, width) codes, MSB first, padded with 1 bits, 0xFF stuffed."""
        s = "".join(format(v, f"0{w}b") for v, w in values)
        s += "1" * (-len(s) % 8)
        out = bytearray()
        for i in range(0, len(s), 8):
            out += b"\xff\x00" if s[i : i + 8] == "11111111" else bytes([int(s[i : i + 8], 2)])
        return bytes(out)

    blocks = ((side + 7) // 8) ** 2
    head = b"\xff\xd8" + seg(0xDB, bytes([0]) + bytes([1] * 64)) + seg(0xC2, bytes([8]) + struct.pack(">HH", side, side) + bytes([1, 1, 0x11, 0]))
    head += seg(0xC4, bytes([0x00, 1] + [0] * 15 + [0])) + seg(0xC4, bytes([0x10, 1] + [0] * 15 + [0xE0]))
    dc = seg(0xDA, bytes([1, 1, 0x00, 0, 0, 0])) + bits([(0, 1)] * blocks)  # every DC difference 0
    runs = (blocks + 32766) // 32767  # EOB runs of 2^15 - 1 blocks, enough to cover them all
    ac = seg(0xDA, bytes([1, 1, 0x00, 1, 63, 0x00])) + bits([(0, 1), ((1 << 14) - 1, 14)] * runs)
    return head + dc + ac * ac_scans + b"\xff\xd9"


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding():
    ok, bomb = progressive_jpeg(64, 10), progressive_jpeg(64, 501)  # the limit: 500 scans
    assert Image.open(io.BytesIO(bomb)).convert("L").getextrema() == (128, 128)  # valid: Pillow decodes it
    table = image.stats([ok, bomb])
    assert table.get_column("width").to_list() == [64, 64]  # refused pixels, the header's size
    assert table.get_column("blur").to_list()[1] is None
    err = table.get_column("error").to_list()[1]
    assert err["kind"] == "image_too_large" and "scans" in err["message"]
    assert phash([bomb]).get_column("error").to_list()[0]["kind"] == "image_too_large"


def test_bmp_sizes_the_decoder_cannot_read_are_named():
    # The image crate called a 100000x100000 BMP a format error (corrupt_image) and a 0x0 one
    # "too large"; Pillow refuses the first as a decompression bomb and cannot identify the other.
    def bmp(w: int, h: int) -> bytes:
        info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
        return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + b"\0" * 16

    errors = image.stats([bmp(100_000, 100_000), bmp(1, -(2**31)), bmp(0, 0), bmp(2, -2)]).get_column("error").to_list()
    assert [e and e["kind"] for e in errors] == ["image_too_large", "image_too_large", "corrupt_image", None]
    assert errors[0]["message"] == "100000x100000 = 10000000000 pixels exceeds the limit of 89478485"
    assert errors[2]["message"] == "Bmp header: the image is 0x0 pixels"
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bmp(100_000, 100_000)))


def test_a_jpeg_whose_scans_times_pixels_are_too_many_is_refused_before_decoding():
    # Under 500 scans, a large all-grey progressive file still cost 8.9 s per decode at 88 MP
    # and 499 scans: scans x pixels is bounded too (4e9).
    ok, bomb = progressive_jpeg(3000, 10), progressive_jpeg(3000, 499)  # 9 MP, a DC scan and the AC scans: 9.9e7 and 4.5e9
    table = image.stats([ok, bomb])
    assert table.get_column("width").to_list() == [3000, 3000]  # refused pixels, the header's size
    assert table.get_column("blur").to_list()[1] is None
    err = table.get_column("error").to_list()[1]
    assert err["kind"] == "image_too_large" and "500 scans of 3000x3000 pixels" in err["message"]
    assert image.stats([progressive_jpeg(1000, 499)]).get_column("error")[0] is None  # 5e8: decoded


def test_a_full_disk_names_the_file_being_written(tmp_path, monkeypatch):
    """A disk filled during a parquet write ended the run in a traceback (polars: "Invalid
    thrift: transport error"), or a bare "[Errno 28]" naming no file: either is an OSError
    naming it, the CLI's clean error; its temporary file is gone. Other errors pass unchanged."""
    import errno
    from types import SimpleNamespace

    from interleaf.io import atomic

    with pytest.raises(OSError, match=r"no space left on the device writing .*x\.parquet: \[Errno 28\]"), atomic.atomic_output(tmp_path / "x.parquet"):
        raise OSError(errno.ENOSPC, "Error writing bytes to file")
    monkeypatch.setattr(atomic.os, "statvfs", lambda _: SimpleNamespace(f_bavail=3, f_frsize=4096))
    with pytest.raises(OSError, match=r"writing .*y\.parquet: parquet: .*Invalid thrift") as got, atomic.atomic_output(tmp_path / "y.parquet") as tmp:
        tmp.write_bytes(b"PAR1")
        raise pl.exceptions.ComputeError("parquet: File out of specification: Invalid thrift: transport error")
    assert got.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    with pytest.raises(ValueError, match="^boom$"), atomic.atomic_output(tmp_path / "z.parquet"):
        raise ValueError("boom")


def test_a_link_to_itself_in_an_input_folder_is_its_files_error_not_the_commands(tmp_path):
    """``loop.jsonl -> loop.jsonl`` beside a good file: run, convert and dedup stopped with
    "Symlink loop" (the output checks resolved every input); it is that file's io error, as a
    dangling link is."""
    from interleaf.io.sources import check_out_apart, named_inputs

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_text(json.dumps({"id": "a", "caption": "fine", "image": "http://x/a.jpg"}) + "\n")
    (src / "loop.jsonl").symlink_to("loop.jsonl")
    paths = named_inputs(str(src))
    check_out_apart(tmp_path / "out", paths, [str(src)])
    reader = interleaf.read(str(src))
    written = interleaf.write(reader, str(tmp_path / "o.jsonl"), "jsonl")
    assert reader.stats["errors"] == {"io": 1} and len(written) == 1
    assert [d["doc_id"] for d in map(json.loads, open(written[0], encoding="utf-8"))][0] == "a"


def test_inputs_that_are_fifos_devices_or_broken_links_are_io_errors_never_opened(tmp_path):
    """A FIFO named as input blocked the run forever (/dev/zero looped); in a folder they were
    skipped without a count. Each is now its file's io error and the other files read."""
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": "a", "caption": "fine", "image": "http://x/a.jpg"}) + "\n")
    for name in ("b.jsonl", "d.parquet", "e.tar"):
        os.mkfifo(tmp_path / name)
    (tmp_path / "c.jsonl").symlink_to("/dev/zero")
    (tmp_path / "f.jsonl").symlink_to(tmp_path / "gone.jsonl")
    code = f"import interleaf, polars as pl; r = interleaf.read({str(tmp_path)!r}); df = pl.concat(list(r)); print(r.stats['errors'], df.filter(pl.col('doc_id') == 'a').height)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(Path(interleaf.__file__).parents[1])})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["{'io':", "5}", "2"]
    df = read_all(tmp_path / "b.jsonl")
    assert df.get_column("error")[0]["kind"] == "io" and "not a regular file" in df.get_column("error")[0]["message"]


def test_brace_ranges_count_down_and_are_bounded():
    from interleaf.io.sources import _expand_braces

    assert _expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert _expand_braces("x{3..1}.tar") == ["x3.tar", "x2.tar", "x1.tar"]  # webdataset counts down
    assert _expand_braces("a{0..1}b{08..10}") == ["a0b08", "a0b09", "a0b10", "a1b08", "a1b09", "a1b10"]
    assert _expand_braces("{10..08}") == ["10", "09", "08"]
    with pytest.raises(ValueError, match="over 1,000,000 files"):
        _expand_braces("x{0..999999999}.tar")  # was 3.6 GB of names, then a SystemError
    with pytest.raises(ValueError, match="over 1,000,000 files"):
        _expand_braces("{0..999}{0..999}{0..9}")


def test_long_and_non_utf8_file_names_are_read_or_are_their_own_error(tmp_path, sample_dir):
    """A 240-character input name made the run fail on its temporary file names (name too
    long); a name that is not UTF-8 aborted the whole run (the native reader takes UTF-8)."""
    from interleaf.pipeline import run

    src = tmp_path / "in"
    src.mkdir()
    data = (sample_dir / "pairs.jsonl").read_bytes()
    (src / ("a" * 240 + ".jsonl")).write_bytes(data)
    with open(os.path.join(os.fsencode(src), b"\xff\xfe.jsonl"), "wb") as f:
        f.write(data)
    out = tmp_path / "out"
    summary = run("pairs-basic", [str(src)], out, image_root=sample_dir, progress=False)
    assert summary["errors"] == {"io": 1}
    dropped = pl.read_parquet(out / "dropped" / "__.parquet")
    assert "not UTF-8" in dropped.get_column("detail")[0]
    long = [p.name for p in (out / "kept").iterdir() if p.name.startswith("aaa")]
    assert len(long) == 1 and len(long[0]) <= 126 and len(pl.read_ndjson(out / "kept" / long[0])) > 0
    # A rerun resumes (nothing to redo) rather than failing on the names.
    assert run("pairs-basic", [str(src)], out, image_root=sample_dir, progress=False)["stages"]["score"]["skipped"] == 2


def test_an_output_folder_inside_an_input_folder_is_refused_at_once(tmp_path, sample_dir, capsys):
    """The first run was accepted; the rerun then read the first run's outputs as inputs."""
    from interleaf.pipeline import run

    src = tmp_path / "in"
    src.mkdir()
    (src / "pairs.jsonl").write_bytes((sample_dir / "pairs.jsonl").read_bytes())
    with pytest.raises(ValueError, match="inside the input folder"):
        run("pairs-basic", [str(src)], src / "out", image_root=sample_dir, progress=False)
    assert not (src / "out").exists()
    with pytest.raises(ValueError, match="inside the input folder"):
        run("pairs-basic", [str(src)], src / "x" / "y" / "out", image_root=sample_dir, progress=False)
    assert not (src / "x").exists()  # nothing made in the user's folder, parents included
    # Given by a glob the first run goes ahead; a later read of the folder leaves the run's
    # outputs, its hidden files and its state out (they are not documents), and names them.
    run("pairs-basic", [str(src / "*.jsonl")], src / "out", image_root=sample_dir, progress=False)
    (src / ".partial.jsonl").write_bytes(b"{not json\n")
    assert interleaf.io.sources.expand(src) == [str(src / "pairs.jsonl")]
    assert "interleaf run: not read as input" in capsys.readouterr().err
    s = run("pairs-basic", [str(src)], tmp_path / "again", image_root=sample_dir, progress=False)
    assert s["documents"]["in"] == interleaf.read(src / "pairs.jsonl", image_root=sample_dir).__iter__().__next__().get_column("doc_index").n_unique()
    with pytest.raises(ValueError, match="output folder of an interleaf run .* name its kept/ folder"):
        interleaf.read(src / "out")


def test_a_png_icc_profile_bomb_is_not_inflated_by_a_header_read(tmp_path):
    """A 1x1 PNG whose iCCP chunk inflates to 200 MB: reading its header held ~900 MB under the
    image crate's default limits. Header reads now allocate at most 16 MiB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    co = zlib.compressobj(9)
    profile = b"".join(co.compress(b"\0" * (1 << 20)) for _ in range(200)) + co.flush()
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) + chunk(b"iCCP", b"bomb\0\0" + profile)
    png += chunk(b"IDAT", zlib.compress(b"\0\0\0\0")) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    code = (
        "import interleaf.image as im\n"
        f"d = open({str(tmp_path / 'bomb.png')!r}, 'rb').read()\n"
        "for header_only in (True, False):\n"
        "    t = im.stats([d], header_only=header_only)\n"
        "    assert t.get_column('width').to_list() == [1] and t.get_column('error').to_list() == [None], t\n"
        "print(int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(interleaf.__file__).parents[1])})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 400, f"peak {out.stdout.split()[-1]} MiB"


def test_a_record_naming_one_file_many_times_is_held_to_eight_times_the_file_limit(tmp_path):
    """A 110 KB line naming a 1 MB file 3,000 times held 3 GB. A record's image files together
    are held to 8 times the per-file limit, as a WebDataset sample's members are."""
    photo = encode(Image.new("RGB", (40, 40), (90, 90, 90)), "PNG")
    (tmp_path / "a.png").write_bytes(photo)
    texts = ["some words"] + [None] * 20
    images = [None] + ["a.png"] * 20
    (tmp_path / "r.jsonl").write_text(json.dumps({"id": "d", "texts": texts, "images": images}) + "\n")
    df = read_all(tmp_path / "r.jsonl", format="obelics", max_member_bytes=len(photo))
    imgs = df.filter(pl.col("kind") == "image")
    loaded = imgs.get_column("image").is_not_null().sum()
    assert loaded == 8
    errors = imgs.get_column("error").to_list()
    assert [e and e["kind"] for e in errors] == [None] * 8 + ["member_too_large"] * 12
    assert "together are over" in errors[8]["message"]
    # The next record starts its own count.
    (tmp_path / "two.jsonl").write_text(2 * (json.dumps({"id": "d", "texts": texts[:4], "images": images[:4]}) + "\n"))
    two = read_all(tmp_path / "two.jsonl", format="obelics", max_member_bytes=len(photo))
    assert two.filter(pl.col("kind") == "image").get_column("image").is_not_null().all()


def test_parquet_batches_are_bounded_by_decoded_bytes_and_errors_by_row_group(tmp_path):
    """A 2 KB parquet of 400 rows sharing one dictionary-encoded 10 MiB caption decoded to 4 GB
    in one batch (and overflowed arrow's string capacity: the whole file was one error). Batches
    are now cut by their decoded bytes; a row group that cannot be decoded is its own error and
    the next one reads; a row of over 1 Mi list items is a bad record, not gigabytes of nodes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    caption = "x" * (256 << 10)
    n = 64
    table = pa.table({"id": [f"r{i}" for i in range(n)], "caption": pa.array([caption] * n).dictionary_encode(), "image": ["http://e/a.jpg"] * n})
    pq.write_table(table, tmp_path / "d.parquet", compression="zstd")
    assert (tmp_path / "d.parquet").stat().st_size < 10_000
    reader = interleaf.read(tmp_path / "d.parquet", format="pairs", max_batch_bytes=1 << 20)
    batches = list(reader)
    assert reader.stats["documents"] == n and reader.stats["errors"] == {}
    assert max(b.get_column("text").str.len_bytes().sum() for b in batches) <= (1 << 20) + len(caption)
    assert len(batches) >= n * len(caption) // (1 << 20)
    # Such a column is read as a dictionary, so no piece gathers its values before the cut (a
    # 2 KB file of 200 rows of a 10 MiB caption peaked at 4.9 GB, now 1.5 GB); a column of
    # distinct values, whose pages fall back to plain, is read as it is (hashing it would be
    # slow).
    from interleaf.io.reader import _parquet_plan

    def dictionary_columns(path):
        return _parquet_plan(pq.ParquetFile(path), str(path), 1 << 20).dictionary_columns

    pq.write_table(table.cast(pa.schema([("id", pa.string()), ("caption", pa.string()), ("image", pa.string())])), tmp_path / "e.parquet", compression="zstd")
    assert dictionary_columns(tmp_path / "e.parquet") == []  # 64 x 256 KiB: within what a piece may gather
    pq.write_table(pa.table({"caption": pa.array(["x" * (1 << 20)] * 100).dictionary_encode()}), tmp_path / "f.parquet", compression="zstd")
    assert dictionary_columns(tmp_path / "f.parquet") == ["caption"]
    assert max(b.get_column("text").str.len_bytes().sum() for b in interleaf.read(tmp_path / "e.parquet", format="pairs", max_batch_bytes=1 << 20)) <= (1 << 20) + len(caption)
    pq.write_table(pa.table({"caption": [f"{i:08d} " + "distinct caption text " * 3 for i in range(40_000)]}), tmp_path / "u.parquet")
    assert dictionary_columns(tmp_path / "u.parquet") == []
    # Nor a large dictionary (values repeated twice, written by polars): pyarrow would copy it
    # into every piece.
    pl.DataFrame({"caption": [f"caption {i % 20_000} of a thing in the park" for i in range(40_000)]}).write_parquet(tmp_path / "r.parquet")
    assert dictionary_columns(tmp_path / "r.parquet") == []
    # Two row groups, the second's caption chunk overwritten: the first still reads.
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(200)], "caption": [f"caption {i} " * 20 for i in range(200)], "image": ["http://e/a.jpg"] * 200}), tmp_path / "g.parquet", row_group_size=100)
    col = pq.ParquetFile(tmp_path / "g.parquet").metadata.row_group(1).column(1)
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray((tmp_path / "g.parquet").read_bytes())
    data[start : start + col.total_compressed_size] = b"\x07" * col.total_compressed_size
    (tmp_path / "g.parquet").write_bytes(bytes(data))
    reader = interleaf.read(tmp_path / "g.parquet", format="pairs")
    df = pl.concat(list(reader))
    assert reader.stats["documents"] == 101 and reader.stats["errors"] == {"corrupt_parquet": 1}
    assert df.filter(pl.col("error").is_not_null()).get_column("error")[0]["message"].startswith(f"{tmp_path / 'g.parquet'}: row group 1:")
    # One OBELICS row of 1.1 Mi texts (a few KB on disk).
    many = (1 << 20) + 10
    pq.write_table(pa.table({"id": ["o"], "texts": pa.array([["w"] * many]), "images": pa.array([[None] * many], pa.list_(pa.string()))}), tmp_path / "o.parquet", compression="zstd")
    df = read_all(tmp_path / "o.parquet", format="obelics")
    assert df.height == 1 and df.get_column("error")[0]["kind"] == "bad_record" and "list items" in df.get_column("error")[0]["message"]


def test_one_text_or_image_where_a_sequence_belongs_is_a_type_error():
    """A str is a sequence of characters and bytes one of ints: taken as a list they gave one
    row per character (MinHash of 26 'documents', text_stats of 11) without a word."""
    from interleaf import dedup, evaluate, signals
    from interleaf.dedup import MinHasher

    calls = [
        (lambda: MinHasher().signatures("hello world"), "texts must be a sequence of texts"),
        (lambda: signals.text_stats("hello world"), "texts must be a sequence of texts"),
        (lambda: signals.obelics_paragraphs("hello world"), "texts must be a sequence of texts"),
        (lambda: evaluate.text_metrics("a cat", ["a cat"]), "predictions must be a sequence"),
        (lambda: evaluate.text_metrics(["a cat"], "a cat"), "references must be a sequence"),
        (lambda: image.stats(b"\xff\xd8 one image"), "not one bytes: wrap it in a list"),
        (lambda: dedup.xxh3_128("abc"), "items must be a sequence of texts or byte strings"),
        (lambda: dedup.blake3(b"abc"), "items must be a sequence of texts or byte strings"),
        (lambda: dedup.normalized_text_hash("Hello"), "texts must be a sequence of texts"),
        (lambda: image.stats(["photo.jpg"]), r"item 0 is str \(a path\? read the file's bytes\)"),
        (lambda: evaluate.image_metrics(["a.jpg"], ["b.jpg"]), r"not str \(a path\? read the file's bytes\)"),
    ]
    for call, msg in calls:
        with pytest.raises(TypeError, match=msg):
            call()
    assert MinHasher().signatures(["hello world"]).shape[0] == 1 and signals.text_stats(["hello world"]).height == 1
    # Bytes where only texts belong are named, not a bare conversion error.
    with pytest.raises(TypeError, match="texts must hold str values or None"):
        dedup.normalized_text_hash([b"x"])
    # bytearray and memoryview items hash as the bytes they hold.
    assert dedup.xxh3_128([bytearray(b"ab"), memoryview(b"ab"), b"ab", "ab"]).n_unique() == 1
    # Arrow arrays (a pyarrow table's column) are read as columns, not value by value.
    import pyarrow as pa

    texts = ["a cat sat on the mat", None, "ünïcode text here"]
    for arr in (pa.array(texts), pa.array(texts, pa.large_string()), pa.chunked_array([texts[:1], texts[1:]])):
        assert dedup.xxh3_128(arr).to_list() == dedup.xxh3_128(texts).to_list()
        assert signals.text_stats(arr).equals(signals.text_stats(texts))
    sigs = MinHasher(num_perm=8).signatures(pa.array(texts[::2]))
    assert np.array_equal(sigs, MinHasher(num_perm=8).signatures(texts[::2]))


def test_numbers_that_would_be_silently_changed_are_refused():
    """Fractional offsets were cut to ints, negative or 64-bit signatures wrapped to other uint32
    values, Fortran-ordered arrays read in the wrong order: other results, no error."""
    from interleaf import image as im
    from interleaf import signals
    from interleaf.dedup import lsh_clusters

    emb = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="must be whole numbers"):
        signals.sequence_consistency(emb, [0, 2.5, 6])
    assert signals.sequence_consistency(emb, [0.0, 3.0, 6.0]).tolist() == signals.sequence_consistency(emb, [0, 3, 6]).tolist()
    with pytest.raises(ValueError, match="outside \\[0, 2\\^32\\)"):
        lsh_clusters(-np.ones((2, 16), np.int64))
    assert lsh_clusters(np.ones((2, 16), np.int64))[0].tolist() == [0, 0]
    with pytest.raises(ValueError, match="C-contiguous"):
        _native.lsh_cluster(np.asfortranarray(np.ones((3, 16), np.uint32)), 4, 4)
    with pytest.raises(ValueError, match="bands \\* rows must be"):
        _native.lsh_cluster(np.ones((3, 16), np.uint32), 1 << 63, 2)
    with pytest.raises(ValueError, match="k must be at most"):
        _native.top_k(emb, emb, 1 << 62)
    jpg = [(Path(__file__).parent.parent / "python/interleaf/data/sample/images/coffee.jpg").read_bytes()]
    ref, _ = im.preprocess(jpg)
    with pytest.raises(ValueError, match="C-contiguous"):
        im.preprocess(jpg, out=np.asfortranarray(np.zeros(ref.shape, np.float32)))
    # Arguments a query would only meet when it runs are checked when it is built.
    import interleaf.polars as ilp

    with pytest.raises(ValueError, match="max_bytes must be an int"):
        ilp.image_stats("x", max_bytes="10")
    with pytest.raises(ValueError, match="max_pixels must be an int"):
        ilp.image_stats("x", max_pixels=True)
    with pytest.raises(ValueError, match="node_stats char_ngram must be an int"):
        signals.obelics_paragraphs(["a b"], node_stats=(0, 5))
    assert signals.obelics_paragraphs(["a b"], node_stats=[10, 5]).height == 1
    # A numpy integer is refused up front, saying how to pass it (it would fail when run.json
    # or a summary is written, after the work).
    from interleaf.dedup import MinHasher

    with pytest.raises(ValueError, match=r"a int64: pass int\(\.\.\.\)"):
        MinHasher(num_perm=np.int64(8))
    with pytest.raises(ValueError, match=r"a float32: pass float\(\.\.\.\)"):
        deduplicate(["x.jsonl"], "unused", "minhash", threshold=np.float32(0.8))


def test_api_arguments_of_the_wrong_shape_are_named(tmp_path, sample_dir):
    from interleaf import run, write

    src = [str(sample_dir / "pairs.jsonl")]
    with pytest.raises(TypeError, match="write takes documents .* not a path: 'x.jsonl'"):
        write("x.jsonl", tmp_path / "o")
    with pytest.raises(TypeError, match="models must map the recipe's model names"):
        run("pairs-basic", src, tmp_path / "o", models="tests/fixtures/models/clip-tiny", progress=False)
    with pytest.raises(TypeError, match="llm must be a mapping"):
        run("pairs-basic", src, tmp_path / "o", llm="http://127.0.0.1:9/v1", progress=False)
    for call in (lambda: run("pairs-basic", [], tmp_path / "o", progress=False), lambda: interleaf.read([])):
        with pytest.raises(ValueError, match="no inputs"):
            call()
    assert not (tmp_path / "o").exists()


def test_write_refuses_a_file_name_of_another_format_and_compression_it_would_ignore(tmp_path, sample_dir):
    """`convert x out.jsonl --to parquet` made a folder named out.jsonl; --compression was
    silently ignored for parquet and jsonl."""
    from interleaf.cli import main

    src = interleaf.read(sample_dir / "pairs.jsonl")
    for dest, fmt in (("out.jsonl", "parquet"), ("out.parquet", "jsonl"), ("out.tar", "pairs"), ("out.jsonl", "webdataset")):
        with pytest.raises(ValueError, match=f"{re.escape(str(tmp_path / dest))} names a \\.\\w+ file"):
            interleaf.write(src, tmp_path / dest, fmt)
    with pytest.raises(ValueError, match="compression applies to WebDataset shards"):
        interleaf.write(src, tmp_path / "o.jsonl", "jsonl", compression="gz")
    assert main(["convert", str(sample_dir / "pairs.jsonl"), str(tmp_path / "c.jsonl"), "--to", "parquet", "--quiet"]) == 2
    assert list(tmp_path.iterdir()) == []
    assert interleaf.write(src, tmp_path / "ok.jsonl.gz", "jsonl") == [str(tmp_path / "ok.jsonl.gz")]
    # Suffixes are matched as written (an upper-case name is a folder, as before), and a
    # folder name with dots is a folder.
    assert interleaf.write(interleaf.read(sample_dir / "pairs.jsonl"), tmp_path / "x.PARQUET", "parquet") == [str(tmp_path / "x.PARQUET" / "shard-000000.parquet")]
    assert interleaf.write(interleaf.read(sample_dir / "pairs.jsonl"), tmp_path / "out.v2", "jsonl") == [str(tmp_path / "out.v2" / "shard-000000.jsonl")]


def test_a_reader_that_stops_early_ends_the_command_quietly(sample_dir):
    """`interleaf inspect ... | head -2`: the pipe's reader is gone before interleaf has
    printed everything; it ends as a shell tool does (SIGPIPE's 141, no error message)."""
    import os

    for args in (["inspect", str(sample_dir)], ["recipes", "show", "comm"]):
        r, w = os.pipe()
        os.close(r)
        try:
            p = subprocess.run([sys.executable, "-m", "interleaf", *args], stdout=w, stderr=subprocess.PIPE, text=True)
        finally:
            os.close(w)
        assert p.returncode == 141 and "error" not in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
