"""The steps of bench/gpu.sh, each printing one JSON row; ``table`` turns the rows into one Markdown table.

Every step has a full size (a CUDA machine, the whole script within 8 minutes) and a ``--dry-run``
size (a few seconds each on a CPU), so the script is tested where no GPU is lent:

- ``embedder``: Embedder throughput on the default descriptors in fp32, fp16 and fp32 channels-last
  at batches 32, 128, 256 (dry: batch 2 on CPU, bf16 for fp16);
- ``job``: the embed job end to end on generated 360p clips, fp16, batches packed across videos;
- ``faiss``: a GPU flat index over 1M 256-d vectors, build and 10k queries (absent faiss-gpu says so);
- ``stylize``: AdaIN (shipped decoder) and cin26 on 512x512 images, ms per image.

    python bench/gpu_table.py STEP [--dry-run] >> rows.jsonl
    python bench/gpu_table.py table rows.jsonl [--results bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _device(dry: bool) -> str:
    return "cpu" if dry else "cuda"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _row(step: str, case: str, value: str, note: str = "") -> None:
    print(json.dumps({"step": step, "case": case, "value": value, "note": note}), flush=True)


def embedder(dry: bool) -> None:
    from styleaxis.embed.embedder import EmbedConfig, Embedder

    device = _device(dry)
    batches = (2,) if dry else (32, 128, 256)
    side, n = (64, 4) if dry else (256, 512)
    half = "bf16" if dry else "fp16"  # CPU autocast has bf16; fp16 is the GPU's
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(n)]
    for precision, channels_last in (("fp32", False), (half, False), ("fp32", True)):
        for bs in batches:
            config = EmbedConfig(short_side=side, batch_size=bs, device=device, precision=precision,
                                 channels_last=channels_last)
            e = Embedder(config).load()
            e.embed(frames[:bs])
            _sync()
            start = time.perf_counter()
            e.embed(frames)
            _sync()
            rate = n / (time.perf_counter() - start)
            layout = ", channels-last" if channels_last else ""
            _row("Embedder (default descriptors)", f"{precision}{layout}, batch {bs}", f"{rate:.0f} frames/s",
                 f"{n} frames 360x640 -> short side {side}, resize on the device included")


def job(dry: bool) -> None:
    from pipeline import LONG, SMALL, make_clips

    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.pipelines.beam import PipelineConfig, run_embed
    from styleaxis.pipelines.inputs import expand_inputs

    clip, n = (SMALL, 4) if dry else (LONG, 200)  # generating the clips is CPU work: 200 take about a minute
    clips = make_clips(Path(tempfile.gettempdir()) / f"styleaxis-gpu-clips-{clip['width']}", n, clip)
    precision = "fp32" if dry else "fp16"
    config = PipelineConfig(out_dir=Path(tempfile.mkdtemp(prefix="styleaxis-gpu-run-")), progress=False,
                            embed=EmbedConfig(short_side=64 if dry else 256, device=_device(dry), precision=precision,
                                              batch_size=8 if dry else 256),
                            max_batch_keyframes=8 if dry else 256, batch_across_videos=True)
    summary = run_embed(expand_inputs([str(p) for p in clips]), config)
    t = summary["timings"]
    _row("embed job end to end", f"{n} clips {clip['width']}x{clip['height']}, {precision}, packed batches",
         f"{t['keyframes'] / summary['seconds']:.0f} keyframes/s",
         f"steady state {t['steady_keyframes_per_s']:.0f} keyframes/s, start-up {t['startup_s']:.1f} s, "
         f"model {t['model_s']:.1f} s, decode wait {t['decode_wait_s']:.1f} s of {summary['seconds']:.1f} s")


def faiss_step(dry: bool) -> None:
    import faiss

    n, d, q = (10_000, 64, 100) if dry else (1_000_000, 256, 10_000)
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((n, d), dtype=np.float32)
    xq = rng.standard_normal((q, d), dtype=np.float32)
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if not dry and (gpus == 0 or not hasattr(faiss, "StandardGpuResources")):
        _row("faiss", f"GPU flat index, {n} x {d}", "not measured",
             "faiss-gpu absent (faiss-cpu installed, or no GPU seen by faiss): pip uninstall faiss-cpu; "
             "pip install -e '.[gpu]'")
        return
    start = time.perf_counter()
    if dry:
        index = faiss.IndexFlatIP(d)
        where = "CPU (dry run)"
    else:
        resources = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(resources, d)
        where = "GPU"
    index.add(xb)
    build = time.perf_counter() - start
    start = time.perf_counter()
    index.search(xq, 10)
    search = time.perf_counter() - start
    _row("faiss", f"{where} flat inner product, {n} x {d}", f"build {build:.2f} s, {q / search:.0f} queries/s",
         f"{q} queries, k=10")


def stylize_step(dry: bool) -> None:
    from styleaxis.stylize.config import StylizeConfig
    from styleaxis.stylize.stylize import make_stylizer

    side, n = (64, 2) if dry else (512, 16)
    device = _device(dry)
    style = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    batch = torch.rand(1, 3, side, side)
    for method, config in (("adain", StylizeConfig(method="adain", styles=(style,), style_size=side, device=device)),
                           ("cin26", StylizeConfig(method="cin", style_id=8, device=device))):
        run = make_stylizer(config)
        for dtype in (("fp32",) if dry else ("fp32", "fp16")):
            with torch.autocast(device, dtype=torch.float16, enabled=dtype == "fp16"):
                run(batch)
                _sync()
                start = time.perf_counter()
                for _ in range(n):
                    run(batch)
                _sync()
            ms = 1000 * (time.perf_counter() - start) / n
            _row("stylize", f"{method} {side}x{side}, {dtype}, batch 1", f"{ms:.1f} ms/image",
                 "target <= 10 ms (AdaIN)" if method == "adain" else "")


def table(rows_path: Path, results: Path | None) -> None:
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.startswith("{")]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (dry run: sizes are tiny)"
    lines = [f"`bench/gpu.sh` on {device}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}", "",
             "| step | case | result | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['step']} | {r['case']} | {r['value']} | {r['note']} |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if results is not None:
        with results.open("a") as handle:
            handle.write(f"\n### {device}\n\n{text}\n")


STEPS = {"embedder": embedder, "job": job, "faiss": faiss_step, "stylize": stylize_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=[*STEPS, "table"])
    parser.add_argument("rows", nargs="?", type=Path, help="(table) the JSON rows the steps printed")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, on the CPU")
    parser.add_argument("--results", type=Path, default=None, help="(table) append the table to this file")
    args = parser.parse_args()
    if args.step == "table":
        table(args.rows, args.results)
        return
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --dry-run")
    STEPS[args.step](args.dry_run)


if __name__ == "__main__":
    main()
