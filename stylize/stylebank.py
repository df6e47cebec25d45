"""StyleBank (Chen, Yuan, Liao, Yu & Hua 2017, "StyleBank: An Explicit Representation for Neural Image Style
Transfer"): one shared auto-encoder and one convolution filter bank per style.

The encoder E and decoder D are those of Johnson et al.'s network (:func:`~.johnson.encoder_layers`,
:func:`~.johnson.decoder_layers`: c9s1-32, d64, d128 / u64, u32, c9s1-3, instance norm). Style i is
the filter bank K_i, here ``bank_depth`` 3x3 convolutions of 128 channels with instance norm and ReLU, applied to
the encoder's features: O_i = D(K_i(E(I))). Weights w over the banks fuse styles linearly in feature space,
D(sum_i w_i K_i(E(I))) (paper sec. 4, "linear fusion").

Training alternates two branches (paper sec. 3.3, "(T+1)-step" strategy): ``alternate`` = T steps of the
stylising branch E -> K_i -> D with the perceptual loss of Johnson et al. (:class:`~.perceptual.PerceptualLoss`;
the paper's layers: content ``relu4_2``, style ``relu1_2, relu2_2, relu3_2, relu4_2``), each sample with a
random style, then one step of the auto-encoder branch E -> D with the identity loss mean((D(E(I)) - I)^2),
which updates only E and D and keeps them free of style. The identity loss is weighted (``reconstruction_weight``)
so its gradients are of the perceptual loss's order (both branches share Adam's moments); the paper balances the
branches' gradient norms instead. In the loss history a branch's terms are 0 on the other branch's steps.

Adding styles (``base_model``): the encoder, decoder and existing banks are frozen and only the new banks are
trained (stylising branch only), so every existing style's output stays bit for bit the same (paper sec. 3.3,
incremental learning).

Network files are ``torch.save`` dicts read with ``weights_only=True``:
``{"format": STYLEBANK_FORMAT, "styles": [names], "bank_depth": k, "encoder": loss network, "state_dict": {...}}``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from styleaxis.embed.registry import sha256_file
from styleaxis.embed.training import CropSampler, Trainer

from .cin import style_files, style_vector
from .config import Stylizer, StylizeConfig
from .johnson import conv_block, decoder_layers, encoder_layers, read_network, run_padded, save_network
from .perceptual import PerceptualTrainConfig, TrainResult, train_and_export

__all__ = ["STYLEBANK_FORMAT", "STYLEBANK_STYLE_WEIGHTS", "StyleBankNet", "save_stylebank", "load_stylebank",
           "stylizer", "StyleBankTrainConfig", "train"]

STYLEBANK_FORMAT = "styleaxis-stylebank/1"
#: the paper's style layers (VGG-16), equally weighted; its content layer is relu4_2
STYLEBANK_STYLE_WEIGHTS: dict[str, float] = {"relu1_2": 0.25, "relu2_2": 0.25, "relu3_2": 0.25, "relu4_2": 0.25}
_CHANNELS = 128  # width of the encoder's output, which the banks take and give


# -- model
class StyleBankNet(nn.Module):
    """Shared encoder/decoder and one filter bank per named style; RGB (N, 3, H, W) in 0..1 in and out.

    Args:
        styles: a name per style (one bank each).
        bank_depth: convolutions per bank.
    """

    def __init__(self, styles: Sequence[str], bank_depth: int = 1) -> None:
        super().__init__()
        if bank_depth < 1:
            raise ValueError(f"bank_depth must be >= 1, got {bank_depth}")
        self.bank_depth = bank_depth
        self.styles: list[str] = []
        self.encoder = encoder_layers()
        self.decoder = decoder_layers()
        self.banks = nn.ModuleList()
        self.add_styles(styles)

    @property
    def num_styles(self) -> int:
        return len(self.banks)

    def add_styles(self, names: Sequence[str]) -> list[int]:
        """Append a freshly initialised bank per name; returns their indices."""
        start = self.num_styles
        for name in names:
            self.banks.append(nn.Sequential(*(conv_block(_CHANNELS, _CHANNELS, 3) for _ in range(self.bank_depth))))
            self.styles.append(str(name))
        return list(range(start, self.num_styles))

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        """The auto-encoder branch D(E(I)) when ``style_weights`` is None, else D(sum_i w_i K_i(E(I))) with
        weights (S,) or (N, S): one-hot picks a style, other weights fuse styles. Each bank runs only on the
        samples that weight it."""
        if style_weights is not None and (style_weights.shape[-1] != self.num_styles or style_weights.ndim not in (1, 2)):
            raise ValueError(f"style_weights must be ({self.num_styles},) or (N, {self.num_styles}), "
                             f"got {tuple(style_weights.shape)}")

        def body(x: torch.Tensor) -> torch.Tensor:
            feat = self.encoder(x)
            if style_weights is None:
                return self.decoder(feat)
            w = style_weights.to(feat).expand(len(feat), self.num_styles)
            mixed = torch.zeros_like(feat)
            for i in (w != 0).any(dim=0).nonzero().flatten().tolist():
                rows = (w[:, i] != 0).nonzero().flatten()
                mixed = mixed.index_add(0, rows, w[rows, i].view(-1, 1, 1, 1) * self.banks[i](feat[rows]))
            return self.decoder(mixed)

        return run_padded(image, body)


def save_stylebank(model: StyleBankNet, path: str | os.PathLike[str], encoder: str) -> Path:
    """Write a StyleBank file atomically; ``encoder`` names the loss network it was trained with."""
    return save_network(model, path, STYLEBANK_FORMAT,
                        {"styles": model.styles, "bank_depth": model.bank_depth, "encoder": encoder})


def load_stylebank(path: str | os.PathLike[str]) -> StyleBankNet:
    """A network written by :func:`save_stylebank` (``weights_only=True``), in eval mode; carries
    ``encoder_name``."""

    def build(payload: dict[str, Any]) -> StyleBankNet:
        net = StyleBankNet([str(s) for s in payload["styles"]], int(payload["bank_depth"]))
        net.encoder_name = str(payload["encoder"])
        return net

    return read_network(path, STYLEBANK_FORMAT, build)


# -- run
def stylizer(config: StylizeConfig, device: torch.device) -> Stylizer:
    """The ``stylebank`` method of :mod:`.stylize`: the network file ``config.model`` (required) with
    ``config.style_id`` or ``config.style_weights`` over its banks (linear fusion)."""
    if not config.model:
        raise ValueError("stylebank needs a network file (--model), made by `styleaxis train stylebank`")
    model = load_stylebank(config.model).to(device)
    weights = style_vector(model.num_styles, config.style_id,
                           list(config.style_weights) if config.style_weights is not None else None).to(device)
    return lambda batch: model(batch, weights)


# -- train
@dataclass(frozen=True, kw_only=True)
class StyleBankTrainConfig(PerceptualTrainConfig):
    """How to train a StyleBank network, or add styles to one; the other fields are
    :class:`~.perceptual.PerceptualTrainConfig`'s, with the paper's loss layers as defaults.

    Attributes:
        styles: style image files or folders (each image one style); with ``base_model``, the styles to add.
        base_model: a StyleBank file to extend: only the new banks train, everything else is frozen.
        reconstruction_weight: weight of the identity loss on pixels in 0..1.
        alternate: T, stylising steps per auto-encoder step (paper: 2).
        bank_depth: convolutions per bank (new networks only; added banks take the base's).
    """

    styles: tuple[str, ...]
    base_model: str | None = None
    content_tap: str = "relu4_2"
    style_weights: dict[str, float] = field(default_factory=lambda: dict(STYLEBANK_STYLE_WEIGHTS))
    reconstruction_weight: float = 1e4
    alternate: int = 2
    bank_depth: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.styles:
            raise ValueError("StyleBankTrainConfig.styles: give at least one style image")
        if self.alternate < 1 or self.bank_depth < 1:
            raise ValueError(f"StyleBankTrainConfig: alternate and bank_depth must be >= 1, got "
                             f"{self.alternate} and {self.bank_depth}")


class _StyleBankTrainer(Trainer):
    """The network (new, or a base with banks added), Adam over what trains, crops and the perceptual loss."""

    def __init__(self, config: StyleBankTrainConfig) -> None:
        super().__init__(config)
        files = style_files(config.styles)
        torch.manual_seed(config.seed)
        if config.base_model is None:
            self.model = StyleBankNet([f.stem for f in files], config.bank_depth)
            self.trained = list(range(len(files)))
            params = list(self.model.parameters())
        else:
            self.model = load_stylebank(config.base_model)
            if self.model.encoder_name != config.encoder:
                raise ValueError(f"{config.base_model} was trained with {self.model.encoder_name}, not {config.encoder}")
            self.model.requires_grad_(False)
            self.trained = self.model.add_styles([f.stem for f in files])
            params = [p for i in self.trained for p in self.model.banks[i].parameters()]
        self.model.to(self.device).train()
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        self.loss = config.perceptual_loss(self.encoder, files)
        self.generators = {"content": torch.Generator().manual_seed(config.seed + 1),
                           "style": torch.Generator().manual_seed(config.seed + 2)}
        self.content = CropSampler(config.content_dir, config.resize, config.crop, self.generators["content"])
        self.preview_content = CropSampler(config.content_dir, config.resize, config.crop,
                                           torch.Generator().manual_seed(config.seed + 3)).sample(2)

    def losses(self) -> dict[str, torch.Tensor]:
        c = self.config
        content = self.content.sample(c.batch_size).to(self.device)
        zero = torch.zeros((), device=self.device)
        if c.base_model is None and self.step % (c.alternate + 1) == c.alternate:  # the auto-encoder branch
            loss_r = F.mse_loss(self.model(content), content)
            return {"total": c.reconstruction_weight * loss_r, "content": zero, "style": zero, "tv": zero,
                    "reconstruction": loss_r}
        ids = torch.randint(len(self.trained), (len(content),), generator=self.generators["style"])
        banks = torch.tensor(self.trained)[ids]
        out = self.model(content, F.one_hot(banks, self.model.num_styles).float().to(self.device))
        return {**self.loss(out, content, ids), "reconstruction": zero}

    def preview(self) -> list[torch.Tensor]:
        content = self.preview_content.to(self.device)
        return [content, self.model(content)] + [
            self.model(content, style_vector(self.model.num_styles, style_id=i).to(self.device)) for i in self.trained[:4]]


def train(config: StyleBankTrainConfig, progress: bool = True, resume: bool = True) -> TrainResult:
    """Train (or resume training) a StyleBank network, or add ``config.styles`` to ``config.base_model``;
    returns ``out_dir/stylebank.pth`` and the loss history (columns total, content, style, tv, reconstruction)."""
    trainer = _StyleBankTrainer(config)
    base = {} if config.base_model is None else {"base_model_sha256": sha256_file(config.base_model)}
    return train_and_export(trainer, config, lambda m, p: save_stylebank(m, p, config.encoder), "stylebank.pth",
                            progress, resume, desc="train stylebank", identity=base,
                            sidecar={"styles": trainer.model.styles})
