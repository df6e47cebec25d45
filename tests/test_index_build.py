"""Index building beyond the basics: factory rules, tuning, sharded builds, incremental adds,
generations, canaries, audits and calibration options, on the synthetic labelled runs of test_index."""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from test_index import AXES, MODELS, RETAKE, _expected, _ids, config, make_catalogue, write_run

from styleaxis.index.build import IndexConfig, add_videos, build_indexes
from styleaxis.index.calibrate import hubness
from styleaxis.index.factory import choose_factory, exact_knn, gpu_available, nlist_for, train_empty
from styleaxis.index.integrity import IndexIntegrityError, compare_with_run, recall_audit, same_answers
from styleaxis.index.generations import LOCK_FILE, RETIRED_FILE
from styleaxis.index.manifest import MANIFEST_FILE, IndexManifest
from styleaxis.index.search import MODES, SearchConfig, Searcher
from styleaxis.index.shards import build_shard, merge_shards

GIB = 2**30


@pytest.fixture(scope="module")
def grid() -> tuple[list[dict], dict]:
    """20 contents x 8 styles (+ retake and duplicate): 162 indexed videos, 3 not indexable."""
    return make_catalogue(n_content=20, n_style=8)


@pytest.mark.parametrize(
    ("count", "dim", "budget", "expected"),
    [
        (50_000, 256, 8 * GIB, "Flat"),
        (50_001, 256, 8 * GIB, "IVF512,Flat"),
        (200_001, 256, 8 * GIB, "IVF1024,Flat"),  # 2 sqrt(n) = 894 -> 2^10
        (1_000_000, 2020, 4 * GIB, "IVF2048,SQ8"),  # float32 needs 7.5 GiB
        (1_000_000, 2020, 1 * GIB, "IVF2048,PQ1010"),  # 8-bit codes need 1.9 GiB; m | 2020, n m <= 1 GiB
        (10_000, 256, 2**20, "IVF256,PQ64"),  # small but tiny budget; nlist capped at n / 39
    ],
)
def test_choose_factory_rules(count, dim, budget, expected):
    choice = choose_factory(count, dim, budget)
    assert choice.factory == expected and choice.reason


def test_hnsw_when_asked_for():
    assert choose_factory(50_001, 256, 8 * GIB, hnsw_max=100_000).factory == "HNSW32,Flat"
    assert choose_factory(100_001, 256, 8 * GIB, hnsw_max=100_000).factory == "IVF512,Flat"
    assert choose_factory(50_001, 256, 50_001 * 1024, hnsw_max=100_000).factory == "IVF512,Flat"  # links don't fit


def test_choose_factory_refuses_impossible_budget():
    with pytest.raises(ValueError, match=r"memory budget 0\.000 GiB is too small for 1000 vectors of dim 256"):
        choose_factory(1000, 256, 100)
    assert nlist_for(100) == 2 and nlist_for(10**8) == 16384 and nlist_for(10**10) == 65536


def test_ivf_build_tunes_nprobe_and_keeps_answers(tmp_path, grid):
    rows, labels = grid
    manifest = build_indexes(write_run(tmp_path / "run", rows), tmp_path / "index", config(factory="IVF16,Flat"))
    style = manifest.axes["style"]
    assert style.search_param == "nprobe" and 1 <= style.search_value <= 16
    assert style.tuned_recall >= 0.97 or style.search_value == 16
    assert style.trained_count == manifest.count == 162 and style.factory_reason == "given by the caller"
    searcher = Searcher.load(tmp_path / "index", SearchConfig(exhaustive_max=0, min_pool=60, pool_per_k=1))
    assert faiss.extract_index_ivf(searcher._axes["style"].index).nprobe == style.search_value
    for query in ("c0_s0", "c7_s3", "c19_s7"):
        expected = _expected(labels, query, "style")
        assert set(_ids(searcher.search(query, mode="same-style-different-content", k=len(expected)))) == expected


