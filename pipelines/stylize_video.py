"""Stylising a video frame by frame: decode with PyAV, stylise in batches, encode H.264, keep the audio.

Frames are decoded in order, stylised ``batch_size`` at a time by any ``f(batch) -> batch`` (see
:func:`styleaxis.stylize.stylize.make_stylizer`) and streamed into :func:`video_io.write_video`, so
memory holds one batch, not the video. When the source has an audio stream, its packets are copied
unchanged (no re-encoding) into the result beside the new video stream, interleaved by time. The
output is written under a temporary name and renamed, so a reader never sees half a file. Frames keep
the source's count and average frame rate (a variable-frame-rate source becomes constant-rate).
"""
from __future__ import annotations

import heapq
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

from ..media.write import write_video

__all__ = ["VideoStylizeResult", "stylize_video"]


@dataclass(frozen=True)
class VideoStylizeResult:
    """What :func:`stylize_video` wrote: the file, frames in and out, and whether audio was copied."""

    path: Path
    frames: int
    fps: float
    audio: bool


def _frames(path: Path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def _stylised(path: Path, stylize: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
              done: Callable[[int], None]) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []

    def flush() -> Iterator[np.ndarray]:
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
        out = stylize(x)
        if out.shape != x.shape:
            raise ValueError(f"the stylizer returned shape {tuple(out.shape)} for frames of shape {tuple(x.shape)}")
        done(len(batch))
        batch.clear()
        yield from (out.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    for frame in _frames(path):
        batch.append(frame)
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()


def _packets(container: av.container.InputContainer, stream: av.stream.Stream,
             target: av.stream.Stream) -> Iterator[tuple[float, int, av.Packet]]:
    """(time in s, stream order, packet retargeted to ``target``) for every packet carrying data."""
    for packet in container.demux(stream):
        if packet.dts is None:  # the demuxer's flush packet
            continue
        time = float(packet.dts * packet.time_base)
        packet.stream = target
        yield time, target.index, packet


def _mux_with_audio(video_only: Path, source: Path, dst: Path) -> None:
    """Copy the video stream of ``video_only`` and the first audio stream of ``source`` into ``dst``."""
    with av.open(str(video_only)) as vin, av.open(str(source)) as ain, av.open(str(dst), "w") as out:
        v_out = out.add_stream_from_template(vin.streams.video[0])
        a_out = out.add_stream_from_template(ain.streams.audio[0])
        merged = heapq.merge(_packets(vin, vin.streams.video[0], v_out), _packets(ain, ain.streams.audio[0], a_out),
                             key=lambda item: item[:2])
        for _, _, packet in merged:
            out.mux(packet)


def stylize_video(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                  stylize: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 8,
                  progress: bool = True) -> VideoStylizeResult:
    """Stylise every frame of ``src`` into ``dst`` (H.264; container from the suffix), audio kept."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"video not found: {src}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with av.open(str(src)) as probe:
        if not probe.streams.video:
            raise ValueError(f"{src}: no video stream")
        video = probe.streams.video[0]
        fps = float(video.average_rate or video.guessed_rate or 25)
        total = video.frames or None
        has_audio = bool(probe.streams.audio)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.{uuid.uuid4().hex[:12]}.video{dst.suffix}")
    bar = tqdm(total=total, disable=not progress, desc=f"stylize {src.name}", unit="frame")
    count = [0]

    def done(n: int) -> None:
        count[0] += n
        bar.update(n)

    try:
        write_video(tmp, _stylised(src, stylize, batch_size, done), fps=fps)
        if has_audio:
            muxed = dst.with_name(f".{dst.stem}.{uuid.uuid4().hex[:12]}.muxed{dst.suffix}")
            try:
                _mux_with_audio(tmp, src, muxed)
                os.replace(muxed, dst)
            finally:
                muxed.unlink(missing_ok=True)
        else:
            os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
        bar.close()
    return VideoStylizeResult(dst, count[0], fps, has_audio)
