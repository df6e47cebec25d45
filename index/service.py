"""The HTTP query service: a FastAPI app over one index directory, served by uvicorn.

The index is loaded once, in a background thread started with the app, so `/health` (liveness)
answers at once while `/ready` (readiness) says 503 until the files are verified and the canary
queries pass (or names the error if loading failed). Every error is JSON,
``{"error": {"code": ..., "message": ...}}``, with a status that says whose fault it is:
400 malformed JSON, 404 unknown video id, 413 upload too large, 415 unreadable file, 422 a
request that is valid JSON but not a valid query (wrong dimension, negative k, other models),
503 not ready. OpenAPI docs are at /docs and /openapi.json; they declare these responses.

What one request may cost is bounded (ServiceConfig, index/limits.py): the JSON body's bytes, the
upload's bytes, and for an upload the pixels per frame and seconds its header declares (413
``too_large``, checked before anything is decoded); uploads are decoded in isolated worker
processes with a time and a memory limit (422 ``too_costly`` when either is exhausted). No body
names a path of the server.
"""

from __future__ import annotations

import mimetypes
import tempfile
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import faiss
import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from threadpoolctl import threadpool_limits

from styleaxis.embed.embedder import Embedder
from styleaxis.media.isolation import CallCrashed, CallOutOfMemory, CallTimedOut
from styleaxis.media.limits import MediaLimits, MediaTooLarge

from .files import FileQuery, FrameReader
from .limits import BodyLimit, DecodersBusy, UploadDecoders
from .search import Mode, Result, SearchConfig, Searcher, UnknownVideoError

MAX_K = 1000
MAX_BATCH = 256
#: finite bounds on client numbers, so no score overflows float32 into inf/NaN (a null in the JSON answer)
Weight = Annotated[float, Field(ge=-1e3, le=1e3, allow_inf_nan=False)]
Component = Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)]
DEFAULT_MODE: Mode = "same-style-different-content"


@dataclass(frozen=True)
class ServiceConfig:
    """What one request may cost, and whether to re-hash every index file on load.

    Defaults are sized for a short-video catalogue served from a small machine (2 cores):
    peak decoder memory is about decode_workers * (decode_memory_mb + ~100 MB of imports).
    """

    #: body of POST /search/file: a phone video of a minute or two, or any photo
    max_upload_bytes: int = 32 * 2**20
    #: body of every other request: 256 batch vectors of ~1,100 floats as JSON are about 6 MB
    max_json_bytes: int = 8 * 2**20
    #: width * height of an uploaded image or video frame: 8K video (33.2 MP) and 40 MP photos pass,
    #: a 12000 x 12000 PNG (144 MP, 430 MB of RGB) does not
    max_pixels: int = 40_000_000
    #: duration of an uploaded video: the catalogue holds short videos, and the key-frame index is
    #: built from every packet, so work grows with duration
    max_seconds: float = 600.0
    #: wall time to decode one upload in a worker (an 8K 10 s clip took 11.5 s on 2 cores)
    decode_timeout_s: float = 30.0
    #: address space a decoder worker may add beyond its imports (MiB); a 40 MP image needs ~500 MB
    decode_memory_mb: int = 1536
    #: decoder worker processes; uploads beyond that wait for one, up to decode_timeout_s (then 503)
    decode_workers: int = 2
    verify: bool = True

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_json_bytes", "max_pixels", "max_seconds", "decode_timeout_s",
                     "decode_memory_mb", "decode_workers"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServiceConfig.{name} must be > 0, got {getattr(self, name)}")

    @property
    def media_limits(self) -> MediaLimits:
        return MediaLimits(max_pixels=self.max_pixels, max_seconds=self.max_seconds)


class ServiceError(Exception):
    """An error the client caused or should know about, with its HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ErrorDetail(BaseModel):
    code: str = Field(description="stable code: malformed_json, unknown_video, too_large, bad_file, "
                                  "invalid_request, bad_query, too_costly, not_ready, busy, http_error")
    message: str = Field(description="one line for a person")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


_ERRORS = {
    400: "The body is not valid JSON (malformed_json).",
    404: "A video id is not in the index (unknown_video).",
    413: "The body, or the pixels per frame or seconds an upload's header declares, exceed a limit (too_large).",
    415: "The upload cannot be read as an image or a video (bad_file).",
    422: "Valid JSON but not a valid query: a parameter out of range, wrong vector dimension, other models "
         "(invalid_request, bad_query); or an upload whose decoding exceeds the time or memory limit (too_costly).",
    503: "The index is not loaded yet or failed to load (not_ready); or every decoder is busy (busy).",
}


def _declared(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, with the error schema."""
    return {status: {"model": ErrorResponse, "description": _ERRORS[status]} for status in statuses}


