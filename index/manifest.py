"""manifest.json: what an index directory holds, where it came from, and how to verify it.

Artifact files carry the build generation in their names (``style.g3.faiss``); a build or an
incremental add writes a new generation next to the old one and replaces manifest.json last,
so a reader always sees one complete generation and a crash mid-way loses nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..embed.recipe import AxisRecipe
from ._io import atomic_open

MANIFEST_FILE = "manifest.json"
#: 3: the axis recipe is one typed record (``recipe``) instead of per-axis and per-descriptor dicts
FORMAT_VERSION = 3
METRIC = "inner_product"


@dataclass(frozen=True)
class DescriptorInfo:
    """One input descriptor: its raw dim, the model that produced it, its taps and its fitted transform.

    raw_file: for a descriptor with a content-relative step (the recipe's Residual), the catalogue's
    raw rows (.npy, row = video), which queries and --add are measured against; None for the others.
    The transform is fitted on the residuals then.
    """

    dim: int
    model: str
    taps: tuple[str, ...]
    whiten: str
    transform_file: str
    transform_checksum: str
    raw_file: str | None = None


@dataclass(frozen=True)
class AxisInfo:
    """One similarity axis: which descriptors it concatenates and how its index was built and tuned.

    search_param/search_value: the query-time knob (nprobe, efSearch) tuned at build time so the
    candidate pool holds tuned_recall of the exact top-10. trained_count: vectors the index was
    trained on (adds beyond ~2x that call for a rebuild). hubness_file: per-row mean similarity to
    the row's hubness_k nearest neighbours, for CSLS calibration (None, and k 0, when not computed).
    transform_file/transform_checksum: the centring fitted after the axis's own step (the recipe's
    StyleRelative), None for other axes. How each axis is built is the manifest's ``recipe``.
    """

    descriptors: tuple[str, ...]
    dim: int
    factory: str
    factory_reason: str
    metric: str
    index_file: str
    matrix_file: str
    search_param: str | None
    search_value: int | None
    tuned_recall: float
    trained_count: int
    hubness_k: int
    hubness_file: str | None
    transform_file: str | None = None
    transform_checksum: str | None = None


@dataclass(frozen=True)
class IndexManifest:
    """Contents of manifest.json; `files` maps every artifact file name to its sha256.

    sources: sha256 of each run Parquet file the rows came from; embed: the resize policy
    (short_side, center_crop) to embed query files with; canaries: stored queries and their
    answers, re-run on every load; recipe: the steps that built every axis, with their fitted
    parameters, which queries and --add repeat (styleaxis.embed.recipe); changes: what this generation
    did to the previous one (videos added, replaced because their content hash changed, removed).
    """

    format_version: int
    generation: int
    run_dir: str
    run_ids: tuple[str, ...]
    code_versions: tuple[str, ...]
    models: dict[str, str]
    embed: dict[str, Any]
    descriptors: dict[str, DescriptorInfo]
    axes: dict[str, AxisInfo]
    recipe: AxisRecipe
    count: int
    skipped: dict[str, int]
    ids_file: str
    ids_sha256: str
    sources: dict[str, str]
    files: dict[str, str]
    canaries: list[dict[str, Any]]
    shards: int
    built_at: str
    build_seconds: float
    changes: dict[str, int] = field(default_factory=dict)

    def save(self, out_dir: Path) -> Path:
        """Write manifest.json atomically; written last, so its presence marks a complete build."""
        path = Path(out_dir) / MANIFEST_FILE
        with atomic_open(path) as f:
            f.write(json.dumps({**asdict(self), "recipe": self.recipe.to_json()}, indent=2, sort_keys=True).encode())
        return path

    @classmethod
    def load(cls, index_dir: Path) -> IndexManifest:
        """Read manifest.json from an index directory, with errors naming the file."""
        path = Path(index_dir) / MANIFEST_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no index manifest (build the index first)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read index manifest ({exc})") from exc
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: format_version {raw.get('format_version')!r}, expected {FORMAT_VERSION}; "
                "rebuild the index with this version (styleaxis index build --rebuild)"
            )
        try:
            raw["run_ids"] = tuple(raw["run_ids"])
            raw["code_versions"] = tuple(raw["code_versions"])
            raw["descriptors"] = {
                name: DescriptorInfo(**{**info, "taps": tuple(info["taps"])})
                for name, info in raw["descriptors"].items()
            }
            raw["axes"] = {
                name: AxisInfo(**{**info, "descriptors": tuple(info["descriptors"])})
                for name, info in raw["axes"].items()
            }
            raw["recipe"] = AxisRecipe.from_json(raw["recipe"])
            return cls(**raw)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: manifest fields do not match format {FORMAT_VERSION} ({exc})") from exc


def ids_digest(video_ids: Sequence[str]) -> str:
    """sha256 of the row -> video_id map (the ordered id list), independent of its file encoding."""
    return hashlib.sha256(json.dumps(list(video_ids), separators=(",", ":")).encode()).hexdigest()


def artifact_name(stem: str, generation: int, suffix: str) -> str:
    """File name of an artifact of one build generation, e.g. ('style', 3, '.faiss') -> 'style.g3.faiss'."""
    return f"{stem}.g{generation}{suffix}"
