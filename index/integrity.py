"""Trusting an index directory: file hashes, canary queries with known answers, a recall audit, and a
comparison with its run.

Hashes prove the files are the ones the build wrote; canaries prove that those files, loaded
together (index, id map, matrices, search parameters, CPU or GPU), still give the answers the
build saw; the audit measures how far the approximate index is from exact search; the comparison
lists every video the index holds in another version than its run (or not at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow.parquet as pq

from ._io import sha256_file
from .factory import exact_knn, recall_at
from .manifest import IndexManifest
from .run import check_run_history, read_run

CANARY_K = 5
# The build's own answers are compared at this tolerance on the CPU; GPU kernels sum in another order.
CPU_TOLERANCE = 1e-4
GPU_TOLERANCE = 1e-3


class IndexIntegrityError(ValueError):
    """An index file is missing, does not match manifest.json, or a canary query answers wrongly."""


def verify_file(path: Path, expected: str) -> None:
    """Raise IndexIntegrityError unless `path` exists with sha256 `expected`."""
    if not path.is_file():
        raise IndexIntegrityError(f"{path}: listed in manifest.json but missing")
    actual = sha256_file(path)
    if actual != expected:
        raise IndexIntegrityError(
            f"{path}: sha256 {actual} does not match manifest.json ({expected}); "
            "the file was modified or replaced after the build, rebuild the index"
        )


def read_index_file(path: Path) -> faiss.Index:
    """A FAISS index from ``path``; IndexIntegrityError naming the file when it is not one."""
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexIntegrityError(f"{path}: not a readable FAISS index ({_first_line(exc)})") from None


def load_matrix(path: Path, mmap: bool = True) -> np.ndarray:
    """A numeric .npy matrix (memory-mapped by default); IndexIntegrityError naming the file when it is not
    one (object arrays are refused: loading them would unpickle)."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexIntegrityError(f"{path}: not a readable numeric .npy matrix ({_first_line(exc)})") from None


