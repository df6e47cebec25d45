"""Tests for styleaxis.index on a synthetic, labelled embed run written as real Parquet files.

The catalogue is a 6 content x 5 style grid. Every descriptor vector is
common offset + its own axis centroid + leakage from the other axis + noise, so plain
single-axis search is contaminated by the other axis (style search ranks same-content
videos right after same-style ones) while the dual-axis modes must separate them.
Extra rows: a near-duplicate "retake" of one cell (same content and style, fresh noise),
an exact duplicate under another id, a partial row (indexed), and three rows that must not
be indexed (failed, failed but with vectors, partial without vectors).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from styleaxis.index._io import atomic_open
from styleaxis.embed.recipe import RelativeConfig
from styleaxis.index.build import IndexConfig, build_indexes
from styleaxis.index.manifest import IndexManifest
from styleaxis.index.search import (
    MODES,
    IndexIntegrityError,
    Result,
    SearchConfig,
    Searcher,
    UnknownVideoError,
)
from styleaxis.index.transform import SearchTransform

DIMS = {"style_in": 1920, "style_cin": 100, "content": 256}
TAPS = {"style_in": ("relu1_1", "relu2_1", "relu3_1", "relu4_1")}  # 2 * (64 + 128 + 256 + 512) = 1920
MODEL_OF = {"style_in": "vgg16-hed", "style_cin": "vgg16-hed", "content": "clip-vit-b32"}
#: the synthetic grid tests the index machinery on the AdaIN + CIN style axis with no catalogue step (the
#: default axes are tested on real embeddings in test_end_to_end.py, the steps in test_index_relative.py)
AXES = {"style": ("style_in", "style_cin"), "content": ("content",)}


def config(**kwargs) -> IndexConfig:
    """IndexConfig for the synthetic grid: its descriptors, no content step, other settings as given."""
    kwargs.setdefault("relative", RelativeConfig(content_alpha=0.0, expand=0))
    return IndexConfig(axes=AXES, **kwargs)
MODELS = {"vgg16-hed": "a" * 64, "clip-vit-b32": "b" * 64}
RETAKE, DUPLICATE, PARTIAL = "c0_s0_retake", "c1_s1_dup", "c2_s2"
# Not indexed: failed without vectors, failed despite vectors, partial without vectors.
FAILED, FAILED_WITH_VECTORS, PARTIAL_NO_VECTORS = "x_failed", "x_failed_late", "x_partial_empty"


def _metadata(models: dict[str, str], dims: dict[str, int], short_side: int = 256) -> dict[bytes, bytes]:
    meta = {
        "models": models,
        "descriptors": {  # descriptors other than DIMS' come from the content model
            name: {"dim": dim, "model": MODEL_OF.get(name, "clip-vit-b32"), "taps": list(TAPS.get(name, ()))}
            for name, dim in dims.items()
        },
        "short_side": short_side,
        "center_crop": False,
        "code_version": "test-1",
        "run_id": "run-test",
    }
    return {b"styleaxis": json.dumps(meta).encode()}


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_catalogue(
    seed: int = 0, leak: float = 0.4, noise: float = 0.35, n_content: int = 6, n_style: int = 5
) -> tuple[list[dict], dict[str, tuple[int, int]]]:
    """Rows (video_id, status, descriptor vectors) and each indexed id's (content, style) label."""
    rng = np.random.default_rng(seed)
    cells = [(c, s) for c in range(n_content) for s in range(n_style)]
    labels = {f"c{c}_s{s}": (c, s) for c, s in cells}
    labels[RETAKE] = (0, 0)
    vectors: dict[str, dict[str, np.ndarray]] = {vid: {} for vid in labels}
    for name, dim in DIMS.items():
        own_n, other_n = (n_style, n_content) if name.startswith("style") else (n_content, n_style)
        offset = 3.0 * np.abs(_unit(rng, 1, dim)[0])  # CNN-like shared positive component
        own, other = _unit(rng, own_n, dim), _unit(rng, other_n, dim)
        for vid, (c, s) in labels.items():
            i, j = (s, c) if name.startswith("style") else (c, s)
            vectors[vid][name] = offset + own[i] + leak * other[j] + noise * _unit(rng, 1, dim)[0]
    vectors[DUPLICATE] = dict(vectors["c1_s1"])
    labels[DUPLICATE] = labels["c1_s1"]
    # the exact duplicate is the same file under another id: same content hash
    rows = [
        {"video_id": vid, "status": "partial" if vid == PARTIAL else "ok", "vectors": vectors[vid],
         "content_hash": "sha-c1_s1" if vid == DUPLICATE else f"sha-{vid}"}
        for vid in labels
    ]
    rows += [
        {"video_id": FAILED, "status": "failed", "vectors": None},
        {"video_id": FAILED_WITH_VECTORS, "status": "failed", "vectors": vectors["c4_s4"]},
        {"video_id": PARTIAL_NO_VECTORS, "status": "partial", "vectors": None},
    ]
    return rows, labels


