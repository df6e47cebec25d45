"""A full disk during `styleaxis embed` or `styleaxis index build`: one line naming the file being written,
exit 1, no temporary or partial file left behind, and a rerun once space is freed loses nothing.

Two ways to fill the disk. Where the tests run as root and may mount, a real tmpfs of a few hundred KiB
is the output directory (the kernel answers ENOSPC; the project's machines and CI run as root). Everywhere, the
lowest write is replaced by one that writes some bytes and then raises OSError(ENOSPC): Beam's in-process
FnApiRunner and the index writer run in this process, so a monkeypatch reaches them.
"""
from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_index import AXES, config, make_catalogue, write_run

from styleaxis.cli import main as commands
from styleaxis.index.build import build_indexes
from styleaxis.index.search import Searcher
from styleaxis.media.disk import DiskFullError

TEMP_GLOBS = ("**/*.tmp", "**/.*.tmp")


@contextmanager
def small_disk(where: Path, kib: int) -> Iterator[Path]:
    """A tmpfs of ``kib`` KiB mounted at ``where`` (needs root, as the project's machines and CI have)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)], capture_output=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs here (run as root): {mounted.stderr.decode().strip()}"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def grow(where: Path, kib: int) -> None:
    """Free space: the tmpfs at ``where`` grows to ``kib`` KiB, its files kept."""
    subprocess.run(["mount", "-o", f"remount,size={kib}k", str(where)], check=True)


def temp_files(root: Path) -> list[Path]:
    return sorted({p for pattern in TEMP_GLOBS for p in root.glob(pattern)})


def error_lines(output: str) -> list[str]:
    """What a command printed, less what it prints on every run: Beam's import-time warning about apitools,
    and the native decoders' "[...]" lines about the bad inputs (written to fd 2 by FFmpeg and decord)."""
    return [line for line in output.splitlines()
            if line.strip() and "apitools not found" not in line and not line.startswith("[")]


def check_one_line(output: str, where: Path) -> None:
    lines = error_lines(output)
    assert len(lines) == 1, output
    assert lines[0].startswith(f"Error: {where}/"), lines
    assert "no space left on device (28); free space and run again" in lines[0], lines
    assert "Traceback" not in output


# --- embed -----------------------------------------------------------------------------------------------

def inputs_of(tiny_clips: list[Path], bad_files: dict[str, Path]) -> list[str]:
    return [str(tiny_clips[0].parent), *[str(p) for p in bad_files.values()]]


def embed_args(run: Path, tiny_clips: list[Path], bad_files: dict[str, Path]) -> list[str]:
    return ["embed", *inputs_of(tiny_clips, bad_files), "--out", str(run),
            "--short-side", "128", "--shard-size", "1", "--quiet"]


def check_staging_after_failure(run: Path) -> None:
    """No temporary file, nothing committed yet; the finished shards wait in staging for the next run."""
    assert not temp_files(run), temp_files(run)
    assert not list(run.glob("videos/*.parquet"))
    staged = list(run.glob("_staging/*/videos/*.parquet"))
    assert staged, "the shards finished before the disk filled are kept"


def rerun_loses_nothing(run: Path, inputs: list[str], reference: Path, assert_same_rows) -> None:
    """Space freed, the same job runs again: it commits the staged shards, embeds the rest, and the run
    holds the rows of a clean run, bit for bit."""
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.pipelines.beam import PipelineConfig, run_embed
    from styleaxis.pipelines.inputs import expand_inputs

    staged = len(list(run.glob("_staging/*/videos/*.parquet")))
    summary = run_embed(expand_inputs(inputs), PipelineConfig(out_dir=run, embed=EmbedConfig(short_side=128),
                                                                     progress=False, shard_size=1))
    assert summary["recovered"] == staged and summary["skipped"] == staged
    assert_same_rows(run, reference)
    assert not (run / "_staging").exists() and not temp_files(run)


def test_embed_on_a_full_tmpfs_is_one_line_and_a_rerun_loses_nothing(embedded_run: Path, tiny_clips, bad_files,
                                                                      tmp_path: Path, assert_same_rows) -> None:
    """The real thing: the job's output directory is a 160 KiB tmpfs; about two 63 KiB shards fit."""
    with small_disk(tmp_path / "disk", 160) as disk:
        run = disk / "run"
        job = subprocess.run([sys.executable, "-m", "styleaxis.cli", *embed_args(run, tiny_clips, bad_files)],
                             capture_output=True, text=True, timeout=600)
        assert job.returncode == 1, job.stderr
        check_one_line(job.stdout + job.stderr, run / "_staging")
        assert job.stderr.count("Error:") == 1 and "/_staging/" in job.stderr
        check_staging_after_failure(run)
        grow(disk, 8192)
        rerun_loses_nothing(run, inputs_of(tiny_clips, bad_files), embedded_run, assert_same_rows)


