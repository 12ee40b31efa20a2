"""The `simsearch` command group; each command module registers itself on it."""

from __future__ import annotations

import click

from simsearch import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, package_name="simsearch")
def cli() -> None:
    """Similarity search for images with a Siamese encoder and a FAISS index.

    \b
    Typical use:
      simsearch index build PHOTOS/ --index my.idx    embed a folder into an index
      simsearch query some.jpg --index my.idx -k 5    nearest gallery images
      simsearch identify probe.png --index my.idx     which class, or "unknown"
      simsearch demo                                  everything above on a drawn gallery, offline
    """
