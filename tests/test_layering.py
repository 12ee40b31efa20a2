"""The seams of ../shared/DESIGN.md: index/ stands on numpy, faiss and sqlite3; only engine.py meets faiss."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_import_index_loads_neither_torch_nor_pil():
    code = "import sys, index, index.store, index.catalog, index.vector_index; print(sorted(m for m in ('torch', 'PIL', 'simsearch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


def test_index_package_never_imports_the_encoder_side():
    for path in (REPO / "index").glob("*.py"):
        assert not imported_modules(path) & {"torch", "PIL", "simsearch"}, path


def test_only_the_engine_imports_faiss():
    users = {p.name for p in (REPO / "simsearch").rglob("*.py") if "faiss" in imported_modules(p)}
    assert users <= {"engine.py"}