def test_polysemous_training_is_off_and_bad_factory_is_named():
    x = np.random.default_rng(0).standard_normal((600, 32)).astype(np.float32)
    index = train_empty(x, "IVF4,PQ8", seed=0)
    assert faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training is False
    with pytest.raises(ValueError, match="FAISS factory string 'IVF4,Nonsense' is not valid for dim 32"):
        train_empty(x, "IVF4,Nonsense", seed=0)
    with pytest.raises(ValueError, match=r"'IVF64,Flat' cannot be trained on 40 vectors"):
        train_empty(x[:40], "IVF64,Flat", seed=0)


@pytest.mark.parametrize(("factory", "shards"), [("IVF8,Flat", 3), ("IVF8,SQ8", 2), ("Flat", 4)])
def test_sharded_build_equals_unsharded(tmp_path, grid, factory, shards):
    rows, _ = grid
    run_dir = write_run(tmp_path / "run", rows)
    one = build_indexes(run_dir, tmp_path / "one", config(factory=factory))
    many = build_indexes(run_dir, tmp_path / "many", config(factory=factory, shards=shards))
    assert many.shards == shards and one.axes["style"].search_value == many.axes["style"].search_value
    a, b = Searcher.load(tmp_path / "one"), Searcher.load(tmp_path / "many")
    for axis in ("style", "content"):
        matrix = np.asarray(a._axes[axis].matrix)
        assert a._axes[axis].index.ntotal == b._axes[axis].index.ntotal == len(matrix)
        d1, i1 = a._axes[axis].index.search(matrix, 20)
        d2, i2 = b._axes[axis].index.search(matrix, 20)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(d1, d2)
    for mode in MODES:
        assert [_ids(r) for r in a.search_batch(["c0_s0", "c9_s5"], mode=mode, k=8)] == \
               [_ids(r) for r in b.search_batch(["c0_s0", "c9_s5"], mode=mode, k=8)]


def test_shard_functions_merge_in_row_order():
    x = np.random.default_rng(1).standard_normal((900, 16)).astype(np.float32)
    trained = train_empty(x, "IVF8,Flat", seed=0)
    whole = build_shard(trained, x)
    merged = merge_shards(trained, (build_shard(trained, x[a:b]) for a, b in ((0, 100), (100, 650), (650, 900))))
    assert merged.ntotal == 900
    for index in (whole, merged):
        faiss.extract_index_ivf(index).nprobe = 8
    np.testing.assert_array_equal(whole.search(x[:50], 10)[1], merged.search(x[:50], 10)[1])


def test_hnsw_cannot_be_sharded(tmp_path, grid):
    with pytest.raises(ValueError, match="HNSW graphs cannot be merged"):
        build_indexes(write_run(tmp_path / "run", grid[0]), tmp_path / "index", config(factory="HNSW32", shards=2))
    with pytest.raises(ValueError, match="shards must be between 1 and the number of videos"):
        build_indexes(write_run(tmp_path / "run2", grid[0]), tmp_path / "i2", config(factory="Flat", shards=999))


def _split(rows: list[dict], new_ids: set[str]) -> tuple[list[dict], list[dict]]:
    return [r for r in rows if r["video_id"] not in new_ids], [r for r in rows if r["video_id"] in new_ids]


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
def test_incremental_add(tmp_path, grid, factory):
    rows, labels = grid
    new_ids = {f"c{c}_s3" for c in range(20)} | {f"c5_s{s}" for s in range(8)}  # a whole style and a whole content
    old_rows, new_rows = _split(rows, new_ids)
    index_dir = tmp_path / "index"
    first = build_indexes(write_run(tmp_path / "run1", old_rows), index_dir, config(factory=factory))
    assert first.count == 162 - len(new_ids) and first.generation == 1
    old_files = set(first.files)
    # the second run holds everything: already indexed ids are skipped, the new ones added
    added = add_videos(write_run(tmp_path / "run2", rows), index_dir, config())
    assert added.count == 162 and added.generation == 2 and added.skipped["already_indexed"] == first.count
    assert added.axes["style"].trained_count == first.count
    assert {info.transform_file for info in added.descriptors.values()} <= old_files  # transforms kept
    assert added.changes == {"added": len(new_ids), "replaced": 0, "removed": 0}
    # the previous generation's files are retired, not deleted: a reader may be loading them
    assert _on_disk(index_dir) == set(added.files) | old_files | {MANIFEST_FILE}
    assert set(json.loads((index_dir / RETIRED_FILE).read_text())) == old_files - set(added.files)
    searcher = Searcher.load(index_dir)
    assert searcher.video_ids[: first.count] == [r["video_id"] for r in old_rows if r["video_id"] in labels]
    for query in ("c5_s3", "c0_s0", "c12_s3"):  # new, old, new
        for mode, same in (("same-style-different-content", "style"), ("same-content-different-style", "content")):
            expected = _expected(labels, query, same) - {RETAKE}
            assert expected <= set(_ids(searcher.search(query, mode=mode, k=len(expected) + 1)))
    # nothing new: nothing rewritten
    again = add_videos(tmp_path / "run2", index_dir, config())
    assert again.generation == 2 and again.files == added.files
    assert again.changes == {"added": 0, "replaced": 0, "removed": 0}


