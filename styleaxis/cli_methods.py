"""Training commands of the other transfer methods: ``styleaxis train johnson``, ``train stylebank`` and
``train swap-inverse``.

Each parses its options into the library's config dataclass and calls the public API
(:mod:`styleaxis.stylize.johnson`, :mod:`styleaxis.stylize.stylebank`, :mod:`styleaxis.stylize.style_swap`); the
options every trainer shares (run folder, steps, crops, checkpoints, device) come from
:mod:`styleaxis.cli_stylize`. The main CLI attaches :data:`train_johnson`, :data:`train_stylebank` and
:data:`train_swap_inverse` to its ``train`` group; :data:`commands` groups them for testing.
"""
from __future__ import annotations

from typing import Any

import click

from styleaxis.cli_base import CliGroup
from styleaxis.cli_stylize import _refuse_existing, _set_threads, _with_common

__all__ = ["commands", "train_johnson", "train_stylebank", "train_swap_inverse"]


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
    _set_threads(threads)
    _refuse_existing(options["out_dir"], no_resume)
    return run(config_cls(**options), progress=not quiet)


def _report(what: str, result, columns: str) -> None:
    last = ", ".join(f"{v:.4g}" for v in result.history[-1].tolist()) if len(result.history) else "none"
    click.echo(f"{what} {result.model_path} (sha256 {result.sha256}) after {result.step} steps; "
               f"last losses {columns} {last}")


@click.command("johnson")
@click.option("--style", type=click.Path(exists=True, dir_okay=False), required=True, help="The style image.")
@_perceptual("relu2_2", "the style image")
def train_johnson(**options: Any) -> None:
    """Train a feed-forward network for one style (Johnson et al. 2016: residual transformer with instance
    norm, perceptual losses on VGG); use it with `styleaxis stylize --method johnson --model OUT/johnson.pth`."""
    from styleaxis.stylize.johnson import JohnsonTrainConfig, train as run

    _report("johnson network", _train(run, JohnsonTrainConfig, options), "total/content/style/tv")


@click.command("stylebank")
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


@click.command("swap-inverse")
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


@click.group(cls=CliGroup)
def commands() -> None:
    """The training commands of this module (attached to `styleaxis train` by the main CLI)."""


for _command in (train_johnson, train_stylebank, train_swap_inverse):
    commands.add_command(_command)
