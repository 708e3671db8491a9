"""CLIP image and text embeddings through ONNX Runtime.

Images are decoded and preprocessed by :func:`interleaf.image.preprocess` (Rust, bit-identical
to Pillow + ``CLIPImageProcessor``) with the model's ``preprocessor_config.json``; decoding of
batch k+1 overlaps inference on batch k. Texts are tokenised with the model's
``tokenizer.json``, truncated at the model's 77 positions (counted), bucketed by length.
Embeddings come back L2-normalised, float32, one row per input; a row whose image or text is
bad is NaN and its error is in the error column returned beside the embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from interleaf import image as _image
from interleaf.models.base import Model, l2_normalize
from interleaf.models.directory import ModelDirectoryError, config_value
from interleaf.models.runtime import Session
from interleaf.models.tokenize import TextTokenizer, clean_texts, open_clip_clean
from interleaf.schema import error_column, record_error

CLIP_CONTEXT_LENGTH = 77


class CLIPModel(Model):
    """A CLIP model directory (see :mod:`interleaf.models.directory`); use
    :func:`interleaf.models.load`.

    Attributes:
        dim: embedding width (``projection_dim``).
        logit_scale: the trained temperature, ``exp(logit_scale)``, that CLIP multiplies cosines
            by: ``interleaf.logit_scale`` in ``config.json`` (written by our exporter from the
            weights), else 100 (where OpenAI and LAION training ends; transformers' config only
            holds ``logit_scale_init_value``, the starting point).
        preprocess_config: the :class:`interleaf.image.PreprocessConfig` images go through.
        tokenizer: the :class:`TextTokenizer`, truncating at 77 tokens.
    """

    kind = "clip"
    main_graph = "vision_model"

    def __init__(self, path, device: str = "auto", *, threads: int | None = None, precision: str = "auto", io_binding: bool | None = None, batch_size: int = 64):
        super().__init__(path, device, threads, precision, io_binding)
        d = self.directory
        cfg = self.config
        text_cfg = cfg.get("text_config") or {}
        vision_cfg = cfg.get("vision_config") or {}
        for name, sub in (("text_config", text_cfg), ("vision_config", vision_cfg)):
            if not isinstance(sub, dict):
                raise ModelDirectoryError(f"{d.path}/config.json: {name} must be an object, not {type(sub).__name__}")
        if (d.path / "preprocessor_config.json").is_file() or (d.path / "open_clip_config.json").is_file():
            self.preprocess_config = _image.load_config(d.path)
        else:
            raise ModelDirectoryError(f"{d.path} (clip) is missing preprocessor_config.json")
        size = config_value(vision_cfg, "image_size", int, None, f"{d.path}/config.json vision_config")
        if size is not None and tuple(self.preprocess_config.output_shape) != (size, size):
            raise ModelDirectoryError(
                f"{d.path}: preprocessor_config.json gives {self.preprocess_config.output_shape} images but vision_config.image_size is {size}"
            )
        self.context_length = config_value(text_cfg, "max_position_embeddings", int, CLIP_CONTEXT_LENGTH, f"{d.path}/config.json text_config")
        # CLIP's tokenizer pads with its end token.
        self.tokenizer = TextTokenizer(d.file("tokenizer.json"), self.context_length, default_pad_id=text_cfg.get("eos_token_id"))
        # An open_clip export (its preprocessing in open_clip_config.json, which load_config
        # reads only without a preprocessor_config.json) cleans texts as open_clip does first.
        self.open_clip_text = not (d.path / "preprocessor_config.json").is_file() and (d.path / "open_clip_config.json").is_file()
        if self.open_clip_text:
            # open_clip's special tokens are named <start_of_text> / <end_of_text>: a caption
            # holding "<|endoftext|>" is text to it, not an end token that hides what follows.
            self.tokenizer.tokenizer.encode_special_tokens = True
        self._check_vocab(text_cfg.get("vocab_size"), "config.json's text_config")
        self.dim = config_value(cfg, "projection_dim", int, 512, f"{d.path}/config.json")
        extra = cfg.get("interleaf") or {}
        # config.json of transformers only has logit_scale_init_value (2.6592, exp 14.3), the
        # value training starts from; trained CLIPs end at the clamp, 100.
        self.logit_scale = config_value(extra, "logit_scale", float, 100.0, f"{d.path}/config.json interleaf")
        self.batch_size = batch_size

    @property
    def vision(self) -> Session:
        return self._session("vision_model")

    @property
    def text(self) -> Session:
        return self._session("text_model")

    def _run_pixels(self, pixels: np.ndarray) -> np.ndarray:
        s = self.vision
        out = s.run({"pixel_values": pixels}, ["image_embeds"] if "image_embeds" in s.outputs else None)
        if "image_embeds" not in out:
            raise ModelDirectoryError(f"{s.path} has no image_embeds output (outputs: {s.outputs}); export it with interleaf models export clip")
        emb = out["image_embeds"]
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ModelDirectoryError(f"{s.path} gives image_embeds of shape {emb.shape}; config.json says projection_dim {self.dim}")
        return l2_normalize(emb)

    def embed_images(self, images: pl.Series | Sequence[bytes | None] | np.ndarray, *, batch_size: int | None = None, threads: int | None = None, alpha: str | None = None, exif_transpose: bool = False) -> tuple[np.ndarray, pl.Series]:
        """L2-normalised image embeddings.

        Args:
            images: encoded images (a Binary Series or bytes / None; decoded and preprocessed
                in Rust with the model's config), or an already preprocessed float array
                ``(n, 3, H, W)``.
            batch_size: images per inference batch (default: the model's, 64).
            threads: Rust decoding threads (default: all cores).
            alpha, exif_transpose: passed to :func:`interleaf.image.preprocess` (alpha: by
                default the rule of the model's preprocessing config's origin: transformers'
                ``preprocessor_config.json`` composites transparency over white, open_clip
                drops it).

        Returns:
            ``(embeddings, error)``: float32 ``(n, dim)``, a bad image's row NaN, and the error
            column (null, or ``{kind, message}`` per image).
        """
        bs = self._batch_size(batch_size)
        if isinstance(images, (bytes, bytearray, memoryview, str)):
            raise TypeError("images must be a sequence of encoded images (a list of bytes) or an (n, 3, H, W) array, not one bytes/str")
        h, w = self.preprocess_config.output_shape
        if isinstance(images, np.ndarray):
            if images.ndim != 4 or images.shape[1:] != (3, h, w):
                raise ValueError(f"preprocessed images must have shape (n, 3, {h}, {w}) for this model, got {images.shape}")
            if not np.issubdtype(images.dtype, np.floating):
                raise ValueError(f"preprocessed images must be floating point, got {images.dtype}")
            # A row with NaN or inf pixels is that row's error (NaN embedding), as a bad image is.
            # A row's sum is finite when its pixels are (NaN and inf carry through a sum), read
            # without a mask the size of the batch; only rows whose sum is not are checked.
            flat = images.reshape(len(images), -1)
            finite = np.isfinite(flat.sum(axis=1))
            for r in np.flatnonzero(~finite):
                finite[r] = np.isfinite(flat[r]).all()  # an overflowing sum of finite pixels
            out = np.full((len(images), self.dim), np.nan, dtype=np.float32)
            good = np.flatnonzero(finite)
            for i in range(0, len(good), bs):
                rows = good[i : i + bs]
                # Consecutive rows are a view (no copy of the pixels); others are gathered.
                block = images[rows[0] : rows[-1] + 1] if rows[-1] - rows[0] + 1 == len(rows) else images[rows]
                out[rows] = self._run_pixels(block)
            self.stats["images"] += len(good)
            errs = [None if ok else record_error("bad_argument", "preprocessed pixel values are not finite (NaN or inf)") for ok in finite]
            return out, error_column(errs)
        images = _image.binary_column(images)
        n = images.len()
        out = np.full((n, self.dim), np.nan, dtype=np.float32)
        errors: list[pl.Series] = []
        dtype = "float16" if self.vision.inputs.get("pixel_values") is np.float16 else "float32"
        for start, pixels, rows in self._image_batches(images, self.preprocess_config, bs, errors, threads=threads, dtype=dtype, alpha=alpha, exif_transpose=exif_transpose):
            out[start + rows] = self._run_pixels(pixels)
        self.stats["images"] += n
        error = pl.concat(errors) if errors else error_column([])
        self._count_errors(error)
        return out, error

    def embed_texts(self, texts: pl.Series | Sequence[str | bytes | None], *, batch_size: int | None = None) -> tuple[np.ndarray, pl.Series]:
        """L2-normalised text embeddings: ``(embeddings, error)``, float32 ``(n, dim)`` and the
        error column. Texts longer than the context (77 tokens with start and end) are
        truncated and counted in ``stats["truncated"]``; None and invalid UTF-8 give NaN rows
        and their errors. A model exported from open_clip (``open_clip_config.json``) cleans
        each text first as open_clip does (:func:`interleaf.models.tokenize.open_clip_clean`:
        ftfy, HTML entities); a transformers export as transformers' tokenizer does (none)."""
        bs = self._batch_size(batch_size)
        clean, errors = clean_texts(texts)
        if self.open_clip_text:
            clean = [open_clip_clean(t) for t in clean]
        n = len(clean)
        out = np.full((n, self.dim), np.nan, dtype=np.float32)
        s = self.text  # before batching: a fixed-length graph sets the padded length
        for b in self.tokenizer.batches(clean, bs, skip=[e is not None for e in errors]):
            res = s.run({"input_ids": b.input_ids, "attention_mask": b.attention_mask}, ["text_embeds"] if "text_embeds" in s.outputs else None)
            if "text_embeds" not in res:
                raise ModelDirectoryError(f"{s.path} has no text_embeds output (outputs: {s.outputs}); export it with interleaf models export clip")
            emb = res["text_embeds"]
            if emb.ndim != 2 or emb.shape[1] != self.dim:
                raise ModelDirectoryError(f"{s.path} gives text_embeds of shape {emb.shape}; config.json says projection_dim {self.dim}")
            out[b.index] = l2_normalize(emb)
            self.stats["truncated"] += int(b.truncated.sum())
        self.stats["texts"] += n
        error = error_column(errors)
        self._count_errors(error)
        return out, error

    def similarity(self, image_embeds: np.ndarray, text_embeds: np.ndarray) -> np.ndarray:
        """Cosine similarity in [-1, 1] of every image embedding with every text embedding,
        ``(n_images, n_texts)``; multiply by :attr:`logit_scale` for CLIP's logits."""
        return l2_normalize(image_embeds) @ l2_normalize(text_embeds).T

