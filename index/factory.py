"""Which FAISS index an axis gets, how it is trained, tuned and moved to a GPU.

Index choice is a short list of rules, first match wins (sizes in bytes per vector, d = axis dim):

1. ``Flat`` when count <= flat_max and count * 4d fits the budget: exact search, no training; one
   BLAS matrix product per query batch is fast enough up to ~50k vectors.
2. ``HNSW32,Flat`` when count <= hnsw_max and count * (4d + 272) fits: graph search, no training.
   Off by default (hnsw_max=0): it built about 4x slower than IVF for a higher median latency and
   a few points more answer recall (bench/RESULTS.md, "Indexes and queries"); it also cannot be merged
   across shards or have rows removed.
3. ``IVF{nlist},Flat`` when count * 4d fits: exact distances inside the probed lists; trains in
   seconds, adds incrementally and merges across shards.
4. ``IVF{nlist},SQ8`` when count * d fits: 8-bit scalar quantisation, 4x smaller.
5. ``IVF{nlist},PQ{m}``, m the largest divisor of d with count * m within the budget (m >= 8):
   the most compact. Approximate scores do not reach the answers: every query re-scores its
   candidate pool exactly from the stored axis matrix (see search.py).

nlist ~ 2 sqrt(count) as a power of two, with at least 39 training points per list; the k-means
sample is 40 points per list (at least 10,000, for PQ/SQ codebooks), drawn with a fixed seed.
FAISS's guideline is 4-16 sqrt(n) lists, but k-means costs ~ 2 * 10 iterations * sample * nlist * d
flops, which grows with nlist^2 (minutes on a 2-core CPU at 1M vectors and 4096 lists); every query
re-scores a 200-candidate pool exactly anyway, so the coarser lists cost little recall. The search
parameter (``nprobe`` for IVF, ``efSearch`` for HNSW) is tuned at build time: the smallest value
whose candidate pool holds target_recall of the exact top-10 on sample queries (as autofaiss tunes
it). The default target 0.97 is a latency choice: the list scan is memory-bound, so latency grows
with nprobe (bench/RESULTS.md, "Indexes and queries", gives recall and latency at 1M vectors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np

FLAT_BYTES_PER_DIM = 4
HNSW_M = 32
# HNSW keeps 2M neighbour ids (int32) on level 0 plus ~1/M of that again on upper levels.
_HNSW_LINK_BYTES = int(2 * HNSW_M * 4 * (1 + 1 / HNSW_M)) + 8
_MIN_PQ_M = 8
_TRAIN_POINTS_PER_LIST = 40
_MIN_TRAIN = 10_000
_MIN_POINTS_PER_LIST = 39  # below this FAISS warns that k-means is under-trained
TUNE_K = 10


@dataclass(frozen=True)
class FactoryChoice:
    """A FAISS factory string and the rule that chose it (kept in the manifest)."""

    factory: str
    reason: str


def nlist_for(count: int) -> int:
    """Number of IVF lists for `count` vectors: ~2 sqrt(count), a power of two, >= 39 points per list."""
    nlist = 2 ** round(math.log2(max(2 * math.sqrt(count), 1)))
    return int(max(1, min(nlist, 65536, count // _MIN_POINTS_PER_LIST)))


def choose_factory(
    count: int, dim: int, budget_bytes: float, flat_max: int = 50_000, hnsw_max: int = 0
) -> FactoryChoice:
    """Pick a factory for `count` vectors of `dim` whose index must fit `budget_bytes` (module rules)."""
    if count < 1 or dim < 1:
        raise ValueError(f"choose_factory needs count >= 1 and dim >= 1, got count={count}, dim={dim}")
    gib = budget_bytes / 2**30
    flat_bytes = count * dim * FLAT_BYTES_PER_DIM
    if count <= flat_max and flat_bytes <= budget_bytes:
        return FactoryChoice("Flat", f"count {count} <= flat_max {flat_max}: exact search")
    if count <= hnsw_max and count * (dim * FLAT_BYTES_PER_DIM + _HNSW_LINK_BYTES) <= budget_bytes:
        return FactoryChoice(f"HNSW{HNSW_M},Flat", f"count {count} <= hnsw_max {hnsw_max}, fits {gib:.2f} GiB")
    nlist = nlist_for(count)
    if flat_bytes <= budget_bytes:
        return FactoryChoice(f"IVF{nlist},Flat", f"count {count} > flat_max {flat_max}; float32 fits {gib:.2f} GiB")
    if count * dim <= budget_bytes:
        return FactoryChoice(f"IVF{nlist},SQ8", f"float32 needs {flat_bytes / 2**30:.2f} GiB > {gib:.2f} GiB")
    fitting = [m for m in range(_MIN_PQ_M, dim + 1) if dim % m == 0 and count * m <= budget_bytes]
    if not fitting:
        raise ValueError(
            f"memory budget {gib:.3f} GiB is too small for {count} vectors of dim {dim}: the most compact "
            f"index (PQ{_MIN_PQ_M}) needs {count * _MIN_PQ_M / 2**30:.3f} GiB; raise the budget"
        )
    m = max(fitting)
    return FactoryChoice(f"IVF{nlist},PQ{m}", f"8-bit codes need {count * dim / 2**30:.2f} GiB > {gib:.2f} GiB")


def new_index(dim: int, factory: str) -> faiss.Index:
    """An empty inner-product index from a factory string, with a clear error for a bad string.

    Polysemous training (on by default for IVF-PQ) is switched off: it ran for minutes at PQ64
    here and only serves Hamming pre-filtering, which styleaxis does not use.
    """
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"FAISS factory string {factory!r} is not valid for dim {dim}: {exc}") from exc
    ivf = ivf_of(index)
    if ivf is not None and hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
    return index


def ivf_of(index: faiss.Index) -> faiss.Index | None:
    """The (downcast) IVF layer inside `index`, or None for non-IVF indexes."""
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        return None


def training_sample(matrix: np.ndarray, index: faiss.Index, seed: int) -> np.ndarray:
    """Rows to train `index` on: all, or a seeded sorted subset of 40 points per IVF list (at least
    10,000, what 256-centroid PQ/SQ codebooks trained on the same sample want)."""
    ivf = ivf_of(index)
    limit = len(matrix) if ivf is None else max(_TRAIN_POINTS_PER_LIST * ivf.nlist, _MIN_TRAIN)
    if len(matrix) <= limit:
        return np.ascontiguousarray(matrix)
    rows = np.sort(np.random.default_rng(seed).choice(len(matrix), size=limit, replace=False))
    return np.ascontiguousarray(matrix[rows])


def train_empty(matrix: np.ndarray, factory: str, seed: int, gpu: bool = False) -> faiss.Index:
    """A trained, empty index for `factory` (what every shard of a sharded build starts from)."""
    index = new_index(matrix.shape[1], factory)
    if not index.is_trained:
        sample = training_sample(matrix, index, seed)
        ivf = ivf_of(index)
        if ivf is not None:
            ivf.cp.seed = seed
        work = to_gpu(index) if gpu else index  # k-means on the GPU when there is one
        try:
            work.train(sample)
        except RuntimeError as exc:  # e.g. fewer training vectors than IVF lists or PQ centroids
            raise ValueError(f"factory {factory!r} cannot be trained on {len(sample)} vectors: {exc}") from exc
        index = to_cpu(work)
    return index


def search_parameter(index: faiss.Index) -> str | None:
    """Name of the query-time knob of `index`: nprobe (IVF), efSearch (HNSW) or None (exhaustive)."""
    if ivf_of(index) is not None:
        return "nprobe"
    if isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        return "efSearch"
    return None


def set_search_parameter(index: faiss.Index, value: int | None) -> None:
    """Apply a tuned nprobe/efSearch value (no-op for exhaustive indexes)."""
    name = search_parameter(index)
    if name is not None and value is not None:
        # GpuParameterSpace (GPU builds only) also reaches into GPU indexes and their replicas
        space = faiss.GpuParameterSpace() if hasattr(faiss, "GpuParameterSpace") else faiss.ParameterSpace()
        space.set_index_parameter(index, name, int(value))


def tune_search_parameter(
    index: faiss.Index, matrix: np.ndarray, pool: int, target_recall: float, sample: int = 200, seed: int = 0
) -> tuple[int | None, float]:
    """Smallest nprobe/efSearch whose top-`pool` holds `target_recall` of the exact top-10.

    Queries are `sample` seeded rows of the indexed matrix. Returns (value, recall reached);
    (None, 1.0) for exhaustive indexes. If no value reaches the target the largest is kept.
    """
    name = search_parameter(index)
    if name is None:
        return None, 1.0
    rng = np.random.default_rng(seed)
    queries = np.ascontiguousarray(matrix[np.sort(rng.choice(len(matrix), min(sample, len(matrix)), replace=False))])
    _, truth = exact_knn(queries, matrix, TUNE_K)
    pool = min(pool, index.ntotal)
    if name == "nprobe":
        nlist = ivf_of(index).nlist
        values = [2**i for i in range(int(math.log2(nlist)) + 1)] + ([nlist] if nlist & (nlist - 1) else [])
    else:
        values = [max(pool, 16) * 2**i for i in range(6)]
    recall = 0.0
    for value in values:
        set_search_parameter(index, value)
        _, found = index.search(queries, pool)
        recall = recall_at(truth, found)
        if recall >= target_recall:
            return value, recall
    return values[-1], recall


def recall_at(truth: np.ndarray, found: np.ndarray) -> float:
    """Share of each row of `truth` (exact neighbour ids) present in the same row of `found`."""
    hits = sum(len(set(t[t >= 0]) & set(f[f >= 0])) for t, f in zip(truth, found))
    return hits / max(int((truth >= 0).sum()), 1)


def exact_knn(queries: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of `queries` over `matrix` (scores, rows), in bounded memory."""
    scores, rows = faiss.knn(
        np.ascontiguousarray(queries, dtype=np.float32), np.ascontiguousarray(matrix, dtype=np.float32),
        min(k, len(matrix)), metric=faiss.METRIC_INNER_PRODUCT,
    )
    return scores, rows


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def is_gpu_index(index: faiss.Index) -> bool:
    """True for indexes that live on GPUs: Gpu* classes, and the replicas/shards spread over several GPUs."""
    name = type(faiss.downcast_index(index)).__name__
    return name.startswith("Gpu") or name in ("IndexReplicas", "IndexShards")


def to_gpu(index: faiss.Index) -> faiss.Index:
    """A GPU copy of `index` on every visible GPU; index types without a GPU version (HNSW) stay on the CPU."""
    if isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError:  # e.g. a PQ code size the GPU kernels do not support
        return index


def to_cpu(index: faiss.Index) -> faiss.Index:
    """A CPU copy of a GPU index (for writing); CPU indexes are returned as they are."""
    return faiss.index_gpu_to_cpu(index) if is_gpu_index(index) else index

