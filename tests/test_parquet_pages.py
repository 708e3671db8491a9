"""Parquet pages the reader decodes itself (interleaf/io/_pages.py) to bound memory: the bytes
a chunk's dictionary indices gather (its RLE/bit-packed index pages decoded, nulls told apart by
the definition levels), pages that are compression bombs (refused with their row group), and
sizes taken from page headers rather than the footer, which pyarrow does not check."""

import re
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import interleaf
from interleaf.io import _pages
from interleaf.io.reader import _parquet_plan

PARAGRAPH = "z " * (5 << 20)  # 10 MiB, a few bytes once compressed


def _leaf_sizes(column):
    """The leaf values of a column of strings, lists of strings or lists of structs of a
    string, in file order (nulls included, as levels are), each as its length plus 8 (0 for
    a null)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    while pa.types.is_list(arr.type) or pa.types.is_struct(arr.type):
        arr = pc.list_flatten(arr) if pa.types.is_list(arr.type) else arr.field(0)
    return np.where(arr.is_null().to_numpy(zero_copy_only=False), 0, pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False) + 8)


LAYOUTS = {
    # A nullable top-level column (definition levels, no repetition levels).
    "top": lambda rows, text: pa.array([None if i % 9 == 4 else text(i) for i in range(rows)]),
    # Lists with null elements (no empty or null lists: each level is one flattened slot).
    "list": lambda rows, text: pa.array([[text(i), None, text(i + 1)] for i in range(rows)]),
    # Lists of structs with a nullable string field: three definition levels deep.
    "struct": lambda rows, text: pa.array([[{"s": text(i)}, {"s": None}] for i in range(rows)]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("codec", ["none", "snappy", "zstd", "gzip"])
def test_the_bytes_dictionary_indices_gather_are_exact(tmp_path, codec, version, layout):
    """gathered_bytes against the values pyarrow reads: every value stored as an index counts
    its entry's length plus 8, nulls nothing, over many pages (4 KB) of varied bit widths; a
    dictionary that fills (8 KB) falls back to plain pages, whose values are not counted (the
    first values, up to the chunk's dictionary-encoded count, are the indexed ones)."""
    rows = 6000
    for limit, entries in ((1 << 20, 500), (8 << 10, 3000)):
        column = LAYOUTS[layout](rows, lambda i, n=entries: f"e{(i * 7919) % n}" + "x" * ((i * 31) % 61))
        path = tmp_path / f"{limit}.parquet"
        pq.write_table(pa.table({"c": column}), path, compression=codec, data_page_version=version, data_page_size=4096, dictionary_pagesize_limit=limit)
        pf = pq.ParquetFile(path)
        md, leaf = pf.metadata.row_group(0).column(0), pf.schema.column(0)
        with open(path, "rb") as f:
            chunk = _pages.scan_chunk(f, md)
            assert chunk.dictionary is not None and chunk.dictionary_values > 0
            entries = _pages.dictionary_entries(f, md, chunk.dictionary)
            got = _pages.gathered_bytes(f, md, chunk.dictionary, entries, leaf.max_repetition_level, leaf.max_definition_level)
        sizes = _leaf_sizes(pf.read().column("c"))
        assert len(sizes) == chunk.dictionary_values + chunk.other_values
        assert got == int(sizes[: chunk.dictionary_values].sum())
        if limit == 8 << 10:
            assert chunk.other_values > chunk.dictionary_values  # the dictionary fell back


def test_an_index_run_naming_a_huge_entry_is_counted_without_expanding_it(tmp_path):
    """A million rows naming one 10 MiB caption (RLE runs of one index): 10 TB gathered, found
    in the time of a few runs, not a million steps; a 4 KB file."""
    caption = pa.DictionaryArray.from_arrays(pa.array(np.zeros(1_000_000, dtype=np.int32)), pa.array([PARAGRAPH]))
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"caption": caption}), path, compression="zstd")
    assert path.stat().st_size < 20_000
    md = pq.ParquetFile(path).metadata.row_group(0).column(0)
    with open(path, "rb") as f:
        chunk = _pages.scan_chunk(f, md)
        assert _pages.gathered_bytes(f, md, chunk.dictionary, _pages.dictionary_entries(f, md, chunk.dictionary), 0, 1) == 1_000_000 * (len(PARAGRAPH) + 8)


