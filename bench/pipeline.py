"""The embed job at two catalogue sizes: peak memory, and throughput against the bare model.

For each catalogue size (default 50 and 500 short clips: 2 s, 160x96, 4 fps, a key frame every
second, so 2 keyframes each) a fresh process runs the whole job (Beam FnApiRunner, decoding in the
isolated decoder process, RunInference, Parquet shards, commit) and reports:

- the job process's peak RSS, and the decoder process's (VmHWM of a decoder process that decodes the
  same clips; the job's own decoder cannot be read after it exits, and ru_maxrss of a child counts
  the parent's pages it shared before exec): flat in the catalogue size means the job streams (no
  list of all frames or vectors in memory);
- keyframes per second of the job (pipeline wall time, including loading the models) and of the
  bare model on the same frames: the Embedder's forward pass (``embed_batch``) on tensors already
  decoded, resized and batched as the job batches them (one video per forward), measured in fresh
  processes before and after the job (the mean), so load that drifts weighs on both sides; and the
  same as CPU milliseconds per keyframe (the job's process plus its decoder process), which a
  machine shared with other work does not distort. The ratio is what decoding, hashing, Beam and
  Parquet cost on top of the model.

    python bench/pipeline.py [--sizes 50,500] [--short-side 64] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLIP = {"seconds": 2.0, "fps": 4, "width": 160, "height": 96}


def make_clips(folder: Path, n: int) -> list[Path]:
    """``n`` clips (reused when present), each a different crop path over a photo, real texture."""
    from skimage import data

    from styleaxis.media.write import write_video

    folder.mkdir(parents=True, exist_ok=True)
    photo = data.astronaut()
    frames_per_clip = round(CLIP["seconds"] * CLIP["fps"])
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"clip{i:04d}.mp4"
        if not path.exists():
            top, left = rng.integers(0, 512 - CLIP["height"] - 40), rng.integers(0, 512 - CLIP["width"] - 40)
            frames = [np.ascontiguousarray(photo[top + 4 * k: top + 4 * k + CLIP["height"],
                                                 left + 4 * k: left + 4 * k + CLIP["width"]])
                      for k in range(frames_per_clip)]
            write_video(path, frames, CLIP["fps"], gop=CLIP["fps"])
        paths.append(path)
    return paths


def _peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"/proc/{pid}/status has no VmHWM line")


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have exited (the job's decoder process)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_job(clips_dir: Path, n: int, short_side: int, device: str) -> dict:
    """The whole job over the first ``n`` clips, in this (fresh) process: wall, CPU and peak memory."""
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.pipelines.beam import PipelineConfig, run_embed
    from styleaxis.pipelines.inputs import expand_inputs

    inputs = expand_inputs([str(p) for p in make_clips(clips_dir, n)])
    config = PipelineConfig(out_dir=Path(tempfile.mkdtemp(prefix="styleaxis-bench-run-")), progress=False,
                            embed=EmbedConfig(short_side=short_side, device=device))
    cpu = _cpu_s()
    summary = run_embed(inputs, config)
    return {"job_s": summary["seconds"], "job_cpu_s": _cpu_s() - cpu,
            "job_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_bare(clips_dir: Path, n: int, short_side: int, device: str) -> dict:
    """The bare model on the job's frames: decoded (through a decoder process, whose peak memory is
    read), resized and batched one video per forward pass beforehand; only the forward is timed."""
    import torch

    from styleaxis.embed.embedder import EmbedConfig, Embedder
    from styleaxis.embed.images import resize_short_side
    from styleaxis.pipelines.beam import PipelineConfig
    from styleaxis.media.isolation import IsolatedCall
    from styleaxis.media.video import read_keyframes

    config = PipelineConfig(out_dir=Path(tempfile.gettempdir()))
    with IsolatedCall(read_keyframes, timeout_s=120) as decode:
        videos = [[kf.image for kf in decode(str(path), config.policy, config.max_side, config.decoders).keyframes]
                  for path in make_clips(clips_dir, n)]
        decoder_rss = _peak_rss_mb(decode.pid)
    embedder = Embedder(EmbedConfig(short_side=short_side, device=device)).load()
    batches = [torch.stack([resize_short_side(torch.from_numpy(f).permute(2, 0, 1).float() / 255, short_side)
                            for f in frames]) for frames in videos]
    embedder.embed_batch(batches[0])  # warm-up
    wall, cpu = time.perf_counter(), _cpu_s()
    for batch in batches:
        embedder.embed_batch(batch)
    if embedder.device.type == "cuda":
        torch.cuda.synchronize()
    return {"keyframes": sum(len(b) for b in batches), "bare_s": time.perf_counter() - wall,
            "bare_cpu_s": _cpu_s() - cpu, "decoder_rss_mb": decoder_rss, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,500", help="catalogue sizes (videos)")
    parser.add_argument("--short-side", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "styleaxis-bench-pipeline")
    parser.add_argument("--child", choices=("job", "bare"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--videos", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:  # one measurement in a fresh process, JSON on the last line
        part = run_job if args.child == "job" else run_bare
        print(json.dumps(part(args.clips, args.videos, args.short_side, args.device)))
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {args.device}, "
          f"clips {CLIP['width']}x{CLIP['height']} {CLIP['seconds']:g} s at {CLIP['fps']} fps, short side "
          f"{args.short_side}, {time.strftime('%Y-%m-%d')}")
    print("| videos | keyframes | job keyframes/s | bare model keyframes/s | ratio | job CPU ms/keyframe "
          "| bare CPU ms/keyframe | CPU ratio | job peak RSS (MB) | decoder process peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def child(part: str, n: int) -> dict:
        command = [sys.executable, __file__, "--child", part, "--videos", str(n), "--short-side",
                   str(args.short_side), "--device", args.device, "--clips", str(args.clips)]
        return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])

    for n in (int(s) for s in args.sizes.split(",")):
        make_clips(args.clips, n)
        # bare, job, bare: load that drifts during the job weighs on both sides
        before, job, after = child("bare", n), child("job", n), child("bare", n)
        k = before["keyframes"]
        bare_s, bare_cpu = (before["bare_s"] + after["bare_s"]) / 2, (before["bare_cpu_s"] + after["bare_cpu_s"]) / 2
        job_rate, bare_rate = k / job["job_s"], k / bare_s
        job_ms, bare_ms = 1000 * job["job_cpu_s"] / k, 1000 * bare_cpu / k
        print(f"| {n} | {k} | {job_rate:.1f} | {bare_rate:.1f} | {job_rate / bare_rate:.2f} | {job_ms:.0f} "
              f"| {bare_ms:.0f} | {bare_ms / job_ms:.2f} | {job['job_rss_mb']:.0f} | {before['decoder_rss_mb']:.0f} |")
    print(f"# {before['threads']} torch threads; the job's figures include its start-up (model load, Beam, "
          "decoder process)")


if __name__ == "__main__":
    main()
