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
present in both ``vgg16-hed`` and ``vgg19``). :class:`PerceptualLoss` holds the style targets of several styles
so multi-style networks (StyleBank, :mod:`.stylebank`) share it. The paper trains 40k steps of batch 4 on
256x256 MS-COCO crops with Adam lr 1e-3.

Network files are ``torch.save`` dicts read with ``weights_only=True``:
``{"format": JOHNSON_FORMAT, "style": name, "encoder": loss network, "state_dict": {...}}``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .cin import CIN_STYLE_WEIGHTS
from .embedder import resize_short_side
from .functional import gram
from .losses import content_loss, gram_style_loss, total_variation
from .registry import resolve_weights
from .training import CropSampler, Trainer, export_model, fit, load_rgb, to_tensor
from .vgg import VGGEncoder

if TYPE_CHECKING:  # stylize.py imports this module to register the method
    from .stylize import StylizeConfig

__all__ = ["JOHNSON_FORMAT", "JOHNSON_STYLE_WEIGHTS", "conv_block", "encoder_layers", "decoder_layers",
           "ResidualBlock", "TransformerNet", "PerceptualLoss", "load_style_image", "save_network", "read_network",
           "load_johnson", "RESUMABLE_CHANGES", "TrainRunConfig", "PerceptualTrainConfig", "TrainResult",
           "train_and_export", "JohnsonTrainConfig", "train_johnson", "johnson_stylizer"]

JOHNSON_FORMAT = "styleaxis-johnson/1"
#: the paper's style layers, equally weighted (the same taps Dumoulin et al. took over for CIN)
JOHNSON_STYLE_WEIGHTS: dict[str, float] = CIN_STYLE_WEIGHTS
#: every side of the network's input must be a multiple of this (two stride-2 convolutions)
SIDE_MULTIPLE = 4


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


class PerceptualLoss:
    """The loss of Johnson et al. 2016 for a network output y, its input x and the style k of each sample:

        content_weight * mean((phi_c(y) - phi_c(x))^2) + style_weight * sum_l w_l mean((G_l(y) - G_l(s_k))^2)
        + tv_weight * TV(y)

    Args:
        encoder: the fixed loss network.
        styles: one (1, 3, h, w) image per style; their Gram matrices are computed once.
        content_tap / style_weights: the loss layers and per-tap weights.
        content_weight / style_weight / tv_weight: weights of the three terms.
    """

    def __init__(self, encoder: VGGEncoder, styles: Sequence[torch.Tensor], content_tap: str,
                 style_weights: Mapping[str, float], content_weight: float, style_weight: float,
                 tv_weight: float) -> None:
        self.encoder, self.content_tap, self.style_weights = encoder, content_tap, dict(style_weights)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        with torch.no_grad():
            per_style = [encoder(s, tuple(self.style_weights)) for s in styles]
        self.grams = {t: torch.cat([gram(feats[t]) for feats in per_style]) for t in self.style_weights}
        self.taps = tuple(dict.fromkeys((content_tap, *self.style_weights)))

    def __call__(self, output: torch.Tensor, content: torch.Tensor, style_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms ``total``, ``content``, ``style``, ``tv`` of a batch; ``style_ids`` (N,) picks each
        sample's style."""
        feats = self.encoder(output, self.taps)
        with torch.no_grad():
            target = self.encoder(content, (self.content_tap,))[self.content_tap]
        loss_c = content_loss(feats[self.content_tap], target)
        ids = style_ids.to(next(iter(self.grams.values())).device)
        loss_s = gram_style_loss(feats, {t: g[ids] for t, g in self.grams.items()}, self.style_weights)
        loss_tv = total_variation(output)
        total = self.content_weight * loss_c + self.style_weight * loss_s + self.tv_weight * loss_tv
        return {"total": total, "content": loss_c, "style": loss_s, "tv": loss_tv}


def load_style_image(path: str | os.PathLike[str], size: int) -> torch.Tensor:
    """A style image file as (1, 3, h, w) in 0..1 with short side ``size``."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"style image not found: {path}")
    return resize_short_side(to_tensor(load_rgb(path))[0], size)[None]


def save_network(model: nn.Module, path: str | os.PathLike[str], fmt: str, meta: Mapping[str, Any]) -> Path:
    """Write ``{"format": fmt, **meta, "state_dict": ...}`` atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"format": fmt, **meta, "state_dict": state}, tmp)
    os.replace(tmp, path)
    return path


