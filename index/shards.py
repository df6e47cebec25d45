"""Sharded index builds: one trained quantizer, per-shard indexes, merged in row order.

For catalogues too large for one process (or built by a distributed job), an IVF index is built
in three steps:

1. ``train_empty`` (factory.py) trains the coarse quantizer (and PQ/SQ codebooks) once, on a
   seeded sample; the trained, empty index is the only thing every shard shares
   (``faiss.write_index`` it and ship the file to the workers).
2. ``build_shard`` adds one contiguous slice of rows to a copy of it, with local ids 0..n-1.
3. ``merge_shards`` appends the shards in row order, offsetting each shard's ids by the rows
   before it. IVF lists then hold the same entries in the same order as a single-process
   build, so the merged index answers exactly as the unsharded one (tests/test_index_build.py).

Memory: the merge holds the merged index and one shard at a time; pass shards as a generator
(``(faiss.read_index(p) for p in paths)``) when they come from files. Flat-coded indexes
(Flat, SQ, PQ) merge the same way; HNSW graphs cannot be merged and are refused.
"""

from __future__ import annotations

from collections.abc import Iterable

import faiss
import numpy as np

from .factory import ivf_of, search_parameter, to_cpu, to_gpu


def shard_bounds(count: int, shards: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of `shards` nearly equal contiguous slices of `count` rows."""
    if not 1 <= shards <= count:
        raise ValueError(f"shards must be between 1 and the number of videos ({count}), got {shards}")
    edges = np.linspace(0, count, shards + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def check_mergeable(trained: faiss.Index) -> None:
    """Refuse index types whose shards cannot be merged (HNSW graphs)."""
    if search_parameter(trained) == "efSearch":
        raise ValueError(
            "sharded builds need an IVF or flat-coded factory (IVF..., Flat, SQ8, PQ...); "
            "HNSW graphs cannot be merged: use shards=1 or another factory"
        )


def build_shard(trained: faiss.Index, vectors: np.ndarray, gpu: bool = False) -> faiss.Index:
    """A copy of the shared trained index holding one shard's vectors (local ids 0..n-1)."""
    shard = faiss.clone_index(trained)
    work = to_gpu(shard) if gpu else shard
    work.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return to_cpu(work)


def merge_shards(trained: faiss.Index, shards: Iterable[faiss.Index]) -> faiss.Index:
    """Append shards in row order into a copy of `trained`, offsetting IVF ids by the rows before."""
    check_mergeable(trained)
    merged = faiss.clone_index(trained)
    ids_are_stored = ivf_of(merged) is not None  # flat-coded indexes number rows implicitly
    for shard in shards:
        merged.merge_from(shard, merged.ntotal if ids_are_stored else 0)
    return merged
