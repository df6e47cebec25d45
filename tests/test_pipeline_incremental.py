"""Reruns, --force, a killed run and an interrupted commit: no row lost, none duplicated, same vectors.

The reference is the session's ``embedded_run`` (tiny clips + bad files, short side 128): every run
below uses the same settings, so its vectors must equal the reference bit for bit.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from styleaxis.embed.embedder import EmbedConfig
from styleaxis.embed.schema import keyframes_schema, videos_schema
from styleaxis.index.run import read_run
from styleaxis.pipelines import beam as beam_module
from styleaxis.pipelines import store
from styleaxis.pipelines.beam import PipelineConfig, run_embed
from styleaxis.pipelines.dataset import read_dataset
from styleaxis.pipelines.inputs import expand_inputs

DESCRIPTORS = ("style_cin", "style_eff", "content")


def config(out: Path, **changes: object) -> PipelineConfig:
    return PipelineConfig(out_dir=out, embed=EmbedConfig(short_side=128), progress=False, **changes)


def inputs_of(tiny_clips: list[Path], bad_files: dict[str, Path]) -> list[tuple[str, str]]:
    return expand_inputs([str(tiny_clips[0].parent)] + [str(p) for p in bad_files.values()])


def test_force_reembeds_in_place_with_identical_vectors(embedded_run: Path, tiny_clips, bad_files,
                                                        tmp_path: Path, assert_same_rows) -> None:
    run = tmp_path / "run"
    shutil.copytree(embedded_run, run)
    before = sorted(p.name for p in (run / "videos").glob("*.parquet"))
    summary = run_embed(inputs_of(tiny_clips, bad_files), config(run, force=True))
    assert summary["embedded"] == summary["inputs"] == len(tiny_clips) + len(bad_files)
    assert_same_rows(run, embedded_run)  # two runs over the same inputs: the same vectors, bit for bit
    after = sorted(p.name for p in (run / "videos").glob("*.parquet"))
    assert not set(before) & set(after)  # the old shards were emptied and removed, not left beside
    assert all(name.startswith(summary["run_id"]) for name in after)
    indexable = read_run(run, DESCRIPTORS)  # the index reader accepts it (it refuses repeated ids)
    assert sorted(indexable.video_ids) == sorted(p.stem for p in tiny_clips)
    assert not (run / "_staging").exists()
    assert (run / "_runs" / f"{summary['run_id']}.json").is_file()


def test_changed_file_is_reembedded_and_replaces_its_row(tiny_clips: list[Path], tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for clip in tiny_clips[:3]:
        shutil.copy(clip, clips / clip.name)
    run = tmp_path / "run"
    first = run_embed(expand_inputs([str(clips)]), config(run))
    old = read_dataset(run, "videos").set_index("video_id")
    changed = tiny_clips[:3][1].stem
    shutil.copy(tiny_clips[4], clips / f"{changed}.mp4")  # same name, other bytes
    second = run_embed(expand_inputs([str(clips)]), config(run))
    assert (first["embedded"], second["embedded"], second["skipped"]) == (3, 1, 2)
    assert second["video_ids"] == [changed]
    new = read_dataset(run, "videos").set_index("video_id")
    assert sorted(new.index) == sorted(old.index)
    assert new.loc[changed, "content_hash"] != old.loc[changed, "content_hash"]
    assert not np.array_equal(new.loc[changed, "style_eff"], old.loc[changed, "style_eff"])
    for vid in set(old.index) - {changed}:
        assert np.array_equal(new.loc[vid, "style_eff"], old.loc[vid, "style_eff"])
    keyframes = read_dataset(run, "keyframes")
    assert not keyframes.duplicated(["video_id", "frame_index"]).any()
    assert keyframes.groupby("video_id").size().to_dict() == new.n_keyframes.to_dict()


def test_failed_rows_are_skipped_unless_retried(bad_files: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    inputs = expand_inputs([str(bad_files["text"])])
    assert run_embed(inputs, config(run))["embedded"] == 1
    assert run_embed(inputs, config(run))["embedded"] == 0
    retried = run_embed(inputs, config(run, retry_failed=True))
    assert retried["embedded"] == 1
    videos = read_dataset(run, "videos")
    assert videos.video_id.tolist() == ["notes"] and videos.status.tolist() == ["failed"]


def test_other_models_or_settings_are_refused(embedded_run: Path, tiny_clips: list[Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(embedded_run, run)
    other = PipelineConfig(out_dir=run, embed=EmbedConfig(short_side=64), progress=False)
    with pytest.raises(ValueError, match=r"holds vectors made with other short_side .*new --out directory"):
        run_embed(expand_inputs([str(tiny_clips[0])]), other)


def test_a_second_run_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with store.run_lock(str(tmp_path)):
        with pytest.raises(ValueError, match="another styleaxis embed run holds"):
            with store.run_lock(str(tmp_path)):
                pass
    with store.run_lock(str(tmp_path)):  # released when the first run ends
        pass


def test_sigkilled_run_resumes_without_loss_or_duplicates(embedded_run: Path, tiny_clips, bad_files,
                                                          tmp_path: Path, assert_same_rows) -> None:
    run = tmp_path / "run"
    args = [sys.executable, "-m", "styleaxis.cli", "embed", str(tiny_clips[0].parent),
            *[str(p) for p in bad_files.values()], "--out", str(run), "--short-side", "128",
            "--shard-size", "1", "--quiet"]
    # a killed job cannot remove its temporary files (Beam's pipeline folder among them): keep them in tmp_path
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    job = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 300
    while not list(run.glob("_staging/*/videos/*.parquet")):  # the first video is embedded and staged
        assert job.poll() is None, "the job ended before it was killed"
        assert time.monotonic() < deadline, "no shard was staged within 300 s"
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # the job and its decoder process
    job.wait()
    assert job.returncode == -signal.SIGKILL
    # nothing half written is visible: readers see committed files only, and there are none yet
    assert not list(run.glob("videos/*.parquet")) and not list(run.glob("keyframes/*.parquet"))
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        read_dataset(run, "videos")
    staged = len(list(run.glob("_staging/*/videos/*.parquet")))

    summary = run_embed(inputs_of(tiny_clips, bad_files), config(run))
    assert summary["recovered"] >= staged >= 1
    assert summary["embedded"] + summary["skipped"] == summary["inputs"]
    assert summary["skipped"] == summary["recovered"]
    assert_same_rows(run, embedded_run)
    assert not (run / "_staging").exists()


@pytest.mark.parametrize("stop_after", [1, 3])
def test_interrupted_commit_is_finished_by_the_next_run(embedded_run: Path, tiny_clips, bad_files, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, stop_after: int,
                                                        assert_same_rows) -> None:
    """A run dies while renaming its shards in (after 1 or 3 renames): readers see no duplicate and
    no orphan keyframe, and the next run commits the rest."""
    run = tmp_path / "run"
    monkeypatch.setattr(beam_module, "commit", lambda root, run_id: [])  # the pipeline stages, nobody commits
    summary = run_embed(inputs_of(tiny_clips, bad_files), config(run, shard_size=2))
    monkeypatch.undo()
    moves = []
    real_move = store._move

    def dying_move(source: str, destination: str) -> None:
        if len(moves) == stop_after:
            raise KeyboardInterrupt("killed mid-commit")
        moves.append(destination)
        real_move(source, destination)

    monkeypatch.setattr(store, "_move", dying_move)
    with pytest.raises(KeyboardInterrupt):
        store.commit(str(run), summary["run_id"])
    monkeypatch.undo()
    published = {Path(d).name for d in moves if "/videos/" in d}
    videos = read_dataset(run, "videos") if published else pd.DataFrame({"video_id": []})
    assert not videos.video_id.duplicated().any()
    if published:
        keyframes = read_dataset(run, "keyframes")
        assert set(keyframes.video_id) <= set(videos.video_id)  # keyframes of unpublished shards stay invisible

    again = run_embed(inputs_of(tiny_clips, bad_files), config(run))
    assert again["embedded"] == 0 and again["recovered"] == summary["inputs"] - len(videos)
    assert_same_rows(run, embedded_run)


# --- the store alone, on synthetic rows ----------------------------------------------------------------

META = {"descriptors": {"style_in": {"dim": 2}}, "models": {"m": "0" * 64}, "run_id": "r"}


def shard(ids: list[str], value: float) -> tuple[pa.Table, pa.Table]:
    videos = [{"video_id": v, "uri": f"/{v}.mp4", "status": "ok", "n_keyframes": 1, "style_in": [value, 0.0]}
              for v in ids]
    keyframes = [{"video_id": v, "frame_index": 0, "style_in": [value, 0.0]} for v in ids]
    return (pa.Table.from_pylist(keyframes, schema=keyframes_schema(META)),
            pa.Table.from_pylist(videos, schema=videos_schema(META)))


def test_commit_keeps_one_copy_of_a_video_staged_twice(tmp_path: Path) -> None:
    """A retried Beam bundle can stage a video in two shards; the commit keeps it once."""
    root = str(tmp_path)
    store.write_shard(root, "r2", *shard(["a", "b"], 1.0))
    store.write_shard(root, "r2", *shard(["a", "b"], 1.0))  # the same retry: same shard name, overwritten
    store.write_shard(root, "r2", *shard(["b", "c"], 1.0))  # a retry grouped differently
    assert len(list(tmp_path.glob("_staging/r2/videos/*.parquet"))) == 2
    assert store.commit(root, "r2") == ["a", "b", "c"]
    videos, keyframes = read_dataset(tmp_path, "videos"), read_dataset(tmp_path, "keyframes")
    assert sorted(videos.video_id) == sorted(keyframes.video_id) == ["a", "b", "c"]
    assert not (tmp_path / "_staging").exists()


def test_commit_replaces_older_rows_and_recover_finishes_killed_runs(tmp_path: Path) -> None:
    root = str(tmp_path)
    store.write_shard(root, "r1", *shard(["a", "b"], 1.0))
    store.commit(root, "r1")
    store.write_shard(root, "r2", *shard(["b"], 2.0))  # r2 re-embeds b, then "dies" before its commit
    store.write_shard(root, "r2", *shard(["z"], 2.0))
    kf, _ = shard(["q"], 2.0)
    store.write_table(kf, str(tmp_path / "_staging" / "r3" / "keyframes" / "x.parquet"), str(tmp_path / "tmp"))
    assert store.staged_run_ids(root) == ["r2"]  # r3 never finished a shard
    assert store.recover(root) == {"r2": ["b", "z"]}
    videos = read_dataset(tmp_path, "videos").set_index("video_id")
    assert sorted(videos.index) == ["a", "b", "z"]
    assert videos.loc["b", "style_in"].tolist() == [2.0, 0.0] and videos.loc["a", "style_in"].tolist() == [1.0, 0.0]
    keyframes = read_dataset(tmp_path, "keyframes")
    assert sorted(keyframes.video_id) == ["a", "b", "z"]
    assert not (tmp_path / "_staging").exists()


def test_keyframes_are_visible_only_with_their_video_row(tmp_path: Path) -> None:
    root = str(tmp_path)
    kf, vids = shard(["a", "b"], 1.0)
    store.write_table(kf, str(tmp_path / "keyframes" / "s.parquet"), str(tmp_path / "tmp"))
    with pytest.raises(FileNotFoundError):
        read_dataset(tmp_path, "videos")
    assert read_dataset(tmp_path, "keyframes").empty  # published keyframes, videos file not yet
    store.write_table(vids.slice(0, 1), str(tmp_path / "videos" / "s.parquet"), str(tmp_path / "tmp"))
    assert read_dataset(root, "keyframes").video_id.tolist() == ["a"]
