"""OBELICS's text statistics and paragraph filter (OBELICS, arXiv 2306.16527; huggingface/OBELICS), in Rust."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from interleaf import _native
from interleaf._checks import choice_arg, int_arg, string_column

#: OBELICS's paragraph-level (node) thresholds, from its filter config; a max fails on ``>``,
#: a min on ``<``.
PARAGRAPH_RULES = {
    "n_words": (4, 1000),
    "char_repetition": (None, 0.1),
    "word_repetition": (None, 0.1),
    "special_char_ratio": (None, 0.3),
    "stopword_ratio": (0.3, None),
    "flagged_word_ratio": (None, 0.01),
    "punctuation_ratio": (0.001, None),
}

#: OBELICS's common-word thresholds (paragraph, document), applied when a word list is given
#: (:func:`load_common_words`): its config enables them, its repository does not ship the list.
COMMON_WORD_RULES = {"paragraph": 0.8, "document": 0.9}

#: OBELICS's document-level thresholds (the text of the surviving paragraphs joined by ``"\n\n"``).
DOCUMENT_RULES = {
    "n_words": (10, 2000),
    "char_repetition": (None, 0.1),
    "word_repetition": (None, 0.2),
    "special_char_ratio": (None, 0.275),
    "stopword_ratio": (0.35, None),
    "flagged_word_ratio": (None, 0.01),
    "punctuation_ratio": (0.03, None),
}


#: Word lists loaded from files, by (path, size, mtime): a run's workers load each once.
_LOADED: dict[tuple[str, int, int], Any] = {}


def load_common_words(source: Any) -> Any:
    """A word list for OBELICS's common-word ratio, as a :class:`interleaf._native.WordSet`.

    ``source``: a file, or the words themselves (a set, list or other iterable of strings; a
    WordSet is returned as it is). A file is read as OBELICS reads its ``common_words.json``
    (``json.load``, then ``word in common_words``): a JSON object gives its keys (OBELICS's
    file maps each word to a value), a JSON array its strings. A ``.json`` file must be one of
    those; another file is read as JSON when it is an object or array, else as a word per line
    (UTF-8, blank lines skipped, each line stripped of surrounding whitespace).

    Words are matched as OBELICS's word splitting gives them (lower-cased, stripped of special
    characters at both ends) and the list's entries exactly as written: an entry with an
    upper-case letter, whitespace or a special character at an end never matches, as in
    OBELICS. A list with some such entries warns (:class:`UserWarning`, with examples); one
    with nothing else is refused (a ``word<TAB>count`` file, say: every ratio would be 0).
    OBELICS's own list is not in its repository (``obelics/callers/filter_web_documents.py``
    links it as ``common_words.json``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not UTF-8, a JSON file that is neither an object nor an array of strings,
            or no entry that a text can match.
    """
    if isinstance(source, _native.WordSet):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(source))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"common-word list {os.fspath(source)!r}: no such file (OBELICS's common_words.json, a JSON array, or a word per line)")
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in _LOADED:
            words = _read_words(path)
            if len(_LOADED) >= 4:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = _word_set(words, path)
        return _LOADED[key]
    if isinstance(source, bytes) or not isinstance(source, Iterable):
        raise TypeError(f"common_words must be a file, a WordSet or an iterable of words, not {type(source).__name__}")
    return _word_set(list(source), "common_words")


def _optional_words(source: Any) -> Any:
    """:func:`load_common_words` of ``source``, None for None (no list: no check)."""
    return None if source is None else load_common_words(source)


def _read_words(path: str) -> list[Any]:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"common-word list {path}: not UTF-8 ({e})") from None
    is_json = path.lower().endswith(".json")
    if is_json or text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if is_json:
                raise ValueError(f"common-word list {path}: not valid JSON ({e})") from None
            data = None  # a word per line whose first word starts with a bracket
        if isinstance(data, (dict, list)):
            return list(data)
        if is_json:
            raise ValueError(f"common-word list {path}: a JSON object of words or an array of strings, not a {type(data).__name__}")
    return [w for w in (line.strip() for line in text.splitlines()) if w]


def _word_set(words: list[Any], where: str) -> Any:
    import warnings

    bad = next((w for w in words if not isinstance(w, str)), None)
    if bad is not None:
        raise ValueError(f"{where}: the common words must be strings (a JSON object of words, or an array of strings), found {bad!r}")
    if not words:
        raise ValueError(f"{where}: no words (every text would have a common-word ratio of 0)")
    try:
        ws = _native.WordSet(words)
        lone = 0
    except UnicodeEncodeError:  # a lone surrogate (JSON allows its escape): no text has it
        kept = [w for w in words if _utf8(w)]
        lone = len(words) - len(kept)
        ws = _native.WordSet(kept)
    n, examples = ws.unmatchable()
    n, total = n + lone, len(ws) + lone
    if n >= total:
        tabbed = any("\t" in w or " " in w for w in examples)
        hint = " (entries with whitespace: a word-count file? give one word per line, or a JSON array)" if tabbed else ""
        raise ValueError(f"{where}: no entry a text can match{hint}: words are compared lower-cased and stripped of special characters at both ends, e.g. {examples[:3]}")
    if n:
        warnings.warn(f"{where}: {n:,} of {total:,} common words can never match (upper case, whitespace or special characters at an end), e.g. {examples[:3]}", UserWarning, stacklevel=3)
    return ws


def _utf8(word: str) -> bool:
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_stats(
    texts: pl.Series | Sequence[str | None],
    level: str = "paragraph",
    *,
    char_ngram: int = 10,
    word_ngram: int = 5,
    threads: int | None = None,
    common_words: Any = None,
) -> pl.DataFrame:
    """OBELICS's statistics of each text, one row per text (null for a null text):

    - ``n_words``: words = the text split on space, newline and tab, lower-cased, stripped of
      OBELICS's special characters at both ends, empties dropped ("2024" and "!!!" are not words);
    - ``n_chars``: code points;
    - ``char_repetition``: over the character ``char_ngram``-grams, the share held by the k most
      frequent, k = min(floor(sqrt(distinct)), distinct - singletons); 0 below ``char_ngram``
      characters (OBELICS keeps <= 0.1);
    - ``word_repetition``: the share of word ``word_ngram``-grams seen more than once (<= 0.1 per
      paragraph, <= 0.2 per document);
    - ``special_char_ratio``: characters in OBELICS's special set (punctuation, digits,
      whitespace, listed symbols, emoji) / characters; ordinary English is about 0.2 (<= 0.3,
      document <= 0.275);
    - ``stopword_ratio``, ``flagged_word_ratio``: words in OBELICS's lists / words (>= 0.3,
      document >= 0.35; <= 0.01);
    - ``punctuation_ratio``: ``. , ? ! : ;`` tokens / tokens, tokens being ``[\\w']+`` runs and
      those marks; at ``level="paragraph"`` fewer than 12 tokens gives 1.0, as OBELICS lets short
      paragraphs pass (>= 0.001, document >= 0.03);
    - ``common_word_ratio``, with ``common_words`` (a file or words, :func:`load_common_words`):
      words in that list / words (OBELICS keeps >= 0.8, document >= 0.9).

    Every ratio of an empty text is 0. Values equal OBELICS's own functions
    (``web_document_filtering.py``). The text is taken as it is: OBELICS standardises its 12
    whitespace characters first (:func:`obelics_paragraphs` does).
    """
    choice_arg("level", level, ("paragraph", "document"))
    int_arg("char_ngram", char_ngram, 1, 1000)
    int_arg("word_ngram", word_ngram, 1, 1000)
    int_arg("threads", threads, 1, 512, optional=True)
    min_tokens = 12 if level == "paragraph" else 0
    words = _optional_words(common_words)
    return _native.obelics_text_stats(string_column(texts, "texts"), char_ngram=char_ngram, word_ngram=word_ngram, punctuation_min_tokens=min_tokens, threads=threads, common_words=words)


def obelics_paragraphs(texts: pl.Series | Sequence[str | None], *, threads: int | None = None, node_stats: tuple[int, int] | None = None, common_words: Any = None) -> pl.DataFrame:
    """OBELICS's node-level text filter on each text: its 12 whitespace characters become
    spaces, the text is split on ``"\\n\\n"``, and each paragraph is removed by the first check
    it fails, in OBELICS's order (words 4-1000, char repetition, word repetition, special
    characters, stop words, flagged words, punctuation; thresholds in :data:`PARAGRAPH_RULES`).

    Returns one row per text: ``text`` (the surviving paragraphs joined by ``"\\n\\n"``, null
    when none survive: OBELICS then removes the node), ``removed`` (indices of the removed
    paragraphs) and ``reasons`` (the check each failed: ``words``, ``char_repetition``,
    ``word_repetition``, ``special_characters``, ``stopwords``, ``flagged_words``,
    ``punctuation``, ``common_words``). With ``common_words`` (a file or words,
    :func:`load_common_words`), a paragraph that passes the others is also checked for
    OBELICS's common-word ratio (>= 0.8); without, that check is not made. Language-id and
    perplexity checks are off at OBELICS's paragraph level.

    With ``node_stats=(char_ngram, word_ngram)``, also each whole text's :func:`text_stats` at
    ``level="paragraph"`` with those n-grams, from the same pass (a one-paragraph text's are its
    paragraph's; ``common_word_ratio`` too with ``common_words``).
    """
    int_arg("threads", threads, 1, 512, optional=True)
    if node_stats is not None:
        if isinstance(node_stats, (str, bytes)) or not isinstance(node_stats, Sequence) or len(node_stats) != 2:
            raise TypeError(f"node_stats must be a pair (char_ngram, word_ngram), got {node_stats!r}")
        node_stats = (int_arg("node_stats char_ngram", node_stats[0], 1, 1000), int_arg("node_stats word_ngram", node_stats[1], 1, 1000))
    words = _optional_words(common_words)
    return _native.obelics_paragraphs(string_column(texts, "texts"), threads=threads, node_stats=node_stats, common_words=words)


_STATS = ("n_words", "n_chars", "char_repetition", "word_repetition", "special_char_ratio", "stopword_ratio", "flagged_word_ratio", "punctuation_ratio")


class TextStats:
    """OBELICS's text statistics (:func:`text_stats`) as a Signal.

    ``level="node"``: one row per text node, the statistics of its text (OBELICS's paragraph
    punctuation rule); with ``paragraphs=True`` also OBELICS's node-level filter
    (:func:`obelics_paragraphs`): ``<name>_kept_text`` and ``<name>_removed_reasons``.

    ``level="doc"``: one row per document, the statistics of its non-empty text nodes joined
    by ``"\\n\\n"`` in document order (OBELICS's document text; with ``paragraphs=True`` only the
    paragraphs that survive the node-level filter), plus ``<name>_n_texts`` and
    ``<name>_n_images`` (OBELICS keeps 1-30 images). Thresholds to compare with:
    :data:`PARAGRAPH_RULES`, :data:`DOCUMENT_RULES`, :data:`COMMON_WORD_RULES`.

    ``common_words`` (a file or words, :func:`load_common_words`): also
    ``<name>_common_word_ratio``, and the paragraph filter checks OBELICS's common-word ratio.
    """

    needs: tuple[str, ...] = ()

    def __init__(self, level: str = "node", *, name: str = "text", paragraphs: bool = False, char_ngram: int = 10, word_ngram: int = 5, threads: int | None = None, common_words: Any = None):
        choice_arg("level", level, ("node", "doc"))
        int_arg("char_ngram", char_ngram, 1, 1000)
        int_arg("word_ngram", word_ngram, 1, 1000)
        int_arg("threads", threads, 1, 512, optional=True)
        self.level = level
        self.name = name
        self.paragraphs = paragraphs
        self.char_ngram, self.word_ngram, self.threads = char_ngram, word_ngram, threads
        self.common_words = _optional_words(common_words)

    @property
    def node_kind(self) -> str | None:
        """The kind of node it scores: ``"text"`` at node level, None at document level."""
        return "text" if self.level == "node" else None

    def columns(self) -> dict[str, pl.DataType]:
        n = self.name
        cols: dict[str, pl.DataType] = {f"{n}_{c}": (pl.UInt64() if c.startswith("n_") else pl.Float64()) for c in self._stat_names}
        if self.level == "node" and self.paragraphs:
            cols |= {f"{n}_kept_text": pl.String(), f"{n}_removed_reasons": pl.List(pl.String())}
        if self.level == "doc":
            cols |= {f"{n}_n_texts": pl.UInt32(), f"{n}_n_images": pl.UInt32()}
        return cols

    @property
    def _stat_names(self) -> tuple[str, ...]:
        return _STATS + (("common_word_ratio",) if self.common_words is not None else ())

    def _stats(self, texts: pl.Series, level: str) -> pl.DataFrame:
        t = text_stats(texts, level=level, char_ngram=self.char_ngram, word_ngram=self.word_ngram, threads=self.threads, common_words=self.common_words)
        return t.rename({c: f"{self.name}_{c}" for c in t.columns})

    def _paragraphs(self, batch: pl.DataFrame, texts: pl.DataFrame, ctx) -> pl.DataFrame:
        """OBELICS's paragraph filter of the batch's text nodes ``texts``: the context's, shared
        by the node and document signals (the result does not depend on the threads)."""
        if ctx is not None:
            return ctx.obelics_paragraphs(batch, common_words=self.common_words)
        return obelics_paragraphs(texts.get_column("text"), threads=self.threads, common_words=self.common_words)

    def compute(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        from interleaf import schema as S
        from interleaf.signals.base import DOC_KEYS, NODE_KEYS

        n = self.name
        if self.level == "node":
            nodes = batch.filter(pl.col(S.KIND) == S.TEXT_KIND)
            if self.paragraphs and ctx is not None:
                # The node statistics from the paragraph filter's pass (a one-paragraph node's
                # are its paragraph's).
                p = ctx.obelics_paragraphs(batch, node_stats=(self.char_ngram, self.word_ngram), common_words=self.common_words)
                stats = p.select(self._stat_names).rename({c: f"{n}_{c}" for c in self._stat_names})
                return pl.concat([nodes.select(NODE_KEYS), stats], how="horizontal").with_columns(p.get_column("text").alias(f"{n}_kept_text"), p.get_column("reasons").alias(f"{n}_removed_reasons"))
            out = pl.concat([nodes.select(NODE_KEYS), self._stats(nodes.get_column(S.TEXT), "paragraph")], how="horizontal")
            if self.paragraphs:
                p = self._paragraphs(batch, nodes, ctx)
                out = out.with_columns(p.get_column("text").alias(f"{n}_kept_text"), p.get_column("reasons").alias(f"{n}_removed_reasons"))
            return out
        texts = batch.filter(pl.col(S.KIND) == S.TEXT_KIND)
        if self.paragraphs:
            texts = texts.with_columns(self._paragraphs(batch, texts, ctx).get_column("text").alias(S.TEXT))
        docs = document_texts(batch, texts).rename({"n_texts": f"{n}_n_texts"})
        images = batch.filter(pl.col(S.KIND) == S.IMAGE_KIND).group_by(S.DOC_INDEX).agg(pl.len().cast(pl.UInt32).alias(f"{n}_n_images"))
        docs = docs.join(images, on=S.DOC_INDEX, how="left", maintain_order="left").with_columns(pl.col(f"{n}_n_images").fill_null(0))
        stats = self._stats(docs.get_column("text"), "document")
        return pl.concat([docs.select(DOC_KEYS), stats, docs.select(f"{n}_n_texts", f"{n}_n_images")], how="horizontal")


def document_texts(batch: pl.DataFrame, texts: pl.DataFrame) -> pl.DataFrame:
    """OBELICS's document text of each document of ``batch``: its non-empty text nodes (rows of
    ``texts``, the batch's text nodes, possibly with their texts replaced by the paragraphs
    that survive) joined by ``"\\n\\n"`` in position order (``""`` for a document without
    text); ``n_texts`` counts its text nodes. Columns: the document keys, ``text``, ``n_texts``."""
    from interleaf import schema as S
    from interleaf.signals.base import DOC_KEYS

    docs = batch.select(DOC_KEYS).unique(subset=S.DOC_INDEX, keep="first", maintain_order=True)
    # OBELICS joins `[text for text in texts if text]`: empty texts add no separator.
    nonempty = pl.when(pl.col(S.TEXT).str.len_bytes() > 0).then(pl.col(S.TEXT))
    joined = texts.group_by(S.DOC_INDEX).agg(nonempty.sort_by(S.POS).str.join("\n\n").alias("text"), pl.len().cast(pl.UInt32).alias("n_texts"))
    docs = docs.join(joined, on=S.DOC_INDEX, how="left", maintain_order="left")
    return docs.with_columns(pl.col("text").fill_null(""), pl.col("n_texts").fill_null(0))


#: Python's ``str.split()`` separators: Unicode White_Space plus the four information
#: separators U+001C-U+001F, which ``str.isspace`` also counts.
_PY_WORD = r"[^\s\x1c-\x1f]+"


class CaptionStats:
    """DataComp's caption measures as a Signal: ``<name>_words``, the number of
    whitespace-separated words (``len(caption.split())``, Python's separators) and
    ``<name>_chars``, the length in code points (``len(caption)``); DataComp's basic filter
    keeps ``words > 2`` and ``chars > 5`` (DataComp, arXiv 2304.14108).

    ``level="node"``: per text node; ``level="doc"`` (a pair's caption): the document's text
    nodes joined by ``"\\n"`` (0 and 0 for a document without text).
    """

    needs: tuple[str, ...] = ()

    def __init__(self, level: str = "doc", *, name: str = "caption"):
        choice_arg("level", level, ("node", "doc"))
        self.level, self.name = level, name

    @property
    def node_kind(self) -> str | None:
        """The kind of node it scores: ``"text"`` at node level, None at document level."""
        return "text" if self.level == "node" else None

    def columns(self) -> dict[str, pl.DataType]:
        return {f"{self.name}_words": pl.UInt32(), f"{self.name}_chars": pl.UInt32()}

    def compute(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        from interleaf import schema as S
        from interleaf.signals.base import DOC_KEYS, NODE_KEYS

        words = pl.col(S.TEXT).str.count_matches(_PY_WORD).cast(pl.UInt32).alias(f"{self.name}_words")
        chars = pl.col(S.TEXT).str.len_chars().cast(pl.UInt32).alias(f"{self.name}_chars")
        texts = batch.filter((pl.col(S.KIND) == S.TEXT_KIND) & pl.col(S.TEXT).is_not_null())
        if self.level == "node":
            return texts.select(*NODE_KEYS, words, chars)
        joined = texts.sort(S.DOC_INDEX, S.POS).group_by(S.DOC_INDEX, maintain_order=True).agg(pl.col(S.TEXT).str.join("\n"))
        docs = batch.select(DOC_KEYS).unique(subset=S.DOC_INDEX, keep="first", maintain_order=True).join(joined, on=S.DOC_INDEX, how="left", maintain_order="left")
        return docs.select(*DOC_KEYS, words.fill_null(0), chars.fill_null(0))
