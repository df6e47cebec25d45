"""Feed-forward style transfer with perceptual losses (Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for
Real-Time Style Transfer and Super-Resolution"): one network per style, trained once, then one forward pass.

The image transformation network of the paper's supplementary material: a 9x9 stride-1 convolution to 32
channels, two stride-2 3x3 convolutions (64, 128), five residual blocks of two 3x3 convolutions (128), two
upsampling 3x3 convolutions (64, 32) and a 9x9 convolution to RGB with a scaled tanh. Departures, as most
reimplementations: instance normalisation instead of batch normalisation (Ulyanov, Vedaldi & Lempitsky 2016,
who show it trains faster and stylises better), reflection padding instead of zero padding, and nearest 2x
upsampling followed by a convolution instead of fractionally strided convolutions (no checkerboard artefacts,
Odena et al. 2016). Sides that are not multiples of 4 are reflection-padded and cropped back.

Training minimises the perceptual loss (paper eq. 2-5, means instead of sums)

    L(y) = content_weight * mean((phi_j(y) - phi_j(x))^2) + style_weight * sum_l w_l mean((G_l(y) - G_l(s))^2)
           + tv_weight * TV(y)

on a fixed VGG: content at ``relu2_2``, style at ``relu1_2, relu2_2, relu3_3, relu4_3`` (the paper's layers,
present in both ``vgg16-hed`` and ``vgg19``). The loss and the training run around it are in
:mod:`.perceptual`, shared with the multi-style networks (CIN, :mod:`.cin`; StyleBank, :mod:`.stylebank`). The paper trains 40k steps of batch 4 on
256x256 MS-COCO crops with Adam lr 1e-3.

Network files are ``torch.save`` dicts read with ``weights_only=True``:
``{"format": JOHNSON_FORMAT, "style": name, "encoder": loss network, "state_dict": {...}}``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from styleaxis.embed.registry import load_checkpoint, save_checkpoint
from styleaxis.embed.training import CropSampler, Trainer

from .config import Stylizer, StylizeConfig
from .perceptual import PerceptualTrainConfig, TrainResult, train_and_export

__all__ = ["JOHNSON_FORMAT", "conv_block", "encoder_layers", "decoder_layers", "ResidualBlock", "TransformerNet",
           "save_network", "read_network", "load_johnson", "stylizer", "JohnsonTrainConfig", "train"]

JOHNSON_FORMAT = "styleaxis-johnson/1"
#: every side of the network's input must be a multiple of this (two stride-2 convolutions)
SIDE_MULTIPLE = 4


# -- model
def conv_block(cin: int, cout: int, kernel: int, stride: int = 1, upsample: bool = False,
               norm: bool = True) -> nn.Sequential:
    """[nearest 2x upsampling] -> reflection padding -> convolution [-> instance norm -> ReLU]."""
    layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
    layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
    if norm:
        layers += [nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def encoder_layers() -> nn.Sequential:
    """The paper's downsampling part: c9s1-32, d64, d128 (RGB -> 128 channels at 1/4 resolution)."""
    return nn.Sequential(conv_block(3, 32, 9), conv_block(32, 64, 3, stride=2), conv_block(64, 128, 3, stride=2))


def decoder_layers() -> nn.Sequential:
    """The paper's upsampling part: u64, u32, c9s1-3 (128 channels at 1/4 resolution -> RGB logits)."""
    return nn.Sequential(conv_block(128, 64, 3, upsample=True), conv_block(64, 32, 3, upsample=True),
                         conv_block(32, 3, 9, norm=False))


