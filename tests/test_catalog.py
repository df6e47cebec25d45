"""Labelled catalogues: the builder on a tiny config, the reader, embedding, and the CLI commands."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styleaxis.cli.common import CliGroup
from styleaxis.cli.eval import catalog, retrieval
from styleaxis.cli.train import content_head
from styleaxis.embed.descriptors import DESCRIPTORS
from styleaxis.embed.embedder import EmbedConfig, Embedder, video_vector
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import load_model
from styleaxis.eval.catalog import (FILTERS, SPLITS, CatalogConfig, apply_style, build_catalog, embed_catalog, photo,
                                    read_catalog)
from styleaxis.eval.retrieval import per_query_metrics
from styleaxis.media.video import KeyframePolicy, read_keyframes
from styleaxis.media.write import write_video

#: `styleaxis eval catalog`, `eval retrieval` and `train content-head` in one group, with the CLI's error mapping
commands = CliGroup(commands=[catalog, retrieval, content_head])

TINY = CatalogConfig(split="hard", contents=("astronaut", "coffee", "camera"),
                     styles=("identity", "cin26-02", "photo-gravel"), short_side=64)


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_catalog(tmp_path_factory.mktemp("catalog"), TINY, progress=False)


def test_builder_writes_a_valid_csv_and_images(tiny_catalog: Path) -> None:
    table = pd.read_csv(tiny_catalog)
    assert list(table.columns) == ["path", "content", "style"]
    assert len(table) == 9 and table.groupby(["content", "style"]).size().eq(1).all()
    sizes = []
    for rel in table["path"]:
        with Image.open(tiny_catalog.parent / rel) as img:
            assert img.mode == "RGB"
            sizes.append(img.size)
    # hard split: every item has its own crop and down-scale, at most the configured short side
    assert all(48 <= min(s) <= 64 for s in sizes) and len(set(sizes)) > 3
    read = read_catalog(tiny_catalog)
    assert read["kind"].eq("image").all() and Path(read.loc[0, "path"]).is_absolute()


def test_rebuild_keeps_existing_images_and_is_seeded(tiny_catalog: Path, tmp_path: Path) -> None:
    first = tiny_catalog.parent / pd.read_csv(tiny_catalog).loc[4, "path"]
    stamp = first.stat().st_mtime_ns
    build_catalog(tiny_catalog.parent, TINY, progress=False)
    assert first.stat().st_mtime_ns == stamp
    # same seed, fresh folder: identical pixels for the same item
    one = CatalogConfig(split="hard", contents=("coffee",), styles=("identity",), short_side=64)
    again = build_catalog(tmp_path, one, progress=False)
    rel = pd.read_csv(again).loc[0, "path"]
    reference = tiny_catalog.parent / rel
    assert np.array_equal(np.asarray(Image.open(tmp_path / rel)), np.asarray(Image.open(reference)))


def test_filters_keep_shape_and_range_and_change_the_image() -> None:
    image = np.asarray(Image.fromarray(photo("chelsea")).resize((80, 56)))
    for name in FILTERS:
        out = apply_style(name, image, seed=3)
        assert out.shape == image.shape and out.dtype == np.uint8, name
        assert np.abs(out.astype(int) - image).mean() > 3, name
    assert np.array_equal(apply_style("film_grain", image, seed=3), apply_style("film_grain", image, seed=3))
    assert not np.array_equal(apply_style("film_grain", image, seed=3), apply_style("film_grain", image, seed=4))


def test_splits_keep_training_disjoint_from_evaluation() -> None:
    train_contents, train_styles, _ = SPLITS["train"]
    for split in ("easy", "hard", "unseen"):
        contents, styles, _ = SPLITS[split]
        assert not {c.partition("#")[0] for c in train_contents} & set(contents)
        assert set(train_styles) & set(styles) == {"identity"}
        assert len(contents) >= 12 and len(styles) >= 12
    assert photo("hopper#q3").shape[0] == round(photo("hopper").shape[0] * 0.55)


def test_config_and_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown photo 'nope'"):
        CatalogConfig(contents=("nope",))
    with pytest.raises(ValueError, match="views must be 1"):
        CatalogConfig(split="easy", views=2)
    with pytest.raises(KeyError, match="unknown style 'cin27'"):
        apply_style("cin27", np.zeros((16, 16, 3), np.uint8))
    csv = tmp_path / "catalog.csv"
    pd.DataFrame({"path": ["a.png"], "content": ["c"]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"missing columns \['style'\]"):
        read_catalog(csv)
    pd.DataFrame({"path": ["a.png"], "content": ["c"], "style": ["s"]}).to_csv(csv, index=False)
    with pytest.raises(FileNotFoundError, match="1 listed files not found"):
        read_catalog(csv)


def test_embed_catalog_reads_images_and_videos(tiny_catalog: Path, tmp_path: Path) -> None:
    table = pd.read_csv(tiny_catalog)
    frames = [np.asarray(Image.open(tiny_catalog.parent / p).convert("RGB").resize((64, 48))) for p in table["path"][:3]]
    # three shots of three frames, a key frame at the start of each: the keyframes are the three images
    write_video(tmp_path / "clip.mp4", [f for f in frames for _ in range(3)], fps=4, gop=3)
    rows = pd.DataFrame({"path": [str(tiny_catalog.parent / table.loc[0, "path"]), str(tmp_path / "clip.mp4")],
                         "content": ["astronaut", "astronaut"], "style": ["identity", "identity"]})
    rows.to_csv(tmp_path / "catalog.csv", index=False)
    catalog = read_catalog(tmp_path / "catalog.csv")
    assert list(catalog["kind"]) == ["image", "video"]
    config = EmbedConfig(descriptors=("content",), short_side=64)
    content = embed_catalog(catalog, config, max_keyframes=8, progress=False)["content"]
    assert content.shape == (2, DESCRIPTORS["content"].dim) and np.isfinite(content).all()
    assert np.linalg.norm(content[0]) == pytest.approx(1.0, abs=1e-4)
    # the video row is made as the nightly job makes it: its key frames at least 1 s apart (0 and 1.5 s of
    # the three at 0, 0.75 and 1.5 s), decoded by the same reader, and the mean of their unit vectors
    kept = read_keyframes(tmp_path / "clip.mp4", KeyframePolicy(max_keyframes=8)).keyframes
    assert [kf.frame_index for kf in kept] == [0, 6]
    expected = video_vector(Embedder(config).embed([kf.image for kf in kept])["content"])
    assert np.allclose(content[1], expected, atol=1e-5)
    assert np.linalg.norm(content[1]) < 0.95


@pytest.mark.slow
def test_default_content_descriptor_beats_pooled_classifier_features(tmp_path: Path) -> None:
    config = CatalogConfig(split="hard", contents=("astronaut", "coffee", "chelsea", "rocket", "china"),
                           styles=("identity", "cin26-02", "cin26-08", "cin26-14", "photo-gravel"), short_side=96)
    catalog = read_catalog(build_catalog(tmp_path, config, progress=False))
    default = embed_catalog(catalog, EmbedConfig(descriptors=("content",), short_side=96), progress=False)["content"]
    effnet = load_model("effnet-lite0")
    with torch.inference_mode():
        pooled = np.stack([
            effnet(resize_short_side(torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy())
                                     .permute(2, 0, 1).float() / 255, 96)[None], ("head",))["head"]
            .mean(dim=(2, 3))[0].numpy() for p in catalog["path"]])
    scores = {name: per_query_metrics(x, catalog["content"], catalog["style"], "content", k=4)
              for name, x in (("default", default), ("pooled", pooled))}
    default_p, pooled_p = (scores[n]["precision"].mean() for n in ("default", "pooled"))
    assert default_p > pooled_p + 0.15, (default_p, pooled_p)
    assert scores["default"]["leakage"].mean() < scores["pooled"]["leakage"].mean()


def test_cli_catalog_and_retrieval(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(commands, ["catalog", "--out", str(tmp_path / "cat"), "--split", "unseen",
                                      "--contents", "coffee,moon", "--styles", "identity,sepia,blur",
                                      "--short-side", "48"])
    assert result.exit_code == 0, result.output
    assert "6 images" in result.output
    csv = tmp_path / "cat" / "catalog.csv"
    result = runner.invoke(commands, ["retrieval", "--catalog", str(csv), "--descriptors", "style_cin,content",
                                      "-k", "2", "--json", "--short-side", "48", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["metric"] for r in data["table"]] == ["SSDC-P@2", "SCDS-P@2"]
    assert {r["style"] for r in data["per_style"]} == {"identity", "sepia", "blur"}
    assert (tmp_path / "out" / "per_style.png").is_file()
    # without -k, k is what the design allows: each look shows 2 contents, so 1 other content per query
    result = runner.invoke(commands, ["retrieval", "--catalog", str(csv), "--descriptors", "style_cin,content",
                                      "--json", "--short-side", "48"])
    data = json.loads(result.output)
    assert [r["metric"] for r in data["table"]] == ["SSDC-P@1", "SCDS-P@1"]
    assert all(0.0 <= r["precision_r"] <= 1.0 for r in data["table"])
    result = runner.invoke(commands, ["retrieval", "--catalog", str(csv), "--descriptors", "style_nope"])
    assert result.exit_code == 1 and "unknown descriptor 'style_nope'" in result.output


def test_cli_content_head_trains_and_exports(tiny_catalog: Path, tmp_path: Path) -> None:
    from styleaxis.embed.content_head import read_content_head

    runner = CliRunner()
    args = ["content-head", "--out", str(tmp_path / "run"), "--catalog", str(tiny_catalog), "--steps", "3",
            "--contents-per-batch", "2", "--views-per-content", "2", "--hidden", "8"]
    result = runner.invoke(commands, args)
    assert result.exit_code == 0, result.output
    path = tmp_path / "run" / "content_head.pt"
    assert f"sha256 {(tmp_path / 'run' / 'content_head.pt.sha256').read_text().split()[0]}" in result.output
    head = read_content_head(path)
    assert head.out_dim == 112 * 4 * 2
    # flip-symmetric pooling: a mirrored map gives the same vector
    feat = torch.randn(1, 112, 6, 7)
    torch.testing.assert_close(head(feat), head(feat.flip(-1)))
    # rerun with more steps resumes from the checkpoint at step 3
    result = runner.invoke(commands, args[:5] + ["--steps", "4"] + args[7:])
    assert result.exit_code == 0 and "step 4;" in result.output
