"""A small content projection head trained to ignore style, and its training loop.

The head sits on the frozen EfficientNet-Lite0 stage-5 map (stride 16): WCT whitening (removes the
per-channel statistics and correlations a style sets), a residual position-wise two-layer MLP (1x1 convolutions, its
output layer initialised to zero, so training starts from the ``content`` descriptor), grid pooling
(optionally flip-symmetric: each cell averaged with its left-right mirror, so a mirrored copy gives the
same vector) and L2 normalisation.

It is trained on looks (``styleaxis train content-head``; by default on the training design of
:mod:`styleaxis.eval.designs`, the catalogue the style head trains on: train-role looks of every look
family on training photos, frames of camera footage and procedural scenes, disjoint from the evaluation
designs and splits) with the supervised contrastive loss of Khosla et al. 2020 ("Supervised Contrastive
Learning", eq. 2):

    L = sum_i -1/|P(i)| sum_{p in P(i)} log( exp(z_i . z_p / tau) / sum_{a != i} exp(z_i . z_a / tau) )

where P(i) are the other items of the batch with i's content. Each batch holds ``contents_per_batch``
contents, each in the same ``views_per_content`` styles, so positives share content but not style and
the hardest negatives share style but not content. The frozen encoder runs once per training image
(its maps are cached in ``out_dir/features.pt``); a step only runs the head.

The exported file (``content_head.pt``) is a dict ``{"arch": {...}, "state_dict": {...}}`` read with
``torch.load(weights_only=True)``; the model registry serves the shipped one as ``content-head-v2``, and
:func:`content_head_vector` runs it on the stage-5 map of the EfficientNet pass the Embedder already makes.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .functional import l2_normalize, symmetric_grid_pool, whiten
from .registry import shared_model
from .training import (
    Trainer, TrainResult, cached, check_items, encode_files, items_digest, read_arch_state, save_arch_state,
    supcon_loss, train_and_export,
)

__all__ = [
    "HEAD_ENCODER", "HEAD_TAP", "CONTENT_HEAD_MODEL", "ContentHead", "save_content_head",
    "read_content_head", "content_head_vector", "ContentHeadTrainConfig", "train_content_head",
]

#: the frozen encoder and tap the head reads
HEAD_ENCODER, HEAD_TAP = "effnet-lite0", "stage5"
#: the pooling grid of the content descriptor and head (4 x 4 cells, 4 x 2 after the mirror symmetry)
CONTENT_GRID = 4
#: the registry record of the shipped head behind the ``content_head`` descriptor
CONTENT_HEAD_MODEL = "content-head-v2"
#: whitening shrinkage the head's input is computed with (the shipped weights were trained on it)
HEAD_WHITEN_EPS = 1e-2


class ContentHead(nn.Module):
    """x = whiten(map) (WCT); y = x + W2 ReLU(W1 x) (1x1 convolutions, W2 starts at zero); grid pool; L2.

    With W2 = 0 the head is the ``content`` descriptor as it was when v1 was trained (whitening shrinkage
    :data:`HEAD_WHITEN_EPS` = 0.01; the descriptor now uses 0.3), with the same mirror-symmetric grid, so
    training starts from it and learns a correction; the output has ``in_channels`` values per grid cell.
    """

    def __init__(self, in_channels: int = 112, hidden: int = 256, grid: int = CONTENT_GRID,
                 symmetric: bool = True) -> None:
        super().__init__()
        self.arch = {"in_channels": in_channels, "hidden": hidden, "grid": grid, "symmetric": symmetric}
        self.mlp = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, in_channels, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    @property
    def out_dim(self) -> int:
        """Length of the output vector."""
        a = self.arch
        return a["in_channels"] * a["grid"] * ((a["grid"] + 1) // 2 if a["symmetric"] else a["grid"])

    def correct(self, white: torch.Tensor) -> torch.Tensor:
        """The head after the whitening: whitened maps (N, C, H, W) -> unit vectors (N, out_dim)."""
        return l2_normalize(symmetric_grid_pool(white + self.mlp(white), self.arch["grid"], self.arch["symmetric"]))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """Encoder map (N, in_channels, H, W) -> unit vectors (N, out_dim)."""
        return self.correct(whiten(feat, HEAD_WHITEN_EPS))


def save_content_head(head: ContentHead, path: str | os.PathLike[str]) -> Path:
    """Write ``{"arch", "state_dict"}`` atomically (fp32 CPU tensors)."""
    return save_arch_state(head, path)


def read_content_head(path: str | os.PathLike[str]) -> ContentHead:
    """The head (eval mode) from a file written by :func:`save_content_head`; the registry's builder."""
    return read_arch_state(path, ContentHead, "content head")


