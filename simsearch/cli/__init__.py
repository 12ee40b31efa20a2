"""The `simsearch` command: click only, one module per command group. Each command builds a request,
calls one library function and prints; main() is the one place that turns errors into a line and an exit
code. Importing this package registers every command on the `cli` group and loads neither torch nor faiss."""

from simsearch.cli import demo, evaluate, gallery, index, models, search, serve, train  # noqa: F401 (registers)
from simsearch.cli.main import main
from simsearch.cli.root import cli

__all__ = ["cli", "main"]
