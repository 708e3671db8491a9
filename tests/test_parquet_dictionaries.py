"""Parquet values gathered from dictionaries: a few KB on disk can name one huge dictionary
entry millions of times. The reader bounds what a column can gather from its page headers
(interleaf/io/_pages.py), reads the columns that could gather too much as dictionaries, cuts
batches by their decoded bytes, and leaves out a record that alone would be too large."""

import subprocess
import sys
import textwrap

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import interleaf
from interleaf.io import _pages
from interleaf.io.reader import _dictionary_columns

PARAGRAPH = "z " * (5 << 20)  # 10 MiB, a few bytes once compressed


def dictionary_columns(path, limit=256 << 20):
    return _dictionary_columns(pq.ParquetFile(path), str(path), limit)


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
    The dictionary page's longest entry bounds a piece: the column is read as a dictionary."""
    import random

    rng = random.Random(0)
    entries = pa.array([f"caption {k} of a thing" for k in range(3000)] + ["y" * (4 << 20)])
    picks = [3000 if i % 200 == 7 else rng.randrange(3000) for i in range(2000)]
    caption = pa.DictionaryArray.from_arrays(pa.array(picks, pa.int32()), entries)
    pq.write_table(pa.table({"url": [f"http://e/{i}.jpg" for i in range(2000)], "caption": caption}), tmp_path / "c.parquet", compression="zstd", store_schema=False)
    md = pq.ParquetFile(tmp_path / "c.parquet").metadata.row_group(0).column(1)
    dictionary = md.data_page_offset - md.dictionary_page_offset
    assert 2 * dictionary < md.total_compressed_size  # not "dominated"
    assert dictionary_columns(tmp_path / "c.parquet") == ["caption"]
    limit = 6 << 20
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
    assert error["kind"] == "member_too_large" and error["message"].startswith(f"texts: {30 * (len(PARAGRAPH) + 8) + 8 + 8} bytes once decoded")
    assert bad.get_column("text").is_null().all()
    assert df.filter(pl.col("doc_id").is_in(["d0", "d2"]) & (pl.col("kind") == "text")).get_column("text").to_list() == ["before", "after"]
    assert df.filter(pl.col("doc_id").is_in(["d0", "d2"])).get_column("error").is_null().all()


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("codec", ["none", "snappy", "gzip", "zstd", "brotli", "lz4"])
def test_page_headers_are_read_as_pyarrow_writes_them(tmp_path, codec, version):
    """The values stored as dictionary indices and the dictionary's longest entry, for every
    codec pyarrow writes and both data page versions (v2 headers count nulls apart: they are
    left out; v1 headers do not say)."""
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
            assert _pages.longest_entry(f, col, page) == longest
            if version == "2.0" and j == 1:
                values = sum(2 for x in lists if x is not None)  # the None items and null lists are nulls
            assert _pages.dictionary_values(f, col) == values


def test_damaged_or_hostile_page_headers_are_errors_and_the_column_is_read_as_a_dictionary(tmp_path):
    """A header that cannot be read is a PageError (bounded: a list header claiming a billion
    items stops at the bytes there are), and the column it heads is read as a dictionary, the
    safe choice; the damaged row group is then a corrupt_parquet record and the next reads."""
    # Field 1 a list of 10^9 i32s, then nothing.
    with pytest.raises(_pages.PageError, match="truncated or over"):
        (tmp_path / "h").write_bytes(b"\x19\xf5" + bytes([0x80, 0x94, 0xEB, 0xDC, 0x03]) + b"\x02" * 100)
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
    assert dictionary_columns(path) == ["caption"]
    reader = interleaf.read(path, format="pairs")
    df = pl.concat(list(reader))
    assert reader.stats["errors"] == {"corrupt_parquet": 1} and reader.stats["documents"] == 101
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == [f"caption {i % 7}" for i in range(100, 200)]
