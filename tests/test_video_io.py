"""Key-frame reading with decord and PyAV, fallbacks and bad input, test-video writing, hashing."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from skimage import data

from styleaxis.media import video as video_io
from styleaxis.media.video import DecodeError, KeyframePolicy, open_video, read_keyframes
from styleaxis.media.write import write_video
from styleaxis.pipelines.inputs import content_hash

FPS = 12
BACKENDS = [("decord",), ("pyav",)]


def pan(n_frames: int, width: int = 96, height: int = 64) -> list[np.ndarray]:
    """A crop window panning across skimage's astronaut: real texture, every frame different."""
    image = data.astronaut()
    top, left = 100, 150
    return [
        np.ascontiguousarray(image[top + 2 * i : top + 2 * i + height, left + 3 * i : left + 3 * i + width])
        for i in range(n_frames)
    ]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clips shared by the tests (4 s at 12 fps unless named otherwise)."""
    root = tmp_path_factory.mktemp("videos")
    frames = pan(48)
    return {
        "gop12": write_video(root / "gop12.mp4", frames, FPS, gop=12),
        "gop3": write_video(root / "gop3.mp4", frames, FPS, gop=3),
        "long_gop": write_video(root / "long_gop.mp4", frames, FPS),  # x264 default keyint 250
        "vp9": write_video(root / "gop12.webm", frames, FPS, codec="vp9", gop=12),
        "mkv": write_video(root / "gop12.mkv", frames, FPS, gop=12),
        "faststart": _write_faststart(root / "faststart.mp4", frames),
    }


def _write_faststart(path: Path, frames: list[np.ndarray]) -> Path:
    """MP4 with its index (moov) first, so a truncated copy still opens."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 12
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


def indices(result: video_io.DecodeResult) -> list[int]:
    return [k.frame_index for k in result.keyframes]


# --- selection policy on a synthetic index (no decoding) ---------------------------------------------


def test_policy_takes_key_frames_at_least_min_gap_apart() -> None:
    times = np.arange(48) / FPS
    policy = KeyframePolicy(max_keyframes=8, min_gap_s=1.0)
    assert policy.select(times, range(0, 48, 3)) == [0, 12, 24, 36]
    assert KeyframePolicy(min_gap_s=2.0).select(times, range(0, 48, 12)) == [0, 24]


def test_policy_caps_count_evenly_keeping_first_and_last() -> None:
    times = np.arange(48) / FPS
    assert KeyframePolicy(max_keyframes=3, min_gap_s=0).select(times, range(0, 48, 6)) == [0, 24, 42]


def test_policy_first_frame() -> None:
    times = np.arange(48) / FPS
    keys = [12, 24, 36]
    assert KeyframePolicy().select(times, keys) == [0, 12, 24, 36]
    assert KeyframePolicy(always_first=False).select(times, keys) == [12, 24, 36]


def test_policy_samples_uniformly_when_few_key_frames() -> None:
    times = np.arange(120) / FPS  # 10 s, one GOP
    picked = KeyframePolicy(max_keyframes=4, min_gap_s=1.0, min_keyframes=3).select(times, [0])
    assert picked == [0, 40, 79, 119]
    assert np.all(np.diff(times[picked]) >= 1.0)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_keyframes"):
        KeyframePolicy(max_keyframes=0)


# --- reading real files ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefer", BACKENDS)
def test_key_frames_of_fixed_gop(videos: dict[str, Path], prefer: tuple[str]) -> None:
    result = read_keyframes(videos["gop12"], KeyframePolicy(), prefer=prefer)
    assert result.status == "ok" and result.error is None
    assert result.info.decoder == prefer[0]
    assert (result.info.width, result.info.height, result.info.n_frames) == (96, 64, 48)
    assert result.info.fps == pytest.approx(FPS)
    assert result.info.duration_s == pytest.approx(4.0, abs=0.01)
    assert indices(result) == [0, 12, 24, 36]
    for keyframe in result.keyframes:
        assert keyframe.pts_s == pytest.approx(keyframe.frame_index / FPS, abs=1e-3)
        assert keyframe.image.shape == (64, 96, 3) and keyframe.image.dtype == np.uint8


@pytest.mark.parametrize("prefer", BACKENDS)
def test_gap_and_count_caps_on_dense_key_frames(videos: dict[str, Path], prefer: tuple[str]) -> None:
    gapped = read_keyframes(videos["gop3"], KeyframePolicy(min_gap_s=1.0), prefer=prefer)
    assert indices(gapped) == [0, 12, 24, 36]
    capped = read_keyframes(videos["gop3"], KeyframePolicy(max_keyframes=3, min_gap_s=0), prefer=prefer)
    assert indices(capped) == [0, 24, 45]


