"""Caps on what one file may cost to decode, checked from its header before any pixel is decoded.

Why: a file's size says little about its decoding cost. A 140 KB PNG can declare 12000 x 12000 px
(430 MB of RGB once decoded) and an 844 KB video 8192 x 4320 px. :func:`check_limits` reads the
header only (PIL's ``Image.open`` parses it without decoding; PyAV's container and stream give the
frame size and duration) and raises :class:`MediaTooLarge` for a file over a cap; the number of
frames decoded is the KeyframePolicy's ``max_keyframes``. What a header cannot bound (frames that
grow past the declared size mid-stream, a codec that is slow on crafted input) is bounded by the
decoder process's time and memory limits (:mod:`styleaxis.media.isolation`).
"""
from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from .video import DEFAULT_MAX_SIDE, IMAGE_SUFFIXES, READ_ERRORS, DecodeError, declared_duration, read_frames

__all__ = ["MediaLimits", "MediaTooLarge", "check_limits", "read_frames_within"]

# PIL refuses images over 2 * Image.MAX_IMAGE_PIXELS in Image.open itself, before the size can be read.
_BOMB_SIZE = re.compile(r"Image size \((\d+) pixels\)")


@dataclass(frozen=True)
class MediaLimits:
    """Header caps; None leaves a quantity unchecked."""

    max_pixels: int | None = None  # width * height of one frame (still image or video)
    max_seconds: float | None = None  # video duration: the header's, else the packets' (demuxed, not decoded)

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")


class MediaTooLarge(ValueError):
    """A file whose header declares more than a cap allows; names the file, the quantity, the value and the cap."""

    def __init__(self, path: str, quantity: str, value: float, limit: float, detail: str = "") -> None:
        # every field in args: the error pickles, so it crosses IsolatedCall's pipe unchanged
        super().__init__(path, quantity, value, limit, detail)
        self.path, self.quantity, self.value, self.limit, self.detail = path, quantity, value, limit, detail

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.path}: {_number(self.value)} {self.quantity}{detail} exceeds the limit of {_number(self.limit)}"


def _number(value: float) -> str:
    """400000000, 1.5: whole numbers without an exponent or a decimal point."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def check_limits(path: str | os.PathLike[str], limits: MediaLimits) -> None:
    """Raise MediaTooLarge when the header of ``path`` declares more than ``limits`` allow.

    Images are told from videos by suffix, as :func:`read_frames` does. A video whose header PyAV
    cannot read raises DecodeError: its size cannot be checked, so it is not decoded either.
    """
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        _check_image(path, limits)
    else:
        _check_video(path, limits)


def read_frames_within(
    path: str | os.PathLike[str], limits: MediaLimits, reader: Callable[[Path], list[np.ndarray]] | None = None
) -> list[np.ndarray]:
    """``reader(path)`` once the header passes ``limits``; the default reader decodes as the nightly
    job does (:func:`read_frames`, frames downscaled to ``DEFAULT_MAX_SIDE``). Like read_frames, an
    unreadable file raises ValueError naming it (MediaTooLarge is one)."""
    try:
        check_limits(path, limits)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None
    if reader is None:
        return read_frames(path, max_side=DEFAULT_MAX_SIDE)
    return reader(Path(path))


def _check_image(path: Path, limits: MediaLimits) -> None:
    if limits.max_pixels is None:
        return
    try:
        with warnings.catch_warnings():  # PIL warns over MAX_IMAGE_PIXELS; MediaTooLarge below says more
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # parses the header; pixels are decoded on load(), never here
                width, height = image.size
    except Image.DecompressionBombError as exc:
        found = _BOMB_SIZE.search(str(exc))
        if found is None or int(found[1]) <= limits.max_pixels:
            raise DecodeError(f"{path}: cannot read image: {exc}") from exc
        raise MediaTooLarge(str(path), "pixels per frame", int(found[1]), limits.max_pixels) from None
    except OSError as exc:  # also UnidentifiedImageError
        raise DecodeError(f"{path}: cannot read image: {exc}") from exc
    _check_pixels(path, width, height, limits)


def _check_pixels(path: Path, width: int, height: int, limits: MediaLimits) -> None:
    if limits.max_pixels is not None and width * height > limits.max_pixels:
        raise MediaTooLarge(str(path), "pixels per frame", width * height, limits.max_pixels, f"{width}x{height}")


def _check_video(path: Path, limits: MediaLimits) -> None:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if limits.max_pixels is not None and width * height > limits.max_pixels:
                seconds = None  # refused below without reading further
            else:
                seconds = declared_duration(stream)
                if seconds is None and container.duration is not None:
                    seconds = container.duration / av.time_base
                if seconds is None and limits.max_seconds is not None:
                    seconds = _demuxed_seconds(container, stream, limits.max_seconds)
    except READ_ERRORS as exc:
        text = str(exc).strip().splitlines()
        raise DecodeError(f"{path}: cannot read the header: {type(exc).__name__}: {text[0][:300] if text else ''}") from exc
    _check_pixels(path, width, height, limits)
    if limits.max_seconds is not None and seconds is not None and seconds > limits.max_seconds:
        raise MediaTooLarge(str(path), "seconds", round(seconds, 3), limits.max_seconds)


def _demuxed_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                     limit: float) -> float:
    """Span of the packets' presentation times, for headers without a duration; stops once over ``limit``."""
    first = last = None
    for packet in container.demux(stream):
        if packet.pts is None or stream.time_base is None:
            continue
        t = float(packet.pts * stream.time_base)
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
        if last - first > limit:
            break
    return 0.0 if first is None else last - first
