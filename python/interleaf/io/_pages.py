"""Parquet page headers, read from the file (pyarrow does not expose them): a column chunk's
pages as Arrow reads them and their sizes, its dictionary page, how many of its values are
dictionary-encoded, the
longest value its dictionary holds and, decoding the indices, the bytes they gather. These
bound the bytes its values decode to, which the chunk's sizes do not: one 10 MiB caption in the
dictionary, referenced by a million two-bit indices, is a few KB in the file and 10 TB once
gathered.

Headers are Thrift compact structs (parquet-format's ``PageHeader``); only the fields read
here are kept, the rest skipped. Everything is bounded (bytes read per header, pages per
chunk, nesting), and a header that cannot be read raises :class:`PageError`: callers then
assume the worst.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from .. import _native

# parquet-format PageType values.
_DATA_PAGE, DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
#: A page header with more bytes than this (statistics of huge values) is not read: Arrow's
#: own limit (``max_page_header_size``), so every header pyarrow reads is read here too.
MAX_HEADER_BYTES = 16 << 20
#: A chunk of more pages than this is not walked (the default page is 1 MiB: 100 GB); its row
#: group is refused.
MAX_PAGES = 100_000
#: Dictionary pages are decoded to find their longest entry up to this size and entry count
#: (Arrow holds a column's dictionary page whole when it reads the chunk, so decoding it here
#: costs no more than the read: pyarrow's writer puts a first batch of 1,024 values in it,
#: 1,024 images or masks of 260 KB being a 268 MB page).
MAX_DICTIONARY_BYTES = 1 << 30
MAX_DICTIONARY_ENTRIES = 4 << 20
#: What a page decompresses to beyond this many times its stored bytes is counted as a
#: compression bomb's (text compresses 3-5x; a 2 GB page of one paragraph repeated, 10,000x;
#: segmentation masks, hundreds of times: see ``reader._parquet_plan``).
BOMB_RATIO = 16
#: The dictionary indices of a file are decoded up to this many bytes in all (pages as
#: decompressed, levels included) and this many values (about a second of decoding): past
#: them, a column is assumed to gather the most it could.
MAX_INDEX_BYTES = 256 << 20
MAX_INDEX_VALUES = 1 << 27
#: Parquet codec names (as pyarrow's column metadata gives them) as ``pyarrow.decompress``
#: names them. pyarrow calls LZ4_RAW "LZ4"; Hadoop's framed LZ4 and LZO are not decoded.
_CODECS = {"SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli", "ZSTD": "zstd", "LZ4": "lz4_raw", "LZ4_RAW": "lz4_raw"}


class PageError(ValueError):
    """A page header or dictionary page that could not be read within the bounds."""


class DictionaryTooLarge(PageError):
    """A dictionary page over :data:`MAX_DICTIONARY_BYTES` or :data:`MAX_DICTIONARY_ENTRIES`."""


@dataclass
class Page:
    """One page's header: its type, sizes, value count (nulls included), whether its values
    are dictionary indices, and where its body starts; for a v2 data page, the bytes of its
    levels (stored before the values, never compressed; the repetition levels first) and
    whether its values are compressed; for a v1 data page, whether its repetition and
    definition levels are RLE."""

    type: int
    uncompressed: int
    compressed: int
    values: int
    dictionary_encoded: bool
    body: int
    levels: int = 0
    repetition_levels: int = 0
    values_compressed: bool = True
    rle_repetition: bool = True
    rle_definition: bool = True


def read_header(f: BinaryIO, offset: int) -> Page:
    """The page header at ``offset`` of file ``f`` (parsed in Rust:
    ``interleaf_core::formats::parquet::page_header``)."""
    size = 1024
    while True:
        f.seek(offset)
        data = f.read(size)
        try:
            got = _native.parquet_page_header(data)
        except ValueError as e:
            raise PageError(f"page header at byte {offset}: {e}") from None
        if got is not None:
            break
        if len(data) < size or size >= MAX_HEADER_BYTES:
            raise PageError(f"page header at byte {offset}: truncated or over {MAX_HEADER_BYTES} bytes")
        size = min(size * 16, MAX_HEADER_BYTES)
    kind, uncompressed, compressed, values, encoded, used, levels, repetition, values_compressed, rle_repetition, rle_definition = got
    return Page(kind, uncompressed, compressed, values, encoded, offset + used, levels, repetition, values_compressed, rle_repetition, rle_definition)


def chunk_start(column: Any) -> int:
    """Where pyarrow starts reading a column chunk (``column``: its ``ColumnChunkMetaData``):
    at its dictionary page when the metadata names one before the data pages."""
    start = column.data_page_offset
    if column.has_dictionary_page and column.dictionary_page_offset and 0 < column.dictionary_page_offset < start:
        start = column.dictionary_page_offset
    return int(start)


@dataclass
class Chunk:
    """What a column chunk's pages hold: values stored as dictionary indices, and values
    stored otherwise (a dictionary that filled and fell back to plain pages); the bytes its
    pages decompress to, as their headers say (what pyarrow allocates for them), and of those
    the bytes beyond :data:`BOMB_RATIO` times what each page stores (what a compression bomb
    is made of); and its dictionary page."""

    dictionary_values: int
    other_values: int
    uncompressed: int = 0
    unbacked: int = 0
    dictionary: Page | None = None
    #: The most of those bytes Arrow holds at once reading the chunk: its dictionary page and
    #: its largest data page (it decompresses one page at a time).
    unbacked_at_once: int = 0


#: Arrow reads a chunk up to this many bytes past its stated size for files of parquet-mr
#: before 1.2.9 (PARQUET-816), whose dictionary page headers were left out of the size.
PADDING = 100


def _walk(f: BinaryIO, column: Any) -> Iterator[Page]:
    """A column chunk's pages (``column``: its ``ColumnChunkMetaData``) as Arrow reads them:
    from its first page until the chunk's values are all read, past its stated size by up to
    :data:`PADDING` bytes where they are not (Arrow's padding for old writers), whatever pages
    lie between (index pages, a dictionary page after data pages)."""
    want = column.num_values
    if not want:
        return  # Arrow reads no page of a chunk without values (an empty row group's)
    start = chunk_start(column)
    end = start + column.total_compressed_size
    at, pages, seen = start, 0, 0
    while at < end or (seen < want and at < end + PADDING):
        page = read_header(f, at)
        if page.type in (_DATA_PAGE, _DATA_PAGE_V2):
            seen += page.values
        yield page
        at = page.body + page.compressed
        pages += 1
        if pages > MAX_PAGES:
            raise PageError(f"column chunk at byte {start}: over {MAX_PAGES} pages")


def scan_chunk(f: BinaryIO, column: Any) -> Chunk:
    """What a column chunk's pages hold (see :func:`_walk`)."""
    out = Chunk(0, 0)
    largest = 0
    for page in _walk(f, column):
        if page.dictionary_encoded:
            out.dictionary_values += page.values
        elif page.type == DICTIONARY_PAGE:
            if out.dictionary is not None:
                raise PageError(f"column chunk at byte {page.body}: a second dictionary page")
            out.dictionary = page
        elif page.type in (_DATA_PAGE, _DATA_PAGE_V2):
            out.other_values += page.values
        unbacked = max(0, page.uncompressed - BOMB_RATIO * page.compressed)
        out.uncompressed += page.uncompressed
        out.unbacked += unbacked
        if page.type != DICTIONARY_PAGE:
            largest = max(largest, unbacked)
    out.unbacked_at_once = largest + (max(0, out.dictionary.uncompressed - BOMB_RATIO * out.dictionary.compressed) if out.dictionary else 0)
    return out


def _decompressed(raw: bytes, size: int, codec: str, what: str) -> bytes:
    """``raw`` decompressed with the chunk's ``codec`` to ``size`` bytes."""
    import pyarrow as pa

    if codec == "UNCOMPRESSED":
        return raw  # the bytes pyarrow reads, whatever the header says they decompress to
    if codec not in _CODECS:
        raise PageError(f"{what} compressed with {codec}: not decoded")
    try:
        return pa.decompress(raw, decompressed_size=size, codec=_CODECS[codec], asbytes=True)
    except Exception as e:  # pyarrow raises several types for a damaged buffer
        raise PageError(f"{what}: {e}") from e


def dictionary_entries(f: BinaryIO, column: Any, page: Page) -> bytes:
    """A dictionary page's body, decompressed (``column``: its chunk's
    ``ColumnChunkMetaData``)."""
    if max(page.uncompressed, page.compressed) > MAX_DICTIONARY_BYTES or page.values > MAX_DICTIONARY_ENTRIES:
        raise DictionaryTooLarge(f"dictionary page of {page.uncompressed} bytes and {page.values} entries: not decoded")
    f.seek(page.body)
    return _decompressed(f.read(page.compressed), page.uncompressed, column.compression, "dictionary page")


def longest_entry(entries: bytes, page: Page) -> int:
    """The byte length of the longest entry of a BYTE_ARRAY dictionary page ``page`` whose
    body is ``entries`` (PLAIN: each entry a 4-byte length and its bytes)."""
    try:
        return _native.plain_byte_array_longest(entries, page.values)
    except ValueError as e:
        raise PageError(f"dictionary page: {e}") from e


def _levels_and_indices(f: BinaryIO, column: Any, page: Page, max_repetition: int, max_definition: int) -> tuple[bytes, bytes]:
    """A dictionary-encoded data page's definition levels (RLE/bit-packed runs, empty when
    ``max_definition`` is 0) and its indices (a byte of bit width, then RLE/bit-packed runs)."""
    f.seek(page.body)
    raw = f.read(page.compressed)
    where = f"data page at byte {page.body}"
    if page.type == _DATA_PAGE_V2:
        # Repetition levels, definition levels, values; the levels never compressed.
        if page.levels > len(raw) or page.levels > page.uncompressed:
            raise PageError(f"{where}: levels past the page")
        levels = raw[page.repetition_levels : page.levels] if max_definition else b""
        values = raw[page.levels :]
        if page.values_compressed:
            values = _decompressed(values, page.uncompressed - page.levels, column.compression, "data page")
        return levels, values
    if (max_repetition and not page.rle_repetition) or (max_definition and not page.rle_definition):
        raise PageError(f"{where}: levels not RLE-encoded")
    data = memoryview(_decompressed(raw, page.uncompressed, column.compression, "data page"))
    # v1: the repetition levels, then the definition levels, each behind its u32 byte length.
    levels = b""
    for present, keep in ((max_repetition, False), (max_definition, True)):
        if present:
            n = int.from_bytes(data[:4], "little") if len(data) >= 4 else -1
            if not 0 <= n <= len(data) - 4:
                raise PageError(f"{where}: levels past the page")
            if keep:
                levels = bytes(data[4 : 4 + n])
            data = data[4 + n :]
    return levels, bytes(data)


def gathered_bytes(f: BinaryIO, column: Any, page: Page, entries: bytes, max_repetition: int, max_definition: int, budget: list[int] | None = None) -> int:
    """The bytes the dictionary indices of a column chunk gather from its dictionary page
    ``page``, whose body is ``entries`` (``column``: its ``ColumnChunkMetaData``;
    ``max_repetition``/``max_definition``: the column's maximum levels), each value counting
    its entry's length plus 8 as ``reader._decoded_bytes`` does. ``budget``: the bytes of index pages (as decompressed)
    and values left to decode, shared by the calls for one file and reduced by this one's (a
    PageError when they would run over; :data:`MAX_INDEX_BYTES` and :data:`MAX_INDEX_VALUES`
    when not given)."""
    budget = [MAX_INDEX_BYTES, MAX_INDEX_VALUES] if budget is None else budget
    decoded = values = 0
    streams: list[tuple[bytes, bytes]] = []
    counts: list[int] = []
    for data_page in _walk(f, column):
        if data_page.dictionary_encoded and data_page.values and data_page.body > page.body:
            decoded += data_page.uncompressed
            values += data_page.values
            if decoded > budget[0] or values > budget[1]:
                raise PageError(f"column chunk at byte {page.body}: over {MAX_INDEX_BYTES} bytes or {MAX_INDEX_VALUES} values of dictionary indices in this file")
            streams.append(_levels_and_indices(f, column, data_page, max_repetition, max_definition))
            counts.append(data_page.values)
    budget[0] -= decoded
    budget[1] -= values
    try:
        return _native.dictionary_gathered_bytes(entries, page.values, streams, counts, max_definition)
    except ValueError as e:
        raise PageError(str(e)) from e
