"""The embedding job as an Apache Beam pipeline: URIs -> keyframes -> RunInference -> Parquet shards.

    Create((video_id, uri)) -> ParDo(DecodeVideo) -> RunInference(EmbedderModelHandler)
        -> Map(rows) -> ParDo(WriteShards) -> RUN/_staging/<run_id>/   then, on the driver:
    store.commit -> RUN/videos/, RUN/keyframes/

One element is one video, from decoding to the sink: its keyframes are embedded together and its
``videos/`` row is built from them without a join, so memory holds only the videos in flight
(no CoGroupByKey over the catalogue) and a video's vectors never depend on which other videos
shared its batch. A video that cannot be decoded or embedded flows on as a ``failed`` row with the
error: the dead letters land in ``videos/``, and one bad file never stops the job. Decoding runs in
a persistent child process with a time limit, a few videos ahead of the model so that the two
overlap (:mod:`styleaxis.pipelines.decode`); a decoder that hangs or crashes costs one ``failed``
row. The writer stages complete shards as it goes; the driver commits them when the pipeline ends,
and the next run commits what a killed run staged (:mod:`styleaxis.pipelines.store`).

The local default runner is Beam's in-process FnApiRunner (the "DirectRunner" name first tries to
download Prism, which cannot work offline); ``--runner`` and every other pipeline option pass
through unchanged (Flink, Spark, Dataflow). Beam 2.77's DaskRunner loses what a DoFn emits from
``finish_bundle``, which is where RunInference's BatchElements emits its last batch, so on Dask
the same ModelHandler runs in a plain ParDo, one video per call.
"""
from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.embed.schema import keyframes_schema, videos_schema

from ..media.disk import DiskFullError, find_disk_full
from ..media.video import BACKENDS, DEFAULT_MAX_SIDE, DEFAULT_PREFER, DecodeResult, KeyframePolicy, read_keyframes
from .dataset import committed_identity, completed_videos
from .decode import DecodedVideo, DecodeVideo
from .records import FrameChecks, video_rows
from .store import commit, recover, run_lock, write_run_log, write_shard

__all__ = ["PipelineConfig", "DecodedVideo", "DecodeVideo", "EmbedderModelHandler", "build_pipeline",
           "pipeline_options", "run_embed", "job_timings", "DEFAULT_RUNNER", "DASK_RUNNER"]

