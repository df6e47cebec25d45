"""Video and still-image reading: the one decoder of styleaxis (the nightly job, the labelled
catalogues and query-by-file all read frames here).

Reading goes through :func:`read_keyframes` (and :func:`open_video` for metadata only). Each backend
(PyAV first, decord as fallback: see ``DEFAULT_PREFER``) builds an index of the stream
(presentation time of every frame and which frames are key frames), :meth:`KeyframePolicy.select`
picks frame indices from that index, and the backend decodes just those frames. Because selection
works on the index alone, every backend returns the same frame indices for the same file, and the
same file always gives the same pixels.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import av
import numpy as np
from PIL import Image, ImageOps

try:
    import decord
    from decord._ffi.base import DECORDError
except ImportError:  # decord has no wheels for some platforms; PyAV alone still works.
    decord = None
    DECORDError = RuntimeError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
#: Backend order, chosen by measurement (bench/decode.py, 720p 10 s clips, 2 CPU cores): PyAV decodes
#: key frames 2.5-3x faster than decord 0.6.0 (it feeds the decoder key packets only; decord seeks to
#: each), opens AV1, which decord 0.6.0 cannot, and reads as many frames as decord from truncated
#: files; decord stays as the fallback when PyAV cannot open or read a file. decord2 3.4.0 (the
#: maintained fork) was slower still and fails on some frame widths (96, 144 px), so it is not used.
DEFAULT_PREFER: tuple[str, ...] = ("pyav", "decord")
#: longest side frames are downscaled to on decode (bounds memory on huge input; the embedder resizes
#: to its own short side afterwards)
DEFAULT_MAX_SIDE = 1024

#: What a backend may raise on a bad or unsupported file. decord's DECORDError is not a RuntimeError,
# and decord reports some unreadable files with RuntimeError or AssertionError (frame count <= 0).
READ_ERRORS: tuple[type[BaseException], ...] = (
    DECORDError, RuntimeError, AssertionError, av.FFmpegError, OSError, ValueError, EOFError,
)
_TIME_EPS = 1e-3  # seconds; absorbs decord's float32 timestamps (~0.2 ms error at 1 h) in gap checks


class DecodeError(Exception):
    """Nothing could be read from a file; the message names the file and the cause."""


# ---------------------------------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class KeyframePolicy:
    """Which frames :func:`read_keyframes` returns.

    The stream's key frames (I-frames) are the candidates; when there are fewer than
    ``min_keyframes`` of them (one long GOP), frames sampled uniformly in time are added. Candidates
    closer than ``min_gap_s`` to the previously kept one are dropped (earliest first), and if more
    than ``max_keyframes`` remain they are thinned evenly, keeping the first and last. With
    ``always_first`` the first frame is always a candidate and is always kept.
    """

    max_keyframes: int = 8
    min_gap_s: float = 1.0
    min_keyframes: int = 3
    always_first: bool = True

    def __post_init__(self) -> None:
        if self.max_keyframes < 1:
            raise ValueError(f"max_keyframes must be >= 1, got {self.max_keyframes}")
        if self.min_gap_s < 0:
            raise ValueError(f"min_gap_s must be >= 0, got {self.min_gap_s}")
        if self.min_keyframes < 0:
            raise ValueError(f"min_keyframes must be >= 0, got {self.min_keyframes}")

    def select(self, times_s: Sequence[float], key_indices: Sequence[int]) -> list[int]:
        """Frame indices to decode, ascending, given every frame's time (ascending) and the key frames.

        Works on the stream index only, so every backend picks the same frames for a file.
        """
        times = np.asarray(times_s, dtype=np.float64)
        if times.size == 0:
            return []
        candidates = set(int(i) for i in key_indices)
        if self.always_first:
            candidates.add(0)
        if len(key_indices) < self.min_keyframes:
            candidates.update(self._uniform(times))
        kept: list[int] = []
        for index in sorted(candidates):
            if not kept or times[index] - times[kept[-1]] >= self.min_gap_s - _TIME_EPS:
                kept.append(index)
        if len(kept) > self.max_keyframes:
            picks = np.linspace(0, len(kept) - 1, self.max_keyframes).round().astype(int)
            kept = [kept[p] for p in picks]
        return kept

    def _uniform(self, times: np.ndarray) -> list[int]:
        """Indices of frames nearest to evenly spaced times over the video, at least min_gap_s apart."""
        if len(times) == 1:
            return [0]
        span = float(times[-1])
        by_gap = math.floor(span / self.min_gap_s) + 1 if self.min_gap_s > 0 else self.max_keyframes
        targets = np.linspace(0.0, span, min(self.max_keyframes, by_gap))
        after = np.searchsorted(times, targets).clip(1, len(times) - 1)
        nearer_before = targets - times[after - 1] <= times[after] - targets
        return sorted(set((after - nearer_before).tolist()))


@dataclass(frozen=True)
class Keyframe:
    """One decoded frame: its index in presentation order, time from the first frame, RGB pixels."""

    frame_index: int
    pts_s: float
    image: np.ndarray = field(repr=False)  # H x W x 3 uint8 RGB


@dataclass(frozen=True)
class VideoInfo:
    """Stream metadata as seen by the decoder that read it.

    ``width``/``height`` are the stored size (before any ``max_side`` downscale); ``n_frames`` and
    ``duration_s`` cover the readable frames, which is less than the header claims for a truncated
    file. Still images are one frame with ``fps == 0`` and ``duration_s == 0``.
    """

    uri: str
    width: int
    height: int
    fps: float
    duration_s: float
    n_frames: int
    decoder: str  # "decord", "pyav" or "image"


@dataclass(frozen=True)
class DecodeResult:
    """What :func:`read_keyframes` got from a file.

    ``status`` is ``"partial"`` when reading stopped early (truncated or corrupt file) or the stream
    ends well before the duration its header declares; ``keyframes`` then holds what was read and
    ``error`` says why. ``error`` is None when ``status == "ok"``.
    """

    info: VideoInfo
    keyframes: list[Keyframe]
    status: Literal["ok", "partial"]
    error: str | None = None


# ---------------------------------------------------------------------------------------------------
# Reading


def open_video(path: str | os.PathLike[str], prefer: Sequence[str] = DEFAULT_PREFER) -> VideoInfo:
    """Metadata of a video (or still image) from the first backend in ``prefer`` that can open it.

    Raises DecodeError when no backend can, FileNotFoundError when the path does not exist.
    """
    path = _checked_path(path)
    if _is_image(path):
        return _read_image(path, None)[0]
    errors: list[str] = []
    for name in _backend_names(prefer):
        try:
            return _SOURCES[name](path).info
        except DecodeError as exc:
            errors.append(f"{name}: {exc}")
    raise DecodeError(f"{path}: cannot open: {'; '.join(errors)}")


def read_keyframes(
    path: str | os.PathLike[str],
    policy: KeyframePolicy = KeyframePolicy(),
    max_side: int | None = None,
    prefer: Sequence[str] = DEFAULT_PREFER,
) -> DecodeResult:
    """Decode the frames ``policy`` selects, trying the backends in ``prefer`` order.

    The first backend that reads the file completely wins; any failure (cannot open, error while
    decoding, truncated stream) moves on to the next one. If none reads it completely, the partial
    result with the most frames is returned (status "partial"). Frames are downscaled so their
    longer side is at most ``max_side`` (bounds memory on huge input). Still images (by suffix) are
    read with PIL as a one-frame video. Raises DecodeError when no frame at all can be read.
    """
    path = _checked_path(path)
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    if _is_image(path):
        info, image = _read_image(path, max_side)
        return DecodeResult(info, [Keyframe(0, 0.0, image)], "ok")
    errors: list[str] = []
    partial: DecodeResult | None = None
    for name in _backend_names(prefer):
        try:
            result = _read_with(_SOURCES[name](path), policy, max_side)
        except DecodeError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if result.status == "ok":
            return result
        errors.append(f"{name}: {result.error}")
        if partial is None or len(result.keyframes) > len(partial.keyframes):
            partial = result
    if partial is not None:
        return DecodeResult(partial.info, partial.keyframes, "partial", f"{path}: {'; '.join(errors)}")
    raise DecodeError(f"{path}: cannot open: {'; '.join(errors)}")


def _checked_path(path: str | os.PathLike[str]) -> Path:
    """The path as a Path; missing files raise FileNotFoundError, empty ones DecodeError."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")
    return path


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _backend_names(prefer: Sequence[str]) -> list[str]:
    unknown = [name for name in prefer if name not in _SOURCES]
    if unknown or not prefer:
        raise ValueError(f"prefer must name backends from {sorted(_SOURCES)}, got {list(prefer)}")
    return list(prefer)


