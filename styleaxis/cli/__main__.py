"""``python -m styleaxis.cli``: the ``styleaxis`` command."""
import sys

from styleaxis.cli.main import main

sys.exit(main())
