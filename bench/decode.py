"""Keyframe decoding speed: keyframe-only vs seek sampling vs full decode, for decord and PyAV.

Clips: 10 s, 1280x720, 30 fps, a slow pan over a photo, written with styleaxis's own writer:
H.264 with a key frame every second (GOP 30), H.264 with x264's default long GOP (keyint 250),
VP9 GOP 30 and AV1 GOP 30. Every strategy returns the same frames, so the rates compare directly:

- keyframe-only: the frames `read_keyframes` selects (every key frame here: KeyframePolicy with
  max_keyframes 10, min_gap 1 s), decoded from key packets alone (PyAV) or by seeking to each
  key frame (decord, which has no key-packets-only mode).
- seek: one frame per second at t = k + 0.5 s (mid-GOP: what sampling without the stream's key-frame
  index costs), decord `get_batch` per frame / PyAV `seek` + decode forward.
- full: decode every frame in order and keep the wanted ones.
- read_keyframes: the product call (index scan + selection + decode + RGB), in-process and through the
  persistent decoder process of styleaxis.media.isolation (the per-video cost of the process
  boundary is the difference).

Rates are selected frames per second of wall time, including opening the file; median of --repeats.

    python bench/decode.py [--clips DIR] [--repeats 3] [--seconds 10]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from styleaxis.media.isolation import IsolatedCall
from styleaxis.media.video import KeyframePolicy, read_keyframes
from styleaxis.media.write import write_video

try:
    import decord
except ImportError:  # PyAV-only platforms still get the PyAV rows
    decord = None

WIDTH, HEIGHT, FPS = 1280, 720, 30
POLICY = KeyframePolicy(max_keyframes=10, min_gap_s=1.0)
CLIPS = {  # name -> (file name, codec, gop)
    "H.264 GOP 30": ("h264_gop30.mp4", "h264", 30),
    "H.264 long GOP": ("h264_long.mp4", "h264", None),
    "VP9 GOP 30": ("vp9_gop30.webm", "vp9", 30),
    "AV1 GOP 30": ("av1_gop30.mkv", "av1", 30),
}


def _frames(seconds: float) -> list[np.ndarray]:
    """A pan and slow zoom over skimage's astronaut, upscaled: real texture, every frame different."""
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((2400, 2400), Image.Resampling.BICUBIC)
    n = round(seconds * FPS)
    frames = []
    for i in range(n):
        t = i / max(n - 1, 1)
        left, top = 100 + 900 * t, 200 + 1200 * t
        box = (left, top, left + WIDTH * (1.0 - 0.2 * t), top + HEIGHT * (1.0 - 0.2 * t))
        frames.append(np.asarray(photo.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR, box=box)))
    return frames


def make_clips(folder: Path, seconds: float) -> dict[str, Path]:
    """Write the benchmark clips once (reused when present); codecs this PyAV build lacks are left out."""
    folder.mkdir(parents=True, exist_ok=True)
    frames: list[np.ndarray] | None = None
    clips = {}
    for name, (file_name, codec, gop) in CLIPS.items():
        path = folder / file_name
        if not path.exists():
            frames = frames or _frames(seconds)
            try:
                write_video(path, frames, FPS, codec=codec, gop=gop)
            except ValueError as exc:
                print(f"# {name}: not written ({exc})")
                continue
        clips[name] = path
    return clips


def _selected(path: Path) -> tuple[list[int], bool, list[int]]:
    """The frames read_keyframes selects, whether they are all key frames, and one frame per second
    at k + 0.5 s (for seek sampling)."""
    with av.open(str(path)) as container:
        flags = sorted((p.pts, p.is_keyframe) for p in container.demux(video=0) if p.size)
    keys = {i for i, (_, key) in enumerate(flags) if key}
    result = read_keyframes(path, POLICY, max_side=16, prefer=("pyav",))
    selected = [k.frame_index for k in result.keyframes]
    mid = [min(len(flags) - 1, round((k + 0.5) * FPS)) for k in range(int(result.info.duration_s))]
    return selected, set(selected) <= keys, mid


# --- strategies; each returns how many frames it produced ------------------------------------------


def decord_seek(path: Path, indices: list[int]) -> int:
    reader = decord.VideoReader(str(path), num_threads=0)
    return sum(reader.get_batch([i]).asnumpy().shape[0] for i in indices)


