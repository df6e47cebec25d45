"""Image loading for the metrics (tensors, arrays, PIL images and paths become one tensor layout), and
the file helpers of the eval package: CSV tables of image paths, atomic writes.

Every metric in ``styleaxis.eval`` accepts any :data:`ImageLike` and converts it here to a float32
``(C, H, W)`` tensor in 0..1 with C = 3 (RGB) or 1 (grey). Layout conventions follow each library:
torch tensors are channels-first (``(C, H, W)``, ``(1, C, H, W)`` or ``(H, W)``), NumPy arrays are
channels-last as PIL and scikit-image give them (``(H, W, C)`` or ``(H, W)``). Integer images are
scaled by their type's maximum (uint8 / 255, uint16 / 65535); float images must already be in 0..1.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Union

import numpy as np
import torch
import pandas as pd
from PIL import Image

__all__ = ["ImageLike", "Color", "LUMA_WEIGHTS", "load_image", "to_color", "to_hwc_uint8", "atomic_write"]

ImageLike = Union[torch.Tensor, np.ndarray, Image.Image, str, os.PathLike]
Color = Literal["rgb", "grey"]

#: ITU-R BT.709 luma weights, the ones ``skimage.color.rgb2gray`` uses, so grey SSIM matches it.
LUMA_WEIGHTS: tuple[float, float, float] = (0.2125, 0.7154, 0.0721)

# float inputs may overshoot 0..1 by rounding (a blend, a resize); beyond this they are a mistake
_RANGE_SLACK = 1e-3


def _from_array(arr: np.ndarray, what: str) -> torch.Tensor:
    """(H, W) or (H, W, C) array -> (C, H, W) float32 tensor in 0..1."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"{what}: expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    arr = arr[:, :, :3]  # drop alpha
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        scale = float(np.iinfo(arr.dtype).max)
        return torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32) / scale).permute(2, 0, 1)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what}: pixel type must be uint8, uint16 or float in 0..1, got {arr.dtype}")
    return _check_range(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1), what)


def _check_range(t: torch.Tensor, what: str) -> torch.Tensor:
    lo, hi = float(t.min()), float(t.max())
    if lo < -_RANGE_SLACK or hi > 1.0 + _RANGE_SLACK:
        raise ValueError(
            f"{what}: float pixels must lie in 0..1, got {lo:.4g}..{hi:.4g}; pass uint8 or divide by 255"
        )
    return t.clamp(0.0, 1.0)


def _from_tensor(t: torch.Tensor, what: str) -> torch.Tensor:
    """(H, W), (C, H, W) or (1, C, H, W) tensor -> (C, H, W) float32 in 0..1 (on its own device)."""
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"{what}: expected a (C, H, W), (1, C, H, W) or (H, W) tensor with C in 1, 3, 4, got {tuple(t.shape)}"
        )
    t = t.detach()[:3]
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not t.is_floating_point():
        raise ValueError(f"{what}: tensor type must be uint8 or float in 0..1, got {t.dtype}")
    return _check_range(t.float(), what)


def _from_pil(img: Image.Image) -> torch.Tensor:
    if img.mode in ("L", "LA", "1"):
        return _from_array(np.asarray(img.convert("L")), "PIL image")
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return _from_array(np.asarray(img).astype(np.uint16), "PIL image")
    return _from_array(np.asarray(img.convert("RGB")), "PIL image")


def load_image(image: ImageLike) -> torch.Tensor:
    """Any :data:`ImageLike` -> (C, H, W) float32 tensor in 0..1, C = 1 (grey) or 3 (RGB).

    Paths are opened with PIL (a missing file raises FileNotFoundError naming it); alpha is dropped.
    """
    if isinstance(image, torch.Tensor):
        return _from_tensor(image, "tensor image")
    if isinstance(image, np.ndarray):
        return _from_array(image, "array image")
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        with Image.open(path) as img:
            return _from_pil(img)
    raise TypeError(f"expected a tensor, array, PIL image or path, got {type(image).__name__}")


def to_color(img: torch.Tensor, color: Color) -> torch.Tensor:
    """(..., C, H, W) with C in 1, 3 -> RGB (grey replicated) or grey (BT.709 luma, see LUMA_WEIGHTS)."""
    channels = img.shape[-3]
    if color == "rgb":
        return img.expand(*img.shape[:-3], 3, *img.shape[-2:]) if channels == 1 else img
    if color == "grey":
        if channels == 1:
            return img
        w = torch.tensor(LUMA_WEIGHTS, dtype=img.dtype, device=img.device).view(3, 1, 1)
        return (img * w).sum(dim=-3, keepdim=True)
    raise ValueError(f"color must be 'rgb' or 'grey', got {color!r}")


def to_hwc_uint8(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor in 0..1 -> (H, W, 3) uint8 RGB array, for PIL and the embedder."""
    rgb = to_color(img.detach().float().cpu(), "rgb")
    return (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then rename it over ``path``.

    Readers see the old file or the whole new one, never half of it; on error the temporary file
    is removed. The temporary name keeps ``path``'s suffix because savers pick the format from it.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path



def read_path_table(csv_path: str | os.PathLike, required: Sequence[str], path_columns: Sequence[str],
                    what: str) -> pd.DataFrame:
    """A CSV whose ``required`` columns are all non-empty strings, with ``path_columns`` made absolute
    (relative paths are taken relative to the CSV's folder, so a folder can be moved whole).

    Errors name the file and what was expected: a missing CSV, missing columns, no rows, and the
    first data rows where a required column is empty. ``what`` names the table in those messages.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{what} CSV not found: {csv_path}")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing columns {missing}; expected {', '.join(required)}, "
                         f"got {', '.join(map(str, table.columns))}")
    if table.empty:
        raise ValueError(f"{csv_path}: no rows")
    for column in required:
        empty = table.index[table[column].str.strip() == ""].tolist()
        if empty:
            raise ValueError(f"{csv_path}: column {column!r} is empty in data rows {[i + 1 for i in empty[:5]]}")
    for column in path_columns:
        table[column] = [str(p if p.is_absolute() else csv_path.parent / p) for p in map(Path, table[column])]
    return table