def _on_disk(index_dir: Path) -> set[str]:
    return {p.name for p in index_dir.iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
def test_add_replaces_changed_videos_and_removes_gone_ones(tmp_path, grid, factory):
    rows, labels = grid
    rows = [dict(r, content_hash=f"hash-{r['video_id']}") for r in rows]
    index_dir = tmp_path / "index"
    changed, gone, new = "c3_s3", "c4_s4", "c10_s6"
    first = build_indexes(write_run(tmp_path / "run1", [r for r in rows if r["video_id"] != new]), index_dir,
                          config(factory=factory))
    # re-embedded bytes: c3_s3 now carries c7_s5's vectors under a new hash; c4_s4 left the run; c10_s6 is new
    donor = next(r for r in rows if r["video_id"] == "c7_s5")
    second = [dict(r, vectors=donor["vectors"], content_hash="hash-new-bytes") if r["video_id"] == changed else r
              for r in rows if r["video_id"] != gone]
    before = Searcher.load(index_dir)
    stale = compare_with_run(index_dir, first, write_run(tmp_path / "run2", second))
    assert (stale.stale, stale.gone, stale.new) == ([changed], [gone], [new])  # what `index audit` reports
    grown = add_videos(tmp_path / "run2", index_dir, config(retire_grace_s=0))
    assert compare_with_run(index_dir, grown, tmp_path / "run2").count == 0
    assert grown.changes == {"added": 1, "replaced": 1, "removed": 1}
    assert grown.count == first.count and _on_disk(index_dir) == set(grown.files) | {MANIFEST_FILE}
    searcher = Searcher.load(index_dir)
    assert gone not in searcher and changed in searcher and new in searcher
    row = searcher.video_ids.index(changed)
    assert pq_hash(index_dir, searcher, changed) == "hash-new-bytes"
    for axis in ("style", "content"):  # the changed video now holds the donor's vectors, exactly
        matrix = searcher.axis_matrix(axis)
        assert np.allclose(matrix[row], matrix[searcher.video_ids.index("c7_s5")], atol=1e-6)
    # the kept rows are the previous generation's rows, unchanged
    for video_id in ("c0_s0", "c19_s7"):
        for axis in ("style", "content"):
            assert np.array_equal(searcher.axis_matrix(axis)[searcher.video_ids.index(video_id)],
                                  before.axis_matrix(axis)[before.video_ids.index(video_id)])


def pq_hash(index_dir: Path, searcher: Searcher, video_id: str) -> str:
    table = pq.read_table(index_dir / searcher.manifest.ids_file).to_pydict()
    return table["content_hash"][table["video_id"].index(video_id)]


def test_add_refuses_parquet_from_another_run_directory(tmp_path, grid):
    rows, _ = grid
    run_dir = write_run(tmp_path / "run", rows[:100])
    (run_dir / "_runs").mkdir()
    (run_dir / "_runs" / "run-test.json").write_text(json.dumps({"run_id": "run-test"}))
    before = build_indexes(run_dir, tmp_path / "index", config())
    assert add_videos(run_dir, tmp_path / "index", config()).changes["added"] == 0  # its own history: fine
    # one file swapped for another run directory's (its Parquet metadata names a run this history lacks)
    foreign = write_run(tmp_path / "other", rows[100:]) / "videos" / "part-00000.parquet"
    table = pq.read_table(foreign)
    meta = json.loads(table.schema.metadata[b"styleaxis"])
    pq.write_table(table.replace_schema_metadata({b"styleaxis": json.dumps({**meta, "run_id": "run-other"})}),
                   run_dir / "videos" / "part-00001.parquet")
    with pytest.raises(ValueError, match=r"part-00001\.parquet: written by run run-other, which .*_runs does not list"):
        add_videos(run_dir, tmp_path / "index", config())
    # a whole other run directory, with a history of its own, is not the one the index was built from
    other = write_run(tmp_path / "other2", rows)
    (other / "_runs").mkdir()
    (other / "_runs" / "run-test-2.json").write_text(json.dumps({"run_id": "run-test-2"}))
    for path in (other / "videos").glob("*.parquet"):
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"styleaxis"])
        pq.write_table(table.replace_schema_metadata({b"styleaxis": json.dumps({**meta, "run_id": "run-test-2"})}),
                       path)
    with pytest.raises(ValueError, match=r"the index was built from runs \['run-test'\].*not the run directory"):
        add_videos(other, tmp_path / "index", config())
    assert IndexManifest.load(tmp_path / "index").generation == before.generation  # nothing written


