"""OBELICS's text functions (huggingface/OBELICS ``obelics/processors/web_document_filtering.py``),
transcribed as the oracle for ``interleaf.signals.text_stats`` and ``obelics_paragraphs``
(tests) and as the peer in ``benches/text_stats.py``. The word lists are the ones interleaf
ships (``rust/core/data/obelics``), which are OBELICS's."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "rust" / "core" / "data" / "obelics"


def _lines(name: str) -> list[str]:
    return [line for line in (DATA / name).read_text().splitlines() if line and not line.startswith("#")]


SPECIAL = {chr(int(line[2:], 16)) for line in _lines("special_characters.txt")}
STOPWORDS = set(_lines("stopwords.txt"))
FLAGGED = set(_lines("flagged_words.txt"))
PUNCTUATION = {".", ",", "?", "!", ":", ";"}
WHITESPACE = {" ", "\u2009", "\u200a", "\u202f", "\u2005", "\u3000", "\u2002", "\u2008", "\u2003", "\ufffc", "\x84", "\xa0"}


def ref_words(text):
    words = [w for w in re.split(" |\n|\t", text) if w]
    words = [w.lower() for w in words]

    def strip(t):
        b, e = 0, len(t)
        for ch in t:
            if ch in SPECIAL:
                b += 1
            else:
                break
        for ch in reversed(t):
            if ch in SPECIAL:
                e -= 1
            else:
                break
        return t[b:e]

    return [w for w in (strip(w) for w in words) if w]


def ref_char_repetition(text, n=10):
    freq = Counter(text[i : i + n] for i in range(len(text) - n + 1))
    if not freq:
        return 0
    vals = sorted(freq.values(), reverse=True)
    k = min(int(np.sqrt(len(vals))), len(vals) - len([v for v in vals if v == 1]))
    return sum(vals[:k]) / sum(vals)


def ref_word_repetition(text, n=5):
    w = ref_words(text)
    freq = Counter(" ".join(w[i : i + n]) for i in range(len(w) - n + 1))
    if not freq:
        return 0
    return sum(v for v in freq.values() if v > 1) / sum(freq.values())


def ref_ratio(text, words):
    w = ref_words(text)
    return len([x for x in w if x in words]) / len(w) if w else 0


def ref_special(text):
    return len([c for c in text if c in SPECIAL]) / len(text) if text else 0


def ref_punctuation(text, min_nb_words=-1):
    toks = re.findall(r"[\w']+|[" + "".join(sorted(PUNCTUATION)) + "]", text)
    if not toks:
        return 0
    if min_nb_words > 0 and len(toks) < min_nb_words:
        return 1.0
    return len([t for t in toks if t in PUNCTUATION]) / len(toks)


def ref_paragraph_filter(text, common_words=None):
    """OBELICS's node-level text filter; ``common_words``: its ``json.load``-ed list (a dict or
    a list, read with ``in``), checked after punctuation (``check_common_word_ratio``, 0.8)."""
    text = "".join(" " if c in WHITESPACE else c for c in text)
    kept, removed = [], []
    for i, p in enumerate(text.split("\n\n")):
        if p == "END_OF_DOCUMENT_TOKEN_TO_BE_REPLACED":  # kept unchecked
            kept.append(p)
            continue
        n = len(ref_words(p))
        checks = [
            ("words", 4 <= n <= 1000),
            ("char_repetition", ref_char_repetition(p) <= 0.1),
            ("word_repetition", ref_word_repetition(p) <= 0.1),
            ("special_characters", ref_special(p) <= 0.3),
            ("stopwords", ref_ratio(p, STOPWORDS) >= 0.3),
            ("flagged_words", ref_ratio(p, FLAGGED) <= 0.01),
            ("punctuation", ref_punctuation(p, 12) >= 0.001),
        ]
        if common_words is not None:
            checks.append(("common_words", ref_ratio(p, common_words) >= 0.8))
        failed = next((name for name, ok in checks if not ok), None)
        (removed.append((i, failed)) if failed else kept.append(p))
    return ("\n\n".join(kept) if kept else None), removed


def ref_text_stats(text, level="paragraph"):
    """Every statistic of ``interleaf.signals.text_stats``, the way OBELICS computes them."""
    return (
        len(ref_words(text)),
        len(text),
        ref_char_repetition(text),
        ref_word_repetition(text),
        ref_special(text),
        ref_ratio(text, STOPWORDS),
        ref_ratio(text, FLAGGED),
        ref_punctuation(text, 12 if level == "paragraph" else -1),
    )


# OBELICS's perplexity: ``compute_perplexity_score`` with ``filtering_utils``'s constants (CCNet's).
NON_PRINTING_CHARACTERS_RE = re.compile(f"[{''.join(map(chr, list(range(0, 32)) + list(range(127, 160))))}]")
DIGITS_RE = re.compile(r"\d")
UNICODE_PUNCTUATION = {
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "１": '"',
    "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":", "？": "?", "！": "!",
    "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ", "～": "~", "’": "'",
    "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%", "►": "-",
}  # fmt: skip


def ref_perplexity(text, sentencepiece_model, kenlm_model):
    text = NON_PRINTING_CHARACTERS_RE.sub("", text)
    text = text.strip()
    if text:
        text = "".join(c if c not in WHITESPACE else " " for c in text)
        text = DIGITS_RE.sub("0", text)
        text = "".join(UNICODE_PUNCTUATION.get(c, c) for c in text)
    text = " ".join(sentencepiece_model.encode_as_pieces(text))
    doc_log_score, doc_length = 0, 0
    for line in text.split("\n"):
        doc_log_score += kenlm_model.score(line)
        doc_length += len(line.split()) + 1
    return round(10.0 ** (-doc_log_score / doc_length), 1)
