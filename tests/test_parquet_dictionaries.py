"""Parquet values gathered from dictionaries: a few KB on disk can name one huge dictionary
entry millions of times. The reader bounds what a column can gather from its page headers
(interleaf/io/_pages.py), reads the columns that could gather too much as dictionaries, cuts
batches by their decoded bytes, and leaves out a record that alone would be too large."""

import base64
import json
import re
import subprocess
import sys
import textwrap

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import interleaf
from interleaf.io import _pages
from interleaf.io.reader import _parquet_plan

PARAGRAPH = "z " * (5 << 20)  # 10 MiB, a few bytes once compressed


def dictionary_columns(path, limit=256 << 20):
    return _parquet_plan(pq.ParquetFile(path), str(path), limit).dictionary_columns


def obelics_bomb(path, rows=100):
    """OBELICS rows whose texts name one 10 MiB paragraph each: 3 KB on disk, 1 GB decoded."""
    texts = pa.array([[PARAGRAPH, None] for _ in range(rows)])
    images = pa.array([[None, f"http://e/{i}.jpg"] for i in range(rows)])
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(rows)], "texts": texts, "images": images}), path, compression="zstd")


def test_a_paragraph_repeated_in_lists_is_read_as_a_dictionary_and_batches_stay_bounded(tmp_path):
    """100 OBELICS rows naming one 10 MiB paragraph: the old rule looked at top-level columns
    only and read the texts plain, a piece of all 100 rows at once (1 GB); arrow also decoded all
    the rows under a 3-row slice of a list when casting it. Now the texts are a dictionary,
    batches are cut by their decoded bytes, and every paragraph comes through whole."""
    obelics_bomb(tmp_path / "o.parquet")
    assert (tmp_path / "o.parquet").stat().st_size < 10_000
    assert dictionary_columns(tmp_path / "o.parquet") == ["texts.list.element"]
    limit = 24 << 20
    reader = interleaf.read(tmp_path / "o.parquet", format="obelics", max_batch_bytes=limit, load_images=False)
    sizes, texts = [], 0
    for b in reader:
        t = b.filter(pl.col("kind") == "text").get_column("text")
        sizes.append(int(t.str.len_bytes().sum()))
        texts += int((t == PARAGRAPH).sum())
    assert reader.stats["documents"] == 100 and reader.stats["errors"] == {} and texts == 100
    assert max(sizes) <= limit and len(sizes) >= 100 * len(PARAGRAPH) // limit
    # Arrow's own peak allocation (its memory pool), in a fresh process: 230 MiB measured with
    # a 64 MiB limit, 1050 MiB before.
    code = textwrap.dedent(f"""
        import pyarrow as pa, interleaf
        for b in interleaf.read({str(tmp_path / "o.parquet")!r}, format="obelics", max_batch_bytes=64 << 20, load_images=False):
            pass
        print(pa.default_memory_pool().max_memory())
    """)
    peak = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])
    assert peak < 600 << 20, peak


def test_a_large_entry_of_a_dictionary_that_does_not_dominate_its_chunk_is_found(tmp_path):
    """A caption column drawing 2,000 rows from 3,000 short entries and one of 4 MiB: random
    indices make the data pages larger than the (compressed) dictionary, which the old rule
    took for a column of distinct values, read plain in pieces of 1,024 rows (up to 4 GB).
    The dictionary page's longest entry and the decoded indices (40 rows name it: 160 MiB,
    over the 64 MiB a piece may gather) bound a piece: the column is read as a dictionary."""
    import random

    rng = random.Random(0)
    entries = pa.array([f"caption {k} of a thing" for k in range(3000)] + ["y" * (4 << 20)])
    picks = [3000 if i % 50 == 7 else rng.randrange(3000) for i in range(2000)]
    caption = pa.DictionaryArray.from_arrays(pa.array(picks, pa.int32()), entries)
    pq.write_table(pa.table({"url": [f"http://e/{i}.jpg" for i in range(2000)], "caption": caption}), tmp_path / "c.parquet", compression="zstd", store_schema=False)
    md = pq.ParquetFile(tmp_path / "c.parquet").metadata.row_group(0).column(1)
    dictionary = md.data_page_offset - md.dictionary_page_offset
    assert 2 * dictionary < md.total_compressed_size  # not "dominated"
    limit = 6 << 20
    assert dictionary_columns(tmp_path / "c.parquet", limit) == ["caption"]
    reader = interleaf.read(tmp_path / "c.parquet", format="pairs", max_batch_bytes=limit)
    batches = list(reader)
    df = pl.concat(batches)
    assert reader.stats["documents"] == 2000 and reader.stats["errors"] == {}
    expected = [entries[p].as_py() for p in picks]
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == expected
    assert max(b.get_column("text").str.len_bytes().sum() for b in batches) <= limit


