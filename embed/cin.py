"""Conditional instance normalisation networks with N learnt styles (Dumoulin, Shlens & Kudlur 2017,
"A Learned Representation for Artistic Style"), and their training on the user's style images.

:class:`CINNet` is the cin26 architecture (:class:`~styleaxis.embed.magenta.MultiStyleCIN`'s body:
contract, residual blocks, upsampling expand, every conv followed by CIN) with (N, C) gamma/beta tables
for any N. A style is a row of the tables; a weight vector over styles mixes rows (convex combination),
which is how the paper interpolates styles. ``CINNet.from_multistyle`` takes the shipped 26-style
network over unchanged.

Training (:func:`train_cin`) minimises the perceptual loss of Johnson et al. 2016 that Dumoulin et al.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .functional import gram
from .losses import content_loss, gram_style_loss, total_variation
from .magenta import MultiStyleCIN
from .registry import load_model, resolve_weights
from .training import CropSampler, Trainer, export_model, fit, list_images, load_rgb, to_tensor

__all__ = ["CIN_FORMAT", "CINNet", "save_cin", "load_cin", "style_vector", "CINTrainConfig", "CINTrainResult",
           "train_cin"]

CIN_FORMAT = "styleaxis-cin/1"


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"format": CIN_FORMAT, "styles": model.styles, "state_dict": state}, tmp)
    os.replace(tmp, path)
    return path


def load_cin(path: str | os.PathLike[str]) -> CINNet:
    """Read a CIN network written by :func:`save_cin` (``weights_only=True``), in eval mode."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
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


#: Johnson et al. 2016's style taps, as Dumoulin et al. use them (VGG-16 conv1..conv4 block outputs)
CIN_STYLE_WEIGHTS: dict[str, float] = {"relu1_2": 0.25, "relu2_2": 0.25, "relu3_3": 0.25, "relu4_3": 0.25}
#: config fields a resumed run may change
_RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "preview_every", "device"})


@dataclass(frozen=True)
class CINTrainConfig:
    """How to train an N-style CIN network.

    Attributes:
        styles: style image files, one style each (a folder contributes each image in it).
        content_dir: folder of content images (searched recursively).
        out_dir: run folder: checkpoints/, previews/, cin.pth, cin.json, losses.json.
        encoder: registry name of the VGG defining the losses.
        content_tap / style_weights: the loss taps and per-tap weights (Johnson et al. 2016).
        content_weight / style_weight / tv_weight: weights of the three loss terms.
        resize / crop: content images' short side, then random square crops (paper: 256 crops).
        style_size: short side the style images are resized to before their Gram matrices.
        batch_size / lr / steps: Adam settings (paper: batch 16, lr 1e-3, 40k steps).
        init: ``cin26`` (its body, new rows at the mean of its tables) or ``random``.
        train_body: train the convolutions too, not only the gamma/beta tables.
        checkpoint_every / preview_every / seed / device: as in AdaIN training.
    """

    styles: tuple[str, ...]
    content_dir: str
    out_dir: str
    encoder: str = "vgg16-hed"
    content_tap: str = "relu3_3"
    style_weights: dict[str, float] = field(default_factory=lambda: dict(CIN_STYLE_WEIGHTS))
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0
    resize: int = 512
    crop: int = 256
    style_size: int = 256
    batch_size: int = 8
    lr: float = 1e-3
    steps: int = 40_000
    init: Literal["cin26", "random"] = "cin26"
    train_body: bool = False
    checkpoint_every: int = 1000
    preview_every: int = 500
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.init not in ("cin26", "random"):
            raise ValueError(f"CINTrainConfig.init must be 'cin26' or 'random', got {self.init!r}")
        if self.init == "random" and not self.train_body:
            raise ValueError("CINTrainConfig: a random body must be trained (train_body=True)")
        if not self.styles:
            raise ValueError("CINTrainConfig.styles: give at least one style image")


@dataclass(frozen=True)
class CINTrainResult:
    """The exported network file, its sha256, the last step and the loss history
    (columns total, content, style, tv)."""

    model_path: Path
    sha256: str
    step: int
    history: torch.Tensor


def _style_files(styles: tuple[str, ...]) -> list[Path]:
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
        files = _style_files(config.styles)
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
        taps = tuple(config.style_weights)
        with torch.no_grad():
            per_style = [self.encoder(self._style_image(f), taps) for f in files]
        self.grams = {t: torch.cat([gram(feats[t]) for feats in per_style]) for t in taps}
        self.preview_content = CropSampler(config.content_dir, config.resize, config.crop,
                                           torch.Generator().manual_seed(config.seed + 3)).sample(2)

    def _style_image(self, path: Path) -> torch.Tensor:
        image = load_rgb(path)
        scale = self.config.style_size / min(image.size)
        image = image.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))))
        return to_tensor(image).to(self.device)

    def losses(self) -> dict[str, torch.Tensor]:
        c = self.config
        content = self.content.sample(c.batch_size).to(self.device)
        ids = torch.randint(self.model.num_styles, (c.batch_size,), generator=self.generators["style"])
        out = self.model(content, F.one_hot(ids, self.model.num_styles).float().to(self.device))
        taps = tuple(dict.fromkeys((c.content_tap, *c.style_weights)))
        feats = self.encoder(out, taps)
        with torch.no_grad():
            target = self.encoder(content, (c.content_tap,))[c.content_tap]
        loss_c = content_loss(feats[c.content_tap], target)
        loss_s = gram_style_loss(feats, {t: g[ids.to(g.device)] for t, g in self.grams.items()}, c.style_weights)
        loss_tv = total_variation(out)
        total = c.content_weight * loss_c + c.style_weight * loss_s + c.tv_weight * loss_tv
        return {"total": total, "content": loss_c, "style": loss_s, "tv": loss_tv}

    def preview(self) -> list[torch.Tensor]:
        content = self.preview_content.to(self.device)
        shown = range(min(self.model.num_styles, 4))
        return [content] + [self.model(content, F.one_hot(torch.tensor(i), self.model.num_styles).float()
                                       .to(self.device)) for i in shown]


def train_cin(config: CINTrainConfig, progress: bool = True, resume: bool = True) -> CINTrainResult:
    """Train (or resume training) an N-style CIN network; returns the exported ``cin.pth`` and losses."""
    out = Path(config.out_dir)
    trainer = _CINTrainer(config)
    identity = {"encoder": config.encoder, "encoder_sha256": resolve_weights(config.encoder)[1]}
    if config.init == "cin26":
        identity["init_sha256"] = resolve_weights("cin26")[1]
    summary = fit(trainer, config, out, identity, progress=progress, resume=resume,
                  resumable=_RESUMABLE_CHANGES, desc="train cin")
    path = save_cin(trainer.model, out / "cin.pth")
    digest = export_model(path, {"step": trainer.step, "styles": trainer.model.styles,
                                 "config": asdict(config), **summary})
    return CINTrainResult(path, digest, trainer.step, torch.tensor(trainer.history).reshape(-1, 4))
