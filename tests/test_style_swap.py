"""Style swap (Chen & Schmidt 2016): the swap equals the paper's one-hot transposed convolution, decoding by
optimisation moves the image toward the style, and the inverse network trains, resumes and decodes."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from styleaxis.cli.train import train as commands
from styleaxis.stylize.adain import load_decoder
from styleaxis.stylize.mrf import extract_patches
from styleaxis.stylize.style_swap import (InverseTrainConfig, StyleSwapConfig, style_swap, stylizer, swap_transfer, train)

from test_mrf import stats_ratio


def test_swap_equals_the_papers_one_hot_transposed_convolution() -> None:
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(2, 6, 7, 9, generator=gen), torch.rand(1, 6, 8, 5, generator=gen)
    patches = extract_patches(style, 3)
    unit = patches / patches.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    one_hot = F.one_hot(F.conv2d(content, unit).argmax(dim=1), len(patches)).permute(0, 3, 1, 2).float()
    overlaps = F.conv_transpose2d(one_hot, torch.ones(len(patches), 1, 3, 3))
    expected = F.conv_transpose2d(one_hot, patches) / overlaps
    assert torch.allclose(style_swap(content, style), expected, atol=1e-6)
    assert torch.allclose(style_swap(content[:1], content[:1]), content[:1], atol=1e-6)  # each patch is its own match
    single = style_swap(content, style, patch_size=1)  # 1x1 patches: every vector is one of the style's
    style_vectors = style.flatten(2)[0].t()
    assert all(bool((style_vectors == v).all(dim=1).any()) for v in single.flatten(2).transpose(1, 2).reshape(-1, 6))


def test_decoding_by_optimisation_moves_toward_the_style(encoder, pair) -> None:
    content, style = pair
    result = swap_transfer(content, style, StyleSwapConfig(steps=2, lbfgs_inner=5), encoder=encoder, progress=False)
    assert result.image.shape == content.shape
    assert 0.0 <= float(result.image.min()) and float(result.image.max()) <= 1.0
    assert result.history.shape[1] == 3
    assert float(result.history[-1, 0]) < 0.6 * float(result.history[0, 0])  # measured: 0.43x after 12 evaluations
    assert stats_ratio(encoder, style, content, result.image) < 0.9  # measured: 0.81x
    kept = swap_transfer(content, style, StyleSwapConfig(optimizer="adam", steps=1), alpha=0.0, encoder=encoder,
                         progress=False)
    assert float(kept.history[0, 1]) == 0.0  # alpha 0: the target is the content's own activations
    with pytest.raises(ValueError, match="alpha"):
        swap_transfer(content, style, alpha=1.5, encoder=encoder)


def test_inverse_network_trains_resumes_and_decodes_any_size(encoder, folders, pair, tmp_path: Path) -> None:
    content_dir, style_dir = folders[0], folders[1][0].parent

    def config(out: Path, steps: int) -> InverseTrainConfig:
        return InverseTrainConfig(content_dir=str(content_dir), style_dir=str(style_dir), out_dir=str(out),
                                  resize=48, crop=32, batch_size=1, steps=steps, checkpoint_every=1, preview_every=0)

    full = train(config(tmp_path / "full", 2), progress=False)
    train(config(tmp_path / "cut", 1), progress=False)
    resumed = train(config(tmp_path / "cut", 2), progress=False)
    assert full.history.shape == (2, 3) and torch.equal(full.history, resumed.history)
    assert full.sha256 == resumed.sha256
    inverse = load_decoder(full.model_path)
    assert (inverse.encoder, inverse.tap) == ("vgg16-hed", "relu3_1")

    content, style = pair
    odd = content[..., :61, :58]  # not a multiple of the network's scale (4): padded, then cropped back
    out = swap_transfer(odd, style, inverse=inverse, encoder=encoder, progress=False).image
    assert out.shape == odd.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    builder = SimpleNamespace(model=str(full.model_path), styles=(style,), style_size=80, alpha=1.0,
                              swap=StyleSwapConfig(tap="relu2_1"))
    assert torch.equal(stylizer(builder, torch.device("cpu"))(odd), out)  # the file's tap wins


def test_cli_trains_an_inverse_network(folders, tmp_path: Path) -> None:
    content_dir, style_dir = folders[0], folders[1][0].parent
    out = tmp_path / "cli"
    args = ["swap-inverse", "--content", str(content_dir), "--style", str(style_dir), "--out", str(out), "--steps", "1",
            "--batch-size", "1", "--resize", "40", "--crop", "32", "--quiet"]
    result = CliRunner().invoke(commands, args)
    assert result.exit_code == 0, result.output
    assert "inverse.pth" in result.output and (out / "inverse.pth.sha256").is_file()
    refused = CliRunner().invoke(commands, args[:-1] + ["--crop", "30", "--out", str(tmp_path / "bad")])
    assert refused.exit_code == 1 and "multiple of 4" in refused.output
    assert "relu3_1" in CliRunner().invoke(commands, ["swap-inverse", "--help"]).output
