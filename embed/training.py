"""What the training loops share: image folders sampled as random crops, and checkpoints that resume.

A checkpoint is one ``torch.save`` dict (model, optimizer, step, RNG states, loss history) read back with
``weights_only=True``, written atomically, with its sha256 beside it (``step_0001000.pt.sha256``) and a
JSON sidecar (``step_0001000.json``: config, step, sha256, losses). Resuming verifies the hash, restores
every state and continues bit for bit where the interrupted run would have been (on the same device
and thread count), because all training randomness flows from generators stored in the checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from .images import resize_short_side
from .registry import load_checkpoint, load_model, resolve_weights, save_checkpoint

__all__ = [
    "IMAGE_SUFFIXES", "list_images", "load_rgb", "to_tensor", "to_uint8", "CropSampler", "content_style_crops",
    "Checkpoints",
    "write_text", "write_json", "save_image_grid", "Trainer", "fit", "export_model", "RESUMABLE_CHANGES",
    "TrainResult", "train_and_export", "save_arch_state",
    "read_arch_state", "supcon_loss", "items_digest", "check_items", "encode_files", "cached",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); an empty or missing folder is an error."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return paths


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """An image file as RGB (EXIF orientation applied, grey and alpha images converted)."""
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """PIL image or HxWx3 uint8 array -> (1, 3, H, W) float RGB in 0..1."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {arr.shape} and dtype {arr.dtype}")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float().contiguous() / 255.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) RGB in 0..1 -> (N, H, W, 3) uint8, clamped and rounded."""
    return (images.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


class CropSampler:
    """Random crops from an image folder, the AdaIN recipe: resize the short side to ``resize``, then a
    random ``crop`` x ``crop`` window (Huang & Belongie 2017, sec. 6.2: 512 then 256).

    All randomness comes from ``generator`` (image choice and crop offset), so a run is reproducible
    and its state can be checkpointed. Resized images are cached (``cache`` most recent).
    """

    def __init__(self, folder: str | os.PathLike[str], resize: int, crop: int, generator: torch.Generator,
                 cache: int = 64) -> None:
        if crop > resize:
            raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
        self.paths = list_images(folder)
        self.resize, self.crop, self.generator = resize, crop, generator
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_size = cache

    def _image(self, index: int) -> torch.Tensor:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        image = resize_short_side(to_tensor(load_rgb(self.paths[index]))[0], self.resize)
        self._cache[index] = image
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return image

    def sample(self, n: int) -> torch.Tensor:
        """``n`` random crops, (n, 3, crop, crop) in 0..1."""
        indices = torch.randint(len(self.paths), (n,), generator=self.generator).tolist()
        crops = []
        for index in indices:
            image = self._image(index)
            h, w = image.shape[-2:]
            top = int(torch.randint(h - self.crop + 1, (1,), generator=self.generator))
            left = int(torch.randint(w - self.crop + 1, (1,), generator=self.generator))
            crops.append(image[:, top: top + self.crop, left: left + self.crop])
        return torch.stack(crops)


def content_style_crops(
    content_dir: str | os.PathLike[str], style_dir: str | os.PathLike[str], resize: int, crop: int, seed: int,
) -> tuple[dict[str, torch.Generator], CropSampler, CropSampler, tuple[torch.Tensor, torch.Tensor]]:
    """Seeded crop streams for trainers that see content and style images (AdaIN, style swap's inverse
    network): (generators to checkpoint, content sampler, style sampler, a fixed preview pair of 2 content
    and 2 style crops). The preview pair comes from a generator of its own, so previews never shift the
    training stream."""
    generators = {"content": torch.Generator().manual_seed(seed + 1), "style": torch.Generator().manual_seed(seed + 2)}
    content = CropSampler(content_dir, resize, crop, generators["content"])
    style = CropSampler(style_dir, resize, crop, generators["style"])
    preview_rng = torch.Generator().manual_seed(seed + 3)
    preview = (CropSampler(content_dir, resize, crop, preview_rng).sample(2),
               CropSampler(style_dir, resize, crop, preview_rng).sample(2))
    return generators, content, style, preview


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Checkpoints:
    """The checkpoint folder of one training run.

    Attributes:
        folder: where ``step_NNNNNNN.pt`` files and their ``.sha256`` / ``.json`` sidecars live.
        keep: how many of the latest checkpoints to keep (older ones are deleted after a save).
    """

    folder: Path
    keep: int = 3

    def path(self, step: int) -> Path:
        return self.folder / f"step_{step:07d}.pt"

    def save(self, step: int, state: dict[str, Any], config: Any, info: dict[str, Any]) -> Path:
        """Write ``state`` for ``step`` atomically, then its sha256 and JSON sidecar; prune old ones."""
        path = save_checkpoint(state, self.path(step))
        export_model(path, {"step": step, "config": asdict(config), **info})
        for old in self.steps()[: -self.keep]:
            for p in (self.path(old), self.path(old).with_name(self.path(old).name + ".sha256"),
                      self.path(old).with_suffix(".json")):
                p.unlink(missing_ok=True)
        return path

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints present (those with a sha256 file), ascending."""
        if not self.folder.is_dir():
            return []
        return sorted(int(p.name[5:12]) for p in self.folder.glob("step_???????.pt.sha256")
                      if self.path(int(p.name[5:12])).is_file())

    def load(self, step: int) -> dict[str, Any]:
        """The state saved at ``step``, after checking the file against its recorded sha256."""
        path = self.path(step)
        expected = path.with_name(path.name + ".sha256").read_text().split()[0]
        digest = _sha256(path)
        if digest != expected:
            raise ValueError(f"{path}: sha256 {digest} does not match the recorded {expected}; "
                             "the checkpoint is damaged")
        return load_checkpoint(path)

    def config_of(self, step: int) -> dict[str, Any]:
        """The training config recorded beside the checkpoint at ``step``."""
        return json.loads(self.path(step).with_suffix(".json").read_text())["config"]


