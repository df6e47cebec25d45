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
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..embed.recipe import (
    BASE_AXES, DEFAULT_AXES, AxisRecipe, RelativeConfig, TransformKind, encode,
)
from ._io import atomic_open, sha256_file, write_npy_rows
from .calibrate import hubness
from .generations import commit, previous_manifest, writer_lock
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
from .integrity import make_canaries, read_ids_file, verify_file
from .manifest import (
    FORMAT_VERSION,
    METRIC,
    AxisInfo,
    DescriptorInfo,
    IndexManifest,
    artifact_name,
    ids_digest,
)
from .run import RunVectors, check_run_history, read_run
from .shards import build_shard, check_mergeable, merge_shards, shard_bounds
from .transform import WHITEN_OPTIONS, SearchTransform, Whiten

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # axis/descriptor names become file names
_ROWS_PER_BLOCK = 65536


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
    re-run on every load. retire_grace_s: how long the previous generation's files are kept after a
    switch, for readers that were loading it (deleted by a later build; index.generations).
    """

    axes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_AXES))
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
    retire_grace_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.axes:
            raise ValueError("IndexConfig.axes is empty")
        try:
            AxisRecipe.plan(self.axes, self.relative)
        except ValueError as exc:
            raise ValueError(f"IndexConfig.axes: {exc}") from None
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
        if self.retire_grace_s < 0:
            raise ValueError(f"IndexConfig.retire_grace_s must be >= 0, got {self.retire_grace_s}")
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
    retired and deleted by a later build after config.retire_grace_s (index.generations). Every file
    is written atomically and listed with its sha256 in the manifest. One writer at a time: a second
    build or add on the same directory is refused while this one runs.
    """
    config = config or IndexConfig()
    out_dir = Path(out_dir)
    with writer_lock(out_dir):
        return _build(run, out_dir, config, run_dir)


def _build(run: RunVectors, out_dir: Path, config: IndexConfig, run_dir: Path | None) -> IndexManifest:
    started = time.monotonic()
    count = len(run.video_ids)
    missing = [name for name in config.descriptors if name not in run.vectors]
    if count == 0 or missing:
        raise ValueError(f"cannot build: {count} videos, descriptors missing from the run: {missing}")
    previous = previous_manifest(out_dir)
    generation = previous.generation + 1 if previous else 1
    gpu = config.gpu and gpu_available()

    files: dict[str, str] = {}
    recipe = AxisRecipe.plan(config.axes, config.relative, count)
    writer = _Writer(out_dir, generation, recipe, config, files, gpu, count)
    _, recipe = encode(recipe, run.vectors, writer)  # consumes run.vectors, one raw matrix at a time
    descriptors = {}
    for name in config.descriptors:
        meta = run.descriptors[name]
        transform_file, checksum = writer.transforms["descriptor", name]
        descriptors[name] = DescriptorInfo(
            dim=int(meta["dim"]), model=str(meta["model"]), taps=tuple(meta.get("taps", ())), whiten=config.whiten,
            transform_file=transform_file, transform_checksum=checksum, raw_file=writer.raw_files.get(name))
    axes = {axis: writer.axes[axis] for axis in (*recipe.public, *(a for a in recipe.axes if a in BASE_AXES))}

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
        recipe=recipe,
        count=count,
        skipped=run.skipped,
        ids_file=_write_ids(out_dir, generation, run.video_ids, run.content_hashes, files),
        ids_sha256=ids_digest(run.video_ids),
        sources=_sources(run, run_dir),
        files=files,
        canaries=make_canaries(run.video_ids, writer.indexes, writer.matrices, config.canaries, config.seed),
        shards=config.shards,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(time.monotonic() - started, 3),
        changes={"added": count, "replaced": 0, "removed": previous.count if previous else 0},
    )
    return commit(out_dir, manifest, previous, config.retire_grace_s)


