"""IsolatedCall's memory limit: set by the child itself, an exhausted limit comes back as CallOutOfMemory
and the next call gets a fresh child (hangs and crashes: tests/test_pipeline_faults.py)."""
from __future__ import annotations

import pytest

from styleaxis.media.isolation import CallOutOfMemory, IsolatedCall


def test_memory_limit_is_applied_in_the_child_and_reported() -> None:
    with IsolatedCall(bytearray, timeout_s=30, memory_mb=64) as call:
        assert len(call(16 * 2**20)) == 16 * 2**20  # within the limit
        first = call.pid
        with pytest.raises(CallOutOfMemory, match=r"ran out of memory \(limit 64 MiB.*MemoryError"):
            call(2**30)
        assert call.pid is None  # replaced: the next call starts a fresh child
        assert len(call(1024)) == 1024 and call.pid != first
    with IsolatedCall(bytearray, timeout_s=30) as unlimited:  # no limit: the parent's
        assert len(unlimited(2**28)) == 2**28
    with pytest.raises(ValueError, match="memory_mb must be > 0"):
        IsolatedCall(bytearray, timeout_s=1, memory_mb=0)
