"""Queries by image or video file: decode, embed exactly as the indexed vectors were made, search.

The index records the embedding settings of the run it was built from (descriptors, their VGG,
short side, centre crop); `embed_config_for` turns them back into an EmbedConfig so a file that
is also in the catalogue embeds to (nearly) its indexed vectors. Frames are read by the nightly
job's decoder (styleaxis.media.video.read_frames: the same key frames); the reader is a parameter
so a service can run it elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from styleaxis.embed.descriptors import VGG_DESCRIPTORS
from styleaxis.embed.embedder import EmbedConfig, Embedder, video_vector
from styleaxis.media.video import read_frames

from .manifest import IndexManifest
from .search import Result, Searcher

FrameReader = Callable[[Path], list[np.ndarray]]
"""path -> the file's frames to embed (H x W x 3 uint8 RGB); raises ValueError for unreadable files."""


def embed_config_for(manifest: IndexManifest) -> EmbedConfig:
    """The EmbedConfig that made the indexed vectors: descriptors, VGG variant, short side, centre crop."""
    if not manifest.embed:
        raise ValueError(
            "this index records no embedding settings (built from vectors, not from an embed run), "
            "so files cannot be embedded for it; query by video id or by vectors"
        )
    vgg = {info.model for name, info in manifest.descriptors.items() if name in VGG_DESCRIPTORS}
    defaults = EmbedConfig()
    return EmbedConfig(
        descriptors=tuple(manifest.descriptors),
        short_side=int(manifest.embed.get("short_side", defaults.short_side)),
        center_crop=bool(manifest.embed.get("center_crop", defaults.center_crop)),
        style_encoder=vgg.pop() if len(vgg) == 1 else defaults.style_encoder,
    )


class FileQuery:
    """Search a Searcher with files: frames from `reader`, vectors from an Embedder built for the index.

    The Embedder is created on first use (loading the models takes seconds) unless given, and
    used under a lock, so one FileQuery can serve concurrent requests.
    """

    def __init__(self, searcher: Searcher, reader: FrameReader = read_frames, embedder: Embedder | None = None) -> None:
        self.searcher = searcher
        self.reader = reader
        self._embedder = embedder
        self._identity: dict[str, str] | None = None
        self._lock = threading.Lock()

    def load(self) -> FileQuery:
        """Load (and hash-check) the models now instead of on the first query."""
        with self._lock:
            self._ensure_embedder()
        return self

    def vectors(self, path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """The file's video vectors per descriptor (mean of its frames') and the models' identity."""
        frames = self.reader(Path(path))
        if not frames:
            raise ValueError(f"{path}: no frames could be read")
        with self._lock:
            embedder = self._ensure_embedder()
            per_frame = embedder.embed(frames)
        return {name: video_vector(v) for name, v in per_frame.items()}, dict(self._identity or {})

    def search(self, path: Path, *, mode: str, k: int = 10, **options: object) -> list[Result]:
        """Top-k results for a file; `options` are Searcher.search's (exclude, allow, weights)."""
        vectors, identity = self.vectors(path)
        return self.searcher.search(vectors=vectors, model_identity=identity, mode=mode, k=k, **options)

    def _ensure_embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(embed_config_for(self.searcher.manifest))
        if self._identity is None:
            self._embedder.load()
            self._identity = dict(self._embedder.identity["models"])
        return self._embedder
