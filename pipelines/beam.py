"""The embedding job as an Apache Beam pipeline: URIs -> keyframes -> RunInference -> Parquet.

Stages (each a Beam SDK part):
  Create(uris) -> ParDo(DecodeVideo) --frames--> RunInference(EmbedderModelHandler) -> keyframe rows
                                      \\--meta--> (dead letter for failures: a videos/ row, never a crash)
  CoGroupByKey(meta, embedded keyframes) -> video rows (mean of L2-normalised keyframe vectors)
  WriteToParquet(keyframes/), WriteToParquet(videos/)

The pipeline code knows URIs and rows; tensors stay behind the ModelHandler. The local default
runner is Beam's in-process FnApiRunner (the "DirectRunner" name first tries to download Prism,
which cannot work offline); any other ``--runner`` and its options pass through unchanged.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from styleaxis.embed.embedder import EmbedConfig, Embedder, video_vector
from styleaxis.embed.schema import keyframes_schema, videos_schema

from .dataset import completed_videos
from .video_io import DecodeError, KeyframePolicy, content_hash, read_keyframes

__all__ = ["PipelineConfig", "KeyframeItem", "EmbedderModelHandler", "run_embed", "DEFAULT_RUNNER"]

DEFAULT_RUNNER = "FnApiRunner"
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the embedding job needs besides its inputs.

    Attributes:
        out_dir: run directory; ``keyframes/`` and ``videos/`` datasets are written under it.
        embed: models, descriptors and resize policy.
        policy: which frames of a video are embedded.
        max_side: frames are downscaled on decode so their longer side is at most this.
        min_batch_size / max_batch_size: RunInference batching knobs.
        hash_mode: ``sampled`` (size + sampled bytes) or ``full`` content hash.
        runner: Beam runner name; ``pipeline_args`` are passed to PipelineOptions unchanged.
        progress: show a progress bar on stderr.
    """

    out_dir: Path
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    policy: KeyframePolicy = field(default_factory=KeyframePolicy)
    max_side: int = 1024
    min_batch_size: int = 1
    max_batch_size: int = 16
    hash_mode: str = "sampled"
    runner: str = DEFAULT_RUNNER
    pipeline_args: tuple[str, ...] = ()
    progress: bool = True


@dataclass(frozen=True)
class KeyframeItem:
    """One decoded keyframe on its way to the model."""

    video_id: str
    frame_index: int
    pts_s: float
    width: int
    height: int
    image: np.ndarray = field(repr=False)


class DecodeVideo(beam.DoFn):
    """Decode a video's keyframes; emit them, and a metadata record to the ``meta`` output.

    Any failure becomes a ``failed`` metadata record naming the cause: one bad file never stops
    the job.
    """

    def __init__(self, policy: KeyframePolicy, max_side: int, hash_mode: str, total: int, progress: bool):
        self.policy, self.max_side, self.hash_mode = policy, max_side, hash_mode
        self.total, self.progress = total, progress

    def setup(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=self.total, unit="video", desc="embed", disable=not self.progress)

    def teardown(self) -> None:
        self._bar.close()

    def process(self, element: tuple[str, str]) -> Iterator[Any]:
        video_id, uri = element
        meta: dict[str, Any] = {
            "video_id": video_id, "uri": uri, "content_hash": None, "duration_s": None, "fps": None,
            "n_keyframes": 0, "status": "failed", "error": None,
        }
        try:
            meta["content_hash"] = content_hash(uri, self.hash_mode)
            result = read_keyframes(uri, self.policy, max_side=self.max_side)
        except (DecodeError, OSError, ValueError) as exc:
            meta["error"] = str(exc)
        except Exception as exc:  # a decoder bug on crafted input must not stop the job
            meta["error"] = f"{uri}: unexpected {type(exc).__name__}: {exc}"
        else:
            info = result.info
            meta.update(duration_s=info.duration_s, fps=info.fps, n_keyframes=len(result.keyframes),
                        status=result.status, error=result.error)
            for kf in result.keyframes:
                yield KeyframeItem(video_id, kf.frame_index, kf.pts_s, info.width, info.height, kf.image)
        self._bar.update(1)
        yield beam.pvalue.TaggedOutput("meta", (video_id, meta))


