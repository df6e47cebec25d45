"""Why a result matched: cosine agreement of the parts of an axis vector (descriptors, style taps).

An axis vector is the concatenation of its descriptors' unit-norm blocks (styleaxis.embed.recipe.combine_blocks),
so each descriptor is a column slice of it. Where a descriptor's transform works per dimension
(whiten "none" or "std"), its columns keep their meaning and can be split further: ``style_in`` is
[mean, std] of each AdaIN tap (relu1_1..relu4_1 with 64/128/256/512 channels), so the slice of one
tap gives that tap's own cosine ("the colours agree, the textures less"). PCA-whitened
descriptors mix columns and are reported as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from .manifest import DescriptorInfo

_VGG_TAP = re.compile(r"^relu(\d)_\d$")
_PER_DIMENSION = ("none", "std")


def vgg_tap_channels(tap: str) -> int | None:
    """Channels of a VGG tap (64 in block 1, doubling to 512 from block 4 on), None for other names."""
    match = _VGG_TAP.match(tap)
    return None if match is None else min(64 * 2 ** (int(match.group(1)) - 1), 512)


def axis_parts(
    descriptors: Sequence[str], infos: Mapping[str, DescriptorInfo], dims_out: Mapping[str, int]
) -> dict[str, slice]:
    """Named column slices of an axis vector: one per descriptor, plus one per tap where that is meaningful.

    A descriptor gets per-tap parts when its transform is per-dimension and its dim is exactly
    [mean, std] of each tap's channels (2 * sum of the channels), as AdaIN statistics are laid out.
    """
    parts: dict[str, slice] = {}
    start = 0
    for name in descriptors:
        info, width = infos[name], dims_out[name]
        parts[name] = slice(start, start + width)
        channels = [vgg_tap_channels(tap) for tap in info.taps]
        if info.whiten in _PER_DIMENSION and None not in channels and 2 * sum(channels) == width == info.dim:
            offset = start
            for tap, c in zip(info.taps, channels):
                parts[f"{name}/{tap}"] = slice(offset, offset + 2 * c)
                offset += 2 * c
        start += width
    return parts


def part_cosines(query: np.ndarray, rows: np.ndarray, parts: Mapping[str, slice]) -> dict[str, np.ndarray]:
    """Cosine of each part between one query axis vector (D,) and candidate axis vectors (n, D)."""
    out = {}
    for name, cols in parts.items():
        q, y = query[cols], rows[:, cols]
        norms = np.linalg.norm(y, axis=1) * float(np.linalg.norm(q))
        out[name] = (y @ q) / np.maximum(norms, 1e-12)
    return out


def describe(
    axes: Sequence[str],
    sims: Mapping[str, float],
    calibrated: Mapping[str, float],
    parts: Mapping[str, float],
    primary: str,
    parts_of: Mapping[str, Sequence[str]],
    top: int = 2,
) -> str:
    """A short human reason: each axis's cosine and calibrated score, and the parts of the primary
    axis that agree most (taps when there are any, else descriptors)."""
    pieces = []
    for axis in axes:
        text = f"{axis} {sims[axis]:.2f} (z {calibrated[axis]:+.1f})"
        names = list(parts_of[axis])
        if axis == primary and len(names) > 1:
            taps = [name for name in names if "/" in name]
            ranked = sorted(taps or names, key=lambda name: -parts[name])[:top]
            text += " agrees most on " + ", ".join(f"{name} {parts[name]:.2f}" for name in ranked)
        pieces.append(text)
    return "; ".join(pieces)
