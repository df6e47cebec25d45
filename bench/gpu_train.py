"""``bench/gpu.sh --train``: a few minutes of training on the GPU, E/C before and after (one JSON row each).

- AdaIN: the shipped decoder (``adain-decoder``, 2000 CPU steps) trained on for ``--minutes`` with the
  paper's loss, on the sample photos (content) and cin26 stylisations of the held-out pagoda (style,
  as bench/ec_table.py makes them); the decoder is saved to ``--out``/adain-decoder.pth.
- Johnson: a network for one of those style images, trained from scratch for ``--minutes``.

E (effectiveness) and C (coherence) of Yeh et al. 2018 (``styleaxis.eval.ec``) are the means over the
content photos x style images, before and after. ``--dry-run`` trains a few steps at 64 px on the CPU.

    python bench/gpu_train.py [--minutes 5] [--out runs/gpu-train] [--dry-run]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styleaxis.demo import sample_photos
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import load_model
from styleaxis.eval.ec import ECConfig, ECEvaluator

STYLES = (2, 8, 15)


def _write_data(root: Path, side: int) -> tuple[Path, Path, list[torch.Tensor], list[torch.Tensor]]:
    photos = sample_photos()
    held_out = photos.pop("pagoda")
    content_dir, style_dir = root / "content", root / "styles"
    content_dir.mkdir(parents=True, exist_ok=True)
    style_dir.mkdir(parents=True, exist_ok=True)
    contents = []
    for name, photo in photos.items():
        x = resize_short_side(torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255, side, True)
        contents.append(x)
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(content_dir / f"{name}.png")
    cin = load_model("cin26")
    source = resize_short_side(torch.from_numpy(np.array(held_out)).permute(2, 0, 1).float() / 255, side, True)
    styles = []
    with torch.inference_mode():
        for s in STYLES:
            weights = torch.zeros(26)
            weights[s] = 1.0
            image = cin(source[None], weights)[0].clamp(0, 1)
            styles.append(image)
            Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
                style_dir / f"style{s:02d}.png")
    return content_dir, style_dir, contents, styles


def _ec(evaluator: ECEvaluator, triplets: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    table = evaluator.evaluate([(c, s, o.float().cpu().clamp(0, 1)) for c, s, o in triplets])
    return float(table.E.mean()), float(table.C.mean())


def _train_for(trainer, seconds: float, min_steps: int) -> int:
    deadline, steps = time.perf_counter() + seconds, 0
    while steps < min_steps or time.perf_counter() < deadline:
        trainer.train_step()
        steps += 1
    return steps


def adain(args: argparse.Namespace, data: tuple, evaluator: ECEvaluator, device: str) -> dict:
    from styleaxis.stylize.adain import AdaINTrainConfig, _AdaINTrainer, save_decoder

    content_dir, style_dir, contents, styles = data
    side = contents[0].shape[-1]
    config = AdaINTrainConfig(content_dir=str(content_dir), style_dir=str(style_dir), out_dir=str(args.out / "adain"),
                              resize=side, crop=side, batch_size=2 if args.dry_run else 8, device=device,
                              checkpoint_every=0, preview_every=0)
    trainer = _AdaINTrainer(config)
    shipped = load_model("adain-decoder")
    trainer.model.load_state_dict({k: v.float() for k, v in shipped.state_dict().items()})

    def outputs() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        trainer.model.eval()
        with torch.no_grad():
            out = [(c, s, trainer.forward(c[None].to(device), s[None].to(device))["output"][0])
                   for c in contents for s in styles]
        trainer.model.train()
        return out

    before = _ec(evaluator, outputs())
    start = time.perf_counter()
    steps = _train_for(trainer, 60 * args.minutes, 2)
    seconds = time.perf_counter() - start
    after = _ec(evaluator, outputs())
    path = save_decoder(trainer.model, args.out / "adain-decoder.pth", config.encoder, "relu4_1")
    return {"step": "train", "case": f"adain: shipped decoder + {steps} steps ({seconds:.0f} s, batch {config.batch_size})",
            "value": f"E {before[0]:.3f} -> {after[0]:.3f}, C {before[1]:.3f} -> {after[1]:.3f}", "note": str(path)}


def johnson(args: argparse.Namespace, data: tuple, evaluator: ECEvaluator, device: str) -> dict:
    from styleaxis.stylize.johnson import JohnsonTrainConfig, _JohnsonTrainer

    content_dir, style_dir, contents, styles = data
    side = contents[0].shape[-1]
    style_path = sorted(style_dir.glob("*.png"))[1]
    config = JohnsonTrainConfig(style=str(style_path), content_dir=str(content_dir), out_dir=str(args.out / "johnson"),
                                resize=side, crop=side, batch_size=2 if args.dry_run else 4, device=device,
                                checkpoint_every=0, preview_every=0)
    trainer = _JohnsonTrainer(config)

    def outputs() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        trainer.model.eval()
        with torch.no_grad():
            out = [(c, styles[1], trainer.model(c[None].to(device))[0]) for c in contents]
        trainer.model.train()
        return out

    before = _ec(evaluator, outputs())
    start = time.perf_counter()
    steps = _train_for(trainer, 60 * args.minutes, 2)
    after = _ec(evaluator, outputs())
    return {"step": "train", "case": f"johnson ({style_path.stem}): from scratch, {steps} steps "
                                     f"({time.perf_counter() - start:.0f} s, batch {config.batch_size})",
            "value": f"E {before[0]:.3f} -> {after[0]:.3f}, C {before[1]:.3f} -> {after[1]:.3f}", "note": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training time per network")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-train"))
    parser.add_argument("--dry-run", action="store_true", help="a few steps at 64 px on the CPU")
    args = parser.parse_args()
    if args.dry_run:
        args.minutes = 0.0
    device = "cpu" if args.dry_run else "cuda"
    data = _write_data(args.out / "data", 64 if args.dry_run else 256)
    evaluator = ECEvaluator(ECConfig())
    for run in (adain, johnson):
        print(json.dumps(run(args, data, evaluator, device)), flush=True)


if __name__ == "__main__":
    main()
