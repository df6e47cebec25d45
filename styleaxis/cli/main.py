"""The ``styleaxis`` command: the root group, ``embed``, ``query``, ``models`` and ``demo``.

The other groups live in one module each (:mod:`.index`, :mod:`.stylize`, :mod:`.train`, :mod:`.eval`)
and are attached here. Each command parses its options, builds a config, calls the public API and maps
errors to one line.

Every command has ``--help``. Errors a user can cause (missing files, bad arguments, a file that is
not what it claims) end with exit code 1 and one line naming the problem; usage errors exit 2.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from styleaxis import __version__
from styleaxis.cli.common import CliGroup, field_default, option, set_threads, split_names
from styleaxis.cli.eval import eval_group
from styleaxis.cli.index import index, serve
from styleaxis.cli.stylize import stylize
from styleaxis.cli.train import train

MODES = ("same-style-different-content", "same-content-different-style", "style", "content")


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="styleaxis")
def main() -> None:
    """styleaxis: separate style and content similarity for a video catalogue.

    Typical flow: `styleaxis embed VIDEOS --out RUN`, `styleaxis index build RUN`,
    `styleaxis query RUN --video ID --mode same-style-different-content`.
    `styleaxis demo` runs all of it on a sample catalogue it makes itself.
    """


_EMBED = "styleaxis.embed.embedder.EmbedConfig"
_PIPELINE = "styleaxis.pipelines.beam.PipelineConfig"
_POLICY = "styleaxis.media.video.KeyframePolicy"


@main.command()
@click.argument("inputs", nargs=-1)
@option("input", "--manifest", "manifests", multiple=True, type=click.Path(exists=True, dir_okay=False),
        help="CSV or Parquet table of inputs: column uri, optional video_id (repeatable).")
@option("input", "--max-keyframes", mirrors=(_POLICY, "max_keyframes"), show_default=True,
        help="At most this many keyframes per video.")
@option("input", "--min-gap", mirrors=(_POLICY, "min_gap_s"), show_default=True,
        help="Seconds between keyframes, at least.")
@option("input", "--decoders", default=",".join(field_default(_PIPELINE, "decoders")), show_default=True,
        help="Decoder backends, in the order tried.")
@option("input", "--hash", "hash_mode", type=click.Choice(["sampled", "full"]), mirrors=(_PIPELINE, "hash_mode"),
        show_default=True, help="Content hash for skipping unchanged videos: size + sampled MiBs, or every byte.")
@option("input", "--force", is_flag=True, help="Re-embed every input, replacing its rows (never duplicating them).")
@option("input", "--retry-failed", is_flag=True,
        help="Re-embed inputs whose previous row is failed (e.g. timed out).")
@option("model", "--descriptors", default=",".join(field_default(_EMBED, "descriptors")), show_default=True,
        help="Comma-separated descriptor columns to compute.")
@option("model", "--add-descriptors", default="",
        help="Add these descriptor columns (comma-separated, e.g. style_in) to the run at --out, computing only "
             "them: its videos are decoded again from their recorded uri (no INPUTS), the columns it holds are "
             "kept as they are. Pass the --max-keyframes/--min-gap/--decoders the run was made with.")
@option("model", "--short-side", mirrors=(_EMBED, "short_side"), show_default=True,
        help="Frames are resized to this short side.")
@option("model", "--precision", type=click.Choice(["fp32", "fp16", "bf16"]), mirrors=(_EMBED, "precision"),
        show_default=True,
        help="Encoder precision (fp16/bf16 autocast: faster on GPUs; vectors differ from fp32 in the last bits).")
@option("output", "--out", "out_dir", required=True,
        help="Run directory (local folder or bucket URI); keyframes/ and videos/ Parquet datasets go under it.")
@option("output", "--shard-size", mirrors=(_PIPELINE, "shard_size"), show_default=True,
        help="Videos per Parquet shard; finished shards survive a killed run.")
@option("output", "--quiet", is_flag=True, help="No progress bar.")
@option("performance", "--device", type=click.Choice(["auto", "cpu", "cuda"]), mirrors=(_EMBED, "device"),
        show_default=True, help="Where the models run (auto: CUDA when present).")
@option("performance", "--batch-size", mirrors=(_PIPELINE, "max_batch_keyframes"), show_default=True,
        help="Most keyframes per inference batch (RunInference).")
@option("performance", "--forward-batch", mirrors=(_EMBED, "batch_size"), show_default=True,
        type=click.IntRange(min=0),
        help="Frames per forward pass; 0 picks by device (1 on a CPU, where it is fastest; 64 on CUDA).")
@option("performance", "--compile", "compile_models", is_flag=True,
        help="torch.compile the encoders: 1.06-1.2x the default's frames/s on the 2-core CPU (bench/RESULTS.md) "
             "for a start-up of a minute or more per frame size; for long runs.")
@option("performance", "--threads", type=click.IntRange(min=1), default=None,
        help="torch CPU threads in this process (default: one per core). On a machine that other work shares, "
             "fewer threads keep torch's threads from waiting on each other (bench/RESULTS.md).")
@option("performance", "--max-batch-duration", type=float, mirrors=(_PIPELINE, "max_batch_duration_s"),
        help="Seconds RunInference may wait to fill a batch (default: no limit).")
@option("performance", "--batch-across-videos", is_flag=True,
        help="Pack keyframes of several videos into one forward pass (GPU throughput; vectors then depend "
             "on batch composition in the last bits).")
@option("performance", "--decode-timeout", mirrors=(_PIPELINE, "decode_timeout_s"), show_default=True,
        help="Seconds per video for decoding, in a separate process; 0 decodes in-process (no isolation).")
@option("performance", "--runner", mirrors=(_PIPELINE, "runner"), show_default=True,
        help="Beam runner: FnApiRunner (in-process, offline), DaskRunner, FlinkRunner, SparkRunner, "
             "DataflowRunner.")
@option("performance", "--beam-args", default="",
        help="Pipeline options passed to Beam unchanged, e.g. '--direct_num_workers=2' or Dataflow's "
             "'--project ...'.")
def embed(inputs: tuple[str, ...], out_dir: str, manifests: tuple[str, ...], short_side: int, max_keyframes: int,
          min_gap: float, descriptors: str, device: str, precision: str, batch_size: int,
          max_batch_duration: float | None, batch_across_videos: bool, decoders: str, decode_timeout: float,
          hash_mode: str, force: bool, retry_failed: bool, shard_size: int, runner: str, beam_args: str,
          quiet: bool, add_descriptors: str, forward_batch: int, compile_models: bool, threads: int | None) -> None:
    """Embed videos and images (files, folders, globs, manifests) into Parquet with an Apache Beam pipeline.

    Each input becomes one videos/ row (status ok, partial or failed, with the error); each embedded
    keyframe a keyframes/ row. Videos already embedded with the same models and bytes are skipped;
    a killed run keeps its finished shards and the next run completes the rest. See docs/nightly.md.

    With --add-descriptors and no INPUTS, adds descriptor columns to an existing run instead.
    """
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.api import embed_catalogue
    from styleaxis.pipelines.beam import PipelineConfig
    from styleaxis.media.video import KeyframePolicy

    if add_descriptors and (inputs or manifests):
        raise click.UsageError("--add-descriptors re-embeds the videos the run at --out holds: give no INPUTS "
                               "or --manifest (embed new inputs in a run of their own first)")
    if not inputs and not manifests and not add_descriptors:
        raise click.UsageError("give INPUTS (files, folders, globs) or --manifest")
    set_threads(threads)
    config = PipelineConfig(
        out_dir=out_dir,
        embed=EmbedConfig(descriptors=split_names(descriptors), short_side=short_side, batch_size=forward_batch,
                          device=device, precision=precision, compile=compile_models),
        policy=KeyframePolicy(max_keyframes=max_keyframes, min_gap_s=min_gap),
        decoders=split_names(decoders),
        decode_timeout_s=decode_timeout or None,
        hash_mode=hash_mode,
        force=force,
        retry_failed=retry_failed,
        shard_size=shard_size,
        max_batch_keyframes=batch_size,
        max_batch_duration_s=max_batch_duration,
        batch_across_videos=batch_across_videos,
        runner=runner,
        pipeline_args=tuple(shlex.split(beam_args)),
        progress=not quiet,
    )
    if add_descriptors:
        from styleaxis.pipelines.extend import add_descriptors as add

        summary = add(config, split_names(add_descriptors))
        added = ", ".join(summary["added_descriptors"]) or "nothing (the run holds them already)"
        click.echo(f"added {added} to the {summary['shards']} shards of {out_dir} in {summary['seconds']:.1f} s")
        return
    summary = embed_catalogue(list(inputs), out_dir, config, manifests)
    _print_embed_summary(summary)


def _print_embed_summary(summary: dict[str, Any]) -> None:
    from styleaxis.pipelines.dataset import read_dataset

    for line in summary.get("skipped_inputs", ()):
        click.echo(f"skipped {line}")
    click.echo(f"run {summary['run_id']}: {summary['inputs']} inputs, {summary['skipped']} already embedded, "
               f"{summary['embedded']} embedded -> {summary['out_dir']}")
    if summary["recovered"]:
        click.echo(f"recovered {summary['recovered']} videos that a killed run had finished")
    if summary["embedded"]:
        videos = read_dataset(summary["out_dir"], "videos", ["video_id", "status", "error", "n_keyframes"])
        videos = videos[videos.video_id.isin(summary["video_ids"])]
        counts = videos.status.value_counts().to_dict()
        click.echo("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for _, row in videos[videos.status != "ok"].iterrows():
            click.echo(f"  {row.status}: {row.video_id}: {row.error}")
        n = int(videos.n_keyframes.sum())
        click.echo(f"{n} keyframes in {summary['seconds']:.1f} s ({n / summary['seconds']:.2f} keyframes/s)")


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
    from styleaxis.index.search import Searcher

    if (video_id is None) == (image is None):
        raise click.UsageError("pass exactly one of --video ID or --image PATH")
    searcher = Searcher.load(_index_dir(index_dir))
    if video_id is not None:
        results = searcher.search(video_id, mode=mode, k=k)
    else:
        from styleaxis.api import query_file  # imports the embedding stack (and Beam); only --image needs it

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
    from styleaxis.demo import run_demo

    result = run_demo(out_dir, query_clip=query_clip, progress=not quiet, echo=click.echo)
    click.echo(f"report: {result['report']}")


for _command in (eval_group, index, serve, stylize, train):
    main.add_command(_command)
