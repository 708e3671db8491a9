"""Evaluation metrics against manual computations and reference libraries."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from interleaf import models
from interleaf.evaluate import clip_image_similarity

CLIP = "tests/fixtures/models/clip-tiny"


def test_clip_image_similarity_against_a_manual_computation(sample_images):
    clip = models.load(CLIP, kind="clip")
    photos = list(sample_images.values())
    blank = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 255, 255)).save(blank, "PNG")
    gen = [photos[0], photos[1], None, photos[3], b"broken", blank.getvalue(), photos[2]]
    ref = [photos[0], photos[2], photos[2], None, photos[4], photos[5], b""]
    summary, per = clip_image_similarity(gen, ref, clip)
    # By hand: embeddings of each image, cosine of the scored pairs (0, 1 and 5), plain mean.
    e, _ = clip.embed_images([photos[0], photos[1], photos[2], blank.getvalue(), photos[5]])
    cos = [float(e[0] @ e[0]), float(e[1] @ e[2]), float(e[3] @ e[4])]
    np.testing.assert_allclose(per["similarity"].to_numpy()[[0, 1, 5]], cos, atol=1e-6)
    assert per["similarity"][0] == pytest.approx(1.0, abs=1e-5)  # an image against itself
    assert summary["clip_i"] == pytest.approx(np.mean(cos), abs=1e-6)
    assert (summary["n"], summary["scored"]) == (7, 3)
    assert summary["skipped"] == {"generated unknown_image_format": 1, "missing_generated": 1, "missing_reference": 2}
    assert per["skipped"].to_list() == [None, None, "missing_generated", "missing_reference", "generated unknown_image_format", None, "missing_reference"]
    empty, per0 = clip_image_similarity([None], [None], clip)
    assert empty["clip_i"] is None and empty["scored"] == 0 and per0["similarity"].to_list() == [None]
    with pytest.raises(ValueError, match="differ in length"):
        clip_image_similarity([photos[0]], [], clip)
