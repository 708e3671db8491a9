"""Per-text perplexity from a causal language model exported to ONNX (``onnx/model.onnx`` with
``logits``), as Hugging Face computes it: the mean negative log-likelihood of every token given
the tokens before it, ``perplexity = exp(nll)``.

The first token has no context and is not scored unless ``add_bos=True`` puts the model's
``bos_token_id`` before every text (what lm-evaluation-harness does for GPT-2 with its
end-of-text token). Texts longer than the model's positions are truncated and counted. Graphs
exported with a KV cache (Optimum's ``past_key_values.*`` inputs, ``use_cache_branch``) are fed
an empty cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from interleaf.models.base import Model
from interleaf.models.directory import ModelDirectoryError, config_value
from interleaf.models.runtime import Session, available_cores
from interleaf.models.tokenize import TextTokenizer, clean_texts
from interleaf.schema import ERROR_DTYPE, error_column, record_error

# Largest logits block taken through log-softmax at once, in floats (256 MiB of float32).
_LOGITS_BLOCK = 1 << 26
# Tokens per text unless max_length says otherwise: a 128k-position model would otherwise make
# one long text return 128k x vocab logits.
DEFAULT_MAX_LENGTH = 4096

PERPLEXITY_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {"perplexity": pl.Float64, "nll": pl.Float64, "tokens": pl.Int64, "truncated": pl.Boolean, "error": ERROR_DTYPE}


def mean_nll(logits: np.ndarray, ids: np.ndarray, lengths: np.ndarray, *, threads: int | None = None, piece_floats: int = 1 << 24) -> np.ndarray:
    """Mean negative log-likelihood (nats, float64) of each row's tokens ``ids[r, 1:L]`` under
    ``logits[r, :L - 1]`` for ``(rows, width, V)`` logits and row lengths ``L`` (NaN below 2
    tokens): a stable log-softmax (the maximum subtracted in float32, the exponentials summed
    in float64), over the whole block at once and its rows split over ``threads`` (numpy
    releases the GIL) in pieces of about ``piece_floats`` logits, not a Python step per text."""
    rows, width, vocab = logits.shape
    out = np.full(rows, np.nan)
    if width < 2 or not rows:
        return out
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) != rows or lengths.max() > width:
        raise ValueError(f"lengths must be one per row and at most the width {width}")
    # Rows per piece: each thread copies about piece_floats logits at a time (at least a row).
    per = max(1, piece_floats // max(1, (width - 1) * vocab))

    def piece(r0: int) -> None:
        r1 = min(rows, r0 + per)
        scored = lengths[r0:r1] - 1
        valid = np.arange(width - 1)[None, :] < scored[:, None]
        # Only the scored positions (no work on padding): one (tokens, V) copy, then in place.
        x = logits[r0:r1, :-1][valid].astype(np.float32, copy=False)  # float16 models too
        if len(x):
            target = np.take_along_axis(x, ids[r0:r1, 1:][valid][:, None], axis=1)[:, 0]
            m = x.max(axis=1, keepdims=True)
            np.subtract(x, m, out=x)
            np.exp(x, out=x)
            nll = np.log(x.sum(axis=1, dtype=np.float64)) + m[:, 0] - target
            sums = np.bincount(np.nonzero(valid)[0], weights=nll, minlength=r1 - r0)
            out[r0:r1] = np.where(scored >= 1, sums / np.maximum(scored, 1), np.nan)

    starts = range(0, rows, per)
    workers = min(len(starts), threads or available_cores())
    if workers <= 1:
        for r0 in starts:
            piece(r0)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(piece, starts))
    return out


class CausalLM(Model):
    """A causal LM directory; use :func:`interleaf.models.load`.

    Attributes:
        max_length: tokens per text: ``max_length`` if given, else ``n_positions`` /
            ``max_position_embeddings`` capped at 4,096; never more than the model's positions.
        vocab_size: from ``config.json``.
    """

    kind = "causal-lm"

    def __init__(self, path, device: str = "auto", *, threads: int | None = None, precision: str = "auto", io_binding: bool | None = None, batch_size: int = 8, max_length: int | None = None):
        super().__init__(path, device, threads, precision, io_binding)
        cfg = self.config
        where = f"{self.path}/config.json"
        limit = config_value(cfg, "n_positions", int, None, where) or config_value(cfg, "max_position_embeddings", int, None, where)
        if limit is None and max_length is None:
            raise ModelDirectoryError(f"{self.path}/config.json has no n_positions / max_position_embeddings; pass max_length")
        if max_length is not None and max_length < 2:
            raise ValueError("max_length must be >= 2")
        wanted = max_length or min(int(limit), DEFAULT_MAX_LENGTH)
        self.max_length = int(min(wanted, int(limit))) if limit is not None else int(wanted)
        self.vocab_size = config_value(cfg, "vocab_size", int, 0, f"{self.path}/config.json")
        pad = cfg.get("pad_token_id", cfg.get("eos_token_id"))  # GPT-2 has no padding token
        self.tokenizer = TextTokenizer(self.directory.file("tokenizer.json"), self.max_length, default_pad_id=pad if isinstance(pad, int) else None)
        self._check_vocab(self.config.get("vocab_size"), "config.json's")
        self.bos_token_id = cfg.get("bos_token_id")
        self.batch_size = batch_size

    def _feed(self, s: Session, input_ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        b, t = input_ids.shape
        feed: dict[str, np.ndarray] = {"input_ids": input_ids, "attention_mask": mask}
        if "position_ids" in s.inputs:
            feed["position_ids"] = np.broadcast_to(np.arange(t, dtype=np.int64), (b, t))
        if "use_cache_branch" in s.inputs:
            feed["use_cache_branch"] = np.zeros((1,), dtype=bool)
        cfg = self.config
        heads = cfg.get("num_key_value_heads") or cfg.get("n_head") or cfg.get("num_attention_heads")
        hidden = cfg.get("n_embd") or cfg.get("hidden_size")
        all_heads = cfg.get("n_head") or cfg.get("num_attention_heads")
        for name in s.inputs:
            if name.startswith("past_key_values"):
                shape = s.input_shapes[name]
                if len(shape) != 4:
                    raise ModelDirectoryError(f"{s.path}: cache input {name} has shape {shape}; interleaf feeds (batch, heads, 0, head_dim) caches only")
                h = shape[1] if isinstance(shape[1], int) else heads
                d = shape[3] if isinstance(shape[3], int) else (cfg.get("head_dim") or (hidden // all_heads if hidden and all_heads else None))
                if h is None or d is None:
                    raise ModelDirectoryError(f"{s.path}: cannot size the empty {name} from config.json (needs num_key_value_heads / num_attention_heads and hidden_size or head_dim)")
                feed[name] = np.zeros((b, int(h), 0, int(d)), dtype=s.inputs[name])
        unknown = [n for n in s.inputs if n not in feed]
        if unknown:
            raise ModelDirectoryError(f"{s.path} has inputs interleaf cannot feed: {unknown}")
        return feed

    def perplexity(self, texts: Sequence[str | bytes | None], *, batch_size: int | None = None, add_bos: bool = False) -> pl.DataFrame:
        """Perplexity of each text, one row per text in input order.

        Columns: ``perplexity`` (``exp(nll)``; null when fewer than 2 tokens), ``nll`` (mean
        negative log-likelihood per scored token, nats), ``tokens`` (tokens scored: the text's
        tokens minus the first, or all of them with ``add_bos``), ``truncated``, ``error``
        (``missing_text``, ``invalid_utf8`` or ``too_few_tokens``).
        """
        bs = self._batch_size(batch_size)
        clean, errors = clean_texts(texts)
        n = len(clean)
        nll = np.full(n, np.nan)
        tokens = np.zeros(n, dtype=np.int64)
        truncated = np.zeros(n, dtype=bool)
        s = self.session
        if add_bos and self.bos_token_id is None:
            raise ModelDirectoryError(f"add_bos=True but {self.path}/config.json has no bos_token_id")
        for b in self.tokenizer.batches(clean, bs, skip=[e is not None for e in errors]):
            ids, mask, lengths = b.input_ids, b.attention_mask, b.lengths
            if add_bos:
                # Rows the tokenizer already starts with the start token keep theirs.
                has = (ids[:, 0] == self.bos_token_id) & (lengths > 0)
                rows = len(ids)
                col = lambda v, rows=rows: np.full((rows, 1), v, dtype=np.int64)
                ids = np.where(has[:, None], np.concatenate([ids, col(self.tokenizer.pad_id)], 1), np.concatenate([col(self.bos_token_id), ids], 1))[:, : self.max_length]
                mask = np.where(has[:, None], np.concatenate([mask, col(0)], 1), np.concatenate([col(1), mask], 1))[:, : self.max_length]
                grown = lengths + (~has)
                truncated_now = grown > self.max_length
                lengths = np.minimum(grown, self.max_length)
            else:
                truncated_now = np.zeros(len(ids), dtype=bool)
            width = ids.shape[1]
            rows = max(1, _LOGITS_BLOCK // max(1, width * max(self.vocab_size, 1)))
            for r0 in range(0, len(ids), rows):
                sl = slice(r0, r0 + rows)
                logits = s.run(self._feed(s, ids[sl], mask[sl]), ["logits"])["logits"]
                if logits.ndim != 3 or logits.shape[:2] != ids[sl].shape:
                    raise ModelDirectoryError(f"{s.path} gives logits of shape {logits.shape} for input_ids {ids[sl].shape}")
                at = b.index[r0 : r0 + len(logits)]
                tokens[at] = np.maximum(lengths[sl] - 1, 0)
                nll[at] = mean_nll(logits, ids[sl], lengths[sl], threads=self.threads)
            truncated[b.index] = b.truncated | truncated_now
            self.stats["truncated"] += int(truncated[b.index].sum())
        for i in range(n):
            if errors[i] is None and tokens[i] < 1:
                errors[i] = record_error("too_few_tokens", "perplexity needs a token to score: the text has none after the first (pass add_bos=True to score the first)" if not add_bos else "the text has no tokens")
        self.stats["texts"] += n
        self._count_errors(error_column(errors))
        return pl.DataFrame(
            {"perplexity": np.exp(nll), "nll": nll, "tokens": tokens, "truncated": truncated, "error": errors},
            schema=PERPLEXITY_SCHEMA,
            nan_to_null=True,
        )
