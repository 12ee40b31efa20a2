"""The benchmark harness at its small size: only that every section runs and writes its table."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_small_benchmark_writes_every_table(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--size", "small", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks") and "python bench/run.py --size small" in text
    for heading in (
        "## 1. Indexing",
        "## 2. Sync",
        "## 3. Query latency",
        "## 4. Search alone",
        "## 5. Accuracy",
        "## 5b. One-shot identification of drawn symbols",
        "## 7. Search service",
        "## 8. Copy detection",
        "## 9. Open-set identification",
        "## 10. Default duplicate thresholds",
        "## 11. Intake of big photos",
        "## 12. Distributed build",
    ):
        assert heading in text
    # the search table has a recall@10 for each of our kinds, and flat search is exact
    flat = re.findall(r"\| simsearch flat \|(?:[^|]*\|){4} ([0-9.]+) \|", text)
    assert flat and all(float(r) == 1.0 for r in flat)
    for kind in ("hnsw", "ivfpq"):
        recalls = re.findall(rf"\| simsearch {kind} \|(?:[^|]*\|){{4}} ([0-9.]+) \|", text)
        assert recalls and all(0.0 <= float(r) <= 1.0 for r in recalls)


def test_unknown_section_is_refused():
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--only", "nonsense", "--out", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "unknown sections" in proc.stderr
