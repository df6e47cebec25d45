"""Row rules of the embed job: degenerate frames, video vectors, style stability (no Beam, no models)."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from styleaxis.embed.embedder import video_vector
from styleaxis.pipelines.records import FrameChecks, frame_flag, style_stability, video_rows

META = {"video_id": "v", "uri": "/x/v.mp4", "content_hash": "h", "duration_s": 2.0, "fps": 8.0,
        "status": "ok", "error": None}


def test_frame_flag_black_constant_and_textured() -> None:
    black = np.zeros((64, 96, 3), np.uint8)
    assert frame_flag(black) == "black"
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 20, black.shape).astype(np.uint8)  # a dark sensor's noise: still no detail
    assert frame_flag(noise) == "black"
    speck = black.copy()
    speck[0, :3] = 255  # 3 pixels in 6144: a dead pixel, not content
    assert frame_flag(speck) == "black"
    captioned = black.copy()
    captioned[58:62, 10:40] = 255  # 2 % of the pixels: a dark-themed clip with text is content
    assert frame_flag(captioned) is None
    grey = np.full((64, 96, 3), 128, np.uint8)
    assert frame_flag(grey) == "constant"
    noisy = (grey + np.random.default_rng(0).integers(-1, 2, grey.shape)).astype(np.uint8)  # std ~0.8
    assert frame_flag(noisy) == "constant"
    assert frame_flag(noisy, FrameChecks(flat_std=0.5)) is None
    assert frame_flag(data.astronaut()[:64, :96]) is None


@pytest.mark.parametrize("scene", ["night_sky", "space", "dark_text"])
def test_dark_content_is_not_black(scene: str) -> None:
    """Dark but not empty: a night sky (hubble_deep_field darkened to mean luma ~12, stars kept), a few stars on
    black (space footage), and light text on a dark theme, all well under the old '99% of pixels dark' line."""
    rng = np.random.default_rng(1)
    if scene == "night_sky":  # the brightest 0.5 % of the deep field's pixels, on a dim painted sky
        sky = data.hubble_deep_field()[:256, :384]
        bright = sky.astype(np.float32).mean(axis=2) > np.percentile(sky.mean(axis=2), 99.5)
        frame = np.where(bright[..., None], sky, rng.integers(8, 16, sky.shape)).astype(np.uint8)
    elif scene == "space":
        frame = rng.integers(0, 12, (256, 384, 3)).astype(np.uint8)
        stars = rng.integers(0, 256 * 384, 150)  # 0.15 % of the pixels
        frame.reshape(-1, 3)[stars] = 230
    else:
        frame = np.full((256, 384, 3), 18, np.uint8)
        frame[120:126, 40:200] = 235  # one line of text: 1 % of the pixels
    luma = frame.reshape(-1, 3).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert luma.mean() < 25 and np.mean(luma <= 24) >= 0.99  # what the old rule called black
    assert frame_flag(frame) is None


def test_style_stability_is_mean_cosine_to_the_mean_direction() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=16), rng.normal(size=16)
    b -= a * (a @ b) / (a @ a)  # orthogonal to a
    same = np.stack([a, 2 * a, 0.5 * a])
    assert style_stability({"style_in": same}) == pytest.approx(1.0)
    half = np.stack([a, a, b, b])
    assert style_stability({"style_in": half}) == pytest.approx(np.sqrt(0.5))
    unit = half / np.linalg.norm(half, axis=1, keepdims=True)
    mean = unit.mean(axis=0)
    cosines = unit @ mean / np.linalg.norm(mean)
    assert style_stability({"style_in": half}) == pytest.approx(cosines.mean())
    # averaged over style descriptors; content is not style
    both = {"style_in": same, "style_cin": half, "content": half}
    assert style_stability(both) == pytest.approx((1.0 + np.sqrt(0.5)) / 2)
    assert style_stability({"content": half}) is None


def _vectors(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {"style_in": rng.normal(size=(n, 8)).astype(np.float32),
            "content": rng.normal(size=(n, 4)).astype(np.float32)}


def test_flagged_and_nonfinite_keyframes_are_kept_but_left_out_of_the_mean() -> None:
    vectors = _vectors(4)
    vectors["style_in"][2, 3] = np.nan
    frames = [(0, 0.0, "black"), (8, 1.0, None), (16, 2.0, None), (24, 3.0, None)]
    video, keyframes = video_rows(META, (96, 64), frames, vectors, ("style_in", "content"))
    assert [k["flag"] for k in keyframes] == ["black", None, "nonfinite:style_in", None]
    assert [k["frame_index"] for k in keyframes] == [0, 8, 16, 24]
    assert {(k["width"], k["height"]) for k in keyframes} == {(96, 64)}
    assert (video["status"], video["n_keyframes"]) == ("ok", 4)
    for name in ("style_in", "content"):
        np.testing.assert_array_equal(video[name], video_vector(vectors[name][[1, 3]]))
    assert video["style_stability"] == pytest.approx(style_stability({"style_in": vectors["style_in"][[1, 3]]}))
    assert np.isnan(keyframes[2]["style_in"][3])  # the row keeps what the model produced


def test_all_degenerate_keyframes_fail_the_video_with_the_reasons() -> None:
    frames = [(0, 0.0, "black"), (8, 1.0, "constant"), (16, 2.0, "black")]
    meta = {**META, "status": "partial", "error": "/x/v.mp4: pyav: decoding stopped"}
    video, keyframes = video_rows(meta, (96, 64), frames, _vectors(3), ("style_in", "content"))
    assert len(keyframes) == 3 and video["n_keyframes"] == 3
    assert video["status"] == "failed"
    assert video["error"] == ("/x/v.mp4: all 3 keyframes are degenerate (black x2, constant x1); "
                              "/x/v.mp4: pyav: decoding stopped")
    assert video["style_in"] is None and video["content"] is None and video["style_stability"] is None


def test_a_video_without_keyframes_keeps_its_error() -> None:
    meta = {**META, "status": "failed", "error": "/x/v.mp4: empty file (0 bytes)"}
    video, keyframes = video_rows(meta, (0, 0), [], {}, ("style_in",))
    assert keyframes == []
    assert (video["status"], video["error"], video["n_keyframes"], video["style_in"]) == (
        "failed", "/x/v.mp4: empty file (0 bytes)", 0, None)