def decord_full(path: Path, indices: list[int]) -> int:
    reader = decord.VideoReader(str(path), num_threads=0)
    wanted, kept = set(indices), 0
    for start in range(0, len(reader), 32):
        batch = reader.get_batch(list(range(start, min(start + 32, len(reader))))).asnumpy()
        kept += sum(1 for j in range(len(batch)) if start + j in wanted)
    return kept


def pyav_keyframes(path: Path, indices: list[int]) -> int:
    """Decode key packets only (then flush): the path video_io takes when every wanted frame is a key frame."""
    kept = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
            if packet.is_keyframe and packet.size:
                kept += sum(frame.to_ndarray(format="rgb24").shape[0] > 0 for frame in stream.decode(packet))
        kept += sum(frame.to_ndarray(format="rgb24").shape[0] > 0 for frame in stream.decode(None))
    return kept


def pyav_seek(path: Path, indices: list[int]) -> int:
    kept = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        step = 1 / (FPS * stream.time_base)
        for index in indices:
            target = round(index * step) + (stream.start_time or 0)
            container.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts >= target:
                    frame.to_ndarray(format="rgb24")
                    kept += 1
                    break
    return kept


def pyav_full(path: Path, indices: list[int]) -> int:
    wanted, kept = set(indices), 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            image = frame.to_ndarray(format="rgb24")
            kept += i in wanted and image.size > 0
    return kept


def _rate(repeats: int, fn: Callable[..., int], *args: object) -> tuple[float, int]:
    """(frames per second, frames) of ``fn(*args)``: median of ``repeats`` timed runs after one warm-up."""
    n = fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return n / statistics.median(times), n


def _product(path: Path, backend: str, decode: Callable[..., Any] = read_keyframes) -> int:
    """Keyframes that read_keyframes (or the same call through a decoder process) returns."""
    return len(decode(path, POLICY, None, (backend,)).keyframes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "styleaxis-bench-decode")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    clips = make_clips(args.clips, args.seconds)
    decord_version = getattr(decord, "__version__", "absent")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, PyAV {av.__version__}, "
          f"decord {decord_version}, {WIDTH}x{HEIGHT} {FPS} fps {args.seconds:g} s clips, "
          f"median of {args.repeats}, {time.strftime('%Y-%m-%d')}")
    print("| clip | decoder | keyframe-only | seek (1/s, mid-GOP) | full decode | keyframe / full "
          "| read_keyframes | same, isolated process | frames |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    isolated = IsolatedCall(read_keyframes, timeout_s=120)
    for name, path in clips.items():
        keys, all_key, mid = _selected(path)
        backends = {"pyav": (pyav_keyframes, pyav_seek, pyav_full)}
        if decord is not None:
            backends = {"decord": (decord_seek, decord_seek, decord_full), **backends}
        for backend, (keyframe_fn, seek_fn, full_fn) in backends.items():
            try:
                # with a long GOP the selected frames are not key frames: there is no keyframe-only path
                key_rate = _rate(args.repeats, keyframe_fn, path, keys)[0] if all_key else None
                seek_rate, _ = _rate(args.repeats, seek_fn, path, mid)
                full_rate, _ = _rate(args.repeats, full_fn, path, keys)
                product, n = _rate(args.repeats, _product, path, backend)
                boundary, _ = _rate(args.repeats, _product, path, backend, isolated)
            except Exception as exc:  # a backend that cannot read this codec gets a row saying so
                print(f"| {name} | {backend} | cannot read: {str(exc).splitlines()[0][:80]} | | | | | | |")
                continue
            cells = [f"{key_rate:.0f}" if key_rate else "n/a", f"{seek_rate:.0f}", f"{full_rate:.0f}",
                     f"{key_rate / full_rate:.1f}x" if key_rate else "n/a",
                     f"{product:.0f}", f"{boundary:.0f} ({1000 * (n / boundary - n / product):+.0f} ms/video)",
                     f"{n} " + ("key frames" if all_key else "sampled (not key frames)")]
            print(f"| {name} | {backend} | " + " | ".join(cells) + " |")
    isolated.close()


if __name__ == "__main__":
    main()
