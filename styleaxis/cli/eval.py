"""``styleaxis eval ...``: EC metrics, SSIM, the analysts' report, labelled catalogues and retrieval metrics."""
from __future__ import annotations

import json
import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import pandas as pd

from styleaxis.cli.common import CliGroup, field_default, option, split_names

__all__ = ["eval_group", "nearest_neighbours"]

_PATH = click.Path(exists=True, path_type=Path)
_SPLITS = ("easy", "hard", "unseen", "train")
_EC = "styleaxis.eval.ec.ECConfig"
_CATALOG = "styleaxis.eval.catalog.CatalogConfig"
_DESIGN = "styleaxis.eval.designs.DesignConfig"
_EMBED = "styleaxis.embed.embedder.EmbedConfig"
_POLICY = "styleaxis.media.video.KeyframePolicy"


@click.group("eval", cls=CliGroup)
def eval_group() -> None:
    """Evaluate stylisations and similarity: EC metrics (Yeh et al. 2018), SSIM, HTML reports.

    E (effectiveness): how close a stylised image's VGG feature statistics are to the style image's;
    C (coherence): SSIM between the stylised and the content image.
    """


def _ec_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that build an ECConfig, shared by `eval ec` and `eval report`."""
    options = [
        option("model", "--encoder", mirrors=(_EC, "encoder"), show_default=True,
                     help="Registry id of the EC encoder; auto = vgg19 when its weights load, else vgg16-hed."),
        option("model", "--directions", mirrors=(_EC, "directions"), show_default=True, type=click.IntRange(min=1),
                     help="R, the number of random projection directions."),
        option("model", "--seed", mirrors=(_EC, "seed"), show_default=True, help="Seed of the random directions."),
        option("model", "--short-side", mirrors=(_EC, "short_side"), show_default=True, type=click.IntRange(min=0),
                     help="Resize images to this short side before the encoder (0 keeps their size)."),
        option("model", "--grey", is_flag=True, help="Coherence on grey (BT.709 luma) instead of RGB."),
        option("performance", "--device", type=click.Choice(["auto", "cpu", "cuda"]), mirrors=(_EC, "device"),
                       show_default=True, help="Where the encoder runs (auto: CUDA when present)."),
    ]
    for add in reversed(options):
        command = add(command)
    return command


def _ec_config(encoder: str, directions: int, seed: int, short_side: int, grey: bool, device: str,
               progress: bool) -> Any:
    from styleaxis.eval.ec import ECConfig

    return ECConfig(encoder=encoder, directions=directions, seed=seed, short_side=short_side or None,
                    coherence_color="grey" if grey else "rgb", device=device, progress=progress)


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Library warnings (e.g. the encoder fallback) become one `warning:` line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)


@eval_group.command("ec")
@option("input", "--content", type=_PATH, default=None, help="Content image, or folder of them (matched by file stem).")
@option("input", "--style", type=_PATH, default=None, help="Style image, or folder of them (matched by file stem).")
@option("input", "--stylized", type=_PATH, default=None, help="Stylised image, or folder of them.")
@option("input", "--csv", "csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Instead of the three paths: a CSV with columns content,style,stylized[,method] "
                   "(relative paths are relative to the CSV).")
@option("input", "--method", default=None, help="Method name for folder input (default: the stylised folder's name).")
@option("output", "--out", "out_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the per-item table to this CSV.")
@option("output", "--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_ec_options
def ec(content: Path | None, style: Path | None, stylized: Path | None, csv_path: Path | None, method: str | None,
       out_csv: Path | None, as_json: bool, **ec_options: Any) -> None:
    """Effectiveness E and coherence C of stylised images (Yeh et al. 2018).

    Give --content, --style and --stylized (single files, or folders whose files are paired by
    name), or --csv. Prints E, C and the encoder used per item, and the mean per method. With no
    VGG19 weights on the machine the offline VGG16 is used, and a warning says so.
    """
    from styleaxis.eval.ec import ECEvaluator, match_triplets, read_triplets
    from styleaxis.eval.io import atomic_write

    given = [p is not None for p in (content, style, stylized)]
    if csv_path is not None and any(given):
        raise click.UsageError("pass either --csv or --content/--style/--stylized, not both")
    if csv_path is None and not all(given):
        raise click.UsageError("pass --content, --style and --stylized (or --csv)")
    triplets = read_triplets(csv_path) if csv_path is not None else match_triplets(content, style, stylized, method)
    with _warnings_to_stderr():
        evaluator = ECEvaluator(_ec_config(progress=len(triplets) > 8, **ec_options))
    table = evaluator.evaluate(triplets)
    if out_csv is not None:
        atomic_write(out_csv, lambda tmp: table.to_csv(tmp, index=False))
    if as_json:
        click.echo(json.dumps({"encoder": evaluator.encoder_name, "encoder_note": evaluator.note,
                               "items": json.loads(table.to_json(orient="records"))}, indent=2))
        return
    if len(table) == 1:
        row = table.iloc[0]
        click.echo(f"E {row['E']:.4f}  C {row['C']:.4f}  encoder {evaluator.encoder_name}")
        return
    shown = table.assign(**{c: table[c].map(lambda p: Path(p).name) for c in ("content", "style", "stylized")})
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if "method" in table.columns:
        click.echo("\nmean per method:")
        click.echo(table.groupby("method")[["E", "C"]].mean().to_string(float_format=lambda v: f"{v:.4f}"))


@eval_group.command("ssim")
@click.argument("a", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("b", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--grey", is_flag=True, help="Compare BT.709 luma instead of the mean over R, G, B.")
def ssim_command(a: Path, b: Path, grey: bool) -> None:
    """Print the SSIM of two images of one size (Wang et al. 2004: Gaussian window 11, sigma 1.5)."""
    from styleaxis.eval.ssim import ssim

    click.echo(f"{ssim(a, b, color='grey' if grey else 'rgb'):.6f}")


def nearest_neighbours(index_dir: str | Path, queries: list[str] | None = None, k: int = 5,
                       n_queries: int = 3, seed: int = 0) -> pd.DataFrame:
    """Nearest neighbours on each axis (style, content) for sample queries, as the report's table.

    ``queries`` default to ``n_queries`` video ids drawn with ``seed`` from the index. Columns: query,
    axis, rank, video_id, style_score, content_score.
    """
    from styleaxis.index.search import Searcher

    searcher = Searcher.load(index_dir)
    if not queries:
        ids = sorted(searcher.video_ids)
        queries = random.Random(seed).sample(ids, min(n_queries, len(ids)))
    rows = []
    for q in queries:
        for axis in ("style", "content"):
            for r in searcher.search(q, mode=axis, k=k):
                rows.append({"query": q, "axis": axis, "rank": r.rank, "video_id": r.video_id,
                             "style_score": r.style_score, "content_score": r.content_score})
    return pd.DataFrame(rows)


@eval_group.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option("output", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the report goes (default RUN_DIR/report).")
@option("input", "--index", "index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A styleaxis index directory: adds nearest neighbours per axis for sample queries.")
@option("input", "--query", "queries", multiple=True, help="Video id to show neighbours for (repeatable; "
                                                         "default: 3 ids drawn from the index).")
@option("output", "-k", "k", default=5, show_default=True, type=click.IntRange(min=1), help="Neighbours per axis.")
@option("output", "--title", default="styleaxis evaluation report", show_default=True, help="Page title.")
@_ec_options
def report(run_dir: Path, out_dir: Path | None, index_dir: Path | None, queries: tuple[str, ...], k: int,
           title: str, **ec_options: Any) -> None:
    """Metrics per item and per method (CSV, JSON) and an HTML report with plots and contact sheets.

    RUN_DIR holds metrics.csv (metrics already computed; every numeric column is a metric) or
    triplets.csv (columns content,style,stylized[,method]; E and C are computed). The report has
    metric distributions, the E-vs-C plot per method, contact sheets of the best and worst items
    and, with --index, nearest neighbours per axis for sample queries.
    """
    from styleaxis.eval.report import ReportConfig, load_run, write_report

    if queries and index_dir is None:
        raise click.UsageError("--query needs --index (the index to find neighbours in)")
    with _warnings_to_stderr():
        table, notes = load_run(run_dir, ec_config=_ec_config(progress=True, **ec_options))
    neighbours = nearest_neighbours(index_dir, list(queries), k) if index_dir is not None else None
    page = write_report(table, out_dir or run_dir / "report", neighbours, ReportConfig(title=title), notes)
    click.echo(f"{len(table)} items; report: {page}")


@eval_group.command("catalog")
@option("output", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for images/ and catalog.csv (an interrupted build resumes).")
@option("input", "--split", type=click.Choice(_SPLITS), mirrors=(_CATALOG, "split"), show_default=True,
              help="easy: pixel-aligned stylisations; hard: each item mildly cropped, flipped and down-scaled "
                   "before stylisation; unseen: hard, with colour grades and filters as styles; train: photos "
                   "and styles disjoint from the others, for `train content-head`.")
@option("input", "--contents", default=None, help="Comma-separated photo names instead of the split's.")
@option("input", "--styles", default=None, help="Comma-separated style names instead of the split's "
                                             "(identity, cin26-NN, photo-NAME, or a filter).")
@option("output", "--short-side", type=click.IntRange(min=32), mirrors=(_CATALOG, "short_side"), show_default=True,
              help="Photos' short side in pixels (augmented items are at most this).")
@option("input", "--views", type=click.IntRange(min=1), mirrors=(_CATALOG, "views"), show_default=True,
              help="Augmented copies per (content, style) (hard, unseen and train splits).")
@option("input", "--seed", type=int, mirrors=(_CATALOG, "seed"), show_default=True,
        help="Seed of augmentations and random filters.")
@option("input", "--design", type=click.Choice(["factorial", "sparse", "singleton"]), default=None,
        help="Build a designed catalogue instead of a split: looks drawn from parameterised families (never "
             "used in training) on hundreds of contents. factorial: every content in every look; sparse: each "
             "content in a few looks (a subset of factorial's images); singleton: each content in one look, as "
             "most of a real catalogue.")
@option("input", "--looks-per-family", type=click.IntRange(min=1), mirrors=(_DESIGN, "looks_per_family"),
        show_default=True, help="Looks drawn from each of the 11 families, plus the unstylised look.")
@option("input", "--per-look", type=click.IntRange(min=10), mirrors=(_DESIGN, "per_look"), show_default=True,
        help="singleton: items per look.")
@option("input", "--looks-per-content", type=click.IntRange(min=2), mirrors=(_DESIGN, "looks_per_content"),
        show_default=True, help="sparse: looks each content appears in.")
@option("input", "--n-contents", type=click.IntRange(min=0), mirrors=(_DESIGN, "contents"), show_default=True,
        help="Distinct contents (0: the design's default: 22 for factorial and sparse, per-look x looks for "
             "singleton).")
def catalog(out_dir: Path, split: str, contents: str | None, styles: str | None, short_side: int, views: int,
            seed: int, design: str | None, looks_per_family: int, per_look: int, looks_per_content: int,
            n_contents: int) -> None:
    """Write a labelled catalogue: images of known content and style, and catalog.csv (path, content, style).

    Splits: contents are photos that ship with scikit-image, scikit-learn and matplotlib; styles are made on
    the spot by the offline models (cin26 styles, arbitrary stylisation with other photos as style images, the
    original as `identity`) or, in the unseen split, by classic filters and colour grades. Every content is
    shown in every style. --design builds a catalogue shaped like a real one instead (see docs/search.md).
    """
    if design is not None:
        from styleaxis.eval.designs import DesignConfig, build_design_catalog

        if contents or styles or views != 1:
            raise click.UsageError("--contents, --styles and --views belong to --split; a --design draws its own")
        config = DesignConfig(design=design, looks_per_family=looks_per_family, contents=n_contents,
                              per_look=per_look, looks_per_content=looks_per_content, short_side=short_side,
                              seed=seed)
        csv = build_design_catalog(out_dir, config)
        table = pd.read_csv(csv)
        click.echo(f"{len(table)} images, {table['content'].nunique()} contents, {table['style'].nunique()} looks; "
                   f"catalogue: {csv}")
        return
    from styleaxis.eval.catalog import CatalogConfig, build_catalog

    config = CatalogConfig(split=split, contents=split_names(contents) or None,
                           styles=split_names(styles) or None, short_side=short_side,
                           views=views, seed=seed)
    csv = build_catalog(out_dir, config)
    click.echo(f"{len(config.items)} images; catalogue: {csv}")


@eval_group.command("retrieval")
@option("input", "--catalog", "catalog_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="catalog.csv with columns path, content, style (images or videos; paths "
                                  "relative to the CSV).")
@option("model", "--descriptors", default=",".join(field_default(_EMBED, "descriptors")), show_default=True,
              help="Comma-separated descriptors to embed. The axes are the index's default axes, built by its "
                   "recipe (`index build --help`), when their descriptors are embedded, else every style* / other "
                   "descriptor; each remaining descriptor is also scored alone.")
@option("output", "-k", "k", type=click.IntRange(min=1), default=None,
        help="Cut-off of P@k and leakage. Default: 10, or less where the catalogue's design allows less (the "
             "smallest look's items of other contents; P@R is reported whatever k).")
@option("output", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write retrieval.json, retrieval.csv, per_style.csv and per_style.png here.")
@option("output", "--json", "as_json", is_flag=True, help="Print JSON (table and per-style breakdown) instead of text.")
@option("model", "--short-side", type=click.IntRange(min=32), mirrors=(_EMBED, "short_side"), show_default=True,
              help="Frames are resized to this short side before embedding.")
@option("input", "--max-keyframes", type=click.IntRange(min=1), mirrors=(_POLICY, "max_keyframes"),
        show_default=True,
              help="Key frames averaged per video row.")
def retrieval(catalog_csv: Path, descriptors: str, k: int | None, out_dir: Path | None, as_json: bool,
              short_side: int, max_keyframes: int) -> None:
    """Embed a labelled catalogue and score both axes.

    SSDC-P@k (style axis): of the k nearest items whose content differs from the query's, the share with the
    query's style. SCDS-P@k (content axis): of the k nearest whose style differs, the share with the query's
    content. P@R: the same with k = the query's own number of such items, so every design can score 1. mAP per
    axis, and leakage: the share of the style axis's top k that shares content but not style (and the converse).
    Each metric is shown with its chance level; a per-style breakdown follows.
    """
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.eval.catalog import embed_catalog, read_catalog
    from styleaxis.embed.recipe import DEFAULT_AXES
    from styleaxis.eval.retrieval import axis_of, evaluate, largest_k

    names = split_names(descriptors)
    table = read_catalog(catalog_csv)
    vectors = embed_catalog(table, EmbedConfig(descriptors=names, short_side=short_side), max_keyframes,
                            progress=not as_json)
    axes = {axis: DEFAULT_AXES[axis] if set(DEFAULT_AXES[axis]) <= set(names)
            else tuple(n for n in names if axis_of(n) == axis) for axis in ("style", "content")}
    extra = [n for n in names if not any(n in used for used in axes.values())]
    if k is None:
        k = largest_k(table["content"], table["style"])
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
