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
