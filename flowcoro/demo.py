"""The FlowCoro demo service: a small REST API over SQLite on FlowCoro's HTTP server.

Run it with ``make run``, ``python -m flowcoro demo`` or
``python examples/demo.py``; open http://127.0.0.1:8080/ for the list of
endpoints, or use curl::

    curl -i -X POST localhost:8080/api/items -d '{"name": "apple", "value": "red"}'
    curl localhost:8080/api/items?prefix=ap
    curl localhost:8080/api/items/1

It needs no external service: the store is SQLite, in memory unless
``--db PATH`` names a file.

What it shows:

* :class:`flowcoro.http.HttpServer` on the FlowCoro loop: routes with typed
  path parameters (``/api/items/{id:int}``), JSON in and out, an "after"
  middleware (the access log), 404/405 answered by the router;
* the database through :mod:`flowcoro.db` (``sqlite://`` URL, ``$n``
  parameters, typed errors: a duplicate name is an ``IntegrityError``);
  its SQLite driver keeps the blocking sqlite3 calls on a worker thread,
  so the loop never waits on the database;
* graceful shutdown on Ctrl-C (SIGINT) or SIGTERM: stop accepting, finish
  the requests in flight, close idle keep-alive connections, close the
  store, exit 0.  A second Ctrl-C during shutdown exits at once (130).

API (JSON bodies; errors are ``{"error": "..."}`` with the status below):

========================  ==================================================
``GET /``                 this list as an HTML page, with curl examples
``GET /healthz``          ``{"status": "ok", "items": N, ...}``
``GET /api/items``        ``{"items": [...], "count": N}``, ordered by id;
                          ``?prefix=`` filters names, ``?limit=`` (1-1000,
                          default 100) caps the list (400 if not a number)
``POST /api/items``       ``{"name": str, "value": str}`` (value optional) ->
                          201 with ``Location: /api/items/{id}`` and the item;
                          409 if the name exists; 400 bad JSON; 422 bad fields
``GET /api/items/{id}``   the item ``{"id", "name", "value"}``, or 404
``PUT /api/items/{id}``   replace name and value -> 200 and the item; 404, 409
``DELETE /api/items/{id}`` 204, or 404
``GET /chat``             the chat page (HTML + JS, no external assets)
``GET /ws/chat``          the chat's WebSocket endpoint (protocol below)
========================  ==================================================

The chat (:class:`Chat`) runs on :class:`flowcoro.websocket.server.WebSocketServer`
and :class:`~flowcoro.websocket.server.ChatRoom`.  Every message, both ways,
is a small JSON text message ``{"type", "room", "name", "text"}``:

* client -> server: ``{"type": "join", "room": R, "name": N}`` (again to
  change room or name), ``{"type": "message", "text": T}``,
  ``{"type": "leave"}``;
* server -> the room: ``{"type": "join"|"leave", "room", "name", "text"}``
  notices and ``{"type": "message", "room", "name", "text"}`` (the sender
  gets its own message back too, so every member sees one order);
* server -> the sender only: ``{"type": "error", "text": "..."}`` for a bad
  message (the connection stays open).
"""
import argparse
import asyncio
import html
import json
import os
import signal
import sys

import flowcoro
import flowcoro.db
from flowcoro.errors import DatabaseError, IntegrityError
from flowcoro.http import HttpServer, Response
from flowcoro.websocket.server import ChatRoom, WebSocketServer

