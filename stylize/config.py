"""What to stylise with: :class:`StylizeConfig`, the settings of the optimising methods it carries, and
:func:`as_batch`, which reads any image input.

Every method module imports this one for the config its ``stylizer(config, device)`` reads; the dispatcher
(:mod:`.stylize`) imports the methods. Nothing here imports a method, so the two never form a cycle.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import numpy as np
import torch
from PIL import Image

from styleaxis.embed.training import load_rgb, to_tensor

__all__ = ["METHODS", "ImageInput", "Stylizer", "as_batch", "PixelOptimConfig", "GATYS_STYLE_WEIGHTS", "GatysConfig",
           "MRF_WEIGHTS", "MRFConfig", "SWAP_TAP", "StyleSwapConfig", "StylizeConfig"]

METHODS: tuple[str, ...] = ("gatys", "adain", "cin", "arbitrary", "johnson", "stylebank", "swap", "mrf")
#: methods that apply styles learnt into a network file, and those that take one style image
_LEARNT: tuple[str, ...] = ("cin", "johnson", "stylebank")
_ONE_IMAGE: tuple[str, ...] = ("gatys", "arbitrary", "swap", "mrf")
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]
#: what a method's ``stylizer(config, device)`` returns: (N, 3, H, W) RGB in 0..1 -> stylised batch
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


@dataclass(frozen=True, kw_only=True)
class PixelOptimConfig:
    """How pixels are optimised (keyword-only fields), the loop of Gatys et al. 2016.

    Attributes:
        optimizer: ``lbfgs`` (Gatys's and Li & Wand's) or ``adam``.
        steps: optimiser iterations (for L-BFGS, outer steps of ``lbfgs_inner`` evaluations each).
        lr: step size; ``None`` picks 1.0 for L-BFGS (its initial step length) and 0.02 for Adam (pixels in 0..1).
        lbfgs_inner: loss evaluations per L-BFGS step.
        init: start from the ``content`` image or from uniform ``noise``.
        seed: seeds the noise start.
        device: ``cpu`` or ``cuda``.
    """

    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    steps: int = 30
    lr: float | None = None
    lbfgs_inner: int = 10
    init: Literal["content", "noise"] = "content"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.optimizer not in ("lbfgs", "adam") or self.init not in ("content", "noise"):
            raise ValueError(f"{type(self).__name__}: optimizer must be lbfgs or adam and init content or noise, "
                             f"got {self.optimizer!r} and {self.init!r}")
        if self.steps < 1 or self.lbfgs_inner < 1:
            raise ValueError(f"{type(self).__name__}: steps and lbfgs_inner must be >= 1")


#: Gatys et al. 2016's style layers conv1_1 .. conv5_1 (after their ReLU), equally weighted
GATYS_STYLE_WEIGHTS: dict[str, float] = {f"relu{b}_1": 0.2 for b in range(1, 6)}


@dataclass(frozen=True, kw_only=True)
class GatysConfig(PixelOptimConfig):
    """Settings of one Gatys optimisation (:mod:`.gatys`); the optimiser's are :class:`PixelOptimConfig`'s
    (default 50 steps).

    Attributes:
        encoder: registry name of the VGG whose taps define the losses.
        content_tap: layer whose activations must match the content image's.
        style_weights: style tap -> weight w_l.
        content_weight / style_weight / tv_weight: alpha, beta and the TV weight of the total loss.
            The style weight suits ``vgg16-hed``'s Caffe-scale activations at 128-512 px.
    """

    encoder: str = "vgg16-hed"
    content_tap: str = "relu4_2"
    style_weights: dict[str, float] = field(default_factory=lambda: dict(GATYS_STYLE_WEIGHTS))
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0
    steps: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.style_weights:
            raise ValueError("GatysConfig needs at least one style tap")


#: the paper's MRF layers (Li & Wand 2016, sec. 4), equally weighted
MRF_WEIGHTS: dict[str, float] = {"relu3_1": 1.0, "relu4_1": 1.0}


@dataclass(frozen=True, kw_only=True)
class MRFConfig(PixelOptimConfig):
    """Settings of one CNNMRF optimisation (:mod:`.mrf`); the optimiser's are :class:`PixelOptimConfig`'s.

    Attributes:
        encoder: registry name of the VGG whose taps define the losses.
        content_tap: layer whose activations must match the content image's (paper: relu4_2).
        mrf_weights: MRF tap -> weight w_l (paper: relu3_1, relu4_1).
        patch_size: side k of the neural patches (paper: 3).
        stride: patch sampling stride on the synthesis and the style (authors' code: 2).
        content_weight / mrf_weight / tv_weight: weights of the three loss terms (for ``vgg16-hed``'s
            Caffe-scale activations; the MRF term is a mean over patch entries, like the content term).
    """

    encoder: str = "vgg16-hed"
    content_tap: str = "relu4_2"
    mrf_weights: dict[str, float] = field(default_factory=lambda: dict(MRF_WEIGHTS))
    patch_size: int = 3
    stride: int = 2
    content_weight: float = 1.0
    mrf_weight: float = 1.0
    tv_weight: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patch_size < 1 or self.stride < 1 or not self.mrf_weights:
            raise ValueError("MRFConfig needs patch_size and stride >= 1 and at least one MRF tap")


#: the style swap layer (Chen & Schmidt 2016, sec. 4)
SWAP_TAP = "relu3_1"


@dataclass(frozen=True, kw_only=True)
class StyleSwapConfig(PixelOptimConfig):
    """Settings of style swap (:mod:`.style_swap`); the optimisation decoding's are :class:`PixelOptimConfig`'s
    (unused with an inverse network).

    Attributes:
        encoder: registry name of the VGG (an inverse network file names its own).
        tap / patch_size: the swap layer and patch side (paper: relu3_1, 3).
        tv_weight: total-variation weight of the optimisation decoding (Caffe-scale activations).
    """

    encoder: str = "vgg16-hed"
    tap: str = SWAP_TAP
    patch_size: int = 3
    tv_weight: float = 10.0
    steps: int = 20


@dataclass(frozen=True)
class StylizeConfig:
    """What to stylise with; see :mod:`.stylize`'s table for which fields each method reads.

    Attributes:
        method: one of :data:`METHODS`.
        styles: style images (adain takes several; gatys, arbitrary, swap and mrf one).
        style_id: the learnt style to apply (cin26: 0..25; stylebank: a bank).
        style_weights: cin and stylebank: weights over the network's styles; adain: weights over ``styles``.
        alpha: content-style trade-off in [0, 1] (1 = full style).
        model: cin: a CIN file from ``cin.train`` (default cin26); adain: a decoder file (default the
            shipped ``adain-decoder``); johnson, stylebank: the trained network (required); swap: an
            inverse network from ``style_swap.train`` (default: decode by optimisation).
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
