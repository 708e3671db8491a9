"""Neural scorers through ONNX Runtime: CLIP image and text embeddings, sentence embeddings and
causal-LM perplexity, on CUDA or the CPU; fastText language identification and KenLM n-gram
perplexity (OBELICS's) on the CPU.

A model is a directory in the Hugging Face / Optimum layout (see
:mod:`interleaf.models.directory`); :func:`load` checks it, tells its kind and returns
:class:`CLIPModel`, :class:`TextEmbedder` or :class:`CausalLM`; a fastText file
(``lid.176.bin``) is a :class:`LanguageID` (:mod:`interleaf.models.language_id`); a KenLM file
with its SentencePiece model (``en.arpa.bin`` + ``en.sp.model``) is a :class:`KenLM`
(:mod:`interleaf.models.kenlm`). Weights are never fetched at
run time: models come from ``interleaf models export`` (transformers, open_clip or
sentence-transformers weights on disk; needs the ``export`` extra) or ``interleaf models pull``
(a hub download the user asks for).

Example::

    from interleaf import models
    clip = models.load("models/clip-vit-b-32")            # device="auto": CUDA if really active
    img, err = clip.embed_images(list_of_jpeg_bytes)      # (n, 512) float32, unit length; error column
    txt, _ = clip.embed_texts(["a photo of a cat"])
    cos = clip.similarity(img, txt)                       # cosine in [-1, 1]
    ppl = models.load("models/gpt2").perplexity(texts)    # polars DataFrame
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from interleaf.models.causal_lm import CausalLM
from interleaf.models.clip import CLIPModel
from interleaf.models.directory import KINDS, ModelDirectory, ModelDirectoryError
from interleaf.models.image_networks import ImageDistance, ImageFeatures
from interleaf.models.kenlm import KenLM, is_kenlm
from interleaf.models.kenlm import describe as describe_kenlm
from interleaf.models.kenlm import model_files as model_files_kenlm
from interleaf.models.language_id import LanguageID, is_fasttext
from interleaf.models.language_id import describe as describe_fasttext
from interleaf.models.runtime import ProviderWarning, create_session, cuda_available, describe, require_cuda_provider
from interleaf.models.text_embedder import TextEmbedder

_CLASSES = {"clip": CLIPModel, "text-embedder": TextEmbedder, "causal-lm": CausalLM, "image-features": ImageFeatures, "image-distance": ImageDistance}

__all__ = [
    "KINDS",
    "CLIPModel",
    "CausalLM",
    "ImageDistance",
    "ImageFeatures",
    "KenLM",
    "LanguageID",
    "ModelDirectoryError",
    "ProviderWarning",
    "TextEmbedder",
    "create_session",
    "cuda_available",
    "default_dir",
    "home",
    "info",
    "list_models",
    "load",
    "load_shared",
]


def home() -> Path:
    """Where ``interleaf models pull`` puts models and ``list`` looks: ``$INTERLEAF_MODELS``,
    else ``~/.cache/interleaf/models``."""
    return Path(os.environ.get("INTERLEAF_MODELS") or Path.home() / ".cache" / "interleaf" / "models")


def default_dir(source: str | os.PathLike) -> Path:
    """Where an export or pull of ``source`` goes by default: ``home()/owner--name`` for a hub
    name, ``home()/<directory name>`` for a local directory; :func:`resolve` finds both."""
    p = Path(source)
    return home() / (p.name if p.exists() else str(source).replace("/", "--"))


def resolve(path: str | os.PathLike) -> Path:
    """``path`` if it exists, else the model of that name under :func:`home` (``/`` in hub
    names becomes ``--``)."""
    p = Path(path)
    if p.exists():
        return p
    named = home() / str(path).replace("/", "--")
    return named if named.exists() else p


def load(path: str | os.PathLike, device: str = "auto", *, kind: str | None = None, threads: int | None = None, precision: str = "auto", io_binding: bool | None = None, batch_size: int | None = None, max_length: int | None = None):
    """Loads a model directory and returns the object for its kind; a fastText model file
    (or ``kind="language-id"``) gives a :class:`LanguageID` and a KenLM model (its file, or a
    directory holding it and its SentencePiece model; ``kind="kenlm"``) a :class:`KenLM`. Both
    run on the CPU and take none of the other options but ``threads``.

    Args:
        path: a model directory (or a fastText or KenLM file), or the name of one under
            :func:`home`.
        device: ``"auto"`` (CUDA when onnxruntime-gpu is installed and the provider really
            starts, else the CPU with a :class:`ProviderWarning` if CUDA failed), ``"cuda"``
            (raise unless CUDA is active) or ``"cpu"``.
        kind: ``"clip"``, ``"text-embedder"``, ``"causal-lm"``, ``"image-features"``,
            ``"image-distance"``, ``"language-id"`` or ``"kenlm"`` to insist on one (default: from
            the files). ``"causal-lm"`` also takes a KenLM model: both score perplexity.
        threads: CPU threads for ONNX Runtime (default: the cores this process may use).
        precision: ``"auto"`` (``onnx/*_fp16.onnx`` on CUDA when present), ``"fp32"`` or ``"fp16"``.
        io_binding: run through IO binding (default: on CUDA).
        batch_size: inputs per inference batch (default 64; 8 for causal LMs, 32 for image
            networks).
        max_length: tokens per text for a text embedder (default its ``max_seq_length``) or a
            causal LM (default its positions, capped at 4,096); never above the model's
            positions. CLIP's context is fixed (77).

    Raises:
        FileNotFoundError: no such directory.
        ModelDirectoryError: a required file is missing or unreadable (named), or the directory
            holds another kind.
        RuntimeError: ``device="cuda"`` with an ONNX Runtime that has no CUDA provider (sessions
            are made at the first inference: a provider that fails to start raises there).
    """
    p = resolve(path)
    if kind == LanguageID.kind or (kind is None and is_fasttext(p)):
        return LanguageID(p)
    if kind == KenLM.kind or (kind in (None, CausalLM.kind) and is_kenlm(p)):
        return KenLM(p, threads=threads)
    d = ModelDirectory(p, kind)
    require_cuda_provider(device)
    kw: dict[str, Any] = {"threads": threads, "precision": precision, "io_binding": io_binding}
    if batch_size is not None:
        kw["batch_size"] = batch_size
    if max_length is not None:
        if d.kind not in ("text-embedder", "causal-lm"):
            raise ValueError(f"max_length applies to text models, not to a {d.kind} model")
        kw["max_length"] = max_length
    return _CLASSES[d.kind](d, device, **kw)


# Process-wide models for load_shared, least recently used first.
_SHARED: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_SHARED_LOCK = threading.Lock()
SHARED_MODELS = 4  # the most models load_shared keeps


def _stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of every file under a model directory: a re-exported model is a new
    model."""
    out = []
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            try:
                st = os.stat(full)
                out.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
            except OSError:  # a broken link among files the model does not read
                out.append((os.path.relpath(full, path), -1, -1))
    return tuple(sorted(out))


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _kenlm_files(path: Path) -> tuple[Path, ...]:
    try:
        return model_files_kenlm(path)
    except (OSError, ValueError):  # the load names what is wrong
        return ()


def load_shared(path: str | os.PathLike, device: str = "auto", *, kind: str | None = None, threads: int | None = None) -> Any:
    """:func:`load`, but each (directory, files' sizes and times, device, kind, threads) is
    loaded once per process and the same object returned after that, so a worker scoring many
    shards loads its models once. Keeps the :data:`SHARED_MODELS` most recently used; a model
    object's counters (``stats``) are then shared by its users."""
    d = resolve(path)
    # A KenLM file is read with the tokenizer beside it: both are the model.
    files = tuple(_file_stamp(f) for f in _kenlm_files(d)) if d.is_file() and is_kenlm(d) else None
    key = (str(d.resolve()), _stamp(d) if d.is_dir() else files or _file_stamp(d), device, kind, threads)
    with _SHARED_LOCK:
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key]
    m = load(d, device, kind=kind, threads=threads)
    with _SHARED_LOCK:
        m = _SHARED.setdefault(key, m)
        _SHARED.move_to_end(key)
        while len(_SHARED) > SHARED_MODELS:
            _SHARED.popitem(last=False)
    return m


def info(path: str | os.PathLike) -> dict[str, Any]:
    """What a model directory holds, without running it: kind, files, ONNX inputs and outputs,
    embedding width, context length, fp16 variants; of a fastText language-id file, its path
    and size; of a KenLM model, its files and n-gram counts."""
    p = resolve(path)
    if is_fasttext(p):
        return describe_fasttext(p)
    if is_kenlm(p):
        return describe_kenlm(p)
    d = ModelDirectory(p)
    m = _CLASSES[d.kind](d, "cpu")  # reads configs and tokenizer; no graph is loaded
    cfg = d.config
    out: dict[str, Any] = {"path": str(d.path), "kind": d.kind, "model_type": cfg.get("model_type"), "onnx": {}, "dim": getattr(m, "dim", None)}
    for rel in d.variants():
        out["onnx"][rel] = describe(d.path / rel)
    if d.kind == "clip":
        out.update(context_length=m.context_length, image_size=m.preprocess_config.output_shape[0], logit_scale=m.logit_scale)
    elif d.kind == "text-embedder":
        out.update(max_seq_length=m.max_seq_length, pooling=m.pooling, normalize=m.normalize)
    elif d.kind == "causal-lm":
        out.update(context_length=m.max_length, vocab_size=m.vocab_size)
    else:  # image networks
        out.update(image_size=list(m.preprocess_config.output_shape))
    out["source"] = (cfg.get("interleaf") or {}).get("source")
    return out


def list_models(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The model directories (and fastText ``.bin``/``.ftz`` and KenLM files) directly under ``root``
    (default :func:`home`): name, kind, path; one that is not a valid model is listed with its
    error."""
    root = Path(root) if root is not None else home()
    rows: list[dict[str, Any]] = []
    if not root.is_dir():
        return rows
    # Files: the fastText ones (a stray weights.bin is no model of ours and not listed).
    for p in sorted(x for x in root.iterdir() if x.is_dir() or (x.is_file() and (is_fasttext(x) or is_kenlm(x)))):
        try:
            kind = describe_fasttext(p)["kind"] if is_fasttext(p) else describe_kenlm(p)["kind"] if is_kenlm(p) else ModelDirectory(p).kind
            rows.append({"name": p.name, "kind": kind, "path": str(p), "error": None})
        except (ModelDirectoryError, FileNotFoundError, ValueError) as e:
            rows.append({"name": p.name, "kind": None, "path": str(p), "error": str(e)})
    return rows
