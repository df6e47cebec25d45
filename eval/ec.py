"""The EC metrics of Yeh et al. (2018): effectiveness E and coherence C of a stylised image.

What is implemented, exactly (after Yeh et al. 2018, "Quantitative Evaluation of Style Transfer", arXiv:1804.03189):

**Effectiveness E** (stylised image x against style image y). Both images go through the encoder
(default VGG19; see below) and the activations at ``taps`` are taken: ``relu1_1 .. relu5_1``, the
outputs of the first convolution of each of the five blocks after its ReLU. Those are what Keras'
``block1_conv1 .. block5_conv1`` return (Keras builds VGG convolutions with the ReLU inside), so they
are the layers the report names. For each of R random directions k (R = 128) and each layer l, a unit
vector v_kl in R^{C_l} (C_l channels) is drawn, and every spatial position's channel vector f is
projected to the scalar v_kl . f. The samples of the five layers are pooled (each layer contributes
its H_l W_l samples), and a normal distribution is fitted to the pooled samples of x (mu_x, s_x) and
of y (mu_y, s_y) (population mean and std). Standardising x's samples by y's statistics,
m = (mu_x - mu_y) / s_y and s = s_x / s_y, the KL divergence KL(N(mu_x, s_x^2) || N(mu_y, s_y^2)) is

    d_k = -log s + (s^2 + m^2) / 2 - 1/2,        E = -log( (1/R) sum_k d_k + eps ).

Higher E = the stylised image's feature statistics are closer to the style image's. eps (1e-12)
only keeps E finite when x and y have identical statistics (then E = -log eps ~ 27.6); stds are
floored at 1e-12 so a flat image gives a very low, finite E.
The pooled mean and variance are computed exactly from each layer's channel mean and covariance
(mean = v . mu_l, variance = v^T Sigma_l v, pooled with weights H_l W_l), in float64, instead of
materialising R x (sum_l H_l W_l) projected samples. The directions are standard normal vectors
normalised to length 1, drawn from ``torch.Generator().manual_seed(seed)`` in tap order, so a seed
gives the same E on every run and device, whatever the batch.

**Coherence C** (stylised image x against content image c): SSIM(x, c) as in ``styleaxis.eval.ssim``
(Wang et al. 2004; Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03), on RGB by default. When the
stylised image's size differs from the content's (networks may pad or crop), the content is resized
to the stylised size (bilinear, antialiased) first.

**Encoder.** ``encoder="auto"`` uses ``vgg19`` when the registry has it and its weights load, else the
offline ``vgg16-hed`` (VGG16 fine-tuned for edges; same tap names). The fallback is reported: every
result carries an ``encoder`` column/field and a warning is issued. E values from different encoders
are not comparable. Before the encoder, images are resized so their short side is ``short_side``
(256 by default; ``None`` keeps the input size).

Reference: M.-C. Yeh, S. Tang, A. Bhattad, D. A. Forsyth, "Quantitative Evaluation of Style
Transfer", arXiv:1804.00118, 2018.
"""
from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import WeightsError, load_model
from styleaxis.embed.training import IMAGE_SUFFIXES

from .io import Color, ImageLike, load_image, read_path_table, to_color
from .ssim import ssim

__all__ = [
    "EC_TAPS",
    "ECConfig",
    "ECEvaluator",
    "effectiveness_from_stats",
    "effectiveness",
    "coherence",
    "resolve_encoder",
    "read_triplets",
    "match_triplets",
    "TRIPLET_COLUMNS",
]

#: Yeh et al.'s layers (Keras block1_conv1 .. block5_conv1 = post-ReLU relu1_1 .. relu5_1).
EC_TAPS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: the paper encoder, and the offline one used when its weights are absent.
PAPER_ENCODER, OFFLINE_ENCODER = "vgg19", "vgg16-hed"
#: columns of a triplet table: one stylisation per row.
TRIPLET_COLUMNS: tuple[str, ...] = ("content", "style", "stylized")
_STD_FLOOR = 1e-12


