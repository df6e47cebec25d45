"""``styleaxis train ...``: every training command, one per network.

``adain`` (decoder), ``cin`` (N-style network), ``johnson``, ``stylebank``, ``swap-inverse`` (style-swap
inverse network), ``content-head`` (the content axis's projection head) and ``style-head`` (the learned
style embedding). Each parses its options into
the library's config dataclass and calls its ``train`` function; a run folder given again resumes.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from styleaxis.cli.common import CliGroup, option, set_threads

__all__ = ["train"]

_ADAIN = "styleaxis.stylize.adain.AdaINTrainConfig"
_CIN = "styleaxis.stylize.cin.CINTrainConfig"
_JOHNSON = "styleaxis.stylize.johnson.JohnsonTrainConfig"
_STYLEBANK = "styleaxis.stylize.stylebank.StyleBankTrainConfig"
_INVERSE = "styleaxis.stylize.style_swap.InverseTrainConfig"
_HEAD = "styleaxis.embed.content_head.ContentHeadTrainConfig"
_STYLE_HEAD = "styleaxis.embed.style_head.StyleHeadTrainConfig"
#: the command line's batch size for Johnson, StyleBank and the style-swap inverse (their configs say 4,
#: Johnson et al.'s; the command has always used 8, like AdaIN's and CIN's)
_CLI_BATCH_SIZE = 8


@click.group("train", cls=CliGroup)
def train() -> None:
    """Train networks on your own images: AdaIN decoder, N-style CIN, Johnson, StyleBank, style-swap inverse,
    the content head of the content axis and the style head of the style axis. Each run folder resumes when
    given again."""


def _run_options(config: str, batch_size: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every trainer shares (run folder, steps, crops, checkpoints, device), with ``config``'s
    defaults; ``batch_size`` overrides the config's."""
    options = [
        option("output", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
               help="Run folder (checkpoints/, previews/, the exported model, losses.json). "
                    "Run again with the same folder to resume."),
        option("model", "--steps", type=click.IntRange(min=1), required=True, help="Total optimisation steps."),
        option("model", "--batch-size", type=click.IntRange(min=1), show_default=True,
               **({"default": batch_size} if batch_size else {"mirrors": (config, "batch_size")})),
        option("input", "--resize", type=click.IntRange(min=8), mirrors=(config, "resize"), show_default=True,
               help="Content images' short side before cropping."),
        option("input", "--crop", type=click.IntRange(min=8), mirrors=(config, "crop"), show_default=True,
               help="Random crop side."),
        option("model", "--encoder", mirrors=(config, "encoder"), show_default=True,
               help="Loss network by registry name."),
        option("output", "--checkpoint-every", type=click.IntRange(min=0), mirrors=(config, "checkpoint_every"),
               show_default=True),
        option("output", "--preview-every", type=click.IntRange(min=0), mirrors=(config, "preview_every"),
               show_default=True),
        option("model", "--seed", type=int, mirrors=(config, "seed"), show_default=True),
        option("performance", "--device", mirrors=(config, "device"), show_default=True, help="cpu or cuda."),
        option("performance", "--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads."),
        option("output", "--no-resume", is_flag=True,
               help="Refuse to continue an existing run (start a new out dir)."),
        option("output", "--quiet", is_flag=True, help="No progress bar."),
    ]

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for add in reversed(options):
            f = add(f)
        return f

    return decorate


def _refuse_existing(out_dir: str, no_resume: bool) -> None:
    if no_resume and (Path(out_dir) / "checkpoints").is_dir() and any((Path(out_dir) / "checkpoints").iterdir()):
        raise click.UsageError(f"{out_dir} already holds checkpoints; drop --no-resume to continue that run")


@train.command("adain")
@option("input", "--content", "content_dir", type=click.Path(exists=True, file_okay=False), required=True,
        help="Folder of content images (e.g. MS-COCO).")
@option("input", "--style", "style_dir", type=click.Path(exists=True, file_okay=False), required=True,
        help="Folder of style images (e.g. WikiArt).")