class _FillingDisk:
    """FileSystems.create whose files take ``budget`` bytes in all, then raise ENOSPC mid-write."""

    def __init__(self, create, budget: int) -> None:
        self.create, self.left = create, budget

    def __call__(self, path: str, *args, **kwargs):
        handle, disk = self.create(path, *args, **kwargs), self
        write = handle.write

        def write_until_full(data) -> int:
            if len(data) > disk.left:
                write(bytes(data)[:disk.left])  # the partial file a full disk leaves
                disk.left = 0
                handle.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            disk.left -= len(data)
            return write(data)

        handle.write = write_until_full
        return handle


def test_embed_with_a_simulated_full_disk_is_one_line_and_a_rerun_loses_nothing(
        embedded_run: Path, tiny_clips, bad_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        assert_same_rows) -> None:
    """Simulated: store's FileSystems.create writes 150 KB in all, then fails with ENOSPC mid-file."""
    from styleaxis.pipelines import store

    run = tmp_path / "run"
    monkeypatch.setattr(store.FileSystems, "create", _FillingDisk(store.FileSystems.create, 150_000))
    result = CliRunner().invoke(commands, embed_args(run, tiny_clips, bad_files))
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    check_one_line(result.output, run / "_staging")
    assert ".parquet: no space left on device (28); free space and run again: finished shards are kept" in result.output
    check_staging_after_failure(run)
    rerun_loses_nothing(run, inputs_of(tiny_clips, bad_files), embedded_run, assert_same_rows)


# --- index build -----------------------------------------------------------------------------------------

def build_args(run: Path, out: Path) -> list[str]:
    # the synthetic grid's index as test_index's config() builds it: no catalogue step
    return ["index", "build", str(run), "--style", ",".join(AXES["style"]), "--content", ",".join(AXES["content"]),
            "--content-alpha", "0", "--expand", "0", "--out", str(out), "--quiet"]


def check_index_after_failure(out: Path, generation: int, result) -> None:
    assert result.exit_code == 1, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and lines[0].startswith(f"Error: {out}/"), result.output
    assert f".g{generation + 1}." in lines[0] and "no space left on device (28); free space and run again" in lines[0]
    assert "Traceback" not in result.output
    assert Searcher.load(out).manifest.generation == generation  # the previous generation still loads
    assert not temp_files(out), temp_files(out)
    assert not list(out.glob(f"*.g{generation + 1}.*")), "the unpublished generation's files are removed"


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows, _ = make_catalogue()
    return write_run(tmp_path_factory.mktemp("run"), rows)


def test_index_build_on_a_full_tmpfs_is_one_line_and_keeps_the_previous_generation(synthetic_run: Path,
                                                                                 tmp_path: Path) -> None:
    """The real thing: a tmpfs that holds one generation and a half; the rebuild runs out of space."""
    build_indexes(synthetic_run, tmp_path / "sized", config())
    size_kib = sum(p.stat().st_size for p in (tmp_path / "sized").iterdir()) // 1024
    with small_disk(tmp_path / "disk", size_kib * 3 // 2 + 8) as disk:
        out = disk / "index"
        assert CliRunner().invoke(commands, build_args(synthetic_run, out)).exit_code == 0
        result = CliRunner().invoke(commands, [*build_args(synthetic_run, out), "--rebuild"])
        check_index_after_failure(out, 1, result)
        grow(disk, 8192)
        again = CliRunner().invoke(commands, [*build_args(synthetic_run, out), "--rebuild"])
        assert again.exit_code == 0, again.output
        assert Searcher.load(out).manifest.generation == 2 and not temp_files(out)


def test_index_build_with_a_simulated_full_disk_is_one_line_and_keeps_the_previous_generation(
        synthetic_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: the second matrix written (.npy rows) fails with ENOSPC after some bytes reached the file."""
    from styleaxis.index import build

    out = tmp_path / "index"
    assert CliRunner().invoke(commands, build_args(synthetic_run, out)).exit_code == 0
    real, calls = build.write_npy_rows, []

    def fills_up(f, shape, blocks) -> None:
        calls.append(shape)
        if len(calls) == 2:
            f.write(b"\x93NUMPY" + bytes(100))
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, shape, blocks)

    monkeypatch.setattr(build, "write_npy_rows", fills_up)
    result = CliRunner().invoke(commands, [*build_args(synthetic_run, out), "--rebuild"])
    monkeypatch.undo()
    check_index_after_failure(out, 1, result)
    monkeypatch.setattr(build, "write_npy_rows", fills_up)
    calls.clear()
    with pytest.raises(DiskFullError, match=r"\.g2\.npy: no space left on device \(28\)"):  # the API's error
        build_indexes(synthetic_run, out, config())
    monkeypatch.undo()
    assert not list(out.glob("*.g2.*")) and not temp_files(out)
    again = CliRunner().invoke(commands, [*build_args(synthetic_run, out), "--rebuild"])
    assert again.exit_code == 0, again.output
    assert Searcher.load(out).manifest.generation == 2 and not temp_files(out)
