"""SSIM against scikit-image on real photos of several sizes, RGB and grey; input types; errors."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data as data
import torch
from PIL import Image
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from styleaxis.eval.io import load_image
from styleaxis.eval.ssim import SSIMConfig, gaussian_window, ssim, ssim_batch

# (photo, crop height, crop width): full sizes, odd sizes and the smallest practical sizes
CASES = [
    ("astronaut", None, None), ("astronaut", 97, 131),
    ("coffee", None, None), ("coffee", 65, 64),
    ("chelsea", None, None), ("chelsea", 121, 89),
    ("camera", None, None), ("camera", 33, 47),
]


def _skimage(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    return structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=data_range, channel_axis=-1 if x.ndim == 3 else None)


def _distorted(photo: np.ndarray, seed: int) -> np.ndarray:
    """The photo with noise, a 1-px shift and a brightness change: SSIM well inside (0, 1)."""
    rng = np.random.default_rng(seed)
    x = np.roll(photo.astype(np.float64), 1, axis=1) * 0.9 + 12 + rng.normal(0, 20, photo.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name,h,w", CASES)
def test_matches_skimage(name: str, h: int | None, w: int | None):
    photo = getattr(data, name)()[:h, :w]
    other = _distorted(photo, seed=len(name))
    expected = _skimage(photo, other, 255)
    assert 0.05 < expected < 0.95
    assert ssim(photo, other) == pytest.approx(expected, abs=1e-4)
    if photo.ndim == 3:  # grey: luma as skimage's rgb2gray computes it
        grey_expected = _skimage(rgb2gray(photo), rgb2gray(other), 1.0)
        assert ssim(photo, other, color="grey") == pytest.approx(grey_expected, abs=1e-4)


def test_batched_float32_matches_per_image():
    photos = [data.astronaut()[:96, :128], data.coffee()[:96, :128], data.chelsea()[:96, :128]]
    x = torch.stack([load_image(p) for p in photos])
    y = torch.stack([load_image(_distorted(p, seed=i)) for i, p in enumerate(photos)])
    batched = ssim_batch(x, y)
    assert batched.dtype == torch.float32 and batched.shape == (3,)
    for i, p in enumerate(photos):
        assert float(batched[i]) == pytest.approx(_skimage(p, _distorted(p, seed=i), 255), abs=1e-4)


def test_input_types_agree(tmp_path):
    a, b = data.chelsea()[:80, :100], _distorted(data.chelsea()[:80, :100], seed=3)
    Image.fromarray(b).save(tmp_path / "b.png")
    reference = ssim(a, b)
    assert ssim(load_image(a), tmp_path / "b.png") == pytest.approx(reference, abs=1e-12)
    assert ssim(Image.fromarray(a), str(tmp_path / "b.png")) == pytest.approx(reference, abs=1e-12)
    assert ssim(a.astype(np.float32) / 255, b) == pytest.approx(reference, abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_grey_image_against_itself_and_window():
    g = gaussian_window(11, 1.5, dtype=torch.float64)
    assert g.sum().item() == pytest.approx(1.0) and g.argmax().item() == 5 and torch.allclose(g, g.flip(0))
    cam = data.camera()[150:214, 200:264]  # the cameraman's coat and arm: strong structure
    assert ssim(cam, cam, color="grey") == pytest.approx(1.0, abs=1e-12)
    assert ssim(cam, 255 - cam) < -0.2  # inverted structure: negative correlation term


def test_errors_name_the_problem():
    a = data.astronaut()
    with pytest.raises(ValueError, match="one size"):
        ssim(a[:64, :64], a[:64, :65])
    with pytest.raises(ValueError, match="at least 11 px"):
        ssim(a[:10, :40], a[:10, :40])
    with pytest.raises(ValueError, match="0..1"):
        ssim(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="odd"):
        SSIMConfig(win_size=10)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        ssim("nope.png", a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = load_image(data.astronaut()[:128, :128])[None]
    y = load_image(_distorted(data.astronaut()[:128, :128], seed=1))[None]
    assert float(ssim_batch(x.cuda(), y.cuda())[0]) == pytest.approx(float(ssim_batch(x, y)[0]), abs=1e-5)
