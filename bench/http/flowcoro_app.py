"""Plaintext app for ../shared/bench/http.sh: GET / -> 'Hello, World!'.

    python bench/http/flowcoro_app.py --port 8090 [--mode native|asgi]

native: flowcoro.http.HttpServer with one route; asgi: the bare ASGI app of
shared/bench/servers/asgi_app.py on flowcoro.http.asgi.ASGIServer.
"""
import argparse
import logging

from flowcoro.http import HttpServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=8090)
parser.add_argument("--mode", choices=("native", "asgi"), default="native")
parser.add_argument("--workers", type=int, default=1)
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)

if args.mode == "native":
    app = HttpServer()

    @app.route("/")
    async def hello(request):
        return "Hello, World!"
else:
    from asgi_app import app as asgi_app   # shared/bench/servers (the cwd of http.sh)

    from flowcoro.http.asgi import ASGIServer
    app = ASGIServer(asgi_app, lifespan="off")

app.run("127.0.0.1", args.port, workers=args.workers)
