"""Image statistics as a Signal, with the size and aspect rules of MMC4, OBELICS and DataComp
as named columns (MMC4, DataComp; OBELICS, arXiv 2306.16527)."""

from __future__ import annotations

import numpy as np
import polars as pl

from interleaf import schema as S
from interleaf._checks import int_arg

_STAT_DTYPES: dict[str, pl.DataType] = {
    "width": pl.UInt32(),
    "height": pl.UInt32(),
    "aspect_ratio": pl.Float64(),
    "format": pl.String(),
    "mode": pl.String(),
    "frames": pl.UInt32(),
    "bytes": pl.UInt64(),
    "blur": pl.Float64(),
    "entropy": pl.Float64(),
    "brightness": pl.Float64(),
    "contrast": pl.Float64(),
    "uniform_fraction": pl.Float64(),
}


def size_rules(width: pl.Expr, height: pl.Expr, fmt: pl.Expr) -> dict[str, pl.Expr]:
    """The published image rules as boolean expressions (null when the size is unknown):

    - ``mmc4_ok``: PNG or JPEG, shorter side >= 150 px, width / height in [0.5, 2] (MMC4);
    - ``obelics_ok``: each side in [150, 20000] px, width / height in [0.5, 2], JPEG, PNG or
      WebP (OBELICS; a multi-picture JPEG, which Pillow calls MPO, counts as JPEG here, as its
      first picture is what decodes);
    - ``datacomp_ok``: shorter side >= 200 px, longer / shorter <= 3 (DataComp's basic filter;
      :class:`ImageStats` applies it to the original size where the record gives one).
    """
    w, h = width.cast(pl.Float64), height.cast(pl.Float64)
    short, long = pl.min_horizontal(w, h), pl.max_horizontal(w, h)
    aspect = w / h
    known = width.is_not_null() & height.is_not_null() & (short > 0)

    def rule(e: pl.Expr) -> pl.Expr:
        return pl.when(known).then(e).otherwise(None)

    in_aspect = (aspect >= 0.5) & (aspect <= 2.0)
    return {
        "mmc4_ok": rule(fmt.is_in(["JPEG", "MPO", "PNG"]).fill_null(False) & (short >= 150) & in_aspect),
        "obelics_ok": rule(fmt.is_in(["JPEG", "MPO", "PNG", "WEBP"]).fill_null(False) & (short >= 150) & (long <= 20000) & in_aspect),
        "datacomp_ok": rule((short >= 200) & (long / short <= 3)),
    }


