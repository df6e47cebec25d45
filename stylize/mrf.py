"""CNNMRF: style transfer by optimisation with a patch-based Markov random field loss (Li & Wand 2016,
"Combining Markov Random Fields and Convolutional Neural Networks for Image Synthesis").

Instead of Gram matrices, the style term compares local neural patches. Every k x k patch Psi_i of the
synthesis' activations Phi_l(x) at an MRF tap l is matched to the style patch with the highest normalised
cross-correlation,

    NN(i) = argmax_j  <Psi_i(Phi_l(x)), Psi_j(Phi_l(x_s))> / (|Psi_i(Phi_l(x))| |Psi_j(Phi_l(x_s))|),

and the squared difference to it is penalised (paper eq. 2; a mean here, a sum there):

    E_s(x) = sum_l w_l mean_i ||Psi_i(Phi_l(x)) - Psi_NN(i)(Phi_l(x_s))||^2.

The matching is recomputed at every loss evaluation and is not differentiated, as in the paper. The image is
optimised for

    L(x) = mrf_weight * E_s(x) + content_weight * mean((Phi_c(x) - Phi_c(x_c))^2) + tv_weight * TV(x)

with L-BFGS (as the paper) or Adam, from the content image or from noise, in the loop of Gatys et al.
(:func:`~.gatys.optimize_pixels`, :class:`~.config.PixelOptimConfig`). Defaults are the paper's layers: MRF taps ``relu3_1`` and ``relu4_1`` with 3x3
patches, content ``relu4_2``; patches are sampled with stride 2 on both images, as in the authors' code
(stride 1 costs four times more: the match is a convolution with one output channel per style patch).
Departures: one resolution (the paper synthesises coarse to fine) and no rotated or scaled copies of the
style patches.

The patch matching (:func:`extract_patches`, :func:`nearest_patches`, :func:`matched_columns`) is shared with
style swap (Chen & Schmidt 2016, :mod:`.style_swap`), which computes the same normalised cross-correlation.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
import torch.nn.functional as F

from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import load_model
from styleaxis.embed.vgg import VGGEncoder

from .config import MRF_WEIGHTS, MRFConfig, Stylizer, StylizeConfig, as_batch
from .gatys import GatysResult, optimize_pixels
from .losses import content_loss, total_variation

__all__ = ["MRF_WEIGHTS", "extract_patches", "nearest_patches", "matched_columns", "mrf_loss",
           "MRFConfig", "mrf", "stylizer"]

#: style patches scored per convolution in :func:`nearest_patches` (bounds memory to chunk x H x W floats)
PATCH_CHUNK = 2048
_NORM_EPS = 1e-8


# -- loss
def extract_patches(feat: torch.Tensor, size: int = 3, stride: int = 1) -> torch.Tensor:
    """All ``size`` x ``size`` patches of one feature map (1, C, H, W), row-major: (P, C, size, size)."""
    if feat.dim() != 4 or feat.shape[0] != 1:
        raise ValueError(f"extract_patches expects one feature map (1, C, H, W), got shape {tuple(feat.shape)}")
    if min(feat.shape[-2:]) < size:
        raise ValueError(f"a {size}x{size} patch does not fit a feature map of {tuple(feat.shape[-2:])}; "
                         "use a larger image")
    columns = F.unfold(feat, size, stride=stride)[0]  # (C * size * size, P)
    return columns.t().reshape(-1, feat.shape[1], size, size)


def nearest_patches(feat: torch.Tensor, patches: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """For every k x k window of ``feat`` (N, C, H, W) taken with ``stride``, the index of the patch in
    ``patches`` (P, C, k, k) with the highest normalised cross-correlation: (N, H', W') int64.

    The window's own norm does not change the argmax, so the score is a convolution of ``feat`` with the
    unit-norm patches (Li & Wand 2016, sec. 3; Chen & Schmidt 2016, sec. 3.1), evaluated
    :data:`PATCH_CHUNK` patches at a time.
    """
    if feat.dim() != 4 or patches.dim() != 4 or feat.shape[1] != patches.shape[1]:
        raise ValueError(f"features {tuple(feat.shape)} and patches {tuple(patches.shape)} do not fit")
    unit = patches / patches.flatten(1).norm(dim=1).clamp_min(_NORM_EPS).view(-1, 1, 1, 1)
    best_score = best_index = None
    for start in range(0, len(unit), PATCH_CHUNK):
        score, index = F.conv2d(feat, unit[start: start + PATCH_CHUNK], stride=stride).max(dim=1)
        index = index + start
        if best_score is None:
            best_score, best_index = score, index
        else:
            better = score > best_score
            best_score, best_index = torch.where(better, score, best_score), torch.where(better, index, best_index)
    return best_index


def matched_columns(patches: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The patches chosen by ``index`` (N, H', W') in ``F.unfold``'s layout: (N, C * k * k, H' * W')."""
    return patches.flatten(1)[index.flatten(1)].transpose(1, 2)