def write_run(
    run_dir: Path,
    rows: list[dict],
    models_per_file: tuple[dict, dict] = (MODELS, MODELS),
    fixed: bool = False,
    short_side: int = 256,
) -> Path:
    """Write rows as two Parquet files under run_dir/videos with the embed pipeline's schema.

    Vector columns are variable-size float lists as embed/schema.py writes videos/ (pyarrow 25
    cannot read back a null fixed-size list); fixed=True writes fixed-size lists instead. The
    descriptors are those of the rows' vectors.
    """
    dims = next({name: len(v) for name, v in r["vectors"].items()} for r in rows if r["vectors"] is not None)
    schema = pa.schema(
        [
            ("video_id", pa.string()),
            ("uri", pa.string()),
            ("content_hash", pa.string()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("n_keyframes", pa.int32()),
            *[(name, pa.list_(pa.float32(), dim if fixed else -1)) for name, dim in dims.items()],
        ]
    )
    (run_dir / "videos").mkdir(parents=True)
    half = len(rows) // 2
    for part, (chunk, models) in enumerate(zip((rows[:half], rows[half:]), models_per_file)):
        columns = {
            "video_id": [r["video_id"] for r in chunk],
            "uri": [f"s3://bucket/{r['video_id']}.mp4" for r in chunk],
            "content_hash": [r.get("content_hash") for r in chunk],
            "status": [r["status"] for r in chunk],
            "error": ["decode error" if r["vectors"] is None else None for r in chunk],
            "n_keyframes": [0 if r["vectors"] is None else 12 for r in chunk],
        }
        for name in dims:
            columns[name] = [None if r["vectors"] is None else r["vectors"][name].astype(np.float32)
                             for r in chunk]
        table = pa.table(columns, schema=schema.with_metadata(_metadata(models, dims, short_side)))
        pq.write_table(table, run_dir / "videos" / f"part-{part:05d}.parquet")
    return run_dir


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IndexManifest, dict, list[dict]]:
    rows, labels = make_catalogue()
    base = tmp_path_factory.mktemp("index")
    run_dir = write_run(base / "run", rows)
    manifest = build_indexes(run_dir, base / "index", config())
    return base / "index", manifest, labels, rows


@pytest.fixture(scope="module")
def searcher(catalogue) -> Searcher:
    return Searcher.load(catalogue[0])


def _ids(results: list[Result]) -> list[str]:
    return [r.video_id for r in results]


def _expected(labels: dict, query: str, same: str) -> set[str]:
    """Ids sharing the query's `same` label ("style" or "content") and differing in the other."""
    c, s = labels[query]
    if same == "style":
        return {v for v, (vc, vs) in labels.items() if vs == s and vc != c}
    return {v for v, (vc, vs) in labels.items() if vc == c and vs != s}


def test_failed_rows_not_indexed_and_manifest_fields(catalogue, searcher):
    index_dir, manifest, labels, _ = catalogue
    assert set(searcher.video_ids) == set(labels)  # includes the partial row with vectors
    assert not {FAILED, FAILED_WITH_VECTORS, PARTIAL_NO_VECTORS} & set(searcher.video_ids)
    assert manifest.count == len(labels) == 32
    assert manifest.skipped == {"failed": 2, "missing_vectors": 1, "already_indexed": 0}
    assert manifest.models == MODELS
    assert manifest.run_ids == ("run-test",)
    assert manifest.axes["style"].descriptors == ("style_in", "style_cin")
    assert manifest.axes["style"].dim == 1920 + 100
    assert manifest.axes["content"].dim == 256
    for axis in ("style", "content"):
        assert manifest.axes[axis].factory == "Flat"
        assert manifest.axes[axis].metric == "inner_product"
        assert manifest.axes[axis].index_file in manifest.files
        assert np.load(index_dir / manifest.axes[axis].matrix_file).dtype == np.float32
    assert {d.model for d in manifest.descriptors.values()} == set(MODELS)
    assert len(manifest.ids_sha256) == 64 and manifest.build_seconds >= 0
    assert IndexManifest.load(index_dir) == manifest