def read_ids_file(path: Path) -> tuple[list[str], list[str | None]]:
    """The row -> video_id map and content hashes; IndexIntegrityError naming the file when it is unreadable."""
    try:
        table = pq.read_table(path, columns=["video_id", "content_hash"])
    except (OSError, ValueError, KeyError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise IndexIntegrityError(f"{path}: not a readable id map ({_first_line(exc)})") from None
    return table["video_id"].to_pylist(), table["content_hash"].to_pylist()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def make_canaries(
    video_ids: Sequence[str],
    indexes: Mapping[str, faiss.Index],
    matrices: Mapping[str, np.ndarray],
    n: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Pick up to `n` seeded rows that every axis index returns first for their own vector
    (ties allowed), and record each axis's top-CANARY_K answer (ids and scores) for them."""
    count = len(video_ids)
    order = np.random.default_rng(seed).permutation(count)[: 4 * n]  # a few spares for ANN misses
    canaries: list[dict[str, Any]] = []
    for row in order.tolist():
        answers = {}
        for axis, index in indexes.items():
            query = np.ascontiguousarray(matrices[axis][row : row + 1], dtype=np.float32)
            scores, labels = index.search(query, min(CANARY_K, count))
            answers[axis] = {"ids": [video_ids[i] for i in labels[0]], "scores": scores[0].tolist()}
            if not _self_on_top(row, labels[0], scores[0], CPU_TOLERANCE):
                break
        else:
            canaries.append({"row": row, "video_id": video_ids[row], "answers": answers})
            if len(canaries) == n:
                break
    return canaries


def check_canaries(
    canaries: Sequence[Mapping[str, Any]],
    video_ids: Sequence[str],
    indexes: Mapping[str, faiss.Index],
    matrices: Mapping[str, np.ndarray],
    tolerance: float,
) -> None:
    """Re-run the stored canary queries; raise IndexIntegrityError naming the first that differs."""
    for canary in canaries:
        row, video_id = canary["row"], canary["video_id"]
        if row >= len(video_ids) or video_ids[row] != video_id:
            raise IndexIntegrityError(f"canary: row {row} should be video {video_id!r} in the id map")
        for axis, expected in canary["answers"].items():
            query = np.ascontiguousarray(matrices[axis][row : row + 1], dtype=np.float32)
            norm = float(np.linalg.norm(query))
            if abs(norm - 1.0) > 1e-3:
                raise IndexIntegrityError(f"canary {video_id!r}, axis {axis}: stored vector has norm {norm:.4f}, not 1")
            scores, labels = indexes[axis].search(query, len(expected["ids"]))
            got_ids = [video_ids[i] if i >= 0 else None for i in labels[0]]
            if not same_answers(expected["ids"], expected["scores"], got_ids, scores[0].tolist(), tolerance):
                raise IndexIntegrityError(
                    f"canary {video_id!r}, axis {axis}: the index answers {got_ids} {np.round(scores[0], 4).tolist()}, "
                    f"the build answered {expected['ids']} {np.round(expected['scores'], 4).tolist()}; "
                    "the index, id map or matrix do not belong together, rebuild the index"
                )


def same_answers(
    ids_a: Sequence[Any], scores_a: Sequence[float], ids_b: Sequence[Any], scores_b: Sequence[float], tolerance: float
) -> bool:
    """Tie-tolerant comparison of two ranked answers: scores equal within `tolerance`, and the same ids
    in the same order of tie groups, except the last group, which the cut-off at k may split."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=tolerance):
        return False
    return _tie_groups(ids_a, a, tolerance)[:-1] == _tie_groups(ids_b, b, tolerance)[:-1]


def _tie_groups(ids: Sequence[Any], scores: np.ndarray, tolerance: float) -> list[set[Any]]:
    """Consecutive ids of a ranked answer grouped by equal scores (within tolerance)."""
    groups: list[tuple[float, set[Any]]] = []
    for video_id, score in zip(ids, scores):
        if groups and groups[-1][0] - score <= tolerance:
            groups[-1][1].add(video_id)
        else:
            groups.append((float(score), {video_id}))
    return [members for _, members in groups]


def _self_on_top(row: int, labels: np.ndarray, scores: np.ndarray, tol: float) -> bool:
    return any(label == row and score >= scores[0] - tol for label, score in zip(labels, scores))


def recall_audit(
    index: faiss.Index, matrix: np.ndarray, pool: int, k: int = 10, sample: int = 200, seed: int = 0
) -> dict[str, float]:
    """recall@k of `index` against exact search, on `sample` seeded catalogue rows as queries.

    ann_recall: share of the exact top-k (query row excluded) in the index's own top-k;
    pool_recall: share found in its top-`pool`, which the Searcher re-scores exactly, i.e. the
    recall of the Searcher's single-axis answers.
    """
    count = len(matrix)
    rows = np.sort(np.random.default_rng(seed).choice(count, size=min(sample, count), replace=False))
    queries = np.ascontiguousarray(matrix[rows], dtype=np.float32)
    _, truth = exact_knn(queries, matrix, k + 1)
    _, found = index.search(queries, min(max(pool, k) + 1, count))
    truth, found = _drop_self(truth, rows), _drop_self(found, rows)
    return {
        "queries": float(len(rows)),
        "ann_recall": recall_at(truth[:, :k], found[:, :k]),
        "pool_recall": recall_at(truth[:, :k], found),
    }


def _drop_self(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each row of `labels` without the query's own row (the last column dropped if it is absent)."""
    keep = labels != rows[:, None]
    keep[keep.all(axis=1), -1] = False
    return labels[keep].reshape(len(labels), labels.shape[1] - 1)


@dataclass(frozen=True)
class RunDifferences:
    """How an index differs from its run: ids indexed with another content hash than the run now holds
    (``stale``), indexed but no longer indexable in the run (``gone``), indexable but not indexed (``new``).
    ``index build RUN --add`` resolves all three."""

    stale: list[str]
    gone: list[str]
    new: list[str]

    @property
    def count(self) -> int:
        return len(self.stale) + len(self.gone) + len(self.new)


def compare_with_run(index_dir: Path, manifest: IndexManifest, run_dir: Path | None = None) -> RunDifferences:
    """Every row where the index and its run (``manifest.run_dir`` unless given) disagree. Raises ValueError
    when the run's Parquet files do not belong to its history (index.run.check_run_history)."""
    source = run_dir or manifest.run_dir
    if not source:
        raise ValueError(f"{index_dir}: this index was built from vectors, not from a run: there is no run to compare")
    run_dir = Path(source)
    indexed = dict(zip(*read_ids_file(index_dir / manifest.ids_file)))
    run = read_run(run_dir, tuple(manifest.descriptors), indexed=indexed)
    check_run_history(run_dir, manifest.run_ids, run.file_run_ids)
    read = set(run.video_ids)
    return RunDifferences(
        stale=sorted(read & set(indexed)),
        gone=sorted(set(indexed) - read - run.unchanged),
        new=sorted(read - set(indexed)),
    )
