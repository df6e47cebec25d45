"""VGG19 checkpoints in torchvision's and in AdaIN's vgg_normalised layout load into one internal layout.

The checkpoints are tiny random ones the test saves itself (channel widths 1/16 of VGG19's): the
loader reads widths from the file, so the real loading path is exercised without a download.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from styleaxis.embed.registry import WeightsError, load_model, resolve_weights, sha256_file
from styleaxis.embed.vgg import VGG19_BLOCKS

WIDTHS = [4, 4, 8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32, 32, 32]
TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _reference_layers(padding: str) -> list[nn.Module]:
    """VGG19 as torchvision and the AdaIN code build it (convs, ReLUs, max-pools), tiny widths."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    in_ch, k = 3, 0
    for n in VGG19_BLOCKS:
        for _ in range(n):
            if padding == "reflect":
                layers += [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, WIDTHS[k], 3)]
            else:
                layers += [nn.Conv2d(in_ch, WIDTHS[k], 3, padding=1)]
            layers.append(nn.ReLU())
            in_ch, k = WIDTHS[k], k + 1
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=padding == "reflect"))
    return layers


def _reference_taps(seq: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out, block, i = {}, 1, 0
    for layer in seq:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            i += 1
            if i == 1:
                out[f"relu{block}_1"] = x
        if isinstance(layer, nn.MaxPool2d):
            block, i = block + 1, 0
    return out


def test_torchvision_layout_matches_torchvision_style_forward(tmp_path: Path) -> None:
    features = nn.Sequential(*_reference_layers("zeros"))
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    encoder = load_model("vgg19", path)
    x = torch.rand(2, 3, 48, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = _reference_taps(features, (x - mean) / std)
    got = encoder(x, TAPS)
    for tap in TAPS:
        torch.testing.assert_close(got[tap], expected[tap], atol=1e-5, rtol=1e-4)


def test_vgg_normalised_layout_folds_its_1x1_conv_exactly(tmp_path: Path) -> None:
    torch.manual_seed(1)
    conv0 = nn.Conv2d(3, 3, 1)
    net = nn.Sequential(conv0, *_reference_layers("reflect"))
    path = tmp_path / "vgg_normalised.pth"
    torch.save(net.state_dict(), path)
    encoder = load_model("vgg19", path)
    x = torch.rand(1, 3, 50, 70)  # odd sizes after pooling: ceil_mode matters
    expected = _reference_taps(net[1:], conv0(x))
    got = encoder(x, TAPS)
    for tap in TAPS:
        torch.testing.assert_close(got[tap], expected[tap], atol=1e-5, rtol=1e-4)


def test_identity_is_the_loaded_files_sha256_and_names_are_checked(tmp_path: Path) -> None:
    net = nn.Sequential(*_reference_layers("zeros"))
    good = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in net.state_dict().items()}, good)
    assert resolve_weights("vgg19", good) == (good, sha256_file(good))
    lying = tmp_path / "vgg19-0123abcd.pth"  # torchvision names carry a sha256 prefix
    lying.write_bytes(good.read_bytes())
    with pytest.raises(WeightsError, match="expected 0123abcd"):
        load_model("vgg19", lying)


def test_wrong_files_get_errors_naming_the_problem(tmp_path: Path) -> None:
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7)}, other)
    with pytest.raises(ValueError, match="neither torchvision's VGG19 layout"):
        load_model("vgg19", other)
    short = tmp_path / "vgg16.pth"
    torch.save({f"features.{i}.weight": torch.zeros(4, 3 if i == 0 else 4, 3, 3) for i in range(13)}
               | {f"features.{i}.bias": torch.zeros(4) for i in range(13)}, short)
    with pytest.raises(ValueError, match="found 13 3x3 convolutions, expected 16"):
        load_model("vgg19", short)
    pickle = tmp_path / "model.pth"
    torch.save({"net": nn.Linear(2, 2)}, pickle)  # a pickled module, not a state dict
    with pytest.raises(ValueError, match="refused: it references the Python object torch.nn.modules.linear.Linear|expected a state dict"):
        load_model("vgg19", pickle)


def test_vgg19_record_points_at_torchvisions_imagenet_weights() -> None:
    from torchvision.models import VGG19_Weights

    from styleaxis.embed.registry import get_model

    record = get_model("vgg19")
    assert record.url == VGG19_Weights.IMAGENET1K_V1.url
    assert record.local_names[0] == VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