def test_a_record_over_256_mib_once_decoded_is_left_out_with_its_error(tmp_path):
    """One OBELICS row naming the 10 MiB paragraph 30 times (300 MiB, over what one record may
    hold, as a JSON line over 256 MiB is): its texts are not gathered, the record is kept with a
    member_too_large error naming them (not the bad_record its emptied texts would give), and
    the rows around it read."""
    texts = pa.array([["before", None], [PARAGRAPH] * 30 + [None], ["after", None]])
    images = pa.array([[None, "http://e/a.jpg"], [None] * 30 + ["http://e/b.jpg"], [None, "http://e/c.jpg"]])
    pq.write_table(pa.table({"id": ["d0", "d1", "d2"], "texts": texts, "images": images}), tmp_path / "r.parquet", compression="zstd")
    reader = interleaf.read(tmp_path / "r.parquet", format="obelics", load_images=False)
    df = pl.concat(list(reader))
    assert reader.stats["documents"] == 3 and reader.stats["errors"] == {"member_too_large": 1}
    bad = df.filter(pl.col("doc_id") == "d1")
    error = bad.get_column("error")[0]
    assert error["kind"] == "member_too_large" and re.match(r"texts: (\d+) bytes once decoded", error["message"])
    # The row's text and binary values: 30 paragraphs (and a few bytes: its id and URL).
    assert 30 * (len(PARAGRAPH) + 8) <= int(re.match(r"texts: (\d+)", error["message"])[1]) < 30 * (len(PARAGRAPH) + 8) + 1000
    assert bad.get_column("text").is_null().all()
    assert df.filter(pl.col("doc_id").is_in(["d0", "d2"]) & (pl.col("kind") == "text")).get_column("text").to_list() == ["before", "after"]
    assert df.filter(pl.col("doc_id").is_in(["d0", "d2"])).get_column("error").is_null().all()


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("codec", ["none", "snappy", "gzip", "zstd", "brotli", "lz4"])
def test_page_headers_are_read_as_pyarrow_writes_them(tmp_path, codec, version):
    """The values stored as dictionary indices (nulls included: pyarrow does not read a v2
    header's null count, so a forged one must not hide values) and the dictionary's longest
    entry, for every codec pyarrow writes and both data page versions."""
    rows = 5000
    words = [f"w{i % 37}" + "x" * (i % 37) for i in range(rows)]
    lists = [None if i % 11 == 0 else [f"p{i % 13}", None, "q" * (i % 50)] for i in range(rows)]
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"word": words, "list": lists}), path, compression=codec, data_page_version=version, data_page_size=4096)
    md = pq.ParquetFile(path).metadata.row_group(0)
    with open(path, "rb") as f:
        for j, longest, values in [(0, max(map(len, words)), rows), (1, 49, md.column(1).num_values)]:
            col = md.column(j)
            page = _pages.read_header(f, _pages.chunk_start(col))
            assert page.type == _pages.DICTIONARY_PAGE
            assert _pages.longest_entry(_pages.dictionary_entries(f, col, page), page) == longest
            chunk = _pages.scan_chunk(f, col)
            assert (chunk.dictionary_values, chunk.other_values, chunk.dictionary) == (values, 0, page)


