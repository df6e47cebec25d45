"""Content-relative style: a style vector measured against the items that show the same content.

Style statistics of a frame mix two things: the rendering (a filter, a grade, a painter's style) and
the photo's own colours and textures. A neural stylisation overwrites the photo's statistics, so raw
statistics separate neural styles well; a mild colour grade or the unstylised "identity" look does
not, and raw statistics group such items by photo instead (bench/RESULTS.md: SSDC-P@10 0.43 on the
unseen filters, 0.09 for identity).

Here each item's style vector is compared with its ``k`` nearest neighbours on the content axis
(itself included when it is in the catalogue): r = (s - median(S_nb)) / (MAD(S_nb) + floor), per
dimension. The median over the neighbours estimates what is typical for that content; the MAD
estimates how much that content varies, so each content's deviations count on one scale; ``floor``
(``eps`` times the catalogue's median MAD of that dimension, or of all dimensions where that is
larger) keeps a content whose neighbours barely vary, and a dimension that hardly ever varies (a
near-dead channel), from blowing noise up. The residual is what the rendering adds, whatever the
photo. With k = 10 on the labelled catalogues (bench/disentangle.py) the hard split went from
SSDC-P@10 0.951 to 0.975 and the unseen filters from 0.62 to 0.89, at leakage 0.002 and 0.03.

Then each style row is *expanded* (:func:`expand_rows`, database-side augmentation as in
Arandjelovic & Zisserman 2012): the row plus its ``expand`` nearest rows on the style axis among the
items that are not its content neighbours, L2-normalised. Items that share a rendering pool their
evidence, which matters most where one item's residual is weak (a mild grade, the unstylised photo);
excluding the content neighbours keeps an item from pulling in its own content's other renderings.
With expand = 2 the hard split went from 0.975 to 0.992 and the unseen filters from 0.890 to 0.932,
leakage 0.000 and 0.013 (bench/RESULTS.md).

The converse step serves the content axis (:func:`style_relative_content`): a content vector minus
``content_alpha`` times the median content vector of the item's ``k`` nearest items on the
(content-relative) style axis, i.e. minus what the items rendered like it have in common. At alpha
0.5 it halved the hard split's content leakage (0.021 -> 0.011, SCDS-P@10 0.946 -> 0.952) and left
labelled video clips as they were (bench/RESULTS.md). The style step takes its neighbours on the
content axis *before* this step, so nothing is circular: base content -> style -> content.

Everything is numpy; the index finds the neighbours with its FAISS indexes, the evaluation exactly
(:func:`nearest_rows`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RELATIVE_DESCRIPTORS", "RelativeConfig", "nearest_rows", "content_relative", "expand_rows",
           "style_relative_content"]

#: descriptors that are made content-relative wherever an axis is built from them (index, evaluation)
RELATIVE_DESCRIPTORS: frozenset[str] = frozenset({"style_eff"})


@dataclass(frozen=True)
class RelativeConfig:
    """How a style vector is made content-relative.

    Attributes:
        k: neighbours the reference is taken over (the item itself counts when indexed); also the
            style neighbours of the content step. 10 scored best on the catalogues, which show each
            photo in 13 renderings (13: -0.01, 6: -0.04 on the unseen split); keep it at most the number
            of videos that typically show one content (the demo, 4 renderings per photo, uses 4).
        eps: the MAD floor, relative to the catalogue's median MAD (0.1 and 0.3 within 0.003).
        expand: style neighbours (outside the content neighbours) added to each style row after the
            residual (0 turns it off). Chosen on the hard split, where 2 scored best (1: 0.986, 2: 0.992,
            3: 0.991, 5: 0.984).
        content_alpha: weight of the converse step on the content axis (0 turns it off; 0.3 and 0.5
            scored within 0.002, 1.0 raised leakage again).
    """

    k: int = 10
    eps: float = 0.1
    expand: int = 2
    content_alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"RelativeConfig.k must be >= 1, got {self.k}")
        if self.eps <= 0:
            raise ValueError(f"RelativeConfig.eps must be > 0, got {self.eps}")
        if self.expand < 0:
            raise ValueError(f"RelativeConfig.expand must be >= 0, got {self.expand}")
        if not 0 <= self.content_alpha <= 1:
            raise ValueError(f"RelativeConfig.content_alpha must be in [0, 1], got {self.content_alpha}")


def nearest_rows(queries: np.ndarray, matrix: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """Rows of ``matrix`` with the ``k`` highest inner products per query, best first (exact, chunked).

    Ties keep matrix order, so a query that is a row of ``matrix`` finds itself first."""
    m = np.asarray(matrix, dtype=np.float32)
    k = min(k, len(m))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        sims = np.asarray(queries[start:start + chunk], dtype=np.float32) @ m.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(m) else np.tile(np.arange(len(m)), (len(sims), 1))
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start:start + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def content_relative(style: np.ndarray, reference: np.ndarray, neighbours: np.ndarray, eps: float = 0.1,
                     floor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Residual of each style row against the median of its content neighbours' style rows.

    ``style`` (n, D) are the rows to transform, ``reference`` (N, D) the catalogue's raw style rows and
    ``neighbours`` (n, k) the reference rows that are each row's nearest on the content axis. ``floor``
    (D,) is the MAD floor; when None it is fitted here as ``eps`` times the median over the rows of
    their MADs, raised per dimension to the median over dimensions (without that, VGG's 84 of 1920
    style_in dimensions whose MAD is mostly 0 dominated the residuals: SSDC-P@10 0.30 instead of 0.91).
    Pass the fitted floor when transforming queries against a built catalogue. Returns (residuals
    float32 (n, D), floor).
    """
    x = np.asarray(style)
    ref = np.asarray(reference)
    nb = np.asarray(neighbours)
    if x.ndim != 2 or ref.ndim != 2 or x.shape[1] != ref.shape[1]:
        raise ValueError(f"style {x.shape} and reference {ref.shape} must be (n, D) and (N, D) with one D")
    _check_neighbours(nb, len(x), len(ref))
    centre = np.empty(x.shape, dtype=np.float32)
    mad = np.empty(x.shape, dtype=np.float32)
    for rows in _row_chunks(len(x), x.shape[1] * nb.shape[1]):  # (rows, k, D) float64 at a time
        group = ref[nb[rows]].astype(np.float64)
        centre[rows] = np.median(group, axis=1)
        mad[rows] = np.median(np.abs(group - centre[rows][:, None, :]), axis=1)
    if floor is None:
        typical = np.median(mad, axis=0)
        floor = eps * np.maximum(typical, np.median(typical))
        floor = np.maximum(floor, 1e-12)
    floor = np.asarray(floor, dtype=np.float64)
    if floor.shape != (x.shape[1],):
        raise ValueError(f"floor must have shape ({x.shape[1]},), got {floor.shape}")
    return ((x - centre) / (mad + floor)).astype(np.float32), floor.astype(np.float32)


