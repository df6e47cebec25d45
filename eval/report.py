"""The analysts' report: per-item metrics and aggregates as CSV/JSON, plots, contact sheets, one HTML page.

A run directory holds either ``metrics.csv`` (metrics already computed: every numeric column is a
metric, an optional ``method`` column groups rows, optional content/style/stylized columns name the
images) or ``triplets.csv`` (columns content, style, stylized[, method]), whose E and C are computed
here with :class:`styleaxis.eval.ec.ECEvaluator`. :func:`write_report` then writes, atomically:

- ``metrics.csv`` / ``metrics.json``: one row per item, and (JSON) the aggregates and notes;
- ``aggregate.csv``: n, mean, std and median of every metric per method, plus an ``ALL`` row;
- ``distributions.png``: a histogram of each metric, one colour per method;
- ``ec_scatter.png``: E against C, one colour per method, method means as large markers
  (Yeh et al.'s EC plot);
- ``best_worst_<metric>.png``: contact sheets (content | style | stylised) of the best and worst items;
- ``neighbours.csv`` and a section of nearest neighbours per axis, when the caller passes them
  (eval does not search indexes itself: ``styleaxis eval report --index`` computes them);
- ``report.html`` tying it together.

Plots use matplotlib's object API on the Agg canvas, so no global backend is switched.
"""
from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from .ec import TRIPLET_COLUMNS, ECConfig, ECEvaluator, read_triplets
from .io import ImageLike, atomic_write, load_image, to_hwc_uint8

__all__ = [
    "ReportConfig",
    "METRICS_FILE",
    "TRIPLETS_FILE",
    "ALL_GROUP",
    "load_run",
    "metric_columns",
    "aggregate",
    "plot_distributions",
    "plot_ec_scatter",
    "contact_sheet",
    "neighbours_html",
    "write_report",
]

