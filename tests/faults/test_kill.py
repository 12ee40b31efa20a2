"""kill -9 at random moments of index writes (add, remove, sync-like replace): whatever moment it lands, the
index opens, checks clean, answers queries, and the next write succeeds and clears the leftovers."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time

import numpy as np

from index.catalog import Record
from index.store import IndexStore, Transaction
from tests.conftest import REPO, unit_rows
from tests.index.test_store import make_index

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {repo!r})
    from index.catalog import Record
    from index.store import Transaction
    idx, seed = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(seed)
    print("ready", flush=True)
    for step in range(10_000):
        with Transaction.begin(idx) as tx:
            ids = [r.id for r in tx.catalog.all()]
            if ids and rng.random() < 0.4:
                tx.remove([int(i) for i in rng.choice(ids, size=min(len(ids), 3), replace=False)])
            new = tx.new_ids(int(rng.integers(1, 50)))
            v = rng.normal(size=(len(new), 8)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            tx.add(v, [Record(int(i), f"/img/{{int(i)}}.png", "a", 1, 1.0, f"h{{int(i)}}") for i in new])
            tx.commit()
    """
)


def test_kill_9_at_random_moments_of_writes_loses_nothing(tmp_path):
    rnd = random.Random(0)
    idx = tmp_path / "k.idx"
    make_index(idx, n=20)
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    generations = []
    for trial in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(idx), str(trial)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(rnd.uniform(0.0, 0.4))
        proc.kill()
        proc.wait(timeout=30)
        with IndexStore.open(idx) as store:
            report = store.check()
            assert report.ok, report.problems
            generations.append(store.manifest.generation)
            if store.manifest.count:
                _, vecs = store.vectors.vectors()
                _, hit = store.vectors.search(vecs[:1], 1)
                assert hit[0, 0] >= 0
    # the next write succeeds and leaves only the current generation behind
    with Transaction.begin(idx) as tx:
        new = int(tx.new_ids(1)[0])
        tx.add(unit_rows(1, 8, seed=9), [Record(new, "/x.png", None, 1, 1.0, "x")])
        tx.commit()
    left = sorted(p.name for p in idx.iterdir() if p.name.startswith(("gen-", ".gen-tmp-")))
    with IndexStore.open(idx) as store:
        assert left == [store.manifest.gen_dir] and store.check().ok
    assert generations == sorted(generations) and generations[-1] > 1  # writes did land between kills
    assert np.all(np.diff(generations) >= 0)


def test_kill_9_at_random_moments_of_cli_syncs_and_adds_loses_nothing(tmp_path):
    """The real command line killed while it syncs or adds (scanning, embedding or committing): each time
    the index checks clean and answers, and a sync run to the end leaves exactly the folder's files."""
    from simsearch.symbols import write_symbol_set
    from tests.conftest import run_cli, simsearch_cmd

    rnd = random.Random(1)
    gallery, extra, idx = tmp_path / "gallery", tmp_path / "extra", tmp_path / "s.idx"
    write_symbol_set(gallery, ["circle", "triangle"], per_class=4, seed=0)
    write_symbol_set(extra, ["star", "cross", "square"], per_class=6, seed=1)
    run_cli("index", "build", gallery, "--index", idx, "-q", check=True)
    kinds = []
    for trial in range(3):
        # change the folder, then start a sync (or an add of another folder) and kill it somewhere
        for p in rnd.sample(sorted(gallery.rglob("*.png")), 2):
            p.unlink()
        write_symbol_set(gallery, ["star", "cross"], per_class=3, seed=10 + trial)
        args = ["index", "build", str(gallery)] if trial % 2 == 0 else ["index", "add", str(extra / "square")]
        proc = subprocess.Popen(
            [*simsearch_cmd(), *args, "--index", str(idx), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(rnd.uniform(0.5, 4.5))
        kinds.append("killed" if proc.poll() is None else "finished")
        proc.kill()
        proc.wait(timeout=30)
        with IndexStore.open(idx) as store:
            report = store.check()
            assert report.ok, report.problems
        probe = next(iter(sorted(gallery.rglob("*.png"))))
        assert run_cli("query", probe, "--index", idx, "-k", "1", "--json").returncode == 0
    assert "killed" in kinds, kinds  # at least one kill landed mid-run
    run_cli("index", "build", gallery, "--index", idx, "-q", check=True)
    with IndexStore.open(idx) as store:
        assert store.check().ok
        paths = sorted(r.path for r in store.catalog.all())
    on_disk = sorted(str(p) for p in gallery.rglob("*.png"))
    added = sorted(str(p) for p in (extra / "square").glob("*.png"))
    assert [p for p in paths if p not in added] == on_disk  # no ghost, nothing lost, nothing twice
    left = [p.name for p in idx.iterdir() if p.name.startswith(".gen-tmp-")]
    assert left == []
