"""Per-axis score calibration: make similarities comparable before two axes are combined.

Raw cosines are not comparable across axes (style vectors of a catalogue sit closer together
than content vectors) nor across queries (a query in a dense region sees high cosines
everywhere). Each axis's similarities to a query's candidate pool are therefore turned into
z-scores within that pool:

    z_a(q, y) = (s'_a(q, y) - mean_P s'_a) / std_P s'_a

with s' = s (calibration "z") or the CSLS-adjusted similarity (calibration "csls") of
Conneau et al. 2018 ("Word translation without parallel data", ICLR), which corrects for hubs,
items that are near everything:

    CSLS(q, y) = 2 cos(q, y) - r(q) - r(y),   r(y) = mean cosine of y to its K nearest neighbours

r(q) is constant within one query and cancels in the z-score, so only the catalogue-side r(y)
is needed; it is computed once at build time (IndexConfig.hubness_k) and stored per axis.
Measured on the labelled demo catalogue (bench/query.py --sections calibration, figures in
search.py's docstring): without calibration, combining axes by a difference of cosines got 34% of
same-content-different-style answers right, against 83-98% after z-scoring; CSLS moved precision
by +1.1 and +0.5 points on the two dual modes, too little for its build-time k-NN pass, so "z" is
the default and hubness is opt-in.
"""

from __future__ import annotations

from typing import Literal, get_args

import faiss
import numpy as np
from tqdm import tqdm

Calibration = Literal["z", "csls"]
CALIBRATIONS: tuple[str, ...] = get_args(Calibration)


def zscores(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """z-scores of `values` against the mean/std of `reference`; zeros if it has no spread."""
    std = float(reference.std()) if reference.size > 1 else 0.0
    if std < 1e-12:
        return np.zeros_like(values)
    return (values - float(reference.mean())) / std


def calibrate(
    sims: np.ndarray, reference: np.ndarray, method: Calibration, hubness: np.ndarray | None
) -> np.ndarray:
    """Calibrated scores of one axis for a pool: z-scores of s (or of 2 s - r(y) for CSLS).

    `reference` is a boolean mask of the pool entries that form the z-score reference (the pool
    minus the query and its duplicates); `hubness` holds r(y) for the pool rows (CSLS only).
    """
    if method == "csls":
        if hubness is None:
            raise ValueError(
                "calibration 'csls' needs per-video hubness, which this index was built without; "
                "rebuild with IndexConfig(hubness_k=10) or use calibration 'z'"
            )
        sims = 2.0 * sims - hubness
    elif method != "z":
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {method!r}")
    return zscores(sims, sims[reference])


def hubness(index: faiss.Index, matrix: np.ndarray, k: int, batch: int = 4096, progress: bool = False) -> np.ndarray:
    """r(y) for every row: mean similarity to its k nearest neighbours in `index`, itself excluded.

    Costs one k+1 search per row (a full pass over the catalogue with the axis's own index).
    """
    out = np.empty(len(matrix), dtype=np.float32)
    starts = range(0, len(matrix), batch)
    for start in tqdm(starts, desc="hubness", unit="batch", disable=not progress):
        block = np.ascontiguousarray(matrix[start : start + batch], dtype=np.float32)
        scores, labels = index.search(block, k + 1)
        rows = np.arange(start, start + len(block))[:, None]
        # drop the row itself and missing hits (-1); keep the k best of the rest
        others = np.where((labels >= 0) & (labels != rows), scores, np.nan)
        best = -np.sort(-others, axis=1)[:, :k]  # NaN sorts last
        with np.errstate(all="ignore"):
            out[start : start + len(block)] = np.nan_to_num(np.nanmean(best, axis=1))
    return out
