"""Catalogue designs: which contents appear in which looks, as in a real catalogue or in a lab one.

- ``factorial``: every content in every look (the lab design; the catalogue steps of the index thrive on it);
- ``sparse``: each content in a few looks, a subset of the factorial items (the same images);
- ``singleton``: each content in exactly one look, at least 10 items per look (most of a real catalogue);
- ``blocks`` (training only): contents in blocks, each look on a few whole blocks, so a batch can hold
  looks that share contents (the hard negatives of the style head's loss).

Contents are shipped photos and windows of them at several scales and positions (as a clip's frames pan
and zoom); training also uses frames of shipped camera footage (one per shot) and procedural scenes.
The ``eval`` and ``train`` roles draw disjoint photos, and looks come from :mod:`styleaxis.eval.looks`
with the role's own parameters.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from styleaxis.embed.images import resize_short_side

from .catalog import CATALOG_COLUMNS, CATALOG_FILE, EVAL_CONTENTS, CatalogConfig, _png, augment, photo
from .io import atomic_write, to_hwc_uint8
from .looks import Look, LookStylist, sample_looks

__all__ = ["DESIGNS", "DesignConfig", "content_pool", "content_image", "design_items", "build_design_catalog"]

DESIGNS = ("factorial", "sparse", "singleton", "blocks")
#: photos each role draws contents from (disjoint; the eval role's are the labelled catalogues' photos; the
#: train role's include six frames of real footage: without them it held 2 natural colour photographs of 9)
_PHOTOS = {"eval": EVAL_CONTENTS,
           "train": ("hopper", "gift", "horse", "cell", "page", "colorwheel", "microaneurysms", "brick", "grass",
                     "bikes0", "bikes40", "bikes80", "bikes160", "bikes200", "bikes240")}
#: photo windows: (fraction of each side, centre x, centre y), larger windows first
_WINDOWS = tuple((scale, x, y) for scale in (0.7, 0.5, 0.35) for y in (0.2, 0.5, 0.8) for x in (0.2, 0.5, 0.8))
#: every this-many-th training content is a procedural scene (evaluation contents are photos only: a grade or
#: tone curve on shapes of random colours cannot be told from other random colours, by a model or a person)
_SCENE_EVERY = 4
#: looks that only mean something on photos: a scene is never shown unfiltered (the identity look is camera
#: footage without a filter) nor in a grade or tone curve (indistinguishable from other random colours)
_PHOTO_FAMILIES = frozenset({"identity", "grade", "tone"})


def content_pool(role: str, n: int) -> list[str]:
    """``n`` distinct content names for ``role``: whole photos, then windows of them (as a clip's frames pan
    and zoom), larger first; training pools also hold procedural scenes. Names: ``PHOTO``, ``PHOTO@S,X,Y``,
    ``scene#SEED``."""
    if role not in _PHOTOS:
        raise ValueError(f"role must be eval or train, got {role!r}")
    photos = _PHOTOS[role]
    names = list(photos[:n])
    windows = [f"{p}@{s},{x},{y}" for s, x, y in _WINDOWS for p in photos]
    scene = 0
    while len(names) < n:
        if role == "train" and len(names) % _SCENE_EVERY == 0 or not windows:
            if role == "eval":
                raise ValueError(f"the eval role has {len(photos) * (1 + len(_WINDOWS))} photo contents; asked for {n}")
            names.append(f"scene#{2 * scene}")
            scene += 1
        else:
            names.append(windows.pop(0))
    return names


