"""Run a function in a persistent child process, with a time limit per call.

Why: video decoders are C libraries fed with untrusted bytes; on crafted input some hang or crash
the process (segfault, abort). Called in-process, that would take the Beam worker down and fail
the job. :class:`IsolatedCall` keeps one child process alive and sends it one call at a time, so a
call costs a pickled argument tuple and a pickled result over a pipe (bench/decode.py measures it
against in-process decoding) rather than a process start. A call that runs past its time limit
gets the child killed (:class:`CallTimedOut`); a child that dies mid-call is reported with the
signal that killed it (:class:`CallCrashed`); either way the next call starts a fresh child.
"""
from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

__all__ = ["IsolatedCall", "CallTimedOut", "CallCrashed"]

T = TypeVar("T")
STARTUP_TIMEOUT_S = 120.0  # seconds for a fresh child to import the function's module


class CallTimedOut(Exception):
    """The call did not return within the time limit; the child process was killed."""


class CallCrashed(Exception):
    """The child process died during the call (a crash in native code, or killed from outside)."""


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
        except Exception as exc:  # the parent re-raises it; the child keeps serving
            reply = ("raise", exc)
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an unpicklable error or result
            conn.send(("raise", RuntimeError(f"{type(reply[1]).__name__} could not be sent back: {exc}")))


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
    raised by ``fn`` are re-raised in the caller unchanged. Not thread-safe: use one instance per
    thread (a Beam DoFn instance is used by one thread at a time).
    """

    def __init__(self, fn: Callable[..., T], timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.fn, self.timeout_s = fn, float(timeout_s)
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
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())], pass_fds=(theirs.fileno(),), env=env)
            theirs.close()
            self._conn = Connection(ours.detach())
            self._conn.send(self.fn)
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
    _function = _connection.recv()
    _connection.send("ready")
    _serve(_connection, _function)
