"""The ``styleaxis`` command line: parse, build a config, call the public API, map errors to one line.

Every command has ``--help``. Errors a user can cause (missing files, bad arguments, a file that is
not what it claims) end with exit code 1 and one line naming the problem; usage errors exit 2.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from styleaxis import __version__
from styleaxis.cli_base import CliGroup

MODES = ("same-style-different-content", "same-content-different-style", "style", "content")


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="styleaxis")
def main() -> None:
    """styleaxis: separate style and content similarity for a video catalogue.

    Typical flow: `styleaxis embed VIDEOS --out RUN`, `styleaxis index build RUN`,
    `styleaxis query RUN --video ID --mode same-style-different-content`.
    `styleaxis demo` runs all of it on a sample catalogue it makes itself.
    """


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory; keyframes/ and videos/ Parquet datasets are written under it.")
@click.option("--short-side", default=256, show_default=True, help="Frames are resized to this short side.")
@click.option("--max-keyframes", default=8, show_default=True, help="At most this many keyframes per video.")
@click.option("--min-gap", default=1.0, show_default=True, help="Seconds between keyframes, at least.")
@click.option("--batch-size", default=16, show_default=True, help="Largest RunInference batch (keyframes).")
@click.option("--descriptors", default="style_in,style_cin,content", show_default=True,
              help="Comma-separated descriptor columns to compute.")
@click.option("--runner", default="FnApiRunner", show_default=True,
              help="Beam runner; FnApiRunner runs in-process and offline.")
@click.option("--beam-args", default="", help="Extra Beam pipeline options, e.g. '--direct_num_workers=2'.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def embed(inputs: tuple[str, ...], out_dir: Path, short_side: int, max_keyframes: int, min_gap: float,
          batch_size: int, descriptors: str, runner: str, beam_args: str, quiet: bool) -> None:
    """Embed videos and images (files, folders, globs) into Parquet with an Apache Beam pipeline.

    Each input becomes a videos/ row (status ok, partial or failed, with the error); each embedded
    keyframe a keyframes/ row. Videos already embedded with the same models are skipped.
    """
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.pipelines.beam import PipelineConfig, run_embed
    from styleaxis.pipelines.inputs import expand_inputs
    from styleaxis.pipelines.video_io import KeyframePolicy

    config = PipelineConfig(
        out_dir=out_dir,
        embed=EmbedConfig(descriptors=tuple(d.strip() for d in descriptors.split(",") if d.strip()),
                          short_side=short_side),
        policy=KeyframePolicy(max_keyframes=max_keyframes, min_gap_s=min_gap),
        max_batch_size=batch_size,
        runner=runner,
        pipeline_args=tuple(shlex.split(beam_args)),
        progress=not quiet,
    )
    summary = run_embed(expand_inputs(list(inputs)), config)
    _print_embed_summary(summary)


def _print_embed_summary(summary: dict[str, Any]) -> None:
    from styleaxis.pipelines.dataset import read_dataset

    click.echo(f"run {summary['run_id']}: {summary['inputs']} inputs, {summary['skipped']} already embedded, "
               f"{summary['embedded']} embedded -> {summary['out_dir']}")
    if summary["embedded"]:
        videos = read_dataset(Path(summary["out_dir"]), "videos")
        videos = videos[videos.video_id.isin(summary["video_ids"])]
        counts = videos.status.value_counts().to_dict()
        click.echo("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for _, row in videos[videos.status != "ok"].iterrows():
            click.echo(f"  {row.status}: {row.video_id}: {row.error}")
        n = int(videos.n_keyframes.sum())
        click.echo(f"{n} keyframes in {summary['seconds']:.1f} s ({n / summary['seconds']:.2f} keyframes/s)")


@main.group(cls=CliGroup)
def index() -> None:
    """Build and inspect the FAISS indexes (one per axis)."""


@index.command("build")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Index directory [default: RUN_DIR/index].")
@click.option("--factory", default=None, help="FAISS index_factory string; default chosen by catalogue size.")
def index_build(run_dir: Path, out_dir: Path | None, factory: str | None) -> None:
    """Build the style and content indexes from RUN_DIR's videos/ Parquet."""
    from styleaxis.index.build import IndexConfig, build_indexes

    manifest = build_indexes(run_dir, out_dir or run_dir / "index", IndexConfig(factory=factory))
    for axis, info in manifest.axes.items():
        click.echo(f"{axis}: {manifest.count} videos, dim {info.dim}, {info.factory} ({'+'.join(info.descriptors)})")
    click.echo(f"index written to {out_dir or run_dir / 'index'} in {manifest.build_seconds:.2f} s")


