"""KenLM n-gram perplexity over SentencePiece pieces, as OBELICS's document filter computes it.

OBELICS (and CCNet and BigScience's filters before it) scores a text with a KenLM model trained
on Wikipedia, read through its SentencePiece tokenizer: the ``en.arpa.bin`` + ``en.sp.model``
pair. A KenLM model here is that pair: a KenLM file (ARPA text or KenLM's binary form) and the
SentencePiece model beside it. It runs through the ``kenlm`` and ``sentencepiece`` packages
(the ``kenlm`` extra; ``kenlm`` builds from source, about two minutes). No model ships.

The perplexity is OBELICS's ``compute_perplexity_score``, step for step: remove the non-printing
characters (U+0000-U+001F, U+007F-U+009F: newlines too, so paragraphs run together), strip,
standardise OBELICS's 13 whitespace characters to a space, every Unicode digit to ``0``, CCNet's
34 Unicode punctuation marks to ASCII; tokenise with SentencePiece and join the pieces with
spaces; then ``10 ** (-sum(log10 score) / sum(pieces + 1))`` over the lines (KenLM adds ``<s>``
and ``</s>``), rounded to one decimal.

Example::

    from interleaf.models.kenlm import KenLM
    lm = KenLM("wikipedia/en.arpa.bin")            # finds wikipedia/en.sp.model beside it
    lm.perplexity(["The cat sat on the mat."])     # perplexity, nll, tokens, truncated, error
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from interleaf import schema as S

#: The first bytes of a KenLM binary file (``lm/binary_format.cc``).
BINARY_MAGIC = b"mmap lm http://kheafield.com/code format version"
#: Name endings of KenLM files, longest first (``en.arpa.bin`` pairs with ``en.sp.model``).
_SUFFIXES = (".arpa.bin", ".arpa", ".binary", ".klm", ".bin")

# OBELICS's normalisation constants (obelics/utils/filtering_utils.py, from CCNet).
_NON_PRINTING = re.compile("[\x00-\x1f\x7f-\x9f]")
_DIGITS = re.compile(r"\d")
_WHITESPACE = {" ", "\u2009", "\u200a", "\u202f", "\u2005", "\u3000", "\u2002", "\u2008", "\u2003", "\ufffc", "\x84", "\xa0"}
_UNICODE_PUNCTUATION = {
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "１": '"',
    "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":", "？": "?", "！": "!",
    "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ", "～": "~", "’": "'",
    "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%", "►": "-",
}  # fmt: skip
_TRANSLATE = str.maketrans(dict.fromkeys(_WHITESPACE, " "))
_PUNCT_TRANSLATE = str.maketrans(_UNICODE_PUNCTUATION)


#: Characters of text tokenised per SentencePiece call at most (about 2 MiB of ASCII).
_CHUNK_CHARS = 2 << 20


def _rounded_power(exponent: float) -> float:
    """``round(10 ** exponent, 1)``, OBELICS's value; ``inf`` where it passes a float's range."""
    try:
        return round(10.0**exponent, 1)
    except OverflowError:
        return math.inf


def normalize(text: str) -> str:
    """OBELICS's normalisation of a text before its perplexity (``normalization`` with
    ``remove_non_printing_characters``, ``strip``, ``standardize_whitespace``,
    ``replace_digits_with_zeros`` and ``replace_unicode_punctuation``; no lower-casing)."""
    text = _NON_PRINTING.sub("", text).strip()
    if not text:
        return text
    text = _DIGITS.sub("0", text.translate(_TRANSLATE))
    return text.translate(_PUNCT_TRANSLATE)


def _head(path: Path, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def is_kenlm_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a KenLM model file: the binary form's magic, or an ARPA file (its
    first non-blank line ``\\data\\``)."""
    p = Path(path)
    if not p.is_file():
        return False
    head = _head(p)
    return head.startswith(BINARY_MAGIC) or head.lstrip().startswith(b"\\data\\")


def _kenlm_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix != ".model" and is_kenlm_file(p))


