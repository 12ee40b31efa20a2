import json

import numpy as np
import pytest

from index.catalog import Catalog, Record
from index.errors import IndexCorruptError, IndexLockedError, IndexNotFoundError, IndexStoreError
from index.store import IndexStore, Transaction
from tests.conftest import unit_rows


def make_index(path, n=10, dim=8):
    v = unit_rows(n, dim)
    with Transaction.create(path, dim, {"fingerprint": "f"}) as tx:
        ids = tx.new_ids(n)
        tx.add(v, [Record(int(i), f"/img/{i}.png", "a" if i % 2 else "b", 10, 1.0, f"h{i}") for i in ids])
        tx.commit()
    return v


def test_create_open_and_search(tmp_path):
    v = make_index(tmp_path / "x.idx")
    with IndexStore.open(tmp_path / "x.idx") as store:
        assert store.manifest.count == 10 and store.manifest.generation == 1
        assert store.check().ok
        _, ids = store.vectors.search(v[3:4], 1)
        assert ids[0, 0] == 3 and store.catalog.get([3])[3].path == "/img/3.png"
        assert store.catalog.labels() == {"a": 5, "b": 5}


def test_aborted_transaction_changes_nothing(tmp_path):
    make_index(tmp_path / "x.idx")
    before = (tmp_path / "x.idx" / "manifest.json").read_text()
    with pytest.raises(RuntimeError):
        with Transaction.begin(tmp_path / "x.idx") as tx:
            tx.remove([0, 1, 2])
            raise RuntimeError("interrupted")
    assert (tmp_path / "x.idx" / "manifest.json").read_text() == before
    with IndexStore.open(tmp_path / "x.idx") as store:
        assert len(store.vectors) == 10 and store.check().ok
    assert not [p for p in (tmp_path / "x.idx").iterdir() if p.name.startswith(".gen-tmp")]


def test_commit_replaces_generation_and_cleans_up(tmp_path):
    make_index(tmp_path / "x.idx")
    with Transaction.begin(tmp_path / "x.idx") as tx:
        tx.remove([0, 1])
        m = tx.commit()
    assert m.generation == 2 and m.count == 8 and m.next_id == 10
    names = sorted(p.name for p in (tmp_path / "x.idx").iterdir())
    assert names == [".lock", "gen-000002", "manifest.json"]


def test_second_writer_is_refused(tmp_path):
    make_index(tmp_path / "x.idx")
    with Transaction.begin(tmp_path / "x.idx"):
        with pytest.raises(IndexLockedError):
            Transaction.begin(tmp_path / "x.idx")


def test_refuses_to_write_into_a_user_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(IndexStoreError, match="not empty"):
        Transaction.create(tmp_path / "photos", 8, {})
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"x"


def test_missing_and_corrupt_indexes_are_clear_errors(tmp_path):
    with pytest.raises(IndexNotFoundError, match="no such index"):
        IndexStore.open(tmp_path / "nope")
    make_index(tmp_path / "x.idx")
    manifest = tmp_path / "x.idx" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["count"] = 11
    manifest.write_text(json.dumps(data))
    with pytest.raises(IndexCorruptError, match="11"):
        IndexStore.open(tmp_path / "x.idx")
    manifest.write_text("{ not json")
    with pytest.raises(IndexCorruptError):
        IndexStore.open(tmp_path / "x.idx")


