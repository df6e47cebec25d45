"""The embed job's throughput: today's default against the former one and a naive peer, where its wall
time goes, and its peak memory at two catalogue sizes.

Every measurement runs in a fresh process (start-up included, CPU time of the process and its decoder
process counted), on clips this script generates (cached under ``--clips``).

Default mode, on ``--videos`` clips of 10 s at 640x360 (8 fps, a key frame every second, so the
default policy keeps 8 keyframes each):

1. Same clips, same run (the first ``--compare`` clips): the default job (EmbedConfig's default
   descriptors), the same job decoding in turn instead of ahead (``decode_ahead=0``), the former
   default as ``styleaxis embed`` ran it (plus ``style_in``, the VGG statistics; 32 frames per forward,
   no batch-norm folding or channels-last, decoding in turn), and a naive peer as a user would write it
   without styleaxis: PyAV decodes every frame, one frame per second is kept, the same models run
   one frame at a time, pandas writes Parquet. Keyframes/s and CPU ms per keyframe; ratios to the
   naive peer and to the former default.
2. The default job on all the clips: start-up (Beam, model loading, decoder process) apart from
   the steady state, and within it the time in the model, the writer and waiting for the decoder
   (decoding itself overlaps the model); the steady-state rate against the bare model: the
   Embedder's forward (``embed_batch``) on the same frames already decoded and resized, batched as
   the job batches them (a video's keyframes, ``Embedder.batch_size`` per forward: 1 on a CPU).

``--rss`` instead runs the default job on small clips (160x96, 2 s, short side 64) at each of
``--sizes`` and reports the job's peak RSS: flat means the job streams.

    python bench/pipeline.py [--videos 200] [--compare 32] [--max-keyframes 8] [--short-side 256]
    python bench/pipeline.py --rss [--sizes 200,2000]
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

FORMER = ("style_in", "style_cin", "style_eff", "content")
#: how `styleaxis embed` ran the encoders before issue 18 (its --batch-size 32 was also the forward batch)
FORMER_EMBED = {"batch_size": 32, "fold_bn": False, "channels_last": False}
LONG = {"seconds": 10.0, "fps": 8, "width": 640, "height": 360}
SMALL = {"seconds": 2.0, "fps": 4, "width": 160, "height": 96}


def default_descriptors() -> tuple[str, ...]:
    """The default job's descriptors (EmbedConfig's default)."""
    from styleaxis.embed.embedder import EmbedConfig

    return EmbedConfig().descriptors


def make_clips(folder: Path, n: int, clip: dict) -> list[Path]:
    """``n`` clips (reused when present): a slow pan over one of several photos, real texture."""
    from PIL import Image
    from skimage import data

    from styleaxis.media.write import write_video

    folder.mkdir(parents=True, exist_ok=True)
    w, h, frames_per_clip = clip["width"], clip["height"], round(clip["seconds"] * clip["fps"])
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"clip{i:04d}.mp4"
        top, left = rng.integers(0, 40), rng.integers(0, 40)
        if not path.exists():
            photo = photos[i % len(photos)]
            big = np.asarray(Image.fromarray(photo).resize((w + 48 + frames_per_clip, h + 48 + frames_per_clip)))
            frames = [np.ascontiguousarray(big[top + k: top + k + h, left + k: left + k + w])
                      for k in range(frames_per_clip)]
            write_video(path, frames, clip["fps"], gop=clip["fps"])
        paths.append(path)
    return paths


def run_job(clips: list[Path], short_side: int, descriptors: tuple[str, ...], ahead: int | None,
            max_keyframes: int, embed: dict) -> dict:
    """The whole job in this (fresh) process; its summary and timings."""
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.media.video import KeyframePolicy
    from styleaxis.pipelines.beam import PipelineConfig, run_embed
    from styleaxis.pipelines.inputs import expand_inputs

    config = PipelineConfig(out_dir=Path(tempfile.mkdtemp(prefix="styleaxis-bench-run-")), progress=False,
                            embed=EmbedConfig(short_side=short_side, descriptors=descriptors, device="cpu", **embed),
                            policy=KeyframePolicy(max_keyframes=max_keyframes), decode_ahead=ahead)
    summary = run_embed(expand_inputs([str(p) for p in clips]), config)
    return {"seconds": summary["seconds"], "keyframes": summary["timings"]["keyframes"],
            "timings": summary["timings"]}


def run_naive(clips: list[Path], short_side: int) -> dict:
    """The naive peer: every frame decoded by PyAV, one per second kept, the default descriptors' models on
    one frame at a time (fp32, NCHW, batch norm as trained), a list of dicts written by pandas."""
    import av
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from styleaxis.embed.descriptors import get_descriptor
    from styleaxis.embed.images import resize_short_side
    from styleaxis.embed.registry import load_model

    start = time.perf_counter()
    effnet, predictor = load_model("effnet-lite0"), load_model("magenta-predictor")
    default = [get_descriptor(name) for name in default_descriptors()]
    eff = [d for d in default if d.model == "effnet-lite0"]  # one EfficientNet pass for all of them
    assert {d.model for d in default} <= {"effnet-lite0", "magenta-predictor"}, "the peer runs these two models"
    taps = tuple(dict.fromkeys(t for d in eff for t in d.taps))
    rows = []
    with torch.no_grad():
        for path in clips:
            with av.open(str(path)) as container:
                next_t = 0.0
                for frame in container.decode(video=0):
                    if frame.time is None or frame.time < next_t:
                        continue
                    next_t += 1.0
                    rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255
                    x = resize_short_side(rgb, short_side)[None]
                    row = {"video": path.stem, "time": frame.time}
                    out = effnet(x, taps)
                    for d in eff:
                        row[d.name] = d.compute(out)[0].numpy()
                    side = min(x.shape[-2:])
                    top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
                    square = F.interpolate(x[..., top:top + side, left:left + side], size=(256, 256),
                                           mode="bilinear", antialias=True, align_corners=False)
                    if "style_cin" in default_descriptors():
                        row["style_cin"] = predictor(square)[0].numpy()
                    rows.append(row)
    pd.DataFrame(rows).to_parquet(Path(tempfile.mkdtemp(prefix="styleaxis-bench-naive-")) / "out.parquet")
    return {"seconds": time.perf_counter() - start, "keyframes": len(rows)}


def run_bare(clips: list[Path], short_side: int, descriptors: tuple[str, ...], max_keyframes: int) -> dict:
    """The bare model on the job's frames, decoded and resized beforehand, one video per forward."""
    import torch

    from styleaxis.embed.embedder import EmbedConfig, Embedder
    from styleaxis.embed.images import resize_short_side
    from styleaxis.media.video import DEFAULT_MAX_SIDE, KeyframePolicy, read_keyframes

    policy = KeyframePolicy(max_keyframes=max_keyframes)
    videos = [[kf.image for kf in read_keyframes(p, policy, DEFAULT_MAX_SIDE).keyframes] for p in clips]
    embedder = Embedder(EmbedConfig(short_side=short_side, descriptors=descriptors, device="cpu")).load()
    # as the Embedder batches: a video's keyframes, embedder.batch_size frames per forward (1 on a CPU)
    batches = [torch.stack([resize_short_side(torch.from_numpy(f).permute(2, 0, 1).float() / 255, short_side)
                            for f in frames[i:i + embedder.batch_size]])
               for frames in videos for i in range(0, len(frames), embedder.batch_size)]
    embedder.embed_batch(batches[0])  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        embedder.embed_batch(batch)
    return {"seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "keyframes": sum(len(b) for b in batches), "threads": torch.get_num_threads()}


def _child(args: argparse.Namespace, part: str, n: int, **extra: object) -> dict:
    """One measurement in a fresh process; adds its CPU seconds (with its decoder process, once reaped)."""
    command = [sys.executable, __file__, "--child", part, "--n", str(n), "--short-side", str(args.short_side),
               "--clips", str(args.clips), "--max-keyframes", str(args.max_keyframes), "--extra", json.dumps(extra),
               "--threads", str(args.threads)] + (["--rss"] if args.rss else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.splitlines()[-1])
    result["cpu_s"] = result.get("cpu_s") or (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return result


def _child_main(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    clips = make_clips(args.clips, args.n, SMALL if args.rss else LONG)
    extra = json.loads(args.extra)
    if args.child == "job":
        out = run_job(clips, args.short_side, tuple(extra["descriptors"]), extra.get("ahead"), args.max_keyframes,
                      extra.get("embed", {}))
    elif args.child == "naive":
        out = run_naive(clips, args.short_side)
    else:
        out = run_bare(clips, args.short_side, tuple(extra["descriptors"]), args.max_keyframes)
    out["own_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _header(args: argparse.Namespace, clip: dict) -> None:
    import torch

    threads = args.threads or torch.get_num_threads()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__} ({threads} threads), clips {clip['width']}x{clip['height']} "
          f"{clip['seconds']:g} s at {clip['fps']} fps, at most {args.max_keyframes} keyframes each, short side "
          f"{args.short_side}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}")


def compare(args: argparse.Namespace) -> None:
    make_clips(args.clips, args.videos, LONG)
    _header(args, LONG)
    n = args.compare
    rows = [("styleaxis default", _child(args, "job", n, descriptors=default_descriptors())),
            ("styleaxis default, decode_ahead=0", _child(args, "job", n, descriptors=default_descriptors(), ahead=0)),
            ("styleaxis former default (+ style_in, 32 frames per forward, no folding or channels-last, "
             "decoding in turn)", _child(args, "job", n, descriptors=FORMER, ahead=0, embed=FORMER_EMBED)),
            ("naive peer (PyAV all frames, 1/s, batch 1, pandas)", _child(args, "naive", n))]
    naive = rows[-1][1]["keyframes"] / rows[-1][1]["seconds"]
    former = rows[2][1]["keyframes"] / rows[2][1]["seconds"]
    print(f"\n{n} clips, same run:\n")
    print("| job | keyframes | wall (s) | keyframes/s | CPU ms/keyframe | x naive | x former default |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        rate = r["keyframes"] / r["seconds"]
        print(f"| {name} | {r['keyframes']:.0f} | {r['seconds']:.1f} | {rate:.2f} | "
              f"{1000 * r['cpu_s'] / r['keyframes']:.0f} | {rate / naive:.2f} | {rate / former:.2f} |", flush=True)

    # bare, job, bare: load that drifts during the job weighs on both sides
    before = _child(args, "bare", n, descriptors=default_descriptors())
    job = _child(args, "job", args.videos, descriptors=default_descriptors())
    after = _child(args, "bare", n, descriptors=default_descriptors())
    bare = {"keyframes": before["keyframes"], "seconds": (before["seconds"] + after["seconds"]) / 2,
            "threads": before["threads"]}
    t = job["timings"]
    bare_rate = bare["keyframes"] / bare["seconds"]
    steady = t["steady_keyframes_per_s"]
    other = max(0.0, t["steady_s"] - t["model_s"] - t["write_s"] - t["decode_wait_s"])
    print(f"\nthe default job on {args.videos} clips ({t['keyframes']:.0f} keyframes), where the wall time goes:\n")
    print("| part | seconds | share of the wall time |")
    print("| --- | --- | --- |")
    total = job["seconds"]
    for name, seconds in (("start-up (Beam, model load, decoder process, first decodes)", t["startup_s"]),
                          ("  of which model loading", t.get("load_s", 0.0)),
                          ("steady state", t["steady_s"]),
                          ("  model (resize, forward, descriptors)", t["model_s"]),
                          ("  waiting for the decoder", t["decode_wait_s"]),
                          ("  writing Parquet shards", t["write_s"]),
                          ("  other (Beam, batching, rows; the rest)", other),
                          ("tail (last shards, commit)", t["tail_s"]),
                          ("decoding, overlapped with the above (decoder process)", t["decode_s"])):
        print(f"| {name} | {seconds:.1f} | {seconds / total:.0%} |")
    print(f"| whole job | {total:.1f} | 100% |")
    print(f"\nsteady state {steady:.2f} keyframes/s; bare model {bare_rate:.2f} keyframes/s "
          f"({bare['keyframes']} keyframes of the first {n} clips, {bare['threads']} threads, the mean of a run "
          f"before and one after the job: {before['keyframes'] / before['seconds']:.2f} and "
          f"{after['keyframes'] / after['seconds']:.2f}): "
          f"ratio {steady / bare_rate:.2f}; model time per keyframe in the job "
          f"{1000 * t['model_s'] / t['keyframes']:.0f} ms vs bare {1000 * bare['seconds'] / bare['keyframes']:.0f} ms; "
          f"job CPU {1000 * job['cpu_s'] / job['keyframes']:.0f} ms/keyframe; load average now "
          f"{os.getloadavg()[0]:.2f}")


def rss(args: argparse.Namespace) -> None:
    _header(args, SMALL)
    print("| videos | keyframes | wall (s) | keyframes/s | job peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- |")
    for n in (int(s) for s in args.sizes.split(",")):
        make_clips(args.clips, n, SMALL)
        r = _child(args, "job", n, descriptors=default_descriptors())
        print(f"| {n} | {r['keyframes']:.0f} | {r['seconds']:.1f} | {r['keyframes'] / r['seconds']:.1f} | "
              f"{r['own_rss_mb']:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=200, help="clips in the catalogue")
    parser.add_argument("--compare", type=int, default=32, help="clips the four jobs of table 1 run on")
    parser.add_argument("--short-side", type=int, default=None, help="default: 256 (64 with --rss)")
    parser.add_argument("--max-keyframes", type=int, default=8, help="keyframes per video (KeyframePolicy)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in every measured process (0: torch's default); 1 keeps figures "
                             "steady on a machine shared with other work")
    parser.add_argument("--rss", action="store_true", help="peak RSS at --sizes on small clips instead")
    parser.add_argument("--sizes", default="200,2000")
    parser.add_argument("--clips", type=Path, default=None, help="clip cache folder")
    parser.add_argument("--child", choices=("job", "naive", "bare"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.short_side = args.short_side or (64 if args.rss else 256)
    args.clips = args.clips or Path(tempfile.gettempdir()) / ("styleaxis-bench-small" if args.rss else "styleaxis-bench-360p")
    if args.child is not None:
        _child_main(args)
    elif args.rss:
        rss(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
