"""The Signal interface, the :class:`Context` that owns models and embeddings, and
:func:`compute`, which runs signals over a node batch."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

from interleaf import schema as S
from interleaf._checks import int_arg
from interleaf._prefetch import prefetch

#: Attribute columns that key a node-level signal's rows; a document-level signal has the
#: first two.
NODE_KEYS = (S.DOC_INDEX, S.DOC_ID, S.POS)
DOC_KEYS = (S.DOC_INDEX, S.DOC_ID)

_KEY_DTYPES = {S.DOC_INDEX: pl.Int64(), S.DOC_ID: pl.String(), S.POS: pl.Int32()}


@runtime_checkable
class Signal(Protocol):
    """A score computed over a node batch (``interleaf.read`` output).

    Attributes:
        name: the prefix of its attribute columns (``"clip_alignment"`` gives
            ``clip_alignment_score``, ...).
        level: ``"node"``: one row per node it scores, keyed by ``doc_index, doc_id, pos``;
            ``"doc"``: one row per document, keyed by ``doc_index, doc_id``.
        needs: the shared inputs it asks the :class:`Context` for (``"clip.image"``,
            ``"clip.text"``, ``"text.embedding"``, ``"lm.perplexity"``, ``"lid"``).

    A built-in signal whose values change with the same columns has a ``version`` (an int,
    1 when absent); ``interleaf run`` recomputes a stored attribute of another version. A
    built-in node-level signal says which kind of node it scores (``node_kind``: ``"text"`` or
    ``"image"``): no node has both kinds' columns, so a recipe refuses a row-wise filter that
    reads both.
    """

    name: str
    level: str  # "node" or "doc" (checked by compute)
    needs: tuple[str, ...]

    def columns(self) -> dict[str, pl.DataType]:
        """The attribute columns it adds (without the keys), with their dtypes."""
        ...

    def compute(self, batch: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        """Its attribute rows for ``batch``: the keys, then :meth:`columns`. Rows it does not
        score (a text node for an image signal) may be left out; :func:`compute` fills them
        with nulls."""
        ...


@dataclass(frozen=True)
class Embeddings:
    """Embeddings of some of a batch's nodes.

    Attributes:
        rows: the batch row of each embedding (int64).
        vectors: float32 ``(len(rows), dim)``, L2-normalised; NaN rows where ``error`` is set.
        error: the error column (null, or ``{kind, message}``), one per row.
    """

    rows: np.ndarray
    vectors: np.ndarray
    error: pl.Series


_MODEL_KINDS = {"clip": "clip", "text_embedder": "text-embedder", "lm": "causal-lm", "lid": "language-id"}


class Context:
    """The models the signals use and the embeddings of the current batch, computed once and
    shared: CLIP image embeddings are made once per batch whichever signals ask for them.

    Args:
        clip: a CLIP model (:class:`interleaf.models.CLIPModel`) or its directory / name
            (loaded on first use with ``device``).
        text_embedder: a sentence embedder (:class:`interleaf.models.TextEmbedder`) or its
            directory, for text coherence.
        lm: a causal language model (:class:`interleaf.models.CausalLM`) or its directory, for
            perplexity.
        lid: a fastText language-id model (:class:`interleaf.models.LanguageID`) or its file,
            for language identification.
        words: a common-word list (a file or words, :func:`interleaf.signals.load_common_words`)
            for OBELICS's paragraph filter as the language and perplexity signals read it
            (``paragraphs=True``); a text signal names its own (``TextStats(common_words=...)``).
        llm: an :class:`interleaf.llm.Client`, or the keyword arguments of one (a recipe's
            ``llm`` section), for LLM judges; a client made here is closed by :meth:`close`.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` for models given by path.
        threads: worker threads for decoding and the Rust kernels (default: all cores).
        batch_size: inference batch size for the models (default: each model's).
    """

    def __init__(self, *, clip: Any = None, text_embedder: Any = None, lm: Any = None, lid: Any = None, words: Any = None, llm: Any = None, device: str = "auto", threads: int | None = None, batch_size: int | None = None):
        int_arg("threads", threads, 1, 512, optional=True)
        int_arg("batch_size", batch_size, 1, 1 << 20, optional=True)
        self._models: dict[str, Any] = {"clip": clip, "text_embedder": text_embedder, "lm": lm, "lid": lid}
        self._words = words
        self._llm = llm
        self._own_llm = False
        self.device = device
        self.threads = threads
        self.batch_size = batch_size
        self._batch: pl.DataFrame | None = None
        self._cache: dict[str, Any] = {}
        self._texts: dict[str, dict[str, tuple[np.ndarray, dict[str, str] | None]]] = {}
        self._share_phash = False

    def model(self, kind: str, signal: str = "a signal") -> Any:
        """The loaded model of ``kind`` (``"clip"``, ``"text_embedder"``, ``"lm"``, ``"lid"``), loading it
        from its path on first use (:func:`interleaf.models.load_shared`: once per process)."""
        if kind not in self._models:
            raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(self._models)}")
        m = self._models[kind]
        if m is None:
            raise ValueError(f"{signal} needs a {kind} model: pass Context({kind}=<model or model directory>)")
        if isinstance(m, (str, os.PathLike)):
            from interleaf import models

            # Loaded once per process: a worker scoring many shards reuses it.
            m = models.load_shared(m, self.device, kind=_MODEL_KINDS[kind], threads=self.threads)
            self._models[kind] = m
        return m

    def llm(self, signal: str = "a signal") -> Any:
        """The LLM client (:class:`interleaf.llm.Client`), made from its configuration on first
        use."""
        if self._llm is None:
            raise ValueError(f"{signal} needs an LLM endpoint: pass Context(llm=Client(...) or {{'base_url': ..., 'model': ...}})")
        if isinstance(self._llm, dict):
            from interleaf.llm import Client

            self._llm = Client.from_config(self._llm)
            self._own_llm = True
        return self._llm

    @property
    def llm_stats(self) -> dict[str, int] | None:
        """The LLM client's request and token counters so far (None when none was used)."""
        return None if self._llm is None or isinstance(self._llm, dict) else self._llm.stats.as_dict()

    def close(self) -> None:
        """Closes what the context opened itself (an LLM client made from a configuration)."""
        if self._own_llm and self._llm is not None:
            self._llm.close()
            self._own_llm = False

    def begin(self, batch: pl.DataFrame) -> None:
        """Makes ``batch`` the current batch; the cached embeddings of another batch are dropped."""
        if self._batch is not batch:
            self._batch = batch
            self._cache.clear()
            self._texts.clear()

    def cached(self, key: str, batch: pl.DataFrame, make: Callable[[], Any]) -> Any:
        """``make()`` computed once per batch under ``key``."""
        self.begin(batch)
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def clip_images(self, batch: pl.DataFrame, signal: str = "a signal") -> Embeddings:
        """CLIP embeddings of the batch's image nodes (``"clip.image"``), once per batch."""

        def make() -> Embeddings:
            rows = _kind_rows(batch, S.IMAGE_KIND)
            vectors, error = self.model("clip", signal).embed_images(batch.get_column(S.IMAGE).gather(rows), batch_size=self.batch_size, threads=self.threads)
            return Embeddings(rows, vectors, node_errors(batch, rows, error))

        return self.cached("clip.image", batch, make)

    def common_words(self) -> Any:
        """The context's common-word list (:func:`interleaf.signals.load_common_words`), None
        without one."""
        if self._words is not None:
            from interleaf.signals.text import load_common_words

            self._words = load_common_words(self._words)
        return self._words

    def obelics_paragraphs(self, batch: pl.DataFrame, node_stats: tuple[int, int] | None = None, *, common_words: Any = ...) -> pl.DataFrame:
        """:func:`interleaf.signals.obelics_paragraphs` of the batch's text nodes, in batch
        order (``"text.paragraphs"``), once per batch: the node-level and the document-level
        text signals share it. With ``node_stats`` = (char_ngram, word_ngram), also each text
        node's paragraph-level statistics, from the same pass (a cached result without them, or
        with other n-grams, is recomputed). ``common_words``: the list its common-word check
        uses (None: no check; default: the context's, :meth:`common_words`)."""
        from interleaf.signals.text import _optional_words

        words = self.common_words() if common_words is ... else _optional_words(common_words)

        def make() -> pl.DataFrame:
            from interleaf.signals.text import obelics_paragraphs

            return obelics_paragraphs(batch.filter(pl.col(S.KIND) == S.TEXT_KIND).get_column(S.TEXT), threads=self.threads, node_stats=node_stats, common_words=words)

        self.begin(batch)
        # The entry holds the list it was made with: its id is not reused while the entry lives.
        key = f"text.paragraphs:{id(words)}"
        have = self._cache.get(key)
        if have is None or (node_stats is not None and have[0] != node_stats):
            self._cache[key] = have = (node_stats, words, make())
        return have[2]

    def image_stats(self, batch: pl.DataFrame, max_pixels: int | None = None, max_bytes: int | None = None, *, header_only: bool = False) -> pl.DataFrame:
        """:func:`interleaf.image.stats` of the batch's image nodes (``"image.stats"``), once per
        batch: ``row`` (the batch row), the statistics and ``error``."""

        def make() -> pl.DataFrame:
            from interleaf import image

            rows = _kind_rows(batch, S.IMAGE_KIND)
            images = batch.get_column(S.IMAGE).gather(rows)
            # With the default limits the pHash asked by share_phash comes from the same decode.
            if self._share_phash and max_pixels is None and max_bytes is None and not header_only:
                table = self._keep_phash(image.analyze(images, stats=True, hashes=["phash"], threads=self.threads).table)
            else:
                table = image.stats(images, threads=self.threads, max_pixels=max_pixels, max_bytes=max_bytes, header_only=header_only)
            return table.with_columns(row=pl.Series(rows, dtype=pl.Int64), error=node_errors(batch, rows, table.get_column(S.ERROR)))

        return self.cached(_stats_key(max_pixels, max_bytes) + (":header" if header_only else ""), batch, make)

    def share_phash(self) -> None:
        """The run will ask :meth:`image_phash` (exact, ``draft=None``) for every batch: the
        image statistics (default limits, decoded) and the CLIP pixels computed with them then
        give the hashes from the same decode, instead of a second decode of every image. A
        drafted hash has a decode of its own in any case (and a failure of its own, which must
        not mark the image failed for the statistics), so it is never shared."""
        self._share_phash = True

    def image_phash(self, batch: pl.DataFrame, draft: int | None = None, *, max_pixels: int | None = None) -> pl.Series:
        """:func:`interleaf.dedup.phash`'s ``hash`` (UInt64, null where the image does not
        decode) of each image node of the batch, in batch order (``"image.phash"``), once per
        batch; the exact one from the statistics' decode when :meth:`share_phash` asked for it
        (with the default ``max_pixels``)."""
        from interleaf.dedup.perceptual import phash

        def make() -> pl.Series:
            return phash(batch.get_column(S.IMAGE).gather(_kind_rows(batch, S.IMAGE_KIND)), threads=self.threads, draft=draft, max_pixels=max_pixels).get_column("hash")

        return self.cached(f"image.phash:{draft}" + (f":{max_pixels}" if max_pixels is not None else ""), batch, make)

    def _keep_phash(self, table: pl.DataFrame) -> pl.DataFrame:
        """Caches the ``phash`` column of an :func:`interleaf.image.analyze` table over the
        current batch's image nodes as :meth:`image_phash`'s exact hash and returns the table
        without its hash columns."""
        self._cache["image.phash:None"] = table.get_column("phash").alias("hash")
        return table.drop("phash", "phash_hex")

    def prepare(self, batch: pl.DataFrame, needs: set[str]) -> None:
        """Computes what several signals need in one pass: when both CLIP image embeddings and
        image statistics are needed, each image is decoded once for both (and for the pHash
        asked by :meth:`share_phash`)."""
        self.begin(batch)
        if not {"clip.image", "image.stats"} <= needs or "clip.image" in self._cache or _stats_key(None, None) in self._cache or self._models["clip"] is None:
            return
        from interleaf import image
        from interleaf.models.base import decoded_rows

        clip = self.model("clip")
        rows = _kind_rows(batch, S.IMAGE_KIND)
        images = batch.get_column(S.IMAGE).gather(rows)
        vectors = np.full((len(rows), clip.dim), np.nan, dtype=np.float32)
        tables = []
        # Two chunks are in memory (one decoded ahead): 2 model batches each, as much as the
        # one chunk of 4 before the overlap.
        step = 2 * (self.batch_size or clip.batch_size)

        hashes: dict[str, Any] = {"hashes": ["phash"]} if self._share_phash else {}

        def analyze(a: int) -> Any:
            return image.analyze(images[a : a + step], pixels=clip.preprocess_config, stats=True, threads=self.threads, **hashes)

        # The next chunk is decoded (Rust, GIL released) while this one runs through the model,
        # as the models' own image batches are.
        starts = range(0, len(rows), step)
        for a, got in zip(starts, prefetch(map(analyze, starts), depth=1), strict=True):
            ok = got.table.get_column(S.ERROR).is_null().to_numpy()
            if ok.any():
                assert got.pixels is not None
                # The decoded rows in one block, moving only as many rows as failed.
                pixels, decoded = decoded_rows(got.pixels, ok)
                vectors[a + decoded] = clip.embed_images(pixels, batch_size=self.batch_size)[0]
            tables.append(got.table)
        table = pl.concat(tables) if tables else image.analyze([], stats=True, **hashes).table
        if hashes:
            table = self._keep_phash(table)
        error = node_errors(batch, rows, table.get_column(S.ERROR))
        self._cache[_stats_key(None, None)] = table.with_columns(row=pl.Series(rows, dtype=pl.Int64), error=error)
        self._cache["clip.image"] = Embeddings(rows, vectors, error)

    def clip_texts(self, texts: Sequence[str | None], signal: str = "a signal") -> tuple[np.ndarray, pl.Series]:
        """CLIP text embeddings (``"clip.text"``) of any texts, each distinct text embedded once
        per batch."""
        return self._embed_texts("clip.text", texts, lambda t: self.model("clip", signal).embed_texts(t, batch_size=self.batch_size))

    def text_embeddings(self, texts: Sequence[str | None], signal: str = "a signal") -> tuple[np.ndarray, pl.Series]:
        """Sentence embeddings (``"text.embedding"``) of any texts, each distinct text embedded
        once per batch."""
        return self._embed_texts("text.embedding", texts, lambda t: self.model("text_embedder", signal).embed(t, batch_size=self.batch_size))

    def _embed_texts(self, key: str, texts: Sequence[str | None], embed: Callable[[list[str]], tuple[np.ndarray, pl.Series]]) -> tuple[np.ndarray, pl.Series]:
        cache = self._texts.setdefault(key, {})
        new = list(dict.fromkeys(t for t in texts if t is not None and t not in cache))
        if new:
            vectors, error = embed(new)
            for s, v, e in zip(new, vectors, error.to_list(), strict=True):
                cache[s] = (v, e)
        if not cache and not new:
            out = np.zeros((len(texts), 0), dtype=np.float32)
        else:
            dim = len(next(iter(cache.values()))[0])
            out = np.full((len(texts), dim), np.nan, dtype=np.float32)
        errors: list[dict[str, str] | None] = []
        for i, t in enumerate(texts):
            if t is None:
                errors.append(S.record_error("missing_text", "the text is null"))
                continue
            v, e = cache[t]
            out[i] = v
            errors.append(e)
        return out, S.error_column(errors)

    def perplexity(self, batch: pl.DataFrame, signal: str = "a signal", *, paragraphs: bool = False) -> pl.DataFrame:
        """The language model's perplexity of each text node (``"lm.perplexity"``), once per
        batch: ``row`` (the batch row) and :meth:`interleaf.models.CausalLM.perplexity`'s columns.
        ``paragraphs``: of the node's paragraphs that survive OBELICS's node-level filter
        (:meth:`obelics_paragraphs`; a node with none left is ``missing_text``)."""

        def make() -> pl.DataFrame:
            rows = _kind_rows(batch, S.TEXT_KIND)
            texts = (self.obelics_paragraphs(batch).get_column("text") if paragraphs else batch.get_column(S.TEXT).gather(rows)).to_list()
            table = self.model("lm", signal).perplexity(texts, batch_size=self.batch_size)
            return table.with_columns(row=pl.Series(rows, dtype=pl.Int64), error=node_errors(batch, rows, table.get_column("error")))

        return self.cached("lm.perplexity" + (":paragraphs" if paragraphs else ""), batch, make)


def _stats_key(max_pixels: int | None, max_bytes: int | None) -> str:
    """The cache key of image statistics decoded under these limits."""
    return f"image.stats:{max_pixels}:{max_bytes}"


def _kind_rows(batch: pl.DataFrame, kind: str) -> np.ndarray:
    return np.flatnonzero((batch.get_column(S.KIND) == kind).fill_null(False).to_numpy()).astype(np.int64)


def node_errors(batch: pl.DataFrame, rows: np.ndarray, computed: pl.Series) -> pl.Series:
    """Per node, why computing on it failed: the error the node carried from the read when it
    has one (the image was missing because its tar member was too large), else the one
    computing gave; null where computing succeeded."""
    computed = _url_hint(batch, rows, computed.alias("_c"))
    if S.ERROR not in batch.columns or not len(rows):
        return computed.alias(S.ERROR)
    read = batch.get_column(S.ERROR).gather(rows).alias("_r")
    return pl.select(pl.when(computed.is_not_null()).then(pl.coalesce(read, computed)).alias(S.ERROR)).to_series()


def _url_hint(batch: pl.DataFrame, rows: np.ndarray, computed: pl.Series) -> pl.Series:
    """A ``missing_image`` whose node refers to a URL says so: records that name their images
    by URL (OBELICS, MMC4's raw_url, LAION metadata) have no bytes until someone downloads them."""
    if S.IMAGE_REF not in batch.columns or not len(rows) or computed.dtype != S.ERROR_DTYPE:
        return computed
    ref = batch.get_column(S.IMAGE_REF).gather(rows).alias("_ref")
    # A URL as the readers take one (formats::is_url: any `scheme://`), which they never load.
    url = ref.str.contains(r"^[A-Za-z0-9+.\-]+://").fill_null(False)
    missing = (computed.struct.field("kind") == "missing_image").fill_null(False) & url
    if not missing.any():
        return computed
    hint = pl.struct(
        pl.lit("missing_image").alias("kind"),
        pl.concat_str(pl.lit("the image is a URL, never downloaded ("), ref.str.slice(0, 200), pl.lit("): download the images first (e.g. img2dataset), or, where the records also name the downloaded files (MMC4's image_name), give their folder as --image-root")).alias("message"),
    )
    return pl.select(pl.when(missing).then(hint).otherwise(computed).alias(computed.name)).to_series()


