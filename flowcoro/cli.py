"""The ``flowcoro`` command line (console script and ``python -m flowcoro``).

Usage::

    flowcoro --version
    flowcoro demo [--host HOST] [--port PORT] [--db PATH]
    flowcoro serve MODULE:APP [--host HOST] [--port PORT] [--workers N]
                   [--lifespan auto|on|off] [--root-path PATH]
    flowcoro info

``demo`` runs the demo service (:mod:`flowcoro.demo`) until Ctrl-C;
``serve`` runs an ASGI 3 application (Starlette, FastAPI, ...) on FlowCoro's
HTTP server (:mod:`flowcoro.http.asgi`) until Ctrl-C / SIGTERM;
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
        "demo", help="run the demo REST API (HTTP on SQLite) until Ctrl-C",
        description=demo.__doc__.splitlines()[0]))
    serve = sub.add_parser("serve", help="run an ASGI application on FlowCoro's HTTP server",
                           description="Run an ASGI 3 application (module:attribute).")
    serve.add_argument("app", help="the application, as module:attribute (e.g. main:app)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes sharing the port with SO_REUSEPORT (default 1)")
    serve.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto",
                       help="ASGI lifespan protocol (default auto)")
    serve.add_argument("--root-path", default="", help="ASGI root_path (mount point)")
    serve.add_argument("--max-body", type=int, default=None,
                       help="largest request body in bytes (413 beyond; default: no limit)")
    serve.add_argument("--ws-max-size", type=int, default=1 << 20,
                       help="largest WebSocket message in bytes (closed with 1009 beyond; "
                            "default 1048576)")
    serve.add_argument("--ws-ping-interval", type=float, default=20.0,
                       help="seconds between WebSocket keep-alive pings; 0 sends none "
                            "(default 20)")
    serve.add_argument("--ws-ping-timeout", type=float, default=20.0,
                       help="seconds a keep-alive ping waits for its pong before the "
                            "connection is closed with 1011 (default 20)")
    sub.add_parser("info", help="print the version, the Python and the reactor backends")
    return parser


def _serve(args):
    import logging
    import os

    from flowcoro.http.asgi import ASGIServer, load_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, os.getcwd())
    app = load_app(args.app)
    websocket = {"max_message": args.ws_max_size,
                 "ping_interval": args.ws_ping_interval or None,
                 "ping_timeout": args.ws_ping_timeout}
    ASGIServer(app, lifespan=args.lifespan, root_path=args.root_path,
               max_body=args.max_body, websocket=websocket).run(
        args.host, args.port, workers=args.workers)
    return 0


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
    if args.command == "serve":
        return _serve(args)
    if args.command == "info":
        return _info()
    parser.print_help()
    return 2
