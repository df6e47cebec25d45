"""Reader for the embed pipeline's run directory (RUN/videos/*.parquet) as the index needs it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..embed.schema import read_metadata
from ._io import sha256_file

#: RUN/_runs/: one summary per embed run (styleaxis.pipelines.store), the run directory's history
RUNS_DIR = "_runs"
INDEXABLE_STATUSES = ("ok", "partial")
KNOWN_STATUSES = (*INDEXABLE_STATUSES, "failed")


@dataclass(frozen=True)
class RunVectors:
    """Indexable rows of a run: ids, one (n, D) float32 matrix per descriptor, and provenance.

    content_hashes: the videos/ content_hash per row (None where absent), for the duplicate filter and
    for --add, which replaces a row whose hash changed since it was indexed.
    unchanged: ids of the rows left out because the index already holds them with the same content hash.
    sources: sha256 of every Parquet file read, by file name: ties the id map to its Parquet.
    embed: the resize policy the vectors were made with (short_side, center_crop), so files
    queried later are embedded the same way.
    """

    video_ids: list[str]
    vectors: dict[str, np.ndarray]
    models: dict[str, str]
    descriptors: dict[str, dict[str, Any]]
    run_ids: tuple[str, ...]
    code_versions: tuple[str, ...]
    skipped: dict[str, int]
    content_hashes: list[str | None]
    sources: dict[str, str]
    embed: dict[str, Any]
    unchanged: frozenset[str] = frozenset()
    file_run_ids: dict[str, str] = field(default_factory=dict)


def read_run(run_dir: Path, descriptors: Sequence[str], indexed: Mapping[str, str | None] | None = None) -> RunVectors:
    """Read the requested descriptors of every indexable row (status ok/partial, all vectors present).

    Checks that all files agree on the model identity (models + descriptors metadata), that the
    descriptors exist with the advertised dimension, and that ids are unique and vectors finite.
    Rows that `indexed` (video_id -> content hash, what an index holds) already holds with the same content
    hash are counted as already indexed and listed in `unchanged`, not read; a row whose hash differs is
    read (for --add, which replaces it).
    """
    videos_dir = Path(run_dir) / "videos"
    files = sorted(videos_dir.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files in {videos_dir}")
    schemas = {path: pq.read_schema(path) for path in files}
    metas = {path: read_metadata(schema, path) for path, schema in schemas.items()}
    first = metas[files[0]]
    _check_identity_agrees(metas)
    missing = [name for name in descriptors if name not in first["descriptors"]]
    if missing:
        names = ",".join(missing)
        raise ValueError(f"{run_dir} lacks descriptor {names} (it holds {','.join(first['descriptors'])}): add it "
                         f"with `styleaxis embed --out {run_dir} --add-descriptors {names}`, or index what it holds "
                         "(index build --style/--content)")
    for name in descriptors:
        _check_descriptor_metadata(files[0], first, name)
    dims = {name: int(first["descriptors"][name]["dim"]) for name in descriptors}

    ids: list[str | None] = []
    hashes: list[str | None] = []
    blocks: dict[str, list[np.ndarray]] = {name: [] for name in descriptors}
    skipped = {"failed": 0, "missing_vectors": 0, "already_indexed": 0}
    indexed = dict(indexed or {})
    known_ids = pa.array(sorted(indexed), pa.string())
    unchanged: set[str] = set()
    for path in files:
        _check_vector_types(path, schemas[path], dims)
        extra = ["content_hash"] if "content_hash" in schemas[path].names else []
        table = _read_columns(path, schemas[path], ["video_id", "status", *extra, *descriptors])
        _check_statuses(path, table)
        known = pc.is_in(table["video_id"], value_set=known_ids).to_numpy(zero_copy_only=False)
        if known.any():
            row_ids = table["video_id"].to_pylist()
            row_hashes = table["content_hash"].to_pylist() if extra else [None] * len(row_ids)
            same = np.array([k and indexed[i] == h for k, i, h in zip(known, row_ids, row_hashes)], dtype=bool)
            unchanged.update(i for i, s in zip(row_ids, same) if s)
            skipped["already_indexed"] += int(same.sum())
            table = table.filter(pa.array(~same))
        indexable = pc.is_in(table["status"], value_set=pa.array(INDEXABLE_STATUSES))
        has_vectors = reduce(pc.and_, [pc.is_valid(table[name]) for name in descriptors])
        keep = pc.and_(indexable, has_vectors)
        skipped["failed"] += len(table) - (pc.sum(indexable).as_py() or 0)
        skipped["missing_vectors"] += pc.sum(pc.and_(indexable, pc.invert(has_vectors))).as_py() or 0
        kept = table.filter(keep)
        ids.extend(kept["video_id"].to_pylist())
        hashes.extend(kept["content_hash"].to_pylist() if extra else [None] * len(kept))
        for name in descriptors:
            blocks[name].append(_list_matrix(path, kept[name], name, dims[name]))

    vectors = {name: np.concatenate(parts) for name, parts in blocks.items()}
    _check_ids(ids)
    for name, matrix in vectors.items():
        bad = ~np.isfinite(matrix).all(axis=1)
        if bad.any():
            examples = [ids[i] for i in np.flatnonzero(bad)[:5]]
            raise ValueError(
                f"descriptor {name!r} has non-finite values for {int(bad.sum())} videos, e.g. {examples}"
            )
    return RunVectors(
        video_ids=ids,
        vectors=vectors,
        models=dict(first["models"]),
        descriptors={name: dict(first["descriptors"][name]) for name in descriptors},
        run_ids=tuple(sorted({str(m.get("run_id")) for m in metas.values()})),
        code_versions=tuple(sorted({str(m.get("code_version")) for m in metas.values()})),
        skipped=skipped,
        content_hashes=hashes,
        sources={path.name: sha256_file(path) for path in files},
        embed={key: first[key] for key in ("short_side", "center_crop") if key in first},
        unchanged=frozenset(unchanged),
        file_run_ids={path.name: str(meta.get("run_id")) for path, meta in metas.items()},
    )


def check_run_history(run_dir: Path, indexed_run_ids: Collection[str], file_run_ids: Mapping[str, str]) -> None:
    """Refuse a run directory whose Parquet files were swapped for another run directory's.

    `styleaxis embed` leaves each run's summary in RUN/_runs/<run_id>.json (with the killed runs it
    recovered), and every Parquet file it commits carries its run id (``file_run_ids``: videos/ file name ->
    run id, as :func:`read_run` found them). So every videos/ file must come from a run that history lists,
    and every run an index was built from must still be listed.
    Directories without _runs/ (vectors written by other tools) have no history to check.
    """
    runs_dir = Path(run_dir) / RUNS_DIR
    if not runs_dir.is_dir():
        return
    history = set()
    for log in runs_dir.glob("*.json"):
        history.add(log.stem)
        try:
            history.update(json.loads(log.read_text()).get("recovered_runs", ()))
        except (OSError, ValueError, AttributeError):
            pass  # the log's name alone still counts
    for name, run_id in sorted(file_run_ids.items()):
        path = Path(run_dir) / "videos" / name
        if run_id not in history:
            raise ValueError(f"{path}: written by run {run_id}, which {runs_dir} does not list: the file comes from "
                             "another run directory (or from a run still committing); put this run's own files "
                             "back, or wait for the run to finish")
    lost = sorted(set(indexed_run_ids) - history)
    if lost:
        raise ValueError(f"{run_dir}: the index was built from runs {lost}, which {runs_dir} does not list: this is "
                         "not the run directory the index was built from; pass that one, or --rebuild from this one")


def _check_identity_agrees(metas: dict[Path, dict[str, Any]]) -> None:
    groups: dict[str, list[str]] = {}
    for path, meta in metas.items():
        key = json.dumps({"models": meta["models"], "descriptors": meta["descriptors"]}, sort_keys=True)
        groups.setdefault(key, []).append(path.name)
    if len(groups) > 1:
        detail = "; ".join(f"{names} -> {key}" for key, names in groups.items())
        raise ValueError(f"run files disagree on model identity (models/descriptors metadata): {detail}")


def _check_descriptor_metadata(path: Path, meta: dict[str, Any], name: str) -> None:
    info = meta["descriptors"].get(name)
    if not isinstance(info, dict) or not isinstance(info.get("dim"), int) or "model" not in info:
        raise ValueError(
            f"{path}: descriptor {name!r} missing from metadata or lacks dim/model "
            f"(available: {sorted(meta['descriptors'])}); index the available ones "
            "(styleaxis index build --style/--content, IndexConfig.axes) or embed with it (--descriptors)"
        )
    if info["model"] not in meta["models"]:
        raise ValueError(
            f"{path}: descriptor {name!r} names model {info['model']!r}, which is not in metadata models "
            f"{sorted(meta['models'])}"
        )


def _check_statuses(path: Path, table: pa.Table) -> None:
    unknown = set(pc.unique(table["status"]).to_pylist()) - set(KNOWN_STATUSES)
    if unknown:
        raise ValueError(
            f"{path}: column 'status' has unknown values {sorted(map(str, unknown))}, expected {KNOWN_STATUSES}"
        )


def _check_vector_types(path: Path, schema: pa.Schema, dims: dict[str, int]) -> None:
    for name, dim in dims.items():
        got = schema.field(name).type if name in schema.names else "no such column"
        ok = isinstance(got, (pa.ListType, pa.FixedSizeListType)) and got.value_type == pa.float32()
        if not ok or getattr(got, "list_size", dim) != dim:
            raise ValueError(
                f"{path}: column {name!r} is {got}, expected list<float> or fixed_size_list<float>[{dim}]"
            )


def _read_columns(path: Path, schema: pa.Schema, columns: list[str]) -> pa.Table:
    """Read columns of one file, naming the file (and the known pyarrow limit) on failure."""
    try:
        return pq.read_table(path, columns=columns)
    except pa.ArrowInvalid as exc:
        fixed = [name for name in columns if pa.types.is_fixed_size_list(schema.field(name).type)]
        hint = (
            f"; columns {fixed} are fixed-size lists, which pyarrow 25 cannot read back when a row is "
            "null (apache/arrow#35692): videos/ vectors must be variable-size lists (embed/schema.py)"
            if fixed else ""
        )
        raise ValueError(f"{path}: cannot read columns {columns}: {exc}{hint}") from exc


def _list_matrix(path: Path, column: pa.ChunkedArray, name: str, dim: int) -> np.ndarray:
    """(n, dim) float32 matrix from a null-free float list column, checking every length."""
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    wrong = sorted(set(lengths.tolist()) - {dim})
    if wrong:
        raise ValueError(f"{path}: column {name!r} has vectors of length {wrong}, expected {dim} (metadata dim)")
    return pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(-1, dim)


def _check_ids(ids: list[str | None]) -> None:
    if None in ids:
        raise ValueError(f"video_id is null for {ids.count(None)} indexable rows")
    dupes = sorted(video_id for video_id, n in Counter(ids).items() if n > 1)
    if dupes:
        raise ValueError(f"video_id is not unique across the run: {len(dupes)} repeated ids, e.g. {dupes[:5]}")