def content_head_vector(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``content_head`` descriptor: the shipped head (hash-checked, loaded once) on the stage-5 map of the
    EfficientNet pass the Embedder already makes."""
    feat = taps[HEAD_TAP]
    return shared_model(CONTENT_HEAD_MODEL, str(feat.device))(feat)


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class ContentHeadTrainConfig:
    """How to train a content head.

    Attributes:
        out_dir: run folder: features.pt (cached encoder maps), checkpoints/, content_head.pt (+ .sha256,
            .json), losses.json.
        encoder: registry name of the frozen encoder (its ``stage5`` tap is read).
        short_side: images are resized to this short side before the encoder (as the Embedder does).
        hidden / grid / symmetric: the head's architecture (see :class:`ContentHead`).
        contents_per_batch / views_per_content: a batch is this many contents x this many styles each.
        temperature: tau of the SupCon loss.
        lr / weight_decay: AdamW settings.
        flip: mirror each training map left-right with probability 1/2 (augmentation).
        steps / checkpoint_every: optimisation steps and steps between checkpoints (0: only at the end).
        preview_every: unused (a head has no images to preview); kept 0 for the shared training loop.
        seed: seeds the head's initialisation and the batch sampling.
        device: ``cpu`` or ``cuda``.
    """

    out_dir: str
    encoder: str = HEAD_ENCODER
    short_side: int = 256
    hidden: int = 256
    grid: int = CONTENT_GRID
    symmetric: bool = True
    contents_per_batch: int = 16
    views_per_content: int = 4
    temperature: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    flip: bool = True
    steps: int = 1500
    checkpoint_every: int = 500
    preview_every: int = 0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.contents_per_batch < 2 or self.views_per_content < 2:
            raise ValueError("ContentHeadTrainConfig: a batch needs >= 2 contents and >= 2 views per content, got "
                             f"{self.contents_per_batch} and {self.views_per_content}")
        if self.temperature <= 0 or self.steps < 1:
            raise ValueError(f"ContentHeadTrainConfig: temperature must be > 0 and steps >= 1, got "
                             f"{self.temperature} and {self.steps}")


def _encode_items(items: Sequence[tuple[str, str, str]], items_sha256: str, encoder: nn.Module,
                  config: ContentHeadTrainConfig, progress: bool) -> list[torch.Tensor]:
    """The encoder's stage-5 map of every item (fp16, CPU), cached in out_dir/features.pt under the items' digest."""
    digest = items_sha256 + f"/{config.encoder}/{config.short_side}"
    return list(cached(Path(config.out_dir) / "features.pt", digest, lambda: [
        m[0].half() for m in encode_files([p for p, _, _ in items], lambda x: encoder(x, (HEAD_TAP,))[HEAD_TAP],
                                          config.short_side, config.device, progress)]))


class _HeadTrainer(Trainer):
    """The head, AdamW, the cached maps and the (content, style) index of one run."""

    def __init__(self, items: Sequence[tuple[str, str, str]], config: ContentHeadTrainConfig, progress: bool) -> None:
        super().__init__(config)
        self.items_sha256 = items_digest(items)  # reads every image: once per run (cache key and run record)
        # whitening has no parameters and commutes with a mirror: do it once, not every step
        with torch.no_grad():
            maps = _encode_items(items, self.items_sha256, self.encoder, config, progress)
            self.maps = [whiten(m.float()[None], HEAD_WHITEN_EPS)[0] for m in maps]
        contents = sorted({c for _, c, _ in items})
        self.content_ids = torch.tensor([contents.index(c) for _, c, _ in items])
        # content -> style -> item indices, to draw each content in a shared set of styles
        self.by_content: list[dict[str, list[int]]] = [{} for _ in contents]
        for i, (_, content, style) in enumerate(items):
            self.by_content[contents.index(content)].setdefault(style, []).append(i)
        self.styles = sorted({s for _, _, s in items})
        if len(contents) < config.contents_per_batch or len(self.styles) < config.views_per_content:
            raise ValueError(f"the training items hold {len(contents)} contents and {len(self.styles)} styles; the "
                             f"batch needs {config.contents_per_batch} contents and {config.views_per_content} styles")
        torch.manual_seed(config.seed)
        self.model = ContentHead(self.maps[0].shape[0], config.hidden, config.grid,
                                 config.symmetric).to(self.device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.steps)
        self.generators = {"batch": torch.Generator().manual_seed(config.seed + 1)}

    def _batch(self) -> list[int]:
        c, g = self.config, self.generators["batch"]
        chosen = torch.randperm(len(self.by_content), generator=g)[: c.contents_per_batch].tolist()
        shared = [self.styles[i] for i in torch.randperm(len(self.styles), generator=g)[: c.views_per_content]]
        batch = []
        for content in chosen:
            styles = self.by_content[content]
            # the shared styles where this content has them, other styles of it otherwise
            own = [s for s in shared if s in styles]
            rest = [s for s in styles if s not in own]
            extra = torch.randperm(len(rest), generator=g)[: c.views_per_content - len(own)].tolist()
            for style in own + [rest[i] for i in extra]:
                pick = styles[style]
                batch.append(pick[int(torch.randint(len(pick), (1,), generator=g))])
        return batch

    def losses(self) -> dict[str, torch.Tensor]:
        batch = self._batch()
        flips = torch.rand(len(batch), generator=self.generators["batch"]) < (0.5 if self.config.flip else 0.0)
        maps = [self.maps[i][None].to(self.device) for i in batch]
        z = torch.cat([self.model.correct(m.flip(-1) if f else m) for m, f in zip(maps, flips.tolist())])
        loss = supcon_loss(z, self.content_ids[batch].to(self.device), self.config.temperature)
        return {"total": loss}

    def preview(self) -> list[torch.Tensor]:
        raise ValueError("a content head has no preview images; keep preview_every = 0")


def train_content_head(items: Sequence[tuple[str, str, str]], config: ContentHeadTrainConfig,
                       progress: bool = True, resume: bool = True) -> TrainResult:
    """Train (or resume) a content head on labelled images ``items`` = (path, content, style); returns
    the exported ``out_dir/content_head.pt`` with its sha256 (also in ``content_head.pt.sha256``)."""
    check_items(items, "train_content_head")
    trainer = _HeadTrainer(items, config, progress)
    identity = {"items": len(items), "items_sha256": trainer.items_sha256, "contents": len(trainer.by_content),
                "styles": len(trainer.styles)}
    return train_and_export(trainer, config, save_content_head, "content_head.pt", progress, resume,
                            desc="train content head", identity=identity, sidecar={"arch": trainer.model.arch})