def test_a_second_writer_is_refused_while_one_holds_the_index(tmp_path, grid):
    import fcntl

    run_dir = write_run(tmp_path / "run", grid[0])
    build_indexes(run_dir, tmp_path / "index", config())
    with open(tmp_path / "index" / LOCK_FILE, "a+") as handle:  # another build, mid-write
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="another `styleaxis index build` is writing this index"):
            build_indexes(run_dir, tmp_path / "index", config())
        with pytest.raises(ValueError, match="another `styleaxis index build`"):
            add_videos(run_dir, tmp_path / "index", config())
    assert build_indexes(run_dir, tmp_path / "index", config()).generation == 2  # released: goes ahead


def test_a_load_overtaken_by_a_switch_starts_again(tmp_path, grid, monkeypatch):
    run_dir = write_run(tmp_path / "run", grid[0])
    build_indexes(run_dir, tmp_path / "index", config())
    real = Searcher._load
    calls = []

    def overtaken(index_dir, config, verify):  # the first load reads generation 1, then a build switches
        calls.append(1)
        if len(calls) == 1:
            build_indexes(run_dir, index_dir, IndexConfig(axes=AXES, retire_grace_s=0))
            raise FileNotFoundError("style.g1.faiss")
        return real(index_dir, config, verify)
    monkeypatch.setattr(Searcher, "_load", staticmethod(overtaken))
    assert Searcher.load(tmp_path / "index").manifest.generation == 2 and len(calls) == 2


def test_add_refuses_other_models_and_resize_policy(tmp_path, grid):
    rows, _ = grid
    old_rows, new_rows = _split(rows, {"c3_s3", "c4_s4"})
    index_dir = tmp_path / "index"
    before = build_indexes(write_run(tmp_path / "run1", old_rows), index_dir, config())
    other = {**MODELS, "vgg16-hed": "f" * 64}
    with pytest.raises(ValueError, match=r"descriptor 'style_\w+' comes from model vgg16-hed sha256 f{64}.*re-embed"):
        add_videos(write_run(tmp_path / "run2", new_rows, models_per_file=(other, other)), index_dir, config())
    with pytest.raises(ValueError, match=r"resize policy \{'short_side': 128, 'center_crop': False\}"):
        add_videos(write_run(tmp_path / "run3", new_rows, short_side=128), index_dir, config())
    assert IndexManifest.load(index_dir) == before  # untouched
    Searcher.load(index_dir)


