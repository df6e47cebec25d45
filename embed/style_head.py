"""The learned style embedding: a small head over frozen EfficientNet-Lite0 statistics, and its training.

A frame's style features are, for the input and each early-to-middle stage of EfficientNet-Lite0
(:data:`STYLE_HEAD_TAPS`): the instance-norm mean and log standard deviation of every channel (the
statistics AdaIN transfers) and the Gram matrix of the instance-normalised map after a fixed, seeded
projection to at most :data:`GRAM_CHANNELS` channels (Gatys et al. 2016; the correlations a texture
sets). The head standardises them with statistics fixed at training time, maps them through a
two-layer MLP and L2-normalises: a 128-d vector that depends on this frame and the shipped weights
only, never on the catalogue being indexed.

It is trained (``styleaxis train style-head``) in the spirit of CSD (Somepalli et al. 2024, "Measuring
Style Similarity in Diffusion Models"): a supervised contrastive loss (Khosla et al. 2020) over looks,
where the positives of an item share its look and differ in content, and the batch also holds the same
contents in other looks (hard negatives). The looks are drawn from randomly parameterised families
(styleaxis.eval.looks, role ``train``), so the looks it is evaluated on were never seen in training.
The frozen encoder runs once per training image (features cached in ``out_dir/features.pt``); a
training step only runs the head: the shipped 400 steps took under a minute on the CPU, and most of the
shipped run's 5 min 54 s went to rendering the catalogue's 2,754 images and the feature pass over them.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .functional import l2_normalize
from .registry import shared_model
from .training import (
    Trainer, TrainResult, cached, check_items, encode_files, items_digest, read_arch_state, save_arch_state,
    supcon_loss, train_and_export,
)

__all__ = [
    "STYLE_HEAD_ENCODER", "STYLE_HEAD_TAPS", "GRAM_CHANNELS", "STYLE_HEAD_MODEL", "style_features", "StyleHead",
    "save_style_head", "read_style_head", "style_head_vector", "StyleHeadTrainConfig", "train_style_head",
]

#: the frozen encoder and the taps whose statistics the head reads (input, stride 2, 2, 4, 8, 16, 16)
STYLE_HEAD_ENCODER = "effnet-lite0"
STYLE_HEAD_TAPS: tuple[str, ...] = ("rgb", "stem", "stage1", "stage2", "stage3", "stage4", "stage5")
#: channels each tap is projected to before its Gram matrix
GRAM_CHANNELS = 16
#: the registry id of the shipped head
STYLE_HEAD_MODEL = "style-head-v3"
_SEED = 20240404
_EPS = 1e-5


def _projection(channels: int, index: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(_SEED + index)
    return torch.randn(channels, GRAM_CHANNELS, generator=g) / channels**0.5


#: quantiles of the pixel statistics (luma, saturation, gradient magnitude)
_QUANTILES = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)


def _quantiles(x: torch.Tensor, q: Sequence[float]) -> torch.Tensor:
    """``torch.quantile(x, q, dim=1).T`` (linear interpolation) of an (N, M) tensor -> (N, len(q)).

    On a CPU one ``np.partition`` per row places every needed order statistic in O(M), where
    torch.quantile sorts each row (4x the time on a 256 x 341 frame); the values are the same.
    """
    if x.device.type != "cpu":
        return torch.quantile(x, torch.tensor(q, device=x.device, dtype=x.dtype), dim=1).T
    pos = np.asarray(q, dtype=np.float64) * (x.shape[1] - 1)
    low, high = np.floor(pos).astype(np.int64), np.ceil(pos).astype(np.int64)
    kth = np.unique(np.concatenate([low, high]))
    rows = x.detach().numpy()
    out = np.empty((len(rows), len(q)), dtype=np.float32)
    for i, row in enumerate(rows):
        part = np.partition(row, kth)
        lo, hi = part[low], part[high]
        out[i] = lo + (hi - lo) * (pos - low).astype(np.float32)
    return torch.from_numpy(out)


def _pixel_statistics(rgb: torch.Tensor) -> torch.Tensor:
    """Distribution shapes that channel means and stds miss: quantiles of luma and saturation (tone curves,
    grades), of the log gradient magnitude at full and half resolution (blur, sharpening, grain, blocks)
    and the clipped shares of black and white -> (N, 44)."""
    rgb = rgb.float()
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114], device=rgb.device)[:, None, None]).sum(dim=1)
    sat = rgb.amax(dim=1) - rgb.amin(dim=1)
    parts = [_quantiles(x.flatten(1), _QUANTILES) for x in (luma, sat)]
    for level in (luma, torch.nn.functional.avg_pool2d(luma[:, None], 2)[:, 0]):
        grad = (level[:, 1:, :-1] - level[:, :-1, :-1]).abs() + (level[:, :-1, 1:] - level[:, :-1, :-1]).abs()
        parts.append(_quantiles(grad.flatten(1).add(1e-3).log(), _QUANTILES))
    flat = luma.flatten(1)
    parts.append(torch.stack([(flat < 0.02).float().mean(dim=1), (flat > 0.98).float().mean(dim=1)], dim=1))
    return torch.cat(parts, dim=1)


def style_features(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per frame: IN mean, log std and projected Gram of each :data:`STYLE_HEAD_TAPS` map, and the input's
    pixel statistics -> (N, F) float32."""
    parts = [_pixel_statistics(taps["rgb"])]
    for i, name in enumerate(STYLE_HEAD_TAPS):
        feat = taps[name].float().flatten(2)  # (N, C, HW)
        mean = feat.mean(dim=2)
        std = feat.var(dim=2, unbiased=False).add(_EPS).sqrt()
        normed = (feat - mean[..., None]) / std[..., None]
        proj = normed if feat.shape[1] <= GRAM_CHANNELS else torch.einsum(
            "nck,cp->npk", normed, _projection(feat.shape[1], i).to(feat.device))
        gram = proj @ proj.transpose(1, 2) / feat.shape[2]
        upper = torch.triu_indices(gram.shape[1], gram.shape[1], device=feat.device)
        parts += [mean, std.log(), gram[:, upper[0], upper[1]]]
    return torch.cat(parts, dim=1)


