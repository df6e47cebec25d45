"""Video writing: the sample catalogues, the test clips and stylised videos are encoded here (PyAV)."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

@dataclass(frozen=True)
class _Codec:
    encoder: str
    crf: int
    options: dict[str, str]


_CODECS = {
    "h264": _Codec("libx264", 23, {}),
    "vp9": _Codec("libvpx-vp9", 32, {"b": "0"}),  # libvpx uses constant quality only with bitrate 0
    "av1": _Codec("libsvtav1", 35, {}),
}


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float,
    codec: Literal["h264", "vp9", "av1"] = "h264",
    gop: int | None = None,
    pix_fmt: str = "yuv420p",
    crf: int | None = None,
    times_s: Sequence[float] | None = None,
) -> Path:
    """Encode H x W x 3 uint8 RGB frames into a small video (test and demo material), atomically.

    The container follows the suffix (.mp4, .mkv, .webm, ...). ``gop`` pins key frames to every
    ``gop``-th frame (no scene-cut key frames); None keeps the encoder's default (long) GOP. ``crf``
    defaults per codec. ``times_s`` (one strictly increasing time per frame, millisecond precision)
    makes a variable-frame-rate video; ``fps`` is then only the nominal rate in the header. The file
    is written under a temporary name in the same folder and renamed, so readers never see a
    half-written video.
    """
    path = Path(path)
    spec = _CODECS.get(codec)
    if spec is None:
        raise ValueError(f"codec must be one of {sorted(_CODECS)}, got {codec!r}")
    try:
        av.codec.Codec(spec.encoder, "w")
    except av.codec.codec.UnknownCodecError as exc:
        raise ValueError(f"encoder {spec.encoder} for {codec} is not available in this PyAV build") from exc
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    _check_frame(first, first.shape)
    _check_size(first.shape, pix_fmt)
    pts = _frame_pts(times_s)
    options = {"crf": str(spec.crf if crf is None else crf), **spec.options}
    if gop is not None:
        options |= {"keyint_min": str(gop), "sc_threshold": "0"}

    # Same folder so os.replace is atomic; same suffix because it picks the muxer.
    tmp_name = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        with av.open(str(tmp_name), "w") as container:
            stream = container.add_stream(spec.encoder, rate=Fraction(fps).limit_denominator(10_000))
            stream.height, stream.width = first.shape[:2]
            stream.pix_fmt = pix_fmt
            if gop is not None:
                stream.codec_context.gop_size = gop
            if pts is not None:
                stream.codec_context.time_base = _VFR_TIME_BASE
            stream.options = options
            for i, frame in enumerate(itertools.chain([first], frames)):
                _check_frame(frame, first.shape)
                video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                if pts is not None:
                    if i >= len(pts):
                        raise ValueError(f"times_s has {len(pts)} times, but more frames were given")
                    video_frame.pts, video_frame.time_base = pts[i], _VFR_TIME_BASE
                container.mux(stream.encode(video_frame))
            if pts is not None and i + 1 != len(pts):
                raise ValueError(f"times_s has {len(pts)} times, but {i + 1} frames were given")
            container.mux(stream.encode(None))
        os.replace(tmp_name, path)
    except BaseException:
        tmp_name.unlink(missing_ok=True)  # the muxer creates the file only once it writes
        raise
    return path


_VFR_TIME_BASE = Fraction(1, 1000)


def _frame_pts(times_s: Sequence[float] | None) -> list[int] | None:
    """Frame times in seconds -> pts in milliseconds; they must start at >= 0 and strictly increase."""
    if times_s is None:
        return None
    pts = [round(t * 1000) for t in times_s]
    if not pts or pts[0] < 0 or any(b <= a for a, b in zip(pts, pts[1:])):
        raise ValueError("times_s must be >= 0 and strictly increasing at millisecond precision, "
                         f"got {list(times_s)[:8]}")
    return pts


def _check_frame(frame: np.ndarray, shape: tuple[int, ...]) -> None:
    """Frames must be H x W x 3 uint8 and all of the first frame's size."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be H x W x 3 uint8 RGB, got shape {frame.shape} dtype {frame.dtype}")
    if frame.shape != shape:
        raise ValueError(f"all frames must have the first frame's shape {shape}, got {frame.shape}")


def _check_size(shape: tuple[int, ...], pix_fmt: str) -> None:
    """The frame size must suit the pixel format's chroma subsampling (yuv420p: even width and height)."""
    fmt = av.VideoFormat(pix_fmt)
    step_w, step_h = 256 // fmt.chroma_width(256), 256 // fmt.chroma_height(256)
    height, width = shape[:2]
    if width % step_w or height % step_h:
        expected = f"{width - width % step_w}x{height - height % step_h}"
        raise ValueError(
            f"{pix_fmt} needs width a multiple of {step_w} and height a multiple of {step_h}: "
            f"got {width}x{height}, expected e.g. {expected}"
        )
