"""Evaluation of generated interleaved content (METHODS.md §3).

:func:`clip_image_similarity` is GILL's and MGCC's CLIP-I: the cosine of the CLIP image
embeddings of each generated image and its ground truth, averaged over the examples that have
both (MGCC reports 0.652 on VIST and 0.660 on VisDial with CLIP ViT-L/14 at 224 px; GILL 0.641
and 0.645). Examples missing either image, or whose image cannot be decoded, are skipped and
counted, never scored as 0.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import polars as pl

__all__ = ["clip_image_similarity"]


def _present(x: Any) -> bool:
    return isinstance(x, bytes | bytearray | memoryview) and len(x) > 0


def clip_image_similarity(generated: Any, reference: Any, clip: Any, *, batch_size: int | None = None) -> tuple[dict[str, Any], pl.DataFrame]:
    """GILL's CLIP image similarity of index-matched image pairs.

    ``generated`` and ``reference``: encoded images (bytes, None where an example has none), the
    same length; ``clip``: a CLIP model or its directory (the papers use ViT-L/14).

    Returns ``(summary, per_example)``: ``summary`` holds ``clip_i`` (the unweighted mean cosine
    over the scored pairs, None when none), ``n``, ``scored`` and ``skipped`` (reason -> count:
    ``missing_generated``, ``missing_reference``, or the decoding error's kind);
    ``per_example`` one row per pair: ``similarity`` (Float32, null when skipped) and
    ``skipped`` (the reason, or null)."""
    from interleaf import models

    gen, ref = list(generated), list(reference)
    if len(gen) != len(ref):
        raise ValueError(f"generated and reference differ in length ({len(gen)} vs {len(ref)})")
    if isinstance(clip, str) or hasattr(clip, "__fspath__"):
        clip = models.load(clip, kind="clip")
    reasons: list[str | None] = [None if _present(g) and _present(r) else ("missing_generated" if not _present(g) else "missing_reference") for g, r in zip(gen, ref, strict=True)]
    idx = [i for i, why in enumerate(reasons) if why is None]
    sim = np.full(len(gen), np.nan, dtype=np.float32)
    if idx:
        eg, errg = clip.embed_images([bytes(gen[i]) for i in idx], batch_size=batch_size)
        er, errr = clip.embed_images([bytes(ref[i]) for i in idx], batch_size=batch_size)
        for j, (i, a, b) in enumerate(zip(idx, errg.to_list(), errr.to_list(), strict=True)):
            if a is not None or b is not None:
                reasons[i] = f"generated {a['kind']}" if a is not None else f"reference {b['kind']}"
            else:
                sim[i] = float(np.dot(eg[j].astype(np.float64), er[j].astype(np.float64)))
    ok = ~np.isnan(sim)
    summary = {
        "clip_i": float(sim[ok].astype(np.float64).mean()) if ok.any() else None,
        "n": len(gen),
        "scored": int(ok.sum()),
        "skipped": dict(sorted(Counter(r for r in reasons if r is not None).items())),
    }
    per_example = pl.DataFrame({"similarity": sim, "skipped": reasons}, schema={"similarity": pl.Float32, "skipped": pl.String}, nan_to_null=True)
    return summary, per_example