def _scene(seed: int, side: int = 320) -> np.ndarray:
    """A procedural scene: a two-colour gradient sky, a ground band and 3-9 filled shapes."""
    rng = np.random.default_rng([seed, 4242])
    w, h = side, round(side * 0.75)
    top, bottom = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    sky = (top * (1 - t) + bottom * t) * np.ones((h, w, 3))
    img = Image.fromarray((sky * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.5, 0.85))
    draw.rectangle((0, horizon, w, h), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    for _ in range(int(rng.integers(3, 10))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.25) * w
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((cx - r, cy - r * rng.uniform(0.4, 1), cx + r, cy + r), fill=colour)
        elif kind == 1:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            draw.polygon([(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles], fill=colour)
        else:
            draw.line((cx - r, cy, cx + r, cy + rng.uniform(-r, r)), fill=colour, width=int(rng.integers(2, 12)))
    return np.array(img)


def content_image(name: str) -> np.ndarray:
    """The image of a content name of :func:`content_pool` (HxWx3 uint8 RGB)."""
    if name.startswith("scene#"):
        return _scene(int(name[6:]))
    base, sep, window = name.partition("@")
    arr = photo(base)
    if not sep:
        return arr
    s, x, y = (float(v) for v in window.split(","))
    h, w = arr.shape[:2]
    wh, ww = round(h * s), round(w * s)
    top = min(max(0, round(y * h - wh / 2)), h - wh)
    left = min(max(0, round(x * w - ww / 2)), w - ww)
    return np.array(arr[top: top + wh, left: left + ww], order="C")


@dataclass(frozen=True)
class DesignConfig:
    """A designed catalogue.

    Attributes:
        design: one of :data:`DESIGNS`.
        role: ``eval`` (looks and contents never used in training) or ``train``.
        looks_per_family: looks drawn from each family of styleaxis.eval.looks (plus the identity look).
        contents: distinct contents; 0 picks the design's default (factorial and sparse 22; singleton
            ``per_look`` x looks; blocks 96).
        per_look: singleton only: items per look (>= 10).
        looks_per_content: sparse only: looks each content appears in.
        block_size / blocks_per_look: blocks only: contents per block, blocks each look is applied to (the
            identity look 3x as many: it is one class for all unfiltered footage).
        short_side: the content's short side before augmentation (items are at most this).
        seed: seeds the assignment of contents to looks and every item's augmentation.
    """

    design: str = "singleton"
    role: str = "eval"
    looks_per_family: int = 1
    contents: int = 0
    per_look: int = 15
    looks_per_content: int = 4
    block_size: int = 8
    blocks_per_look: int = 2
    short_side: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        if self.role not in ("eval", "train"):
            raise ValueError(f"role must be eval or train, got {self.role!r}")
        if self.design == "singleton" and self.per_look < 10:
            raise ValueError(f"a singleton design needs per_look >= 10 items per look, got {self.per_look}")
        if self.looks_per_content < 2 or self.block_size < 2 or self.blocks_per_look < 1 or self.contents < 0:
            raise ValueError("looks_per_content and block_size must be >= 2, blocks_per_look >= 1, contents >= 0")

    @property
    def looks(self) -> list[Look]:
        return sample_looks(self.role, self.looks_per_family)


def design_items(config: DesignConfig) -> list[tuple[str, Look]]:
    """(content, look) of every item of the design, in catalogue order."""
    looks = config.looks
    rng = np.random.default_rng([config.seed, zlib.crc32(config.design.encode())])
    if config.design in ("factorial", "sparse"):
        contents = content_pool(config.role, config.contents or 22)
        if config.design == "factorial":
            return [(c, look) for c in contents for look in looks]
        if config.looks_per_content > len(looks):
            raise ValueError(f"looks_per_content ({config.looks_per_content}) exceeds the {len(looks)} looks")
        # content i takes looks_per_content looks in a rotation started at a random offset: every look
        # gets about the same number of items
        offset = int(rng.integers(0, len(looks)))
        return [(c, looks[(offset + i * config.looks_per_content + j) % len(looks)])
                for i, c in enumerate(contents) for j in range(config.looks_per_content)]
    if config.design == "singleton":
        n = config.contents or config.per_look * len(looks)
        contents = content_pool(config.role, n)
        order = rng.permutation(n)
        return [(contents[i], looks[rank % len(looks)]) for rank, i in enumerate(order)]
    contents = content_pool(config.role, config.contents or 96)
    blocks = [contents[i: i + config.block_size] for i in range(0, len(contents), config.block_size)]
    items = []
    for look in looks:
        count = min(len(blocks), config.blocks_per_look * (3 if look.family == "identity" else 1))
        for b in rng.choice(len(blocks), size=count, replace=False):
            items += [(c, look) for c in blocks[b] if not (c.startswith("scene#") and look.family in _PHOTO_FAMILIES)]
    return items


def build_design_catalog(out_dir: str | os.PathLike[str], config: DesignConfig = DesignConfig(),
                         progress: bool = True) -> Path:
    """Write the design's images into ``out_dir/images`` and ``out_dir/catalog.csv`` (path, content, style).

    An item's pixels depend only on its content, look, role and seed, so a sparse catalogue holds the
    very images of the factorial one. Images are written atomically and kept when present (a rerun
    resumes); the CSV is written last.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    stylist = LookStylist()
    crop = CatalogConfig(split="hard", short_side=config.short_side, seed=config.seed)
    rows = []
    cache: dict[str, torch.Tensor] = {}
    for content, look in tqdm(design_items(config), disable=not progress, desc=f"catalogue {config.design}",
                              unit="image"):
        stem = f"{content}__{look.name}".replace("#", "-").replace("@", "-").replace(",", "_")
        rel = f"images/{stem}.png"
        rows.append((rel, content, look.name))
        if (out / rel).is_file():
            continue
        if content not in cache:
            raw = torch.from_numpy(content_image(content)).permute(2, 0, 1).float() / 255.0
            cache = {content: resize_short_side(raw, config.short_side)}  # kept for the next items of this content
        rng = np.random.default_rng([config.seed, zlib.crc32(content.encode()), zlib.crc32(look.name.encode())])
        image = augment(cache[content], crop, rng)
        atomic_write(out / rel, _png(to_hwc_uint8(stylist(look, image, rng))))
    table = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
    return atomic_write(out / CATALOG_FILE, lambda tmp: table.to_csv(tmp, index=False))
