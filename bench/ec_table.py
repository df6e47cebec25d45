"""E and C (Yeh et al. 2018) of the stylisation methods styleaxis has, on the sample photos.

Contents: photos that ship with scikit-image / scikit-learn (``styleaxis.demo.sample_photos``), short
side 256. Styles: the cin26 styles of the demo; each style's *style image* is cin26 style s applied
to a held-out photo (the pagoda), because cin26's learnt styles have no image of their own. Every
method is measured against that same style image:

- ``cin26``: Dumoulin et al. 2017, style s (the style image comes from the same network);
- ``magenta``: Ghiasi et al. 2017 arbitrary stylisation conditioned on the style image's bottleneck;
- ``magenta-0.5``: the same with the bottleneck half-way between the content's and the style's
  (the paper's content/style trade-off);
- ``content``: the unstylised content (the floor of E, C = 1).

AdaIN and Gatys (the seed report's comparison) are not in the table: they need a trained AdaIN decoder
and the optimisation method, which this checkout does not have yet.

    python bench/ec_table.py [--photos 5] [--side 256] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import pandas as pd
import torch

from styleaxis.demo import DEMO_STYLES, sample_photos
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import load_model
from styleaxis.eval.ec import ECConfig, ECEvaluator
from styleaxis.eval.report import aggregate

STYLE_PHOTO = "pagoda"
PREDICTOR_SIDE = 256


def _tensor(photo: np.ndarray, side: int) -> torch.Tensor:
    return resize_short_side(torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255.0, side)


@torch.inference_mode()
def stylisations(photos: dict[str, torch.Tensor], style_source: torch.Tensor, styles: tuple[int, ...],
                 device: torch.device) -> pd.DataFrame:
    """One row per (content, style, method) with the three images as tensors."""
    cin = load_model("cin26").to(device)
    predictor = load_model("magenta-predictor").to(device)
    transformer = load_model("magenta-transformer").to(device)

    def bottleneck(img: torch.Tensor) -> torch.Tensor:
        return predictor(resize_short_side(img, PREDICTOR_SIDE, center_crop=True)[None].to(device))

    rows = []
    for s in styles:
        weights = torch.zeros(26, device=device)
        weights[s] = 1.0
        style_image = cin(style_source[None].to(device), weights)[0].cpu()
        style_code = bottleneck(style_image)
        for name, content in photos.items():
            x = content[None].to(device)
            content_code = bottleneck(content)
            outputs = {
                "cin26": cin(x, weights)[0],
                "magenta": transformer(x, style_code)[0],
                "magenta-0.5": transformer(x, 0.5 * style_code + 0.5 * content_code)[0],
                "content": content,
            }
            for method, out in outputs.items():
                rows.append({"content": content, "style": style_image, "stylized": out.cpu(), "method": method,
                             "photo": name, "style_id": s})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=5, help="content photos (sample photos minus the pagoda)")
    parser.add_argument("--side", type=int, default=256, help="short side of every image")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    all_photos = sample_photos()
    names = [n for n in all_photos if n != STYLE_PHOTO][: args.photos]
    photos = {n: _tensor(all_photos[n], args.side) for n in names}
    start = time.perf_counter()
    table = stylisations(photos, _tensor(all_photos[STYLE_PHOTO], args.side), DEMO_STYLES, device)
    stylise_s = time.perf_counter() - start

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluator = ECEvaluator(ECConfig(short_side=None, device=args.device, progress=True))
    start = time.perf_counter()
    scored = evaluator.evaluate(table)
    ec_s = time.perf_counter() - start

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = f"{cpu}, {torch.get_num_threads()} threads"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
    print(f"# EC table, {time.strftime('%Y-%m-%d')}, {device_name}, torch {torch.__version__}")
    cfg = evaluator.config
    print(f"# encoder {evaluator.encoder_name}, taps {', '.join(cfg.taps)}, R={cfg.directions}, seed {cfg.seed}; "
          f"{len(names)} photos ({', '.join(names)}) x styles {DEMO_STYLES}, "
          f"short side {args.side}; style image = cin26 style s on '{STYLE_PHOTO}'")
    for w in caught:
        print(f"# warning: {w.message}")
    print(f"# stylising {stylise_s:.1f} s, EC of {len(scored)} items {ec_s:.1f} s ({ec_s / len(scored):.2f} s/item)\n")
    agg = aggregate(scored.drop(columns=["style_id"])).drop(index="ALL")
    order = agg.sort_values("E_mean", ascending=False).index
    print("| method | n | E mean | E std | C mean | C std |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m in order:
        r = agg.loc[m]
        print(f"| {m} | {int(r['n'])} | {r['E_mean']:.3f} | {r['E_std']:.3f} | {r['C_mean']:.3f} | {r['C_std']:.3f} |")
    print("\nE mean per style (rows) and method (columns):")
    print(scored.pivot_table(index="style_id", columns="method", values="E", aggfunc="mean").round(3).to_string())
    print("\nSeed report (003, sec. 5.3.2), content:style weight 1:2: AdaIN has higher SSIM (C) and higher E than "
          "Gatys. Those two methods are not in this checkout; their rows belong above once they are.")


if __name__ == "__main__":
    main()
