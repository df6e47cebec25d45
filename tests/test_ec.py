"""EC metrics on constructed cases with the real offline encoder and cin26; deception rate."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from styleaxis.demo import sample_photos
from styleaxis.embed.registry import load_model
from styleaxis.eval.deception import StyleClassifier, StyleClassifierConfig, deception_rate
from styleaxis.eval.ec import (
    EC_TAPS,
    ECConfig,
    ECEvaluator,
    coherence,
    effectiveness_from_stats,
    match_triplets,
    read_triplets,
)

SIDE = 96  # images are this short side; ECConfig(short_side=None) keeps them so
SELF_E = -math.log(1e-12)  # E of identical statistics: -log(0 + eps)


def _photo(name: str, side: int = SIDE) -> torch.Tensor:
    img = Image.fromarray(sample_photos()[name])
    scale = side / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img)).permute(2, 0, 1).float() / 255.0


@pytest.fixture(scope="module")
def cin26() -> torch.nn.Module:
    return load_model("cin26")


def _stylise(cin: torch.nn.Module, image: torch.Tensor, style: int) -> torch.Tensor:
    weights = torch.zeros(26)
    weights[style] = 1.0
    with torch.inference_mode():
        return cin(image[None], weights)[0]


@pytest.fixture(scope="module")
def evaluator() -> ECEvaluator:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the vgg19 -> vgg16-hed fallback, tested below
        return ECEvaluator(ECConfig(short_side=None, device="cpu"))


def test_encoder_fallback_is_said(evaluator):
    if evaluator.encoder_name == "vgg16-hed":
        assert "vgg19" in evaluator.note and "vgg16-hed" in evaluator.note
        with pytest.warns(UserWarning, match="vgg16-hed"):
            ECEvaluator(ECConfig(short_side=None))
    else:
        assert evaluator.encoder_name == "vgg19" and evaluator.note is None
    explicit = ECEvaluator(ECConfig(encoder="vgg16-hed", short_side=None))
    assert explicit.encoder_name == "vgg16-hed" and explicit.note is None


def test_kl_formula():
    # stylised N(1, 2^2) against style N(0, 1): KL = -log 2 + (4 + 1)/2 - 1/2
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert float(effectiveness_from_stats(x, y, eps=0.0)) == pytest.approx(-math.log(2.0 - math.log(2.0)))
    # standardisation: scaling both by 3 and shifting both by 5 changes nothing
    assert float(effectiveness_from_stats(x * 3 + torch.tensor([5.0, 0.0]), y * 3 + torch.tensor([5.0, 0.0]),
                                          eps=0.0)) == pytest.approx(-math.log(2.0 - math.log(2.0)))


def test_moments_equal_projecting_every_sample(evaluator):
    """The pooled mean/std from channel moments equal those of the explicitly projected samples."""
    img = _photo("coffee", 64)
    stats = evaluator.projection_stats([img])[0]
    with torch.inference_mode():
        taps = evaluator.encoder(img[None], taps=EC_TAPS)
    feats = [taps[t][0].flatten(1).double() for t in EC_TAPS]
    dirs = evaluator.directions([f.shape[0] for f in feats])
    samples = torch.cat([v @ f for v, f in zip(dirs, feats)], dim=1)  # (R, sum of H*W)
    assert samples.shape[0] == 128
    assert torch.allclose(stats[:, 0], samples.mean(dim=1), rtol=1e-9, atol=1e-9)
    assert torch.allclose(stats[:, 1], samples.std(dim=1, unbiased=False), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("style", [2, 8])
def test_effectiveness_orders_stylisation_strength(evaluator, cin26, style):
    """Against a style image (cin26 style s on another photo), more of style s on the content scores higher."""
    content = _photo("astronaut")
    style_image = _stylise(cin26, _photo("coffee"), style)
    stylised = _stylise(cin26, content, style)
    e = {alpha: evaluator.effectiveness(alpha * stylised + (1 - alpha) * content, style_image)
         for alpha in (1.0, 0.5, 0.0)}
    assert e[1.0] > e[0.5] + 0.5 > e[0.0] + 1.0
    best = evaluator.effectiveness(style_image, style_image)
    assert math.isfinite(best) and best == pytest.approx(SELF_E, abs=1e-3) and best > e[1.0] + 10


def test_coherence(cin26):
    content = _photo("cat")
    assert coherence(content, content) == pytest.approx(1.0, abs=1e-12)
    c = coherence(_stylise(cin26, content, 8), content)
    assert 0.0 < c < 0.6
    # the content is resized to the stylised image's size when they differ
    assert coherence(content, _photo("cat", 128)) > 0.9


def test_seeded_and_batch_independent(evaluator, cin26):
    content, style_image = _photo("rocket"), _stylise(cin26, _photo("pagoda"), 15)
    stylised = _stylise(cin26, content, 15)
    one = evaluator.effectiveness(stylised, style_image)
    again = ECEvaluator(ECConfig(encoder=evaluator.encoder_name, short_side=None)).effectiveness(stylised, style_image)
    assert one == again
    table = evaluator.evaluate([(content, style_image, stylised), (content, style_image, content)])
    assert list(table.columns) == ["content", "style", "stylized", "E", "C", "encoder"]
    assert table["E"].iloc[0] == pytest.approx(one, abs=1e-6)
    assert table["E"].iloc[0] > table["E"].iloc[1] and table["C"].iloc[1] == pytest.approx(1.0)
    other_seed = ECEvaluator(ECConfig(encoder=evaluator.encoder_name, short_side=None, seed=1))
    two = other_seed.effectiveness(stylised, style_image)
    assert two != one and two == pytest.approx(one, abs=0.5)  # another sample of directions, same scale


def test_triplets_from_folders_and_csv(tmp_path):
    for folder in ("content", "style", "out"):
        (tmp_path / folder).mkdir()
    for stem in ("a", "b"):
        Image.new("RGB", (32, 32), "red").save(tmp_path / "content" / f"{stem}.jpg")
        Image.new("RGB", (32, 32), "blue").save(tmp_path / "out" / f"{stem}.png")
    Image.new("RGB", (32, 32), "green").save(tmp_path / "style" / "one.png")
    table = match_triplets(tmp_path / "content", tmp_path / "style" / "one.png", tmp_path / "out")
    assert list(table["stylized"].map(lambda p: p.rsplit("/", 1)[1])) == ["a.png", "b.png"]
    assert table["content"].str.endswith(".jpg").all() and (table["method"] == "out").all()
    with pytest.raises(ValueError, match="no image named a"):
        match_triplets(tmp_path / "style", tmp_path / "style", tmp_path / "out")

    pd.DataFrame({"content": ["content/a.jpg"], "style": ["style/one.png"], "stylized": ["out/a.png"],
                  "method": ["m"]}).to_csv(tmp_path / "t.csv", index=False)
    read = read_triplets(tmp_path / "t.csv")
    assert read.loc[0, "content"] == str(tmp_path / "content" / "a.jpg") and read.loc[0, "method"] == "m"
    pd.DataFrame({"content": ["x"], "stylised": ["y"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"missing columns \['style', 'stylized'\]"):
        read_triplets(tmp_path / "bad.csv")


def test_deception_rate(cin26):
    styles = (2, 15)
    train = [(_stylise(cin26, _photo(name, 64), s), f"style{s}") for name in ("astronaut", "coffee", "cat")
             for s in styles]
    classifier = StyleClassifier(StyleClassifierConfig(short_side=64, device="cpu"))
    classifier.fit([img for img, _ in train], [label for _, label in train])
    assert classifier.labels == ["style15", "style2"]
    held_out = [_stylise(cin26, _photo("rocket", 64), s) for s in styles]
    assert deception_rate(classifier, held_out, [f"style{s}" for s in styles]) == 1.0
    assert deception_rate(classifier, held_out, [f"style{s}" for s in reversed(styles)]) == 0.0
    with pytest.raises(ValueError, match="style9"):
        deception_rate(classifier, held_out, ["style9", "style2"])
