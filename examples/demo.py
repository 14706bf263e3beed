"""The FlowCoro demo service (same as ``make run`` / ``python -m flowcoro demo``).

A small REST API over SQLite on FlowCoro's HTTP server (``/api/items``,
``/healthz``, and an index page at ``/`` listing the endpoints); the code is
in flowcoro/demo.py (shipped inside the package so that the installed
``flowcoro demo`` command has it too).

    python examples/demo.py --port 8080 --db demo.sqlite3
    curl -i -X POST localhost:8080/api/items -d '{"name": "apple", "value": "red"}'
    curl localhost:8080/api/items
"""
import os
import sys

# Run from a source checkout without installing: import the tree's flowcoro.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from flowcoro.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
