"""``interleaf.read``: stream node batches from WebDataset shards, jsonl and parquet files."""

from __future__ import annotations

import os
import stat
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from interleaf import _native
from interleaf._checks import int_arg
from interleaf._progress import Progress
from interleaf.io.sources import JSONL, PARQUET, WEBDATASET, container_of, expand
from interleaf.schema import DOC_INDEX, ERROR, IMAGE, IMAGE_KIND, KIND, NODE_SCHEMA, RECORD_FORMATS, TEXT, TEXT_KIND, conform, record_error

#: Formats ``read`` accepts: the WebDataset container or a record format inside jsonl/parquet.
FORMATS = (WEBDATASET, *RECORD_FORMATS)
_ALIASES = {"wds": WEBDATASET, "tar": WEBDATASET}

#: Default number of documents per batch.
DEFAULT_BATCH_SIZE = 1024


def _empty_stats() -> dict[str, Any]:
    keys = ("files", "documents", "nodes", "text_nodes", "image_nodes", "text_bytes", "image_bytes", "bytes_read")
    return {**dict.fromkeys(keys, 0), "errors": {}}


def _add_stats(total: dict[str, Any], part: dict[str, Any]) -> None:
    for k, v in part.items():
        if k == "errors":
            for kind, n in v.items():
                total["errors"][kind] = total["errors"].get(kind, 0) + n
        else:
            total[k] += v


def frame_stats(df: pl.DataFrame) -> dict[str, Any]:
    """Counters for a node table, the same ones the native readers keep (documents are the
    distinct ``doc_index`` values)."""
    kinds = df.get_column("kind")
    text_len = df.get_column("text").str.len_bytes().fill_null(0)
    image_len = df.get_column("image").bin.size().fill_null(0)
    errs = (
        df.filter(pl.col(ERROR).is_not_null())
        .select(DOC_INDEX, pl.col(ERROR).struct.field("kind"))
        .unique()
        .group_by("kind")
        .len()
    )
    return {
        "files": 0,
        "documents": df.get_column(DOC_INDEX).n_unique() if df.height else 0,
        "nodes": int(kinds.is_not_null().sum()),
        "text_nodes": int((kinds == "text").sum()),
        "image_nodes": int((kinds == "image").sum()),
        "text_bytes": int(text_len.filter(kinds == "text").sum()),
        "image_bytes": int(image_len.filter(kinds == "image").sum()),
        "bytes_read": 0,
        "errors": {k: int(n) for k, n in errs.iter_rows()},
    }


def is_utf8(path: str) -> bool:
    """Whether a path (as Python holds it, undecodable bytes as surrogates) is valid UTF-8."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def shown(path: str) -> str:
    """A path as text that can be stored: undecodable bytes as U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def _error_frame(path: str, doc_index: int, kind: str, message: str) -> pl.DataFrame:
    row: dict[str, Any] = {name: None for name in NODE_SCHEMA}
    row.update(doc_id=path, doc_index=doc_index, pos=0, source=path, error=record_error(kind, message))
    return pl.DataFrame([row], schema=NODE_SCHEMA)


# :attr:`Reader.image_files`'s columns.
_FILES_SCHEMA = {"path": pl.String, "size": pl.Int64, "mtime_ns": pl.Int64}

# The keyword options of :func:`read` that say how files are read (the rest: source, format,
# batch_size, progress); commands that read several passes take them as one mapping.
READ_OPTIONS = frozenset({"image_root", "load_images", "max_member_bytes", "max_batch_bytes", "allow_outside_root"})


