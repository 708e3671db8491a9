"""Parquet pages the reader decodes itself (interleaf/io/_pages.py) to bound memory: the bytes
a chunk's dictionary indices gather (its RLE/bit-packed index pages decoded, nulls told apart by
the definition levels), pages that are compression bombs (refused with their row group), and
sizes taken from page headers rather than the footer, which pyarrow does not check."""

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
            got = _pages.gathered_bytes(f, md, chunk.dictionary, leaf.max_repetition_level, leaf.max_definition_level)
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
        assert _pages.gathered_bytes(f, md, chunk.dictionary, 0, 1) == 1_000_000 * (len(PARAGRAPH) + 8)


def _bomb_rows(n):
    return {"id": [f"b{i}" for i in range(n)], "texts": [[PARAGRAPH, None] for _ in range(n)], "images": [[None, f"http://e/{i}.jpg"] for i in range(n)]}


def test_a_page_that_is_a_compression_bomb_refuses_its_row_group_only(tmp_path):
    """pyarrow's writer puts up to 1,024 values in a page: 400 OBELICS rows naming a 10 MiB
    paragraph are a 190 KB file holding a 2 GB page (its dictionary filled after the first
    page), which pyarrow decompresses whole to read any row of it: arrow's pool peaked at 2.2 GB
    at 64 MiB batches. The row group holding it is one corrupt_parquet record naming the page;
    the row groups around it read, and arrow's peak stays small."""
    ordinary = {"id": ["a0", "a1"], "texts": [["first", None], ["second", None]], "images": [[None, "http://e/a.jpg"], [None, "http://e/b.jpg"]]}
    schema = pa.schema([("id", pa.string()), ("texts", pa.list_(pa.string())), ("images", pa.list_(pa.string()))])
    path = tmp_path / "bomb.parquet"
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        w.write_table(pa.table(ordinary, schema=schema))
        w.write_table(pa.table(_bomb_rows(400), schema=schema))
        w.write_table(pa.table(ordinary, schema=schema))
    assert path.stat().st_size < 400_000
    plan = _parquet_plan(pq.ParquetFile(path), str(path), 64 << 20)
    assert list(plan.refused) == [1] and "texts.list.element: a page of 2,0" in plan.refused[1] and "compression bomb" in plan.refused[1]
    reader = interleaf.read(path, format="obelics", load_images=False, max_batch_bytes=64 << 20)
    df = pl.concat(list(reader))
    assert reader.stats["documents"] == 5 and reader.stats["errors"] == {"corrupt_parquet": 1}
    assert df.filter(pl.col("kind") == "text").get_column("text").to_list() == ["first", "second", "first", "second"]
    error = df.filter(pl.col("error").is_not_null()).get_column("error")[0]
    assert error["message"].startswith(f"{path}: row group 1: texts.list.element: a page of ")
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
    assert chunk.uncompressed > 256 << 20 and chunk.bomb is None
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
