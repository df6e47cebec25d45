"""Johnson et al. 2016 feed-forward networks: the architecture, training that lowers the style loss and moves
the outputs' statistics toward the style, bit-for-bit resume, the file format and the CLI."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data

from styleaxis.cli.train import train as commands
from styleaxis.embed.functional import gram
from styleaxis.stylize.johnson import JohnsonTrainConfig, ResidualBlock, TransformerNet, load_johnson, stylizer, train
from styleaxis.stylize.losses import gram_style_loss
from styleaxis.stylize.perceptual import PERCEPTUAL_STYLE_WEIGHTS, load_style_image
from styleaxis.embed.registry import load_model
from styleaxis.embed.training import to_tensor

from test_mrf import stats_ratio


def _config(folders: tuple[Path, list[Path]], out: Path, steps: int, **kw) -> JohnsonTrainConfig:
    content, style = folders[0], folders[1][0]
    settings = {"resize": 64, "crop": 32, "style_size": 64, "batch_size": 2, "lr": 1e-4, "checkpoint_every": 0,
                "preview_every": 0, **kw}
    return JohnsonTrainConfig(style=str(style), content_dir=str(content), out_dir=str(out), steps=steps, **settings)


def test_transformer_keeps_any_size_and_the_range() -> None:
    net = TransformerNet().eval()
    assert len(net.residuals) == 5 and isinstance(net.residuals[0], ResidualBlock)
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules()) == 3 + 2 * 5 + 2
    x = torch.rand(2, 3, 37, 50, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(x)
        block = ResidualBlock(8)
        torch.nn.init.zeros_(block.body[-1].weight)
        torch.nn.init.zeros_(block.body[-1].bias)  # a zero last layer makes the block the identity
        h = torch.rand(1, 8, 5, 5)
        assert torch.equal(block(h), h)
    assert out.shape == x.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    with pytest.raises(ValueError, match="RGB"):
        net(torch.rand(1, 4, 8, 8))
    assert PERCEPTUAL_STYLE_WEIGHTS == {"relu1_2": 0.25, "relu2_2": 0.25, "relu3_3": 0.25, "relu4_3": 0.25}


@pytest.mark.slow  # eight training steps: ~25 s of CPU
def test_training_lowers_the_style_loss_and_moves_statistics(folders, tmp_path: Path) -> None:
    config = _config(folders, tmp_path / "run", steps=8)
    result = train(config, progress=False)
    assert result.history.shape == (8, 4)
    net = load_johnson(result.model_path)
    assert net.style == "cin02" and net.encoder_name == "vgg16-hed"
    assert (tmp_path / "run" / "johnson.pth.sha256").read_text().split()[0] == result.sha256

    encoder = load_model("vgg16-hed")
    style = load_style_image(folders[1][0], 64)
    content = to_tensor(Image.fromarray(data.chelsea()).resize((64, 48)))  # a photo not trained on
    taps = tuple(config.style_weights)
    with torch.no_grad():
        grams = {t: gram(f) for t, f in encoder(style, taps).items()}
        torch.manual_seed(config.seed)
        untrained = TransformerNet().eval()  # the trainer's starting point

        def style_loss(out: torch.Tensor) -> float:
            return float(gram_style_loss(encoder(out, taps), grams, config.style_weights))

        out = net(content)
        assert style_loss(out) < 0.4 * style_loss(untrained(content))  # measured: 0.13x after 8 steps
        # eight steps move the outputs' statistics toward the style's, not yet past the photo's own
        assert stats_ratio(encoder, style, untrained(content), out) < 0.9  # measured: 0.82x
    assert torch.equal(stylizer(SimpleNamespace(model=str(result.model_path)), torch.device("cpu"))(content), out)


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(folders, tmp_path: Path) -> None:
    small = {"batch_size": 1, "checkpoint_every": 1}
    full = train(_config(folders, tmp_path / "full", steps=2, **small), progress=False)
    train(_config(folders, tmp_path / "cut", steps=1, **small), progress=False)
    resumed = train(_config(folders, tmp_path / "cut", steps=2, **small), progress=False)
    assert torch.equal(full.history, resumed.history) and full.sha256 == resumed.sha256
    with pytest.raises(ValueError, match="different config"):
        train(_config(folders, tmp_path / "cut", steps=3, **{**small, "style_weight": 1.0}), progress=False)


def test_files_and_cli(folders, tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="styleaxis-johnson/1"):
        load_johnson(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="--model"):
        stylizer(SimpleNamespace(model=None), torch.device("cpu"))
    content, style = folders[0], folders[1][0]
    out = tmp_path / "cli"
    args = ["johnson", "--style", str(style), "--content", str(content), "--out", str(out), "--steps", "1",
            "--batch-size", "1", "--resize", "40", "--crop", "32", "--quiet"]
    result = CliRunner().invoke(commands, args)
    assert result.exit_code == 0, result.output
    assert "johnson.pth" in result.output and load_johnson(out / "johnson.pth").style == "cin02"
    again = CliRunner().invoke(commands, args + ["--no-resume"])
    assert again.exit_code == 2 and "already holds checkpoints" in again.output
