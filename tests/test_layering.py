"""The seams of docs/ARCHITECTURE.md, checked on the imports themselves: index/ stands on numpy, faiss
and sqlite3; only simsearch/engine/ imports index/; train/ never reaches the engine; click stays in the
CLI module; importing the light modules loads neither faiss nor click (nor torch, for the lightest)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def loaded_after(statement: str) -> set[str]:
    """The top-level modules loaded in a fresh interpreter after running `statement`."""
    code = f"import sys, json; {statement}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    return set(json.loads(out))


def package_files(sub: str) -> list[Path]:
    return sorted((REPO / "simsearch" / sub).rglob("*.py"))


def test_import_index_loads_neither_torch_nor_pil():
    loaded = loaded_after("import index, index.store, index.catalog, index.vector_index")
    assert not loaded & {"torch", "PIL", "simsearch", "click"}


def test_index_package_never_imports_the_encoder_side():
    for path in (REPO / "index").glob("*.py"):
        assert not top(imported_modules(path)) & {"torch", "PIL", "simsearch", "click"}, path


def test_only_the_engine_imports_index_and_faiss():
    for path in (REPO / "simsearch").rglob("*.py"):
        if "engine" in path.relative_to(REPO / "simsearch").parts:
            continue
        assert not top(imported_modules(path)) & {"index", "faiss"}, path


def test_train_never_imports_the_engine():
    for path in package_files("train"):
        assert not any(n.startswith("simsearch.engine") for n in imported_modules(path)), path
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, simsearch.train; print('simsearch.engine' in sys.modules, 'faiss' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout.split()
    assert loaded == ["False", "False"]


def test_only_the_cli_module_imports_click():
    for path in (REPO / "simsearch").rglob("*.py"):
        if "cli" not in path.relative_to(REPO / "simsearch").parts:
            assert "click" not in top(imported_modules(path)), path


def test_only_backbones_imports_the_model_libraries():
    for path in (REPO / "simsearch").rglob("*.py"):
        if path.name != "backbones.py":
            assert not top(imported_modules(path)) & {"timm", "torchvision", "open_clip"}, path


@pytest.mark.parametrize(
    "module, banned",
    [
        ("simsearch.checkpoint", {"faiss", "click", "index"}),
        ("simsearch.results", {"faiss", "click", "index", "torch"}),
        ("simsearch.preprocess", {"faiss", "click", "index", "torch", "PIL", "numpy"}),
        ("simsearch.images", {"faiss", "click", "index", "torch"}),
        ("simsearch.embed", {"faiss", "click", "index"}),
        ("simsearch.train", {"faiss", "click", "index"}),
        ("simsearch.evaluate", {"faiss", "click", "index", "torch"}),
        ("simsearch", {"faiss", "click", "index", "torch", "PIL"}),
        ("simsearch.engine", {"torch", "click"}),
    ],
)
def test_importing_a_module_loads_only_what_it_stands_on(module, banned):
    assert not loaded_after(f"import {module}") & banned


def test_no_generic_top_level_cli_module_is_installed():
    """The installed package is simsearch/ and index/; the repository's cli.py is only a launcher."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["simsearch"] == "simsearch.cli:main"
    assert "py-modules" not in project["tool"].get("setuptools", {})
