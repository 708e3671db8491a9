"""Sentence embeddings from a sentence-transformers model directory, through ONNX Runtime.

The directory's ``modules.json`` says what runs after the transformer: the pooling module's
``config.json`` gives the pooling (CLS token, mean, max, mean / sqrt(length), position-weighted
mean, last token, as sentence-transformers computes them over the attention mask), and a
``Normalize`` module L2-normalises. ``sentence_bert_config.json`` gives ``max_seq_length``
(overriding any truncation or fixed padding baked into ``tokenizer.json``) and
``do_lower_case`` (sentence-transformers 6 keeps ``max_seq_length`` as ``model_max_length`` in
``tokenizer_config.json``; both layouts load).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from interleaf.models.base import Model, l2_normalize
from interleaf.models.directory import ModelDirectoryError, config_value, read_json
from interleaf.models.runtime import Session
from interleaf.models.tokenize import TextTokenizer, clean_texts
from interleaf.schema import error_column

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len", "weightedmean", "lasttoken")
_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def pool(hidden: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """sentence-transformers' pooling of token embeddings ``(b, t, d)`` under an attention
    mask ``(b, t)``; several modes are concatenated in its order."""
    hidden = hidden.astype(np.float32, copy=False)
    m = mask.astype(np.float32)[:, :, None]
    lengths = np.clip(m.sum(axis=1), 1e-9, None)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append(np.where(m > 0, hidden, np.float32(-1e9)).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len"):
            s = (hidden * m).sum(axis=1)
            parts.append(s / lengths if mode == "mean" else s / np.sqrt(lengths))
        elif mode == "weightedmean":
            w = m * np.arange(1, hidden.shape[1] + 1, dtype=np.float32)[None, :, None]
            parts.append((hidden * w).sum(axis=1) / np.clip(w.sum(axis=1), 1e-9, None))
        elif mode == "lasttoken":
            last = np.maximum(mask.sum(axis=1).astype(np.int64) - 1, 0)
            parts.append(hidden[np.arange(len(hidden)), last])
        else:
            raise ValueError(f"pooling mode must be one of {POOLING_MODES}, not {mode!r}")
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


class TextEmbedder(Model):
    """A sentence-transformers model directory exported to ONNX; use
    :func:`interleaf.models.load`.

    Attributes:
        dim: embedding width after pooling.
        pooling: the pooling modes, from the pooling module's config.
        normalize: whether a ``Normalize`` module follows (embeddings are then unit length).
        max_seq_length: tokens per text, special tokens included (``sentence_bert_config.json``,
            capped by ``max_position_embeddings``).
    """

    kind = "text-embedder"

    def __init__(self, path, device: str = "auto", *, threads: int | None = None, precision: str = "auto", io_binding: bool | None = None, batch_size: int = 64, max_length: int | None = None):
        super().__init__(path, device, threads, precision, io_binding)
        d = self.directory
        modules = _read_modules(d)
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
        unsupported = [t for t in types if t not in ("Transformer", "Pooling", "Normalize")]
        if unsupported:
            raise ModelDirectoryError(f"{d.path}/modules.json has modules interleaf does not run: {unsupported} (supported: Transformer, Pooling, Normalize)")
        if "Pooling" not in types:
            raise ModelDirectoryError(f"{d.path}/modules.json has no Pooling module")
        pooling_path = modules[types.index("Pooling")].get("path") or "1_Pooling"
        pcfg = d.json(f"{pooling_path}/config.json")
        if pcfg.get("pooling_mode"):
            self.pooling = [_normalise_mode(pcfg["pooling_mode"])]
        else:
            self.pooling = [mode for key, mode in _POOLING_KEYS.items() if pcfg.get(key)]
        if not self.pooling:
            raise ModelDirectoryError(f"{d.path}/{pooling_path}/config.json turns on no pooling mode")
        self.normalize = "Normalize" in types
        st = d.json("sentence_bert_config.json") if (d.path / "sentence_bert_config.json").is_file() else {}
        tc = d.json("tokenizer_config.json") if (d.path / "tokenizer_config.json").is_file() else {}
        limit = config_value(self.config, "max_position_embeddings", int, 512, f"{d.path}/config.json")
        # sentence-transformers < 6 stores max_seq_length in sentence_bert_config.json; 6 keeps
        # it as the tokenizer's model_max_length.
        wanted = st.get("max_seq_length") or (tc.get("model_max_length") if isinstance(tc.get("model_max_length"), int) and tc["model_max_length"] < 1_000_000 else None)
        if max_length is not None and max_length < 2:
            raise ValueError("max_length must be >= 2")
        self.max_seq_length = min(int(max_length or wanted or limit), limit)
        # do_lower_case: sentence-transformers' own lower-casing, before the tokenizer's.
        self.tokenizer = TextTokenizer(d.file("tokenizer.json"), self.max_seq_length, default_pad_id=self.config.get("pad_token_id"), lowercase=bool(st.get("do_lower_case", False)))
        self._check_vocab(self.config.get("vocab_size"), "config.json's")
        self.dim = int(pcfg.get("word_embedding_dimension") or pcfg.get("embedding_dimension") or self.config.get("hidden_size", 0)) * len(self.pooling)
        self.batch_size = batch_size

    def embed(self, texts: pl.Series | Sequence[str | bytes | None], *, batch_size: int | None = None) -> tuple[np.ndarray, pl.Series]:
        """Sentence embeddings pooled and (if the model says so) L2-normalised as
        sentence-transformers' ``encode`` gives them: ``(embeddings, error)``, float32
        ``(n, dim)`` and the error column. Texts longer than ``max_seq_length`` tokens are
        truncated and counted in ``stats["truncated"]``; None and invalid UTF-8 give NaN rows
        and their errors."""
        bs = self._batch_size(batch_size)
        clean, errors = clean_texts(texts)
        out = np.full((len(clean), self.dim), np.nan, dtype=np.float32)
        s = self.session
        hidden_name = _token_output(s)
        for b in self.tokenizer.batches(clean, bs, skip=[e is not None for e in errors]):
            feed = {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "token_type_ids": b.token_type_ids}
            hidden = s.run(feed, [hidden_name])[hidden_name]
            emb = pool(hidden, b.attention_mask, self.pooling)
            if emb.shape[1] != self.dim:
                raise ModelDirectoryError(f"{s.path} gives {emb.shape[1]}-wide embeddings after pooling; the pooling config says {self.dim}")
            out[b.index] = l2_normalize(emb) if self.normalize else emb
            self.stats["truncated"] += int(b.truncated.sum())
        self.stats["texts"] += len(clean)
        error = error_column(errors)
        self._count_errors(error)
        return out, error


def _normalise_mode(mode: str) -> str:
    aliases = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max", "mean_sqrt_len_tokens": "mean_sqrt_len", "weightedmean_tokens": "weightedmean"}
    mode = aliases.get(mode, mode)
    if mode not in POOLING_MODES:
        raise ModelDirectoryError(f"pooling_mode {mode!r} is not one of {POOLING_MODES}")
    return mode


def _read_modules(d) -> list[dict[str, Any]]:
    p = d.file("modules.json")
    modules = read_json(p, list)
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise ModelDirectoryError(f"{p} must be a list of {{'type', 'path'}} objects")
    return sorted(modules, key=lambda m: int(m.get("idx", 0)))


def _token_output(s: Session) -> str:
    """The graph output holding token embeddings ``(b, t, d)``."""
    for name in ("last_hidden_state", "token_embeddings"):
        if name in s.outputs:
            return name
    raise ModelDirectoryError(f"{s.path} has no last_hidden_state / token_embeddings output (outputs: {s.outputs})")
