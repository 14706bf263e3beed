"""The FlowCoro demo service (same as ``make run`` / ``python -m flowcoro demo``).

A key-value server with a one-line-per-command protocol over TCP, stored in
SQLite; the code, with the protocol, is in flowcoro/demo.py (shipped inside
the package so that the installed ``flowcoro demo`` command has it too).

    python examples/demo.py --port 8765
    printf 'SET greeting hello\\nGET greeting\\nQUIT\\n' | nc 127.0.0.1 8765
"""
import os
import sys

# Run from a source checkout without installing: import the tree's flowcoro.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from flowcoro.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
