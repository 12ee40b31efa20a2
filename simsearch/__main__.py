"""`python -m simsearch ...`: the same command as the installed `simsearch` script."""

from simsearch.cli import main

main()
