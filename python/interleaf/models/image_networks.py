"""Image networks the user supplies as ONNX for evaluation metrics: feature extractors (Inception
for FID and IS) and learned perceptual distances (LPIPS). interleaf fetches no weights: export
the network you want to compare with (e.g. pytorch-fid's or torchmetrics' Inception, the lpips
package's AlexNet/VGG/SqueezeNet LPIPS) to ONNX where its weights are, with a
``preprocessor_config.json`` describing the pixels it takes. ``scripts/make_image_networks.py``
shows the layout on tiny random networks.

Layouts (``config.json`` ``model_type`` says the kind):

- ``image-features``: ``onnx/model.onnx`` taking ``pixel_values`` (N, 3, H, W) and giving
  ``features`` (N, D: FID's pool features) and/or ``logits`` (N, C: Inception Score's class
  logits).
- ``image-distance``: ``onnx/model.onnx`` taking ``image0`` and ``image1`` (N, 3, H, W) and
  giving ``distance`` (N, or N x 1 x 1 x 1).

Both take their pixels from ``preprocessor_config.json`` in transformers' layout (e.g.
``{"size": {"height": 299, "width": 299}, "resample": 2, "do_center_crop": false,
"do_rescale": true, "rescale_factor": 0.00392156862745098, "do_normalize": true, "image_mean":
[0, 0, 0], "image_std": [0.00392156862745098, ...]}`` for an Inception taking 0-255 floats after a
bilinear resize), decoded and resized in Rust exactly as Pillow does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from interleaf import image as _image
from interleaf.models.base import Model, decoded_rows
from interleaf.models.directory import ModelDirectoryError
from interleaf.schema import error_column

__all__ = ["ImageDistance", "ImageFeatures"]


class _ImageNetwork(Model):
    batch_size = 32

    def __init__(self, path, device: str = "auto", *, threads: int | None = None, precision: str = "auto", io_binding: bool | None = None, batch_size: int = 32):
        super().__init__(path, device, threads, precision, io_binding)
        if not (self.directory.path / "preprocessor_config.json").is_file():
            raise ModelDirectoryError(f"{self.directory.path} ({self.kind}) is missing preprocessor_config.json (the pixels the network takes)")
        self.preprocess_config = _image.load_config(self.directory.path / "preprocessor_config.json")
        self.batch_size = batch_size

    def _dtype(self, name: str) -> str:
        return "float16" if self.session.inputs.get(name) is np.float16 else "float32"


class ImageFeatures(_ImageNetwork):
    """An ``image-features`` directory (see the module docs); use :func:`interleaf.models.load`."""

    kind = "image-features"

    @property
    def outputs(self) -> list[str]:
        """Which of ``features`` and ``logits`` the graph gives."""
        return [o for o in ("features", "logits") if o in self.session.outputs]

    def run(self, images: pl.Series | Sequence[bytes | None], *, outputs: Sequence[str] = ("features",), batch_size: int | None = None, threads: int | None = None) -> tuple[dict[str, np.ndarray], pl.Series]:
        """The network's ``outputs`` for encoded images: ``({name: float32 (n, D)}, error)``, a
        row of NaN for an image that could not be decoded, and the error column."""
        missing = [o for o in outputs if o not in self.session.outputs]
        if missing:
            raise ModelDirectoryError(f"{self.session.path} has no {', '.join(missing)} output (outputs: {self.session.outputs})")
        images = _image.binary_column(images)
        n = images.len()
        res: dict[str, np.ndarray] = {}
        errors: list[pl.Series] = []
        # alpha dropped, as the reference networks read images (PIL convert("RGB")).
        for start, pixels, rows in self._image_batches(images, self.preprocess_config, self._batch_size(batch_size), errors, threads=threads, dtype=self._dtype("pixel_values"), alpha="drop"):
            got = self.session.run({"pixel_values": pixels}, list(outputs))
            for name in outputs:
                v = got[name].reshape(len(pixels), -1).astype(np.float32)
                if name not in res:
                    res[name] = np.full((n, v.shape[1]), np.nan, dtype=np.float32)
                res[name][start + rows] = v
        for name in outputs:
            res.setdefault(name, np.full((n, 0), np.nan, dtype=np.float32))
        self.stats["images"] += n
        error = pl.concat(errors) if errors else error_column([])
        self._count_errors(error)
        return res, error


class ImageDistance(_ImageNetwork):
    """An ``image-distance`` directory (LPIPS; see the module docs); use
    :func:`interleaf.models.load`."""

    kind = "image-distance"

    def distance(self, a: pl.Series | Sequence[bytes | None], b: pl.Series | Sequence[bytes | None], *, batch_size: int | None = None, threads: int | None = None) -> tuple[np.ndarray, pl.Series]:
        """The distance of each pair ``(a[i], b[i])``: ``(float64 (n,), error)``, NaN where
        either image could not be decoded (the error is ``a``'s, else ``b``'s)."""
        a, b = _image.binary_column(a), _image.binary_column(b)
        if a.len() != b.len():
            raise ValueError(f"a and b differ in length ({a.len()} vs {b.len()})")
        bs = self._batch_size(batch_size)
        dtype = self._dtype("image0")
        out = np.full(a.len(), np.nan)
        errors: list[pl.Series] = []
        for start in range(0, a.len(), bs):
            pa, ea = _image.preprocess(a[start : start + bs], self.preprocess_config, threads=threads, dtype=dtype, alpha="drop")
            pb, eb = _image.preprocess(b[start : start + bs], self.preprocess_config, threads=threads, dtype=dtype, alpha="drop")
            err = pl.DataFrame({"a": ea, "b": eb}).select(pl.coalesce("a", "b")).to_series().alias("error")
            errors.append(err)
            ok = err.is_null().to_numpy()
            if ok.any():
                (ba, rows), (bb, _) = decoded_rows(pa, ok), decoded_rows(pb, ok)
                d = self.session.run({"image0": ba, "image1": bb}, ["distance"])["distance"]
                out[start + rows] = d.reshape(len(rows), -1)[:, 0]
        self.stats["images"] += 2 * a.len()
        error = pl.concat(errors) if errors else error_column([])
        self._count_errors(error)
        return out, error