DEFAULT_RUNNER = "FnApiRunner"
#: Beam knows the DaskRunner only by its full name; "DaskRunner" is accepted as a short alias.
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the embedding job needs besides its inputs.

    Attributes:
        out_dir: run directory (local path or a bucket URI); see :mod:`styleaxis.pipelines.store`.
        embed: models, descriptors and resize policy.
        policy: which frames of a video are embedded.
        max_side: frames are downscaled on decode so their longer side is at most this.
        decoders: decoder backends in the order they are tried.
        decode_timeout_s: time limit per video for decoding, in a persistent child process;
            None decodes in-process (no time limit, no protection against decoder crashes).
        decode_fn: the decode function (module-level, so it pickles by reference); tests put
            faulty decoders here.
        decode_ahead: videos decoded ahead of the model (a background thread feeds the decoder
            process, so decoding overlaps inference); None: enough for one batch plus one
            (``max_batch_keyframes // policy.max_keyframes + 1``); 0: decode each video when its turn
            comes (always so on the DaskRunner).
        frame_checks: thresholds for black and constant frames, which are flagged and left out of
            the video's vectors.
        hash_mode: ``sampled`` (size + first/middle/last MiB) or ``full`` content hash.
        force: re-embed every input, replacing the rows already in ``out_dir``.
        retry_failed: re-embed inputs whose committed row is ``failed`` (e.g. a decode time-out).
        shard_size: videos per Parquet shard; a shard is written as soon as it is full, so a killed
            run loses at most the unfinished shards of each worker.
        min_batch_keyframes / max_batch_keyframes: RunInference batching, in keyframes (one element
            is one video; Beam's BatchElements adapts the batch between the two).
        max_batch_duration_s: RunInference's longest wait to fill a batch (streaming-style batching).
        batch_across_videos: embed the keyframes of a whole batch of videos in one forward pass
            (bigger batches on a GPU); off by default because the last bits of a vector then depend
            on which videos shared the batch, and reruns are promised identical vectors.
        runner: Beam runner name; ``pipeline_args`` are passed to PipelineOptions unchanged.
        progress: show a progress bar on stderr.
    """

    out_dir: Path | str
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    policy: KeyframePolicy = field(default_factory=KeyframePolicy)
    max_side: int = DEFAULT_MAX_SIDE
    decoders: tuple[str, ...] = DEFAULT_PREFER
    decode_timeout_s: float | None = 120.0
    decode_fn: Callable[..., DecodeResult] = read_keyframes
    decode_ahead: int | None = None
    frame_checks: FrameChecks = field(default_factory=FrameChecks)
    hash_mode: str = "sampled"
    force: bool = False
    retry_failed: bool = False
    shard_size: int = 64
    min_batch_keyframes: int = 1
    max_batch_keyframes: int = 32
    max_batch_duration_s: float | None = None
    batch_across_videos: bool = False
    runner: str = DEFAULT_RUNNER
    pipeline_args: tuple[str, ...] = ()
    progress: bool = True

    def __post_init__(self) -> None:
        if self.hash_mode not in ("sampled", "full"):
            raise ValueError(f"hash_mode must be 'sampled' or 'full', got {self.hash_mode!r}")
        if self.decode_timeout_s is not None and not self.decode_timeout_s > 0:
            raise ValueError(f"decode_timeout_s must be > 0 or None, got {self.decode_timeout_s}")
        if self.decode_ahead is not None and self.decode_ahead < 0:
            raise ValueError(f"decode_ahead must be >= 0 or None, got {self.decode_ahead}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if not 1 <= self.min_batch_keyframes <= self.max_batch_keyframes:
            raise ValueError("need 1 <= min_batch_keyframes <= max_batch_keyframes, got "
                             f"{self.min_batch_keyframes} and {self.max_batch_keyframes}")
        if self.max_batch_keyframes < self.policy.max_keyframes:
            raise ValueError(f"max_batch_keyframes ({self.max_batch_keyframes}) must hold one whole video: "
                             f">= policy.max_keyframes ({self.policy.max_keyframes})")
        if self.max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {self.max_side}")
        if not self.decoders or not set(self.decoders) <= set(BACKENDS):
            raise ValueError(f"decoders must name backends from {list(BACKENDS)}, got {list(self.decoders)}")


class EmbedderModelHandler(ModelHandler[DecodedVideo, PredictionResult, Embedder]):
    """The Beam boundary of the styleaxis models: a batch of videos in, each video's keyframe vectors out.

    ``PredictionResult.inference`` is {descriptor: (n_keyframes, dim) float32}, None for a video
    without keyframes, or the error message when embedding it failed (the video becomes a failed
    row; the job goes on). Batches are sized in keyframes (``element_size_fn``).
    """

    def __init__(self, config: EmbedConfig, *, batch_across_videos: bool = False, min_batch_keyframes: int = 1,
                 max_batch_keyframes: int = 32, max_batch_duration_s: float | None = None) -> None:
        super().__init__(min_batch_size=min_batch_keyframes, max_batch_size=max_batch_keyframes,
                         max_batch_duration_secs=max_batch_duration_s, element_size_fn=_keyframe_weight)
        self.config, self.batch_across_videos = config, batch_across_videos

    def load_model(self) -> Embedder:
        start = time.perf_counter()
        model = Embedder(self.config).load()
        # reported with the first batch: Beam counts no metrics where runners load models (setup, shared handles)
        self._load_ms = round(1000 * (time.perf_counter() - start))
        return model

    def run_inference(self, batch: Sequence[DecodedVideo], model: Embedder,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        start, start_s = time.perf_counter(), time.time()
        if getattr(self, "_load_ms", None) is not None:
            Metrics.distribution("styleaxis", "load_ms").update(self._load_ms)
            self._load_ms = None
        out = self._embed(batch, model)
        _report_batch(start, start_s, sum(len(video.keyframes) for video in batch))
        return out

    def _embed(self, batch: Sequence[DecodedVideo], model: Embedder) -> list[PredictionResult]:
        results: list[dict[str, np.ndarray] | str | None] = [None] * len(batch)
        pending = [i for i, video in enumerate(batch) if video.keyframes]
        if self.batch_across_videos and len(pending) > 1:
            try:
                vectors = model.embed([kf.image for i in pending for kf in batch[i].keyframes])
            except (RuntimeError, ValueError):  # one bad video must not fail its batch-mates: retry one by one
                pass
            else:
                bounds = np.cumsum([0] + [len(batch[i].keyframes) for i in pending])
                for j, i in enumerate(pending):
                    results[i] = {name: v[bounds[j]:bounds[j + 1]] for name, v in vectors.items()}
                pending = []
        for i in pending:
            try:
                results[i] = model.embed([kf.image for kf in batch[i].keyframes])
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory: this video fails, the job goes on
                results[i] = f"embedding failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return [PredictionResult(video, result, model_id="styleaxis") for video, result in zip(batch, results)]

    def get_num_bytes(self, batch: Sequence[DecodedVideo]) -> int:
        """Pixel bytes of the batch, for RunInference's metrics (its default pickles the whole batch)."""
        return sum(kf.image.nbytes for video in batch for kf in video.keyframes)

    def get_metrics_namespace(self) -> str:
        return "styleaxis"


def _report_batch(start: float, start_s: float, keyframes: int) -> None:
    """Beam metrics of one model batch: model_ms (embedding time), batch_start_s / batch_end_s (wall clock,
    whose min and max bound the steady state) and the keyframes counter."""
    Metrics.distribution("styleaxis", "model_ms").update(round(1000 * (time.perf_counter() - start)))
    Metrics.distribution("styleaxis", "batch_start_ms").update(round(1000 * start_s))
    Metrics.distribution("styleaxis", "batch_end_ms").update(round(1000 * time.time()))
    Metrics.counter("styleaxis", "keyframes").inc(keyframes)


def _keyframe_weight(video: DecodedVideo) -> int:
    return max(1, len(video.keyframes))


class _EmbedEach(beam.DoFn):
    """The ModelHandler in a plain ParDo, one video per call: RunInference's stand-in on the DaskRunner."""

    def __init__(self, handler: EmbedderModelHandler) -> None:
        self.handler = handler

    def setup(self) -> None:
        self._model = self.handler.load_model()

    def process(self, video: DecodedVideo) -> Iterable[PredictionResult]:
        return self.handler.run_inference([video], self._model)


def _rows(result: PredictionResult, descriptors: tuple[str, ...]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A video's ``videos/`` row and ``keyframes/`` rows from its PredictionResult."""
    video: DecodedVideo = result.example
    meta, vectors = dict(video.meta), result.inference
    if isinstance(vectors, str):
        meta["status"] = "failed"
        meta["error"] = "; ".join(filter(None, [f"{meta['uri']}: {vectors}", meta["error"]]))
        return video_rows(meta, video.size, [], {}, descriptors)
    frames = [(kf.frame_index, kf.pts_s, flag) for kf, flag in zip(video.keyframes, video.flags)]
    return video_rows(meta, video.size, frames, vectors or {}, descriptors)


class WriteShards(beam.DoFn):
    """Stage rows as Parquet shards of ``shard_size`` videos (plus the rest at the end of a bundle)."""

    def __init__(self, root: str, metadata: dict[str, Any], shard_size: int) -> None:
        self.root, self.metadata, self.shard_size = root, metadata, shard_size
        self._statuses = {s: Metrics.counter("styleaxis", f"videos_{s}") for s in ("ok", "partial", "failed")}

    def setup(self) -> None:
        self._schemas = keyframes_schema(self.metadata), videos_schema(self.metadata)

    def start_bundle(self) -> None:
        self._videos: list[dict[str, Any]] = []
        self._keyframes: list[dict[str, Any]] = []

    def process(self, rows: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
        video, keyframes = rows
        self._videos.append(video)
        self._keyframes.extend(keyframes)
        self._statuses[video["status"]].inc()
        if len(self._videos) >= self.shard_size:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        start = time.perf_counter()
        if self._videos:
            keyframe_schema, video_schema = self._schemas
            keyframes = pa.Table.from_pylist(self._keyframes, schema=keyframe_schema)
            videos = pa.Table.from_pylist(self._videos, schema=video_schema)
            write_shard(self.root, self.metadata["run_id"], keyframes, videos)
            Metrics.distribution("styleaxis", "write_ms").update(round(1000 * (time.perf_counter() - start)))
        self._videos, self._keyframes = [], []


def build_pipeline(p: beam.Pipeline, videos: list[tuple[str, str]], config: PipelineConfig,
                   metadata: dict[str, Any]) -> None:
    """Add the embedding job's transforms to ``p`` (exposed so tests can run it on a TestPipeline).

    Every step has one output: Beam 2.77's DaskRunner hands all outputs of a multi-output DoFn to
    every consumer, so dead letters travel in the main stream as ``failed`` rows.
    """
    handler = EmbedderModelHandler(config.embed, batch_across_videos=config.batch_across_videos,
                                   min_batch_keyframes=config.min_batch_keyframes,
                                   max_batch_keyframes=config.max_batch_keyframes,
                                   max_batch_duration_s=config.max_batch_duration_s)
    on_dask = p.runner.__class__.__name__ == "DaskRunner"
    embed = beam.ParDo(_EmbedEach(handler)) if on_dask else RunInference(handler)
    ahead = config.decode_ahead
    if ahead is None:
        ahead = config.max_batch_keyframes // config.policy.max_keyframes + 1
    ahead = 0 if on_dask else ahead
    (
        p
        | "Videos" >> beam.Create(videos)
        | "Decode" >> beam.ParDo(DecodeVideo(config, len(videos), ahead))
        | "Embed" >> embed
        | "Rows" >> beam.Map(_rows, tuple(metadata["descriptors"]))
        | "WriteShards" >> beam.ParDo(WriteShards(str(config.out_dir), metadata, config.shard_size))
    )


def run_metadata(embedder_identity: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """File metadata for a run: model identity, descriptors, resize policy, code version, run id.

    Run ids start with the UTC time, so they sort in the order runs started.
    """
    from styleaxis import __version__

    return {**embedder_identity, "code_version": __version__,
            "run_id": run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]}


def pipeline_options(config: PipelineConfig) -> PipelineOptions:
    """Beam options from ``config.pipeline_args`` unchanged; the runner is ``config.runner`` unless the
    arguments name one (``DaskRunner`` is expanded to its full name)."""
    options = PipelineOptions(list(config.pipeline_args))
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or config.runner
    if standard.runner == "DaskRunner":
        standard.runner = DASK_RUNNER
    return options


def _check_identity(out_dir: str, metadata: dict[str, Any]) -> None:
    """Refuse to add vectors from other models or settings to a run directory (search cannot mix them)."""
    found = committed_identity(out_dir)
    wanted = {key: metadata[key] for key in found or {}}
    if found is not None and found != wanted:
        differs = sorted(key for key in found if found[key] != wanted[key])
        have, want = list(found.get("descriptors") or {}), list(metadata["descriptors"])
        if set(differs) <= {"models", "descriptors"} and set(have) != set(want):
            missing = [name for name in want if name not in have]
            hint = (f"add {', '.join(missing)} to it first (`styleaxis embed --out {out_dir} --add-descriptors "
                    f"{','.join(missing)}`), or embed with --descriptors {','.join(have)}" if missing
                    else f"embed with --descriptors {','.join(have)} (what it holds)")
            raise ValueError(f"{out_dir} holds descriptors {','.join(have)}, this job computes {','.join(want)}: "
                             f"{hint}")
        raise ValueError(f"{out_dir} holds vectors made with other {', '.join(differs)} "
                         f"({ {k: found[k] for k in differs} } vs { {k: wanted[k] for k in differs} }): "
                         "embed into a new --out directory")


class _DropDiskFull(logging.Filter):
    """Beam logs a DoFn's exception with its traceback before re-raising it: not for a full disk."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and find_disk_full(record.exc_info[1]))


@contextlib.contextmanager
def _disk_full_in_one_line() -> Iterator[None]:
    """Turn a worker's DiskFullError, however the runner wraps it, back into the one-line DiskFullError
    (the staged shards stay: the next run commits them), and keep Beam from logging its traceback."""
    logger, quiet = logging.getLogger("apache_beam.runners.common"), _DropDiskFull()
    logger.addFilter(quiet)
    try:
        yield
    except Exception as exc:
        found = find_disk_full(exc)
        message = str(found) if found else next((line for line in str(exc).splitlines() if _DISK_FULL in line), None)
        if message is None:
            raise
        message = message.split("DiskFullError: ")[-1].split(" [while running")[0].strip()
        raise DiskFullError(message) from exc
    finally:
        logger.removeFilter(quiet)


#: how the message of a worker's DiskFullError reads (remote runners may hand it over as text only)
_DISK_FULL = "; free space and run again"


def job_timings(result: beam.runners.runner.PipelineResult, start_s: float, seconds: float) -> dict[str, float]:
    """Where a job's wall time went, from its Beam metrics (empty where the runner reports none).

    ``startup_s``: from the pipeline's start to its first model batch (Beam, model loading, the decoder
    process, the first decodes); ``steady_s``: from the first batch's start to the last batch's end,
    ``steady_keyframes_per_s`` the rate in it; ``tail_s`` the rest (last shards, commit). ``model_s``,
    ``write_s``, ``decode_s`` and ``decode_wait_s`` sum those steps (decoding overlaps the model: only
    its wait adds to the wall time); ``load_s`` is the model loading inside the start-up.
    """
    from apache_beam.metrics.metric import MetricsFilter

    try:
        found = result.metrics().query(MetricsFilter().with_namespace("styleaxis"))
    except (NotImplementedError, AttributeError):
        return {}
    values = {r.key.metric.name: r.committed or r.attempted for r in found["distributions"] + found["counters"]}
    if "batch_start_ms" not in values or not values["batch_start_ms"].count:
        return {}
    first, last = values["batch_start_ms"].min / 1000, values["batch_end_ms"].max / 1000
    out = {name[:-3] + "_s": values[name].sum / 1000 for name in ("model_ms", "write_ms", "decode_ms",
                                                                  "decode_wait_ms", "load_ms") if name in values}
    out.update(startup_s=first - start_s, steady_s=last - first, tail_s=seconds - (last - start_s),
               keyframes=float(values["keyframes"]), batches=float(values["model_ms"].count))
    out["steady_keyframes_per_s"] = out["keyframes"] / max(out["steady_s"], 1e-9)
    return out


def run_embed(videos: list[tuple[str, str]], config: PipelineConfig) -> dict[str, Any]:
    """Embed (video_id, uri) pairs into ``config.out_dir``; returns a summary of what was done.

    Under the run directory's lock: first commit what killed runs left staged, then skip the videos
    already committed with the same content hash (unless ``force``; failed ones too with
    ``retry_failed``), run the pipeline on the rest, commit its shards, and write the run's log last.
    """
    root = str(config.out_dir)
    metadata = run_metadata(Embedder(config.embed).identity)
    with run_lock(root):
        recovered = recover(root)
        _check_identity(root, metadata)
        done = set() if config.force else completed_videos(root, config.hash_mode, config.retry_failed)
        todo = [(vid, uri) for vid, uri in videos if (vid, uri) not in done]
        summary: dict[str, Any] = {
            "run_id": metadata["run_id"], "inputs": len(videos), "skipped": len(videos) - len(todo),
            "embedded": len(todo), "video_ids": [vid for vid, _ in todo], "out_dir": root,
            "recovered": sum(len(ids) for ids in recovered.values()), "recovered_runs": sorted(recovered),
            "seconds": 0.0,
        }
        if todo:
            start = time.perf_counter()
            p = beam.Pipeline(options=pipeline_options(config))
            build_pipeline(p, todo, config, metadata)
            with _disk_full_in_one_line():
                start_s = time.time()
                result = p.run()
                try:
                    result.wait_until_finish()
                finally:
                    if hasattr(result, "client"):  # DaskRunner: close its client (and the LocalCluster it started)
                        result.client.close()
            commit(root, metadata["run_id"])
            summary["seconds"] = time.perf_counter() - start
            summary["timings"] = job_timings(result, start_s, summary["seconds"])
        write_run_log(root, metadata["run_id"], summary)
    return summary
