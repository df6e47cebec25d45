"""Query a built index: nearest neighbours on one axis, "same X, different Y" across both, or a weighted mix.

Every query takes a candidate pool, the primary axis's top max(min_pool, pool_per_k * k)
videos (from the axis's FAISS index, or exactly for small catalogues and for allow-lists), scores
it exactly on both axes from the stored matrices, and calibrates each axis's similarities within
the pool (calibrate.py: z-scores, optionally hubness-corrected). Dual-axis modes then drop
candidates whose secondary-axis score reaches the ceiling ("same content" for
same-style-different-content) and rank the rest by the calibrated primary score; "weighted" ranks
by sum_a w_a z_a over the pools of the positively weighted axes.

Calibrating within the pool conditions on "looks like the query on the primary axis": the
content signal that same-style videos share through leakage is common to the pool and
cancels. Calibrated on the whole catalogue instead, that leakage put genuine
same-style/different-content videos at content z ~ +2.5, over the ceiling (synthetic
3000-video catalogue, 50 styles: 4% of answers right, against 100% with the pool).
Limitation: when the query's content (or style) fills more than ~30% of the pool it is no
longer an outlier there (z = sqrt((1 - p) / p) for a fraction p), so min_pool must stay well
above the number of near-copies a video can have.

Ranking dual modes by the primary score, not primary minus secondary: the difference rewards
being *unlike* the query on the secondary axis, but genuine same-style videos share some content
signal through leakage (z raised, yet under the ceiling), so it demotes exactly them: on the
test grid with heavy leakage it finds 63% of the pairs against 91%
(tests/test_index.py::test_dual_axis_ranking_survives_strong_leakage). The ceiling, not the
ranking, is what enforces "different".

Measured on the labelled demo catalogue (8 photos x 8 cin26 styles, real embeddings with the
whitened content descriptor and the former AdaIN + CIN style axis; bench/query.py --sections
calibration), precision at R for
same-style-different-content / same-content-different-style: plain single-axis cosine
0.875 / 0.984; uncalibrated cos_primary - cos_other 0.882 / 0.335; z_primary - z_other
0.717 / 0.828; this ranking with the ceiling at z 1.5: 0.893 / 0.964, at 2.0 (the default):
0.895 / 0.984; with CSLS at 2.0: 0.906 / 0.989. So: calibrate before combining, combine by a ceiling rather than a difference, and
CSLS is not worth its build-time k-NN pass by default. With the default relative axes (style_eff
content-relative and expanded, content style-relative) the same catalogue gives 1.000 / 0.996 at
ceiling 2.0 (bench/RESULTS.md).

Duplicates (the query itself, byte-identical copies by content hash, and re-uploads: content cosine
>= duplicate_similarity and style cosine >= duplicate_style_similarity, both on the descriptors
before the catalogue-relative steps) are never returned and are left out of the calibration
reference. With the whitened content descriptor and the AdaIN + CIN style axis, re-encodes of a demo
clip (CRF 35, 80x54, VP9) scored 0.88-0.99 style and 0.68-0.97 content (centred cosines) against
their original, while the nearest distinct clips reached 0.85 style and 0.33 content; so content is
the axis that separates them there. A content-relative
style descriptor (the default style_eff) is compared here on its raw vectors centred on the
catalogue mean, not on its residuals: a re-upload shifts its own content neighbours' median and its
residual drifts (demo: residual cosines 0.12-0.40 to the original). Raw, re-encodes scored 0.57-0.59
in two runs (x264 output varies) and distinct clips whose content cosine passed 0.3 at most 0.29;
hence 0.45 on style. Content is compared before the content axis's style-relative step too (the
`content_base` axis), which moves with the catalogue: re-encodes scored 0.71-0.84 there, while two
renderings of one photo in similar cin26 styles (the calibration catalogue's styles 00 and 12, raw
style 0.48-0.53) reached 0.55; hence 0.6 on content.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import faiss
import numpy as np
import pyarrow.parquet as pq

from ..embed.relative import content_relative, expand_rows, style_relative_content
from .calibrate import CALIBRATIONS, Calibration, calibrate
from .factory import gpu_available, set_search_parameter, to_gpu
from .integrity import CPU_TOLERANCE, GPU_TOLERANCE, IndexIntegrityError, check_canaries, recall_audit, verify_file
from .manifest import IndexManifest, ids_digest
from .reasons import axis_parts, describe, part_cosines
from .transform import SearchTransform, combine_blocks, l2_normalize

# FAISS flat search switches from its per-query SIMD loop to BLAS only for batches above
# this many queries (128000 by default in faiss 1.15, i.e. never); BLAS is much faster for
# batches: 100 queries, d=512, 100k vectors: 850 ms at the default vs 118 ms at 20.
faiss.cvar.distance_compute_blas_threshold = 20

Mode = Literal["style", "content", "same-style-different-content", "same-content-different-style", "weighted"]
MODES: tuple[str, ...] = get_args(Mode)
AXES = ("style", "content")
# query key of the style axis without its content-relative step (for the duplicate filter), or None
_PLAIN_STYLE = "plain_style"
# transforms key of the centring fitted after the content axis's converse step
_CONTENT_STEP = "content axis step"
# mode -> (axis ranked on, axis whose calibrated score is capped by a ceiling or None)
_MODE_AXES: dict[str, tuple[str, str | None]] = {
    "style": ("style", None),
    "content": ("content", None),
    "same-style-different-content": ("style", "content"),
    "same-content-different-style": ("content", "style"),
}


def _default_weights() -> dict[str, float]:
    return {"style": 1.0, "content": 1.0}


@dataclass(frozen=True)
class SearchConfig:
    """Query-time knobs.

    calibration: how each axis's pool similarities are made comparable ("z" or "csls", see
    calibrate.py). content_ceiling_z / style_ceiling_z: a same-style-different-content candidate
    is dropped when its calibrated content score is >= content_ceiling_z (it has the query's
    content), and the converse (2.0: the best of 1.0-2.5 measured, module docstring).
    duplicate_similarity / duplicate_style_similarity: a candidate at or above the first on the
    content axis and the second on the style axis (both without their catalogue-relative steps) is a
    copy of the query (re-upload) and never returned. weights: default per-axis weights of mode "weighted".
    Candidates (and the calibration reference) are the primary axis's top max(min_pool,
    pool_per_k * k) videos, found by an exact matrix product for catalogues of at most
    exhaustive_max videos, else by the axis's FAISS index. gpu: move indexes to a GPU when faiss
    has one. canaries: re-run the build's canary queries on load.
    """

    calibration: Calibration = "z"
    content_ceiling_z: float = 2.0
    style_ceiling_z: float = 2.0
    duplicate_similarity: float = 0.6
    duplicate_style_similarity: float = 0.45
    weights: Mapping[str, float] = field(default_factory=_default_weights)
    exhaustive_max: int = 50_000
    min_pool: int = 200
    pool_per_k: int = 20
    gpu: bool = True
    canaries: bool = True

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"SearchConfig.calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        _check_weights(self.weights)
        if self.min_pool < 1 or self.pool_per_k < 1:
            raise ValueError(
                f"SearchConfig.min_pool and pool_per_k must be >= 1, got {self.min_pool}, {self.pool_per_k}"
            )


@dataclass(frozen=True)
class Result:
    """One hit: cosine and calibrated score on both axes, the ranking score, and why.

    style_score/content_score: cosine similarity (mean over the axis's descriptors);
    style_z/content_z: the calibrated scores; score: what the ranking used; parts: cosine of
    each descriptor and style tap; reason: a one-line summary of them.
    """

    video_id: str
    rank: int
    style_score: float
    content_score: float
    score: float
    reason: str
    style_z: float
    content_z: float
    parts: dict[str, float]


class UnknownVideoError(KeyError):
    """A queried video id is not in the index."""

    def __init__(self, video_id: str, index_dir: Path) -> None:
        super().__init__(video_id)
        self.video_id = video_id
        self.message = (
            f"video id {video_id!r} is not in the index at {index_dir} "
            "(failed embedding, or added after the build)"
        )

    def __str__(self) -> str:
        return self.message


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
        relative: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.manifest = manifest
        self.video_ids = video_ids
        self.config = config
        self._rows = {video_id: row for row, video_id in enumerate(video_ids)}
        self._hashes = np.array([h or "" for h in content_hashes], dtype=object)
        self._transforms = transforms
        self._relative = relative or {}  # content-relative descriptor -> the catalogue's raw vectors
        self._axes = axes
        self._ceilings = {"content": config.content_ceiling_z, "style": config.style_ceiling_z}
        step = manifest.axes["content"].relative
        # the duplicate filter's content axis: the content axis before its style-relative step
        self._plain_content = "content" if step is None else step["base_axis"]
        self._index_lock: AbstractContextManager[object] = threading.Lock() if gpu else nullcontext()

    @classmethod
    def load(cls, index_dir: str | Path, config: SearchConfig | None = None, verify: bool = True) -> Searcher:
        """Open an index directory, check it against manifest.json, and run its canary queries.

        verify=True re-hashes every file (reads the whole matrices once); counts, dimensions,
        the id map hash and transform checksums are always checked.
        """
        index_dir = Path(index_dir)
        config = config or SearchConfig()
        manifest = IndexManifest.load(index_dir)
        missing = [axis for axis in AXES if axis not in manifest.axes]
        if missing:
            raise ValueError(f"{index_dir}: index has axes {sorted(manifest.axes)}, search needs {list(AXES)}")
        if verify:
            for name, expected in manifest.files.items():
                verify_file(index_dir / name, expected)

        ids_path = index_dir / manifest.ids_file
        table = pq.read_table(ids_path)
        video_ids = table["video_id"].to_pylist()
        if len(video_ids) != manifest.count or ids_digest(video_ids) != manifest.ids_sha256:
            raise IndexIntegrityError(
                f"{ids_path}: id map does not match manifest (count {len(video_ids)} vs {manifest.count}, "
                f"or hash differs from {manifest.ids_sha256})"
            )

        transforms = {}
        for name, info in manifest.descriptors.items():
            transform = SearchTransform.load(index_dir / info.transform_file)
            if transform.checksum() != info.transform_checksum:
                raise IndexIntegrityError(
                    f"{index_dir / info.transform_file}: transform checksum {transform.checksum()}, "
                    f"manifest expects {info.transform_checksum}"
                )
            transforms[name] = transform
        relative = {}
        for name, info in manifest.descriptors.items():
            if info.relative is not None:
                raw_path = index_dir / info.relative["raw_file"]
                relative[name] = np.load(raw_path, mmap_mode="r")
                _check_shape(raw_path, relative[name].shape, (manifest.count, info.dim))

        step = manifest.axes["content"].relative
        if step is not None:  # the content axis's converse step: its fitted centring
            transforms[_CONTENT_STEP] = SearchTransform.load(index_dir / step["transform_file"])
            if transforms[_CONTENT_STEP].checksum() != step["transform_checksum"]:
                raise IndexIntegrityError(f"{index_dir / step['transform_file']}: transform checksum differs from "
                                          f"the manifest's {step['transform_checksum']}")

        gpu = config.gpu and gpu_available()
        axes = {}
        # with the content axis's converse step or the style expansion, also the axis before it
        internal = [spec["base_axis"] for spec in (step, manifest.axes["style"].expansion) if spec is not None]
        for axis in (*AXES, *internal):
            info = manifest.axes[axis]
            index_path, matrix_path = index_dir / info.index_file, index_dir / info.matrix_file
            index = faiss.read_index(str(index_path))
            _check_shape(index_path, (index.ntotal, index.d), (manifest.count, info.dim))
            index = to_gpu(index) if gpu else index
            set_search_parameter(index, info.search_value)
            matrix = np.load(matrix_path, mmap_mode="r")
            _check_shape(matrix_path, matrix.shape, (manifest.count, info.dim))
            hub = np.load(index_dir / info.hubness_file) if info.hubness_file else None
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
        return cls(index_dir, manifest, video_ids, table["content_hash"].to_pylist(), transforms, axes, config, gpu,
                   relative)

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
        axis_weights = _check_weights(weights if weights is not None else self.config.weights)
        if vectors is None:
            self_rows: list[int | None] = [self._row(video_id) for video_id in video_ids]
            queries = {axis: np.asarray(self._axes[axis].matrix[self_rows]) for axis in AXES}
            queries[_PLAIN_STYLE] = self._plain_style(np.asarray(self_rows))
            queries[self._plain_content] = np.asarray(self._axes[self._plain_content].matrix[self_rows])
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
        blocks, counts = {}, set()
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
            blocks[name] = rows if name in self._relative else self._transforms[name].apply(rows)
            counts.add(len(rows))
        if len(counts) != 1:
            raise ValueError(f"descriptors have different numbers of query vectors: {sorted(counts)}")
        queries: dict[str, np.ndarray] = {_PLAIN_STYLE: self._plain_style_of(blocks)}
        content = combine_blocks([blocks[name] for name in self.manifest.axes["content"].descriptors])
        step = self.manifest.axes["content"].relative
        if step is not None:
            queries[step["base_axis"]] = content
        else:
            queries["content"] = content
        found: dict[tuple[str, int], list[np.ndarray]] = {}

        def nearest(axis: str, k: int) -> list[np.ndarray]:
            # each query's k nearest rows on a content axis: the residual and the expansion share them
            if (axis, k) not in found:
                found[axis, k] = self._pools(queries[axis], axis, k, None)
            return found[axis, k]
        for name in set(self._relative).intersection(self.manifest.axes["style"].descriptors):
            blocks[name] = self._relative_query(name, blocks[name], nearest)
        queries["style"] = combine_blocks([blocks[name] for name in self.manifest.axes["style"].descriptors])
        expansion = self.manifest.axes["style"].expansion
        if expansion is not None:
            queries["style"] = self._expand_query(queries["style"], nearest, expansion)
        if step is not None:  # the converse step: minus the median base content of the style neighbours
            neighbours = self._pools(queries["style"], step["axis"], int(step["k"]), None)
            base = self._axes[step["base_axis"]].matrix
            stepped = np.concatenate([
                style_relative_content(row[None], base, nb[None], float(step["alpha"]))
                for row, nb in zip(content, neighbours)])
            queries["content"] = self._transforms[_CONTENT_STEP].apply(stepped)
        return queries

    def _plain_style_of(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """The style axis without its content-relative step, from per-descriptor query blocks (raw rows
        for content-relative descriptors, transformed rows for the others); one None per query when the
        style axis has no such step (the duplicate filter then uses the style axis itself)."""
        names = self.manifest.axes["style"].descriptors
        if not any(name in self._relative for name in names):
            return np.full(len(next(iter(blocks.values()))), None)
        return combine_blocks([self._centred_raw(name, blocks[name]) if name in self._relative else blocks[name]
                               for name in names])

    def _plain_style(self, rows: np.ndarray) -> np.ndarray:
        """``_plain_style_of`` for indexed rows: their stored raw vectors, or their slice of the style axis."""
        style = self._axes["style"]
        return self._plain_style_of({
            name: np.asarray(self._relative[name][rows]) if name in self._relative
            else l2_normalize(np.asarray(style.matrix[rows][:, style.parts[name]]))
            for name in self.manifest.axes["style"].descriptors})

    def _centred_raw(self, name: str, raw: np.ndarray) -> np.ndarray:
        spec = self.manifest.descriptors[name].relative
        assert spec is not None
        return l2_normalize(np.asarray(raw, dtype=np.float32) - np.asarray(spec["mean"], dtype=np.float32))

    def _relative_query(self, name: str, rows: np.ndarray,
                        nearest: Callable[[str, int], list[np.ndarray]]) -> np.ndarray:
        """Raw query rows of a content-relative descriptor -> search rows, against each query's nearest
        videos on the content axis, as the build made the catalogue's rows (styleaxis.embed.relative)."""
        spec = self.manifest.descriptors[name].relative
        assert spec is not None
        neighbours = nearest(spec["axis"], int(spec["k"]))
        floor = np.asarray(spec["floor"], dtype=np.float32)
        residuals = [content_relative(row[None], self._relative[name], nb[None], floor=floor)[0]
                     for row, nb in zip(rows, neighbours)]
        return self._transforms[name].apply(np.concatenate(residuals))

    def _expand_query(self, rows: np.ndarray, nearest: Callable[[str, int], list[np.ndarray]],
                      expansion: Mapping[str, Any]) -> np.ndarray:
        """Unexpanded style query rows -> style axis rows: each plus its nearest unexpanded rows outside
        its content neighbours, as the build expanded the catalogue's rows (styleaxis.embed.relative)."""
        base, exclude = expansion["base_axis"], expansion["exclude_axis"]
        k, m = int(expansion["k"]), int(expansion["m"])
        excluded = nearest(exclude, k)
        candidates = self._pools(rows, base, k + m, None)
        matrix = self._axes[base].matrix
        return np.concatenate([expand_rows(row[None], matrix, found[None], skip[None], m)
                               for row, found, skip in zip(rows, candidates, excluded)])

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
        plain_style = sims["style"] if query[_PLAIN_STYLE] is None else self._plain_style(rows) @ query[_PLAIN_STYLE]
        plain_content = (sims["content"] if self._plain_content == "content"
                         else np.asarray(self._axes[self._plain_content].matrix[rows]) @ query[self._plain_content])
        own = ((plain_style >= self.config.duplicate_style_similarity)
               & (plain_content >= self.config.duplicate_similarity))
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


def _check_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    """Validate axis weights: both axes, finite numbers, at least one positive (it supplies the pool)."""
    if set(weights) != set(AXES):
        raise ValueError(f"weights need exactly the axes {list(AXES)}, got {sorted(weights)}")
    values = {axis: float(weights[axis]) for axis in AXES}
    if not all(np.isfinite(v) for v in values.values()) or max(values.values()) <= 0:
        raise ValueError(f"weights must be finite with at least one > 0, got {values}")
    return values


def _check_shape(path: Path, got: tuple[int, ...], expected: tuple[int, int]) -> None:
    if tuple(got) != expected:
        raise IndexIntegrityError(f"{path}: shape (count, dim) {tuple(got)}, manifest expects {expected}")


__all__ = ["AXES", "MODES", "IndexIntegrityError", "Mode", "Result", "SearchConfig", "Searcher", "UnknownVideoError"]
