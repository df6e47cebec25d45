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
Optimisers: L-BFGS (as in the paper) or Adam; start from the content image or from noise.
The encoder is any registered VGG (``vgg16-hed`` offline, ``vgg19`` when its weights are present).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from tqdm import tqdm

from .functional import gram
from .losses import content_loss, gram_style_loss, total_variation
from .registry import load_model
from .vgg import VGGEncoder

__all__ = ["GatysConfig", "GatysResult", "gatys", "GATYS_STYLE_WEIGHTS"]

#: the paper's style layers, equally weighted (seed 002: conv1_1..conv5_1, 0.2 each)
GATYS_STYLE_WEIGHTS: dict[str, float] = {f"relu{b}_1": 0.2 for b in range(1, 6)}


@dataclass(frozen=True)
class GatysConfig:
    """Settings of one optimisation.

    Attributes:
        encoder: registry name of the VGG whose taps define the losses.
        content_tap: layer whose activations must match the content image's.
        style_weights: style tap -> weight w_l.
        content_weight / style_weight / tv_weight: alpha, beta and the TV weight of the total loss.
            The style weight suits ``vgg16-hed``'s Caffe-scale activations at 128-512 px.
        optimizer: ``lbfgs`` (the paper's) or ``adam``.
        steps: optimiser iterations (for L-BFGS, outer steps of ``lbfgs_inner`` evaluations each).
        lr: step size; ``None`` picks 1.0 for L-BFGS (its initial step length) and 0.02 for Adam
            (pixels are in 0..1).
        lbfgs_inner: loss evaluations per L-BFGS step.
        init: start from the ``content`` image or from uniform ``noise``.
        seed: seeds the noise start.
        device: ``cpu`` or ``cuda``.
    """

    encoder: str = "vgg16-hed"
    content_tap: str = "relu4_2"
    style_weights: dict[str, float] = field(default_factory=lambda: dict(GATYS_STYLE_WEIGHTS))
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    steps: int = 50
    lr: float | None = None
    lbfgs_inner: int = 10
    init: Literal["content", "noise"] = "content"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"GatysConfig.optimizer must be 'lbfgs' or 'adam', got {self.optimizer!r}")
        if self.init not in ("content", "noise"):
            raise ValueError(f"GatysConfig.init must be 'content' or 'noise', got {self.init!r}")
        if self.steps < 1 or not self.style_weights:
            raise ValueError("GatysConfig needs steps >= 1 and at least one style tap")


@dataclass(frozen=True)
class GatysResult:
    """The optimised image (N, 3, H, W) in 0..1 and the loss curve: one row per loss evaluation with
    columns total, content, style, tv (unweighted terms except the total)."""

    image: torch.Tensor
    history: torch.Tensor


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
    if config.init == "content":
        start = content.clone(memory_format=torch.contiguous_format)
    else:
        start = torch.rand(content.shape, generator=torch.Generator().manual_seed(config.seed)).to(device)
    # optimise an unconstrained variable; pixels are its clamp to 0..1 in every evaluation
    x = start.requires_grad_(True)
    history: list[list[float]] = []
    taps = tuple(dict.fromkeys((config.content_tap, *style_taps)))

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        image = x.clamp(0, 1)
        feats = enc(image, taps)
        loss_c = content_loss(feats[config.content_tap], content_target.expand_as(feats[config.content_tap]))
        loss_s = gram_style_loss(feats, grams, config.style_weights)
        loss_tv = total_variation(image)
        loss = config.content_weight * loss_c + config.style_weight * loss_s + config.tv_weight * loss_tv
        loss.backward()
        history.append([float(loss.detach()), float(loss_c.detach()), float(loss_s.detach()), float(loss_tv.detach())])
        return loss

    if config.optimizer == "lbfgs":
        optimizer = torch.optim.LBFGS([x], lr=config.lr or 1.0, max_iter=config.lbfgs_inner, history_size=50,
                                      line_search_fn="strong_wolfe")
    else:
        optimizer = torch.optim.Adam([x], lr=config.lr or 0.02)
    bar = tqdm(range(config.steps), disable=not progress, desc=f"gatys ({config.optimizer})", unit="step")
    for _ in bar:
        optimizer.step(closure)
        bar.set_postfix(loss=f"{history[-1][0]:.4g}")
    return GatysResult(x.detach().clamp(0, 1), torch.tensor(history, dtype=torch.float64))
