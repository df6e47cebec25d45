"""The public Python API: embed a catalogue, build the indexes, ask dual-axis questions.

    from styleaxis.api import embed_catalogue, build_indexes, Searcher
    embed_catalogue(["videos/"], "run")
    build_indexes("run", "run/index")
    Searcher.load("run/index").search("clip_007", mode="same-style-different-content", k=5)
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.embed.recipe import RelativeConfig
from styleaxis.index.build import IndexConfig, build_indexes
from styleaxis.index.files import FileQuery
from styleaxis.index.search import Result, Searcher
from styleaxis.pipelines.beam import PipelineConfig, run_embed
from styleaxis.pipelines.dataset import read_dataset
from styleaxis.pipelines.inputs import expand_inputs

__all__ = [
    "EmbedConfig", "Embedder", "PipelineConfig", "IndexConfig", "Searcher", "Result",
    "embed_catalogue", "build_indexes", "query_file", "run_demo",
]


def embed_catalogue(inputs: list[str], out_dir: str | Path, config: PipelineConfig | None = None) -> dict[str, Any]:
    """Run the Beam embedding job over files, folders or globs; returns the run summary."""
    cfg = config or PipelineConfig(out_dir=Path(out_dir))
    if Path(cfg.out_dir) != Path(out_dir):
        raise ValueError(f"out_dir {out_dir} differs from config.out_dir {cfg.out_dir}")
    return run_embed(expand_inputs(inputs), cfg)


def query_file(searcher: Searcher, path: str | Path, *, mode: str, k: int = 10,
               embedder: Embedder | None = None) -> list[Result]:
    """Query with an image or video file that is not in the index: its key frames are read and embedded as
    the indexed videos were (styleaxis.index.files.FileQuery), then searched."""
    return FileQuery(searcher, embedder=embedder).search(Path(path), mode=mode, k=k)


def _precision(searcher: Searcher, ids: list[str], mode: str, k: int, same: Callable[[str, str], bool]) -> float:
    answers = searcher.search_batch(ids, mode=mode, k=k)
    return float(np.mean([np.mean([same(q, r.video_id) for r in rs]) for q, rs in zip(ids, answers)]))


def run_demo(out_dir: str | Path, *, query_clip: str = "astronaut__style08", k: int = 5, progress: bool = True,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole path on a sample catalogue: clips -> Parquet -> indexes -> answers -> report."""
    from styleaxis.demo import DemoConfig, clip_labels, make_catalogue, write_report

    out = Path(out_dir)
    demo = DemoConfig()
    echo(f"making the sample catalogue ({demo.contents} photos x {len(demo.styles)} styles) in {out / 'clips'}")
    clips = make_catalogue(out / "clips", demo, progress=(lambda name: echo(f"  wrote {name}")) if progress else (lambda _: None))
    echo("embedding (Apache Beam, local runner)")
    start = time.perf_counter()
    summary = embed_catalogue([str(out / "clips")], out / "run",
                              PipelineConfig(out_dir=out / "run", progress=progress))
    embed_seconds = time.perf_counter() - start
    # the relative steps compare each clip with its k nearest on the other axis; k is at most the number of
    # renderings a photo has here (the default 10 suits catalogues with ~10 per content: bench/RESULTS.md)
    relative = RelativeConfig(k=len(demo.styles))
    manifest = build_indexes(out / "run", out / "run" / "index", IndexConfig(relative=relative))
    echo(f"indexed {manifest.count} clips on two axes (relative steps over each clip's {relative.k} nearest: "
         f"every photo is shown in {len(demo.styles)} styles)")
    searcher = Searcher.load(out / "run" / "index")
    ids = list(searcher.video_ids)
    if query_clip not in ids:
        raise KeyError(f"query clip {query_clip!r} is not in the demo catalogue; e.g. {ids[:3]}")
    answers = {}
    for mode in ("same-style-different-content", "same-content-different-style"):
        answers[mode] = [r.__dict__ for r in searcher.search(query_clip, mode=mode, k=k)]
        echo(f"\n{mode} for {query_clip}:")
        for r in answers[mode]:
            echo(f"  {r['rank']}. {r['video_id']:24s} style {r['style_score']:.3f}  content {r['content_score']:.3f}")
    style_of = lambda v: clip_labels(v)[1]  # noqa: E731
    content_of = lambda v: clip_labels(v)[0]  # noqa: E731
    precision = {
        f"same-style-different-content: share of top-{k} with the query's style":
            _precision(searcher, ids, "same-style-different-content", k, lambda q, r: style_of(q) == style_of(r)),
        f"same-style-different-content: share of top-{k} with another content":
            _precision(searcher, ids, "same-style-different-content", k, lambda q, r: content_of(q) != content_of(r)),
        "same-content-different-style: share of top-3 with the query's content":
            _precision(searcher, ids, "same-content-different-style", 3, lambda q, r: content_of(q) == content_of(r)),
    }
    echo("\nprecision over every clip as a query:")
    for name, value in precision.items():
        echo(f"  {name}: {value:.3f}")
    videos = read_dataset(out / "run", "videos")
    n_kf = int(videos.n_keyframes.sum())
    stats = {"clips": len(clips), "contents": demo.contents, "styles": len(demo.styles), "keyframes": n_kf,
             "embed_seconds": embed_seconds, "keyframes_per_s": n_kf / embed_seconds if summary["embedded"] else 0.0}
    query = {"video_id": query_clip, "uri": videos.set_index("video_id").uri[query_clip]}
    uris = videos.set_index("video_id").uri.to_dict()
    for rows in answers.values():
        for row in rows:
            row["uri"] = uris[row["video_id"]]
    report = write_report(out, query, answers, precision, stats)
    return {"report": report, "precision": precision, "answers": answers, "stats": stats}
