"""Perceptual losses of neural style transfer, as pure functions of encoder activations.

Every loss takes activations (or targets computed from activations once) and returns a scalar, so
Gatys optimisation, AdaIN training and CIN training share them and one encoder pass feeds all.
Reductions are means, not the papers' sums: the same weights then work at every image size.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from styleaxis.embed.functional import calc_mean_std, gram

__all__ = ["content_loss", "gram_style_loss", "in_style_loss", "in_stats_distance", "total_variation"]


def content_loss(feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between activations: Gatys et al. 2016 eq. 1 (sum / 2 there, mean here).

    In AdaIN training the target is the AdaIN output t, not the content's features (Huang & Belongie
    2017, eq. 12), which the paper found to converge faster.
    """
    if feat.shape != target.shape:
        raise ValueError(f"content_loss: features {tuple(feat.shape)} and target {tuple(target.shape)} differ")
    return F.mse_loss(feat, target)


def _check_taps(feats: Mapping[str, torch.Tensor], targets: Mapping[str, object], weights: Mapping[str, float]) -> None:
    missing = [t for t in weights if t not in feats or t not in targets]
    if missing:
        raise KeyError(f"style taps {missing} are weighted but missing from the features or targets "
                       f"(features: {sorted(feats)}, targets: {sorted(targets)})")


def gram_style_loss(feats: Mapping[str, torch.Tensor], target_grams: Mapping[str, torch.Tensor],
                    weights: Mapping[str, float]) -> torch.Tensor:
    """sum_l w_l * mean((G_l(x) - A_l)^2): Gatys et al. 2016 eq. 4-5 with size-normalised Gram matrices.

    ``target_grams[l]`` is :func:`~styleaxis.embed.functional.gram` of the style image's tap l,
    shape (1, C, C) or (N, C, C).
    """
    _check_taps(feats, target_grams, weights)
    return sum(w * F.mse_loss(gram(feats[t]), target_grams[t].expand(feats[t].shape[0], -1, -1))
               for t, w in weights.items())


def in_style_loss(feats: Mapping[str, torch.Tensor],
                  target_stats: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                  weights: Mapping[str, float]) -> torch.Tensor:
    """sum_l w_l (||mu(phi_l(x)) - mu_l||_2^2 + ||sigma(phi_l(x)) - sigma_l||_2^2) / C_l.

    AdaIN's style loss (Huang & Belongie 2017, eq. 13) on instance-norm statistics, averaged over
    channels and the batch (the paper sums). ``target_stats[l]`` is (mean, std), each (N, C) or (1, C).
    """
    _check_taps(feats, target_stats, weights)
    total = 0.0
    for tap, w in weights.items():
        mean, std = calc_mean_std(feats[tap])
        t_mean, t_std = target_stats[tap]
        total = total + w * (F.mse_loss(mean, t_mean.expand_as(mean)) + F.mse_loss(std, t_std.expand_as(std)))
    return total


def in_stats_distance(feats: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor],
                      taps: tuple[str, ...]) -> torch.Tensor:
    """Per-sample style distance: sum over taps of the RMS difference of IN mean and std, shape (N,).

    How far apart two images' AdaIN statistics are; used to check that stylisation moves an image's
    statistics toward the style's (``other`` may hold one image, broadcast over the batch).
    """
    out = 0.0
    for tap in taps:
        (m1, s1), (m2, s2) = calc_mean_std(feats[tap]), calc_mean_std(other[tap])
        out = out + ((m1 - m2) ** 2).mean(dim=1).sqrt() + ((s1 - s2) ** 2).mean(dim=1).sqrt()
    return out


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation mean(|x[i+1,j] - x[i,j]|) + mean(|x[i,j+1] - x[i,j]|).

    A smoothness prior against high-frequency artefacts of pixel optimisation (Mahendran & Vedaldi
    2015; Johnson et al. 2016).
    """
    if image.dim() != 4:
        raise ValueError(f"total_variation expects (N, C, H, W), got shape {tuple(image.shape)}")
    dh = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    dw = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    return dh + dw
