"""An index directory's generations: one writer at a time, the switch to a new one, the old one's retirement.

A build or ``--add`` writes generation g+1 beside g and switches by replacing manifest.json. Two
things keep that safe with other processes around:

- **one writer**: the writer holds an flock on ``DIR/.lock`` (the kernel drops it when the process
  dies, so a killed build leaves no stale lock); a second writer is refused with a clear error;
- **readers are never pulled from under**: a reader that read manifest g may open g's files a moment
  later, so g's files are not deleted at the switch but *retired* (listed in ``DIR/.retired.json``
  with the time) and deleted by a later build once ``grace_s`` has passed. ``Searcher.load`` also
  re-reads the manifest once when a file it lists has gone (a switch happened while it loaded).
"""
from __future__ import annotations

import fcntl
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ._io import atomic_open
from .manifest import MANIFEST_FILE, IndexManifest

__all__ = ["LOCK_FILE", "RETIRED_FILE", "writer_lock", "discard_unpublished", "previous_manifest", "commit"]

LOCK_FILE = ".lock"
RETIRED_FILE = ".retired.json"
#: manifest.artifact_name's files (``style.g3.faiss``) and atomic_open's temp files (``.style.g3.faiss.x1y2.tmp``)
_ARTIFACT = re.compile(r".+\.g(\d+)\.(?:faiss|npy|npz|parquet)")
_TEMP = re.compile(r"\..+\.tmp")


@contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """Hold ``index_dir/.lock`` while writing a generation; ValueError when another writer holds it."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{index_dir}: another `styleaxis index build` is writing this index (it holds "
                             f"{index_dir / LOCK_FILE}); run again when it has finished") from None
        try:
            discard_unpublished(index_dir)  # what a writer killed or out of disk left: frees its space first
            try:
                yield
            except BaseException:
                with suppress(OSError):  # the writer's own error is the one to report
                    discard_unpublished(index_dir)
                raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def discard_unpublished(index_dir: Path) -> list[str]:
    """Delete the files of generations newer than manifest.json's (written by a build that never switched to
    them) and stray temp files of atomic writes; returns their names. Nothing is deleted beside a manifest
    this version cannot read. Call it holding :func:`writer_lock`."""
    current = previous_manifest(index_dir)
    if current is None and (index_dir / MANIFEST_FILE).exists():
        return []
    newest = current.generation if current else 0
    gone = []
    for path in index_dir.iterdir():
        match = _ARTIFACT.fullmatch(path.name)
        if (match and int(match[1]) > newest) or _TEMP.fullmatch(path.name):
            path.unlink(missing_ok=True)
            gone.append(path.name)
    return sorted(gone)


def previous_manifest(index_dir: Path) -> IndexManifest | None:
    """The manifest already in index_dir, or None (absent, or an older format whose files are left alone)."""
    if not (index_dir / MANIFEST_FILE).exists():
        return None
    try:
        return IndexManifest.load(index_dir)
    except ValueError:
        return None


def commit(index_dir: Path, manifest: IndexManifest, previous: IndexManifest | None, grace_s: float) -> IndexManifest:
    """Write manifest.json (the switch to the new generation), retire the previous generation's files, and
    delete the files retired at least ``grace_s`` seconds ago."""
    manifest.save(index_dir)
    now = time.time()
    retired = _read_retired(index_dir)
    for name in set(previous.files if previous else ()) - set(manifest.files):
        retired.setdefault(name, now)
    kept = {}
    for name, since in sorted(retired.items()):
        if name in manifest.files:  # a file name the new generation uses again is not retired
            continue
        if now - since >= grace_s:
            (index_dir / name).unlink(missing_ok=True)
        else:
            kept[name] = since
    with atomic_open(index_dir / RETIRED_FILE) as f:
        f.write(json.dumps(kept, indent=1, sort_keys=True).encode())
    return manifest


def _read_retired(index_dir: Path) -> dict[str, float]:
    """Retired file name -> when it was retired; an unreadable list is treated as empty (files of unknown
    age are then retired anew, so nothing a reader may hold is deleted early)."""
    try:
        data = json.loads((index_dir / RETIRED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}