METRICS_FILE, TRIPLETS_FILE = "metrics.csv", "triplets.csv"
#: the aggregate row over every item, beside the per-method rows.
ALL_GROUP = "ALL"
#: metrics drawn as contact sheets, with the direction that is "best".
_SHEET_METRICS = ("E", "C")


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows.

    Attributes:
        title: page title.
        group_by: column that names the method of each item (missing -> one group, ``all``).
        sheet_items: best and worst items per contact sheet.
        thumb: side of a contact-sheet thumbnail in pixels.
        max_table_rows: per-item rows shown in the HTML (all of them are in metrics.csv).
    """

    title: str = "styleaxis evaluation report"
    group_by: str = "method"
    sheet_items: int = 4
    thumb: int = 128
    max_table_rows: int = 200

    def __post_init__(self) -> None:
        if self.sheet_items < 1 or self.thumb < 16 or self.max_table_rows < 1:
            raise ValueError(f"sheet_items, max_table_rows must be >= 1 and thumb >= 16, got {self}")


def load_run(run_dir: str | os.PathLike, evaluator: ECEvaluator | None = None,
             ec_config: ECConfig = ECConfig()) -> tuple[pd.DataFrame, list[str]]:
    """The per-item table of a run directory and notes for the reader.

    ``metrics.csv`` is read as is; otherwise ``triplets.csv`` is evaluated (E, C) with ``evaluator``
    (or a new one built from ``ec_config``); its encoder fallback note, if any, is returned.
    """
    run_dir = Path(run_dir)
    if (run_dir / METRICS_FILE).is_file():
        table = pd.read_csv(run_dir / METRICS_FILE)
        if not metric_columns(table):
            raise ValueError(f"{run_dir / METRICS_FILE}: no numeric metric column in {list(table.columns)}")
        for col in TRIPLET_COLUMNS:  # image paths, like the triplet CSV's, are relative to the run
            if col in table.columns:
                table[col] = [p if os.path.isabs(p) else str(run_dir / p) for p in table[col].astype(str)]
        return table, []
    if (run_dir / TRIPLETS_FILE).is_file():
        evaluator = evaluator or ECEvaluator(ec_config)
        table = evaluator.evaluate(read_triplets(run_dir / TRIPLETS_FILE))
        return table, [evaluator.note] if evaluator.note else []
    raise FileNotFoundError(f"{run_dir}: no {METRICS_FILE} or {TRIPLETS_FILE} "
                            f"(triplets.csv needs columns {', '.join(TRIPLET_COLUMNS)}[, method])")


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric columns: every numeric column (E and C first when present)."""
    numeric = [c for c in table.columns
               if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
    return [m for m in _SHEET_METRICS if m in numeric] + [c for c in numeric if c not in _SHEET_METRICS]


def _groups(table: pd.DataFrame, by: str) -> pd.Series:
    return table[by].astype(str) if by in table.columns else pd.Series("all", index=table.index)


def aggregate(table: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """n and mean/std/median of every metric per method, plus an ``ALL`` row (index: method)."""
    metrics = metric_columns(table)
    groups = _groups(table, by)
    parts = [(name, table.loc[groups == name]) for name in sorted(groups.unique())] + [(ALL_GROUP, table)]
    rows = []
    for name, part in parts:
        row: dict[str, object] = {by: name, "n": len(part)}
        for m in metrics:
            values = part[m].astype(float)
            row |= {f"{m}_mean": values.mean(), f"{m}_std": values.std(ddof=0), f"{m}_median": values.median()}
        rows.append(row)
    return pd.DataFrame(rows).set_index(by)


def _save_figure(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _colours(names: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def plot_distributions(table: pd.DataFrame, path: str | os.PathLike, by: str = "method") -> Path:
    """One histogram panel per metric, one colour per method; PNG at ``path``."""
    metrics = metric_columns(table)
    groups = _groups(table, by)
    names = sorted(groups.unique())
    colours = _colours(names)
    fig = Figure(figsize=(4.0 * len(metrics), 3.2))
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        values = table[m].astype(float)
        finite = values[np.isfinite(values)]
        bins = np.histogram_bin_edges(finite, bins=min(20, max(5, len(finite)))) if len(finite) else 10
        for name in names:
            ax.hist(values[(groups == name) & np.isfinite(values)], bins=bins, alpha=0.6, color=colours[name],
                    label=name)
        ax.set_xlabel(m)
        ax.set_ylabel("items")
        ax.set_title(f"{m} distribution")
        if i == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, Path(path))


def plot_ec_scatter(table: pd.DataFrame, path: str | os.PathLike, by: str = "method") -> Path:
    """Effectiveness E (y) against coherence C (x), one colour per method, means as large markers."""
    for col in ("E", "C"):
        if col not in table.columns:
            raise ValueError(f"the EC scatter needs columns E and C, got {list(table.columns)}")
    groups = _groups(table, by)
    names = sorted(groups.unique())
    colours = _colours(names)
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for name in names:
        part = table.loc[groups == name]
        ax.scatter(part["C"], part["E"], s=18, alpha=0.7, color=colours[name], label=name)
        ax.scatter(part["C"].mean(), part["E"].mean(), s=160, marker="*", color=colours[name], edgecolors="black")
    ax.set_xlabel("coherence C = SSIM(stylised, content)")
    ax.set_ylabel("effectiveness E = -log mean KL")
    ax.set_title("EC plot (stars: method means)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, Path(path))


def _thumbnail(image: ImageLike, side: int) -> Image.Image:
    """The image fitted into a side x side white square; a missing file becomes a labelled grey box."""
    box = Image.new("RGB", (side, side), "white")
    if isinstance(image, (str, os.PathLike)) and not Path(image).is_file():
        box.paste((200, 200, 200), (0, 0, side, side))
        ImageDraw.Draw(box).text((4, side // 2 - 6), "missing file", fill="black")
        return box
    img = Image.fromarray(to_hwc_uint8(load_image(image)))
    img.thumbnail((side, side), Image.BICUBIC)
    box.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return box


def contact_sheet(table: pd.DataFrame, metric: str, path: str | os.PathLike, n: int = 4, thumb: int = 128,
                  by: str = "method") -> Path:
    """A PNG of the ``n`` best (left) and ``n`` worst (right) items by ``metric``: content | style | stylised."""
    missing = [c for c in (*TRIPLET_COLUMNS, metric) if c not in table.columns]
    if missing:
        raise ValueError(f"a contact sheet needs columns {missing}; table has {list(table.columns)}")
    ranked = table.loc[np.isfinite(table[metric].astype(float))].sort_values(metric, ascending=False, kind="stable")
    panels = {f"best {metric}": ranked.head(n), f"worst {metric}": ranked.tail(n).iloc[::-1]}
    pad, head, cap = 6, 34, 16
    panel_w = 3 * (thumb + pad)
    rows = max(len(p) for p in panels.values())
    sheet = Image.new("RGB", (2 * panel_w + 3 * pad, head + rows * (thumb + cap + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    groups = _groups(table, by)
    for p, (title, part) in enumerate(panels.items()):
        x0 = pad + p * (panel_w + pad)
        draw.text((x0, 4), title, fill="darkred")
        for c, col in enumerate(TRIPLET_COLUMNS):
            draw.text((x0 + c * (thumb + pad), 18), col, fill="black")
        for r, (idx, item) in enumerate(part.iterrows()):
            y = head + r * (thumb + cap + pad)
            for c, col in enumerate(TRIPLET_COLUMNS):
                sheet.paste(_thumbnail(item[col], thumb), (x0 + c * (thumb + pad), y))
            scores = "  ".join(f"{m}={float(item[m]):.3f}" for m in _SHEET_METRICS if m in item.index)
            draw.text((x0, y + thumb + 2), f"{groups[idx]}  {scores}"[: panel_w // 6], fill="black")
    return atomic_write(Path(path), lambda tmp: sheet.save(tmp, format="PNG"))


def neighbours_html(neighbours: pd.DataFrame) -> str:
    """HTML for "nearest neighbours per axis for sample queries": one block per query, one table per axis.

    ``neighbours`` has columns query, axis, rank, video_id and any scores (computed by the caller,
    e.g. with ``styleaxis.index.search.Searcher``); rows are shown in rank order.
    """
    missing = [c for c in ("query", "axis", "rank", "video_id") if c not in neighbours.columns]
    if missing:
        raise ValueError(f"neighbours table lacks columns {missing}; got {list(neighbours.columns)}")
    blocks = []
    for query, per_query in neighbours.groupby("query", sort=False):
        tables = []
        for axis, rows in per_query.groupby("axis", sort=False):
            shown = rows.sort_values("rank").drop(columns=["query", "axis"])
            tables.append(f'<div class="nn"><h4>{html.escape(str(axis))}</h4>'
                          f'{shown.to_html(index=False, float_format=lambda v: f"{v:.3f}")}</div>')
        blocks.append(f"<h3>query {html.escape(str(query))}</h3>{''.join(tables)}")
    return "".join(blocks)


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))  # NaN -> null, numpy scalars -> JSON numbers


def _fmt4(value: float) -> str:
    return f"{value:.4f}"


def _write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _short_paths(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for col in TRIPLET_COLUMNS:
        if col in shown.columns:
            shown[col] = [Path(p).name if isinstance(p, (str, os.PathLike)) else "(array)" for p in shown[col]]
    return shown


def write_report(table: pd.DataFrame, out_dir: str | os.PathLike, neighbours: pd.DataFrame | None = None,
                 config: ReportConfig = ReportConfig(), notes: Sequence[str] = ()) -> Path:
    """Write the CSV/JSON tables, the plots, the contact sheets and ``report.html`` into ``out_dir``.

    Returns the HTML path. The E-vs-C plot needs E and C columns, the contact sheets the
    content/style/stylized columns; each is left out (and said so on the page) when they are absent.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not metric_columns(table):
        raise ValueError(f"nothing to report: no numeric metric column in {list(table.columns)}")
    agg = aggregate(table, config.group_by)
    notes = list(notes)
    if "encoder" in table.columns:
        notes.append("EC encoder: " + ", ".join(sorted(table["encoder"].astype(str).unique())))

    _write_text(out / "metrics.csv", table.to_csv(index=False))
    _write_text(out / "aggregate.csv", agg.to_csv())
    _write_text(out / "metrics.json", json.dumps(
        {"items": _records(table), "aggregate": _records(agg.reset_index()), "notes": notes}, indent=2))

    images = [plot_distributions(table, out / "distributions.png", config.group_by)]
    if {"E", "C"} <= set(table.columns):
        images.append(plot_ec_scatter(table, out / "ec_scatter.png", config.group_by))
    else:
        notes.append("no E-vs-C plot: the table lacks E or C")
    if set(TRIPLET_COLUMNS) <= set(table.columns):
        for m in _SHEET_METRICS:
            if m in table.columns:
                images.append(contact_sheet(table, m, out / f"best_worst_{m}.png", config.sheet_items,
                                            config.thumb, config.group_by))
    else:
        notes.append("no contact sheets: the table lacks content/style/stylized image columns")

    nn_section = ""
    if neighbours is not None:
        _write_text(out / "neighbours.csv", neighbours.to_csv(index=False))
        nn_section = f"<h2>Nearest neighbours per axis</h2>{neighbours_html(neighbours)}"

    shown = _short_paths(table.head(config.max_table_rows))
    more = (f"<p>First {config.max_table_rows} of {len(table)} items; all are in metrics.csv.</p>"
            if len(table) > config.max_table_rows else "")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(config.title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:right}}
table{{border-collapse:collapse}} tr:nth-child(even){{background:#f4f4f4}} .nn{{display:inline-block;
vertical-align:top;margin-right:2em}} img{{max-width:100%;margin:8px 0}}</style></head><body>
<h1>{html.escape(config.title)}</h1>
<p>{len(table)} items. E = effectiveness (Yeh et al. 2018, higher = closer to the style's feature
statistics), C = coherence (SSIM of stylised and content, Wang et al. 2004).</p>
<ul>{''.join(f'<li>{html.escape(n)}</li>' for n in notes)}</ul>
<h2>Aggregates</h2>{agg.to_html(float_format=_fmt4)}
<h2>Plots</h2>{''.join(f'<img src="{p.name}" alt="{p.stem}">' for p in images)}
{nn_section}
<h2>Items</h2>{more}{shown.to_html(index=False, float_format=_fmt4)}
<p>Files: metrics.csv, metrics.json, aggregate.csv{', neighbours.csv' if neighbours is not None else ''}.</p>
</body></html>"""
    return _write_text(out / "report.html", page)
