"""The house rules of docs/ARCHITECTURE.md that keep the front rooms as clear as the back, checked on the
source itself: no module over 600 lines, no function of the CLI or the service over 60 lines, no import
cycle among the package's modules (function-level imports included; imports only for type checking are
not imports), and engine/ never imports evaluate/ (the measures it needs live in simsearch.measures)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("simsearch", "index")
MAX_MODULE_LINES = 600
MAX_FRONT_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The package modules `path` imports at run time, at any depth."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(path, name, known) for name, path in known.items()}


def test_no_module_is_over_600_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_MODULE_LINES}


def test_no_function_of_the_cli_or_the_service_is_over_60_lines():
    too_long = {}
    for name, path in _modules().items():
        if not name.startswith(("simsearch.cli", "simsearch.service")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body_start = node.body[0].lineno  # decorators (click options) are declarations, not code
                lines = node.end_lineno - body_start + 1
                if lines > MAX_FRONT_FUNCTION_LINES:
                    too_long[f"{name}.{node.name}"] = lines
    assert not too_long


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles


def test_the_engine_never_imports_evaluate():
    for name, deps in _graph().items():
        if name.startswith("simsearch.engine"):
            assert not {d for d in deps if d.startswith("simsearch.evaluate")}, name


def test_models_help_and_index_info_load_no_torch(tmp_path):
    """Reading what is installed or stored needs no network: `models`, `--help` and `index info` run
    without importing torch (1.2 s and a GB of address space)."""
    import subprocess
    import sys

    from simsearch.symbols import write_symbol_set
    from tests.conftest import run_cli

    write_symbol_set(tmp_path / "g", ["circle", "star"], per_class=2, seed=0)
    run_cli("index", "build", tmp_path / "g", "--index", tmp_path / "g.idx", "-q", check=True)
    for args in (
        ["models"],
        ["models", "--json"],
        ["--help"],
        ["train", "--help"],
        ["index", "info", "--index", str(tmp_path / "g.idx")],
    ):
        code = (
            "import sys\nfrom simsearch.cli import main\n"
            f"sys.argv = ['simsearch', *{args!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('torch' in sys.modules, file=sys.stderr)"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 0 and proc.stderr.strip().endswith("False"), (args, proc.stderr[-500:])


def test_the_cli_reference_in_docs_is_generated_from_the_commands():
    from simsearch.cli.reference import reference

    assert (REPO / "docs" / "cli.md").read_text() == reference(), "run: python -m simsearch.cli.reference > docs/cli.md"
