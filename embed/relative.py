"""The catalogue steps of the axes, as pure numpy functions (styleaxis.embed.recipe chains them).

- :func:`content_relative`: a style vector measured against the items that show the same content.
  Style statistics mix the rendering (a filter, a grade, a painter's style) with the photo's own
  colours and textures; a neural stylisation overwrites the photo's statistics, a mild grade or the
  unstylised look does not. Each style row is compared with its ``k`` nearest neighbours on the
  content axis: r = (s - median(S_nb)) / (MAD(S_nb) + floor), per dimension. The median estimates what
  is typical for that content, the MAD how much that content varies; ``floor`` keeps a content whose
  neighbours barely vary, and a near-dead dimension, from blowing noise up. The residual is what the
  rendering adds, whatever the photo.
- :func:`expand_rows`: database-side augmentation (Arandjelovic & Zisserman 2012): a row plus its
  ``m`` nearest rows among the items that are not its content neighbours, L2-normalised, so items
  that share a rendering pool their evidence.
- :func:`style_relative_content`: the converse for the content axis: a content vector minus
  ``alpha`` times the median content vector of its nearest items on the style axis, i.e. minus what
  the items rendered like it have in common.

What each step measured is in bench/RESULTS.md; the neighbours come from the index's FAISS indexes
or, in evaluation, from :func:`nearest_rows` (exact).
"""
from __future__ import annotations

import numpy as np

__all__ = ["nearest_rows", "content_relative", "expand_rows", "style_relative_content"]


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
