"""Turn the user's inputs (files, folders, globs, manifests) into a list of (video_id, uri), and read
an input's bytes wherever it lives (local path or bucket URI): its content hash, a local copy.

A manifest is a CSV or Parquet table with a ``uri`` column and an optional ``video_id`` column;
relative URIs are taken relative to the manifest's folder, URIs with a scheme (gs://, s3://) are
kept as they are. Video ids must be unique: they key the ``videos/`` rows across runs.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import pandas as pd

__all__ = ["MEDIA_SUFFIXES", "Inputs", "collect_inputs", "expand_inputs", "read_manifest", "is_remote", "local_copy",
           "content_hash"]

_SAMPLE_BYTES = 1 << 20

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


@dataclass(frozen=True)
class Inputs:
    """What the user's inputs name: (video_id, uri) pairs sorted by uri, and one line per entry left out."""

    videos: list[tuple[str, str]]
    skipped: list[str]


def _expand_arg(arg: str) -> tuple[list[str], list[str]]:
    """The URIs an argument names, and why entries it covers were left out.

    A folder gives every entry with a media suffix, whatever it is (a file, a symlink loop, a folder
    named like a video: the job turns each into a row, failed with the reason), and a line for each
    file without one. A glob gives its matches (a line when it matches nothing). Anything else is taken
    as named, existing or not: a missing file becomes a failed row, as in a manifest.
    """
    if is_remote(arg):
        from apache_beam.io.filesystems import FileSystems  # remote globs (gs://, s3://): Beam's filesystems

        if not glob.has_magic(arg):
            return [arg], []
        found = [m.path for m in FileSystems.match([arg])[0].metadata_list]
        return found, [] if found else [f"{arg}: the pattern matches nothing"]
    path = Path(arg)
    if path.is_dir():
        return _walk(path)
    if path.exists() or path.is_symlink() or not glob.has_magic(arg):
        return [str(path.absolute())], []
    found = sorted(str(Path(m).absolute()) for m in glob.glob(arg, recursive=True) if not Path(m).is_dir())
    return found, [] if found else [f"{arg}: the pattern matches nothing"]


def _walk(folder: Path) -> tuple[list[str], list[str]]:
    """Every entry below ``folder`` with a media suffix (not following symlinked folders), and a line for
    each other file."""
    found, skipped = [], []
    for root, dirs, files in os.walk(folder):  # symlink loops and links to folders are listed, not entered
        for name in sorted(dirs + files):
            entry = Path(root) / name
            if Path(name).suffix.lower() in MEDIA_SUFFIXES:
                found.append(str(entry.absolute()))
            elif name in files:
                skipped.append(f"{entry}: not a media file (suffix {Path(name).suffix or 'none'})")
            elif entry.is_symlink():  # a link to a folder: not followed (it may loop), but said
                skipped.append(f"{entry}: a link to a folder, not followed (name the folder itself to include it)")
    return found, skipped


def collect_inputs(inputs: Sequence[str], manifests: Sequence[str | os.PathLike[str]] = (),
                   known: Mapping[str, str] | None = None) -> Inputs:
    """Expand files, folders, glob patterns and manifests into (video_id, uri) pairs sorted by uri.

    Every input named, and every media entry a folder holds, becomes one pair (the job makes it a row,
    failed with the reason when it cannot be read); what is left out gets a line in ``skipped``. Ids
    come from manifests where given, else from ``known`` (uri -> id already given in the run, so a file
    keeps its id when others join it), else from the file stem, with a short hash of the path when the
    stem is taken. Raises ValueError for an id given to two different URIs.
    """
    named: dict[str, str | None] = {}
    for manifest in manifests:
        for video_id, uri in read_manifest(manifest):
            named[uri] = video_id or named.get(uri)
    skipped: list[str] = []
    for arg in inputs:
        found, left_out = _expand_arg(arg)
        skipped += left_out
        for uri in found:
            named.setdefault(uri, None)
    known = dict(known or {})
    for uri, video_id in named.items():
        if video_id is None and uri in known:
            named[uri] = known[uri]
    taken: set[str] = set(known.values())
    given: set[str] = set()
    for video_id in named.values():
        if video_id is not None:
            if video_id in given:
                raise ValueError(f"video_id {video_id!r} is given to two different URIs")
            given.add(video_id)
    taken |= given
    return Inputs([(named[uri] or _video_id(uri, taken), uri) for uri in sorted(named)], skipped)


def expand_inputs(inputs: Sequence[str], manifests: Sequence[str | os.PathLike[str]] = ()) -> list[tuple[str, str]]:
    """The (video_id, uri) pairs of :func:`collect_inputs`, for a run that starts empty."""
    return collect_inputs(inputs, manifests).videos


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """Whether a URI names an object store path (gs://, s3://, ...) rather than a local file."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def _open_binary(uri: str | os.PathLike[str]) -> BinaryIO:
    """A seekable binary reader for a local path or, through Beam's filesystems, a remote URI."""
    if not is_remote(uri):
        return Path(uri).open("rb")
    from apache_beam.io.filesystems import FileSystems  # imported only for remote inputs (slow import)

    return FileSystems.open(str(uri))


@contextlib.contextmanager
def local_copy(uri: str, folder: str | None = None) -> Iterator[str]:
    """A local path holding ``uri``'s bytes: the path itself when local, else a temporary copy
    (deleted on exit), because the decoders read local files."""
    if not is_remote(uri):
        yield uri
        return
    suffix = Path(uri.rsplit("/", 1)[-1]).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=folder) as copy, _open_binary(uri) as source:
        shutil.copyfileobj(source, copy, _SAMPLE_BYTES)
        copy.flush()
        yield copy.name


def content_hash(path: str | os.PathLike[str], mode: Literal["sampled", "full"] = "sampled") -> str:
    """Hex sha256 identifying a file's content (local path or remote URI), for caching results per input.

    ``"full"`` hashes every byte (equals ``sha256sum``). ``"sampled"`` hashes the size plus the first,
    middle and last MiB: constant cost on huge videos, and files of up to 3 MiB are hashed whole.
    """
    if mode not in ("sampled", "full"):
        raise ValueError(f"mode must be 'sampled' or 'full', got {mode!r}")
    digest = hashlib.sha256()
    with _open_binary(path) as handle:
        if mode == "full":
            for block in iter(lambda: handle.read(_SAMPLE_BYTES), b""):
                digest.update(block)
        else:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(0)
            digest.update(b"sampled:%d:" % size)
            if size <= 3 * _SAMPLE_BYTES:
                digest.update(handle.read())
            else:
                for offset in (0, size // 2 - _SAMPLE_BYTES // 2, size - _SAMPLE_BYTES):
                    handle.seek(offset)
                    digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()