def _read_image(path: Path, max_side: int | None) -> tuple[VideoInfo, np.ndarray]:
    """A still image as RGB (EXIF orientation applied) with its one-frame VideoInfo."""
    try:
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:  # also UnidentifiedImageError, truncated images
        raise DecodeError(f"{path}: cannot read image: {exc}") from exc
    info = VideoInfo(str(path), rgb.width, rgb.height, 0.0, 0.0, 1, "image")
    return info, _fit(np.asarray(rgb), max_side)


def _fit(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (antialiased, aspect kept) so the longer side is at most max_side."""
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def _read_with(source: _Source, policy: KeyframePolicy, max_side: int | None) -> DecodeResult:
    """Select frames from the source's index and decode them; any sign of truncation makes it partial."""
    index = source.index
    wanted = policy.select(index.times_s, index.key_indices)
    keyframes: list[Keyframe] = []
    decode_error = None
    try:
        for frame_index, image in source.frames(wanted):
            keyframes.append(Keyframe(frame_index, float(index.times_s[frame_index]), _fit(image, max_side)))
    except READ_ERRORS as exc:
        decode_error = f"decoding stopped: {_first_line(exc)}"
    problems = [index.error, decode_error, _shortfall(source.info, index.declared_s)]
    if len(keyframes) < len(wanted):
        problems.append(f"decoded {len(keyframes)} of {len(wanted)} selected frames")
    error = "; ".join(p for p in problems if p) or None
    if not keyframes:
        raise DecodeError(error or "no video frames")
    return DecodeResult(source.info, keyframes, "partial" if error else "ok", error)


def _shortfall(info: VideoInfo, declared_s: float | None) -> str | None:
    """Why the readable stream looks truncated or damaged compared with the header, if it does.

    Either the readable frames end early, or fewer frames than the header's duration and frame
    rate imply are readable (a damaged middle that the demuxer skipped; 10 % slack for rounding
    and variable frame rates).
    """
    if declared_s is None:
        return None
    if info.duration_s < declared_s - max(2 / info.fps, 0.5):
        return f"stream ends at {info.duration_s:.3f} s but the header declares {declared_s:.3f} s"
    expected = declared_s * info.fps
    if info.n_frames < 0.9 * expected - 1:
        return (f"{info.n_frames} frames readable but the header declares {declared_s:.3f} s at "
                f"{info.fps:.3g} fps (about {expected:.0f} frames)")
    return None


def _first_line(exc: BaseException) -> str:
    """A one-line, bounded description of a backend error (decord appends C++ backtraces)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


# ---------------------------------------------------------------------------------------------------
# Backends


@dataclass(frozen=True)
class _Index:
    """A backend's view of the stream, enough to select frames without decoding any."""

    times_s: np.ndarray  # presentation time of every frame from the first one, ascending
    key_indices: list[int]  # indices (into times_s) of key frames
    declared_s: float | None  # duration the header declares, for truncation checks
    error: str | None = None  # set when indexing stopped early on a read error


class _Source(Protocol):
    """One opened video for one backend. Opening raises DecodeError when the file is unusable."""

    info: VideoInfo
    index: _Index

    def frames(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Decode the given ascending frame indices, yielding (index, H x W x 3 uint8 RGB)."""
        ...


def _make_info(path: Path, width: int, height: int, fps: float, times: np.ndarray, decoder: str) -> VideoInfo:
    """VideoInfo from stream geometry and frame times; fps falls back to the mean frame interval."""
    if not fps > 0:
        fps = (len(times) - 1) / float(times[-1]) if len(times) > 1 and times[-1] > 0 else 1.0
    return VideoInfo(str(path), width, height, fps, float(times[-1]) + 1 / fps, len(times), decoder)


def declared_duration(stream: av.video.stream.VideoStream) -> float | None:
    """Video stream duration from the container header (MP4 stream duration, Matroska DURATION tag)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", stream.metadata.get("DURATION", ""))
    return int(tag[1]) * 3600 + int(tag[2]) * 60 + float(tag[3]) if tag else None


class _PyAVSource:
    """PyAV backend: a demux pass indexes packets; key frames are decoded from key packets alone."""

    name = "pyav"

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise DecodeError("no video stream")
                stream = container.streams.video[0]
                pts, keys, error = self._scan(container, stream)
                width, height = stream.codec_context.width, stream.codec_context.height
                rate = float(stream.average_rate or stream.guessed_rate or 0)
                declared = declared_duration(stream)
                time_base = float(stream.time_base)
        except READ_ERRORS as exc:
            raise DecodeError(_first_line(exc)) from exc
        if not pts:
            raise DecodeError(error or "no video frames")
        sorted_pts = np.sort(np.asarray(pts, dtype=np.int64))  # decode order -> presentation order
        self._pts_to_index = {int(p): i for i, p in enumerate(sorted_pts)}
        times = (sorted_pts - sorted_pts[0]) * time_base
        key_indices = sorted(self._pts_to_index[pts[i]] for i in keys)
        self.index = _Index(times, key_indices, declared, error)
        self.info = _make_info(path, width, height, rate, times, self.name)

    @staticmethod
    def _scan(
        container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> tuple[list[int], list[int], str | None]:
        """Packet pts and positions of key packets; a read error ends the scan and is returned."""
        pts: list[int] = []
        keys: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    if packet.is_keyframe:
                        keys.append(len(pts))
                    pts.append(packet.pts)
        except READ_ERRORS as exc:
            return pts, keys, f"demuxing stopped after {len(pts)} packets: {_first_line(exc)}"
        return pts, keys, None

    def frames(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Decode only the key packets when every wanted frame is a key frame, else decode in order.

        Feeding the decoder key packets alone and flushing at the end works for H.264, VP9 and AV1
        (FFmpeg's VP9 decoder ignores skip_frame="NONKEY", so that option is not used).
        """
        pending = set(indices)
        keyframes_only = pending <= set(self.index.key_indices)
        with av.open(str(self._path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads; FFmpeg output stays bit-exact
            for packet in container.demux(stream):
                if not pending:
                    return
                if packet.size and (not keyframes_only or self._pts_to_index.get(packet.pts) in pending):
                    yield from self._pick(stream.decode(packet), pending)
            yield from self._pick(stream.decode(None), pending)

    def _pick(self, frames: Iterable[av.VideoFrame], pending: set[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield the pending frames among ``frames`` as (index, RGB), removing them from ``pending``."""
        for frame in frames:
            index = self._pts_to_index.get(frame.pts)
            if index in pending:
                pending.remove(index)
                yield index, frame.to_ndarray(format="rgb24")


class _DecordSource:
    """decord backend: index from VideoReader, frames fetched one at a time to bound memory."""

    name = "decord"

    def __init__(self, path: Path) -> None:
        if decord is None:
            raise DecodeError("decord is not installed")
        try:
            self._reader = decord.VideoReader(str(path), num_threads=0)
            stamps = self._reader.get_frame_timestamp(np.arange(len(self._reader)))
            key_indices = [int(i) for i in self._reader.get_key_indices()]
            height, width = self._reader[0].shape[:2]
            rate = float(self._reader.get_avg_fps())
        except READ_ERRORS as exc:
            raise DecodeError(_first_line(exc)) from exc
        times = stamps[:, 0].astype(np.float64) - float(stamps[0, 0])
        self.index = _Index(times, key_indices, self._header_duration(path))
        self.info = _make_info(path, width, height, rate, times, self.name)

    @staticmethod
    def _header_duration(path: Path) -> float | None:
        """decord does not expose the header's duration; read it with PyAV (header only, cheap)."""
        try:
            with av.open(str(path)) as container:
                return declared_duration(container.streams.video[0]) if container.streams.video else None
        except READ_ERRORS:
            return None

    def frames(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Fetch frames one by one (decord seeks to the preceding key frame as needed)."""
        for index in indices:
            yield index, self._reader.get_batch([index]).asnumpy()[0]


_SOURCES: dict[str, Callable[[Path], _Source]] = {"decord": _DecordSource, "pyav": _PyAVSource}
#: the decoder backends a ``prefer`` sequence may name
BACKENDS: tuple[str, ...] = tuple(_SOURCES)


def read_frames(path: str | os.PathLike[str], policy: KeyframePolicy = KeyframePolicy(),
                max_side: int | None = None) -> list[np.ndarray]:
    """The RGB frames :func:`read_keyframes` selects (what the nightly job embeds), for callers that
    want pixels only; ValueError naming the file when nothing can be read."""
    try:
        return [kf.image for kf in read_keyframes(path, policy, max_side).keyframes]
    except DecodeError as exc:
        raise ValueError(str(exc)) from exc
