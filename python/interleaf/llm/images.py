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
    ``(None, None)``. ``max_edge``: pixels, 1-4096."""
    from interleaf._checks import int_arg

    int_arg("max_edge", max_edge, 1, 4096)  # checked here, not as thumbnails' max_side
    if not len(images):
        return []
    frame = thumbnails(images, max_edge, quality=quality, threads=threads)
    out: list[tuple[str | None, str | None]] = []
    originals = list(images)
    for src, jpeg, err in zip(originals, frame["thumbnail"].to_list(), frame["error"].to_list(), strict=True):
        if src is None:
            out.append((None, None))
        elif jpeg is None:
            out.append((None, f"{err['kind']}: {err['message']}" if err else "image could not be decoded"))
        else:
            out.append(("data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii"), None))
    return out


def image_part(url: str) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part for a data URL (or any URL the server can read)."""
    return {"type": "image_url", "image_url": {"url": url}}


def text_part(text: str) -> dict[str, Any]:
    """An OpenAI ``text`` content part."""
    return {"type": "text", "text": text}
