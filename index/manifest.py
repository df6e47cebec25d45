"""manifest.json: what an index directory holds, where it came from, and how to verify it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ._io import atomic_open

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
METRIC = "inner_product"


@dataclass(frozen=True)
class DescriptorInfo:
    """One input descriptor: its raw dim, the model that produced it, and its fitted transform."""

    dim: int
    model: str
    whiten: str
    transform_file: str
    transform_checksum: str


@dataclass(frozen=True)
class AxisInfo:
    """One similarity axis: which descriptors it concatenates and how its index was built."""

    descriptors: tuple[str, ...]
    dim: int
    factory: str
    metric: str
    index_file: str
    matrix_file: str


@dataclass(frozen=True)
class IndexManifest:
    """Contents of manifest.json; `files` maps every artifact file name to its sha256."""

    format_version: int
    run_dir: str
    run_ids: tuple[str, ...]
    code_versions: tuple[str, ...]
    models: dict[str, str]
    descriptors: dict[str, DescriptorInfo]
    axes: dict[str, AxisInfo]
    count: int
    skipped: dict[str, int]
    ids_file: str
    ids_sha256: str
    files: dict[str, str]
    built_at: str
    build_seconds: float

    def save(self, out_dir: Path) -> Path:
        """Write manifest.json atomically; written last, so its presence marks a complete build."""
        path = Path(out_dir) / MANIFEST_FILE
        with atomic_open(path) as f:
            f.write(json.dumps(asdict(self), indent=2, sort_keys=True).encode())
        return path

    @classmethod
    def load(cls, index_dir: Path) -> IndexManifest:
        """Read manifest.json from an index directory, with errors naming the file."""
        path = Path(index_dir) / MANIFEST_FILE
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read index manifest ({exc})") from exc
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {raw.get('format_version')!r}, expected {FORMAT_VERSION}")
        try:
            raw["run_ids"] = tuple(raw["run_ids"])
            raw["code_versions"] = tuple(raw["code_versions"])
            raw["descriptors"] = {name: DescriptorInfo(**info) for name, info in raw["descriptors"].items()}
            raw["axes"] = {
                name: AxisInfo(**{**info, "descriptors": tuple(info["descriptors"])})
                for name, info in raw["axes"].items()
            }
            return cls(**raw)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: manifest fields do not match format {FORMAT_VERSION} ({exc})") from exc


def ids_digest(video_ids: Sequence[str]) -> str:
    """sha256 of the row -> video_id map (the ordered id list), independent of its file encoding."""
    return hashlib.sha256(json.dumps(list(video_ids), separators=(",", ":")).encode()).hexdigest()
