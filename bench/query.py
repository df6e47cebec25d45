"""Query benchmarks: FAISS factories on synthetic catalogues, calibration on a labelled one, HTTP throughput.

ann: for each catalogue size (default 10k, 100k, 1M) and factory, build both axes with
    styleaxis.index (build_from_vectors: transform, train, add, tune nprobe/efSearch, canaries, hashes)
    and report build time, index size on disk, recall@10 against exact search (the FAISS index's
    own top-10, and the Searcher's answers, which re-score a 200-candidate pool exactly), and
    p50/p99 latency of single queries through the Searcher, single-axis ("style") and dual-axis
    ("same-style-different-content"); ratio dual/single. Queries are by indexed id, one at a time,
    each on one FAISS/BLAS thread (the service runs requests concurrently instead).
    Vectors: a seeded mixture of Gaussian clusters whose covariance spectrum decays as a power law
    (variance of the i-th principal direction ~ (i+1)^-1, the shape PCA spectra of CNN features
    have), cluster sizes Zipf-distributed (exponent 1.1, capped at 200), members = centre + noise
    at 0.5x the centre spread, in 256 dimensions (a stand-in for descriptors after PCA to 256; the
    real axes are 2020-d style and 896-d content, up to 8x the memory). Style and content are drawn
    independently. Independent Gaussian vectors are deliberately not used: they have no true near
    neighbours, so every index would look equally good on them.
calibration: the labelled demo catalogue (photos x cin26 styles, real clips embedded by the Beam
    pipeline), scored for same-style-different-content and same-content-different-style: precision at
    R (R = number of right answers per query) and mean average precision over the returned list, for
    the calibrations and ceilings of SearchConfig and for rankings that combine axes.
http: the service (uvicorn, one process, loopback only) over the 100k index: bounded closed-loop load
    (N client threads, a fixed number of requests and a time cap); throughput and latency, against the
    in-process Searcher on the same queries.

    python bench/query.py [--sections ann,calibration,http] [--sizes 10000,100000,1000000] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from styleaxis.index.build import IndexConfig, build_from_vectors, build_indexes
from styleaxis.index.factory import choose_factory, nlist_for, recall_at
from styleaxis.index.run import RunVectors
from styleaxis.index.search import SearchConfig, Searcher

DIM = 256
AXES = {"style": ("style_syn",), "content": ("content_syn",)}


def synthetic(n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) float32: Zipf-sized Gaussian clusters with a power-law spectrum (module docstring)."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(1.0 / np.arange(1, dim + 1)).astype(np.float32)
    sizes = rng.zipf(1.1, size=n // 5).clip(1, 200)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes)[:n])  # clusters spread over rows
    centres = rng.standard_normal((len(sizes), dim), dtype=np.float32) * scale
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # bounded temporaries
        part = labels[start : start + 100_000]
        noise = rng.standard_normal((len(part), dim), dtype=np.float32) * (0.5 * scale)
        out[start : start + len(part)] = centres[part] + noise
    return out


def synthetic_run(n: int, seed: int = 0) -> RunVectors:
    """Two independent synthetic descriptors as an embed run would deliver them."""
    return RunVectors(
        video_ids=[f"v{i:07d}" for i in range(n)],
        vectors={"style_syn": synthetic(n, DIM, seed), "content_syn": synthetic(n, DIM, seed + 1)},
        models={"synthetic": "0" * 64},
        descriptors={name: {"dim": DIM, "model": "synthetic"} for name in ("style_syn", "content_syn")},
        run_ids=("bench",), code_versions=("bench",), skipped={}, content_hashes=[None] * n, sources={}, embed={},
    )


def _percentiles(seconds: Sequence[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _latencies(fn: Callable[[str], object], ids: Sequence[str], passes: int = 3) -> list[float]:
    """Seconds per call, one query at a time on one FAISS/BLAS thread (as the service runs queries).

    Other jobs share these cores, so the pass with the lowest p99 of `passes` is kept (timeit's
    best-of-n, per pass rather than per call).
    """
    runs = []
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(1):
            for _ in range(passes):
                run = []
                for video_id in ids:
                    start = time.perf_counter()
                    fn(video_id)
                    run.append(time.perf_counter() - start)
                runs.append(run)
    finally:
        faiss.omp_set_num_threads(threads)
    return min(runs, key=lambda run: np.percentile(run, 99))


def _answer_recall(searcher: Searcher, ids: Sequence[str], k: int = 10) -> float:
    """recall@k of the Searcher's single-axis ("style") answers against exact search by the same rules:
    every other video on the style axis, less the query's duplicates (cosines >= the duplicate
    thresholds; this synthetic index has no content-relative step), which the Searcher never returns."""
    style, content = searcher.axis_matrix("style"), searcher.axis_matrix("content")
    config = searcher.config
    truth = np.full((len(ids), k), -1)
    found = np.full((len(ids), k), -1)
    for i, video_id in enumerate(ids):
        row = int(video_id[1:])  # synthetic ids are "v" + row
        sims = style @ style[row]
        duplicate = (sims >= config.duplicate_style_similarity) & (content @ content[row] >= config.duplicate_similarity)
        sims[duplicate] = -np.inf  # self and duplicates
        truth[i] = np.argsort(-sims)[:k]
        answer = [int(r.video_id[1:]) for r in searcher.search(video_id, mode="style", k=k)]
        found[i, : len(answer)] = answer
    return recall_at(truth, found)


def bench_ann(sizes: Sequence[int], workdir: Path, queries: int, only: Sequence[str] = ()) -> dict[int, Path]:
    print("\n## ann: build, memory, recall@10 and latency per factory (synthetic, 2 axes x 256-d)\n")
    print("| vectors | factory | build s | index MB/axis | ANN recall@10 | answer recall@10 | single p50/p99 ms "
          "| dual p50/p99 ms | dual/single p99 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    kept: dict[int, Path] = {}
    for n in sizes:
        auto = choose_factory(n, DIM, IndexConfig().memory_budget_gb * 2**30 / 2).factory
        nlist = nlist_for(n)
        factories = [auto] + [f for f in ("HNSW32,Flat", f"IVF{nlist},Flat", f"IVF{nlist},SQ8", f"IVF{nlist},PQ32")
                              if f != auto and not (n >= 1_000_000 and f.startswith("HNSW"))]
        if only:
            factories = [auto if f == "auto" else f for f in only]
        ids = [f"v{i:07d}" for i in np.random.default_rng(1).choice(n, queries, replace=False)]
        for factory in factories:
            out = workdir / f"ann-{n}-{factory.replace(',', '_')}"
            run = synthetic_run(n)
            start = time.perf_counter()
            manifest = build_from_vectors(run, out, IndexConfig(axes=AXES, factory=factory))
            build_s = time.perf_counter() - start
            del run
            searcher = Searcher.load(out, verify=False)
            audit = searcher.audit(sample=200, k=10)["style"]
            recall = _answer_recall(searcher, ids[:200])
            single = _latencies(lambda v: searcher.search(v, mode="style", k=10), ids)
            dual = _latencies(lambda v: searcher.search(v, mode="same-style-different-content", k=10), ids)
            (s50, s99), (d50, d99) = _percentiles(single), _percentiles(dual)
            size_mb = (out / manifest.axes["style"].index_file).stat().st_size / 2**20
            param = manifest.axes["style"]
            name = f"{factory}" + (f" ({param.search_param}={param.search_value})" if param.search_param else "")
            auto_mark = " (auto)" if factory == auto else ""
            print(f"| {n:,} | {name}{auto_mark} | {build_s:.1f} | {size_mb:.0f} | {audit['ann_recall']:.3f} | "
                  f"{recall:.3f} | {s50:.2f} / {s99:.2f} | {d50:.2f} / {d99:.2f} | {d99 / s99:.2f} |", flush=True)
            if factory == auto and n == 100_000:
                kept[n] = out
            else:
                shutil.rmtree(out)
    return kept


def _labelled_catalogue(workdir: Path, contents: int, styles: tuple[int, ...]) -> Path:
    """The demo catalogue at small size, embedded by the real Beam pipeline (cached in workdir)."""
    from styleaxis.demo import DemoConfig, make_catalogue
    from styleaxis.embed.embedder import EmbedConfig
    from styleaxis.pipelines.beam import PipelineConfig, run_embed
    from styleaxis.pipelines.inputs import expand_inputs

    base = workdir / f"labelled-{contents}x{len(styles)}"
    config = DemoConfig(contents=contents, styles=styles, seconds=1.5, fps=8, gop=6, width=96, height=64)
    make_catalogue(base / "clips", config)
    run_embed(expand_inputs([str(base / "clips")]),
              PipelineConfig(out_dir=base / "run", embed=EmbedConfig(short_side=128), progress=False))
    return base / "run"


def _scores(searcher: Searcher, ranked: Callable[[str, str], list[str]]) -> dict[str, tuple[float, float]]:
    """Per dual mode: mean P@R and mean AP over every catalogue video as a query."""
    from styleaxis.demo import clip_labels

    labels = {v: clip_labels(v) for v in searcher.video_ids}
    out = {}
    for mode, same, other in (("same-style-different-content", 1, 0), ("same-content-different-style", 0, 1)):
        precision, ap = [], []
        for q in searcher.video_ids:
            right = {v for v in labels if labels[v][same] == labels[q][same] and labels[v][other] != labels[q][other]}
            answer = ranked(q, mode)
            precision.append(len(right & set(answer[: len(right)])) / len(right))
            hits = [i for i, v in enumerate(answer) if v in right]
            ap.append(sum((j + 1) / (i + 1) for j, i in enumerate(hits)) / len(right))
        out[mode] = (float(np.mean(precision)), float(np.mean(ap)))
    return out


def bench_calibration(workdir: Path, contents: int, styles: tuple[int, ...]) -> None:
    run = _labelled_catalogue(workdir, contents, styles)
    index_dir = workdir / f"labelled-{contents}x{len(styles)}" / "index"
    build_indexes(run, index_dir, IndexConfig(hubness_k=5))
    print(f"\n## calibration: labelled demo catalogue, {contents} photos x {len(styles)} cin26 styles "
          f"({contents * len(styles)} clips, real embeddings)\n")
    print("| ranking | ssdc P@R | ssdc mAP | scds P@R | scds mAP |")
    print("| --- | --- | --- | --- | --- |")

    def row(name: str, scores: dict[str, tuple[float, float]]) -> None:
        a, b = scores["same-style-different-content"], scores["same-content-different-style"]
        print(f"| {name} | {a[0]:.3f} | {a[1]:.3f} | {b[0]:.3f} | {b[1]:.3f} |", flush=True)

    base = Searcher.load(index_dir)
    n = base.manifest.count
    primary = {"same-style-different-content": ("style", "content"),
               "same-content-different-style": ("content", "style")}
    row("primary cosine only (no ceiling, plain single-axis search)",
        _scores(base, lambda q, m: [r.video_id for r in base.search(q, mode=primary[m][0], k=n)]))
    matrices = {axis: np.asarray(base.axis_matrix(axis)) for axis in ("style", "content")}
    for lam in (0.5, 1.0):
        def raw_difference(q: str, m: str, lam: float = lam) -> list[str]:
            row_q, (p, s) = base.video_ids.index(q), primary[m]
            score = matrices[p] @ matrices[p][row_q] - lam * (matrices[s] @ matrices[s][row_q])
            order = [i for i in np.argsort(-score) if i != row_q]
            return [base.video_ids[i] for i in order]
        row(f"uncalibrated: cosine_primary - {lam} cosine_other", _scores(base, raw_difference))
        weights = {m: {p: 1.0, s: -lam} for m, (p, s) in primary.items()}
        row(f"z-calibrated: z_primary - {lam} z_other (mode weighted)", _scores(
            base, lambda q, m, w=weights: [r.video_id for r in base.search(q, mode="weighted", k=n, weights=w[m])]))
    for calibration in ("z", "csls"):
        for ceiling in (1.0, 1.5, 2.0, 2.5):
            searcher = Searcher.load(index_dir, SearchConfig(calibration=calibration, content_ceiling_z=ceiling,
                                                             style_ceiling_z=ceiling), verify=False)
            row(f"{calibration}: rank by primary, drop other >= {ceiling}",
                _scores(searcher, lambda q, m, s=searcher: [r.video_id for r in s.search(q, mode=m, k=n)]))


def _serve(index_dir: str, port: int) -> None:
    import uvicorn

    from styleaxis.index.service import ServiceConfig, create_app

    faiss.omp_set_num_threads(1)  # as `styleaxis serve --threads 1`
    threadpool_limits(1)
    uvicorn.run(create_app(index_dir, service_config=ServiceConfig(verify=False)), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


def bench_http(index_dir: Path, requests: int, clients: int, seconds: float) -> None:
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(str(index_dir), port), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("service did not become ready")
            time.sleep(0.2)
        searcher = Searcher.load(index_dir, verify=False)
        ids = [searcher.video_ids[i] for i in np.random.default_rng(2).choice(len(searcher.video_ids), requests)]
        mode = "same-style-different-content"
        start = time.perf_counter()
        local = _latencies(lambda v: searcher.search(v, mode=mode, k=10), ids[:500], passes=1)
        local_rate = 500 / (time.perf_counter() - start)
        latencies: list[float] = []
        lock, stop_at = threading.Lock(), time.monotonic() + seconds

        def worker(chunk: Sequence[str]) -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                for video_id in chunk:
                    if time.monotonic() > stop_at:
                        return
                    t0 = time.perf_counter()
                    response = client.get(f"/videos/{video_id}/similar", params={"mode": mode, "k": 10})
                    response.raise_for_status()
                    with lock:
                        latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(worker, [ids[i::clients] for i in range(clients)]))
        elapsed = time.perf_counter() - start
        p50, p99 = _percentiles(latencies)
        l50, l99 = _percentiles(local)
        print(f"\n## http: {index_dir.name}, {mode}, k=10, GET /videos/ID/similar, {clients} client threads, "
              f"{len(latencies)} requests (cap {requests}, {seconds:.0f} s), server and clients on the same cores\n")
        print("| path | requests/s | p50 ms | p99 ms |")
        print("| --- | --- | --- | --- |")
        print(f"| in-process Searcher, 1 thread | {local_rate:.0f} | {l50:.2f} | {l99:.2f} |")
        print(f"| HTTP service | {len(latencies) / elapsed:.0f} | {p50:.2f} | {p99:.2f} |")
        print(f"\nHTTP / in-process throughput: {len(latencies) / elapsed / local_rate:.2f}")
    finally:
        server.terminate()
        server.join(10)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="ann,calibration,http")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=1000, help="single queries timed per factory")
    parser.add_argument("--factories", default="", help="';'-separated factories instead of the default list "
                        "('auto' = the size rule's choice), e.g. 'auto;IVF4096,Flat'")
    parser.add_argument("--workdir", type=Path, default=Path("bench-query-work"))
    parser.add_argument("--contents", type=int, default=8, help="labelled catalogue: photos")
    parser.add_argument("--styles", default="0,2,5,8,12,15,18,21", help="labelled catalogue: cin26 styles")
    parser.add_argument("--http-requests", type=int, default=3000)
    parser.add_argument("--http-clients", type=int, default=8)
    parser.add_argument("--http-seconds", type=float, default=30.0)
    parser.add_argument("--build-threads", type=int, default=None,
                        help="FAISS threads for building (default: all; 1 is faster on an oversubscribed machine)")
    args = parser.parse_args()
    if args.build_threads:
        faiss.omp_set_num_threads(args.build_threads)
    sections = set(args.sections.split(","))
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"# bench/query.py, {date.today()}, {_cpu_model()}, {os.cpu_count()} cores, faiss {faiss.__version__} "
          f"({faiss.omp_get_max_threads()} threads), numpy {np.__version__}; load average at start "
          f"{os.getloadavg()[0]:.1f} (other jobs share these cores: read ratios, not absolute times)")
    kept: dict[int, Path] = {}
    if "ann" in sections:
        only = [f for f in args.factories.split(";") if f]
        kept = bench_ann([int(s) for s in args.sizes.split(",")], args.workdir, args.queries, only)
    if "calibration" in sections:
        bench_calibration(args.workdir, args.contents, tuple(int(s) for s in args.styles.split(",")))
    if "http" in sections:
        index_dir = kept.get(100_000)
        if index_dir is None:
            index_dir = args.workdir / "http-index"
            build_from_vectors(synthetic_run(100_000), index_dir, IndexConfig(axes=AXES))
        bench_http(index_dir, args.http_requests, args.http_clients, args.http_seconds)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
