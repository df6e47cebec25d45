"""Style transfer by optimisation (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using Convolutional
Neural Networks").

The image x itself is optimised to minimise

    L(x) = content_weight * mean((F_c(x) - F_c(p))^2)
         + style_weight * sum_l w_l * mean((G_l(x) - G_l(a))^2)
         + tv_weight * TV(x)

with F_c the content tap (default ``relu4_2``), G_l size-normalised Gram matrices of the style taps
(default ``relu1_1 .. relu5_1``, w_l = 0.2 each, as in the paper) and TV the
optional total-variation prior. The paper names the layers conv4_2 and conv1_1..conv5_1; our encoders
expose the activations after the ReLU, which is what those names denote in the original code.
Means replace the paper's sums (see :mod:`.losses`), so the default weights are ours.
Optimisers: L-BFGS (as in the paper) or Adam; start from the content image or from noise. The loop
(:func:`optimize_pixels`, :class:`~.config.PixelOptimConfig`) is shared with the other optimisation methods
(CNNMRF, style swap's decoding).
The encoder is any registered VGG (``vgg16-hed`` offline, ``vgg19`` when its weights are present).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from tqdm import tqdm

from styleaxis.embed.functional import gram
from styleaxis.embed.registry import load_model
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.vgg import VGGEncoder

from .config import GATYS_STYLE_WEIGHTS, GatysConfig, PixelOptimConfig, Stylizer, StylizeConfig, as_batch
from .losses import content_loss, gram_style_loss, total_variation

__all__ = ["PixelOptimConfig", "optimize_pixels", "GatysConfig", "GatysResult", "gatys", "gatys_objective",
           "GATYS_STYLE_WEIGHTS", "stylizer"]

Objective = Callable[[torch.Tensor], dict[str, torch.Tensor]]


# -- loss
def gatys_objective(encoder: VGGEncoder, content: torch.Tensor, style: torch.Tensor, config: GatysConfig) -> Objective:
    """L(x) = content_weight * content + style_weight * style + tv_weight * TV for images x, the content and
    style targets encoded once; returns the named terms, ``"total"`` first."""
    style_taps = tuple(config.style_weights)
    with torch.no_grad():
        content_target = encoder(content, (config.content_tap,))[config.content_tap]
        grams = {t: gram(f) for t, f in encoder(style, style_taps).items()}
    taps = tuple(dict.fromkeys((config.content_tap, *style_taps)))

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = encoder(image, taps)
        loss_c = content_loss(feats[config.content_tap], content_target.expand_as(feats[config.content_tap]))
        loss_s = gram_style_loss(feats, grams, config.style_weights)
        loss_tv = total_variation(image)
        total = config.content_weight * loss_c + config.style_weight * loss_s + config.tv_weight * loss_tv
        return {"total": total, "content": loss_c, "style": loss_s, "tv": loss_tv}

    return objective


# -- run
@dataclass(frozen=True)
class GatysResult:
    """The optimised image (N, 3, H, W) in 0..1 and the loss curve: one row per loss evaluation with
    columns total, content, style, tv (unweighted terms except the total)."""

    image: torch.Tensor
    history: torch.Tensor


def optimize_pixels(content: torch.Tensor, objective: Objective,
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
    objective = gatys_objective(enc, content, style, config)
    return optimize_pixels(content, objective, config, progress, desc=f"gatys ({config.optimizer})")


def stylizer(config: StylizeConfig, device: torch.device) -> Stylizer:
    """The ``gatys`` method of :mod:`.stylize`: ``config.styles[0]`` at ``config.style_size``, settings from
    ``config.gatys``; ``config.alpha`` scales the style weight."""
    encoder = load_model(config.gatys.encoder).to(device)
    style = resize_short_side(as_batch(config.styles[0]), config.style_size).to(device)
    settings = replace(config.gatys, style_weight=config.gatys.style_weight * config.alpha, device=str(device))
    return lambda batch: gatys(batch, style, settings, encoder=encoder, progress=False).image
