"""Model directories in the Hugging Face / Optimum layout, their kinds, and the files each
kind needs.

Kinds and the files they need (``onnx/*_fp16.onnx`` variants are used on CUDA when present):

- ``clip``: ``onnx/vision_model.onnx`` (pixel_values -> image_embeds), ``onnx/text_model.onnx``
  (input_ids[, attention_mask] -> text_embeds), ``preprocessor_config.json`` (or
  ``open_clip_config.json``), ``tokenizer.json``, ``config.json``.
- ``text-embedder`` (sentence-transformers layout): ``onnx/model.onnx`` (-> token embeddings),
  ``tokenizer.json``, ``modules.json``, the pooling module's ``config.json`` (usually
  ``1_Pooling/config.json``), ``sentence_bert_config.json``, ``config.json``.
- ``causal-lm``: ``onnx/model.onnx`` (input_ids, attention_mask -> logits), ``tokenizer.json``,
  ``config.json``.
- ``image-features`` (FID / Inception Score networks): ``onnx/model.onnx`` (pixel_values ->
  features and/or logits), ``preprocessor_config.json``, ``config.json`` with ``model_type``
  ``"image-features"``.
- ``image-distance`` (LPIPS): ``onnx/model.onnx`` (image0, image1 -> distance),
  ``preprocessor_config.json``, ``config.json`` with ``model_type`` ``"image-distance"``.

(:mod:`interleaf.models.image_networks` describes the last two.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

KINDS = ("clip", "text-embedder", "causal-lm", "image-features", "image-distance")
PRECISIONS = ("auto", "fp32", "fp16")

REQUIRED = {
    "clip": ("onnx/vision_model.onnx", "onnx/text_model.onnx", "tokenizer.json", "config.json"),
    "text-embedder": ("onnx/model.onnx", "tokenizer.json", "modules.json", "config.json"),
    "causal-lm": ("onnx/model.onnx", "tokenizer.json", "config.json"),
    "image-features": ("onnx/model.onnx", "preprocessor_config.json", "config.json"),
    "image-distance": ("onnx/model.onnx", "preprocessor_config.json", "config.json"),
}


class ModelDirectoryError(ValueError):
    """A model directory is missing a file, has an unreadable one, or is not the kind asked for."""


def read_json(path: Path, expect: type = dict) -> Any:
    """A JSON value of type ``expect`` (an object by default) from ``path``, with the file
    named in every error."""
    if not path.is_file():
        raise ModelDirectoryError(f"missing file: {path}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelDirectoryError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(value, expect):
        what = "an object" if expect is dict else f"a {expect.__name__}"
        raise ModelDirectoryError(f"{path} must hold {what}, not {type(value).__name__}")
    return value


def config_value(cfg: dict, key: str, kind: type, default: Any, where: Path | str) -> Any:
    """``cfg[key]`` as ``kind`` (int or float), ``default`` when absent or null; a value of the
    wrong type names the file and the key instead of failing with a bare ``int()`` error."""
    value = cfg.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise ModelDirectoryError(f"{where}: {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(value)


def detect_kind(path: Path) -> str:
    """The kind a directory holds, from its files: CLIP's two graphs, sentence-transformers'
    ``modules.json``, or a single ``onnx/model.onnx`` with a causal-LM ``config.json``."""
    if (path / "onnx" / "vision_model.onnx").exists() or (path / "onnx" / "text_model.onnx").exists():
        return "clip"
    if (path / "modules.json").exists():
        return "text-embedder"
    cfg_path = path / "config.json"
    if cfg_path.is_file():
        cfg = read_json(cfg_path)
        if cfg.get("model_type") == "clip" or "vision_config" in cfg:
            return "clip"
        if cfg.get("model_type") in ("image-features", "image-distance"):
            return str(cfg["model_type"])
        archs = " ".join(cfg.get("architectures") or [])
        if "CausalLM" in archs or "LMHead" in archs or cfg.get("model_type") in ("gpt2", "llama", "mistral", "qwen2", "gpt_neox", "phi", "opt"):
            return "causal-lm"
    if (path / "onnx" / "model.onnx").exists():
        raise ModelDirectoryError(
            f"{path}: onnx/model.onnx without modules.json or a causal-LM config.json; cannot tell the kind (pass kind=...)"
        )
    raise ModelDirectoryError(
        f"{path} is not a model directory: expected onnx/vision_model.onnx + onnx/text_model.onnx (clip), "
        "modules.json + onnx/model.onnx (text-embedder) or config.json + onnx/model.onnx (causal-lm)"
    )


class ModelDirectory:
    """A validated model directory: its kind, ``config.json`` and file lookups."""

    def __init__(self, path: str | os.PathLike, kind: str | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"model directory not found: {self.path}")
        if not self.path.is_dir():
            raise ModelDirectoryError(f"{self.path} is a file; a model is a directory (config.json, tokenizer.json, onnx/...)")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        try:
            found = detect_kind(self.path)
        except ModelDirectoryError:
            if kind is None:
                raise
            found = kind  # undecidable from the files: the caller says what it is
        if kind is not None and kind != found:
            raise ModelDirectoryError(f"{self.path} holds a {found} model, not a {kind} model")
        self.kind = found
        missing = [f for f in REQUIRED[found] if not (self.path / f).is_file()]
        if missing:
            raise ModelDirectoryError(f"{self.path} ({found}) is missing {', '.join(missing)}")
        self.config = read_json(self.path / "config.json")

    def file(self, name: str) -> Path:
        """``path/name``, or a :class:`ModelDirectoryError` naming it when it does not exist."""
        p = self.path / name
        if not p.is_file():
            raise ModelDirectoryError(f"{self.path} is missing {name}")
        return p

    def json(self, name: str) -> dict[str, Any]:
        return read_json(self.file(name))

    def onnx(self, stem: str, precision: str, on_cuda: bool) -> Path:
        """``onnx/{stem}.onnx``, or ``onnx/{stem}_fp16.onnx`` when ``precision`` is ``"fp16"``
        (required) or ``"auto"`` on CUDA (when present)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        fp16 = self.path / "onnx" / f"{stem}_fp16.onnx"
        if precision == "fp16":
            if not fp16.is_file():
                raise ModelDirectoryError(f"precision='fp16' but {self.path} has no onnx/{stem}_fp16.onnx")
            return fp16
        if precision == "auto" and on_cuda and fp16.is_file():
            return fp16
        return self.file(f"onnx/{stem}.onnx")

    def variants(self) -> list[str]:
        """The ONNX files under ``onnx/``, relative to the directory."""
        d = self.path / "onnx"
        return sorted(str(p.relative_to(self.path)) for p in d.glob("*.onnx")) if d.is_dir() else []