class StyleHead(nn.Module):
    """Standardise (fixed training statistics), Linear -> GELU -> Dropout -> Linear, L2-normalise."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.arch = {"in_dim": in_dim, "hidden": hidden, "out_dim": out_dim, "dropout": dropout}
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))

    def fit_standardisation(self, features: torch.Tensor) -> None:
        """Fix the input standardisation to the training features' mean and std."""
        self.mean.copy_(features.mean(dim=0))
        self.scale.copy_(1.0 / features.std(dim=0).clamp_min(1e-4))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.mlp((features - self.mean) * self.scale))


def save_style_head(head: StyleHead, path: str | os.PathLike[str]) -> Path:
    """Write the head as ``{"arch", "state_dict"}`` (atomic)."""
    return save_arch_state(head, path)


def read_style_head(path: str | os.PathLike[str]) -> StyleHead:
    """The head (eval mode) from a file written by :func:`save_style_head`; the registry's builder."""
    return read_arch_state(path, StyleHead, "style head")


def style_head_vector(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``style_head`` descriptor: the shipped head (hash-checked, loaded once) on :func:`style_features`."""
    features = style_features(taps)
    return shared_model(STYLE_HEAD_MODEL, str(features.device))(features)


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class StyleHeadTrainConfig:
    """How to train a style head.

    Attributes:
        out_dir: run folder: features.pt (cached features), checkpoints/, style_head.pt (+ .sha256, .json).
        encoder: registry name of the frozen encoder (its :data:`STYLE_HEAD_TAPS` are read).
        short_side: images are resized to this short side before the encoder (as the Embedder does).
        hidden / out_dim / dropout: the head's architecture (see :class:`StyleHead`).
        looks_per_batch / contents_per_look: a batch is this many looks x this many contents each, the
            contents shared by the looks where the data allows (hard negatives).
        temperature: tau of the SupCon loss. 0.3 rather than the usual 0.1: softer targets suit looks that
            differ by a parameter, and three seeds of the same run spread by 0.01 P@R instead of up to 0.07.
        lr / weight_decay: AdamW settings.
        steps / checkpoint_every: optimisation steps and steps between checkpoints (0: only at the end).
        preview_every: unused (a head has no images to preview); kept 0 for the shared training loop.
        seed: seeds the head's initialisation and the batch sampling.
        device: ``cpu`` or ``cuda``.
    """

    out_dir: str
    encoder: str = STYLE_HEAD_ENCODER
    short_side: int = 256
    hidden: int = 512
    out_dim: int = 128
    dropout: float = 0.1
    looks_per_batch: int = 24
    contents_per_look: int = 4
    temperature: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-3
    steps: int = 400
    checkpoint_every: int = 200
    preview_every: int = 0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.looks_per_batch < 2 or self.contents_per_look < 2:
            raise ValueError("StyleHeadTrainConfig: a batch needs >= 2 looks and >= 2 contents per look, got "
                             f"{self.looks_per_batch} and {self.contents_per_look}")
        if self.temperature <= 0 or self.steps < 1:
            raise ValueError(f"StyleHeadTrainConfig: temperature must be > 0 and steps >= 1, got "
                             f"{self.temperature} and {self.steps}")


def _cached_features(items: Sequence[tuple[str, str, str]], items_sha256: str, encoder: nn.Module,
                     config: StyleHeadTrainConfig, progress: bool) -> torch.Tensor:
    """:func:`style_features` of every item, cached in out_dir/features.pt under the items' digest."""
    digest = items_sha256 + f"/{config.encoder}/{config.short_side}/{STYLE_HEAD_TAPS}/{GRAM_CHANNELS}"
    return cached(Path(config.out_dir) / "features.pt", digest, lambda: torch.cat(encode_files(
        [p for p, _, _ in items], lambda x: style_features(encoder(x, STYLE_HEAD_TAPS)), config.short_side,
        config.device, progress)))


class _StyleHeadTrainer(Trainer):
    """The head, AdamW, the cached features and the (look, content) index of one run."""

    def __init__(self, items: Sequence[tuple[str, str, str]], config: StyleHeadTrainConfig, progress: bool) -> None:
        super().__init__(config)
        self.items_sha256 = items_digest(items)  # reads every image: once per run (cache key and run record)
        self.features = _cached_features(items, self.items_sha256, self.encoder, config, progress)
        looks = sorted({s for _, _, s in items})
        self.look_ids = torch.tensor([looks.index(s) for _, _, s in items])
        # look -> content -> item index; content -> looks it appears in
        self.by_look: list[dict[str, int]] = [{} for _ in looks]
        self.looks_of: dict[str, list[int]] = {}
        for i, (_, content, look) in enumerate(items):
            self.by_look[looks.index(look)][content] = i
            self.looks_of.setdefault(content, []).append(looks.index(look))
        self.contents = sorted(self.looks_of)
        if len(looks) < config.looks_per_batch:
            raise ValueError(f"the training items hold {len(looks)} looks; a batch needs {config.looks_per_batch}")
        torch.manual_seed(config.seed)
        self.model = StyleHead(self.features.shape[1], config.hidden, config.out_dim, config.dropout).to(self.device)
        self.model.fit_standardisation(self.features)
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.steps)
        self.generators = {"batch": torch.Generator().manual_seed(config.seed + 1)}

    def _pick(self, pool: Sequence, n: int) -> list:
        g = self.generators["batch"]
        return [pool[i] for i in torch.randperm(len(pool), generator=g)[:n].tolist()]

    def _batch(self) -> list[int]:
        """Looks that share an anchor content (so the batch holds that content in many looks), then for
        each look its contents, those shared with the other chosen looks first."""
        c = self.config
        anchor = self._pick(self.contents, 1)[0]
        looks = self._pick(self.looks_of[anchor], c.looks_per_batch)
        if len(looks) < c.looks_per_batch:
            others = [i for i in range(len(self.by_look)) if i not in looks]
            looks += self._pick(others, c.looks_per_batch - len(looks))
        counts: dict[str, int] = {}
        for look in looks:
            for content in self.by_look[look]:
                counts[content] = counts.get(content, 0) + 1
        batch = []
        for look in looks:
            own = list(self.by_look[look])
            shared = [x for x in self._pick(own, len(own)) if counts[x] > 1]
            rest = [x for x in own if x not in shared]
            chosen = (shared + self._pick(rest, len(rest)))[: c.contents_per_look]
            batch += [self.by_look[look][x] for x in chosen]
        return batch

    def losses(self) -> dict[str, torch.Tensor]:
        batch = self._batch()
        z = self.model(self.features[batch].to(self.device))
        return {"total": supcon_loss(z, self.look_ids[batch].to(self.device), self.config.temperature)}

    def preview(self) -> list[torch.Tensor]:
        raise ValueError("a style head has no preview images; keep preview_every = 0")


def train_style_head(items: Sequence[tuple[str, str, str]], config: StyleHeadTrainConfig,
                     progress: bool = True, resume: bool = True) -> TrainResult:
    """Train (or resume) a style head on labelled images ``items`` = (path, content, look); returns the
    exported ``out_dir/style_head.pt`` with its sha256 (also in ``style_head.pt.sha256``)."""
    check_items(items, "train_style_head")
    trainer = _StyleHeadTrainer(items, config, progress)
    identity = {"items": len(items), "items_sha256": trainer.items_sha256, "looks": len(trainer.by_look),
                "contents": len(trainer.contents), "taps": list(STYLE_HEAD_TAPS), "gram_channels": GRAM_CHANNELS}
    return train_and_export(trainer, config, save_style_head, "style_head.pt", progress, resume,
                            desc="train style head", identity=identity, sidecar={"arch": trainer.model.arch})