def is_kenlm(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a KenLM model: a KenLM file, or a directory holding one (and no
    ONNX model)."""
    p = Path(path)
    if p.is_dir():
        return not any((p / name).exists() for name in ("config.json", "modules.json", "onnx")) and bool(_kenlm_files(p))
    return is_kenlm_file(p)


def model_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """The KenLM file and the SentencePiece model that ``path`` names.

    ``path`` is a KenLM file (``en.arpa.bin``, ``en.arpa``, ...; its tokenizer is the
    ``<stem>.sp.model`` beside it, as in CCNet's and OBELICS's releases, else the one ``.model``
    file there) or a directory holding one KenLM file (or an ARPA file and its binary form,
    ``en.arpa`` and ``en.arpa.bin``: the binary one) and its SentencePiece model.

    Raises:
        FileNotFoundError: no such file or directory.
        ValueError: not a KenLM model, or its SentencePiece model is missing or not unique.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such KenLM model file or directory")
    if p.is_dir():
        found = _kenlm_files(p)
        if len(found) == 2 and found[1].name == found[0].name + ".bin":
            found = found[1:]  # en.arpa and its binary form en.arpa.bin: the same model, the faster file
        if len(found) != 1:
            what = "no KenLM file (ARPA or KenLM binary)" if not found else f"{len(found)} KenLM files ({', '.join(f.name for f in found)}): give the file"
            raise ValueError(f"{p}: {what}")
        lm, folder = found[0], p
    else:
        if not is_kenlm_file(p):
            raise ValueError(f"{p}: not a KenLM model (neither KenLM's binary form nor an ARPA file starting with \\data\\)")
        lm, folder = p, p.parent
    name = lm.name
    stem = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s) and len(name) > len(s)), lm.stem)
    paired = folder / f"{stem}.sp.model"
    if paired.is_file():
        return lm, paired
    models = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix == ".model")
    if len(models) != 1:
        what = "no SentencePiece model" if not models else f"{len(models)} .model files ({', '.join(f.name for f in models)})"
        raise ValueError(f"{lm}: its SentencePiece tokenizer {paired.name} is missing and the folder has {what}: OBELICS's perplexity reads the text through the model's SentencePiece pieces")
    return lm, models[0]


def describe(path: str | os.PathLike) -> dict:
    """The files of a KenLM model, its form (ARPA or binary) and, of an ARPA file, its order and
    n-gram counts (from its header), without loading it."""
    lm, sp = model_files(path)
    out: dict = {"path": str(lm), "kind": KenLM.kind, "format": "binary" if _head(lm, len(BINARY_MAGIC)) == BINARY_MAGIC else "arpa", "tokenizer": str(sp), "bytes": lm.stat().st_size}
    if out["format"] == "arpa":
        counts = re.findall(rb"^ngram (\d+)=(\d+)", _head(lm, 1024), flags=re.M)
        out["order"] = len(counts)
        out["ngrams"] = [int(c) for _, c in counts]
    return out


def check(path: str | os.PathLike) -> tuple[Path, Path]:
    """What a run checks before it reads any data, without loading the model (a CCNet binary
    is gigabytes): its files (:func:`model_files`) and the two packages that read them.

    Raises:
        FileNotFoundError, ValueError: see :func:`model_files`.
        ImportError: ``kenlm`` or ``sentencepiece`` is not installed.
    """
    files = model_files(path)
    _packages()
    return files


def _packages():
    try:
        import kenlm
        import sentencepiece
    except ImportError as e:
        raise ImportError(f"KenLM perplexity needs the kenlm and sentencepiece packages: pip install 'interleaf[kenlm]' ({e})") from None
    return kenlm, sentencepiece


