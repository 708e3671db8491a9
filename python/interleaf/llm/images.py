"""Images for vision-language endpoints: decoded, shrunk to a maximum edge and re-encoded as JPEG
in Rust (:func:`interleaf.image.thumbnails`), then sent as ``image_url`` data URLs."""

from __future__ import annotations

import base64
from typing import Any

from interleaf.image import ImageInput, thumbnails

#: CoMM's judge sends images at most 512 pixels on their longer edge.
DEFAULT_MAX_EDGE = 512


def image_urls(images: ImageInput, max_edge: int = DEFAULT_MAX_EDGE, *, quality: int = 90, threads: int | None = None) -> list[tuple[str | None, str | None]]:
    """One ``(data_url, error)`` per encoded image, in order: a ``data:image/jpeg;base64,...``
    URL of the image fitted into ``max_edge`` x ``max_edge`` (aspect kept, never enlarged, EXIF
    orientation applied), or None and why it could not be decoded. Missing images (None) give
    ``(None, None)``. An image may also be a Hugging Face ``datasets`` image, a ``{"bytes",
    "path"}`` dict: its bytes are taken (without them: that image's error, since a path is read
    only by the command line, confined to its image root); anything else (a path, a number) is a
    ValueError naming the image column. ``max_edge``: pixels, 1-4096."""
    from interleaf._checks import int_arg

    int_arg("max_edge", max_edge, 1, 4096)  # checked here, not as thumbnails' max_side
    if not len(images):
        return []
    originals, why = _encoded(images)
    frame = thumbnails(originals, max_edge, quality=quality, threads=threads)
    out: list[tuple[str | None, str | None]] = []
    for src, jpeg, err, no in zip(originals, frame["thumbnail"].to_list(), frame["error"].to_list(), why, strict=True):
        if no is not None:
            out.append((None, no))
        elif src is None:
            out.append((None, None))
        elif jpeg is None:
            out.append((None, f"{err['kind']}: {err['message']}" if err else "image could not be decoded"))
        else:
            out.append(("data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii"), None))
    return out


def _encoded(images: ImageInput) -> tuple[ImageInput, list[str | None]]:
    """The encoded bytes of each image (a Binary Series as it is), and why there are none for a
    Hugging Face image struct without bytes."""
    import polars as pl

    if isinstance(images, pl.Series) and images.dtype in (pl.Binary, pl.Null):
        return images, [None] * len(images)
    out: list[bytes | None] = []
    why: list[str | None] = []
    for i, x in enumerate(images.to_list() if isinstance(images, pl.Series) else images):
        item: Any = x
        struct = isinstance(item, dict) and ("bytes" in item or "path" in item)  # a datasets Image
        if struct:
            item, path = item.get("bytes"), item.get("path")
            if item is None and path is not None:
                out.append(None)
                why.append(f"the image struct has no bytes, only the path {str(path)[:200]!r}: paths are read by the command line (relative to --image-root), not here")
                continue
        if isinstance(item, bytearray | memoryview):
            item = bytes(item)
        if item is not None and not isinstance(item, bytes):
            # Named by position and type, never by value (an image is megabytes).
            held = f"bytes of type {type(item).__name__} in its {{bytes, path}} struct" if struct else f"a value of type {type(item).__name__}"
            hint = " (a path? read the file's bytes, or give the table to the command line, which reads image paths)" if isinstance(item, str) and not struct else ""
            raise ValueError(f"the image column holds {held} at row {i}: expected encoded image bytes, or a {{bytes, path}} struct as Hugging Face datasets store images{hint}")
        out.append(item)
        why.append(None)
    return out, why


def image_part(url: str) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part for a data URL (or any URL the server can read)."""
    return {"type": "image_url", "image_url": {"url": url}}


def text_part(text: str) -> dict[str, Any]:
    """An OpenAI ``text`` content part."""
    return {"type": "text", "text": text}
