"""SemDeDup against a transcription of the published algorithm (facebookresearch/SemDeDup:
``sort_clusters.py`` orders each cluster by distance to its centroid, descending, with a stable
sort; ``semdedup.py`` drops item j when the maximum of the upper triangle of the cluster's
cosine matrix in column j is > 1 - eps), given the same clusters; planted near-duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from interleaf.dedup.semdedup import semantic


def reference_semdedup(x: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """The published procedure, per cluster, with the normalised member mean as centroid."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    removed = np.zeros(len(x), dtype=bool)
    for c in np.unique(labels):
        items = list(np.flatnonzero(labels == c))
        cent = x[items].sum(0)
        cent = cent / np.linalg.norm(cent)
        dist = [1 - float(x[i] @ cent) for i in items]
        ordered = [i for i, _ in sorted(zip(items, dist, strict=True), key=lambda t: t[1], reverse=True)]
        if len(ordered) == 1:
            continue
        reps = x[ordered].astype(np.float64)
        sim = reps @ reps.T
        np.fill_diagonal(sim, 0.0)
        m = np.triu(sim, k=1).max(axis=0)
        removed[ordered] = m > 1 - eps
    return removed


def planted(n: int, dim: int, dups: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    src = rng.integers(0, n, dups)
    noise = rng.normal(size=(dups, dim))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    # A copy at a known cosine with its source: cos = 1 / sqrt(1 + t^2) for a unit source and a
    # noise of norm t orthogonal-ish to it.
    unit = base[src] / np.linalg.norm(base[src], axis=1, keepdims=True)
    t = rng.choice([0.01, 0.05, 0.1, 0.3], dups)
    copies = unit + t[:, None] * noise
    return np.concatenate([base, copies]).astype(np.float32), src, t


@pytest.mark.parametrize("eps", [0.0005, 0.01, 0.05, 0.2])
def test_kept_set_equals_the_published_algorithm_given_the_clusters(eps):
    x, _, _ = planted(3000, 32, 600, 1)
    labels = np.random.default_rng(2).integers(0, 7, len(x))
    # Edge cases: clusters of one (always kept) and exact copies within and across clusters.
    labels[[10, 20]] = [7, 8]
    x[[31, 32, 33]] = x[30]
    labels[[30, 31, 32, 33]] = [3, 3, 4, 8]
    got = semantic(x, eps=eps, clusters=labels)
    want = reference_semdedup(x, labels, eps)
    assert (~got.get_column("kept").to_numpy() == want).all()
    assert got.get_column("cluster").to_list() == labels.tolist()


def test_exact_duplicates_keep_the_earlier_copy_as_semdedups_stable_sort_does():
    # Identical rows are at one distance from their centroid; SemDeDup's stable sort keeps the
    # earlier one. A BLAS product gave the copies distances a bit apart depending on their rows.
    rng = np.random.default_rng(1)
    for _ in range(300):
        n, dim = int(rng.integers(2, 40)), int(rng.choice([7, 16, 257, 512]))
        x = rng.normal(size=(n, dim)).astype(np.float32)
        i, j = sorted(rng.choice(n, 2, replace=False))
        x[j] = x[i]
        r = semantic(x, eps=0.01, clusters=np.zeros(n, np.int64), device="cpu")
        assert r.get_column("kept")[int(i)] and not r.get_column("kept")[int(j)]
        assert r.get_column("duplicate_of")[int(j)] == i


def test_the_bound_is_strict_so_eps_zero_removes_not_even_exact_copies():
    """METHODS §6 (SemDeDup): item j is removed iff its cosine with an earlier item is
    ``> 1 - eps`` (strict); a cosine of exactly 1.0 is not above 1 - 0."""
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    none = semantic(x, eps=0.0, clusters=[0, 0, 0])
    assert none.get_column("kept").to_list() == [True, True, True]
    assert none.get_column("duplicate_of").to_list() == [None, None, None]
    assert none.get_column("cosine").to_list() == [0.0, 1.0, None]  # [0, 1] is farthest from the centroid: first
    some = semantic(x, eps=1e-6, clusters=[0, 0, 0])
    assert some.get_column("kept").to_list() == [True, False, True]
    assert some.get_column("duplicate_of").to_list() == [None, 0, None]

def test_blocks_give_the_same_answer_as_one_matrix(monkeypatch):
    import interleaf.dedup.semdedup as sd

    x, _, _ = planted(1500, 16, 500, 3)
    labels = np.zeros(len(x), dtype=np.int64)
    whole = semantic(x, eps=0.02, clusters=labels)
    # Row blocks of 64 and column chunks of 128: diagonal blocks, chunks below them and a
    # partial last chunk all occur.
    monkeypatch.setattr(sd, "_ROWS", 64)
    monkeypatch.setattr(sd, "_COLS", 128)
    monkeypatch.setattr(sd, "_UPPER", None)
    blocked = semantic(x, eps=0.02, clusters=labels)
    # The same decisions; a cosine may differ in its last bits (a block below the diagonal is a
    # BLAS gemm where one matrix is a syrk, and OpenBLAS's AVX2 kernels sum them in other orders).
    assert whole.drop("cosine").equals(blocked.drop("cosine"))
    np.testing.assert_allclose(blocked.get_column("cosine").to_numpy(), whole.get_column("cosine").to_numpy(), rtol=0, atol=1e-6)


def test_planted_duplicates_are_found_with_kmeans():
    x, src, t = planted(5000, 48, 400, 4)
    got = semantic(x, eps=0.01, n_clusters=8, seed=0)
    removed = ~got.get_column("kept").to_numpy()
    labels = got.get_column("cluster").to_numpy()
    copies = np.arange(5000, 5400)
    # Copies at t = 0.01, 0.05, 0.1 have cosine 0.99995, 0.9988, 0.995 with their source (> 0.99:
    # one of the two goes); t = 0.3 gives 0.958 (both stay). Random pairs of the 5000 are far below.
    close = t <= 0.1
    same = labels[copies] == labels[src]
    # k-means seldom separates a pair this close: 92.5% of them share a cluster here, on
    # uniform random points, with the centroids trained on FAISS's sample of 256 per centroid
    # (SemDeDup's faiss.Kmeans call; 97% when trained on every row).
    assert same.mean() > 0.9
    pair_gone = removed[copies] | removed[src]
    assert pair_gone[close & same].all()
    assert not removed[copies[~close]].any()
    dup = got.get_column("duplicate_of").to_numpy()
    for c, s_ in zip(copies[close & same], src[close & same], strict=True):
        assert (removed[c] and dup[c] in (s_, *copies[src == s_])) or (removed[s_] and dup[s_] in copies[src == s_])
    assert got.get_column("cosine").null_count() == len(np.unique(labels))
    assert semantic(x, eps=0.01, n_clusters=8, seed=0).equals(got)  # deterministic for a seed


def test_rows_of_huge_or_tiny_float32_values_are_directions():
    """Norms in float64: float32 rows near 1e20 (whose float32 norm overflows) or 1e-23
    (underflows) give the same duplicates as the same rows at scale 1, through semantic() and
    deduplicate()'s cosine column."""
    from interleaf.dedup.dataset import semantic_clusters

    x, _, _ = planted(600, 16, 40, 4)
    want = semantic(x, eps=0.01, n_clusters=4, seed=0)
    for scale in (1e20, 1e-23):
        got = semantic((x * np.float32(scale)).astype(np.float32), eps=0.01, n_clusters=4, seed=0)
        assert got.get_column("kept").to_list() == want.get_column("kept").to_list(), scale
        assert got.get_column("duplicate_of").to_list() == want.get_column("duplicate_of").to_list(), scale
    reps, score, _ = semantic_clusters(x, len(x), eps=0.01, n_clusters=4, seed=0)
    reps2, score2, _ = semantic_clusters((x * np.float32(1e20)).astype(np.float32), len(x), eps=0.01, n_clusters=4, seed=0)
    assert reps.tolist() == reps2.tolist() and (reps != np.arange(len(x))).any()
    assert score2 == pytest.approx(score, abs=1e-6) and np.isfinite(score2).all()


def test_ranking_keeps_the_best_ranked_and_bad_input_is_refused():
    x = np.array([[1.0, 0.0], [1.0, 0.001], [0.0, 1.0]], dtype=np.float32)
    keep_first = semantic(x, eps=0.01, clusters=[0, 0, 0], ranking=[2.0, 1.0, 0.0])
    assert keep_first.get_column("kept").to_list() == [True, False, True]
    assert keep_first.get_column("duplicate_of").to_list() == [None, 0, None]
    keep_second = semantic(x, eps=0.01, clusters=[0, 0, 0], ranking=[1.0, 2.0, 0.0])
    assert keep_second.get_column("kept").to_list() == [False, True, True]
    with pytest.raises(ValueError, match="NaN or infinite values in rows 1"):
        semantic(np.array([[1.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="zero rows: 0"):
        semantic(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="clusters must be one integer per row"):
        semantic(x, clusters=[0, 1])
    assert semantic(np.zeros((0, 4), np.float32)).height == 0
    assert semantic(x[:1]).get_column("kept").to_list() == [True]


def test_recompressed_copies_through_the_clip_fixture_are_found():
    import io

    from conftest import SKIMAGE_DATA, SKIMAGE_PHOTOS
    from PIL import Image

    from interleaf import models

    clip = models.load(__import__("test_models").CLIP_DIR, device="cpu")

    def jpeg(im, quality, scale=1.0):
        if scale != 1.0:
            im = im.resize((int(im.width * scale), int(im.height * scale)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return buf.getvalue()

    photos = [Image.open(SKIMAGE_DATA / name).convert("RGB") for name in SKIMAGE_PHOTOS]
    originals = [jpeg(im, 90) for im in photos]
    copies = [jpeg(im, 60, 0.7) for im in photos[:6]]  # smaller, recompressed
    emb, err = clip.embed_images(originals + copies)
    assert err.null_count() == len(emb)
    # The tiny random model puts distinct photos up to cosine ~0.998 apart, its copies above
    # 0.9995: eps = 0.001 separates them (a real CLIP needs the usual 0.01-0.05).
    got = semantic(emb, eps=0.001, clusters=np.zeros(len(emb), dtype=np.int64))
    removed = ~got.get_column("kept").to_numpy()
    n = len(photos)
    assert removed.sum() == 6
    for i in range(6):
        assert removed[i] != removed[n + i]  # exactly one of each pair goes


def test_documents_without_text_have_nothing_to_embed():
    import polars as pl

    from interleaf import models
    from interleaf.dedup.dataset import embed_documents

    clip = models.load(__import__("test_models").CLIP_DIR, device="cpu")
    # Blank texts (whitespace only) have nothing to embed either: they were one cluster at cosine 1.
    docs = pl.DataFrame({"text": ["a cat", "", None, " ", "\n\t\u3000"], "first_image": [None] * 5}, schema={"text": pl.String, "first_image": pl.Binary})
    emb = embed_documents(clip, docs, "text")
    assert np.isfinite(emb[0]).all() and np.isnan(emb[1:]).all()
    for eps in (1.5, float("nan"), "0.1"):
        with pytest.raises(ValueError, match=r"eps must be a number in \[0.0, 1.0\]"):
            semantic(np.eye(3, dtype=np.float32), eps=eps)


def test_gpu_kmeans_finds_the_same_duplicates_as_the_cpu():
    from interleaf.search import gpu_count

    if gpu_count() == 0:
        pytest.skip("needs faiss-gpu and a GPU")
    x, _, _ = planted(5000, 48, 400, 4)
    gpu = semantic(x, eps=0.01, n_clusters=8, seed=0, device="cuda").get_column("kept").to_numpy()
    cpu = semantic(x, eps=0.01, n_clusters=8, seed=0, device="cpu").get_column("kept").to_numpy()
    assert (gpu == cpu).mean() > 0.99 and (~gpu).sum() == pytest.approx((~cpu).sum(), rel=0.05)