def test_damaged_or_hostile_page_headers_are_errors_and_their_row_group_is_refused(tmp_path):
    """A header that cannot be read is a PageError (bounded: a list header claiming a billion
    items stops at the bytes there are), and the row group whose pages cannot be walked is
    refused (its sizes unknown, Arrow might read a bomb there): a corrupt_parquet record, and
    the next reads."""
    # Field 1 a list of 10^9 i32s, then nothing.
    with pytest.raises(_pages.PageError, match="truncated or over"):
        (tmp_path / "h").write_bytes(b"\x19\xf5" + bytes([0x80, 0x94, 0xEB, 0xDC, 0x03]) + b"\x02" * 100)
        with open(tmp_path / "h", "rb") as f:
            _pages.read_header(f, 0)
    with pytest.raises(_pages.PageError, match="nested over 16 deep"):
        (tmp_path / "h").write_bytes(b"\x19" * 5000)  # lists in lists: was a RecursionError
        with open(tmp_path / "h", "rb") as f:
            _pages.read_header(f, 0)
    with pytest.raises(_pages.PageError, match="unknown Thrift type"):
        (tmp_path / "h").write_bytes(b"\x1e" + b"\x00" * 10)
        with open(tmp_path / "h", "rb") as f:
            _pages.read_header(f, 0)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(200)], "caption": [f"caption {i % 7}" for i in range(200)], "url": [f"http://e/{i}.jpg" for i in range(200)]}), path, row_group_size=100)
    col = pq.ParquetFile(path).metadata.row_group(0).column(1)
    data = bytearray(path.read_bytes())
    data[_pages.chunk_start(col) : _pages.chunk_start(col) + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    plan = _parquet_plan(pq.ParquetFile(path), str(path), 256 << 20)
    assert list(plan.refused) == [0] and "caption: its pages could not be checked" in plan.refused[0]
    reader = interleaf.read(path, format="pairs")
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"corrupt_parquet": 1} and reader.stats["documents"] == 101
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == [f"caption {i % 7}" for i in range(100, 200)]


