"""Disentangling research: which descriptors make content ignore style, and style ignore content?

Builds the labelled catalogues of ``styleaxis.eval.catalog`` (easy, hard, unseen; plus the train
split, whose photos and styles are disjoint from them, for fits), runs each encoder once per image and
computes every pass variant below from that one pass (cached per variant as .npz under --cache, so
reruns only re-score), then prints, per variant and split, the axis's P@10 (SSDC-P@10 for style
variants, SCDS-P@10 for content variants), mAP and leakage, with the cost in ms per frame (encoder
prefix up to the deepest tap the variant needs + its pooling, batch 1, one thread, a 256x341 frame,
measured in this run; a combination pays each encoder once).

Content variants: taps of EfficientNet-Lite0 and VGG16-HED; plain global average pooling (the
classifier-feature baseline); instance norm (IN) or whitening (WCT, Li et al. 2017) of the map before
pooling; spatial grids vs global pooling; mirror-symmetric grids (each cell averaged with its mirror,
so a left-right flip leaves the vector unchanged); combined taps and encoders; the search transform;
the style subspace projected out (fitted on the easy split, whose styles are the hard split's, or on
the disjoint train split); the trained content head (--head, from ``styleaxis train content-head``).
Style variants: IN mean/std per tap subset (VGG and EfficientNet), Gram, predictor bottleneck, CIN
parameters, their concatenations, the search transform fitted on the catalogue (none, centring, std,
PCA whitening), the content subspace projected out, LDA on the train split's styles, and the
content-relative step (``rel kK``: residual against the median / MAD of the item's K nearest items on
the content default, styleaxis.embed.relative; ``style_eff`` = eff.style_in.s345.mean rel k10) and
the style expansion (``+expM``: plus the M nearest style rows outside the item's content neighbours).

    python bench/disentangle.py [--cache DIR] [--splits easy,hard,unseen] [--only PREFIX] [--head FILE]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from styleaxis.embed.content_head import HEAD_TAP, read_content_head
from styleaxis.embed.descriptors import (
    CONTENT_WHITEN_EPS, DESCRIPTORS, STYLE_EFF_TAPS, STYLE_TAPS, symmetric_grid_pool, whiten,
)
from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.functional import calc_mean_std, instance_norm, l2_normalize
from styleaxis.embed.registry import load_model, sha256_file
from styleaxis.eval.catalog import CatalogConfig, build_catalog, read_catalog
from styleaxis.eval.io import load_image
from styleaxis.embed.recipe import RelativeConfig, exact_axes
from styleaxis.embed.relative import content_relative, expand_rows, nearest_rows, style_relative_content
from styleaxis.eval.retrieval import axis_matrix, per_query_metrics, summarize

Taps = dict[str, dict[str, torch.Tensor]]  # encoder -> tap -> activation

EFFNET_CONTENT = ("stage5", "stage6", "head")
VGG_CONTENT = ("relu4_1", "relu4_2", "relu5_1", "relu5_3")
VGG_STATS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _pooled(tap: str, norm: Callable[[torch.Tensor], torch.Tensor], grid: int,
            sym: bool = False) -> Callable[[Taps], torch.Tensor]:
    """``norm`` (IN or WCT) of the map, grid pooling (mirror-symmetric when ``sym``), L2."""
    return lambda taps: l2_normalize(symmetric_grid_pool(norm(taps[tap]), grid, sym))


def _gap(tap: str) -> Callable[[Taps], torch.Tensor]:
    return lambda taps: l2_normalize(taps[tap].mean(dim=(2, 3)))


def _in_max(tap: str) -> Callable[[Taps], torch.Tensor]:
    return lambda taps: l2_normalize(instance_norm(taps[tap]).amax(dim=(2, 3)))


def _stats(taps: dict[str, torch.Tensor], tap: str) -> tuple[torch.Tensor, torch.Tensor]:
    # the Extractor precomputes each tap's statistics once for all the style variants that share them
    if f"{tap}.mean" in taps:
        return taps[f"{tap}.mean"], taps[f"{tap}.std"]
    return calc_mean_std(taps[tap])


def _in_stats(taps_: tuple[str, ...], part: str = "meanstd") -> Callable[[Taps], torch.Tensor]:
    """IN mean/std per tap (AdaIN statistics); ``style_in`` is this on relu1_1..relu4_1."""
    def f(taps: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for t in taps_:
            mean, std = _stats(taps, t)
            parts += {"meanstd": [mean, std], "mean": [mean], "std": [std]}[part]
        return torch.cat(parts, dim=1)
    return f


def _registered(name: str) -> Callable[[Taps], torch.Tensor]:
    return DESCRIPTORS[name].compute


#: variant -> (axis, encoder, taps, function of that encoder's taps)
PASS_VARIANTS: dict[str, tuple[str, str, tuple[str, ...], Callable]] = {}


def _add(name: str, axis: str, encoder: str, taps: tuple[str, ...], fn: Callable) -> None:
    PASS_VARIANTS[name] = (axis, encoder, taps, fn)


for _tap in EFFNET_CONTENT:
    _add(f"eff.{_tap}.gap", "content", "effnet-lite0", (_tap,), _gap(_tap))
    _add(f"eff.{_tap}.in.max", "content", "effnet-lite0", (_tap,), _in_max(_tap))
    for _g in (2, 3, 4, 6):
        _add(f"eff.{_tap}.in.grid{_g}", "content", "effnet-lite0", (_tap,), _pooled(_tap, instance_norm, _g))
        _add(f"eff.{_tap}.in.grid{_g}sym", "content", "effnet-lite0", (_tap,), _pooled(_tap, instance_norm, _g, True))
    if _tap != "head":  # whitening 1280 channels costs ~1 s per frame; on easy it scored P 0.88-0.89
        for _g in (3, 4):
            _add(f"eff.{_tap}.wct.grid{_g}sym", "content", "effnet-lite0", (_tap,), _pooled(_tap, whiten, _g, True))
for _eps in (0.1, CONTENT_WHITEN_EPS, 1.0):  # whitening shrinkage (``wct`` above: 0.01)
    _add(f"eff.stage5.wct{_eps:g}.grid4sym", "content", "effnet-lite0", ("stage5",),
         _pooled("stage5", partial(whiten, eps=_eps), 4, True))
for _tap in VGG_CONTENT:
    _add(f"vgg.{_tap}.gap", "content", "vgg16-hed", (_tap,), _gap(_tap))
    for _g in (2, 3, 4):
        _add(f"vgg.{_tap}.in.grid{_g}", "content", "vgg16-hed", (_tap,), _pooled(_tap, instance_norm, _g))
        _add(f"vgg.{_tap}.in.grid{_g}sym", "content", "vgg16-hed", (_tap,), _pooled(_tap, instance_norm, _g, True))
    _add(f"vgg.{_tap}.wct.grid3sym", "content", "vgg16-hed", (_tap,), _pooled(_tap, whiten, 3, True))
_add("style_in", "style", "vgg16-hed", STYLE_TAPS, _in_stats(STYLE_TAPS))
_add("style_gram", "style", "vgg16-hed", STYLE_TAPS, _registered("style_gram"))
_add("style_in.r123", "style", "vgg16-hed", STYLE_TAPS[:3], _in_stats(STYLE_TAPS[:3]))
_add("style_in.r12345", "style", "vgg16-hed", VGG_STATS, _in_stats(VGG_STATS))
_add("style_in.mean", "style", "vgg16-hed", STYLE_TAPS, _in_stats(STYLE_TAPS, "mean"))
_add("style_in.std", "style", "vgg16-hed", STYLE_TAPS, _in_stats(STYLE_TAPS, "std"))
_add("eff.style_in.s35", "style", "effnet-lite0", ("stage3", "stage5"), _in_stats(("stage3", "stage5")))
_add("eff.style_in.s3", "style", "effnet-lite0", ("stage3",), _in_stats(("stage3",)))
_add("eff.style_in.s3.mean", "style", "effnet-lite0", ("stage3",), _in_stats(("stage3",), "mean"))
_add("eff.style_in.s345.mean", "style", "effnet-lite0", STYLE_EFF_TAPS, _registered("style_eff"))
_add("eff.style_in.s345", "style", "effnet-lite0", STYLE_EFF_TAPS, _in_stats(STYLE_EFF_TAPS))
_add("style_cin", "style", "magenta-predictor", ("bottleneck",), _registered("style_cin"))
_add("style_cin_params", "style", "magenta-transformer", ("cin_params",), _registered("style_cin_params"))


class Extractor:
    """Runs each encoder once per image for the union of the taps the variants need."""

    def __init__(self, variants: dict[str, tuple[str, str, tuple[str, ...], Callable]]) -> None:
        self.variants = variants
        self.taps: dict[str, tuple[str, ...]] = {}
        for _, encoder, taps, _ in variants.values():
            self.taps[encoder] = tuple(dict.fromkeys(self.taps.get(encoder, ()) + taps))
        self.magenta = Embedder(EmbedConfig(descriptors=("style_cin", "style_cin_params"), device="cpu"))
        self.models = {e: load_model(e) for e in self.taps if not e.startswith("magenta")}

    def encoder_taps(self, encoder: str, batch: torch.Tensor, taps: tuple[str, ...]) -> dict:
        if encoder.startswith("magenta"):  # the Embedder crops the predictor's square as it was trained
            out = self.magenta.embed_batch(batch)
            return {"bottleneck": torch.from_numpy(out["style_cin"]),
                    "cin_params": torch.from_numpy(out["style_cin_params"])}
        return self.models[encoder](batch, taps)

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor) -> dict[str, np.ndarray]:
        batch = resize_short_side(image, 256)[None]
        taps = {e: self.encoder_taps(e, batch, t) for e, t in self.taps.items()}
        for encoder, maps in taps.items():
            maps.update({f"{t}.{k}": v for t in VGG_STATS if t in maps for k, v in zip(("mean", "std"),
                                                                                    calc_mean_std(maps[t]))})
        return {name: fn(taps[encoder])[0].numpy() for name, (_, encoder, _, fn) in self.variants.items()}

    def cost_ms(self, repeats: int = 3) -> dict[str, float]:
        """ms per 256x341 frame of each variant: its encoder run to its deepest tap, plus its pooling."""
        batch = torch.rand(1, 3, 256, 341, generator=torch.Generator().manual_seed(0))

        def best(fn: Callable[[], object]) -> float:
            fn()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return 1000 * min(times)

        prefix: dict[tuple[str, tuple[str, ...]], float] = {}
        out = {}
        with torch.inference_mode():
            for name, (_, encoder, taps, fn) in tqdm(self.variants.items(), desc="cost", unit="variant"):
                key = (encoder, taps)
                if key not in prefix:
                    prefix[key] = best(lambda: self.encoder_taps(encoder, batch, taps))
                maps = self.encoder_taps(encoder, batch, taps)
                out[name] = prefix[key] + best(lambda: fn(maps))
        return out


def extract(split: str, cache_dir: Path, extractor: Extractor) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The split's catalogue (built if absent) and every pass variant's vectors (cached per variant).

    The train split is built with two views per item (for the content head) and embedded on its first
    view only, which is enough to fit subspaces.
    """
    csv = cache_dir / split / "catalog.csv"
    if not csv.is_file():
        build_catalog(cache_dir / split, CatalogConfig(split=split, views=2 if split == "train" else 1))
    catalog = read_catalog(csv)
    if split == "train":
        catalog = catalog[catalog["path"].str.endswith("__v0.png")].reset_index(drop=True)
    npz = cache_dir / f"{split}.npz"
    stored = dict(np.load(npz)) if npz.is_file() else {}
    missing = {k: v for k, v in extractor.variants.items() if k not in stored}
    if missing:
        sub = Extractor(missing)
        rows = [sub(load_image(p)) for p in tqdm(catalog["path"], desc=f"embed {split}", unit="image")]
        stored.update({k: np.stack([r[k] for r in rows]) for k in missing})
        tmp = npz.with_suffix(".tmp.npz")
        np.savez(tmp, **stored)
        tmp.replace(npz)
    return catalog, stored