class _Writer:
    """The recipe's catalogue while an index generation is written (styleaxis.embed.recipe.Catalogue).

    A build (``previous`` None) fits and saves each transform and trains each axis's index; an add
    applies the saved transforms and writes each axis as the ``kept`` rows of the previous generation
    followed by the added rows (``start`` = len(kept)). Each axis is written as soon as it is put, so the
    next steps search it; the k nearest rows of an axis are searched once per (axis, k), which the
    residual and the expansion share.
    """

    def __init__(self, out_dir: Path, generation: int, recipe: AxisRecipe, config: IndexConfig,
                 files: dict[str, str], gpu: bool, count: int, previous: IndexManifest | None = None,
                 kept: np.ndarray | None = None) -> None:
        self.out_dir, self.generation, self.recipe, self.config, self.files = out_dir, generation, recipe, config, files
        self.gpu, self.count, self.previous = gpu, count, previous
        self.kept = np.arange(previous.count) if previous is not None and kept is None else kept
        self.start = 0 if self.kept is None else len(self.kept)
        self.indexes: dict[str, faiss.Index] = {}
        self.matrices: dict[str, np.ndarray] = {}
        self.axes: dict[str, AxisInfo] = {}
        self.transforms: dict[tuple[TransformKind, str], tuple[str, str]] = {}  # -> (file, checksum), fitted here
        self.raw_files: dict[str, str] = {}
        self._found: dict[tuple[str, int], np.ndarray] = {}
        self._budget = config.memory_budget_gb * 2**30 / len(config.axes)

    def nearest(self, axis: str, k: int) -> np.ndarray:
        if (axis, k) not in self._found:
            self._found[axis, k] = _neighbours(self.indexes[axis], self.matrices[axis][self.start:], k, self.start)
        return self._found[axis, k]

    def matrix(self, axis: str) -> np.ndarray:
        return self.matrices[axis]

    def reference(self, descriptor: str, raw: np.ndarray) -> np.ndarray:
        """Writes the catalogue's raw rows (grown by ``raw`` on an add) and returns them."""
        raw = np.asarray(raw, dtype=np.float32)
        raw_file = artifact_name(f"raw_{descriptor}", self.generation, ".npy")
        old = self.previous.descriptors[descriptor].raw_file if self.previous else None
        blocks = [raw] if old is None else itertools.chain(self._kept_blocks(old), [raw])
        with atomic_open(self.out_dir / raw_file) as f:
            write_npy_rows(f, (self.start + len(raw), raw.shape[1]), blocks)
        self.files[raw_file] = sha256_file(self.out_dir / raw_file)
        self.raw_files[descriptor] = raw_file
        return np.load(self.out_dir / raw_file, mmap_mode="r")

    def transform(self, kind: TransformKind, name: str, rows: np.ndarray) -> np.ndarray:
        if self.previous is not None:  # an add: the transforms stay as built
            info = self.previous.descriptors[name] if kind == "descriptor" else self.previous.axes[name]
            self.files[info.transform_file] = self.previous.files[info.transform_file]
            return SearchTransform.load(self.out_dir / info.transform_file).apply(rows)
        transform = SearchTransform.fit(rows, whiten=self.config.whiten if kind == "descriptor" else "none")
        transform_file = artifact_name(f"transform_{name}" if kind == "descriptor" else f"transform_axis_{name}",
                                       self.generation, ".npz")
        checksum = transform.save(self.out_dir / transform_file)
        self.files[transform_file] = sha256_file(self.out_dir / transform_file)
        self.transforms[kind, name] = (transform_file, checksum)
        return transform.apply(rows)

    def put(self, axis: str, rows: np.ndarray) -> None:
        """Train (build) or grow (add) the axis's index by ``rows`` and write the axis."""
        config = self.config
        if self.previous is None:
            if config.factory:
                choice = FactoryChoice(config.factory, "given by the caller")
            else:
                choice = choose_factory(self.count, rows.shape[1], self._budget, config.flat_max, config.hnsw_max)
            index, blocks = _train_and_add(rows, choice.factory, config, self.gpu), [rows]
            trained_count, hubness_k = self.count, config.hubness_k
        else:
            info = self.previous.axes[axis]
            work = faiss.read_index(str(self.out_dir / info.index_file))
            if self.start < self.previous.count:  # rows replaced or removed: the trained index, refilled
                work.reset()
                for block in self._kept_blocks(info.matrix_file):
                    work.add(np.ascontiguousarray(block))
            work = to_gpu(work) if self.gpu else work
            work.add(rows)
            index = to_cpu(work)
            blocks = itertools.chain(self._kept_blocks(info.matrix_file), [rows])
            choice = FactoryChoice(info.factory, info.factory_reason)
            trained_count, hubness_k = info.trained_count, info.hubness_k
        self.axes[axis], self.indexes[axis], self.matrices[axis] = _write_axis(
            self.out_dir, self.generation, axis, self.recipe.descriptors(axis), index, blocks, self.count, choice,
            trained_count, hubness_k, config, self.files, self.transforms.get(("axis", axis)) or self._kept_transform(axis))

    def _kept_blocks(self, matrix_file: str) -> Iterator[np.ndarray]:
        """The kept rows of one of the previous generation's matrices, in blocks (memory-mapped reads)."""
        old = np.load(self.out_dir / matrix_file, mmap_mode="r")
        for start in range(0, self.start, _ROWS_PER_BLOCK):
            rows = self.kept[start:start + _ROWS_PER_BLOCK]
            yield old[rows[0]:rows[-1] + 1] if rows[-1] - rows[0] + 1 == len(rows) else old[rows]

    def _kept_transform(self, axis: str) -> tuple[str, str] | None:
        info = self.previous.axes[axis] if self.previous else None
        return (info.transform_file, info.transform_checksum) if info and info.transform_file else None


