"""Vector search on FAISS: the flat index against numpy brute force, IVF and HNSW recall against
flat with the default parameters, save/load, MM-Instruct's sampled matching, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from interleaf.search import Index, default_nlist, default_nprobe, gpu_count, kmeans, nearest


def clustered(n: int, dim: int, centers: int, seed: int, queries: int = 0, intrinsic: int = 8) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Vectors around random centres, spread in a low-dimensional subspace (as embeddings of a
    real collection are); with ``queries``, also that many queries drawn near the data."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim))
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:, : min(intrinsic, dim)]
    x = (c[rng.integers(0, centers, n)] + 0.5 * rng.normal(size=(n, basis.shape[1])) @ basis.T).astype(np.float32)
    if not queries:
        return x
    q = x[rng.integers(0, n, queries)] + 0.05 * rng.normal(size=(queries, dim)).astype(np.float32)
    return x, q.astype(np.float32)


def brute(q: np.ndarray, x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    if metric == "cosine":
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
    if metric == "l2":
        s = ((q64[:, None, :] - x64[None, :, :]) ** 2).sum(-1)
        order = np.argsort(s, axis=1, kind="stable")[:, :k]
    else:
        s = q64 @ x64.T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_flat_equals_numpy_brute_force(metric):
    x, q = clustered(3000, 48, 20, 0, queries=50)
    index = Index(48, metric=metric)
    index.add(x[:1000]).add(x[1000:].astype(np.float16))  # float16 input is widened
    xs = np.concatenate([x[:1000], x[1000:].astype(np.float16).astype(np.float32)])
    scores, ids = index.search(q, 10)
    want_s, want_i = brute(q, xs, 10, metric)
    assert len(index) == 3000
    same = (ids == want_i).mean()
    assert same > 0.99, same  # float32 vs float64 may swap near-equal neighbours
    assert scores == pytest.approx(want_s, rel=1e-4, abs=1e-4)


def test_ids_are_kept_and_missing_slots_are_minus_one(tmp_path):
    x = clustered(5, 8, 2, 3)
    index = Index(8, metric="l2").add(x, ids=[10, 20, 30, 40, 50])
    scores, ids = index.search(x[:2], 7)
    assert ids[0, 0] == 10 and ids[1, 0] == 20 and scores[0, 0] == pytest.approx(0.0, abs=1e-5)
    assert (ids[:, 5:] == -1).all() and np.isnan(scores[:, 5:]).all()
    # Default ids continue past the largest given (also after a save and load); one call's
    # ids must be unique.
    index = Index(8, metric="l2").add(x[:2], ids=[2, 3]).add(x[2:])
    assert sorted(index.search(x, 5)[1][0].tolist()) == [2, 3, 4, 5, 6]
    index.save(tmp_path / "i")
    back = Index.load(tmp_path / "i").add(x[:1])
    assert back.search(x[:1], 6)[1][0].tolist().count(7) == 1
    with pytest.raises(ValueError, match=r"ids must be unique: 1 given more than once \(e.g. \[7\]\)"):
        Index(8).add(x[:3], ids=[7, 7, 1])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_reach_recall_095_with_the_defaults(kind):
    x, q = clustered(100_000, 32, 200, 4, queries=500)
    flat = Index(32).add(x)
    _, truth = flat.search(q, 10)
    index = Index(32, kind=kind)
    index.train(x[::4]).add(x)
    _, got = index.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), truth.tolist(), strict=True)])
    assert recall >= 0.95, (kind, recall, index.params)
    if kind == "ivf":
        assert index.params["nlist"] == default_nlist(25_000) and index.nprobe == default_nprobe(index.params["nlist"])


def test_ivfpq_trains_searches_and_round_trips(tmp_path):
    x, q = clustered(20_000, 64, 50, 6, queries=100)
    index = Index(64, kind="ivfpq", nlist=64)
    assert index.needs_training
    with pytest.raises(ValueError, match="trained first"):
        index.add(x)
    index.train(x).add(x)
    _, truth = Index(64).add(x).search(q, 10)
    scores, ids = index.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), truth.tolist(), strict=True)])
    assert recall > 0.3, recall  # product quantisation trades recall for 16x smaller vectors (no re-ranking)
    index.save(tmp_path / "pq")
    back = Index.load(tmp_path / "pq", device="cpu")
    s2, i2 = back.search(q, 10)
    assert (i2 == ids).all() and np.allclose(s2, scores) and back.nprobe == index.nprobe and len(back) == len(index)


def test_save_and_load_every_kind(tmp_path):
    x, q = clustered(4000, 16, 10, 8, queries=20)
    for kind in ("flat", "hnsw", "ivf"):
        index = Index(16, metric="ip", kind=kind).train(x).add(x)
        index.save(tmp_path / kind)
        back = Index.load(tmp_path / kind)
        assert repr(back) == repr(index)
        assert (back.search(q, 5)[1] == index.search(q, 5)[1]).all()
    with pytest.raises(FileNotFoundError, match="not an interleaf index folder"):
        Index.load(tmp_path / "nowhere")
    # An index.json that lies about the file, or holds nothing, is refused in words.
    meta = json.loads((tmp_path / "flat" / "index.json").read_text())
    for lie, message in (
        ({**meta, "kind": "ivf"}, "is a flat index, index.json says 'ivf'"),
        ({**meta, "kind": "hnsw"}, "is a flat index"),
        ({}, "must hold dim, metric, kind and params"),
        ({**meta, "metric": "l2"}, "holds an index of inner products, index.json says metric 'l2'"),
    ):
        (tmp_path / "flat" / "index.json").write_text(json.dumps(lie))
        with pytest.raises(ValueError, match=message):
            Index.load(tmp_path / "flat")


def test_bad_input_is_refused_clearly():
    index = Index(8)
    good = np.ones((3, 8), np.float32)
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        index.add(np.ones((3, 9), np.float32))
    bad = good.copy()
    bad[1, 2] = np.nan
    bad[2, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite values in rows 1, 2"):
        index.add(bad)
    with pytest.raises(ValueError, match="rows 0 are zero"):
        index.add(np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="floating point"):
        index.add(np.ones((2, 8), np.int64))
    with pytest.raises(ValueError, match="metric"):
        Index(8, metric="hamming")
    with pytest.raises(ValueError, match="ids must be one int64 per vector"):
        index.add(good, ids=[1, 2])
    with pytest.raises(ValueError, match="at least nlist"):
        Index(8, kind="ivf", nlist=10).train(good)
    assert len(index) == 0  # nothing was added by the refused calls
    for kw, what in (({"niter": 0}, "niter"), ({"niter": True}, "niter"), ({"seed": -1}, "seed"), ({"seed": 2**40}, "seed"), ({"niter": 2.5}, "niter")):
        with pytest.raises(ValueError, match=what):
            kmeans(np.eye(4, dtype=np.float32), 2, **kw)
    with pytest.raises(ValueError, match=r"2-D array of vectors \(n, dim\), got shape \(4,\)"):
        kmeans(np.ones(4, np.float32), 2)
    if gpu_count() == 0:
        with pytest.raises(RuntimeError, match="no GPU"):
            Index(8, device="cuda")
        assert Index(8, device="auto").device == "cpu"


def test_nearest_argmax_and_seeded_temperature_sampling():
    corpus, queries = clustered(500, 24, 10, 10, queries=40)
    _, truth = brute(queries, corpus, 10, "cosine")
    scores, ids = nearest(queries, corpus, k=1)
    assert (ids[:, 0] == truth[:, 0]).mean() > 0.99
    a = nearest(queries, corpus, k=3, top=10, temperature=0.05, seed=7)
    b = nearest(queries, corpus, k=3, top=10, temperature=0.05, seed=7)
    c = nearest(queries, corpus, k=3, top=10, temperature=0.05, seed=8)
    assert (a[1] == b[1]).all() and not (a[1] == c[1]).all()
    for row, top in zip(a[1].tolist(), truth.tolist(), strict=True):
        assert len(set(row)) == 3 and set(row) <= set(top)  # without replacement, from the top 10
    cold = nearest(queries, corpus, k=1, top=10, temperature=1e-6, seed=0)
    assert (cold[1][:, 0] == ids[:, 0]).all()  # a tiny temperature is the argmax
    # A high temperature spreads the draws over the candidates.
    hot = nearest(np.repeat(queries[:1], 400, 0), corpus, k=1, top=10, temperature=100.0, seed=1)[1][:, 0]
    assert len(set(hot.tolist())) >= 8
    with pytest.raises(ValueError, match="without replacement"):
        nearest(queries, corpus, k=5, top=3, temperature=0.1)
    with pytest.raises(ValueError, match="temperature"):
        nearest(queries, corpus, temperature=0.0)
    with pytest.raises(ValueError, match="temperature must be a positive number, got '0.1'"):
        nearest(queries, corpus, temperature="0.1")


def test_sampling_with_replacement_follows_the_softmax_and_short_candidate_lists():
    # Three candidates at cosines 1, 0.5, 0 with temperature 0.5: probabilities
    # softmax([2, 1, 0]) = 0.665, 0.245, 0.090; 20,000 draws are within 0.015 of them.
    corpus = np.array([[1, 0], [0.5, 0.75**0.5], [0, 1]], np.float32)
    s, i = nearest(np.array([[1, 0]], np.float32), corpus, k=20_000, top=3, temperature=0.5, replace=True, seed=4)
    want = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    assert np.abs(np.bincount(i[0], minlength=3) / i.shape[1] - want).max() < 0.015
    np.testing.assert_allclose(s[0], np.array([1.0, 0.5, 0.0], np.float32)[i[0]], atol=1e-6)
    again = nearest(np.array([[1, 0]], np.float32), corpus, k=20_000, top=3, temperature=0.5, replace=True, seed=4)
    assert (again[1] == i).all()
    # A corpus smaller than top: only real candidates are drawn; without replacement the
    # draws past the corpus are -1 / NaN.
    s, i = nearest(np.eye(2, dtype=np.float32), corpus[:2], k=2, top=10, temperature=0.1, seed=0)
    assert sorted(i[0].tolist()) == [0, 1] and sorted(i[1].tolist()) == [0, 1] and np.isfinite(s).all()
    s, i = nearest(np.eye(2, dtype=np.float32), corpus[:2], k=3, top=10, temperature=0.1, seed=0)
    assert (i[:, 2] == -1).all() and np.isnan(s[:, 2]).all() and set(i[0, :2].tolist()) == {0, 1}
    s, i = nearest(np.eye(2, dtype=np.float32), corpus[:2], k=5, top=10, temperature=0.1, replace=True, seed=0)
    assert set(i.ravel().tolist()) <= {0, 1} and np.isfinite(s).all()


def test_sampling_survives_underflow_and_a_refused_training_changes_nothing():
    corpus = np.eye(4, dtype=np.float32)
    corpus[1] = [1, 1, 0, 0]
    s, i = nearest(np.array([[1, 0, 0, 0]], np.float32), corpus, k=3, temperature=0.001, seed=0)
    assert i[0, 0] == 0 and len(set(i[0].tolist())) == 3  # far candidates still fill the draw
    index = Index(8, kind="ivfpq", device="cpu")
    with pytest.raises(ValueError, match="at least 256"):
        index.train(clustered(100, 8, 3, 12))
    assert index.needs_training and index.params["nlist"] is None
    index.train(clustered(5000, 8, 3, 12))
    assert index.params["nlist"] == default_nlist(5000) and not index.needs_training


@pytest.mark.skipif(gpu_count() == 0, reason="needs faiss-gpu and a GPU")
def test_gpu_indexes_agree_with_the_cpu_and_keep_faiss_gpu_limits(tmp_path):
    from interleaf.search import GPU_MAX_K, kmeans

    x, q = clustered(20_000, 64, 50, 9, queries=200)
    for metric in ("cosine", "ip", "l2"):
        cs, ci = Index(64, metric, device="cpu").add(x).search(q, 10)
        gpu = Index(64, metric, device="cuda").add(x)
        assert gpu.device == "cuda"
        gs, gi = gpu.search(q, 10)
        assert (gi == ci).mean() > 0.99, metric
        assert gs == pytest.approx(cs, rel=1e-3, abs=1e-3)
    _, truth = Index(64, device="cpu").add(x).search(q, 10)
    ivf = Index(64, kind="ivf", device="cuda").train(x).add(x)
    _, got = ivf.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), truth.tolist(), strict=True)])
    assert recall >= 0.95, recall
    ivf.save(tmp_path / "ivf")
    for device in ("cpu", "cuda"):
        back = Index.load(tmp_path / "ivf", device=device)
        assert back.device == device and len(back) == len(ivf)
        assert (back.search(q, 10)[1] == got).mean() > 0.99
    # FAISS's GPU limit on k and nprobe: a clear error, and default nprobe capped.
    with pytest.raises(ValueError, match="at most 2048 neighbours"):
        gpu.search(q, GPU_MAX_K + 1)
    with pytest.raises(ValueError, match="at most 2048 lists"):
        Index(64, kind="ivf", device="cuda", nprobe=GPU_MAX_K + 1)
    wide = np.random.default_rng(0).normal(size=(20_000 * 40, 8)).astype(np.float32)
    big = Index(8, kind="ivf", device="cuda", nlist=20_000).train(wide).add(wide[:1000])
    assert big.nprobe == GPU_MAX_K and big.search(wide[:5], 3)[1][:, 0].tolist() == [0, 1, 2, 3, 4]
    # k-means: the GPU's clusters are as tight as the CPU's.
    lg, cg = kmeans(x, 50, device="cuda")
    lc, cc = kmeans(x, 50, device="cpu")
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    tight = [float(np.mean(np.sum(xn * c[lab], axis=1))) for lab, c in ((lg, cg), (lc, cc))]
    assert tight[0] == pytest.approx(tight[1], abs=0.01), tight


def test_cosine_rows_of_huge_or_tiny_float32_values_are_directions():
    """Norms are taken in float64: a float32 row near 1e20 (its squared norm overflows float32)
    or 1e-23 (underflows) still finds itself with cosine 1, as the same row scaled to 1 does."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 8)).astype(np.float32)
    for scale in (1e20, 1e-23, 1.0):
        index = Index(8)
        x = (base * np.float32(scale)).astype(np.float32)
        assert np.isfinite(x).all()
        index.add(x)
        scores, ids = index.search(x, 1)
        assert ids[:, 0].tolist() == list(range(6)), scale
        assert scores[:, 0] == pytest.approx(1.0, abs=1e-5), scale