@pytest.mark.parametrize("prefer", BACKENDS)
def test_long_gop_is_sampled_uniformly(videos: dict[str, Path], prefer: tuple[str]) -> None:
    result = read_keyframes(videos["long_gop"], KeyframePolicy(max_keyframes=8, min_gap_s=1.0), prefer=prefer)
    assert indices(result) == [0, 16, 31, 47]  # 3.92 s span: 4 samples >= 1 s apart
    first = np.asarray(pan(1)[0], dtype=np.float32)
    assert np.abs(result.keyframes[0].image - first).mean() < 6  # frame 0 is the first frame written


@pytest.mark.parametrize("name", ["gop12", "long_gop", "vp9"])
def test_backends_agree_on_frames_and_pixels(videos: dict[str, Path], name: str) -> None:
    by_decord = read_keyframes(videos[name], prefer=("decord",))
    by_pyav = read_keyframes(videos[name], prefer=("pyav",))
    assert indices(by_decord) == indices(by_pyav)
    for a, b in zip(by_decord.keyframes, by_pyav.keyframes):
        assert a.pts_s == pytest.approx(b.pts_s, abs=1e-3)
        assert np.abs(a.image.astype(np.int16) - b.image).mean() < 2


def test_same_file_gives_same_pixels(videos: dict[str, Path]) -> None:
    for prefer in BACKENDS:
        first, second = (read_keyframes(videos["long_gop"], prefer=prefer) for _ in range(2))
        pairs = zip(first.keyframes, second.keyframes, strict=True)
        assert all(np.array_equal(a.image, b.image) for a, b in pairs)


def test_max_side_downscales(videos: dict[str, Path]) -> None:
    result = read_keyframes(videos["gop12"], max_side=48)
    assert {k.image.shape for k in result.keyframes} == {(32, 48, 3)}
    assert (result.info.width, result.info.height) == (96, 64)  # info keeps the stored size


def test_open_video_reports_metadata(videos: dict[str, Path]) -> None:
    info = open_video(videos["vp9"])
    assert (info.decoder, info.width, info.height, info.n_frames) == ("pyav", 96, 64, 48)
    assert open_video(videos["vp9"], prefer=("decord",)).decoder == "decord"


# --- fallback and bad input --------------------------------------------------------------------------


def test_falls_back_to_pyav_when_decord_fails_while_reading(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, indices: list[int]) -> None:
        raise video_io.DECORDError("simulated decode failure")

    monkeypatch.setattr(video_io.decord.VideoReader, "get_batch", broken)
    result = read_keyframes(videos["gop12"], prefer=("decord", "pyav"))
    assert (result.info.decoder, result.status, indices(result)) == ("pyav", "ok", [0, 12, 24, 36])


def test_falls_back_to_decord_when_pyav_fails_while_reading(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default order is PyAV then decord; a PyAV decode error mid-file moves on to decord."""
    def broken(self: object, indices: list[int]) -> None:
        raise av.error.InvalidDataError(1094995529, "simulated decode failure")

    monkeypatch.setattr(video_io._PyAVSource, "frames", broken)
    result = read_keyframes(videos["gop12"])
    assert (result.info.decoder, result.status, indices(result)) == ("decord", "ok", [0, 12, 24, 36])


def test_falls_back_to_pyav_for_av1(tmp_path: Path) -> None:
    """decord 0.6.0's bundled FFmpeg cannot find an AV1 stream; PyAV (dav1d) decodes it."""
    try:
        path = write_video(tmp_path / "clip.mkv", pan(24, 64, 64), FPS, codec="av1", gop=12)
    except ValueError as exc:
        pytest.skip(str(exc))
    result = read_keyframes(path, prefer=("decord", "pyav"))
    assert (result.info.decoder, result.status, indices(result)) == ("pyav", "ok", [0, 12])


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(DecodeError, match=r"empty\.mp4: empty file \(0 bytes\)"):
        read_keyframes(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_keyframes(tmp_path / "missing.mp4")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n" * 100)
    with pytest.raises(DecodeError, match=r"notes\.mp4: cannot open: pyav: .*; decord: .*"):
        read_keyframes(path)


def test_truncated_mp4_without_index_cannot_open(videos: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="cannot open"):
        read_keyframes(truncated(videos["gop12"], tmp_path / "cut.mp4"))


@pytest.mark.parametrize("name", ["mkv", "faststart"])
def test_truncated_file_is_partial(videos: dict[str, Path], tmp_path: Path, name: str) -> None:
    """A streamable file cut in half: the frames before the cut come back, marked partial."""
    src = videos[name]
    cut = truncated(src, tmp_path / f"cut{src.suffix}")
    result = read_keyframes(cut)
    assert result.status == "partial"
    assert "header declares 4.000 s" in result.error
    assert result.info.decoder == "pyav"  # both backends are partial; the first in order is kept
    assert indices(result)[0] == 0 and result.info.n_frames < 48
    if name == "faststart":
        with pytest.raises(DecodeError, match="cannot open"):  # decord cannot open a cut faststart MP4
            read_keyframes(cut, prefer=("decord",))
    else:
        by_decord = read_keyframes(cut, prefer=("decord",))
        assert (by_decord.status, indices(by_decord)) == ("partial", indices(result))


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) * 0.1) * 8000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(DecodeError, match="no video stream"):
        read_keyframes(path)


