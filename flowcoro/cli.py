"""The ``flowcoro`` command line (console script and ``python -m flowcoro``).

Usage::

    flowcoro --version
    flowcoro demo [--host HOST] [--port PORT] [--db PATH]
    flowcoro info

``demo`` runs the demo service (:mod:`flowcoro.demo`) until Ctrl-C;
``info`` prints the version, the Python and the reactor backends compiled in.
"""
import argparse
import sys

import flowcoro

__all__ = ["main", "build_parser"]


def build_parser():
    """Return the argument parser of the ``flowcoro`` command."""
    from flowcoro import demo

    parser = argparse.ArgumentParser(
        prog="flowcoro", description="FlowCoro: a C-accelerated, asyncio-compatible event loop.")
    parser.add_argument("--version", action="version", version=f"flowcoro {flowcoro.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo.build_parser(sub.add_parser(
        "demo", help="run the demo key-value service (SQLite, line protocol) until Ctrl-C",
        description=demo.__doc__.splitlines()[0]))
    sub.add_parser("info", help="print the version, the Python and the reactor backends")
    return parser


def _info():
    import platform

    from flowcoro._core.loop import available_backends

    loop = flowcoro.new_event_loop()
    try:
        print(f"flowcoro {flowcoro.__version__}")
        print(f"python {platform.python_implementation()} {platform.python_version()}")
        print(f"backends {','.join(available_backends())} (default: {loop.backend})")
    finally:
        loop.close()
    return 0


def main(argv=None):
    """Run the ``flowcoro`` command with ``argv`` (default: sys.argv[1:]); return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from flowcoro import demo
        return demo.run_demo(args)
    if args.command == "info":
        return _info()
    parser.print_help()
    return 2