def keys(batch: pl.DataFrame, level: str) -> pl.DataFrame:
    """The key columns of every node (``level="node"``) or document (``"doc"``) of a batch."""
    if level == "node":
        return batch.select(NODE_KEYS)
    return batch.select(DOC_KEYS).unique(subset=S.DOC_INDEX, keep="first", maintain_order=True)


def check_batch(batch: pl.DataFrame) -> pl.DataFrame:
    """A node batch with the columns the signals read: the node schema's, missing ones null."""
    if not isinstance(batch, pl.DataFrame):
        raise TypeError(f"batch must be a polars DataFrame of nodes (interleaf.read output), not {type(batch).__name__}")
    need = [c for c in (S.DOC_INDEX, S.POS, S.KIND) if c not in batch.columns]
    if need:
        raise ValueError(f"batch lacks the node columns {need}; signals take interleaf.read output")
    if S.DOC_ID not in batch.columns:
        batch = batch.with_columns(pl.col(S.DOC_INDEX).cast(pl.String).alias(S.DOC_ID))
    wrong = any(name not in batch.schema or batch.schema[name] != dtype for name, dtype in S.NODE_SCHEMA.items())
    return S.conform(batch) if wrong else batch


def compute_each(batch: pl.DataFrame, signals: Sequence[Signal], ctx: Context | None = None, *, on_error: Callable[[Signal, Exception], pl.DataFrame] | None = None) -> list[pl.DataFrame]:
    """Runs each signal over a node batch and returns its own rows (the keys of its level,
    then its :meth:`~Signal.columns`; only the rows it scored), checked against what it
    declares. Shared inputs are prepared once for all (:meth:`Context.prepare`). With
    ``on_error``, a signal that raises gives ``on_error(signal, exception)`` instead (the
    pipeline records the failure on the batch's rows and goes on); without, the error
    propagates."""
    ctx = ctx or Context()
    ctx.prepare(batch, {n for sig in signals for n in getattr(sig, "needs", ())})
    seen: dict[tuple[str, str], str] = {}
    out = []
    for sig in signals:
        if not isinstance(sig, Signal):
            raise TypeError(f"{sig!r} is not a Signal (name, level, needs, columns(), compute())")
        if sig.level not in ("node", "doc"):
            raise ValueError(f"signal {sig.name}: level must be 'node' or 'doc', not {sig.level!r}")
        cols = sig.columns()
        for c in cols:
            if (sig.level, c) in seen:
                raise ValueError(f"signals {seen[sig.level, c]} and {sig.name} both make the {sig.level} column {c!r}: give one another name")
            seen[sig.level, c] = sig.name
        expect = {**{k: _KEY_DTYPES[k] for k in (NODE_KEYS if sig.level == "node" else DOC_KEYS)}, **cols}
        try:
            got = sig.compute(batch, ctx)
            if dict(got.schema) != expect:
                raise RuntimeError(f"signal {sig.name} returned columns {dict(got.schema)}, not its declared {expect}")
        except Exception as e:
            if on_error is None:
                raise
            got = on_error(sig, e)
        out.append(got)
    return out


