"""Turn the user's INPUT arguments (files, folders, globs) into a sorted list of (video_id, uri)."""
from __future__ import annotations

import glob
import hashlib
from pathlib import Path

__all__ = ["MEDIA_SUFFIXES", "expand_inputs"]

#: suffixes picked up when a folder is given; an explicitly named file is always taken, so a
#: corrupt or non-video file named by the user becomes a failed row instead of vanishing.
MEDIA_SUFFIXES = frozenset({
    ".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".gif",
    ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff",
})


def _video_id(path: Path, taken: set[str]) -> str:
    # The file stem reads well in answers; a stem seen twice gets a short hash of its path.
    vid = path.stem
    if vid in taken:
        vid = f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    taken.add(vid)
    return vid


def expand_inputs(inputs: list[str]) -> list[tuple[str, str]]:
    """Expand files, folders (recursively, media suffixes only) and glob patterns.

    Returns (video_id, absolute uri) pairs sorted by uri, so ids are stable across runs.
    Raises FileNotFoundError naming the argument that matched nothing.
    """
    paths: set[Path] = set()
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            paths.update(f.resolve() for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MEDIA_SUFFIXES)
        elif p.exists():
            paths.add(p.resolve())
        else:
            matches = [Path(m) for m in glob.glob(arg, recursive=True)]
            files = [m.resolve() for m in matches if m.is_file()]
            if not files:
                raise FileNotFoundError(f"input {arg!r}: no such file, folder or glob match")
            paths.update(files)
    taken: set[str] = set()
    return [(_video_id(p, taken), str(p)) for p in sorted(paths)]
