"""Build one FAISS inner-product index per similarity axis (style, content) from an embed run, and grow it.

A build writes, for generation g: the fitted transforms, per axis the FAISS index, the exact axis
matrix (.npy, memory-mapped by the searcher to re-score candidates) and optionally the per-video
hubness, the id map (ids.g{g}.parquet) and finally manifest.json with every file's sha256, the
canary queries and the tuned search parameters. `add_videos` appends the videos of a run that are
not indexed yet without retraining (the transforms and the trained quantizer stay as built).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..embed.relative import (
    RELATIVE_DESCRIPTORS, RelativeConfig, content_relative, expand_rows, style_relative_content,
)
from ._io import atomic_open, sha256_file, write_npy_rows
from .calibrate import hubness
from .factory import (
    FactoryChoice,
    choose_factory,
    gpu_available,
    search_parameter,
    set_search_parameter,
    to_cpu,
    to_gpu,
    train_empty,
    tune_search_parameter,
)
from .integrity import make_canaries, verify_file
from .manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    METRIC,
    AxisInfo,
    DescriptorInfo,
    IndexManifest,
    artifact_name,
    ids_digest,
)
from .run import RunVectors, read_run
from .shards import build_shard, check_mergeable, merge_shards, shard_bounds
from .transform import WHITEN_OPTIONS, SearchTransform, Whiten, combine_blocks

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # axis/descriptor names become file names
_ROWS_PER_BLOCK = 65536
#: the axis whose neighbours content-relative descriptors are measured against (built before them)
RELATIVE_AXIS = "content"
#: with the converse step (RelativeConfig.content_alpha > 0), the content axis before that step: the
#: style step's neighbours come from it, the content step's medians from its rows (an internal axis)
BASE_AXIS = "content_base"
#: the axis whose neighbours the content step takes
STYLE_AXIS = "style"
#: with the style expansion (RelativeConfig.expand > 0), the style axis before it: the expansion
#: neighbours of added videos and of vector queries are searched there (an internal axis)
STYLE_BASE_AXIS = "style_base"
#: internal axis -> the axis whose descriptors it holds
INTERNAL_AXES = {BASE_AXIS: RELATIVE_AXIS, STYLE_BASE_AXIS: STYLE_AXIS}


def _default_axes() -> dict[str, tuple[str, ...]]:
    # style: content-relative EfficientNet IN means (bench/disentangle.py: hard-split SSDC-P@10 0.975
    # against 0.930 for the former style_in + style_cin)
    return {"style": ("style_eff",), "content": ("content",)}


@dataclass(frozen=True)
class IndexConfig:
    """What to index and how.

    axes: axis -> descriptors concatenated into it. factory: a FAISS factory string for every
    axis, or None to choose per axis by size and memory_budget_gb (factory.py's rules; the budget
    covers all axes' in-memory index structures, not the memory-mapped matrices; hnsw_max > 0
    lets catalogues up to that size get HNSW, see factory.py for why it is off). whiten: the
    transform's whitening. target_recall / tune_pool: nprobe/efSearch is tuned until the top
    tune_pool candidates hold target_recall of the exact top-10. shards: build IVF/flat indexes
    in this many slices merged in order (shards.py). gpu: train and add on a GPU when faiss has
    one. hubness_k: store each video's mean similarity to its k nearest neighbours for CSLS
    calibration (0: off; costs a k-NN pass over the catalogue). canaries: stored self-queries
    re-run on every load.
    """

    axes: Mapping[str, tuple[str, ...]] = field(default_factory=_default_axes)
    factory: str | None = None
    whiten: Whiten = "none"
    memory_budget_gb: float = 8.0
    flat_max: int = 50_000
    hnsw_max: int = 0
    target_recall: float = 0.97
    tune_pool: int = 200
    shards: int = 1
    gpu: bool = True
    hubness_k: int = 0
    canaries: int = 8
    seed: int = 0
    progress: bool = False
    relative: RelativeConfig = field(default_factory=RelativeConfig)

    def __post_init__(self) -> None:
        if not self.axes:
            raise ValueError("IndexConfig.axes is empty")
        relative = sorted(RELATIVE_DESCRIPTORS & set(self.descriptors))
        if relative and RELATIVE_AXIS not in self.axes:
            raise ValueError(f"IndexConfig.axes: {relative} are content-relative and need a {RELATIVE_AXIS!r} axis")
        if RELATIVE_DESCRIPTORS & set(self.axes.get(RELATIVE_AXIS, ())):
            raise ValueError(f"IndexConfig.axes[{RELATIVE_AXIS!r}] cannot hold the content-relative {relative}")
        reserved = sorted(set(INTERNAL_AXES) & set(self.axes))
        if reserved:
            raise ValueError(f"IndexConfig.axes: {reserved} are reserved for the index's own use")
        for axis, descriptors in self.axes.items():
            bad = [name for name in (axis, *descriptors) if not _NAME.match(name)]
            if bad:
                raise ValueError(f"IndexConfig.axes: names must match {_NAME.pattern}, got {bad}")
            if not descriptors or len(set(descriptors)) != len(descriptors):
                raise ValueError(f"IndexConfig.axes[{axis!r}] needs distinct descriptors, got {descriptors}")
        if self.whiten not in WHITEN_OPTIONS:
            raise ValueError(f"IndexConfig.whiten must be one of {WHITEN_OPTIONS}, got {self.whiten!r}")
        if self.memory_budget_gb <= 0:
            raise ValueError(f"IndexConfig.memory_budget_gb must be > 0, got {self.memory_budget_gb}")
        if not 0 < self.target_recall <= 1:
            raise ValueError(f"IndexConfig.target_recall must be in (0, 1], got {self.target_recall}")
        for name in ("shards", "tune_pool"):
            if getattr(self, name) < 1:
                raise ValueError(f"IndexConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("hubness_k", "canaries"):
            if getattr(self, name) < 0:
                raise ValueError(f"IndexConfig.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def descriptors(self) -> tuple[str, ...]:
        """All descriptors used by any axis, in first-use order."""
        return tuple(dict.fromkeys(name for names in self.axes.values() for name in names))


def build_indexes(run_dir: str | Path, out_dir: str | Path, config: IndexConfig | None = None) -> IndexManifest:
    """Read RUN/videos/*.parquet and (re)build every axis index in out_dir (see `build_from_vectors`)."""
    config = config or IndexConfig()
    run = read_run(Path(run_dir), config.descriptors)
    if not run.video_ids:
        raise ValueError(f"{run_dir}: no indexable videos (skipped: {run.skipped})")
    return build_from_vectors(run, out_dir, config, run_dir=Path(run_dir))


def build_from_vectors(
    run: RunVectors, out_dir: str | Path, config: IndexConfig | None = None, run_dir: Path | None = None
) -> IndexManifest:
    """Fit transforms and write one index per axis plus ids, matrices and manifest.json into out_dir.

    Consumes run.vectors (each raw matrix is dropped once transformed, to bound memory). A previous
    build in out_dir stays readable until the new manifest.json replaces it; its files are then
    removed. Every file is written atomically and listed with its sha256 in the manifest.
    """
    config = config or IndexConfig()
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = len(run.video_ids)
    missing = [name for name in config.descriptors if name not in run.vectors]
    if count == 0 or missing:
        raise ValueError(f"cannot build: {count} videos, descriptors missing from the run: {missing}")
    previous = _previous_manifest(out_dir)
    generation = previous.generation + 1 if previous else 1
    gpu = config.gpu and gpu_available()

    files: dict[str, str] = {}
    descriptors: dict[str, DescriptorInfo] = {}
    transformed: dict[str, np.ndarray] = {}
    budget = config.memory_budget_gb * 2**30 / len(config.axes)
    axes: dict[str, AxisInfo] = {}
    indexes: dict[str, faiss.Index] = {}
    matrices: dict[str, np.ndarray] = {}
    step, expand = _content_step(config), _expansion(config)
    neighbour_axis = BASE_AXIS if step else RELATIVE_AXIS
    nearest = _Nearest(indexes, matrices)
    for axis in _axis_order(config.axes, bool(step), bool(expand)):
        names = config.axes[INTERNAL_AXES.get(axis, axis)]
        for name in names:
            if name not in descriptors:
                descriptors[name], transformed[name] = _fit_descriptor(
                    out_dir, generation, name, run, config, nearest, neighbour_axis, files)
        relative = expansion = None
        if step and axis == RELATIVE_AXIS:
            matrix, relative = _fit_content_step(out_dir, generation, matrices[BASE_AXIS], nearest, config, files)
        elif expand and axis == STYLE_AXIS:
            expansion = {"base_axis": STYLE_BASE_AXIS, "exclude_axis": neighbour_axis,
                         "k": min(config.relative.k, count), "m": expand}
            matrix = _expand_style(nearest, matrices, expansion)
        else:
            matrix = combine_blocks([transformed[name] for name in names])
        if config.factory:
            choice = FactoryChoice(config.factory, "given by the caller")
        else:
            choice = choose_factory(count, matrix.shape[1], budget, config.flat_max, config.hnsw_max)
        index = _train_and_add(matrix, choice.factory, config, gpu)
        axes[axis], indexes[axis], matrices[axis] = _write_axis(
            out_dir, generation, axis, names, index, [matrix], count, choice, count, config.hubness_k, config, files,
            relative, expansion,
        )
    axes = {axis: axes[axis] for axis in (*config.axes, *(a for a in INTERNAL_AXES if a in axes))}
    descriptors = {name: descriptors[name] for name in config.descriptors}

    manifest = IndexManifest(
        format_version=FORMAT_VERSION,
        generation=generation,
        run_dir=str(run_dir.resolve()) if run_dir else "",
        run_ids=run.run_ids,
        code_versions=run.code_versions,
        models=run.models,
        embed=run.embed,
        descriptors=descriptors,
        axes=axes,
        count=count,
        skipped=run.skipped,
        ids_file=_write_ids(out_dir, generation, run.video_ids, run.content_hashes, files),
        ids_sha256=ids_digest(run.video_ids),
        sources=_sources(run, run_dir),
        files=files,
        canaries=make_canaries(run.video_ids, indexes, matrices, config.canaries, config.seed),
        shards=config.shards,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(time.monotonic() - started, 3),
    )
    return _commit(out_dir, manifest, previous)


def _fit_descriptor(
    out_dir: Path, generation: int, name: str, run: RunVectors, config: IndexConfig,
    nearest: _Nearest, neighbour_axis: str, files: dict[str, str],
) -> tuple[DescriptorInfo, np.ndarray]:
    """Fit and save one descriptor's transform (on its content-relative residuals where it is one of
    RELATIVE_DESCRIPTORS); returns its DescriptorInfo and its transformed rows. Drops the raw matrix."""
    raw = run.vectors.pop(name)
    relative = None
    if name in RELATIVE_DESCRIPTORS:
        raw_file = artifact_name(f"relative_{name}", generation, ".npy")
        with atomic_open(out_dir / raw_file) as f:
            np.save(f, np.asarray(raw, dtype=np.float32))
        files[raw_file] = sha256_file(out_dir / raw_file)
        k = min(config.relative.k, len(raw))
        raw_mean = np.asarray(raw, dtype=np.float64).mean(axis=0)  # the duplicate filter centres raw vectors on it
        # IndexConfig checks that the content axis exists; _axis_order builds it first
        raw, floor = content_relative(raw, raw, nearest(neighbour_axis, k), config.relative.eps)
        relative = {"axis": neighbour_axis, "k": k, "eps": config.relative.eps,
                    "floor": [float(v) for v in floor], "mean": [float(v) for v in raw_mean], "raw_file": raw_file}
    transform = SearchTransform.fit(raw, whiten=config.whiten)
    transform_file = artifact_name(f"transform_{name}", generation, ".npz")
    checksum = transform.save(out_dir / transform_file)
    files[transform_file] = sha256_file(out_dir / transform_file)
    meta = run.descriptors[name]
    info = DescriptorInfo(
        dim=int(meta["dim"]), model=str(meta["model"]), taps=tuple(meta.get("taps", ())),
        whiten=config.whiten, transform_file=transform_file, transform_checksum=checksum, relative=relative,
    )
    return info, transform.apply(raw)


def _content_step(config: IndexConfig) -> float:
    """alpha of the converse step on the content axis, 0 when off (RelativeConfig.content_alpha is 0,
    or the style axis holds no content-relative descriptor)."""
    relative_style = RELATIVE_DESCRIPTORS & set(config.axes.get(STYLE_AXIS, ()))
    return config.relative.content_alpha if relative_style and RELATIVE_AXIS in config.axes else 0.0


def _expansion(config: IndexConfig) -> int:
    """Style neighbours each style row is expanded by, 0 when off (RelativeConfig.expand is 0, or the
    style axis holds no content-relative descriptor)."""
    relative_style = RELATIVE_DESCRIPTORS & set(config.axes.get(STYLE_AXIS, ()))
    return config.relative.expand if relative_style and RELATIVE_AXIS in config.axes else 0


def _axis_order(axes: Iterable[str], step: bool, expand: bool) -> list[str]:
    """Build order: the content axis first (its neighbours make style content-relative); with the
    converse step, the unstepped content axis first and the content axis last (it needs the style
    axis); with the expansion, the unexpanded style axis just before the style axis."""
    axes = [a for a in axes if a not in INTERNAL_AXES]
    order = [BASE_AXIS if step else RELATIVE_AXIS] if RELATIVE_AXIS in axes else []
    for axis in axes:
        if axis != RELATIVE_AXIS:
            order += [STYLE_BASE_AXIS, axis] if expand and axis == STYLE_AXIS else [axis]
    return order + [RELATIVE_AXIS] if step else order


def _expand_style(nearest: _Nearest, matrices: Mapping[str, np.ndarray], expansion: Mapping[str, Any]) -> np.ndarray:
    """Style rows ``nearest.start``... after the expansion: each unexpanded row plus its ``m`` nearest
    unexpanded rows that are not among its ``k`` nearest videos on the exclude axis."""
    base, k, m = expansion["base_axis"], int(expansion["k"]), int(expansion["m"])
    return expand_rows(matrices[base][nearest.start:], matrices[base], nearest(base, k + m),
                       nearest(expansion["exclude_axis"], k), m)


def _fit_content_step(
    out_dir: Path, generation: int, base: np.ndarray, nearest: _Nearest, config: IndexConfig,
    files: dict[str, str],
) -> tuple[np.ndarray, dict[str, Any]]:
    """The content axis after the converse step: each row minus alpha x the median base row of its k
    nearest videos on the style axis, then a fitted centring + L2 (saved). Returns the rows and the
    AxisInfo.relative record that lets queries and --add repeat it."""
    k = min(config.relative.k, len(base))
    alpha = config.relative.content_alpha
    stepped = style_relative_content(base, base, nearest(STYLE_AXIS, k), alpha)
    transform = SearchTransform.fit(stepped)
    transform_file = artifact_name("transform_axis_content", generation, ".npz")
    checksum = transform.save(out_dir / transform_file)
    files[transform_file] = sha256_file(out_dir / transform_file)
    return transform.apply(stepped), {"axis": STYLE_AXIS, "base_axis": BASE_AXIS, "k": k, "alpha": alpha,
                                      "transform_file": transform_file, "transform_checksum": checksum}


class _Nearest:
    """The k nearest rows of rows ``start``... on an axis, searched once per (axis, k): the style
    residual and the style expansion take the same content neighbours. Reads the axes' indexes and
    matrices as they are built (each axis is asked for only once it is written)."""

    def __init__(self, indexes: Mapping[str, faiss.Index], matrices: Mapping[str, np.ndarray],
                 start: int = 0) -> None:
        self._indexes, self._matrices, self.start = indexes, matrices, start
        self._found: dict[tuple[str, int], np.ndarray] = {}

    def __call__(self, axis: str, k: int) -> np.ndarray:
        if (axis, k) not in self._found:
            self._found[axis, k] = _neighbours(self._indexes[axis], self._matrices[axis][self.start:], k, self.start)
        return self._found[axis, k]


def _neighbours(index: faiss.Index, queries: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """The k nearest rows in ``index`` of each of ``queries`` (the index's rows ``start``...; each finds
    itself first), searched in blocks; a probe that finds fewer than k (IVF) fills in the row itself."""
    found = np.concatenate([index.search(np.ascontiguousarray(block, dtype=np.float32), k)[1]
                            for block in _row_blocks(queries)])
    rows = np.arange(start, start + len(found))[:, None]
    return np.where(found < 0, rows, found)


def add_videos(run_dir: str | Path, index_dir: str | Path, config: IndexConfig | None = None) -> IndexManifest:
    """Add the run's indexable videos that the index does not hold yet, without retraining.

    The transforms and trained quantizers stay as built (an IVF index trained on far fewer
    vectors than it holds loses recall: rebuild when count passes ~2x AxisInfo.trained_count).
    Refuses runs embedded with other models or another resize policy. The existing files are
    verified first; the new generation replaces them only once completely written.
    Only config.gpu, hubness recomputation, canaries, tuning and seed are taken from `config`.
    """
    config = config or IndexConfig()
    started = time.monotonic()
    run_dir, index_dir = Path(run_dir), Path(index_dir)
    previous = IndexManifest.load(index_dir)
    for name, expected in previous.files.items():
        verify_file(index_dir / name, expected)
    ids_table = pq.read_table(index_dir / previous.ids_file)
    old_ids = ids_table["video_id"].to_pylist()
    run = read_run(run_dir, tuple(previous.descriptors), skip_ids=old_ids)
    _check_same_identity(run, previous, run_dir, index_dir)
    if not run.video_ids:
        return previous
    generation = previous.generation + 1
    gpu = config.gpu and gpu_available()
    files = {info.transform_file: previous.files[info.transform_file] for info in previous.descriptors.values()}
    transforms = {name: SearchTransform.load(index_dir / info.transform_file)
                  for name, info in previous.descriptors.items()}
    descriptors = dict(previous.descriptors)
    transformed = {name: transforms[name].apply(run.vectors.pop(name))
                   for name, info in previous.descriptors.items() if info.relative is None}
    count = previous.count + len(run.video_ids)
    axes, indexes, matrices = {}, {}, {}
    nearest = _Nearest(indexes, matrices, start=previous.count)  # of the added rows, in the grown axes
    for axis in _axis_order(previous.axes, BASE_AXIS in previous.axes, STYLE_BASE_AXIS in previous.axes):
        info = previous.axes[axis]
        for name in info.descriptors:
            if name not in transformed:  # content-relative: against the grown content axis
                spec = descriptors[name].relative or {}
                descriptors[name], rows = _add_relative(
                    index_dir, generation, descriptors[name], run.vectors.pop(name),
                    nearest(spec["axis"], int(spec["k"])), previous.count, files)
                transformed[name] = transforms[name].apply(rows)
        if info.expansion:  # against the grown unexpanded style axis
            new_rows = _expand_style(nearest, matrices, info.expansion)
        elif info.relative:  # the converse step, against the grown style axis
            step = info.relative
            files[step["transform_file"]] = previous.files[step["transform_file"]]
            neighbours = nearest(step["axis"], int(step["k"]))
            new_rows = SearchTransform.load(index_dir / step["transform_file"]).apply(style_relative_content(
                matrices[step["base_axis"]][previous.count:], matrices[step["base_axis"]], neighbours,
                float(step["alpha"])))
        else:
            new_rows = combine_blocks([transformed[name] for name in info.descriptors])
        index = faiss.read_index(str(index_dir / info.index_file))
        work = to_gpu(index) if gpu else index
        work.add(new_rows)
        old = np.load(index_dir / info.matrix_file, mmap_mode="r")
        blocks = itertools.chain(_row_blocks(old), [new_rows])
        choice = FactoryChoice(info.factory, info.factory_reason)
        axes[axis], indexes[axis], matrices[axis] = _write_axis(
            index_dir, generation, axis, info.descriptors, to_cpu(work), blocks, count, choice,
            info.trained_count, info.hubness_k, config, files, info.relative, info.expansion,
        )
    video_ids = old_ids + run.video_ids
    hashes = ids_table["content_hash"].to_pylist() + run.content_hashes
    manifest = replace(
        previous,
        generation=generation,
        run_ids=tuple(sorted({*previous.run_ids, *run.run_ids})),
        code_versions=tuple(sorted({*previous.code_versions, *run.code_versions})),
        descriptors=descriptors,
        axes={axis: axes[axis] for axis in previous.axes},
        count=count,
        skipped={key: previous.skipped.get(key, 0) + run.skipped.get(key, 0)
                 for key in {*previous.skipped, *run.skipped}},
        ids_file=_write_ids(index_dir, generation, video_ids, hashes, files),
        ids_sha256=ids_digest(video_ids),
        sources={**previous.sources, **_sources(run, run_dir)},
        files=files,
        canaries=make_canaries(video_ids, indexes, matrices, config.canaries, config.seed),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(time.monotonic() - started, 3),
    )
    return _commit(index_dir, manifest, previous)


def _add_relative(
    index_dir: Path, generation: int, info: DescriptorInfo, new_raw: np.ndarray, neighbours: np.ndarray,
    old_count: int, files: dict[str, str],
) -> tuple[DescriptorInfo, np.ndarray]:
    """Residuals of added videos for a content-relative descriptor against ``neighbours``, their nearest
    rows on the grown content axis (the rows already indexed keep theirs); writes the grown raw matrix.
    Returns the updated info."""
    relative = dict(info.relative or {})
    old_raw = np.load(index_dir / relative["raw_file"], mmap_mode="r")
    raw_file = artifact_name(Path(relative["raw_file"]).name.split(".g")[0], generation, ".npy")
    new_raw = np.asarray(new_raw, dtype=np.float32)
    with atomic_open(index_dir / raw_file) as f:
        write_npy_rows(f, (old_count + len(new_raw), info.dim), itertools.chain(_row_blocks(old_raw), [new_raw]))
    files[raw_file] = sha256_file(index_dir / raw_file)
    reference = np.load(index_dir / raw_file, mmap_mode="r")
    rows, _ = content_relative(new_raw, reference, neighbours, floor=np.asarray(relative["floor"], dtype=np.float32))
    return replace(info, relative={**relative, "raw_file": raw_file}), rows


def _train_and_add(matrix: np.ndarray, factory: str, config: IndexConfig, gpu: bool) -> faiss.Index:
    """Train once on a seeded sample, then add every row, in config.shards slices merged in order."""
    trained = train_empty(matrix, factory, config.seed, gpu)
    if config.shards == 1:
        return build_shard(trained, matrix, gpu)
    check_mergeable(trained)
    bounds = shard_bounds(len(matrix), config.shards)
    return merge_shards(trained, (build_shard(trained, matrix[start:stop], gpu) for start, stop in bounds))


def _write_axis(
    out_dir: Path,
    generation: int,
    axis: str,
    descriptors: tuple[str, ...],
    index: faiss.Index,
    matrix_blocks: Iterable[np.ndarray],
    count: int,
    choice: FactoryChoice,
    trained_count: int,
    hubness_k: int,
    config: IndexConfig,
    files: dict[str, str],
    relative: dict[str, Any] | None = None,
    expansion: dict[str, Any] | None = None,
) -> tuple[AxisInfo, faiss.Index, np.ndarray]:
    """Write one axis's matrix, (tuned) index and hubness; returns its AxisInfo, index and mapped matrix."""
    if index.ntotal != count:
        raise ValueError(f"axis {axis}: index holds {index.ntotal} vectors, expected {count}")
    # The exact axis matrix lets every query re-score its candidates on both axes. Memory/disk:
    # count * dim * 4 bytes per axis (1M videos: ~8 GB style + ~7 GB content), memory-mapped.
    matrix_file = artifact_name(axis, generation, ".npy")
    with atomic_open(out_dir / matrix_file) as f:
        write_npy_rows(f, (count, index.d), matrix_blocks)
    matrix = np.load(out_dir / matrix_file, mmap_mode="r")
    value, recall = tune_search_parameter(index, matrix, config.tune_pool, config.target_recall, seed=config.seed)
    set_search_parameter(index, value)
    hubness_file = None
    if hubness_k and count > hubness_k:
        hubness_file = artifact_name(f"hubness_{axis}", generation, ".npy")
        with atomic_open(out_dir / hubness_file) as f:
            np.save(f, hubness(index, matrix, hubness_k, progress=config.progress))
    index_file = artifact_name(axis, generation, ".faiss")
    with atomic_open(out_dir / index_file) as f:
        faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))
    for name in (index_file, matrix_file, hubness_file):
        if name is not None:
            files[name] = sha256_file(out_dir / name)
    info = AxisInfo(
        descriptors=tuple(descriptors), dim=int(index.d), factory=choice.factory, factory_reason=choice.reason,
        metric=METRIC, index_file=index_file, matrix_file=matrix_file,
        search_param=None if value is None else search_parameter(index), search_value=value,
        tuned_recall=round(recall, 4), trained_count=trained_count,
        hubness_k=hubness_k if hubness_file else 0, hubness_file=hubness_file, relative=relative,
        expansion=expansion,
    )
    return info, index, matrix


def _write_ids(
    out_dir: Path, generation: int, video_ids: list[str], content_hashes: list[str | None], files: dict[str, str]
) -> str:
    """Write the row -> video_id map (with each row's content hash for the duplicate filter)."""
    ids_file = artifact_name("ids", generation, ".parquet")
    table = pa.table({
        "video_id": pa.array(video_ids, pa.string()), "content_hash": pa.array(content_hashes, pa.string()),
    })
    with atomic_open(out_dir / ids_file) as f:
        pq.write_table(table, f)
    files[ids_file] = sha256_file(out_dir / ids_file)
    return ids_file


def _sources(run: RunVectors, run_dir: Path | None) -> dict[str, str]:
    base = run_dir.resolve() if run_dir else Path()
    return {str(base / name): digest for name, digest in run.sources.items()}


def _previous_manifest(out_dir: Path) -> IndexManifest | None:
    """The manifest already in out_dir, or None (absent, or an older format whose files are left alone)."""
    if not (out_dir / MANIFEST_FILE).exists():
        return None
    try:
        return IndexManifest.load(out_dir)
    except ValueError:
        return None


def _commit(out_dir: Path, manifest: IndexManifest, previous: IndexManifest | None) -> IndexManifest:
    """Write manifest.json (the switch to the new generation), then remove the previous generation's files."""
    manifest.save(out_dir)
    for name in set(previous.files if previous else ()) - set(manifest.files):
        (out_dir / name).unlink(missing_ok=True)
    return manifest


def _check_same_identity(run: RunVectors, manifest: IndexManifest, run_dir: Path, index_dir: Path) -> None:
    """Refuse to mix vectors from other models (or another resize policy) into an index."""
    for name, info in manifest.descriptors.items():
        meta = run.descriptors[name]
        got = (meta["model"], run.models.get(meta["model"]), int(meta["dim"]))
        expected = (info.model, manifest.models[info.model], info.dim)
        if got != expected:
            raise ValueError(
                f"{run_dir}: descriptor {name!r} comes from model {got[0]} sha256 {got[1]} (dim {got[2]}), but the "
                f"index at {index_dir} holds vectors from {expected[0]} sha256 {expected[1]} (dim {expected[2]}); "
                "vectors of different models are not comparable: re-embed with the index's models or --rebuild"
            )
    if run.embed != manifest.embed:
        raise ValueError(
            f"{run_dir}: embedded with resize policy {run.embed}, the index at {index_dir} with {manifest.embed}; "
            "re-embed with the index's settings or --rebuild"
        )


def _row_blocks(matrix: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(matrix), _ROWS_PER_BLOCK):
        yield matrix[start : start + _ROWS_PER_BLOCK]
