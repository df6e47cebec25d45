"""Trusting an index directory: file hashes, canary queries with known answers, and a recall audit.

Hashes prove the files are the ones the build wrote; canaries prove that those files, loaded
together (index, id map, matrices, search parameters, CPU or GPU), still give the answers the
build saw; the audit measures how far the approximate index is from exact search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ._io import sha256_file
from .factory import exact_knn, recall_at

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