def save_image_grid(rows: list[torch.Tensor], path: Path) -> None:
    """Save equally sized (N, 3, H, W) batches as a PNG grid, one batch per column (atomic write)."""
    columns = [torch.cat(list(batch.detach().cpu().clamp(0, 1)), dim=1) for batch in rows]
    grid = to_uint8(torch.cat(columns, dim=2)[None])[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    Image.fromarray(grid).save(tmp)
    os.replace(tmp, path)


class Trainer:
    """The mutable state of one training run, saved and restored whole.

    Subclasses set ``model``, ``optimizer``, optionally ``scheduler``, and ``generators`` (every source of
    training randomness) in ``__init__`` and implement :meth:`losses` (named loss terms of one batch,
    ``"total"`` first) and :meth:`preview` (image batches to show side by side).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    generators: dict[str, torch.Generator]

    def __init__(self, config: Any) -> None:
        """Keep ``config`` and load its frozen loss network (``config.encoder``) on ``config.device``."""
        self.config = config
        self.device = torch.device(config.device)
        self.encoder = load_model(config.encoder).to(self.device).requires_grad_(False)
        self.step = 0
        self.history: list[list[float]] = []
        self.columns: tuple[str, ...] = ()

    def losses(self) -> dict[str, torch.Tensor]:
        """Sample a batch and return its loss terms, the weighted ``total`` first."""
        raise NotImplementedError

    def preview(self) -> list[torch.Tensor]:
        """Equally sized image batches (content, style, output, ...) for a preview grid."""
        raise NotImplementedError

    def train_step(self) -> dict[str, float]:
        """One optimisation step; appends the loss terms to the history and returns them."""
        terms = self.losses()
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        self.columns = tuple(terms)
        row = {k: float(v.detach()) for k, v in terms.items()}
        self.history.append(list(row.values()))
        return row

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {}, "step": self.step,
                "rng": {**{k: g.get_state() for k, g in self.generators.items()}, "torch": torch.get_rng_state()},
                "history": torch.tensor(self.history, dtype=torch.float64), "columns": list(self.columns)}

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        for name, generator in self.generators.items():
            generator.set_state(state["rng"][name])
        torch.set_rng_state(state["rng"]["torch"])
        self.history = state["history"].tolist()
        self.columns = tuple(state["columns"])


def _check_resumable(saved: dict[str, Any], config: Any, resumable: frozenset[str], where: Path) -> None:
    current = json.loads(json.dumps(asdict(config), default=str))  # as the JSON sidecar holds it
    changed = [f.name for f in fields(config) if f.name not in resumable and saved.get(f.name) != current[f.name]]
    if changed:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r}, now {current[k]!r}" for k in changed)
        raise ValueError(f"{where} holds a run with a different config ({details}); "
                         "use another out_dir or the same settings")


def fit(trainer: Trainer, config: Any, out_dir: Path, identity: dict[str, Any], progress: bool = True,
        resume: bool = True, resumable: frozenset[str] = frozenset(), desc: str = "train") -> dict[str, Any]:
    """Run ``trainer`` up to ``config.steps``: resume from the latest checkpoint in ``out_dir/checkpoints``
    (when ``resume``; only fields in ``resumable`` may differ from its config), preview every
    ``config.preview_every`` steps into ``out_dir/previews``, checkpoint every ``config.checkpoint_every``
    steps, on Ctrl-C and at the end, and write ``out_dir/losses.json``. Returns the summary recorded in
    the sidecars (``identity`` names the frozen networks, e.g. the encoder and its sha256).
    """
    checkpoints = Checkpoints(out_dir / "checkpoints")
    done = checkpoints.steps()
    if done and resume:
        _check_resumable(checkpoints.config_of(done[-1]), config, resumable, checkpoints.folder)
        trainer.restore(checkpoints.load(done[-1]))
    started, start_step = time.perf_counter(), trainer.step

    def info() -> dict[str, Any]:
        recent = trainer.history[-50:]
        mean = [sum(col) / len(recent) for col in zip(*recent)] if recent else []
        return {**identity, "loss_mean_last_50": dict(zip(trainer.columns, mean)),
                "seconds_this_session": round(time.perf_counter() - started, 1),
                "steps_this_session": trainer.step - start_step}

    def save() -> None:
        if trainer.step and trainer.step not in checkpoints.steps():
            checkpoints.save(trainer.step, trainer.state(), config, info())

    bar = tqdm(total=config.steps, initial=trainer.step, disable=not progress, desc=desc, unit="step")
    try:
        while trainer.step < config.steps:
            row = trainer.train_step()
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items()})
            if config.preview_every and trainer.step % config.preview_every == 0:
                trainer.model.eval()
                with torch.no_grad():
                    save_image_grid(trainer.preview(), out_dir / "previews" / f"step_{trainer.step:07d}.png")
                trainer.model.train()
            if config.checkpoint_every and trainer.step % config.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        bar.close()
    save()
    write_json(out_dir / "losses.json", {"columns": list(trainer.columns), "rows": trainer.history})
    return info()


def export_model(path: Path, sidecar: dict[str, Any]) -> str:
    """Record an exported model file: its sha256 in ``<file>.sha256`` and ``sidecar`` (plus file and
    sha256) in ``<file stem>.json``. Returns the sha256."""
    digest = _sha256(path)
    write_text(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    write_json(path.with_suffix(".json"), {"file": path.name, "sha256": digest, **sidecar})
    return digest


#: config fields a resumed run may change; any other difference from the checkpoint's config is refused
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "preview_every", "device"})


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: the exported network file, its sha256, the last step and the loss
    history (one row per step, the trainer's loss columns)."""

    model_path: Path
    sha256: str
    step: int
    history: torch.Tensor


def train_and_export(trainer: Trainer, config: Any, save: Callable[[torch.nn.Module, Path], Path],
                     filename: str, progress: bool = True, resume: bool = True, desc: str = "train",
                     identity: Mapping[str, Any] | None = None, sidecar: Mapping[str, Any] | None = None) -> TrainResult:
    """Run :func:`fit` (resume, checkpoints, previews), then write the network with ``save(model, out_dir /
    filename)`` and record its sha256 and sidecar (step, ``sidecar``, config, losses, the identity of
    ``config.encoder``, the frozen network it trains against, plus ``identity``). ``config`` is a frozen
    dataclass with at least ``out_dir`` and ``encoder``."""
    out = Path(config.out_dir)
    who = {"encoder": config.encoder, "encoder_sha256": resolve_weights(config.encoder)[1], **(identity or {})}
    summary = fit(trainer, config, out, who, progress=progress, resume=resume, resumable=RESUMABLE_CHANGES, desc=desc)
    path = save(trainer.model, out / filename)
    digest = export_model(path, {"step": trainer.step, **(sidecar or {}), "config": asdict(config), **summary})
    return TrainResult(path, digest, trainer.step, torch.tensor(trainer.history))


def save_arch_state(module: torch.nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write a small model as ``{"arch": module.arch, "state_dict": fp32 CPU tensors}``, atomically: the
    file format of the trained heads, read back by :func:`read_arch_state` without unpickling code."""
    state = {k: v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}
    return save_checkpoint({"arch": dict(module.arch), "state_dict": state}, path)


def read_arch_state(path: str | os.PathLike[str], build: Any, what: str) -> torch.nn.Module:
    """The module ``build(**arch)`` with the state of a file written by :func:`save_arch_state`, in eval
    mode; a file of another kind or version is a ValueError naming ``path`` and ``what`` it should be."""
    data = load_checkpoint(path)
    if not isinstance(data, dict) or set(data) != {"arch", "state_dict"}:
        raise ValueError(f"{path}: expected a {what} file with keys arch, state_dict, "
                         f"got {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    try:
        module = build(**data["arch"])
        module.load_state_dict(data["state_dict"], strict=True)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a {what} of this version: {exc}") from None
    return module.eval()


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L^sup_out, eq. 2) of unit vectors z (N, D)
    with integer labels (N,); anchors without a positive are skipped."""
    n = len(z)
    logits = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positive.sum(dim=1)
    has = count > 0
    if not bool(has.any()):
        raise ValueError("supcon_loss: no item of the batch has a positive (same label)")
    per_anchor = -log_prob.masked_fill(~positive, 0.0).sum(dim=1)[has] / count[has]
    return per_anchor.mean()


def items_digest(items: Sequence[tuple[str, str, str]]) -> str:
    """sha256 over each training image's bytes and its two labels, in order: what a head was trained on,
    wherever its catalogue lies (hashing paths made two copies of one catalogue differ), and the key of the
    trainers' feature caches (an image rewritten under the same name changes it)."""
    digest = hashlib.sha256()
    for path, first, second in items:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
        digest.update(json.dumps([str(first), str(second)]).encode())
    return digest.hexdigest()


def check_items(items: Sequence[tuple[str, str, str]], what: str) -> None:
    """Labelled training images ``(path, label, label)``: an empty list or absent files are errors naming ``what``."""
    if not items:
        raise ValueError(f"{what}: no training items")
    missing = [p for p, _, _ in items if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} training images not found, e.g. {missing[0]}")


def encode_files(paths: Sequence[str], encode: Callable[[torch.Tensor], torch.Tensor], short_side: int,
                 device: str = "cpu", progress: bool = True) -> list[torch.Tensor]:
    """``encode(image)`` of each image file, read and resized to ``short_side`` as the Embedder resizes it
    ((1, 3, H, W) on ``device``, inference mode), moved to the CPU: the trainers' frozen-encoder pass."""
    out = []
    with torch.inference_mode():
        for path in tqdm(paths, disable=not progress, desc="encode", unit="image"):
            image = resize_short_side(to_tensor(load_rgb(path))[0], short_side)[None].to(device)
            out.append(encode(image).cpu())
    return out


def cached(path: Path, digest: str, compute: Callable[[], Any]) -> Any:
    """The value stored at ``path`` under ``digest``, else ``compute()``, stored there atomically first: the
    trainers' caches of frozen-encoder outputs, recomputed whenever ``digest`` (their inputs) changes."""
    if path.is_file():
        data = load_checkpoint(path)
        if isinstance(data, dict) and data.get("digest") == digest:
            return data["value"]
    value = compute()
    save_checkpoint({"digest": digest, "value": value}, path)
    return value