def test_a_dictionary_that_fell_back_to_plain_pages_is_read_plain(tmp_path):
    """An ordinary OBELICS file whose texts dictionary filled and fell back to plain pages, one
    100 KB paragraph among the indexed values (bound: thousands of indices x 100 KB): read as a
    dictionary, pyarrow hashed every plain value into a dictionary growing over the row group
    (30x slower at 16 MiB batches, memory by row group). Most of its values are plain: it is
    read plain, as before; so is everything at a 1 MiB batch limit (a piece may gather 64 MiB)."""
    import random

    rng = random.Random(3)
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(3000)]
    texts = [[" ".join(rng.choices(vocab, k=rng.randint(10, 80))), None] for _ in range(20_000)]
    texts[3][0] = ("long article text " * 6000)[:100_000]
    path = tmp_path / "o.parquet"
    pq.write_table(pa.table({"texts": texts, "images": [[None, f"http://e/{i}.jpg"] for i in range(20_000)]}), path)
    md = pq.ParquetFile(path).metadata.row_group(0).column(0)
    with open(path, "rb") as f:
        chunk = _pages.scan_chunk(f, md)
    assert 0 < chunk.dictionary_values < chunk.other_values
    for limit in (256 << 20, 16 << 20, 1 << 20):
        plan = _parquet_plan(pq.ParquetFile(path), str(path), limit)
        assert (plan.dictionary_columns, plan.piece_rows) == ([], 1024)
    # A top-level column so: its indices are decoded, and a 1 MiB entry indexed once gathers
    # 1 MiB (its bound was 1,024 rows x 1 MiB, which cut pieces to 31 rows); indexed 340 times,
    # its pieces are cut to what the longest entry allows instead.
    for copies, rows in ((1, 1024), (340, (256 << 20) // 8 // ((1 << 20) + 8))):
        captions = [("y" * (1 << 20)) if i % 3 == 0 and i < 3 * copies else f"caption {i} " * 8 for i in range(30_000)]
        pq.write_table(pa.table({"caption": captions, "url": [f"http://e/{i}.jpg" for i in range(30_000)]}), tmp_path / "c.parquet")
        with open(tmp_path / "c.parquet", "rb") as f:
            chunk = _pages.scan_chunk(f, pq.ParquetFile(tmp_path / "c.parquet").metadata.row_group(0).column(0))
        assert 3 * copies < chunk.dictionary_values < chunk.other_values
        plan = _parquet_plan(pq.ParquetFile(tmp_path / "c.parquet"), str(tmp_path / "c.parquet"), 256 << 20)
        assert (plan.dictionary_columns, plan.piece_rows) == ([], rows)


def test_a_dictionary_page_too_large_to_decode_caps_pieces_instead_of_a_dictionary_read(tmp_path, monkeypatch):
    """pyarrow's writer puts a first batch of 1,024 values in the dictionary page: 1,024 masks
    or images of 260 KB are a 268 MB page, once over the decoding limit (then 256 MiB), which
    made the column a dictionary read, and pyarrow hashed every plain value after it into the
    dictionary (5,000 masks: 42 s and 12 GB, against 0.6 s and 1.2 GB for pyarrow alone).
    The limit is now a GiB, what Arrow holds of the page anyway; past it (here made 64 KiB), a
    top-level column mostly in plain pages has its entries bounded by the page's size and its
    pieces cut to what that allows, and reads as pyarrow reads it."""
    import numpy as np

    rng = np.random.default_rng(0)
    blobs = [rng.bytes(2000) for _ in range(3000)]
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"url": [f"http://e/{i}.jpg" for i in range(3000)], "caption": [f"a mask {i}" for i in range(3000)], "mask": blobs}), path)
    with open(path, "rb") as f:
        chunk = _pages.scan_chunk(f, pq.ParquetFile(path).metadata.row_group(0).column(2))
    assert chunk.dictionary is not None and 1 << 20 < chunk.dictionary.uncompressed < 4 << 20 and chunk.dictionary_values < chunk.other_values
    assert _parquet_plan(pq.ParquetFile(path), str(path), 256 << 20).dictionary_columns == []
    monkeypatch.setattr(_pages, "MAX_DICTIONARY_BYTES", 64 << 10)
    plan = _parquet_plan(pq.ParquetFile(path), str(path), 256 << 20)
    longest = chunk.dictionary.uncompressed - 4 * chunk.dictionary.values
    assert (plan.dictionary_columns, plan.piece_rows) == ([], (256 << 20) // 8 // (longest + 8))
    reader = interleaf.read(str(path), format="pairs", load_images=False)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {} and reader.stats["documents"] == 3000
    metas = [json.loads(m) for m in df.filter(pl.col("kind") == "text").get_column("meta")]
    assert [base64.b64decode(m["mask"]["base64"]) for m in metas] == blobs


def test_columns_around_a_dictionary_column_read_as_they_are(tmp_path):
    """Reading one column as a dictionary cast the whole table, and arrow's cast of a slice of
    MMC4 image_info (a list of structs with an all-null field) failed with a traceback out of
    interleaf.read; only the columns whose types change are cast now. A fixed-size list (CLIP
    embeddings) is a list, not every batch's corrupt_parquet; a map of dictionary values is
    bounded as lists are."""
    n = 4000
    text_list = [[f"sentence {(i * 7 + j) % 50}" for j in range(5)] for i in range(n)]
    for i in range(7, n, 20):
        text_list[i][3] = "long sentence " * 30_000  # 420 KB, 200 times: 84 MB gathered
    info = [[{"raw_url": f"http://e/{i}_{k}.jpg", "matched_text_index": k, "face_detections": None} for k in range(2)] for i in range(n)]
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"url": [f"http://doc/{i}" for i in range(n)], "text_list": text_list, "image_info": info}), path, compression="zstd")
    assert dictionary_columns(path, 16 << 20) == ["text_list.list.element"]
    reader = interleaf.read(path, format="mmc4", load_images=False, batch_size=700, max_batch_bytes=16 << 20)
    df = pl.concat(list(reader))
    assert reader.stats["documents"] == n and reader.stats["errors"] == {}
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == [t for doc in text_list for t in doc]
    emb = pa.array([[0.5, 1.5, float(i)] for i in range(3)], pa.list_(pa.float32(), 3))
    pq.write_table(pa.table({"url": ["http://e/a.jpg"] * 3, "caption": ["a", "b", "c"], "clip_emb": emb}), tmp_path / "e.parquet")
    reader = interleaf.read(tmp_path / "e.parquet", format="pairs")
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {} and reader.stats["documents"] == 3
    tags = pa.array([[("k", PARAGRAPH)] for _ in range(60)], pa.map_(pa.string(), pa.string()))
    pq.write_table(pa.table({"url": [f"http://e/{i}.jpg" for i in range(60)], "caption": ["c"] * 60, "tags": tags}), tmp_path / "t.parquet", compression="zstd", dictionary_pagesize_limit=64 << 20)
    assert dictionary_columns(tmp_path / "t.parquet") == ["tags.key_value.value"]
    reader = interleaf.read(tmp_path / "t.parquet", format="pairs", load_images=False, max_batch_bytes=32 << 20)
    batches = list(reader)
    assert reader.stats["documents"] == 60 and reader.stats["errors"] == {} and len(batches) >= 60 * 10 // 32


