"""Build one FAISS inner-product index per similarity axis (style, content) from an embed run."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._io import atomic_open, sha256_file
from .manifest import FORMAT_VERSION, METRIC, AxisInfo, DescriptorInfo, IndexManifest, ids_digest
from .run import read_run
from .transform import WHITEN_OPTIONS, SearchTransform, Whiten, combine_blocks

IDS_FILE = "ids.parquet"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # axis/descriptor names become file names


def _default_axes() -> dict[str, tuple[str, ...]]:
    return {"style": ("style_in", "style_cin"), "content": ("content",)}


@dataclass(frozen=True)
class IndexConfig:
    """What to index: axes (axis -> descriptors), the FAISS factory, and the transform's whitening.

    factory=None picks one by catalogue size (see `choose_factory`).
    """

    axes: Mapping[str, tuple[str, ...]] = field(default_factory=_default_axes)
    factory: str | None = None
    whiten: Whiten = "none"
    flat_max: int = 50_000

    def __post_init__(self) -> None:
        if not self.axes:
            raise ValueError("IndexConfig.axes is empty")
        for axis, descriptors in self.axes.items():
            bad = [name for name in (axis, *descriptors) if not _NAME.match(name)]
            if bad:
                raise ValueError(f"IndexConfig.axes: names must match {_NAME.pattern}, got {bad}")
            if not descriptors or len(set(descriptors)) != len(descriptors):
                raise ValueError(f"IndexConfig.axes[{axis!r}] needs distinct descriptors, got {descriptors}")
        if self.whiten not in WHITEN_OPTIONS:
            raise ValueError(f"IndexConfig.whiten must be one of {WHITEN_OPTIONS}, got {self.whiten!r}")

    @property
    def descriptors(self) -> tuple[str, ...]:
        """All descriptors used by any axis, in first-use order."""
        return tuple(dict.fromkeys(name for names in self.axes.values() for name in names))


def choose_factory(count: int, flat_max: int = 50_000) -> str:
    """FAISS factory string for a catalogue of `count` vectors.

    Exact "Flat" search is affordable up to ~50k vectors (one BLAS matrix product per
    query batch); beyond that HNSW32 gives ~log-time graph search without training.
    Caveat, measured on a synthetic 55k catalogue (d=2048) made of 7-video near-copy groups:
    HNSW32 put only ~19% of a query's group in its top 201 (IVF234 at nprobe 16: ~27%), while
    exact search cost 14 ms/query; measure recall on a real catalogue before trusting it
    (SearchConfig.exhaustive_max keeps queries exact whatever the factory).
    """
    return "Flat" if count <= flat_max else "HNSW32"


def build_indexes(run_dir: str | Path, out_dir: str | Path, config: IndexConfig | None = None) -> IndexManifest:
    """Fit transforms and write one index per axis plus ids, matrices and manifest.json into out_dir.

    Every file is written atomically; manifest.json is written last and lists the sha256 of
    each artifact, so a reader can tell a complete, untampered build from anything else.
    """
    config = config or IndexConfig()
    started = time.monotonic()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = read_run(run_dir, config.descriptors)
    count = len(run.video_ids)
    if count == 0:
        raise ValueError(f"{run_dir}: no indexable videos (skipped: {run.skipped})")

    files: dict[str, str] = {}
    descriptors: dict[str, DescriptorInfo] = {}
    transformed: dict[str, np.ndarray] = {}
    for name in config.descriptors:
        transform = SearchTransform.fit(run.vectors[name], whiten=config.whiten)
        transform_file = f"transform_{name}.npz"
        checksum = transform.save(out_dir / transform_file)
        files[transform_file] = sha256_file(out_dir / transform_file)
        transformed[name] = transform.apply(run.vectors.pop(name))  # pop: free raw vectors early
        meta = run.descriptors[name]
        descriptors[name] = DescriptorInfo(
            dim=int(meta["dim"]), model=str(meta["model"]), whiten=config.whiten,
            transform_file=transform_file, transform_checksum=checksum,
        )

    factory = config.factory or choose_factory(count, config.flat_max)
    axes: dict[str, AxisInfo] = {}
    for axis, names in config.axes.items():
        matrix = combine_blocks([transformed[name] for name in names])
        index = faiss.index_factory(matrix.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:  # IVF/PQ factories given via config.factory
            index.train(matrix)
        index.add(matrix)
        axes[axis] = AxisInfo(
            descriptors=tuple(names), dim=int(matrix.shape[1]), factory=factory, metric=METRIC,
            index_file=f"{axis}.faiss", matrix_file=f"{axis}.npy",
        )
        with atomic_open(out_dir / axes[axis].index_file) as f:
            faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))
        # The exact axis matrix lets dual-axis queries rescore candidates on the other axis.
        # Memory/disk cost: count * dim * 4 bytes per axis (1M videos: ~8 GB style + ~8 GB
        # content), on top of the index itself; the searcher memory-maps it.
        with atomic_open(out_dir / axes[axis].matrix_file) as f:
            np.save(f, matrix)
        for file_name in (axes[axis].index_file, axes[axis].matrix_file):
            files[file_name] = sha256_file(out_dir / file_name)

    with atomic_open(out_dir / IDS_FILE) as f:
        pq.write_table(pa.table({"video_id": pa.array(run.video_ids, pa.string())}), f)
    files[IDS_FILE] = sha256_file(out_dir / IDS_FILE)

    manifest = IndexManifest(
        format_version=FORMAT_VERSION,
        run_dir=str(run_dir.resolve()),
        run_ids=run.run_ids,
        code_versions=run.code_versions,
        models=run.models,
        descriptors=descriptors,
        axes=axes,
        count=count,
        skipped=run.skipped,
        ids_file=IDS_FILE,
        ids_sha256=ids_digest(run.video_ids),
        files=files,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(time.monotonic() - started, 3),
    )
    manifest.save(out_dir)
    return manifest