@option("model", "--lr", type=float, mirrors=(_ADAIN, "lr"), show_default=True, help="Adam learning rate.")
@option("model", "--lr-decay", type=float, mirrors=(_ADAIN, "lr_decay"), show_default=True,
        help="lr / (1 + decay * step).")
@option("model", "--content-weight", type=float, mirrors=(_ADAIN, "content_weight"), show_default=True)
@option("model", "--style-weight", type=float, mirrors=(_ADAIN, "style_weight"), show_default=True)
@option("output", "--half", is_flag=True, mirrors=(_ADAIN, "half"),
        help="Export the decoder in fp16 (half the size).")
@_run_options(_ADAIN)
def train_adain_cmd(content_dir: str, style_dir: str, lr: float, lr_decay: float, content_weight: float,
                    style_weight: float, half: bool, out_dir: str, steps: int, batch_size: int, resize: int,
                    crop: int, encoder: str, checkpoint_every: int, preview_every: int, seed: int, device: str,
                    threads: int | None, no_resume: bool, quiet: bool) -> None:
    """Train an AdaIN decoder (Huang & Belongie 2017): content loss on the AdaIN target at relu4_1, style
    loss on IN mean/std of relu1_1..relu4_1; checkpoints with sha256, resumable, previews."""
    from styleaxis.stylize.adain import AdaINTrainConfig, train as train_adain

    set_threads(threads)
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
@option("input", "--style", "styles", multiple=True, type=click.Path(exists=True), required=True,
        help="Style image, or a folder of them; one style per image. Repeat.")
@option("input", "--content", "content_dir", type=click.Path(exists=True, file_okay=False), required=True,
        help="Folder of content images.")
@option("model", "--lr", type=float, mirrors=(_CIN, "lr"), show_default=True, help="Adam learning rate.")
@option("model", "--content-weight", type=float, mirrors=(_CIN, "content_weight"), show_default=True)
@option("model", "--style-weight", type=float, mirrors=(_CIN, "style_weight"), show_default=True)
@option("model", "--tv-weight", type=float, mirrors=(_CIN, "tv_weight"), show_default=True)
@option("input", "--style-size", type=click.IntRange(min=8), mirrors=(_CIN, "style_size"), show_default=True,
        help="Short side of the style images for their Gram matrices.")
@option("model", "--init", "init", type=click.Choice(["cin26", "random"]), mirrors=(_CIN, "init"),
        show_default=True, help="Start from cin26's body or from scratch.")
@option("model", "--train-body/--tables-only", mirrors=(_CIN, "train_body"), show_default=True,
        help="Train the convolutions too, or only the per-style gamma/beta tables.")
@_run_options(_CIN)
def train_cin_cmd(styles: tuple[str, ...], content_dir: str, lr: float, content_weight: float, style_weight: float,
                  tv_weight: float, style_size: int, init: str, train_body: bool, out_dir: str, steps: int,
                  batch_size: int, resize: int, crop: int, encoder: str, checkpoint_every: int, preview_every: int,
                  seed: int, device: str, threads: int | None, no_resume: bool, quiet: bool) -> None:
    """Train an N-style conditional instance norm network (Dumoulin et al. 2017) with Gram-matrix
    perceptual losses; use it with `styleaxis stylize --method cin --model OUT/cin.pth --style-id N`."""
    from styleaxis.stylize.cin import CINTrainConfig, train as train_cin

    set_threads(threads)
    _refuse_existing(out_dir, no_resume)
    config = CINTrainConfig(styles=styles, content_dir=content_dir, out_dir=out_dir, encoder=encoder,
                            content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                            resize=resize, crop=crop, style_size=style_size, batch_size=batch_size, lr=lr,
                            steps=steps, init=init, train_body=train_body, checkpoint_every=checkpoint_every,
                            preview_every=preview_every, seed=seed, device=device)
    result = train_cin(config, progress=not quiet)
    click.echo(f"CIN network {result.model_path} (sha256 {result.sha256}), {len(config.styles)} style "
               f"input(s), {result.step} steps")


