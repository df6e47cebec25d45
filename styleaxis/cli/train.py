"""``styleaxis train ...``: every training command, one per network.

``adain`` (decoder), ``cin`` (N-style network), ``johnson``, ``stylebank``, ``swap-inverse`` (style-swap
inverse network) and ``content-head`` (the content axis's projection head). Each parses its options into
the library's config dataclass and calls its ``train`` function; a run folder given again resumes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from styleaxis.cli.common import CliGroup, set_threads

__all__ = ["train"]


@click.group("train", cls=CliGroup)
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


def _perceptual(content_tap: str, styles: str):
    """The content folder and the perceptual-loss options of Johnson-style trainers (content at ``content_tap``)."""
    options = [
        click.option("--content", "content_dir", type=click.Path(exists=True, file_okay=False), required=True,
                     help="Folder of content images (the papers: MS-COCO)."),
        click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate."),
        click.option("--content-weight", type=float, default=1.0, show_default=True,
                     help=f"Weight of the {content_tap} content loss."),
        click.option("--style-weight", type=float, default=10.0, show_default=True,
                     help="Weight of the Gram style loss."),
        click.option("--tv-weight", type=float, default=0.0, show_default=True, help="Total variation weight."),
        click.option("--style-size", type=click.IntRange(min=8), default=256, show_default=True,
                     help=f"Short side of {styles} for the Gram matrices."),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return _with_common(f)

    return decorate


def _train(run, config_cls, options: dict[str, Any]):
    """Shared tail of the commands: threads, --no-resume, the config from the options, the run."""
    threads, no_resume, quiet = options.pop("threads"), options.pop("no_resume"), options.pop("quiet")
    set_threads(threads)
    _refuse_existing(options["out_dir"], no_resume)
    return run(config_cls(**options), progress=not quiet)


def _report(what: str, result, columns: str) -> None:
    last = ", ".join(f"{v:.4g}" for v in result.history[-1].tolist()) if len(result.history) else "none"
    click.echo(f"{what} {result.model_path} (sha256 {result.sha256}) after {result.step} steps; "
               f"last losses {columns} {last}")


@train.command("johnson")
@click.option("--style", type=click.Path(exists=True, dir_okay=False), required=True, help="The style image.")
@_perceptual("relu2_2", "the style image")
def train_johnson(**options: Any) -> None:
    """Train a feed-forward network for one style (Johnson et al. 2016: residual transformer with instance
    norm, perceptual losses on VGG); use it with `styleaxis stylize --method johnson --model OUT/johnson.pth`."""
    from styleaxis.stylize.johnson import JohnsonTrainConfig, train as run

    _report("johnson network", _train(run, JohnsonTrainConfig, options), "total/content/style/tv")


@train.command("stylebank")
@click.option("--styles", "styles", multiple=True, type=click.Path(exists=True),
              help="Style images or folders of them, one style per image (a new network). Repeat.")
@click.option("--add-style", "added", multiple=True, type=click.Path(exists=True),
              help="Style image(s) to add to --model: only their new banks train. Repeat.")
@click.option("--model", "base_model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The StyleBank file that --add-style extends.")
@click.option("--reconstruction-weight", type=float, default=1e4, show_default=True,
              help="Weight of the auto-encoder branch's identity loss.")
@click.option("--alternate", type=click.IntRange(min=1), default=2, show_default=True,
              help="T: stylising steps per auto-encoder step.")
@click.option("--bank-depth", type=click.IntRange(min=1), default=1, show_default=True,
              help="Convolutions per style bank (new networks).")
@_perceptual("relu4_2", "the style images")
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
@click.option("--content", "content_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="Folder of content images.")
@click.option("--style", "style_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="Folder of style images.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--tv-weight", type=float, default=10.0, show_default=True, help="Total variation weight.")
@_with_common
def train_swap_inverse(**options: Any) -> None:
    """Train the inverse network of style swap (Chen & Schmidt 2016): relu3_1 activations -> pixels, for any
    style; use it with `styleaxis stylize --method swap --style IMG --model OUT/inverse.pth`."""
    from styleaxis.stylize.style_swap import InverseTrainConfig, train as train_inverse

    _report("style-swap inverse network", _train(train_inverse, InverseTrainConfig, options), "total/feature/tv")


@train.command("content-head")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: checkpoints/, features.pt, content_head.pt (+ .sha256, .json); a rerun resumes.")
@click.option("--catalog", "catalog_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Training catalog.csv (path, content, style). Default: build the `train` split "
                                 "(photos and styles disjoint from the evaluation splits) into OUT/catalog.")
@click.option("--views", type=click.IntRange(min=1), default=2, show_default=True,
              help="Augmented copies per (content, style) when the train split is built.")
@click.option("--steps", type=click.IntRange(min=1), default=600, show_default=True, help="Optimisation steps.")
@click.option("--contents-per-batch", type=click.IntRange(min=2), default=16, show_default=True)
@click.option("--views-per-content", type=click.IntRange(min=2), default=4, show_default=True,
              help="Styles per content in a batch (positives share content, not style).")
@click.option("--hidden", type=click.IntRange(min=1), default=256, show_default=True,
              help="Width of the head's hidden layer.")
@click.option("--grid", type=click.IntRange(min=1), default=4, show_default=True, help="Pooling grid side.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="AdamW learning rate (cosine decay).")
@click.option("--temperature", type=float, default=0.1, show_default=True, help="SupCon temperature.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
def content_head(out_dir: Path, catalog_csv: Path | None, views: int, steps: int, contents_per_batch: int,
                 views_per_content: int, hidden: int, grid: int, lr: float, temperature: float, seed: int,
                 device: str) -> None:
    """Train the content projection head on stylisations (supervised contrastive, Khosla et al. 2020).

    The head maps the frozen EfficientNet-Lite0 stage-5 map (WCT-whitened) through a position-wise MLP (a
    residual correction, zero at the start, so it starts as the `content` descriptor) to mirror-symmetric
    grid cells; positives are the same content in other styles. Prints the exported file and its sha256.
    """
    from styleaxis.embed.content_head import ContentHeadTrainConfig, train_content_head
    from styleaxis.eval.catalog import CatalogConfig, build_catalog, read_catalog

    if catalog_csv is None:
        catalog_csv = build_catalog(out_dir / "catalog", CatalogConfig(split="train", views=views))
    table = read_catalog(catalog_csv)
    if (table["kind"] == "video").any():
        raise ValueError(f"{catalog_csv}: the content head trains on images; video rows found")
    config = ContentHeadTrainConfig(out_dir=str(out_dir), steps=steps, contents_per_batch=contents_per_batch,
                                    views_per_content=views_per_content, hidden=hidden, grid=grid, lr=lr,
                                    temperature=temperature, seed=seed, device=device)
    items = list(zip(table["path"], table["content"], table["style"]))
    result = train_content_head(items, config)
    click.echo(f"step {result.step}; head: {result.model_path}  sha256 {result.sha256}")