class ImageStats:
    """:func:`interleaf.image.stats` of every image node as a Signal (node level), with the
    rule columns of :func:`size_rules`: ``<name>_width``, ``<name>_height`` (px),
    ``<name>_aspect_ratio`` (width / height), ``<name>_format``, ``<name>_mode``,
    ``<name>_frames``, ``<name>_bytes``, ``<name>_blur`` (variance of the Laplacian; NeMo
    Curator keeps >= 100), ``<name>_entropy`` (bits), ``<name>_brightness``,
    ``<name>_contrast``, ``<name>_uniform_fraction`` (0-1), ``<name>_mmc4_ok``,
    ``<name>_obelics_ok``, ``<name>_datacomp_ok`` and ``<name>_error`` (why the image gave no
    values: it was missing when read, or does not decode).

    DataComp's rule is of the image's size before the download resized it (its
    ``apply_filter.py`` reads the pool's ``original_width`` / ``original_height``; img2dataset,
    which made the pool, resizes to 512 px and writes the original size in each sample's json):
    where a document with one image has positive ``original_width`` and ``original_height`` in
    its ``meta``, they are ``<name>_original_width`` / ``<name>_original_height`` and
    ``<name>_datacomp_ok`` of an image that was read is of them; elsewhere those are null and
    the rule is of the image read. With a CLIP signal in the same
    :func:`compute` call (and the default limits) each image is decoded once for both.
    ``header_only=True`` reads each image's header alone (size, format, mode, frames, bytes;
    the limits checked): many times faster when only the size and format rules matter; the
    pixel statistics are null and damage after a readable header goes unseen.
    """

    level = "node"
    node_kind = "image"  # the kind of node it scores
    needs: tuple[str, ...] = ("image.stats",)

    def __init__(self, *, name: str = "image", max_pixels: int | None = None, max_bytes: int | None = None, header_only: bool = False):
        int_arg("max_pixels", max_pixels, optional=True)
        int_arg("max_bytes", max_bytes, optional=True)
        self.name = name
        self.max_pixels, self.max_bytes = max_pixels, max_bytes
        self.header_only = bool(header_only)

    def columns(self) -> dict[str, pl.DataType]:
        n = self.name
        return {
            **{f"{n}_{c}": d for c, d in _STAT_DTYPES.items()},
            **{f"{n}_{r}": pl.Boolean() for r in ("mmc4_ok", "obelics_ok", "datacomp_ok")},
            f"{n}_original_width": pl.UInt32(),
            f"{n}_original_height": pl.UInt32(),
            f"{n}_error": S.ERROR_DTYPE,
        }

    def compute(self, batch: pl.DataFrame, ctx) -> pl.DataFrame:
        from interleaf.signals.base import NODE_KEYS

        table = ctx.image_stats(batch, self.max_pixels, self.max_bytes, header_only=self.header_only)
        rows = table.get_column("row").to_numpy() if table.height else np.zeros(0, np.int64)
        table = table.with_columns(original_sizes(batch, rows))
        rules = size_rules(pl.col("width"), pl.col("height"), pl.col("format"))
        orig = pl.col("original_width").is_not_null() & pl.col("width").is_not_null()  # an image read
        rules["datacomp_ok"] = pl.when(orig).then(size_rules(pl.col("original_width"), pl.col("original_height"), pl.col("format"))["datacomp_ok"]).otherwise(rules["datacomp_ok"])
        table = table.with_columns(**rules)
        n = self.name
        keys = batch.select(NODE_KEYS)[rows] if table.height else batch.select(NODE_KEYS).clear()
        values = table.select(
            [pl.col(c).cast(d).alias(f"{n}_{c}") for c, d in _STAT_DTYPES.items()]
            + [pl.col(r).alias(f"{n}_{r}") for r in rules]
            + [pl.col(c).alias(f"{n}_{c}") for c in ("original_width", "original_height")]
            + [pl.col(S.ERROR).alias(f"{n}_error")]
        )
        return pl.concat([keys, values], how="horizontal")


def original_sizes(batch: pl.DataFrame, rows: np.ndarray) -> pl.DataFrame:
    """For the batch rows ``rows`` (image nodes): ``original_width`` and ``original_height``
    (UInt32) from the document's ``meta`` (img2dataset's json, DataComp's metadata), where the
    document has one image and both are positive integers; else null. The metadata is parsed
    for one-image documents' rows only (an interleaved document's may be large)."""
    one = batch.select(((pl.col(S.KIND) == S.IMAGE_KIND).sum().over(S.DOC_INDEX) == 1).alias("one")).to_series().gather(rows).to_numpy()
    at = np.flatnonzero(one)

    def field(name: str) -> pl.Expr:
        v = pl.col(S.META).str.json_path_match(f"$.{name}").cast(pl.Float64, strict=False)
        return pl.when(v.is_finite() & (v >= 1) & (v <= 4_294_967_295) & (v == v.floor())).then(v).cast(pl.UInt32)

    w, h = field("original_width"), field("original_height")
    both = w.is_not_null() & h.is_not_null()
    sizes = batch.select(S.META)[rows[at]].select(pl.when(both).then(w).alias("original_width"), pl.when(both).then(h).alias("original_height"))
    empty = pl.Series([None] * len(rows), dtype=pl.UInt32)
    return pl.DataFrame({c: empty.clone().scatter(at, sizes.get_column(c)) if len(at) else empty.clone() for c in ("original_width", "original_height")})
