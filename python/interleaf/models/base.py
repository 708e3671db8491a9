"""What the model kinds share: the directory, the device choice, lazily created sessions and
counters."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl

from interleaf._checks import int_arg
from interleaf._prefetch import prefetch
from interleaf.models.directory import PRECISIONS, ModelDirectory, ModelDirectoryError
from interleaf.models.runtime import DEVICES, Session, create_session, cuda_available
from interleaf.models.tokenize import TextTokenizer


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their L2 norm, in float32 (rows of zeros stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def decoded_rows(pixels: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a preprocessed batch whose images decoded (``ok``), as one contiguous block
    with the fewest copies: each failed row among the first ``ok.sum()`` takes a decoded row
    from past them, in place, so only as many rows move as failed where ``pixels[ok]`` would
    copy the whole batch. Returns ``(block, rows)``: ``block`` is the leading part of
    ``pixels`` (which is changed) and ``rows[i]`` the batch row of ``block[i]``."""
    n = int(ok.sum())
    rows = np.arange(n)
    holes = np.flatnonzero(~ok[:n])
    if len(holes):
        fill = np.flatnonzero(ok[n:]) + n
        pixels[holes] = pixels[fill]
        rows[holes] = fill
    return pixels[:n], rows


class Model:
    """What the three kinds share: the directory, device choice and counters."""

    kind = ""
    main_graph = "model"
    batch_size = 64

    def __init__(self, path: str | os.PathLike | ModelDirectory, device: str, threads: int | None, precision: str, io_binding: bool | None):
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        if threads is not None and threads < 1:
            raise ValueError("threads must be >= 1")
        self.directory = path if isinstance(path, ModelDirectory) else ModelDirectory(path, self.kind)
        if self.directory.kind != self.kind:
            raise ModelDirectoryError(f"{self.directory.path} holds a {self.directory.kind} model, not a {self.kind} model")
        self.path = self.directory.path
        self.config = self.directory.config
        self.device_requested = device
        self.threads = threads
        self.precision = precision
        self.io_binding = io_binding
        self._sessions: dict[str, Session] = {}
        self.stats: dict[str, Any] = {"texts": 0, "truncated": 0, "images": 0, "errors": {}}

    def _session(self, stem: str) -> Session:
        s = self._sessions.get(stem)
        if s is None:
            on_cuda = self.device_requested == "cuda" or (self.device_requested == "auto" and cuda_available())
            onnx = self.directory.onnx(stem, self.precision, on_cuda)
            s = create_session(onnx, self.device_requested, threads=self.threads, io_binding=self.io_binding)
            if s.device == "cpu" and self.precision == "auto" and onnx.name.endswith("_fp16.onnx"):
                # CUDA did not start: the fp16 graph was only chosen for it.
                s = create_session(self.directory.onnx(stem, "fp32", False), "cpu", threads=self.threads, io_binding=self.io_binding)
            tokenizer = getattr(self, "tokenizer", None)
            if "input_ids" in s.inputs and tokenizer is not None:
                self._fit_sequence(s, tokenizer)
            self._check_pixels(s)
            self._sessions[stem] = s
        return s

    @property
    def session(self) -> Session:
        """The main graph's session (created on first use)."""
        return self._session(self.main_graph)

    def _batch_size(self, batch_size: int | None) -> int:
        return int_arg("batch_size", self.batch_size if batch_size is None else batch_size, 1, 1 << 20)

    def _check_pixels(self, s: Session) -> None:
        """A graph with a fixed image size must get that size from the preprocessing config
        (a config from another model gave ONNX Runtime's "Got invalid dimensions")."""
        config = getattr(self, "preprocess_config", None)
        shape = s.input_shapes.get("pixel_values") or []
        if config is not None and len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int) and (shape[2], shape[3]) != tuple(config.output_shape):
            h, w = config.output_shape
            raise ModelDirectoryError(f"{s.path} takes {shape[2]}x{shape[3]} images, but the preprocessing config in {self.directory.path} makes {h}x{w}: it is another model's")

    def _check_vocab(self, vocab_size: Any, where: str) -> None:
        """The tokenizer's ids must fit the model's embedding table (``vocab_size`` of its
        config; a tokenizer from another model gave ONNX Runtime's out-of-range Gather)."""
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is None or not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            return
        n = tokenizer.tokenizer.get_vocab_size(with_added_tokens=True)
        if n > vocab_size:
            raise ModelDirectoryError(f"{self.directory.path}/tokenizer.json has {n:,} tokens but {where} vocab_size is {vocab_size:,}: the tokenizer is another model's")

    @staticmethod
    def _fit_sequence(s: Session, tokenizer: TextTokenizer) -> None:
        """A graph with a fixed sequence axis (open_clip's text tower, some exports) takes
        exactly that many tokens: pad every batch to it."""
        fixed = (s.input_shapes.get("input_ids") or [None, None])[1]
        if isinstance(fixed, int) and tokenizer.pad_to != fixed:
            if fixed < tokenizer.max_length:
                tokenizer.set_max_length(fixed)
            tokenizer.pad_to = fixed

    @property
    def device(self) -> str:
        """Where the loaded graphs run (``"cuda"``/``"cpu"``); loads the main graph if needed."""
        return self.session.device

    def _image_batches(self, images: pl.Series, config: Any, bs: int, errors: list[pl.Series], *, threads: int | None = None, dtype: str = "float32", alpha: str | None = None, exif_transpose: bool = False) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Decodes and preprocesses ``images`` in Rust, ``bs`` at a time, the next batch while
        the caller runs this one: yields ``(start, pixels, rows)`` per batch with an image
        that decoded (``pixels[i]`` is the image at ``start + rows[i]``; :func:`decoded_rows`);
        every batch's error column is appended to ``errors``."""
        from interleaf import image as _image

        def prep(start: int) -> tuple[np.ndarray, pl.Series]:
            return _image.preprocess(images[start : start + bs], config, threads=threads, dtype=dtype, alpha=alpha, exif_transpose=exif_transpose)

        starts = range(0, images.len(), bs)
        for start, (pixels, errs) in zip(starts, prefetch(map(prep, starts), depth=1), strict=True):
            errors.append(errs)
            ok = errs.is_null().to_numpy()
            if ok.any():
                block, rows = decoded_rows(pixels, ok)
                yield start, block, rows

    def _count_errors(self, errors: pl.Series) -> None:
        for kind, n in errors.drop_nulls().struct.field("kind").value_counts().iter_rows():
            self.stats["errors"][kind] = self.stats["errors"].get(kind, 0) + n

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, device={self.device_requested!r})"