def _bomb_rows(n):
    return {"id": [f"b{i}" for i in range(n)], "texts": [[PARAGRAPH, None] for _ in range(n)], "images": [[None, f"http://e/{i}.jpg"] for i in range(n)]}


def test_a_page_that_is_a_compression_bomb_refuses_its_row_group_only(tmp_path):
    """pyarrow's writer puts up to 1,024 values in a page: 400 OBELICS rows naming a 10 MiB
    paragraph are a 190 KB file holding a 2 GB page (its dictionary filled after the first
    page), which pyarrow decompresses whole to read any row of it: arrow's pool peaked at 2.2 GB
    at 64 MiB batches. The row group holding it (over 1 GiB beyond 16x what its pages store) is
    one corrupt_parquet record saying what max_batch_bytes would read it; the row groups
    around it read, and arrow's peak stays small."""
    ordinary = {"id": ["a0", "a1"], "texts": [["first", None], ["second", None]], "images": [[None, "http://e/a.jpg"], [None, "http://e/b.jpg"]]}
    schema = pa.schema([("id", pa.string()), ("texts", pa.list_(pa.string())), ("images", pa.list_(pa.string()))])
    path = tmp_path / "bomb.parquet"
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        w.write_table(pa.table(ordinary, schema=schema))
        w.write_table(pa.table(_bomb_rows(400), schema=schema))
        w.write_table(pa.table(ordinary, schema=schema))
    assert path.stat().st_size < 400_000
    plan = _parquet_plan(pq.ParquetFile(path), str(path), 64 << 20)
    assert list(plan.refused) == [1] and "its pages decompress to 2,0" in plan.refused[1] and "compression bomb" in plan.refused[1]
    reader = interleaf.read(path, format="obelics", load_images=False, max_batch_bytes=64 << 20)
    df = pl.concat(list(reader))
    assert reader.stats["documents"] == 5 and reader.stats["errors"] == {"corrupt_parquet": 1}
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == ["first", "second", "first", "second"]
    error = df.filter(pl.col("error").is_not_null()).get_column("error")[0]
    assert error["message"].startswith(f"{path}: row group 1: its pages decompress to ") and "--max-batch-bytes, of 2,0" in error["message"]
    # As the message says, a larger max_batch_bytes reads it.
    assert _parquet_plan(pq.ParquetFile(path), str(path), 4 << 30).refused == {}
    code = textwrap.dedent(f"""
        import pyarrow as pa, interleaf
        for b in interleaf.read({str(path)!r}, format="obelics", max_batch_bytes=64 << 20, load_images=False):
            pass
        print(pa.default_memory_pool().max_memory())
    """)
    peak = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])
    assert peak < 100 << 20, peak


