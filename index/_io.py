"""File helpers shared by the index writer and reader: atomic writes, content hashes, .npy row streams.

`sha256_file` here is deliberately uncached. styleaxis.embed.registry.sha256_file caches digests by
(path, size, mtime), which is right for weight files that are checked on every model load, but
wrong for an integrity check: a file changed in place with its size and mtime kept (bit rot,
`cp -p` or `rsync -t` of another build's file, a restored backup) would be reported unchanged,
and each rebuild would add entries to that cache for files that no longer exist.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..media.disk import DiskFullError, is_disk_full


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (streamed by hashlib, so large matrices need not fit in memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Yield a temp file next to `path`; on success fsync it and rename it over `path`.

    Readers see either the previous file or the complete new one, never a torn write;
    on error the temp file is removed and `path` is left untouched. A full disk raises
    DiskFullError naming `path`, one line (styleaxis.media.disk).
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; index files are meant to be shared read-only
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFullError.writing(path, exc, "free space and run again: the index still loads its last "
                                                   "complete generation") from exc
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def write_npy_rows(f: BinaryIO, shape: tuple[int, int], blocks: Iterable[np.ndarray]) -> None:
    """Write a C-order float32 .npy of `shape` from row blocks, without holding the whole matrix.

    Used to append rows to a memory-mapped matrix: the old rows stream from the map, the new
    ones follow, and the total must match the header.
    """
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
    written = 0
    for block in blocks:
        block = np.ascontiguousarray(block, dtype="<f4")
        if block.ndim != 2 or block.shape[1] != shape[1]:
            raise ValueError(f"row block of shape {block.shape} does not fit a matrix of shape {shape}")
        f.write(block.tobytes())
        written += len(block)
    if written != shape[0]:
        raise ValueError(f"wrote {written} rows, the .npy header promises {shape[0]}")
