"""``interleaf models pull``: download a model directory from the Hugging Face Hub, only when
the user asks. Needs ``huggingface_hub`` (the ``hub`` extra) and a reachable hub."""

from __future__ import annotations

import os
from pathlib import Path

from interleaf.models.directory import ModelDirectory, ModelDirectoryError

# What a model directory needs; weights in other formats (safetensors, bin) are not fetched.
PATTERNS = ["*.json", "onnx/*.onnx", "onnx/*.onnx_data", "*/config.json", "*.txt"]


def pull(repo: str, out: str | os.PathLike | None = None, *, revision: str | None = None, fp16: bool = False) -> Path:
    """Downloads ``repo`` (``owner/name``) into ``out`` (default: ``home()/owner--name``) and
    checks that it is a model directory interleaf loads. ``fp16`` also fetches
    ``onnx/*_fp16.onnx``; other ONNX variants (quantised, ...) are skipped.

    Raises:
        ImportError: huggingface_hub is not installed.
        ConnectionError: the hub is not reachable.
        ModelDirectoryError: the download is not an interleaf model directory (for a
            transformers or open_clip checkpoint, use ``interleaf models export``).
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise ImportError("pulling models needs huggingface_hub: pip install 'interleaf[hub]'") from e
    from interleaf.models import home

    dest = Path(out) if out is not None else home() / repo.replace("/", "--")
    ignore = ["onnx/*_quantized.onnx", "onnx/*_q4*.onnx", "onnx/*_int8.onnx", "onnx/*_uint8.onnx", "onnx/*_bnb4.onnx", "onnx/*_q8*.onnx"]
    if not fp16:
        ignore.append("onnx/*_fp16.onnx")
    try:
        snapshot_download(repo_id=repo, revision=revision, local_dir=str(dest), allow_patterns=PATTERNS, ignore_patterns=ignore)
    except Exception as e:  # huggingface_hub raises many connection / HTTP error types
        raise ConnectionError(f"could not download {repo}: {type(e).__name__}: {e}") from None
    try:
        ModelDirectory(dest)
    except ModelDirectoryError as e:
        raise ModelDirectoryError(f"{repo} downloaded to {dest} but is not an interleaf model directory: {e}. For a transformers, open_clip or sentence-transformers checkpoint, run interleaf models export") from None
    return dest
