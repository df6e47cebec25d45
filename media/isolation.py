"""Run a function in a persistent child process, with a time limit per call and an optional memory limit.

Why: video decoders are C libraries fed with untrusted bytes; on crafted input some hang, crash the
process (segfault, abort) or allocate gigabytes. Called in-process, that would take the Beam worker
or the HTTP server down. :class:`IsolatedCall` keeps one child process alive and sends it one call
at a time, so a call costs a pickled argument tuple and a pickled result over a pipe (bench/decode.py
measures it against in-process decoding) rather than a process start. A call that runs past its
time limit gets the child killed (:class:`CallTimedOut`); a child that dies mid-call is reported with
the signal that killed it (:class:`CallCrashed`); a call that exhausts the memory limit is reported
as :class:`CallOutOfMemory`; in each case the next call starts a fresh child.

The memory limit is set by the child itself (``resource.setrlimit(RLIMIT_AS)``, once its imports are
done), not through ``preexec_fn``, which is unsafe in a multi-threaded parent such as a web server.
Used by the nightly job's decoder (styleaxis.pipelines.beam) and the service's upload decoders.
"""
from __future__ import annotations

import os
import pickle
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

__all__ = ["IsolatedCall", "CallTimedOut", "CallCrashed", "CallOutOfMemory"]

T = TypeVar("T")
STARTUP_TIMEOUT_S = 120.0  # seconds for a fresh child to import the function's module


class CallTimedOut(Exception):
    """The call did not return within the time limit; the child process was killed."""


class CallCrashed(Exception):
    """The child process died during the call (a crash in native code, or killed from outside)."""


class CallOutOfMemory(Exception):
    """The call raised MemoryError under the child's memory limit; the child process was replaced."""


def _limit_memory(memory_mb: int | None) -> None:
    """Cap this process's address space at its current size plus ``memory_mb`` MiB (RLIMIT_AS).

    Relative to the size after imports, so the limit means the same on machines whose libraries
    reserve different amounts of address space at import (BLAS buffers, one stack per thread).
    """
    if memory_mb is None:
        return
    with open("/proc/self/statm") as statm:  # first field: address space in pages
        current = int(statm.read().split()[0]) * resource.getpagesize()
    limit = current + memory_mb * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _serve(conn: Connection, fn: Callable[..., Any]) -> None:
    """Child loop: receive an argument tuple, call ``fn``, send back ("ok", result) or ("raise", error)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us
    while True:
        try:
            args = conn.recv()
        except EOFError:  # the parent closed its end: we are done
            return
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except MemoryError as exc:  # the parent replaces this process: its heap may be fragmented
            reply = ("oom", _first_line(exc))
        except Exception as exc:  # the parent re-raises it; the child keeps serving
            reply = ("raise", exc)
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an unpicklable error or result
            conn.send(("raise", RuntimeError(f"{type(reply[1]).__name__} could not be sent back: {exc}")))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _describe_exit(code: int | None) -> str:
    """'SIGSEGV' for a process killed by a signal, 'exit code N' otherwise."""
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class IsolatedCall(Generic[T]):
    """``fn(*args)`` evaluated in a persistent child process, at most ``timeout_s`` seconds per call.

    ``fn`` and its arguments and result must pickle (``fn`` by reference: a module-level function).
    The child starts on the first call (with the caller's ``sys.path``) and is reused; exceptions
    raised by ``fn`` are re-raised in the caller unchanged. With ``memory_mb``, the child may grow
    its address space by at most that many MiB beyond what its imports took; a MemoryError there
    becomes :class:`CallOutOfMemory` (native code that aborts on a failed allocation instead gives
    :class:`CallCrashed`). Not thread-safe: use one instance per thread (a Beam DoFn instance is
    used by one thread at a time; the service keeps a pool).
    """

    def __init__(self, fn: Callable[..., T], timeout_s: float, memory_mb: int | None = None) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if memory_mb is not None and not memory_mb > 0:
            raise ValueError(f"memory_mb must be > 0 or None, got {memory_mb}")
        self.fn, self.timeout_s, self.memory_mb = fn, float(timeout_s), memory_mb
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> "IsolatedCall[T]":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The child's process id, None when no child is running."""
        return self._process.pid if self._process is not None else None

    def __call__(self, *args: Any) -> T:
        """``fn(*args)`` in the child; raises CallTimedOut or CallCrashed when the child does not answer."""
        conn = self._start()
        try:
            conn.send(args)
            answered = conn.poll(self.timeout_s)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            answered = True  # the child is gone; recv below reports how it died
        if not answered:
            self._stop(kill=True)
            raise CallTimedOut(f"timed out after {self.timeout_s:g} s (decoder process killed)")
        try:
            kind, value = conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            code = self._stop(kill=True)
            raise CallCrashed(f"decoder process crashed ({_describe_exit(code)})") from None
        if kind == "oom":
            self._stop(kill=True)
            raise CallOutOfMemory(f"ran out of memory (limit {self.memory_mb} MiB; decoder process replaced): {value}")
        if kind == "raise":
            raise value
        return value

    def close(self) -> None:
        """Stop the child (it exits when its pipe closes; killed if it does not within a second)."""
        self._stop(kill=False)

    def _start(self) -> Connection:
        if self._process is None or self._process.poll() is not None:
            self._stop(kill=True)
            ours, theirs = socket.socketpair()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            if self.memory_mb is not None:  # glibc reserves 64 MiB of address space per thread arena,
                env["MALLOC_ARENA_MAX"] = "2"  # which RLIMIT_AS counts though it is never touched
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())], pass_fds=(theirs.fileno(),), env=env)
            theirs.close()
            self._conn = Connection(ours.detach())
            self._conn.send((self.fn, self.memory_mb))
            # start-up (imports) is not part of any call's time limit; the child says when it is ready
            try:
                ready = self._conn.poll(STARTUP_TIMEOUT_S) and self._conn.recv() == "ready"
            except (EOFError, ConnectionResetError, OSError):
                ready = False
            if not ready:
                code = self._stop(kill=True)
                raise CallCrashed(f"decoder process did not start ({_describe_exit(code)})")
        assert self._conn is not None
        return self._conn

    def _stop(self, kill: bool) -> int | None:
        """End the child; returns its exit code (negative: the signal that ended it)."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if kill and process.poll() is None:
            process.kill()
        try:
            return process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


if __name__ == "__main__":  # the child: serve calls on the socket whose descriptor is argv[1]
    _connection = Connection(int(sys.argv[1]))
    _function, _memory_mb = _connection.recv()  # unpickling the function imports its module
    _limit_memory(_memory_mb)
    _connection.send("ready")
    _serve(_connection, _function)
