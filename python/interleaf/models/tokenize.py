"""Tokenisation with Hugging Face ``tokenizers`` from a model's ``tokenizer.json``.

Padding and truncation baked into a ``tokenizer.json`` are overridden by the model's own
limits (CLIP: 77 positions; a text embedder: its ``max_seq_length``; a causal LM: its
``n_positions``). Texts longer than the limit are truncated and counted. Batches are bucketed
by length: texts are sorted by token count, cut into batches, and each batch is padded only to
its own longest text, so a few long texts do not make every batch long.

Bad texts are values, not exceptions: None is ``missing_text``; bytes that are not UTF-8 and
strings with lone surrogates (what ``errors="surrogateescape"`` leaves) are ``invalid_utf8``.
Their rows are skipped by the model and reported by index.
"""

from __future__ import annotations

import html
import itertools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interleaf._checks import not_one
from interleaf.schema import record_error


@dataclass
class TokenBatch:
    """One padded batch. ``index`` holds the positions of its texts in the caller's list."""

    index: np.ndarray  # int64 (b,)
    input_ids: np.ndarray  # int64 (b, t)
    attention_mask: np.ndarray  # int64 (b, t)
    token_type_ids: np.ndarray  # int64 (b, t)
    lengths: np.ndarray  # int64 (b,): tokens before padding
    truncated: np.ndarray  # bool (b,)


def open_clip_clean(text: str) -> str:
    """open_clip's ``basic_clean`` of a text before its ``SimpleTokenizer``: ftfy's
    ``fix_text`` (curly quotes straightened, ligatures and full-width letters made plain,
    mojibake repaired), HTML entities unescaped twice (``&amp;amp;`` -> ``&``), stripped; the
    whitespace folding and lower-casing that follow are the ``tokenizer.json``'s own."""
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def clean_texts(texts: Iterable[str | bytes | None]) -> tuple[list[str], list[dict[str, str] | None]]:
    """Each text as a ``str`` that tokenizers accepts (bad ones become "") and its error."""
    not_one("texts", texts)
    out: list[str] = []
    errors: list[dict[str, str] | None] = []
    for i, t in enumerate(texts):
        err = None
        if t is None:
            t, err = "", record_error("missing_text", "text is None")
        elif isinstance(t, (bytes, bytearray, memoryview)):
            try:
                t = bytes(t).decode("utf-8")
            except UnicodeDecodeError as e:
                t, err = "", record_error("invalid_utf8", f"text {i} is not UTF-8: {e.reason} at byte {e.start}")
        elif isinstance(t, str):
            # isascii() is O(1) for CPython's compact strings; only others can hold a surrogate.
            if not t.isascii():
                try:
                    t.encode("utf-8")
                except UnicodeEncodeError as e:
                    t, err = "", record_error("invalid_utf8", f"text {i} has a lone surrogate at character {e.start} (undecodable bytes)")
        else:
            raise TypeError(f"texts must be str, bytes or None; text {i} is {type(t).__name__}")
        out.append(t)
        errors.append(err)
    return out, errors


#: Characters kept per token of ``max_length`` before tokenizing a long text (see
#: :meth:`TextTokenizer.encode`): far more than any tokenizer's average (4-5 in English).
CHARS_PER_TOKEN = 64
#: The last whitespace of a text's head (the point :meth:`TextTokenizer.encode` cuts at).
_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")


