"""Looks drawn from parameterised families, so that training and evaluation never share a look.

A *look* is a family plus parameters sampled from a seeded generator: ``grade-3f2a1c`` is one colour
grade, and another seed gives another grade. The families cover what short-video filters do:

- ``grade``: a colour matrix (saturation, tint), lift and gain per channel, and sometimes a vignette;
- ``tone``: a tone curve (gamma and an S-curve of random strength) or a Reinhard tone map;
- ``focus``: a Gaussian blur or an unsharp mask;
- ``grain``: film grain (mono or colour, fine or coarse), with faded blacks;
- ``posterise``: a few levels per channel;
- ``halftone``: printed dots on a rotated screen, in one ink or three;
- ``mosaic``: pixel art (blocks and a small palette);
- ``sketch``: a pencil sketch (colour dodge) or inked edges, plain or tinted;
- ``cin26``: one of the 26 styles of the CIN network (Dumoulin et al. 2017);
- ``arbitrary``: arbitrary stylisation (Ghiasi et al. 2017) with a style image (a shipped photo or a
  procedural texture);
- ``jpeg``: heavy compression (down-scale, low quality, up-scale);

and ``identity``, the unstylised look (no parameters; docs/search.md says what "same style" means for it).

:func:`sample_looks` draws looks for a *role*: ``eval`` and ``train`` use disjoint seeds, disjoint cin26
styles and disjoint style images, so no evaluation look is in any training set.
"""
from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from styleaxis.stylize.stylize import StylizeConfig, make_stylizer

from .catalog import _ERASING_CIN26, EVAL_CIN26, EVAL_NEURAL_STYLES, TRAIN_STYLES, _luma, _pil, photo

__all__ = ["FAMILIES", "Look", "IDENTITY", "sample_looks", "apply_look", "LookStylist", "texture"]

#: cin26 styles each role may draw: the labelled catalogues' evaluation styles, and every other one for
#: training (but 17, which erases content and is used nowhere; see eval.catalog)
_CIN26 = {"eval": EVAL_CIN26, "train": tuple(i for i in range(26) if i not in EVAL_CIN26 and i != _ERASING_CIN26)}
#: shipped photos each role may use as an arbitrary-stylisation style image: the labelled catalogues' own
_STYLE_PHOTOS = {role: tuple(s.removeprefix("photo-") for s in styles if s.startswith("photo-"))
                 for role, styles in (("eval", EVAL_NEURAL_STYLES), ("train", TRAIN_STYLES))}
#: base seeds of the two roles; a look's parameters come from (role seed, family, index)
_ROLE_SEEDS = {"eval": 7_000_003, "train": 11}


@dataclass(frozen=True)
class Look:
    """A family and its sampled parameters; ``name`` is unique and stable (family + parameter digest)."""

    family: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        if self.family == "identity":
            return "identity"
        return f"{self.family}-{zlib.crc32(repr(self.params).encode()):08x}"

    def param(self, key: str) -> Any:
        return dict(self.params)[key]


IDENTITY = Look("identity")


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 4)


def _grade_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    return {"saturation": _u(rng, 0.0, 1.8), "tint": tuple(_u(rng, 0.65, 1.35) for _ in range(3)),
            "lift": tuple(_u(rng, -0.05, 0.18) for _ in range(3)), "vignette": _u(rng, 0.0, 0.6) * int(rng.random() < 0.4)}


def _tone_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    if rng.random() < 0.3:
        return {"kind": "reinhard", "exposure": _u(rng, 1.5, 5.0)}
    gamma = float(np.exp(rng.uniform(np.log(0.4), np.log(2.4))))
    return {"kind": "curve", "gamma": round(gamma, 4), "contrast": _u(rng, -3.0, 7.0)}


def _focus_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {"kind": "blur", "radius": _u(rng, 0.008, 0.03)}
    return {"kind": "sharpen", "radius": _u(rng, 1.0, 3.0), "amount": _u(rng, 2.0, 5.0)}


def _grain_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    return {"sigma": _u(rng, 0.05, 0.16), "size": _u(rng, 1.0, 3.0), "colour": bool(rng.random() < 0.4),
            "fade": _u(rng, 0.0, 0.5)}


