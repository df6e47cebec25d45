"""Add descriptor columns to a run that lacks them, computing only those columns.

    styleaxis embed --out RUN --add-descriptors style_in

A run embedded with the default descriptors has no VGG statistics (``style_in``, ``style_gram``: the
costly ones). Adding one later re-decodes each video's keyframes from the ``uri`` its ``videos/`` row
records, runs only the encoders the new descriptors need, and rewrites every committed shard with
the new columns appended. The columns already there are copied as they are (bit for bit), as are
the flags, ``style_stability`` and every other column; a new column's video vector is the mean of
the usable keyframes' vectors, as the job computes it (:func:`styleaxis.pipelines.records.video_rows`).

One Beam pipeline, one element per committed shard (a cluster runner spreads the shards over its
workers); each rewritten shard keeps its name and run id. They are written to
``RUN/_adding/<id>/``, a folder no reader or commit looks at, and only when every shard is there
is the folder renamed to ``RUN/_staging/<id>`` and committed like a run
(:func:`styleaxis.pipelines.store.commit` replaces a shard of the same name), so a killed add either
left nothing (the next add starts over) or is finished by the next run's recovery. A video whose
file is gone, changed since it was embedded, or now yields other keyframes stops the add before
anything is published, naming it: re-embed it with a plain ``styleaxis embed`` first.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from styleaxis.embed.embedder import Embedder, video_vector
from styleaxis.embed.schema import keyframes_schema, read_metadata, videos_schema

from .beam import DecodeVideo, PipelineConfig, pipeline_options, run_metadata
from .store import commit_folder, list_files, read_table, recover, run_lock, write_run_log, write_table

__all__ = ["ADDING", "add_descriptors"]

#: where an add writes its shards until all of them are there
ADDING = "_adding"


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _shard_metadata(root: str) -> dict[str, dict[str, Any]]:
    """Committed videos/ shard name -> its styleaxis metadata."""
    found = {}
    for path in list_files(_join(root, "videos", "*.parquet")):
        found[path.split("/")[-1]] = read_metadata(read_table(path, ["video_id"]).schema, path)
    return found


def _extended(meta: dict[str, Any], added: dict[str, Any], add_id: str) -> dict[str, Any]:
    """A shard's metadata with the added descriptors and their models (its own run id kept)."""
    out = dict(meta)
    out["models"] = {**meta["models"], **added["models"]}
    out["descriptors"] = {**meta["descriptors"], **added["descriptors"]}
    out["added_by"] = {**meta.get("added_by", {}), **{name: add_id for name in added["descriptors"]}}
    return out


class ExtendShard(beam.DoFn):
    """Rewrite one committed shard with the added descriptor columns into ``RUN/_adding/<id>/``.

    Emits nothing; a video that cannot be re-embedded as it was is written to ``problems/<shard>.json``
    instead of the shard (the driver reads them and publishes nothing).
    """

    def __init__(self, config: PipelineConfig, added: dict[str, Any], add_id: str) -> None:
        self.config, self.added, self.add_id = config, added, add_id
        self.root = str(config.out_dir)
        self.stage = _join(self.root, ADDING, add_id)

    def setup(self) -> None:
        self._decoder = DecodeVideo(dataclasses.replace(self.config, progress=False), 0)
        self._decoder.setup()
        self._model = Embedder(self.config.embed).load()

    def teardown(self) -> None:
        self._decoder.teardown()

    def process(self, name: str) -> Iterator[None]:
        videos = read_table(_join(self.root, "videos", name))
        kf_path = _join(self.root, "keyframes", name)
        keyframes = read_table(kf_path) if FileSystems.exists(kf_path) else None
        meta = _extended(read_metadata(videos.schema, name), self.added, self.add_id)
        new_names = list(self.added["descriptors"])
        per_frame: dict[str, list[list[float]]] = {n: [] for n in new_names}
        per_video: dict[str, dict[str, list[float] | None]] = {}
        problems: list[str] = []
        if keyframes is not None:
            uris = dict(zip(videos.column("video_id").to_pylist(), videos.column("uri").to_pylist()))
            hashes = dict(zip(videos.column("video_id").to_pylist(), videos.column("content_hash").to_pylist()))
            ids = keyframes.column("video_id").to_pylist()
            frames = keyframes.column("frame_index").to_pylist()
            flags = keyframes.column("flag").to_pylist()
            vectors: dict[tuple[str, int], dict[str, np.ndarray]] = {}
            for vid in dict.fromkeys(ids):
                rows = [i for i, v in enumerate(ids) if v == vid]
                decoded = self._decoder.decode(vid, uris[vid])
                got = [kf.frame_index for kf in decoded.keyframes]
                want = sorted(frames[i] for i in rows)
                if decoded.meta["content_hash"] != hashes[vid] or sorted(got) != want:
                    why = decoded.meta["error"] or ("its file changed since it was embedded"
                                                    if decoded.meta["content_hash"] != hashes[vid]
                                                    else f"keyframes {got} instead of {want} (other --max-keyframes "
                                                         "or --min-gap than the run's?)")
                    problems.append(f"{vid}: {why}")
                    continue
                out = self._model.embed([kf.image for kf in decoded.keyframes])
                for j, kf in enumerate(decoded.keyframes):
                    vectors[(vid, kf.frame_index)] = {n: out[n][j] for n in new_names}
                row_of = {frames[i]: i for i in rows}
                usable = [j for j, kf in enumerate(decoded.keyframes) if flags[row_of[kf.frame_index]] is None]
                per_video[vid] = {}
                for n in new_names:
                    good = [j for j in usable if np.isfinite(out[n][j]).all()]
                    per_video[vid][n] = video_vector(out[n][good]).tolist() if good else None
            if not problems:
                for n in new_names:
                    per_frame[n] = [vectors[(v, f)][n].tolist() for v, f in zip(ids, frames)]
        if problems:
            path = _join(self.stage, "problems", name.replace(".parquet", ".json"))
            _write_text(path, json.dumps(problems))
            return
        if keyframes is not None:
            schema = keyframes_schema(meta)
            columns = [keyframes.column(f.name) if f.name in keyframes.column_names
                       else pa.array(per_frame[f.name], f.type) for f in schema]
            write_table(pa.Table.from_arrays(columns, schema=schema), _join(self.stage, "keyframes", name),
                        _join(self.stage, "tmp"))
        schema = videos_schema(meta)
        video_ids = videos.column("video_id").to_pylist()
        columns = [videos.column(f.name) if f.name in videos.column_names
                   else pa.array([per_video.get(v, {}).get(f.name) for v in video_ids], f.type) for f in schema]
        write_table(pa.Table.from_arrays(columns, schema=schema), _join(self.stage, "videos", name),
                    _join(self.stage, "tmp"))
        yield from ()


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(text.encode())


