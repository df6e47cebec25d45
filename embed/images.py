"""Image geometry every stage shares: the one resize-to-short-side policy.

The Embedder, the stylisation methods, the training crops and the labelled catalogues all resize by
:func:`resize_short_side`, so an image resized in one place has the size and pixels it has in another.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resize_short_side"]


def resize_short_side(img: torch.Tensor, side: int, center_crop: bool = False) -> torch.Tensor:
    """Resize a (3, H, W) image or (N, 3, H, W) batch so min(H, W) == ``side``; optionally centre-crop a square.

    Antialiased bilinear interpolation (``align_corners=False``), the result clamped to 0..1; an image
    already at that size is returned as it is (clamped), which equals what interpolating it would give.
    """
    h, w = img.shape[-2:]
    scale = side / min(h, w)
    nh, nw = max(side, round(h * scale)), max(side, round(w * scale))
    if (nh, nw) != (h, w):
        batch = img if img.dim() == 4 else img[None]
        resized = F.interpolate(batch, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        img = resized if img.dim() == 4 else resized[0]
    if center_crop:
        top, left = (nh - side) // 2, (nw - side) // 2
        img = img[..., top : top + side, left : left + side]
    return img.clamp(0.0, 1.0)