__all__ = ["ItemStore", "DuplicateName", "Chat", "build_app", "serve", "build_parser",
           "run_demo", "main"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: How long shutdown lets in-flight requests finish before cutting them.
SHUTDOWN_GRACE_S = 5.0
#: Request bodies are small JSON objects; anything larger is refused (413).
MAX_BODY = 64 * 1024
MAX_NAME = 200
MAX_VALUE = 10_000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Chat limits (characters): a name, a room name, one message's text.
MAX_CHAT_NAME = 32
MAX_CHAT_ROOM = 64
MAX_CHAT_TEXT = 2000
#: Bytes of one WebSocket message from a chat client (a JSON object with the
#: fields above fits easily; anything larger is refused with 1009).
MAX_CHAT_MESSAGE = 16 * 1024


class DuplicateName(Exception):
    """An item with that name exists already (the API answers 409)."""


class ItemStore:
    """The ``items`` table in SQLite, through :mod:`flowcoro.db`.

    flowcoro.db's SQLite connection runs every statement on one worker
    thread that owns the sqlite3 connection, so the loop never blocks on
    the database; concurrent calls from several requests run one after the
    other on it, in autocommit mode (each statement is its own
    transaction, which is all this API needs).  Open the store with
    ``await store.open()``, close it with ``await store.close()``.

    Args:
        path: an SQLite database file, or ``":memory:"``.
    """

    def __init__(self, path=":memory:"):
        self.path = path
        self._db = None

    @property
    def url(self):
        """The flowcoro.db URL of the database."""
        if self.path == ":memory:":
            return "sqlite://:memory:"
        return "sqlite://" + os.path.abspath(self.path)

    async def open(self):
        """Open (or create) the database and its table."""
        self._db = await flowcoro.db.connect(self.url)
        try:
            await self._db.execute("CREATE TABLE IF NOT EXISTS items ("
                                   "id INTEGER PRIMARY KEY AUTOINCREMENT, "
                                   "name TEXT NOT NULL UNIQUE, value TEXT NOT NULL)")
        except BaseException:
            await self.close()
            raise

    async def list(self, prefix="", limit=DEFAULT_LIMIT):
        """Items whose name starts with ``prefix``, by id, at most ``limit``."""
        # Prefix match with substr(), not LIKE, whose wildcards would need escaping.
        rows = await self._db.fetch(
            "SELECT id, name, value FROM items WHERE substr(name, 1, $1) = $2 "
            "ORDER BY id LIMIT $3", [len(prefix), prefix, limit])
        return [_item(r) for r in rows]

    async def get(self, item_id):
        """The item with ``item_id`` as a dict, or None."""
        row = await self._db.fetchrow("SELECT id, name, value FROM items WHERE id = $1",
                                      [item_id])
        return None if row is None else _item(row)

    async def create(self, name, value=""):
        """Insert an item; return it (with its new id).  Raises DuplicateName."""
        try:
            item_id = await self._db.fetchval(
                "INSERT INTO items (name, value) VALUES ($1, $2) RETURNING id", [name, value])
        except IntegrityError:
            raise DuplicateName(name) from None
        return {"id": item_id, "name": name, "value": value}

    async def update(self, item_id, name, value=""):
        """Replace an item's fields; return it, or None if there is no such id.
        Raises DuplicateName."""
        try:
            r = await self._db.execute("UPDATE items SET name = $1, value = $2 WHERE id = $3",
                                       [name, value, item_id])
        except IntegrityError:
            raise DuplicateName(name) from None
        return {"id": item_id, "name": name, "value": value} if r.rowcount else None

    async def delete(self, item_id):
        """Delete an item; return True if it existed."""
        r = await self._db.execute("DELETE FROM items WHERE id = $1", [item_id])
        return r.rowcount > 0

    async def count(self):
        """The number of items."""
        return await self._db.fetchval("SELECT count(*) FROM items")

    async def close(self):
        """Close the database (idempotent)."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()


def _item(row):
    return {"id": row[0], "name": row[1], "value": row[2]}


def _error(status, message):
    return Response.json({"error": message}, status)


class _Invalid(Exception):
    """A request the API refuses: carries the status and the message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


async def _item_fields(request):
    """(name, value) from a JSON body; raises _Invalid (400 or 422)."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError as exc:       # also UnicodeDecodeError
        raise _Invalid(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Invalid(422, "the body must be a JSON object")
    unknown = sorted(set(data) - {"name", "value"})
    if unknown:
        raise _Invalid(422, f"unknown field(s): {', '.join(unknown)}")
    name = data.get("name")
    value = data.get("value", "")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise _Invalid(422, f"name must be a non-empty string of at most {MAX_NAME} characters")
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        raise _Invalid(422, f"value must be a string of at most {MAX_VALUE} characters")
    return name, value


INDEX_ENDPOINTS = [
    ("GET", "/healthz", "health and item count", "curl {base}/healthz"),
    ("GET", "/api/items", "list items (?prefix=, ?limit=)", "curl '{base}/api/items?prefix=ap&limit=10'"),
    ("POST", "/api/items", "create an item: 201 and Location",
     "curl -i -X POST {base}/api/items -d '{{\"name\": \"apple\", \"value\": \"red\"}}'"),
    ("GET", "/api/items/{id}", "read one item", "curl {base}/api/items/1"),
    ("PUT", "/api/items/{id}", "replace an item",
     "curl -X PUT {base}/api/items/1 -d '{{\"name\": \"apple\", \"value\": \"green\"}}'"),
    ("DELETE", "/api/items/{id}", "delete an item: 204", "curl -i -X DELETE {base}/api/items/1"),
    ("GET", "/ws/chat", "the chat's WebSocket endpoint (JSON messages)",
     "open {base}/chat in two browser tabs"),
]


def _index_page(base):
    rows = "\n".join(
        f"<tr><td><code>{m}</code></td><td><code>{html.escape(p)}</code></td>"
        f"<td>{html.escape(what)}</td><td><code>{html.escape(curl.format(base=base))}</code></td></tr>"
        for m, p, what, curl in INDEX_ENDPOINTS)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>FlowCoro demo</title></head>
<body>
<h1>FlowCoro demo</h1>
<p>A small REST API over SQLite, served by <code>flowcoro.http.HttpServer</code>
(FlowCoro {html.escape(flowcoro.__version__)}). JSON in, JSON out.</p>
<p><a id="chat-link" href="/chat">Chat</a>: rooms over WebSocket
(<code>flowcoro.websocket</code>); open it in two tabs.</p>
<table border="1" cellpadding="4">
<tr><th>method</th><th>path</th><th>what</th><th>try it</th></tr>
{rows}
</table>
</body></html>
"""


CHAT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>FlowCoro chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: sans-serif; max-width: 46em; margin: 1em auto; padding: 0 1em; }
#log { list-style: none; padding: .5em; border: 1px solid #aaa; height: 24em; overflow-y: auto; }
#log li.notice { color: #666; font-style: italic; }
#log li.error { color: #b00; }
#log b { margin-right: .4em; }
form { margin: .5em 0; }
#text { width: 30em; }
</style></head>
<body>
<h1>FlowCoro chat</h1>
<p><a href="/">demo index</a> &middot; status: <span id="status">not connected</span></p>
<form id="join-form">
  <label>name <input id="name" maxlength="32" required></label>
  <label>room <input id="room" maxlength="64" value="lobby" required></label>
  <button id="join" type="submit">join</button>
  <button id="leave" type="button" disabled>leave</button>
