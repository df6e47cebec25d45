"""The other transfer methods of the literature beside cin26: speed (ms per image) and E, C (Yeh et al. 2018).

Same protocol as ``bench/stylize.py`` (its helpers are imported): the style image is cin26 style 24 painted
over the astronaut photo at short side 256; E and C come from :mod:`styleaxis.eval.ec` with the offline
``vgg16-hed`` encoder, averaged over the cat (scikit-image) and flower (scikit-learn) photos at short side 256,
which no network here was trained on.

| row | what |
| --- | --- |
| ``cin`` | cin26's own style 24, the baseline every speed ratio is taken against (same run) |
| ``johnson`` | Johnson et al. 2016 network trained on the style image (``--johnson``) |
| ``stylebank`` | StyleBank (Chen et al. 2017) bank ``--stylebank-style`` of ``--stylebank`` |
| ``swap+inverse`` | style swap (Chen & Schmidt 2016) at relu3_1, decoded by the inverse network ``--inverse`` |
| ``swap+optim`` | style swap decoded by ``--swap-steps`` L-BFGS steps |
| ``mrf`` | CNNMRF (Li & Wand 2016), ``--mrf-steps`` L-BFGS steps |

Feed-forward rows give ms per image (batch 1, square random content, best of ``--repeats`` after a warm-up);
optimisation rows give ms per loss evaluation (a forward and backward pass; L-BFGS makes about 10 per step)
and the image's total for the configured steps. The trained networks' E and C say only as much as their
training did: the script prints the steps each was trained for (from the file's JSON sidecar).

    python bench/methods.py --johnson J.pth --stylebank S.pth --inverse I.pth [--sizes 256,512] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from skimage import data
from sklearn.datasets import load_sample_image

from styleaxis.stylize.adain import load_decoder
from styleaxis.stylize.cin import style_vector
from styleaxis.stylize.johnson import load_johnson
from styleaxis.stylize.mrf import MRFConfig, mrf
from styleaxis.embed.registry import load_model
from styleaxis.stylize.style_swap import StyleSwapConfig, swap_transfer
from styleaxis.stylize.stylebank import load_stylebank
from styleaxis.eval.ec import ECConfig, ECEvaluator

from stylize import STYLE_ID, _ms, _photo, _style_image  # bench/ is on sys.path when this script runs

Stylizer = Callable[[torch.Tensor], torch.Tensor]


def _trained_steps(path: str) -> str:
    sidecar = Path(path).with_suffix(".json")
    return str(json.loads(sidecar.read_text()).get("step", "?")) if sidecar.is_file() else "?"


def _optimising(run: Callable[[torch.Tensor], object], content: torch.Tensor) -> tuple[float, int]:
    """(seconds, loss evaluations) of one optimisation."""
    start = time.perf_counter()
    history = run(content).history
    return time.perf_counter() - start, len(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--johnson", required=True, help="network from `styleaxis train johnson` on the style image")
    parser.add_argument("--stylebank", required=True, help="network from `styleaxis train stylebank`")
    parser.add_argument("--stylebank-style", type=int, default=0, help="the bank trained on the style image")
    parser.add_argument("--inverse", required=True, help="network from `styleaxis train swap-inverse`")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--swap-steps", type=int, default=10, help="L-BFGS steps of the swap decoding (E, C)")
    parser.add_argument("--mrf-steps", type=int, default=10, help="L-BFGS steps of CNNMRF (E, C)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]

    style = _style_image(256).to(device)
    encoder = load_model("vgg16-hed").to(device)
    cin26 = load_model("cin26").to(device)
    johnson = load_johnson(args.johnson).to(device)
    bank = load_stylebank(args.stylebank).to(device)
    inverse = load_decoder(args.inverse).to(device)
    bank_weights = style_vector(bank.num_styles, style_id=args.stylebank_style).to(device)
    swap_config = StyleSwapConfig(device=args.device)
    forward: dict[str, Stylizer] = {
        "cin": lambda x: cin26(x, style_vector(26, style_id=STYLE_ID).to(device)),
        "johnson": johnson,
        "stylebank": lambda x: bank(x, bank_weights),
        "swap+inverse": lambda x: swap_transfer(x, style, swap_config, inverse, encoder=encoder, progress=False).image,
    }
    optimising = {
        "swap+optim": lambda x, steps: swap_transfer(x, style, StyleSwapConfig(steps=steps, device=args.device),
                                                     encoder=encoder, progress=False),
        "mrf": lambda x, steps: mrf(x, style, MRFConfig(steps=steps, device=args.device), encoder=encoder,
                                    progress=False),
    }
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}, device {args.device}")
    print(f"# trained steps: johnson {_trained_steps(args.johnson)}, stylebank {_trained_steps(args.stylebank)} "
          f"(bank {bank.styles[args.stylebank_style]!r}), swap inverse {_trained_steps(args.inverse)}")

    speed: dict[str, dict[int, str]] = {m: {} for m in (*forward, *optimising)}
    for side in sizes:
        content = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side)).to(device)
        base = None
        for name, run in forward.items():
            with torch.inference_mode():
                ms = _ms(lambda: run(content), args.repeats)
            base = base or ms
            speed[name][side] = f"{ms:.0f} ({ms / base:.1f}x)"
        for name, run in optimising.items():
            seconds, evaluations = _optimising(lambda x: run(x, 1), content)  # one L-BFGS step
            per_eval = 1000 * seconds / evaluations
            speed[name][side] = f"{per_eval:.0f}/eval ({per_eval / base:.1f}x)"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ec = ECEvaluator(ECConfig(encoder="vgg16-hed", device=args.device))
    photos = {"cat": _photo(data.chelsea(), 256), "flower": _photo(load_sample_image("flower.jpg"), 256)}
    quality: dict[str, list[tuple[float, float]]] = {m: [] for m in (*speed, "content")}
    totals: dict[str, list[float]] = {m: [] for m in optimising}
    for content in photos.values():
        content = content.to(device)
        with torch.inference_mode():
            outputs = {name: run(content).clamp(0, 1) for name, run in forward.items()}
        for name, run in optimising.items():
            start = time.perf_counter()
            outputs[name] = run(content, args.swap_steps if name == "swap+optim" else args.mrf_steps).image
            totals[name].append(time.perf_counter() - start)
        outputs["content"] = content
        for name, out in outputs.items():
            quality[name].append((ec.effectiveness(out[0].cpu(), style[0].cpu()),
                                  ec.coherence(out[0].cpu(), content[0].cpu())))

    header = "| method | " + " | ".join(f"ms/image {s} px (x cin)" for s in sizes) + " | E | C | note |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    steps = {"swap+optim": args.swap_steps, "mrf": args.mrf_steps}
    notes = {name: f"{steps[name]} L-BFGS steps: {sum(t) / len(t):.0f} s/image at 256" for name, t in totals.items()}
    notes["content"] = "unstylised"
    for name, rows in quality.items():
        e = sum(q[0] for q in rows) / len(rows)
        c = sum(q[1] for q in rows) / len(rows)
        cells = " | ".join(speed.get(name, {}).get(s, "-") for s in sizes)
        print(f"| {name} | {cells} | {e:.2f} | {c:.3f} | {notes.get(name, '')} |")


if __name__ == "__main__":
    main()
