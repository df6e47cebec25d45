"""SSIM, the structural similarity index of Wang et al. (2004), batched in torch.

For images x, y and a Gaussian window w (11 x 11, sigma 1.5, normalised to sum 1), at every pixel

    mu_x = w * x,  sigma_x^2 = w * x^2 - mu_x^2,  sigma_xy = w * (x y) - mu_x mu_y   (population moments)
    SSIM = (2 mu_x mu_y + C1) (2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2))

with C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03 and L the data range (1 for images in 0..1).
The image's SSIM is the mean of that map over the pixels whose window lies wholly inside the image
(a border of (win_size - 1) / 2 pixels is left out), and over channels for RGB. This is exactly what
``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=L, channel_axis=-1)`` computes (it filters the whole image,
then crops that border before averaging); a "valid" convolution gives the cropped map directly.

Reference: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error
visibility to structural similarity", IEEE Trans. Image Processing 13(4), 2004.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .io import Color, ImageLike, load_image, to_color

__all__ = ["SSIMConfig", "gaussian_window", "ssim_map", "ssim_batch", "ssim"]


@dataclass(frozen=True)
class SSIMConfig:
    """SSIM constants, defaults as Wang et al. 2004.

    Attributes:
        win_size: side of the Gaussian window (odd).
        sigma: its standard deviation in pixels.
        k1 / k2: stabilising constants; C1 = (k1 * data_range)^2, C2 = (k2 * data_range)^2.
        data_range: max - min of the pixel scale (1.0 for images in 0..1).
    """

    win_size: int = 11
    sigma: float = 1.5
    k1: float = 0.01
    k2: float = 0.03
    data_range: float = 1.0

    def __post_init__(self) -> None:
        if self.win_size < 3 or self.win_size % 2 == 0:
            raise ValueError(f"win_size must be an odd number >= 3, got {self.win_size}")
        if self.sigma <= 0 or self.data_range <= 0:
            raise ValueError(f"sigma and data_range must be > 0, got {self.sigma} and {self.data_range}")


def gaussian_window(win_size: int, sigma: float, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """1-D Gaussian exp(-x^2 / (2 sigma^2)), x = -(win_size-1)/2 .. (win_size-1)/2, normalised to sum 1.

    The 2-D window is its outer product (separable), as in scipy's ``gaussian_filter``.
    """
    x = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim_map(x: torch.Tensor, y: torch.Tensor, config: SSIMConfig = SSIMConfig()) -> torch.Tensor:
    """Per-pixel SSIM of two (N, C, H, W) batches -> (N, C, H - win + 1, W - win + 1).

    Only pixels whose whole window lies inside the image are returned (the border skimage crops).
    Computed in the inputs' dtype on their device; pass float64 for bit-level agreement with skimage.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < config.win_size:
        raise ValueError(f"images must be at least {config.win_size} px on each side, got {tuple(x.shape[-2:])}")
    n, c = x.shape[:2]
    g = gaussian_window(config.win_size, config.sigma, x.dtype, x.device)
    # filter x, y, x^2, y^2, xy in one grouped, separable, valid convolution
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    groups = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    mu_x, mu_y, xx, yy, xy = stack.split(c, dim=1)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1 = (config.k1 * config.data_range) ** 2
    c2 = (config.k2 * config.data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def ssim_batch(x: torch.Tensor, y: torch.Tensor, config: SSIMConfig = SSIMConfig()) -> torch.Tensor:
    """SSIM of each pair in two (N, C, H, W) batches -> (N,): the map's mean over pixels and channels."""
    return ssim_map(x, y, config).mean(dim=(1, 2, 3))


def ssim(a: ImageLike, b: ImageLike, color: Color = "rgb", config: SSIMConfig = SSIMConfig()) -> float:
    """SSIM of two images of one size (tensors, arrays, PIL images or paths) as a float.

    ``color="rgb"`` averages the three channels' SSIM (a grey image counts as three equal channels);
    ``color="grey"`` compares BT.709 luma. Computed in float64, on the device of a tensor input.
    """
    x, y = (to_color(load_image(im), color).double() for im in (a, b))
    if x.shape != y.shape:
        raise ValueError(f"ssim needs images of one size, got {tuple(x.shape[-2:])} and {tuple(y.shape[-2:])}")
    return float(ssim_batch(x[None], y.to(x.device)[None], config)[0])