class Reader:
    """Reads documents as node batches: ``interleaf.read(source, ...)``.

    An iterator of polars DataFrames (one row per node, see :mod:`interleaf.schema`), each
    holding up to ``batch_size`` whole documents, with running counters in :attr:`stats`.
    Damaged records never stop the read: they come through with ``error`` set and are counted
    in ``stats["errors"]`` by kind.

    Args:
        source: a path, a glob (``data/*.tar``), a brace range (``shard-{000..009}.tar``), a
            directory, or a list of these.
        format: ``"webdataset"`` or a record format (``"pairs"``, ``"mmc4"``, ``"obelics"``,
            ``"comm"``, ``"llava"``, ``"nodes"``). Default: the container from the file name
            (.tar/.tar.gz/.tar.zst, .jsonl[.gz|.zst], .parquet) and the record format from the
            keys of the first record.
        batch_size: documents per batch (default 1024); a document is never split.
        image_root: directory that relative image paths in records are resolved against
            (default: the record file's directory; MMC4's ``image_name`` files load only when
            it is given).
        load_images: read local image files named by records into ``image`` (default True);
            URLs are never fetched.
        max_member_bytes: largest image read, however it is supplied (default 256 MiB): a tar
            member, an image file, an inline image of a record (a ``data:`` URI or base64, measured
            before it is decoded; a parquet binary cell) or a node table's image; larger ones
            become ``member_too_large`` errors (the image is not kept, the record is), as do a WebDataset sample's members past 8 times
            this in all or past 65,536 of them. A WebDataset sample's members other than its
            image, text and json are kept in ``meta.__extra__`` up to 16 MiB in all; the others
            are named with their sizes in ``meta.__extra_skipped__``.
        max_batch_bytes: a batch also closes once it holds this many bytes of text, images and
            metadata (default 256 MiB), so memory stays bounded when documents are large; a single
            larger document gets a batch of its own. Parquet record files are cut by their
            decoded bytes too (a dictionary-encoded caption shared by many rows counts once per
            row, bounded from the file's page headers before it is decoded); a row whose values
            from dictionaries decode to over 256 MiB (or this, if larger) is kept without them
            as a ``member_too_large`` error, and a row group that cannot be decoded is one
            ``corrupt_parquet`` record.
        allow_outside_root: let records read image files that resolve (symlinks followed)
            outside ``image_root`` (default False: such a path is a ``path_outside_root``
            error, so a record cannot copy ``../secret`` or ``/etc/passwd`` into the output).
            Without ``image_root``, paths are relative to, and confined to, the record file's
            folder. Devices, FIFOs and folders are never read (``not_a_file``).
        progress: print a progress line with documents/s and MB/s to stderr.
        track_image_files: note every local image file records name, with its size and mtime
            as read, in :attr:`image_files` (what a run keeps to tell, when it runs again,
            whether a shard's images changed).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        format: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        image_root: str | os.PathLike[str] | None = None,
        load_images: bool = True,
        max_member_bytes: int | None = None,
        max_batch_bytes: int | None = None,
        allow_outside_root: bool = False,
        progress: bool = False,
        track_image_files: bool = False,
    ):
        int_arg("batch_size", batch_size)
        int_arg("max_member_bytes", max_member_bytes, optional=True)
        int_arg("max_batch_bytes", max_batch_bytes, optional=True)
        if format is not None:
            format = _ALIASES.get(format, format)
            if format not in FORMATS:
                raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
        self.format = format
        self.batch_size = batch_size
        self.image_root = os.fspath(image_root) if image_root is not None else None
        if self.image_root is not None and load_images and not os.path.isdir(self.image_root):
            raise FileNotFoundError(f"image_root {self.image_root} is not a folder")
        self.load_images = load_images
        self.max_member_bytes = max_member_bytes
        self.max_batch_bytes = max_batch_bytes
        self.allow_outside_root = allow_outside_root
        self.track_image_files = track_image_files
        self._image_files: list[pl.DataFrame] = []
        self.paths = expand(source)
        if not self.paths:
            raise ValueError("no inputs: name files, globs, brace ranges or folders")
        items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
        #: The folders named as sources (a writer must not write inside them).
        self.source_dirs = [os.fspath(i) for i in items if os.path.isdir(i)]
        self.plan = self._plan(self.paths)
        self._progress = Progress("read", enabled=progress)
        self._done = _empty_stats()
        self._live: _native.NativeReader | None = None
        self._next_doc = 0  # doc_index of the next document
        self._parquet_plan = _ParquetPlan([], _PARQUET_PIECE_ROWS, 0.0, {})  # the parquet file being read's
        self._iter = self._batches()

    def _plan(self, paths: list[str]) -> list[tuple[str, list[str]]]:
        """Consecutive runs of paths with the same container."""
        plan: list[tuple[str, list[str]]] = []
        for p in paths:
            c = container_of(p)
            if c is None and not os.path.exists(p):
                raise FileNotFoundError(f"{p}: no such file or directory")
            if c is None:
                if self.format == WEBDATASET:
                    c = WEBDATASET
                elif self.format is not None:
                    c = JSONL
                else:
                    raise ValueError(f"{p}: cannot tell the container from the file name (.tar, .jsonl, .parquet); pass format= (--format): 'webdataset' for a tar, a record layout such as 'pairs' or 'mmc4' for JSON lines")
            if self.format == WEBDATASET and c != WEBDATASET:
                raise ValueError(f"{p}: format='webdataset' but the file is {c}")
            if self.format not in (None, WEBDATASET) and c == WEBDATASET:
                raise ValueError(f"{p}: a tar shard cannot hold {self.format!r} records; use format='webdataset'")
            if plan and plan[-1][0] == c:
                plan[-1][1].append(p)
            else:
                plan.append((c, [p]))
        return plan

    @property
    def stats(self) -> dict[str, Any]:
        """Counters so far: files, documents, nodes, text_nodes, image_nodes, text_bytes,
        image_bytes, bytes_read and errors (documents per error kind)."""
        total = _empty_stats()
        _add_stats(total, self._done)
        if self._live is not None:
            _add_stats(total, self._live.stats())
        return total

    @property
    def image_files(self) -> pl.DataFrame:
        """With ``track_image_files=True``: the local image files the records read so far
        named, one row per path (``path``, ``size``, ``mtime_ns``) in the order first named,
        as they stood before they were read. ``path`` is the image root joined to the
        record's relative path (or the record's absolute path), made absolute. Size and
        mtime_ns are ``os.stat``'s for a regular file, -1 for one that could not be looked up,
        -2 for something there that is not a file (a folder). Empty without tracking, and for
        WebDataset shards and images given inline."""
        if (live := self._live) is not None:  # (another thread may be reading on)
            self._image_files.append(live.take_image_files())
        df = pl.concat([pl.DataFrame(schema=_FILES_SCHEMA), *self._image_files])
        # Each native read names a file once; parquet batches are read one by one.
        return df if len(self._image_files) < 2 else df.unique("path", keep="first", maintain_order=True)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return self

    def __next__(self) -> pl.DataFrame:
        try:
            df = next(self._iter)
        except StopIteration:
            self._progress.close()
            raise
        if df.height:
            self._next_doc = int(df.get_column(DOC_INDEX).max()) + 1  # type: ignore[arg-type]
        s = self.stats
        self._progress.update(s["documents"], s["nodes"], s["bytes_read"])
        return df

    def _batches(self) -> Iterator[pl.DataFrame]:
        for container, named in self.plan:
            paths = []
            for p in named:
                if is_utf8(p):
                    paths.append(p)
                    continue
                # The native readers take UTF-8 paths: a name that is not is this file's error.
                self._done["files"] += 1
                df = _error_frame(shown(p), self._next_doc, "io", f"{shown(p)}: the file name is not UTF-8; rename the file to read it")
                _add_stats(self._done, frame_stats(df))
                yield df
            if not paths:
                continue
            if container == PARQUET:
                for p in paths:
                    yield from self._parquet(p)
                continue
            record_format = None if self.format == WEBDATASET else self.format
            self._live = _native.NativeReader(
                paths,
                WEBDATASET if container == WEBDATASET else JSONL,
                record_format,
                self.image_root,
                self.load_images,
                self.max_member_bytes,
                self._next_doc,
                allow_outside_root=self.allow_outside_root,
                max_batch_bytes=self.max_batch_bytes,
                track_image_files=self.track_image_files,
            )
            while (batch := self._live.next_batch(self.batch_size)) is not None:
                yield batch
            _add_stats(self._done, self._live.stats())
            self._image_files.append(self._live.take_image_files())
            self._live = None

    def _parquet(self, path: str) -> Iterator[pl.DataFrame]:
        import pyarrow.parquet as pq

        self._done["files"] += 1
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise OSError("not a regular file (a FIFO, device or directory is never read)")
            pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
            self._parquet_plan = _parquet_plan(pf, path, self.max_batch_bytes or DEFAULT_MAX_BATCH_BYTES)
            if kept_encoded := self._parquet_plan.dictionary_columns:
                # Read as dictionaries, so a piece's size is known before its values are
                # gathered (see _arrow_batches); only these columns (a plain column read so
                # would be hashed value by value).
                pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20, read_dictionary=kept_encoded)
        except Exception as e:  # pyarrow raises several types for a missing or corrupt file
            df = _error_frame(path, self._next_doc, "io", f"{path}: {e}")
            _add_stats(self._done, frame_stats(df))
            yield df
            return
        self._done["bytes_read"] += os.path.getsize(path)
        names = set(pf.schema_arrow.names)
        is_nodes = {"doc_id", "pos", "kind"} <= names and self.format in (None, "nodes")
        if is_nodes:
            yield from self._parquet_nodes(pf, path)
        else:
            yield from self._parquet_records(pf, path)

    def _arrow_batches(self, pf: Any, rows: int, first_group: int = 0) -> Iterator[tuple[Any, list[str | None] | None]]:
        """Arrow tables of at most ``rows`` rows and about ``max_batch_bytes`` (a file whose
        values are small on disk can hold gigabytes once decoded: dictionary encoding,
        compression), from row group ``first_group`` on, spanning row groups, each with the
        messages of its rows that were too large to read (None when none was). They are read in
        pieces no larger than the row groups' own sizes allow: their pages' uncompressed bytes
        per row (exact for plain pages: a 10 MiB caption that zstd shrinks to nothing counts
        10 MiB) keep a piece near an eighth of the limit, and columns whose dictionary values
        could gather more are read as dictionaries (see :func:`_parquet_plan`). A row whose
        text and binary values decode to more than :data:`MAX_RECORD_BYTES` (or the limit,
        if larger) has them left out, with its message. A row group that cannot be decoded, or
        that the plan refuses, raises :class:`_RowGroupError` after the batches before it."""
        import pyarrow as pa

        plan = self._parquet_plan
        # Up to the next row group refused (see _parquet_plan), which then raises.
        stop = min((g for g in plan.refused if g >= first_group), default=pf.num_row_groups)
        if stop == first_group and stop in plan.refused:
            raise _RowGroupError(stop, ValueError(plan.refused[stop]))
        groups = list(range(first_group, stop))
        if not groups:
            return
        limit = self.max_batch_bytes or DEFAULT_MAX_BATCH_BYTES
        cap = max(limit, MAX_RECORD_BYTES)
        metas = [pf.metadata.row_group(g) for g in groups]
        ends = np.cumsum([m.num_rows for m in metas])
        piece_rows = int(min(rows, plan.piece_rows, max(1, limit // 8 / max(plan.per_row, 1))))
        acc: list[Any] = []
        notes: list[str | None] = []  # per row of acc: why its values were left out
        n = size = 0
        group_now = groups[0]  # the row group of the rows taken last

        def batch() -> tuple[Any, list[str | None] | None]:
            nonlocal acc, notes, n, size
            try:
                table = _portable(_one_table(pa, acc))
            except Exception as e:  # arrow's casts raise several types
                raise _RowGroupError(group_now, e) from e
            finally:
                out_notes = notes if _any_message(notes) else None
                acc, notes, n, size = [], [], 0, 0
            return table, out_notes

        def take(piece: Any) -> Iterator[tuple[Any, list[str | None] | None]]:
            """Adds a piece to the batch being built; yields the batches it completes."""
            nonlocal n, size
            # Sizes as decoded: a dictionary-encoded column (one 10 MiB caption for 400 rows)
            # is small here and 4 GB once its values are gathered.
            whole = _decoded_bytes(piece)
            over = None
            if whole > cap:
                piece, over = _without_huge_rows(piece, cap)
                whole = _decoded_bytes(piece)
            if n + piece.num_rows <= rows and size + whole <= limit:
                acc.append(piece)
                notes.extend(over or [None] * piece.num_rows)
                n, size = n + piece.num_rows, size + whole
            else:
                sizes = _decoded_bytes(piece, per_row=True)
                start = 0
                while start < piece.num_rows:
                    fit = int(np.searchsorted(np.cumsum(sizes[start:]), limit - size, side="right"))
                    k = min(max(fit, 0 if acc else 1), rows - n, piece.num_rows - start)
                    if k:
                        acc.append(piece.slice(start, k))
                        notes.extend(over[start : start + k] if over else [None] * k)
                        n, size, start = n + k, size + int(sizes[start : start + k].sum()), start + k
                    if k == 0 or n >= rows or size >= limit:
                        yield batch()
            if n >= rows or size >= limit:
                yield batch()

        def taken(piece: Any, group: int) -> Iterator[tuple[Any, list[str | None] | None]]:
            """take(piece), whose failure (sizing or converting what was read: out of memory,
            an arrow cast) is the failure of the piece's row group, not a read to retry."""
            nonlocal group_now
            group_now = group
            try:
                yield from take(piece)
            except _RowGroupError:
                raise
            except Exception as e:
                raise _RowGroupError(group, e) from e

        consumed = 0
        pieces = pf.iter_batches(batch_size=piece_rows, row_groups=groups)
        while True:
            try:
                piece = next(pieces)
            except StopIteration:
                break
            except Exception:
                # A read spanning row groups fails for any of them: from the group holding the
                # first row not read, go on one group at a time to tell which one is damaged.
                g = int(np.searchsorted(ends, consumed, side="right"))
                skip = consumed - (int(ends[g - 1]) if g else 0)
                for gi in range(g, len(groups)):
                    try:
                        for piece in pf.iter_batches(batch_size=piece_rows, row_groups=[groups[gi]]):
                            if skip >= piece.num_rows:
                                skip -= piece.num_rows
                                continue
                            piece, skip = piece.slice(skip), 0
                            yield from taken(piece, groups[gi])
                    except _RowGroupError:
                        raise
                    except Exception as e:
                        # What was read before the damage comes first; the caller goes on
                        # after this group.
                        if acc:
                            yield batch()
                        raise _RowGroupError(groups[gi], e) from e
                    skip = 0
                break
            consumed += piece.num_rows
            yield from taken(piece, groups[int(np.searchsorted(ends, consumed - 1, side="right"))])
        if acc:
            yield batch()
        if stop < pf.num_row_groups:
            raise _RowGroupError(stop, ValueError(plan.refused[stop]))

    def _parquet_records(self, pf: Any, path: str) -> Iterator[pl.DataFrame]:
        """Record rows (pairs, MMC4, OBELICS, ...) of a parquet file as node batches. A row
        group that cannot be decoded is one ``corrupt_parquet`` record, a batch that cannot be
        converted another; the read goes on after either."""
        group = 0
        while group < pf.num_row_groups:
            index = sum(pf.metadata.row_group(i).num_rows for i in range(group))
            try:
                for batch, too_large in self._arrow_batches(pf, self.batch_size, group):
                    batch, not_utf8 = _lossy_text(batch)
                    first_doc = self._next_doc
                    try:
                        df, stats = _native.records_to_frame(
                            pl.from_arrow(batch, rechunk=False),  # type: ignore[arg-type]
                            self.format,
                            path,
                            index,
                            self._next_doc,
                            self.image_root,
                            self.load_images,
                            allow_outside_root=self.allow_outside_root,
                            max_member_bytes=self.max_member_bytes,
                            track_image_files=self.track_image_files,
                        )
                        if "image_files" in stats:
                            self._image_files.append(stats.pop("image_files"))
                        stats["files"] = 0
                        if too_large is not None:
                            # Its values left out, the record may be malformed too (OBELICS texts
                            # no longer as long as images): the cause is the error to show.
                            df = _with_errors(df, too_large, "member_too_large", first_doc=first_doc, replace=True)
                        if _any_message(not_utf8):
                            df = _with_errors(df, not_utf8, "invalid_utf8", first_doc=first_doc)
                        if too_large is not None or _any_message(not_utf8):
                            stats["errors"] = frame_stats(df)["errors"]
                    except BaseException as e:
                        if not _file_damage(e):
                            raise
                        df = _error_frame(f"{path}#row{index}", self._next_doc, "corrupt_parquet", f"{path}: rows {index}-{index + batch.num_rows - 1}: {e}")
                        stats = frame_stats(df)
                    index += batch.num_rows
                    _add_stats(self._done, stats)
                    yield df
                return
            except _RowGroupError as e:
                df = _error_frame(f"{path}#rowgroup{e.group}", self._next_doc, "corrupt_parquet", f"{path}: row group {e.group}: {e}")
                _add_stats(self._done, frame_stats(df))
                yield df
                group = e.group + 1

    def _parquet_nodes(self, pf: Any, path: str) -> Iterator[pl.DataFrame]:
        """A node table (our own parquet layout) as batches of whole documents. A row group
        that cannot be decoded (or is refused: see :func:`_parquet_plan`) is one
        ``corrupt_parquet`` record after the documents before it; the read goes on after it.
        The last document before it and the first after, whose rows may continue there, carry
        the error too."""
        group: int | None = 0
        after: str | None = None
        while group is not None:
            group, after = yield from self._parquet_node_groups(pf, path, group, after)

    def _parquet_node_groups(self, pf: Any, path: str, first_group: int, after: str | None) -> Generator[pl.DataFrame, None, tuple[int | None, str | None]]:
        """The documents of a node table from row group ``first_group`` on (``after``: why
        the row group before it was lost, if it was); returns the row group to go on from
        after a lost one and why it was lost (None at the end)."""
        pending: pl.DataFrame | None = None  # node rows read but not yet yielded, as the file has them
        chunks: list[pl.DataFrame] = []  # node rows read since, not yet joined to pending
        waiting, tried = 0, 0  # rows pending + in chunks; rows pending held at the last try
        lost: tuple[int, str, str] | None = None  # a row group not read: its number, its record's id, why
        try:
            for batch, too_large in self._arrow_batches(pf, self.batch_size * 8, first_group):
                batch, not_utf8 = _lossy_text(batch)
                raw = _sized_images(_checked_kinds(_lossy_utf8(pl.from_arrow(batch))), self.max_member_bytes or DEFAULT_MAX_MEMBER_BYTES)  # type: ignore[arg-type]
                if too_large is not None:
                    raw = _with_errors(raw, too_large, "member_too_large", replace=True)
                if _any_message(not_utf8):
                    raw = _with_errors(raw, not_utf8, "invalid_utf8")
                if after is not None:
                    # The first document read may have begun in the rows lost: it says so.
                    first = _native.number_documents(raw, 0).to_numpy() == 0
                    raw = _with_errors(raw, [f"{after} (this document's rows may have begun there)" if b else None for b in first], "corrupt_parquet")
                    after = None
                chunks.append(raw)
                waiting += raw.height
                # Documents are numbered over all pending rows: a try only once they have
                # doubled since the last one keeps a file of one huge document linear.
                if waiting < 2 * tried:
                    continue
                pending = pl.concat([pending, *chunks]) if pending is not None else pl.concat(chunks)
                chunks = []
                # Yield whole batches of documents; the last document may continue in the
                # next arrow batch, so it waits.
                while pending is not None and (df := self._whole_documents(pending, final=False)) is not None:
                    pending = pending[df.height :]
                    _add_stats(self._done, frame_stats(df))
                    yield df
                waiting = tried = pending.height
        except _RowGroupError as e:
            lost = (e.group, f"{path}#rowgroup{e.group}", f"{path}: row group {e.group}: {e}")
        except BaseException as e:
            if not _file_damage(e):
                raise
            done = (pending.height if pending is not None else 0) + sum(c.height for c in chunks)
            lost = (pf.num_row_groups, f"{path}#node{done}", f"{path}: {e}")
        if chunks:
            pending = pl.concat([pending, *chunks]) if pending is not None else pl.concat(chunks)
        if lost is not None and pending is not None and pending.height:
            # The last document read may continue in the rows lost: it says so.
            last = _native.number_documents(pending, 0)
            note: list[str | None] = [None] * pending.height
            for i in np.flatnonzero(last.to_numpy() == last[-1]):
                note[int(i)] = f"{lost[2]} (this document's rows may continue there)"
            pending = _with_errors(pending, note, "corrupt_parquet")
        while pending is not None and pending.height and (df := self._whole_documents(pending, final=True)) is not None:
            pending = pending[df.height :]
            _add_stats(self._done, frame_stats(df))
            yield df
        if lost is None:
            return None, None
        df = _error_frame(lost[1], self._next_doc, "corrupt_parquet", lost[2])
        _add_stats(self._done, frame_stats(df))
        yield df
        return (lost[0] + 1 if lost[0] + 1 < pf.num_row_groups else None), lost[2]

    def _whole_documents(self, rows: pl.DataFrame, final: bool) -> pl.DataFrame | None:
        """The first ``batch_size`` documents of node rows, or fewer whose text and image bytes
        reach ``max_batch_bytes`` (at least one), numbered from the next ``doc_index``, when
        that many are complete (or, at the end of the file, ``final``, whatever is left); else
        None."""
        ordinal = _native.number_documents(rows, 0)
        complete = int(ordinal[-1]) + (1 if final else 0)  # the last document may be partial
        if not complete:
            return None
        parts = [pl.col(TEXT).str.len_bytes().fill_null(0).cast(pl.Int64)] if TEXT in rows.columns else []
        parts += [pl.col(IMAGE).bin.size().fill_null(0).cast(pl.Int64)] if IMAGE in rows.columns else []
        sizes = rows.select(pl.sum_horizontal(parts)).to_series().to_numpy() if parts else np.zeros(rows.height)
        cumulative = np.cumsum(np.bincount(ordinal.to_numpy(), weights=sizes)[:complete])
        fit = int(np.searchsorted(cumulative, self.max_batch_bytes or DEFAULT_MAX_BATCH_BYTES, side="right"))
        if complete < self.batch_size and fit >= complete and not final:
            return None  # too few documents and bytes yet: the next rows may add to the batch
        take = int((ordinal < max(1, min(complete, self.batch_size, fit))).sum())
        return rows[:take].with_columns((ordinal[:take] + self._next_doc).alias(DOC_INDEX))