def _posterise_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    return {"levels": int(rng.integers(2, 6)), "smooth": _u(rng, 0.0, 1.5)}


def _halftone_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    return {"pitch": _u(rng, 0.01, 0.025), "angle": _u(rng, 0.0, 90.0), "colour": bool(rng.random() < 0.5),
            "paper": tuple(_u(rng, 0.85, 1.0) for _ in range(3))}


def _mosaic_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    return {"blocks": int(rng.integers(20, 64)), "levels": int(rng.integers(3, 8))}


def _sketch_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    return {"kind": "pencil" if rng.random() < 0.5 else "ink", "radius": _u(rng, 0.01, 0.04),
            "tint": tuple(_u(rng, 0.6, 1.0) for _ in range(3)) if rng.random() < 0.5 else (1.0, 1.0, 1.0)}


def _cin26_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    return {"style": int(rng.choice(_CIN26[role]))}


def _arbitrary_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    photos = _STYLE_PHOTOS[role]
    if rng.random() < 0.5:
        return {"photo": str(rng.choice(photos))}
    # a procedural texture; the role is part of its seed, so the two roles never share one
    return {"texture": int(rng.integers(0, 2**31)) * 2 + (role == "eval")}


def _jpeg_params(rng: np.random.Generator, role: str) -> dict[str, Any]:
    return {"quality": int(rng.integers(3, 14)), "scale": _u(rng, 0.35, 0.8)}


#: family -> parameter sampler
FAMILIES: dict[str, Callable[[np.random.Generator, str], dict[str, Any]]] = {
    "grade": _grade_params, "tone": _tone_params, "focus": _focus_params, "grain": _grain_params,
    "posterise": _posterise_params, "halftone": _halftone_params, "mosaic": _mosaic_params,
    "sketch": _sketch_params, "cin26": _cin26_params, "arbitrary": _arbitrary_params, "jpeg": _jpeg_params,
}


def sample_looks(role: str, per_family: int = 1, families: Sequence[str] | None = None,
                 identity: bool = True) -> list[Look]:
    """``per_family`` looks of each family for ``role`` (``eval`` or ``train``), plus the identity look.

    A family with fewer distinct looks gives all it has: cin26 has 8 evaluation and 17 training styles.
    Looks are drawn in a fixed order from generators seeded by (role, family, i), so asking for more looks
    keeps the first ones.
    """
    if role not in _ROLE_SEEDS:
        raise ValueError(f"role must be eval or train, got {role!r}")
    if per_family < 1:
        raise ValueError(f"per_family must be >= 1, got {per_family}")
    chosen = list(families or FAMILIES)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown look families {unknown}; known: {', '.join(FAMILIES)}")
    looks = [IDENTITY] if identity else []
    for family in chosen:
        for i in range(per_family):
            rng = np.random.default_rng([_ROLE_SEEDS[role], zlib.crc32(family.encode()), i])
            drawn = (Look(family, tuple(sorted(FAMILIES[family](rng, role).items()))) for _ in range(1000))
            # redraw a repeat (one look must not carry two labels) and parameters too close to no filter at
            # all (the identity look's label); a family that yields no new look in 1000 draws has given all
            # it has (cin26's finite styles)
            look = next((lk for lk in drawn if lk not in looks and (family not in _FILTERS or _visible(lk))), None)
            if look is None:
                break
            looks.append(look)
    return looks


#: a filter look must change the probe image by at least this mean absolute difference (0..1 scale)
MIN_CHANGE = 0.04
#: the probe's short side: the size looks are rendered at (DesignConfig.short_side). Radii relative to the
#: frame (blur, sketch) change a thumbnail far less than a frame: a 96 x 64 probe rejected 4 blurs in 5, so
#: the training focus family held 15 sharpenings and 1 blur
PROBE_SHORT_SIDE = 256


@lru_cache(maxsize=1)
def _probe() -> np.ndarray:
    image = Image.fromarray(photo("coffee"))
    scale = PROBE_SHORT_SIDE / min(image.size)
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    return np.asarray(small).astype(np.float64) / 255.0