def _index_dir(path: Path) -> Path:
    """Accept an index directory or a run directory that holds ``index/``."""
    return path / "index" if (path / "index" / "manifest.json").exists() else path


@main.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--video", "video_id", default=None, help="Query by an indexed video id.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Query by an image or video file, embedded on the fly.")
@click.option("--mode", type=click.Choice(MODES), default=MODES[0], show_default=True)
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(min=1), help="Number of answers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def query(index_dir: Path, video_id: str | None, image: Path | None, mode: str, k: int, as_json: bool) -> None:
    """Answer a query against an index directory (or a run directory holding index/)."""
    from styleaxis.api import query_file
    from styleaxis.index.search import Searcher

    if (video_id is None) == (image is None):
        raise click.UsageError("pass exactly one of --video ID or --image PATH")
    searcher = Searcher.load(_index_dir(index_dir))
    if video_id is not None:
        results = searcher.search(video_id, mode=mode, k=k)
    else:
        results = query_file(searcher, image, mode=mode, k=k)
    rows = [r.__dict__ for r in results]
    if as_json:
        click.echo(json.dumps({"query": video_id or str(image), "mode": mode, "results": rows}, indent=2))
        return
    click.echo(f"{mode} for {video_id or image}:")
    for r in results:
        click.echo(f"{r.rank:3d}. {r.video_id:40s} style {r.style_score:6.3f}  content {r.content_score:6.3f}  {r.reason}")


@main.group(cls=CliGroup)
def models() -> None:
    """The model registry: which networks styleaxis uses and where their weights come from."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_list(as_json: bool) -> None:
    """Show each model, its weight source, sha256 and whether the file is present here."""
    from styleaxis.embed.registry import list_models

    from styleaxis.embed.registry import resolve_weights

    rows = []
    for m in list_models():
        present = m.present()
        # a user-supplied file (no fixed hash) is identified by the sha256 of the file found
        sha = m.sha256 or (resolve_weights(m.name)[1] if present else None)
        rows.append({"name": m.name, "source": m.package or m.url, "file": str(m.path()), "sha256": sha,
                     "present": present, "licence": m.licence, "description": m.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        sha = f"{r['sha256'][:16]}…" if r["sha256"] else "(from the file)".ljust(17)
        click.echo(f"{r['name']:20s} {'present' if r['present'] else 'MISSING':8s} {sha}  {r['source']}")
        click.echo(f"{'':20s} {r['description']}; {r['file']}")


@models.command("fetch")
@click.argument("name")
def models_fetch(name: str) -> None:
    """Download NAME's weights into torch's hub cache (needs a network; VGG19 only: the others ship in pip packages)."""
    from styleaxis.embed.registry import fetch

    click.echo(f"{name}: {fetch(name)}")


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"),
              show_default=True, help="Where the catalogue, run, index and report go.")
@click.option("--query-clip", default="astronaut__style08", show_default=True, help="The clip to answer for.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out_dir: Path, query_clip: str, quiet: bool) -> None:
    """Make a sample catalogue (6 photos x 4 styles, H.264 clips), embed, index, query and report."""
    from styleaxis.api import run_demo

    result = run_demo(out_dir, query_clip=query_clip, progress=not quiet, echo=click.echo)
    click.echo(f"report: {result['report']}")


def _attach_command_modules() -> None:
    """Command groups that live in their own modules (one per area), attached to ``styleaxis``."""
    from styleaxis.cli_eval import eval_group

    main.add_command(eval_group)


_attach_command_modules()

if __name__ == "__main__":
    sys.exit(main())
