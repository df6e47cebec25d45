"""Gatys optimisation and the perceptual losses, for real on 64 px images with the offline VGG16."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from styleaxis.embed.descriptors import STYLE_TAPS
from styleaxis.embed.functional import calc_mean_std, gram
from styleaxis.stylize.gatys import GATYS_STYLE_WEIGHTS, GatysConfig, gatys
from styleaxis.stylize.losses import content_loss, gram_style_loss, in_stats_distance, in_style_loss, total_variation
from styleaxis.embed.registry import load_model
from styleaxis.embed.training import to_tensor
from styleaxis.embed.vgg import VGG19_BLOCKS, VGGEncoder


def _image(array: np.ndarray, size: tuple[int, int] = (64, 64)) -> torch.Tensor:
    return to_tensor(Image.fromarray(array).convert("RGB").resize(size, Image.BICUBIC))


@pytest.fixture(scope="module")
def encoder() -> VGGEncoder:
    return load_model("vgg16-hed")


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A cat photo and a stained-tissue image: very different colour and texture statistics."""
    return _image(data.chelsea()), _image(data.immunohistochemistry())


def test_gram_is_the_size_normalised_channel_correlation() -> None:
    feat = torch.randn(2, 3, 4, 5)
    expected = torch.einsum("nchw,ndhw->ncd", feat, feat) / (3 * 4 * 5)
    assert torch.allclose(gram(feat), expected, atol=1e-6)
    assert torch.allclose(gram(feat), gram(feat).transpose(1, 2))


def test_losses_are_zero_at_their_targets_and_positive_elsewhere() -> None:
    torch.manual_seed(0)
    feats = {"a": torch.rand(1, 4, 8, 8), "b": torch.rand(1, 6, 4, 4)}
    other = {k: v.flip(-1) * 2 for k, v in feats.items()}
    weights = {"a": 0.5, "b": 0.5}
    assert float(gram_style_loss(feats, {k: gram(v) for k, v in feats.items()}, weights)) == 0.0
    assert float(gram_style_loss(other, {k: gram(v) for k, v in feats.items()}, weights)) > 0.0
    assert float(in_style_loss(feats, {k: calc_mean_std(v) for k, v in feats.items()}, weights)) == 0.0
    assert float(in_style_loss(other, {k: calc_mean_std(v) for k, v in feats.items()}, weights)) > 0.0
    assert float(content_loss(feats["a"], feats["a"])) == 0.0
    with pytest.raises(KeyError, match="missing"):
        gram_style_loss(feats, {"a": gram(feats["a"])}, weights)


def test_total_variation_of_flat_and_striped_images() -> None:
    assert float(total_variation(torch.full((1, 3, 8, 8), 0.3))) == 0.0
    stripes = torch.zeros(1, 1, 8, 8)
    stripes[..., ::2] = 1.0  # every horizontal neighbour differs by 1, vertical ones not at all
    assert float(total_variation(stripes)) == pytest.approx(1.0)


def test_default_layers_are_the_papers() -> None:
    config = GatysConfig()
    assert config.content_tap == "relu4_2"
    assert GATYS_STYLE_WEIGHTS == {"relu1_1": 0.2, "relu2_1": 0.2, "relu3_1": 0.2, "relu4_1": 0.2, "relu5_1": 0.2}


def test_lbfgs_lowers_the_loss_and_moves_style_statistics(encoder, pair) -> None:
    content, style = pair
    result = gatys(content, style, GatysConfig(steps=3, lbfgs_inner=5), encoder=encoder, progress=False)
    assert result.image.shape == content.shape
    assert 0.0 <= float(result.image.min()) and float(result.image.max()) <= 1.0
    history = result.history
    assert history.shape[1] == 4 and len(history) >= 6
    assert float(history[-1, 0]) < 0.2 * float(history[0, 0])  # measured: 0.08x after 18 evaluations
    with torch.no_grad():
        target = encoder(style, STYLE_TAPS)
        before = in_stats_distance(encoder(content, STYLE_TAPS), target, STYLE_TAPS)
        after = in_stats_distance(encoder(result.image, STYLE_TAPS), target, STYLE_TAPS)
    assert float(after) < 0.7 * float(before)


def test_adam_from_noise_is_seeded_and_lowers_the_loss(encoder, pair) -> None:
    content, style = pair
    config = GatysConfig(optimizer="adam", init="noise", steps=8, seed=3)
    first = gatys(content, style, config, encoder=encoder, progress=False)
    second = gatys(content, style, config, encoder=encoder, progress=False)
    assert torch.equal(first.image, second.image)
    assert float(first.history[-1, 0]) < float(first.history[0, 0])
    assert float(first.history[0, 1]) > 0.0  # noise does not start at the content


def test_total_variation_weight_smooths_the_result(encoder, pair) -> None:
    content, style = pair
    base = GatysConfig(optimizer="adam", steps=6, lr=0.05)
    plain = gatys(content, style, base, encoder=encoder, progress=False).image
    smooth = gatys(content, style, GatysConfig(optimizer="adam", steps=6, lr=0.05, tv_weight=50.0),
                   encoder=encoder, progress=False).image
    assert float(total_variation(smooth)) < float(total_variation(plain))


def test_the_encoder_is_a_parameter_vgg19_layout_works(pair) -> None:
    torch.manual_seed(0)
    tiny_vgg19 = VGGEncoder([8, 8, 16, 16] + [16] * 4 + [32] * 8, VGG19_BLOCKS)
    content, style = pair
    # random weights give tiny activations: Adam's step does not depend on the gradient's scale
    result = gatys(content, style, GatysConfig(optimizer="adam", steps=4), encoder=tiny_vgg19, progress=False)
    assert result.image.shape == content.shape
    assert float(result.history[-1, 0]) < float(result.history[0, 0])


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        GatysConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="init"):
        GatysConfig(init="zeros")
