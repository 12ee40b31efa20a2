"""`index build --cluster local`: a real Dask cluster on loopback (two worker processes), started and stopped
by the command; the index it makes is the one a local build makes of the same folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simsearch.engine import Searcher, build_index
from tests.conftest import run_cli

pytest.importorskip("distributed")
pytest.importorskip("pyarrow")


def test_a_distributed_build_is_the_local_build(tmp_path, gallery, random_model):
    (gallery / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    local, spread = tmp_path / "local.idx", tmp_path / "spread.idx"
    mine = build_index(gallery, local, model=str(random_model), progress=False)
    res = run_cli(
        "index",
        "build",
        gallery,
        "--index",
        spread,
        "--model",
        random_model,
        "--cluster",
        "local",
        "--workers",
        "2",
        "--json",
        timeout=240,
        check=True,
    )
    report = json.loads(res.stdout)
    assert report["added"] == mine.added == 16 and report["total"] == 16
    assert (
        [s["path"] for s in report["skipped"]]
        == [s.path for s in mine.skipped]
        == [str(gallery / "circle" / "broken.png")]
    )
    with Searcher(local, device="cpu") as a, Searcher(spread, device="cpu") as b:
        ia, va = a.store.vectors.vectors()
        ib, vb = b.store.vectors.vectors()
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_allclose(va, vb, atol=1e-5)
        ra, rb = a.store.catalog.all(), b.store.catalog.all()
        assert [(r.id, r.path, r.label, r.size, r.sha256) for r in ra] == [
            (r.id, r.path, r.label, r.size, r.sha256) for r in rb
        ]
        assert a.manifest.encoder == b.manifest.encoder and a.manifest.gallery == b.manifest.gallery
        for probe in [str(r.path) for r in ra][::5]:
            assert [h.id for h in a.query(probe, k=6)[0].results] == [h.id for h in b.query(probe, k=6)[0].results]
    # an ordinary index: a local sync of the unchanged folder finds nothing to do
    assert build_index(gallery, spread, progress=False).unchanged == 16
    # a distributed build never overwrites an index unasked
    again = run_cli("index", "build", gallery, "--index", spread, "--cluster", "local", timeout=120)
    assert again.returncode == 1 and "already there" in again.stderr


def test_cluster_options_without_a_cluster_are_a_usage_error(tmp_path, gallery):
    res = run_cli("index", "build", gallery, "--index", tmp_path / "x.idx", "--workers", "3")
    assert res.returncode == 2 and "--workers needs --cluster" in res.stderr and not (tmp_path / "x.idx").exists()


def test_a_distributed_ivfpq_build_trains_once_adds_shards_on_workers_and_merges_to_the_local_index(
    tmp_path, random_model
):
    """IVF-PQ: trained once here, shards of 256 files added on two workers, inverted lists merged:
    the same lists, ids and answers as a local build of the folder."""
    from PIL import Image

    rng = np.random.default_rng(5)
    folder = tmp_path / "noise"
    for c in range(4):
        (folder / f"c{c}").mkdir(parents=True)
        for i in range(280):  # 1,120 images: ivfpq trains on at least 1,000
            Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(folder / f"c{c}" / f"{i:03d}.png")
    local, spread = tmp_path / "local.idx", tmp_path / "spread.idx"
    build_index(folder, local, model=str(random_model), kind="ivfpq", progress=False)
    run_cli(
        "index", "build", folder, "--index", spread, "--model", random_model, "--kind", "ivfpq",
        "--cluster", "local", "--workers", "2", "--shard-files", "256", "--json", timeout=300, check=True,
    )  # fmt: skip
    with Searcher(local, device="cpu") as a, Searcher(spread, device="cpu") as b:
        assert a.manifest.kind.value == b.manifest.kind.value == "ivfpq" and b.manifest.count == 1120
        # the same inverted lists, entry for entry (shards merged in id order)
        np.testing.assert_array_equal(a.store.vectors._stored_ids(), b.store.vectors._stored_ids())
        ia, va = a.store.vectors.vectors()
        ib, vb = b.store.vectors.vectors()
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_allclose(va, vb, atol=1e-5)
        probes = np.ascontiguousarray(vb[::37])
        sa, ida = a.store.vectors.search(probes, 10)
        sb, idb = b.store.vectors.search(probes, 10)
        np.testing.assert_array_equal(ida, idb)
        np.testing.assert_allclose(sa, sb, atol=1e-5)
        assert (sb[:, 0] > 0.99).all() and (np.diff(sb, axis=1) <= 1e-6).all()  # best first, itself or a near twin
    # an ordinary index: check is clean and a sync finds nothing to do
    assert run_cli("index", "check", "--index", spread).returncode == 0
    assert build_index(folder, spread, progress=False).unchanged == 1120


def test_a_distributed_ivfpq_build_of_too_few_images_is_one_clear_line(tmp_path, gallery, random_model):
    res = run_cli(
        "index", "build", gallery, "--index", tmp_path / "x.idx", "--model", random_model, "--kind", "ivfpq",
        "--cluster", "local", "--workers", "2", timeout=240,
    )  # fmt: skip
    assert (
        res.returncode == 1 and "ivfpq needs at least 1,000 vectors" in res.stderr and "holds 16 images" in res.stderr
    )
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.idx").exists()  # refused before embedding