def _visible(look: Look) -> bool:
    probe = _probe()
    out = np.clip(_FILTERS[look.family](probe, dict(look.params), np.random.default_rng(0)), 0, 1)
    return float(np.abs(out - probe).mean()) >= MIN_CHANGE


# --------------------------------------------------------------------------- the families' renderings
def _grey_blur(grey: np.ndarray, radius: float) -> np.ndarray:
    out = Image.fromarray((np.clip(grey, 0, 1) * 255).round().astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(out).astype(np.float64) / 255.0


def _grade(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    grey = _luma(img)[..., None]
    out = grey + p["saturation"] * (img - grey)
    out = np.asarray(p["lift"]) + (1 - np.asarray(p["lift"])) * out * np.asarray(p["tint"])
    if p["vignette"]:
        h, w = img.shape[:2]
        y, x = np.mgrid[0:h, 0:w]
        r2 = ((y - (h - 1) / 2) / (h / 2)) ** 2 + ((x - (w - 1) / 2) / (w / 2)) ** 2
        out = out * np.clip(1.0 - p["vignette"] * r2, 0.05, 1.0)[..., None]
    return out


def _tone(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    if p["kind"] == "reinhard":
        x = img * p["exposure"]
        return x / (1.0 + x) * (1.0 + p["exposure"]) / p["exposure"]
    out = np.clip(img, 0, 1) ** p["gamma"]
    c = p["contrast"]
    if abs(c) > 1e-3:
        s = 0.5 + 0.5 * np.tanh(abs(c) * (out - 0.5)) / np.tanh(abs(c) / 2)
        out = s if c > 0 else 2 * out - s  # a negative strength flattens instead
    return out


def _focus(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    if p["kind"] == "blur":
        return _pil(img, ImageFilter.GaussianBlur(radius=min(img.shape[:2]) * p["radius"]))
    blurred = _pil(img, ImageFilter.GaussianBlur(radius=p["radius"]))
    return img + p["amount"] * (img - blurred)


def _grain(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    size = p["size"]
    small = (max(1, round(h / size)), max(1, round(w / size)), 3 if p["colour"] else 1)
    noise = rng.normal(0.0, p["sigma"], size=small)
    if size > 1:
        noise = np.stack([np.asarray(Image.fromarray(noise[..., i].astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
                          for i in range(small[2])], axis=-1)
    grey = _luma(img)[..., None]
    faded = p["fade"] * 0.1 + (1 - p["fade"] * 0.2) * ((1 - p["fade"]) * img + p["fade"] * grey)
    return faded + noise


def _posterise(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    if p["smooth"] > 0:
        img = _pil(img, ImageFilter.GaussianBlur(radius=p["smooth"]))
    n = p["levels"] - 1
    return np.round(np.clip(img, 0, 1) * n) / n


def _halftone(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    pitch = max(3.0, min(h, w) * p["pitch"])
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    paper = np.asarray(p["paper"])
    inks = [(img[..., i], np.eye(3)[i]) for i in range(3)] if p["colour"] else [(_luma(img), np.ones(3))]
    out = np.ones((h, w, 3)) * paper
    for j, (channel, ink) in enumerate(inks):
        a = np.deg2rad(p["angle"] + 15.0 * j)
        u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
        du, dv = (u / pitch) % 1.0 - 0.5, (v / pitch) % 1.0 - 0.5
        tone = _grey_blur(channel, pitch / 2)
        radius = np.sqrt(np.clip(1.0 - tone, 0, 1) / np.pi)  # dot area = the ink's coverage
        dot = (np.sqrt(du**2 + dv**2) < radius)[..., None]
        out = np.where(dot, out * (1 - ink) if p["colour"] else out * 0.08, out)
    return out


def _mosaic(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    block = max(2, min(h, w) // p["blocks"])
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    small = pil.resize((max(1, w // block), max(1, h // block)), Image.BOX)
    arr = np.asarray(small).astype(np.float64) / 255.0
    n = p["levels"] - 1
    arr = np.round(arr * n) / n
    big = Image.fromarray((arr * 255).round().astype(np.uint8)).resize((w, h), Image.NEAREST)
    return np.asarray(big).astype(np.float64) / 255.0


def _sketch(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    grey = _luma(img)
    radius = min(img.shape[:2]) * p["radius"]
    if p["kind"] == "pencil":
        blurred = _grey_blur(1.0 - grey, radius)
        line = np.clip(grey / np.maximum(1.0 - blurred, 1e-3), 0, 1) ** 2
    else:
        smooth = _grey_blur(grey, max(1.0, radius / 4))
        gy, gx = np.gradient(smooth)
        edges = np.sqrt(gx**2 + gy**2)
        line = 1.0 - np.clip(edges / max(np.percentile(edges, 97), 1e-6), 0, 1)
    return line[..., None] * np.asarray(p["tint"])


def _jpeg(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    small = pil.resize((max(8, round(w * p["scale"])), max(8, round(h * p["scale"]))), Image.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=p["quality"])
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB").resize((w, h), Image.BILINEAR)).astype(np.float64) / 255.0


_FILTERS: dict[str, Callable[[np.ndarray, dict[str, Any], np.random.Generator], np.ndarray]] = {
    "grade": _grade, "tone": _tone, "focus": _focus, "grain": _grain, "posterise": _posterise,
    "halftone": _halftone, "mosaic": _mosaic, "sketch": _sketch, "jpeg": _jpeg,
}


@lru_cache(maxsize=64)
def texture(seed: int, side: int = 256) -> np.ndarray:
    """A procedural style image (HxWx3 uint8): coloured noise at a few scales, stripes or cells."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    palette = rng.uniform(0, 1, size=(4, 3))
    kind = int(rng.integers(0, 3))
    if kind == 0:  # multi-scale noise
        field = sum(np.asarray(Image.fromarray(rng.uniform(0, 1, (s, s)).astype(np.float32), mode="F")
                               .resize((side, side), Image.BICUBIC)) / (i + 1) for i, s in enumerate((4, 9, 23, 61)))
    elif kind == 1:  # stripes
        a = rng.uniform(0, np.pi)
        field = np.sin((x * np.cos(a) + y * np.sin(a)) * rng.uniform(10, 60)) + 0.3 * rng.normal(size=(side, side))
    else:  # cells
        pts = rng.uniform(0, 1, size=(int(rng.integers(8, 40)), 2))
        d = np.min((y[..., None] - pts[:, 0]) ** 2 + (x[..., None] - pts[:, 1]) ** 2, axis=-1)
        field = np.sqrt(d)
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-9) * 3
    i = np.clip(field.astype(int), 0, 2)
    t = (field - i)[..., None]
    img = palette[i] * (1 - t) + palette[i + 1] * t
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


class LookStylist:
    """Renders looks on (3, H, W) float images in 0..1; neural networks are built once per look."""

    def __init__(self) -> None:
        self._neural: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}

    def _network(self, look: Look) -> Callable[[torch.Tensor], torch.Tensor]:
        if look.name not in self._neural:
            if look.family == "cin26":
                config = StylizeConfig(method="cin", style_id=look.param("style"))
            else:
                params = dict(look.params)
                style = photo(params["photo"]) if "photo" in params else texture(params["texture"])
                config = StylizeConfig(method="arbitrary", styles=(style,))
            self._neural[look.name] = make_stylizer(config)
        return self._neural[look.name]

    def __call__(self, look: Look, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if look.family == "identity":
            return image
        if look.family in _FILTERS:
            arr = image.permute(1, 2, 0).double().numpy()
            out = np.clip(_FILTERS[look.family](arr, dict(look.params), rng), 0.0, 1.0)
            return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).float()
        with torch.inference_mode():
            return self._network(look)(image[None])[0, :, : image.shape[1], : image.shape[2]].clamp(0, 1)


def apply_look(look: Look, image: np.ndarray, seed: int = 0) -> np.ndarray:
    """One look applied to an HxWx3 uint8 RGB image -> HxWx3 uint8 (random parts seeded by ``seed``)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    out = LookStylist()(look, tensor, np.random.default_rng(seed))
    return (out.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
