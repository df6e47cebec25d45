"""One Python API over the stylisation methods.

``stylize("adain", content, style=...)`` stylises one image; :func:`make_stylizer` builds the method
once (networks loaded, style encoded) and returns a function from image batches to stylised batches,
which is what video stylisation (:mod:`styleaxis.pipelines.stylize_video`) calls frame batch by batch.
Each method module has a ``stylizer(config, device)`` that builds its method from a :class:`~.config.StylizeConfig`;
this module only picks it.

| method | what | style given as | alpha |
| --- | --- | --- | --- |
| ``gatys`` | pixel optimisation (Gatys et al. 2016), :mod:`.gatys` | one image | scales the style weight |
| ``adain`` | encoder -> AdaIN -> decoder (Huang & Belongie 2017), :mod:`.adain` | images (weights or masks) | AdaIN target toward the content's features |
| ``cin`` | N-style CIN network (Dumoulin et al. 2017), :mod:`.cin`, cin26 or a trained file | ``style_id`` or weights | not defined (mix styles instead) |
| ``arbitrary`` | style predictor + CIN transformer (Ghiasi et al. 2017), :mod:`.arbitrary` | one image | bottleneck toward the content's own |
| ``johnson`` | feed-forward network of one style (Johnson et al. 2016), :mod:`.johnson`, ``model`` file | (trained in) | not defined |
| ``stylebank`` | auto-encoder + one filter bank per style (Chen et al. 2017), :mod:`.stylebank`, ``model`` file | ``style_id`` or weights | not defined (mix banks instead) |
| ``swap`` | patch swap at relu3_1 (Chen & Schmidt 2016), :mod:`.style_swap`; inverse net ``model`` or optimisation | one image | swapped features toward the content's |
| ``mrf`` | CNNMRF optimisation (Li & Wand 2016), :mod:`.mrf` | one image | scales the MRF weight |
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from . import adain, arbitrary, cin, gatys, johnson, mrf, style_swap, stylebank
from .config import METHODS, ImageInput, Stylizer, StylizeConfig, as_batch

__all__ = ["METHODS", "ImageInput", "StylizeConfig", "as_batch", "make_stylizer", "stylize"]

_BUILDERS: dict[str, Callable[[StylizeConfig, torch.device], Stylizer]] = {
    "gatys": gatys.stylizer, "adain": adain.stylizer, "cin": cin.stylizer, "arbitrary": arbitrary.stylizer,
    "johnson": johnson.stylizer, "stylebank": stylebank.stylizer, "swap": style_swap.stylizer, "mrf": mrf.stylizer,
}
#: methods that optimise pixels and so need gradients through the encoder
_OPTIMISING: tuple[str, ...] = ("gatys", "mrf")


def make_stylizer(config: StylizeConfig) -> Stylizer:
    """Load the method's networks and encode the style once; returns ``f(batch) -> stylised batch``
    for (N, 3, H, W) RGB in 0..1 (any H, W >= 8), run without gradients except for the optimising methods
    (gatys, mrf, and swap without an inverse network)."""
    device = torch.device(config.device)
    run = _BUILDERS[config.method](config, device)
    if config.method in _OPTIMISING or (config.method == "swap" and not config.model):
        return lambda batch: run(batch.to(device)).clamp(0, 1)

    def infer(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return run(batch.to(device)).clamp(0, 1)

    return infer


def stylize(method: str, content: ImageInput, style: ImageInput | Sequence[ImageInput] | None = None,
            style_id: int | None = None, alpha: float = 1.0, **options) -> torch.Tensor:
    """Stylise ``content`` (path, PIL image, array or tensor) by ``method``; returns (N, 3, H, W) in 0..1.

    ``style`` is one style image or a list of them; other :class:`StylizeConfig` fields pass as keywords
    (``style_weights``, ``model``, ``masks``, ``preserve_color``, ``style_size``, ``gatys``, ``swap``, ``mrf``,
    ``device``).
    """
    if style is None:
        styles: tuple[ImageInput, ...] = ()
    elif isinstance(style, (list, tuple)):
        styles = tuple(style)
    else:
        styles = (style,)
    config = StylizeConfig(method=method, styles=styles, style_id=style_id, alpha=alpha, **options)
    return make_stylizer(config)(as_batch(content))
