"""``python -m flowcoro``: the ``flowcoro`` command (see :mod:`flowcoro.cli`)."""
import sys

from flowcoro.cli import main

if __name__ == "__main__":
    sys.exit(main())