def compute(batch: pl.DataFrame, signals: Sequence[Signal], ctx: Context | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Runs ``signals`` over a node batch.

    Returns ``(node_attrs, doc_attrs)``: one row per node of the batch keyed by ``doc_index,
    doc_id, pos`` with every node-level signal's columns, and one row per document keyed by
    ``doc_index, doc_id`` with every document-level signal's columns (null where a signal did
    not score the row; its ``<name>_error`` column says why when it tried). ``ctx`` holds the
    models (default: a :class:`Context` without models, enough for the statistics).
    """
    batch = check_batch(batch)
    out = {"node": keys(batch, "node"), "doc": keys(batch, "doc")}
    for sig, got in zip(signals, compute_each(batch, signals, ctx), strict=True):
        key = NODE_KEYS if sig.level == "node" else DOC_KEYS
        out[sig.level] = out[sig.level].join(got.drop(S.DOC_ID), on=[k for k in key if k != S.DOC_ID], how="left", maintain_order="left")
    return out["node"], out["doc"]


def as_matrix(x: Any, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(rows, dim)`` matrix."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {a.shape}")
    return a


def as_offsets(offsets: Any, n: int, name: str) -> np.ndarray:
    """CSR document offsets checked against ``n`` rows."""
    raw = np.asarray(offsets)
    if raw.dtype.kind == "O" and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in raw.ravel()):
        raw = raw.astype(np.int64)  # Python or numpy ints held as objects (pandas' nullable Int64)
    if raw.dtype.kind not in "iub" and not (raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw))):
        raise ValueError(f"{name} must be whole numbers (row offsets), not {raw.dtype} values such as {raw.ravel()[:3].tolist()}")
    o = np.ascontiguousarray(raw, dtype=np.int64)
    if o.ndim != 1 or len(o) < 1 or o[0] != 0 or o[-1] != n or (np.diff(o) < 0).any():
        raise ValueError(f"{name} must start at 0, never decrease and end at the number of rows ({n})")
    return o


def sorted_docs(batch: pl.DataFrame) -> pl.DataFrame:
    """The batch's document keys in ``doc_index`` order."""
    return keys(batch, "doc").sort(S.DOC_INDEX)