def _with_errors(df: pl.DataFrame, messages: list[str | None], kind: str, *, first_doc: int | None = None, replace: bool = False) -> pl.DataFrame:
    """Node rows with ``messages`` (where not None) as ``kind`` errors on the rows that have
    none (on all of them with ``replace``: the error that caused the others): one message per
    row, or with ``first_doc`` one per record converted from a table (record ``i`` is document
    ``first_doc + i``; its message goes on all its nodes, as a record's own error does)."""
    if first_doc is None:
        out = df.with_columns(pl.Series("_m", messages, dtype=pl.String))
    else:
        per_doc = pl.DataFrame({DOC_INDEX: np.arange(first_doc, first_doc + len(messages), dtype=np.int64), "_m": pl.Series(messages, dtype=pl.String)})
        out = df.join(per_doc, on=DOC_INDEX, how="left", maintain_order="left")
    err = pl.struct(pl.lit(kind).alias("kind"), pl.col("_m").alias("message"))
    missing = pl.col("_m").is_not_null() if replace else pl.col("_m").is_not_null() & pl.col(ERROR).is_null()
    return out.with_columns(pl.when(missing).then(err).otherwise(pl.col(ERROR)).alias(ERROR)).drop("_m")


def _any_message(messages: list[str | None]) -> bool:
    """Whether a list of per-row messages holds any (``list.count`` runs in C: a generator
    over a million rows took 60 ms a pass)."""
    return messages.count(None) < len(messages)


