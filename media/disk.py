"""Running out of disk: one error, naming the file being written, for every writer of the project.

A full disk (ENOSPC, or EDQUOT: a quota) is neither a bug nor bad input. Writers catch the OSError where
they know the file's final name, remove their temporary file, and raise :class:`DiskFullError`; the
command line prints it as one line and exits 1 (styleaxis.cli.common.CliGroup).
"""
from __future__ import annotations

import errno
import os

__all__ = ["DiskFullError", "is_disk_full", "find_disk_full"]

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left while writing a file; ``str()`` is one line: the file, the cause and what to do.

    Built from its message alone, so Beam's step annotation (``type(exc)(message + " [while running ...]")``)
    keeps the type, and it pickles across worker processes.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC  # str() stays the message: OSError formats errno only with a strerror

    @classmethod
    def writing(cls, path: object, cause: BaseException, advice: str) -> DiskFullError:
        """``<path>: no space left on device (28); <advice>`` (or the quota's wording for EDQUOT)."""
        found = _full_os_error(cause)
        code = found.errno if found is not None and found.errno in _FULL else errno.ENOSPC
        return cls(f"{path}: {os.strerror(code).lower()} ({code}); {advice}")


def _chain(exc: BaseException | None):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _full_os_error(exc: BaseException | None) -> OSError | None:
    for link in _chain(exc):
        if isinstance(link, OSError) and (link.errno in _FULL or "no space left on device" in str(link).lower()):
            return link
    return None


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from or while handling, is a full disk or quota."""
    return _full_os_error(exc) is not None


def find_disk_full(exc: BaseException | None) -> DiskFullError | None:
    """The first :class:`DiskFullError` in ``exc``'s chain (``__cause__``, else ``__context__``), or None."""
    return next((link for link in _chain(exc) if isinstance(link, DiskFullError)), None)
