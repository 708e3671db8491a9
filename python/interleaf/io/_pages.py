"""Parquet page headers, read from the file (pyarrow does not expose them): whether a column
chunk starts with a dictionary page, how many of its values are dictionary-encoded and the
longest value its dictionary holds. Together they bound the bytes its values decode to, which
the chunk's sizes do not: one 10 MiB caption in the dictionary, referenced by a million
two-bit indices, is a few KB in the file and 10 TB once gathered.

Headers are Thrift compact structs (parquet-format's ``PageHeader``); only the fields read
here are kept, the rest skipped. Everything is bounded (bytes read per header, pages per
chunk, nesting), and a header that cannot be read raises :class:`PageError`: callers then
assume the worst.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from .. import _native

# Thrift compact protocol field types.
_STOP, _TRUE, _FALSE, _I8, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)
# parquet-format PageType and Encoding values.
_DATA_PAGE, DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_DICTIONARY_ENCODINGS = {2, 8}  # PLAIN_DICTIONARY, RLE_DICTIONARY
#: A page header with more bytes than this (statistics of huge values) is not read.
MAX_HEADER_BYTES = 1 << 20
#: A chunk of more pages than this is not walked (the default page is 1 MiB: 100 GB).
MAX_PAGES = 100_000
#: Dictionary pages are decoded to find their longest entry up to this size and entry count.
MAX_DICTIONARY_BYTES = 256 << 20
MAX_DICTIONARY_ENTRIES = 4 << 20
#: Parquet codec names (as pyarrow's column metadata gives them) as ``pyarrow.decompress``
#: names them. pyarrow calls LZ4_RAW "LZ4"; Hadoop's framed LZ4 and LZO are not decoded.
_CODECS = {"SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli", "ZSTD": "zstd", "LZ4": "lz4_raw", "LZ4_RAW": "lz4_raw"}


class PageError(ValueError):
    """A page header or dictionary page that could not be read within the bounds."""


class _Short(Exception):
    """The header runs past the bytes read so far."""


class _Compact:
    """A reader of Thrift compact structs over bytes."""

    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise _Short
        self.at += 1
        return self.data[self.at - 1]

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if b < 0x80:
                return out
            shift += 7
            if shift > 63:
                raise PageError("page header: a varint of over 10 bytes")

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def skip(self, n: int) -> None:
        if n < 0:
            raise PageError("page header: a negative length")
        if self.at + n > len(self.data):
            raise _Short
        self.at += n

    def value(self, kind: int, depth: int) -> Any:
        if depth > 16:
            raise PageError("page header: values nested over 16 deep")
        if kind in (_TRUE, _FALSE):
            return kind == _TRUE
        if kind == _I8:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            self.skip(8)
            return None
        if kind == _BINARY:
            self.skip(self.varint())
            return None
        if kind in (_LIST, _SET):
            head = self.byte()
            n, element = head >> 4, head & 0x0F
            if n == 15:
                n = self.varint()
            for _ in range(n):  # every element takes a byte at least: bounded by the data
                self.element(element, depth + 1)
            return None
        if kind == _MAP:
            n = self.varint()
            if n:
                types = self.byte()
                for _ in range(n):
                    self.element(types >> 4, depth + 1)
                    self.element(types & 0x0F, depth + 1)
            return None
        if kind == _STRUCT:
            return self.struct(depth + 1)
        raise PageError(f"page header: unknown Thrift type {kind}")

    def element(self, kind: int, depth: int) -> None:
        # A container's booleans are a byte each, not folded into the type.
        if kind in (_TRUE, _FALSE):
            self.skip(1)
        else:
            self.value(kind, depth)

    def struct(self, depth: int = 0) -> dict[int, Any]:
        if depth > 16:
            raise PageError("page header: values nested over 16 deep")
        fields: dict[int, Any] = {}
        last = 0
        while True:
            head = self.byte()
            if head == _STOP:
                return fields
            kind, delta = head & 0x0F, head >> 4
            last = last + delta if delta else self.zigzag()
            fields[last] = self.value(kind, depth)


@dataclass
class Page:
    """One page's header: its type, sizes, value count (nulls included), whether its values
    are dictionary indices, and where its body starts."""

    type: int
    uncompressed: int
    compressed: int
    values: int
    dictionary_encoded: bool
    body: int


def read_header(f: BinaryIO, offset: int) -> Page:
    """The page header at ``offset`` of file ``f``."""
    size = 1024
    while True:
        f.seek(offset)
        data = f.read(size)
        try:
            reader = _Compact(data)
            h = reader.struct()
            break
        except RecursionError:
            raise PageError(f"page header at byte {offset}: nested too deep") from None
        except _Short:
            if len(data) < size or size >= MAX_HEADER_BYTES:
                raise PageError(f"page header at byte {offset}: truncated or over {MAX_HEADER_BYTES} bytes") from None
            size *= 16
    kind, uncompressed, compressed = h.get(1), h.get(2), h.get(3)
    if not isinstance(kind, int) or not isinstance(uncompressed, int) or not isinstance(compressed, int) or uncompressed < 0 or compressed < 0:
        raise PageError(f"page header at byte {offset}: no type or sizes")
    values, encoded = 0, False
    if kind == _DATA_PAGE and isinstance(h.get(5), dict):
        values, encoded = h[5].get(1) or 0, h[5].get(2) in _DICTIONARY_ENCODINGS
    elif kind == _DATA_PAGE_V2 and isinstance(h.get(8), dict):
        # num_values, nulls included: pyarrow does not read num_nulls, so neither is it
        # trusted here (a forged count would hide the values).
        values, encoded = h[8].get(1) or 0, h[8].get(4) in _DICTIONARY_ENCODINGS
    elif kind == DICTIONARY_PAGE and isinstance(h.get(7), dict):
        values = h[7].get(1) or 0
    return Page(kind, uncompressed, compressed, max(values, 0), encoded, offset + reader.at)


def chunk_start(column: Any) -> int:
    """Where pyarrow starts reading a column chunk (``column``: its ``ColumnChunkMetaData``):
    at its dictionary page when the metadata names one before the data pages."""
    start = column.data_page_offset
    if column.has_dictionary_page and column.dictionary_page_offset and 0 < column.dictionary_page_offset < start:
        start = column.dictionary_page_offset
    return int(start)


@dataclass
class Chunk:
    """What a column chunk's data pages hold: values stored as dictionary indices, and values
    stored otherwise (a dictionary that filled and fell back to plain pages)."""

    dictionary_values: int
    other_values: int


def scan_chunk(f: BinaryIO, column: Any) -> Chunk:
    """Walks a column chunk's page headers (``column``: its ``ColumnChunkMetaData``)."""
    start = chunk_start(column)
    end = start + column.total_compressed_size
    at, pages = start, 0
    out = Chunk(0, 0)
    while at < end:
        page = read_header(f, at)
        if page.dictionary_encoded:
            out.dictionary_values += page.values
        elif page.type != DICTIONARY_PAGE:
            out.other_values += page.values
        at = page.body + page.compressed
        pages += 1
        if pages > MAX_PAGES:
            raise PageError(f"column chunk at byte {start}: over {MAX_PAGES} pages")
    return out


def longest_entry(f: BinaryIO, column: Any, page: Page) -> int:
    """The byte length of the longest entry of a BYTE_ARRAY dictionary page (PLAIN: each
    entry a 4-byte length and its bytes)."""
    import pyarrow as pa

    if max(page.uncompressed, page.compressed) > MAX_DICTIONARY_BYTES or page.values > MAX_DICTIONARY_ENTRIES:
        raise PageError(f"dictionary page of {page.uncompressed} bytes and {page.values} entries: not decoded")
    f.seek(page.body)
    raw = f.read(page.compressed)
    codec = column.compression
    if codec == "UNCOMPRESSED":
        data = raw  # the bytes pyarrow reads, whatever the header says they decompress to
    elif codec in _CODECS:
        try:
            data = pa.decompress(raw, decompressed_size=page.uncompressed, codec=_CODECS[codec], asbytes=True)
        except Exception as e:  # pyarrow raises several types for a damaged buffer
            raise PageError(f"dictionary page: {e}") from e
    else:
        raise PageError(f"dictionary page compressed with {codec}: not decoded")
    try:
        return _native.plain_byte_array_longest(data, page.values)
    except ValueError as e:
        raise PageError(f"dictionary page: {e}") from e
