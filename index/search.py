"""Query a built index: nearest neighbours on one axis, or "same X, different Y" across both.

Every query takes a candidate pool, the primary axis's top max(min_pool, pool_per_k * k)
videos, scores it exactly on both axes from the stored matrices, and z-scores each axis's
similarities within the pool (raw cosines are not comparable across axes). Dual-axis modes
then drop candidates whose secondary-axis z-score reaches the ceiling ("same content" for
same-style-different-content) and rank the rest by the primary similarity.

Calibrating within the pool conditions on "looks like the query on the primary axis": the
content signal that same-style videos share through leakage is common to the pool and
cancels. Calibrated on the whole catalogue instead, that leakage put genuine
same-style/different-content videos at content z ~ +2.5, over the ceiling (synthetic
3000-video catalogue, 50 styles: 4% of answers right, against 100% with the pool).
Limitation: when the query's content (or style) fills more than ~30% of the pool it is no
longer an outlier there (z = sqrt((1 - p) / p) for a fraction p), so min_pool must stay well
above the number of near-copies a video can have.

Ranking: by primary similarity, not primary z minus secondary z. The difference rewards being
*unlike* the query on the secondary axis, but genuine same-style videos share some content
signal through leakage (z raised, yet under the ceiling), so it demotes exactly them: on the
test grid with heavy leakage it finds 63% of the pairs against 91%
(tests/test_index.py::test_dual_axis_ranking_survives_strong_leakage). The ceiling, not the
ranking, is what enforces "different".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import faiss
import numpy as np
import pyarrow.parquet as pq

from ._io import sha256_file
from .manifest import IndexManifest, ids_digest
from .transform import SearchTransform, combine_blocks

# FAISS flat search switches from its per-query SIMD loop to BLAS only for batches above
# this many queries (128000 by default in faiss 1.15, i.e. never); BLAS is much faster for
# batches: 100 queries, d=512, 100k vectors: 850 ms at the default vs 118 ms at 20.
faiss.cvar.distance_compute_blas_threshold = 20

Mode = Literal["style", "content", "same-style-different-content", "same-content-different-style"]
MODES: tuple[str, ...] = get_args(Mode)
AXES = ("style", "content")
# mode -> (axis ranked on, axis whose z-score is capped by a ceiling or None)
_MODE_AXES: dict[str, tuple[str, str | None]] = {
    "style": ("style", None),
    "content": ("content", None),
    "same-style-different-content": ("style", "content"),
    "same-content-different-style": ("content", "style"),
}


@dataclass(frozen=True)
class SearchConfig:
    """Query-time knobs.

    content_ceiling_z / style_ceiling_z: a same-style-different-content candidate is dropped
    when its content z-score is >= content_ceiling_z (it has the query's content), and the
    converse for same-content-different-style. Candidates (and the z-score reference) are the
    primary axis's top max(min_pool, pool_per_k * k) videos, found by an exact matrix product
    for catalogues of at most exhaustive_max videos, else by the axis's FAISS index.
    """

    content_ceiling_z: float = 1.5
    style_ceiling_z: float = 1.5
    duplicate_similarity: float = 0.98
    exhaustive_max: int = 50_000
    min_pool: int = 200
    pool_per_k: int = 20


@dataclass(frozen=True)
class Result:
    """One hit: similarities on both axes (mean cosine over descriptors), the ranking score, and why."""

    video_id: str
    rank: int
    style_score: float
    content_score: float
    score: float
    reason: str


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


class IndexIntegrityError(ValueError):
    """An index file is missing or does not match manifest.json."""


class Searcher:
    """Loaded, verified index directory; create with `Searcher.load`."""

    def __init__(
        self,
        index_dir: Path,
        manifest: IndexManifest,
        video_ids: list[str],
        transforms: dict[str, SearchTransform],
        indexes: dict[str, faiss.Index],
        matrices: dict[str, np.ndarray],
        config: SearchConfig,
    ) -> None:
        self.index_dir = index_dir
        self.manifest = manifest
        self.video_ids = video_ids
        self.config = config
        self._rows = {video_id: row for row, video_id in enumerate(video_ids)}
        self._transforms = transforms
        self._indexes = indexes
        self._matrices = matrices
        self._ceilings = {"content": config.content_ceiling_z, "style": config.style_ceiling_z}

    @classmethod
    def load(cls, index_dir: str | Path, config: SearchConfig | None = None, verify: bool = True) -> Searcher:
        """Open an index directory, checking every file against manifest.json.

        verify=True re-hashes every file (reads the whole matrices once); counts, dimensions,
        the id map hash and transform checksums are always checked.
        """
        index_dir = Path(index_dir)
        manifest = IndexManifest.load(index_dir)
        missing = [axis for axis in AXES if axis not in manifest.axes]
        if missing:
            raise ValueError(f"{index_dir}: index has axes {sorted(manifest.axes)}, search needs {list(AXES)}")
        if verify:
            for name, expected in manifest.files.items():
                _verify_file(index_dir / name, expected)

        ids_path = index_dir / manifest.ids_file
        video_ids = pq.read_table(ids_path, columns=["video_id"])["video_id"].to_pylist()
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

        indexes, matrices = {}, {}
        for axis in AXES:
            info = manifest.axes[axis]
            index_path, matrix_path = index_dir / info.index_file, index_dir / info.matrix_file
            indexes[axis] = faiss.read_index(str(index_path))
            matrices[axis] = np.load(matrix_path, mmap_mode="r")
            _check_shape(index_path, (indexes[axis].ntotal, indexes[axis].d), (manifest.count, info.dim))
            _check_shape(matrix_path, matrices[axis].shape, (manifest.count, info.dim))
        return cls(index_dir, manifest, video_ids, transforms, indexes, matrices, config or SearchConfig())

    @property
    def model_identity(self) -> dict[str, str]:
        """Models (id -> sha256) the indexed vectors came from; vector queries must match them."""
        return dict(self.manifest.models)

    def search(
        self,
        video_id: str | None = None,
        *,
        vectors: Mapping[str, np.ndarray] | None = None,
        mode: Mode,
        k: int = 10,
        exclude: Collection[str] | None = None,
        model_identity: Mapping[str, str] | None = None,
    ) -> list[Result]:
        """Top-k results for one query, given either an indexed video_id or raw descriptor vectors.

        `vectors` maps every indexed descriptor to a (D,) array and requires `model_identity`
        (model id -> sha256 of the models that produced them). Ids in `exclude` that are not
        indexed are ignored.
        """
        results = self.search_batch(
            None if video_id is None else [video_id],
            vectors=vectors, mode=mode, k=k, exclude=exclude, model_identity=model_identity,
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
        model_identity: Mapping[str, str] | None = None,
    ) -> list[list[Result]]:
        """Like `search` for many queries: video_ids, or vectors as (n, D) arrays per descriptor."""
        if mode not in _MODE_AXES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if (video_ids is None) == (vectors is None):
            raise ValueError("pass exactly one of video_ids or vectors")
        if isinstance(video_ids, str) or isinstance(exclude, str):
            raise TypeError("video_ids and exclude take collections of ids, not a single str")
        if vectors is None:
            self_rows: list[int | None] = [self._row(video_id) for video_id in video_ids]
            queries = {axis: np.asarray(self._matrices[axis][self_rows]) for axis in AXES}
        else:
            queries = self._encode(vectors, model_identity)
            self_rows = [None] * len(queries["style"])
        excluded = np.array(sorted(self._rows[v] for v in exclude or () if v in self._rows), dtype=np.int64)
        primary, capped = _MODE_AXES[mode]
        size = max(self.config.min_pool, self.config.pool_per_k * k) + len(excluded) + 1
        results = []
        for i, rows in enumerate(self._pools(queries[primary], primary, size)):
            sims = {axis: self._matrices[axis][rows] @ queries[axis][i] for axis in AXES}
            results.append(self._rank(rows, sims, self_rows[i], excluded, primary, capped, k))
        return results

    def _row(self, video_id: str) -> int:
        try:
            return self._rows[video_id]
        except KeyError:
            raise UnknownVideoError(video_id, self.index_dir) from None

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
            if rows.ndim != 2 or rows.shape[1] != info.dim:
                raise ValueError(f"descriptor {name!r}: expected dim {info.dim}, got array of shape {arr.shape}")
            if not np.isfinite(rows).all():
                raise ValueError(f"descriptor {name!r}: query vectors contain NaN or inf")
            blocks[name] = self._transforms[name].apply(rows)
            counts.add(len(rows))
        if len(counts) != 1:
            raise ValueError(f"descriptors have different numbers of query vectors: {sorted(counts)}")
        return {
            axis: combine_blocks([blocks[name] for name in self.manifest.axes[axis].descriptors]) for axis in AXES
        }

    def _pools(self, queries: np.ndarray, axis: str, size: int) -> list[np.ndarray]:
        """Per query, the rows of its top `size` videos on `axis` (all rows if the catalogue is no larger)."""
        count = self.manifest.count
        if size >= count:
            return [np.arange(count)] * len(queries)
        if count <= self.config.exhaustive_max:
            scores = queries @ self._matrices[axis].T  # (n_queries, count), exact
            return list(np.argpartition(-scores, size - 1, axis=1)[:, :size])
        _, labels = self._indexes[axis].search(np.ascontiguousarray(queries), size)
        return [found[found >= 0] for found in labels]

    def _rank(
        self,
        rows: np.ndarray,
        sims: dict[str, np.ndarray],
        self_row: int | None,
        excluded: np.ndarray,
        primary: str,
        capped: str | None,
        k: int,
    ) -> list[Result]:
        """Drop self/duplicates/excluded (and, for dual modes, capped items), rank by primary similarity.

        z-scores use the pool minus self/duplicates as reference (see the module docstring).
        """
        threshold = self.config.duplicate_similarity
        own = (sims["style"] > threshold) & (sims["content"] > threshold)
        if self_row is not None:
            own |= rows == self_row
        z = {axis: _zscores(sims[axis], sims[axis][~own]) for axis in AXES}
        keep = ~own & ~np.isin(rows, excluded)
        if capped is not None:
            keep &= z[capped] < self._ceilings[capped]
        candidates = np.flatnonzero(keep)
        top = candidates[np.lexsort((rows[candidates], -sims[primary][candidates]))[:k]]
        return [
            Result(
                video_id=self.video_ids[rows[i]],
                rank=rank,
                style_score=float(sims["style"][i]),
                content_score=float(sims["content"][i]),
                score=float(sims[primary][i]),
                reason=(
                    f"style {sims['style'][i]:.2f} (z={z['style'][i]:+.1f}), "
                    f"content {sims['content'][i]:.2f} (z={z['content'][i]:+.1f})"
                ),
            )
            for rank, i in enumerate(top, start=1)
        ]


def _zscores(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """z-scores of `values` against the mean/std of `reference`; zeros if it has no spread."""
    std = float(reference.std()) if reference.size > 1 else 0.0
    if std < 1e-12:
        return np.zeros_like(values)
    return (values - float(reference.mean())) / std


def _verify_file(path: Path, expected: str) -> None:
    if not path.is_file():
        raise IndexIntegrityError(f"{path}: listed in manifest.json but missing")
    actual = sha256_file(path)
    if actual != expected:
        raise IndexIntegrityError(
            f"{path}: sha256 {actual} does not match manifest.json ({expected}); "
            "the file was modified or replaced after the build, rebuild the index"
        )


def _check_shape(path: Path, got: tuple[int, ...], expected: tuple[int, int]) -> None:
    if tuple(got) != expected:
        raise IndexIntegrityError(f"{path}: shape (count, dim) {tuple(got)}, manifest expects {expected}")
