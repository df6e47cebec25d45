"""Embedder throughput against the bare forward pass of each encoder, at batch 1, 8 and 32.

For each encoder, the bare figure runs only the network on frames that are already tensors at the
embedding size; the Embedder figure starts from uint8 RGB video frames (360x640) and includes the
resize, batching, descriptor arithmetic and the copy back to numpy. The ratio is what the Embedder
costs on top of the model. Peak memory is the process's peak RSS on CPU (monotonic, so read each
row against the previous) or torch's peak allocation on CUDA.

    python bench/embed_throughput.py [--frames 32] [--device cpu|cuda] [--precision fp32|fp16|bf16]

``--speedups`` instead measures the cheap model speed-ups on the default descriptors, each against
the fp32 reference (NCHW, batch norm unfolded, ``--batch`` frames per forward) in the same run: batch-norm folding, channels-last, bf16 (autocast), and
``torch.compile``, alone and combined. Each variant is timed ``--repeats`` times interleaved with the
reference (so load that comes and goes weighs on both; the best of each is kept), and its vectors are
compared with the reference's: the smallest cosine over the frames, per descriptor. A speed-up
becomes a default only with a cosine >= 0.999 on every descriptor.

    python bench/embed_throughput.py --speedups [--frames 16] [--batch 8] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
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


def _photo_frames(n: int) -> list[np.ndarray]:
    """``n`` 360x640 crops of photos (real texture: random noise would flatter the cosines)."""
    from PIL import Image
    from skimage import data

    photos = [np.asarray(Image.fromarray(p).resize((720, 720))) for p in (data.astronaut(), data.coffee(),
                                                                          data.chelsea(), data.rocket())]
    return [np.ascontiguousarray(photos[i % 4][(i * 23) % 300:(i * 23) % 300 + 360, (i * 7) % 60:(i * 7) % 60 + 640])
            for i in range(n)]


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


#: the speed-ups --speedups measures: name -> EmbedConfig fields
SPEEDUPS: dict[str, dict] = {
    "batch 1 per forward": {"batch_size": 1},
    "batch 8 per forward (the former default)": {"batch_size": 8},
    "batch 32 per forward (the former CLI default)": {"batch_size": 32},
    "fold BN": {"fold_bn": True},
    "channels-last": {"channels_last": True},
    "fold BN + channels-last": {"fold_bn": True, "channels_last": True},
    "bf16 autocast": {"precision": "bf16"},
    "fold BN + bf16": {"fold_bn": True, "precision": "bf16"},
    "fold BN + torch.compile": {"fold_bn": True, "compile": True},
    "fold BN + channels-last + torch.compile": {"fold_bn": True, "channels_last": True, "compile": True},
}


def speedups(args: argparse.Namespace, frames: list[np.ndarray]) -> None:
    """Each speed-up against the fp32 reference: speed ratio (wall and CPU) and cosine per descriptor."""
    def timed(embedder: Embedder) -> tuple[float, float, dict[str, np.ndarray]]:
        start, cpu = time.perf_counter(), time.process_time()
        out = embedder.embed(frames)
        return time.perf_counter() - start, time.process_time() - cpu, out

    def load(**fields) -> Embedder:
        base = {"batch_size": args.batch, "device": args.device, "fold_bn": False, "channels_last": False}
        embedder = Embedder(EmbedConfig(**{**base, **fields})).load()
        embedder.embed(frames[: args.batch])  # warm-up (and the compile of that shape)
        return embedder

    reference = load()
    names = [d.name for d in reference.descriptors]
    print("| variant | reference (frames/s) | variant (frames/s) | speed ratio (wall) | CPU-time ratio | "
          + " | ".join(f"min cosine {n}" for n in names) + " |")
    print("| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    for name, fields in SPEEDUPS.items():
        try:
            variant = load(**fields)
            ref_runs, var_runs = [], []
            for _ in range(args.repeats):  # interleaved: load that drifts weighs on both
                ref_runs.append(timed(reference))
                var_runs.append(timed(variant))
        except Exception as exc:  # e.g. torch.compile without a working compiler: the row says why
            print(f"| {name} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} |", flush=True)
            continue
        ref_wall, ref_cpu = min(r[0] for r in ref_runs), min(r[1] for r in ref_runs)
        var_wall, var_cpu = min(r[0] for r in var_runs), min(r[1] for r in var_runs)
        want, got = ref_runs[0][2], var_runs[0][2]
        cosines = []
        for n in names:
            a, b = want[n].astype(np.float64), got[n].astype(np.float64)
            cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            cosines.append(f"{cos.min():.6f}")
        n_frames = len(frames)
        print(f"| {name} | {n_frames / ref_wall:.2f} | {n_frames / var_wall:.2f} | {ref_wall / var_wall:.2f} | "
              f"{ref_cpu / var_cpu:.2f} | " + " | ".join(cosines) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=32, help="frames per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--speedups", action="store_true", help="the speed-up table instead (see above)")
    parser.add_argument("--batch", type=int, default=0, help="batch size of --speedups (0: the device's default)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant with --speedups")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cpu = platform.processor() or platform.machine()
    if args.speedups:
        frames = _photo_frames(args.frames)
        print(f"# {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {device}, "
              f"{args.frames} frames of 360x640 (photo crops) -> short side 256, batch {args.batch}, default "
              f"descriptors, {time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}")
        speedups(args, frames)
        print(f"# load average at the end {os.getloadavg()[0]:.2f}")
        return
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(args.frames)]
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