def group_rows(batch: pl.DataFrame, rows: np.ndarray, docs: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` (batch rows) ordered by document then ``pos``, and the CSR offsets of each
    document of ``docs`` (from :func:`sorted_docs`) among them."""
    di = batch.get_column(S.DOC_INDEX).to_numpy()[rows]
    pos = batch.get_column(S.POS).to_numpy()[rows]
    order = np.lexsort((pos, di))
    rows, di = rows[order], di[order]
    bounds = docs.get_column(S.DOC_INDEX).to_numpy()
    offsets = np.concatenate([np.searchsorted(di, bounds, "left"), [len(rows)]]).astype(np.int64)
    return rows, offsets


def step_texts(batch: pl.DataFrame, *, outside_steps: bool = False) -> pl.DataFrame:
    """The step texts of a batch's documents (CoMM's unit), in document then
    position order: ``doc_index``, ``text`` (the step's text nodes joined by a space, in
    position order) and ``rows`` (their batch rows). A step is a CoMM step, or a text node
    where the document has no steps; text outside every step of a document that has steps (a
    title node) is its own unit with ``outside_steps``, left out without. A blank text node
    (whitespace only) is no text: a step of blank nodes is no step (it was one, and three
    empty steps made a "coherent" sequence of cosine 1)."""
    texts = batch.with_row_index("_row").filter((pl.col(S.KIND) == S.TEXT_KIND) & S.has_words(pl.col(S.TEXT)))
    if not outside_steps:
        texts = texts.filter(pl.col(S.STEP).is_not_null() | pl.col(S.STEP).is_null().all().over(S.DOC_INDEX))
    unit = pl.coalesce(pl.col(S.STEP).cast(pl.Int64), pl.col(S.POS).cast(pl.Int64) + (1 << 40))
    # A node outside the steps of a document with steps is keyed by its position, apart from them.
    return (
        texts.group_by(S.DOC_INDEX, unit.alias("_unit"))
        .agg(pl.col(S.TEXT).sort_by(S.POS).str.join(" "), pl.col("_row").sort_by(S.POS).cast(pl.Int64).alias("rows"), pl.col(S.POS).min().alias("_first"))
        .sort(S.DOC_INDEX, "_first")
        .select(S.DOC_INDEX, S.TEXT, "rows")
    )