def mrf_loss(feats: Mapping[str, torch.Tensor], style_patches: Mapping[str, torch.Tensor],
             weights: Mapping[str, float], stride: int = 1) -> torch.Tensor:
    """E_s = sum_l w_l mean_i ||Psi_i(Phi_l(x)) - Psi_NN(i)(Phi_l(x_s))||^2 (Li & Wand 2016, eq. 2, means).

    ``style_patches[l]`` is :func:`extract_patches` of the style's tap l; the nearest neighbours are found
    without gradient, so the loss pulls each synthesis patch toward its current match.
    """
    missing = [t for t in weights if t not in feats or t not in style_patches]
    if missing:
        raise KeyError(f"MRF taps {missing} are weighted but missing from the features or style patches")
    total = 0.0
    for tap, w in weights.items():
        feat, patches = feats[tap], style_patches[tap]
        with torch.no_grad():
            index = nearest_patches(feat, patches, stride)
        synth = F.unfold(feat, patches.shape[-1], stride=stride)
        total = total + w * F.mse_loss(synth, matched_columns(patches, index))
    return total


# -- run
def mrf(content: torch.Tensor, style: torch.Tensor, config: MRFConfig = MRFConfig(),
        encoder: VGGEncoder | None = None, progress: bool = True) -> GatysResult:
    """Stylise ``content`` (N, 3, H, W) with ``style`` (1, 3, h, w) by minimising the CNNMRF loss over the
    pixels; the history's columns are total, content, mrf, tv (unweighted terms except the total)."""
    device = torch.device(config.device)
    enc = (encoder if encoder is not None else load_model(config.encoder)).to(device).requires_grad_(False)
    content, style = content.to(device), style.to(device)
    mrf_taps = tuple(config.mrf_weights)
    with torch.no_grad():
        target = enc(content, (config.content_tap,))[config.content_tap]
        patches = {t: extract_patches(f, config.patch_size, config.stride) for t, f in enc(style, mrf_taps).items()}
    taps = tuple(dict.fromkeys((config.content_tap, *mrf_taps)))

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = enc(image, taps)
        loss_c = content_loss(feats[config.content_tap], target)
        loss_m = mrf_loss(feats, patches, config.mrf_weights, config.stride)
        loss_tv = total_variation(image)
        total = config.content_weight * loss_c + config.mrf_weight * loss_m + config.tv_weight * loss_tv
        return {"total": total, "content": loss_c, "mrf": loss_m, "tv": loss_tv}

    return optimize_pixels(content, objective, config, progress, desc=f"mrf ({config.optimizer})")


def stylizer(config: StylizeConfig, device: torch.device) -> Stylizer:
    """The ``mrf`` method of :mod:`.stylize`: ``config.styles[0]`` at ``config.style_size``, settings from
    ``config.mrf``; ``config.alpha`` scales the MRF weight (as it scales Gatys's style weight)."""
    encoder = load_model(config.mrf.encoder).to(device)
    style = resize_short_side(as_batch(config.styles[0]), config.style_size).to(device)
    settings = replace(config.mrf, mrf_weight=config.mrf.mrf_weight * config.alpha, device=str(device))
    return lambda batch: mrf(batch, style, settings, encoder=encoder, progress=False).image
