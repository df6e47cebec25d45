"""Pure tensor functions shared by descriptors, losses and models.

Each function documents its formula and the paper it comes from.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["calc_mean_std", "instance_norm", "l2_normalize", "grid_pool"]

#: epsilon added to the variance before the square root, as in AdaIN (Huang & Belongie 2017).
ADAIN_EPS = 1e-5


def calc_mean_std(feat: torch.Tensor, eps: float = ADAIN_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std over space: the statistics AdaIN swaps.

    mu_c = mean_{h,w} x_{c,h,w};  sigma_c = sqrt(var_{h,w} x_{c,h,w} + eps)  (population variance),
    as in Huang & Belongie 2017, eq. 5-6. Returns two tensors of shape (N, C).
    """
    if feat.dim() != 4:
        raise ValueError(f"calc_mean_std expects (N, C, H, W), got shape {tuple(feat.shape)}")
    flat = feat.flatten(2)
    mean = flat.mean(dim=2)
    std = (flat.var(dim=2, unbiased=False) + eps).sqrt()
    return mean, std


def instance_norm(feat: torch.Tensor, eps: float = ADAIN_EPS) -> torch.Tensor:
    """Normalise each channel of each sample to zero mean and unit std over space.

    This removes exactly the statistics that carry style (Ulyanov et al. 2016; Huang & Belongie
    2017), which is why content features are instance-normalised before pooling.
    """
    mean, std = calc_mean_std(feat, eps)
    return (feat - mean[..., None, None]) / std[..., None, None]


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """x / max(||x||_2, eps) along ``dim``."""
    return F.normalize(x, p=2.0, dim=dim, eps=eps)


def grid_pool(feat: torch.Tensor, grid: int) -> torch.Tensor:
    """Average-pool a feature map into a ``grid`` x ``grid`` layout and flatten it to (N, C*grid*grid).

    Keeping a coarse layout makes the vector carry *where* things are, which styles do not change.
    """
    return F.adaptive_avg_pool2d(feat, grid).flatten(1)
