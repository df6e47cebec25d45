"""Embedder throughput against the bare forward pass of each encoder, at batch 1, 8 and 32.

For each encoder, the bare figure runs only the network on frames that are already tensors at the
embedding size; the Embedder figure starts from uint8 RGB video frames (360x640) and includes the
resize, batching, descriptor arithmetic and the copy back to numpy. The ratio is what the Embedder
costs on top of the model. Peak memory is the process's peak RSS on CPU (monotonic, so read each
row against the previous) or torch's peak allocation on CUDA.

    python bench/embed_throughput.py [--frames 32] [--device cpu|cuda] [--precision fp32|fp16|bf16]
"""
from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch

from styleaxis.embed.descriptors import get_descriptor
from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import load_model

#: encoder -> a descriptor computed on it (the Embedder runs just that one, so both sides do the same work)
ENCODERS = {"vgg16-hed": "style_in", "effnet-lite0": "content", "magenta-predictor": "style_cin"}


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rate(fn, n_frames: int, repeats: int = 2) -> float:
    """Frames per second of ``fn`` (best of ``repeats`` after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return n_frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=32, help="frames per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(args.frames)]
    device = torch.device(args.device)
    cpu = platform.processor() or platform.machine()
    print(f"# {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {device}, "
          f"precision {args.precision}, {args.frames} frames of 360x640 -> short side 256")
    print("| encoder | batch | bare forward (frames/s) | Embedder (frames/s) | ratio | peak memory (MB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for encoder, descriptor in ENCODERS.items():
        for bs in (int(b) for b in args.batches.split(",")):
            embedder = Embedder(EmbedConfig(descriptors=(descriptor,), batch_size=bs, device=args.device,
                                            precision=args.precision)).load()
            # the predictor sees the centred 256x256 square; the others the whole frame at short side 256
            crop = encoder == "magenta-predictor"
            tensors = torch.stack([resize_short_side(torch.from_numpy(f).permute(2, 0, 1).float() / 255, 256, crop)
                                   for f in frames]).to(device)
            model = load_model(encoder).to(device)
            taps = get_descriptor(descriptor).taps

            def bare() -> None:
                with torch.inference_mode():
                    for start in range(0, len(tensors), bs):
                        batch = tensors[start:start + bs]
                        model(batch) if crop else model(batch, taps)

            bare_rate = _rate(bare, len(frames))
            embed_rate = _rate(lambda: embedder.embed(frames), len(frames))
            print(f"| {encoder} | {bs} | {bare_rate:.2f} | {embed_rate:.2f} | {embed_rate / bare_rate:.2f} | "
                  f"{_peak_mb(device):.0f} |", flush=True)


if __name__ == "__main__":
    main()
