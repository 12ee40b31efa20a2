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
