"""The analysts' report and the `styleaxis eval` commands, on a tiny run of cin26 stylisations."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styleaxis.cli.eval import eval_group
from styleaxis.demo import sample_photos
from styleaxis.embed.registry import load_model
from styleaxis.eval.report import aggregate, load_run, neighbours_html, write_report
from styleaxis.eval.ssim import ssim

PHOTOS = ("astronaut", "coffee", "cat")
STYLES = (2, 8, 21)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """content/, style/ (cin26 style s on the pagoda), cin26/ and blend/ (half-way) PNGs + triplets.csv."""
    root = tmp_path_factory.mktemp("evalrun")
    cin = load_model("cin26")

    def small(name: str) -> torch.Tensor:
        img = Image.fromarray(sample_photos()[name])
        img = img.resize((96, round(96 * img.height / img.width)), Image.BICUBIC)
        return torch.from_numpy(np.asarray(img)).permute(2, 0, 1).float() / 255.0

    def save(t: torch.Tensor, path: Path) -> str:
        path.parent.mkdir(exist_ok=True)
        Image.fromarray((t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()).save(path)
        return str(path.relative_to(root))

    rows = []
    for name, style in zip(PHOTOS, STYLES):
        weights = torch.zeros(26)
        weights[style] = 1.0
        content = small(name)
        with torch.inference_mode():
            stylised = cin(content[None], weights)[0]
            style_image = cin(small("pagoda")[None], weights)[0]
        c, s = save(content, root / "content" / f"{name}.png"), save(style_image, root / "style" / f"{name}.png")
        rows.append((c, s, save(stylised, root / "cin26" / f"{name}.png"), "cin26"))
        rows.append((c, s, save(0.5 * stylised + 0.5 * content, root / "blend" / f"{name}.png"), "blend"))
    pd.DataFrame(rows, columns=["content", "style", "stylized", "method"]).to_csv(root / "triplets.csv", index=False)
    return root


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(eval_group, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _check_png(path: Path, min_size: tuple[int, int]) -> None:
    with Image.open(path) as img:
        assert img.width >= min_size[0] and img.height >= min_size[1]
        pixels = np.asarray(img.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 10, f"{path.name} looks blank"


def test_report_from_triplets(run_dir, tmp_path):
    out = tmp_path / "report"
    text = _invoke("report", str(run_dir), "--out", str(out), "--short-side", "0", "--directions", "64")
    assert "6 items" in text
    for name in ("report.html", "metrics.csv", "metrics.json", "aggregate.csv"):
        assert (out / name).is_file()
    _check_png(out / "distributions.png", (600, 250))
    _check_png(out / "ec_scatter.png", (500, 400))
    for metric in ("E", "C"):
        _check_png(out / f"best_worst_{metric}.png", (2 * 3 * 128, 3 * 128))

    agg = pd.read_csv(out / "aggregate.csv", index_col="method")
    assert list(agg.index) == ["blend", "cin26", "ALL"] and list(agg["n"]) == [3, 3, 6]
    # full stylisation moves the statistics further toward the style and away from the content
    assert agg.loc["cin26", "E_mean"] > agg.loc["blend", "E_mean"]
    assert agg.loc["cin26", "C_mean"] < agg.loc["blend", "C_mean"]
    report = json.loads((out / "metrics.json").read_text())
    assert len(report["items"]) == 6 and {"E", "C", "encoder", "method"} <= set(report["items"][0])
    assert any("EC encoder" in n for n in report["notes"])
    page = (out / "report.html").read_text()
    for name in ("ec_scatter.png", "best_worst_E.png", "distributions.png", "Aggregates"):
        assert name in page


def test_report_from_metrics_csv_with_neighbours(run_dir, tmp_path):
    triplets = pd.read_csv(run_dir / "triplets.csv")
    metrics = triplets.assign(E=np.linspace(1, 6, 6), C=np.linspace(0.9, 0.2, 6), deceived=[1, 0, 1, 1, 0, 1])
    run = tmp_path / "run"
    run.mkdir()
    cols = ["content", "style", "stylized"]
    metrics[cols] = metrics[cols].map(lambda p: str(run_dir / p))  # absolute paths stay as they are
    metrics.to_csv(run / "metrics.csv", index=False)
    table, notes = load_run(run)
    assert notes == [] and table["E"].tolist() == pytest.approx(np.linspace(1, 6, 6).tolist())
    agg = aggregate(table)
    assert agg.loc["ALL", "deceived_mean"] == pytest.approx(4 / 6)

    neighbours = pd.DataFrame({"query": ["q1"] * 4, "axis": ["style", "style", "content", "content"],
                               "rank": [1, 2, 1, 2], "video_id": ["a", "b", "c", "d"],
                               "style_score": [0.9, 0.8, 0.1, 0.2], "content_score": [0.1, 0.2, 0.9, 0.7]})
    page = write_report(table, tmp_path / "out", neighbours).read_text()
    assert "Nearest neighbours per axis" in page and "query q1" in page
    assert pd.read_csv(tmp_path / "out" / "neighbours.csv").shape == (4, 6)
    _check_png(tmp_path / "out" / "best_worst_E.png", (700, 300))
    with pytest.raises(ValueError, match="lacks columns"):
        neighbours_html(neighbours.drop(columns=["axis"]))


def test_report_without_images_or_inputs(tmp_path):
    pd.DataFrame({"method": ["a", "b"], "score": [0.1, 0.7]}).to_csv(tmp_path / "metrics.csv", index=False)
    page = write_report(*load_run(tmp_path)[:1], tmp_path / "out").read_text()
    assert "no E-vs-C plot" in page and "no contact sheets" in page
    _check_png(tmp_path / "out" / "distributions.png", (300, 250))
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(eval_group, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "no metrics.csv or triplets.csv" in result.output


def test_ec_command_csv_folders_and_json(run_dir):
    single = _invoke("ec", "--content", str(run_dir / "content" / "cat.png"),
                     "--style", str(run_dir / "style" / "cat.png"),
                     "--stylized", str(run_dir / "cin26" / "cat.png"), "--short-side", "0", "--json")
    body = json.loads(single[single.index("{"):])
    assert body["encoder"] in ("vgg19", "vgg16-hed") and len(body["items"]) == 1
    if body["encoder"] == "vgg16-hed":
        assert "warning: EC encoder" in single and body["encoder_note"]
    folders = _invoke("ec", "--content", str(run_dir / "content"), "--style", str(run_dir / "style"),
                      "--stylized", str(run_dir / "cin26"), "--short-side", "0")
    assert "mean per method" in folders and "cat.png" in folders
    from_csv = _invoke("ec", "--csv", str(run_dir / "triplets.csv"), "--short-side", "0", "--json")
    items = json.loads(from_csv[from_csv.index("{"):])["items"]
    cat = [i for i in items if i["stylized"].endswith("cin26/cat.png")][0]
    assert cat["E"] == pytest.approx(body["items"][0]["E"], abs=1e-6)
    result = CliRunner().invoke(eval_group, ["ec", "--csv", str(run_dir / "triplets.csv"),
                                             "--content", str(run_dir / "content")])
    assert result.exit_code == 2 and "not both" in result.output


def test_ssim_command(run_dir):
    a, b = run_dir / "content" / "cat.png", run_dir / "blend" / "cat.png"
    assert float(_invoke("ssim", str(a), str(b))) == pytest.approx(ssim(a, b), abs=1e-6)
    assert float(_invoke("ssim", str(a), str(a), "--grey")) == pytest.approx(1.0)
    result = CliRunner().invoke(eval_group, ["ssim", str(a), str(run_dir / "content" / "astronaut.png")])
    assert result.exit_code == 1 and "one size" in result.output


@pytest.mark.slow  # the shared embedded_run fixture runs the Beam pipeline (~30 s) when no other test has
def test_report_with_index_neighbours(embedded_run, tmp_path):
    from styleaxis.embed.recipe import RelativeConfig
    from styleaxis.index.build import IndexConfig, build_indexes

    # the tiny catalogue shows each content in 2 renderings: the content-relative step compares with those
    build_indexes(embedded_run, tmp_path / "index", IndexConfig(relative=RelativeConfig(k=2)))
    pd.DataFrame({"method": ["x"], "E": [1.0], "C": [0.5]}).to_csv(tmp_path / "metrics.csv", index=False)
    _invoke("report", str(tmp_path), "--index", str(tmp_path / "index"), "--query", "astronaut__style02", "-k", "2")
    nn = pd.read_csv(tmp_path / "report" / "neighbours.csv")
    assert set(nn["axis"]) == {"style", "content"} and (nn["query"] == "astronaut__style02").all()
    style_hits = nn.loc[nn["axis"] == "style", "video_id"]
    assert style_hits.str.endswith("__style02").all()  # the tiny catalogue's style axis finds the style
