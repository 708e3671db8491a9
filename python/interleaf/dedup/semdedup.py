"""Semantic deduplication as SemDeDup publishes it (facebookresearch/SemDeDup; arXiv 2303.09540):
spherical k-means on L2-normalised embeddings (FAISS), then within each cluster the items
ordered farthest from the centroid first, and an item dropped when its cosine with any earlier
item in that order is **strictly** above ``1 - eps``. Each cluster is processed in blocks of
the upper triangle only (no n x n matrix for a big cluster, about half the products of the
published full matrix)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl

from interleaf._checks import choice_arg, float_arg, int_arg

# Items per row block and candidates per column chunk of one cluster's similarity products:
# a cluster of up to _ROWS items is one symmetric product (BLAS syrk, half the multiply-adds);
# the largest temporary is _ROWS x _COLS float32 (64 MiB), whatever the cluster's size.
_ROWS = 2048
_COLS = 8192
_UPPER: np.ndarray | None = None


def default_clusters(n: int) -> int:
    """k-means clusters for ``n`` items: about 1,000 items per cluster, 1 to 50,000 (SemDeDup's
    published LAION run used 50,000 for 440M)."""
    return int(max(1, min(50_000, round(n / 1000))))


def _upper() -> np.ndarray:
    """``j >= i`` for a ``_ROWS`` square (the diagonal block's entries that are not earlier
    items), built once."""
    global _UPPER
    if _UPPER is None:
        _UPPER = np.triu(np.ones((_ROWS, _ROWS), dtype=bool))
    return _UPPER


def _cluster_pass(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the unit rows ``e`` (one cluster, in SemDeDup's order): each item's maximum cosine
    with any earlier item (0 for the first and when every earlier cosine is <= 0, as the
    published upper-triangle maximum gives) and the position of that earlier item (the first
    of equal maxima; -1 when none is above 0). Rows are items, columns earlier candidates, so
    every reduction runs along contiguous memory."""
    m = len(e)
    best = np.zeros(m, dtype=np.float32)
    arg = np.full(m, -1, dtype=np.int64)
    for r0 in range(0, m, _ROWS):
        r1 = min(m, r0 + _ROWS)
        rows = e[r0:r1]
        spans = [(c0, min(r0, c0 + _COLS)) for c0 in range(0, r0, _COLS)] + [(r0, r1)]
        for c0, c1 in spans:
            # The diagonal block (c0 == r0) is rows @ rows.T: numpy runs it as syrk.
            s = rows @ e[c0:c1].T
            if c0 == r0:
                np.copyto(s, 0, where=_upper()[: r1 - r0, : r1 - r0])
            top = s.argmax(axis=1)
            val = s[np.arange(r1 - r0), top]
            better = val > best[r0:r1]
            best[r0:r1] = np.where(better, val, best[r0:r1])
            arg[r0:r1] = np.where(better, c0 + top, arg[r0:r1])
    return best, arg


