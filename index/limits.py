"""What one request may cost the service: a bounded JSON body, and uploads decoded by isolated workers.

- :class:`BodyLimit` (ASGI middleware) refuses a request body over its limit with 413 before the app
  parses it: by Content-Length, else while the body streams in. A 112 MB JSON body used to be parsed
  whole (four at once took 3.6 GB).
- :class:`UploadDecoders` checks an upload's header against :class:`MediaLimits` and decodes it in
  one of a few persistent child processes (:class:`IsolatedCall`, each with a time and a memory
  limit), so a crafted file costs at most one worker, which is replaced, never the server. Each
  worker serves one request at a time (IsolatedCall is not thread-safe): a request waits for a free
  one, up to the decode time limit, then gets :class:`DecodersBusy`. The embedder stays in the server
  process: one copy of the models, under FileQuery's lock.
"""
from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from styleaxis.media.isolation import IsolatedCall
from styleaxis.media.limits import MediaLimits, read_frames_within

__all__ = ["BodyLimit", "DecodersBusy", "UploadDecoders"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Refusal = Callable[[str], ASGIApp]  # message -> the 413 response to send


class BodyLimit:
    """ASGI middleware: bodies of more than ``limit`` bytes get ``refuse(message)`` (a 413) unparsed.

    ``exempt`` paths read their body themselves under their own limit (the file upload). A body
    within the limit is read here, at most ``limit`` bytes, and handed to the app unchanged.
    """

    def __init__(self, app: ASGIApp, *, limit: int, refuse: Refusal, exempt: frozenset[str] = frozenset()) -> None:
        self.app, self.limit, self.refuse, self.exempt = app, limit, refuse, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            message = f"request body of {int(declared)} bytes exceeds the limit of {self.limit} bytes"
            await self.refuse(message)(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            body += event.get("body", b"")
            more = event.get("more_body", False)
            if len(body) > self.limit:
                await self.refuse(f"request body exceeds the limit of {self.limit} bytes")(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the client's disconnect
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


class DecodersBusy(Exception):
    """Every decoder worker stayed busy for the whole wait."""


class UploadDecoders:
    """A FrameReader for uploads: header caps, then ``reader`` in an isolated worker process.

    ``reader`` (path -> frames) runs in the worker, so it must pickle by reference (a module-level
    function); None decodes as the nightly job does. Workers start on first use; the reader's module
    is imported then, before the memory limit is set, so imports never count against it.
    """

    def __init__(self, limits: MediaLimits, *, workers: int, timeout_s: float, memory_mb: int | None,
                 reader: Callable[[Path], list[np.ndarray]] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.wait_s = timeout_s
        read = functools.partial(read_frames_within, limits=limits, reader=reader)  # sent once per worker
        self._idle: queue.SimpleQueue[IsolatedCall[list[np.ndarray]]] = queue.SimpleQueue()
        self._all = [IsolatedCall(read, timeout_s, memory_mb) for _ in range(workers)]
        for worker in self._all:
            self._idle.put(worker)
        self._closed = threading.Event()

    def __call__(self, path: Path) -> list[np.ndarray]:
        """The upload's frames; raises MediaTooLarge, CallTimedOut, CallOutOfMemory, CallCrashed,
        ValueError (unreadable) or DecodersBusy."""
        try:
            worker = self._idle.get(timeout=self.wait_s)
        except queue.Empty:
            raise DecodersBusy(f"all {len(self._all)} decoders stayed busy for {self.wait_s:g} s") from None
        try:
            return worker(path)
        finally:
            self._idle.put(worker)
            if self._closed.is_set():
                worker.close()

    def close(self) -> None:
        """Stop the idle workers now, and each busy one when its call returns."""
        self._closed.set()
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