</form>
<ul id="log"></ul>
<form id="send-form">
  <input id="text" maxlength="2000" autocomplete="off" placeholder="message" disabled>
  <button id="send" type="submit" disabled>send</button>
</form>
<script>
"use strict";
// One WebSocket per page, opened on the first join; every message is a
// JSON object {type, room, name, text} (see flowcoro/demo.py).
const $ = (id) => document.getElementById(id);
let ws = null;
let joined = null;          // the room this page is in, or null
let pending = [];           // messages written before the socket opened

function setStatus(text) { $("status").textContent = text; }

function show(msg) {
  const li = document.createElement("li");
  li.className = msg.type === "message" ? "message" : (msg.type === "error" ? "error" : "notice");
  if (msg.type === "message") {
    const who = document.createElement("b");
    who.textContent = msg.name + ":";
    li.appendChild(who);
    li.appendChild(document.createTextNode(msg.text));
  } else {
    li.textContent = msg.text;      // textContent: never parsed as HTML
  }
  $("log").appendChild(li);
  $("log").scrollTop = $("log").scrollHeight;
}

function setJoined(room) {
  joined = room;
  $("text").disabled = $("send").disabled = $("leave").disabled = (room === null);
  setStatus(room === null ? "connected" : "in room " + room);
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  else pending.push(obj);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  ws = new WebSocket(scheme + location.host + "/ws/chat");
  setStatus("connecting");
  ws.onopen = () => {
    setStatus("connected");
    for (const obj of pending) ws.send(JSON.stringify(obj));
    pending = [];
  };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "join" && msg.name === $("name").value.trim() &&
        msg.room === $("room").value.trim())
      setJoined(msg.room);
    show(msg);
  };
  ws.onclose = (ev) => {
    ws = null;
    setJoined(null);
    setStatus("disconnected (" + ev.code + (ev.reason ? " " + ev.reason : "") + ")");
  };
}

