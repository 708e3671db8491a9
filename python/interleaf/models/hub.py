"""``interleaf models pull``: download a model directory from the Hugging Face Hub, only when
the user asks. Needs ``huggingface_hub`` (the ``hub`` extra) and a reachable hub."""

from __future__ import annotations

import os
from pathlib import Path

from interleaf.models.directory import ModelDirectory, ModelDirectoryError

# Exactly the files the loaders read (configs, tokenizer, the graphs each kind runs and their
# external-data files); other ONNX variants (quantised, optimised, the combined CLIP model.onnx)
# and weights in other formats are not fetched.
PATTERNS = ["*.json", "*.txt", "onnx/vision_model.onnx*", "onnx/text_model.onnx*", "onnx/model.onnx*"]
FP16_PATTERNS = ["onnx/vision_model_fp16.onnx*", "onnx/text_model_fp16.onnx*", "onnx/model_fp16.onnx*"]


def pull(repo: str, out: str | os.PathLike | None = None, *, revision: str | None = None, fp16: bool = False, endpoint: str | None = None) -> Path:
    """Downloads ``repo`` (``owner/name``) into ``out`` (default: ``home()/owner--name``) and
    checks that it is a model directory interleaf loads. ``fp16`` also fetches
    the ``*_fp16.onnx`` graphs; other files (quantised or optimised variants, other weight
    formats) are not downloaded. ``endpoint`` is the hub's URL, for a mirror or a self-hosted
    hub (default: ``$HF_ENDPOINT``, else huggingface.co); a token comes from ``$HF_TOKEN`` or
    ``hf auth login``, as for every huggingface_hub download. A rerun completes an interrupted
    download.

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
    from interleaf.models import default_dir

    dest = Path(out) if out is not None else default_dir(repo)
    try:
        snapshot_download(repo_id=repo, revision=revision, local_dir=str(dest), allow_patterns=PATTERNS + (FP16_PATTERNS if fp16 else []), endpoint=endpoint)
    except Exception as e:  # huggingface_hub raises many connection / HTTP / not-found error types
        raise ConnectionError(f"could not download {repo} (hub unreachable, repository or revision not found, or access denied): {type(e).__name__}: {e}") from None
    try:
        ModelDirectory(dest)
    except ModelDirectoryError as e:
        raise ModelDirectoryError(f"{repo} downloaded to {dest} but is not an interleaf model directory: {e}. For a transformers, open_clip or sentence-transformers checkpoint, run interleaf models export") from None
    return dest
