"""The entry point: the one place that turns errors into a line and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from simsearch.cli.common import (
    one_line,
)
from simsearch.cli.root import cli


def _flag_names() -> dict[str, str]:
    """Every option's parameter name -> the flag a user types (its longest spelling)."""
    names: dict[str, str] = {}

    def walk(cmd: click.Command) -> None:
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name:
                names.setdefault(p.name, max(p.opts, key=len))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(cli)
    return names


def _flag(field: str) -> str:
    return _flag_names().get(field, "--" + field.replace("_", "-"))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: runs the click group and turns errors into one line and an exit code:
    1 bad input or data (2 for verify, whose 1 means "different"), 2 usage, 130 interrupted."""
    from simsearch.errors import ConfigError, SimSearchError

    state: dict[str, Any] = {"error_exit": 1}
    try:
        rv = cli.main(args=argv, prog_name="simsearch", standalone_mode=False, obj=state)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:  # one line, as every error: what is wrong and where help is
        where = f"{e.ctx.command_path} --help" if e.ctx is not None else "simsearch --help"
        click.echo(f"Error: {one_line(e.format_message())} (see '{where}')", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"Error: {one_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("\nInterrupted: nothing was changed.", err=True)
        sys.exit(130)
    except ConfigError as e:  # settings that do not go together: a usage error, in flags
        click.echo(f"Error: {one_line(e.render(_flag))}", err=True)
        sys.exit(2)
    except SimSearchError as e:
        click.echo(f"Error: {one_line(str(e))}", err=True)
        sys.exit(state["error_exit"])
    except ValueError as e:  # configuration values validated in dataclasses
        click.echo(f"Error: {one_line(str(e))}", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(one_line(f"Error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")), err=True)
        sys.exit(state["error_exit"])
    except Exception as e:
        import sqlite3

        if isinstance(e, sqlite3.DatabaseError):  # a damaged page met while reading the catalog
            click.echo(f"Error: the index catalog is damaged ({one_line(str(e))}); rebuild with --overwrite", err=True)
            sys.exit(state["error_exit"])
        if "simsearch.engine" in sys.modules:  # an index's own errors (missing, locked, corrupt) come through it
            from simsearch.engine import IndexStoreError

            if isinstance(e, IndexStoreError):
                click.echo(f"Error: {one_line(str(e))}", err=True)
                sys.exit(state["error_exit"])
        raise
