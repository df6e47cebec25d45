"""Shared fixtures: a tiny labelled catalogue of real H.264 clips, embedded once by the real pipeline;
small photos and style images for the stylisation methods."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data

from styleaxis.demo import DemoConfig, make_catalogue
from styleaxis.stylize.cin import style_vector
from styleaxis.embed.registry import load_model
from styleaxis.embed.training import to_tensor, to_uint8
from styleaxis.embed.vgg import VGGEncoder

#: 3 photos x 2 cin26 styles, 192x128 px, 1.5 s at 8 fps with a key frame every 6 frames. Embedded at
#: short side 128, so frames are not upscaled (a 96x64 thumbnail blown up to 128 carried too little
#: content for the 6-clip catalogue to answer "same content" reliably).
TINY = DemoConfig(contents=3, styles=(2, 15), seconds=1.5, fps=8, gop=6, width=192, height=128)


@pytest.fixture(scope="session")
def tiny_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six stylised clips named {content}__style{NN}.mp4, made with the demo's own catalogue builder."""
    return make_catalogue(tmp_path_factory.mktemp("clips"), TINY)


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs that are not decodable videos: empty, text, and an MP4 cut in half."""
    folder = tmp_path_factory.mktemp("bad")
    files = {"empty": folder / "empty.mp4", "text": folder / "notes.mp4", "truncated": folder / "cut.mp4"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a video\n")
    return files


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory: pytest.TempPathFactory, tiny_clips: list[Path], bad_files: dict[str, Path]) -> Path:
    """The real Beam pipeline over the tiny clips plus the bad files, with the real offline weights."""
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.pipelines.beam import PipelineConfig, run_embed
    from styleaxis.pipelines.inputs import expand_inputs

    cut = tiny_clips[0].read_bytes()
    bad_files["truncated"].write_bytes(cut[: len(cut) // 2])
    out = tmp_path_factory.mktemp("run")
    config = PipelineConfig(out_dir=out, embed=EmbedConfig(short_side=128), progress=False)
    inputs = [str(tiny_clips[0].parent)] + [str(p) for p in bad_files.values()]
    summary = run_embed(expand_inputs(inputs), config)
    assert summary["embedded"] == len(tiny_clips) + len(bad_files)
    return out


@pytest.fixture(scope="session")
def assert_same_rows():
    """A checker: two run directories hold the same rows, each video and keyframe once, with
    vectors equal bit for bit (descriptors of the tiny runs: style_cin, style_eff, content), or
    within ``tol`` (relative and absolute) when the runs used different torch thread counts (float sums in another order)."""
    import numpy as np

    from styleaxis.pipelines.dataset import read_dataset

    def check(run: Path, reference: Path, descriptors: tuple[str, ...] = ("style_cin", "style_eff", "content"),
              tol: float = 0.0) -> None:
        def same(a: np.ndarray, b: np.ndarray) -> bool:
            return np.array_equal(a, b) if tol == 0 else bool(np.allclose(a, b, rtol=tol, atol=tol))

        got, want = (read_dataset(r, "videos").set_index("video_id").sort_index() for r in (run, reference))
        assert not got.index.duplicated().any()
        assert list(got.index) == list(want.index)
        assert got.status.tolist() == want.status.tolist()
        for name in descriptors:
            for vid in want.index[want.status != "failed"]:
                assert same(got.loc[vid, name], want.loc[vid, name]), (vid, name)
        got_k, want_k = (read_dataset(r, "keyframes").sort_values(["video_id", "frame_index"]) for r in (run, reference))
        assert not got_k.duplicated(["video_id", "frame_index"]).any()
        key = ["video_id", "frame_index"]
        assert got_k[key].values.tolist() == want_k[key].values.tolist()
        for name in descriptors:
            assert same(np.stack(got_k[name].to_numpy()), np.stack(want_k[name].to_numpy())), name

    return check


@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Three content photos at 64 px (content/) and three style images (styles/): cin26 styles 2, 15 and 24
    painted over the coffee photo."""
    root = tmp_path_factory.mktemp("photos")
    (root / "content").mkdir()
    (root / "styles").mkdir()
    for name, image in (("astronaut", data.astronaut()), ("rocket", data.rocket()),
                        ("motorcycle", data.stereo_motorcycle()[0])):
        Image.fromarray(image).resize((64, 64)).save(root / "content" / f"{name}.png")
    cin26, coffee = load_model("cin26"), to_tensor(Image.fromarray(data.coffee()).resize((64, 64)))
    styles = []
    for style_id in (2, 15, 24):
        with torch.no_grad():
            image = cin26(coffee, style_vector(26, style_id=style_id))
        styles.append(root / "styles" / f"cin{style_id:02d}.png")
        Image.fromarray(to_uint8(image)[0]).save(styles[-1])
    return root / "content", styles


@pytest.fixture(scope="session")
def encoder() -> VGGEncoder:
    return load_model("vgg16-hed")


@pytest.fixture(scope="session")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A cat photo (64 px) and cin26's style 8 painted over the coffee photo (80 px) as the style image."""
    content = to_tensor(Image.fromarray(data.chelsea()).resize((64, 64), Image.BICUBIC))
    weights = torch.zeros(26)
    weights[8] = 1.0
    with torch.no_grad():
        style = load_model("cin26")(to_tensor(Image.fromarray(data.coffee()).resize((80, 80), Image.BICUBIC)), weights)
    return content, style.clamp(0, 1)
