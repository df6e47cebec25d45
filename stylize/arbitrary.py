"""Arbitrary stylisation (Ghiasi, Lee, Kudlur, Dumoulin & Shlens 2017, "Exploring the structure of a real-time,
arbitrary neural artistic stylization network"): a style predictor maps the style image to a 100-d bottleneck,
from which a CIN transformer network takes its gamma/beta parameters.

Both networks are Magenta's trained models, loaded from their ONNX files (:mod:`styleaxis.embed.magenta`);
nothing here is trained. ``alpha`` < 1 moves the bottleneck toward the content image's own (paper sec. 5).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from styleaxis.embed.functional import luminance_transfer, match_color
from styleaxis.embed.registry import load_model

from .config import Stylizer, StylizeConfig, as_batch

__all__ = ["PREDICTOR_SIZE", "predictor_input", "stylizer"]

#: side of the square the style predictor was trained on (Ghiasi et al. 2017, sec. 4: 256 x 256 style images)
PREDICTOR_SIZE = 256


# -- run
def predictor_input(batch: torch.Tensor) -> torch.Tensor:
    """Centre square crop resized to 256 x 256, the predictor's training input."""
    h, w = batch.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = batch[..., top: top + side, left: left + side]
    return F.interpolate(square, size=(PREDICTOR_SIZE, PREDICTOR_SIZE), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


def stylizer(config: StylizeConfig, device: torch.device) -> Stylizer:
    """The ``arbitrary`` method of :mod:`.stylize`: ``config.styles[0]`` through the predictor, ``config.alpha``
    and ``config.preserve_color``."""
    predictor = load_model("magenta-predictor").to(device)
    transformer = load_model("magenta-transformer").to(device)
    style = predictor_input(as_batch(config.styles[0])).to(device)
    with torch.inference_mode():
        style_bottleneck = predictor(style)

    def run(batch: torch.Tensor) -> torch.Tensor:
        if config.preserve_color == "histogram":  # the style's colours matched to each content image
            bottleneck = predictor(match_color(style.expand(batch.shape[0], -1, -1, -1), batch))
        else:
            bottleneck = style_bottleneck.expand(batch.shape[0], -1)
        if config.alpha < 1.0:  # Ghiasi et al. 2017, sec. 5: toward the content image's own bottleneck
            bottleneck = config.alpha * bottleneck + (1.0 - config.alpha) * predictor(predictor_input(batch))
        out = transformer(batch, bottleneck)
        return luminance_transfer(out, batch) if config.preserve_color == "luminance" else out

    return run