def _file_damage(e: BaseException) -> bool:
    """Whether an exception raised while reading a file is that file's damage: any Exception,
    and a Rust panic (pyo3's PanicException is a BaseException); not KeyboardInterrupt and
    the like."""
    return isinstance(e, Exception) or type(e).__name__ == "PanicException"


def _lossy_utf8(df: pl.DataFrame) -> pl.DataFrame:
    """Node rows read from a file, conformed to the node schema. A text column stored as binary
    whose bytes are not all UTF-8 (a cast would fail the whole file) is decoded with U+FFFD in
    place of the bad bytes, and those rows get an ``invalid_utf8`` error naming the column, as
    text members of a tar or jsonl line do. Only a batch with such bytes pays for a Python pass."""
    fixed: list[pl.Series] = []
    messages: list[str | None] = [None] * df.height
    for name, dtype in NODE_SCHEMA.items():
        if dtype != pl.String or df.schema.get(name) != pl.Binary:
            continue
        try:
            df.get_column(name).cast(pl.String)
            continue
        except pl.exceptions.ComputeError:
            pass
        values = []
        for i, v in enumerate(df.get_column(name).to_list()):
            try:
                values.append(None if v is None else v.decode("utf-8"))
            except UnicodeDecodeError as e:
                values.append(v.decode("utf-8", "replace"))
                messages[i] = messages[i] or f"{name} is not UTF-8 ({e.reason} at byte {e.start}); bad bytes replaced by U+FFFD"
        fixed.append(pl.Series(name, values, dtype=pl.String))
    if not fixed:
        return conform(df)
    message = pl.Series("message", messages, dtype=pl.String)
    err = pl.struct(pl.lit("invalid_utf8").alias("kind"), pl.lit(message).alias("message"))
    out = conform(df.with_columns(fixed))
    return out.with_columns(pl.when(pl.lit(message).is_not_null() & pl.col(ERROR).is_null()).then(err).otherwise(pl.col(ERROR)).alias(ERROR))