def _no_null(data: Any, *keys: str) -> Any:
    """Refuse an explicit null for the one-of keys (the schema says: omit it), before field validation."""
    if isinstance(data, dict):
        for key in keys:
            if key in data and data[key] is None:
                raise ValueError(f"{key} may not be null: omit it")
    return data


class _Options(BaseModel):
    """What every query takes besides the query itself."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = DEFAULT_MODE
    k: int = Field(10, ge=1, le=MAX_K, description="number of results")
    allow: list[str] | None = Field(None, description="only these video ids may be returned")
    exclude: list[str] | None = Field(None, description="these video ids are never returned")
    weights: dict[Literal["style", "content"], Weight] | None = Field(
        None, description="per-axis weights of mode 'weighted', e.g. {'style': 1, 'content': -0.5}"
    )
    model_identity: dict[str, str] | None = Field(
        None, description="model id -> sha256 of the models that made `vectors` (required with vectors)"
    )

    def options(self) -> dict[str, Any]:
        """Keyword arguments for Searcher.search / search_batch."""
        return {"mode": self.mode, "k": self.k, "allow": self.allow, "exclude": self.exclude,
                "weights": self.weights, "model_identity": self.model_identity}


class SearchRequest(_Options):
    """One query: an indexed video id, or raw descriptor vectors (descriptor -> list of floats)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["video_id"]}, {"required": ["vectors"]}]})

    video_id: str | SkipJsonSchema[None] = Field(None, json_schema_extra=lambda schema: schema.pop("default"))
    vectors: dict[str, list[Component]] | SkipJsonSchema[None] = Field(
        None, json_schema_extra=lambda schema: schema.pop("default"))

    @model_validator(mode="before")
    @classmethod
    def _no_null_query(cls, data: Any) -> Any:
        return _no_null(data, "video_id", "vectors")

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if (self.video_id is None) == (self.vectors is None):
            raise ValueError("give exactly one of video_id or vectors")
        return self