# --------------------------------------------------------------------------- derived variants
Split = tuple[pd.DataFrame, dict[str, np.ndarray]]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def search_transform(x: np.ndarray, kind: str) -> np.ndarray:
    """The search transform fitted on the catalogue itself: none (L2 only), center, std (per-dimension
    unit variance) or pcaK (the top K principal components, whitened)."""
    x = x.astype(np.float64)
    if kind == "none":
        return _unit(x)
    x = x - x.mean(axis=0)
    if kind == "center":
        return _unit(x)
    if kind == "std":
        return _unit(x / np.maximum(x.std(axis=0), 1e-8))
    if kind.startswith("pca"):
        u, _, _ = np.linalg.svd(x, full_matrices=False)
        return _unit(u[:, : int(kind[3:])])
    raise ValueError(f"unknown transform {kind!r}")


def nuisance_removed(x: np.ndarray, fit: np.ndarray, labels: np.ndarray, rank: int) -> np.ndarray:
    """Project out the nuisance subspace: the top ``rank`` principal directions of the per-label mean
    differences (labels = styles for a content axis, contents for a style axis) of ``fit``; both matrices
    are centred on ``fit``'s mean and L2-normalised first (nuisance attribute projection)."""
    mean = fit.mean(axis=0)
    f = _unit(fit - mean)
    means = np.stack([f[labels == g].mean(axis=0) for g in np.unique(labels)])
    _, _, vt = np.linalg.svd(means - means.mean(axis=0), full_matrices=False)
    basis = vt[:rank].T
    y = _unit(x - mean)
    return _unit(y - (y @ basis) @ basis.T)