#: The most rows per piece read from a parquet row group (pieces are joined into batches by
#: rows and bytes, see ``Reader._arrow_batches``).
_PARQUET_PIECE_ROWS = 1024

#: The native reader's default bound on a batch's bytes (``max_batch_bytes``).
DEFAULT_MAX_BATCH_BYTES = 256 << 20
#: The native readers' default ``max_member_bytes`` (``DEFAULT_MAX_MEMBER_BYTES`` in rust/core/src/shard).
DEFAULT_MAX_MEMBER_BYTES = 256 << 20


#: A parquet row whose text and binary values decode to more than this (or than
#: ``max_batch_bytes``, if larger) has them left out with a ``member_too_large`` error, as a JSON
#: line over 256 MiB is ``line_too_long``: a few KB on disk can name one 10 MiB dictionary entry
#: a thousand times in one OBELICS ``texts`` list (values never gathered, then).
MAX_RECORD_BYTES = 256 << 20

#: A parquet row group whose pages, as Arrow holds them at once (a dictionary page and a data
#: page per column), decompress to more than this (or than ``max_batch_bytes``, if larger)
#: beyond 16x what they store is refused as a compression bomb (see _parquet_plan).
MAX_UNBACKED_BYTES = 1 << 30


class _RowGroupError(Exception):
    """A parquet row group that could not be decoded."""

    def __init__(self, group: int, cause: Exception):
        super().__init__(str(cause))
        self.group = group


@dataclass
class _ParquetPlan:
    """How to read one parquet file (see :func:`_parquet_plan`)."""

    #: Columns to read as dictionaries (paths of leaves: ``texts.list.element``).
    dictionary_columns: list[str]
    #: The most rows a piece may have.
    piece_rows: int
    #: The most bytes a row of a row group decompresses to, on average (page headers' sizes).
    per_row: float
    #: Row groups not to read, with why (a compression bomb; pages that cannot be walked).
    refused: dict[int, str]


