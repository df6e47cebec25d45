"""Retrieval metrics on constructed catalogues whose answers are known exactly."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from styleaxis.eval.retrieval import _expected_ap, axis_matrix, evaluate, largest_k, per_query_metrics, summarize

N_CONTENT, N_STYLE = 13, 12


def _grid_labels() -> tuple[np.ndarray, np.ndarray]:
    contents = np.repeat([f"c{i}" for i in range(N_CONTENT)], N_STYLE)
    styles = np.tile([f"s{j}" for j in range(N_STYLE)], N_CONTENT)
    return contents, styles


def _one_hot(labels: np.ndarray, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    names = sorted(set(labels))
    x = np.eye(len(names))[[names.index(v) for v in labels]]
    return x + noise * rng.normal(size=x.shape)


def test_perfect_embedding_scores_one_and_no_leakage() -> None:
    contents, styles = _grid_labels()
    rng = np.random.default_rng(0)
    vectors = {"style_in": _one_hot(styles, rng), "content": _one_hot(contents, rng)}
    report = evaluate(vectors, contents, styles)
    table = report.table.set_index("axis")
    assert list(table["metric"]) == ["SSDC-P@10", "SCDS-P@10"]
    for axis in ("style", "content"):
        assert table.loc[axis, "precision"] == 1.0
        assert table.loc[axis, "map"] == 1.0
        assert table.loc[axis, "leakage"] == 0.0
    assert (report.per_style[["SSDC-P@10", "SCDS-P@10"]] == 1.0).all().all()
    assert (report.per_style["queries"] == N_CONTENT).all() and len(report.per_style) == N_STYLE


def test_random_embedding_scores_near_its_computed_chance() -> None:
    contents, styles = _grid_labels()
    rows = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        pq = per_query_metrics(rng.normal(size=(len(contents), 32)), contents, styles, "style")
        rows.append(summarize(pq))
    mean = pd.DataFrame(rows).mean()
    # chance, by counting: 12 other contents in the query's style among the 12 * 12 items of other contents;
    # leakage: 11 same-content other-style items among the 155 others
    assert mean["precision_chance"] == pytest.approx(12 / 144)
    assert mean["leakage_chance"] == pytest.approx(11 / 155)
    assert mean["map_chance"] == pytest.approx(_expected_ap(12, 155))
    assert abs(mean["precision"] - mean["precision_chance"]) < 0.02
    assert abs(mean["leakage"] - mean["leakage_chance"]) < 0.02
    assert abs(mean["map"] - mean["map_chance"]) < 0.02


def test_expected_ap_matches_random_permutations() -> None:
    rng = np.random.default_rng(1)
    relevant, ranked = 7, 40
    aps = []
    for _ in range(20000):
        hits = np.flatnonzero(rng.permutation(ranked) < relevant)
        aps.append((np.arange(1, relevant + 1) / (hits + 1)).mean())
    assert np.mean(aps) == pytest.approx(_expected_ap(relevant, ranked), abs=0.003)
    assert _expected_ap(ranked, ranked) == pytest.approx(1.0)


def test_an_axis_that_sees_the_other_factor_leaks_fully() -> None:
    contents, styles = _grid_labels()
    rng = np.random.default_rng(2)
    # a "style" axis that encodes content: its top 10 are the query's content in other styles
    pq = per_query_metrics(_one_hot(contents, rng), contents, styles, "style")
    assert pq["leakage"].mean() == 1.0
    assert pq["precision"].mean() == pytest.approx(12 / 144, abs=0.05)  # no style signal: chance level
    pq = per_query_metrics(_one_hot(styles, rng), contents, styles, "content")
    assert pq["leakage"].mean() == 1.0


def test_precision_counts_only_the_other_factor() -> None:
    # 4 items: q=0; item 1 same content (any style) is skipped by SSDC, item 2 shares style, item 3 does not
    contents = ["a", "a", "b", "c"]
    styles = ["x", "y", "x", "y"]
    x = np.array([[1.0, 0.0], [1.0, 0.01], [0.8, 0.6], [0.0, 1.0]])
    pq = per_query_metrics(x, contents, styles, "style", k=1).set_index("query")
    assert pq.loc[0, "precision"] == 1.0  # nearest other-content item (2) has style x
    assert pq.loc[0, "leakage"] == 1.0  # the nearest item overall (1) shares content, not style
    assert pq.loc[0, "ap"] == pytest.approx(0.5)  # the single relevant item (2) is ranked 2nd
    pq2 = per_query_metrics(x, contents, styles, "style", k=2).set_index("query")
    assert pq2.loc[0, "precision"] == pytest.approx(0.5)


def test_axis_matrix_is_the_mean_cosine_of_centred_blocks() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(20, 5)) + 3.0, rng.normal(size=(20, 8))
    m = axis_matrix([a, b])

    def cosine(x: np.ndarray) -> np.ndarray:
        x = x - x.mean(axis=0)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T

    np.testing.assert_allclose(m @ m.T, (cosine(a) + cosine(b)) / 2, atol=1e-5)
    with pytest.raises(ValueError, match=r"block 1: expected an \(20, D\) matrix"):
        axis_matrix([a, b[:5]])


def test_label_and_argument_errors_are_named() -> None:
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="content labels: expected 4 labels"):
        per_query_metrics(x, ["a"] * 3, ["x"] * 4, "style")
    with pytest.raises(ValueError, match="axis must be"):
        per_query_metrics(x, ["a"] * 4, ["x"] * 4, "colour")
    with pytest.raises(KeyError, match="content_head"):
        evaluate({"content": x}, ["a"] * 4, ["x"] * 4, axes={"content": ("content_head",)})


def test_report_json_csv_and_png(tmp_path) -> None:
    contents, styles = _grid_labels()
    rng = np.random.default_rng(4)
    vectors = {"style_in": _one_hot(styles, rng, 0.5), "style_cin": rng.normal(size=(len(styles), 6)),
               "content": _one_hot(contents, rng, 0.5)}
    report = evaluate(vectors, contents, styles)
    assert list(report.table["descriptors"]) == ["style_in+style_cin", "style_in", "style_cin", "content"]
    files = report.save(tmp_path)
    data = json.loads(files["json"].read_text())
    assert data["k"] == 10 and len(data["table"]) == 4 and len(data["per_style"]) == N_STYLE
    assert data["per_style"][0]["style"] == "s0"
    assert pd.read_csv(files["table"]).shape == (4, report.table.shape[1])
    with Image.open(files["plot"]) as img:
        assert img.format == "PNG" and img.width > 300


def test_r_precision_uses_each_querys_own_number_of_relevant_items() -> None:
    # style axis, 4 items: a0/b0 in look 0, c1 in look 1, d1 in look 1; the query a0 ranks d1 (wrong look) above
    # b0 (its only same-look item of another content): R = 1, so P@R = 0 while P@3 = 1/3
    contents, styles = ["a", "b", "c", "d"], ["0", "0", "1", "1"]
    x = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0], [0.9, 0.1]])
    pq = per_query_metrics(x, contents, styles, "style", k=3)
    first = pq.iloc[0]
    assert first["precision_r"] == 0.0
    assert first["precision"] == pytest.approx(1 / 3)
    # every item's nearest other item shares its look: P@R = 1 for all
    perfect = per_query_metrics(np.array([[1.0, 0], [1, 0.01], [0, 1], [0.01, 1]]), contents, styles, "style", k=3)
    assert (perfect["precision_r"] == 1.0).all()
    assert summarize(perfect)["precision_r"] == 1.0


def test_largest_k_is_what_the_smallest_look_allows() -> None:
    # look a shows 3 contents, look b 12: a query in a has 2 right answers of other content
    contents = ["c0", "c1", "c2"] + [f"c{i}" for i in range(12)]
    styles = ["a"] * 3 + ["b"] * 12
    assert largest_k(contents, styles) == 2
    assert largest_k([f"c{i}" for i in range(30)], ["a"] * 30) == 10  # capped
    assert largest_k(["c0", "c0"], ["a", "a"]) == 1  # never below 1