def cluster_pass(xc: np.ndarray, idx: np.ndarray, centre: np.ndarray | None, rank: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SemDeDup within one cluster: its members ``idx`` (row order) with their unit embeddings
    ``xc``, put in SemDeDup's order (by ``rank`` descending when given, else farthest from
    ``centre`` first, the normalised member mean when ``centre`` is None; stable), then each
    item's maximum cosine with an earlier one. Returns ``(order, best, duplicate_of)``: the
    members in that order, their maximum cosines and the row of that earlier item (-1: none).
    A pure function of its arguments, so clusters can run anywhere (threads, Ray tasks)."""
    if rank is not None:
        key = -rank
    else:
        # SemDeDup: distance to the centroid (1 - cosine) descending, stable; in float64, by
        # row blocks (no float64 copy of the cluster). Each row's dot product is summed the same
        # way wherever the row sits (a BLAS product is not: identical rows got distances a bit
        # apart, and the later copy could come first), so exact duplicates keep dataset order.
        if centre is None:
            centre = np.add.reduce(xc, axis=0, dtype=np.float64)
            centre /= max(float(np.linalg.norm(centre)), 1e-30)
        key = np.concatenate([-(1.0 - np.multiply(xc[a : a + _ROWS], centre, dtype=np.float64).sum(axis=1)) for a in range(0, len(xc), _ROWS)])
    o = np.argsort(key, kind="stable")
    best, arg = _cluster_pass(xc[o])
    order = idx[o]
    return order, best, np.where(arg >= 0, order[np.maximum(arg, 0)], -1)


def semantic(
    embeddings: Any,
    eps: float = 0.01,
    n_clusters: int | None = None,
    clusters: Any = None,
    ranking: Any = None,
    seed: int = 1234,
    device: str = "auto",
    *,
    niter: int = 100,
    threads: int | None = None,
    engine: str = "local",
) -> pl.DataFrame:
    """SemDeDup over ``embeddings`` ``(n, dim)`` (any scale: rows are L2-normalised here).

    Args:
        eps: an item is a duplicate when its cosine with an earlier item of its cluster is
            ``> 1 - eps`` (strict; SemDeDup's code is the reference: larger eps prunes more).
            NeMo Curator's default is also 0.01 but its bound is inclusive (``>= 0.99``): the
            two differ only on cosines exactly at the bound.
        n_clusters: k-means clusters (default :func:`default_clusters`).
        clusters: precomputed cluster ids (one int per row) instead of k-means; each centroid is
            then the normalised mean of its members.
        ranking: one score per row (for example a CLIP score); within a cluster the best-ranked
            item comes first and is the one kept of its duplicates (ties in row order). Default:
            SemDeDup's order, farthest from the centroid first ("keep hard").
        seed: k-means seed (SemDeDup's published config: 1234; deterministic for a seed and
            thread count). k-means is SemDeDup's ``faiss.Kmeans``: spherical, centroids
            trained on FAISS's sample of 256 rows per centroid, every row then assigned.
        device: FAISS k-means on ``"cuda"`` when FAISS sees a GPU (``"auto"``), or ``"cpu"``.
        niter: k-means iterations (SemDeDup's published config: 100).
        threads: clusters processed in parallel, each on one BLAS thread (default: the cores
            this process may use; 1: one cluster at a time on numpy's multi-threaded BLAS).
        engine: ``"local"`` (this process) or ``"ray"``: the clusters' passes as parallel Ray
            tasks (:func:`interleaf.ray.map_tasks`, on the connected cluster or a local
            instance; ``pip install 'interleaf[ray]'``), each shipped only its members'
            embeddings. k-means runs here either way. Same result.

    Returns:
        one row per input row, in input order: ``index``, ``cluster``, ``kept``,
        ``duplicate_of`` (the earlier item with the highest cosine, for a removed row) and
        ``cosine`` (that highest cosine with an earlier item of the cluster; null for the
        first item of a cluster).
    """
    from interleaf.models.runtime import available_cores
    from interleaf.search import as_vectors, kmeans, row_norms

    a = np.asarray(embeddings)
    if a.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, dim), got shape {a.shape}")
    x = as_vectors(a, a.shape[1], "embeddings")
    # Row norms by chunks (no full-size temporary); each cluster's rows are normalised when
    # gathered, so the embeddings are never copied whole (the same float32 quotients as x / norms).
    # The norms in float64 (float32 ones overflow near 1e20 and underflow near 1e-23); the rows
    # are divided by their float32 norm as before, except where it is not a number float32
    # holds, which are divided in float64.
    norms64 = row_norms(x, dtype=np.float64)
    zero = np.flatnonzero(norms64 == 0)
    if len(zero):
        raise ValueError(f"embeddings has zero rows: {', '.join(str(i) for i in zero[:10])}")
    with np.errstate(over="ignore", under="ignore"):
        norms = norms64.astype(np.float32)
    odd = (norms == 0) | ~np.isfinite(norms)

    def unit(idx: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            u = x[idx] / norms[idx, None]
        if odd.any() and (bad := np.flatnonzero(odd[idx])).size:
            u[bad] = (x[idx[bad]].astype(np.float64) / norms64[idx[bad], None]).astype(np.float32)
        return u
    n = len(x)
    eps = float_arg("eps", eps, 0.0, 1.0)
    int_arg("n_clusters", n_clusters, 1, 1 << 24, optional=True)
    int_arg("threads", threads, 1, 512, optional=True)
    int_arg("niter", niter, 1, 10_000)
    int_arg("seed", seed, 0, (1 << 31) - 1)
    choice_arg("engine", engine, ("local", "ray"))
    if n == 0:
        return pl.DataFrame(schema={"index": pl.Int64, "cluster": pl.Int64, "kept": pl.Boolean, "duplicate_of": pl.Int64, "cosine": pl.Float32})
    if clusters is not None:
        labels = np.asarray(clusters)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"clusters must be one integer per row ({n}), got {labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
        uniq, inv = np.unique(labels, return_inverse=True)
        cent = None  # the normalised member mean, computed per cluster below
    else:
        # Unit centroids: the nearest is the most cosine-similar.
        labels, centroids = kmeans(x, n_clusters or default_clusters(n), niter=niter, seed=seed, device=device)
        uniq, inv = np.unique(labels, return_inverse=True)
        cent = centroids[uniq].astype(np.float64)
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-30)
    rank = None
    if ranking is not None:
        rank = np.asarray(ranking, dtype=np.float64)
        if rank.shape != (n,) or np.isnan(rank).any():
            raise ValueError(f"ranking must be one number per row ({n}), without NaN")
    members = np.argsort(inv, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inv, minlength=len(uniq)))])
    best = np.zeros(n, dtype=np.float32)
    dup = np.full(n, -1, dtype=np.int64)
    first = np.zeros(n, dtype=bool)

    def job(c: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        idx = members[bounds[c] : bounds[c + 1]]  # row order
        return idx, (cent[c] if cent is not None else None), (rank[idx] if rank is not None else None)

    def store(res: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        order, b, d = res
        best[order] = b
        dup[order] = d
        first[order[0]] = True

    # Largest clusters first (for the threads and the Ray tasks to end together).
    order_c = sorted(range(len(uniq)), key=lambda c: bounds[c] - bounds[c + 1])
    if engine == "ray":
        from interleaf import ray as ray_engine

        jobs = []
        for c in order_c:
            idx, centre, rk = job(c)
            jobs.append((unit(idx), idx, centre, rk))
        for res in ray_engine.map_tasks(cluster_pass, jobs, stage="semantic dedup"):
            store(res)
    else:

        def local(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            idx, centre, rk = job(c)
            return cluster_pass(unit(idx), idx, centre, rk)

        # Clusters on a thread pool, each product on one BLAS thread: ~1.3x faster than one
        # cluster at a time on a multi-threaded BLAS (small products do not split well). A
        # single cluster (or threads=1) gets the BLAS's own threads instead.
        workers = min(threads or available_cores(), len(order_c))
        # Each worker holds its cluster twice (gathered, then in SemDeDup's order) plus one
        # product block; the largest clusters run first, so bound the workers by what that
        # costs: at most about the embeddings' own size (1 GiB for small inputs) in flight.
        largest = int(bounds[order_c[0] + 1] - bounds[order_c[0]]) if order_c else 0
        per_worker = 2 * largest * x.shape[1] * 4 + 4 * _ROWS * _COLS
        workers = max(1, min(workers, max(x.nbytes, 1 << 30) // per_worker))
        if workers <= 1:
            for c in order_c:
                store(local(c))
        else:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=workers) as pool:
                for res in pool.map(local, order_c):
                    store(res)
    removed = best > 1 - eps
    return pl.DataFrame(
        {
            "index": np.arange(n, dtype=np.int64),
            "cluster": labels,
            "kept": ~removed,
            "duplicate_of": np.where(removed, dup, -1),
            "cosine": np.where(first, np.nan, best).astype(np.float32),
        },
        nan_to_null=True,
    ).with_columns(pl.when(pl.col("duplicate_of") >= 0).then(pl.col("duplicate_of")).alias("duplicate_of"))
