"""``python -m starmap``: the ``starmap`` command (with no arguments: serve until SIGTERM or SIGINT)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
