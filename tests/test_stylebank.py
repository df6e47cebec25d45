"""StyleBank (Chen et al. 2017): banks pick and fuse styles, training alternates the two branches and lowers the
style loss, and an added style trains only its bank, leaving every existing output bit for bit the same."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data

from styleaxis.cli.train import train as commands
from styleaxis.stylize.cin import style_vector
from styleaxis.embed.functional import gram
from styleaxis.stylize.johnson import run_padded
from styleaxis.stylize.perceptual import TrainResult, load_style_image
from styleaxis.stylize.losses import gram_style_loss
from styleaxis.embed.registry import load_model
from styleaxis.stylize.stylebank import (STYLEBANK_STYLE_WEIGHTS, StyleBankNet, StyleBankTrainConfig, load_stylebank,
                                       stylizer, train)
from styleaxis.embed.training import to_tensor



def _config(folders: tuple[Path, list[Path]], out: Path, steps: int, styles: list[Path], **kw) -> StyleBankTrainConfig:
    settings = {"resize": 64, "crop": 32, "style_size": 64, "batch_size": 2, "lr": 1e-4, "checkpoint_every": 0,
                "preview_every": 0, **kw}
    return StyleBankTrainConfig(styles=tuple(str(s) for s in styles), content_dir=str(folders[0]), out_dir=str(out),
                                steps=steps, **settings)


@pytest.fixture(scope="module")
def base(folders, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """Two styles, six steps of T = 2 alternation: steps 2 and 5 are the auto-encoder branch's."""
    return train(_config(folders, tmp_path_factory.mktemp("base"), 6, folders[1][:2]), progress=False)


def test_banks_pick_and_fuse_styles(base: TrainResult) -> None:
    net = load_stylebank(base.model_path)
    assert net.styles == ["cin02", "cin15"] and net.encoder_name == "vgg16-hed"
    x = torch.rand(2, 3, 30, 41, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        per_sample = torch.stack([style_vector(2, style_id=1), style_vector(2, style_id=0)])
        mixed = net(x, per_sample)
        assert mixed.shape == x.shape and 0.0 <= float(mixed.min()) and float(mixed.max()) <= 1.0
        assert torch.allclose(mixed[0], net(x[:1], style_vector(2, style_id=1))[0], atol=1e-6)
        assert torch.allclose(mixed[1], net(x[1:], style_vector(2, style_id=0))[0], atol=1e-6)
        half = torch.tensor([0.5, 0.5])  # linear fusion in feature space: D(0.5 K_0(F) + 0.5 K_1(F))
        expected = run_padded(x, lambda y: net.decoder(sum(0.5 * bank(net.encoder(y)) for bank in net.banks)))
        assert torch.allclose(net(x, half), expected, atol=1e-5)
        builder = SimpleNamespace(model=str(base.model_path), style_id=None, style_weights=(1.0, 1.0))
        assert torch.allclose(stylizer(builder, torch.device("cpu"))(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="style_weights"):
        net(x, torch.ones(3))


def test_training_alternates_branches_and_lowers_the_style_loss(base: TrainResult, folders) -> None:
    history = base.history
    assert history.shape == (6, 5)
    auto_encoder = torch.tensor([False, False, True, False, False, True])
    assert bool((history[auto_encoder, 1:4] == 0).all()) and bool((history[auto_encoder, 4] > 0).all())
    assert bool((history[~auto_encoder, 4] == 0).all()) and bool((history[~auto_encoder, 2] > 0).all())

    encoder, net = load_model("vgg16-hed"), load_stylebank(base.model_path)
    torch.manual_seed(0)
    untrained = StyleBankNet(net.styles).eval()  # the trainer's starting point (seed 0)
    content = to_tensor(Image.fromarray(data.chelsea()).resize((64, 48)))
    weights = STYLEBANK_STYLE_WEIGHTS
    with torch.no_grad():
        grams = {t: gram(f) for t, f in encoder(load_style_image(folders[1][0], 64), tuple(weights)).items()}

        def style_loss(model: StyleBankNet) -> float:
            out = model(content, style_vector(2, style_id=0))
            return float(gram_style_loss(encoder(out, tuple(weights)), grams, weights))

        assert style_loss(net) < 0.5 * style_loss(untrained)  # measured: 0.19x after 4 stylising steps


def test_adding_a_style_trains_only_its_bank_and_resumes(base: TrainResult, folders, tmp_path: Path) -> None:
    add = {"base_model": str(base.model_path), "checkpoint_every": 1}
    full = train(_config(folders, tmp_path / "full", 2, folders[1][2:], **add), progress=False)
    train(_config(folders, tmp_path / "cut", 1, folders[1][2:], **add), progress=False)
    resumed = train(_config(folders, tmp_path / "cut", 2, folders[1][2:], **add), progress=False)
    assert torch.equal(full.history, resumed.history) and full.sha256 == resumed.sha256
    assert bool((full.history[:, 4] == 0).all())  # no auto-encoder steps: the encoder and decoder are frozen

    old, new = load_stylebank(base.model_path), load_stylebank(full.model_path)
    assert new.styles == ["cin02", "cin15", "cin24"]
    before, after = old.state_dict(), new.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sorted({k.split(".")[1] for k in after if k not in before}) == ["2"]
    x = torch.rand(3, 3, 45, 38, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for style_id in range(2):
            assert torch.equal(old(x, style_vector(2, style_id=style_id)), new(x, style_vector(3, style_id=style_id)))
        assert torch.equal(old(x), new(x))
        assert not torch.equal(new(x, style_vector(3, style_id=2)), new(x, style_vector(3, style_id=0)))


def test_cli(base: TrainResult, folders, tmp_path: Path) -> None:
    content, styles = folders
    common = ["stylebank", "--content", str(content), "--steps", "1", "--batch-size", "1", "--resize", "40",
              "--crop", "32", "--quiet"]
    both = CliRunner().invoke(commands, common + ["--out", str(tmp_path / "a"), "--styles", str(styles[0]),
                                                  "--add-style", str(styles[2]), "--model", str(base.model_path)])
    assert both.exit_code == 2 and "--add-style with --model" in both.output
    added = CliRunner().invoke(commands, common + ["--out", str(tmp_path / "b"), "--add-style", str(styles[2]),
                                                   "--model", str(base.model_path)])
    assert added.exit_code == 0, added.output
    assert load_stylebank(tmp_path / "b" / "stylebank.pth").styles == ["cin02", "cin15", "cin24"]
    assert "--add-style" in CliRunner().invoke(commands, ["stylebank", "--help"]).output
