"""The ``styleaxis`` command line, one module per command group (see :mod:`styleaxis.cli.main`)."""
from styleaxis.cli.main import main

__all__ = ["main"]