def test_a_failure_sizing_or_converting_a_piece_is_its_row_groups_error(tmp_path, monkeypatch):
    """An exception while sizing what was read (out of memory on a row of 80 M indices) fell
    into the retry of a failed read, which had nothing left to retry: every row vanished with
    no error. It is now the row group's corrupt_parquet record and the next group reads."""
    import interleaf.io.reader as reader_module

    path = tmp_path / "g.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(200)], "caption": [f"caption {i}" for i in range(200)], "url": [f"http://e/{i}.jpg" for i in range(200)]}), path, row_group_size=100)
    real, calls = reader_module._decoded_bytes, []

    def failing(batch, per_row=False):
        calls.append(batch.num_rows)
        if len(calls) == 1:
            raise MemoryError("sizing")
        return real(batch, per_row)

    monkeypatch.setattr(reader_module, "_decoded_bytes", failing)
    reader = interleaf.read(path, format="pairs", batch_size=50)
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"corrupt_parquet": 1} and reader.stats["documents"] == 101
    assert "row group 0: sizing" in df.filter(pl.col("error").is_not_null()).get_column("error")[0]["message"]
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == [f"caption {i}" for i in range(100, 200)]


def test_node_table_batches_close_on_bytes_as_other_inputs_do(tmp_path):
    """A node table's batches were cut by document count only (200 one-node documents of 10
    MiB: one 2 GB batch); they now close at max_batch_bytes of text and image bytes, documents
    whole and in order, as JSON lines and tar shards do."""
    docs = 24
    rows = {"doc_id": [], "pos": [], "kind": [], "text": [], "image": []}
    for d in range(docs):
        for pos in range(3):
            rows["doc_id"].append(f"d{d}")
            rows["pos"].append(pos)
            rows["kind"].append("image" if pos == 1 else "text")
            rows["text"].append(None if pos == 1 else f"{d}.{pos} " + "t" * (300_000 if d % 5 else 10))
            rows["image"].append(bytes([d]) * 200_000 if pos == 1 else None)
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table(rows, schema=pa.schema([("doc_id", pa.string()), ("pos", pa.int64()), ("kind", pa.string()), ("text", pa.string()), ("image", pa.binary())])), path)
    limit = 2 << 20
    batches = list(interleaf.read(path, format="nodes", max_batch_bytes=limit))
    whole = pl.concat(list(interleaf.read(path, format="nodes")))
    assert pl.concat(batches).drop("doc_index").equals(whole.drop("doc_index"))
    assert pl.concat(batches).get_column("doc_index").to_list() == whole.get_column("doc_index").to_list()
    sizes = [int(b.get_column("text").str.len_bytes().sum() + b.get_column("image").bin.size().sum()) for b in batches]
    doc_max = 2 * 300_020 + 200_000
    assert len(batches) > 1 and max(sizes) <= limit + doc_max
    for b in batches:  # documents are never split
        assert b.group_by("doc_id").len().get_column("len").to_list() == [3] * b.get_column("doc_id").n_unique()
