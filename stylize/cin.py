"""Conditional instance normalisation networks with N learnt styles (Dumoulin, Shlens & Kudlur 2017,
"A Learned Representation for Artistic Style"), and their training on the user's style images.

:class:`CINNet` is the cin26 architecture (:class:`~styleaxis.embed.magenta.MultiStyleCIN`'s body:
contract, residual blocks, upsampling expand, every conv followed by CIN) with (N, C) gamma/beta tables
for any N. A style is a row of the tables; a weight vector over styles mixes rows (convex combination),
which is how the paper interpolates styles. ``CINNet.from_multistyle`` takes the shipped 26-style
network over unchanged.

Training (:func:`train`) minimises the perceptual loss of Johnson et al. 2016 that Dumoulin et al.
use: a content loss on one VGG tap (``relu3_3``) plus Gram-matrix style losses on ``relu1_2, relu2_2,
relu3_3, relu4_3`` against the sampled style, for random content crops and a random style per sample.
By default the body starts from cin26 and only the new gamma/beta tables are trained: the paper (sec. 4)
shows a trained body takes new styles by learning their CIN parameters alone, which is far cheaper than
training a network from scratch (``init="random"``, ``train_body=True``).

CIN files are ``torch.save`` dicts read with ``weights_only=True``:
``{"format": CIN_FORMAT, "styles": [names], "state_dict": {...}}``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from styleaxis.embed.magenta import MultiStyleCIN
from styleaxis.embed.registry import load_checkpoint, load_model, resolve_weights, save_checkpoint
from styleaxis.embed.training import CropSampler, Trainer, list_images

from .config import Stylizer, StylizeConfig
from .perceptual import PerceptualTrainConfig, TrainResult, train_and_export

__all__ = ["CIN_FORMAT", "CINNet", "save_cin", "load_cin", "style_vector", "stylizer", "CINTrainConfig",
           "style_files", "train"]

CIN_FORMAT = "styleaxis-cin/1"


# -- model
def style_vector(num_styles: int, style_id: int | None = None,
                 weights: list[float] | tuple[float, ...] | None = None) -> torch.Tensor:
    """A (num_styles,) weight vector: one-hot for ``style_id`` or ``weights`` normalised to sum to 1."""
    if (style_id is None) == (weights is None):
        raise ValueError("pass exactly one of style_id or weights")
    if style_id is not None:
        if not 0 <= style_id < num_styles:
            raise ValueError(f"style_id must be in 0..{num_styles - 1}, got {style_id}")
        return F.one_hot(torch.tensor(style_id), num_styles).float()
    w = torch.tensor(list(weights), dtype=torch.float32)
    if w.shape != (num_styles,) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be {num_styles} non-negative numbers with a positive sum, got {list(weights)}")
    return w / w.sum()


class CINNet(nn.Module):
    """Image + weights over N learnt styles -> stylised image (Dumoulin et al. 2017), cin26's architecture.

    Args:
        num_styles: rows of every gamma/beta table.
        styles: a name per style (file stems when trained here).
    """

    def __init__(self, num_styles: int, styles: list[str] | None = None) -> None:
        super().__init__()
        if num_styles < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        self.styles = list(styles) if styles is not None else [f"style{i:02d}" for i in range(num_styles)]
        if len(self.styles) != num_styles:
            raise ValueError(f"{num_styles} styles but {len(self.styles)} names")
        self.net = MultiStyleCIN().net  # the same body as cin26, freshly initialised
        widths = self.net.norm_widths()
        self.gammas = nn.ParameterList(nn.Parameter(torch.ones(num_styles, c)) for c in widths)
        self.betas = nn.ParameterList(nn.Parameter(torch.zeros(num_styles, c)) for c in widths)

    @property
    def num_styles(self) -> int:
        return self.gammas[0].shape[0]

    @classmethod
    def from_multistyle(cls, cin26: MultiStyleCIN, num_styles: int | None = None,
                        styles: list[str] | None = None) -> "CINNet":
        """cin26's body; its 26 styles when ``num_styles`` is None, else ``num_styles`` new rows
        initialised to the mean of cin26's rows (a neutral start for learning new styles)."""
        n = num_styles or cin26.gammas[0].shape[0]
        model = cls(n, styles)
        model.net.load_state_dict(cin26.net.state_dict())
        with torch.no_grad():
            for mine, theirs in zip((*model.gammas, *model.betas), (*cin26.gammas, *cin26.betas)):
                mine.copy_(theirs if num_styles is None else theirs.mean(dim=0).expand_as(mine))
        return model

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        """Image (N, 3, H, W) in 0..1 + weights (S,) or (N, S) -> stylised (N, 3, H, W) in 0..1.

        gamma = weights @ gamma table (likewise beta): one-hot picks a style, a convex combination mixes.
        """
        if style_weights.shape[-1] != self.num_styles or style_weights.ndim not in (1, 2):
            raise ValueError(f"style_weights must be ({self.num_styles},) or (N, {self.num_styles}), "
                             f"got {tuple(style_weights.shape)}")
        weights = style_weights.to(image).expand(image.shape[0], self.num_styles)
        return self.net(image, [weights @ g for g in self.gammas], [weights @ b for b in self.betas])