def _perceptual(config: str, content_tap: str, styles: str,
                batch_size: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The content folder and the perceptual-loss options of Johnson-style trainers (content at
    ``content_tap``), then the shared run options, with ``config``'s defaults."""
    options = [
        option("input", "--content", "content_dir", type=click.Path(exists=True, file_okay=False), required=True,
               help="Folder of content images (the papers: MS-COCO)."),
        option("model", "--lr", type=float, mirrors=(config, "lr"), show_default=True, help="Adam learning rate."),
        option("model", "--content-weight", type=float, mirrors=(config, "content_weight"), show_default=True,
               help=f"Weight of the {content_tap} content loss."),
        option("model", "--style-weight", type=float, mirrors=(config, "style_weight"), show_default=True,
               help="Weight of the Gram style loss."),
        option("model", "--tv-weight", type=float, mirrors=(config, "tv_weight"), show_default=True,
               help="Total variation weight."),
        option("input", "--style-size", type=click.IntRange(min=8), mirrors=(config, "style_size"),
               show_default=True, help=f"Short side of {styles} for the Gram matrices."),
    ]

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for add in reversed(options):
            f = add(f)
        return _run_options(config, batch_size)(f)

    return decorate


def _train(run: Callable[..., Any], config_cls: type, options: dict[str, Any]) -> Any:
    """Shared tail of the commands: threads, --no-resume, the config from the options, the run."""
    threads, no_resume, quiet = options.pop("threads"), options.pop("no_resume"), options.pop("quiet")
    set_threads(threads)
    _refuse_existing(options["out_dir"], no_resume)
    return run(config_cls(**options), progress=not quiet)


def _report(what: str, result: Any, columns: str) -> None:
    last = ", ".join(f"{v:.4g}" for v in result.history[-1].tolist()) if len(result.history) else "none"
    click.echo(f"{what} {result.model_path} (sha256 {result.sha256}) after {result.step} steps; "
               f"last losses {columns} {last}")


@train.command("johnson")
@option("input", "--style", type=click.Path(exists=True, dir_okay=False), required=True, help="The style image.")
@_perceptual(_JOHNSON, "relu2_2", "the style image", batch_size=_CLI_BATCH_SIZE)
def train_johnson(**options: Any) -> None:
    """Train a feed-forward network for one style (Johnson et al. 2016: residual transformer with instance
    norm, perceptual losses on VGG); use it with `styleaxis stylize --method johnson --model OUT/johnson.pth`."""
    from styleaxis.stylize.johnson import JohnsonTrainConfig, train as run

    _report("johnson network", _train(run, JohnsonTrainConfig, options), "total/content/style/tv")


@train.command("stylebank")
@option("input", "--styles", "styles", multiple=True, type=click.Path(exists=True),
        help="Style images or folders of them, one style per image (a new network). Repeat.")
@option("input", "--add-style", "added", multiple=True, type=click.Path(exists=True),
        help="Style image(s) to add to --model: only their new banks train. Repeat.")
@option("model", "--model", "base_model", type=click.Path(exists=True, dir_okay=False),
        mirrors=(_STYLEBANK, "base_model"), help="The StyleBank file that --add-style extends.")
@option("model", "--reconstruction-weight", type=float, mirrors=(_STYLEBANK, "reconstruction_weight"),
        show_default=True, help="Weight of the auto-encoder branch's identity loss.")
@option("model", "--alternate", type=click.IntRange(min=1), mirrors=(_STYLEBANK, "alternate"), show_default=True,
        help="T: stylising steps per auto-encoder step.")
@option("model", "--bank-depth", type=click.IntRange(min=1), mirrors=(_STYLEBANK, "bank_depth"),
        show_default=True, help="Convolutions per style bank (new networks).")
@_perceptual(_STYLEBANK, "relu4_2", "the style images", batch_size=_CLI_BATCH_SIZE)
def train_stylebank(**options: Any) -> None:
    """Train a StyleBank network (Chen et al. 2017: shared auto-encoder, one filter bank per style, T
    stylising steps per reconstruction step), or add styles to one with `--add-style IMG --model PATH`
    (existing styles stay bit-identical). Use it with `styleaxis stylize --method stylebank --model
    OUT/stylebank.pth --style-id N`."""
    from styleaxis.stylize.stylebank import StyleBankTrainConfig, train as run

    styles, added = options.pop("styles"), options.pop("added")
    if bool(styles) == bool(added) or bool(added) != bool(options["base_model"]):
        raise click.UsageError("give --styles for a new network, or --add-style with --model to extend one")
    options["styles"] = styles or added
    _report("stylebank network", _train(run, StyleBankTrainConfig, options),
            "total/content/style/tv/reconstruction")


@train.command("swap-inverse")
@option("input", "--content", "content_dir", type=click.Path(exists=True, file_okay=False), required=True,
        help="Folder of content images.")
@option("input", "--style", "style_dir", type=click.Path(exists=True, file_okay=False), required=True,
        help="Folder of style images.")
@option("model", "--lr", type=float, mirrors=(_INVERSE, "lr"), show_default=True, help="Adam learning rate.")
@option("model", "--tv-weight", type=float, mirrors=(_INVERSE, "tv_weight"), show_default=True,
        help="Total variation weight.")
@_run_options(_INVERSE, batch_size=_CLI_BATCH_SIZE)
def train_swap_inverse(**options: Any) -> None:
    """Train the inverse network of style swap (Chen & Schmidt 2016): relu3_1 activations -> pixels, for any
    style; use it with `styleaxis stylize --method swap --style IMG --model OUT/inverse.pth`."""
    from styleaxis.stylize.style_swap import InverseTrainConfig, train as train_inverse

    _report("style-swap inverse network", _train(train_inverse, InverseTrainConfig, options), "total/feature/tv")


def _head_options(config: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options both trained heads share (run folder, training catalogue, optimisation, device), with the
    defaults of ``config``, the head's train config; each command adds its batch shape and architecture."""
    options = [
        option("output", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
               help="Run folder: catalog/ (when built), checkpoints/, features.pt, the exported head (+ .sha256, "
                    ".json); a rerun resumes."),
        option("input", "--catalog", "catalog_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
               default=None, help="Training catalog.csv (path, content, style = the look). Default: build the "
                                  "training design into OUT/catalog (looks and contents disjoint from `eval "
                                  "catalog`)."),
        option("input", "--looks-per-family", type=click.IntRange(min=1), default=16, show_default=True,
               help="Training looks drawn from each look family when the catalogue is built (cin26 has 17 "
                    "training styles: it gives at most 17)."),
        option("input", "--contents", type=click.IntRange(min=8), default=96, show_default=True,
               help="Distinct training contents when the catalogue is built (blocks of 8; each look covers 2 "
                    "blocks)."),
        option("model", "--steps", type=click.IntRange(min=1), mirrors=(config, "steps"), show_default=True,
               help="Optimisation steps."),
        option("model", "--hidden", type=click.IntRange(min=1), mirrors=(config, "hidden"), show_default=True,
               help="Width of the head's hidden layer."),
        option("model", "--lr", type=float, mirrors=(config, "lr"), show_default=True,
               help="AdamW learning rate (cosine decay)."),
        option("model", "--temperature", type=float, mirrors=(config, "temperature"), show_default=True,
               help="SupCon temperature."),
        option("model", "--seed", type=int, mirrors=(config, "seed"), show_default=True),
        option("performance", "--device", mirrors=(config, "device"), show_default=True, help="cpu or cuda."),
        option("performance", "--threads", type=click.IntRange(min=1), default=None,
               help="torch CPU threads (1 when other jobs share the cores: oversubscribed threads slow torch "
                    "down many times)."),
    ]

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for add in reversed(options):
            f = add(f)
        return f

    return decorate


def _head_items(out_dir: Path, catalog_csv: Path | None, looks_per_family: int, contents: int,
                threads: int | None) -> list[tuple[str, str, str]]:
    """Set the threads, then the (path, content, look) items of ``catalog_csv``, or of the heads' training
    catalogue built (or resumed) into OUT/catalog: the ``blocks`` design of the ``train`` role, whose looks
    and contents `eval catalog` never uses."""
    from styleaxis.eval.catalog import read_catalog
    from styleaxis.eval.designs import DesignConfig, build_design_catalog

    set_threads(threads)
    if catalog_csv is None:
        design = DesignConfig(design="blocks", role="train", looks_per_family=looks_per_family, contents=contents)
        catalog_csv = build_design_catalog(out_dir / "catalog", design)
    table = read_catalog(catalog_csv)
    if (table["kind"] == "video").any():
        raise ValueError(f"{catalog_csv}: the heads train on images; video rows found")
    return list(zip(table["path"], table["content"], table["style"]))


@train.command("content-head")
@_head_options(_HEAD)
@option("model", "--contents-per-batch", type=click.IntRange(min=2), mirrors=(_HEAD, "contents_per_batch"),
        show_default=True, help="Contents in a batch.")
@option("model", "--views-per-content", type=click.IntRange(min=2), mirrors=(_HEAD, "views_per_content"),
        show_default=True, help="Looks per content in a batch (positives share content, not look).")
@option("model", "--grid", type=click.IntRange(min=1), mirrors=(_HEAD, "grid"), show_default=True,
        help="Pooling grid side.")
def content_head(out_dir: Path, catalog_csv: Path | None, looks_per_family: int, contents: int, steps: int,
                 hidden: int, lr: float, temperature: float, seed: int, device: str, threads: int | None,
                 contents_per_batch: int, views_per_content: int, grid: int) -> None:
    """Train the content projection head on stylisations (supervised contrastive, Khosla et al. 2020).

    The head maps the frozen EfficientNet-Lite0 stage-5 map (WCT-whitened) through a position-wise MLP (a
    residual correction, zero at the start, so it starts as the `content` descriptor) to mirror-symmetric
    grid cells; positives are the same content in other looks. The default catalogue is the style head's
    training design (train-role looks of every look family), so the evaluation looks stay unseen. Prints
    the exported file and its sha256.
    """
    from styleaxis.embed.content_head import ContentHeadTrainConfig, train_content_head

    items = _head_items(out_dir, catalog_csv, looks_per_family, contents, threads)
    config = ContentHeadTrainConfig(out_dir=str(out_dir), steps=steps, contents_per_batch=contents_per_batch,
                                    views_per_content=views_per_content, hidden=hidden, grid=grid, lr=lr,
                                    temperature=temperature, seed=seed, device=device)
    result = train_content_head(items, config)
    click.echo(f"step {result.step}; head: {result.model_path}  sha256 {result.sha256}")


@train.command("style-head")
@_head_options(_STYLE_HEAD)
@option("model", "--looks-per-batch", type=click.IntRange(min=2), mirrors=(_STYLE_HEAD, "looks_per_batch"),
        show_default=True, help="Looks in a batch (they share contents: the hard negatives).")
@option("model", "--contents-per-look", type=click.IntRange(min=2), mirrors=(_STYLE_HEAD, "contents_per_look"),
        show_default=True, help="Items per look in a batch (positives share the look, not the content).")
def style_head(out_dir: Path, catalog_csv: Path | None, looks_per_family: int, contents: int, steps: int,
               hidden: int, lr: float, temperature: float, seed: int, device: str, threads: int | None,
               looks_per_batch: int, contents_per_look: int) -> None:
    """Train the style head behind the `style_head` descriptor (supervised contrastive over looks).

    The head reads IN mean/std and Gram statistics of frozen EfficientNet-Lite0 stages; positives share a look
    and differ in content, and a batch holds the same contents in other looks. The default catalogue draws its
    looks from the `train` role of each look family (colour grades, tone curves, blur/sharpen, grain,
    posterise, halftone, mosaic, sketch, cin26, arbitrary stylisation, JPEG), so `eval catalog --design`
    looks stay unseen. Prints the exported file and its sha256.
    """
    from styleaxis.embed.style_head import StyleHeadTrainConfig, train_style_head

    items = _head_items(out_dir, catalog_csv, looks_per_family, contents, threads)
    config = StyleHeadTrainConfig(out_dir=str(out_dir), steps=steps, looks_per_batch=looks_per_batch,
                                  contents_per_look=contents_per_look, hidden=hidden, lr=lr,
                                  temperature=temperature, seed=seed, device=device)
    result = train_style_head(items, config)
    click.echo(f"step {result.step}; head: {result.model_path}  sha256 {result.sha256}")
