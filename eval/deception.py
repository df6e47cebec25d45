"""Deception rate: the share of stylised images that a style classifier assigns to the target style.

Sanakoyeu et al. (2018, "A Style-Aware Content Loss for Real-time HD Style Transfer") measure it with a VGG16
trained to recognise 624 WikiArt artists. styleaxis has no such classifier, so this is an optional
metric that needs a labelled set from the caller (e.g. the labelled catalogue): a nearest-centroid
classifier on the ``style_in`` descriptor (AdaIN statistics of VGG16 relu1_1..relu4_1, from
``styleaxis.embed``). Each dimension is z-scored with the training set's mean and std, vectors are
L2-normalised, each style's centroid is the mean of its normalised training vectors, and an image
gets the style whose centroid has the highest cosine. The rate is only as meaningful as that
labelled set: it says "looks like the examples of style s", not "looks like an artist's work".
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from styleaxis.embed.embedder import EmbedConfig, Embedder

from .io import ImageLike, load_image, to_hwc_uint8

__all__ = ["StyleClassifierConfig", "StyleClassifier", "deception_rate"]


@dataclass(frozen=True)
class StyleClassifierConfig:
    """How images are embedded for the classifier (see ``styleaxis.embed.EmbedConfig``)."""

    short_side: int = 256
    batch_size: int = 8
    device: Literal["auto", "cpu", "cuda"] = "auto"


class StyleClassifier:
    """Nearest-centroid style classifier on z-scored, L2-normalised ``style_in`` vectors."""

    def __init__(self, config: StyleClassifierConfig = StyleClassifierConfig()) -> None:
        self.embedder = Embedder(EmbedConfig(descriptors=("style_in",), short_side=config.short_side,
                                             batch_size=config.batch_size, device=config.device))
        self.labels: list[str] = []
        self._mean = self._std = self._centroids = None

    def _vectors(self, images: Sequence[ImageLike]) -> np.ndarray:
        frames = [to_hwc_uint8(load_image(im)) for im in images]
        return self.embedder.embed(frames)["style_in"].astype(np.float64)

    def _normalise(self, v: np.ndarray) -> np.ndarray:
        z = (v - self._mean) / self._std
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    def fit(self, images: Sequence[ImageLike], labels: Sequence[str]) -> "StyleClassifier":
        """Learn one centroid per style label from labelled example images."""
        if len(images) != len(labels):
            raise ValueError(f"fit got {len(images)} images and {len(labels)} labels")
        self.labels = sorted(set(map(str, labels)))
        if len(self.labels) < 2:
            raise ValueError(f"a style classifier needs at least 2 style labels, got {self.labels}")
        v = self._vectors(images)
        self._mean, self._std = v.mean(axis=0), v.std(axis=0) + 1e-8
        z = self._normalise(v)
        lab = np.array([str(x) for x in labels])
        self._centroids = np.stack([z[lab == s].mean(axis=0) for s in self.labels])
        return self

    def predict(self, images: Sequence[ImageLike]) -> list[str]:
        """The style label of each image."""
        if self._centroids is None:
            raise ValueError("StyleClassifier.predict called before fit")
        scores = self._normalise(self._vectors(images)) @ self._centroids.T
        return [self.labels[i] for i in scores.argmax(axis=1)]


def deception_rate(classifier: StyleClassifier, stylized: Sequence[ImageLike], target_styles: Sequence[str]) -> float:
    """Share of stylised images the classifier labels with their target style (Sanakoyeu et al. 2018)."""
    if len(stylized) != len(target_styles) or not stylized:
        raise ValueError(f"deception_rate needs one target per image, got {len(stylized)} images "
                         f"and {len(target_styles)} targets")
    unknown = sorted(set(map(str, target_styles)) - set(classifier.labels))
    if unknown:
        raise ValueError(f"target styles {unknown} are not among the classifier's labels {classifier.labels}")
    predicted = classifier.predict(stylized)
    return float(np.mean([p == str(t) for p, t in zip(predicted, target_styles)]))
