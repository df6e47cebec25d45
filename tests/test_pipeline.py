"""The embedding job end to end: real clips, real Beam pipeline, real weights, real Parquet."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from styleaxis.embed.descriptors import get_descriptor
from styleaxis.embed.embedder import EmbedConfig
from styleaxis.embed.schema import read_metadata
from styleaxis.embed.registry import get_model
from styleaxis.pipelines.dataset import read_dataset

DIMS = {name: get_descriptor(name).dim for name in EmbedConfig().descriptors}  # the tiny runs use the default


def videos_n_keyframes(run: Path) -> dict[str, int]:
    videos = read_dataset(run, "videos")
    return {r.video_id: r.n_keyframes for r in videos.itertuples() if r.n_keyframes}


def test_videos_rows_cover_every_input_with_status(embedded_run: Path, tiny_clips: list[Path]) -> None:
    videos = read_dataset(embedded_run, "videos").set_index("video_id")
    assert sorted(videos.index) == sorted([p.stem for p in tiny_clips] + ["empty", "notes", "cut"])
    for clip in tiny_clips:
        row = videos.loc[clip.stem]
        assert row.status == "ok" and pd.isna(row.error)
        assert row.n_keyframes >= 2
        assert row.fps == pytest.approx(8.0)
        assert row.duration_s == pytest.approx(1.5, abs=0.15)
        assert len(row.content_hash) == 64
    for vid, cause in (("empty", "empty file"), ("notes", "cannot open"), ("cut", "cannot open")):
        row = videos.loc[vid]
        assert row.status == "failed", vid
        assert cause in row.error and vid in row.error
        assert row.n_keyframes == 0
        assert all(pd.isna(row[name]) for name in DIMS)


def test_keyframe_vectors_have_schema_shapes_and_are_finite(embedded_run: Path, tiny_clips: list[Path]) -> None:
    keyframes = read_dataset(embedded_run, "keyframes")
    assert set(keyframes.video_id) == {p.stem for p in tiny_clips}
    assert keyframes.groupby("video_id").size().to_dict() == videos_n_keyframes(embedded_run)
    assert (keyframes.width == 192).all() and (keyframes.height == 128).all()
    first = keyframes.sort_values(["video_id", "frame_index"]).groupby("video_id").head(1)
    assert (first.frame_index == 0).all() and (first.pts_s == 0.0).all()
    for name, dim in DIMS.items():
        m = np.stack(keyframes[name].to_numpy())
        assert m.shape == (len(keyframes), dim) and m.dtype == np.float32
        assert np.isfinite(m).all()
        assert m.std(axis=0).max() > 0  # frames differ: not a constant column
    content = np.stack(keyframes["content"].to_numpy())
    np.testing.assert_allclose(np.linalg.norm(content, axis=1), 1.0, rtol=1e-5)


def test_video_vector_is_mean_of_normalised_keyframes(embedded_run: Path) -> None:
    keyframes = read_dataset(embedded_run, "keyframes")
    videos = read_dataset(embedded_run, "videos").set_index("video_id")
    vid = sorted(set(keyframes.video_id))[0]
    m = np.stack(keyframes[keyframes.video_id == vid].style_eff.to_numpy()).astype(np.float64)
    expected = (m / np.linalg.norm(m, axis=1, keepdims=True)).mean(axis=0)
    np.testing.assert_allclose(np.asarray(videos.loc[vid].style_eff), expected, rtol=1e-5, atol=1e-7)


def test_parquet_metadata_names_models_sha256_and_run(embedded_run: Path) -> None:
    files = sorted((embedded_run / "videos").glob("*.parquet")) + sorted((embedded_run / "keyframes").glob("*.parquet"))
    assert files
    for f in files:
        meta = read_metadata(pq.read_schema(f))
        models = {m for name in DIMS for m in (get_descriptor(name).model, *get_descriptor(name).extra_models)}
        assert meta["models"] == {m: get_model(m).sha256 for m in models}
        assert {k: v["dim"] for k, v in meta["descriptors"].items()} == DIMS
        assert meta["short_side"] == 128 and meta["code_version"] and meta["run_id"]
    assert not list(embedded_run.rglob("*.tmp"))


def test_rerun_over_same_inputs_writes_nothing_new(embedded_run: Path, tiny_clips: list[Path], bad_files) -> None:
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.pipelines.beam import PipelineConfig, run_embed
    from styleaxis.pipelines.inputs import expand_inputs

    before = sorted(p.name for p in embedded_run.rglob("*.parquet"))
    inputs = [str(tiny_clips[0].parent)] + [str(p) for p in bad_files.values()]
    summary = run_embed(expand_inputs(inputs), PipelineConfig(out_dir=embedded_run, embed=EmbedConfig(short_side=128),
                                                              progress=False))
    assert summary["skipped"] == len(tiny_clips) + len(bad_files) and summary["embedded"] == 0
    assert sorted(p.name for p in embedded_run.rglob("*.parquet")) == before