def expand_rows(rows: np.ndarray, matrix: np.ndarray, candidates: np.ndarray, excluded: np.ndarray,
                m: int) -> np.ndarray:
    """Each row plus its ``m`` most similar candidate rows of ``matrix`` that are not among its
    ``excluded`` rows, L2-normalised (database-side augmentation).

    ``rows`` (n, D) are unit axis rows, ``matrix`` (N, D) the catalogue's rows of that axis before
    expansion, ``candidates`` (n, c) each row's nearest matrix rows (any order; c >= m + the excluded
    ones among them) and ``excluded`` (n, k) the rows it may not take (its content neighbours, itself
    included when indexed). A row with fewer than ``m`` admissible candidates takes what there is.
    Returns float32 (n, D)."""
    x = np.asarray(rows, dtype=np.float32)
    cand, exc = np.asarray(candidates), np.asarray(excluded)
    _check_neighbours(cand, len(x), len(matrix))
    _check_neighbours(exc, len(x), len(matrix))
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    out = np.empty(x.shape, dtype=np.float32)
    for part in _row_chunks(len(x), x.shape[1] * cand.shape[1]):  # (rows, c, D) at a time
        c = cand[part]
        gathered = np.asarray(matrix[c.ravel()], dtype=np.float32).reshape(*c.shape, -1)
        scores = np.einsum("ncd,nd->nc", gathered, x[part])
        scores[(c[:, :, None] == exc[part][:, None, :]).any(axis=2)] = -np.inf
        best = np.argsort(-scores, axis=1, kind="stable")[:, :m]
        keep = np.isfinite(np.take_along_axis(scores, best, axis=1))
        out[part] = x[part] + (np.take_along_axis(gathered, best[:, :, None], axis=1) * keep[:, :, None]).sum(axis=1)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _check_neighbours(nb: np.ndarray, n: int, n_reference: int) -> None:
    if nb.ndim != 2 or len(nb) != n or nb.shape[1] == 0:
        raise ValueError(f"neighbours must be ({n}, k >= 1) reference rows, got shape {nb.shape}")
    if nb.min(initial=0) < 0 or nb.max(initial=0) >= n_reference:
        raise ValueError(f"neighbours index rows outside the reference (0..{n_reference - 1})")


def _row_chunks(n: int, values_per_row: int, budget: int = 2**24) -> list[slice]:
    """Row slices whose gathered neighbour groups hold about ``budget`` values (128 MB of float64)."""
    step = max(1, budget // max(values_per_row, 1))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def style_relative_content(content: np.ndarray, reference: np.ndarray, neighbours: np.ndarray,
                           alpha: float) -> np.ndarray:
    """Content rows minus ``alpha`` times the median of their style neighbours' content rows.

    ``content`` (n, D) are the rows to transform, ``reference`` (N, D) the catalogue's content rows
    (before this step) and ``neighbours`` (n, k) each row's nearest reference rows on the style axis.
    Returns float32 (n, D); the caller centres and L2-normalises as for any axis."""
    x = np.asarray(content)
    ref = np.asarray(reference)
    nb = np.asarray(neighbours)
    _check_neighbours(nb, len(x), len(ref))
    out = np.empty(x.shape, dtype=np.float32)
    for rows in _row_chunks(len(x), x.shape[1] * nb.shape[1]):
        out[rows] = x[rows] - alpha * np.median(ref[nb[rows]].astype(np.float64), axis=1)
    return out
