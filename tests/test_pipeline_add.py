"""Adding a descriptor column to an existing run: only that column is computed, the others stay bit for bit."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from styleaxis.cli.main import main
from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.index.build import IndexConfig, build_indexes
from styleaxis.media.video import DEFAULT_MAX_SIDE, KeyframePolicy, read_keyframes
from styleaxis.pipelines.beam import PipelineConfig, run_embed
from styleaxis.pipelines.dataset import committed_identity, read_dataset
from styleaxis.pipelines.extend import add_descriptors
from styleaxis.pipelines.inputs import expand_inputs

AXES = {"style": ("style_in",), "content": ("content",)}
DEFAULT = EmbedConfig().descriptors


def test_add_descriptor_keeps_the_columns_there_and_the_index_builds(embedded_run: Path, tiny_clips: list[Path],
                                                                    tmp_path: Path, assert_same_rows) -> None:
    run = tmp_path / "run"
    shutil.copytree(embedded_run, run)
    with pytest.raises(ValueError, match=rf"lacks descriptor style_in .*`styleaxis embed --out {run} "
                                         r"--add-descriptors style_in`"):
        build_indexes(run, tmp_path / "index", IndexConfig(axes=AXES))

    added = CliRunner().invoke(main, ["embed", "--out", str(run), "--add-descriptors", "style_in", "--quiet"])
    assert added.exit_code == 0, added.output
    assert "added style_in to the" in added.output

    assert_same_rows(run, embedded_run)  # style_cin, style_eff, content: bit for bit, same rows
    old, new = (read_dataset(r, "videos").set_index("video_id").sort_index() for r in (embedded_run, run))
    for column in ("status", "error", "content_hash", "n_keyframes", "style_stability"):
        assert new[column].equals(old[column]), column
    old_k, new_k = (read_dataset(r, "keyframes").sort_values(["video_id", "frame_index"]) for r in (embedded_run, run))
    assert new_k.flag.fillna("").tolist() == old_k.flag.fillna("").tolist()
    identity = committed_identity(run)
    assert set(identity["descriptors"]) == {*DEFAULT, "style_in"}
    assert "vgg16-hed" in identity["models"]

    # the new column is what the Embedder gives those keyframes, and the video vector is their mean
    clip = tiny_clips[0]
    frames = read_keyframes(clip, KeyframePolicy(), DEFAULT_MAX_SIDE).keyframes
    want = Embedder(EmbedConfig(descriptors=("style_in",), short_side=128)).embed([kf.image for kf in frames])
    got = new_k[new_k.video_id == clip.stem].sort_values("frame_index")
    assert got.frame_index.tolist() == [kf.frame_index for kf in frames]
    np.testing.assert_allclose(np.stack(got.style_in.to_numpy()), want["style_in"], rtol=1e-5, atol=1e-6)
    ok = new[new.status != "failed"]
    assert all(len(v) == 1920 and np.isfinite(v).all() for v in ok.style_in)
    assert new[new.status == "failed"].style_in.isna().all()

    manifest = build_indexes(run, tmp_path / "index", IndexConfig(axes=AXES))
    assert manifest.count == len(ok)
    again = CliRunner().invoke(main, ["embed", "--out", str(run), "--add-descriptors", "style_in", "--quiet"])
    assert again.exit_code == 0 and "added nothing (the run holds them already)" in again.output
    assert not (run / "_adding").exists() and not (run / "_staging").exists()

    # the nightly job now computes what the run holds, or says how
    held = ",".join(sorted({*DEFAULT, "style_in"}))
    with pytest.raises(ValueError, match=rf"embed with --descriptors {held} \(what it holds\)"):
        run_embed(expand_inputs([str(clip)]), PipelineConfig(out_dir=run, embed=EmbedConfig(short_side=128),
                                                            progress=False))


def test_add_refuses_a_changed_file_and_publishes_nothing(tiny_clips: list[Path], tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for clip in tiny_clips[:2]:
        shutil.copy(clip, clips / clip.name)
    run = tmp_path / "run"
    config = PipelineConfig(out_dir=run, embed=EmbedConfig(short_side=64), progress=False)
    run_embed(expand_inputs([str(clips)]), config)
    before = {p.name: p.read_bytes() for p in sorted(run.rglob("*.parquet"))}
    with pytest.raises(ValueError, match=rf"holds descriptors {','.join(sorted(DEFAULT))}, this job computes "
                                         r"style_in,style_eff,content: add style_in to it first \(`styleaxis embed "
                                         r"--out .* --add-descriptors style_in`\)"):
        run_embed(expand_inputs([str(clips)]), PipelineConfig(
            out_dir=run, embed=EmbedConfig(short_side=64, descriptors=("style_in", "style_eff", "content")),
            progress=False))
    changed = clips / tiny_clips[0].name
    shutil.copy(tiny_clips[3], changed)
    with pytest.raises(ValueError, match=rf"1 videos cannot be re-embedded as they were, e.g. {changed.stem}: "
                                         "its file changed since it was embedded; nothing was added"):
        add_descriptors(config, ["style_in"])
    assert {p.name: p.read_bytes() for p in sorted(run.rglob("*.parquet"))} == before
    assert not (run / "_adding").exists() and not (run / "_staging").exists()
