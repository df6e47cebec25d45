"""Query a built index: nearest neighbours on one axis, "same X, different Y" across both, or a weighted mix.

Every query takes a candidate pool, the primary axis's top max(min_pool, pool_per_k * k) videos
(from the axis's FAISS index, or exactly for small catalogues and for allow-lists), scores it exactly
on both axes from the stored matrices, and calibrates each axis's similarities within the pool
(calibrate.py: z-scores, optionally hubness-corrected). Dual-axis modes then drop candidates whose
secondary-axis score reaches the ceiling ("same content" for same-style-different-content) and rank
the rest by the calibrated primary score; "weighted" ranks by sum_a w_a z_a over the pools of the
positively weighted axes.

Calibrating within the pool conditions on "looks like the query on the primary axis", so the content
signal that same-style videos share through leakage is common to the pool and cancels; ranking by the
primary score rather than primary minus secondary keeps genuine same-style videos that share some
content signal; the ceiling, not the ranking, enforces "different". Limitation: when the query's
content (or style) fills more than ~30% of the pool it is no longer an outlier there
(z = sqrt((1 - p) / p) for a fraction p), so min_pool must stay well above the number of near-copies a
video can have.

Duplicates (the query itself, byte-identical copies by content hash, and re-uploads: close on the
content axis before its style-relative step and on the raw style vectors) are never returned and are
left out of the calibration reference. Vector and file queries run the index's axis recipe
(styleaxis.embed.recipe) against the loaded catalogue. docs/search.md gives the measurements behind
each of these choices and the thresholds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..embed.recipe import TransformKind, combine_blocks, encode
from .calibrate import calibrate
from .factory import gpu_available, set_search_parameter, to_gpu
from .integrity import (
    CPU_TOLERANCE, GPU_TOLERANCE, IndexIntegrityError, check_canaries, load_matrix, read_ids_file, read_index_file,
    recall_audit, verify_file,
)
from .manifest import MANIFEST_FILE, IndexManifest, ids_digest
from .queries import AXES, MODES, Mode, Result, SearchConfig, UnknownVideoError, check_weights
from .reasons import axis_parts, describe, part_cosines
from .transform import SearchTransform, l2_normalize

# FAISS flat search switches from its per-query SIMD loop to BLAS only for batches above
# this many queries (128000 by default in faiss 1.15, i.e. never); BLAS is much faster for
# batches: 100 queries, d=512, 100k vectors: 850 ms at the default vs 118 ms at 20.
faiss.cvar.distance_compute_blas_threshold = 20

# loads that a generation switch overtook are started again this many times in all
_LOAD_ATTEMPTS = 3
# query key of the style descriptors' raw vectors, centred, for the duplicate filter (None without a residual)
_RAW_STYLE = "raw_style"
# mode -> (axis ranked on, axis whose calibrated score is capped by a ceiling or None)
_MODE_AXES: dict[str, tuple[str, str | None]] = {
    "style": ("style", None),
    "content": ("content", None),
    "same-style-different-content": ("style", "content"),
    "same-content-different-style": ("content", "style"),
}


@dataclass(frozen=True)
class _Axis:
    """One loaded axis: FAISS index, memory-mapped matrix, hubness (or None) and named column parts."""

    index: faiss.Index
    matrix: np.ndarray
    hubness: np.ndarray | None
    parts: dict[str, slice]


class Searcher:
    """Loaded, verified index directory; create with `Searcher.load`.

    Queries may run concurrently from several threads: FAISS CPU searches and numpy only read;
    GPU indexes share one set of GPU resources, so their searches take a lock.
    """

    def __init__(
        self,
        index_dir: Path,
        manifest: IndexManifest,
        video_ids: list[str],
        content_hashes: list[str | None],
        transforms: dict[str, SearchTransform],
        axes: dict[str, _Axis],
        config: SearchConfig,
        gpu: bool = False,
        raw: dict[str, np.ndarray] | None = None,
        axis_transforms: dict[str, SearchTransform] | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.manifest = manifest
        self.video_ids = video_ids
        self.config = config
        self._rows = {video_id: row for row, video_id in enumerate(video_ids)}
        self._hashes = np.array([h or "" for h in content_hashes], dtype=object)
        self._transforms = transforms
        self._axis_transforms = axis_transforms or {}  # axis -> the centring fitted after its step
        self._raw = raw or {}  # descriptor with a content-relative step -> the catalogue's raw vectors
        self._axes = axes
        self._ceilings = {"content": config.content_ceiling_z, "style": config.style_ceiling_z}
        # the duplicate filter's content axis: the content axis before its style-relative step
        self._base_content = manifest.recipe.base("content")
        self._index_lock: AbstractContextManager[object] = threading.Lock() if gpu else nullcontext()

    @classmethod
    def load(cls, index_dir: str | Path, config: SearchConfig | None = None, verify: bool = True) -> Searcher:
        """Open an index directory, check it against manifest.json, and run its canary queries.

        verify=True re-hashes every file (reads the whole matrices once); counts, dimensions,
        the id map hash and transform checksums are always checked. A load that a build's switch to a
        new generation overtook (a file it listed is gone, or the manifest changed under it) starts again
        on the new generation.
        """
        index_dir = Path(index_dir)
        for _ in range(_LOAD_ATTEMPTS - 1):
            generation = _generation(index_dir)
            try:
                return cls._load(index_dir, config, verify)
            except (FileNotFoundError, IndexIntegrityError):
                if _generation(index_dir) == generation:
                    raise
        return cls._load(index_dir, config, verify)

    @classmethod
    def _load(cls, index_dir: Path, config: SearchConfig | None, verify: bool) -> Searcher:
        config = config or SearchConfig()
        manifest = IndexManifest.load(index_dir)
        missing = [axis for axis in AXES if axis not in manifest.axes]
        if missing:
            raise ValueError(f"{index_dir}: index has axes {sorted(manifest.axes)}, search needs {list(AXES)}")
        if verify:
            for name, expected in manifest.files.items():
                verify_file(index_dir / name, expected)

        ids_path = index_dir / manifest.ids_file
        video_ids, content_hashes = read_ids_file(ids_path)
        if len(video_ids) != manifest.count or ids_digest(video_ids) != manifest.ids_sha256:
            raise IndexIntegrityError(
                f"{ids_path}: id map does not match manifest (count {len(video_ids)} vs {manifest.count}, "
                f"or hash differs from {manifest.ids_sha256})"
            )

        transforms = {name: _load_transform(index_dir / info.transform_file, info.transform_checksum)
                      for name, info in manifest.descriptors.items()}
        raw = {}
        for name, info in manifest.descriptors.items():
            if info.raw_file is not None:
                raw_path = index_dir / info.raw_file
                raw[name] = load_matrix(raw_path)
                _check_shape(raw_path, raw[name].shape, (manifest.count, info.dim))

        gpu = config.gpu and gpu_available()
        axes, axis_transforms = {}, {}
        for axis, info in manifest.axes.items():  # the public axes and the base axes before their steps
            if info.transform_file is not None:
                axis_transforms[axis] = _load_transform(index_dir / info.transform_file, info.transform_checksum)
            index_path, matrix_path = index_dir / info.index_file, index_dir / info.matrix_file
            index = read_index_file(index_path)
            _check_shape(index_path, (index.ntotal, index.d), (manifest.count, info.dim))
            index = to_gpu(index) if gpu else index
            set_search_parameter(index, info.search_value)
            matrix = load_matrix(matrix_path)
            _check_shape(matrix_path, matrix.shape, (manifest.count, info.dim))
            hub = load_matrix(index_dir / info.hubness_file, mmap=False) if info.hubness_file else None
            dims_out = {name: transforms[name].dim_out for name in info.descriptors}
            axes[axis] = _Axis(index, matrix, hub, axis_parts(info.descriptors, manifest.descriptors, dims_out))
        if config.calibration == "csls" and any(a.hubness is None for a in axes.values()):
            raise ValueError(
                f"{index_dir}: calibration 'csls' needs hubness, which this index was built without; "
                "rebuild with --hubness-k 10 or use calibration 'z'"
            )
        if config.canaries:
            check_canaries(
                manifest.canaries, video_ids, {a: x.index for a, x in axes.items()},
                {a: x.matrix for a, x in axes.items()}, GPU_TOLERANCE if gpu else CPU_TOLERANCE,
            )
        return cls(index_dir, manifest, video_ids, content_hashes, transforms, axes, config, gpu,
                   raw, axis_transforms)

    @property
    def model_identity(self) -> dict[str, str]:
        """Models (id -> sha256) the indexed vectors came from; vector queries must match them."""
        return dict(self.manifest.models)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._rows

    def axis_matrix(self, axis: str) -> np.ndarray:
        """The exact search vectors of `axis` (count x dim, unit norm, memory-mapped), row i = video_ids[i]."""
        if axis not in self._axes:
            raise KeyError(f"unknown axis {axis!r}; this index has {list(self._axes)}")
        return self._axes[axis].matrix

    def search(
        self,
        video_id: str | None = None,
        *,
        vectors: Mapping[str, np.ndarray] | None = None,
        mode: Mode,
        k: int = 10,
        exclude: Collection[str] | None = None,
        allow: Collection[str] | None = None,
        weights: Mapping[str, float] | None = None,
        model_identity: Mapping[str, str] | None = None,
    ) -> list[Result]:
        """Top-k results for one query, given either an indexed video_id or raw descriptor vectors.

        `vectors` maps every indexed descriptor to a (D,) array and requires `model_identity`
        (model id -> sha256 of the models that produced them). `allow` restricts answers to those
        ids (searched exactly), `exclude` removes ids; ids not indexed are ignored in both.
        `weights` (axis -> weight) applies to mode "weighted" only.
        """
        results = self.search_batch(
            None if video_id is None else [video_id], vectors=vectors, mode=mode, k=k,
            exclude=exclude, allow=allow, weights=weights, model_identity=model_identity,
        )
        if len(results) != 1:
            raise ValueError(f"search() takes one query, got {len(results)}; use search_batch")
        return results[0]

    def search_batch(
        self,
        video_ids: Sequence[str] | None = None,
        *,
        vectors: Mapping[str, np.ndarray] | None = None,
        mode: Mode,
        k: int = 10,
        exclude: Collection[str] | None = None,
        allow: Collection[str] | None = None,
        weights: Mapping[str, float] | None = None,
        model_identity: Mapping[str, str] | None = None,
    ) -> list[list[Result]]:
        """Like `search` for many queries: video_ids, or vectors as (n, D) arrays per descriptor."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if (video_ids is None) == (vectors is None):
            raise ValueError("pass exactly one of video_ids or vectors")
        if any(isinstance(ids, str) for ids in (video_ids, exclude, allow)):
            raise TypeError("video_ids, exclude and allow take collections of ids, not a single str")
        if weights is not None and mode != "weighted":
            raise ValueError(f"weights apply to mode 'weighted' only, got mode {mode!r}")
        axis_weights = check_weights(weights if weights is not None else self.config.weights)
        if vectors is None:
            self_rows: list[int | None] = [self._row(video_id) for video_id in video_ids]
            queries = {axis: np.asarray(self._axes[axis].matrix[self_rows]) for axis in AXES}
            queries[_RAW_STYLE] = self._raw_style(np.asarray(self_rows))
            queries[self._base_content] = np.asarray(self._axes[self._base_content].matrix[self_rows])
        else:
            queries = self._encode(vectors, model_identity)
            self_rows = [None] * len(queries["style"])
        excluded = self._known_rows(exclude)
        allowed = None if allow is None else self._known_rows(allow)
        if mode == "weighted":
            pooled, capped = [axis for axis in AXES if axis_weights[axis] > 0], None
        else:
            pooled, capped = [_MODE_AXES[mode][0]], _MODE_AXES[mode][1]
        size = max(self.config.min_pool, self.config.pool_per_k * k) + len(excluded) + 1
        pools = [self._pools(queries[axis], axis, size, allowed) for axis in pooled]
        results = []
        for i, self_row in enumerate(self_rows):
            rows = np.unique(np.concatenate([pool[i] for pool in pools]))
            query = {key: queries[key][i] for key in queries}
            results.append(self._rank(rows, query, self_row, excluded, mode, axis_weights, capped, k))
        return results

    def audit(self, sample: int = 200, k: int = 10, seed: int = 0) -> dict[str, dict[str, float]]:
        """Per axis, recall@k of the FAISS index and of the candidate pool against exact search (integrity.py)."""
        return {
            axis: recall_audit(self._axes[axis].index, self._axes[axis].matrix, self.config.min_pool, k, sample, seed)
            for axis in AXES
        }

    def _row(self, video_id: str) -> int:
        try:
            return self._rows[video_id]
        except KeyError:
            raise UnknownVideoError(video_id, self.index_dir) from None

    def _known_rows(self, video_ids: Collection[str] | None) -> np.ndarray:
        return np.array(sorted(self._rows[v] for v in video_ids or () if v in self._rows), dtype=np.int64)

    def _encode(
        self, vectors: Mapping[str, np.ndarray], model_identity: Mapping[str, str] | None
    ) -> dict[str, np.ndarray]:
        """Validate raw query vectors and map them into the axis spaces, as the build did."""
        if model_identity is None:
            raise ValueError(
                "vector queries need model_identity (model id -> sha256 of the models that made them); "
                f"this index was built with {self.manifest.models}"
            )
        expected = self.manifest.descriptors
        unknown, missing = sorted(set(vectors) - set(expected)), sorted(set(expected) - set(vectors))
        if unknown or missing:
            raise ValueError(
                f"vectors must have exactly the descriptors {sorted(expected)}; "
                f"unknown {unknown}, missing {missing}"
            )
        raw, counts = {}, set()
        for name, info in expected.items():
            indexed_sha = self.manifest.models[info.model]
            if model_identity.get(info.model) != indexed_sha:
                raise ValueError(
                    f"descriptor {name!r}: index was built with model {info.model!r} sha256 {indexed_sha}, "
                    f"query vectors come from {model_identity.get(info.model)!r}; re-embed with the index's models"
                )
            arr = np.asarray(vectors[name], dtype=np.float32)
            rows = arr.reshape(1, -1) if arr.ndim == 1 else arr
            if rows.ndim != 2 or rows.shape[1] != info.dim or len(rows) == 0:
                raise ValueError(f"descriptor {name!r}: expected dim {info.dim}, got array of shape {arr.shape}")
            if not np.isfinite(rows).all():
                raise ValueError(f"descriptor {name!r}: query vectors contain NaN or inf")
            raw[name] = rows
            counts.add(len(rows))
        if len(counts) != 1:
            raise ValueError(f"descriptors have different numbers of query vectors: {sorted(counts)}")
        style = self.manifest.recipe.descriptors("style")
        queries: dict[str, np.ndarray] = {_RAW_STYLE: self._raw_style_of({
            name: raw[name] if name in self._raw else self._transforms[name].apply(raw[name]) for name in style})}
        axes, _ = encode(self.manifest.recipe, raw, _QueryCatalogue(self))
        return {**queries, **axes}

    def _raw_style_of(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """The style axis on raw vectors for descriptors with a content-relative step (centred on the
        catalogue's raw mean), from per-descriptor query blocks (raw rows for those descriptors,
        transformed rows for the others); one None per query when the style axis has no such step
        (the duplicate filter then uses the style axis itself)."""
        names = self.manifest.recipe.descriptors("style")
        if not any(name in self._raw for name in names):
            return np.full(len(next(iter(blocks.values()))), None)
        return combine_blocks([self._centred_raw(name, blocks[name]) if name in self._raw else blocks[name]
                               for name in names])

    def _raw_style(self, rows: np.ndarray) -> np.ndarray:
        """``_raw_style_of`` for indexed rows: their stored raw vectors, or their slice of the style axis."""
        style = self._axes[self.manifest.recipe.base("style")]
        return self._raw_style_of({
            name: np.asarray(self._raw[name][rows]) if name in self._raw
            else l2_normalize(np.asarray(style.matrix[rows][:, style.parts[name]]))
            for name in self.manifest.recipe.descriptors("style")})

    def _centred_raw(self, name: str, raw: np.ndarray) -> np.ndarray:
        spec = self.manifest.recipe.residual(name)
        assert spec is not None and spec.mean is not None
        return l2_normalize(np.asarray(raw, dtype=np.float32) - np.asarray(spec.mean, dtype=np.float32))

    def _pools(self, queries: np.ndarray, axis: str, size: int, allowed: np.ndarray | None) -> list[np.ndarray]:
        """Per query, the rows of its top `size` videos on `axis` (among `allowed` rows if given)."""
        matrix = self._axes[axis].matrix
        candidates = np.arange(self.manifest.count) if allowed is None else allowed
        if size >= len(candidates):
            return [candidates] * len(queries)
        if allowed is not None or self.manifest.count <= self.config.exhaustive_max:
            # exact: (n_queries, candidates) scores; the whole mapped matrix needs no gathered copy
            scores = queries @ (matrix if allowed is None else matrix[allowed]).T
            return list(candidates[np.argpartition(-scores, size - 1, axis=1)[:, :size]])
        with self._index_lock:
            _, labels = self._axes[axis].index.search(np.ascontiguousarray(queries), size)
        return [found[found >= 0] for found in labels]

    def _rank(
        self,
        rows: np.ndarray,
        query: dict[str, np.ndarray],
        self_row: int | None,
        excluded: np.ndarray,
        mode: str,
        weights: Mapping[str, float],
        capped: str | None,
        k: int,
    ) -> list[Result]:
        """Drop self/duplicates/excluded (and, for dual modes, capped items), rank by the calibrated score."""
        sims = {axis: np.asarray(self._axes[axis].matrix[rows]) @ query[axis] for axis in AXES}
        raw_style = sims["style"] if query[_RAW_STYLE] is None else self._raw_style(rows) @ query[_RAW_STYLE]
        base_content = (sims["content"] if self._base_content == "content"
                        else np.asarray(self._axes[self._base_content].matrix[rows]) @ query[self._base_content])
        own = ((raw_style >= self.config.duplicate_style_similarity)
               & (base_content >= self.config.duplicate_similarity))
        if self_row is not None:
            own |= rows == self_row
            if self._hashes[self_row]:
                own |= self._hashes[rows] == self._hashes[self_row]
        calibrated = {
            axis: calibrate(
                sims[axis], ~own, self.config.calibration,
                None if self._axes[axis].hubness is None else self._axes[axis].hubness[rows],
            )
            for axis in AXES
        }
        keep = ~own & ~np.isin(rows, excluded)
        if capped is not None:
            keep &= calibrated[capped] < self._ceilings[capped]
        if mode == "weighted":
            score = sum(weights[axis] * calibrated[axis] for axis in AXES)
            primary = max(AXES, key=lambda axis: weights[axis])
        else:
            primary = _MODE_AXES[mode][0]
            score = calibrated[primary]
        candidates = np.flatnonzero(keep)
        top = candidates[np.lexsort((rows[candidates], -score[candidates]))[:k]]
        parts = {
            axis: part_cosines(query[axis], np.asarray(self._axes[axis].matrix[rows[top]]), self._axes[axis].parts)
            for axis in AXES
        }
        results = []
        for rank, i in enumerate(top, start=1):
            j = rank - 1
            row_parts = {name: float(values[j]) for axis in AXES for name, values in parts[axis].items()}
            raw = {axis: float(sims[axis][i]) for axis in AXES}
            cal = {axis: float(calibrated[axis][i]) for axis in AXES}
            results.append(Result(
                video_id=self.video_ids[rows[i]], rank=rank,
                style_score=raw["style"], content_score=raw["content"], score=float(score[i]),
                reason=describe(AXES, raw, cal, row_parts, primary, {a: list(parts[a]) for a in AXES}),
                style_z=cal["style"], content_z=cal["content"], parts=row_parts,
            ))
        return results


class _QueryCatalogue:
    """The recipe's catalogue for query vectors (styleaxis.embed.recipe.Catalogue): the loaded index,
    searched with the queries as the recipe builds them (each (axis, k) once); queries are never added."""

    def __init__(self, searcher: Searcher) -> None:
        self._searcher = searcher
        self._rows: dict[str, np.ndarray] = {}
        self._found: dict[tuple[str, int], np.ndarray] = {}

    def nearest(self, axis: str, k: int) -> np.ndarray:
        if (axis, k) not in self._found:
            pools = self._searcher._pools(self._rows[axis], axis, k, None)
            # an IVF probe may find fewer than k: repeat the nearest found (it weighs the median little)
            self._found[axis, k] = np.stack([np.pad(p, (0, k - len(p)), mode="edge")[:k] for p in pools])
        return self._found[axis, k]

    def matrix(self, axis: str) -> np.ndarray:
        return self._searcher._axes[axis].matrix

    def reference(self, descriptor: str, raw: np.ndarray) -> np.ndarray:
        return self._searcher._raw[descriptor]

    def transform(self, kind: TransformKind, name: str, rows: np.ndarray) -> np.ndarray:
        transforms = self._searcher._transforms if kind == "descriptor" else self._searcher._axis_transforms
        return transforms[name].apply(rows)

    def put(self, axis: str, rows: np.ndarray) -> None:
        self._rows[axis] = rows


def _generation(index_dir: Path) -> int | None:
    """The generation manifest.json names now, or None when it cannot be read."""
    try:
        return int(json.loads((index_dir / MANIFEST_FILE).read_text())["generation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load_transform(path: Path, checksum: str | None) -> SearchTransform:
    """A saved transform, checked against the checksum the manifest holds for it."""
    transform = SearchTransform.load(path)
    if transform.checksum() != checksum:
        raise IndexIntegrityError(f"{path}: transform checksum {transform.checksum()}, manifest expects {checksum}")
    return transform


def _check_shape(path: Path, got: tuple[int, ...], expected: tuple[int, int]) -> None:
    if tuple(got) != expected:
        raise IndexIntegrityError(f"{path}: shape (count, dim) {tuple(got)}, manifest expects {expected}")


__all__ = ["AXES", "MODES", "IndexIntegrityError", "Mode", "Result", "SearchConfig", "Searcher", "UnknownVideoError"]
