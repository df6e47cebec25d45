"""``styleaxis stylize``: stylise an image or a video with one of eight methods.

Parses the options into :class:`~styleaxis.stylize.config.StylizeConfig` and calls the public API
(:mod:`styleaxis.stylize.stylize`, :mod:`styleaxis.pipelines.stylize_video`).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from styleaxis.cli.common import GroupedCommand, module_constant, option, set_threads

if TYPE_CHECKING:  # torch loads only when a command runs, so --help stays fast
    import torch

__all__ = ["stylize"]

_CONFIG = "styleaxis.stylize.config.StylizeConfig"
#: the optimisation settings --steps, --optimizer, --init and --encoder set (for gatys, mrf and swap alike)
_OPTIM = "styleaxis.stylize.config.GatysConfig"
_METHODS = module_constant("styleaxis.stylize.config", "METHODS")


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


@click.command("stylize", cls=GroupedCommand)
@option("model", "--method", type=click.Choice(_METHODS), required=True,
        help="gatys: optimisation (slow); adain: encoder-AdaIN-decoder; cin: learnt styles (cin26 or a "
             "trained file); arbitrary: style predictor + CIN transformer; johnson: a trained feed-forward "
             "network; stylebank: a trained network's filter banks; swap: patch swap at relu3_1 (inverse "
             "network or optimisation); mrf: CNNMRF optimisation.")
@option("input", "--content", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
        help="Content image, or a video (stylised frame by frame, audio kept).")
@option("input", "--style", "styles", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Style image (gatys, adain, arbitrary, swap, mrf). Repeat for adain style interpolation or masks.")
@option("input", "--style-id", type=int, mirrors=(_CONFIG, "style_id"),
        help="cin: the learnt style to apply (cin26: 0..25); stylebank: the bank.")
@option("input", "--style-weights", default=None,
        help="Comma-separated weights: cin and stylebank, over their styles (a mix); adain, over the "
             "--style images.")
@option("model", "--alpha", type=click.FloatRange(0, 1), mirrors=(_CONFIG, "alpha"), show_default=True,
        help="Content-style trade-off, 1 = full style (gatys, adain, arbitrary, swap, mrf).")
@option("model", "--model", type=click.Path(exists=True, dir_okay=False), default=None,
        help="adain: a decoder file from `train adain` (default: the shipped decoder); "
             "cin: a network from `train cin` (default: cin26); johnson, stylebank: the network from "
             "`train johnson` / `train stylebank` (required); swap: an inverse network from "
             "`train swap-inverse` (default: decode by optimisation).")
@option("input", "--mask", "masks", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="adain spatial control: one mask image per --style (white = that style).")
@option("model", "--preserve-color", type=click.Choice(["luminance", "histogram"]), default=None,
        help="adain/arbitrary: keep the content's colours (luminance transfer or colour matching).")
@option("input", "--size", type=click.IntRange(min=8), default=None,
        help="Resize the content (images and video frames) to this short side first.")
@option("input", "--style-size", type=click.IntRange(min=8), mirrors=(_CONFIG, "style_size"), show_default=True,
        help="Short side the style images are resized to (arbitrary always uses 256x256).")
@option("model", "--steps", type=click.IntRange(min=1), mirrors=(_OPTIM, "steps"), show_default=True,
        help="gatys, mrf, swap without --model: optimiser steps (L-BFGS: 10 evaluations each).")
@option("model", "--optimizer", type=click.Choice(["lbfgs", "adam"]), mirrors=(_OPTIM, "optimizer"), show_default=True,
        help="gatys, mrf, swap: optimiser.")
@option("model", "--init", "init", type=click.Choice(["content", "noise"]), mirrors=(_OPTIM, "init"), show_default=True,
        help="gatys, mrf, swap: start from the content image or noise.")
@option("model", "--style-weight", type=float, default=None,
        help="gatys: style loss weight (default 10); mrf: MRF loss weight (default 1).")
@option("model", "--tv-weight", type=float, default=None,
        help="gatys, mrf, swap: total variation weight (defaults 0, 0, 10).")
@option("model", "--encoder", mirrors=(_OPTIM, "encoder"), show_default=True,
        help="gatys, mrf, swap: VGG by registry name (vgg19 too).")
@option("output", "--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
        help="Output image or video file.")
@option("performance", "--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
        help="Video frames stylised together.")
@option("performance", "--device", mirrors=(_CONFIG, "device"), show_default=True, help="cpu or cuda.")
@option("performance", "--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@option("output", "--quiet", is_flag=True, help="No progress bar.")
def stylize(method: str, content: Path, styles: tuple[Path, ...], style_id: int | None, style_weights: str | None,
            alpha: float, model: str | None, masks: tuple[Path, ...], preserve_color: str | None, size: int | None,
            style_size: int, steps: int, optimizer: str, init: str, style_weight: float | None, tv_weight: float,
            encoder: str, out: Path, batch_size: int, device: str, threads: int | None, quiet: bool) -> None:
    """Stylise an image or a video with one of eight methods.

    Examples: `--method cin --style-id 8`, `--method adain --style a.jpg --alpha 0.6`,
    `--method adain --style a.jpg --style b.jpg --style-weights 0.3,0.7`,
    `--method arbitrary --style a.jpg --preserve-color luminance`, `--method gatys --style a.jpg --steps 30`,
    `--method johnson --model run/johnson.pth`, `--method stylebank --model run/stylebank.pth --style-id 1`,
    `--method swap --style a.jpg --model run/inverse.pth`, `--method mrf --style a.jpg --steps 20`.
    """
    from styleaxis.stylize.gatys import GatysConfig
    from styleaxis.stylize.mrf import MRFConfig
    from styleaxis.stylize.style_swap import StyleSwapConfig
    from styleaxis.stylize.stylize import StylizeConfig, make_stylizer
    from styleaxis.embed.training import IMAGE_SUFFIXES

    set_threads(threads)
    optim = {"encoder": encoder, "steps": steps, "optimizer": optimizer, "init": init}
    if tv_weight is not None:
        optim["tv_weight"] = tv_weight
    weight = {} if style_weight is None else {"style_weight": style_weight}
    mrf_weight = {} if style_weight is None else {"mrf_weight": style_weight}
    config = StylizeConfig(method=method, styles=styles, style_id=style_id, style_weights=_floats(style_weights),
                           alpha=alpha, model=model, masks=masks, preserve_color=preserve_color,
                           style_size=style_size, gatys=GatysConfig(**optim, **weight),
                           swap=StyleSwapConfig(**optim), mrf=MRFConfig(**optim, **mrf_weight), device=device)
    is_image = content.suffix.lower() in IMAGE_SUFFIXES
    if is_image != (out.suffix.lower() in IMAGE_SUFFIXES):
        kind = "an image" if is_image else "a video"
        raise click.UsageError(f"--content is {kind}, so --out needs {kind} suffix, got {out.name!r}")
    run = _resized(make_stylizer(config), size)
    if is_image:
        _stylize_image(run, content, out)
        click.echo(f"{method}: {content} -> {out}")
    else:
        from styleaxis.pipelines.stylize_video import stylize_video

        result = stylize_video(content, out, run, batch_size=batch_size, progress=not quiet)
        click.echo(f"{method}: {content} -> {out}: {result.frames} frames at {result.fps:g} fps"
                   f"{', audio copied' if result.audio else ''}")


def _resized(run: Callable[[torch.Tensor], torch.Tensor],
             short: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stylizer applied after resizing to ``short`` (even sides, for H.264), or unchanged."""
    if short is None:
        return run
    import torch.nn.functional as F

    def resized(batch: torch.Tensor) -> torch.Tensor:
        h, w = batch.shape[-2:]
        scale = short / min(h, w)
        size = (max(8, 2 * round(h * scale / 2)), max(8, 2 * round(w * scale / 2)))
        return run(F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1))

    return resized


def _stylize_image(run: Callable[[torch.Tensor], torch.Tensor], content: Path, out: Path) -> None:
    import os

    from PIL import Image

    from styleaxis.stylize.stylize import as_batch
    from styleaxis.embed.training import to_uint8

    image = Image.fromarray(to_uint8(run(as_batch(content)))[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    image.save(tmp)
    os.replace(tmp, out)
