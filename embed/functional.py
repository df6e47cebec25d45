"""Pure tensor functions shared by descriptors, losses and models.

Each function documents its formula and the paper it comes from.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "calc_mean_std", "instance_norm", "l2_normalize",
    "gram", "adain", "masked_mean_std", "masked_adain", "rgb_to_yiq", "yiq_to_rgb", "luminance_transfer",
    "match_color", "whiten", "symmetric_grid_pool",
]

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


def gram(feat: torch.Tensor) -> torch.Tensor:
    """Gram matrix of a feature map, normalised by its size: G_ij = sum_k F_ik F_jk / (C H W).

    F is the (C, H*W) matrix of one sample's activations (Gatys et al. 2016, eq. 3). Dividing by
    C*H*W (rather than Gatys's 1 / (4 N^2 M^2) in the loss) keeps the scale independent of image
    size, so one style weight works at every resolution. Returns (N, C, C).
    """
    if feat.dim() != 4:
        raise ValueError(f"gram expects (N, C, H, W), got shape {tuple(feat.shape)}")
    n, c, h, w = feat.shape
    flat = feat.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
          eps: float = ADAIN_EPS) -> torch.Tensor:
    """Adaptive instance normalisation (Huang & Belongie 2017, eq. 8).

    AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y): the content features x get the
    per-channel mean and std of the style features y. ``style_mean``/``style_std`` are (N, C) or
    (1, C) (one style for the whole batch), as :func:`calc_mean_std` returns them.
    """
    if style_mean.shape != style_std.shape or style_mean.shape[-1] != content.shape[1]:
        raise ValueError(f"style statistics of shape {tuple(style_mean.shape)} / {tuple(style_std.shape)} "
                         f"do not fit content features of shape {tuple(content.shape)}")
    return instance_norm(content, eps) * style_std[..., None, None] + style_mean[..., None, None]


def masked_mean_std(feat: torch.Tensor, mask: torch.Tensor,
                    eps: float = ADAIN_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``feat`` (N, C, H, W) over the pixels where ``mask`` (N, 1, H, W) > 0.5.

    The statistics of one region, as regional AdaIN needs them (Huang & Belongie 2017, sec. 7.3).
    A mask that selects nothing raises ValueError.
    """
    weight = (mask > 0.5).to(feat.dtype)
    count = weight.sum(dim=(2, 3))
    if bool((count == 0).any()):
        raise ValueError("a mask selects no pixel of the feature map; masks must cover some of the image")
    mean = (feat * weight).sum(dim=(2, 3)) / count
    var = (((feat - mean[..., None, None]) ** 2) * weight).sum(dim=(2, 3)) / count
    return mean, (var + eps).sqrt()


def masked_adain(content: torch.Tensor, mask: torch.Tensor, style_mean: torch.Tensor,
                 style_std: torch.Tensor, eps: float = ADAIN_EPS) -> torch.Tensor:
    """AdaIN of one region: content features normalised by the region's own statistics, then given the
    style's (Huang & Belongie 2017, sec. 7.3, spatial control). Values outside the mask are meaningless;
    the caller blends regions with their masks."""
    mean, std = masked_mean_std(content, mask, eps)
    return (content - mean[..., None, None]) / std[..., None, None] * style_std[..., None, None] \
        + style_mean[..., None, None]


# NTSC YIQ (FCC 1953 coefficients): Y is luminance, I and Q carry colour.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]])


def rgb_to_yiq(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W) -> YIQ, a linear map; channel 0 is the luminance Y."""
    return torch.einsum("oc,nchw->nohw", _RGB_TO_YIQ.to(rgb), rgb)


def yiq_to_rgb(yiq: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_yiq`."""
    return torch.einsum("oc,nchw->nohw", torch.linalg.inv(_RGB_TO_YIQ.double()).to(yiq), yiq)