$("join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (ws === null) connect();
  send({type: "join", room: $("room").value.trim(), name: $("name").value.trim()});
});
$("leave").addEventListener("click", () => {
  send({type: "leave"});
  setJoined(null);
});
$("send-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("text").value;
  if (!text || joined === null) return;
  send({type: "message", text: text});
  $("text").value = "";
});
</script>
</body></html>
"""


class Chat:
    """The demo's chat: rooms over WebSocket, on an :class:`HttpServer`.

    Registers ``GET /chat`` (the page) and the WebSocket endpoint
    ``/ws/chat`` on ``app``.  Each connection is in at most one room at a
    time under one name; the protocol is in this module's docstring.
    Broadcasts never wait (see :meth:`WebSocketServer.broadcast`): a client
    that stops reading is dropped with 1013 once its send buffer is full,
    and the room goes on.

    Attributes:
        server: the :class:`WebSocketServer` of ``/ws/chat``.
        rooms: its :class:`ChatRoom`.
        members: ``{connection: (name, room)}`` of the joined connections.
    """

    def __init__(self, app, path="/ws/chat", page="/chat"):
        self.server = WebSocketServer(app, path, max_message=MAX_CHAT_MESSAGE)
        # ChatRoom registers its own on_disconnect first: by the time
        # _gone runs, the connection is out of its room, so the leave
        # notice goes to the members that remain.
        self.rooms = ChatRoom(self.server)
        self.members = {}
        self.server.on_message(self._on_message)
        self.server.on_disconnect(self._gone)

        async def chat_page(request):
            """GET /chat: the chat page."""
            return Response(CHAT_PAGE, content_type="text/html; charset=utf-8")

        app.route(page, chat_page, methods=("GET",))

    @staticmethod
    def _notice(kind, room, name, text):
        return json.dumps({"type": kind, "room": room, "name": name, "text": text})

    async def _error(self, ws, text):
        await ws.send(json.dumps({"type": "error", "text": text}))

    async def _on_message(self, ws, raw):
        """One client message: join, message or leave (anything else: an error reply)."""
        if type(raw) is not str:
            return await self._error(ws, "send JSON text messages")
        try:
            msg = json.loads(raw)
        except ValueError:
            return await self._error(ws, "not JSON")
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "join":
            name, room = msg.get("name"), msg.get("room")
            if not isinstance(name, str) or not 0 < len(name.strip()) <= MAX_CHAT_NAME:
                return await self._error(ws, f"name: 1 to {MAX_CHAT_NAME} characters")
            if not isinstance(room, str) or not 0 < len(room.strip()) <= MAX_CHAT_ROOM:
                return await self._error(ws, f"room: 1 to {MAX_CHAT_ROOM} characters")
            self._leave(ws)
            name, room = name.strip(), room.strip()
            self.members[ws] = (name, room)
            self.rooms.join_room(ws, room)
            others = sorted(n for w, (n, r) in self.members.items() if r == room and w is not ws)
            here = f"; also here: {', '.join(others)}" if others else ""
            self.rooms.broadcast_to_room(room, self._notice("join", room, name,
                                                            f"{name} joined {room}{here}"))
        elif kind == "message":
            text = msg.get("text")
            if ws not in self.members:
                return await self._error(ws, "join a room first")
            if not isinstance(text, str) or not 0 < len(text) <= MAX_CHAT_TEXT:
                return await self._error(ws, f"text: 1 to {MAX_CHAT_TEXT} characters")
            name, room = self.members[ws]
            self.rooms.broadcast_to_room(room, self._notice("message", room, name, text))
        elif kind == "leave":
            self._leave(ws)
        else:
            await self._error(ws, "type must be join, message or leave")

    def _leave(self, ws):
        """Take ``ws`` out of its room (if any) and tell the others."""
        entry = self.members.pop(ws, None)
        if entry is not None:
            name, room = entry
            self.rooms.leave_room(ws, room)
            self.rooms.broadcast_to_room(room, self._notice("leave", room, name, f"{name} left"))

    async def _gone(self, ws):
        """on_disconnect: the connection has closed; tell its room."""
        self._leave(ws)


def build_app(store, *, access_log=True):
    """The demo's :class:`HttpServer`: the routes above over ``store``.

    Args:
        store: an opened :class:`ItemStore`.
        access_log: print one line per routed request (method, path, status).
    """
    app = HttpServer(max_body=MAX_BODY)

    if access_log:
        @app.middleware(kind="after")
        async def log_request(request, response):
            """Access log: one line per routed request."""
            # print() of one short line: the terminal the demo runs in is
            # fast enough that this does not hold the loop up noticeably.
            print(f"{request.method} {request.path} {response.status}", flush=True)
            return response

    @app.get("/")
    async def index(request):
        """GET /: the HTML page listing the endpoints."""
        host = request.headers.get("host") or "127.0.0.1:8080"
        return Response(_index_page(f"http://{host}"), content_type="text/html; charset=utf-8")

    @app.get("/healthz")
    async def healthz(request):
        """GET /healthz: status, item count, versions."""
        loop = asyncio.get_running_loop()
        return {"status": "ok", "items": await store.count(), "flowcoro": flowcoro.__version__,
                "loop": type(loop).__name__, "backend": getattr(loop, "backend", "-")}

    @app.get("/api/items")
    async def list_items(request):
        """GET /api/items?prefix=&limit=: the items, by id."""
        q = request.query
        try:
            limit = int(q.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return _error(400, "limit must be an integer")
        if not 1 <= limit <= MAX_LIMIT:
            return _error(400, f"limit must be between 1 and {MAX_LIMIT}")
        items = await store.list(q.get("prefix", ""), limit)
        return {"items": items, "count": len(items)}

    @app.post("/api/items")
    async def create_item(request):
        """POST /api/items: 201 with Location, or 400/409/422."""
        try:
            name, value = await _item_fields(request)
            item = await store.create(name, value)
        except _Invalid as exc:
            return _error(exc.status, str(exc))
        except DuplicateName:
            return _error(409, f"an item named {name!r} exists")
        return Response.json(item, 201, [("location", f"/api/items/{item['id']}")])

    @app.get("/api/items/{id:int}")
    async def get_item(request):
        """GET /api/items/{id}: the item, or 404."""
        item = await store.get(request.path_params["id"])
        return item if item is not None else _error(404, "no such item")

    @app.put("/api/items/{id:int}")
    async def put_item(request):
        """PUT /api/items/{id}: replace the item, or 400/404/409/422."""
        try:
            name, value = await _item_fields(request)
            item = await store.update(request.path_params["id"], name, value)
        except _Invalid as exc:
            return _error(exc.status, str(exc))
        except DuplicateName:
            return _error(409, f"an item named {name!r} exists")
        return item if item is not None else _error(404, "no such item")

    @app.delete("/api/items/{id:int}")
    async def delete_item(request):
        """DELETE /api/items/{id}: 204, or 404."""
        if await store.delete(request.path_params["id"]):
            return None                 # 204 No Content
        return _error(404, "no such item")

    _observe(app, store)
    Chat(app)
    return app


def _observe(app, store):
    """/metrics (Prometheus text or OpenMetrics), /readyz and request metrics,
    when the observability extra (prometheus_client) is installed."""
    try:
        from prometheus_client import CollectorRegistry

        from flowcoro.observability import HealthChecker, Metrics, instrument, metrics_handler
    except ImportError:                 # pragma: no cover - flowcoro[observability] missing
        return
    registry = CollectorRegistry()
    app.route("/metrics", metrics_handler(registry))
    health = HealthChecker()

    async def store_answers():
        """The SQLite store answers a query."""
        await store.count()
        return True

    health.add_check("store", store_answers, timeout=1.0)
    app.route("/readyz", health.readyz)
    instrument(app, Metrics(registry), tracing=False)


async def serve(host=DEFAULT_HOST, port=DEFAULT_PORT, db=":memory:", *, ready=None):
    """Run the demo service until SIGINT or SIGTERM, then shut down cleanly.

    Args:
        host: address to listen on.
        port: TCP port; 0 picks a free one (the banner says which).
        db: SQLite database path, ``":memory:"`` by default.
        ready: optional callable, called with the bound ``(host, port)``.

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
        DatabaseError: the database cannot be opened.
    """
    loop = asyncio.get_running_loop()
    store = ItemStore(db)
    await store.open()
    app = build_app(store)
    stop = asyncio.Event()
    installed = []

    def on_signal(signum):
        """SIGINT/SIGTERM: begin the graceful shutdown."""
        # The first signal starts the graceful shutdown; the handlers are
        # removed so that a second Ctrl-C interrupts it (KeyboardInterrupt).
        for s in installed:
            loop.remove_signal_handler(s)
        installed.clear()
        stop.set()

    try:
        await app.listen(host, port)
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(s, on_signal, s)
                installed.append(s)
            except (NotImplementedError, RuntimeError, ValueError):   # pragma: no cover
                pass                    # not the main thread, or no signals here
        bound = app.sockets[0].getsockname()[:2]
        print(f"flowcoro demo listening on http://{bound[0]}:{bound[1]}/ "
              f"(loop={type(loop).__name__}, backend={getattr(loop, 'backend', '-')}, db={db}); "
              f"Ctrl-C stops it", flush=True)
        if ready is not None:
            ready(bound)
        await stop.wait()
        print("flowcoro demo: shutting down", flush=True)
        await app.stop(grace=SHUTDOWN_GRACE_S)
    finally:
        for s in installed:
            loop.remove_signal_handler(s)
        await store.close()
    print("flowcoro demo: stopped", flush=True)


def build_parser(parser=None):
    """Add the demo's options (``--host``, ``--port``, ``--db``) to ``parser``."""
    if parser is None:
        parser = argparse.ArgumentParser(prog="flowcoro demo", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port, 0 for any free one (default {DEFAULT_PORT})")
    parser.add_argument("--db", default=":memory:",
                        help="SQLite database file (default: in memory, nothing kept)")
    return parser


def run_demo(args):
    """Run the demo with parsed ``args``; return the process exit status."""
    try:
        flowcoro.run(serve(args.host, args.port, args.db))
    except KeyboardInterrupt:           # a second Ctrl-C during shutdown
        return 130
    except OSError as exc:              # e.g. the port is taken
        print(f"flowcoro demo: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except DatabaseError as exc:        # e.g. --db names a file in a missing directory
        print(f"flowcoro demo: cannot open the database {args.db}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """Entry point of ``python -m flowcoro.demo`` / ``examples/demo.py``."""
    return run_demo(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