def save_cin(model: CINNet, path: str | os.PathLike[str]) -> Path:
    """Write a CIN network file atomically (temporary name, then rename)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_checkpoint({"format": CIN_FORMAT, "styles": model.styles, "state_dict": state}, path)


def load_cin(path: str | os.PathLike[str]) -> CINNet:
    """Read a CIN network written by :func:`save_cin` (``weights_only=True``), in eval mode."""
    payload = load_checkpoint(path)
    if not isinstance(payload, dict) or payload.get("format") != CIN_FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not a CIN network file (format {CIN_FORMAT!r} expected, got {got!r})")
    styles = [str(s) for s in payload["styles"]]
    model = CINNet(len(styles), styles)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: the state dict does not fit the CIN architecture: {exc}") from None
    return model.eval()


# -- run
def stylizer(config: StylizeConfig, device: torch.device) -> Stylizer:
    """The ``cin`` method of :mod:`.stylize`: the CIN file ``config.model`` (default the shipped cin26) with
    ``config.style_id`` or ``config.style_weights`` over its styles."""
    model = load_cin(config.model) if config.model else CINNet.from_multistyle(load_model("cin26"))
    model = model.to(device).eval()
    weights = style_vector(model.num_styles, config.style_id,
                           list(config.style_weights) if config.style_weights is not None else None).to(device)
    return lambda batch: model(batch, weights)


# -- train
@dataclass(frozen=True, kw_only=True)
class CINTrainConfig(PerceptualTrainConfig):
    """How to train an N-style CIN network; the run's and the loss's settings are
    :class:`~.perceptual.PerceptualTrainConfig`'s, with Dumoulin et al.'s content tap
    (``relu3_3``) and batch 8 as defaults (paper: batch 16, lr 1e-3, 40k steps).

    Attributes:
        styles: style image files, one style each (a folder contributes each image in it).
        init: ``cin26`` (its body, new rows at the mean of its tables) or ``random``.
        train_body: train the convolutions too, not only the gamma/beta tables.
    """

    styles: tuple[str, ...]
    content_tap: str = "relu3_3"
    batch_size: int = 8
    init: Literal["cin26", "random"] = "cin26"
    train_body: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in ("cin26", "random"):
            raise ValueError(f"CINTrainConfig.init must be 'cin26' or 'random', got {self.init!r}")
        if self.init == "random" and not self.train_body:
            raise ValueError("CINTrainConfig: a random body must be trained (train_body=True)")
        if not self.styles:
            raise ValueError("CINTrainConfig.styles: give at least one style image")


def style_files(styles: tuple[str, ...]) -> list[Path]:
    """The style image files named by ``styles``: files as they are, folders by their images (sorted)."""
    files: list[Path] = []
    for entry in styles:
        p = Path(entry)
        if p.is_dir():
            files += list_images(p)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"style image or folder not found: {p}")
    return files


class _CINTrainer(Trainer):
    """CIN network, Adam, content crop sampler and the styles' Gram targets of one run."""

    def __init__(self, config: CINTrainConfig) -> None:
        super().__init__(config)
        files = style_files(config.styles)
        names = [f.stem for f in files]
        torch.manual_seed(config.seed)
        if config.init == "cin26":
            self.model = CINNet.from_multistyle(load_model("cin26"), len(files), names)
        else:
            self.model = CINNet(len(files), names)
        self.model.to(self.device).train()
        params = list(self.model.parameters()) if config.train_body else \
            [*self.model.gammas, *self.model.betas]
        self.model.net.requires_grad_(config.train_body)
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        self.generators = {"content": torch.Generator().manual_seed(config.seed + 1),
                           "style": torch.Generator().manual_seed(config.seed + 2)}
        self.content = CropSampler(config.content_dir, config.resize, config.crop, self.generators["content"])
        self.loss = config.perceptual_loss(self.encoder, files)
        self.preview_content = CropSampler(config.content_dir, config.resize, config.crop,
                                           torch.Generator().manual_seed(config.seed + 3)).sample(2)

    def losses(self) -> dict[str, torch.Tensor]:
        content = self.content.sample(self.config.batch_size).to(self.device)
        ids = torch.randint(self.model.num_styles, (len(content),), generator=self.generators["style"])
        out = self.model(content, F.one_hot(ids, self.model.num_styles).float().to(self.device))
        return self.loss(out, content, ids)

    def preview(self) -> list[torch.Tensor]:
        content = self.preview_content.to(self.device)
        shown = range(min(self.model.num_styles, 4))
        return [content] + [self.model(content, F.one_hot(torch.tensor(i), self.model.num_styles).float()
                                       .to(self.device)) for i in shown]


def train(config: CINTrainConfig, progress: bool = True, resume: bool = True) -> TrainResult:
    """Train (or resume training) an N-style CIN network; returns the exported ``cin.pth`` and the loss
    history (columns total, content, style, tv)."""
    trainer = _CINTrainer(config)
    identity = {"init_sha256": resolve_weights("cin26")[1]} if config.init == "cin26" else {}
    return train_and_export(trainer, config, save_cin, "cin.pth", progress, resume, desc="train cin",
                            identity=identity, sidecar={"styles": trainer.model.styles})
