"""N-style CIN networks: cin26 taken over exactly, training lowers the loss, and resumes bit for bit."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data

from styleaxis.stylize.cin import CINNet, CINTrainConfig, load_cin, save_cin, style_vector, train
from styleaxis.embed.functional import gram
from styleaxis.embed.registry import load_model
from styleaxis.stylize.stylize import stylize


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Three content photos and two style images (stained tissue, bricks) at ~96 px."""
    root = tmp_path_factory.mktemp("cin")
    (root / "content").mkdir()
    for name, image in (("astronaut", data.astronaut()), ("coffee", data.coffee()), ("rocket", data.rocket())):
        Image.fromarray(image).resize((128, 96)).save(root / "content" / f"{name}.png")
    styles = [root / "ihc.png", root / "brick.png"]
    Image.fromarray(data.immunohistochemistry()).resize((96, 96)).save(styles[0])
    Image.fromarray(data.brick()).convert("RGB").resize((96, 96)).save(styles[1])
    return root / "content", styles


def _config(folders: tuple[Path, list[Path]], out: Path, steps: int, **kw) -> CINTrainConfig:
    content, styles = folders
    return CINTrainConfig(styles=tuple(str(s) for s in styles), content_dir=str(content), out_dir=str(out),
                          resize=96, crop=64, style_size=96, batch_size=2, steps=steps, lr=1e-2,
                          checkpoint_every=2, preview_every=0, **kw)


def test_from_multistyle_reproduces_cin26_and_mixes_rows() -> None:
    cin26 = load_model("cin26")
    net = CINNet.from_multistyle(cin26).eval()
    x = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    mix = style_vector(26, weights=[1.0] * 2 + [0.0] * 24)
    with torch.no_grad():
        assert torch.equal(net(x, style_vector(26, style_id=5)), cin26(x, style_vector(26, style_id=5)))
        assert torch.allclose(net(x, mix), cin26(x, mix), atol=1e-6)
    assert mix[0] == 0.5 and float(mix.sum()) == 1.0
    with pytest.raises(ValueError, match="style_id"):
        style_vector(26, style_id=26)
    with pytest.raises(ValueError, match="non-negative"):
        style_vector(3, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="style_weights"):
        net(x, torch.ones(3))


def test_new_style_rows_start_at_the_mean_and_files_round_trip(tmp_path: Path) -> None:
    cin26 = load_model("cin26")
    net = CINNet.from_multistyle(cin26, num_styles=3, styles=["a", "b", "c"])
    assert torch.allclose(net.gammas[0][2], cin26.gammas[0].mean(dim=0))
    path = save_cin(net, tmp_path / "n.pth")
    loaded = load_cin(path)
    assert loaded.styles == ["a", "b", "c"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a CIN network file"):
        load_cin(tmp_path / "other.pth")


@pytest.mark.slow  # 12 training steps: ~20 s of CPU
def test_training_lowers_the_style_loss_and_the_file_stylises(folders, tmp_path: Path) -> None:
    config = _config(folders, tmp_path / "run", steps=12)
    result = train(config, progress=False)
    assert result.history.shape == (12, 4)
    model = load_cin(result.model_path)
    assert model.styles == ["ihc", "brick"]
    assert (tmp_path / "run" / "cin.pth.sha256").read_text().split()[0] == result.sha256

    encoder = load_model("vgg16-hed")
    style = torch.from_numpy(data.immunohistochemistry()).permute(2, 0, 1)[None].float() / 255
    style = torch.nn.functional.interpolate(style, size=(96, 96), mode="bilinear", antialias=True)
    taps = tuple(config.style_weights)
    with torch.no_grad():
        target = {t: gram(f) for t, f in encoder(style, taps).items()}
    content = torch.from_numpy(data.chelsea()[::4, ::4].copy()).permute(2, 0, 1)[None].float() / 255

    def style_loss(net: CINNet) -> float:
        with torch.no_grad():
            feats = encoder(net(content, style_vector(net.num_styles, style_id=0)), taps)
            return sum(float(((gram(feats[t]) - target[t]) ** 2).mean()) for t in taps)

    before = CINNet.from_multistyle(load_model("cin26"), num_styles=2)
    assert style_loss(model) < 0.4 * style_loss(before)  # measured: 0.12x after 12 steps

    out = stylize("cin", content, style_id=1, model=str(result.model_path))
    assert out.shape == content.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0


@pytest.mark.slow  # 8 training steps: ~20 s of CPU
def test_resume_is_bitwise_identical_to_an_uninterrupted_run(folders, tmp_path: Path) -> None:
    full = train(_config(folders, tmp_path / "full", steps=4), progress=False)
    train(_config(folders, tmp_path / "cut", steps=2), progress=False)
    resumed = train(_config(folders, tmp_path / "cut", steps=4), progress=False)
    assert torch.equal(full.history, resumed.history)
    a, b = load_cin(full.model_path).state_dict(), load_cin(resumed.model_path).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full.sha256 == resumed.sha256
    with pytest.raises(ValueError, match="different config"):
        train(replace(_config(folders, tmp_path / "cut", steps=6), lr=0.5), progress=False)


def test_a_random_body_must_be_trained(folders, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_body"):
        _config(folders, tmp_path, steps=1, init="random")
    result = train(_config(folders, tmp_path / "scratch", steps=2, init="random", train_body=True),
                       progress=False)
    assert result.history.shape == (2, 4)
