"""The public Python API: cheap to import, everything in __all__ resolves, `python -m simsearch`
works, and the examples in docs/api.md run as written."""

from __future__ import annotations

import re
import subprocess
import sys

import simsearch
from tests.conftest import REPO


def test_every_public_name_resolves_and_the_version_is_the_package_version():
    from importlib.metadata import version

    for name in simsearch.__all__:
        assert getattr(simsearch, name) is not None, name
    assert simsearch.__version__ == version("simsearch")


def test_python_dash_m_runs_the_command():
    proc = subprocess.run([sys.executable, "-m", "simsearch", "--version"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and simsearch.__version__ in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "simsearch", "models", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0 and '"characters"' in proc.stdout


def test_the_examples_in_docs_api_md_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) == 2
    out = []
    for code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        out.append(proc.stdout)
    first = out[0].splitlines()
    assert first[0] == "20 indexed, 0 skipped"
    # the new star's nearest drawing is a gallery star; it is identified, the spiral (no such class) is not
    assert first[1].split()[2] == "star"
    assert first[6].startswith("star ") and first[7].startswith("unknown ")
    assert out[1].count("error:") == 2 and "no-such-model" in out[1]
