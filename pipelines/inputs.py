"""Turn the user's inputs (files, folders, globs, manifests) into a list of (video_id, uri).

A manifest is a CSV or Parquet table with a ``uri`` column and an optional ``video_id`` column;
relative URIs are taken relative to the manifest's folder, URIs with a scheme (gs://, s3://) are
kept as they are. Video ids must be unique: they key the ``videos/`` rows across runs.
"""
from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .video_io import is_remote

__all__ = ["MEDIA_SUFFIXES", "expand_inputs", "read_manifest"]

#: suffixes picked up when a folder is given; an explicitly named file is always taken, so a
#: corrupt or non-video file named by the user becomes a failed row instead of vanishing.
MEDIA_SUFFIXES = frozenset({
    ".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".gif",
    ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff",
})


def _video_id(uri: str, taken: set[str]) -> str:
    # The file stem reads well in answers; a stem seen twice gets a short hash of its path.
    stem = Path(uri.rsplit("/", 1)[-1]).stem
    vid = stem
    if vid in taken:
        vid = f"{stem}-{hashlib.sha1(uri.encode()).hexdigest()[:8]}"
    taken.add(vid)
    return vid


def read_manifest(path: str | os.PathLike[str]) -> list[tuple[str | None, str]]:
    """(video_id or None, uri) rows of a CSV or Parquet manifest, in file order.

    Raises ValueError naming the file when the ``uri`` column is missing or a URI is empty.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        table = pd.read_parquet(path)
    elif path.suffix.lower() == ".csv":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        raise ValueError(f"manifest {path}: expected a .csv or .parquet file")
    if "uri" not in table.columns:
        raise ValueError(f"manifest {path}: needs a 'uri' column (optional 'video_id'), "
                         f"got columns {list(table.columns)}")
    table = table.fillna("").astype(str)
    ids = table["video_id"] if "video_id" in table.columns else pd.Series([""] * len(table))
    rows: list[tuple[str | None, str]] = []
    for i, (video_id, uri) in enumerate(zip(ids.str.strip(), table["uri"].str.strip()), start=1):
        if not uri:
            raise ValueError(f"manifest {path}: row {i} has an empty uri")
        if not is_remote(uri) and not os.path.isabs(uri):
            uri = str((path.parent / uri).resolve())
        rows.append((video_id or None, uri))
    return rows


def _expand_arg(arg: str) -> list[str]:
    """The files an argument names: a file, a folder (recursively, media suffixes only) or a glob."""
    if is_remote(arg):
        from apache_beam.io.filesystems import FileSystems  # remote globs (gs://, s3://): Beam's filesystems

        found = [m.path for m in FileSystems.match([arg])[0].metadata_list]
    else:
        p = Path(arg)
        if p.is_dir():
            return [str(f.resolve()) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MEDIA_SUFFIXES]
        if p.exists():
            return [str(p.resolve())]
        found = [str(Path(m).resolve()) for m in glob.glob(arg, recursive=True) if Path(m).is_file()]
    if not found:
        raise FileNotFoundError(f"input {arg!r}: no such file, folder or glob match")
    return found


def expand_inputs(inputs: Sequence[str], manifests: Sequence[str | os.PathLike[str]] = ()) -> list[tuple[str, str]]:
    """Expand files, folders, glob patterns and manifests into (video_id, uri) pairs sorted by uri.

    Ids come from manifests where given, else from the file stem (stable across runs, since the
    pairs are sorted by uri). Raises FileNotFoundError naming an argument that matched nothing and
    ValueError for an id given to two different URIs.
    """
    named: dict[str, str | None] = {}
    for manifest in manifests:
        for video_id, uri in read_manifest(manifest):
            named[uri] = video_id or named.get(uri)
    for arg in inputs:
        for uri in _expand_arg(arg):
            named.setdefault(uri, None)
    taken: set[str] = set()
    for video_id in named.values():
        if video_id is not None:
            if video_id in taken:
                raise ValueError(f"video_id {video_id!r} is given to two different URIs in the manifests")
            taken.add(video_id)
    return [(named[uri] or _video_id(uri, taken), uri) for uri in sorted(named)]
