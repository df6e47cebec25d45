"""The HTTP service for real: uvicorn on 127.0.0.1 (a free port, in a thread), httpx as the client,
over an index built from the real embed pipeline's output (conftest's tiny labelled clips)."""

from __future__ import annotations

import io
import shutil
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image

from styleaxis.demo import clip_labels
from styleaxis.index.build import build_indexes
from styleaxis.index.search import Searcher
from styleaxis.index.service import ServiceConfig, create_app
from styleaxis.media.video import read_frames
from styleaxis.media.write import write_video

UPLOAD_LIMIT = 1 << 20


@contextmanager
def running(app: FastAPI) -> Iterator[httpx.Client]:
    """Serve `app` with uvicorn on a free loopback port; yield a client; shut the server down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_ready(client: httpx.Client) -> httpx.Response:
    deadline = time.monotonic() + 60
    while (response := client.get("/ready")).status_code == 503 and response.json()["status"] == "loading":
        if time.monotonic() > deadline:
            raise TimeoutError("index did not become ready")
        time.sleep(0.05)
    return response


@pytest.fixture(scope="module")
def index_dir(embedded_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("service") / "index"
    build_indexes(embedded_run, out)
    return out


@pytest.fixture(scope="module")
def client(index_dir: Path) -> Iterator[httpx.Client]:
    """The app as `styleaxis serve` runs it: video reader from the pipeline, 1 MiB upload limit."""
    app = create_app(index_dir, frame_reader=read_frames, service_config=ServiceConfig(max_upload_bytes=UPLOAD_LIMIT))
    with running(app) as http:
        assert wait_ready(http).json() == {"status": "ready", "count": 6}
        yield http


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["video_id"] for r in response.json()["results"]]


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return body["error"]["message"]


def test_health_info_and_docs(client, index_dir):
    assert client.get("/health").json() == {"status": "alive"}
    info = client.get("/info").json()
    assert info["count"] == 6 and info["axes"]["style"]["factory"] == "Flat"
    assert info["embed"] == {"short_side": 128, "center_crop": False}
    spec = client.get("/openapi.json").json()
    assert {"/search", "/search/batch", "/search/file", "/videos/{video_id}/similar", "/ready"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_queries_by_id_match_the_searcher(client, index_dir):
    searcher = Searcher.load(index_dir)
    for video_id in searcher.video_ids[:3]:
        for mode in ("same-style-different-content", "same-content-different-style", "style", "content"):
            expected = [r.video_id for r in searcher.search(video_id, mode=mode, k=3)]
            assert _ids(client.get(f"/videos/{video_id}/similar", params={"mode": mode, "k": 3})) == expected
            assert _ids(client.post("/search", json={"video_id": video_id, "mode": mode, "k": 3})) == expected
    result = client.post("/search", json={"video_id": searcher.video_ids[0], "k": 1}).json()["results"][0]
    assert result["reason"].startswith("style ") and "; content " in result["reason"]
    assert set(result["parts"]) == {"style_head", "content", "content_head"}
    assert {"style_score", "content_score", "style_z", "content_z", "parts"} <= set(result)


def test_vectors_batch_and_filters(client, index_dir, embedded_run):
    searcher = Searcher.load(index_dir)
    import pyarrow.parquet as pq  # the run's raw video vectors, as a client would send them

    videos = pq.read_table(embedded_run / "videos").to_pylist()
    row = next(r for r in videos if r["video_id"] == searcher.video_ids[0])
    vectors = {name: row[name] for name in searcher.manifest.descriptors}
    by_vector = client.post("/search", json={"vectors": vectors, "model_identity": searcher.model_identity, "k": 2})
    by_id = client.post("/search", json={"video_id": searcher.video_ids[0], "k": 2})
    assert _ids(by_vector) == _ids(by_id)
    batch = client.post("/search/batch", json={"video_ids": searcher.video_ids[:2], "k": 2, "mode": "style"})
    assert batch.status_code == 200 and [len(r) for r in batch.json()["results"]] == [2, 2]
    batch_vectors = client.post("/search/batch", json={
        "vectors": {name: [v, v] for name, v in vectors.items()}, "model_identity": searcher.model_identity, "k": 2})
    assert [[r["video_id"] for r in rs] for rs in batch_vectors.json()["results"]] == [_ids(by_id)] * 2
    first = _ids(by_id)[0]
    assert first not in _ids(client.post("/search", json={"video_id": searcher.video_ids[0], "exclude": [first]}))
    allowed = searcher.video_ids[3:5]
    assert set(_ids(client.post("/search", json={"video_id": searcher.video_ids[0], "mode": "style",
                                                 "allow": allowed, "k": 5}))) <= set(allowed)


def test_bad_requests_get_clear_json_errors(client, index_dir):
    video_id = Searcher.load(index_dir).video_ids[0]
    unknown = _error(client.get("/videos/no_such_clip/similar"), 404, "unknown_video")
    assert "'no_such_clip' is not in the index" in unknown
    _error(client.post("/search", json={"video_id": "no_such_clip"}), 404, "unknown_video")
    _error(client.post("/search", content=b'{"video_id": ', headers={"content-type": "application/json"}),
           400, "malformed_json")
    assert "k: Input should be greater than or equal to 1" in _error(
        client.post("/search", json={"video_id": video_id, "k": -1}), 422, "invalid_request")
    assert "query.k" in _error(client.get(f"/videos/{video_id}/similar", params={"k": -3}), 422, "invalid_request")
    _error(client.post("/search", json={"video_id": video_id, "k": 10**6}), 422, "invalid_request")
    bad_mode = client.post("/search", json={"video_id": video_id, "mode": "similar"})
    assert "mode" in _error(bad_mode, 422, "invalid_request")
    assert "exactly one of video_id or vectors" in _error(client.post("/search", json={}), 422, "invalid_request")
    _error(client.post("/search", json={"video_id": video_id, "colour": "red"}), 422, "invalid_request")
    identity = Searcher.load(index_dir).model_identity
    wrong_dim = {"style_head": [0.0] * 127, "content": [0.0] * 896, "content_head": [0.0] * 896}
    assert "'style_head': expected dim 128, got array of shape (127,)" in _error(
        client.post("/search", json={"vectors": wrong_dim, "model_identity": identity}), 422, "bad_query")
    right_dim = {**wrong_dim, "style_head": [0.0] * 128}
    other = {model: "0" * 64 for model in identity}
    assert "re-embed with the index's models" in _error(
        client.post("/search", json={"vectors": right_dim, "model_identity": other}), 422, "bad_query")
    _error(client.get("/no/such/route"), 404, "http_error")
    not_allowed = client.delete("/search")
    _error(not_allowed, 405, "http_error")
    assert not_allowed.headers["allow"] == "POST"
    for null in ({"video_id": None, "vectors": wrong_dim}, {"video_id": video_id, "vectors": None}):
        assert "may not be null" in _error(client.post("/search", json=null), 422, "invalid_request")
    huge = {"video_id": video_id, "mode": "weighted", "weights": {"style": 6e32, "content": -1.7e308}}
    assert "weights.style" in _error(client.post("/search", json=huge), 422, "invalid_request")  # scores stay finite
    assert "exactly one of video_ids or vectors" in _error(
        client.post("/search/batch", json={"video_ids": [video_id], "vectors": {}}), 422, "invalid_request")


def test_error_bodies_do_not_reveal_the_index_path(client, index_dir):
    for response in (client.get("/videos/no_such_clip/similar"), client.post("/search", json={"video_id": "nope"}),
                     client.post("/search/batch", json={"video_ids": ["nope"]})):
        message = _error(response, 404, "unknown_video")
        assert "is not in the index" in message and str(index_dir) not in message and "/tmp" not in message


def test_openapi_declares_the_errors_and_the_one_of(client):
    spec = client.get("/openapi.json").json()
    declared = {path: {method: set(op["responses"]) for method, op in ops.items()} for path, ops in spec["paths"].items()}
    assert {"400", "404", "413", "422", "503"} <= declared["/search"]["post"]
    assert {"400", "404", "413", "422", "503"} <= declared["/search/batch"]["post"]
    assert {"413", "415", "422", "503"} <= declared["/search/file"]["post"]
    assert {"404", "422", "503"} <= declared["/videos/{video_id}/similar"]["get"]
    assert "503" in declared["/ready"]["get"] and "503" in declared["/info"]["get"]
    error_ref = spec["paths"]["/search"]["post"]["responses"]["413"]["content"]["application/json"]["schema"]
    assert error_ref == {"$ref": "#/components/schemas/ErrorResponse"}
    schemas = spec["components"]["schemas"]
    assert schemas["SearchRequest"]["oneOf"] == [{"required": ["video_id"]}, {"required": ["vectors"]}]
    assert schemas["BatchSearchRequest"]["oneOf"] == [{"required": ["video_ids"]}, {"required": ["vectors"]}]
    assert schemas["SearchRequest"]["properties"]["video_id"] == {"type": "string", "title": "Video Id"}


def _png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def test_uploads_are_embedded_on_the_fly(client, tiny_clips):
    clip = tiny_clips[0]
    mode = "same-style-different-content"
    by_id = _ids(client.post("/search", json={"video_id": clip.stem, "mode": mode, "k": 2}))
    video = client.post("/search/file", params={"mode": mode, "k": 2, "filename": clip.name}, content=clip.read_bytes())
    assert _ids(video) == by_id  # the indexed clip itself: same vectors, same answers, itself not returned
    frame = read_frames(clip)[0]
    image = client.post("/search/file", params={"mode": mode, "k": 1}, content=_png(frame),
                        headers={"content-type": "image/png"})
    assert clip_labels(_ids(image)[0])[1] == clip_labels(clip.stem)[1]  # one frame finds the clip's style


def test_bad_uploads(client, tiny_clips):
    text = client.post("/search/file", content=b"this is not a picture", headers={"content-type": "image/png"})
    message = _error(text, 415, "bad_file")
    assert "cannot read the uploaded file" in message and "/tmp" not in message
    _error(client.post("/search/file", content=b"", headers={"content-type": "image/png"}), 415, "bad_file")
    huge = b"\x89PNG" + bytes(UPLOAD_LIMIT)
    assert f"limit of {UPLOAD_LIMIT} bytes" in _error(
        client.post("/search/file", content=huge, headers={"content-type": "image/png"}), 413, "too_large")
    chunks = (b"\0" * 65536 for _ in range(UPLOAD_LIMIT // 65536 + 2))  # no Content-Length: counted while read
    _error(client.post("/search/file", content=chunks, headers={"content-type": "video/mp4"}), 413, "too_large")
    cut = tiny_clips[0].read_bytes()[:300]
    _error(client.post("/search/file", params={"filename": "cut.mp4"}, content=cut), 415, "bad_file")
    _error(client.post("/search/file", params={"k": 0}, content=b"x"), 422, "invalid_request")


def _png_declaring(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose IHDR (with a valid CRC) declares width x height: decoding it would fail,
    so a 413 proves the size was refused from the header."""
    png = bytearray(_png(np.zeros((8, 8, 3), np.uint8)))
    png[16:24] = struct.pack(">II", width, height)  # IHDR data starts after signature (8), length (4), type (4)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def costly_reader(path: Path) -> list[np.ndarray]:
    """A frame reader for the decoder workers: sleeps past any time limit on 64 px wide images,
    allocates 4 GiB (past the memory limit) on the others. The worker imports this module to find it."""
    with Image.open(path) as image:
        width = image.width
    if width == 64:
        time.sleep(120)
    return [np.ones((2**15, 2**15, 4), np.uint8)]