def _parquet_plan(pf: Any, path: str, limit: int) -> _ParquetPlan:
    """How to read a parquet file within ``limit`` bytes a batch, from its page headers.

    Sizes: every column chunk's pages are walked as Arrow reads them (their headers, about 50
    us a page, a page per MiB: 10 ms for a 50 MB file). Their sizes, not the footer's
    ``total_uncompressed_size`` (which pyarrow does not check and a forged footer
    understates), and what the columns read plain gather from their dictionaries, give the
    bytes per row that size pieces (pieces span row groups). pyarrow decompresses a page whole,
    whatever rows are read, and its writer puts up to 1,024 values in a page: 400 rows naming a
    10 MiB paragraph are a 2 GB page of 190 KB. A row group whose pages, as Arrow holds them at
    once (each column's dictionary page and largest data page), decompress to over
    ``max(limit, MAX_UNBACKED_BYTES)`` beyond ``BOMB_RATIO`` times what they store is refused,
    as is one whose pages cannot be walked (over 100,000 of them, a header over 16 MiB): it is
    one ``corrupt_parquet`` record saying so (and what ``max_batch_bytes`` would read it) and
    the others read.

    Dictionaries: text and binary columns (top level, or in lists and structs, by their paths)
    whose values, gathered from a dictionary, could decode to far more than the file's sizes
    tell. A column chunk's sizes count its plain values and its dictionary once, not the values
    its indices gather: one 10 MiB caption referenced by 400 rows is 2 KB on disk and 4 GB
    decoded, one 10 MiB paragraph repeated in OBELICS ``texts`` lists the same. For each chunk
    with a dictionary page, :func:`_gathered_bound` bounds what a piece of rows could gather
    (decoding the indices where the quick bound is large); where the bounds of a row group's
    columns add up to more than ``limit``, the largest are read as dictionaries, so a piece's
    size is known before its values are gathered (see ``Reader._arrow_batches``), except a
    top-level column whose dictionary fell back to plain pages for most of its values: it caps
    the rows of a piece at what its longest entry allows (read as a dictionary, pyarrow hashes
    every plain value into a dictionary growing over the row group: 30x slower on an ordinary
    OBELICS file, and memory by row group). A dictionary page over a GiB is not decoded: its
    size bounds its entries. A column whose dictionary or indices cannot otherwise be decoded
    within bounds is read as a dictionary."""
    from ._pages import BOMB_RATIO, MAX_INDEX_BYTES, MAX_INDEX_VALUES, PageError, scan_chunk

    md, schema = pf.metadata, pf.schema
    # What a piece may gather beyond its planned size: no less than 64 MiB, which is no bomb,
    # whatever the batch limit (1 MiB batches made ordinary dictionaries of URLs into hashed
    # dictionary reads, 4x slower).
    budget = max(limit, DEFAULT_MAX_BATCH_BYTES // 4)
    unbacked_limit = max(limit, MAX_UNBACKED_BYTES)
    leaves = {}
    for j in range(md.num_columns):
        col = schema.column(j)
        if col.physical_type == "BYTE_ARRAY" and str(col.logical_type) in ("None", "String", "Enum", "JSON", "BSON"):
            leaves[j] = (col.path, col.max_repetition_level, col.max_definition_level)
    out: set[str] = set()
    piece_rows = _PARQUET_PIECE_ROWS
    refused: dict[int, str] = {}
    index_budget = [MAX_INDEX_BYTES, MAX_INDEX_VALUES]  # dictionary indices left to decode in this file
    groups: list[tuple[int, int, dict[str, int]]] = []  # per row group read: rows, bytes, gathered by column
    with open(path, "rb") as f:
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            bounds, size, unbacked, gathered = [], 0, 0, {}
            for j in range(md.num_columns):
                column = rg.column(j)
                try:
                    chunk = scan_chunk(f, column)
                except PageError as e:
                    # Pages that cannot be walked cannot be sized: Arrow may read what is there
                    # (a bomb behind 100,000 empty index pages).
                    refused[g] = f"{schema.column(j).path}: its pages could not be checked ({e}); the row group is not read"
                    break
                size += chunk.uncompressed
                unbacked += chunk.unbacked_at_once
                if j not in leaves or leaves[j][0] in out or chunk.dictionary is None:
                    continue
                name, repetition, definition = leaves[j]
                try:
                    bound, longest, mostly_indices, gathered[name] = _gathered_bound(f, column, chunk, rg.num_rows, budget // 16, repetition, definition, index_budget)
                except PageError:
                    out.add(name)
                    continue
                bounds.append((bound, name, longest, repetition == 0, mostly_indices))
            if g not in refused and unbacked > unbacked_limit:
                refused[g] = (
                    f"its pages decompress to {size:,} bytes, and reading them holds {unbacked:,} at once beyond {BOMB_RATIO}x what they store (a "
                    f"compression bomb, or data that compresses as few do): over max(max_batch_bytes, {MAX_UNBACKED_BYTES >> 30} GiB); the row group "
                    f"is not read (a max_batch_bytes, --max-batch-bytes, of {unbacked + 1:,} would read it)"
                )
            if g in refused:
                continue
            groups.append((rg.num_rows, size, gathered))
            total = sum(b[0] for b in bounds)
            for bound, name, longest, top, mostly_indices in sorted(bounds, reverse=True):
                if total <= budget:
                    break
                if top and not mostly_indices:
                    rows = max(1, budget // 8 // (longest + 8))
                    piece_rows = min(piece_rows, rows)
                else:
                    out.add(name)
                total -= bound
    # Pieces span row groups: each row's share of what its group's columns read plain gather
    # sizes them, not only what its pages hold (8 groups of 12 rows gathering 229 MiB each
    # made 1,024-row pieces of 3 GB).
    per_row = max((size + sum(v for k, v in gathered.items() if k not in out)) / max(rows, 1) for rows, size, gathered in groups) if groups else 0.0
    return _ParquetPlan(sorted(out), piece_rows, per_row, refused)


def _gathered_bound(f: Any, column: Any, chunk: Any, rows: int, enough: int, max_repetition: int, max_definition: int, index_budget: list[int]) -> tuple[int, int, bool, int]:
    """At most how many bytes the values a column chunk (``chunk``: its walked pages, with a
    dictionary page) gathers from its dictionary decode to in one piece of rows read, each
    value also counting 8 bytes as in :func:`_decoded_bytes`; with the dictionary's longest
    entry, whether most values of the chunk are indices, and what the whole chunk gathers.
    The bound is the indices' count (for a top-level column one a row, so at most a piece's
    rows) times the longest entry; where that is over ``enough``, the indices are decoded and
    what they gather, exactly, bounds it too (``max_repetition``/``max_definition``: the
    column's maximum levels, a top-level column's repetition level being 0; ``index_budget``:
    see :func:`_pages.gathered_bytes`, whose PageError, as any here, the caller takes for a
    column to read as a dictionary)."""
    from ._pages import DictionaryTooLarge, dictionary_entries, gathered_bytes, longest_entry

    page = chunk.dictionary
    entries: bytes | None = None
    try:
        entries = dictionary_entries(f, column, page)
        longest = longest_entry(entries, page)
    except DictionaryTooLarge:
        # Not decoded (over a GiB): an entry is at most the page less the others' 4-byte
        # lengths. A top-level column mostly in plain pages then caps a piece's rows (read as a
        # dictionary, pyarrow would hash its every plain value: 5,000 masks of 260 KB took 42 s
        # and 12 GB so).
        longest = max(0, page.uncompressed - 4 * max(page.values, 1))
    top = max_repetition == 0
    values = min(rows, _PARQUET_PIECE_ROWS, chunk.dictionary_values) if top else chunk.dictionary_values
    bound, total = values * (longest + 8), chunk.dictionary_values * (longest + 8)
    if bound > enough and entries is not None:
        total = gathered_bytes(f, column, chunk.dictionary, entries, max_repetition, max_definition, index_budget)
        bound = min(bound, total)
    return bound, longest, chunk.other_values <= chunk.dictionary_values, total


def _decoded_bytes(batch: Any, per_row: bool = False) -> Any:
    """The bytes an arrow record batch takes once dictionaries are decoded (``_portable``
    gathers their values): in all, or ``per_row`` as an int64 array (strings and binaries by
    their lengths, also in lists and structs; other columns spread evenly)."""
    out = np.zeros(batch.num_rows, dtype=np.int64) if per_row else 0
    for col in batch.columns:
        if per_row or _has_dictionary(col.type):
            sizes = _row_bytes(col)
            out = out + (sizes if per_row else int(sizes.sum()))
        else:
            out += col.get_total_buffer_size()
    return out


def _text_type(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t))


def _has_dictionary(t: Any) -> bool:
    """Whether arrow type ``t`` is or holds a dictionary."""
    import pyarrow as pa

    return _holds(t, pa.types.is_dictionary)


def _holds(t: Any, kind: Any) -> bool:
    """Whether arrow type ``t`` is, or holds in lists, structs and maps, a type for which
    ``kind`` is true."""
    import pyarrow as pa

    if kind(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _holds(t.value_type, kind)
    if pa.types.is_struct(t):
        return any(_holds(t.field(i).type, kind) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return _holds(t.key_type, kind) or _holds(t.item_type, kind)
    return False


def _row_bytes(col: Any) -> np.ndarray:
    """The decoded bytes of each value of an arrow array, as int64: a string or binary its
    length (a dictionary's entry's) plus 8, a list the sum of its items', a struct the sum of
    its fields'; other values their share of the array's buffers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n, t = len(col), col.type
    if pa.types.is_dictionary(t) and _text_type(t.value_type):
        indices = col.indices
        sizes = _entry_lengths(col.dictionary)[pc.fill_null(indices, 0).to_numpy(zero_copy_only=False)] if len(col.dictionary) else np.zeros(n, dtype=np.int64)
        if indices.null_count:
            sizes = np.where(indices.is_null().to_numpy(zero_copy_only=False), 0, sizes)
        return sizes + 8
    if _text_type(t):
        return pc.binary_length(col).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) + 8
    if pa.types.is_map(t) and _has_dictionary(t):
        # The same layout as a list of key-value structs, which list_flatten takes.
        return _row_bytes(col.view(pa.list_(pa.field("entries", pa.struct([t.key_field, t.item_field]), nullable=False))))
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and _has_dictionary(t):
        items = _row_bytes(pc.list_flatten(col))
        parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
        return np.bincount(parents, weights=items, minlength=n).astype(np.int64) + 8
    if pa.types.is_struct(t) and _has_dictionary(t):
        return sum((_row_bytes(field) for field in col.flatten()), np.full(n, 8, dtype=np.int64))
    return np.full(n, col.get_total_buffer_size() // max(n, 1), dtype=np.int64)


def _without_huge_rows(piece: Any, cap: int) -> tuple[Any, list[str | None] | None]:
    """An arrow record batch whose rows with text and binary values (plain, or dictionary
    values, which are then never gathered) decoding to more than ``cap`` bytes have their
    largest such columns null, and a message per row naming them (None for the others; None in
    all when no row is over): a record over 256 MiB is its error, as a JSON line over 256 MiB
    is."""
    import pyarrow as pa

    columns = [i for i, c in enumerate(piece.columns) if _holds(c.type, lambda t: pa.types.is_dictionary(t) or _text_type(t))]
    if not columns:
        return piece, None
    parts = {i: _row_bytes(piece.column(i)) for i in columns}
    sizes = sum(parts.values(), np.zeros(piece.num_rows, dtype=np.int64))
    over = sizes > cap
    if not over.any():
        return piece, None
    # In each such row, the largest columns are left out until the rest fit (its id and URL
    # stay, so the error names the record).
    left_out = {i: np.zeros(piece.num_rows, dtype=bool) for i in columns}
    notes: list[str | None] = [None] * piece.num_rows
    for row in np.flatnonzero(over):
        rest, names = int(sizes[row]), []
        for i in sorted(columns, key=lambda i: -parts[i][row]):
            if rest <= cap:
                break
            left_out[i][row] = True
            rest -= int(parts[i][row])
            names.append(piece.schema.field(i).name)
        notes[row] = f"{', '.join(names)}: {int(sizes[row])} bytes once decoded, over the {cap} bytes one record may hold (256 MiB, or max_batch_bytes if larger); left out"
    arrays = [c.take(pa.array(np.arange(piece.num_rows), mask=left_out[i])) if i in left_out and left_out[i].any() else c for i, c in enumerate(piece.columns)]
    return pa.RecordBatch.from_arrays(arrays, schema=piece.schema), notes


#: Entry lengths of the dictionaries seen last, by their buffers: the pieces of a row group share
#: its dictionary (150,000 entries measured again for each 1,024-row piece made reading 2.6x slower).
_LENGTHS: dict[tuple[int, ...], np.ndarray] = {}


def _entry_lengths(dictionary: Any) -> np.ndarray:
    """The byte length of each entry of an arrow string or binary dictionary (0 for null)."""
    import pyarrow.compute as pc

    key = (len(dictionary), dictionary.offset, *(b.address if b is not None else 0 for b in dictionary.buffers()))
    if key not in _LENGTHS:
        if len(_LENGTHS) >= 8:
            _LENGTHS.pop(next(iter(_LENGTHS)))
        _LENGTHS[key] = pc.binary_length(dictionary).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return _LENGTHS[key]


def _one_table(pa: Any, pieces: list[Any]) -> Any:
    """Arrow record batches of one schema as one arrow table, each piece a chunk: joining
    their buffers would copy every value (a batch of images) once more."""
    return pa.Table.from_batches(pieces)


def _sized_images(df: pl.DataFrame, limit: int) -> pl.DataFrame:
    """Node rows read from a node table whose image is over ``limit`` bytes (``max_member_bytes``)
    lose the bytes and get a ``member_too_large`` error, as an image file, a tar member or an
    inline image of a record over it does."""
    if IMAGE not in df.columns:
        return df
    size = pl.col(IMAGE).bin.size()
    over = size > limit
    if not df.select(over.any()).item():
        return df
    message = pl.format("image of {} bytes, over the limit of {} bytes (max_member_bytes)", size, pl.lit(limit))
    err = pl.struct(pl.lit("member_too_large").alias("kind"), message.alias("message"))
    return df.with_columns(
        pl.when(over & pl.col(ERROR).is_null()).then(err).otherwise(pl.col(ERROR)).alias(ERROR),
        pl.when(over).then(None).otherwise(pl.col(IMAGE)).alias(IMAGE),
    )


def _checked_kinds(df: pl.DataFrame) -> pl.DataFrame:
    """Node rows read from a file whose ``kind`` is neither ``text`` nor ``image`` (nor null on
    a document's error row) become ``bad_record`` rows without a kind, as in jsonl node
    records."""
    kind = pl.col(KIND)
    bad = (kind.is_not_null() & ~kind.is_in([TEXT_KIND, IMAGE_KIND])) | (kind.is_null() & (pl.col(TEXT).is_not_null() | pl.col(IMAGE).is_not_null()))
    if not df.select(bad.any()).item():
        return df
    message = pl.format("node without a valid kind: {}", kind.fill_null("null"))
    err = pl.struct(pl.lit("bad_record").alias("kind"), message.alias("message"))
    return df.with_columns(
        pl.when(bad & pl.col(ERROR).is_null()).then(err).otherwise(pl.col(ERROR)).alias(ERROR),
        pl.when(bad).then(None).otherwise(kind).alias(KIND),
    )


def _portable_type(t: Any) -> Any:
    """``t`` with the arrow types that polars or our native module cannot take replaced by the
    nearest one they can: dictionaries (pandas categoricals) by their values, float16 by
    float32, 8- and 16-bit integers by 32-bit ones, decimals by float64 (whole-number decimals by int64, or text beyond 18 digits),
    time-zone-aware timestamps by UTC ones; nested types throughout."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return _portable_type(t.value_type)
    if pa.types.is_float16(t):
        return pa.float32()
    # The native module's polars has no 8- or 16-bit integers (a uint8 column failed its batch).
    if pa.types.is_int8(t) or pa.types.is_int16(t):
        return pa.int32()
    if pa.types.is_uint8(t) or pa.types.is_uint16(t):
        return pa.uint32()
    if pa.types.is_decimal(t):
        # Whole numbers (Spark's large integer ids) stay exact: int64 where they fit, else text.
        if t.scale == 0:
            return pa.int64() if t.precision <= 18 else pa.string()
        return pa.float64()
    if pa.types.is_timestamp(t) and t.tz is not None:
        return pa.timestamp(t.unit)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        make = pa.list_ if pa.types.is_list(t) else pa.large_list
        return make(t.value_field.with_type(_portable_type(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        # A list (polars' Array of a fixed size does not reach the native readers).
        return pa.list_(t.value_field.with_type(_portable_type(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_portable_type(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_map(t):
        return pa.map_(_portable_type(t.key_type), t.item_field.with_type(_portable_type(t.item_type)))
    return t


def _binary_type(t: Any) -> Any:
    """``t`` with its text types replaced by binary ones (nested types throughout); None when
    ``t`` holds no text."""
    import pyarrow as pa

    if pa.types.is_string(t) or pa.types.is_string_view(t):
        return pa.binary()
    if pa.types.is_large_string(t):
        return pa.large_binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = _binary_type(t.value_type)
        make = pa.list_ if pa.types.is_list(t) else pa.large_list
        return None if inner is None else make(t.value_field.with_type(inner))
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        inner = [_binary_type(f.type) for f in fields]
        return None if all(x is None for x in inner) else pa.struct([f.with_type(x if x is not None else f.type) for f, x in zip(fields, inner, strict=True)])
    return None


def _portable(table: Any) -> Any:
    """An arrow table whose columns all have types polars and the native readers take (see
    :func:`_portable_type`); the table itself when they already do."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, f in enumerate(table.schema):
        target = _portable_type(f.type)
        if target.equals(f.type):
            continue  # left as it is: arrow's cast of a slice of a list of structs with a
            # null-typed field fails ("child array has length smaller than expected")
        chunks = table.column(i).chunks
        if not pa.types.is_dictionary(f.type) and _has_dictionary(f.type):
            # Arrow casts a slice of a list array by casting all the values under it: a piece
            # of 3 rows cut from 100 whose lists gather a 10 MiB entry each decoded all 100.
            # Taking the rows first leaves only their own items (indices: the dictionary is
            # shared), chunk by chunk (taking from the whole column would unify the chunks'
            # dictionaries first).
            chunks = [pc.take(c, pa.array(np.arange(len(c)))) for c in chunks]
        table = table.set_column(i, f.with_type(target), pa.chunked_array([c.cast(target) for c in chunks], type=target))
    return table


def _invalid_text_columns(batch: Any) -> list[int]:
    """The columns of an arrow table holding text whose bytes are not all UTF-8 (a file that
    breaks Parquet's rule: pyarrow reads it unchecked, and polars would take it as text)."""
    import pyarrow as pa

    bad = []
    for i, f in enumerate(batch.schema):
        if _binary_type(f.type) is not None:
            try:
                batch.column(i).validate(full=True)
            except pa.ArrowInvalid:
                bad.append(i)
    return bad


def _decode_lossy(v: Any, t: Any, why: list[str]) -> Any:
    """Value ``v`` of a column of type ``t`` read as binary: its text parts decoded as UTF-8
    (invalid bytes replaced by U+FFFD, each failure noted in ``why``), the rest as it was."""
    import pyarrow as pa

    if v is None:
        return None
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError as e:
            why.append(f"{e.reason} at byte {e.start}")
            return v.decode("utf-8", "replace")
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [_decode_lossy(x, t.value_type, why) for x in v]
    if pa.types.is_struct(t):
        return {k: _decode_lossy(x, t.field(k).type, why) for k, x in v.items()}
    return v


def _lossy_text(batch: Any) -> tuple[Any, list[str | None]]:
    """An arrow table whose text values that are not UTF-8 have their bad bytes replaced by
    U+FFFD (every column keeps its type: an image path or a metadata field stays text), and per
    row the message of its first bad value (None where every value was UTF-8)."""
    import pyarrow as pa

    messages: list[str | None] = [None] * batch.num_rows
    bad = _invalid_text_columns(batch)
    if not bad:
        return batch, messages
    columns = list(batch.columns)
    for i in bad:
        f = batch.schema.field(i)
        values = []
        for row, v in enumerate(columns[i].cast(_binary_type(f.type)).to_pylist()):
            why: list[str] = []
            values.append(_decode_lossy(v, f.type, why))
            if why and messages[row] is None:
                messages[row] = f"{f.name} is not UTF-8 ({why[0]}); bad bytes replaced by U+FFFD"
        columns[i] = pa.array(values, type=f.type)
    return pa.Table.from_arrays(columns, schema=batch.schema), messages


#: ``interleaf.read(source, format=None, batch_size=1024, ...)``: see :class:`Reader`.
read = Reader
