"""The public Python API: embed a catalogue, build the indexes, ask dual-axis questions.

    from styleaxis.api import embed_catalogue, build_indexes, Searcher
    embed_catalogue(["videos/"], "run")
    build_indexes("run", "run/index")
    Searcher.load("run/index").search("clip_007", mode="same-style-different-content", k=5)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.index.build import IndexConfig, build_indexes
from styleaxis.index.files import FileQuery
from styleaxis.index.search import Result, Searcher
from styleaxis.pipelines.beam import PipelineConfig, run_embed
from styleaxis.pipelines.dataset import committed_ids
from styleaxis.pipelines.inputs import collect_inputs

__all__ = [
    "EmbedConfig", "Embedder", "PipelineConfig", "IndexConfig", "Searcher", "Result",
    "embed_catalogue", "build_indexes", "query_file",
]


def embed_catalogue(inputs: list[str], out_dir: str | Path, config: PipelineConfig | None = None,
                    manifests: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Run the Beam embedding job over files, folders, globs and manifests; returns the run summary.

    Every input named and every media entry of a folder becomes a row (failed with the reason when it
    cannot be read); ``summary["skipped_inputs"]`` says why anything else was left out. A file already in
    the run keeps its video id."""
    cfg = config or PipelineConfig(out_dir=Path(out_dir))
    if Path(cfg.out_dir) != Path(out_dir):
        raise ValueError(f"out_dir {out_dir} differs from config.out_dir {cfg.out_dir}")
    found = collect_inputs(inputs, manifests, known=committed_ids(out_dir))
    return {**run_embed(found.videos, cfg), "skipped_inputs": found.skipped}


def query_file(searcher: Searcher, path: str | Path, *, mode: str, k: int = 10,
               embedder: Embedder | None = None) -> list[Result]:
    """Query with an image or video file that is not in the index: its key frames are read and embedded as
    the indexed videos were (styleaxis.index.files.FileQuery), then searched."""
    return FileQuery(searcher, embedder=embedder).search(Path(path), mode=mode, k=k)
