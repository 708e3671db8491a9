"""Vector search on FAISS: exact and approximate indexes over embeddings, on the CPU or, when
FAISS sees one, a GPU (MM-Instruct, arXiv 2406.19736: retrieval for MM-Instruct's instruction-to-image matching,
nearest captions, evaluation).

::

    from interleaf.search import Index, nearest
    index = Index(512, metric="cosine", kind="ivf")
    index.train(sample)                 # IVF/IVF-PQ only: learns the coarse centroids
    index.add(image_embeddings)         # ids: 0, 1, ... (or ids=)
    scores, ids = index.search(text_embeddings, k=10)
    index.save("images.index"); Index.load("images.index")

    scores, ids = nearest(instructions, images, k=1)                     # argmax
    scores, ids = nearest(instructions, images, k=1, top=10, temperature=0.05, seed=0)  # sampled

Scores are cosines for ``metric="cosine"`` (vectors L2-normalised on the way in), inner
products for ``"ip"`` and squared L2 distances for ``"l2"`` (lower is nearer); a slot with no
result has id -1 and score NaN.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from interleaf._checks import choice_arg, int_arg

METRICS = ("cosine", "ip", "l2")
KINDS = ("flat", "ivf", "ivfpq", "hnsw")
DEVICES = ("auto", "cpu", "cuda")
_ADD_BATCH = 65_536
# FAISS's GPU k-selection returns at most this many neighbours, and probes at most this many
# lists, per query (GPU_MAX_SELECTION_K).
GPU_MAX_K = 2048


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a base dependency
        raise ImportError("interleaf.search needs FAISS: pip install faiss-cpu (or faiss-gpu)") from e
    return faiss


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    faiss = _faiss()
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def resolve_device(device: str) -> str:
    """``"cuda"`` or ``"cpu"``: ``auto`` takes a GPU only when FAISS sees one; ``cuda`` without
    one raises (never a silent CPU run)."""
    choice_arg("device", device, DEVICES)
    n = gpu_count()
    if device == "cuda" and n == 0:
        raise RuntimeError("device='cuda' but FAISS sees no GPU (install faiss-gpu on a machine with CUDA, or use device='cpu')")
    return "cuda" if device == "cuda" or (device == "auto" and n > 0) else "cpu"


def default_nlist(n: int) -> int:
    """IVF lists for ``n`` training vectors: about 4 sqrt(n), at least 39 training vectors per
    list (FAISS's minimum), 1 to 65,536."""
    return int(max(1, min(65_536, round(4 * math.sqrt(max(n, 1))), n // 39)))


def default_nprobe(nlist: int) -> int:
    """Lists searched per query: nlist / 8, at least 8 (recall@10 >= 0.95 on clustered data in
    the tests), at most nlist."""
    return int(min(nlist, max(8, nlist // 8)))


def as_vectors(x: Any, dim: int, what: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(n, dim)`` array; NaN or infinite rows are refused with
    their row numbers."""
    a = np.asarray(x)
    if a.ndim == 1 and a.size == dim:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what} must be floating point (float32; float16 and float64 are converted), got {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    # By chunks of rows: no full-size boolean temporary for a large matrix.
    bad = np.concatenate([a0 + np.flatnonzero(~np.isfinite(a[a0 : a0 + 65_536]).all(axis=1)) for a0 in range(0, len(a), 65_536)] or [np.zeros(0, np.int64)])
    if len(bad):
        rows = ", ".join(str(i) for i in bad[:10]) + (f", ... ({len(bad)} rows)" if len(bad) > 10 else "")
        raise ValueError(f"{what} has NaN or infinite values in rows {rows}")
    return a


def row_norms(a: np.ndarray, chunk: int = 65_536, dtype: Any = None) -> np.ndarray:
    """The L2 norm of each row of ``a`` (2-D), by chunks of rows: no full-size temporary (the
    same values as ``np.linalg.norm(a, axis=1)``); ``dtype``: computed in that type (float64:
    no overflow for float32 rows near 1e20)."""
    dt = np.dtype(dtype) if dtype is not None else a.dtype
    return np.concatenate([np.linalg.norm(a[a0 : a0 + chunk].astype(dt, copy=False), axis=1) for a0 in range(0, len(a), chunk)] or [np.zeros(0, dt)])


def _normalise(a: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """The rows of ``a`` (float32) scaled to unit length, the norms taken in float64 by chunks:
    a row of float32 values near 1e20 (whose squared norm overflows float32) or 1e-23 (which
    underflows) is still a direction, not a zero vector."""
    out = np.empty(a.shape, dtype=np.float32)
    zero: list[int] = []
    for a0 in range(0, len(a), chunk):
        part = a[a0 : a0 + chunk].astype(np.float64)
        norm = np.linalg.norm(part, axis=1)
        zero.extend((np.flatnonzero(norm == 0) + a0).tolist())
        out[a0 : a0 + chunk] = part / np.where(norm == 0, 1.0, norm)[:, None]
    if zero:
        raise ValueError(f"cosine needs non-zero vectors; rows {', '.join(str(i) for i in zero[:10])} are zero")
    return out


class Index:
    """A FAISS index over float vectors.

    Args:
        dim: vector width.
        metric: ``"cosine"`` (inner product of L2-normalised vectors; default), ``"ip"``, ``"l2"``.
        kind: ``"flat"`` (exact), ``"ivf"`` (inverted lists over exact vectors), ``"ivfpq"``
            (inverted lists over product-quantised vectors: smallest), ``"hnsw"`` (graph; no
            training).
        device: ``"auto"`` (a GPU when FAISS sees one), ``"cpu"`` or ``"cuda"`` (raises without
            a GPU). HNSW always runs on the CPU.
        nlist: IVF lists (default from the training sample: :func:`default_nlist`).
        nprobe: lists searched per query (default :func:`default_nprobe`, at most 2,048 on the
            GPU, FAISS's limit there); settable later.
        pq_m: IVF-PQ sub-quantisers (default: the largest of 64, 32, 16, 8, 4, 2, 1 dividing dim
            into sub-vectors of at least 4 values); ``pq_bits`` bits each (8).
        hnsw_m: HNSW neighbours per node (32); ``ef_search`` (64) and ``ef_construction`` (64).
    """

    def __init__(
        self,
        dim: int,
        metric: str = "cosine",
        kind: str = "flat",
        device: str = "auto",
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        pq_m: int | None = None,
        pq_bits: int = 8,
        hnsw_m: int = 32,
        ef_search: int = 64,
        ef_construction: int = 64,
    ):
        int_arg("dim", dim, 1, 1 << 16)
        choice_arg("metric", metric, METRICS)
        choice_arg("kind", kind, KINDS)
        int_arg("nlist", nlist, 1, 1 << 20, optional=True)
        int_arg("nprobe", nprobe, 1, 1 << 20, optional=True)
        int_arg("pq_bits", pq_bits, 1, 16)
        int_arg("hnsw_m", hnsw_m, 2, 1024)
        int_arg("ef_search", ef_search, 1, 1 << 16)
        int_arg("ef_construction", ef_construction, 1, 1 << 16)
        if pq_m is None:
            pq_m = next(m for m in (64, 32, 16, 8, 4, 2, 1) if dim % m == 0 and dim // m >= 4 or m == 1)
        int_arg("pq_m", pq_m, 1, dim)
        if kind == "ivfpq" and dim % pq_m:
            raise ValueError(f"pq_m ({pq_m}) must divide dim ({dim})")
        self.dim, self.metric, self.kind = dim, metric, kind
        self.device = "cpu" if kind == "hnsw" else resolve_device(device)
        if self.device == "cuda" and nprobe is not None and nprobe > GPU_MAX_K:
            raise ValueError(f"FAISS on the GPU probes at most {GPU_MAX_K} lists per query, got nprobe={nprobe}")
        self.params: dict[str, Any] = {"nlist": nlist, "nprobe": nprobe, "pq_m": pq_m, "pq_bits": pq_bits, "hnsw_m": hnsw_m, "ef_search": ef_search, "ef_construction": ef_construction}
        self._index: Any = None
        self._next_id = 0  # one past the largest id added: where default ids continue
        self._gpu_resources: Any = None
        if kind in ("flat", "hnsw"):
            self._build(None)

    # -------------------------------------------------------------------------- building

    @property
    def needs_training(self) -> bool:
        """Whether :meth:`train` must run before :meth:`add` (IVF kinds, until trained)."""
        return self._index is None or not self._index.is_trained

    def _faiss_metric(self):
        faiss = _faiss()
        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def _build(self, n_train: int | None) -> None:
        faiss = _faiss()
        p, metric = self.params, self._faiss_metric()
        if self.kind == "flat":
            base = faiss.IndexFlat(self.dim, metric)
        elif self.kind == "hnsw":
            base = faiss.IndexHNSWFlat(self.dim, p["hnsw_m"], metric)
            base.hnsw.efConstruction = p["ef_construction"]
            base.hnsw.efSearch = p["ef_search"]
        else:
            p["nlist"] = p["nlist"] or default_nlist(n_train or 0)
            quantizer = faiss.IndexFlat(self.dim, metric)
            if self.kind == "ivf":
                base = faiss.IndexIVFFlat(quantizer, self.dim, p["nlist"], metric)
            else:
                base = faiss.IndexIVFPQ(quantizer, self.dim, p["nlist"], p["pq_m"], p["pq_bits"], metric)
            base.own_fields = True
            quantizer.this.disown()
            p["nprobe"] = p["nprobe"] or default_nprobe(p["nlist"])
            if self.device == "cuda":
                p["nprobe"] = min(p["nprobe"], GPU_MAX_K)
        index = faiss.IndexIDMap2(base)
        index.own_fields = True
        base.this.disown()
        if self.device == "cuda":
            self._gpu_resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        self._index = index
        self._set_nprobe()

    def _set_nprobe(self) -> None:
        if self.kind in ("ivf", "ivfpq") and self._index is not None:
            faiss = _faiss()
            # GpuParameterSpace knows GPU IVF indexes and falls back to the CPU rules otherwise.
            space = faiss.GpuParameterSpace() if self.device == "cuda" else faiss.ParameterSpace()
            space.set_index_parameter(self._index, "nprobe", int(self.params["nprobe"]))

    @property
    def nprobe(self) -> int | None:
        """Lists searched per query (IVF kinds)."""
        return self.params["nprobe"]

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        int_arg("nprobe", value, 1, GPU_MAX_K if self.device == "cuda" else 1 << 20)
        self.params["nprobe"] = value
        self._set_nprobe()

    def _prepare(self, x: Any, what: str) -> np.ndarray:
        a = as_vectors(x, self.dim, what)
        return _normalise(a) if self.metric == "cosine" else a

    def train(self, sample: Any) -> Index:
        """Learns an IVF index's coarse centroids (and PQ codebooks) from ``sample`` (a few
        hundred vectors per list; nlist defaults from its size). Other kinds need no training:
        a no-op for them."""
        if self.kind in ("flat", "hnsw"):
            return self
        if self._index is not None and self._index.is_trained:
            raise ValueError("the index is already trained")
        x = self._prepare(sample, "sample")
        if len(x) < 1:
            raise ValueError("train needs at least one vector")
        # Checked before anything is built, so a refused sample changes nothing.
        nlist = self.params["nlist"] or default_nlist(len(x))
        if len(x) < nlist:
            raise ValueError(f"train needs at least nlist = {nlist} vectors, got {len(x)}")
        if self.kind == "ivfpq" and len(x) < 2 ** self.params["pq_bits"]:
            raise ValueError(f"IVF-PQ with {self.params['pq_bits']}-bit codes needs at least {2 ** self.params['pq_bits']} training vectors, got {len(x)}")
        params = dict(self.params)
        try:
            self._build(len(x))
            self._index.train(x)
        except Exception:
            self.params, self._index = params, None
            raise
        return self

    def add(self, vectors: Any, ids: Any = None) -> Index:
        """Adds vectors (``(n, dim)`` floats: float32; float16, float64 and nested lists of floats
        are converted) with non-negative int64 ``ids``, in batches. Default ids continue past the largest
        id added so far (0, 1, ... on a new index). Ids given twice in one call are refused; an id
        repeated across calls is not checked (as in FAISS: a search then returns it twice)."""
        if self._index is None or not self._index.is_trained:
            raise ValueError(f"a {self.kind} index must be trained first: call train(sample)")
        x = self._prepare(vectors, "vectors")
        if ids is None:
            start = max(int(self._index.ntotal), self._next_id)
            ids_arr = np.arange(start, start + len(x), dtype=np.int64)
        else:
            raw = np.asarray(ids)
            # Float ids would be truncated, ids past 2^63 wrap, and -1 is FAISS's "no result".
            if raw.size and raw.dtype.kind not in "iu":
                raise TypeError(f"ids must be integers, got dtype {raw.dtype}")
            if raw.size and (raw.min() < 0 or (raw.dtype.kind == "u" and raw.max() > np.iinfo(np.int64).max)):
                raise ValueError(f"ids must be in [0, 2^63 - 1] (-1 is FAISS's 'no result'), got {raw.min()} .. {raw.max()}")
            ids_arr = np.ascontiguousarray(raw, dtype=np.int64)
            if ids_arr.shape != (len(x),):
                raise ValueError(f"ids must be one int64 per vector ({len(x)}), got shape {ids_arr.shape}")
            uniq, counts = np.unique(ids_arr, return_counts=True)
            if len(uniq) != len(ids_arr):
                twice = uniq[counts > 1]
                raise ValueError(f"ids must be unique: {len(twice)} given more than once (e.g. {twice[:5].tolist()})")
        for a in range(0, len(x), _ADD_BATCH):
            self._index.add_with_ids(x[a : a + _ADD_BATCH], ids_arr[a : a + _ADD_BATCH])
        if len(ids_arr):
            self._next_id = max(self._next_id, int(ids_arr.max()) + 1)
        return self

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest indexed vectors of each query: ``(scores, ids)``, float32 and int64
        ``(n, k)``, best first; -1 / NaN where fewer than ``k`` were found. On the GPU ``k`` is
        at most 2,048 (FAISS's limit there)."""
        int_arg("k", k, 1, 1 << 16)
        if self.device == "cuda" and k > GPU_MAX_K:
            raise ValueError(f"FAISS on the GPU returns at most {GPU_MAX_K} neighbours per query, asked for k={k}: ask for fewer or use device='cpu'")
        if self._index is None or not self._index.is_trained:
            raise ValueError(f"a {self.kind} index must be trained first: call train(sample)")
        q = self._prepare(queries, "queries")
        if len(q) == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        scores, ids = self._index.search(q, k)
        scores = scores.astype(np.float32, copy=False)
        scores[ids < 0] = np.nan
        return scores, ids.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"Index(dim={self.dim}, metric={self.metric!r}, kind={self.kind!r}, device={self.device!r}, n={len(self)})"

    # ---------------------------------------------------------------------------- files

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the index to the folder ``path`` (``index.faiss`` + ``index.json``), through
        temporary names renamed into place."""
        from interleaf.io.atomic import atomic_output

        faiss = _faiss()
        if self._index is None:
            raise ValueError("nothing to save: the index is not trained yet")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        cpu = faiss.index_gpu_to_cpu(self._index) if self.device == "cuda" else self._index
        with atomic_output(out / "index.faiss") as tmp:
            faiss.write_index(cpu, str(tmp))
        meta = {"format": "interleaf.search.Index/1", "dim": self.dim, "metric": self.metric, "kind": self.kind, "params": self.params, "n": len(self)}
        with atomic_output(out / "index.json") as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> Index:
        """An index written by :meth:`save`. Loaded onto a GPU, a saved ``nprobe`` above FAISS's
        GPU limit (2,048) is capped there."""
        faiss = _faiss()
        d = Path(path)
        for f in ("index.faiss", "index.json"):
            if not (d / f).is_file():
                raise FileNotFoundError(f"{d / f} is missing: not an interleaf index folder")
        try:
            meta = json.loads((d / "index.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{d}/index.json is not JSON: {e}") from None
        if not isinstance(meta, dict) or not {"dim", "metric", "kind", "params"} <= meta.keys() or not isinstance(meta["params"], dict):
            raise ValueError(f"{d}/index.json must hold dim, metric, kind and params, as Index.save writes it")
        index = faiss.read_index(str(d / "index.faiss"))
        found = _kind_of(faiss, index)
        if found != meta["kind"]:
            raise ValueError(f"{d}/index.faiss is a {found or type(index).__name__} index, index.json says {meta['kind']!r}")
        p = dict(meta["params"])
        if meta["kind"] != "hnsw" and p.get("nprobe") and resolve_device(device) == "cuda":
            p["nprobe"] = min(int(p["nprobe"]), GPU_MAX_K)
        self = cls(meta["dim"], meta["metric"], meta["kind"], device, **{k: v for k, v in p.items() if k in ("nlist", "nprobe", "pq_m", "pq_bits", "hnsw_m", "ef_search", "ef_construction")})
        if index.d != self.dim:
            raise ValueError(f"{d}/index.faiss holds {index.d}-dimensional vectors, index.json says {self.dim}")
        if index.ntotal and hasattr(index, "id_map"):
            self._next_id = int(faiss.vector_to_array(index.id_map).max()) + 1
        if index.metric_type != self._faiss_metric():
            held = "L2 distances" if index.metric_type == faiss.METRIC_L2 else "inner products"
            raise ValueError(f"{d}/index.faiss holds an index of {held}, index.json says metric {self.metric!r}")
        if self.device == "cuda":
            self._gpu_resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        self._index = index
        self._set_nprobe()
        return self


def _kind_of(faiss: Any, index: Any) -> str | None:
    """The :data:`KINDS` name of a FAISS index as :meth:`Index.save` writes it (an id map around
    a flat, IVF, IVF-PQ or HNSW index); None for anything else."""
    idx = faiss.downcast_index(index)
    if isinstance(idx, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        idx = faiss.downcast_index(idx.index)
    for cls_name, kind in (("IndexHNSW", "hnsw"), ("IndexIVFPQ", "ivfpq"), ("IndexIVF", "ivf"), ("IndexFlat", "flat")):
        if isinstance(idx, getattr(faiss, cls_name)):
            return kind
    return None


def kmeans(x: Any, k: int, *, spherical: bool = True, niter: int = 20, seed: int = 1234, device: str = "auto", max_points_per_centroid: int | None = 256) -> tuple[np.ndarray, np.ndarray]:
    """FAISS k-means over the rows of ``x`` ``(n, dim)``: ``(labels, centroids)``, int64 ``(n,)``
    (each row's nearest centroid) and float32 ``(k', dim)``, with ``k' = min(k, n)``.
    ``spherical`` (default) normalises the rows and the centroids, so "nearest" is "most
    cosine-similar" (SemDeDup, instruction clustering); the same ``seed`` gives the same clusters.
    ``max_points_per_centroid``: the centroids are trained on a seeded sample of at most that
    many rows per centroid, then every row is assigned (FAISS's default 256, which SemDeDup's
    ``faiss.Kmeans`` call keeps); None trains on every row (slower, 3x at 100k rows)."""
    import faiss

    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"k-means takes a 2-D array of vectors (n, dim), got shape {a.shape}")
    a = as_vectors(a, a.shape[1], "vectors")
    if spherical:
        a = _normalise(a)
    n = len(a)
    if n == 0:
        raise ValueError("k-means needs at least one vector")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    int_arg("niter", niter, 1, 10_000)
    int_arg("seed", seed, 0, (1 << 31) - 1)  # FAISS's seed is a C int
    if max_points_per_centroid is not None and (not isinstance(max_points_per_centroid, int) or max_points_per_centroid < 1):
        raise ValueError(f"max_points_per_centroid must be an integer >= 1 or None, got {max_points_per_centroid!r}")
    sample = max_points_per_centroid if max_points_per_centroid is not None else 1 << 30
    km = faiss.Kmeans(a.shape[1], min(k, n), niter=niter, seed=seed, spherical=spherical, gpu=resolve_device(device) == "cuda", verbose=False, min_points_per_centroid=1, max_points_per_centroid=sample)
    km.train(a)
    _, assigned = km.index.search(a, 1)
    return assigned[:, 0].astype(np.int64), np.asarray(km.centroids, dtype=np.float32)


def nearest(
    queries: Any,
    corpus: Any,
    k: int = 1,
    *,
    metric: str = "cosine",
    top: int | None = None,
    temperature: float | None = None,
    replace: bool = False,
    seed: int = 0,
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """The corpus rows nearest each query, exactly (a flat index): ``(scores, ids)``, ``(n, k)``.

    With ``temperature``, MM-Instruct's sampled matching: the ``top`` nearest (default
    ``max(10, k)``) are candidates and ``k`` of them are drawn per query with probability
    proportional to ``exp(score / temperature)`` (cosine or inner product; ``-distance`` for
    l2), without replacement unless ``replace``; seeded by ``seed`` (the same draws for the
    same inputs). Without ``temperature``: the top ``k`` (``k=1`` is the argmax)."""
    q = np.asarray(queries)
    c = np.asarray(corpus)
    if c.ndim != 2:
        raise ValueError(f"corpus must be 2-D (n, dim), got shape {c.shape}")
    int_arg("k", k, 1, 1 << 16)
    int_arg("top", top, 1, 1 << 16, optional=True)
    int_arg("seed", seed, 0, (1 << 63) - 1)
    # Checked before the corpus is indexed.
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        top = top or max(10, k)
        if top < k and not replace:
            raise ValueError(f"cannot draw k={k} without replacement from top={top} candidates")
    index = Index(c.shape[1], metric, "flat", device)
    index.add(c)
    if temperature is None:
        return index.search(q, k)
    assert top is not None
    scores, ids = index.search(q, top)
    rng = np.random.default_rng(seed)
    sign = -1.0 if metric == "l2" else 1.0
    # Blocks of queries keep the float64 work arrays at block x top.
    parts = [_draw(scores[a : a + _DRAW_ROWS], ids[a : a + _DRAW_ROWS], k, sign / temperature, replace, rng) for a in range(0, len(ids), _DRAW_ROWS)]
    if not parts:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


#: Queries sampled at once by :func:`nearest`.
_DRAW_ROWS = 4096


def _draw(scores: np.ndarray, ids: np.ndarray, k: int, scale: float, replace: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``k`` of each row's candidates drawn with probability ``softmax(score * scale)``:
    ``(scores, ids)``, -1 / NaN where a row has fewer candidates (without replacement)."""
    valid = ids >= 0  # FAISS puts a query's found candidates first, -1 after them
    with np.errstate(invalid="ignore"):
        logits = np.where(valid, scores.astype(np.float64) * scale, -np.inf)
    if replace:
        # Inverse-CDF draws from softmax(logits), every row at once.
        p = np.exp(logits - np.where(valid[:, :1], logits.max(axis=1, keepdims=True), 0.0))
        cdf = np.cumsum(p, axis=1)
        cdf /= np.where(cdf[:, -1:] > 0, cdf[:, -1:], 1.0)
        u = rng.random((len(ids), k))
        # One sorted search for all rows: row r's CDF shifted into [r, r + 1].
        shift = np.arange(len(ids), dtype=np.float64)[:, None]
        flat = np.searchsorted((cdf + shift).ravel(), (u + shift).ravel(), side="right").reshape(u.shape)
        pick = np.minimum(flat - shift.astype(np.int64) * cdf.shape[1], np.maximum(valid.sum(axis=1, keepdims=True) - 1, 0))
        drawn = np.broadcast_to(valid[:, :1], pick.shape)
    else:
        # Gumbel-top-k: the same law as drawing one at a time without replacement, and no
        # failure when far candidates' probabilities underflow to 0.
        keys = logits + rng.gumbel(size=logits.shape)
        pick = np.argsort(-keys, axis=1, kind="stable")[:, :k]
        drawn = np.arange(k)[None, :] < valid.sum(axis=1, keepdims=True)
    out_s = np.where(drawn, np.take_along_axis(scores, pick, axis=1), np.nan).astype(np.float32)
    out_i = np.where(drawn, np.take_along_axis(ids, pick, axis=1), -1).astype(np.int64)
    return out_s, out_i
