"""The run directory: how the embed job's rows are staged, committed and found, atomically.

    RUN/videos/<shard>.parquet            committed: one row per video (what every reader reads)
    RUN/keyframes/<shard>.parquet         committed keyframe rows; pairs with videos/<same name>
    RUN/_staging/<run_id>/videos/...      written by the workers while a run is live
    RUN/_staging/<run_id>/keyframes/...
    RUN/_runs/<run_id>.json               a run's summary, written after its commit (the done marker)
    RUN/.lock                             held by the live run (local directories only)

Rules that keep readers consistent (img2dataset-style shards, done marker last):

1. Every file appears under its final name by a rename, never half written: workers write into
   ``_staging/<run_id>/tmp/`` and rename into ``_staging/<run_id>/{keyframes,videos}/``, keyframes
   first; a staged shard is complete once its ``videos`` file exists.
2. A keyframes row is visible only when the ``videos/`` file of the same shard lists its video
   (:func:`styleaxis.pipelines.dataset.read_dataset` applies this); ``videos/`` is the commit record.
3. :func:`commit` publishes a run's complete staged shards: it first drops duplicates among them
   (a retried Beam bundle can write a video twice), then removes the committed rows of every video
   it re-embeds (``--force``, changed bytes, retried failures: videos first, then keyframes), then
   renames each shard in (keyframes first, videos last), and deletes the staging folder last. Each
   step is idempotent, so a commit cut short by a kill is finished by the next run
   (:func:`recover`); at no moment does ``videos/`` hold a video twice, and no staged row is lost.

Paths go through Beam's FileSystems, so RUN can be a local folder or a bucket (gs://, s3://) that
cluster workers write to. Renames are atomic on local disks; on object stores an object appears
whole when written, which is what rule 1 needs.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ..media.disk import DiskFullError, is_disk_full
from .inputs import is_remote

__all__ = ["KINDS", "list_files", "read_schema", "read_table", "write_table", "shard_name", "write_shard", "commit",
           "commit_folder", "recover", "run_lock", "write_run_log", "staged_run_ids"]

KINDS = ("keyframes", "videos")
STAGING = "_staging"
RUNS = "_runs"


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def list_files(pattern: str) -> list[str]:
    """Paths matching a glob (local or remote), sorted; empty when nothing matches."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file as a table (schema metadata kept)."""
    with FileSystems.open(path) as handle:
        return pq.read_table(handle, columns=columns)


def _move(source: str, destination: str) -> None:
    """Rename a file (atomic on a local disk), creating the destination folder where folders exist."""
    if not is_remote(destination):
        os.makedirs(os.path.dirname(destination), exist_ok=True)
    FileSystems.rename([source], [destination])


def read_schema(path: str) -> pa.Schema:
    """One Parquet file's schema (with its metadata), without reading the data."""
    with FileSystems.open(path) as handle:
        return pq.read_schema(handle)


