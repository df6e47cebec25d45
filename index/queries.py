"""What a query asks and what it gets back: the modes, the query-time knobs and one answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from .calibrate import CALIBRATIONS, Calibration

Mode = Literal["style", "content", "same-style-different-content", "same-content-different-style", "weighted"]
MODES: tuple[str, ...] = get_args(Mode)
AXES = ("style", "content")


def _default_weights() -> dict[str, float]:
    return {"style": 1.0, "content": 1.0}


@dataclass(frozen=True)
class SearchConfig:
    """Query-time knobs.

    calibration: how each axis's pool similarities are made comparable ("z" or "csls", see
    calibrate.py). content_ceiling_z / style_ceiling_z: a same-style-different-content candidate
    is dropped when its calibrated content score is >= content_ceiling_z (it has the query's
    content), and the converse (2.0: the best of 1.0-2.5 measured, bench/RESULTS.md).
    duplicate_similarity / duplicate_style_similarity: a candidate at or above the first on the
    content axis and the second on the style axis (both without their catalogue-relative steps) is a
    copy of the query (re-upload) and never returned. weights: default per-axis weights of mode "weighted".
    Candidates (and the calibration reference) are the primary axis's top max(min_pool,
    pool_per_k * k) videos, found by an exact matrix product for catalogues of at most
    exhaustive_max videos, else by the axis's FAISS index. gpu: move indexes to a GPU when faiss
    has one. canaries: re-run the build's canary queries on load.
    """

    calibration: Calibration = "z"
    content_ceiling_z: float = 2.0
    style_ceiling_z: float = 2.0
    duplicate_similarity: float = 0.6
    duplicate_style_similarity: float = 0.45
    weights: Mapping[str, float] = field(default_factory=_default_weights)
    exhaustive_max: int = 50_000
    min_pool: int = 200
    pool_per_k: int = 20
    gpu: bool = True
    canaries: bool = True

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"SearchConfig.calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        check_weights(self.weights)
        if self.min_pool < 1 or self.pool_per_k < 1:
            raise ValueError(
                f"SearchConfig.min_pool and pool_per_k must be >= 1, got {self.min_pool}, {self.pool_per_k}"
            )


@dataclass(frozen=True)
class Result:
    """One hit: cosine and calibrated score on both axes, the ranking score, and why.

    style_score/content_score: cosine similarity (mean over the axis's descriptors);
    style_z/content_z: the calibrated scores; score: what the ranking used; parts: cosine of
    each descriptor and style tap; reason: a one-line summary of them.
    """

    video_id: str
    rank: int
    style_score: float
    content_score: float
    score: float
    reason: str
    style_z: float
    content_z: float
    parts: dict[str, float]


class UnknownVideoError(KeyError):
    """A queried video id is not in the index."""

    def __init__(self, video_id: str, index_dir: Path) -> None:
        super().__init__(video_id)
        self.video_id = video_id
        self.message = (
            f"video id {video_id!r} is not in the index at {index_dir} "
            "(failed embedding, or added after the build)"
        )

    def __str__(self) -> str:
        return self.message


def check_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    """Validate axis weights: both axes, finite numbers, at least one positive (it supplies the pool)."""
    if set(weights) != set(AXES):
        raise ValueError(f"weights need exactly the axes {list(AXES)}, got {sorted(weights)}")
    values = {axis: float(weights[axis]) for axis in AXES}
    if not all(np.isfinite(v) for v in values.values()) or max(values.values()) <= 0:
        raise ValueError(f"weights must be finite with at least one > 0, got {values}")
    return values