def test_large_pages_that_are_no_bomb_are_read(tmp_path):
    """A page over the limit that compresses as data does (400 random 1 MiB images in one
    page: pyarrow's 1,024-value pages) is read: its memory is the file's own bytes. So is a
    page of repetitive text under the limit."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes() for _ in range(300)]
    path = tmp_path / "images.parquet"
    pq.write_table(pa.table({"url": [f"http://e/{i}.jpg" for i in range(300)], "caption": ["c"] * 300, "jpg": images}), path, compression="zstd")
    md = pq.ParquetFile(path).metadata.row_group(0).column(2)
    with open(path, "rb") as f:
        chunk = _pages.scan_chunk(f, md)
    assert chunk.uncompressed > 256 << 20 and chunk.unbacked == 0
    assert _parquet_plan(pq.ParquetFile(path), str(path), 1 << 20).refused == {}
    texts = tmp_path / "texts.parquet"
    pq.write_table(pa.table(_bomb_rows(20)), texts, compression="zstd")  # 200 MiB of repeated text
    assert _parquet_plan(pq.ParquetFile(texts), str(texts), 1 << 20).refused == {}
    reader = interleaf.read(texts, format="obelics", load_images=False)
    assert sum(b.filter(pl.col("kind") == "text").height for b in reader) == 20 and reader.stats["errors"] == {}


def _forge_total_uncompressed_size(path, real):
    """Rewrites a footer's total_uncompressed_size ``real`` (a zigzag varint) as 1 in as many
    bytes (a varint of continuation bytes), which pyarrow reads without complaint."""
    data = bytearray(path.read_bytes())
    footer_len = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_len
    value, encoded = real << 1, bytearray()
    while True:
        encoded.append((value & 0x7F) | (0x80 if value >> 7 else 0))
        value >>= 7
        if not value:
            break
    at = data.index(bytes(encoded), start)
    forged = bytearray([0x82] + [0x80] * (len(encoded) - 2) + [0x00])
    data[at : at + len(encoded)] = forged
    path.write_bytes(bytes(data))


def test_pieces_are_sized_from_page_headers_not_a_forged_footer(tmp_path):
    """The footer's total_uncompressed_size sized pieces; pyarrow does not check it against the
    pages, so a footer saying 1 byte made 1,024-row pieces of 1 MiB captions (1 GB). The pages'
    own sizes are used."""
    path = tmp_path / "f.parquet"
    captions = [f"{i:06d} " + "y" * (1 << 20) for i in range(200)]
    pq.write_table(pa.table({"caption": captions, "url": [f"http://e/{i}.jpg" for i in range(200)]}), path, compression="zstd", use_dictionary=False)
    real = pq.ParquetFile(path).metadata.row_group(0).column(0).total_uncompressed_size
    _forge_total_uncompressed_size(path, real)
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).total_uncompressed_size == 1
    plan = _parquet_plan(pq.ParquetFile(path), str(path), 8 << 20)
    assert plan.per_row >= real / 200
    reader = interleaf.read(path, format="pairs", max_batch_bytes=8 << 20)
    batches = list(reader)
    assert reader.stats["errors"] == {} and sum(b.filter(pl.col("kind") == "text").height for b in batches) == 200
    assert max(int(b.get_column("text").str.len_bytes().sum()) for b in batches) <= 9 << 20


def test_pages_of_many_columns_add_up_to_a_bomb(tmp_path, monkeypatch):
    """The bomb test is by row group, not by page: 4 columns of one 24 MiB page each (a few KB
    stored) make a row of 96 MiB, which pyarrow decompresses at once. With the threshold at 64
    MiB (1 GiB by default), that row group is refused, and a row group of 2 such columns reads."""
    import interleaf.io.reader as reader_module

    monkeypatch.setattr(reader_module, "MAX_UNBACKED_BYTES", 64 << 20)
    text = "z" * (24 << 20)
    path = tmp_path / "w.parquet"
    schema = pa.schema([("caption", pa.string())] + [(f"c{k}", pa.string()) for k in range(1, 4)] + [("url", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=False) as w:
        w.write_table(pa.table({"caption": [text], "c1": [text], "c2": ["a"], "c3": ["b"], "url": ["http://e/0.jpg"]}, schema=schema))
        w.write_table(pa.table({"caption": [text], "c1": [text], "c2": [text], "c3": [text], "url": ["http://e/1.jpg"]}, schema=schema))
    plan = _parquet_plan(pq.ParquetFile(path), str(path), 1 << 20)
    assert list(plan.refused) == [1]
    reader = interleaf.read(path, format="pairs", load_images=False, max_batch_bytes=1 << 20)
    list(reader)
    assert reader.stats["documents"] == 2 and reader.stats["errors"] == {"corrupt_parquet": 1}


def test_a_chunk_whose_pages_cannot_all_be_walked_refuses_its_row_group(tmp_path, monkeypatch):
    """Sizes come from walking every page (Arrow reads a bomb behind 100,000 empty index pages
    as readily as any): a chunk of more pages than are walked refuses its row group instead of
    falling back on the footer; the other row groups read."""
    monkeypatch.setattr(_pages, "MAX_PAGES", 20)
    path = tmp_path / "p.parquet"
    captions = [f"caption {i} " + "x" * 200 for i in range(2000)]
    schema = pa.schema([("caption", pa.string()), ("url", pa.string())])
    with pq.ParquetWriter(path, schema, data_page_size=4096, write_batch_size=16, use_dictionary=False) as w:
        w.write_table(pa.table({"caption": ["short"] * 10, "url": ["http://e/a.jpg"] * 10}, schema=schema))
        w.write_table(pa.table({"caption": captions, "url": ["http://e/b.jpg"] * 2000}, schema=schema))
    plan = _parquet_plan(pq.ParquetFile(path), str(path), 256 << 20)
    assert list(plan.refused) == [1] and "over 20 pages" in plan.refused[1]


def test_a_dictionary_page_after_data_pages_and_pages_past_the_stated_size_are_walked(tmp_path):
    """Arrow reads a chunk's pages until it has all its values, up to 100 bytes past its stated
    size (its padding for old parquet-mr files), and takes a dictionary page after plain data
    pages: the walk does too (a 1.7 KB file hid a 3 GB gather past the stated size)."""

    class Column:  # what scan_chunk reads of a ColumnChunkMetaData
        has_dictionary_page, dictionary_page_offset, compression = False, None, "UNCOMPRESSED"

        def __init__(self, size, values):
            self.data_page_offset, self.total_compressed_size, self.num_values = 0, size, values

    def header(kind, size, values, encoding=0):
        """A page header in Thrift compact form: type, sizes, and a v1 data page header (or a
        dictionary page header) with the value count and encoding."""

        def i32(field_delta, v):
            z = (v << 1) ^ (v >> 31)
            out = bytearray([(field_delta << 4) | 5])
            while True:
                out.append((z & 0x7F) | (0x80 if z >> 7 else 0))
                z >>= 7
                if not z:
                    return bytes(out)

        inner = i32(1, values) + i32(1, encoding) + (i32(1, 3) + i32(1, 3) if kind == 0 else b"") + b"\x00"
        return i32(1, kind) + i32(1, size) + i32(1, size) + bytes([(2 if kind == 0 else 4) << 4 | 12]) + inner + b"\x00"

    body = b"\x00" * 10
    plain = header(0, len(body), 5) + body
    dictionary = header(2, len(body), 1) + body
    indexed = header(0, len(body), 5, encoding=8) + body
    path = tmp_path / "pages"
    path.write_bytes(plain + dictionary + indexed + b"\x00" * 200)
    with open(path, "rb") as f:
        # The stated size covers the first page only; the other two lie in the padding.
        chunk = _pages.scan_chunk(f, Column(len(plain), 10))
        assert (chunk.other_values, chunk.dictionary_values) == (5, 5) and chunk.dictionary is not None
        assert chunk.dictionary.body == len(plain) + len(dictionary) - len(body)
        # With the values all read, pages past the stated size are not.
        assert _pages.scan_chunk(f, Column(len(plain), 5)).dictionary is None
    # Nor past the padding: a chunk still short of values there ends (Arrow fails on it). An
    # index page of 150 bytes (no values) puts the dictionary and its indices beyond it.
    index = header(1, 150, 0) + b"\x00" * 150
    path.write_bytes(plain + index + dictionary + indexed + b"\x00" * 200)
    with open(path, "rb") as f:
        chunk = _pages.scan_chunk(f, Column(len(plain), 10))
        assert (chunk.other_values, chunk.dictionary_values, chunk.dictionary) == (5, 0, None)
        # Stated to cover the index page, the rest lies in the padding again.
        assert _pages.scan_chunk(f, Column(len(plain) + len(index), 10)).dictionary_values == 5


def test_headers_as_other_writers_write_them(tmp_path):
    """parquet-mr (Spark, Hive, Trino) names BIT_PACKED for the repetition levels a flat
    column does not store: the levels present are RLE, and the indices are read (a PageError
    sent such columns down the slow dictionary read, 4x slower). A value count that is not an
    integer is a PageError, not a TypeError that lost the whole file."""
    def encode_header(num_values, rep_encoding):
        # type=0, uncompressed=4, compressed=4, data_page_header{num_values, encoding=8, def=3, rep}
        out = bytes([0x15, 0x00, 0x15, 0x08, 0x15, 0x08, 0x2C])
        out += bytes([0x15]) + num_values + bytes([0x15, 0x10, 0x15, 0x06, 0x15, rep_encoding << 1]) + b"\x00\x00"
        return out

    path = tmp_path / "h"
    path.write_bytes(encode_header(bytes([0x0A]), 4) + b"\x00" * 8)
    with open(path, "rb") as f:
        page = _pages.read_header(f, 0)
    assert (page.values, page.dictionary_encoded, page.rle_repetition, page.rle_definition) == (5, True, False, True)
    # A struct (an empty one) where the value count goes.
    bad = bytes([0x15, 0x00, 0x15, 0x08, 0x15, 0x08, 0x2C, 0x1C, 0x00, 0x00, 0x00])
    path.write_bytes(bad + b"\x00" * 8)
    with open(path, "rb") as f, pytest.raises(_pages.PageError, match="not an integer"):
        _pages.read_header(f, 0)


def test_pieces_spanning_row_groups_are_sized_by_what_each_gathers(tmp_path):
    """Each row group of 12 OBELICS rows gathers 240 MiB from its dictionary, under what one
    group may gather, but pieces span row groups: 8 groups in 1,024-row pieces peaked at 3 GB
    of arrow memory. What columns read plain gather counts in the bytes per row."""
    paragraph = "w " * (10 << 20)  # 20 MiB
    schema = pa.schema([("id", pa.string()), ("texts", pa.list_(pa.string())), ("images", pa.list_(pa.string()))])
    path = tmp_path / "span.parquet"
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for g in range(4):
            w.write_table(pa.table({"id": [f"d{g}.{i}" for i in range(12)], "texts": [[paragraph, None]] * 12, "images": [[None, f"http://e/{g}.jpg"]] * 12}, schema=schema))
    plan = _parquet_plan(pq.ParquetFile(path), str(path), 256 << 20)
    assert plan.dictionary_columns == [] and plan.per_row >= 20 << 20
    code = textwrap.dedent(f"""
        import pyarrow as pa, interleaf
        n = 0
        for b in interleaf.read({str(path)!r}, format="obelics", load_images=False):
            n += b.height
        print(n, pa.default_memory_pool().max_memory())
    """)
    nodes, peak = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert nodes == 48 * 2 and peak < 600 << 20, peak


def test_a_node_table_goes_on_after_a_row_group_it_cannot_read(tmp_path, monkeypatch):
    """A node table's refused (or damaged) row group ended the file: the row groups after it
    were never read, its error came before the documents read earlier, and a document whose
    rows went on into it came out shortened without a word. Now the documents before come
    first, the last of them carries the error (its rows may continue there), then the row
    group's corrupt_parquet record, then the rest of the file."""
    import interleaf.io.reader as reader_module

    monkeypatch.setattr(reader_module, "MAX_UNBACKED_BYTES", 16 << 20)
    schema = pa.schema([("doc_id", pa.string()), ("pos", pa.int64()), ("kind", pa.string()), ("text", pa.string())])

    def rows(*nodes):
        return pa.table({"doc_id": [n[0] for n in nodes], "pos": [n[1] for n in nodes], "kind": ["text"] * len(nodes), "text": [n[2] for n in nodes]}, schema=schema)

    path = tmp_path / "nodes.parquet"
    with pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=False) as w:
        w.write_table(rows(("d0", 0, "a"), ("d1", 0, "b"), ("d2", 0, "c")))
        w.write_table(rows(("d2", 1, "z" * (32 << 20))))
        w.write_table(rows(("d2", 2, "tail"), ("d3", 0, "e"), ("d4", 0, "f")))
    assert list(_parquet_plan(pq.ParquetFile(path), str(path), 1 << 20).refused) == [1]
    reader = interleaf.read(path, format="nodes", max_batch_bytes=1 << 20)
    df = pl.concat(list(reader))
    assert df.get_column("doc_id").to_list() == ["d0", "d1", "d2", f"{path}#rowgroup1", "d2", "d3", "d4"]
    assert df.get_column("doc_index").to_list() == list(range(7))
    errors = df.get_column("error").to_list()
    assert errors[0] is None and errors[1] is None and errors[5] is None and errors[6] is None
    # d2 before and after the lost group both say so.
    assert errors[2]["kind"] == "corrupt_parquet" and "may continue there" in errors[2]["message"]
    assert errors[3]["kind"] == "corrupt_parquet" and "row group 1" in errors[3]["message"]
    assert errors[4]["kind"] == "corrupt_parquet" and "may have begun there" in errors[4]["message"]
    assert reader.stats["documents"] == 7 and reader.stats["errors"] == {"corrupt_parquet": 3}


