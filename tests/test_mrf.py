"""CNNMRF (Li & Wand 2016): patch matching by normalised cross-correlation, the MRF loss, and the pixel
optimisation run for real on 64 px images with the offline VGG16."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import styleaxis.stylize.mrf as mrf_module
from styleaxis.embed.descriptors import STYLE_TAPS
from styleaxis.stylize.losses import in_stats_distance
from styleaxis.stylize.gatys import PixelOptimConfig, optimize_pixels
from styleaxis.stylize.mrf import MRFConfig, extract_patches, matched_columns, mrf, mrf_loss, nearest_patches, stylizer
from styleaxis.embed.vgg import VGGEncoder


def stats_ratio(encoder: VGGEncoder, style: torch.Tensor, before: torch.Tensor, after: torch.Tensor) -> float:
    """How much closer ``after`` is to the style's IN statistics than ``before`` (< 1: it moved toward them)."""
    with torch.no_grad():
        target = encoder(style, STYLE_TAPS)
        return float(in_stats_distance(encoder(after, STYLE_TAPS), target, STYLE_TAPS).sum()
                     / in_stats_distance(encoder(before, STYLE_TAPS), target, STYLE_TAPS).sum())


def test_nearest_patch_is_found_whatever_its_scale_and_chunking(monkeypatch) -> None:
    gen = torch.Generator().manual_seed(0)
    style = torch.randn(1, 4, 6, 7, generator=gen)
    patches = extract_patches(style, 3)
    assert patches.shape == (4 * 5, 4, 3, 3)
    assert torch.equal(patches[6], style[0, :, 1:4, 1:4])  # row-major: window (1, 1) of a 5-wide grid
    picks = torch.tensor([3, 17, 0, 11])
    synth = torch.cat([3.0 * patches[i] for i in picks], dim=-1)[None]  # windows 0, 3, 6, 9 hold scaled copies
    index = nearest_patches(synth, patches, stride=3)
    assert index.shape == (1, 1, 4) and torch.equal(index[0, 0], picks)
    monkeypatch.setattr(mrf_module, "PATCH_CHUNK", 3)  # the running max over chunks finds the same
    assert torch.equal(nearest_patches(synth, patches, stride=3), index)
    cols = matched_columns(patches, index)
    assert torch.allclose(cols, F.unfold(synth, 3, stride=3) / 3.0)


def test_mrf_loss_is_zero_on_the_style_itself_and_positive_elsewhere() -> None:
    gen = torch.Generator().manual_seed(1)
    feats = {"a": torch.rand(1, 5, 9, 9, generator=gen), "b": torch.rand(1, 3, 6, 6, generator=gen)}
    weights = {"a": 1.0, "b": 0.5}
    for stride in (1, 2):
        patches = {k: extract_patches(v, 3, stride) for k, v in feats.items()}
        assert float(mrf_loss(feats, patches, weights, stride)) == 0.0
        other = {k: v.flip(-1) + 0.3 for k, v in feats.items()}
        assert float(mrf_loss(other, patches, weights, stride)) > 0.0
    with pytest.raises(KeyError, match="missing"):
        mrf_loss(feats, {"a": patches["a"]}, weights)
    with pytest.raises(ValueError, match="does not fit"):
        extract_patches(torch.rand(1, 2, 2, 5), 3)


def test_optimize_pixels_reaches_a_target_with_both_optimisers() -> None:
    target = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    start = torch.full_like(target, 0.5)

    def objective(x: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = ((x - target) ** 2).mean()
        return {"total": loss, "mse": loss}

    for optimizer, steps in (("lbfgs", 2), ("adam", 40)):
        result = optimize_pixels(start, objective, PixelOptimConfig(optimizer=optimizer, steps=steps), progress=False)
        assert result.history.shape[1] == 2
        assert float(result.history[-1, 0]) < 0.05 * float(result.history[0, 0])
    noise = optimize_pixels(start, objective, PixelOptimConfig(optimizer="adam", steps=1, init="noise"), progress=False)
    assert float(noise.history[0, 0]) > 1.5 * float(objective(start)["total"])  # noise: E 1/6 against 1/12 from 0.5
    with pytest.raises(ValueError, match="optimizer"):
        PixelOptimConfig(optimizer="sgd")


def test_mrf_optimisation_lowers_the_loss_and_moves_style_statistics(encoder, pair) -> None:
    content, style = pair
    result = mrf(content, style, MRFConfig(steps=2, lbfgs_inner=5), encoder=encoder, progress=False)
    assert result.image.shape == content.shape
    assert 0.0 <= float(result.image.min()) and float(result.image.max()) <= 1.0
    history = result.history
    assert history.shape[1] == 4 and float(history[0, 1]) == 0.0  # starts at the content: no content loss
    assert float(history[-1, 0]) < 0.8 * float(history[0, 0])  # measured: 0.62x after 12 evaluations
    assert stats_ratio(encoder, style, content, result.image) < 0.9  # measured: 0.79x


def test_the_stylize_builder_uses_the_mrf_settings(pair) -> None:
    content, style = pair
    config = SimpleNamespace(styles=(style,), style_size=48, alpha=0.5,
                             mrf=MRFConfig(optimizer="adam", steps=1, device="cpu"))
    out = stylizer(config, torch.device("cpu"))(content)
    assert out.shape == content.shape and not torch.equal(out, content)
    with pytest.raises(ValueError, match="optimizer"):
        MRFConfig(optimizer="sgd")