@pytest.mark.parametrize("query", ["c0_s0", "c1_s1", "c3_s4", RETAKE, DUPLICATE, PARTIAL])
def test_same_style_different_content(searcher, catalogue, query):
    labels = catalogue[2]
    expected = _expected(labels, query, "style")
    results = searcher.search(query, mode="same-style-different-content", k=10)
    assert set(_ids(results)[: len(expected)]) == expected
    assert all(labels[v][0] != labels[query][0] for v in _ids(results)), "same content leaked through"
    assert [r.rank for r in results] == list(range(1, len(results) + 1))
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


@pytest.mark.parametrize("query", ["c0_s0", "c1_s1", "c3_s4", RETAKE, DUPLICATE, PARTIAL])
def test_same_content_different_style(searcher, catalogue, query):
    labels = catalogue[2]
    expected = _expected(labels, query, "content")
    results = searcher.search(query, mode="same-content-different-style", k=10)
    assert set(_ids(results)[: len(expected)]) == expected
    assert all(labels[v][1] != labels[query][1] for v in _ids(results)), "same style leaked through"


@pytest.mark.parametrize(("mode", "axis"), [("style", 1), ("content", 0)])
def test_single_axis_modes(searcher, catalogue, mode, axis):
    labels = catalogue[2]
    for query in ("c0_s0", "c3_s4"):
        results = searcher.search(query, mode=mode, k=10)
        twins = {query, RETAKE} if query == "c0_s0" else {query}  # the retake counts as a re-upload
        n_same = sum(labels[v][axis] == labels[query][axis] for v in set(labels) - twins)
        assert all(labels[v][axis] == labels[query][axis] for v in _ids(results)[:n_same])
        assert results[0].score == getattr(results[0], f"{mode}_z")
    # Plain style search is not "different content": the retake shares the query's content. By
    # default it is close enough on both axes (>= 0.55) to count as a re-upload and is dropped.
    lax = Searcher.load(catalogue[0], SearchConfig(duplicate_similarity=0.95), verify=False)
    retake = lax.search("c0_s0", mode="style", k=1)[0]
    assert retake.video_id == RETAKE and min(retake.style_score, retake.content_score) >= 0.55
    assert RETAKE not in _ids(searcher.search("c0_s0", mode="style", k=len(labels)))


def test_dual_axis_ranking_survives_strong_leakage(tmp_path):
    """With heavy cross-axis leakage, ranking by the primary similarity still finds the pairs.

    Same-style videos also share style leakage in content space, so their content z-scores are
    raised (yet under the ceiling); a primary-z-minus-secondary-z ranking penalises exactly
    them and scores ~0.63 here, against ~0.91 for ranking by primary similarity.
    """
    rows, labels = make_catalogue(seed=0, leak=0.9, noise=0.35)
    build_indexes(write_run(tmp_path / "run", rows), tmp_path / "index", config())
    searcher = Searcher.load(tmp_path / "index")
    hits = total = 0
    for query in labels:
        for mode, same in (("same-style-different-content", "style"), ("same-content-different-style", "content")):
            expected = _expected(labels, query, same)
            hits += len(expected & set(_ids(searcher.search(query, mode=mode, k=len(expected)))))
            total += len(expected)
    assert hits / total >= 0.85


@pytest.mark.parametrize("mode", MODES)
def test_self_and_duplicate_never_returned(searcher, catalogue, mode):
    everything = len(catalogue[2])
    assert "c1_s1" not in _ids(searcher.search("c1_s1", mode=mode, k=everything))
    assert DUPLICATE not in _ids(searcher.search("c1_s1", mode=mode, k=everything))
    assert "c1_s1" not in _ids(searcher.search(DUPLICATE, mode=mode, k=everything))
    # With the similarity test switched off the query itself is still never returned, nor its
    # byte-identical copy (same content hash); the retake (no shared hash) comes back in the
    # modes that do not drop it for being over the secondary axis's ceiling.
    no_dedup = Searcher.load(catalogue[0], SearchConfig(duplicate_similarity=2.0), verify=False)
    found = set(_ids(no_dedup.search("c1_s1", mode=mode, k=everything)))
    assert not {"c1_s1", DUPLICATE} & found
    found = set(_ids(no_dedup.search("c0_s0", mode=mode, k=everything)))
    assert (RETAKE in found) == (mode in ("style", "content", "weighted"))