def read_network(path: str | os.PathLike[str], fmt: str, model: Callable[[dict[str, Any]], nn.Module]) -> nn.Module:
    """Read a file written by :func:`save_network` (``weights_only=True``): check its format, build
    ``model(payload)`` and load the state dict strictly; returns the module in eval mode."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"network file not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
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
    """A network written by :func:`train_johnson`, in eval mode; carries ``style`` and ``encoder_name``."""

    def build(payload: dict[str, Any]) -> TransformerNet:
        net = TransformerNet()
        net.style, net.encoder_name = str(payload["style"]), str(payload["encoder"])
        return net

    return read_network(path, JOHNSON_FORMAT, build)


#: config fields a resumed run may change; any other difference from the checkpoint's config is refused
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "preview_every", "device"})


@dataclass(frozen=True, kw_only=True)
class TrainRunConfig:
    """The settings every training run shares (keyword-only fields).

    Attributes:
        content_dir: folder of content images (searched recursively).
        out_dir: run folder: checkpoints/, previews/, the exported network (+ .sha256, .json), losses.json.
        encoder: registry name of the fixed loss network.
        resize / crop: content images' short side, then random square crops.
        batch_size / lr / steps: Adam settings; a resumed run continues up to ``steps``.
        checkpoint_every / preview_every: steps between checkpoints and preview grids (0: never).
        seed: seeds the network's initialisation and every sample.
        device: ``cpu`` or ``cuda``.
    """

    content_dir: str
    out_dir: str
    encoder: str = "vgg16-hed"
    resize: int = 512
    crop: int = 256
    batch_size: int = 4
    lr: float = 1e-3
    steps: int = 40_000
    checkpoint_every: int = 1000
    preview_every: int = 500
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("resize", "crop", "batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class PerceptualTrainConfig(TrainRunConfig):
    """A run trained with :class:`PerceptualLoss`; defaults are Johnson et al.'s.

    Attributes:
        content_tap / style_weights: loss layers (paper: relu2_2; relu1_2, relu2_2, relu3_3, relu4_3).
        content_weight / style_weight / tv_weight: weights of the three terms (for ``vgg16-hed``'s
            Caffe-scale activations).
        style_size: short side of the style images for their Gram matrices.
    """

    content_tap: str = "relu2_2"
    style_weights: dict[str, float] = field(default_factory=lambda: dict(JOHNSON_STYLE_WEIGHTS))
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0
    style_size: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.style_size < 1 or not self.style_weights:
            raise ValueError(f"{type(self).__name__} needs style_size >= 1 and at least one style tap")

    def perceptual_loss(self, encoder: VGGEncoder, styles: Sequence[str | os.PathLike[str]]) -> PerceptualLoss:
        """The loss these settings define, with the style images' Gram targets on ``encoder``'s device."""
        device = next(encoder.parameters()).device
        return PerceptualLoss(encoder, [load_style_image(s, self.style_size).to(device) for s in styles],
                              self.content_tap, self.style_weights, self.content_weight, self.style_weight,
                              self.tv_weight)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: the exported network file, its sha256, the last step and the loss
    history (one row per step, the trainer's loss columns)."""

    model_path: Path
    sha256: str
    step: int
    history: torch.Tensor


def train_and_export(trainer: Trainer, config: TrainRunConfig, save: Callable[[nn.Module, Path], Path],
                     filename: str, progress: bool = True, resume: bool = True, desc: str = "train",
                     identity: Mapping[str, Any] | None = None, sidecar: Mapping[str, Any] | None = None) -> TrainResult:
    """Run :func:`~styleaxis.embed.training.fit` (resume, checkpoints, previews), then write the network with
    ``save(model, out_dir / filename)`` and record its sha256 and sidecar (step, ``sidecar``, config, losses,
    the loss network's identity plus ``identity``)."""
    out = Path(config.out_dir)
    who = {"encoder": config.encoder, "encoder_sha256": resolve_weights(config.encoder)[1], **(identity or {})}
    summary = fit(trainer, config, out, who, progress=progress, resume=resume, resumable=RESUMABLE_CHANGES, desc=desc)
    path = save(trainer.model, out / filename)
    digest = export_model(path, {"step": trainer.step, **(sidecar or {}), "config": asdict(config), **summary})
    return TrainResult(path, digest, trainer.step, torch.tensor(trainer.history))


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


def train_johnson(config: JohnsonTrainConfig, progress: bool = True, resume: bool = True) -> TrainResult:
    """Train (or resume training) a network for ``config.style``; returns ``out_dir/johnson.pth`` and the
    loss history (columns total, content, style, tv)."""
    meta = {"style": Path(config.style).stem, "encoder": config.encoder}
    return train_and_export(_JohnsonTrainer(config), config, lambda m, p: save_network(m, p, JOHNSON_FORMAT, meta),
                            "johnson.pth", progress, resume, desc="train johnson")


def johnson_stylizer(config: StylizeConfig, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ``johnson`` builder of :mod:`.stylize`: the network file ``config.model`` (required)."""
    if not config.model:
        raise ValueError("johnson needs a network file (--model), made by `styleaxis train johnson`")
    return load_johnson(config.model).to(device)
