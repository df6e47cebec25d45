"""The ``styleaxis stylize`` command and the ``styleaxis train`` group (``train adain``, ``train cin``).

Each command parses its options into the library's config dataclass and calls the public API
(:mod:`styleaxis.stylize.stylize`, :mod:`styleaxis.pipelines.stylize_video`,
:mod:`styleaxis.stylize.adain`, :mod:`styleaxis.stylize.cin`). The main CLI attaches ``stylize`` and
``train``; :data:`commands` groups them for testing with the same error mapping.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from styleaxis.cli_base import CliGroup

if TYPE_CHECKING:  # torch loads only when a command runs, so --help stays fast
    import torch

__all__ = ["commands", "stylize", "train"]

_METHODS = ("gatys", "adain", "cin", "arbitrary", "johnson", "stylebank", "swap", "mrf")


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@click.group(cls=CliGroup)
def commands() -> None:
    """Stylisation and training commands (attached to `styleaxis` as `stylize` and `train`)."""


@commands.command("stylize")
@click.option("--method", type=click.Choice(_METHODS), required=True,
              help="gatys: optimisation (slow); adain: encoder-AdaIN-decoder; cin: learnt styles (cin26 or a "
                   "trained file); arbitrary: style predictor + CIN transformer; johnson: a trained feed-forward "
                   "network; stylebank: a trained network's filter banks; swap: patch swap at relu3_1 (inverse "
                   "network or optimisation); mrf: CNNMRF optimisation.")
@click.option("--content", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Content image, or a video (stylised frame by frame, audio kept).")
@click.option("--style", "styles", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Style image (gatys, adain, arbitrary, swap, mrf). Repeat for adain style interpolation or masks.")
@click.option("--style-id", type=int, default=None,
              help="cin: the learnt style to apply (cin26: 0..25); stylebank: the bank.")
@click.option("--style-weights", default=None,
              help="Comma-separated weights: cin and stylebank, over their styles (a mix); adain, over the "
                   "--style images.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Content-style trade-off, 1 = full style (gatys, adain, arbitrary, swap, mrf).")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="adain: a decoder file from `train adain` (default: the shipped decoder); "
                   "cin: a network from `train cin` (default: cin26); johnson, stylebank: the network from "
                   "`train johnson` / `train stylebank` (required); swap: an inverse network from "
                   "`train swap-inverse` (default: decode by optimisation).")
@click.option("--mask", "masks", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="adain spatial control: one mask image per --style (white = that style).")
@click.option("--preserve-color", type=click.Choice(["luminance", "histogram"]), default=None,
              help="adain/arbitrary: keep the content's colours (luminance transfer or colour matching).")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="Resize the content (images and video frames) to this short side first.")
@click.option("--style-size", type=click.IntRange(min=8), default=512, show_default=True,
              help="Short side the style images are resized to (arbitrary always uses 256x256).")
@click.option("--steps", type=click.IntRange(min=1), default=50, show_default=True,
              help="gatys, mrf, swap without --model: optimiser steps (L-BFGS: 10 evaluations each).")
@click.option("--optimizer", type=click.Choice(["lbfgs", "adam"]), default="lbfgs", show_default=True,
              help="gatys, mrf, swap: optimiser.")
@click.option("--init", "init", type=click.Choice(["content", "noise"]), default="content", show_default=True,
              help="gatys, mrf, swap: start from the content image or noise.")
@click.option("--style-weight", type=float, default=None,
              help="gatys: style loss weight (default 10); mrf: MRF loss weight (default 1).")
@click.option("--tv-weight", type=float, default=None,
              help="gatys, mrf, swap: total variation weight (defaults 0, 0, 10).")
@click.option("--encoder", default="vgg16-hed", show_default=True,
              help="gatys, mrf, swap: VGG by registry name (vgg19 too).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output image or video file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Video frames stylised together.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
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

    _set_threads(threads)
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


@commands.group("train", cls=CliGroup)
def train() -> None:
    """Train networks on your own images: AdaIN decoder, N-style CIN, Johnson, StyleBank, style-swap inverse,
    and the content head of the content axis. Each run folder resumes when given again."""


_common = [
    click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
                 help="Run folder (checkpoints/, previews/, the exported model, losses.json). "
                      "Run again with the same folder to resume."),
    click.option("--steps", type=click.IntRange(min=1), required=True, help="Total optimisation steps."),
    click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True),
    click.option("--resize", type=click.IntRange(min=8), default=512, show_default=True,
                 help="Content images' short side before cropping."),
    click.option("--crop", type=click.IntRange(min=8), default=256, show_default=True, help="Random crop side."),
    click.option("--encoder", default="vgg16-hed", show_default=True, help="Loss network by registry name."),
    click.option("--checkpoint-every", type=click.IntRange(min=0), default=1000, show_default=True),
    click.option("--preview-every", type=click.IntRange(min=0), default=500, show_default=True),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--device", default="cpu", show_default=True, help="cpu or cuda."),
    click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads."),
    click.option("--no-resume", is_flag=True, help="Refuse to continue an existing run (start a new out dir)."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
]


def _with_common(f):
    for option in reversed(_common):
        f = option(f)
    return f


def _refuse_existing(out_dir: str, no_resume: bool) -> None:
    if no_resume and (Path(out_dir) / "checkpoints").is_dir() and any((Path(out_dir) / "checkpoints").iterdir()):
        raise click.UsageError(f"{out_dir} already holds checkpoints; drop --no-resume to continue that run")


@train.command("adain")
@click.option("--content", "content_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="Folder of content images (e.g. MS-COCO).")
@click.option("--style", "style_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="Folder of style images (e.g. WikiArt).")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate.")
@click.option("--lr-decay", type=float, default=5e-5, show_default=True, help="lr / (1 + decay * step).")
@click.option("--content-weight", type=float, default=1.0, show_default=True)
@click.option("--style-weight", type=float, default=10.0, show_default=True)
@click.option("--half", is_flag=True, help="Export the decoder in fp16 (half the size).")
@_with_common
def train_adain_cmd(content_dir: str, style_dir: str, lr: float, lr_decay: float, content_weight: float,
                    style_weight: float, half: bool, out_dir: str, steps: int, batch_size: int, resize: int,
                    crop: int, encoder: str, checkpoint_every: int, preview_every: int, seed: int, device: str,
                    threads: int | None, no_resume: bool, quiet: bool) -> None:
    """Train an AdaIN decoder (Huang & Belongie 2017): content loss on the AdaIN target at relu4_1, style
    loss on IN mean/std of relu1_1..relu4_1; checkpoints with sha256, resumable, previews."""
    from styleaxis.stylize.adain import AdaINTrainConfig, train as train_adain

    _set_threads(threads)
    _refuse_existing(out_dir, no_resume)
    config = AdaINTrainConfig(content_dir=content_dir, style_dir=style_dir, out_dir=out_dir, encoder=encoder,
                              resize=resize, crop=crop, batch_size=batch_size, lr=lr, lr_decay=lr_decay,
                              content_weight=content_weight, style_weight=style_weight, steps=steps,
                              checkpoint_every=checkpoint_every, preview_every=preview_every, seed=seed,
                              device=device, half=half)
    result = train_adain(config, progress=not quiet)
    last = result.history[-1].tolist() if len(result.history) else []
    click.echo(f"decoder {result.decoder_path} (sha256 {result.sha256}) after {result.step} steps; "
               f"last losses total/content/style {', '.join(f'{v:.4g}' for v in last)}")


@train.command("cin")
@click.option("--style", "styles", multiple=True, type=click.Path(exists=True), required=True,
              help="Style image, or a folder of them; one style per image. Repeat.")
@click.option("--content", "content_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="Folder of content images.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--content-weight", type=float, default=1.0, show_default=True)
@click.option("--style-weight", type=float, default=10.0, show_default=True)
@click.option("--tv-weight", type=float, default=0.0, show_default=True)
@click.option("--style-size", type=click.IntRange(min=8), default=256, show_default=True,
              help="Short side of the style images for their Gram matrices.")
@click.option("--init", "init", type=click.Choice(["cin26", "random"]), default="cin26", show_default=True,
              help="Start from cin26's body or from scratch.")
@click.option("--train-body/--tables-only", default=False, show_default=True,
              help="Train the convolutions too, or only the per-style gamma/beta tables.")
@_with_common
def train_cin_cmd(styles: tuple[str, ...], content_dir: str, lr: float, content_weight: float, style_weight: float,
                  tv_weight: float, style_size: int, init: str, train_body: bool, out_dir: str, steps: int,
                  batch_size: int, resize: int, crop: int, encoder: str, checkpoint_every: int, preview_every: int,
                  seed: int, device: str, threads: int | None, no_resume: bool, quiet: bool) -> None:
    """Train an N-style conditional instance norm network (Dumoulin et al. 2017) with Gram-matrix
    perceptual losses; use it with `styleaxis stylize --method cin --model OUT/cin.pth --style-id N`."""
    from styleaxis.stylize.cin import CINTrainConfig, train as train_cin

    _set_threads(threads)
    _refuse_existing(out_dir, no_resume)
    config = CINTrainConfig(styles=styles, content_dir=content_dir, out_dir=out_dir, encoder=encoder,
                            content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                            resize=resize, crop=crop, style_size=style_size, batch_size=batch_size, lr=lr,
                            steps=steps, init=init, train_body=train_body, checkpoint_every=checkpoint_every,
                            preview_every=preview_every, seed=seed, device=device)
    result = train_cin(config, progress=not quiet)
    click.echo(f"CIN network {result.model_path} (sha256 {result.sha256}), {len(config.styles)} style "
               f"input(s), {result.step} steps")