def test_still_image_is_one_frame_video(tmp_path: Path) -> None:
    image = pan(1, 80, 60)[0]
    path = tmp_path / "still.png"
    Image.fromarray(image).save(path)
    result = read_keyframes(path, max_side=40)
    info = result.info
    assert (info.decoder, info.n_frames, info.width, info.height) == ("image", 1, 80, 60)
    assert result.status == "ok" and indices(result) == [0] and result.keyframes[0].image.shape == (30, 40, 3)
    assert np.array_equal(read_keyframes(path).keyframes[0].image, image)
    assert open_video(path).decoder == "image"


def test_broken_image(tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DecodeError, match=r"broken\.jpg: cannot read image"):
        read_keyframes(path)


# --- writing and hashing -----------------------------------------------------------------------------


def test_write_video_requires_even_size_for_yuv420p(tmp_path: Path) -> None:
    frames = [np.zeros((64, 95, 3), np.uint8)]
    with pytest.raises(ValueError, match="got 95x64, expected e.g. 94x64"):
        write_video(tmp_path / "odd.mp4", frames, FPS)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_write_video_rejects_mixed_sizes_and_leaves_no_temp_file(tmp_path: Path) -> None:
    frames = [np.zeros((64, 96, 3), np.uint8), np.zeros((32, 96, 3), np.uint8)]
    with pytest.raises(ValueError, match="first frame's shape"):
        write_video(tmp_path / "mixed.mp4", frames, FPS)
    assert list(tmp_path.iterdir()) == []


def test_content_hash(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    payload = bytearray(rng.integers(0, 256, 4 << 20, dtype=np.uint8).tobytes())  # 4 MiB: sampled
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    sampled, full = content_hash(path), content_hash(path, "full")
    assert len(sampled) == len(full) == 64 and sampled != full

    payload[1_200_000] ^= 1  # between the first and middle MiB: only "full" notices
    path.write_bytes(payload)
    assert content_hash(path) == sampled and content_hash(path, "full") != full

    payload[2 << 20] ^= 1  # inside the middle MiB
    path.write_bytes(payload)
    assert content_hash(path) != sampled
    with pytest.raises(ValueError, match="mode"):
        content_hash(path, "fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefer", BACKENDS)
def test_variable_frame_rate_keeps_each_frame_time(tmp_path: Path, prefer: tuple[str]) -> None:
    times = [0.0, 0.1, 0.15, 1.2, 1.25, 2.6, 2.65, 2.7]
    path = write_video(tmp_path / "vfr.mp4", pan(len(times)), FPS, gop=3, times_s=times)
    result = read_keyframes(path, KeyframePolicy(max_keyframes=8, min_gap_s=0.5), prefer=prefer)
    assert result.status == "ok" and result.info.n_frames == len(times)
    assert indices(result) == [0, 3, 6]
    assert [k.pts_s for k in result.keyframes] == pytest.approx([0.0, 1.2, 2.65], abs=1e-3)


def test_write_video_checks_frame_times(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        write_video(tmp_path / "a.mp4", pan(3), FPS, times_s=[0.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="times_s has 2 times, but more frames were given"):
        write_video(tmp_path / "b.mp4", pan(3), FPS, times_s=[0.0, 0.5])
    with pytest.raises(ValueError, match="times_s has 4 times, but 3 frames were given"):
        write_video(tmp_path / "c.mp4", pan(3), FPS, times_s=[0.0, 0.5, 1.0, 1.5])
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_ten_bit_video_decodes_to_eight_bit_rgb(tmp_path: Path) -> None:
    frames = pan(24)
    path = write_video(tmp_path / "ten.mp4", frames, FPS, gop=12, pix_fmt="yuv420p10le")
    for prefer in BACKENDS:
        result = read_keyframes(path, prefer=prefer)
        assert result.status == "ok" and indices(result) == [0, 12]
        image = result.keyframes[0].image
        assert image.dtype == np.uint8 and np.abs(image.astype(np.float32) - frames[0]).mean() < 6
