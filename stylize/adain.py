"""AdaIN style transfer (Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time with Adaptive
Instance Normalization"): encoder -> AdaIN -> decoder.

The encoder is a fixed VGG up to ``relu4_1`` (the offline ``vgg16-hed`` or ``vgg19``, by registry name);
AdaIN gives the content features the per-channel mean and std of the style features; the decoder,
the encoder's mirror image (pooling -> nearest 2x upsampling, reflection padding, no normalisation
layers, as in the paper), maps them back to pixels. Only the decoder is trained (:func:`train`).

Controls at test time (paper sec. 7.2-7.3): the content-style trade-off alpha, interpolation between
several styles with weights, spatial control with masks (regional AdaIN), and colour preservation
(luminance transfer or colour matching of the style image, Gatys et al. 2016).

Decoder files are ``torch.save`` dicts read with ``weights_only=True``:
``{"format": DECODER_FORMAT, "encoder": name, "tap": "relu4_1", "state_dict": {...}}``; the decoder's
layers are named after the encoder convolutions they mirror (``convs.conv4_1.weight`` maps 512 -> 256
channels), so the architecture is read from the file.

Training the decoder (:func:`train`; paper sec. 6.2).

Each step: random content and style crops -> fixed encoder -> t = AdaIN(f(c), f(s)) -> decoder g(t)
-> encoder again, and

    L = content_weight * ||f(g(t)) - t||^2  +  style_weight * sum_l (||mu(phi_l(g(t))) - mu(phi_l(s))||^2
                                                                + ||sigma(phi_l(g(t))) - sigma(phi_l(s))||^2)

with the content loss on the AdaIN target t at relu4_1 and the style loss on the IN statistics of
relu1_1 .. relu4_1 (paper eq. 11-13; means instead of sums). The paper's recipe: MS-COCO contents,
WikiArt styles, short side 512 then random 256 crops, batch 8, Adam lr 1e-4, style weight 10; the
authors' code also decays the learning rate as lr / (1 + 5e-5 * step), as here.

Checkpoints (model, optimizer, step, sampler RNG, loss history) are written every
``checkpoint_every`` steps, on Ctrl-C, and at the end; a run started again on the same ``out_dir``
resumes from the latest one and ends bit-identical to an uninterrupted run (same device and thread
count). The result is ``out_dir/decoder.pth`` (see :func:`save_decoder`), with
its sha256 in ``decoder.pth.sha256`` and config, encoder identity and losses in ``decoder.json``;
``losses.json`` holds the loss curve and ``previews/`` the preview grids (content | style | output).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from styleaxis.embed.descriptors import STYLE_TAPS
from styleaxis.embed.functional import adain, calc_mean_std, luminance_transfer, masked_adain, match_color
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import load_checkpoint, load_model, resolve_weights, save_checkpoint
from styleaxis.embed.training import Trainer, content_style_crops, export_model, fit
from styleaxis.embed.vgg import VGGEncoder

from .config import Stylizer, StylizeConfig, as_batch
from .losses import content_loss, in_style_loss
from .perceptual import TrainRunConfig

__all__ = ["DECODER_FORMAT", "ADAIN_TAP", "Decoder", "AdaIN", "load_decoder", "save_decoder", "load_adain", "stylizer",
           "AdaINTrainConfig", "AdaINTrainResult", "train"]

DECODER_FORMAT = "styleaxis-adain-decoder/1"
#: the encoder tap AdaIN works on (Huang & Belongie 2017, sec. 6.1)
ADAIN_TAP = "relu4_1"
ColorMode = Literal["luminance", "histogram"]


# -- model
def _block(conv_name: str) -> int:
    return int(conv_name[4:].split("_")[0])


def _order_key(conv_name: str) -> tuple[int, int]:
    block, index = conv_name[4:].split("_")
    return int(block), int(index)


class Decoder(nn.Module):
    """The mirror image of a VGG encoder up to a tap: 3x3 convs with reflection padding and ReLU,
    nearest 2x upsampling where the encoder pools, and a last conv to RGB without activation.

    Args:
        layers: (mirrored encoder conv name, input channels, output channels), in decoder order.
    """

    def __init__(self, layers: Sequence[tuple[str, int, int]]) -> None:
        super().__init__()
        if not layers or layers[-1][2] != 3:
            raise ValueError(f"a decoder ends with a conv to 3 channels, got layers {list(layers)}")
        self.convs = nn.ModuleDict({name: nn.Conv2d(cin, cout, 3) for name, cin, cout in layers})

    @classmethod
    def mirror(cls, encoder: VGGEncoder, tap: str = ADAIN_TAP) -> "Decoder":
        """A freshly initialised decoder for ``encoder`` cut at ``tap`` (paper sec. 6.1)."""
        if tap not in encoder.tap_names:
            raise KeyError(f"unknown tap {tap!r}; available: {', '.join(encoder.tap_names)}")
        convs = encoder.order[: encoder.tap_names.index(tap) + 1]
        return cls([(n, encoder.convs[n].out_channels, encoder.convs[n].in_channels) for n in reversed(convs)])

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], source: str = "state dict") -> "Decoder":
        """Rebuild the decoder a state dict describes (names and shapes), then load it strictly."""
        names = sorted({k.split(".")[1] for k in state if k.startswith("convs.")}, key=_order_key, reverse=True)
        try:
            layers = [(n, state[f"convs.{n}.weight"].shape[1], state[f"convs.{n}.weight"].shape[0]) for n in names]
        except KeyError as exc:
            raise ValueError(f"{source}: decoder weight {exc.args[0]!r} is missing") from None
        decoder = cls(layers)
        result = decoder.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{source}: not an AdaIN decoder state dict (missing {result.missing_keys}, "
                             f"unexpected {result.unexpected_keys})")
        return decoder

    @property
    def in_channels(self) -> int:
        """Channels of the features the decoder takes."""
        return next(iter(self.convs.values())).in_channels

    @property
    def scale(self) -> int:
        """Output pixels per input feature pixel: 2 per upsampling."""
        return 2 ** (_block(next(iter(self.convs))) - 1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """Features (N, C, h, w) -> RGB (N, 3, h * scale, w * scale), unbounded (clamp for display)."""
        names = list(self.convs)
        x = feat
        for i, name in enumerate(names):
            if i and _block(name) != _block(names[i - 1]):
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.convs[name](F.pad(x, (1, 1, 1, 1), mode="reflect"))
            if i < len(names) - 1:
                x = F.relu(x)
        return x


def save_decoder(decoder: Decoder, path: str | os.PathLike[str], encoder: str, tap: str = ADAIN_TAP,
                 half: bool = False) -> Path:
    """Write a decoder file atomically (temporary name, then rename); fp16 halves its size."""
    state = {k: (v.detach().half() if half else v.detach().float()).cpu().contiguous()
             for k, v in decoder.state_dict().items()}
    return save_checkpoint({"format": DECODER_FORMAT, "encoder": encoder, "tap": tap, "state_dict": state}, path)


def load_decoder(path: str | os.PathLike[str]) -> Decoder:
    """Read a decoder file written by :func:`save_decoder` (``weights_only=True``; nothing is unpickled).

    The returned decoder carries ``encoder`` and ``tap`` attributes naming what it was trained for.
    """
    payload = load_checkpoint(path)
    if not isinstance(payload, dict) or payload.get("format") != DECODER_FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not an AdaIN decoder file (format {DECODER_FORMAT!r} expected, got {got!r})")
    decoder = Decoder.from_state_dict(payload["state_dict"], source=str(path))
    decoder.encoder, decoder.tap = str(payload["encoder"]), str(payload["tap"])
    return decoder.eval()


class AdaIN(nn.Module):
    """Encoder -> AdaIN -> decoder (Huang & Belongie 2017). Images are RGB in 0..1, NCHW.

    Any image size works: the content is reflection-padded to a multiple of the decoder's scale
    and the output cropped back.
    """

    def __init__(self, encoder: VGGEncoder, decoder: Decoder, tap: str = ADAIN_TAP) -> None:
        super().__init__()
        if encoder.channels(tap) != decoder.in_channels:
            raise ValueError(f"the decoder takes {decoder.in_channels} channels but the encoder's {tap} "
                             f"has {encoder.channels(tap)}")
        self.encoder, self.decoder, self.tap = encoder, decoder, tap

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's ``tap`` activations."""
        return self.encoder(images, (self.tap,))[self.tap]

    def style_stats(self, style: torch.Tensor, content: torch.Tensor | None = None,
                    preserve_color: ColorMode | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of a style image's features, (1, C), or (N, C) when its colours are first matched
        to each of N content images (``preserve_color="histogram"``)."""
        if preserve_color == "histogram":
            if content is None:
                raise ValueError("histogram colour preservation needs the content images")
            style = match_color(style.expand(content.shape[0], -1, -1, -1), content)
        return calc_mean_std(self.encode(style))

    def stylize(self, content: torch.Tensor, styles: torch.Tensor | Sequence[torch.Tensor],
                alpha: float = 1.0, weights: Sequence[float] | None = None,
                masks: Sequence[torch.Tensor] | None = None,
                preserve_color: ColorMode | None = None) -> torch.Tensor:
        """Stylise ``content`` (N, 3, H, W) with one or several style images (each (1, 3, h, w)).

        ``preserve_color`` keeps the content's colours: ``"luminance"`` (transfer of the output's
        luminance only) or ``"histogram"`` (the style's colours matched to the content's first).
        The rest is :meth:`transfer` on the style images' statistics.
        """
        styles = [styles] if isinstance(styles, torch.Tensor) else list(styles)
        if preserve_color not in (None, "luminance", "histogram"):
            raise ValueError(f"preserve_color must be None, 'luminance' or 'histogram', got {preserve_color!r}")
        stats = [self.style_stats(style, content, preserve_color) for style in styles]
        return self.transfer(content, stats, alpha, weights, masks, preserve_luminance=preserve_color == "luminance")

    def transfer(self, content: torch.Tensor, stats: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 alpha: float = 1.0, weights: Sequence[float] | None = None,
                 masks: Sequence[torch.Tensor] | None = None, preserve_luminance: bool = False) -> torch.Tensor:
        """Decode ``content`` with given style statistics (from :meth:`style_stats`, computed once per style).

        t = sum_k w_k AdaIN(f(c), s_k) with weights normalised to sum to 1 (style interpolation), or, with
        ``masks`` (one (1 or N, 1, H, W) mask per style, values 0..1), regional AdaIN blended by the masks
        (spatial control); then t <- alpha t + (1 - alpha) f(c) and the output is g(t), clamped to 0..1
        (paper eq. 14-15 and sec. 7.3); ``preserve_luminance`` keeps the content's chroma.
        """
        if not stats:
            raise ValueError("stylize needs at least one style")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if weights is not None and masks is not None:
            raise ValueError("pass style weights (interpolation) or masks (spatial control), not both")
        for given, what in ((weights, "weights"), (masks, "masks")):
            if given is not None and len(given) != len(stats):
                raise ValueError(f"{len(stats)} style images but {len(given)} {what}")
        height, width = content.shape[-2:]
        s = self.decoder.scale
        feat = self.encode(F.pad(content, (0, -width % s, 0, -height % s), mode="reflect"))
        if masks is not None:
            target = torch.zeros_like(feat)
            for mask, (mean, std) in zip(masks, stats):
                small = F.interpolate(F.pad(mask.to(feat), (0, -width % s, 0, -height % s), mode="replicate"),
                                      size=feat.shape[-2:], mode="area")
                target = target + small * masked_adain(feat, small, mean, std)
        else:
            w = torch.tensor(weights if weights is not None else [1.0] * len(stats), dtype=feat.dtype)
            if bool((w < 0).any()) or float(w.sum()) <= 0:
                raise ValueError(f"style weights must be non-negative with a positive sum, got {list(w.tolist())}")
            w = w / w.sum()
            target = sum(float(wk) * adain(feat, mean, std) for wk, (mean, std) in zip(w, stats))
        target = alpha * target + (1.0 - alpha) * feat
        out = self.decoder(target)[..., :height, :width].clamp(0, 1)
        return luminance_transfer(out, content) if preserve_luminance else out


def load_adain(decoder: str | os.PathLike[str] | None = None, encoder: str | None = None) -> AdaIN:
    """An AdaIN model in eval mode: the shipped ``adain-decoder`` (registry, sha256-checked) or a decoder
    file, with the encoder it was trained for (``encoder`` must agree when given)."""
    if decoder is None:
        dec = load_model("adain-decoder")
    else:
        dec = load_decoder(decoder)
    if encoder is not None and encoder != dec.encoder:
        raise ValueError(f"the decoder {decoder or 'adain-decoder'} was trained for encoder {dec.encoder!r}, "
                         f"not {encoder!r}")
    return AdaIN(load_model(dec.encoder), dec, dec.tap).eval()


# -- run
def stylizer(config: StylizeConfig, device: torch.device) -> Stylizer:
    """The ``adain`` method of :mod:`.stylize`: the decoder ``config.model`` (default the shipped one), the
    style images at ``config.style_size`` with ``config.style_weights`` or ``config.masks``, ``config.alpha``
    and ``config.preserve_color``."""
    model = load_adain(config.model).to(device)
    styles = [resize_short_side(as_batch(s), config.style_size).to(device) for s in config.styles]
    masks = [as_batch(m).mean(dim=1, keepdim=True) for m in config.masks] or None
    histogram = config.preserve_color == "histogram"
    if not histogram:  # the style statistics do not depend on the content: encode the styles once
        with torch.inference_mode():
            stats = [model.style_stats(s) for s in styles]

    def run(batch: torch.Tensor) -> torch.Tensor:
        fitted = None if masks is None else [
            F.interpolate(m, size=batch.shape[-2:], mode="bilinear", align_corners=False).to(device) for m in masks]
        if histogram:
            return model.stylize(batch, styles, config.alpha, config.style_weights, fitted, "histogram")
        return model.transfer(batch, stats, config.alpha, config.style_weights, fitted,
                              preserve_luminance=config.preserve_color == "luminance")

    return run


# -- train
#: config fields a resumed run may change; any other difference from the checkpoint is refused
_RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "preview_every", "device", "half"})


@dataclass(frozen=True, kw_only=True)
class AdaINTrainConfig(TrainRunConfig):
    """How to train an AdaIN decoder; the run's settings are
    :class:`~.perceptual.TrainRunConfig`'s, with the paper's recipe as defaults (batch 8,
    Adam lr 1e-4, 160k steps of 256 crops from images resized to 512).

    Attributes:
        style_dir: folder of style images (searched recursively); crops are taken as from the content.
        lr_decay: the learning rate is decayed as lr / (1 + lr_decay * step).
        content_weight / style_weight: loss weights (paper: 1 and 10, for VGG19 ``vgg_normalised``, whose
            activations are rescaled to mean ~1). ``vgg16-hed`` keeps Caffe-scale activations (mean relu1_1
            ~17, relu4_1 ~5 on photos), which makes the style term far larger for the same weight: the
            shipped decoder used 0.1, where content and style terms start comparable.
        half: store the exported decoder.pth in fp16 (half the size; checkpoints stay fp32).
    """

    style_dir: str
    batch_size: int = 8
    lr: float = 1e-4
    lr_decay: float = 5e-5
    content_weight: float = 1.0
    style_weight: float = 10.0
    steps: int = 160_000
    half: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop % 8:
            raise ValueError(f"AdaINTrainConfig.crop must be a multiple of 8 (the decoder's scale), got {self.crop}")


@dataclass(frozen=True)
class AdaINTrainResult:
    """What a training run produced: the decoder file, its sha256, and the loss history
    (one row per step: total, content, style)."""

    decoder_path: Path
    sha256: str
    step: int
    history: torch.Tensor


class _AdaINTrainer(Trainer):
    """Decoder, Adam with the paper's decay, and the two crop samplers of one run."""

    def __init__(self, config: AdaINTrainConfig) -> None:
        super().__init__(config)
        torch.manual_seed(config.seed)
        self.model = Decoder.mirror(self.encoder, ADAIN_TAP).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: 1.0 / (1.0 + config.lr_decay * step))
        self.generators, self.content, self.style, self.preview_pair = content_style_crops(
            config.content_dir, config.style_dir, config.resize, config.crop, config.seed)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoder output and the two loss terms for one batch (paper eq. 11-13)."""
        with torch.no_grad():
            feat = self.encoder(content, (ADAIN_TAP,))[ADAIN_TAP]
            style_feats = self.encoder(style, STYLE_TAPS)
            targets = {t: calc_mean_std(style_feats[t]) for t in STYLE_TAPS}
            target = adain(feat, *targets[ADAIN_TAP])
        out = self.model(target)
        out_feats = self.encoder(out, STYLE_TAPS)
        return {"output": out, "content": content_loss(out_feats[ADAIN_TAP], target),
                "style": in_style_loss(out_feats, targets, {t: 1.0 for t in STYLE_TAPS})}

    def losses(self) -> dict[str, torch.Tensor]:
        c = self.config
        terms = self.forward(self.content.sample(c.batch_size).to(self.device),
                             self.style.sample(c.batch_size).to(self.device))
        total = c.content_weight * terms["content"] + c.style_weight * terms["style"]
        return {"total": total, "content": terms["content"], "style": terms["style"]}

    def preview(self) -> list[torch.Tensor]:
        content, style = (x.to(self.device) for x in self.preview_pair)
        return [content, style, self.forward(content, style)["output"]]


def train(config: AdaINTrainConfig, progress: bool = True, resume: bool = True) -> AdaINTrainResult:
    """Train (or resume training) an AdaIN decoder; returns the exported decoder file and loss history."""
    out = Path(config.out_dir)
    trainer = _AdaINTrainer(config)
    _, encoder_sha = resolve_weights(config.encoder)
    summary = fit(trainer, config, out, {"encoder": config.encoder, "encoder_sha256": encoder_sha},
                  progress=progress, resume=resume, resumable=_RESUMABLE_CHANGES, desc="train adain")
    path = save_decoder(trainer.model, out / "decoder.pth", config.encoder, ADAIN_TAP, half=config.half)
    digest = export_model(path, {"step": trainer.step, "config": asdict(config), **summary})
    return AdaINTrainResult(path, digest, trainer.step, torch.tensor(trainer.history).reshape(-1, 3))
