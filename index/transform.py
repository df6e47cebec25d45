"""Fitted per-descriptor search transform: centre, optionally whiten, L2-normalise.

Centring by the catalogue mean removes the direction every video shares (CNN features
are non-negative, so raw cosines crowd near 1), which makes cosine similarity
discriminative. Whitening ("std": per-dimension unit variance, "pca": decorrelate and
equalise variance) is opt-in because it also amplifies low-variance noise directions.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ._io import atomic_open

Whiten = Literal["none", "std", "pca"]
WHITEN_OPTIONS: tuple[str, ...] = get_args(Whiten)
_FORMAT = "styleaxis.transform/1"
_NORM_FLOOR = 1e-12


@dataclass(frozen=True, eq=False)
class SearchTransform:
    """Maps raw descriptor vectors (n, D) to unit-norm search vectors.

    y = normalise(((x - mean) * scale) @ components); `scale` is set for whiten="std",
    `components` (D, k, whitening folded in) for whiten="pca".
    """

    whiten: Whiten
    mean: np.ndarray
    scale: np.ndarray | None = None
    components: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.whiten not in WHITEN_OPTIONS:
            raise ValueError(f"whiten must be one of {WHITEN_OPTIONS}, got {self.whiten!r}")
        if self.mean.ndim != 1:
            raise ValueError(f"transform mean must be 1-D, got shape {self.mean.shape}")
        if self.scale is not None and self.scale.shape != self.mean.shape:
            raise ValueError(f"transform scale shape {self.scale.shape} != mean shape {self.mean.shape}")
        if self.components is not None and self.components.shape[:1] != self.mean.shape:
            raise ValueError(
                f"transform components shape {self.components.shape} does not start with dim {self.dim_in}"
            )

    @property
    def dim_in(self) -> int:
        """Raw descriptor dimension the transform accepts."""
        return int(self.mean.shape[0])

    @property
    def dim_out(self) -> int:
        """Dimension of the transformed vectors."""
        return self.dim_in if self.components is None else int(self.components.shape[1])

    @classmethod
    def fit(cls, x: np.ndarray, whiten: Whiten = "none", eps: float = 1e-6) -> SearchTransform:
        """Fit on the catalogue matrix `x` (n, D).

        Dimensions/components with variance <= eps carry no signal and are dropped. Statistics
        are accumulated in float64 over row chunks, so extra memory is O(D^2), not O(n D).
        """
        data = np.asarray(x)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"fit needs a non-empty (n, D) matrix, got shape {data.shape}")
        mean = data.mean(axis=0, dtype=np.float64)
        f32 = np.float32
        if whiten == "none":
            return cls(whiten, mean.astype(f32))
        if whiten == "std":
            std = np.sqrt(sum((c * c).sum(axis=0) for c in _centred_chunks(data, mean)) / len(data))
            scale = np.divide(1.0, std, out=np.zeros_like(std), where=std > eps)
            return cls(whiten, mean.astype(f32), scale=scale.astype(f32))
        if whiten == "pca":
            if len(data) <= data.shape[1]:
                # n points whitened in their own (n-1)-dim span form a regular simplex:
                # every pair ends up equally similar, so the search space carries no information.
                raise ValueError(
                    f"PCA whitening needs more videos than dimensions, got n={len(data)} <= D={data.shape[1]}; "
                    "use whiten='none' or 'std'"
                )
            # Covariance eigendecomposition: O(n D^2 + D^3), fine for D <= 2048.
            cov = sum(c.T @ c for c in _centred_chunks(data, mean)) / max(len(data) - 1, 1)
            var, vecs = np.linalg.eigh(cov)
            keep = np.flatnonzero(var > eps)[::-1]  # descending variance
            if keep.size == 0:
                raise ValueError("cannot PCA-whiten: the catalogue vectors have no variance")
            components = vecs[:, keep] / np.sqrt(var[keep])
            return cls(whiten, mean.astype(f32), components=components.astype(f32))
        raise ValueError(f"whiten must be one of {WHITEN_OPTIONS}, got {whiten!r}")

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Transform raw vectors (n, D) or one vector (D,) into unit-norm float32 search vectors."""
        arr = np.asarray(x, dtype=np.float32)
        rows = arr.reshape(1, -1) if arr.ndim == 1 else arr
        if rows.ndim != 2 or rows.shape[1] != self.dim_in:
            raise ValueError(f"transform expects vectors of dim {self.dim_in}, got shape {arr.shape}")
        y = rows - self.mean
        if self.scale is not None:
            y = y * self.scale
        if self.components is not None:
            y = y @ self.components
        y = l2_normalize(y)
        return y[0] if arr.ndim == 1 else y

    def checksum(self) -> str:
        """sha256 over the parameters (not the file bytes), so it is independent of npz encoding."""
        digest = hashlib.sha256(f"{_FORMAT}/{self.whiten}".encode())
        for name, arr in self._arrays().items():
            digest.update(f"/{name}:{arr.dtype.str}:{arr.shape}".encode())
            digest.update(np.ascontiguousarray(arr).tobytes())
        return digest.hexdigest()

    def save(self, path: Path) -> str:
        """Write atomically as .npz with the checksum embedded; returns the checksum."""
        checksum = self.checksum()
        with atomic_open(Path(path)) as f:
            np.savez(f, whiten=np.str_(self.whiten), checksum=np.str_(checksum), **self._arrays())
        return checksum

    @classmethod
    def load(cls, path: Path) -> SearchTransform:
        """Read a transform written by `save`, refusing it if its embedded checksum does not match."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            stored = str(arrays.pop("checksum"))
            transform = cls(whiten=str(arrays.pop("whiten")), **arrays)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable search transform ({exc})") from exc
        actual = transform.checksum()
        if actual != stored:
            raise ValueError(f"{path}: transform checksum mismatch: stored {stored}, computed {actual}")
        return transform

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"mean": self.mean, "scale": self.scale, "components": self.components}
        return {name: arr for name, arr in arrays.items() if arr is not None}


def _centred_chunks(data: np.ndarray, mean: np.ndarray, rows: int = 8192) -> Iterator[np.ndarray]:
    for start in range(0, len(data), rows):
        yield data[start : start + rows].astype(np.float64) - mean


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; all-zero rows (a video equal to the mean) stay zero."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, _NORM_FLOOR)).astype(np.float32, copy=False)
