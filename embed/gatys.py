"""Style transfer by optimisation (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using Convolutional
Neural Networks").

The image x itself is optimised to minimise

    L(x) = content_weight * mean((F_c(x) - F_c(p))^2)
         + style_weight * sum_l w_l * mean((G_l(x) - G_l(a))^2)
         + tv_weight * TV(x)

with F_c the content tap (default ``relu4_2``), G_l size-normalised Gram matrices of the style taps
(default ``relu1_1 .. relu5_1``, w_l = 0.2 each, as in the paper and the seed survey 002) and TV the
optional total-variation prior. The paper names the layers conv4_2 and conv1_1..conv5_1; our encoders
expose the activations after the ReLU, which is what those names denote in the original code.
Means replace the paper's sums (see :mod:`styleaxis.embed.losses`), so the default weights are ours.
Optimisers: L-BFGS (as in the paper) or Adam; start from the content image or from noise. The loop
(:func:`optimize_pixels`, :class:`PixelOptimConfig`) is shared with the other optimisation methods
(CNNMRF, style swap's decoding).
The encoder is any registered VGG (``vgg16-hed`` offline, ``vgg19`` when its weights are present).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from tqdm import tqdm

from .functional import gram
from .losses import content_loss, gram_style_loss, total_variation
from .registry import load_model
from .vgg import VGGEncoder

__all__ = ["PixelOptimConfig", "optimize_pixels", "GatysConfig", "GatysResult", "gatys", "GATYS_STYLE_WEIGHTS"]

#: the paper's style layers, equally weighted (seed 002: conv1_1..conv5_1, 0.2 each)
GATYS_STYLE_WEIGHTS: dict[str, float] = {f"relu{b}_1": 0.2 for b in range(1, 6)}


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


@dataclass(frozen=True, kw_only=True)
class GatysConfig(PixelOptimConfig):
    """Settings of one optimisation; the optimiser's are :class:`PixelOptimConfig`'s (default 50 steps).

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


@dataclass(frozen=True)
class GatysResult:
    """The optimised image (N, 3, H, W) in 0..1 and the loss curve: one row per loss evaluation with
    columns total, content, style, tv (unweighted terms except the total)."""

    image: torch.Tensor
    history: torch.Tensor


def optimize_pixels(content: torch.Tensor, objective: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                    config: PixelOptimConfig, progress: bool = True, desc: str = "optimise") -> GatysResult:
    """Minimise ``objective(x.clamp(0, 1))["total"]`` over the pixels x, starting from ``content`` (N, 3, H, W)
    or seeded noise of its shape.

    ``objective`` returns named loss terms, ``"total"`` first. L-BFGS uses the strong Wolfe line search. The
    history has one row per evaluation with the terms in the objective's order.
    """
    if config.init == "content":
        start = content.detach().clone(memory_format=torch.contiguous_format)
    else:
        start = torch.rand(content.shape, generator=torch.Generator().manual_seed(config.seed)).to(content.device)
    x = start.requires_grad_(True)
    history: list[list[float]] = []

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        terms = objective(x.clamp(0, 1))
        terms["total"].backward()
        history.append([float(v.detach()) for v in terms.values()])
        return terms["total"]

    if config.optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS([x], lr=config.lr or 1.0, max_iter=config.lbfgs_inner,
                                                       history_size=50, line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam([x], lr=config.lr or 0.02)
    bar = tqdm(range(config.steps), disable=not progress, desc=desc, unit="step")
    for _ in bar:
        opt.step(closure)
        bar.set_postfix(loss=f"{history[-1][0]:.4g}")
    return GatysResult(x.detach().clamp(0, 1), torch.tensor(history, dtype=torch.float64))


def gatys(content: torch.Tensor, style: torch.Tensor, config: GatysConfig = GatysConfig(),
          encoder: VGGEncoder | None = None, progress: bool = True) -> GatysResult:
    """Stylise ``content`` (N, 3, H, W) with ``style`` (1 or N, 3, h, w) by optimising the pixels.

    ``encoder`` may be passed to reuse a loaded network; otherwise ``config.encoder`` is loaded.
    """
    device = torch.device(config.device)
    enc = (encoder if encoder is not None else load_model(config.encoder)).to(device).requires_grad_(False)
    content, style = content.to(device), style.to(device)
    style_taps = tuple(config.style_weights)
    with torch.no_grad():
        content_target = enc(content, (config.content_tap,))[config.content_tap]
        grams = {t: gram(f) for t, f in enc(style, style_taps).items()}
    taps = tuple(dict.fromkeys((config.content_tap, *style_taps)))

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = enc(image, taps)
        loss_c = content_loss(feats[config.content_tap], content_target.expand_as(feats[config.content_tap]))
        loss_s = gram_style_loss(feats, grams, config.style_weights)
        loss_tv = total_variation(image)
        total = config.content_weight * loss_c + config.style_weight * loss_s + config.tv_weight * loss_tv
        return {"total": total, "content": loss_c, "style": loss_s, "tv": loss_tv}

    return optimize_pixels(content, objective, config, progress, desc=f"gatys ({config.optimizer})")