def score(matrix: np.ndarray, catalog: pd.DataFrame, axis: str) -> dict[str, float]:
    return summarize(per_query_metrics(matrix, catalog["content"], catalog["style"], axis))


def lda(x: np.ndarray, fit: np.ndarray, labels: np.ndarray, k: int, shrink: float = 0.1) -> np.ndarray:
    """Project on the top ``k`` discriminant directions of ``labels`` in ``fit`` (Fisher LDA with the
    within-class covariance shrunk toward its mean eigenvalue by ``shrink``), then L2-normalise."""
    mean = fit.mean(axis=0)
    f = fit - mean
    classes, index = np.unique(labels, return_inverse=True)
    means = np.stack([f[index == i].mean(axis=0) for i in range(len(classes))])
    within = f - means[index]
    sw = within.T @ within / len(f)
    sw = (1 - shrink) * sw + shrink * np.trace(sw) / len(sw) * np.eye(len(sw))
    # generalised eigenproblem Sb v = w Sw v through the Cholesky factor of Sw
    chol_inv = np.linalg.inv(np.linalg.cholesky(sw))
    _, u = np.linalg.eigh(chol_inv @ (means.T @ means / len(classes)) @ chol_inv.T)
    return _unit((x - mean) @ (chol_inv.T @ u[:, ::-1][:, :k]))