def run_padded(image: torch.Tensor, body: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``body`` on ``image`` reflection-padded to sides that are multiples of 4, cropped back; the logits
    are mapped to 0..1 with the paper's scaled tanh, (tanh + 1) / 2."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected RGB images (N, 3, H, W), got shape {tuple(image.shape)}")
    height, width = image.shape[-2:]
    padded = F.pad(image, (0, -width % SIDE_MULTIPLE, 0, -height % SIDE_MULTIPLE), mode="reflect")
    return (torch.tanh(body(padded)[..., :height, :width]) + 1.0) / 2.0


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))) with 3x3 convolutions (He et al. 2016 as Gross & Wilber 2016 use it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_block(channels, channels, 3), nn.ReflectionPad2d(1),
                                  nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformerNet(nn.Module):
    """The image transformation network: RGB (N, 3, H, W) in 0..1 -> stylised RGB in 0..1, any H, W >= 8."""

    def __init__(self, residual_blocks: int = 5) -> None:
        super().__init__()
        self.encoder = encoder_layers()
        self.residuals = nn.Sequential(*(ResidualBlock(128) for _ in range(residual_blocks)))
        self.decoder = decoder_layers()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return run_padded(image, lambda x: self.decoder(self.residuals(self.encoder(x))))


def save_network(model: nn.Module, path: str | os.PathLike[str], fmt: str, meta: Mapping[str, Any]) -> Path:
    """Write ``{"format": fmt, **meta, "state_dict": ...}`` atomically (temporary name, then rename)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_checkpoint({"format": fmt, **meta, "state_dict": state}, path)


def read_network(path: str | os.PathLike[str], fmt: str, model: Callable[[dict[str, Any]], nn.Module]) -> nn.Module:
    """Read a file written by :func:`save_network` (``weights_only=True``): check its format, build
    ``model(payload)`` and load the state dict strictly; returns the module in eval mode."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"network file not found: {path}")
    payload = load_checkpoint(path)
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: format {fmt!r} expected, got {got!r}")
    net = model(payload)
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: the state dict does not fit the {fmt} architecture: {exc}") from None
    return net.eval()


def load_johnson(path: str | os.PathLike[str]) -> TransformerNet:
    """A network written by :func:`train`, in eval mode; carries ``style`` and ``encoder_name``."""

    def build(payload: dict[str, Any]) -> TransformerNet:
        net = TransformerNet()
        net.style, net.encoder_name = str(payload["style"]), str(payload["encoder"])
        return net

    return read_network(path, JOHNSON_FORMAT, build)


# -- run
def stylizer(config: StylizeConfig, device: torch.device) -> Stylizer:
    """The ``johnson`` method of :mod:`.stylize`: the network file ``config.model`` (required)."""
    if not config.model:
        raise ValueError("johnson needs a network file (--model), made by `styleaxis train johnson`")
    return load_johnson(config.model).to(device)


# -- train
@dataclass(frozen=True, kw_only=True)
class JohnsonTrainConfig(PerceptualTrainConfig):
    """How to train a Johnson et al. network for one ``style`` image (paper: 40k steps of batch 4 on 256 px
    MS-COCO crops, Adam lr 1e-3); the other fields are :class:`PerceptualTrainConfig`'s."""

    style: str


class _JohnsonTrainer(Trainer):
    """Transformation network, Adam, content crop sampler and the style's perceptual loss of one run."""

    def __init__(self, config: JohnsonTrainConfig) -> None:
        super().__init__(config)
        self.loss = config.perceptual_loss(self.encoder, [config.style])
        torch.manual_seed(config.seed)
        self.model = TransformerNet().to(self.device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.generators = {"content": torch.Generator().manual_seed(config.seed + 1)}
        self.content = CropSampler(config.content_dir, config.resize, config.crop, self.generators["content"])
        self.preview_content = CropSampler(config.content_dir, config.resize, config.crop,
                                           torch.Generator().manual_seed(config.seed + 2)).sample(2)

    def losses(self) -> dict[str, torch.Tensor]:
        content = self.content.sample(self.config.batch_size).to(self.device)
        return self.loss(self.model(content), content, torch.zeros(len(content), dtype=torch.long))

    def preview(self) -> list[torch.Tensor]:
        content = self.preview_content.to(self.device)
        return [content, self.model(content)]


def train(config: JohnsonTrainConfig, progress: bool = True, resume: bool = True) -> TrainResult:
    """Train (or resume training) a network for ``config.style``; returns ``out_dir/johnson.pth`` and the
    loss history (columns total, content, style, tv)."""
    meta = {"style": Path(config.style).stem, "encoder": config.encoder}
    return train_and_export(_JohnsonTrainer(config), config, lambda m, p: save_network(m, p, JOHNSON_FORMAT, meta),
                            "johnson.pth", progress, resume, desc="train johnson")