@pytest.fixture(scope="module")
def limited(index_dir: Path) -> Iterator[httpx.Client]:
    """A server with small caps (frames of 10,000 px, 1 s of video, 4 KB of JSON), one decoder worker
    with a 2 s and 256 MiB limit, and costly_reader as its frame reader."""
    config = ServiceConfig(max_upload_bytes=UPLOAD_LIMIT, max_json_bytes=4096, max_pixels=10_000, max_seconds=1.0,
                           decode_timeout_s=2.0, decode_memory_mb=256, decode_workers=1)
    with running(create_app(index_dir, frame_reader=costly_reader, service_config=config)) as http:
        wait_ready(http)
        yield http


def test_sizes_are_refused_from_the_header(client, limited, tiny_clips, tmp_path):
    for width, height in ((20000, 20000), (12000, 12000)):  # 20000^2 is past PIL's own bomb check
        message = _error(client.post("/search/file", content=_png_declaring(width, height),
                                     headers={"content-type": "image/png"}), 413, "too_large")
        assert f"{width * height} pixels per frame" in message and "limit of 40000000" in message
        assert "/tmp" not in message and message.startswith("upload: ")
    clip = tiny_clips[0]  # 192 x 128 px, 1.5 s
    assert "24576 pixels per frame (192x128) exceeds the limit of 10000" in _error(limited.post(
        "/search/file", params={"filename": clip.name}, content=clip.read_bytes()), 413, "too_large")
    long = write_video(tmp_path / "long.mp4", [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(6)], fps=4)
    assert "1.5 seconds exceeds the limit of 1" in _error(limited.post(
        "/search/file", params={"filename": "long.mp4"}, content=long.read_bytes()), 413, "too_large")


