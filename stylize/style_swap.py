"""Style swap (Chen & Schmidt 2016, "Fast Patch-based Style Transfer of Arbitrary Style").

Phi = VGG activations at ``relu3_1``. Every 3x3 patch of the content's activations is replaced by the style
patch with the highest normalised cross-correlation, and overlapping patches are averaged:

    K = Phi(c) * (phi_j(s) / |phi_j(s)|)_j          (a convolution, one channel per style patch)
    SS(Phi(c), Phi(s)) = (K_onehot *^T phi(s)) / (K_onehot *^T 1)     (argmax one-hot, transposed convolutions)

(paper sec. 3.1). The one-hot transposed convolution is computed here as its equal, ``F.fold`` of the gathered
patches, which needs L x C k^2 floats instead of L x P (L windows, P style patches).

The swapped activations become pixels in one of two ways (paper sec. 3.2 and 4):

- **optimisation**: min_x ||Phi(x) - SS||^2 + tv_weight * TV(x), with L-BFGS from the content image
  (:func:`~.gatys.optimize_pixels`);
- **inverse network** g: trained once, for any style, to minimise E ||Phi(g(z)) - z||^2 + tv_weight * TV(g(z))
  over z = Phi(c), Phi(s) and SS(Phi(c), Phi(s)) of random content and style crops (:func:`train`).
  Its architecture is the AdaIN decoder mirrored from the encoder at ``relu3_1`` (no normalisation layers;
  the paper's has instance norm), stored as an AdaIN decoder file (:func:`~.adain.save_decoder`).

``alpha`` < 1 blends the swapped activations with the content's, alpha SS + (1 - alpha) Phi(c), before decoding.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import load_model
from styleaxis.embed.training import Trainer, content_style_crops
from styleaxis.embed.vgg import VGGEncoder

from .adain import Decoder, load_decoder, save_decoder
from .config import SWAP_TAP, StyleSwapConfig, Stylizer, StylizeConfig, as_batch
from .gatys import GatysResult, optimize_pixels
from .losses import content_loss, total_variation
from .mrf import extract_patches, matched_columns, nearest_patches
from .perceptual import TrainResult, TrainRunConfig, train_and_export

__all__ = ["SWAP_TAP", "style_swap", "StyleSwapConfig", "swap_transfer", "stylizer", "InverseTrainConfig", "train"]


# -- model
def style_swap(content_feat: torch.Tensor, style_feat: torch.Tensor, patch_size: int = 3) -> torch.Tensor:
    """SS(Phi(c), Phi(s)): each k x k window of ``content_feat`` (N, C, H, W) replaced by the style patch of
    ``style_feat`` (1, C, h, w) with the highest normalised cross-correlation, overlaps averaged; (N, C, H, W)."""
    patches = extract_patches(style_feat, patch_size)
    index = nearest_patches(content_feat, patches)
    size = content_feat.shape[-2:]
    summed = F.fold(matched_columns(patches, index), size, patch_size)
    ones = torch.ones(1, 1, *size, dtype=content_feat.dtype, device=content_feat.device)
    counts = F.fold(F.unfold(ones, patch_size), size, patch_size)  # how many windows cover each position
    return summed / counts


# -- run
def swap_transfer(content: torch.Tensor, style: torch.Tensor, config: StyleSwapConfig = StyleSwapConfig(),
                  inverse: Decoder | None = None, alpha: float = 1.0, encoder: VGGEncoder | None = None,
                  progress: bool = True) -> GatysResult:
    """Stylise ``content`` (N, 3, H, W) with ``style`` (1, 3, h, w) by style swap, decoded by ``inverse``
    (a network from :func:`train`) or by optimisation. The history (optimisation only; empty
    otherwise) has columns total, feature, tv."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    device = torch.device(config.device)
    enc = (encoder if encoder is not None else load_model(config.encoder)).to(device).requires_grad_(False)
    content, style = content.to(device), style.to(device)
    height, width = content.shape[-2:]
    if inverse is not None:  # the network gives `scale` pixels per feature: pad, decode, crop back
        if getattr(inverse, "tap", config.tap) != config.tap:
            raise ValueError(f"the inverse network decodes {inverse.tap}, not {config.tap}")
        content = F.pad(content, (0, -width % inverse.scale, 0, -height % inverse.scale), mode="reflect")
    with torch.no_grad():
        content_feat = enc(content, (config.tap,))[config.tap]
        target = style_swap(content_feat, enc(style, (config.tap,))[config.tap], config.patch_size)
        target = alpha * target + (1.0 - alpha) * content_feat
        if inverse is not None:
            return GatysResult(inverse.to(device)(target)[..., :height, :width].clamp(0, 1),
                               torch.zeros(0, 3, dtype=torch.float64))

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        loss_f = content_loss(enc(image, (config.tap,))[config.tap], target)
        loss_tv = total_variation(image)
        return {"total": loss_f + config.tv_weight * loss_tv, "feature": loss_f, "tv": loss_tv}

    return optimize_pixels(content, objective, config, progress, desc="style swap")