@dataclass(frozen=True)
class ECConfig:
    """How E and C are computed (see the module docstring for the formulas).

    Attributes:
        encoder: registry id of the encoder, or ``"auto"`` (vgg19 if loadable, else vgg16-hed).
        taps: encoder activations whose projections are pooled.
        directions: R, the number of random unit directions.
        seed: seed of the directions.
        short_side: images are resized to this short side before the encoder; None keeps their size.
        eps: added to the mean KL divergence before the log.
        coherence_color: SSIM on ``"rgb"`` (mean of channels) or ``"grey"`` (BT.709 luma).
        batch_size: images per encoder pass (images of one size share a batch).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        progress: show a progress bar over encoder batches.
    """

    encoder: str = "auto"
    taps: tuple[str, ...] = EC_TAPS
    directions: int = 128
    seed: int = 0
    short_side: int | None = 256
    eps: float = 1e-12
    coherence_color: Color = "rgb"
    batch_size: int = 4
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.directions < 1:
            raise ValueError(f"directions must be >= 1, got {self.directions}")
        if not self.taps:
            raise ValueError("taps must name at least one encoder activation")
        if self.short_side is not None and self.short_side < 32:
            raise ValueError(f"short_side must be >= 32 pixels or None, got {self.short_side}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.coherence_color not in ("rgb", "grey"):
            raise ValueError(f"coherence_color must be 'rgb' or 'grey', got {self.coherence_color!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


def resolve_encoder(name: str) -> tuple[str, torch.nn.Module, str | None]:
    """Load the EC encoder: (registry id, module, note). ``note`` says why vgg19 was replaced, else None.

    ``"auto"`` tries vgg19 (unknown to the registry, weights missing or not downloadable) and falls
    back to the offline vgg16-hed; an explicit name is loaded as is, with no fallback.
    """
    if name != "auto":
        return name, load_model(name), None
    try:
        return PAPER_ENCODER, load_model(PAPER_ENCODER), None
    except (KeyError, WeightsError, OSError) as exc:
        reason = exc.args[0] if exc.args else type(exc).__name__
        note = (f"EC encoder: {PAPER_ENCODER} (the paper's) is unavailable ({reason}); using the offline "
                f"{OFFLINE_ENCODER}. E values are not comparable with VGG19 ones.")
        return OFFLINE_ENCODER, load_model(OFFLINE_ENCODER), note


def effectiveness_from_stats(stylized: torch.Tensor, style: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """E from projection statistics (..., R, 2) = [mean, std] per direction -> (...).

    d_k = -log s + (s^2 + m^2)/2 - 1/2 with m = (mu_x - mu_y)/s_y, s = s_x/s_y (KL of the fitted
    normals, stylised x against style y); E = -log(mean_k d_k + eps). Yeh et al. 2018.
    """
    mu_x, s_x = stylized.unbind(-1)
    mu_y, s_y = style.unbind(-1)
    s_x, s_y = s_x.clamp_min(_STD_FLOOR), s_y.clamp_min(_STD_FLOOR)
    m, s = (mu_x - mu_y) / s_y, s_x / s_y
    d = -torch.log(s) + (s * s + m * m) / 2 - 0.5
    return -torch.log(d.mean(dim=-1) + eps)


class ECEvaluator:
    """Holds the encoder and the random directions; computes E, C and whole tables of them.

    Build it once and reuse it: loading the encoder costs about a second.
    """

    def __init__(self, config: ECConfig = ECConfig()) -> None:
        self.config = config
        if config.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(config.device)
        self.encoder_name, encoder, self.note = resolve_encoder(config.encoder)
        if self.note:
            warnings.warn(self.note, stacklevel=2)
        self.encoder = encoder.to(self.device).eval()
        self._directions: dict[tuple[int, ...], list[torch.Tensor]] = {}

    def directions(self, channels: Sequence[int]) -> list[torch.Tensor]:
        """Unit directions (R, C_l) per tap, drawn from the seed in tap order (float64, on the device)."""
        key = tuple(channels)
        if key not in self._directions:
            gen = torch.Generator().manual_seed(self.config.seed)
            dirs = []
            for c in key:
                v = torch.randn(self.config.directions, c, generator=gen, dtype=torch.float64)
                dirs.append((v / v.norm(dim=1, keepdim=True)).to(self.device))
            self._directions[key] = dirs
        return self._directions[key]

    def _prepare(self, image: ImageLike) -> torch.Tensor:
        img = to_color(load_image(image).cpu(), "rgb")
        if self.config.short_side is not None:
            img = resize_short_side(img, self.config.short_side)
        return img

    @torch.inference_mode()
    def _batch_stats(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, R, 2): mean and std of the pooled projections of every tap."""
        taps = self.encoder(batch.to(self.device), taps=self.config.taps)
        feats = [taps[t].flatten(2).double() for t in self.config.taps]
        dirs = self.directions([f.shape[1] for f in feats])
        total = sum(f.shape[2] for f in feats)
        first = second = 0.0
        for f, v in zip(feats, dirs):
            n = f.shape[2]
            mu = f.mean(dim=2)  # (B, C)
            centred = f - mu[..., None]
            cov = centred @ centred.transpose(1, 2) / n  # (B, C, C)
            proj_mean = mu @ v.T  # (B, R)
            proj_var = ((v @ cov) * v).sum(dim=2)  # (B, R): v^T Sigma v
            first = first + n * proj_mean
            second = second + n * (proj_var + proj_mean * proj_mean)
        mean = first / total
        std = (second / total - mean * mean).clamp_min(0.0).sqrt()
        return torch.stack([mean, std], dim=-1).cpu()

    def projection_stats(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """(N, R, 2) float64: per image and direction, mean and std of the pooled projected features.

        Images are loaded and encoded in chunks; within a chunk, images of one size share batches.
        """
        out = torch.empty(len(images), self.config.directions, 2, dtype=torch.float64)
        chunk = self.config.batch_size * 8  # bounds the decoded images held at once
        bar = tqdm(total=len(images), unit="image", desc="EC features", disable=not self.config.progress)
        for start in range(0, len(images), chunk):
            groups: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = defaultdict(list)
            for i in range(start, min(start + chunk, len(images))):
                img = self._prepare(images[i])
                groups[tuple(img.shape[1:])].append((i, img))
            for items in groups.values():
                for b in range(0, len(items), self.config.batch_size):
                    part = items[b : b + self.config.batch_size]
                    out[[i for i, _ in part]] = self._batch_stats(torch.stack([img for _, img in part]))
                    bar.update(len(part))
        bar.close()
        return out

    def effectiveness(self, stylized: ImageLike, style: ImageLike) -> float:
        """E of one stylised image against one style image (higher = more effective)."""
        stats = self.projection_stats([stylized, style])
        return float(effectiveness_from_stats(stats[0], stats[1], self.config.eps))

    def coherence(self, stylized: ImageLike, content: ImageLike) -> float:
        """C = SSIM(stylised, content) with this config's colour mode."""
        return coherence(stylized, content, self.config.coherence_color)

    def evaluate(self, items: pd.DataFrame | Sequence[tuple[ImageLike, ImageLike, ImageLike]]) -> pd.DataFrame:
        """E and C for every row of a triplet table -> the table plus ``E``, ``C``, ``encoder`` columns.

        ``items`` is a DataFrame with columns content, style, stylized (images or paths; other columns
        are kept), or a sequence of (content, style, stylized). A style image shared by many rows, and
        any path that repeats, is encoded once.
        """
        table = _as_triplet_frame(items)
        keys: dict[object, int] = {}
        unique: list[ImageLike] = []
        for image in list(table["stylized"]) + list(table["style"]):
            key = _image_key(image)
            if key not in keys:
                keys[key] = len(unique)
                unique.append(image)
        stats = self.projection_stats(unique)
        x = stats[[keys[_image_key(im)] for im in table["stylized"]]]
        y = stats[[keys[_image_key(im)] for im in table["style"]]]
        out = table.copy()
        out["E"] = effectiveness_from_stats(x, y, self.config.eps).numpy()
        out["C"] = [self.coherence(s, c) for s, c in zip(table["stylized"], table["content"])]
        out["encoder"] = self.encoder_name
        return out


def _image_key(image: ImageLike) -> object:
    """Paths are the same image when they resolve to the same file; other objects by identity."""
    if isinstance(image, (str, os.PathLike)):
        return str(Path(image).resolve())
    return id(image)


def _as_triplet_frame(items: pd.DataFrame | Sequence[tuple[ImageLike, ImageLike, ImageLike]]) -> pd.DataFrame:
    if isinstance(items, pd.DataFrame):
        missing = [c for c in TRIPLET_COLUMNS if c not in items.columns]
        if missing:
            raise ValueError(f"triplet table lacks columns {missing}; expected {list(TRIPLET_COLUMNS)}, "
                             f"got {list(items.columns)}")
        return items.reset_index(drop=True)
    rows = list(items)
    bad = [i for i, r in enumerate(rows) if len(r) != 3]
    if bad:
        raise ValueError(f"triplets must be (content, style, stylized); row {bad[0]} has {len(rows[bad[0]])} items")
    return pd.DataFrame({c: [r[i] for r in rows] for i, c in enumerate(TRIPLET_COLUMNS)})


def coherence(stylized: ImageLike, content: ImageLike, color: Color = "rgb") -> float:
    """C = SSIM(stylised, content) (Yeh et al. 2018; SSIM of Wang et al. 2004), in float64.

    The content image is resized to the stylised image's size when they differ.
    """
    x = load_image(stylized)
    c = load_image(content).to(x.device)
    if c.shape[-2:] != x.shape[-2:]:
        c = F.interpolate(c[None], size=x.shape[-2:], mode="bilinear", antialias=True, align_corners=False)[0]
    return ssim(x, c.clamp(0, 1), color)


def effectiveness(stylized: ImageLike, style: ImageLike, config: ECConfig = ECConfig()) -> float:
    """E of one pair; loads the encoder on each call (use :class:`ECEvaluator` for many pairs)."""
    return ECEvaluator(config).effectiveness(stylized, style)


def read_triplets(csv_path: str | os.PathLike) -> pd.DataFrame:
    """A triplet CSV (columns content, style, stylized[, method, ...]) with paths made absolute.

    Relative paths are taken relative to the CSV's folder, so a run directory can be moved whole.
    """
    return read_path_table(csv_path, TRIPLET_COLUMNS, TRIPLET_COLUMNS, "triplet")


def match_triplets(content: str | os.PathLike, style: str | os.PathLike, stylized: str | os.PathLike,
                   method: str | None = None) -> pd.DataFrame:
    """Triplet table from three paths: files, or folders matched to the stylised files by file stem.

    With a stylised folder, each image in it is paired with the file of the same stem (any image
    extension) in the content and style folders; a content or style *file* applies to every row.
    ``method`` fills the method column (default: the stylised folder's name, or "stylized").
    """
    content, style, stylized = Path(content), Path(style), Path(stylized)
    for p in (content, style, stylized):
        if not p.exists():
            raise FileNotFoundError(f"not found: {p}")
    if stylized.is_file():
        if content.is_dir() or style.is_dir():
            raise ValueError("with a single --stylized file, --content and --style must be files too")
        rows = [(content, style, stylized)]
        default_method = "stylized"
    else:
        targets = sorted(p for p in stylized.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not targets:
            raise ValueError(f"{stylized}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        rows = [(_partner(content, t.stem), _partner(style, t.stem), t) for t in targets]
        default_method = stylized.name
    table = pd.DataFrame([[str(c), str(s), str(x)] for c, s, x in rows], columns=list(TRIPLET_COLUMNS))
    table["method"] = method or default_method
    return table


def _partner(where: Path, stem: str) -> Path:
    if where.is_file():
        return where
    found = [p for p in where.iterdir() if p.stem == stem and p.suffix.lower() in IMAGE_SUFFIXES]
    if len(found) != 1:
        what = "no image" if not found else f"{len(found)} images"
        raise ValueError(f"{where}: {what} named {stem}.* to pair with the stylised {stem}")
    return found[0]