class TextTokenizer:
    """A ``tokenizer.json`` with the model's limits.

    Args:
        path: the ``tokenizer.json`` file.
        max_length: most tokens per text, special tokens included; longer texts are truncated.
        default_pad_id: the id padding uses when ``tokenizer.json`` names no padding token
            (default 0); a padding token it names wins.
        pad_to: pad every batch to exactly this many tokens (graphs with a fixed sequence
            axis); None pads each batch to its longest text.
        lowercase: lower-case texts first (sentence-transformers' ``do_lower_case``).
    """

    def __init__(self, path: str | os.PathLike, max_length: int, *, default_pad_id: int | None = None, pad_to: int | None = None, lowercase: bool = False):
        try:
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - a dependency
            raise ImportError("interleaf.models needs tokenizers (pip install tokenizers)") from e
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer.json not found: {path}")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:
            raise ValueError(f"{path} is not a tokenizers tokenizer.json: {e}") from None
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        baked = tok.padding
        self.baked_padding = baked
        self.baked_truncation = tok.truncation
        tok.no_padding()
        self.path = path
        self.tokenizer = tok
        self.set_max_length(max_length)
        self.pad_id = int(baked["pad_id"] if baked else (default_pad_id or 0))
        self.pad_to = pad_to
        self.lowercase = lowercase

    def set_max_length(self, max_length: int) -> None:
        """Truncate at ``max_length`` tokens, special tokens included."""
        self.max_length = int(max_length)
        self.tokenizer.enable_truncation(self.max_length)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
        """Token ids and type ids per text (truncated to ``max_length``) and a bool array
        saying which texts were truncated. Runs in tokenizers' Rust threads.

        A text longer than ``CHARS_PER_TOKEN * max_length`` characters is first cut at its
        last whitespace before that point: tokens never span whitespace, so when the cut text
        still has more than ``max_length`` tokens its first ones are the whole text's (a
        1 MB caption took 11 s to tokenize in full for 77 tokens); when it has not (long
        whitespace runs, one giant word), the whole text is tokenized after all."""
        texts = list(texts)
        if self.lowercase:
            texts = [t.lower() for t in texts]
        limit = CHARS_PER_TOKEN * self.max_length
        heads = {}
        for i, t in enumerate(texts):
            if len(t) > limit and (m := _LAST_SPACE.search(t, 0, limit)) is not None and m.start() > 0:
                heads[i] = t[: m.start()]
        encs = self.tokenizer.encode_batch([heads.get(i, t) for i, t in enumerate(texts)], add_special_tokens=True)
        if again := [i for i in heads if not encs[i].overflowing]:
            for i, e in zip(again, self.tokenizer.encode_batch([texts[i] for i in again], add_special_tokens=True), strict=True):
                encs[i] = e
        ids = [e.ids for e in encs]
        types = [e.type_ids for e in encs]
        truncated = np.fromiter((bool(e.overflowing) for e in encs), dtype=bool, count=len(encs))
        return ids, types, truncated

    def batches(self, texts: Sequence[str], batch_size: int, *, skip: Sequence[bool] | None = None, bucket: bool = True) -> Iterator[TokenBatch]:
        """Padded batches of at most ``batch_size`` texts. ``skip[i]`` leaves text i out.
        With ``bucket`` the texts are sorted by length (stable) before batching."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        keep = np.arange(len(texts)) if skip is None else np.flatnonzero(~np.asarray(skip, dtype=bool))
        if keep.size == 0:
            return
        ids, types, truncated = self.encode([texts[i] for i in keep.tolist()])
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable") if bucket else np.arange(len(ids))
        for start in range(0, len(order), batch_size):
            sel = order[start : start + batch_size]
            lens = lengths[sel]
            width = self.pad_to or max(1, int(lens.max()))
            # Scatter the batch's tokens into padded rows in one step: row r holds lens[r] tokens.
            mask = np.arange(width)[None, :] < lens[:, None]
            input_ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
            type_ids = np.zeros(mask.shape, dtype=np.int64)
            input_ids[mask] = np.fromiter(itertools.chain.from_iterable(ids[k] for k in sel), dtype=np.int64, count=int(lens.sum()))
            type_ids[mask] = np.fromiter(itertools.chain.from_iterable(types[k] for k in sel), dtype=np.int64, count=int(lens.sum()))
            yield TokenBatch(index=keep[sel], input_ids=input_ids, attention_mask=mask.astype(np.int64), token_type_ids=type_ids, lengths=lens, truncated=truncated[sel])