def test_json_bodies_over_the_limit_are_refused_unparsed(limited, index_dir):
    video_id = Searcher.load(index_dir).video_ids[0]
    assert limited.post("/search", json={"video_id": video_id, "k": 1}).status_code == 200
    big = {"video_id": video_id, "exclude": ["x" * 100] * 50}
    assert "exceeds the limit of 4096 bytes" in _error(limited.post("/search", json=big), 413, "too_large")
    chunks = (b" " * 1024 for _ in range(8))  # no Content-Length: counted while it streams in
    _error(limited.post("/search/batch", content=chunks, headers={"content-type": "application/json"}),
           413, "too_large")


def test_costly_decoding_is_stopped_and_the_server_goes_on(limited, index_dir):
    video_id = Searcher.load(index_dir).video_ids[0]
    slow = limited.post("/search/file", content=_png(np.zeros((64, 64, 3), np.uint8)),
                        headers={"content-type": "image/png"})
    assert "timed out after 2 s" in _error(slow, 422, "too_costly")
    greedy = limited.post("/search/file", content=_png(np.zeros((32, 32, 3), np.uint8)),
                          headers={"content-type": "image/png"})
    assert "ran out of memory (limit 256 MiB" in _error(greedy, 422, "too_costly")
    assert limited.get("/health").status_code == 200
    assert limited.post("/search", json={"video_id": video_id, "k": 1}).status_code == 200


def test_the_library_app_reads_videos_as_serve_does(index_dir, tiny_clips, client):
    # create_app's default reader is the nightly job's decoder, the one `styleaxis serve` uses
    clip = tiny_clips[1]
    params = {"mode": "style", "k": 3, "filename": clip.name}
    with running(create_app(index_dir)) as http:
        wait_ready(http)
        response = http.post("/search/file", params=params, content=clip.read_bytes())
    assert response.status_code == 200
    assert _ids(response) == _ids(client.post("/search/file", params=params, content=clip.read_bytes()))


def test_readiness_reports_a_broken_index(index_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(index_dir, broken)
    ids_file = next(broken.glob("ids.g*.parquet"))
    ids_file.write_bytes(ids_file.read_bytes()[:-20] + bytes(20))
    with running(create_app(broken)) as http:
        assert http.get("/health").json() == {"status": "alive"}
        ready = wait_ready(http)
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert "IndexIntegrityError" in ready.json()["error"] and ids_file.name in ready.json()["error"]
        assert "is not ready" in _error(http.post("/search", json={"video_id": "x"}), 503, "not_ready")
        assert str(broken) not in ready.text and str(broken) not in http.get("/info").text