def test_a_record_over_256_mib_of_plain_values_is_its_error(tmp_path):
    """A row of three 90 MiB paragraphs stored plain (a few KB compressed) is 270 MiB: over
    what one record may hold, as a JSON line over 256 MiB is. Its texts are left out and it is
    a member_too_large record naming them; the rows around it read."""
    big = "p " * (45 << 20)
    texts = pa.array([["before", None], [big, big, big, None], ["after", None]])
    images = pa.array([[None, "http://e/a.jpg"], [None, None, None, "http://e/b.jpg"], [None, "http://e/c.jpg"]])
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"id": ["d0", "d1", "d2"], "texts": texts, "images": images}), path, compression="zstd", use_dictionary=False)
    assert path.stat().st_size < 1 << 20
    reader = interleaf.read(path, format="obelics", load_images=False)
    df = pl.concat(list(reader))
    assert reader.stats["documents"] == 3 and reader.stats["errors"] == {"member_too_large": 1}
    error = df.filter(pl.col("doc_id") == "d1").get_column("error")[0]
    assert error["kind"] == "member_too_large" and error["message"].startswith("texts: ")
    # The row's text and binary values: three paragraphs (and a few bytes: its id and URL).
    size = int(re.match(r"texts: (\d+) bytes once decoded, over the 268435456 bytes", error["message"])[1])
    assert 3 * (len(big) + 8) <= size < 3 * (len(big) + 8) + 1000
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == ["before", "after"]