class BatchSearchRequest(_Options):
    """Many queries: video ids, or vectors as descriptor -> list of vectors (same count per descriptor)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["video_ids"]}, {"required": ["vectors"]}]})

    video_ids: list[str] | SkipJsonSchema[None] = Field(
        None, min_length=1, max_length=MAX_BATCH, json_schema_extra=lambda schema: schema.pop("default"))
    vectors: dict[str, list[list[Component]]] | SkipJsonSchema[None] = Field(
        None, json_schema_extra=lambda schema: schema.pop("default"))

    @model_validator(mode="before")
    @classmethod
    def _no_null_query(cls, data: Any) -> Any:
        return _no_null(data, "video_ids", "vectors")

    @model_validator(mode="after")
    def _one_query_kind(self) -> BatchSearchRequest:
        if (self.video_ids is None) == (self.vectors is None):
            raise ValueError("give exactly one of video_ids or vectors")
        if self.vectors is not None and any(len(rows) > MAX_BATCH for rows in self.vectors.values()):
            raise ValueError(f"at most {MAX_BATCH} query vectors per batch")
        return self


class ResultOut(BaseModel):
    """One answer, as Searcher returns it."""

    video_id: str
    rank: int
    score: float
    style_score: float
    content_score: float
    style_z: float
    content_z: float
    reason: str
    parts: dict[str, float]


class ReadyResponse(BaseModel):
    """Readiness: 200 with the count when ready; 503 with status loading or failed (and why)."""

    status: Literal["ready", "loading", "failed"]
    count: int | None = None
    error: str | None = None


class SearchResponse(BaseModel):
    mode: str
    k: int
    results: list[ResultOut]


class BatchSearchResponse(BaseModel):
    mode: str
    k: int
    results: list[list[ResultOut]]


class _State:
    """The loaded index (or the loading error), shared by all requests."""

    def __init__(self) -> None:
        self.searcher: Searcher | None = None
        self.files: FileQuery | None = None
        self.decoders: UploadDecoders | None = None
        self.error: str | None = None
        self.loaded = threading.Event()


def create_app(
    index_dir: str | Path,
    *,
    search_config: SearchConfig | None = None,
    service_config: ServiceConfig | None = None,
    frame_reader: FrameReader | None = None,
    embedder: Embedder | None = None,
) -> FastAPI:
    """The FastAPI app serving `index_dir`.

    frame_reader decodes uploaded files in the decoder workers, after the header checks; it must
    pickle by reference (a module-level function). Default: the nightly job's decoder (images and
    videos, frames downscaled as the job does). embedder overrides the one built from the index's settings.
    """
    index_dir = Path(index_dir)
    service = service_config or ServiceConfig()
    state = _State()

    def load() -> None:
        try:
            searcher = Searcher.load(index_dir, search_config, verify=service.verify)
            state.decoders = UploadDecoders(service.media_limits, workers=service.decode_workers,
                                            timeout_s=service.decode_timeout_s, memory_mb=service.decode_memory_mb,
                                            reader=frame_reader)
            state.files = FileQuery(searcher, state.decoders, embedder)
            state.searcher = searcher
        except Exception as exc:  # reported by /ready (without the index's path); the process stays up
            state.error = _public(f"{type(exc).__name__}: {exc}", index_dir)
        finally:
            state.loaded.set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=load, name="styleaxis-index-load", daemon=True).start()
        yield
        state.loaded.wait()
        if state.decoders is not None:
            state.decoders.close()

    app = FastAPI(
        title="styleaxis",
        summary="Same style, different content (and the converse) over one video catalogue.",
        version="1",
        lifespan=lifespan,
    )
    _install_error_handlers(app, index_dir)
    app.add_middleware(BodyLimit, limit=service.max_json_bytes, exempt=frozenset({"/search/file"}),
                       refuse=lambda message: _error(413, "too_large", message))

    def ready_searcher() -> Searcher:
        if state.searcher is None:
            detail = state.error or "the index is still loading"
            raise ServiceError(503, "not_ready", f"the index is not ready: {detail}")
        return state.searcher

    @app.get("/health", summary="Liveness: the process answers")
    def health() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready", summary="Readiness: the index is loaded, verified and its canaries pass",
             response_model=ReadyResponse, response_model_exclude_none=True,
             responses={503: {"model": ReadyResponse, "description": "loading, or failed (with the error)"}})
    def ready() -> JSONResponse:
        if state.searcher is not None:
            return JSONResponse({"status": "ready", "count": state.searcher.manifest.count})
        status = "failed" if state.error else "loading"
        return JSONResponse({"status": status, "error": state.error}, status_code=503)

    @app.get("/info", summary="What is indexed: count, axes, factories, models, build time",
             responses=_declared(503))
    def info(searcher: Searcher = Depends(ready_searcher)) -> dict[str, Any]:
        m = searcher.manifest
        return {
            "count": m.count, "generation": m.generation, "built_at": m.built_at, "models": m.models,
            "embed": m.embed, "descriptors": {name: d.dim for name, d in m.descriptors.items()},
            "axes": {axis: {"dim": a.dim, "factory": a.factory, "descriptors": a.descriptors,
                            "search_param": a.search_param, "search_value": a.search_value}
                     for axis, a in m.axes.items()},
        }

    @app.get("/videos/{video_id}/similar", response_model=SearchResponse, summary="Query by an indexed video id",
             responses=_declared(404, 422, 503))
    def similar(
        video_id: str,
        mode: Mode = DEFAULT_MODE,
        k: int = Query(10, ge=1, le=MAX_K),
        searcher: Searcher = Depends(ready_searcher),
    ) -> SearchResponse:
        return _response(mode, k, searcher.search(video_id, mode=mode, k=k))

    @app.post("/search", response_model=SearchResponse, summary="Query by video id or by vectors",
              responses=_declared(400, 404, 413, 422, 503))
    def search(request: SearchRequest, searcher: Searcher = Depends(ready_searcher)) -> SearchResponse:
        results = searcher.search(request.video_id, vectors=request.vectors, **request.options())
        return _response(request.mode, request.k, results)

    @app.post("/search/batch", response_model=BatchSearchResponse, summary="Many queries in one request",
              responses=_declared(400, 404, 413, 422, 503))
    def search_batch(request: BatchSearchRequest, searcher: Searcher = Depends(ready_searcher)) -> BatchSearchResponse:
        batches = searcher.search_batch(request.video_ids, vectors=request.vectors, **request.options())
        return BatchSearchResponse(mode=request.mode, k=request.k, results=[[_out(r) for r in rs] for rs in batches])

    @app.post(
        "/search/file",
        response_model=SearchResponse,
        summary="Query by an image or a video sent as the raw request body",
        responses=_declared(413, 415, 422, 503),
        openapi_extra={"requestBody": {"required": True, "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "video/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }}},
    )
    async def search_file(
        request: Request,
        mode: Mode = DEFAULT_MODE,
        k: int = Query(10, ge=1, le=MAX_K),
        filename: str | None = Query(None, description="original file name; its suffix tells image from video"),
    ) -> SearchResponse:
        ready_searcher()
        body = await _read_limited(request, service.max_upload_bytes)
        suffix = _suffix(filename, request.headers.get("content-type"))
        with tempfile.NamedTemporaryFile(suffix=suffix) as upload:
            upload.write(body)
            upload.flush()
            files = state.files
            results = await run_in_threadpool(_search_upload, files, Path(upload.name), mode, k)
        return _response(mode, k, results)

    return app


def serve(
    index_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, threads: int = 1, **app_options: Any
) -> None:
    """Run the service with uvicorn until interrupted (create_app's keyword options pass through).

    threads: FAISS and BLAS threads per query, for the whole process. Requests already run
    concurrently in uvicorn's thread pool, so more threads per query oversubscribe the cores: on a
    busy 2-core machine a 10k-video query took 20 ms at p50 with 2 threads and 1 ms with 1.
    """
    faiss.omp_set_num_threads(threads)
    threadpool_limits(threads)
    uvicorn.run(create_app(index_dir, **app_options), host=host, port=port)


def _search_upload(files: FileQuery, path: Path, mode: str, k: int) -> list[Result]:
    """Embed and search an upload; each way its decoding can fail becomes its status (module docstring)."""
    try:
        vectors, identity = files.vectors(path)
    except MediaTooLarge as exc:  # the temporary file's path means nothing to the client
        raise ServiceError(413, "too_large", str(exc).replace(str(path), "upload")) from exc
    except (CallTimedOut, CallOutOfMemory) as exc:
        raise ServiceError(422, "too_costly", f"decoding the upload {exc}") from exc
    except CallCrashed as exc:
        raise ServiceError(415, "bad_file", f"cannot read the uploaded file: {exc}") from exc
    except DecodersBusy as exc:
        raise ServiceError(503, "busy", f"{exc}; retry later", headers={"Retry-After": "5"}) from exc
    except (ValueError, OSError) as exc:
        message = str(exc).replace(str(path), "upload")
        raise ServiceError(415, "bad_file", f"cannot read the uploaded file: {message}") from exc
    return files.searcher.search(vectors=vectors, model_identity=identity, mode=mode, k=k)


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` bytes (header or stream)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, "too_large", f"upload of {declared} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ServiceError(413, "too_large", f"upload exceeds the limit of {limit} bytes")
    if not body:
        raise ServiceError(415, "bad_file", "empty upload: send the file as the request body")
    return bytes(body)


def _suffix(filename: str | None, content_type: str | None) -> str:
    """File suffix for an upload: from its name, else its Content-Type, else none."""
    if filename and Path(filename).suffix:
        return Path(filename).suffix.lower()
    guessed = mimetypes.guess_extension((content_type or "").split(";")[0].strip())
    return guessed or ""


def _out(result: Result) -> ResultOut:
    return ResultOut(**result.__dict__)


def _response(mode: str, k: int, results: list[Result]) -> SearchResponse:
    return SearchResponse(mode=mode, k=k, results=[_out(r) for r in results])


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _public(message: str, index_dir: Path) -> str:
    """A message with the server's index path taken out: clients know the index, not where it lives."""
    for form in {str(index_dir.resolve()), str(index_dir)}:
        message = message.replace(form, "<index>")
    return message


def _install_error_handlers(app: FastAPI, index_dir: Path) -> None:
    """Map every failure to the JSON error shape (module docstring)."""

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            detail = "; ".join(str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors)
            return _error(400, "malformed_json", f"request body is not valid JSON: {detail}")
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return _error(422, "invalid_request", detail)

    @app.exception_handler(UnknownVideoError)
    async def unknown(_: Request, exc: UnknownVideoError) -> JSONResponse:
        return _error(404, "unknown_video", _public(str(exc), index_dir))

    @app.exception_handler(ValueError)
    async def bad_query(_: Request, exc: ValueError) -> JSONResponse:
        return _error(422, "bad_query", _public(str(exc), index_dir))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail), exc.headers)  # e.g. 405's Allow

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal", f"internal error ({type(exc).__name__}); see the server log")
