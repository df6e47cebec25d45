"""Training the AdaIN decoder (Huang & Belongie 2017, sec. 6.2).

Each step: random content and style crops -> fixed encoder -> t = AdaIN(f(c), f(s)) -> decoder g(t)
-> encoder again, and

    L = content_weight * ||f(g(t)) - t||^2  +  style_weight * sum_l (||mu(phi_l(g(t))) - mu(phi_l(s))||^2
                                                                + ||sigma(phi_l(g(t))) - sigma(phi_l(s))||^2)

with the content loss on the AdaIN target t at relu4_1 and the style loss on the IN statistics of
relu1_1 .. relu4_1 (paper eq. 11-13; means instead of sums). The paper's recipe: MS-COCO contents,
WikiArt styles, short side 512 then random 256 crops, batch 8, Adam lr 1e-4, style weight 10; the
authors' code also decays the learning rate as lr / (1 + 5e-5 * step), as here.

Checkpoints (model, optimizer, step, sampler RNG, loss history) are written every
``checkpoint_every`` steps, on Ctrl-C, and at the end; a run started again on the same ``out_dir``
resumes from the latest one and ends bit-identical to an uninterrupted run (same device and thread
count). The result is ``out_dir/decoder.pth`` (see :func:`styleaxis.embed.adain.save_decoder`), with
its sha256 in ``decoder.pth.sha256`` and config, encoder identity and losses in ``decoder.json``;
``losses.json`` holds the loss curve and ``previews/`` the preview grids (content | style | output).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .adain import ADAIN_TAP, Decoder, save_decoder
from .descriptors import STYLE_TAPS
from .functional import adain, calc_mean_std
from .losses import content_loss, in_style_loss
from .perceptual import TrainRunConfig
from .registry import resolve_weights
from .training import Trainer, content_style_crops, export_model, fit

__all__ = ["AdaINTrainConfig", "AdaINTrainResult", "train_adain"]

#: config fields a resumed run may change; any other difference from the checkpoint is refused
_RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "preview_every", "device", "half"})


@dataclass(frozen=True, kw_only=True)
class AdaINTrainConfig(TrainRunConfig):
    """How to train an AdaIN decoder; the run's settings are
    :class:`~styleaxis.embed.perceptual.TrainRunConfig`'s, with the paper's recipe as defaults (batch 8,
    Adam lr 1e-4, 160k steps of 256 crops from images resized to 512).

    Attributes:
        style_dir: folder of style images (searched recursively); crops are taken as from the content.
        lr_decay: the learning rate is decayed as lr / (1 + lr_decay * step).
        content_weight / style_weight: loss weights (paper: 1 and 10, for VGG19 ``vgg_normalised``, whose
            activations are rescaled to mean ~1). ``vgg16-hed`` keeps Caffe-scale activations (mean relu1_1
            ~17, relu4_1 ~5 on photos), which makes the style term far larger for the same weight: the
            shipped decoder used 0.1, where content and style terms start comparable.
        half: store the exported decoder.pth in fp16 (half the size; checkpoints stay fp32).
    """

    style_dir: str
    batch_size: int = 8
    lr: float = 1e-4
    lr_decay: float = 5e-5
    content_weight: float = 1.0
    style_weight: float = 10.0
    steps: int = 160_000
    half: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop % 8:
            raise ValueError(f"AdaINTrainConfig.crop must be a multiple of 8 (the decoder's scale), got {self.crop}")


@dataclass(frozen=True)
class AdaINTrainResult:
    """What a training run produced: the decoder file, its sha256, and the loss history
    (one row per step: total, content, style)."""

    decoder_path: Path
    sha256: str
    step: int
    history: torch.Tensor


class _AdaINTrainer(Trainer):
    """Decoder, Adam with the paper's decay, and the two crop samplers of one run."""

    def __init__(self, config: AdaINTrainConfig) -> None:
        super().__init__(config)
        torch.manual_seed(config.seed)
        self.model = Decoder.mirror(self.encoder, ADAIN_TAP).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: 1.0 / (1.0 + config.lr_decay * step))
        self.generators, self.content, self.style, self.preview_pair = content_style_crops(
            config.content_dir, config.style_dir, config.resize, config.crop, config.seed)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoder output and the two loss terms for one batch (paper eq. 11-13)."""
        with torch.no_grad():
            feat = self.encoder(content, (ADAIN_TAP,))[ADAIN_TAP]
            style_feats = self.encoder(style, STYLE_TAPS)
            targets = {t: calc_mean_std(style_feats[t]) for t in STYLE_TAPS}
            target = adain(feat, *targets[ADAIN_TAP])
        out = self.model(target)
        out_feats = self.encoder(out, STYLE_TAPS)
        return {"output": out, "content": content_loss(out_feats[ADAIN_TAP], target),
                "style": in_style_loss(out_feats, targets, {t: 1.0 for t in STYLE_TAPS})}

    def losses(self) -> dict[str, torch.Tensor]:
        c = self.config
        terms = self.forward(self.content.sample(c.batch_size).to(self.device),
                             self.style.sample(c.batch_size).to(self.device))
        total = c.content_weight * terms["content"] + c.style_weight * terms["style"]
        return {"total": total, "content": terms["content"], "style": terms["style"]}

    def preview(self) -> list[torch.Tensor]:
        content, style = (x.to(self.device) for x in self.preview_pair)
        return [content, style, self.forward(content, style)["output"]]


def train_adain(config: AdaINTrainConfig, progress: bool = True, resume: bool = True) -> AdaINTrainResult:
    """Train (or resume training) an AdaIN decoder; returns the exported decoder file and loss history."""
    out = Path(config.out_dir)
    trainer = _AdaINTrainer(config)
    _, encoder_sha = resolve_weights(config.encoder)
    summary = fit(trainer, config, out, {"encoder": config.encoder, "encoder_sha256": encoder_sha},
                  progress=progress, resume=resume, resumable=_RESUMABLE_CHANGES, desc="train adain")
    path = save_decoder(trainer.model, out / "decoder.pth", config.encoder, ADAIN_TAP, half=config.half)
    digest = export_model(path, {"step": trainer.step, "config": asdict(config), **summary})
    return AdaINTrainResult(path, digest, trainer.step, torch.tensor(trainer.history).reshape(-1, 3))
