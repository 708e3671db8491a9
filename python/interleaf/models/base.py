"""What the model kinds share: the directory, the device choice, lazily created sessions and
counters."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from interleaf.models.directory import ModelDirectory, ModelDirectoryError
from interleaf.models.runtime import Session, create_session, cuda_available


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their L2 norm, in float32 (rows of zeros stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


class Model:
    """What the three kinds share: the directory, device choice and counters."""

    kind = ""

    def __init__(self, path: str | os.PathLike | ModelDirectory, device: str, threads: int | None, precision: str, io_binding: bool | None):
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
            s = self._sessions[stem] = create_session(onnx, self.device_requested, threads=self.threads, io_binding=self.io_binding)
        return s

    @property
    def device(self) -> str:
        """Where the loaded graphs run (``"cuda"``/``"cpu"``); loads the main graph if needed."""
        return self._main_session().device

    def _main_session(self) -> Session:  # pragma: no cover - overridden
        raise NotImplementedError

    def _count_errors(self, errors: Sequence[dict[str, str] | None]) -> None:
        for e in errors:
            if e is not None:
                self.stats["errors"][e["kind"]] = self.stats["errors"].get(e["kind"], 0) + 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, device={self.device_requested!r})"
