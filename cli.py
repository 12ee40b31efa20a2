"""The `simsearch` command when run from a checkout (`python cli.py ...`): a launcher of simsearch.cli,
where the commands live (the installed `simsearch` script and `python -m simsearch` run the same)."""

from simsearch.cli import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    main()