def test_catalog_round_trip(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        cat.add([Record(5, "/ä/ö.png", None, 3, 2.5, "abc"), Record(9, "/b.png", "x", 4, 1.0, "def")])
        cat.commit()
        cat.repath(5, "/moved.png", "y", 3.0)
        assert cat.get([5, 9, 77]) == {
            5: Record(5, "/moved.png", "y", 3, 3.0, "abc"),
            9: Record(9, "/b.png", "x", 4, 1.0, "def"),
        }
        assert cat.max_id() == 9 and cat.count() == 2
        cat.remove([9])
        assert cat.ids() == [5]
    # a refused row is said as such, not as a damaged catalog (whose advice, rebuild, would lose entries)
    with pytest.raises(IndexStoreError, match="path given twice"):
        with Catalog(tmp_path / "c2.sqlite") as cat:
            cat.add([Record(1, "/same", None, 1, 1, "h"), Record(2, "/same", None, 1, 1, "h")])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_removal_survives_save_and_load_for_each_kind(tmp_path, kind):
    n, dim = 1500, 16
    v = unit_rows(n, dim, seed=5)
    path = tmp_path / f"{kind}.idx"
    with Transaction.create(path, dim, {"fingerprint": "f"}, kind=kind) as tx:
        ids = tx.new_ids(n)
        tx.add(v, [Record(int(i), f"/img/{i}.png", None, 1, 1.0, "h") for i in ids])
        tx.commit()
    with Transaction.begin(path) as tx:
        tx.remove(list(range(0, n, 3)))
        m = tx.commit()
    assert m.kind.value == kind and m.count == n - 500
    with IndexStore.open(path) as store:
        assert store.check().ok and len(store.vectors) == n - 500
        _, found = store.vectors.search(v[:30], 5)
        assert not np.isin(found, np.arange(0, n, 3)).any()
        # every kind ranks by exact cosine (ivfpq re-ranks its PQ candidates): a live query finds itself first
        assert all(found[i, 0] == i for i in range(30) if i % 3)
    if kind == "ivfpq":  # its exact vectors are on disk beside the codes, and convert back to flat losslessly
        gen = next(path.glob("gen-*"))
        assert (gen / "exact.npy").exists() and (gen / "exact_ids.npy").exists()
        with Transaction.begin(path) as tx:
            tx.request_kind("flat")
            assert tx.commit().kind.value == "flat"
        with IndexStore.open(path) as store:
            ids, vecs = store.vectors.vectors()
            np.testing.assert_array_equal(vecs, v[ids])


def test_auto_kind_turns_hnsw_past_the_size_limit(tmp_path, monkeypatch):
    import index.kinds as kinds

    monkeypatch.setattr(kinds, "AUTO_HNSW_FROM", 100)  # a small limit instead of 50,000 vectors
    v = unit_rows(150, 8)
    with Transaction.create(tmp_path / "a.idx", 8, {}) as tx:
        ids = tx.new_ids(60)
        tx.add(v[:60], [Record(int(i), f"/{i}", None, 1, 1.0, "h") for i in ids])
        assert tx.commit().kind.value == "flat"
    with Transaction.begin(tmp_path / "a.idx") as tx:
        ids = tx.new_ids(90)
        tx.add(v[60:], [Record(int(i), f"/{i}", None, 1, 1.0, "h") for i in ids])
        m = tx.commit()
    assert m.kind.value == "hnsw" and m.requested_kind == "auto" and m.count == 150
    with IndexStore.open(tmp_path / "a.idx") as store:
        assert store.vectors.search(v[100:101], 1)[1][0, 0] == 100


def test_user_folders_named_like_generations_are_never_removed(tmp_path):
    # an --index folder holding only user folders that look like generations is not an index
    idx = tmp_path / "mine"
    for name in ("gen-2019", ".gen-tmp-notes", "gen-000001"):
        (idx / name).mkdir(parents=True)
        (idx / name / "photo.jpg").write_bytes(b"mine")
    with pytest.raises(IndexStoreError, match="not empty and is not a simsearch index"):
        Transaction.create(idx, 8, {"fingerprint": "f"})
    assert sorted(p.name for p in idx.iterdir() if p.name != ".lock") == [".gen-tmp-notes", "gen-000001", "gen-2019"]
    # inside a real index, such folders survive every write, and a generation number that is taken refuses
    real = tmp_path / "x.idx"
    make_index(real)
    for name in ("gen-2019", ".gen-tmp-notes", "gen-000003"):
        (real / name).mkdir()
        (real / name / "photo.jpg").write_bytes(b"mine")
    with Transaction.begin(real) as tx:
        tx.remove([0])
        tx.commit()  # generation 2
    with pytest.raises(IndexStoreError, match="not written by simsearch"), Transaction.begin(real) as tx:
        tx.remove([1])
        tx.commit()  # generation 3 is the user's folder
    for name in ("gen-2019", ".gen-tmp-notes", "gen-000003"):
        assert (real / name / "photo.jpg").read_bytes() == b"mine"
    with IndexStore.open(real) as store:
        assert store.manifest.generation == 2 and store.check().ok
    # what the index did write is still cleaned up: a leftover generation of a crashed write
    (real / "gen-000009").mkdir()
    (real / "gen-000009" / "vectors.faiss").write_bytes(b"half")
    (real / "gen-000003" / "photo.jpg").unlink()
    (real / "gen-000003").rmdir()
    with Transaction.begin(real) as tx:
        tx.remove([2])
        tx.commit()
    assert not (real / "gen-000009").exists() and (real / "gen-2019" / "photo.jpg").exists()


def test_reading_never_writes_into_a_catalog(tmp_path):
    idx = tmp_path / "x.idx"
    make_index(idx)
    manifest = json.loads((idx / "manifest.json").read_text())
    catalog = idx / manifest["files"]["catalog"]
    catalog.write_bytes(b"")  # an empty catalog file: damaged, and it must stay as it is
    with pytest.raises(IndexCorruptError):
        IndexStore.open(idx)
    assert catalog.read_bytes() == b""


def test_a_reader_opening_during_commits_never_fails(tmp_path):
    import threading

    idx = tmp_path / "x.idx"
    make_index(idx, n=200)
    stop, errors = threading.Event(), []

    def write() -> None:
        for k in range(30):
            with Transaction.begin(idx) as tx:
                tx.remove([k])
                tx.commit()
        stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    opened = 0
    while not stop.is_set():
        try:
            with IndexStore.open(idx) as store:
                assert store.check().ok
                opened += 1
        except IndexStoreError as err:  # pragma: no cover - the failure this test exists to catch
            errors.append(str(err))
    writer.join()
    assert not errors and opened > 0


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda m: [m], "is a list, not an object"),
        (lambda m: dict(m, encoder="characters"), "encoder is 'characters', not dict"),
        (lambda m: dict(m, generation="seven"), "generation is 'seven', not int"),
        (lambda m: dict(m, threshold="0.5"), "threshold is '0.5'"),
        (lambda m: dict(m, params=[1, 2]), "params is [1, 2], not dict"),
        (lambda m: {k: v for k, v in m.items() if k != "dim"}, "dim is missing"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_a_clear_error(tmp_path, damage, why):
    idx = tmp_path / "x.idx"
    make_index(idx)
    manifest = json.loads((idx / "manifest.json").read_text())
    (idx / "manifest.json").write_text(json.dumps(damage(manifest)))
    with pytest.raises(IndexCorruptError, match=why.replace("[", r"\[").replace("]", r"\]")):
        IndexStore.open(idx)


def test_a_stale_next_id_never_reuses_an_id(tmp_path):
    idx = tmp_path / "x.idx"
    make_index(idx)
    manifest = json.loads((idx / "manifest.json").read_text())
    (idx / "manifest.json").write_text(json.dumps(dict(manifest, next_id=3)))
    with Transaction.begin(idx) as tx:
        ids = tx.new_ids(2)
        assert ids.tolist() == [10, 11]
        tx.add(unit_rows(2, 8, seed=5), [Record(int(i), f"/img/new{i}.png", None, 1, 1.0, "h") for i in ids])
        tx.commit()
    with IndexStore.open(idx) as store:
        assert store.manifest.count == 12 and store.manifest.next_id == 12


def test_files_overwritten_in_place_are_caught_by_their_checksums(tmp_path):
    idx = tmp_path / "x.idx"
    make_index(idx)
    manifest = json.loads((idx / "manifest.json").read_text())
    assert set(manifest["checksums"]) == {"vectors.faiss", "catalog.sqlite"}
    vectors = idx / manifest["files"]["vectors"]
    data = bytearray(vectors.read_bytes())
    data[-40:-8] = np.full(8, np.nan, dtype=np.float32).tobytes()  # same size, NaN where numbers were
    vectors.write_bytes(bytes(data))
    with IndexStore.open(idx) as store:
        report = store.check()
    assert not report.ok and any("does not match its checksum" in p for p in report.problems)
    # no new generation is built on damaged files
    with pytest.raises(IndexCorruptError, match="does not match its checksum"):
        Transaction.begin(idx)
