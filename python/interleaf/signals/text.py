"""OBELICS's text statistics and paragraph filter (METHODS.md §8), in Rust."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from interleaf import _native
from interleaf._checks import choice_arg, int_arg

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


def _texts(texts: pl.Series | Sequence[str | None]) -> pl.Series:
    col = texts if isinstance(texts, pl.Series) else pl.Series("text", list(texts), dtype=pl.String)
    if col.dtype == pl.Null:
        col = col.cast(pl.String)
    if col.dtype != pl.String:
        raise TypeError(f"texts must be a String column, not {col.dtype}")
    return col


def text_stats(
    texts: pl.Series | Sequence[str | None],
    level: str = "paragraph",
    *,
    char_ngram: int = 10,
    word_ngram: int = 5,
    threads: int | None = None,
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
      paragraphs pass (>= 0.001, document >= 0.03).

    Every ratio of an empty text is 0. Values equal OBELICS's own functions
    (``web_document_filtering.py``). The text is taken as it is: OBELICS standardises its 12
    whitespace characters first (:func:`obelics_paragraphs` does).
    """
    choice_arg("level", level, ("paragraph", "document"))
    int_arg("char_ngram", char_ngram, 1, 1000)
    int_arg("word_ngram", word_ngram, 1, 1000)
    int_arg("threads", threads, 1, 512, optional=True)
    min_tokens = 12 if level == "paragraph" else 0
    return _native.obelics_text_stats(_texts(texts), char_ngram=char_ngram, word_ngram=word_ngram, punctuation_min_tokens=min_tokens, threads=threads)


def obelics_paragraphs(texts: pl.Series | Sequence[str | None], *, threads: int | None = None) -> pl.DataFrame:
    """OBELICS's node-level text filter on each text: its 12 whitespace characters become
    spaces, the text is split on ``"\\n\\n"``, and each paragraph is removed by the first check
    it fails, in OBELICS's order (words 4-1000, char repetition, word repetition, special
    characters, stop words, flagged words, punctuation; thresholds in :data:`PARAGRAPH_RULES`).

    Returns one row per text: ``text`` (the surviving paragraphs joined by ``"\\n\\n"``, null
    when none survive: OBELICS then removes the node), ``removed`` (indices of the removed
    paragraphs) and ``reasons`` (the check each failed: ``words``, ``char_repetition``,
    ``word_repetition``, ``special_characters``, ``stopwords``, ``flagged_words``,
    ``punctuation``). Common-word, language-id and perplexity checks need OBELICS's external
    models and are not applied here.
    """
    int_arg("threads", threads, 1, 512, optional=True)
    return _native.obelics_paragraphs(_texts(texts), threads=threads)
