"""One Python API over the stylisation methods.

``stylize("adain", content, style=...)`` stylises one image; :func:`make_stylizer` builds the method
once (networks loaded, style encoded) and returns a function from image batches to stylised batches,
which is what video stylisation (:mod:`styleaxis.pipelines.stylize_video`) calls frame batch by batch.

| method | what | style given as | alpha |
| --- | --- | --- | --- |
| ``gatys`` | pixel optimisation (Gatys et al. 2016), :mod:`.gatys` | one image | scales the style weight |
| ``adain`` | encoder -> AdaIN -> decoder (Huang & Belongie 2017), :mod:`.adain` | images (weights or masks) | AdaIN target toward the content's features |
| ``cin`` | N-style CIN network (Dumoulin et al. 2017), cin26 or a trained file | ``style_id`` or weights | not defined (mix styles instead) |
| ``arbitrary`` | style predictor + CIN transformer (Ghiasi et al. 2017) | one image | bottleneck toward the content's own |
| ``johnson`` | feed-forward network of one style (Johnson et al. 2016), :mod:`.johnson`, ``model`` file | (trained in) | not defined |
| ``stylebank`` | auto-encoder + one filter bank per style (Chen et al. 2017), :mod:`.stylebank`, ``model`` file | ``style_id`` or weights | not defined (mix banks instead) |
| ``swap`` | patch swap at relu3_1 (Chen & Schmidt 2016), :mod:`.style_swap`; inverse net ``model`` or optimisation | one image | swapped features toward the content's |
| ``mrf`` | CNNMRF optimisation (Li & Wand 2016), :mod:`.mrf` | one image | scales the MRF weight |
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .adain import load_adain
from .cin import CINNet, load_cin, style_vector
from .functional import luminance_transfer, match_color
from .gatys import GatysConfig, gatys
from .johnson import johnson_stylizer
from .mrf import MRFConfig, mrf_stylizer
from .registry import load_model
from .style_swap import StyleSwapConfig, swap_stylizer
from .stylebank import stylebank_stylizer
from .training import load_rgb, to_tensor

__all__ = ["METHODS", "ImageInput", "StylizeConfig", "as_batch", "make_stylizer", "stylize", "PREDICTOR_SIZE"]

METHODS: tuple[str, ...] = ("gatys", "adain", "cin", "arbitrary", "johnson", "stylebank", "swap", "mrf")
#: methods that apply styles learnt into a network file, and those that take one style image
_LEARNT: tuple[str, ...] = ("cin", "johnson", "stylebank")
_ONE_IMAGE: tuple[str, ...] = ("gatys", "arbitrary", "swap", "mrf")
#: side of the square the style predictor was trained on (Ghiasi et al. 2017; WEIGHTS.md)
PREDICTOR_SIZE = 256
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]
Stylizer = Callable[[torch.Tensor], torch.Tensor]


def as_batch(image: ImageInput) -> torch.Tensor:
    """A path, PIL image, HxWx3 uint8 array, (3, H, W) or (N, 3, H, W) float tensor in 0..1 -> (N, 3, H, W)."""
    if isinstance(image, (str, os.PathLike)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"image not found: {image}")
        return to_tensor(load_rgb(image))
    if isinstance(image, Image.Image):
        return to_tensor(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        return to_tensor(image)
    if isinstance(image, torch.Tensor):
        batch = image[None] if image.dim() == 3 else image
        if batch.dim() != 4 or batch.shape[1] != 3 or not batch.is_floating_point():
            raise ValueError(f"expected a float (3, H, W) or (N, 3, H, W) tensor in 0..1, got "
                             f"{batch.dtype} {tuple(image.shape)}")
        return batch.float()
    raise TypeError(f"cannot read an image from {type(image).__name__}")


@dataclass(frozen=True)
class StylizeConfig:
    """What to stylise with; see the module table for which fields each method reads.

    Attributes:
        method: one of :data:`METHODS`.
        styles: style images (adain takes several; gatys, arbitrary, swap and mrf one).
        style_id: the learnt style to apply (cin26: 0..25; stylebank: a bank).
        style_weights: cin and stylebank: weights over the network's styles; adain: weights over ``styles``.
        alpha: content-style trade-off in [0, 1] (1 = full style).
        model: cin: a CIN file from ``train_cin`` (default cin26); adain: a decoder file (default the
            shipped ``adain-decoder``); johnson, stylebank: the trained network (required); swap: an
            inverse network from ``train_inverse`` (default: decode by optimisation).
        masks: adain spatial control, one mask per style image (white = that style).
        preserve_color: adain and arbitrary: ``luminance`` or ``histogram``; others: None.
        style_size: short side the style images are resized to (arbitrary: the predictor's 256 square).
        gatys: settings of the Gatys optimisation.
        swap: settings of style swap (tap, patch size, the decoding optimisation).
        mrf: settings of the CNNMRF optimisation.
        device: ``cpu`` or ``cuda``.
    """

    method: str
    styles: tuple[ImageInput, ...] = ()
    style_id: int | None = None
    style_weights: tuple[float, ...] | None = None
    alpha: float = 1.0
    model: str | None = None
    masks: tuple[ImageInput, ...] = ()
    preserve_color: Literal["luminance", "histogram"] | None = None
    style_size: int = 512
    gatys: GatysConfig = field(default_factory=GatysConfig)
    swap: StyleSwapConfig = field(default_factory=StyleSwapConfig)
    mrf: MRFConfig = field(default_factory=MRFConfig)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.method not in _LEARNT and not self.styles:
            raise ValueError(f"{self.method} needs a style image")
        if self.method in _ONE_IMAGE and len(self.styles) > 1:
            raise ValueError(f"{self.method} takes one style image, got {len(self.styles)}")
        if self.method in _LEARNT:
            if self.styles:
                raise ValueError(f"{self.method} applies styles learnt into its network: give style_id or "
                                 f"style_weights (cin, stylebank), not a style image (train one with "
                                 f"`styleaxis train {self.method}`)")
            if self.alpha != 1.0:
                raise ValueError(f"alpha is not defined for {self.method}; mix styles with style_weights instead")
        if self.masks and self.method != "adain":
            raise ValueError("masks (spatial control) are an adain option")
        if self.preserve_color is not None and self.method not in ("adain", "arbitrary"):
            raise ValueError("preserve_color is an adain and arbitrary option")


def _resize_short(batch: torch.Tensor, short: int) -> torch.Tensor:
    h, w = batch.shape[-2:]
    scale = short / min(h, w)
    return F.interpolate(batch, size=(max(8, round(h * scale)), max(8, round(w * scale))),
                         mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _predictor_input(batch: torch.Tensor) -> torch.Tensor:
    """Centre square crop resized to 256 x 256, the predictor's training input."""
    h, w = batch.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = batch[..., top: top + side, left: left + side]
    return F.interpolate(square, size=(PREDICTOR_SIZE, PREDICTOR_SIZE), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


def _adain(config: StylizeConfig, device: torch.device) -> Stylizer:
    model = load_adain(config.model).to(device)
    styles = [_resize_short(as_batch(s), config.style_size).to(device) for s in config.styles]
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


def _cin(config: StylizeConfig, device: torch.device) -> Stylizer:
    model = load_cin(config.model) if config.model else CINNet.from_multistyle(load_model("cin26"))
    model = model.to(device).eval()
    weights = style_vector(model.num_styles, config.style_id,
                           list(config.style_weights) if config.style_weights is not None else None).to(device)
    return lambda batch: model(batch, weights)


def _arbitrary(config: StylizeConfig, device: torch.device) -> Stylizer:
    predictor = load_model("magenta-predictor").to(device)
    transformer = load_model("magenta-transformer").to(device)
    style = _predictor_input(as_batch(config.styles[0])).to(device)
    with torch.inference_mode():
        style_bottleneck = predictor(style)

    def run(batch: torch.Tensor) -> torch.Tensor:
        if config.preserve_color == "histogram":  # the style's colours matched to each content image
            bottleneck = predictor(match_color(style.expand(batch.shape[0], -1, -1, -1), batch))
        else:
            bottleneck = style_bottleneck.expand(batch.shape[0], -1)
        if config.alpha < 1.0:  # Ghiasi et al. 2017, sec. 5: toward the content image's own bottleneck
            bottleneck = config.alpha * bottleneck + (1.0 - config.alpha) * predictor(_predictor_input(batch))
        out = transformer(batch, bottleneck)
        return luminance_transfer(out, batch) if config.preserve_color == "luminance" else out

    return run


def _gatys(config: StylizeConfig, device: torch.device) -> Stylizer:
    encoder = load_model(config.gatys.encoder).to(device)
    style = _resize_short(as_batch(config.styles[0]), config.style_size).to(device)
    settings = replace(config.gatys, style_weight=config.gatys.style_weight * config.alpha, device=str(device))
    return lambda batch: gatys(batch, style, settings, encoder=encoder, progress=False).image


_BUILDERS: dict[str, Callable[[StylizeConfig, torch.device], Stylizer]] = {
    "gatys": _gatys, "adain": _adain, "cin": _cin, "arbitrary": _arbitrary,
    "johnson": johnson_stylizer, "stylebank": stylebank_stylizer, "swap": swap_stylizer, "mrf": mrf_stylizer,
}
#: methods that optimise pixels and so need gradients through the encoder
_OPTIMISING: tuple[str, ...] = ("gatys", "mrf")


def make_stylizer(config: StylizeConfig) -> Stylizer:
    """Load the method's networks and encode the style once; returns ``f(batch) -> stylised batch``
    for (N, 3, H, W) RGB in 0..1 (any H, W >= 8), run without gradients except for the optimising methods
    (gatys, mrf, and swap without an inverse network)."""
    device = torch.device(config.device)
    run = _BUILDERS[config.method](config, device)
    if config.method in _OPTIMISING or (config.method == "swap" and not config.model):
        return lambda batch: run(batch.to(device)).clamp(0, 1)

    def infer(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return run(batch.to(device)).clamp(0, 1)

    return infer


def stylize(method: str, content: ImageInput, style: ImageInput | Sequence[ImageInput] | None = None,
            style_id: int | None = None, alpha: float = 1.0, **options) -> torch.Tensor:
    """Stylise ``content`` (path, PIL image, array or tensor) by ``method``; returns (N, 3, H, W) in 0..1.

    ``style`` is one style image or a list of them; other :class:`StylizeConfig` fields pass as keywords
    (``style_weights``, ``model``, ``masks``, ``preserve_color``, ``style_size``, ``gatys``, ``swap``, ``mrf``,
    ``device``).
    """
    if style is None:
        styles: tuple[ImageInput, ...] = ()
    elif isinstance(style, (list, tuple)):
        styles = tuple(style)
    else:
        styles = (style,)
    config = StylizeConfig(method=method, styles=styles, style_id=style_id, alpha=alpha, **options)
    return make_stylizer(config)(as_batch(content))
