"""Bad input never stops the embed job: every kind of broken, odd or hostile file becomes one row.

The real pipeline (Beam FnApiRunner, real offline models at a 64 px short side) runs once over a
folder holding each kind, plus a decoder that hangs and one that aborts on named files. The decoder
process imports this module to find ``faulty_decode``, so Beam and torch are imported inside the
tests, not at the top: each restart of the decoder process stays cheap.
"""
from __future__ import annotations

import math
import operator
import os
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

from styleaxis.pipelines.inputs import expand_inputs
from styleaxis.media.isolation import CallCrashed, CallTimedOut, IsolatedCall
from styleaxis.media.video import KeyframePolicy, read_keyframes
from styleaxis.media.write import write_video

FPS = 4
VFR_TIMES = [0.0, 0.1, 0.15, 1.2, 1.25, 2.6, 2.65, 2.7]


def faulty_decode(path: str, policy: KeyframePolicy, max_side: int | None, prefer: tuple[str, ...]):
    """read_keyframes, except that it hangs on files named hang* and aborts the process on crash*."""
    name = Path(path).stem
    if name.startswith("hang"):
        time.sleep(600)
    if name.startswith("crash"):
        os.abort()
    return read_keyframes(path, policy, max_side, prefer)


def test_isolated_call_survives_hangs_crashes_and_errors() -> None:
    with IsolatedCall(operator.mul, timeout_s=5) as call:
        assert call(4, 2) == 8
        first = call.pid
        assert call(5, 2) == 10 and call.pid == first  # one persistent process
        with pytest.raises(TypeError, match="can't multiply sequence"):
            call("a", "b")
        assert call.pid == first  # an exception in the function does not cost the process
    assert call.pid is None
    with pytest.raises(CallTimedOut, match=r"timed out after 1.5 s \(decoder process killed\)"):
        IsolatedCall(time.sleep, timeout_s=1.5)(600)
    aborts = IsolatedCall(os.abort, timeout_s=5)
    with pytest.raises(CallCrashed, match=r"crashed \(SIGABRT\)"):
        aborts()
    with pytest.raises(CallCrashed, match=r"crashed \(SIGABRT\)"):
        aborts()  # a fresh process each time
    with IsolatedCall(math.sqrt, timeout_s=5) as sqrt:
        assert sqrt(16.0) == 4.0