def stylizer(config: StylizeConfig, device: torch.device) -> Stylizer:
    """The ``swap`` method of :mod:`.stylize`: ``config.styles[0]`` at ``config.style_size``; decoded by the
    inverse network in ``config.model`` when given, else by optimisation with ``config.swap``;
    ``config.alpha`` blends the swapped activations with the content's."""
    inverse = load_decoder(config.model) if config.model else None
    settings = replace(config.swap, device=str(device))
    if inverse is not None:  # the network fixes the encoder and the layer it inverts
        settings = replace(settings, encoder=inverse.encoder, tap=inverse.tap)
    encoder = load_model(settings.encoder).to(device)
    style = resize_short_side(as_batch(config.styles[0]), config.style_size).to(device)
    return lambda batch: swap_transfer(batch, style, settings, inverse, config.alpha, encoder, progress=False).image


# -- train
@dataclass(frozen=True, kw_only=True)
class InverseTrainConfig(TrainRunConfig):
    """How to train a style-swap inverse network (Chen & Schmidt 2016, sec. 3.2); the run settings are
    :class:`~.perceptual.TrainRunConfig`'s (each content/style pair gives three targets: Phi(c),
    Phi(s) and their swap).

    Attributes:
        style_dir: folder of style images (searched recursively).
        tap / patch_size: the swap layer the network inverts, and the patch side.
        tv_weight: total-variation weight.
    """

    style_dir: str
    tap: str = SWAP_TAP
    patch_size: int = 3
    tv_weight: float = 10.0
    steps: int = 20_000


class _InverseTrainer(Trainer):
    """Inverse network, Adam, and the content and style crop samplers of one run."""

    def __init__(self, config: InverseTrainConfig) -> None:
        super().__init__(config)
        torch.manual_seed(config.seed)
        self.model = Decoder.mirror(self.encoder, config.tap).to(self.device)
        if config.crop % self.model.scale:
            raise ValueError(f"InverseTrainConfig.crop must be a multiple of {self.model.scale}, got {config.crop}")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.generators, self.content, self.style, self.preview_pair = content_style_crops(
            config.content_dir, config.style_dir, config.resize, config.crop, config.seed)

    def _targets(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Phi(c), Phi(s) and the swap of each content crop with its style crop, stacked."""
        tap = self.config.tap
        with torch.no_grad():
            fc, fs = self.encoder(content, (tap,))[tap], self.encoder(style, (tap,))[tap]
            swapped = torch.cat([style_swap(fc[i: i + 1], fs[i: i + 1], self.config.patch_size)
                                 for i in range(len(fc))])
        return torch.cat([fc, fs, swapped])

    def losses(self) -> dict[str, torch.Tensor]:
        c = self.config
        z = self._targets(self.content.sample(c.batch_size).to(self.device),
                          self.style.sample(c.batch_size).to(self.device))
        out = self.model(z)
        loss_f = content_loss(self.encoder(out, (c.tap,))[c.tap], z)
        loss_tv = total_variation(out)
        return {"total": loss_f + c.tv_weight * loss_tv, "feature": loss_f, "tv": loss_tv}

    def preview(self) -> list[torch.Tensor]:
        content, style = (x.to(self.device) for x in self.preview_pair)
        swapped = self.model(self._targets(content, style)[-len(content):])
        return [content, style, swapped.clamp(0, 1)]


def train(config: InverseTrainConfig, progress: bool = True, resume: bool = True) -> TrainResult:
    """Train (or resume training) a style-swap inverse network; returns ``out_dir/inverse.pth`` (an AdaIN
    decoder file for ``config.tap``) and the loss history (columns total, feature, tv)."""
    return train_and_export(_InverseTrainer(config), config, lambda m, p: save_decoder(m, p, config.encoder, config.tap),
                            "inverse.pth", progress, resume, desc="train swap inverse")