def luminance_transfer(stylised: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Keep the content's colours: the stylised image's luminance Y with the content's chroma I, Q.

    "Luminance-only transfer" of Gatys et al. 2016 ("Preserving color in neural artistic style
    transfer"), applied after stylisation; the paper also matches the luminance histograms first, which
    a stylisation network makes unnecessary. Images in RGB 0..1, same shape; the result is clamped to 0..1.
    """
    if stylised.shape != content.shape:
        raise ValueError(f"stylised {tuple(stylised.shape)} and content {tuple(content.shape)} differ in shape")
    y = rgb_to_yiq(stylised)[:, :1]
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 1)


def match_color(source: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give ``source`` the colour mean and covariance of ``target`` (per sample, RGB (N, 3, H, W)).

    x' = C_t^{1/2} C_s^{-1/2} (x - mu_s) + mu_t with symmetric matrix square roots: the linear
    colour-histogram matching of Gatys et al. 2016 ("Preserving color...", sec. 2.2, image analogies
    variant). Used on the style image before stylisation so the result keeps the content's palette.
    Sizes may differ; the result is clamped to 0..1.
    """
    if source.dim() != 4 or target.dim() != 4 or source.shape[:2] != target.shape[:2] or source.shape[1] != 3:
        raise ValueError(f"match_color expects RGB batches (N, 3, H, W) of equal N, got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}")

    def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.double().flatten(2)
        mu = flat.mean(dim=2, keepdim=True)
        centred = flat - mu
        cov = centred @ centred.transpose(1, 2) / flat.shape[2]
        return mu, cov + eps * torch.eye(3, dtype=torch.float64)

    def sqrtm(cov: torch.Tensor, power: float) -> torch.Tensor:
        vals, vecs = torch.linalg.eigh(cov)
        return vecs @ torch.diag_embed(vals.clamp_min(eps) ** power) @ vecs.transpose(1, 2)

    mu_s, cov_s = moments(source)
    mu_t, cov_t = moments(target)
    transform = sqrtm(cov_t, 0.5) @ sqrtm(cov_s, -0.5)
    out = transform @ (source.double().flatten(2) - mu_s) + mu_t
    return out.reshape(source.shape).to(source.dtype).clamp(0, 1)


def whiten(feat: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Whitening of the whitening-and-colouring transform (Li et al. 2017, "Universal Style Transfer
    via Feature Transforms", eq. 2), per sample: Z = E (D + eps * mean(D) I)^(-1/2) E^T (F - mu).

    F is the (C, HW) feature map, E D E^T the eigendecomposition of its channel covariance. Z has
    (almost) identity channel covariance: instance norm removes each channel's mean and std, whitening
    also removes their correlations (the Gram matrix, i.e. the style of Gatys et al.), keeping where
    things are. ``eps`` (relative to the mean eigenvalue) keeps small or flat maps finite. Computed in
    float64; returns the input's dtype.
    """
    n, c, h, w = feat.shape
    flat = feat.double().flatten(2)
    centred = flat - flat.mean(dim=2, keepdim=True)
    cov = centred @ centred.transpose(1, 2) / (h * w)
    vals, vecs = torch.linalg.eigh(cov)
    scale = (vals.clamp_min(0) + eps * vals.mean(dim=1, keepdim=True).clamp_min(1e-12)).rsqrt()
    white = vecs @ torch.diag_embed(scale) @ vecs.transpose(1, 2) @ centred
    return white.reshape(n, c, h, w).to(feat.dtype)


def symmetric_grid_pool(feat: torch.Tensor, grid: int, symmetric: bool = True) -> torch.Tensor:
    """Grid-pool (N, C, H, W) to a ``grid`` x ``grid`` layout; with ``symmetric``, average each cell with
    its left-right mirror and keep the ceil(grid / 2) distinct columns, so a mirrored image gives the same
    vector. Returns (N, C * grid * ceil(grid / 2)) (or C * grid^2 without ``symmetric``)."""
    pooled = F.adaptive_avg_pool2d(feat, grid)
    if symmetric:
        pooled = ((pooled + pooled.flip(-1)) / 2)[..., : (grid + 1) // 2]
    return pooled.flatten(1)