def test_empty_row_groups_and_files_read_as_nothing(tmp_path):
    """A row group of no rows (pyarrow writes one for an empty table, or for an empty table
    written last) has chunks whose data page offset is 0: walking from there read the file's
    magic as a page and refused it. Arrow reads no page of a chunk without values; nor does
    the walk. A file of no row groups reads as nothing too."""
    schema = pa.schema([("caption", pa.string()), ("url", pa.string())])
    pq.write_table(pa.table({"caption": [], "url": []}, schema=schema), tmp_path / "empty.parquet")
    with pq.ParquetWriter(tmp_path / "trailing.parquet", schema) as w:
        w.write_table(pa.table({"caption": ["a cat"], "url": ["http://e/a.jpg"]}, schema=schema))
        w.write_table(pa.table({"caption": [], "url": []}, schema=schema))
    with pq.ParquetWriter(tmp_path / "none.parquet", schema):
        pass
    for name, groups, documents in (("empty", 1, 0), ("trailing", 2, 1), ("none", 0, 0)):
        path = tmp_path / f"{name}.parquet"
        assert pq.ParquetFile(path).metadata.num_row_groups == groups
        assert _parquet_plan(pq.ParquetFile(path), str(path), 256 << 20).refused == {}
        reader = interleaf.read(path, format="pairs", load_images=False)
        list(reader)
        assert reader.stats["documents"] == documents and reader.stats["errors"] == {}, name
    nodes = tmp_path / "nodes.parquet"
    pl.DataFrame(schema=interleaf.NODE_SCHEMA).write_parquet(nodes)
    reader = interleaf.read(nodes, format="nodes")
    assert sum(b.height for b in reader) == 0 and reader.stats["errors"] == {}


def test_the_pages_held_at_once_count_not_all_the_pages(tmp_path, monkeypatch):
    """Arrow decompresses a column's pages one at a time: 8 pages of 24 MiB in one column are
    24 MiB at once, not 192 MiB (summing every page refused a file of 5,000 segmentation
    masks that pyarrow reads at 1 GB). With the threshold at 64 MiB, it reads."""
    import interleaf.io.reader as reader_module

    monkeypatch.setattr(reader_module, "MAX_UNBACKED_BYTES", 64 << 20)
    path = tmp_path / "pages.parquet"
    text = "z" * (24 << 20)
    pq.write_table(pa.table({"caption": [text] * 8, "url": [f"http://e/{i}.jpg" for i in range(8)]}), path, compression="zstd", use_dictionary=False, write_batch_size=1, data_page_size=1 << 20)
    md = pq.ParquetFile(path).metadata.row_group(0).column(0)
    with open(path, "rb") as f:
        chunk = _pages.scan_chunk(f, md)
        assert sum(1 for _ in _pages._walk(f, md)) == 8
    assert chunk.unbacked > 180 << 20 and chunk.unbacked_at_once < 25 << 20
    assert _parquet_plan(pq.ParquetFile(path), str(path), 1 << 20).refused == {}