class KenLM:
    """A KenLM n-gram model with its SentencePiece tokenizer, scoring texts as OBELICS does.

    Args:
        path: the KenLM file (``en.arpa.bin``, ``en.arpa``) or a directory holding it and its
            SentencePiece model (see :func:`model_files`).
        threads: SentencePiece threads (default: the cores this process may use).

    Raises:
        FileNotFoundError, ValueError: see :func:`model_files`; ValueError also when KenLM or
            SentencePiece cannot load their file.
        ImportError: ``kenlm`` or ``sentencepiece`` is not installed.
    """

    kind = "kenlm"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        from interleaf._checks import int_arg

        int_arg("threads", threads, 1, 512, optional=True)
        self.path, self.tokenizer_path = model_files(path)
        kenlm, spm = _packages()
        self.threads = threads or len(os.sched_getaffinity(0))
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(self.tokenizer_path))
        except (OSError, RuntimeError, ValueError) as e:
            raise ValueError(f"{self.tokenizer_path}: SentencePiece could not load it: {e}") from None
        try:
            self._lm = kenlm.Model(str(self.path))
        except (OSError, RuntimeError, ValueError) as e:
            raise ValueError(f"{self.path}: KenLM could not load it: {e}") from None
        self.order = int(self._lm.order)
        self._vocab = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        self._unk = self._sp.unk_id()
        self.stats = {"texts": 0}

    def perplexity(self, texts: Sequence[str | None] | pl.Series, *, batch_size: int | None = None) -> pl.DataFrame:
        """OBELICS's perplexity of each text (see the module docstring), one row per text.

        Columns: ``perplexity`` (rounded to one decimal, as OBELICS compares it; ``inf`` past
        a float's range), ``nll`` (the unrounded ``-ln`` probability per token, nats),
        ``tokens`` (pieces + 1 per line: the tokens KenLM scored, ``</s>`` included),
        ``truncated`` (always false: an n-gram model reads any length) and ``error``
        (``missing_text`` for a null; ``bad_argument`` for a value that is not a valid text).
        A blank text, or one that normalisation leaves empty, scores as OBELICS scores it:
        ``</s>`` alone. ``batch_size``: texts tokenised per SentencePiece call (default 256;
        fewer when they pass 2 MiB, so long documents do not pile up).
        """
        from interleaf._checks import int_arg

        bs = int_arg("batch_size", batch_size, 1, 1 << 20, optional=True) or 256
        values = texts.to_list() if isinstance(texts, pl.Series) else list(texts)
        n = len(values)
        exponent = np.full(n, np.nan)  # -sum(log10 score) / sum(tokens)
        tokens = np.zeros(n, dtype=np.int64)
        errors: list[dict[str, str] | None] = [None] * n
        todo: list[int] = []
        size = 0
        for i, t in enumerate(values):
            if t is None:
                errors[i] = S.record_error("missing_text", "the text is null")
                continue
            if not isinstance(t, str):
                errors[i] = S.record_error("bad_argument", f"not a text: {type(t).__name__}")
                continue
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:  # a lone surrogate: this record only
                errors[i] = S.record_error("bad_argument", f"the text is not valid Unicode: {e}")
                continue
            todo.append(i)
            size += len(t)
            if len(todo) >= bs or size >= _CHUNK_CHARS:
                self._score([str(values[k]) for k in todo], todo, exponent, tokens)
                todo, size = [], 0
        if todo:
            self._score([str(values[k]) for k in todo], todo, exponent, tokens)
        self.stats["texts"] += n
        ppl = [None if math.isnan(v) else _rounded_power(v) for v in exponent.tolist()]
        return pl.DataFrame(
            {
                "perplexity": pl.Series(ppl, dtype=pl.Float64),
                "nll": pl.Series(exponent * math.log(10), dtype=pl.Float64, nan_to_null=True),
                "tokens": pl.Series(tokens, dtype=pl.Int64),
                "truncated": pl.Series([False] * n, dtype=pl.Boolean),
                S.ERROR: S.error_column(errors),
            }
        )

    def _score(self, texts: list[str], rows: list[int], exponent: np.ndarray, tokens: np.ndarray) -> None:
        """Scores one chunk of texts into ``exponent`` and ``tokens`` at ``rows``."""
        lm, sp, vocab, unk = self._lm, self._sp, self._vocab, self._unk
        normed = [normalize(t) for t in texts]
        # Ids, then their pieces from the vocabulary (faster than SentencePiece's strings); a
        # text with an unknown piece is asked for its strings, which give the unknown text
        # itself rather than <unk>, as OBELICS's encode_as_pieces does.
        ids = sp.encode(normed, out_type=int, num_threads=self.threads)
        for k, (i, row) in enumerate(zip(rows, ids)):
            joined = " ".join(sp.encode(normed[k], out_type=str)) if unk in row else " ".join([vocab[t] for t in row])
            score, length = 0.0, 0
            for line in joined.split("\n"):
                score += lm.score(line)
                length += len(line.split()) + 1
            exponent[i] = -score / length
            tokens[i] = length

    def __repr__(self) -> str:
        return f"KenLM({str(self.path)!r}, tokenizer={str(self.tokenizer_path)!r})"
