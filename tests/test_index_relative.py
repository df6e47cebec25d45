"""The content-relative style axis (styleaxis.embed.recipe) in evaluation and in a real built index.

The synthetic catalogue models what defeats raw style statistics: every photo has its own strong
statistics (p_c), a style adds a weaker shift (q_s), and "identity" adds nothing. Raw, items group by
photo; relative to their content neighbours, they group by style.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_index import MODELS, write_run

from styleaxis.embed.recipe import AxisRecipe, Expand, RelativeConfig, StyleRelative
from styleaxis.embed.relative import content_relative, expand_rows, nearest_rows
from styleaxis.eval.retrieval import evaluate
from styleaxis.index.build import IndexConfig, add_videos, build_indexes
from styleaxis.index.search import SearchConfig, Searcher

#: 12 styles per content, so each item's 10 content neighbours (the default k) share its content
#: the default style axis over the grid's one content descriptor (the default content axis adds content_head)
AXES = {"style": ("style_eff",), "content": ("content",)}
N_CONTENT = 12  # 11 same-style items of other content: SSDC-P@10 can reach 1
STYLES = ("identity", "warm", "cold", "grain", "fade", "sepia", "teal", "pastel", "noir", "bloom", "matte", "vivid")


def _grid(seed: int = 0, noise: float = 0.05) -> tuple[list[dict], dict[str, tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    photo = 3.0 * rng.standard_normal((N_CONTENT, 48))      # the photo's own statistics, strong
    shift = rng.standard_normal((len(STYLES), 48))           # what a style adds
    shift[0] = 0.0                                           # identity adds nothing
    layout = rng.standard_normal((N_CONTENT, 64))            # content: what is where
    rows, labels = [], {}
    for c in range(N_CONTENT):
        for s in range(len(STYLES)):
            vid = f"c{c}_{STYLES[s]}"
            labels[vid] = (c, s)
            rows.append({"video_id": vid, "status": "ok", "content_hash": f"sha-{vid}", "vectors": {
                "style_eff": (photo[c] + shift[s] + noise * rng.standard_normal(48)).astype(np.float32),
                "content": (layout[c] + 0.3 * shift[s, :1] + noise * rng.standard_normal(64)).astype(np.float32),
            }})
    return rows, labels


def test_content_relative_is_the_median_and_mad_of_the_neighbours() -> None:
    reference = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 16.0], [100.0, -5.0]])
    residual, floor = content_relative(reference[:1], reference, np.array([[0, 1, 2]]), eps=0.5)
    # median (2, 10), MAD (2, 0); floor = 0.5 * the rows' MAD, raised to the median over dimensions (1)
    np.testing.assert_allclose(floor, [1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(residual, [[(0 - 2) / (2 + 1), 0.0]], atol=1e-6)
    # a dimension that never varies among the neighbours does not blow a small difference up
    moved, _ = content_relative(np.array([[0.0, 11.0]]), reference, np.array([[0, 1, 2]]), floor=floor)
    np.testing.assert_allclose(moved, [[-2 / 3, (11 - 10) / 0.5]], atol=1e-6)
    with pytest.raises(ValueError, match="neighbours index rows outside the reference"):
        content_relative(reference[:1], reference, np.array([[0, 7]]))
    with pytest.raises(ValueError, match="floor must have shape"):
        content_relative(reference[:1], reference, np.array([[0, 1]]), floor=np.ones(3))
    with pytest.raises(ValueError, match="k must be >= 1"):
        RelativeConfig(k=0)


def test_expansion_adds_the_best_rows_outside_the_excluded_ones() -> None:
    matrix = np.array([[1.0, 0, 0], [0.8, 0.6, 0], [0.6, 0.8, 0], [0, 1.0, 0], [-0.1, 0, 0.995]])
    row = matrix[:1]
    # 1 is a content neighbour (excluded, although the most similar); 2 and 3 are the best of the rest
    out = expand_rows(row, matrix, np.array([[4, 3, 2, 1, 0]]), np.array([[0, 1]]), m=2)
    np.testing.assert_allclose(out, [np.array([1.6, 1.8, 0]) / np.hypot(1.6, 1.8)], atol=1e-6)
    # fewer admissible candidates than m: it takes what there is
    out = expand_rows(row, matrix, np.array([[0, 1, 2]]), np.array([[0, 1]]), m=2)
    np.testing.assert_allclose(out, [np.array([1.6, 0.8, 0]) / np.hypot(1.6, 0.8)], atol=1e-6)
    with pytest.raises(ValueError, match="m must be >= 1"):
        expand_rows(row, matrix, np.array([[2]]), np.array([[0]]), m=0)
    with pytest.raises(ValueError, match="expand must be >= 0"):
        RelativeConfig(expand=-1)


def test_expansion_lifts_style_precision_where_residuals_are_noisy() -> None:
    rows, labels = _grid(noise=1.0)  # residual noise as large as the weaker styles' shifts
    vectors = {name: np.stack([r["vectors"][name] for r in rows]) for name in ("style_eff", "content")}
    contents = [labels[r["video_id"]][0] for r in rows]
    styles = [labels[r["video_id"]][1] for r in rows]
    plain, expanded = (evaluate(vectors, contents, styles, axes=AXES, relative=RelativeConfig(expand=m))
                       .table.set_index("axis").loc["style"] for m in (0, 2))
    assert expanded["precision"] > plain["precision"] + 0.03  # measured 0.812 -> 0.871
    assert expanded["leakage"] < plain["leakage"]  # 0.021 -> 0.009: it never takes its content's rows


def test_nearest_rows_find_themselves_first() -> None:
    x = np.eye(4, dtype=np.float32) + 0.1
    found = nearest_rows(x, x, 2)
    assert found[:, 0].tolist() == [0, 1, 2, 3] and found.shape == (4, 2)
    assert nearest_rows(x, x, 10).shape == (4, 4)  # k is capped at the catalogue size


def test_relative_step_groups_by_style_where_raw_statistics_group_by_photo() -> None:
    rows, labels = _grid()
    vectors = {name: np.stack([r["vectors"][name] for r in rows]) for name in ("style_eff", "content")}
    contents = [labels[r["video_id"]][0] for r in rows]
    styles = [labels[r["video_id"]][1] for r in rows]
    report = evaluate(vectors, contents, styles, axes=AXES)
    style = report.table.set_index("axis").loc["style"]
    assert style["descriptors"] == "style_eff"
    assert style["precision"] == 1.0 and style["leakage"] == 0.0
    # without the step (the same numbers as a plain, non-relative descriptor): photo wins
    plain = evaluate({"style_x": vectors["style_eff"], "content": vectors["content"]}, contents, styles,
                     axes={"style": ("style_x",), "content": ("content",)}).table.set_index("axis").loc["style"]
    assert plain["precision"] < 0.5 and plain["leakage"] > 0.5
    assert report.per_style.loc["0", "SSDC-P@10"] == 1.0  # identity (style 0) finds identity


def test_built_index_serves_the_relative_axis_for_ids_vectors_and_added_videos(tmp_path) -> None:
    rows, labels = _grid()
    config = IndexConfig(axes=AXES, relative=RelativeConfig(k=len(STYLES)))
    late = {"c3_warm", "c6_identity"}  # indexed later, with --add
    manifest = build_indexes(write_run(tmp_path / "run1", [r for r in rows if r["video_id"] not in late]),
                             tmp_path / "index", config)
    residual = manifest.recipe.residual("style_eff")
    assert manifest.axes["style"].descriptors == ("style_eff",)
    assert residual.k == len(STYLES) and manifest.descriptors["style_eff"].raw_file in manifest.files
    assert len(residual.floor) == 48 and len(residual.mean) == 48
    searcher = Searcher.load(tmp_path / "index")
    # the converse step: the content axis sheds the style leak the grid put into it (0.3 x the style's
    # shift in its first dimension); the axis before the step is kept as content_base
    assert manifest.recipe.step("content") == StyleRelative("content", "content_base", "style", len(STYLES), 0.5)
    rows_of = {v: i for i, v in enumerate(searcher.video_ids)}
    pairs = [(rows_of[a], rows_of[b]) for a in rows_of for b in rows_of
             if a < b and labels[a][1] == labels[b][1] and labels[a][0] != labels[b][0]]

    def mean_cosine(axis: str) -> float:
        m = np.asarray(searcher.axis_matrix(axis))
        return float(np.mean([m[i] @ m[j] for i, j in pairs]))
    assert mean_cosine("content") < mean_cosine("content_base") - 0.01
    # the style expansion: each row plus its 2 nearest outside its 12 content neighbours (style_base:
    # the rows before it); rows of one style move closer together across photos
    assert manifest.recipe.step("style") == Expand("style", "style_base", "content_base", len(STYLES), 2)
    assert mean_cosine("style") > mean_cosine("style_base") + 0.01
    for query in ("c0_identity", "c2_cold", "c5_fade"):
        answers = searcher.search(query, mode="same-style-different-content", k=N_CONTENT - 2)
        assert {labels[r.video_id][1] for r in answers} == {labels[query][1]}, query
    # a query by raw vectors goes through the same neighbours, median and MAD as the build
    vectors = next(r["vectors"] for r in rows if r["video_id"] == "c2_cold")
    by_vector = searcher.search(vectors=vectors, mode="style", k=5, model_identity=MODELS)
    by_id = searcher.search("c2_cold", mode="style", k=5)
    assert [r.video_id for r in by_vector] == [r.video_id for r in by_id]
    assert by_vector[0].style_score == pytest.approx(by_id[0].style_score, abs=1e-5)
    # and through the content axis's step: neighbours on the style axis, medians of content_base
    by_vector = searcher.search(vectors=vectors, mode="content", k=5, model_identity=MODELS)
    by_id = searcher.search("c2_cold", mode="content", k=5)
    assert [r.video_id for r in by_vector] == [r.video_id for r in by_id]
    assert [r.content_score for r in by_vector] == pytest.approx([r.content_score for r in by_id], abs=1e-5)

    grown = add_videos(write_run(tmp_path / "run2", rows), tmp_path / "index", config)
    assert grown.count == len(rows) and grown.descriptors["style_eff"].raw_file.endswith(".g2.npy")
    assert grown.recipe == manifest.recipe  # --add repeats the fitted steps, it does not refit them
    searcher = Searcher.load(tmp_path / "index")
    for query in late:
        answers = searcher.search(query, mode="same-style-different-content", k=N_CONTENT - 2)
        assert {labels[r.video_id][1] for r in answers} == {labels[query][1]}, query


def test_cli_builds_the_relative_axis_and_names_what_a_run_lacks(tmp_path) -> None:
    from click.testing import CliRunner

    from styleaxis.cli import main

    rows, _ = _grid()
    run = write_run(tmp_path / "run", rows)
    built = CliRunner().invoke(main, ["index", "build", str(run), "--style", "style_eff", "--content", "content",
                                      "--relative-k", "12", "--quiet"])
    assert built.exit_code == 0, built.output
    assert "style_eff: content-relative, against each video's 12 nearest videos on the content axis" in built.output
    assert "content axis: style-relative, minus 0.5 x the median content of each video's 12 nearest" in built.output
    assert "style axis: each video plus its 2 nearest videos on the style axis outside its 12" in built.output
    assert "content_base" not in built.output and "style_base" not in built.output  # internal
    old = write_run(tmp_path / "old", [{**r, "vectors": {"content": r["vectors"]["content"]}} for r in rows])
    refused = CliRunner().invoke(main, ["index", "build", str(old), "--style", "style_eff", "--content", "content"])
    assert refused.exit_code == 1 and "lacks descriptor style_eff" in refused.output
    assert "--add-descriptors style_eff" in refused.output and "index build --style/--content" in refused.output


def test_relative_descriptor_needs_a_content_axis() -> None:
    with pytest.raises(ValueError, match="content-relative and need a 'content' axis"):
        IndexConfig(axes={"style": ("style_eff",), "other": ("content",)})
    with pytest.raises(ValueError, match="cannot hold the content-relative"):
        IndexConfig(axes={"style": ("style_in",), "content": ("content", "style_eff")})
    with pytest.raises(ValueError, match="reserved for the index's own use"):
        IndexConfig(axes={"style": ("style_in",), "content": ("content",), "style_base": ("style_cin",)})


def test_style_axis_mixing_relative_and_plain_descriptors(tmp_path) -> None:
    rows, labels = _grid(seed=1)
    rng = np.random.default_rng(5)
    plain = rng.standard_normal((len(STYLES), 16))  # a second style descriptor, not content-relative
    for r in rows:
        r["vectors"]["style_cin"] = (plain[labels[r["video_id"]][1]] + 0.05 * rng.standard_normal(16)).astype(
            np.float32)
    axes = {"style": ("style_eff", "style_cin"), "content": ("content",)}
    build_indexes(write_run(tmp_path / "run", rows), tmp_path / "index", IndexConfig(axes=axes))
    searcher = Searcher.load(tmp_path / "index")
    assert set(searcher.manifest.descriptors) == {"style_eff", "style_cin", "content"}
    assert searcher.manifest.recipe.residual("style_cin") is None
    assert searcher.manifest.descriptors["style_cin"].raw_file is None
    vectors = next(r["vectors"] for r in rows if r["video_id"] == "c4_grain")
    by_vector = searcher.search(vectors=vectors, mode="same-style-different-content", k=6, model_identity=MODELS)
    by_id = searcher.search("c4_grain", mode="same-style-different-content", k=6)
    assert [r.video_id for r in by_vector] == [r.video_id for r in by_id]
    assert {labels[r.video_id][1] for r in by_id} == {STYLES.index("grain")}


def test_duplicate_filter_compares_content_before_its_step(tmp_path) -> None:
    rows, _ = _grid()
    build_indexes(write_run(tmp_path / "run", rows), tmp_path / "index",
                  IndexConfig(axes=AXES, relative=RelativeConfig(k=len(STYLES))))
    searcher = Searcher.load(tmp_path / "index")
    a, b = (searcher.video_ids.index(v) for v in ("c0_identity", "c0_warm"))
    base, stepped = (np.asarray(searcher.axis_matrix(axis)) for axis in ("content_base", "content"))
    on_base, on_stepped = float(base[a] @ base[b]), float(stepped[a] @ stepped[b])
    assert abs(on_base - on_stepped) > 0.01  # the step moves the pair: the two rules differ here

    def found(threshold: float) -> bool:
        config = SearchConfig(duplicate_similarity=threshold, duplicate_style_similarity=-1.0)
        strict = Searcher.load(tmp_path / "index", config, verify=False)
        return "c0_warm" in [r.video_id for r in strict.search("c0_identity", mode="content", k=20)]
    assert not found(on_base - 1e-3) and found(on_base + 1e-3)


def test_a_plain_style_axis_is_expanded_unless_expand_is_zero(tmp_path) -> None:
    rng = np.random.default_rng(3)
    rows, labels = _grid(seed=2)
    plain = rng.standard_normal((len(STYLES), 16))  # a style descriptor with no catalogue step of its own
    for r in rows:
        r["vectors"]["style_cin"] = (plain[labels[r["video_id"]][1]] + 0.05 * rng.standard_normal(16)).astype(
            np.float32)
    axes = {"style": ("style_cin",), "content": ("content",)}
    # the build records the expansion in the recipe, which queries and --add repeat
    run = write_run(tmp_path / "run", rows)
    expanded = build_indexes(run, tmp_path / "default", IndexConfig(axes=axes)).recipe
    assert isinstance(expanded.step("style"), Expand) and expanded.residual("style_cin") is None
    assert expanded.step("style").m == RelativeConfig().expand
    plain_axis = build_indexes(run, tmp_path / "off", IndexConfig(axes=axes, relative=RelativeConfig(expand=0)))
    assert plain_axis.recipe.base("style") == "style"
    # without a content axis there are no content neighbours to keep out: no expansion
    alone = AxisRecipe.plan({"style": ("style_cin",)})
    assert alone.base("style") == "style"
