"""The throughput features keep the vectors: folded batch norm, decoding ahead; and the job reports its timings.

Speed itself is measured by bench/pipeline.py and bench/embed_throughput.py, not asserted here.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.embed.registry import load_model
from styleaxis.pipelines.beam import PipelineConfig, run_embed
from styleaxis.pipelines.dataset import read_dataset
from styleaxis.pipelines.inputs import expand_inputs


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_folded_batch_norm_keeps_taps_and_descriptors() -> None:
    encoder = load_model("effnet-lite0").eval()
    folded = encoder.fold_batch_norm()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())  # the original is untouched
    image = torch.from_numpy(np.asarray(Image.fromarray(data.astronaut()).resize((96, 64)))).permute(2, 0, 1)
    x = image[None].float() / 255
    taps = ("stem", "stage2", "stage5", "logits")
    with torch.inference_mode():
        want, got = encoder(x, taps), folded(x, taps)
    for tap in taps:
        assert _cosine(want[tap].flatten(1).numpy(), got[tap].flatten(1).numpy()).min() >= 0.9999, tap

    frames = [np.asarray(Image.fromarray(p).resize((96, 64))) for p in (data.astronaut(), data.coffee())]
    config = EmbedConfig(descriptors=("style_eff", "content"), short_side=64)
    reference = Embedder(EmbedConfig(descriptors=config.descriptors, short_side=64, fold_bn=False,
                                     channels_last=False)).embed(frames)
    fast = Embedder(config).embed(frames)  # the default: folded, channels-last, one frame per forward
    assert Embedder(config).batch_size == 1 and config.fold_bn and config.channels_last
    for name in config.descriptors:
        assert _cosine(reference[name], fast[name]).min() >= 0.999, name


def test_job_reports_where_its_time_went_and_decoding_ahead_changes_no_vector(tiny_clips: list[Path],
                                                                            tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for clip in tiny_clips[:3]:
        shutil.copy(clip, clips / clip.name)
    runs = {}
    for ahead in (0, 2):
        out = tmp_path / f"run{ahead}"
        config = PipelineConfig(out_dir=out, embed=EmbedConfig(short_side=64), progress=False, decode_ahead=ahead)
        summary = run_embed(expand_inputs([str(clips)]), config)
        runs[ahead] = read_dataset(out, "keyframes").sort_values(["video_id", "frame_index"])
        t = summary["timings"]
        assert t["keyframes"] == len(runs[ahead]) and t["batches"] >= 1
        assert 0 < t["model_s"] and 0 <= t["decode_wait_s"] and 0 < t["decode_s"] and 0 < t["write_s"]
        assert t["startup_s"] > 0 and t["steady_s"] >= 0 and t["load_s"] > 0
        assert t["startup_s"] + t["steady_s"] + t["tail_s"] == pytest.approx(summary["seconds"], abs=0.01)
    assert runs[0].video_id.tolist() == runs[2].video_id.tolist()
    for name in ("style_cin", "style_eff", "content"):
        assert np.array_equal(np.stack(runs[0][name].to_numpy()), np.stack(runs[2][name].to_numpy())), name
    with pytest.raises(ValueError, match="decode_ahead must be >= 0"):
        PipelineConfig(out_dir=tmp_path, decode_ahead=-1)


@pytest.mark.slow
def test_gpu_script_dry_run_prints_one_table_with_every_step() -> None:
    """bench/gpu.sh --dry-run: each step tiny on the CPU, one table, RESULTS.md left alone."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    results = (root / "bench" / "RESULTS.md").read_bytes()
    done = subprocess.run(["bash", str(root / "bench" / "gpu.sh"), "--dry-run"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    steps = {line.split(" | ")[0].lstrip("| ") for line in table[2:]}
    assert {"CUDA tests", "Embedder (default descriptors)", "embed job end to end", "faiss", "stylize"} <= steps, table
    assert not any("failed" in line for line in table), table
    assert "CPU (dry run" in done.stdout
    assert (root / "bench" / "RESULTS.md").read_bytes() == results
