"""The job's Beam surface: runner options pass through unchanged, manifests, the CLI, and a real
multi-worker engine (Beam's DaskRunner on a local dask.distributed cluster) giving the local rows."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner
from click.testing import CliRunner

from styleaxis.cli import main
from styleaxis.embed.embedder import EmbedConfig
from styleaxis.pipelines.beam import DASK_RUNNER, PipelineConfig, pipeline_options, run_embed
from styleaxis.pipelines.dataset import read_dataset
from styleaxis.pipelines.inputs import collect_inputs, content_hash, expand_inputs, read_manifest

DATAFLOW_ARGS = (
    "--runner=DataflowRunner", "--project=my-project", "--region=europe-west4",
    "--temp_location=gs://my-bucket/tmp",
    "--sdk_container_image=europe-docker.pkg.dev/my-project/styleaxis/embed:0.1.0",
    "--machine_type=g2-standard-8", "--max_num_workers=20", "--number_of_worker_harness_threads=1",
    "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
    "--experiments=use_runner_v2", "--sdk_location=container",
)


def test_runner_options_reach_beam_unchanged(tmp_path: Path) -> None:
    options = pipeline_options(PipelineConfig(out_dir=tmp_path, pipeline_args=DATAFLOW_ARGS))
    cloud, worker = options.view_as(GoogleCloudOptions), options.view_as(WorkerOptions)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert (cloud.project, cloud.region, cloud.temp_location) == ("my-project", "europe-west4", "gs://my-bucket/tmp")
    assert cloud.dataflow_service_options == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    assert worker.sdk_container_image == "europe-docker.pkg.dev/my-project/styleaxis/embed:0.1.0"
    assert (worker.machine_type, worker.max_num_workers) == ("g2-standard-8", 20)
    debug = options.view_as(DebugOptions)
    assert (debug.experiments, debug.number_of_worker_harness_threads) == (["use_runner_v2"], 1)
    assert options.view_as(SetupOptions).sdk_location == "container"

    flink = pipeline_options(PipelineConfig(out_dir=tmp_path, pipeline_args=(
        "--runner=FlinkRunner", "--flink_master=flink:8081", "--environment_type=LOOPBACK", "--parallelism=4")))
    assert flink.view_as(StandardOptions).runner == "FlinkRunner"
    assert flink.get_all_options()["flink_master"] == "flink:8081" and flink.get_all_options()["parallelism"] == 4
    assert flink.view_as(PortableOptions).environment_type == "LOOPBACK"

    assert pipeline_options(PipelineConfig(out_dir=tmp_path)).view_as(StandardOptions).runner == "FnApiRunner"
    dask = pipeline_options(PipelineConfig(out_dir=tmp_path, runner="DaskRunner"))
    assert dask.view_as(StandardOptions).runner == DASK_RUNNER


class RecordingRunner(PipelineRunner):
    """Stands in for a cloud runner (Dataflow cannot be reached here): records the options the job
    hands to its runner, then runs the pipeline on the in-process FnApiRunner."""

    seen: list[dict] = []

    def run_pipeline(self, pipeline, options):
        RecordingRunner.seen.append(options.get_all_options(drop_default=True))
        return FnApiRunner().run_pipeline(pipeline, options)


def test_options_reach_the_runner_of_a_real_run(tiny_clips: list[Path], tmp_path: Path) -> None:
    args = (f"--runner={__name__}.RecordingRunner", *DATAFLOW_ARGS[1:])
    config = PipelineConfig(out_dir=tmp_path / "run", embed=EmbedConfig(short_side=64), progress=False,
                            pipeline_args=args)
    RecordingRunner.seen.clear()
    summary = run_embed(expand_inputs([str(tiny_clips[0])]), config)
    (seen,) = RecordingRunner.seen
    assert seen["runner"].endswith("RecordingRunner") and seen["project"] == "my-project"
    assert seen["sdk_container_image"] == "europe-docker.pkg.dev/my-project/styleaxis/embed:0.1.0"
    assert seen["dataflow_service_options"] == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    assert read_dataset(tmp_path / "run", "videos").video_id.tolist() == summary["video_ids"] == [tiny_clips[0].stem]


def test_batching_knobs_reach_runinference(embedded_run: Path, tiny_clips: list[Path], bad_files: dict[str, Path],
                                           tmp_path: Path) -> None:
    """Packed batches across videos (with a batch wait limit) give the per-video vectors up to float error."""
    import numpy as np

    inputs = expand_inputs([str(tiny_clips[0].parent)] + [str(p) for p in bad_files.values()])
    config = PipelineConfig(out_dir=tmp_path / "run", embed=EmbedConfig(short_side=128, batch_size=16),
                            progress=False, batch_across_videos=True, min_batch_keyframes=8,
                            max_batch_keyframes=16, max_batch_duration_s=5)
    run_embed(inputs, config)
    got = read_dataset(tmp_path / "run", "keyframes").sort_values(["video_id", "frame_index"])
    want = read_dataset(embedded_run, "keyframes").sort_values(["video_id", "frame_index"])
    assert got[["video_id", "frame_index"]].values.tolist() == want[["video_id", "frame_index"]].values.tolist()
    for name in ("style_cin", "style_eff", "content"):
        np.testing.assert_allclose(np.stack(got[name].to_numpy()), np.stack(want[name].to_numpy()),
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"max_batch_keyframes \(4\) must hold one whole video"):
        PipelineConfig(out_dir=tmp_path, max_batch_keyframes=4)
    with pytest.raises(ValueError, match=r"decoders must name backends from \['decord', 'pyav'\], got \['ffmpeg'\]"):
        PipelineConfig(out_dir=tmp_path, decoders=("ffmpeg",))


def test_manifests_csv_and_parquet(tiny_clips: list[Path], tmp_path: Path) -> None:
    folder = tiny_clips[0].parent
    csv = tmp_path / "catalogue.csv"
    pd.DataFrame({"uri": [str(tiny_clips[0]), str(tiny_clips[1])], "video_id": ["clip-a", ""]}).to_csv(csv, index=False)
    parquet = tmp_path / "more.parquet"
    rel = tmp_path / "sub"
    rel.mkdir()
    (rel / "x.mp4").write_bytes(tiny_clips[2].read_bytes())
    pd.DataFrame({"uri": ["sub/x.mp4", "gs://bucket/videos/y.mp4"]}).to_parquet(parquet)
    assert read_manifest(csv) == [("clip-a", str(tiny_clips[0])), (None, str(tiny_clips[1]))]
    assert read_manifest(parquet) == [(None, str(rel / "x.mp4")), (None, "gs://bucket/videos/y.mp4")]
    pairs = expand_inputs([str(tiny_clips[3])], [csv, parquet])
    assert pairs == sorted(pairs, key=lambda p: p[1])
    ids = dict((uri, vid) for vid, uri in pairs)
    assert ids[str(tiny_clips[0])] == "clip-a" and ids[str(tiny_clips[1])] == tiny_clips[1].stem
    assert ids["gs://bucket/videos/y.mp4"] == "y" and ids[str(rel / "x.mp4")] == "x"
    assert len(pairs) == 5 and str(folder) not in ids

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"path": ["a.mp4"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: needs a 'uri' column .* got columns \['path'\]"):
        read_manifest(bad)
    twice = tmp_path / "twice.csv"
    pd.DataFrame({"uri": ["/a.mp4", "/b.mp4"], "video_id": ["same", "same"]}).to_csv(twice, index=False)
    with pytest.raises(ValueError, match="video_id 'same' is given to two different URIs"):
        expand_inputs([], [twice])
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"uri": ["/a.mp4", ""]}).to_csv(empty, index=False)
    with pytest.raises(ValueError, match="row 2 has an empty uri"):
        read_manifest(empty)


def test_embed_command_runs_skips_and_forces(tiny_clips: list[Path], bad_files: dict[str, Path],
                                             tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["embed", str(tiny_clips[0]), str(bad_files["text"]), "--out", str(out), "--short-side", "64", "--quiet"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "2 inputs, 0 already embedded, 2 embedded" in first.output
    assert "status: failed 1, ok 1" in first.output and "failed: notes:" in first.output
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "2 inputs, 2 already embedded, 0 embedded" in again.output
    forced = runner.invoke(main, [*args, "--force"])
    assert forced.exit_code == 0 and "2 inputs, 0 already embedded, 2 embedded" in forced.output
    assert sorted(read_dataset(out, "videos").video_id) == sorted([tiny_clips[0].stem, "notes"])

    usage = runner.invoke(main, ["embed", "--out", str(out)])
    assert usage.exit_code == 2 and "give INPUTS" in usage.output
    refused = runner.invoke(main, [*args[:-3], "--short-side", "96"])
    assert refused.exit_code == 1 and "holds vectors made with other short_side" in refused.output
    # a path named on the command line that does not exist is a failed row, as in a manifest; the job goes on
    missing = runner.invoke(main, [*args[:-3], str(tmp_path / "nope.mp4"), "--short-side", "64", "--quiet"])
    assert missing.exit_code == 0 and "1 embedded" in missing.output and "failed: nope:" in missing.output
    assert "No such file" in missing.output
    assert "--decode-timeout" in runner.invoke(main, ["embed", "--help"]).output


class PrefixedFileSystem(LocalFileSystem):
    """``testfs:///local/path`` URIs served from the local disk through Beam's FileSystem API: a
    stand-in for a bucket (gs://, s3://), which cannot be reached here. Defining the class registers it."""

    PREFIX = "testfs://"

    @classmethod
    def scheme(cls) -> str:
        return "testfs"

    def _local(self, path: str) -> str:
        return path[len(self.PREFIX):] if path.startswith(self.PREFIX) else path

    def _path_open(self, path, *args, **kwargs):
        return super()._path_open(self._local(path), *args, **kwargs)

    def exists(self, path: str) -> bool:
        return super().exists(self._local(path))

    def metadata(self, path: str) -> FileMetadata:
        found = super().metadata(self._local(path))
        return FileMetadata(path, found.size_in_bytes, found.last_updated_in_seconds)

    def _list(self, dir_or_prefix: str):
        for found in super()._list(self._local(dir_or_prefix)):
            yield FileMetadata(self.PREFIX + found.path, found.size_in_bytes, found.last_updated_in_seconds)


def test_remote_uris_are_read_through_beam_filesystems(tiny_clips: list[Path], bad_files: dict[str, Path],
                                                       tmp_path: Path) -> None:
    wanted = sorted(p for p in tiny_clips if p.stem.endswith("style02"))
    inputs = expand_inputs([f"testfs://{tiny_clips[0].parent}/*style02.mp4", f"testfs://{bad_files['text']}"])
    assert [uri for _, uri in inputs] == sorted([f"testfs://{p}" for p in wanted] + [f"testfs://{bad_files['text']}"])
    config = PipelineConfig(out_dir=tmp_path / "run", embed=EmbedConfig(short_side=64), progress=False)
    assert run_embed(inputs, config)["embedded"] == len(wanted) + 1
    videos = read_dataset(tmp_path / "run", "videos").set_index("video_id")
    for clip in wanted:
        row = videos.loc[clip.stem]
        assert (row.status, row.uri, row.content_hash) == ("ok", f"testfs://{clip}", content_hash(clip))
    notes = videos.loc["notes"]
    assert notes.status == "failed" and f"testfs://{bad_files['text']}: cannot open" in notes.error
    assert run_embed(inputs, config)["skipped"] == len(inputs)  # remote files are hashed for the rerun check


@pytest.mark.slow
def test_dask_runner_on_a_local_cluster_gives_the_local_rows(embedded_run: Path, tiny_clips, bad_files,
                                                             tmp_path: Path, assert_same_rows) -> None:
    inputs = expand_inputs([str(tiny_clips[0].parent)] + [str(p) for p in bad_files.values()])
    config = PipelineConfig(out_dir=tmp_path / "dask", embed=EmbedConfig(short_side=128), progress=False,
                            runner="DaskRunner", pipeline_args=("--dask_npartitions=2",))
    summary = run_embed(inputs, config)
    assert summary["embedded"] == len(inputs)
    assert len(list((tmp_path / "dask" / "videos").glob("*.parquet"))) == 2  # one shard per partition (worker task)
    # dask.distributed starts its workers with OMP_NUM_THREADS=1, so torch sums in another order
    # than the in-process run on every core: the same rows, vectors equal to float32 rounding
    assert_same_rows(tmp_path / "dask", embedded_run, tol=1e-5)


def test_every_named_input_becomes_a_row_or_a_line(tiny_clips: list[Path], tmp_path: Path) -> None:
    """Folders keep what looks like media whatever it is (a symlink loop, a folder named like a video);
    a missing path named by the user is a row too; only non-media files and empty globs are lines."""
    folder = tmp_path / "catalogue"
    folder.mkdir()
    shutil.copy(tiny_clips[0], folder / "good.mp4")
    (folder / "loop.mp4").symlink_to(folder / "loop.mp4")
    (folder / "album.mp4").mkdir()
    (folder / "notes.txt").write_text("not a video")
    (tmp_path / "elsewhere").mkdir()
    (folder / "linked").symlink_to(tmp_path / "elsewhere")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["embed", str(folder), str(tmp_path / "missing.mp4"),
                                       str(tmp_path / "none-*.mp4"), "--out", str(out), "--short-side", "64",
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"skipped {folder / 'notes.txt'}: not a media file (suffix .txt)" in result.output
    assert "none-*.mp4: the pattern matches nothing" in result.output and "4 inputs" in result.output
    assert f"skipped {folder / 'linked'}: a link to a folder, not followed" in result.output
    rows = read_dataset(out, "videos").set_index("video_id")
    assert rows.loc["good", "status"] == "ok"
    assert "Too many levels of symbolic links" in rows.loc["loop", "error"]
    assert "Is a directory" in rows.loc["album", "error"]
    assert "No such file" in rows.loc["missing", "error"]


def test_a_file_keeps_its_id_when_another_with_its_stem_joins(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    old = tmp_path / "b" / "x.mp4"
    old.write_bytes(b"0")
    first = collect_inputs([str(tmp_path)]).videos
    assert first == [("x", str(old))]
    (tmp_path / "a" / "x.mp4").write_bytes(b"1")  # sorts before b/x.mp4
    second = dict((uri, vid) for vid, uri in collect_inputs([str(tmp_path)], known={str(old): "x"}).videos)
    assert second[str(old)] == "x" and second[str(tmp_path / "a" / "x.mp4")].startswith("x-")
    # without the run's ids the newcomer would have taken "x"
    assert dict((u, v) for v, u in expand_inputs([str(tmp_path)]))[str(tmp_path / "a" / "x.mp4")] == "x"
