"""Labelled catalogues, retrieval metrics and the content head from the command line.

Three standalone click commands; the lead attaches them as ``styleaxis eval catalog``,
``styleaxis eval retrieval`` and ``styleaxis train content-head``. :data:`commands` holds them in one
:class:`~styleaxis.cli_base.CliGroup` (same error mapping) for tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from styleaxis.cli_base import CliGroup

__all__ = ["catalog", "retrieval", "content_head", "commands"]

_SPLITS = ("easy", "hard", "unseen", "train")


def _names(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@click.command("catalog")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for images/ and catalog.csv (an interrupted build resumes).")
@click.option("--split", type=click.Choice(_SPLITS), default="easy", show_default=True,
              help="easy: pixel-aligned stylisations; hard: each item mildly cropped, flipped and down-scaled "
                   "before stylisation; unseen: hard, with colour grades and filters as styles; train: photos "
                   "and styles disjoint from the others, for `train content-head`.")
@click.option("--contents", default=None, help="Comma-separated photo names instead of the split's.")
@click.option("--styles", default=None, help="Comma-separated style names instead of the split's "
                                             "(identity, cin26-NN, photo-NAME, or a filter).")
@click.option("--short-side", type=click.IntRange(min=32), default=256, show_default=True,
              help="Photos' short side in pixels (augmented items are at most this).")
@click.option("--views", type=click.IntRange(min=1), default=1, show_default=True,
              help="Augmented copies per (content, style) (hard, unseen and train splits).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of augmentations and random filters.")
def catalog(out_dir: Path, split: str, contents: str | None, styles: str | None, short_side: int, views: int,
            seed: int) -> None:
    """Write a labelled catalogue: images of known content and style, and catalog.csv (path, content, style).

    Contents are photos that ship with scikit-image, scikit-learn and matplotlib; styles are made on the spot
    by the offline models (cin26 styles, arbitrary stylisation with other photos as style images, the
    original as `identity`) or, in the unseen split, by classic filters and colour grades.
    """
    from styleaxis.eval.catalog import CatalogConfig, build_catalog

    config = CatalogConfig(split=split, contents=_names(contents), styles=_names(styles), short_side=short_side,
                           views=views, seed=seed)
    csv = build_catalog(out_dir, config)
    click.echo(f"{len(config.items)} images; catalogue: {csv}")


@click.command("retrieval")
@click.option("--catalog", "catalog_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="catalog.csv with columns path, content, style (images or videos; paths "
                                  "relative to the CSV).")
@click.option("--descriptors", default="style_in,style_cin,style_eff,content", show_default=True,
              help="Comma-separated descriptors to embed. The axes are the index's defaults (style: style_eff, "
                   "content-relative; content: content) when embedded, else every style* / other descriptor; "
                   "each remaining descriptor is also scored alone.")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Cut-off of P@k and leakage.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write retrieval.json, retrieval.csv, per_style.csv and per_style.png here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (table and per-style breakdown) instead of text.")
@click.option("--short-side", type=click.IntRange(min=32), default=256, show_default=True,
              help="Frames are resized to this short side before embedding.")
@click.option("--max-keyframes", type=click.IntRange(min=1), default=8, show_default=True,
              help="Key frames averaged per video row.")
def retrieval(catalog_csv: Path, descriptors: str, k: int, out_dir: Path | None, as_json: bool, short_side: int,
              max_keyframes: int) -> None:
    """Embed a labelled catalogue and score both axes.

    SSDC-P@k (style axis): of the k nearest items whose content differs from the query's, the share with the
    query's style. SCDS-P@k (content axis): of the k nearest whose style differs, the share with the query's
    content. mAP per axis, and leakage: the share of the style axis's top k that shares content but not style
    (and the converse). Each metric is shown with its chance level; a per-style breakdown follows.
    """
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.eval.catalog import embed_catalog, read_catalog
    from styleaxis.eval.retrieval import DEFAULT_AXES, axis_of, evaluate

    names = _names(descriptors) or ()
    table = read_catalog(catalog_csv)
    vectors = embed_catalog(table, EmbedConfig(descriptors=names, short_side=short_side), max_keyframes,
                            progress=not as_json)
    axes = {axis: DEFAULT_AXES[axis] if set(DEFAULT_AXES[axis]) <= set(names)
            else tuple(n for n in names if axis_of(n) == axis) for axis in ("style", "content")}
    extra = [n for n in names if not any(n in used for used in axes.values())]
    report = evaluate(vectors, table["content"], table["style"], axes, k=k, extra=extra)
    if out_dir is not None:
        report.save(out_dir)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    fmt = {"float_format": lambda v: f"{v:.3f}"}
    click.echo(f"{len(table)} items, {table['content'].nunique()} contents, {table['style'].nunique()} styles")
    click.echo(report.table.to_string(index=False, **fmt))
    click.echo("\nper query style:")
    click.echo(report.per_style.to_string(**fmt))


@click.command("content-head")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: checkpoints/, features.pt, content_head.pt (+ .sha256, .json); a rerun resumes.")
@click.option("--catalog", "catalog_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Training catalog.csv (path, content, style). Default: build the `train` split "
                                 "(photos and styles disjoint from the evaluation splits) into OUT/catalog.")
@click.option("--views", type=click.IntRange(min=1), default=2, show_default=True,
              help="Augmented copies per (content, style) when the train split is built.")
@click.option("--steps", type=click.IntRange(min=1), default=600, show_default=True, help="Optimisation steps.")
@click.option("--contents-per-batch", type=click.IntRange(min=2), default=16, show_default=True)
@click.option("--views-per-content", type=click.IntRange(min=2), default=4, show_default=True,
              help="Styles per content in a batch (positives share content, not style).")
@click.option("--hidden", type=click.IntRange(min=1), default=256, show_default=True,
              help="Width of the head's hidden layer.")
@click.option("--grid", type=click.IntRange(min=1), default=4, show_default=True, help="Pooling grid side.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="AdamW learning rate (cosine decay).")
@click.option("--temperature", type=float, default=0.1, show_default=True, help="SupCon temperature.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
def content_head(out_dir: Path, catalog_csv: Path | None, views: int, steps: int, contents_per_batch: int,
                 views_per_content: int, hidden: int, grid: int, lr: float, temperature: float, seed: int,
                 device: str) -> None:
    """Train the content projection head on stylisations (supervised contrastive, Khosla et al. 2020).

    The head maps the frozen EfficientNet-Lite0 stage-5 map (WCT-whitened) through a position-wise MLP (a
    residual correction, zero at the start, so it starts as the `content` descriptor) to mirror-symmetric
    grid cells; positives are the same content in other styles. Prints the exported file and its sha256.
    """
    from styleaxis.embed.content_head import ContentHeadTrainConfig, train_content_head
    from styleaxis.eval.catalog import CatalogConfig, build_catalog, read_catalog

    if catalog_csv is None:
        catalog_csv = build_catalog(out_dir / "catalog", CatalogConfig(split="train", views=views))
    table = read_catalog(catalog_csv)
    if (table["kind"] == "video").any():
        raise ValueError(f"{catalog_csv}: the content head trains on images; video rows found")
    config = ContentHeadTrainConfig(out_dir=str(out_dir), steps=steps, contents_per_batch=contents_per_batch,
                                    views_per_content=views_per_content, hidden=hidden, grid=grid, lr=lr,
                                    temperature=temperature, seed=seed, device=device)
    items = list(zip(table["path"], table["content"], table["style"]))
    result = train_content_head(items, config)
    click.echo(f"step {result.step}; head: {result.model_path}  sha256 {result.sha256}")


@click.group(cls=CliGroup)
def commands() -> None:
    """The catalogue, retrieval and content-head commands under one group (for tests)."""


for _command in (catalog, retrieval, content_head):
    commands.add_command(_command)
