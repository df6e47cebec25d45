"""Descriptors: how each output column is computed from one encoder's taps.

One encoder pass feeds every descriptor that uses that encoder (the Embedder groups them), so
adding a descriptor on an encoder already in use costs no extra forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .functional import calc_mean_std, l2_normalize, symmetric_grid_pool, whiten
from .content_head import CONTENT_GRID, CONTENT_HEAD_MODEL, HEAD_TAP, content_head_vector
from .style_head import STYLE_HEAD_MODEL, STYLE_HEAD_TAPS, style_head_vector

__all__ = [
    "Descriptor", "DESCRIPTORS", "get_descriptor", "STYLE_TAPS", "VGG_DESCRIPTORS", "CONTENT_WHITEN_EPS",
    "STYLE_EFF_TAPS",
]

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
    #: other models whose weights the vector depends on (they join the vector's identity)
    extra_models: tuple[str, ...] = ()


def _style_in(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    # [mu(relu1_1), sigma(relu1_1), ..., mu(relu4_1), sigma(relu4_1)]: the statistics AdaIN transfers.
    parts = []
    for name in STYLE_TAPS:
        mean, std = calc_mean_std(taps[name])
        parts += [mean, std]
    return torch.cat(parts, dim=1)


#: shrinkage of the content descriptor's whitening (see :func:`whiten`): 0.3 matched or beat 0.01-0.1 on
#: every catalogue split at 128 and 256 px (bench/RESULTS.md) and keeps small maps (thumbnails, few
#: positions per channel) from being whitened into noise
CONTENT_WHITEN_EPS = 0.3


def _content(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    # Whiten the stage-5 map (WCT: removes the per-channel statistics and correlations a style sets),
    # keep a coarse 4x4 layout made mirror-symmetric (styles do not move objects; a flipped or mildly
    # cropped copy must stay close), then L2-normalise. Chosen in bench/disentangle.py on the labelled
    # catalogues: on the hard split (crops, flips) SCDS-P@10 0.946 vs 0.773 for the former IN + 4x4 grid.
    return l2_normalize(symmetric_grid_pool(whiten(taps["stage5"], CONTENT_WHITEN_EPS), CONTENT_GRID))


#: the EfficientNet-Lite0 stages whose channel means make ``style_eff`` (40 + 80 + 112 channels)
STYLE_EFF_TAPS: tuple[str, ...] = ("stage3", "stage4", "stage5")


def _style_eff(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    # IN means (the mu of AdaIN) of three EfficientNet-Lite0 stages. Raw, they mix the photo's own
    # colours and textures with the rendering; the index makes them content-relative (embed/relative.py),
    # which is what bench/disentangle.py found to separate mild colour grades and the unstylised look.
    # The sigmas added nothing there, and L2-normalising each stage first cost 0.01 on the unseen split.
    return torch.cat([taps[name].mean(dim=(2, 3)) for name in STYLE_EFF_TAPS], dim=1)


#: channels each style tap is projected to before its Gram matrix (see _style_gram)
GRAM_PROJECTION = 32
_GRAM_SEED = 20170411


def _gram_projection(channels: int, tap_index: int, device: torch.device) -> torch.Tensor:
    # fixed, seeded Gaussian projection C -> GRAM_PROJECTION, scaled to keep magnitudes
    g = torch.Generator().manual_seed(_GRAM_SEED + tap_index)
    return (torch.randn(channels, GRAM_PROJECTION, generator=g) / channels**0.5).to(device)


def _style_gram(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    # Gatys et al. 2016 describe style by Gram matrices G = F F^T / (HW) of the style taps. Full Grams
    # of relu1_1..relu4_1 have ~175k distinct entries; projecting each tap's channels with a fixed
    # seeded random matrix P (C x 32) first gives G' = P^T G P, whose 528 upper-triangle entries per
    # tap keep the Gram geometry (Johnson-Lindenstrauss). Each tap block is L2-normalised, so no tap
    # dominates by magnitude.
    parts = []
    upper = torch.triu_indices(GRAM_PROJECTION, GRAM_PROJECTION)
    for i, name in enumerate(STYLE_TAPS):
        feat = taps[name].float()
        n, c, h, w = feat.shape
        proj = torch.einsum("nchw,ck->nkhw", feat, _gram_projection(c, i, feat.device)).flatten(2)
        gram = proj @ proj.transpose(1, 2) / (h * w)
        parts.append(l2_normalize(gram[:, upper[0], upper[1]]))
    return torch.cat(parts, dim=1) / len(parts) ** 0.5


def _bottleneck(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    return taps["bottleneck"]


def _cin_params(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    return taps["cin_params"]


DESCRIPTORS: dict[str, Descriptor] = {
    d.name: d
    for d in (
        Descriptor(
            "style_in", "vgg16-hed", STYLE_TAPS, 2 * (64 + 128 + 256 + 512), _style_in,
            "IN mean/std of VGG16 relu1_1..relu4_1 (AdaIN statistics)",
        ),
        Descriptor(
            "style_gram", "vgg16-hed", STYLE_TAPS, 4 * GRAM_PROJECTION * (GRAM_PROJECTION + 1) // 2, _style_gram,
            "Gram matrices of VGG16 relu1_1..relu4_1 after a fixed random 32-channel projection (Gatys)",
        ),
        Descriptor(
            "style_cin_params", "magenta-transformer", ("cin_params",), 694, _cin_params,
            "the CIN gamma/beta (694) the transformer's StyleNorm layers make from the predictor bottleneck",
            extra_models=("magenta-predictor",),
        ),
        Descriptor(
            "style_cin", "magenta-predictor", ("bottleneck",), 100, _bottleneck,
            "style predictor bottleneck (Ghiasi et al. 2017); CIN gamma/beta are an affine map of it",
        ),
        Descriptor(
            "content", "effnet-lite0", ("stage5",), 112 * CONTENT_GRID * ((CONTENT_GRID + 1) // 2), _content,
            "EfficientNet-Lite0 stage 5 (stride 16), WCT-whitened, 4x4 grid pooled mirror-symmetric (4x2), "
            "L2-normalised",
        ),
        Descriptor(
            "content_head", "effnet-lite0", (HEAD_TAP,), 112 * CONTENT_GRID * ((CONTENT_GRID + 1) // 2),
            content_head_vector,
            "content descriptor + a residual head trained on unseen-look families (SupCon; embed/content_head.py)",
            extra_models=(CONTENT_HEAD_MODEL,),
        ),
        Descriptor(
            "style_head", "effnet-lite0", STYLE_HEAD_TAPS, 128, style_head_vector,
            "learned style embedding: IN mean/std and Gram statistics of EfficientNet-Lite0 input..stage 5 "
            "through a head trained on unseen-look families (SupCon; embed/style_head.py)",
            extra_models=(STYLE_HEAD_MODEL,),
        ),
        Descriptor(
            "style_eff", "effnet-lite0", STYLE_EFF_TAPS, 40 + 80 + 112, _style_eff,
            "IN channel means of EfficientNet-Lite0 stages 3-5; the style axis default, made "
            "content-relative by the index (embed/relative.py)",
        ),
    )
}


#: descriptors computed on a VGG encoder: EmbedConfig.style_encoder picks which VGG (same taps, same dims)
VGG_DESCRIPTORS = frozenset(name for name, d in DESCRIPTORS.items() if d.model == "vgg16-hed")


def get_descriptor(name: str) -> Descriptor:
    """The descriptor called ``name``, with the known names as a hint when it is unknown."""
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise KeyError(f"unknown descriptor {name!r}; known: {', '.join(DESCRIPTORS)}") from None
