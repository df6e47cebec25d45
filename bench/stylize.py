"""Stylisation speed per method at 256 and 512 px, beside the seed report's figures, with E and C.

Speed: milliseconds per image (batch 1, square content, best of ``--repeats`` after a warm-up), through
the public API (:func:`styleaxis.stylize.stylize.make_stylizer`), style already encoded. Gatys is an
optimisation: its row gives the measured time per iteration (one loss and gradient evaluation) and the
time for the 150 iterations of the seed report (003: 150 iterations at ~5 s each on a Tesla K80, ~12.5
min per image), extrapolated. The seed's AdaIN figure is ~0.05 s per image after loading (GPU).

Quality: E (effectiveness, higher = closer to the style's feature statistics) and C (coherence, SSIM to
the content) of Yeh et al. 2018, from :mod:`styleaxis.eval.ec` with the offline ``vgg16-hed`` encoder,
averaged over two photos none of the networks was trained on (the cat of scikit-image and the flower of
scikit-learn) at short side 256. The style image is cin26 style 24 applied to the astronaut photo;
``cin`` applies cin26's own style 24, the others take the style image. Gatys runs ``--gatys-steps``
L-BFGS steps (10 evaluations each) from the content image for E/C.

    python bench/stylize.py [--sizes 256,512] [--repeats 2] [--gatys-steps 10] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import platform
import warnings
from dataclasses import replace

import torch
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_image

from styleaxis.stylize.gatys import GatysConfig, gatys
from styleaxis.embed.registry import load_model
from styleaxis.stylize.stylize import StylizeConfig, make_stylizer
from styleaxis.embed.training import to_tensor
from styleaxis.eval.ec import ECConfig, ECEvaluator

from embed_throughput import _rate  # bench/ is on sys.path when this script runs

STYLE_ID = 24
SEED_GATYS_ITERATIONS = 150
SEED = {"gatys": "12.5 min (150 it x 5 s, K80)", "adain": "0.05 s (GPU)", "cin": "-", "arbitrary": "-"}


def _photo(array, side: int) -> torch.Tensor:
    image = Image.fromarray(array).convert("RGB")
    scale = side / min(image.size)
    return to_tensor(image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BICUBIC))


def _style_image(side: int) -> torch.Tensor:
    weights = torch.zeros(26)
    weights[STYLE_ID] = 1.0
    with torch.inference_mode():
        return load_model("cin26")(_photo(data.astronaut(), side), weights).clamp(0, 1)


def _configs(style: torch.Tensor, device: str) -> dict[str, StylizeConfig]:
    # the style keeps its own 256 px scale (style_size defaults to 512, which would upscale it and halve
    # the stroke frequency AdaIN transfers: E 1.70 instead of 2.68 with the v1 decoder)
    return {"adain": StylizeConfig("adain", styles=(style,), style_size=min(style.shape[-2:]), device=device),
            "cin": StylizeConfig("cin", style_id=STYLE_ID, device=device),
            "arbitrary": StylizeConfig("arbitrary", styles=(style,), device=device)}


def _ms(fn, repeats: int) -> float:
    """Milliseconds per call: best of ``repeats`` after a warm-up (embed_throughput's timer)."""
    return 1000.0 / _rate(fn, 1, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gatys-steps", type=int, default=10, help="L-BFGS steps for Gatys E/C")
    parser.add_argument("--gatys-iterations", type=int, default=5, help="evaluations timed per size")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}")

    style = _style_image(256)
    stylizers = {name: make_stylizer(config) for name, config in _configs(style, args.device).items()}
    encoder = load_model("vgg16-hed")
    speed: dict[str, dict[int, str]] = {m: {} for m in ("gatys", *stylizers)}
    for side in sizes:
        content = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
        for name, run in stylizers.items():
            speed[name][side] = f"{_ms(lambda: run(content), args.repeats):.0f}"
        n = args.gatys_iterations
        config = GatysConfig(optimizer="adam", steps=n, device=args.device)
        per_it = _ms(lambda: gatys(content, style, config, encoder=encoder, progress=False), 1) / n
        speed["gatys"][side] = f"{per_it:.0f}/it; x{SEED_GATYS_ITERATIONS} = {per_it * SEED_GATYS_ITERATIONS / 60e3:.1f} min"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ec = ECEvaluator(ECConfig(encoder="vgg16-hed", device=args.device))
    photos = {"cat": _photo(data.chelsea(), 256), "flower": _photo(load_sample_image("flower.jpg"), 256)}
    quality: dict[str, list[tuple[float, float]]] = {m: [] for m in speed}
    gatys_config = replace(GatysConfig(device=args.device), steps=args.gatys_steps)
    for content in photos.values():
        outputs = {name: run(content) for name, run in stylizers.items()}
        outputs["gatys"] = gatys(content, style, gatys_config, encoder=encoder, progress=False).image
        for name, out in outputs.items():
            quality[name].append((ec.effectiveness(out[0], style[0]), ec.coherence(out[0], content[0])))
    baseline = [(ec.effectiveness(c[0], style[0]), 1.0) for c in photos.values()]

    header = "| method | " + " | ".join(f"ms/image {s} px" for s in sizes) + " | seed report | E | C |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for name in speed:
        e = sum(q[0] for q in quality[name]) / len(quality[name])
        c = sum(q[1] for q in quality[name]) / len(quality[name])
        print(f"| {name} | " + " | ".join(speed[name][s] for s in sizes) + f" | {SEED[name]} | {e:.2f} | {c:.3f} |")
    e0 = sum(b[0] for b in baseline) / len(baseline)
    print("| (content, unstylised) | " + " | ".join("-" for _ in sizes) + f" | - | {e0:.2f} | 1.000 |")


if __name__ == "__main__":
    main()
