"""Reading a run directory's committed Parquet datasets (for reruns, the CLI and analysts).

Only committed files are read (``videos/*.parquet``, ``keyframes/*.parquet``; staging and temporary
files live elsewhere or carry no .parquet suffix), and keyframe rows count only when the
``videos/`` file of their shard lists their video (see :mod:`styleaxis.pipelines.store`), so a
reader never sees a row twice, even while a run is committing.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from styleaxis.embed.schema import read_metadata

from .store import list_files, read_schema, read_table
from .inputs import content_hash

__all__ = ["read_dataset", "committed_identity", "committed_ids", "completed_videos", "IDENTITY_KEYS"]

#: metadata keys that must agree for vectors to be comparable (the Embedder's identity)
IDENTITY_KEYS = ("models", "descriptors", "short_side", "center_crop")
_HASH_THREADS = 8  # the rerun check hashes files already embedded: I/O bound


def _files(run_dir: str | os.PathLike[str], name: str) -> list[str]:
    return list_files(os.path.join(str(run_dir), name, "*.parquet"))


def read_dataset(run_dir: str | os.PathLike[str], name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """``keyframes`` or ``videos`` of a run as one DataFrame (vector columns hold float32 arrays)."""
    if name not in ("keyframes", "videos"):
        raise ValueError(f"name must be 'keyframes' or 'videos', got {name!r}")
    files = _files(run_dir, name)
    if not files:
        raise FileNotFoundError(f"{os.path.join(str(run_dir), name)}: no Parquet files; run `styleaxis embed` first")
    tables = []
    for path in files:
        table = read_table(path, columns)
        if name == "keyframes":
            table = table.filter(pc.is_in(table.column("video_id"), value_set=_committed_ids(path)))
        tables.append(table.to_pandas())
    return pd.concat(tables, ignore_index=True)


def _committed_ids(keyframes_path: str) -> pa.Array:
    """Video ids the ``videos/`` file of this keyframes file's shard lists (empty when it has none yet)."""
    shard = keyframes_path.rsplit("/", 1)[-1]
    paired = list_files(os.path.join(keyframes_path.rsplit("/", 2)[0], "videos", shard))
    if not paired:
        return pa.array([], pa.string())
    return read_table(paired[0], ["video_id"]).column("video_id").combine_chunks()


def committed_identity(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The identity (IDENTITY_KEYS) of the vectors in ``videos/``; None when nothing is committed.

    Raises ValueError naming two files that disagree: such a directory cannot be indexed.
    """
    found: dict[str, Any] | None = None
    first = ""
    for path in _files(run_dir, "videos"):
        meta = read_metadata(read_schema(path), path)
        identity = {key: meta.get(key) for key in IDENTITY_KEYS}
        if found is None:
            found, first = identity, path
        elif identity != found:
            raise ValueError(f"{path} and {first} hold vectors from different models or settings")
    return found


def committed_ids(run_dir: str | os.PathLike[str]) -> dict[str, str]:
    """uri -> video_id of every input ``run_dir`` already holds a row for (none when it holds nothing), so a
    file keeps its id when another file with the same stem joins the catalogue."""
    ids: dict[str, str] = {}
    for path in _files(run_dir, "videos"):
        table = read_table(path, ["video_id", "uri"])
        ids.update(zip(table.column("uri").to_pylist(), table.column("video_id").to_pylist()))
    return ids


def completed_videos(run_dir: str | os.PathLike[str], hash_mode: str = "sampled",
                     retry_failed: bool = False) -> set[tuple[str, str]]:
    """(video_id, uri) pairs committed in ``run_dir`` whose file still has the recorded content hash.

    Any status counts as done (the same bytes would fail the same way) unless ``retry_failed``.
    Files are hashed on a few threads (the work is reading). Model identity is checked separately
    (a run directory holds one identity: see :func:`committed_identity`).
    """
    rows: list[dict[str, Any]] = []
    for path in _files(run_dir, "videos"):
        table = read_table(path, ["video_id", "uri", "content_hash", "status"])
        rows.extend(r for r in table.to_pylist() if not (retry_failed and r["status"] == "failed"))

    def unchanged(row: dict[str, Any]) -> bool:
        try:
            return content_hash(row["uri"], hash_mode) == row["content_hash"]
        except OSError:  # gone or unreadable: embed it again (a failed row will say why)
            return False

    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        return {(r["video_id"], r["uri"]) for r, same in zip(rows, pool.map(unchanged, rows)) if same}