def test_rebuild_switches_generation_atomically(tmp_path, grid):
    run_dir = write_run(tmp_path / "run", grid[0])
    first = build_indexes(run_dir, tmp_path / "index", config())
    reader = Searcher.load(tmp_path / "index")  # a reader of generation 1 keeps working (matrices mapped)
    second = build_indexes(run_dir, tmp_path / "index", config(factory="IVF8,Flat", retire_grace_s=0))
    assert second.generation == 2 and not set(first.files) & set(second.files)
    assert _on_disk(tmp_path / "index") == set(second.files) | {MANIFEST_FILE}  # grace 0: deleted at once
    fresh = Searcher.load(tmp_path / "index")
    assert _ids(reader.search("c0_s0", mode="style", k=3)) == _ids(fresh.search("c0_s0", mode="style", k=3))


def test_tamper_with_preserved_mtime_is_caught(tmp_path, grid):
    """The integrity check re-hashes the bytes: a same-size change with the old mtime is still found."""
    build_indexes(write_run(tmp_path / "run", grid[0]), tmp_path / "index", config())
    target = tmp_path / "index" / "content.g1.npy"
    Searcher.load(tmp_path / "index")
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(IndexIntegrityError, match=r"content\.g1\.npy: sha256 .* does not match"):
        Searcher.load(tmp_path / "index")


def test_canaries_catch_a_consistent_looking_but_wrong_matrix(tmp_path, grid):
    manifest = build_indexes(write_run(tmp_path / "run", grid[0]), tmp_path / "index", config())
    assert len(manifest.canaries) == 8
    assert all(c["answers"]["style"]["ids"][0] == c["video_id"] or c["answers"]["style"]["scores"][0] > 0.99
               for c in manifest.canaries)
    path = tmp_path / "index" / manifest.axes["style"].matrix_file
    matrix = np.load(path)
    np.save(path, np.roll(matrix, 1, axis=0))  # rows shifted by one: ids no longer match vectors
    with pytest.raises(IndexIntegrityError, match=r"canary '.*', axis style: the index answers"):
        Searcher.load(tmp_path / "index", verify=False)  # hashes not checked: the canaries catch it
    assert Searcher.load(tmp_path / "index", SearchConfig(canaries=False), verify=False).manifest.count == 162


def test_same_answers_is_tie_tolerant():
    assert same_answers(["a", "b", "c"], [0.9, 0.5, 0.5], ["a", "c", "b"], [0.9, 0.5, 0.5], 1e-4)
    assert same_answers(["a", "b", "c"], [0.9, 0.5, 0.5], ["a", "b", "d"], [0.9, 0.5, 0.5], 1e-4)  # cut inside a tie
    assert not same_answers(["a", "b", "c"], [0.9, 0.7, 0.5], ["b", "a", "c"], [0.9, 0.7, 0.5], 1e-4)
    assert not same_answers(["a", "b"], [0.9, 0.7], ["a", "b"], [0.9, 0.6], 1e-4)


