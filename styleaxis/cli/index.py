"""``styleaxis index build|audit`` and ``styleaxis serve``: the indexes and their HTTP service.

Thin: options -> IndexConfig / SearchConfig / ServiceConfig -> :mod:`styleaxis.index`.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from styleaxis.cli.common import CliGroup, GroupedCommand, field_default, module_constant, option, split_names

__all__ = ["index", "serve"]


@click.group(cls=CliGroup)
def index() -> None:
    """Build, grow and check the FAISS indexes (one per axis: style, content)."""


_INDEX = "styleaxis.index.build.IndexConfig"
_RELATIVE = "styleaxis.embed.recipe.RelativeConfig"
_AXES = module_constant("styleaxis.embed.recipe", "DEFAULT_AXES")


@index.command("build")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option("output", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Index directory [default: RUN_DIR/index].")
@option("input", "--add", "add", is_flag=True,
        help="Bring the existing index up to date with the run (no retraining): add new videos, replace those "
             "re-embedded with other bytes, remove those the run no longer holds.")
@option("output", "--rebuild", is_flag=True, help="Rebuild from scratch over an existing index.")
@option("model", "--style", "style", default=",".join(_AXES["style"]), show_default=True,
        help="Descriptors (comma-separated) concatenated into the style axis: the learned style_head by "
             "default; e.g. 'style_in,style_cin' for the AdaIN + CIN statistics, or style_eff, made relative to "
             "each video's content neighbours (for catalogues where each content appears in many looks).")
@option("model", "--content", "content", default=",".join(_AXES["content"]), show_default=True,
        help="Descriptors (comma-separated) concatenated into the content axis.")
@option("model", "--relative-k", mirrors=(_RELATIVE, "k"), show_default=True, type=click.IntRange(min=1),
        help="Content neighbours a content-relative style descriptor (style_eff) is measured against; "
             "also the style neighbours of the content axis's step.")
@option("model", "--expand", mirrors=(_RELATIVE, "expand"), show_default=True, type=click.IntRange(min=0),
        help="Add to each video's style vector those of its this many nearest videos on the style axis that are "
             "not among its content neighbours (0: off).")
@option("model", "--content-alpha", mirrors=(_RELATIVE, "content_alpha"), show_default=True,
        type=click.FloatRange(0, 1),
        help="The content axis subtracts this times the median content of each video's style neighbours "
             "(0: off).")
@option("model", "--whiten", type=click.Choice(["none", "std", "pca"]), mirrors=(_INDEX, "whiten"),
        show_default=True, help="Whitening in the fitted search transform.")
@option("performance", "--factory", default=None,
        help="FAISS index_factory string for every axis, e.g. 'IVF1024,SQ8'; default: chosen by size and budget.")
@option("performance", "--memory-budget-gb", mirrors=(_INDEX, "memory_budget_gb"), show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help="RAM for all axes' index structures; larger catalogues get compressed (SQ8, PQ) indexes.")
@option("performance", "--shards", mirrors=(_INDEX, "shards"), show_default=True, type=click.IntRange(min=1),
        help="Build IVF/flat indexes in this many slices sharing one trained quantizer, then merge.")
@option("performance", "--hubness-k", mirrors=(_INDEX, "hubness_k"), show_default=True, type=click.IntRange(min=0),
        help="Store each video's mean similarity to its k nearest neighbours (for --calibration csls).")
@option("performance", "--target-recall", mirrors=(_INDEX, "target_recall"), show_default=True,
        type=click.FloatRange(0, 1, min_open=True),
        help="nprobe/efSearch is tuned until candidate pools hold this share of the exact top-10.")
@option("output", "--retire-grace", "retire_grace_s", mirrors=(_INDEX, "retire_grace_s"), show_default=True,
        type=click.FloatRange(min=0),
        help="Seconds the previous generation's files stay for readers still loading it (deleted by a later build).")
@option("output", "--quiet", is_flag=True, help="No progress bars.")
def index_build(run_dir: Path, out_dir: Path | None, add: bool, rebuild: bool, style: str, content: str,
                relative_k: int, expand: int, content_alpha: float, whiten: str, factory: str | None,
                memory_budget_gb: float, shards: int, hubness_k: int, target_recall: float, retire_grace_s: float,
                quiet: bool) -> None:
    """Build the style and content indexes from RUN_DIR's videos/ Parquet (or bring them up to date with --add).

    An existing index is never replaced silently: pass --add to update it or --rebuild to start over.
    Either way the old index stays readable until the new one is complete, and one build at a time may
    write a directory.
    """
    from styleaxis.embed.recipe import BASE_AXES, RelativeConfig
    from styleaxis.index.build import IndexConfig, add_videos, build_indexes
    from styleaxis.index.manifest import MANIFEST_FILE

    if add and rebuild:
        raise click.UsageError("--add and --rebuild exclude each other")
    out = out_dir or run_dir / "index"
    exists = (out / MANIFEST_FILE).exists()
    axes = {"style": split_names(style), "content": split_names(content)}
    try:
        config = IndexConfig(axes=axes, factory=factory, memory_budget_gb=memory_budget_gb, whiten=whiten,
                             shards=shards, hubness_k=hubness_k, target_recall=target_recall,
                             relative=RelativeConfig(k=relative_k, expand=expand, content_alpha=content_alpha),
                             retire_grace_s=retire_grace_s, progress=not quiet)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if add:
        if not exists:
            raise click.UsageError(f"no index at {out} to add to; build it first (without --add)")
        manifest = add_videos(run_dir, out, config)
        changes = manifest.changes
        click.echo(f"added {changes['added']}, replaced {changes['replaced']} (re-embedded), removed "
                   f"{changes['removed']} videos ({manifest.count} in all) in {out}")
    elif exists and not rebuild:
        raise click.UsageError(f"an index exists at {out}: pass --add to update it or --rebuild to start over")
    else:
        manifest = build_indexes(run_dir, out, config)
        click.echo(f"index written to {out} in {manifest.build_seconds:.2f} s")
    for axis, info in manifest.axes.items():
        if axis in BASE_AXES:  # an axis before one of its steps, for queries and --add
            continue
        tuned = f", {info.search_param}={info.search_value}" if info.search_param else ""
        click.echo(f"{axis}: {manifest.count} videos, dim {info.dim}, {info.factory}{tuned} "
                   f"(pool recall {info.tuned_recall:.3f}; {info.factory_reason})")
        if info.factory != "Flat" and manifest.count > 2 * info.trained_count:
            click.echo(f"  {axis}: trained on {info.trained_count} videos, now {manifest.count}: "
                       "consider --rebuild for best recall")
    for line in manifest.recipe.describe():
        click.echo(line)


@index.command("audit")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option("input", "--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="The run to compare the index with [default: the run it was built from].")
@option("other", "--sample", default=200, show_default=True, type=click.IntRange(min=1),
        help="Catalogue videos used as queries.")
@option("other", "-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="recall@k.")
@option("other", "--seed", default=0, show_default=True, help="Seed for the sample.")
@option("output", "--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def index_audit(index_dir: Path, run_dir: Path | None, sample: int, k: int, seed: int, as_json: bool) -> None:
    """Verify INDEX_DIR (file hashes, canary queries), compare its answers with exact search, and compare it
    with its run: every video indexed with other bytes than the run now holds, gone from the run, or not
    yet indexed is listed, and the command exits 1 (`index build RUN --add` resolves them).

    ann recall@k: the FAISS index's own top-k against the exact top-k (query excluded).
    answers recall@k: the share found in the candidate pool that queries re-score exactly,
    i.e. the recall of `query` answers on one axis.
    """
    from styleaxis.index.integrity import compare_with_run
    from styleaxis.index.search import Searcher

    searcher = Searcher.load(index_dir)
    report = searcher.audit(sample=sample, k=k, seed=seed)
    manifest = searcher.manifest
    differences = compare_with_run(index_dir, manifest, run_dir) if (run_dir or manifest.run_dir) else None
    if as_json:
        click.echo(json.dumps({"count": manifest.count, "canaries": len(manifest.canaries), "axes": report,
                               "run": None if differences is None else differences.__dict__}, indent=2))
    else:
        click.echo(f"{index_dir}: {manifest.count} videos, {len(manifest.files)} files match their sha256, "
                   f"{len(manifest.canaries)} canary queries pass")
        click.echo(f"{'axis':8s} {'factory':22s} {'param':14s} {f'ann recall@{k}':>15s} {f'answers recall@{k}':>19s}")
        for axis, row in report.items():
            info = manifest.axes[axis]
            param = f"{info.search_param}={info.search_value}" if info.search_param else "exact"
            click.echo(f"{axis:8s} {info.factory:22s} {param:14s} {row['ann_recall']:15.3f} "
                       f"{row['pool_recall']:19.3f}")
        if differences is not None:
            click.echo(f"run: {differences.count} videos differ from the index")
            for kind, why in (("stale", "indexed with other bytes"), ("gone", "no longer in the run"),
                              ("new", "not indexed yet")):
                for video_id in getattr(differences, kind):
                    click.echo(f"  {kind}: {video_id} ({why})")
    if differences is not None and differences.count:
        raise click.exceptions.Exit(1)


_SERVICE = "styleaxis.index.service.ServiceConfig"


@click.command("serve", cls=GroupedCommand)
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option("output", "--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: all).")
@option("output", "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@option("model", "--calibration", type=click.Choice(["z", "csls"]), mirrors=("styleaxis.index.queries.SearchConfig",
        "calibration"), show_default=True,
        help="Per-axis score calibration (csls needs an index built with --hubness-k).")
@option("input", "--max-upload-mb", default=field_default(_SERVICE, "max_upload_bytes") / 2**20, show_default=True,
        type=click.FloatRange(min=0, min_open=True), help="Largest image/video upload accepted by POST /search/file.")
@option("input", "--max-json-mb", default=field_default(_SERVICE, "max_json_bytes") / 2**20, show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help="Largest JSON body (every request but the upload); a larger one gets 413 unread.")
@option("input", "--max-pixels", mirrors=(_SERVICE, "max_pixels"), show_default=True, type=click.IntRange(min=1),
        help="Largest width x height of an uploaded image or video frame, read from its header (413 above).")
@option("input", "--max-seconds", mirrors=(_SERVICE, "max_seconds"), show_default=True,
        type=click.FloatRange(min=0, min_open=True), help="Longest uploaded video, from its header (413 above).")
@option("performance", "--decode-timeout", "decode_timeout_s", mirrors=(_SERVICE, "decode_timeout_s"),
        show_default=True, type=click.FloatRange(min=0, min_open=True),
        help="Seconds to decode one upload in a worker process; 422 too_costly past it.")
@option("performance", "--decode-memory-mb", mirrors=(_SERVICE, "decode_memory_mb"), show_default=True,
        type=click.IntRange(min=1), help="Memory a decoder worker may add beyond its imports; 422 too_costly past it.")
@option("performance", "--decode-workers", mirrors=(_SERVICE, "decode_workers"), show_default=True,
        type=click.IntRange(min=1),
        help="Decoder processes; further uploads wait for one up to --decode-timeout, then 503 busy.")
@option("performance", "--threads", default=1, show_default=True, type=click.IntRange(min=1),
        help="FAISS/BLAS threads per query (requests already run concurrently).")
@option("other", "--no-verify", is_flag=True, help="Skip re-hashing the index files on load (canaries still run).")
def serve(index_dir: Path, host: str, port: int, calibration: str, max_upload_mb: float, max_json_mb: float,
          max_pixels: int, max_seconds: float, decode_timeout_s: float, decode_memory_mb: int, decode_workers: int,
          threads: int, no_verify: bool) -> None:
    """Serve INDEX_DIR over HTTP (FastAPI on uvicorn): docs at /docs, /health, /ready, /search...

    The index is loaded once at start-up; /ready answers 200 once its files are verified and its
    canary queries pass. Query files (images and videos) are embedded with the index's settings, after
    their headers pass the caps, in decoder processes with time and memory limits (docs/search.md).
    """
    from styleaxis.index.manifest import IndexManifest
    from styleaxis.index.search import SearchConfig
    from styleaxis.index.service import ServiceConfig
    from styleaxis.index.service import serve as run_service

    IndexManifest.load(index_dir)  # fail now, with one line, if this is not an index directory
    service = ServiceConfig(max_upload_bytes=int(max_upload_mb * 2**20), max_json_bytes=int(max_json_mb * 2**20),
                            max_pixels=max_pixels, max_seconds=max_seconds, decode_timeout_s=decode_timeout_s,
                            decode_memory_mb=decode_memory_mb, decode_workers=decode_workers, verify=not no_verify)
    run_service(index_dir, host=host, port=port, threads=threads,
                search_config=SearchConfig(calibration=calibration), service_config=service)
