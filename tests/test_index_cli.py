"""`styleaxis index build|audit` and `styleaxis serve` through click's CliRunner, on a CliGroup like main."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from test_index import make_catalogue, write_run

from styleaxis.cli.common import CliGroup
from styleaxis.cli.index import index, serve
from styleaxis.index.manifest import IndexManifest


@click.group(cls=CliGroup)
def cli() -> None:
    """Stands in for the main `styleaxis` group."""


cli.add_command(index)
cli.add_command(serve)


@pytest.fixture()
def runs(tmp_path):
    """A run of most of the catalogue, and a later run that adds two videos."""
    rows, _ = make_catalogue()
    later = {"c2_s3", "c5_s1"}
    first = write_run(tmp_path / "run1", [r for r in rows if r["video_id"] not in later])
    second = write_run(tmp_path / "run2", rows)
    return first, second


def test_build_add_rebuild(runs, tmp_path):
    first, second = runs
    runner = CliRunner()
    out = tmp_path / "index"
    built = runner.invoke(cli, ["index", "build", str(first), "--style", "style_in,style_cin", "--content", "content", "--out", str(out), "--quiet"])
    assert built.exit_code == 0, built.output
    assert "style: 30 videos, dim 2020, Flat" in built.output and "exact search" in built.output
    again = runner.invoke(cli, ["index", "build", str(first), "--style", "style_in,style_cin", "--content", "content", "--out", str(out)])
    assert again.exit_code == 2 and "an index exists at" in again.output and "--add" in again.output
    added = runner.invoke(cli, ["index", "build", str(second), "--style", "style_in,style_cin", "--content", "content", "--out", str(out), "--add"])
    assert added.exit_code == 0, added.output
    assert "added 2, replaced 0 (re-embedded), removed 0 videos (32 in all)" in added.output
    assert IndexManifest.load(out).generation == 2
    rebuilt = runner.invoke(cli, ["index", "build", str(second), "--style", "style_in,style_cin", "--content", "content", "--out", str(out), "--rebuild",
                                  "--factory", "IVF2,Flat", "--quiet"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "IVF2,Flat, nprobe=" in rebuilt.output and IndexManifest.load(out).generation == 3
    both = runner.invoke(cli, ["index", "build", str(second), "--style", "style_in,style_cin", "--content", "content", "--out", str(out), "--add", "--rebuild"])
    assert both.exit_code == 2 and "exclude each other" in both.output
    fresh = runner.invoke(cli, ["index", "build", str(second), "--style", "style_in,style_cin", "--content", "content", "--out", str(tmp_path / "none"), "--add"])
    assert fresh.exit_code == 2 and "no index at" in fresh.output


def test_build_errors_are_one_line(runs, tmp_path):
    first, _ = runs
    bad = CliRunner().invoke(cli, ["index", "build", str(first), "--style", "style_in,style_cin", "--content", "content", "--out", str(tmp_path / "i"),
                                   "--factory", "IVF2,Bogus"])
    assert bad.exit_code == 1 and "FAISS factory string 'IVF2,Bogus' is not valid" in bad.output
    assert "Traceback" not in bad.output
    sharded = CliRunner().invoke(cli, ["index", "build", str(first), "--style", "style_in,style_cin", "--content", "content", "--out", str(tmp_path / "j"),
                                       "--factory", "HNSW32", "--shards", "2"])
    assert sharded.exit_code == 1 and "HNSW graphs cannot be merged" in sharded.output


def test_audit(runs, tmp_path):
    first, _ = runs
    runner = CliRunner()
    assert runner.invoke(cli, ["index", "build", str(first), "--style", "style_in,style_cin", "--content", "content", "--out", str(tmp_path / "index")]).exit_code == 0
    table = runner.invoke(cli, ["index", "audit", str(tmp_path / "index"), "--sample", "20"])
    assert table.exit_code == 0, table.output
    assert "30 videos" in table.output and "8 canary queries pass" in table.output
    assert "ann recall@10" in table.output and "answers recall@10" in table.output
    assert "run: 0 videos differ from the index" in table.output
    report = json.loads(runner.invoke(cli, ["index", "audit", str(tmp_path / "index"), "--json", "-k", "5"]).output)
    assert set(report["axes"]) == {"style", "content"}
    assert all(0.9 <= axis["ann_recall"] <= axis["pool_recall"] == 1.0 for axis in report["axes"].values())
    missing = runner.invoke(cli, ["index", "audit", str(tmp_path)])
    assert missing.exit_code == 1 and "no index manifest" in missing.output
    # the run moved on (two videos more, one re-embedded with other bytes): audit lists them and fails
    rows, _ = make_catalogue()
    later = [dict(r, content_hash="other-bytes") if r["video_id"] == "c0_s0" else r for r in rows]
    newer = write_run(tmp_path / "run3", later)
    stale = runner.invoke(cli, ["index", "audit", str(tmp_path / "index"), "--run", str(newer), "--sample", "20"])
    assert stale.exit_code == 1 and "run: 3 videos differ from the index" in stale.output
    assert "stale: c0_s0 (indexed with other bytes)" in stale.output and "new: c2_s3 (not indexed yet)" in stale.output


def test_serve_refuses_a_non_index_directory_before_starting(tmp_path):
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--port", "8123"])
    assert result.exit_code == 1 and "manifest.json: no index manifest" in result.output


def test_every_command_has_help():
    runner = CliRunner()
    for args in (["index", "--help"], ["index", "build", "--help"], ["index", "audit", "--help"], ["serve", "--help"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0 and "Usage:" in result.output, args
    serve_help = runner.invoke(cli, ["serve", "--help"]).output
    assert "--host" in serve_help and "Input options:" in serve_help and "Performance options:" in serve_help
    for limit in ("--max-upload-mb", "--max-json-mb", "--max-pixels", "--max-seconds", "--decode-timeout",
                  "--decode-memory-mb", "--decode-workers"):
        assert limit in serve_help, limit
