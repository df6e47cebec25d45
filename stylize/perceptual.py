"""What the feed-forward stylisation networks share: the perceptual loss of Johnson et al. 2016 and the
training run around it.

:class:`PerceptualLoss` holds the Gram targets of one or several styles and scores a batch of outputs
against their inputs and the style each sample was asked for; Johnson networks, N-style CIN networks and
StyleBank train with it. :class:`TrainRunConfig` holds the settings every training run has (run folder,
crops, Adam, checkpoints, previews, seed, device) and :class:`PerceptualTrainConfig` adds the loss's;
:func:`~styleaxis.embed.training.train_and_export` (every trainer's, imported here for these networks) runs
the loop and writes the network with its sha256.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from styleaxis.embed.functional import gram
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.training import RESUMABLE_CHANGES, TrainResult, load_rgb, to_tensor, train_and_export
from styleaxis.embed.vgg import VGGEncoder

from .losses import content_loss, gram_style_loss, total_variation

__all__ = ["PERCEPTUAL_STYLE_WEIGHTS", "PerceptualLoss", "load_style_image", "RESUMABLE_CHANGES", "TrainRunConfig",
           "PerceptualTrainConfig", "TrainResult", "train_and_export"]

#: Johnson et al.'s style layers, equally weighted (Dumoulin et al. took them over for CIN)
PERCEPTUAL_STYLE_WEIGHTS: dict[str, float] = {"relu1_2": 0.25, "relu2_2": 0.25, "relu3_3": 0.25, "relu4_3": 0.25}


# -- loss
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


# -- train


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
    style_weights: dict[str, float] = field(default_factory=lambda: dict(PERCEPTUAL_STYLE_WEIGHTS))
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
