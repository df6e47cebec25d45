"""Retrieval metrics on a labelled catalogue: does each axis see its own factor and ignore the other?

Every item has a content label and a style label. For a query q and an axis, the other items are
ranked by cosine similarity (ties broken by catalogue order). With k = 10:

- **SSDC-P@k** (style axis; "same style, different content"): among the k nearest items whose
  content differs from q's, the share with q's style.
- **SCDS-P@k** (content axis; "same content, different style"): among the k nearest items whose
  style differs from q's, the share with q's content.
- **P@R** (R-precision) of either: the same with k = R, the number of such items q has (so every
  query can score 1 whatever the catalogue's design; P@k needs k below the smallest R).
- **mAP** per axis: average precision over the whole ranking, relevant = same style (style axis)
  or same content (content axis).
- **leakage**: style axis, the share of the k nearest that share q's content but not its style;
  content axis, the share that share q's style but not its content. 0 is ideal.

Each metric comes with its chance level, the expected value under a uniformly random ranking:
the prevalence of relevant items among the candidates for P@k and leakage, and for AP, with R
relevant among M ranked items, E[AP] = (R-1)/(M-1) + H_M (M-R) / (M (M-1)) (H_M the M-th harmonic
number; derived from the hypergeometric count of relevant items above each relevant one).

Everything here is numpy on (N, D) matrices and label arrays, returning pandas DataFrames; an axis
made of several descriptors is built as the index builds it (:func:`axis_matrix`).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..embed.recipe import DEFAULT_AXES, RelativeConfig, centre_unit, combine_blocks, exact_axes
from .io import atomic_write

__all__ = [
    "Axis", "PRECISION_NAMES", "axis_of", "axis_matrix", "largest_k",
    "per_query_metrics",
    "summarize",
    "RetrievalReport", "evaluate", "plot_per_style",
]

Axis = Literal["style", "content"]
PRECISION_NAMES: dict[str, str] = {"style": "SSDC-P@{k}", "content": "SCDS-P@{k}"}
_METRICS = ("precision", "precision_r", "ap", "leakage")


def axis_of(descriptor: str) -> Axis:
    """The axis a descriptor serves: ``style*`` columns are style, everything else content."""
    return "style" if descriptor.startswith("style") else "content"


def axis_matrix(blocks: Sequence[np.ndarray], center: bool = True) -> np.ndarray:
    """One axis from descriptor blocks, as ``styleaxis.index`` builds it: each block centred on the
    catalogue mean (when ``center``) and L2-normalised, then concatenated with weight 1/sqrt(n), so
    the inner product is the mean cosine over the blocks."""
    if not blocks:
        raise ValueError("axis_matrix needs at least one descriptor block")
    n = len(blocks[0])
    parts = []
    for i, block in enumerate(blocks):
        b = np.asarray(block, dtype=np.float64)
        if b.ndim != 2 or len(b) != n:
            raise ValueError(f"block {i}: expected an ({n}, D) matrix, got shape {b.shape}")
        parts.append(centre_unit(b) if center else b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12))
    return combine_blocks(parts)


def largest_k(contents: Sequence[Any] | np.ndarray, styles: Sequence[Any] | np.ndarray, cap: int = 10) -> int:
    """The largest P@k cut-off (at most ``cap``) every query of a labelled catalogue can fill with right
    answers on the style axis: its look's other contents, at least (the smallest look's contents) - 1."""
    per_look = pd.DataFrame({"content": np.asarray(contents), "style": np.asarray(styles)}).groupby("style")
    return int(max(1, min(cap, per_look["content"].nunique().min() - 1)))


def _expected_ap(relevant: int, ranked: int) -> float:
    """E[AP] of a uniformly random ranking of ``ranked`` items of which ``relevant`` are relevant."""
    if relevant == 0:
        return float("nan")
    if ranked == 1:
        return 1.0
    harmonic = float(np.sum(1.0 / np.arange(1, ranked + 1)))
    r, m = relevant, ranked
    return (r - 1) / (m - 1) + harmonic * (m - r) / (m * (m - 1))


def _labels(labels: Sequence[Any] | np.ndarray, n: int, what: str) -> np.ndarray:
    arr = np.asarray(labels).astype(str)
    if arr.shape != (n,):
        raise ValueError(f"{what} labels: expected {n} labels (one per row of the matrix), got shape {arr.shape}")
    return arr


def per_query_metrics(matrix: np.ndarray, contents: Sequence[Any] | np.ndarray, styles: Sequence[Any] | np.ndarray,
                      axis: Axis, k: int = 10, chunk: int = 1024) -> pd.DataFrame:
    """Metrics of every item as a query on one axis -> DataFrame with one row per query.

    ``matrix`` (N, D) is the axis (cosine similarity is used; rows need not be normalised). Columns:
    query, content, style, precision (SSDC-P@k or SCDS-P@k by ``axis``), ap, leakage, and the chance
    level of each (``*_chance``). A query with no candidate for a metric gets NaN there.
    """
    if axis not in PRECISION_NAMES:
        raise ValueError(f"axis must be 'style' or 'content', got {axis!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = np.asarray(matrix, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"expected an (N, D) matrix with N >= 2, got shape {x.shape}")
    n = len(x)
    content, style = _labels(contents, n, "content"), _labels(styles, n, "style")
    # relevant = the axis's own factor; "other" = the factor the axis must ignore
    own, other = (style, content) if axis == "style" else (content, style)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rows = []
    for start in range(0, n, chunk):
        sims = x[start: start + chunk] @ x.T
        for offset, row in enumerate(sims):
            q = start + offset
            order = np.argsort(-row, kind="stable")
            order = order[order != q]
            same_own, same_other = own[order] == own[q], other[order] == other[q]
            # P@k: among items that differ from q in the ignored factor, share sharing q's own factor
            pool = same_own[~same_other]
            precision = pool[:k].mean() if pool.size else np.nan
            relevant = int(pool.sum())
            precision_r = pool[:relevant].mean() if relevant else np.nan
            hits = np.flatnonzero(same_own)
            ap = (np.arange(1, hits.size + 1) / (hits + 1)).mean() if hits.size else np.nan
            leak = same_other & ~same_own
            prevalence = pool.mean() if pool.size else np.nan
            rows.append((q, content[q], style[q], precision, precision_r, ap, leak[:k].mean(), prevalence,
                         prevalence, _expected_ap(hits.size, order.size), leak.mean()))
    return pd.DataFrame(rows, columns=["query", "content", "style", "precision", "precision_r", "ap", "leakage",
                                       "precision_chance", "precision_r_chance", "ap_chance", "leakage_chance"])


def summarize(per_query: pd.DataFrame) -> dict[str, float]:
    """Means over queries of each metric and its chance level (mAP = mean of the queries' AP)."""
    cols = [c for m in _METRICS for c in (m, f"{m}_chance")]
    return {("map" if c == "ap" else "map_chance" if c == "ap_chance" else c): float(per_query[c].mean())
            for c in cols}


@dataclass(frozen=True)
class RetrievalReport:
    """What :func:`evaluate` returns.

    Attributes:
        table: one row per (axis, descriptors): the axis's precision metric name, its value, mAP,
            leakage and their chance levels.
        per_style: for the main axes, one row per style: SSDC-P@k, SCDS-P@k, mAP and leakage of both
            axes averaged over the queries of that style.
        per_query: the per-query rows of the main axes (column ``axis`` tells which).
        k: the cut-off of P@k and leakage.
    """

    table: pd.DataFrame
    per_style: pd.DataFrame
    per_query: pd.DataFrame
    k: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: k, the table and the per-style breakdown as lists of records."""
        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(frame.to_json(orient="records"))
        return {"k": self.k, "table": records(self.table), "per_style": records(self.per_style.reset_index())}

    def save(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write retrieval.json, retrieval.csv, per_style.csv and per_style.png into ``out_dir`` (atomically)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        return {
            "json": atomic_write(out / "retrieval.json", lambda tmp: tmp.write_text(text)),
            "table": atomic_write(out / "retrieval.csv", lambda tmp: self.table.to_csv(tmp, index=False)),
            "per_style": atomic_write(out / "per_style.csv", lambda tmp: self.per_style.to_csv(tmp)),
            "plot": plot_per_style(self.per_style, out / "per_style.png", self.k),
        }


def _column(axis: str, metric: str, k: int) -> str:
    # per-style column names: SSDC-P@10, SSDC-P@R, style_map, style_leakage, SCDS-P@10, SCDS-P@R, content_map, ...
    if metric in ("precision", "precision_r"):
        return PRECISION_NAMES[axis].format(k=k if metric == "precision" else "R")
    return f"{axis}_{'map' if metric == 'ap' else metric}"


def _row(axis: Axis, names: Sequence[str], per_query: pd.DataFrame, k: int) -> dict[str, Any]:
    return {"axis": axis, "descriptors": "+".join(names), "metric": PRECISION_NAMES[axis].format(k=k),
            **summarize(per_query)}


def evaluate(vectors: Mapping[str, np.ndarray], contents: Sequence[Any] | np.ndarray,
             styles: Sequence[Any] | np.ndarray, axes: Mapping[str, Sequence[str]] | None = None,
             k: int = 10, singles: bool = True, extra: Sequence[str] = (),
             relative: RelativeConfig | None = None) -> RetrievalReport:
    """Evaluate descriptor vectors ({name: (N, D)}) of a labelled catalogue on both axes.

    ``axes`` maps "style" and "content" to the descriptors combined into that axis (default: those of
    :data:`DEFAULT_AXES` present in ``vectors``, else every present descriptor of that axis, by
    :func:`axis_of`). With ``singles``, each descriptor of a multi-descriptor axis also gets a row of its
    own, and so does each descriptor named in ``extra`` (on the axis :func:`axis_of` gives it). Every
    block is centred on the catalogue and L2-normalised, as the index does, and the axes get the
    index's axis recipe (:func:`styleaxis.embed.recipe.exact_axes`, configured by ``relative``); a row
    for a single descriptor gets its content-relative step only.
    """
    if axes is None:
        axes = {}
        for axis in PRECISION_NAMES:
            default = [d for d in DEFAULT_AXES[axis] if d in vectors]
            axes[axis] = default or [d for d in vectors if axis_of(d) == axis]
    unknown = [d for names in (*axes.values(), extra) for d in names if d not in vectors]
    if unknown or set(axes) - set(PRECISION_NAMES):
        raise KeyError(f"axes {dict(axes)} name descriptors {unknown} or axes not among style/content; "
                       f"vectors hold {', '.join(vectors)}")
    rows, main = [], {}
    content_names = axes.get("content", ())
    matrices = exact_axes(vectors, axes, relative)
    for axis, names in axes.items():
        if not names:
            continue
        main[axis] = per_query_metrics(matrices[axis], contents, styles, axis, k)
        rows.append(_row(axis, names, main[axis], k))
        if singles and len(names) > 1:
            for name in names:
                pq = per_query_metrics(_single(vectors, name, content_names, relative), contents, styles, axis, k)
                rows.append(_row(axis, [name], pq, k))
    for name in extra:
        axis = axis_of(name)
        single = _single(vectors, name, content_names, relative)
        rows.append(_row(axis, [name], per_query_metrics(single, contents, styles, axis, k), k))
    if not main:
        raise ValueError("no descriptor to evaluate on either axis")
    per_query = pd.concat([pq.assign(axis=axis) for axis, pq in main.items()], ignore_index=True)
    per_style = pd.concat({_column(axis, m, k): pq.groupby("style", sort=False)[m].mean()
                           for axis, pq in main.items() for m in _METRICS}, axis=1)
    per_style.insert(0, "queries", main[next(iter(main))].groupby("style", sort=False).size())
    return RetrievalReport(table=pd.DataFrame(rows), per_style=per_style, per_query=per_query, k=k)


def _single(vectors: Mapping[str, np.ndarray], name: str, content: Sequence[str],
            relative: RelativeConfig | None) -> np.ndarray:
    """One descriptor alone as an axis: its content-relative step where it has one, no other step."""
    steps_off = replace(relative or RelativeConfig(), expand=0, content_alpha=0.0)
    axes = {"single": (name,), **({"content": tuple(content)} if content else {})}
    return exact_axes(vectors, axes, steps_off)["single"]


def plot_per_style(per_style: pd.DataFrame, path: str | os.PathLike[str], k: int = 10) -> Path:
    """Bar chart of the per-style breakdown (precision and leakage of each axis), saved as PNG (Agg)."""
    columns = [c for c in per_style.columns if c.startswith(("SSDC", "SCDS")) or c.endswith("leakage")]
    styles = list(per_style.index)
    fig = Figure(figsize=(max(6.0, 0.55 * len(styles) + 2), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(columns), 1)
    positions = np.arange(len(styles))
    for i, column in enumerate(columns):
        ax.bar(positions + (i - (len(columns) - 1) / 2) * width, per_style[column].to_numpy(dtype=float), width,
               label=column)
    ax.set_xticks(positions, styles, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(f"share of the top {k}")
    ax.set_title("retrieval per query style")
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
