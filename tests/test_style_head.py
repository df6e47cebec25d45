"""The learned style head: its features, training, the shipped weights and the `style_head` descriptor."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styleaxis.cli.main import main
from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.embed.registry import get_model, load_model, resolve_weights, sha256_file
from styleaxis.embed.style_head import (
    STYLE_HEAD_MODEL, STYLE_HEAD_TAPS, StyleHead, StyleHeadTrainConfig, read_style_head, save_style_head,
    style_features, train_style_head,
)
from styleaxis.embed.training import items_digest
from styleaxis.eval.designs import DesignConfig, build_design_catalog, content_image
from styleaxis.eval.looks import apply_look, sample_looks


@pytest.fixture(scope="module")
def tiny_looks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small training design: 16 contents in blocks of 8, the filter families' looks, 40 px."""
    out = tmp_path_factory.mktemp("looks")
    config = DesignConfig(design="blocks", role="train", contents=16, short_side=40)
    return build_design_catalog(out, config, progress=False)


def _items(csv: Path) -> list[tuple[str, str, str]]:
    table = pd.read_csv(csv)
    return [(str(csv.parent / p), c, s) for p, c, s in zip(table["path"], table["content"], table["style"])]


def test_style_features_are_finite_and_match_the_shipped_head() -> None:
    encoder = load_model("effnet-lite0")
    with torch.inference_mode():
        features = style_features(encoder(torch.rand(2, 3, 64, 80), STYLE_HEAD_TAPS))
    assert features.shape[0] == 2 and torch.isfinite(features).all()
    assert load_model(STYLE_HEAD_MODEL).arch["in_dim"] == features.shape[1]
    # a flat grey frame (zero std everywhere) stays finite
    with torch.inference_mode():
        flat = style_features(encoder(torch.full((1, 3, 64, 64), 0.5), STYLE_HEAD_TAPS))
    assert torch.isfinite(flat).all()


def test_training_separates_the_looks_it_saw_and_resumes(tiny_looks: Path, tmp_path: Path) -> None:
    items = _items(tiny_looks)
    config = StyleHeadTrainConfig(out_dir=str(tmp_path / "run"), short_side=64, hidden=32, out_dim=16,
                                  looks_per_batch=6, contents_per_look=3, steps=60, checkpoint_every=30)
    result = train_style_head(items, config, progress=False)
    assert result.step == 60 and result.model_path.is_file()
    assert result.history[:10].mean() > result.history[-10:].mean()
    head = read_style_head(result.model_path)
    features = torch.load(tmp_path / "run" / "features.pt", weights_only=True)["value"]
    with torch.no_grad():
        z = head(features)
    looks = np.array([s for _, _, s in items])
    contents = np.array([c for _, c, _ in items])
    sims = (z @ z.T).numpy()
    same_look = (looks[:, None] == looks[None]) & (contents[:, None] != contents[None])
    same_content = (contents[:, None] == contents[None]) & (looks[:, None] != looks[None])
    assert sims[same_look].mean() > sims[same_content].mean() + 0.2
    # an interrupted run (its checkpoint at step 30 kept, the later one lost) resumes to the same weights
    for late in (tmp_path / "run" / "checkpoints").glob("step_0000060*"):
        late.unlink()
    resumed = train_style_head(items, config, progress=False)
    assert resumed.step == 60
    assert torch.equal(read_style_head(resumed.model_path).state_dict()["mlp.0.weight"],
                       head.state_dict()["mlp.0.weight"])
    # the same weights make the same bytes whatever the file is called, so a retrained head can be
    # checked against a shipped sha256
    assert resumed.sha256 == result.sha256
    assert sha256_file(save_style_head(head, tmp_path / "a.pt")) == sha256_file(save_style_head(head, tmp_path / "b" / "c.pt"))


def test_the_items_digest_names_the_images_not_their_folder(tiny_looks: Path, tmp_path: Path) -> None:
    # a run record's items_sha256 (and the feature-cache key) must match for a copy of the catalogue
    # elsewhere, and change when a pixel or a label changes
    copy = tmp_path / "copy"
    shutil.copytree(tiny_looks.parent, copy)
    items, copied = _items(tiny_looks), _items(copy / tiny_looks.name)
    assert items_digest(items) == items_digest(copied)
    relabelled = [copied[0][:2] + ("another-look",)] + copied[1:]
    assert items_digest(relabelled) != items_digest(items)
    first = Path(copied[0][0])
    pixels = np.array(Image.open(first))
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(first)
    assert items_digest(copied) != items_digest(items)


def test_a_style_head_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    torch.save({"arch": {"in_dim": 4, "bogus": 1}, "state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a style head of this version"):
        read_style_head(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(ValueError, match="expected a style head file"):
        read_style_head(path)


def test_shipped_head_is_registered_with_its_hash() -> None:
    record = get_model(STYLE_HEAD_MODEL)
    path, digest = resolve_weights(STYLE_HEAD_MODEL)
    assert digest == record.sha256 and path.is_file()
    assert isinstance(load_model(STYLE_HEAD_MODEL), StyleHead)


def test_style_head_descriptor_groups_by_look_not_by_content() -> None:
    # 4 evaluation contents x 4 evaluation looks (never seen in training), 96 px
    looks = [look for look in sample_looks("eval", 1) if look.family in ("grade", "sketch", "mosaic", "cin26")]
    contents = ["coffee", "chelsea", "scene#1", "rocket@0.55,0.25,0.25"]
    frames, look_of, content_of = [], [], []
    for content in contents:
        image = np.asarray(content_image(content))
        image = image[:: max(1, image.shape[0] // 96), :: max(1, image.shape[0] // 96)]
        for look in looks:
            frames.append(apply_look(look, np.ascontiguousarray(image)))
            look_of.append(look.name)
            content_of.append(content)
    embedder = Embedder(EmbedConfig(descriptors=("style_head", "style_eff"), short_side=96))
    vectors = embedder.embed(frames)
    z = vectors["style_head"]
    assert z.shape == (16, 128) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert STYLE_HEAD_MODEL in embedder.identity["models"]
    looks_a, contents_a = np.array(look_of), np.array(content_of)
    sims = z @ z.T
    same_look = (looks_a[:, None] == looks_a[None]) & (contents_a[:, None] != contents_a[None])
    same_content = (contents_a[:, None] == contents_a[None]) & (looks_a[:, None] != looks_a[None])
    assert sims[same_look].mean() > sims[same_content].mean() + 0.3
    # the nearest other frame of most frames shares its look
    np.fill_diagonal(sims, -np.inf)
    assert (looks_a[sims.argmax(axis=1)] == looks_a).mean() >= 0.75


def test_cli_trains_a_style_head(tiny_looks: Path, tmp_path: Path) -> None:
    args = ["train", "style-head", "--out", str(tmp_path / "run"), "--catalog", str(tiny_looks), "--steps", "3",
            "--looks-per-batch", "4", "--contents-per-look", "2", "--hidden", "8"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    digest = (tmp_path / "run" / "style_head.pt.sha256").read_text().split()[0]
    assert f"sha256 {digest}" in result.output
    assert read_style_head(tmp_path / "run" / "style_head.pt").arch["hidden"] == 8