def _texture(n: int, width: int = 96, height: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Crops sliding over skimage's coffee photo: real texture, each frame different."""
    photo = data.coffee()
    top = 20 + 10 * seed
    return [np.ascontiguousarray(photo[top + 2 * i: top + 2 * i + height, 30 + 5 * i: 30 + 5 * i + width])
            for i in range(n)]


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray((np.sin(np.arange(16000) * 0.05) * 6000).astype(np.int16)[None],
                                           format="s16", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _corrupt_middle(src: Path, dst: Path) -> Path:
    """Random bytes over 2000 bytes in the middle of the file (the container loses its later packets)."""
    payload = bytearray(src.read_bytes())
    middle = len(payload) // 2
    payload[middle:middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    dst.write_bytes(payload)
    return dst


#: video id -> (status, text the error must contain; None: no error)
EXPECTED = {
    "good": ("ok", None),
    "clip_vp9": ("ok", None),
    "clip_av1": ("ok", None),
    "ten_bit": ("ok", None),
    "vfr": ("ok", None),
    "huge": ("ok", None),
    "fade_in": ("ok", None),
    "night_text": ("ok", None),
    "still": ("ok", None),
    "streamed_cut": ("partial", "header declares 3.000 s"),
    "corrupt_middle": ("partial", "header declares 3.000 s"),
    "corrupt_header": ("failed", "no video stream"),
    "empty": ("failed", "empty file (0 bytes)"),
    "notes": ("failed", "cannot open"),
    "noise": ("failed", "cannot open"),
    "cut": ("failed", "cannot open"),
    "tone": ("failed", "no video stream"),
    "broken": ("failed", "cannot read image"),
    "black": ("failed", "all 3 keyframes are degenerate (black x3)"),
    "hang": ("failed", "timed out after 3 s"),
    "crash": ("failed", "decoder process crashed (SIGABRT)"),
    "vanished": ("failed", "No such file or directory"),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of every kind in EXPECTED (AV1 only where this PyAV build can encode it)."""
    root = tmp_path_factory.mktemp("hostile")
    files: dict[str, Path] = {}
    files["good"] = write_video(root / "good.mp4", _texture(12), FPS, gop=4)
    files["clip_vp9"] = write_video(root / "clip_vp9.webm", _texture(12, seed=1), FPS, codec="vp9", gop=4)
    try:
        files["clip_av1"] = write_video(root / "clip_av1.mkv", _texture(12, 64, 64, seed=2), FPS, codec="av1", gop=4)
    except ValueError:
        pass
    files["ten_bit"] = write_video(root / "ten_bit.mp4", _texture(12, seed=3), FPS, gop=4, pix_fmt="yuv420p10le")
    files["vfr"] = write_video(root / "vfr.mp4", _texture(len(VFR_TIMES), seed=4), FPS, gop=3, times_s=VFR_TIMES)
    huge = np.zeros((4320, 7680, 3), np.uint8)
    huge[:, :, 1] = np.linspace(0, 255, 7680, dtype=np.uint8)
    huge[::97] = 255
    files["huge"] = write_video(root / "huge.mp4", [huge, huge], 1, gop=1)
    fade = _texture(12, seed=5)
    fade[0] = np.zeros_like(fade[0])
    files["fade_in"] = write_video(root / "fade_in.mp4", fade, FPS, gop=4)
    files["black"] = write_video(root / "black.mp4", [np.zeros((64, 96, 3), np.uint8)] * 12, FPS, gop=4)
    night = np.full((12, 64, 96, 3), 14, np.uint8)  # a dark-themed clip: one line of light text moving down
    for i, frame in enumerate(night):
        frame[10 + 3 * i: 12 + 3 * i, 20:44] = 230  # 0.8 % of the pixels: the old "99 % dark" rule said black
    files["night_text"] = write_video(root / "night_text.mp4", list(night), FPS, gop=4)
    Image.fromarray(_texture(1, 80, 60, seed=6)[0]).save(root / "still.png")
    files["still"] = root / "still.png"
    streamable = write_video(root / "source.mkv", _texture(12, seed=7), FPS, gop=4)
    files["streamed_cut"] = root / "streamed_cut.mkv"
    files["streamed_cut"].write_bytes(streamable.read_bytes()[: streamable.stat().st_size // 2])
    files["corrupt_middle"] = _corrupt_middle(streamable, root / "corrupt_middle.mkv")
    header = bytearray(streamable.read_bytes())
    header[100:3000] = np.random.default_rng(1).integers(0, 256, 2900, dtype=np.uint8).tobytes()
    (root / "corrupt_header.mkv").write_bytes(header)
    files["corrupt_header"] = root / "corrupt_header.mkv"
    streamable.unlink()
    files["empty"] = root / "empty.mp4"
    files["empty"].touch()
    files["notes"] = root / "notes.mp4"
    files["notes"].write_text("not a video\n" * 50)
    files["noise"] = root / "noise.mp4"
    files["noise"].write_bytes(np.random.default_rng(2).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    files["cut"] = root / "cut.mp4"  # moov atom at the end: cut in half, nothing can open it
    files["cut"].write_bytes(files["good"].read_bytes()[: files["good"].stat().st_size // 2])
    files["tone"] = _audio_only(root / "tone.m4a")
    files["broken"] = root / "broken.jpg"
    files["broken"].write_bytes(b"\xff\xd8 not really a jpeg")
    files["hang"] = write_video(root / "hang.mp4", _texture(8, seed=8), FPS, gop=4)
    files["crash"] = write_video(root / "crash.mp4", _texture(8, seed=9), FPS, gop=4)
    return files


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, hostile: dict[str, Path]) -> Path:
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.pipelines.beam import PipelineConfig, run_embed

    out = tmp_path_factory.mktemp("hostile_run")
    inputs = expand_inputs([str(p) for p in hostile.values()])
    inputs.append(("vanished", str(next(iter(hostile.values())).parent / "vanished.mp4")))
    config = PipelineConfig(out_dir=out, embed=EmbedConfig(short_side=64), policy=KeyframePolicy(min_gap_s=0.5),
                            decode_fn=faulty_decode, decode_timeout_s=3, progress=False, shard_size=4)
    summary = run_embed(inputs, config)
    assert summary["embedded"] == len(inputs)
    return out


def test_every_bad_input_is_one_row_with_status_and_cause(hostile_run: Path, hostile: dict[str, Path]) -> None:
    from styleaxis.pipelines.dataset import read_dataset

    videos = read_dataset(hostile_run, "videos").set_index("video_id")
    expected = {vid: want for vid, want in EXPECTED.items() if vid in hostile or vid == "vanished"}
    assert sorted(videos.index) == sorted(expected)
    for vid, (status, cause) in expected.items():
        row = videos.loc[vid]
        assert row.status == status, (vid, row.error)
        if cause is None:
            assert pd.isna(row.error), (vid, row.error)
        else:
            assert cause in row.error and vid in row.error, (vid, row.error)
        usable = status != "failed"
        assert all((row[name] is not None) == usable for name in ("style_cin", "style_eff", "content")), vid


def test_keyframe_rows_of_odd_files(hostile_run: Path) -> None:
    from styleaxis.pipelines.dataset import read_dataset

    keyframes = read_dataset(hostile_run, "keyframes")
    videos = read_dataset(hostile_run, "videos").set_index("video_id")
    counts = keyframes.groupby("video_id").size().to_dict()
    assert counts == {vid: n for vid, n in videos.n_keyframes.items() if n}
    by_video = {vid: rows.sort_values("frame_index") for vid, rows in keyframes.groupby("video_id")}
    huge = by_video["huge"]
    assert (huge.width == 7680).all() and (huge.height == 4320).all()  # the stored size; decoded downscaled
    vfr = by_video["vfr"]
    assert vfr.pts_s.tolist() == pytest.approx([VFR_TIMES[i] for i in vfr.frame_index], abs=1e-3)
    assert vfr.pts_s.tolist() == pytest.approx([0.0, 1.2, 2.65], abs=1e-3)  # key frames: every 3rd frame
    assert by_video["still"].frame_index.tolist() == [0]
    assert videos.loc["streamed_cut"].n_keyframes >= 1


def test_degenerate_frames_are_flagged_and_left_out_of_the_video_vector(hostile_run: Path) -> None:
    from styleaxis.embed.embedder import video_vector
    from styleaxis.pipelines.dataset import read_dataset

    keyframes = read_dataset(hostile_run, "keyframes")
    videos = read_dataset(hostile_run, "videos").set_index("video_id")
    fade = keyframes[keyframes.video_id == "fade_in"].sort_values("frame_index")
    assert fade.flag.fillna("").tolist() == ["black", "", ""]
    for name in ("style_cin", "style_eff", "content"):
        usable = np.stack(fade[name].to_numpy()[1:])
        np.testing.assert_array_equal(videos.loc["fade_in"][name], video_vector(usable))
    assert set(keyframes[keyframes.video_id == "black"].flag) == {"black"}
    assert keyframes[~keyframes.video_id.isin(["fade_in", "black"])].flag.isna().all()
    stability = videos.style_stability.dropna()
    assert set(stability.index) == set(videos.index[videos.status != "failed"])
    assert ((stability > 0.9) & (stability <= 1.0 + 1e-9)).all()
    assert videos.loc["still", "style_stability"] == pytest.approx(1.0)
