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
    np.save(out, vecs[:, :16])  # the .npy replaced, its sidecar not: a pair from two writes
    with pytest.raises(DataError, match="sha256 differs"):
        read_embeddings(out)
    _resave(out, vecs[:, :16])  # a consistent pair of the wrong width
    with pytest.raises(DataError, match="width 16"):
        read_embeddings(out)
    _resave(out, vecs * 2)
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


def _resave(out, vectors):
    """Replace an export's vectors and record their hash in its sidecar, as a consistent writer would."""
    import hashlib

    np.save(out, vectors)
    side = json.loads(out.with_suffix(".json").read_text())
    side["vectors_sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_suffix(".json").write_text(json.dumps(side))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("id", 2**63 - 1, "not an integer in"),
        ("id", None, "not an integer in"),
        ("id", True, "not an integer in"),
        ("path", "/a\x00b.png", "without NUL"),
        ("mtime", float("nan"), "not a finite time"),
        ("size", -1, "not a byte count"),
    ],
)
def test_import_refuses_bad_rows_with_one_line(tmp_path, built, column, value, message):
    out = tmp_path / "emb.npy"
    export_embeddings(built, out)
    side = json.loads(out.with_suffix(".json").read_text())
    side["rows"][column][0] = value
    out.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(DataError, match=f"row 0 of column {column}: .*{message}"):
        read_embeddings(out)


def test_import_refuses_duplicate_paths_objects_and_deep_json(tmp_path, built):
    out = tmp_path / "emb.npy"
    export_embeddings(built, out)
    side_path = out.with_suffix(".json")
    side = json.loads(side_path.read_text())
    dup = json.loads(json.dumps(side))
    dup["rows"]["path"][1] = dup["rows"]["path"][0]
    side_path.write_text(json.dumps(dup))
    with pytest.raises(DataError, match="given twice"):
        read_embeddings(out)
    obj = json.loads(json.dumps(side))
    obj["rows"]["label"] = {"0": "a"}
    side_path.write_text(json.dumps(obj))
    with pytest.raises(DataError, match="column label is a dict"):
        read_embeddings(out)
    side_path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"nested too deeply|not a simsearch"):
        read_embeddings(out)
    # a NaN row is refused with its count
    side_path.write_text(json.dumps(side))
    vecs = np.load(out)
    vecs[0] = np.nan
    _resave(out, vecs)
    with pytest.raises(DataError, match="1 of 16 are not"):
        import_embeddings(out, tmp_path / "n.idx")


def test_an_export_pair_left_half_written_is_refused(tmp_path, built):
    """A failure between the two renames leaves the new .npy beside the old .json: import refuses the pair."""
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    export_embeddings(built, a)
    vecs = np.load(a)
    np.save(b, vecs[::-1].copy())  # another export's vectors, same shape
    b.replace(a)
    with pytest.raises(DataError, match="sha256 differs"):
        read_embeddings(a)