#: the content default (styleaxis.embed.descriptors "content") and the runner-up, by name in PASS_VARIANTS
CONTENT_DEFAULT, CONTENT_RUNNER_UP = f"eff.stage5.wct{CONTENT_WHITEN_EPS:g}.grid4sym", "eff.stage5.in.grid3sym"
#: the former default style axis (AdaIN + CIN statistics), and the cheapest strong style variant; the
#: default is now eff.style_in.s345.mean made content-relative ("... rel k10")
STYLE_DEFAULT, STYLE_CHEAP = ("style_in", "style_cin"), "eff.style_in.s3"
#: pass variants computed on the train split, for the subspace and LDA fits
FIT_VARIANTS = (CONTENT_DEFAULT, CONTENT_RUNNER_UP, STYLE_CHEAP, "style_cin")


def derived_variants(data: dict[str, Split]) -> dict[str, tuple[str, Callable, tuple]]:
    """variant -> (axis, f(split name) -> axis matrix, pass variants it uses)."""
    def vec(split: str, name: str) -> np.ndarray:
        return data[split][1][name]

    def labels(split: str, factor: str) -> np.ndarray:
        return data[split][0][factor].to_numpy()

    out: dict[str, tuple[str, Callable, tuple]] = {}
    combos = [STYLE_DEFAULT, ("style_in", "style_gram"), ("style_gram", "style_cin"),
              ("style_in", "style_gram", "style_cin"), ("style_in", "style_cin_params"),
              ("style_in.r12345", "style_cin"), ("eff.style_in.s35", "style_cin"), (STYLE_CHEAP, "style_cin"),
              (STYLE_CHEAP, "style_in"), (STYLE_CHEAP, "style_in", "style_cin")]
    for combo in combos:
        out["+".join(combo)] = ("style", lambda s, c=combo: axis_matrix([vec(s, n) for n in c]), combo)
    for names in (STYLE_DEFAULT, (STYLE_CHEAP,)):
        for kind in ("none", "std", "pca16", "pca32"):
            out[f"{'+'.join(names)} [{kind}]"] = (
                "style", lambda s, k=kind, c=names: np.hstack([search_transform(vec(s, n), k) for n in c])
                / np.sqrt(len(c)), names)
    for other in ("eff.stage6.wct.grid3sym", "eff.stage6.in.grid6sym", "vgg.relu4_2.wct.grid3sym"):
        pair = (CONTENT_DEFAULT, other)
        out["+".join(pair)] = ("content", lambda s, c=pair: axis_matrix([vec(s, n) for n in c]), pair)
    for kind in ("none", "std", "pca16"):
        out[f"{CONTENT_DEFAULT} [{kind}]"] = (
            "content", lambda s, k=kind: search_transform(vec(s, CONTENT_DEFAULT), k), (CONTENT_DEFAULT,))
    for fit in ("easy", "train"):
        if fit not in data:
            continue
        for name in (CONTENT_DEFAULT, CONTENT_RUNNER_UP):
            for rank in (4, 8, 16):
                out[f"{name} - style subspace r{rank} ({fit} fit)"] = (
                    "content", lambda s, n=name, r=rank, f=fit: nuisance_removed(
                        vec(s, n), vec(f, n), labels(f, "style"), r), (name,))
        style_sets = [(STYLE_CHEAP,)] + ([STYLE_DEFAULT] if fit == "easy" else [])  # no VGG pass on train
        for names in style_sets:
            for rank in (4, 8, 13):
                out[f"{'+'.join(names)} - content subspace r{rank} ({fit} fit)"] = (
                    "style", lambda s, r=rank, f=fit, c=names: np.hstack([nuisance_removed(
                        vec(s, n), vec(f, n), labels(f, "content"), r) for n in c]) / np.sqrt(len(c)), names)
    def relative(split: str, names: tuple[str, ...], k: int, eps: float = 0.1) -> np.ndarray:
        content = axis_matrix([vec(split, CONTENT_DEFAULT)])
        neighbours = nearest_rows(content, content, k)
        return axis_matrix([content_relative(vec(split, n), vec(split, n), neighbours, eps)[0] for n in names])

    for names in (("eff.style_in.s345.mean",), ("eff.style_in.s345",), (STYLE_CHEAP,), ("style_in",), ("style_cin",),
                  STYLE_DEFAULT):
        for k in (6, 10, 13) if names == ("eff.style_in.s345.mean",) else (10,):
            out[f"{'+'.join(names)} rel k{k}"] = (
                "style", lambda s, c=names, k=k: relative(s, c, k), (*names, CONTENT_DEFAULT))
    def content_step(split: str, alpha: float) -> np.ndarray:
        # the converse step for the content axis: minus alpha x the median content vector of the item's
        # 10 nearest items on the (content-relative) style axis
        # as the index and styleaxis.embed.recipe.exact_axes do it: on the centred, L2-normalised axis
        style = relative(split, ("eff.style_in.s345.mean",), 10)
        content = axis_matrix([vec(split, CONTENT_DEFAULT)])
        return axis_matrix([style_relative_content(content, content, nearest_rows(style, style, 10), alpha)])

    heads = sorted(n for n in data[next(iter(data))][1] if n.startswith("head."))
    for head in heads:  # the whitened descriptor and the trained head side by side, equal weights
        pair = (CONTENT_DEFAULT, head)
        out["+".join(pair)] = ("content", lambda s, c=pair: axis_matrix([vec(s, n) for n in c]), pair)

        def relative_on(split: str, h: str = head) -> np.ndarray:
            content = axis_matrix([vec(split, CONTENT_DEFAULT), vec(split, h)])
            neighbours = nearest_rows(content, content, 10)
            return axis_matrix([content_relative(vec(split, "eff.style_in.s345.mean"),
                                                 vec(split, "eff.style_in.s345.mean"), neighbours)[0]])
        out[f"eff.style_in.s345.mean rel k10 (neighbours on {CONTENT_DEFAULT}+{head})"] = (
            "style", relative_on, ("eff.style_in.s345.mean", CONTENT_DEFAULT, head))
    for alpha in (0.3, 0.5, 1.0):
        out[f"{CONTENT_DEFAULT} - {alpha:g} x style-neighbour median"] = (
            "content", lambda s, a=alpha: content_step(s, a), (CONTENT_DEFAULT, "eff.style_in.s345.mean"))
    def product(split: str, expand: int) -> dict[str, np.ndarray]:
        # both axes exactly as the index builds them (styleaxis.embed.recipe.exact_axes)
        vectors = {"style_eff": vec(split, "eff.style_in.s345.mean"), "content": vec(split, CONTENT_DEFAULT)}
        return exact_axes(vectors, {"style": ("style_eff",), "content": ("content",)},
                          RelativeConfig(expand=expand))

    uses = ("eff.style_in.s345.mean", CONTENT_DEFAULT)
    for m in (1, 2, 3, 5):  # the style expansion: + the m nearest style rows outside the content neighbours
        out[f"eff.style_in.s345.mean rel k10 +exp{m}"] = ("style", lambda s, m=m: product(s, m)["style"], uses)
    out[f"{CONTENT_DEFAULT} - 0.5 x style-neighbour median (style +exp2)"] = (
        "content", lambda s: product(s, 2)["content"], uses)

    def expand_without_exclusion(split: str) -> np.ndarray:  # plain database-side augmentation
        style = relative(split, ("eff.style_in.s345.mean",), 10)
        itself = np.arange(len(style))[:, None]
        return expand_rows(style, style, nearest_rows(style, style, 3), itself, 2)
    out["eff.style_in.s345.mean rel k10 +exp2 (own content not excluded)"] = ("style", expand_without_exclusion, uses)
    out["eff.style_in.s345.mean rel k10 eps0.3"] = (
        "style", lambda s: relative(s, ("eff.style_in.s345.mean",), 10, 0.3), ("eff.style_in.s345.mean", CONTENT_DEFAULT))
    if "train" in data:
        for k in (16, 25):
            out[f"{STYLE_CHEAP} LDA k{k} (train fit)"] = (
                "style", lambda s, k=k: lda(vec(s, STYLE_CHEAP), vec("train", STYLE_CHEAP), labels("train", "style"),
                                            k), (STYLE_CHEAP,))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/styleaxis-disentangle"))
    parser.add_argument("--splits", default="easy,hard,unseen")
    parser.add_argument("--only", default="", help="only pass variants whose name starts with this")
    parser.add_argument("--head", type=Path, action="append", default=[],
                        help="a content head file (from `styleaxis train content-head`) to score too (repeatable)")
    parser.add_argument("--no-fit", action="store_true", help="skip the train split (subspaces fitted on it)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    variants = {k: v for k, v in PASS_VARIANTS.items() if k.startswith(args.only)}
    for path in args.head:
        head = read_content_head(path)
        variants[f"head.{sha256_file(path)[:8]}"] = ("content", "effnet-lite0", (HEAD_TAP,),
                                                     lambda taps, h=head: h(taps[HEAD_TAP]))
    splits = args.splits.split(",")
    data = {s: extract(s, args.cache, Extractor(variants)) for s in splits}
    if not args.no_fit:  # the subspace fits read the train split: only the variants they need
        data["train"] = extract("train", args.cache, Extractor({k: PASS_VARIANTS[k] for k in FIT_VARIANTS}))
    costs = Extractor(variants).cost_ms()
    rows = []
    for name, (axis, *_rest) in variants.items():
        row = {"variant": name, "axis": axis, "ms": costs[name]}
        for split in splits:
            catalog, vectors = data[split]
            m = score(axis_matrix([vectors[name]]), catalog, axis)
            row.update({f"{split}.P": m["precision"], f"{split}.mAP": m["map"], f"{split}.leak": m["leakage"]})
        rows.append(row)
    for name, (axis, build, uses) in derived_variants(data).items():
        if args.only and not any(u.startswith(args.only) for u in uses):
            continue
        if any(u not in data[split][1] for u in uses for split in splits):  # --only: not cached yet
            continue
        if any(u not in PASS_VARIANTS and u not in variants for u in uses):  # a cached head not asked for
            continue
        # one pass per encoder: the deepest variant of each encoder it uses, summed over encoders
        # (NaN when --only left one of them unmeasured)
        per_encoder: dict[str, float] = {}
        for u in uses:
            encoder = PASS_VARIANTS[u][1] if u in PASS_VARIANTS else variants[u][1]
            per_encoder[encoder] = max(per_encoder.get(encoder, 0.0), costs.get(u, 0.0))
        ms = sum(per_encoder.values()) if all(u in costs for u in uses) else float("nan")
        row = {"variant": name, "axis": axis, "ms": ms}
        for split in splits:
            m = score(build(split), data[split][0], axis)
            row.update({f"{split}.P": m["precision"], f"{split}.mAP": m["map"], f"{split}.leak": m["leakage"]})
        rows.append(row)
    notes = {CONTENT_DEFAULT: "content descriptor (former content axis)", "eff.stage5.in.grid4": "former content default",
             f"{CONTENT_DEFAULT} - 0.5 x style-neighbour median (style +exp2)": "content axis default",
             "+".join(STYLE_DEFAULT): "former style axis default", "eff.style_in.s345.mean rel k10 +exp2": "style axis default",
             "eff.stage5.gap": "pooled classifier features",
             "eff.head.gap": "pooled classifier features"}
    for name in [r["variant"] for r in rows]:
        if name.startswith(f"{CONTENT_DEFAULT}+head."):
            notes[name] = "content + content_head (opt-in)"
    table = pd.DataFrame(rows).sort_values(["axis", "variant"], kind="stable")
    table.insert(2, "note", table["variant"].map(notes).fillna(""))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"1 thread, {date.today()}; P = SSDC-P@10 (style) or SCDS-P@10 (content); ms per 256x341 frame")
    with pd.option_context("display.max_rows", None, "display.width", 250, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
