"""The embed job's decode step: (video_id, uri) -> :class:`DecodedVideo`, decoded ahead of the model.

Decoding runs in a persistent child process with a time limit (:mod:`styleaxis.media.isolation`),
so a decoder that hangs or crashes costs one ``failed`` row. With ``ahead`` > 0 a background thread
feeds that process: ``process`` hands each video to the thread and emits the oldest finished one
once more than ``ahead`` are in flight, so the next videos are hashed and decoded while the
runner's downstream steps (batching, the model, the writer: fused into the same thread by Beam's
runners) work on the current ones. The order of the videos is kept. What is still in flight at the
end of a bundle is emitted from ``finish_bundle``.

The step reports Beam metrics (namespace ``styleaxis``): ``decode_ms`` (time in the decoder per
video, hashing included) and ``decode_wait_ms`` (time the pipeline thread waited for a decode: the
part of decoding that did not overlap the rest).
"""
from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from ..media.isolation import CallCrashed, CallTimedOut, IsolatedCall
from ..media.video import DecodeError, Keyframe
from .inputs import content_hash, local_copy
from .records import frame_flag

__all__ = ["DecodedVideo", "DecodeVideo"]


@dataclass(frozen=True)
class DecodedVideo:
    """One video on its way to the model: its ``videos/`` columns so far and its keyframes.

    ``meta`` holds video_id, uri, content_hash, duration_s, fps, status and error; ``flags`` the
    pixel check of each keyframe (None when the frame is usable).
    """

    meta: dict[str, Any]
    size: tuple[int, int] = (0, 0)
    keyframes: list[Keyframe] = field(default_factory=list, repr=False)
    flags: list[str | None] = field(default_factory=list)


class DecodeVideo(beam.DoFn):
    """Decode a (video_id, uri) into a :class:`DecodedVideo`; any failure is a ``failed`` one naming the cause.

    ``ahead``: videos decoded ahead of the one emitted (0: each is decoded when its turn comes, in the
    pipeline thread; the DaskRunner needs 0, as it loses what ``finish_bundle`` emits).
    """

    def __init__(self, config: Any, total: int, ahead: int = 0) -> None:
        """``config`` is the job's :class:`~styleaxis.pipelines.beam.PipelineConfig` (not imported: beam imports
        this module)."""
        self.policy, self.max_side, self.decoders = config.policy, config.max_side, config.decoders
        self.timeout_s, self.decode_fn, self.hash_mode = config.decode_timeout_s, config.decode_fn, config.hash_mode
        self.checks, self.total, self.progress, self.ahead = config.frame_checks, total, config.progress, ahead

    def setup(self) -> None:
        from tqdm import tqdm

        isolate = self.timeout_s is not None
        self._decode = IsolatedCall(self.decode_fn, self.timeout_s) if isolate else self.decode_fn
        self._bar = tqdm(total=self.total, unit="video", desc="embed", disable=not self.progress)
        # one thread: the IsolatedCall serves one caller at a time, and one decoder process is what we keep
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="styleaxis-decode") if self.ahead else None
        self._pending: collections.deque[Future[tuple[DecodedVideo, float]]] = collections.deque()
        self._decode_ms = Metrics.distribution("styleaxis", "decode_ms")
        self._wait_ms = Metrics.distribution("styleaxis", "decode_wait_ms")

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(self._decode, IsolatedCall):
            self._decode.close()
        self._bar.close()

    def process(self, element: tuple[str, str]) -> Iterator[DecodedVideo]:
        if self._pool is None:
            start = time.perf_counter()
            video, seconds = self._timed(*element)
            self._emitted(video, seconds, time.perf_counter() - start)
            yield video
            return
        self._pending.append(self._pool.submit(self._timed, *element))
        while len(self._pending) > self.ahead:
            yield self._next()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        while self._pending:
            yield WindowedValue(self._next(), MIN_TIMESTAMP, [GlobalWindow()])

    def _next(self) -> DecodedVideo:
        start = time.perf_counter()
        video, seconds = self._pending.popleft().result()
        self._emitted(video, seconds, time.perf_counter() - start)
        return video

    def _emitted(self, video: DecodedVideo, decode_s: float, wait_s: float) -> None:
        # metrics are updated here, in the pipeline thread: Beam's metric containers are per thread
        self._decode_ms.update(round(decode_s * 1000))
        self._wait_ms.update(round(wait_s * 1000))
        self._bar.update(1)

    def _timed(self, video_id: str, uri: str) -> tuple[DecodedVideo, float]:
        start = time.perf_counter()
        video = self.decode(video_id, uri)
        return video, time.perf_counter() - start

    def decode(self, video_id: str, uri: str) -> DecodedVideo:
        """Hash and decode one input (in the decoder process unless decoding is in-process)."""
        meta: dict[str, Any] = {"video_id": video_id, "uri": uri, "content_hash": None, "duration_s": None,
                                "fps": None, "status": "failed", "error": None}
        path = uri
        try:
            with local_copy(uri) as path:  # remote inputs are copied next to the decoder
                meta["content_hash"] = content_hash(path, self.hash_mode)
                result = self._decode(path, self.policy, self.max_side, self.decoders)
        except (DecodeError, OSError, ValueError) as exc:
            meta["error"] = str(exc).replace(path, uri)  # name the input, not its temporary copy
        except (CallTimedOut, CallCrashed) as exc:
            meta["error"] = f"{uri}: {exc}"
        except Exception as exc:  # a decoder bug on crafted input must not stop the job: it becomes the row's error
            meta["error"] = f"{uri}: unexpected {type(exc).__name__}: {exc}"
        else:
            info = result.info
            meta.update(duration_s=info.duration_s, fps=info.fps, status=result.status, error=result.error)
            flags = [frame_flag(kf.image, self.checks) for kf in result.keyframes]
            return DecodedVideo(meta, (info.width, info.height), result.keyframes, flags)
        return DecodedVideo(meta)