def _neighbours(index: faiss.Index, queries: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """The k nearest rows in ``index`` of each of ``queries`` (the index's rows ``start``...; each finds
    itself first), searched in blocks; a probe that finds fewer than k (IVF) fills in the row itself."""
    found = np.concatenate([index.search(np.ascontiguousarray(block, dtype=np.float32), k)[1]
                            for block in _row_blocks(queries)])
    rows = np.arange(start, start + len(found))[:, None]
    return np.where(found < 0, rows, found)


def add_videos(run_dir: str | Path, index_dir: str | Path, config: IndexConfig | None = None) -> IndexManifest:
    """Bring the index up to date with its run without retraining: add the run's new videos, replace those
    whose content hash changed since they were indexed, and remove those the run no longer holds as
    indexable. ``manifest.changes`` counts each.

    The transforms and trained quantizers stay as built (an IVF index trained on far fewer
    vectors than it holds loses recall: rebuild when count passes ~2x AxisInfo.trained_count), and so do
    the catalogue steps of the rows kept. Refuses runs embedded with other models or another resize
    policy, and Parquet files the run's history does not list (index.run.check_run_history). The
    existing files are verified first; the new generation replaces them only once completely written.
    Only config.gpu, hubness recomputation, canaries, tuning, seed and the retirement grace are taken
    from `config`.
    """
    config = config or IndexConfig()
    with writer_lock(Path(index_dir)):
        return _add(Path(run_dir), Path(index_dir), config)


def _add(run_dir: Path, index_dir: Path, config: IndexConfig) -> IndexManifest:
    started = time.monotonic()
    previous = IndexManifest.load(index_dir)
    for name, expected in previous.files.items():
        verify_file(index_dir / name, expected)
    old_ids, old_hashes = read_ids_file(index_dir / previous.ids_file)
    run = read_run(run_dir, tuple(previous.descriptors), indexed=dict(zip(old_ids, old_hashes)))
    check_run_history(run_dir, previous.run_ids, run.file_run_ids)
    _check_same_identity(run, previous, run_dir, index_dir)
    kept = np.array([i for i, video_id in enumerate(old_ids) if video_id in run.unchanged], dtype=np.int64)
    replaced = len(set(old_ids) & set(run.video_ids))
    changes = {"added": len(run.video_ids) - replaced, "replaced": replaced, "removed": len(old_ids) - len(kept) - replaced}
    if not run.video_ids and len(kept) == previous.count:
        return replace(previous, changes={"added": 0, "replaced": 0, "removed": 0})
    count = len(kept) + len(run.video_ids)
    if count == 0:
        raise ValueError(f"{run_dir} holds none of the {previous.count} indexed videos and no new one: the index "
                         "would be empty; check the run directory, or rebuild from another run")
    generation = previous.generation + 1
    files: dict[str, str] = {}
    writer = _Writer(index_dir, generation, previous.recipe, config, files, config.gpu and gpu_available(), count,
                     previous, kept)
    encode(previous.recipe, run.vectors, writer)  # the new rows, against the kept and the new rows
    descriptors = {name: replace(info, raw_file=writer.raw_files.get(name, info.raw_file))
                   for name, info in previous.descriptors.items()}
    video_ids = [old_ids[i] for i in kept] + run.video_ids
    hashes = [old_hashes[i] for i in kept] + run.content_hashes
    manifest = replace(
        previous,
        generation=generation,
        run_ids=tuple(sorted({*previous.run_ids, *run.run_ids})),
        code_versions=tuple(sorted({*previous.code_versions, *run.code_versions})),
        descriptors=descriptors,
        axes={axis: writer.axes[axis] for axis in previous.axes},
        count=count,
        skipped={key: previous.skipped.get(key, 0) + run.skipped.get(key, 0)
                 for key in {*previous.skipped, *run.skipped}},
        ids_file=_write_ids(index_dir, generation, video_ids, hashes, files),
        ids_sha256=ids_digest(video_ids),
        sources=_sources(run, run_dir),
        files=files,
        canaries=make_canaries(video_ids, writer.indexes, writer.matrices, config.canaries, config.seed),
        changes=changes,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(time.monotonic() - started, 3),
    )
    return commit(index_dir, manifest, previous, config.retire_grace_s)


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
    transform: tuple[str, str] | None = None,
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
        hubness_k=hubness_k if hubness_file else 0, hubness_file=hubness_file,
        transform_file=transform[0] if transform else None, transform_checksum=transform[1] if transform else None,
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