def test_vector_query_matches_id_query_and_exclude(searcher, catalogue):
    rows = {r["video_id"]: r for r in catalogue[3]}
    vectors = rows["c3_s4"]["vectors"]
    by_vector = searcher.search(vectors=vectors, mode="same-style-different-content", k=5, model_identity=MODELS)
    by_id = searcher.search("c3_s4", mode="same-style-different-content", k=5)
    assert _ids(by_vector) == _ids(by_id)
    assert by_vector[0].style_score == pytest.approx(by_id[0].style_score, abs=1e-5)
    assert by_id[0].reason.startswith("style ") and "; content " in by_id[0].reason
    assert "agrees most on style_in/relu" in by_id[0].reason  # per-tap agreement of the AdaIN statistics
    assert set(by_id[0].parts) == {"style_in", "style_cin", "content"} | {f"style_in/{t}" for t in TAPS["style_in"]}
    excluded = searcher.search(
        "c3_s4", mode="same-style-different-content", k=5, exclude={by_id[0].video_id, "not-indexed"}
    )
    assert by_id[0].video_id not in _ids(excluded)
    batch = searcher.search_batch(["c3_s4", "c0_s0"], mode="same-style-different-content", k=5)
    assert _ids(batch[0]) == _ids(by_id) and len(batch) == 2
    stacked = {name: np.stack([rows[v]["vectors"][name] for v in ("c3_s4", "c0_s0")]) for name in DIMS}
    by_vectors = searcher.search_batch(
        vectors=stacked, mode="same-style-different-content", k=5, model_identity=MODELS
    )
    assert [_ids(r) for r in by_vectors] == [_ids(r) for r in batch]


def test_unknown_id_wrong_dim_and_model_identity_refused(searcher, catalogue):
    vectors = {r["video_id"]: r for r in catalogue[3]}["c0_s0"]["vectors"]
    with pytest.raises(UnknownVideoError, match="not-a-video") as info:
        searcher.search("not-a-video", mode="style")
    assert isinstance(info.value, KeyError)
    with pytest.raises(ValueError, match=r"'style_cin': expected dim 100, got array of shape \(99,\)"):
        searcher.search(vectors={**vectors, "style_cin": np.zeros(99)}, mode="style", model_identity=MODELS)
    other_model = {**MODELS, "clip-vit-b32": "c" * 64}
    with pytest.raises(ValueError, match="'content'.*clip-vit-b32"):
        searcher.search(vectors=vectors, mode="style", model_identity=other_model)
    with pytest.raises(ValueError, match="model_identity"):
        searcher.search(vectors=vectors, mode="style")
    with pytest.raises(ValueError, match=r"missing \['content'\]"):
        no_content = {name: v for name, v in vectors.items() if name != "content"}
        searcher.search(vectors=no_content, mode="style", model_identity=MODELS)
    with pytest.raises(ValueError, match="mode must be one of"):
        searcher.search("c0_s0", mode="similar")  # type: ignore[arg-type]


def test_mixed_model_identity_in_run_refused(tmp_path):
    rows, _ = make_catalogue()
    other = {**MODELS, "vgg16-hed": "f" * 64}
    run_dir = write_run(tmp_path / "run", rows, models_per_file=(MODELS, other))
    with pytest.raises(ValueError, match=r"disagree on model identity.*part-00000\.parquet.*part-00001\.parquet"):
        build_indexes(run_dir, tmp_path / "index", config())


def test_fixed_size_list_columns_accepted(tmp_path):
    rows, labels = make_catalogue()
    ok_rows = [r for r in rows if r["vectors"] is not None]
    manifest = build_indexes(write_run(tmp_path / "run", ok_rows, fixed=True), tmp_path / "index", config())
    assert manifest.count == len(labels)


def test_fixed_size_list_with_null_row_is_read_or_named(tmp_path):
    """pyarrow 25 cannot read a null fixed-size list back (apache/arrow#35692): say so, naming the file."""
    rows, labels = make_catalogue()
    run_dir = write_run(tmp_path / "run", rows, fixed=True)
    try:
        manifest = build_indexes(run_dir, tmp_path / "index", config())
    except ValueError as exc:
        assert "part-00001.parquet" in str(exc) and "35692" in str(exc)
    else:  # a pyarrow with the upstream fix
        assert manifest.count == len(labels) and manifest.skipped["failed"] == 2


def test_wrong_vector_length_in_run_refused(tmp_path):
    rows, _ = make_catalogue()
    rows[3] = {**rows[3], "vectors": {**rows[3]["vectors"], "content": rows[3]["vectors"]["content"][:-1]}}
    message = r"part-00000\.parquet: column 'content' has vectors of length \[255\], expected 256"
    with pytest.raises(ValueError, match=message):
        build_indexes(write_run(tmp_path / "run", rows), tmp_path / "index", config())


