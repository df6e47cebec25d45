"""Robustness figures for issue 19, as one table; every step bounded in count and time, 127.0.0.1 only.

serve: the service (a separate process, default ServiceConfig, over an index of the tiny demo
    catalogue embedded by the real pipeline) under
    - fuzz: schemathesis with every check, --max-examples per operation and --max-time; the server
      counts the requests it answered and the 5xx among them (printed when it stops);
    - load: 20 concurrent clients each sending the largest legal upload (a PNG of just under
      max_pixels, smooth so it stays under max_upload_bytes) and then a JSON body of just under
      max_json_bytes; the peak RSS of the server process, and of the server plus its decoder
      workers, sampled every 20 ms.

inputs: a folder of bad inputs (empty, text, truncated, a symlink loop, a folder named like a video, a
    non-media file) plus a missing path and a glob that matches nothing, through `styleaxis embed`'s API:
    every input must be a row or a skip line.
kills: `styleaxis embed` over the clips killed with SIGKILL at a random moment, then run again, --kills
    times; the final rows and vectors are compared with a clean run's.
build/load: two `styleaxis index build --rebuild` processes at once, --rebuilds times each, while a
    thread loads the index over and over: builds refused by the writer lock, indexes left unloadable,
    loads that failed.

    python bench/robustness.py [--workdir DIR] [--max-examples 30] [--fuzz-seconds 120] [--clients 20]
                               [--kills 6] [--rebuilds 5] [--sections inputs,kills,build,serve]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

from styleaxis.index.service import ServiceConfig

HOST = "127.0.0.1"
Row = tuple[str, str]


# ---------------------------------------------------------------------------------------------------
# The server under test: its own process, counting requests and 5xx


def _serve_counting(index_dir: str, port: int) -> None:
    """Entry point of the server process: the service with default limits, plus a request/5xx counter
    printed as one JSON line on stdout when it stops (SIGINT)."""
    import uvicorn

    from styleaxis.index.service import create_app

    app = create_app(index_dir)
    counts: dict[str, Any] = {"requests": 0, "5xx": 0, "5xx_seen": []}

    async def counting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def record(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                counts["requests"] += 1
                # /ready answers 503 while the index loads, by design: the probe that waits for it is not a fault
                fault = message["status"] >= 500 and not (message["status"] == 503 and scope.get("path") == "/ready")
                counts["5xx"] += fault
                if fault and len(counts["5xx_seen"]) < 10:
                    counts["5xx_seen"].append(f"{message['status']} {scope.get('method')} {scope.get('path')}")
            await send(message)

        await app(scope, receive, record if scope["type"] == "http" else send)

    uvicorn.run(counting, host=HOST, port=port, log_level="warning")
    print(json.dumps(counts), flush=True)


@contextmanager
def server(index_dir: Path) -> Iterator[tuple[str, psutil.Process, dict[str, int]]]:
    """(base URL, server process, counts filled in when it stops)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import robustness; " \
           f"robustness._serve_counting({str(index_dir)!r}, {port})"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    base, counts = f"http://{HOST}:{port}", {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)
        yield base, psutil.Process(process.pid), counts
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        counts.update(json.loads(lines[-1]) if lines else {})


# ---------------------------------------------------------------------------------------------------
# serve: fuzz and load


def serve_fuzz(index_dir: Path, max_examples: int, seconds: int) -> list[Row]:
    """schemathesis, every check, bounded; requests and 5xx as the server counted them."""
    config = Path(tempfile.mkdtemp()) / "schemathesis.toml"
    config.write_text('[checks.positive_data_acceptance]\nexpected-statuses = ["2XX", "404", "413", "415", "422"]\n')
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    with server(index_dir) as (base, _, counts):
        started = time.monotonic()
        done = subprocess.run([st, "--config-file", str(config), "run", f"{base}/openapi.json", "--checks", "all",
                               "--max-examples", str(max_examples), "--max-time", str(seconds), "--seed", "19",
                               "--workers", "1", "--no-color", "--generation-database", "none"],
                              capture_output=True, text=True, timeout=seconds + 300, cwd=config.parent)
        elapsed = time.monotonic() - started
    verdict = "no failure" if done.returncode == 0 else f"FAILURES (exit {done.returncode}; report on stderr)"
    if done.returncode != 0:
        print(done.stdout[-8000:], file=sys.stderr)
    return [("fuzz: requests answered", f"{counts.get('requests', '?')} in {elapsed:.0f} s"),
            ("fuzz: 5xx seen", f"{counts.get('5xx', '?')} {counts.get('5xx_seen') or ''}"),
            ("fuzz: schemathesis verdict", verdict)]