def _create(path: str, tmp_dir: str, write: Callable[[BinaryIO], None]) -> None:
    """Write a file under a temporary name in ``tmp_dir`` (no .parquet suffix: no glob sees it), then rename
    it to ``path``. On any error the temporary file is removed; a full disk raises :class:`DiskFullError`
    naming ``path`` (one line: the CLI prints it as is)."""
    tmp = _join(tmp_dir, f".{uuid.uuid4().hex}.tmp")
    try:
        with FileSystems.create(tmp) as handle:
            write(handle)
        _move(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # absent when the create itself failed
            FileSystems.delete([tmp])
        if is_disk_full(exc):
            raise DiskFullError.writing(path, exc, "free space and run again: finished shards are kept") from exc
        raise


def write_table(table: pa.Table, path: str, tmp_dir: str) -> None:
    """Write ``table`` to ``path`` through a temporary file in ``tmp_dir`` (see :func:`_create`)."""
    _create(path, tmp_dir, lambda handle: pq.write_table(table, handle))


def shard_name(run_id: str, video_ids: Iterable[str]) -> str:
    """``<run_id>-<digest of the sorted ids>.parquet``: a retried bundle that writes the same videos
    writes the same name, and names never collide across runs."""
    digest = hashlib.sha1("\n".join(sorted(video_ids)).encode()).hexdigest()[:16]
    return f"{run_id}-{digest}.parquet"


def staging_dir(root: str, run_id: str) -> str:
    return _join(root, STAGING, run_id)


def staged_run_ids(root: str) -> list[str]:
    """Runs with a staging folder holding at least one complete shard, oldest name first."""
    return sorted({path.split("/")[-3] for path in list_files(_join(root, STAGING, "*", "videos", "*.parquet"))})


def write_shard(root: str, run_id: str, keyframes: pa.Table, videos: pa.Table) -> str:
    """Stage one shard of a live run (worker side): keyframes file first, videos file (the completion mark) last."""
    stage = staging_dir(root, run_id)
    name = shard_name(run_id, videos.column("video_id").to_pylist())
    tmp_dir = _join(stage, "tmp")
    if keyframes.num_rows:
        write_table(keyframes, _join(stage, "keyframes", name), tmp_dir)
    write_table(videos, _join(stage, "videos", name), tmp_dir)
    return name


def _ids(path: str) -> list[str]:
    return read_table(path, ["video_id"]).column("video_id").to_pylist()


def _drop(path: str, video_ids: set[str], tmp_dir: str) -> None:
    """Rewrite a Parquet file without the rows of ``video_ids`` (deleted when nothing is left)."""
    if not FileSystems.exists(path):
        return
    table = read_table(path)
    keep = pc.invert(pc.is_in(table.column("video_id"), value_set=pa.array(sorted(video_ids), pa.string())))
    if pc.all(keep).as_py():
        return
    kept = table.filter(keep)
    if kept.num_rows:
        write_table(kept, path, tmp_dir)
    else:
        FileSystems.delete([path])


def commit(root: str, run_id: str) -> list[str]:
    """Publish a run's complete staged shards into ``videos/`` and ``keyframes/`` (see the module
    docstring for the order); returns the committed video ids. Call it holding :func:`run_lock`."""
    stage = staging_dir(root, run_id)
    tmp_dir = _join(stage, "tmp")
    shards = [path.split("/")[-1] for path in list_files(_join(stage, "videos", "*.parquet"))]
    # 1. one shard per video among the staged ones (the first by name wins)
    seen: set[str] = set()
    for name in shards:
        ids = _ids(_join(stage, "videos", name))
        dupes = seen.intersection(ids)
        if dupes:
            for kind in ("videos", "keyframes"):
                _drop(_join(stage, kind, name), dupes, tmp_dir)
        seen.update(ids)
    shards = [name for name in shards if FileSystems.exists(_join(stage, "videos", name))]
    # 2. remove the committed rows these videos replace, in shards that are not this run's
    own = set(shards)
    for path in list_files(_join(root, "videos", "*.parquet")):
        name = path.split("/")[-1]
        replaced = seen.intersection(_ids(path)) if name not in own else set()
        if replaced:
            _drop(path, replaced, tmp_dir)  # videos first: from here on its keyframes rows are invisible
            _drop(_join(root, "keyframes", name), replaced, tmp_dir)
    # 3. publish: keyframes first, videos (the commit record) last
    for name in shards:
        for kind in KINDS:
            source = _join(stage, kind, name)
            if FileSystems.exists(source):
                _move(source, _join(root, kind, name))
    if FileSystems.exists(stage):
        FileSystems.delete([stage])
    if not is_remote(root):
        with contextlib.suppress(OSError):  # other runs still staged: keep the folder
            os.rmdir(_join(root, STAGING))
    return sorted(seen)


def commit_folder(root: str, folder: str, run_id: str) -> list[str]:
    """Commit shards written to ``folder`` (``keyframes/`` and ``videos/`` under it, a place no reader or
    recovery looks): one rename makes it ``run_id``'s staging folder, which :func:`commit` then publishes.
    Locally that rename is atomic, so a kill leaves either nothing staged or every shard (which the next
    run's :func:`recover` commits). Call it holding :func:`run_lock`."""
    _move(folder, staging_dir(root, run_id))
    return commit(root, run_id)


def recover(root: str) -> dict[str, list[str]]:
    """Commit what runs that were killed left staged (finished shards are kept, unfinished ones
    dropped); returns run id -> video ids recovered. Call it holding :func:`run_lock`."""
    recovered = {run_id: commit(root, run_id) for run_id in staged_run_ids(root)}
    staging = _join(root, STAGING)  # what is left: runs killed before they finished a shard
    if FileSystems.exists(staging):
        FileSystems.delete([staging])
    return recovered


@contextlib.contextmanager
def run_lock(root: str) -> Iterator[None]:
    """Hold RUN/.lock for the life of a run, so two runs never commit into one local directory at once.

    The lock is an flock: the kernel drops it when the process dies, so a killed run never leaves a
    stale lock. Remote directories have no lock: run one job per directory at a time there.
    """
    if is_remote(root):
        yield
        return
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, ".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{root}: another styleaxis embed run holds {root}/.lock; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_run_log(root: str, run_id: str, summary: dict[str, Any]) -> str:
    """Write ``_runs/<run_id>.json`` (atomically, last thing a run does): what the run did."""
    path = _join(root, RUNS, f"{run_id}.json")
    text = json.dumps(summary, indent=2, sort_keys=True, default=str).encode()
    _create(path, _join(root, RUNS), lambda handle: handle.write(text))
    return path