class EmbedderModelHandler(ModelHandler[KeyframeItem, PredictionResult, Embedder]):
    """The Beam boundary of the styleaxis models: a batch of keyframes in, one vector dict per keyframe out."""

    def __init__(self, config: EmbedConfig, *, min_batch_size: int = 1, max_batch_size: int = 16, **kwargs: Any):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size, **kwargs)
        self.config = config

    def load_model(self) -> Embedder:
        return Embedder(self.config).load()

    def run_inference(
        self, batch: Sequence[KeyframeItem], model: Embedder, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        vectors = model.embed([item.image for item in batch])
        for i, item in enumerate(batch):
            yield PredictionResult(item, {name: v[i] for name, v in vectors.items()}, model_id="styleaxis")

    def get_metrics_namespace(self) -> str:
        return "styleaxis"


def _keyframe_row(result: PredictionResult) -> dict[str, Any]:
    item: KeyframeItem = result.example
    row = {"video_id": item.video_id, "frame_index": item.frame_index, "pts_s": item.pts_s,
           "width": item.width, "height": item.height}
    row.update({name: vec.tolist() for name, vec in result.inference.items()})
    return row


def _video_row(grouped: tuple[str, dict[str, list]], descriptors: tuple[str, ...]) -> dict[str, Any]:
    """Join a video's metadata with its keyframe vectors; its vector is the mean of L2-normalised keyframe vectors."""
    _, parts = grouped
    (meta,) = parts["meta"]
    row = dict(meta)
    frames = sorted(parts["frames"], key=lambda f: f[0])  # fixed order: the mean is reproducible bit for bit
    for name in descriptors:
        row[name] = video_vector(np.stack([vecs[name] for _, vecs in frames])).tolist() if frames else None
    if meta["status"] != "failed" and not frames:
        row["status"], row["error"] = "failed", row["error"] or f"{meta['uri']}: no keyframe could be embedded"
    return row


def build_pipeline(p: beam.Pipeline, videos: list[tuple[str, str]], config: PipelineConfig,
                   metadata: dict[str, Any]) -> None:
    """Add the embedding job's transforms to ``p`` (exposed so tests can run it on a TestPipeline)."""
    prefix = f"part-{metadata['run_id']}"
    descriptors = tuple(metadata["descriptors"])
    decoded = (
        p
        | "Videos" >> beam.Create(videos)
        | "Decode" >> beam.ParDo(DecodeVideo(config.policy, config.max_side, config.hash_mode,
                                             len(videos), config.progress)).with_outputs("meta", main="frames")
    )
    handler = EmbedderModelHandler(config.embed, min_batch_size=config.min_batch_size,
                                   max_batch_size=config.max_batch_size)
    embedded = decoded.frames | "Embed" >> RunInference(handler)
    keyframe_rows = embedded | "KeyframeRow" >> beam.Map(_keyframe_row)
    keyframe_rows | "WriteKeyframes" >> beam.io.WriteToParquet(
        str(config.out_dir / "keyframes" / prefix), keyframes_schema(metadata), file_name_suffix=".parquet")
    frames_by_video = embedded | "ByVideo" >> beam.Map(
        lambda r: (r.example.video_id, (r.example.frame_index, r.inference)))
    (
        {"meta": decoded.meta, "frames": frames_by_video}
        | "Join" >> beam.CoGroupByKey()
        | "VideoRow" >> beam.Map(_video_row, descriptors)
        | "WriteVideos" >> beam.io.WriteToParquet(
            str(config.out_dir / "videos" / prefix), videos_schema(metadata), file_name_suffix=".parquet")
    )


def run_metadata(embedder_identity: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """File metadata for a run: model identity, descriptors, resize policy, code version, run id."""
    from styleaxis import __version__

    return {**embedder_identity, "code_version": __version__,
            "run_id": run_id or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]}


def run_embed(videos: list[tuple[str, str]], config: PipelineConfig) -> dict[str, Any]:
    """Embed (video_id, uri) pairs into ``config.out_dir``; returns a summary of what was done.

    Videos already in the output with the same content hash and model identity are skipped, so
    a rerun over the same inputs writes nothing new.
    """
    metadata = run_metadata(Embedder(config.embed).identity)
    done = completed_videos(config.out_dir, metadata["models"], config.hash_mode)
    todo = [(vid, uri) for vid, uri in videos if (vid, uri) not in done]
    summary = {"run_id": metadata["run_id"], "inputs": len(videos), "skipped": len(videos) - len(todo),
               "embedded": len(todo), "video_ids": [vid for vid, _ in todo], "out_dir": str(config.out_dir)}
    if not todo:
        return summary
    config.out_dir.mkdir(parents=True, exist_ok=True)
    options = PipelineOptions(list(config.pipeline_args))
    options.view_as(StandardOptions).runner = options.view_as(StandardOptions).runner or config.runner
    start = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, todo, config, metadata)
    summary["seconds"] = time.perf_counter() - start
    return summary