def _largest_legal_png(config: ServiceConfig) -> bytes:
    """A PNG of just under max_pixels (4:3), a smooth gradient so it compresses under max_upload_bytes."""
    width = int((config.max_pixels * 4 / 3) ** 0.5)
    height = config.max_pixels // width
    ramp = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)
    image = np.broadcast_to(ramp[None, :, None], (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=1)
    data = buffer.getvalue()
    assert len(data) <= config.max_upload_bytes, len(data)
    return data


def _largest_legal_json(config: ServiceConfig, video_id: str) -> bytes:
    """A /search/batch body of just under max_json_bytes: one video id and a long exclude list."""
    body = {"video_ids": [video_id], "k": 1, "exclude": []}
    item = json.dumps("x" * 30)
    count = (config.max_json_bytes - len(json.dumps(body)) - 64) // (len(item) + 2)
    body["exclude"] = ["x" * 30] * count
    return json.dumps(body).encode()


def _family_rss(process: psutil.Process) -> tuple[int, int]:
    """(RSS of the process, RSS of the process and its children) in bytes."""
    own = process.memory_info().rss
    children = 0
    for child in process.children(recursive=True):
        try:
            children += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return own, own + children


def serve_load(index_dir: Path, clients: int, video_id: str) -> list[Row]:
    """Peak RSS while `clients` threads each send the largest legal upload, then the largest legal JSON."""
    config = ServiceConfig()
    png = _largest_legal_png(config)
    with server(index_dir) as (base, process, _):
        body = _largest_legal_json(config, video_id)
        idle = _family_rss(process)
        peak = list(idle)
        statuses: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                now = _family_rss(process)
                peak[0], peak[1] = max(peak[0], now[0]), max(peak[1], now[1])
                time.sleep(0.02)

        def client() -> None:
            with httpx.Client(base_url=base, timeout=300) as http:
                statuses.append(http.post("/search/file", content=png, headers={"content-type": "image/png"},
                                          params={"k": 1}).status_code)
                statuses.append(http.post("/search/batch", content=body,
                                          headers={"content-type": "application/json"}).status_code)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
    mib = 2**20
    answered = ", ".join(f"{s}: {statuses.count(s)}" for s in sorted(set(statuses)))
    return [(f"load: {clients} clients x (upload {len(png) / mib:.1f} MiB PNG of {config.max_pixels / 1e6:.0f} MP"
             f" + {len(body) / mib:.1f} MiB JSON)", f"{elapsed:.0f} s; statuses {answered}"),
            ("load: server RSS idle -> peak", f"{idle[0] / mib:.0f} -> {peak[0] / mib:.0f} MiB"),
            ("load: server + decoder workers RSS idle -> peak", f"{idle[1] / mib:.0f} -> {peak[1] / mib:.0f} MiB")]


# ---------------------------------------------------------------------------------------------------
# The embed job: bad inputs, kills


def bad_inputs(workdir: Path, clip: Path) -> list[Row]:
    """Every input the user names, or a folder holds, is a row or a skip line; the job goes on."""
    from styleaxis.api import embed_catalogue
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.pipelines.beam import PipelineConfig
    from styleaxis.pipelines.dataset import read_dataset

    folder = workdir / "bad-inputs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(clip, folder / "good.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("not a video\n")
    (folder / "cut.mp4").write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    (folder / "loop.mp4").symlink_to(folder / "loop.mp4")
    (folder / "album.mp4").mkdir()
    (folder / "readme.txt").write_text("a non-media file")
    named = [str(folder), str(workdir / "missing.mp4"), str(workdir / "nothing-*.mp4")]
    entries = 7 + 2  # the folder's entries, the missing path and the empty glob
    run = workdir / "bad-inputs-run"
    shutil.rmtree(run, ignore_errors=True)
    summary = embed_catalogue(named, run, PipelineConfig(out_dir=run, embed=EmbedConfig(short_side=64), progress=False))
    rows = read_dataset(run, "videos")
    statuses = rows.status.value_counts().to_dict()
    accounted = len(rows) + len(summary["skipped_inputs"])
    return [("inputs: entries named or held by a folder", str(entries)),
            ("inputs: rows written / skip lines", f"{len(rows)} ({statuses}) / {len(summary['skipped_inputs'])}"),
            ("inputs: entries lost", str(entries - accounted))]


def _embed_cli(clips: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "styleaxis.cli", "embed", str(clips), "--out", str(run), "--short-side", "64",
            "--quiet"]


def kills(workdir: Path, clips: Path, times: int, seed: int = 0) -> list[Row]:
    """Kill `styleaxis embed` at random moments, rerun it each time; compare with a clean run."""
    from styleaxis.pipelines.dataset import read_dataset

    rng = np.random.default_rng(seed)
    clean, killed = workdir / "kills-clean", workdir / "kills-run"
    for run in (clean, killed):
        shutil.rmtree(run, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(_embed_cli(clips, clean), check=True, capture_output=True, timeout=600)
    full_s = time.monotonic() - started
    survived = 0
    for _ in range(times):
        process = subprocess.Popen(_embed_cli(clips, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(0.2, 1.0)) * full_s)
        process.send_signal(signal.SIGKILL)
        process.wait()
        survived += subprocess.run(_embed_cli(clips, killed), capture_output=True, timeout=600).returncode == 0
        subprocess.run(_embed_cli(clips, killed), check=True, capture_output=True, timeout=600)  # must be a no-op
    columns = ["video_id", "status", "content_hash", "style_eff", "content"]
    a = read_dataset(clean, "videos", columns).sort_values("video_id").reset_index(drop=True)
    b = read_dataset(killed, "videos", columns).sort_values("video_id").reset_index(drop=True)
    lost = len(set(a.video_id) - set(b.video_id))
    same = (list(a.video_id) == list(b.video_id) and all(
        np.array_equal(np.stack(a[c].to_numpy()), np.stack(b[c].to_numpy())) for c in ("style_eff", "content")))
    return [("kills: SIGKILLs, reruns that succeeded", f"{times}, {survived}"),
            ("kills: rows lost / duplicated", f"{lost} / {len(b) - b.video_id.nunique()}"),
            ("kills: rows and vectors bit-identical to a clean run", "yes" if same else "NO")]


# ---------------------------------------------------------------------------------------------------
# Index writers and readers at once


def build_and_load(run: Path, workdir: Path, rebuilds: int) -> list[Row]:
    """Two rebuild loops at once on one index while this process loads it again and again."""
    from styleaxis.index.search import Searcher

    index = workdir / "race-index"
    shutil.rmtree(index, ignore_errors=True)
    cli = [sys.executable, "-m", "styleaxis.cli", "index", "build", str(run), "--out", str(index), "--quiet"]
    subprocess.run(cli, check=True, capture_output=True, timeout=600)
    loop = ("import subprocess, sys\nok = refused = other = 0\n"
            f"for _ in range({rebuilds}):\n"
            f"    r = subprocess.run({[*cli, '--rebuild']!r}, capture_output=True, text=True)\n"
            "    ok += r.returncode == 0\n"
            "    refused += r.returncode != 0 and 'another `styleaxis index build`' in r.stdout + r.stderr\n"
            "    other += r.returncode != 0 and 'another `styleaxis index build`' not in r.stdout + r.stderr\n"
            "print(ok, refused, other)\n")
    builders = [subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    loads = failures = 0
    errors: set[str] = set()
    while any(b.poll() is None for b in builders):
        try:
            Searcher.load(index)
        except Exception as exc:  # counted: the point of this step
            failures += 1
            errors.add(f"{type(exc).__name__}: {str(exc)[:120]}")
        loads += 1
    counts = np.sum([[int(v) for v in b.communicate()[0].split()] for b in builders], axis=0)
    try:
        Searcher.load(index)
        unloadable = 0
    except Exception:  # the index the builds left behind
        unloadable = 1
    return [("build/load: rebuilds done / refused by the lock / failed otherwise",
             f"{counts[0]} / {counts[1]} / {counts[2]}"),
            ("build/load: index left unloadable", str(unloadable)),
            ("build/load: loads during the rebuilds, failed", f"{loads}, {failures}" + (f" {sorted(errors)}" if errors else ""))]


# ---------------------------------------------------------------------------------------------------
# Fixtures and the table


def tiny_index(workdir: Path) -> Path:
    """The tests' tiny labelled catalogue (6 clips), embedded by the real pipeline and indexed."""
    from styleaxis.demo import DemoConfig, make_catalogue
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.index.build import build_indexes
    from styleaxis.pipelines.beam import PipelineConfig, run_embed
    from styleaxis.pipelines.inputs import expand_inputs

    index = workdir / "index"
    if (index / "manifest.json").exists():
        return index
    clips = make_catalogue(workdir / "clips", DemoConfig(contents=3, styles=(2, 15), seconds=1.5, fps=8, gop=6,
                                                          width=192, height=128))
    run = workdir / "run"
    run_embed(expand_inputs([str(clips[0].parent)]),
              PipelineConfig(out_dir=run, embed=EmbedConfig(short_side=128), progress=False))
    build_indexes(run, index)
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--max-examples", type=int, default=30, help="schemathesis examples per operation")
    parser.add_argument("--fuzz-seconds", type=int, default=120, help="schemathesis time budget")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--rebuilds", type=int, default=5)
    parser.add_argument("--sections", default="inputs,kills,build,serve")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="robustness-"))
    index = tiny_index(workdir)
    from styleaxis.index.search import Searcher

    clips = workdir / "clips"
    rows: list[Row] = []
    if "inputs" in sections:
        rows += bad_inputs(workdir, sorted(clips.glob("*.mp4"))[0])
    if "kills" in sections:
        rows += kills(workdir, clips, args.kills)
    if "build" in sections:
        rows += build_and_load(workdir / "run", workdir, args.rebuilds)
    if "serve" in sections:
        video_id = Searcher.load(index).video_ids[0]
        rows += [*serve_fuzz(index, args.max_examples, args.fuzz_seconds), *serve_load(index, args.clients, video_id)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB; load average {os.getloadavg()[0]:.1f}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:{width}s}  {value}")


if __name__ == "__main__":
    main()