def add_descriptors(config: PipelineConfig, descriptors: Sequence[str]) -> dict[str, Any]:
    """Add ``descriptors`` to every committed shard of ``config.out_dir``; returns a summary.

    The run's resize policy (short side, centre crop) is used whatever ``config.embed`` says; its
    keyframe policy, decoders and hash mode must be the run's (they are not recorded; a mismatch is
    caught as other keyframes). Descriptors the run already holds are left alone; adding none is a no-op.
    Raises ValueError naming the videos that could not be re-embedded as they were (nothing published).
    """
    root = str(config.out_dir)
    add_id = run_metadata({})["run_id"] + "-add"
    with run_lock(root):
        recover(root)
        if FileSystems.exists(_join(root, ADDING)):  # what a killed add left unpublished: start over
            FileSystems.delete([_join(root, ADDING)])
        shards = _shard_metadata(root)
        if not shards:
            raise FileNotFoundError(f"{root}/videos: no committed shards to add descriptors to; run "
                                    "`styleaxis embed INPUTS --out RUN` first")
        first = next(iter(shards.values()))
        policy = {key: first.get(key) for key in ("short_side", "center_crop")}
        added_names = [d for d in dict.fromkeys(descriptors) if d not in first["descriptors"]]
        summary: dict[str, Any] = {"run_id": add_id, "out_dir": root, "added_descriptors": added_names,
                                   "shards": len(shards), "seconds": 0.0}
        if not added_names:
            return summary
        embed = dataclasses.replace(config.embed, descriptors=tuple(added_names), **policy)
        config = dataclasses.replace(config, embed=embed)
        added = {key: Embedder(embed).identity[key] for key in ("models", "descriptors")}
        start = time.perf_counter()
        p = beam.Pipeline(options=pipeline_options(config))
        _ = (p | "Shards" >> beam.Create(sorted(shards)) | "Extend" >> beam.ParDo(ExtendShard(config, added, add_id)))
        p.run().wait_until_finish()
        stage = _join(root, ADDING, add_id)
        problems = [p for path in list_files(_join(stage, "problems", "*.json"))
                    for p in json.loads(FileSystems.open(path).read())]
        if problems:
            FileSystems.delete([_join(root, ADDING)])
            raise ValueError(f"{len(problems)} videos cannot be re-embedded as they were, e.g. {problems[0]}; "
                             f"nothing was added: re-embed them with `styleaxis embed INPUTS --out {root}` "
                             "(or --force), then add again")
        with contextlib.suppress(Exception):
            FileSystems.delete([_join(stage, "tmp")])
        commit_folder(root, stage, add_id)
        FileSystems.delete([_join(root, ADDING)])  # empty now; we hold the lock, so no other add uses it
        summary["seconds"] = time.perf_counter() - start
        write_run_log(root, add_id, summary)
    return summary