@pytest.mark.parametrize("target", ["style.g1.faiss", "content.g1.npy", "ids.g1.parquet", "transform_content.g1.npz"])
def test_tampered_file_fails_load(catalogue, tmp_path, target):
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    for path in catalogue[0].iterdir():
        (index_dir / path.name).write_bytes(path.read_bytes())
    Searcher.load(index_dir)  # the copy itself is fine
    data = bytearray((index_dir / target).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (index_dir / target).write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match=rf"{target}: sha256 .* does not match manifest"):
        Searcher.load(index_dir)


@pytest.mark.parametrize("exhaustive_max", [0, 50_000], ids=["faiss-pool", "exact-pool"])
def test_candidate_pool_smaller_than_catalogue(tmp_path, exhaustive_max):
    """Pool of 61 out of 162 videos, drawn from the HNSW index or by an exact matrix product."""
    rows, labels = make_catalogue(n_content=20, n_style=8)
    manifest = build_indexes(write_run(tmp_path / "run", rows), tmp_path / "index", config(factory="HNSW32"))
    assert manifest.axes["style"].factory == "HNSW32" and manifest.count == 162
    search_config = SearchConfig(exhaustive_max=exhaustive_max, min_pool=60, pool_per_k=1)
    searcher = Searcher.load(tmp_path / "index", search_config)
    for query in ("c0_s0", "c7_s3", RETAKE):
        for mode, same in (("same-style-different-content", "style"), ("same-content-different-style", "content")):
            expected = _expected(labels, query, same)
            assert set(_ids(searcher.search(query, mode=mode, k=len(expected)))) == expected


def test_trained_factory_override(tmp_path, catalogue):
    manifest = build_indexes(
        write_run(tmp_path / "run", catalogue[3]), tmp_path / "index", config(factory="IVF2,Flat")
    )
    assert {axis.factory for axis in manifest.axes.values()} == {"IVF2,Flat"}
    assert Searcher.load(tmp_path / "index").manifest.count == manifest.count


def test_content_ceiling_is_configurable(catalogue):
    labels = catalogue[2]
    lax = Searcher.load(catalogue[0], SearchConfig(content_ceiling_z=np.inf), verify=False)
    results = lax.search("c0_s0", mode="same-style-different-content", k=len(labels))
    assert any(labels[v][0] == 0 for v in _ids(results)), "without a ceiling same-content items come back"


@pytest.mark.parametrize("whiten", ["none", "std", "pca"])
def test_transform_round_trip(tmp_path, whiten):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 16)) * np.linspace(0.1, 3, 16) + 5
    transform = SearchTransform.fit(x, whiten=whiten)
    checksum = transform.save(tmp_path / "t.npz")
    loaded = SearchTransform.load(tmp_path / "t.npz")
    assert loaded.checksum() == checksum == transform.checksum()
    np.testing.assert_array_equal(loaded.apply(x), transform.apply(x))
    np.testing.assert_allclose(np.linalg.norm(loaded.apply(x), axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(loaded.apply(x[0]), loaded.apply(x[:1])[0])
    if whiten == "pca":
        y = (x - x.mean(0)) @ loaded.components
        np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(y.shape[1]), atol=1e-4)
    with pytest.raises(ValueError, match="expects vectors of dim 16"):
        loaded.apply(np.zeros(15))


def test_atomic_open_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "style.faiss"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(target) as f:
            f.write(b"half-written")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["style.faiss"]  # no temp file left behind
    with atomic_open(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"


def test_pca_whitening_refuses_fewer_videos_than_dimensions():
    with pytest.raises(ValueError, match=r"n=16 <= D=16"):
        SearchTransform.fit(np.random.default_rng(3).standard_normal((16, 16)), whiten="pca")


def test_std_whitening_build_keeps_answers(tmp_path, catalogue):
    labels = catalogue[2]
    run_dir = write_run(tmp_path / "run", catalogue[3])
    manifest = build_indexes(run_dir, tmp_path / "index", config(whiten="std"))
    assert {info.whiten for info in manifest.descriptors.values()} == {"std"}
    searcher = Searcher.load(tmp_path / "index")
    expected = _expected(labels, "c3_s4", "style")
    assert set(_ids(searcher.search("c3_s4", mode="same-style-different-content", k=len(expected)))) == expected


def test_transform_checksum_detects_edited_parameters(tmp_path):
    transform = SearchTransform.fit(np.random.default_rng(2).standard_normal((10, 4)))
    transform.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as data:
        arrays = dict(data)
    arrays["mean"] = arrays["mean"] + 1
    np.savez(tmp_path / "t.npz", **arrays)
    with pytest.raises(ValueError, match=r"t\.npz: transform checksum mismatch"):
        SearchTransform.load(tmp_path / "t.npz")
