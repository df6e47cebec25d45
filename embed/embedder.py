"""The Embedder: RGB frames of any size in, one float32 vector per frame and descriptor out.

Frames are resized by one policy (short side S, optional centre crop), grouped by their resized
shape so each group is one batch, and every encoder runs once per batch for all descriptors that
use it. The models' identity (registry id + sha256) is returned with the vectors so it can travel
into Parquet and index manifests.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .descriptors import VGG_DESCRIPTORS, Descriptor, get_descriptor
from .effnet import EffNetEncoder
from .images import resize_short_side
from .registry import load_model, resolve_weights

__all__ = ["EmbedConfig", "Embedder", "video_vector"]

#: the style predictor sees a centre-cropped square of this side, as it was trained.
PREDICTOR_SIDE = 256
#: frames per forward pass on CUDA when EmbedConfig.batch_size is 0
AUTO_CUDA_BATCH = 64
_AUTOCAST = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class EmbedConfig:
    """How frames are embedded.

    Attributes:
        descriptors: output columns to compute (see ``styleaxis.embed.descriptors``). The default is what
            the default index axes read (``style_head``, ``content``, ``content_head``: one EfficientNet pass)
            plus the cheap ``style_cin`` and ``style_eff`` (the former style default, a mean of taps already
            computed);
            the VGG statistics (``style_in``, ``style_gram``) cost most and are opt-in.
        short_side: frames are resized so their short side is this many pixels.
        center_crop: crop the resized frame to a centred square.
        batch_size: frames per forward pass; 0 (the default) picks by device: 1 on a CPU, where a frame's
            activations then stay in cache (1.5-2.6x the frames/s of batch 8 and 2.4-2.9x that of batch 32 for
            the default descriptors on the 2-core machine, over three runs: bench/RESULTS.md), 64 on CUDA.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` (the reference), or ``"fp16"``/``"bf16"`` autocast for the encoders
            (descriptor arithmetic stays fp32).
        channels_last: NHWC memory format for batches and models (faster convolutions on CUDA, and on
            the CPU: 1.07-1.12x alone, 1.13-1.25x with ``fold_bn``, for the default descriptors at batch 1).
        fold_bn: fold the EfficientNet's batch norms into its convolutions (same function up to float
            rounding: cosine to the unfolded model 1.000000 on every default descriptor; bench/RESULTS.md).
        compile: ``torch.compile`` each encoder (a compile per input shape on first use).
        style_encoder: the VGG behind the VGG descriptors (``style_in``, ``style_gram``):
            ``vgg16-hed`` (offline) or ``vgg19`` (when its weights are present).
    """

    descriptors: tuple[str, ...] = ("style_head", "style_cin", "style_eff", "content", "content_head")
    short_side: int = 256
    center_crop: bool = False
    batch_size: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = True
    fold_bn: bool = True
    compile: bool = False
    style_encoder: str = "vgg16-hed"

    def __post_init__(self) -> None:
        if self.short_side < 32:
            raise ValueError(f"short_side must be >= 32 pixels, got {self.short_side}")
        if self.batch_size < 0:
            raise ValueError(f"batch_size must be >= 1, or 0 to pick by device, got {self.batch_size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in _AUTOCAST:
            raise ValueError(f"precision must be one of {', '.join(_AUTOCAST)}, got {self.precision!r}")
        if self.style_encoder not in ("vgg16-hed", "vgg19"):
            raise ValueError(f"style_encoder must be vgg16-hed or vgg19, got {self.style_encoder!r}")
        for name in self.descriptors:
            get_descriptor(name)


def _to_tensor(frame: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HxWx3 uint8 (or float 0..1) RGB -> 3xHxW float32 in 0..1."""
    t = torch.as_tensor(np.asarray(frame)) if not isinstance(frame, torch.Tensor) else frame
    if t.dim() != 3 or t.shape[-1] != 3:
        raise ValueError(f"a frame must be HxWx3 RGB, got shape {tuple(t.shape)}")
    t = t.permute(2, 0, 1)
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def video_vector(keyframe_vectors: np.ndarray) -> np.ndarray:
    """A video's vector: the mean of its L2-normalised keyframe vectors (float64 sum, float32 out).

    Normalising first gives every keyframe the same weight whatever its feature magnitude.
    """
    m = np.asarray(keyframe_vectors, dtype=np.float64)
    m = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    return m.mean(axis=0).astype(np.float32)


class Embedder:
    """Embeds batches of frames with every configured descriptor in one pass per encoder."""

    def __init__(self, config: EmbedConfig | None = None) -> None:
        self.config = config or EmbedConfig()
        self.descriptors: list[Descriptor] = [get_descriptor(n) for n in self.config.descriptors]
        if self.config.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(self.config.device)
        #: frames per forward pass (config.batch_size, or the device's default when that is 0)
        self.batch_size = self.config.batch_size or (1 if self.device.type == "cpu" else AUTO_CUDA_BATCH)
        self._models: dict[str, torch.nn.Module] = {}
        # encoder id -> the union of taps its descriptors need (one pass per encoder and batch)
        self._taps: dict[str, tuple[str, ...]] = {}
        for d in self.descriptors:
            model = self._model_of(d)
            self._taps[model] = tuple(dict.fromkeys(self._taps.get(model, ()) + d.taps))

    def _model_of(self, d: Descriptor) -> str:
        return self.config.style_encoder if d.name in VGG_DESCRIPTORS else d.model

    @property
    def identity(self) -> dict[str, Any]:
        """Model ids with sha256, descriptor dims and the resize policy: what makes vectors comparable."""
        models = dict.fromkeys(m for d in self.descriptors for m in (self._model_of(d), *d.extra_models))
        return {
            "models": {m: resolve_weights(m)[1] for m in models},
            "descriptors": {
                d.name: {"dim": d.dim, "model": self._model_of(d), "taps": list(d.taps), "summary": d.summary}
                for d in self.descriptors
            },
            "short_side": self.config.short_side,
            "center_crop": self.config.center_crop,
        }

    def load(self) -> "Embedder":
        """Load (and hash-check) every encoder now instead of on first use."""
        for name in self._taps:
            self._model(name)
        return self

    def _model(self, name: str) -> torch.nn.Module:
        if name not in self._models:
            model = load_model(name).to(self.device)
            if self.config.fold_bn and isinstance(model, EffNetEncoder):
                model = model.fold_batch_norm()
            if self.config.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self._models[name] = torch.compile(model) if self.config.compile else model
        return self._models[name]

    def _bottleneck(self, batch: torch.Tensor) -> torch.Tensor:
        """The style predictor on the centred square of each frame, resized to its training size."""
        side = min(batch.shape[-2:])
        top, left = (batch.shape[-2] - side) // 2, (batch.shape[-1] - side) // 2
        square = batch[..., top : top + side, left : left + side]
        if side != PREDICTOR_SIDE:
            square = F.interpolate(square, size=(PREDICTOR_SIDE, PREDICTOR_SIDE), mode="bilinear",
                                   antialias=True, align_corners=False)
        return self._model("magenta-predictor")(square)

    def _run_encoder(self, name: str, batch: torch.Tensor, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if name in ("magenta-predictor", "magenta-transformer"):
            if "bottleneck" not in cache:
                cache["bottleneck"] = self._bottleneck(batch)
            if name == "magenta-predictor":
                return {"bottleneck": cache["bottleneck"]}
            return {"cin_params": self._model(name).norm_params(cache["bottleneck"].float())}
        return self._model(name)(batch, self._taps[name])

    @torch.inference_mode()
    def embed_batch(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """Embed a (N, 3, H, W) RGB 0..1 batch already resized: one pass per encoder."""
        batch = batch.to(self.device)
        if self.config.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        dtype = _AUTOCAST[self.config.precision]
        out: dict[str, np.ndarray] = {}
        cache: dict[str, torch.Tensor] = {}
        for name in self._taps:
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                taps = self._run_encoder(name, batch, cache)
            taps = {k: v.float() for k, v in taps.items()}
            for d in self.descriptors:
                if self._model_of(d) == name:
                    out[d.name] = d.compute(taps).cpu().numpy().astype(np.float32, copy=False)
        return out

    def embed(self, frames: Sequence[np.ndarray | torch.Tensor]) -> dict[str, np.ndarray]:
        """Embed frames (HxWx3 RGB, uint8 or float 0..1, any sizes) -> {descriptor: (N, dim) float32}.

        Frames are grouped by resized shape so that a batch holds one shape; the output keeps
        the input order.
        """
        n = len(frames)
        result = {d.name: np.zeros((n, d.dim), dtype=np.float32) for d in self.descriptors}
        groups: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for i, frame in enumerate(frames):
            img = resize_short_side(_to_tensor(frame), self.config.short_side, self.config.center_crop)
            groups[tuple(img.shape[1:])].append((i, img))
        bs = self.batch_size
        for items in groups.values():
            for start in range(0, len(items), bs):
                chunk = items[start : start + bs]
                vecs = self.embed_batch(torch.stack([img for _, img in chunk]))
                idx = [i for i, _ in chunk]
                for name, v in vecs.items():
                    result[name][idx] = v
        return result
