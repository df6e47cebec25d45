"""Descriptors: how each output column is computed from one encoder's taps.

One encoder pass feeds every descriptor that uses that encoder (the Embedder groups them), so
adding a descriptor on an encoder already in use costs no extra forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .functional import calc_mean_std, grid_pool, instance_norm, l2_normalize

__all__ = ["Descriptor", "DESCRIPTORS", "get_descriptor", "STYLE_TAPS"]

#: AdaIN's style taps (Huang & Belongie 2017): the first ReLU of each of the first four VGG blocks.
STYLE_TAPS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


@dataclass(frozen=True)
class Descriptor:
    """A named output column: which encoder, which taps, how many dims and how it is computed."""

    name: str
    model: str
    taps: tuple[str, ...]
    dim: int
    compute: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    summary: str


def _style_in(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    # [mu(relu1_1), sigma(relu1_1), ..., mu(relu4_1), sigma(relu4_1)]: the statistics AdaIN transfers.
    parts = []
    for name in STYLE_TAPS:
        mean, std = calc_mean_std(taps[name])
        parts += [mean, std]
    return torch.cat(parts, dim=1)


def _content(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    # Instance-normalise the high-level map (removes the per-channel statistics a style sets),
    # keep a 4x4 spatial layout (styles do not move objects), then L2-normalise. Chosen among
    # taps, grids and pooling variants by 1-NN content accuracy across styles (bench/RESULTS.md).
    return l2_normalize(grid_pool(instance_norm(taps["stage5"]), 4))


def _bottleneck(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    return taps["bottleneck"]


DESCRIPTORS: dict[str, Descriptor] = {
    d.name: d
    for d in (
        Descriptor(
            "style_in", "vgg16-hed", STYLE_TAPS, 2 * (64 + 128 + 256 + 512), _style_in,
            "IN mean/std of VGG16 relu1_1..relu4_1 (AdaIN statistics)",
        ),
        Descriptor(
            "style_cin", "magenta-predictor", ("bottleneck",), 100, _bottleneck,
            "style predictor bottleneck (Ghiasi et al. 2017); CIN gamma/beta are an affine map of it",
        ),
        Descriptor(
            "content", "effnet-lite0", ("stage5",), 112 * 16, _content,
            "EfficientNet-Lite0 stage 5 (stride 16), instance-normalised, 4x4 grid-pooled, L2-normalised",
        ),
    )
}


def get_descriptor(name: str) -> Descriptor:
    """The descriptor called ``name``, with the known names as a hint when it is unknown."""
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise KeyError(f"unknown descriptor {name!r}; known: {', '.join(DESCRIPTORS)}") from None
