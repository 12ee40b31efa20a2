"""Embeddings out (Parquet, .npy + .json) and back in: the same rows and vectors, an index rebuilt without
embedding that answers as the original did, and refusals of files that would mislead."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from simsearch.engine import Searcher, build_index, export_embeddings, import_embeddings, read_embeddings
from simsearch.errors import DataError
from simsearch.images import scan_folder
from tests.conftest import run_cli


@pytest.fixture
def built(tmp_path, gallery, random_model):
    idx = tmp_path / "g.idx"
    build_index(gallery, idx, model=str(random_model), progress=False)
    return idx


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_export_then_import_gives_the_same_index(tmp_path, built, gallery, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"emb{suffix}"
    done = export_embeddings(built, out)
    back = read_embeddings(out)
    assert len(back) == 16 and back.meta["dim"] == 32 and back.meta["encoder"]["fingerprint"]
    np.testing.assert_array_equal(back.vectors, done.vectors)
    assert back.rows == done.rows and back.rows["id"] == sorted(back.rows["id"])
    with Searcher(built, device="cpu") as s:
        ids, vecs = s.store.vectors.vectors()
        recs = s.store.catalog.get(ids.tolist())
    row = back.rows["id"].index(int(ids[3]))
    np.testing.assert_array_equal(back.vectors[row], vecs[3])
    assert back.rows["path"][row] == recs[int(ids[3])].path and back.rows["label"][row] == recs[int(ids[3])].label
    # rebuilt from the vectors alone: the same ids and the same answers, and it syncs as an ordinary index
    again = tmp_path / "again.idx"
    assert import_embeddings(out, again) == 16
    probe = sorted(str(f.path) for f in scan_folder(gallery).files)[5]
    with Searcher(built, device="cpu") as a, Searcher(again, device="cpu") as b:
        ra, rb = a.query(probe, k=8)[0], b.query(probe, k=8)[0]
        assert [h.id for h in ra.results] == [h.id for h in rb.results]
        assert [h.path for h in ra.results] == [h.path for h in rb.results]
        assert np.allclose([h.score for h in ra.results], [h.score for h in rb.results], atol=1e-6)
        assert b.gallery_root == a.gallery_root
        assert a.identify(probe)[0].label == b.identify(probe)[0].label
    report = build_index(gallery, again, progress=False)
    assert report.unchanged == 16 and report.added == 0 and report.total == 16


def test_import_refuses_what_would_mislead(tmp_path, built, random_model):
    out = tmp_path / "emb.npy"
    export_embeddings(built, out)
    # the encoder that made them must be here with the same weights: another one is refused
    import torch

    from simsearch.checkpoint import save_checkpoint
    from simsearch.encoder import EncoderConfig, build_encoder

    torch.manual_seed(999)
    other = tmp_path / "other_model"
    save_checkpoint(build_encoder(EncoderConfig(widths=(8, 16, 16, 32), embedding_dim=32)), other)
    with pytest.raises(DataError, match="fingerprint"):
        import_embeddings(out, tmp_path / "x.idx", model=str(other))
    # the recorded source is gone: say so and ask for --model
    moved = tmp_path / "moved_model"
    shutil.copytree(random_model, moved)
    side = json.loads(out.with_suffix(".json").read_text())
    side["encoder"]["source"] = str(tmp_path / "nowhere")
    out.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(DataError, match="cannot be found here"):
        import_embeddings(out, tmp_path / "y.idx")
    assert import_embeddings(out, tmp_path / "y.idx", model=str(moved)) == 16
    # an index already there is kept unless asked
    with pytest.raises(DataError, match="already there"):
        import_embeddings(out, tmp_path / "y.idx", model=str(moved))
    # damaged files: a missing sidecar, a wrong width, vectors that are not unit rows
    np.save(tmp_path / "lonely.npy", np.zeros((2, 32), np.float32))
    with pytest.raises(DataError, match="metadata file"):
        read_embeddings(tmp_path / "lonely.npy")
    vecs = np.load(out)
    np.save(out, vecs[:, :16])
    with pytest.raises(DataError, match="width 16"):
        read_embeddings(out)
    np.save(out, vecs * 2)
    with pytest.raises(DataError, match="unit length"):
        import_embeddings(out, tmp_path / "z.idx", model=str(moved))
    with pytest.raises(DataError, match=r"use \.parquet or \.npy"):
        export_embeddings(built, tmp_path / "emb.csv")
    assert not (tmp_path / "z.idx" / "manifest.json").exists()


def test_export_and_import_on_the_command_line(tmp_path, built):
    out = tmp_path / "emb.npy"
    res = run_cli("index", "export", out, "--index", built, "--json", check=True)
    assert json.loads(res.stdout)["count"] == 16
    again = tmp_path / "again.idx"
    assert "imported 16 embeddings" in run_cli("index", "import", out, "--index", again, check=True).stdout
    bad = run_cli("index", "import", out, "--index", again)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ") and bad.stderr.count("\n") == 1
