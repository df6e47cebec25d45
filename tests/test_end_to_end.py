"""The whole slice as a user runs it: embedded Parquet -> two FAISS indexes -> dual-axis answers -> CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from styleaxis.cli import main
from styleaxis.demo import clip_labels
from styleaxis.embed.recipe import RelativeConfig
from styleaxis.index.build import IndexConfig, build_indexes
from styleaxis.index.search import Searcher

#: the tiny catalogue shows each content in 2 renderings: the content axis's style-relative step takes
#: its median over each clip's 2 nearest videos on the style axis, not over the whole 6-clip catalogue.
TINY_RELATIVE = RelativeConfig(k=2)


@pytest.fixture(scope="module")
def index_dir(embedded_run: Path) -> Path:
    build_indexes(embedded_run, embedded_run / "index", IndexConfig(relative=TINY_RELATIVE))
    return embedded_run / "index"


def test_indexes_hold_the_ok_clips_only(index_dir: Path, tiny_clips: list[Path]) -> None:
    searcher = Searcher.load(index_dir)
    assert sorted(searcher.video_ids) == sorted(p.stem for p in tiny_clips)
    # content_base / style_base: the axes before their catalogue steps (embed/recipe.py); the default style
    # axis, the learned style_head, takes no content-relative residual, only the expansion
    assert set(searcher.manifest.axes) == {"style", "content", "content_base", "style_base"}
    recipe = searcher.manifest.recipe
    assert recipe.step("content").alpha == 0.5 and recipe.step("content").k == TINY_RELATIVE.k
    assert searcher.manifest.axes["style"].descriptors == ("style_head",)
    assert recipe.residual("style_head") is None and recipe.step("style").m == TINY_RELATIVE.expand
    assert searcher.manifest.axes["content"].descriptors == ("content", "content_head")


@pytest.mark.parametrize("mode,same,differs", [
    ("same-style-different-content", 1, 0),
    ("same-content-different-style", 0, 1),
])
def test_a_stylised_clip_gets_the_right_clip_first(index_dir: Path, tiny_clips: list[Path],
                                                   mode: str, same: int, differs: int) -> None:
    searcher = Searcher.load(index_dir)
    for clip in tiny_clips:
        query = clip_labels(clip.stem)
        top = searcher.search(clip.stem, mode=mode, k=1)[0]
        answer = clip_labels(top.video_id)
        assert answer[same] == query[same] and answer[differs] != query[differs], (clip.stem, top)


def test_cli_query_by_video_and_by_file(embedded_run: Path, index_dir: Path, tiny_clips: list[Path]) -> None:
    runner = CliRunner()
    clip = tiny_clips[0]
    by_id = runner.invoke(main, ["query", str(embedded_run), "--video", clip.stem,
                                 "--mode", "same-style-different-content", "-k", "2", "--json"])
    assert by_id.exit_code == 0, by_id.output
    answer = json.loads(by_id.output)
    assert [clip_labels(r["video_id"])[1] for r in answer["results"]][:1] == [clip_labels(clip.stem)[1]]
    assert all(r["video_id"] != clip.stem for r in answer["results"])
    # the same clip given as a file is embedded on the fly to the indexed vectors: same answers
    by_file = runner.invoke(main, ["query", str(index_dir), "--image", str(clip),
                                   "--mode", "same-style-different-content", "-k", "2", "--json"])
    assert by_file.exit_code == 0, by_file.output
    file_answer = json.loads(by_file.output)["results"]
    assert [r["video_id"] for r in file_answer] == [r["video_id"] for r in answer["results"]]
    for a, b in zip(file_answer, answer["results"]):
        assert a["style_score"] == pytest.approx(b["style_score"], abs=1e-4)


def test_cli_errors_are_one_clear_line(embedded_run: Path, index_dir: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(main, ["query", str(index_dir), "--video", "no_such_clip"])
    assert unknown.exit_code == 1 and "Traceback" not in unknown.output
    assert "video id 'no_such_clip' is not in the index" in unknown.output
    both = runner.invoke(main, ["query", str(index_dir)])
    assert both.exit_code == 2 and "exactly one of --video" in both.output
    bad = runner.invoke(main, ["embed", str(embedded_run / "nope.mp4"), "--out", str(embedded_run / "x"),
                               "--short-side", "0"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and "short_side" in bad.output


def test_cli_models_list_shows_every_model_present() -> None:
    result = CliRunner().invoke(main, ["models", "list", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert {"vgg16-hed", "effnet-lite0", "magenta-predictor", "cin26"} <= set(rows)
    packaged = [r for r in rows.values() if r["name"] != "vgg19"]
    assert all(r["present"] and len(r["sha256"]) == 64 for r in packaged)
    assert rows["vgg19"]["source"].endswith("vgg19-dcbb9e9d.pth")


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for args in (["--help"], ["embed", "--help"], ["index", "build", "--help"], ["index", "audit", "--help"],
                 ["query", "--help"], ["serve", "--help"], ["stylize", "--help"], ["train", "--help"],
                 ["train", "johnson", "--help"], ["train", "stylebank", "--help"], ["train", "swap-inverse", "--help"],
                 ["train", "content-head", "--help"], ["eval", "catalog", "--help"], ["eval", "retrieval", "--help"],
                 ["models", "list", "--help"], ["models", "fetch", "--help"], ["demo", "--help"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0 and "Usage:" in result.output, args