def test_recall_audit_exact_and_approximate(tmp_path, grid):
    build_indexes(write_run(tmp_path / "run", grid[0]), tmp_path / "flat", config())
    exact = Searcher.load(tmp_path / "flat").audit(sample=50, k=10)
    for report in exact.values():  # exact search; a tie at the 10th place may resolve either way
        assert report["ann_recall"] >= 0.99 and report["pool_recall"] == 1.0
    x = np.random.default_rng(2).standard_normal((3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = train_empty(x, "IVF32,Flat", seed=0)
    index.add(x)  # nprobe 1 of 32 lists on isotropic data: recall clearly below 1
    report = recall_audit(index, x, pool=200, k=10, sample=100)
    assert report["ann_recall"] < 0.9 and report["pool_recall"] >= report["ann_recall"]


def test_hubness_matches_brute_force():
    x = np.random.default_rng(3).standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(8)
    index.add(x)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.sort(sims, axis=1)[:, -5:].mean(axis=1)
    np.testing.assert_allclose(hubness(index, x, 5, batch=64), expected, atol=1e-5)
    _, rows = exact_knn(x[:3], x, 1)
    assert rows[:, 0].tolist() == [0, 1, 2]


def test_csls_calibration_needs_hubness_and_keeps_answers(tmp_path, grid):
    rows, labels = grid
    run_dir = write_run(tmp_path / "run", rows)
    build_indexes(run_dir, tmp_path / "plain", config())
    with pytest.raises(ValueError, match="calibration 'csls' needs hubness"):
        Searcher.load(tmp_path / "plain", SearchConfig(calibration="csls"))
    manifest = build_indexes(run_dir, tmp_path / "hub", config(hubness_k=10))
    assert manifest.axes["style"].hubness_k == 10 and manifest.axes["style"].hubness_file in manifest.files
    searcher = Searcher.load(tmp_path / "hub", SearchConfig(calibration="csls"))
    for query in ("c0_s0", "c7_s3"):
        expected = _expected(labels, query, "style")
        assert set(_ids(searcher.search(query, mode="same-style-different-content", k=len(expected)))) == expected


def test_allow_list_weighted_mode_and_reasons(tmp_path, grid):
    rows, labels = grid
    build_indexes(write_run(tmp_path / "run", rows), tmp_path / "index", config())
    searcher = Searcher.load(tmp_path / "index")
    allowed = {"c9_s0", "c4_s0", "c4_s2", "not-indexed"}
    found = _ids(searcher.search("c0_s0", mode="style", k=10, allow=allowed, exclude={"c4_s2"}))
    assert found == ["c4_s0", "c9_s0"] or found == ["c9_s0", "c4_s0"]
    # "weighted" with a negative content weight behaves like same-style-different-content at the top
    weighted = searcher.search("c3_s2", mode="weighted", k=5, weights={"style": 1.0, "content": -0.5})
    assert all(labels[v][1] == 2 and labels[v][0] != 3 for v in _ids(weighted))
    assert weighted[0].score == pytest.approx(weighted[0].style_z - 0.5 * weighted[0].content_z, abs=1e-5)
    top = searcher.search("c3_s2", mode="weighted", k=1, weights={"style": 1.0, "content": 1.0})[0].video_id
    assert labels[top][0] == 3 or labels[top][1] == 2  # shares one of the two
    with pytest.raises(ValueError, match="weights apply to mode 'weighted' only"):
        searcher.search("c3_s2", mode="style", weights={"style": 1.0, "content": 0.0})
    with pytest.raises(ValueError, match="at least one > 0"):
        searcher.search("c3_s2", mode="weighted", weights={"style": -1.0, "content": 0.0})


@pytest.mark.skipif(not gpu_available(), reason="no GPU here (faiss-cpu, or faiss.get_num_gpus() == 0)")
def test_gpu_build_and_search_match_cpu(tmp_path, grid):
    run_dir = write_run(tmp_path / "run", grid[0])
    build_indexes(run_dir, tmp_path / "cpu", config(factory="IVF8,Flat", gpu=False))
    build_indexes(run_dir, tmp_path / "gpu", config(factory="IVF8,Flat", gpu=True))
    cpu = Searcher.load(tmp_path / "cpu", SearchConfig(gpu=False, exhaustive_max=0, min_pool=60, pool_per_k=1))
    gpu = Searcher.load(tmp_path / "gpu", SearchConfig(gpu=True, exhaustive_max=0, min_pool=60, pool_per_k=1))
    for mode in MODES:
        a, b = cpu.search("c0_s0", mode=mode, k=5), gpu.search("c0_s0", mode=mode, k=5)
        assert same_answers(_ids(a), [r.score for r in a], _ids(b), [r.score for r in b], 1e-3)


@pytest.mark.parametrize("kind", ["faiss", "npy", "ids"])
def test_unreadable_index_files_are_named_in_one_line(tmp_path, grid, kind):
    manifest = build_indexes(write_run(tmp_path / "run", grid[0]), tmp_path / "index", config())
    target = tmp_path / "index" / {"faiss": manifest.axes["style"].index_file, "npy": manifest.axes["content"].matrix_file,
                                   "ids": manifest.ids_file}[kind]
    if kind == "npy":  # an object array: loading it would unpickle
        np.save(target, np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    else:
        target.write_bytes(b"this is not what the manifest says it is\n" * 8)
    with pytest.raises(IndexIntegrityError) as error:
        Searcher.load(tmp_path / "index", verify=False)  # without re-hashing, the readers themselves refuse
    message = str(error.value)
    assert target.name in message and "\n" not in message and len(message) < 500, message
